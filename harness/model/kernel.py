"""The model's kernel: one process's fd table and address space, the device
nodes and sysfs files the subsystems register, and the dispatch from a
syscall to the file object that serves it.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Callable

from .. import uapi
from ..backends.base import Facts, Topology
from .errors import Errno, cite
from .gates import gate_open
from .memory import PAGE_SIZE, UserMemory

# fs/file.c: the lowest free descriptor; 0-2 are taken by stdio.
_FIRST_FD = 3
_U64 = (1 << 64) - 1


def _loff_t(offset: int) -> int:
    """A file offset as the syscall's signed loff_t takes it (2**63 and above wrap)."""
    offset &= _U64
    return offset - (1 << 64) if offset >= 1 << 63 else offset


def _rw_verify_area(pos: int, count: int) -> None:
    """rw_verify_area() (fs/read_write.c:448-470) for a file without unsigned offsets."""
    if count >= 1 << 63:
        raise Errno(errno.EINVAL, cite("fs/read_write.c", 454))
    if pos + count >= 1 << 63:
        raise Errno(errno.EINVAL, cite("fs/read_write.c", 466))


class File:
    """An open file.  Subsystems subclass it; the default answers mirror a
    file_operations without the hook."""

    kind = "file"

    def ioctl(self, k: ModelKernel, cmd: int, arg: int) -> int:
        raise Errno(errno.ENOTTY, cite("fs/ioctl.c", 46))

    def read(self, k: ModelKernel, length: int) -> bytes:
        raise Errno(errno.EINVAL, cite("fs/read_write.c", 556))

    def write(self, k: ModelKernel, data: bytes) -> int:
        raise Errno(errno.EINVAL, cite("fs/read_write.c", 670))

    # FMODE_PREAD | FMODE_PWRITE: pread(2)/pwrite(2) reach the file (else ESPIPE).
    positional = False

    def pread(self, k: ModelKernel, length: int, pos: int) -> bytes:
        raise Errno(errno.EINVAL, cite("fs/read_write.c", 556))

    def pwrite(self, k: ModelKernel, data: bytes, pos: int) -> int:
        raise Errno(errno.EINVAL, cite("fs/read_write.c", 670))

    def mmap(self, k: ModelKernel, length: int, pgoff: int, shared: bool) -> None:
        """The file's mmap hook: raise to refuse the mapping (a file without one: ENODEV)."""
        raise Errno(errno.ENODEV, cite("mm/mmap.c", 424))

    def release(self, k: ModelKernel) -> None:
        """Called when the last reference goes away (close of the last fd)."""


class Stdio(File):
    """Descriptors 0-2, which every process starts with (a tty, a pipe, /dev/null): an fd
    field of a struct that names one reaches fdget() and fails the subsystem's type check
    (EBADFD for a BIND_IOMMUFD of fd 0), where a closed number would be EBADF."""

    kind = "stdio"


STDIO_FDS = (0, 1, 2)

Opener = Callable[["ModelKernel", "re.Match[str]"], File]
SysfsReader = Callable[["ModelKernel", "re.Match[str]"], str]
SysfsWriter = Callable[["ModelKernel", "re.Match[str]", str], None]


def sysfs_store(store: SysfsWriter) -> SysfsWriter:
    """The sysfs write path every store runs behind: at most a page is passed
    (kernfs_fop_write_iter(), fs/kernfs/file.c:318-322) and an empty write never
    reaches the store (sysfs_kf_write(), fs/sysfs/file.c:137-138)."""

    def write(k: ModelKernel, m: re.Match[str], buf: str) -> None:
        if not buf:
            return
        store(k, m, buf[:PAGE_SIZE])

    return write


class ModelKernel:
    def __init__(self, topology: Topology, facts: Facts):
        self.facts = facts
        self.topology = topology
        self.mm = UserMemory()
        self.files: dict[int, File] = {}
        # The file mappings (mmap of an fd): address -> (length, file).
        self.file_maps: dict[int, tuple[int, File]] = {}
        # A File can sit behind several fds (never, today: no dup()), but
        # subsystems hold references too (a group holds its container): count them.
        self._refs: dict[int, int] = {}
        self._nodes: list[tuple[re.Pattern[str], Opener, Callable[[ModelKernel, re.Match[str]], bool]]] = []
        self._sysfs: list[tuple[re.Pattern[str], SysfsReader | None, SysfsWriter | None]] = []
        # Subsystems keep their state here, keyed by a name of their choosing.
        self.state: dict[str, object] = {}
        # The version gates (gates.py) consulted since the backend last cleared this.
        self.gates_consulted: set[str] = set()
        # The uAPI of this kernel's series: struct sizes and layouts as its handlers see them.
        self.abi = uapi.for_kernel(facts.kernel)
        for fd in STDIO_FDS:
            self.files[fd] = Stdio()
            self.get_file(self.files[fd])

    def since(self, gate: str) -> bool:
        """Whether this kernel's release has the new behaviour of version gate ``gate``."""
        self.gates_consulted.add(gate)
        return gate_open(self.facts.kernel, gate)

    # -- registration ------------------------------------------------------
    def register_node(
        self,
        pattern: str,
        opener: Opener,
        exists: Callable[[ModelKernel, re.Match[str]], bool] = lambda k, m: True,
    ) -> None:
        self._nodes.append((re.compile(pattern + r"\Z"), opener, exists))

    def register_sysfs(self, pattern: str, reader: SysfsReader | None, writer: SysfsWriter | None) -> None:
        self._sysfs.append((re.compile(pattern + r"\Z"), reader, writer))

    # -- files -------------------------------------------------------------
    def node_exists(self, path: str) -> bool:
        for pat, _, exists in self._nodes:
            m = pat.match(path)
            if m and exists(self, m):
                return True
        return any(pat.match(path) for pat, _, _ in self._sysfs)

    def open(self, path: str) -> int:
        for pat, opener, exists in self._nodes:
            m = pat.match(path)
            if m and exists(self, m):
                return self.install_fd(opener(self, m))
        raise Errno(errno.ENOENT, "fs/namei.c")

    def install_fd(self, f: File) -> int:
        fd = _FIRST_FD
        while fd in self.files:
            fd += 1
        self.files[fd] = f
        self.get_file(f)
        return fd

    def fget(self, fd: int) -> File:
        f = self.files.get(fd)
        if f is None:
            raise Errno(errno.EBADF, "fs/file.c:fdget")
        return f

    def get_file(self, f: File) -> None:
        self._refs[id(f)] = self._refs.get(id(f), 0) + 1

    def put_file(self, f: File) -> None:
        n = self._refs.get(id(f), 0) - 1
        if n > 0:
            self._refs[id(f)] = n
            return
        self._refs.pop(id(f), None)
        f.release(self)

    def close(self, fd: int) -> None:
        f = self.files.pop(fd, None)
        if f is None:
            raise Errno(errno.EBADF, cite("fs/file.c", 663))
        self.put_file(f)

    def ioctl(self, fd: int, cmd: int, arg: int) -> int:
        return self.fget(fd).ioctl(self, cmd, arg)

    # -- positional I/O and file mappings ----------------------------------
    def pread(self, fd: int, length: int, pos: int) -> bytes:
        """ksys_pread64() (fs/read_write.c:751-766) and vfs_read()'s rw_verify_area()."""
        pos = _loff_t(pos)
        if pos < 0:
            raise Errno(errno.EINVAL, cite("fs/read_write.c", 758))
        f = self.fget(fd)
        if not f.positional:
            raise Errno(errno.ESPIPE, cite("fs/read_write.c", 762))
        _rw_verify_area(pos, length)
        return f.pread(self, length, pos)

    def pwrite(self, fd: int, data: bytes, pos: int) -> int:
        """ksys_pwrite64() (fs/read_write.c:785-800)."""
        pos = _loff_t(pos)
        if pos < 0:
            raise Errno(errno.EINVAL, cite("fs/read_write.c", 792))
        f = self.fget(fd)
        if not f.positional:
            raise Errno(errno.ESPIPE, cite("fs/read_write.c", 796))
        _rw_verify_area(pos, len(data))
        return f.pwrite(self, data, pos)

    def mmap_fd(self, fd: int, length: int, offset: int, shared: bool) -> int:
        """mmap(2) of a file, read/write: the syscall's offset check
        (arch/x86/kernel/sys_x86_64.c:83-84), do_mmap()'s (mm/mmap.c:295-321), then
        the file's hook.  The mapping holds a reference on the file until unmapped."""
        offset &= _U64
        if offset % PAGE_SIZE:
            raise Errno(errno.EINVAL, cite("arch/x86/kernel/sys_x86_64.c", 84))
        f = self.fget(fd)
        if not length:
            raise Errno(errno.EINVAL, cite("mm/mmap.c", 296))
        pages = ((length + PAGE_SIZE - 1) & _U64) // PAGE_SIZE
        if not pages:
            raise Errno(errno.ENOMEM, cite("mm/mmap.c", 318))
        pgoff = offset // PAGE_SIZE
        if pgoff + pages > _U64:
            raise Errno(errno.EOVERFLOW, cite("mm/mmap.c", 322))
        addr = self.mm.mmap(length)   # get_unmapped_area() runs before the file's hook
        try:
            f.mmap(self, length, pgoff, shared)
        except Errno:
            self.mm.munmap(addr, length)
            raise
        self.file_maps[addr] = (pages * PAGE_SIZE, f)
        self.get_file(f)
        return addr

    def munmap(self, addr: int, length: int) -> None:
        """munmap(2): a file mapping whose last page it removes drops its reference on the file."""
        self.mm.munmap(addr, length)
        for start, (size, f) in list(self.file_maps.items()):
            if not self.mm.any_mapped(start, size):
                del self.file_maps[start]
                self.put_file(f)

    # -- sysfs -------------------------------------------------------------
    def sysfs_read(self, path: str) -> str:
        for pat, reader, _ in self._sysfs:
            m = pat.match(path)
            if m:
                if reader is None:
                    raise Errno(errno.EACCES, "fs/sysfs/file.c")
                return reader(self, m)
        raise Errno(errno.ENOENT, "fs/sysfs")

    def sysfs_write(self, path: str, value: str) -> None:
        for pat, _, writer in self._sysfs:
            m = pat.match(path)
            if m:
                if writer is None:
                    raise Errno(errno.EACCES, "fs/sysfs/file.c")
                writer(self, m, value)
                return
        raise Errno(errno.ENOENT, "fs/sysfs")
