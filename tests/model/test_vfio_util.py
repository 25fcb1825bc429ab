"""Helpers for the PCI and VFIO model tests: a ModelBackend on the q35 topology
(or another), ioctls with ctypes structs, and the errno plus the kernel line the
model cited.  (A test file by name so it may live beside the tests.)"""

from __future__ import annotations

import ctypes
import dataclasses
import errno
from typing import Any

from harness.backends.base import Facts, Topology
from harness.model.backend import ModelBackend
from harness.model.kernel import ModelKernel
from harness.model.topologies import default_facts
from harness.uapi import vfio as uv

E1000 = "0000:00:02.0"      # group 1, alone, vfio-pci, cdev vfio0
NVME = "0000:00:03.0"       # group 2, SR-IOV PF (3 VFs), vfio-pci, cdev vfio1
LPC = "0000:00:1f.0"        # group 3 with ahci and i801_smbus, vfio-pci, cdev vfio2
AHCI = "0000:00:1f.2"
SMBUS = "0000:00:1f.3"
TOKEN = "bd8d9d2b-5a5f-4f5a-a211-f591514ba1f3"
OTHER_TOKEN = "00000000-1111-2222-3333-444444444444"


class Res:
    def __init__(self, ret: int, err: int, where: str, s: Any):
        self.ret = ret
        self.errno = err
        self.where = where
        self.s = s

    @property
    def ok(self) -> bool:
        return self.errno == 0

    def __repr__(self) -> str:
        return f"Res(ret={self.ret}, errno={errno.errorcode.get(self.errno, self.errno)}, where={self.where})"


class Rig:
    """One process on a model kernel."""

    def __init__(self, topology: Topology | None = None, **facts: Any):
        f: Facts = dataclasses.replace(default_facts(), **facts)
        self.b = ModelBackend(topology, f)

    @property
    def k(self) -> ModelKernel:
        return self.b.kernel

    def _where(self) -> str:
        e = self.b.last_error
        return e.where if e is not None else ""

    # -- files --------------------------------------------------------------
    def open(self, path: str) -> Res:
        r = self.b.open(path)
        return Res(r.ret, r.errno, self._where(), None)

    def fd(self, path: str) -> int:
        r = self.open(path)
        assert r.ok, (path, r)
        return r.ret

    def close(self, fd: int) -> None:
        assert self.b.close(fd).ok

    def ioctl(self, fd: int, cmd: int, arg: Any = None, size: int | None = None) -> Res:
        """``arg`` a ctypes struct (passed by address, decoded back into the same
        type), bytes, or an int passed as the value.  ``size`` extends the buffer."""
        if isinstance(arg, ctypes.Structure):
            raw = bytes(arg)
            if size is not None:
                raw = raw[:size].ljust(size, b"\0")
            r = self.b.ioctl(fd, cmd, raw)
            data = r.data.ljust(ctypes.sizeof(arg), b"\0")
            return Res(r.ret, r.errno, self._where(), type(arg).from_buffer_copy(data[: ctypes.sizeof(arg)]))
        if isinstance(arg, (bytes, bytearray, ctypes.c_int32)):
            r = self.b.ioctl(fd, cmd, bytes(arg))
            return Res(r.ret, r.errno, self._where(), r.data)
        r = self.b.ioctl(fd, cmd, arg)
        return Res(r.ret, r.errno, self._where(), None)

    def ioctl_raw(self, fd: int, cmd: int, raw: bytes) -> tuple[Res, bytes]:
        r = self.b.ioctl(fd, cmd, raw)
        return Res(r.ret, r.errno, self._where(), None), r.data

    # -- sysfs --------------------------------------------------------------
    def write(self, path: str, value: str) -> Res:
        r = self.b.sysfs_write(path, value)
        return Res(r.ret, r.errno, self._where(), None)

    def read(self, path: str) -> str | int:
        """The text, or the errno when the read fails."""
        r = self.b.sysfs_read(path)
        return r.data.decode() if r.ok else r.errno

    # -- common setups --------------------------------------------------------
    def eventfd(self) -> int:
        r = self.b.eventfd()
        assert r.ok
        return r.ret

    def eventfd_count(self, fd: int) -> int:
        r = self.b.read(fd, 8)
        return int.from_bytes(r.data, "little") if r.ok else 0

    def legacy_device(self, bdf: str = E1000, group: int = 1, iommu: int = uv.VFIO_TYPE1v2_IOMMU,
                      name: str | None = None) -> tuple[int, int, int]:
        """container, group and device fds of the legacy setup."""
        container = self.fd("/dev/vfio/vfio")
        gfd = self.fd(f"/dev/vfio/{group}")
        assert self.ioctl(gfd, uv.VFIO_GROUP_SET_CONTAINER, ctypes.c_int32(container)).ok
        assert self.ioctl(container, uv.VFIO_SET_IOMMU, iommu).ok
        r = self.ioctl(gfd, uv.VFIO_GROUP_GET_DEVICE_FD, (name or bdf).encode() + b"\0")
        assert r.ok, r
        return container, gfd, r.ret

    def cdev_device(self, cdev: str = "vfio0") -> tuple[int, int, int]:
        """iommufd, IOAS id and a bound, attached cdev device fd."""
        from harness.uapi import iommufd as ui

        iommufd = self.fd("/dev/iommu")
        alloc = self.ioctl(iommufd, ui.IOMMU_IOAS_ALLOC, ui.iommu_ioas_alloc(size=ctypes.sizeof(ui.iommu_ioas_alloc)))
        assert alloc.ok, alloc
        dev = self.fd(f"/dev/vfio/devices/{cdev}")
        bind = self.ioctl(dev, uv.VFIO_DEVICE_BIND_IOMMUFD, bind_arg(iommufd))
        assert bind.ok, bind
        att = self.ioctl(dev, uv.VFIO_DEVICE_ATTACH_IOMMUFD_PT, uv.vfio_device_attach_iommufd_pt(
            argsz=ctypes.sizeof(uv.vfio_device_attach_iommufd_pt), pt_id=alloc.s.out_ioas_id))
        assert att.ok, att
        return iommufd, alloc.s.out_ioas_id, dev

    def enable_vfs(self, n: int = 2) -> None:
        assert self.write("/sys/module/vfio_pci/parameters/enable_sriov", "Y").ok
        r = self.write(f"/sys/bus/pci/devices/{NVME}/sriov_numvfs", str(n))
        assert r.ok, r


def bind_arg(iommufd: int, **kw: Any) -> uv.vfio_device_bind_iommufd:
    kw.setdefault("argsz", ctypes.sizeof(uv.vfio_device_bind_iommufd))
    return uv.vfio_device_bind_iommufd(iommufd=iommufd, **kw)


def status(rig: Rig, gfd: int) -> Res:
    return rig.ioctl(gfd, uv.VFIO_GROUP_GET_STATUS, uv.vfio_group_status(argsz=8))
