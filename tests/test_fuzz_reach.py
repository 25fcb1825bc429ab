"""The iommufd machine's HWPT, access and dirty tracking rules and the vfio machine's config
space, BAR region and interrupt rules (issue 13, item 1): each family finds a model bug planted in it,
on the model-vs-model run, and shrinks it to a short case."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from planted import (  # noqa: F401  (fixtures)
    PlantedModel,
    planted_access_prot_bug,
    planted_config_end_bug,
    planted_dirty_ops_bug,
    planted_hot_reset_room_bug,
    planted_irq_bound_bug,
    planted_memory_decode_bug,
    planted_nested_bug,
)

from harness.cases.loader import Loader
from harness.fuzz import PROFILES, Lockstep, fuzz
from harness.model.backend import ModelBackend
from harness.runner.session import run_case
from harness.runner.trace import FAIL, PASS


def finding(out: Path, kind: str = "iommufd") -> list[dict[str, Any]]:
    """The one divergence the CI profile finds between an honest and a planted model (of the
    ``kind`` machine), whose case passes on the model alone and fails against the planted one."""
    report = fuzz(Lockstep([ModelBackend(), PlantedModel()]), PROFILES["ci"], out_dir=out / "regressions",
                  progress=lambda _: None, machine_kind=kind)
    assert len(report.findings) == 1
    f = report.findings[0]
    assert "errno" in f.summary or "ret" in f.summary, f.summary
    cases, errors = Loader(out).load_all("regressions/*.yaml")
    assert not errors and len(cases) == 1
    assert run_case(cases[0], [ModelBackend()]).status == PASS
    assert run_case(cases[0], [ModelBackend(), PlantedModel()]).status == FAIL
    return f.steps


def op(step: dict[str, Any]) -> str:
    args = step.get("args", {})
    return str(args.get("op") or step.get("ioctl") or next(iter(step)))


@pytest.mark.usefixtures("planted_nested_bug")
def test_a_nested_hwpt_over_a_parent_that_is_none_is_found(tmp_path: Path) -> None:
    steps = finding(tmp_path)
    last = steps[-1]
    assert last["ioctl"] == "IOMMU_HWPT_ALLOC" and last["args"]["data_type"] == "IOMMU_HWPT_DATA_SELFTEST", last
    # The parent: a paging HWPT allocated without NEST_PARENT (a mock domain's own is refused
    # as an automatic one whatever the bug).
    parents = [s for s in steps[:-1] if s.get("ioctl") == "IOMMU_HWPT_ALLOC"]
    assert parents and all("NEST_PARENT" not in str(s["args"]["flags"]) for s in parents), steps
    assert len(steps) <= 7, steps


@pytest.mark.usefixtures("planted_access_prot_bug")
def test_an_access_through_a_map_without_its_permission_is_found(tmp_path: Path) -> None:
    steps = finding(tmp_path)
    last = steps[-1]
    assert op(last) in ("IOMMU_TEST_OP_ACCESS_PAGES", "IOMMU_TEST_OP_ACCESS_RW"), last
    # A write through a map that is not WRITEABLE, or a read through one that is not READABLE.
    write = "WRITE" in str(last["args"].get("access_pages", last["args"].get("access_rw"))["flags"])
    lacking = "IOMMU_IOAS_MAP_WRITEABLE" if write else "IOMMU_IOAS_MAP_READABLE"
    assert any(s.get("ioctl") in ("IOMMU_IOAS_MAP", "IOMMU_IOAS_COPY") and lacking not in s["args"]["flags"]
               for s in steps), steps
    assert any(op(s) == "IOMMU_TEST_OP_CREATE_ACCESS" for s in steps), steps
    assert len(steps) <= 7, steps


@pytest.mark.usefixtures("planted_dirty_ops_bug")
def test_dirty_tracking_on_a_domain_without_dirty_ops_is_found(tmp_path: Path) -> None:
    steps = finding(tmp_path)
    last = steps[-1]
    assert last["ioctl"] == "IOMMU_HWPT_SET_DIRTY_TRACKING", last
    assert not any("DIRTY_TRACKING" in str(s.get("args", {}).get("flags")) for s in steps[:-1]
                   if s.get("ioctl") == "IOMMU_HWPT_ALLOC"), steps
    assert len(steps) <= 6, steps


def test_an_access_test_op_names_its_access_by_fd_not_by_object_id() -> None:
    """IOMMU_TEST_CMD's ``id`` is the access's fd for the access ops (selftest.c
    iommufd_access_get()): two targets whose access fds differ still agree on the object ids
    that follow (the fuzzer's run against 6.12.118 diverged on the next IOAS's id before)."""
    from harness.runner.normalise import Normaliser
    from harness.runner.trace import StepRecord
    from harness.uapi import iommufd_test as ut

    def steps(access_fd: int) -> list[dict[str, Any]]:
        n = Normaliser()
        return [n.step(StepRecord(0, 1, "ioctl", "IOMMU_TEST_CMD",
                                  request={"op": ut.IOMMU_TEST_OP_ACCESS_RW, "id": access_fd})),
                n.step(StepRecord(1, 2, "ioctl", "IOMMU_TEST_CMD",
                                  request={"op": ut.IOMMU_TEST_OP_MOCK_DOMAIN, "id": 4})),
                n.step(StepRecord(2, 3, "ioctl", "IOMMU_IOAS_ALLOC", out={"out_ioas_id": 5}))]

    kernel, model = steps(7), steps(4)
    assert kernel == model
    assert kernel[0]["request"]["id"] == "fd#1" and kernel[1]["request"]["id"] == "id#1"


def config_offset(step: dict[str, Any]) -> int:
    """The offset in config space a pread or pwrite of the config region names."""
    return int(str(step["offset"]).rsplit("+", 1)[1], 0)


@pytest.mark.usefixtures("planted_config_end_bug")
def test_a_config_access_past_the_end_of_config_space_is_found(tmp_path: Path) -> None:
    steps = finding(tmp_path, "vfio")
    last = steps[-1]
    assert ("pread" in last or "pwrite" in last) and "VFIO_PCI_CONFIG_REGION_INDEX" in last["offset"], last
    length = last.get("length", len(last.get("hex", "")) // 2)
    assert config_offset(last) + length > 0x100, last    # across the end of (conventional) config space
    assert len(steps) <= 6, steps


@pytest.mark.usefixtures("planted_memory_decode_bug")
def test_a_bar_access_with_memory_decoding_off_is_found(tmp_path: Path) -> None:
    steps = finding(tmp_path, "vfio")
    last = steps[-1]
    assert ("pread" in last or "pwrite" in last) and "VFIO_PCI_CONFIG_REGION_INDEX" not in last["offset"], last
    # Before it, the command register written with the memory enable (bit 1) off.
    commands = [s for s in steps if "pwrite" in s and "VFIO_PCI_CONFIG_REGION_INDEX" in s["offset"]
                and config_offset(s) <= 0x4 < config_offset(s) + len(s["hex"]) // 2]
    assert commands, steps
    assert len(steps) <= 8, steps


@pytest.mark.usefixtures("planted_irq_bound_bug")
def test_set_irqs_one_vector_past_the_count_is_found(tmp_path: Path) -> None:
    steps = finding(tmp_path, "vfio")
    last = steps[-1]
    assert last["ioctl"] == "VFIO_DEVICE_SET_IRQS", last
    # MSI or MSI-X, which the machine's functions (e1000s) have no vectors of, or a start at
    # the count VFIO_DEVICE_GET_IRQ_INFO saved.
    args = last["args"]
    assert args["index"] in (1, 2) or str(args["start"]).startswith("$count"), last
    assert len(steps) <= 7, steps


@pytest.mark.usefixtures("planted_hot_reset_room_bug")
def test_hot_reset_info_without_room_for_the_devices_is_found(tmp_path: Path) -> None:
    steps = finding(tmp_path, "vfio")
    last = steps[-1]
    assert last["ioctl"] == "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO", last
    # Of the non-viable group's function (the isolated one is on the root bus: ENODEV).
    assert any(s.get("string") == "${g.bdf}" for s in steps), steps
    assert len(steps) <= 9, steps
