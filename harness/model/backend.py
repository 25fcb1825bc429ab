"""The reference model behind the Backend interface."""

from __future__ import annotations

import errno
import os
from dataclasses import replace

from ..backends.base import MAX_READ, MEMFD_NAME, Backend, Facts, OpResult, Topology
from .errors import Errno, userspace_errno
from .eventfd import EventFd
from .kernel import STDIO_FDS, ModelKernel
from .memfd import memfd_create
from .subsystems import install_subsystems
from .topologies import default_facts, vm_topology


def _fail(e: Errno) -> OpResult:
    return OpResult(ret=-1, errno=userspace_errno(e.code))


class ModelBackend(Backend):
    name = "model"

    def __init__(self, topology: Topology | None = None, facts: Facts | None = None):
        self._topology0 = topology if topology is not None else vm_topology()
        self._facts = facts if facts is not None else default_facts()
        self.last_error: Errno | None = None
        # The version gates (gates.py) the last operation consulted.
        self.last_gates: frozenset[str] = frozenset()
        self.kernel = self._boot()

    def _boot(self) -> ModelKernel:
        k = ModelKernel(self._topology0.copy(), self._facts)
        install_subsystems(k)
        return k

    def _call(self, fn, *args) -> OpResult:  # type: ignore[no-untyped-def]
        self.kernel.gates_consulted.clear()
        try:
            ret = fn(*args)
        except Errno as e:
            self.last_error = e
            return _fail(e)
        finally:
            self.last_gates = frozenset(self.kernel.gates_consulted)
        self.last_error = None
        if isinstance(ret, OpResult):
            return ret
        return OpResult(ret=ret if isinstance(ret, int) else 0)

    @staticmethod
    def _none(fn, *args) -> int:  # type: ignore[no-untyped-def]
        fn(*args)
        return 0

    @staticmethod
    def _written(fn, path: str, value: str) -> int:  # type: ignore[no-untyped-def]
        fn(path, value)
        return len(value)

    # -- Backend -----------------------------------------------------------
    def facts(self) -> Facts:
        return self._facts

    def topology(self) -> Topology:
        return self.kernel.topology.copy()

    def path_exists(self, path: str) -> bool:
        return self.kernel.node_exists(path)

    def open(self, path: str, flags: int = os.O_RDWR) -> OpResult:
        return self._call(self.kernel.open, path)

    def _not_ours(self, fd: int) -> OpResult | None:
        """Like the kernel backend, which operates only on fds it opened: stdio is the process's."""
        if fd in STDIO_FDS:
            self.last_error = Errno(errno.EBADF, f"fd {fd} was not opened by this backend")
            return _fail(self.last_error)
        return None

    def close(self, fd: int) -> OpResult:
        return self._not_ours(fd) or self._call(self._none, self.kernel.close, fd)

    def ioctl(self, fd: int, request: int, arg: bytes | int | None) -> OpResult:
        refused = self._not_ours(fd)
        if refused:
            return replace(refused, data=bytes(arg)) if isinstance(arg, (bytes, bytearray)) else refused
        k = self.kernel
        if not isinstance(arg, (bytes, bytearray)):
            return self._call(k.ioctl, fd, request, int(arg or 0))
        # Like the kernel backend: the struct lives in a scratch mapping, and is
        # read back whatever the ioctl returned.
        length = max(len(arg), 1)
        addr = k.mm.mmap(length)
        try:
            k.mm.write(addr, bytes(arg))
            res = self._call(k.ioctl, fd, request, addr)
            data = k.mm.read(addr, len(arg))
        finally:
            k.mm.munmap(addr, length)
        return OpResult(ret=res.ret, errno=res.errno, data=data)

    def mmap(self, length: int, align: int = 0) -> OpResult:
        return self._call(self.kernel.mm.mmap, length, align)

    def munmap(self, addr: int, length: int) -> OpResult:
        return self._call(self._none, self.kernel.munmap, addr, length)

    def mprotect(self, addr: int, length: int, prot: int) -> OpResult:
        return self._call(self._none, self.kernel.mm.mprotect, addr, length, prot)

    def read_mem(self, addr: int, length: int) -> OpResult:
        try:
            return OpResult(data=self.kernel.mm.read(addr, length))
        except Errno as e:
            return _fail(e)

    def write_mem(self, addr: int, data: bytes) -> OpResult:
        return self._call(self._none, self.kernel.mm.write, addr, data)

    def read(self, fd: int, length: int) -> OpResult:
        refused = self._not_ours(fd)
        if refused:
            return refused
        try:
            data = self.kernel.fget(fd).read(self.kernel, min(length, MAX_READ))
        except Errno as e:
            self.last_error = e
            return _fail(e)
        return OpResult(ret=len(data), data=data)

    def write(self, fd: int, data: bytes) -> OpResult:
        return self._not_ours(fd) or self._call(lambda: self.kernel.fget(fd).write(self.kernel, data))

    def pread(self, fd: int, length: int, offset: int) -> OpResult:
        refused = self._not_ours(fd)
        if refused:
            return refused
        try:
            data = self.kernel.pread(fd, min(length, MAX_READ), offset)
        except Errno as e:
            self.last_error = e
            return _fail(e)
        self.last_error = None
        return OpResult(ret=len(data), data=data)

    def pwrite(self, fd: int, data: bytes, offset: int) -> OpResult:
        return self._not_ours(fd) or self._call(self.kernel.pwrite, fd, data, offset)

    def mmap_fd(self, fd: int, length: int, offset: int, shared: bool = True) -> OpResult:
        return self._not_ours(fd) or self._call(self.kernel.mmap_fd, fd, length, offset, shared)

    def eventfd(self, initval: int = 0) -> OpResult:
        return self._call(self.kernel.install_fd, EventFd(initval))

    def memfd(self, size: int, name: str = MEMFD_NAME) -> OpResult:
        return self._call(memfd_create, self.kernel, name, size)

    def sysfs_read(self, path: str) -> OpResult:
        try:
            text = self.kernel.sysfs_read(path)
        except Errno as e:
            self.last_error = e
            return _fail(e)
        return OpResult(ret=len(text), data=text.encode())

    def sysfs_write(self, path: str, value: str) -> OpResult:
        return self._call(self._written, self.kernel.sysfs_write, path, value)

    def reset(self) -> None:
        # A fresh boot is the cheapest way to be sure nothing leaks between cases.
        self.kernel = self._boot()
