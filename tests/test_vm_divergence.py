"""A wrong model rule makes a run on the real kernel fail with a readable divergence.

Boots the viommu guest (needs a test kernel and QEMU, like tests/test_vm_boot.py;
CI builds the kernel first and sets VFIO_CONFORMANCE_KERNEL, and then a missing
kernel fails instead of skipping).
"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from vm_kernel import KERNEL, VM_MARKS

from harness.cases.loader import Loader
from harness.model.errors import Errno
from harness.model.iommu.iommu import IommuGroup
from harness.runner.vmtarget import VmTarget

ROOT = Path(__file__).resolve().parent.parent
pytestmark = VM_MARKS

CASE = "viability-nonviable-set-container-eperm"


def test_flipped_errno_in_the_model_is_a_readable_divergence(monkeypatch: pytest.MonkeyPatch) -> None:
    (case,) = [c for c in Loader(ROOT / "cases").load_all("viability/**")[0] if c.id == CASE]
    assert KERNEL is not None
    target = VmTarget(KERNEL, "both", root=ROOT)
    try:
        honest = target.run(case)
        assert honest.status == "pass", honest.reason

        def ebusy_instead_of_eperm(self: IommuGroup, owner: object) -> None:
            if self.owner_cnt:
                raise Errno(errno.EBUSY, "planted")
            self.owner, self.owner_cnt = owner, 1

        monkeypatch.setattr(IommuGroup, "claim_dma_owner", ebusy_instead_of_eperm)
        target.close()  # a fresh guest and a fresh model with the planted rule
        planted = target.run(case)
    finally:
        target.close()
    assert planted.status == "fail"
    assert planted.divergence.startswith("step "), planted.divergence
    assert "VFIO_GROUP_SET_CONTAINER" in planted.divergence
    assert "kernel 'EPERM' vs model 'EBUSY'" in planted.divergence
    row = next(s for s in planted.steps if s.diverges)
    assert row.outcomes == {"kernel": "EPERM", "model": "EBUSY"} and row.where == "planted"
