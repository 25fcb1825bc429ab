"""The corpus notices a wrong model: plant a bug, and the cases that cover the rule fail.

A model that only agrees with the corpus proves little unless the corpus would
disagree with a wrong model; these tests break one rule at a time.
"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from harness.cases.loader import Loader
from harness.model.backend import ModelBackend
from harness.model.errors import Errno
from harness.model.iommu.iommu import IommuGroup
from harness.model.iommufd import io_pagetable
from harness.runner.session import run_case

ROOT = Path(__file__).resolve().parent.parent


def failing(pattern: str) -> set[str]:
    cases, errors = Loader(ROOT / "cases").load_all(pattern)
    assert cases and not errors
    backends = [ModelBackend()]
    # A case skipped on this model's release (a 7.2-only one on 6.12) is not a failure.
    return {c.test_id for c in cases if run_case(c, backends).status not in ("pass", "skip")}


def test_unmodified_model_passes_the_areas_used_below() -> None:
    assert failing("ioas/**") == set()
    assert failing("viability/**") == set()


def test_accepting_an_unaligned_fixed_iova_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    real = io_pagetable.iopt_check_iova

    def no_alignment_check(iopt: io_pagetable.IoPagetable, iova: int, length: int) -> None:
        aligned = iova & ~(iopt.iova_alignment - 1)
        real(iopt, aligned, length + (iova - aligned))

    monkeypatch.setattr(io_pagetable, "iopt_check_iova", no_alignment_check)
    caught = failing("ioas/**") | failing("mock/**")
    assert {"ioas-map-unaligned-iova", "mock-map-unaligned-iova"} <= caught, caught


def test_a_flipped_errno_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    def eperm_becomes_ebusy(self: IommuGroup, owner: object) -> None:
        if self.owner_cnt:
            raise Errno(errno.EBUSY, "planted")
        self.owner, self.owner_cnt = owner, 1

    monkeypatch.setattr(IommuGroup, "claim_dma_owner", eperm_becomes_ebusy)
    caught = failing("viability/**") | failing("ownership/**")
    assert "viability-nonviable-set-container-eperm" in caught, caught
