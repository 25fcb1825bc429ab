"""The differential fuzzer: it agrees where the targets agree, and finds and shrinks a planted model bug."""

from __future__ import annotations

import ast
import dataclasses
import json
import random
from pathlib import Path
from typing import Any

import pytest
from planted import PlantedModel, planted_argsz_bug, planted_bug  # noqa: F401  (fixtures)

from harness.cases.loader import Loader
from harness.fuzz import MACHINE_PROFILES, MACHINES, PROFILES, Lockstep, MachineKind, UnknownMachine, fuzz, make_machine
from harness.fuzz.machine import WINDOW, register
from harness.fuzz.regression import regression_id, write_regression
from harness.fuzz.run import replay
from harness.fuzz.vfio_rules import ROLES, VfioMachine
from harness.model.backend import ModelBackend
from harness.runner.session import run_case
from harness.runner.trace import FAIL, PASS


def test_machines_are_found_by_kind_in_the_registry() -> None:
    assert MACHINE_PROFILES == {"iommufd": "mock", "vfio": "viommu"}
    assert MACHINES["vfio"].roles == ROLES and MACHINES["iommufd"].roles is None
    lockstep = Lockstep([ModelBackend(), ModelBackend()])
    vfio = make_machine(lockstep, kind="vfio")
    assert issubclass(vfio, VfioMachine) and vfio.lockstep is lockstep
    assert make_machine(lockstep, kind="iommufd").__name__ == "IommufdMachine"
    with pytest.raises(ValueError, match="registered already"):
        register(MachineKind("vfio", lambda mock_domains: VfioMachine, profile="viommu"))


def test_an_unknown_machine_is_refused_naming_the_known_ones() -> None:
    lockstep = Lockstep([ModelBackend(), ModelBackend()])
    with pytest.raises(UnknownMachine, match=r"no fuzz machine 'vifo' \(known: iommufd, vfio\)"):
        make_machine(lockstep, kind="vifo")
    with pytest.raises(UnknownMachine, match="'vifo'"):
        fuzz(lockstep, PROFILES["ci"], seed=7, rounds=1, examples=1, progress=lambda _: None, machine_kind="vifo")


def test_the_machine_plumbing_imports_no_machine() -> None:
    source = (Path(__file__).resolve().parent.parent / "harness" / "fuzz" / "machine.py").read_text()
    imported = {n.module for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ImportFrom)}
    assert imported and not {m for m in imported if m and m.endswith("_rules")}


def test_the_model_agrees_with_itself() -> None:
    report = fuzz(Lockstep([ModelBackend(), ModelBackend()]), PROFILES["ci"], seed=7, rounds=1, examples=60,
                  progress=lambda _: None)
    assert not report.findings, report.findings[0].summary
    assert report.sequences >= 60 and report.steps > report.sequences


def test_a_round_is_reproduced_by_its_seed() -> None:
    """The round's seed reaches Hypothesis through its public @seed (on the machine), so the same
    seed draws the same sequences and another seed others."""
    class Recording(Lockstep):
        seen: list[str]

        def run(self, step: Any) -> Any:
            self.seen.append(json.dumps(step.spec, sort_keys=True, default=lambda e: getattr(e, "text", str(e))))
            return super().run(step)

    def steps_of(seed: int) -> list[str]:
        lockstep = Recording([ModelBackend(), ModelBackend()])
        lockstep.seen = []
        fuzz(lockstep, PROFILES["ci"], seed=seed, rounds=1, examples=15, progress=lambda _: None)
        return lockstep.seen

    assert steps_of(11) == steps_of(11)
    assert len({tuple(steps_of(s)) for s in (12, 13, 14)}) > 1


@pytest.mark.usefixtures("planted_bug")
def test_a_planted_model_bug_is_found_shrunk_and_written_as_a_case(tmp_path: Path) -> None:
    reference, subject = ModelBackend(), PlantedModel()
    report = fuzz(Lockstep([reference, subject]), PROFILES["ci"], seed=10, out_dir=tmp_path / "regressions",
                  progress=lambda _: None)
    assert len(report.findings) == 1
    f = report.findings[0]
    assert "errno" in f.summary
    assert len(f.steps) <= 7, f.steps   # open, IOAS, mock domain or option, mmap, the map (a copy needs two more)
    last = f.steps[-1]
    assert last["ioctl"] in ("IOMMU_IOAS_MAP", "IOMMU_IOAS_COPY") and last["ioctl"] in f.summary
    assert "IOMMU_IOAS_MAP_FIXED_IOVA" in last["args"]["flags"]
    # The IOAS's IOVA alignment is above 1 only once a step raised it: a mock domain (its page
    # size) or huge pages turned off (PAGE_SIZE).
    assert any(s.get("args", {}).get("op") == "IOMMU_TEST_OP_MOCK_DOMAIN"
               or (s.get("args", {}).get("option_id") == "IOMMU_OPTION_HUGE_PAGES"
                   and s["args"].get("op") == "IOMMU_OPTION_OP_SET" and s["args"].get("val64") == 0)
               for s in f.steps), f.steps
    assert f.case is not None and f.case.parent.name == "regressions"

    cases, errors = Loader(tmp_path).load_all("regressions/*.yaml")
    assert not errors and len(cases) == 1
    case = cases[0]
    assert run_case(case, [ModelBackend()]).status == PASS        # it asserts nothing on its own
    outcome = run_case(case, [ModelBackend(), PlantedModel()])
    assert outcome.status == FAIL and "divergence" in outcome.reason


@pytest.mark.usefixtures("planted_argsz_bug")
def test_the_vfio_machine_finds_a_planted_argsz_bug_and_its_case_names_the_role(tmp_path: Path) -> None:
    report = fuzz(Lockstep([ModelBackend(), PlantedModel()]), PROFILES["ci"], seed=3, out_dir=tmp_path / "regressions",
                  progress=lambda _: None, machine_kind="vfio")
    assert len(report.findings) == 1
    f = report.findings[0]
    last = f.steps[-1]
    assert "VFIO_GROUP_GET_STATUS" in f.summary and "errno" in f.summary, f.summary
    assert len(f.steps) <= 4, f.steps   # the group's open and the ioctl (and what the setup left)
    assert any(s.get("open") == "/dev/vfio/${dev.group}" or s.get("open") == "/dev/vfio/${g.group}"
               for s in f.steps)
    size = last.get("args", {}).get("argsz") if "ioctl" in last else int.from_bytes(
        bytes.fromhex(last["hex"])[:4], "little")
    assert size is not None and size < 8, last

    cases, errors = Loader(tmp_path).load_all("regressions/*.yaml")
    assert not errors and len(cases) == 1
    case = cases[0]
    assert set(case.requires.topology.values()) <= {"isolated", "nonviable"} and case.requires.topology
    assert run_case(case, [ModelBackend()]).status == PASS
    outcome = run_case(case, [ModelBackend(), PlantedModel()])
    assert outcome.status == FAIL and "divergence" in outcome.reason


def test_a_regression_case_has_a_stable_name(tmp_path: Path) -> None:
    steps: list[dict[str, Any]] = [{"open": "/dev/iommu", "as": "iommufd1", "expect": "any"}]
    a = write_regression(tmp_path, steps, "x", "1", None, "6.12.118", True)
    b = write_regression(tmp_path, steps, "x", "1", None, "6.12.118", True)
    assert a == b and a.name == regression_id(steps).removeprefix("regressions-") + ".yaml"
    _cases, errors = Loader(tmp_path.parent).load_all(f"{tmp_path.name}/*.yaml")
    assert errors and "area" in str(errors[0])   # the area must be the folder: regressions/ only


@pytest.mark.slow
@pytest.mark.usefixtures("planted_bug")
def test_shrinking_ends_when_its_time_is_spent_and_the_shortest_divergence_is_kept(tmp_path: Path) -> None:
    def run(shrink_seconds: float) -> Any:
        profile = dataclasses.replace(PROFILES["ci"], shrink_seconds=shrink_seconds)
        return fuzz(Lockstep([ModelBackend(), PlantedModel()]), profile, seed=10, progress=lambda _: None)

    unbounded, spent = run(60), run(0)
    # No time to shrink: not one more sequence after the first divergence, which Hypothesis
    # would have spent shrinking; the divergence is still reported, minimised by replay.
    assert spent.sequences < unbounded.sequences
    assert len(spent.findings) == 1 and "errno" in spent.findings[0].summary
    steps = spent.findings[0].steps
    found = replay(Lockstep([ModelBackend(), PlantedModel()]), steps)
    assert found is not None and found[0] == len(steps) - 1


def test_the_cli_offers_every_registered_machine() -> None:
    from harness.cli import parser

    fuzz_parser = parser()._subparsers._group_actions[0].choices["fuzz"]  # type: ignore[union-attr]
    machine = next(a for a in fuzz_parser._actions if a.dest == "machine")
    assert tuple(machine.choices) == ("all", *MACHINES)


def test_a_tape_of_zeros_is_the_start_alone_and_shrinks_nothing_away_from_it() -> None:
    """A rule byte of 0 is no step: the tape shrinking makes all zeros runs only ``setup``, each
    of its choices at its first, simplest option (no mock domain)."""
    machine = make_machine(Lockstep([ModelBackend()]), kind="iommufd")
    m = machine()
    try:
        m.run(bytes(WINDOW * 8))
    finally:
        m.teardown()
    assert [next(iter(s)) for s in m.steps] == ["open", "ioctl", "mmap"], m.steps


@pytest.mark.parametrize("kind", ["iommufd", "vfio"])
def test_every_rule_is_reached_from_random_tapes(kind: str) -> None:
    lockstep = Lockstep([ModelBackend()])
    lockstep.use_roles(MACHINES[kind].roles or {})
    machine = make_machine(lockstep, kind=kind)
    seen: set[str] = set()

    def recording(fn: Any) -> Any:
        def run(self: Any, c: Any) -> None:
            seen.add(fn.__name__)
            fn(self, c)
        return run

    machine.RULES = tuple((recording(fn), when) for fn, when in machine.RULES)
    rng = random.Random(5)
    for _ in range(300):
        m = machine()
        try:
            m.run(rng.randbytes(WINDOW * 16))
        finally:
            m.teardown()
    assert seen == {fn.__name__ for fn, _ in MACHINES[kind].build(True).RULES}


def test_the_vfio_machine_keeps_a_device_fd_only_when_group_get_device_fd_gave_one() -> None:
    """A VFIO_GROUP_GET_DEVICE_FD the model refuses (a wrong name, a group without a container
    or not viable) binds its name to -1: kept as a device, every later step on it would only
    get EBADF.  The machine keeps the names of the calls that gave a device fd, and only those."""
    lockstep = Lockstep([ModelBackend()])
    lockstep.use_roles(ROLES)
    machine = make_machine(lockstep, kind="vfio")
    rng = random.Random(11)
    seen = {"kept": 0, "refused": 0}
    for _ in range(120):
        m = machine()
        try:
            m.run(rng.randbytes(WINDOW * 16))
            closed = {s["close"] for s in m.steps if "close" in s}
            for step, rec in zip(m.steps, lockstep.traces[0].steps, strict=True):
                if step.get("ioctl") != "VFIO_GROUP_GET_DEVICE_FD":
                    continue
                if rec.errno:
                    assert step["as"] not in m.devices, (rec.errno, m.steps)
                    seen["refused"] += 1
                elif step["as"] not in closed:
                    assert step["as"] in m.devices, m.steps
                    seen["kept"] += 1
            assert all(lockstep.envs[0][d] >= 0 for d in m.devices)
        finally:
            m.teardown()
    assert seen["kept"] and seen["refused"], seen


def test_the_vfio_machine_keeps_only_the_fds_and_ioases_that_were_made() -> None:
    """A second open of a group (EBUSY) or an IOAS_ALLOC on a closed iommufd made nothing: the
    machine keeps no name for it, so no later step is drawn on a -1."""
    lockstep = Lockstep([ModelBackend()])
    lockstep.use_roles(ROLES)
    machine = make_machine(lockstep, kind="vfio")
    rng = random.Random(5)
    refused = 0
    for _ in range(120):
        m = machine()
        try:
            m.run(rng.randbytes(WINDOW * 16))
            kept = {*m.containers, *m.groups, *m.cdevs, *m.iommufds, *m.ioases}
            for step, rec in zip(m.steps, lockstep.traces[0].steps, strict=True):
                made = step.get("as") if "open" in step else next(iter(step.get("save") or {}), None) \
                    if step.get("ioctl") == "IOMMU_IOAS_ALLOC" else None
                if made is not None and rec.errno:
                    assert made not in kept, (rec.errno, step, m.steps)
                    refused += 1
        finally:
            m.teardown()
    assert refused, "no open or IOAS_ALLOC was refused in 120 sequences"
