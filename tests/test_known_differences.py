"""A divergence passes only where the case documents it, for that kernel, step and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cases.case import Case, KnownDifference
from harness.runner.diff import diff
from harness.runner.session import accepted
from harness.runner.trace import StepRecord, Trace


def traces(kernel_errno: str | None) -> tuple[Trace, Trace]:
    def t(backend: str, errno: str | None) -> Trace:
        tr = Trace("c", backend)
        tr.steps = [StepRecord(0, 10, "open", "open /dev/iommu", request={"path": "/dev/iommu"}, ret=3),
                     StepRecord(1, 12, "ioctl", "VFIO_DEVICE_BIND_IOMMUFD", errno=errno)]
        return tr
    return t("kernel", kernel_errno), t("model", "EACCES")


def case(*kd: KnownDifference) -> Case:
    return Case("c", "sriov", "p", Path("c.yaml"), 1, known_differences=list(kd))


CDEV = KnownDifference("6.12 cdev path checks no VF token", ("6.12",), step_line=12, field="errno")


@pytest.mark.parametrize(("kd", "kernel", "ok"), [
    (CDEV, "6.12.117", True),
    (CDEV, "6.1.100", False),          # "6.12" is not a prefix match of 6.1
    (CDEV, "6.17.0", False),
    (KnownDifference("r", ("6.12",), step_line=10), "6.12.117", False),   # another step
    (KnownDifference("r", ("6.12",), field="out."), "6.12.117", False),   # another field
    (KnownDifference("r", ("6.12",)), "6.12.117", True),                  # any step, any field
])
def test_divergence_accepted_only_where_documented(kd: KnownDifference, kernel: str, ok: bool) -> None:
    d = diff(*traces(None))
    assert d.first is not None
    assert bool(accepted(case(kd), kernel, d)) is ok


def test_no_divergence_needs_no_excuse() -> None:
    assert accepted(case(), "6.12.117", diff(*traces("EACCES"))) == ""
