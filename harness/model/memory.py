"""The model's user address space and the uaccess primitives the kernel uses on it.

Mirrors include/linux/uaccess.h: a fault on any byte is EFAULT.
"""

from __future__ import annotations

import bisect
import errno
from dataclasses import dataclass

from ..backends.base import valid_align
from .errors import Errno

PAGE_SIZE = 4096
_MMAP_BASE = 0x7F00_0000_0000


@dataclass
class Mapping:
    start: int
    data: bytearray

    @property
    def end(self) -> int:
        return self.start + len(self.data)


class UserMemory:
    """Anonymous mappings of one process, page granular."""

    def __init__(self) -> None:
        self._maps: list[Mapping] = []
        self._next = _MMAP_BASE

    def mmap(self, length: int, align: int = 0) -> int:
        if length <= 0 or not valid_align(align):
            raise Errno(errno.EINVAL, "mm/mmap.c:1276")
        length = (length + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
        addr = (self._next + align - 1) & ~(align - 1) if align else self._next
        # Leave an unmapped guard page between mappings, as a fresh mmap often does not.
        self._next = addr + length + PAGE_SIZE
        m = Mapping(addr, bytearray(length))
        bisect.insort(self._maps, m, key=lambda x: x.start)
        return addr

    def munmap(self, addr: int, length: int) -> None:
        if addr % PAGE_SIZE or length <= 0:
            raise Errno(errno.EINVAL, "mm/mmap.c:2806")
        self._maps = [m for m in self._maps if not (m.start >= addr and m.end <= addr + length)]

    def _find(self, addr: int) -> Mapping | None:
        i = bisect.bisect_right(self._maps, addr, key=lambda x: x.start) - 1
        if i >= 0 and self._maps[i].start <= addr < self._maps[i].end:
            return self._maps[i]
        return None

    def lookup(self, addr: int) -> Mapping | None:
        """The mapping that holds ``addr`` (the "page" behind a user address), or None."""
        return self._find(addr)

    def is_mapped(self, addr: int, length: int) -> bool:
        """True when every byte of [addr, addr+length) is mapped."""
        end = addr + length
        while addr < end:
            m = self._find(addr)
            if m is None:
                return False
            addr = m.end
        return True

    def read(self, addr: int, length: int) -> bytes:
        out = bytearray()
        end = addr + length
        while addr < end:
            m = self._find(addr)
            if m is None:
                raise Errno(errno.EFAULT, "include/linux/uaccess.h:copy_from_user")
            n = min(end, m.end) - addr
            out += m.data[addr - m.start : addr - m.start + n]
            addr += n
        return bytes(out)

    def write(self, addr: int, data: bytes) -> None:
        if not self.is_mapped(addr, len(data)):
            raise Errno(errno.EFAULT, "include/linux/uaccess.h:copy_to_user")
        pos = 0
        while pos < len(data):
            m = self._find(addr + pos)
            assert m is not None
            off = addr + pos - m.start
            n = min(len(data) - pos, m.end - (addr + pos))
            m.data[off : off + n] = data[pos : pos + n]
            pos += n

    # uaccess.h names, so handlers read like the kernel.
    def get_user_u32(self, addr: int) -> int:
        return int.from_bytes(self.read(addr, 4), "little")

    def get_user_s32(self, addr: int) -> int:
        return int.from_bytes(self.read(addr, 4), "little", signed=True)

    def check_zeroed_user(self, addr: int, length: int) -> bool:
        """lib/usercopy.c:check_zeroed_user(): scan in address order; False at
        the first non-zero byte, EFAULT at an unmapped byte met before it."""
        end = addr + length
        while addr < end:
            m = self._find(addr)
            if m is None:
                raise Errno(errno.EFAULT, "lib/usercopy.c:80")
            n = min(end, m.end) - addr
            chunk = bytes(memoryview(m.data)[addr - m.start : addr - m.start + n])
            if chunk.count(0) != n:
                return False
            addr += n
        return True

    def copy_struct_from_user(self, ksize: int, addr: int, usize: int) -> bytes:
        """include/linux/uaccess.h:387-408: zero-extend a short copy; E2BIG for a
        non-zero tail past ``ksize`` (checked before the copy, as the kernel does)."""
        size = min(ksize, usize)
        if usize > ksize and not self.check_zeroed_user(addr + ksize, usize - ksize):
            raise Errno(errno.E2BIG, "include/linux/uaccess.h:402")
        return self.read(addr, size).ljust(ksize, b"\0")
