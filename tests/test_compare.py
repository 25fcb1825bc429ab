"""`compare` of two kernels, with models standing in for the kernels: the model of 6.12 and the
model of 7.2 differ exactly where a version gate says, so every change is expected; a kernel
that changes behaviour no gate explains, or fails to change where a gate says it should, is
reported as unexpected."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.backends.base import Backend, OpResult
from harness.cases.loader import Loader
from harness.model.backend import ModelBackend
from harness.model.kernel import ModelKernel
from harness.model.topologies import default_facts
from harness.runner.compare import compare
from harness.uapi import vfio as uv

ROOT = Path(__file__).resolve().parent.parent
OLD, NEW = "6.12.118", "7.2.13"


def model(release: str, cls: type[ModelBackend] = ModelBackend) -> ModelBackend:
    return cls(facts=default_facts(release))


class Gateless(ModelBackend):
    """A 7.2 kernel that kept every 6.12 behaviour: its version gates never open."""

    def _boot(self) -> ModelKernel:
        k = super()._boot()
        k.since = lambda gate: False  # type: ignore[method-assign]
        return k


class Patched(ModelBackend):
    """A one-line uAPI patch: VFIO_CHECK_EXTENSION(VFIO_TYPE1v2_IOMMU) answers 0."""

    def ioctl(self, fd: int, request: int, arg: bytes | int | None) -> OpResult:
        res = super().ioctl(fd, request, arg)
        if request == uv.VFIO_CHECK_EXTENSION and arg == uv.VFIO_TYPE1v2_IOMMU and res.ret == 1:
            return OpResult(ret=0)
        return res


def run(pattern: str, baseline: Backend, candidate: Backend, base_release: str, cand_release: str):  # type: ignore[no-untyped-def]
    cases, errors = Loader(ROOT / "cases").load_all(pattern)
    assert cases and not errors
    pair = ((baseline, model(base_release)), (candidate, model(cand_release)))
    return compare(cases, lambda case: pair)


def test_series_changes_are_all_expected_and_tied_to_their_gate() -> None:
    report = run("container/**", model(OLD), model(NEW), OLD, NEW)
    changed = {c.case.test_id: ch for c, ch in report.changes}
    assert not report.unexpected, report.unexpected
    assert "type1-nesting-removed" in changed["container-check-extension-nesting[legacy]"].gates
    assert "type1-overflow-eoverflow" in changed["container-map-iova-overflow[legacy]"].gates
    nesting = changed["container-check-extension-nesting[legacy]"]
    assert (nesting.what, nesting.baseline, nesting.candidate, nesting.expected) == ("ret", 1, 0, True)
    assert report.summary().startswith(f"{OLD} -> {NEW}:")


def test_what_the_abi_changes_is_listed_apart_from_behaviour_changes() -> None:
    """7.2's VFIO_DEVICE_BIND_IOMMUFD is 24 bytes (token_uuid_ptr), 6.12's 16: the harness sends
    each kernel its own size, which is no behaviour change of either."""
    report = run("device/bind-flags-einval", model(OLD), model(NEW), OLD, NEW)
    abi = report.abi()
    assert abi.get(("VFIO_DEVICE_BIND_IOMMUFD", "request.argsz", "16", "24")), abi
    assert not any(ch.what == "request.argsz" for _, ch in report.changes)
    assert "steps with ABI differences" in report.summary()


def test_a_gate_the_candidate_does_not_show_is_unexpected() -> None:
    report = run("container/check-extension-nesting", model(OLD), model(NEW, Gateless), OLD, NEW)
    (case, change), = report.unexpected
    assert case.case.test_id == "container-check-extension-nesting[legacy]"
    assert "predicts this change" in change.why and change.gates == ("type1-nesting-removed",)


def test_a_one_line_patch_is_exactly_the_one_unexpected_change() -> None:
    report = run("container/**", model(NEW), model(NEW, Patched), NEW, NEW)
    assert sorted((c.case.test_id, ch.step, ch.what, ch.baseline, ch.candidate, ch.expected)
                  for c, ch in report.changes) == [
        ("container-check-extension-type1v2[iommufd-compat]", 1, "ret", 1, 0, False),
        ("container-check-extension-type1v2[legacy]", 1, "ret", 1, 0, False)]
    assert all(c.status == "fail" for c, _ in report.unexpected)
    assert "0 expected, 2 unexpected" in report.summary()


@pytest.mark.parametrize("release", [OLD, NEW])
def test_a_kernel_against_itself_changes_nothing(release: str) -> None:
    report = run("size/**", model(release), model(release), release, release)
    assert report.changes == [] and all(c.status in ("pass", "skip") for c in report.cases)


def test_reports_list_each_change_and_fail_the_case_in_junit_and_ktap(tmp_path: Path) -> None:
    import xml.etree.ElementTree as ET

    from harness.report.compare import write_compare_reports

    report = run("container/check-extension-*", model(NEW), model(NEW, Patched), NEW, NEW)
    paths = write_compare_reports(report, tmp_path, "bzImage-a", "bzImage-b")
    md = (tmp_path / "compare.md").read_text()
    assert "## Unexpected changes (2)" in md and "container-check-extension-type1v2[legacy]" in md
    assert "(bzImage-b)" in md
    failures = ET.parse(tmp_path / "compare-junit.xml").getroot().iter("failure")
    assert len(list(failures)) == 2
    ktap = (tmp_path / "compare.ktap").read_text()
    assert "not ok" in ktap and "container-check-extension-type1v2[legacy]" in ktap
    assert [p.name for p in paths] == ["compare.md", "compare-junit.xml", "compare.ktap"]


def predicted_lockstep(candidate_kernel: ModelBackend):  # type: ignore[no-untyped-def]
    from harness.fuzz.lockstep import PredictedLockstep

    return PredictedLockstep([model(OLD), candidate_kernel, model(OLD), model(NEW)])


NESTING = [{"open": "/dev/vfio/vfio", "as": "c", "expect": "any"},
           {"ioctl": "VFIO_CHECK_EXTENSION", "fd": "c", "value": "VFIO_TYPE1_NESTING_IOMMU", "expect": "any"}]


def test_a_change_the_models_predict_is_no_finding() -> None:
    from harness.fuzz.run import replay

    lockstep = predicted_lockstep(model(NEW))
    assert replay(lockstep, NESTING) is None
    assert lockstep.expected == [("VFIO_CHECK_EXTENSION", "ret", 1, 0)]


def test_a_change_the_candidate_failed_to_make_is_a_finding() -> None:
    from harness.fuzz.run import replay

    found = replay(predicted_lockstep(model(NEW, Gateless)), NESTING)
    assert found is not None
    index, summary = found
    assert index == 1 and "ret (the models' change, which the kernels do not make)" in summary, summary


def test_fuzzing_two_releases_finds_no_unpredicted_change() -> None:
    from harness.fuzz import PROFILES, fuzz

    lockstep = predicted_lockstep(model(NEW))
    report = fuzz(lockstep, PROFILES["ci"], seed=1, rounds=1, examples=150, progress=lambda _: None,
                  machine_kind="vfio")
    assert not report.findings, report.findings[0].summary
    assert report.sequences >= 150
