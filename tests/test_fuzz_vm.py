"""The fuzzer against the real 6.12 kernel in QEMU: the CI profile finds a planted model bug
there too and shrinks it to a handful of steps, the kernel being the side that is right.

Needs a test kernel and QEMU (like tests/test_vm_boot.py; CI sets VFIO_CONFORMANCE_KERNEL,
and then a missing kernel fails instead of skipping)."""

from __future__ import annotations

from pathlib import Path

import pytest
from planted import PlantedModel, planted_bug  # noqa: F401  (planted_bug is a fixture)
from vm_kernel import KERNEL, VM_MARKS

from harness.fuzz import PROFILES, fuzz
from harness.fuzz.targets import vm_target

pytestmark = VM_MARKS


@pytest.mark.usefixtures("planted_bug")
def test_the_ci_profile_finds_a_planted_model_bug_against_the_kernel(tmp_path: Path) -> None:
    assert KERNEL is not None
    target = vm_target(KERNEL, model_class=PlantedModel)
    try:
        report = fuzz(target.lockstep, PROFILES["ci"], seed=3, out_dir=tmp_path, kernel=target.kernel,
                      mock_domains=target.mock_domains, after_step=target.after_step, progress=lambda _: None)
    finally:
        target.close()
    assert len(report.findings) == 1, report.line()
    f = report.findings[0]
    assert "errno: kernel 'EINVAL' vs model None" in f.summary or "errno: kernel 'EINVAL' vs model" in f.summary
    assert len(f.steps) <= 7
    assert f.case is not None and target.kernel in f.case.read_text()


def test_fault_injection_fails_allocations_and_the_kernel_stays_usable() -> None:
    from harness.cases.loader import Loader
    from harness.fuzz.faults import run_faults

    assert KERNEL is not None
    cases, errors = Loader(Path(__file__).resolve().parent.parent / "cases").load_all("ioas/map-fixed.yaml")
    assert not errors and len(cases) == 1
    target = vm_target(KERNEL)
    try:
        report = run_faults(cases, lambda _case: (target.lockstep.backends[0], target.after_step),
                            progress=lambda _: None)
    finally:
        target.close()
    assert report.cases == 1 and not report.problems, report.problems
    alloc = next(s for s in report.steps if s.label == "IOMMU_IOAS_ALLOC")
    # Some failing site must surface as ENOMEM (an allocation) and one as EFAULT (a user copy).
    assert alloc.sites >= 2 and {"ENOMEM", "EFAULT"} <= set(alloc.outcomes), alloc.by_nth
