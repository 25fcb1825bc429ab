"""A planted model bug for the fuzzer's tests: a fixed IOVA that is not a multiple of the
IOAS's IOVA alignment is accepted (the kernel refuses it, io_pagetable.c:188-189).

Only a ``PlantedModel`` has the bug (a context variable marks its ioctls), so it can run
in lockstep against an honest model or the real kernel in the same process."""

from __future__ import annotations

import contextvars
import ctypes
from collections.abc import Iterator
from typing import Any

import pytest

from harness.backends.base import OpResult
from harness.model.backend import ModelBackend
from harness.model.iommufd import io_pagetable

_planted = contextvars.ContextVar("planted", default=False)


class PlantedModel(ModelBackend):
    def ioctl(self, fd: int, request: int, arg: bytes | int | None) -> OpResult:
        token = _planted.set(True)
        try:
            return super().ioctl(fd, request, arg)
        finally:
            _planted.reset(token)


@pytest.fixture
def planted_bug(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    real = io_pagetable.iopt_check_iova

    def check(iopt: Any, iova: int, length: int) -> None:
        if not _planted.get():
            return real(iopt, iova, length)
        saved, iopt.iova_alignment = iopt.iova_alignment, 1
        try:
            return real(iopt, iova, length)
        finally:
            iopt.iova_alignment = saved

    monkeypatch.setattr(io_pagetable, "iopt_check_iova", check)
    yield


@pytest.fixture
def planted_argsz_bug(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """VFIO_GROUP_GET_STATUS accepts an argsz below minsz (the kernel refuses it, group.c:361-362)."""
    from harness.model.vfio import group
    from harness.uapi import vfio as uv

    real = group.vfio_group_ioctl_get_status
    minsz = ctypes.sizeof(uv.vfio_group_status)

    def get_status(k: Any, grp: Any, arg: int) -> int:
        if not _planted.get():
            return real(k, grp, arg)
        argsz = int.from_bytes(k.mm.read(arg, 4), "little")
        if argsz < minsz:
            k.mm.write(arg, minsz.to_bytes(4, "little"))
        return real(k, grp, arg)

    monkeypatch.setattr(group, "vfio_group_ioctl_get_status", get_status)
    yield
