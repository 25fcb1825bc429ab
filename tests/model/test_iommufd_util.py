"""Helpers for the iommufd model tests: a ModelKernel with only iommufd
installed, and ioctl calls with ctypes-packed structs in the model's user
memory.  (A test file by name so it may live beside the tests.)"""

from __future__ import annotations

import ctypes
import dataclasses
import errno
from typing import Any

from harness.backends.base import Facts, Topology
from harness.model import iommufd
from harness.model.errors import Errno, userspace_errno
from harness.model.kernel import ModelKernel
from harness.model.topologies import default_facts
from harness.uapi import iommufd_test as st
from harness.uapi.abi import IOCTLS

PAGE_SIZE = 4096


class Result:
    def __init__(self, ret: int, err: int, where: str, struct: Any):
        self.ret = ret
        self.errno = err
        self.where = where
        self.s = struct

    @property
    def ok(self) -> bool:
        return self.errno == 0

    def __repr__(self) -> str:
        return f"Result(ret={self.ret}, errno={errno.errorcode.get(self.errno, self.errno)}, where={self.where})"


def make_kernel(**facts: Any) -> ModelKernel:
    f: Facts = dataclasses.replace(default_facts(), **facts)
    k = ModelKernel(Topology(), f)
    iommufd.install(k)
    return k


class Rig:
    """One process with /dev/iommu open."""

    def __init__(self, **facts: Any):
        self.k = make_kernel(**facts)
        self.fd = self.k.open("/dev/iommu")

    # -- memory -----------------------------------------------------------------------
    def mmap(self, length: int) -> int:
        return self.k.mm.mmap(length)

    def buffer(self, data: bytes) -> int:
        addr = self.k.mm.mmap(max(len(data), 1))
        self.k.mm.write(addr, data)
        return addr

    # -- syscalls ------------------------------------------------------------------------
    def raw_ioctl(self, cmd: int, arg: int, fd: int | None = None) -> Result:
        try:
            ret = self.k.ioctl(self.fd if fd is None else fd, cmd, arg)
        except Errno as e:
            return Result(-1, userspace_errno(e.code), e.where, None)
        return Result(ret, 0, "", None)

    def call(self, struct: ctypes.Structure, cmd: int, extra: bytes = b"", fd: int | None = None) -> Result:
        """Copy ``struct`` (+ ``extra``) to user memory, ioctl, read it back."""
        data = bytes(struct) + extra
        addr = self.buffer(data)
        res = self.raw_ioctl(cmd, addr, fd)
        back = self.k.mm.read(addr, len(data))
        res.s = type(struct).from_buffer_copy(back[: ctypes.sizeof(struct)])
        return res

    def io(self, name: str, **fields: Any) -> Result:
        """An iommufd ioctl by name, ``size`` defaulting to sizeof."""
        op = IOCTLS[name]
        assert op.struct is not None
        s = op.struct()
        s.size = op.sizeof
        for key, val in fields.items():
            setattr(s, key, val)
        return self.call(s, op.number)

    def test(self, op: int, id: int = 0, **members: Any) -> Result:
        """IOMMU_TEST_CMD; ``members`` as union_member=dict(field=value)."""
        cmd = st.iommu_test_cmd()
        cmd.size = ctypes.sizeof(cmd)
        cmd.op = op
        cmd.id = id
        for member, fields in members.items():
            sub = getattr(cmd, member)
            for key, val in fields.items():
                setattr(sub, key, val)
        return self.call(cmd, st.IOMMU_TEST_CMD)

    # -- common steps ------------------------------------------------------------------
    def ioas(self) -> int:
        r = self.io("IOMMU_IOAS_ALLOC")
        assert r.ok, r
        return int(r.s.out_ioas_id)

    def mock_domain(self, ioas_id: int, flags: int = 0) -> tuple[int, int, int]:
        """(stdev_id, hwpt_id, idev_id)."""
        if flags:
            r = self.test(st.IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS, ioas_id, mock_domain_flags={"dev_flags": flags})
        else:
            r = self.test(st.IOMMU_TEST_OP_MOCK_DOMAIN, ioas_id)
        assert r.ok, r
        m = r.s.mock_domain
        return int(m.out_stdev_id), int(m.out_hwpt_id), int(m.out_idev_id)

    def map(self, ioas_id: int, user_va: int, length: int, iova: int | None = None,
            flags: int = 0x6) -> Result:
        if iova is not None:
            flags |= 1  # IOMMU_IOAS_MAP_FIXED_IOVA
        return self.io("IOMMU_IOAS_MAP", ioas_id=ioas_id, user_va=user_va, length=length,
                       iova=iova or 0, flags=flags)

    def unmap(self, ioas_id: int, iova: int, length: int) -> Result:
        return self.io("IOMMU_IOAS_UNMAP", ioas_id=ioas_id, iova=iova, length=length)

    def destroy(self, id: int) -> Result:
        return self.io("IOMMU_DESTROY", id=id)


def test_model_mmap_align() -> None:
    from harness.model.errors import Errno
    from harness.model.memory import UserMemory

    mm = UserMemory()
    a = mm.mmap(0x3000)
    b = mm.mmap(0x5000, 2 << 20)
    assert b % (2 << 20) == 0 and b >= a + 0x3000
    assert mm.is_mapped(b, 0x5000) and not mm.is_mapped(b + 0x5000, 1)
    import pytest

    with pytest.raises(Errno):
        mm.mmap(0x1000, 0x3000)
