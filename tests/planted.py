"""A planted model bug for the fuzzer's tests: a fixed IOVA that is not a multiple of the
IOAS's IOVA alignment is accepted (the kernel refuses it, io_pagetable.c:188-189).

Only a ``PlantedModel`` has the bug (a context variable marks its ioctls, preads and pwrites), so it can run
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
    def _planted(self, op: Any, *args: Any) -> OpResult:
        token = _planted.set(True)
        try:
            return op(*args)
        finally:
            _planted.reset(token)

    def ioctl(self, fd: int, request: int, arg: bytes | int | None) -> OpResult:
        return self._planted(super().ioctl, fd, request, arg)

    def pread(self, fd: int, length: int, offset: int) -> OpResult:
        return self._planted(super().pread, fd, length, offset)

    def pwrite(self, fd: int, data: bytes, offset: int) -> OpResult:
        return self._planted(super().pwrite, fd, data, offset)


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


@pytest.fixture
def planted_nested_bug(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """IOMMU_HWPT_ALLOC of a nested HWPT accepts a parent allocated without
    IOMMU_HWPT_ALLOC_NEST_PARENT (the kernel refuses it, hw_pagetable.c:233-235)."""
    from harness.model.iommufd import hw_pagetable

    real = hw_pagetable.iommufd_hwpt_nested_alloc

    def nested_alloc(k: Any, ictx: Any, parent: Any, *rest: Any) -> Any:
        if not _planted.get():
            return real(k, ictx, parent, *rest)
        saved, parent.nest_parent = parent.nest_parent, True
        try:
            return real(k, ictx, parent, *rest)
        finally:
            parent.nest_parent = saved

    monkeypatch.setattr(hw_pagetable, "iommufd_hwpt_nested_alloc", nested_alloc)
    yield


@pytest.fixture
def planted_access_prot_bug(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """An access pins (ACCESS_PAGES) and reads or writes (ACCESS_RW) through a map whatever its
    permissions (the kernel refuses a write through a read-only map and a read through a
    write-only one, device.c:1208-1209,1288-1289)."""
    from harness.model.iommufd import device

    real = device.check_area_prot
    monkeypatch.setattr(device, "check_area_prot", lambda area, flags: _planted.get() or real(area, flags))
    yield


@pytest.fixture
def planted_dirty_ops_bug(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """IOMMU_HWPT_SET_DIRTY_TRACKING succeeds on a domain without dirty tracking ops (a HWPT
    allocated without IOMMU_HWPT_ALLOC_DIRTY_TRACKING; the kernel: EOPNOTSUPP, io_pagetable.c:600-601)."""
    from harness.model.iommufd import hw_pagetable

    real = hw_pagetable.iopt_set_dirty_tracking

    def set_dirty_tracking(iopt: Any, domain: Any, enable: bool) -> None:
        if _planted.get() and not domain.dirty_ops:
            return None
        return real(iopt, domain, enable)

    monkeypatch.setattr(hw_pagetable, "iopt_set_dirty_tracking", set_dirty_tracking)
    yield


@pytest.fixture
def planted_config_end_bug(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A config-region access that runs past the end of config space is cut at the end (the
    kernel fails the whole access with EFAULT at the chunk past it, vfio_pci_config.c:1880)."""
    from harness.model.vfio import pci_config

    real = pci_config.vfio_pci_config_rw

    def config_rw(vdev: Any, pos: int, count: int, data: bytes | None) -> bytes | int:
        if _planted.get() and pos < vdev.dev.cfg_size:
            count = min(count, vdev.dev.cfg_size - pos)
        return real(vdev, pos, count, data)

    monkeypatch.setattr(pci_config, "vfio_pci_config_rw", config_rw)
    yield


@pytest.fixture
def planted_memory_decode_bug(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A BAR access succeeds with the memory decoding of the virtual command register off (the
    kernel: EIO, vfio_pci_rdwr.c:49,77)."""
    from harness.model.vfio import pci_config

    real = pci_config.memory_enabled
    monkeypatch.setattr(pci_config, "memory_enabled", lambda vdev: _planted.get() or real(vdev))
    yield


@pytest.fixture
def planted_irq_bound_bug(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """VFIO_DEVICE_SET_IRQS lets start + count run one vector past the index's count (the
    kernel: EINVAL, vfio_main.c:1552-1553): an MSI block on a function without MSI is set."""
    from harness.model.vfio import pci_core

    real = pci_core.vfio_set_irqs_validate_and_prepare

    def validate(hdr: Any, num_irqs: int, max_irq_type: int) -> int:
        return real(hdr, num_irqs + 1 if _planted.get() else num_irqs, max_irq_type)

    monkeypatch.setattr(pci_core, "vfio_set_irqs_validate_and_prepare", validate)
    yield


@pytest.fixture
def planted_hot_reset_room_bug(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """VFIO_DEVICE_GET_PCI_HOT_RESET_INFO without room for the devices succeeds with the count
    filled (the kernel: ENOSPC, vfio_pci_core.c:1315-1317)."""
    import errno

    from harness.model.errors import Errno
    from harness.model.vfio import pci_core

    real = pci_core.vfio_pci_ioctl_get_pci_hot_reset_info

    def hot_reset_info(k: Any, vdev: Any, arg: int) -> int:
        try:
            return real(k, vdev, arg)
        except Errno as e:
            if _planted.get() and e.code == errno.ENOSPC:
                return 0
            raise

    monkeypatch.setattr(pci_core, "vfio_pci_ioctl_get_pci_hot_reset_info", hot_reset_info)
    yield
