"""The model's user address space and the uaccess primitives the kernel uses on it.

Mirrors include/linux/uaccess.h: a fault on any byte is EFAULT.  A page mprotect(2) made
PROT_NONE faults on a read, a page without PROT_WRITE on a write (x86's protection_map,
arch/x86/mm/pgprot.c:9-16: read, write or exec makes a page readable), as an unmapped one
does; get_user_pages() asks the same of the pages it pins (mm/gup.c:1292-1316).
"""

from __future__ import annotations

import bisect
import errno
from dataclasses import dataclass
from typing import Any

from ..backends.base import valid_align
from ..uapi.mman import MPROTECT_BITS, PROT_READ, PROT_WRITE, prot_allows, set_protection
from .errors import Errno, cite

PAGE_SIZE = 4096
_MMAP_BASE = 0x7F00_0000_0000
# arch/x86/include/asm/page_64_types.h: TASK_SIZE_MAX with 4-level paging, (1 << 47) - PAGE_SIZE
TASK_SIZE = (1 << 47) - PAGE_SIZE
_U64 = (1 << 64) - 1


class PageBytes:
    """The bytes of an anonymous mapping: zeroes until written, and a page takes memory only
    once a byte of it is written (the kernel maps the zero page until the first write fault),
    so a case may map a gigabyte and touch one page of it, as on a kernel."""

    def __init__(self, length: int):
        self._len = length
        self._pages: dict[int, bytearray] = {}

    def __len__(self) -> int:
        return self._len

    def _range(self, key: slice) -> tuple[int, int]:
        start, stop, step = key.indices(self._len)
        if step != 1:
            raise ValueError("a mapping is sliced with step 1")
        return start, max(start, stop)

    def _index(self, key: int) -> int:
        if not -self._len <= key < self._len:
            raise IndexError(key)
        return key % self._len

    def _written(self, start: int, stop: int) -> list[int]:
        """The indexes of the written pages holding bytes of [start, stop)."""
        if start >= stop:
            return []
        first, last = start // PAGE_SIZE, (stop - 1) // PAGE_SIZE
        if last - first < len(self._pages):
            return [i for i in range(first, last + 1) if i in self._pages]
        return sorted(i for i in self._pages if first <= i <= last)

    def __getitem__(self, key: int | slice) -> Any:
        if isinstance(key, int):
            key = self._index(key)
            page = self._pages.get(key // PAGE_SIZE)
            return page[key % PAGE_SIZE] if page is not None else 0
        start, stop = self._range(key)
        out = bytearray(stop - start)
        for i in self._written(start, stop):
            base = i * PAGE_SIZE
            lo, hi = max(start, base), min(stop, base + PAGE_SIZE)
            out[lo - start:hi - start] = self._pages[i][lo - base:hi - base]
        return out

    def __setitem__(self, key: int | slice, value: Any) -> None:
        if isinstance(key, int):
            key = self._index(key)
            self[key:key + 1] = bytes([value])
            return
        start, stop = self._range(key)
        data = bytes(value)
        if len(data) != stop - start:
            raise ValueError("a mapping's length does not change")
        pos = start
        while pos < stop:
            index, off = divmod(pos, PAGE_SIZE)
            n = min(PAGE_SIZE - off, stop - pos)
            chunk = data[pos - start:pos - start + n]
            page = self._pages.get(index)
            if page is None and any(chunk):
                page = self._pages[index] = bytearray(PAGE_SIZE)
            if page is not None:
                page[off:off + n] = chunk
            pos += n

    def pages(self, start: int, stop: int) -> PageBytes:
        """The page-aligned bytes [start, stop) as a mapping of their own, sharing the pages
        written so far (what stays of a mapping munmap(2) cut a hole in)."""
        out = PageBytes(stop - start)
        first = start // PAGE_SIZE
        out._pages = {i - first: p for i, p in self._pages.items() if start <= i * PAGE_SIZE < stop}
        return out

    def zeroed(self, start: int, stop: int) -> bool:
        """Whether bytes [start, stop) are all zero (pages never written are)."""
        for i in self._written(start, stop):
            base = i * PAGE_SIZE
            if any(self._pages[i][max(start, base) - base:min(stop, base + PAGE_SIZE) - base]):
                return False
        return True


@dataclass
class Mapping:
    start: int
    data: bytearray | PageBytes

    @property
    def end(self) -> int:
        return self.start + len(self.data)


def _page_align(n: int) -> int:
    return (n + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)


class UserMemory:
    """Anonymous mappings of one process, page granular."""

    def __init__(self) -> None:
        self._maps: list[Mapping] = []
        self._next = _MMAP_BASE
        # Page number -> protection, for the pages mprotect() changed from read/write.
        self._prot: dict[int, int] = {}

    def mmap(self, length: int, align: int = 0) -> int:
        """mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS) of a
        ``length`` the caller passes as a size_t."""
        if length <= 0 or not valid_align(align):
            raise Errno(errno.EINVAL, cite("mm/mmap.c", 296))
        length = _page_align(length) & _U64
        if not length:     # PAGE_ALIGN() wrapped past the top of size_t
            raise Errno(errno.ENOMEM, cite("mm/mmap.c", "316-318"))
        if length > TASK_SIZE:
            raise Errno(errno.ENOMEM, cite("mm/mmap.c", "893-894"))
        addr = (self._next + align - 1) & ~(align - 1) if align else self._next
        if addr + length > TASK_SIZE:   # no hole left this high (the model never reuses one)
            raise Errno(errno.ENOMEM, cite("mm/mmap.c", "770-771"))
        # Leave an unmapped guard page between mappings, as a fresh mmap often does not.
        self._next = addr + length + PAGE_SIZE
        m = Mapping(addr, PageBytes(length))
        bisect.insort(self._maps, m, key=lambda x: x.start)
        return addr

    def munmap(self, addr: int, length: int) -> None:
        """munmap(2): every page of [addr, addr + PAGE_ALIGN(length)) goes, a mapping it
        covers in part keeps the rest (mm/vma.c:1406-1411, then the split)."""
        if addr % PAGE_SIZE or length <= 0:
            raise Errno(errno.EINVAL, cite("mm/vma.c", "1406-1407"))
        end = addr + _page_align(length)
        kept: list[Mapping] = []
        for m in self._maps:
            if m.end <= addr or m.start >= end:
                kept.append(m)
                continue
            if not isinstance(m.data, PageBytes):   # not cut (the model makes none it could)
                if not (m.start >= addr and m.end <= end):
                    kept.append(m)
                continue
            if m.start < addr:
                kept.append(Mapping(m.start, m.data.pages(0, addr - m.start)))
            if end < m.end:
                kept.append(Mapping(end, m.data.pages(end - m.start, m.end - m.start)))
        self._maps = sorted(kept, key=lambda x: x.start)
        for page in [p for p in self._prot if addr <= p * PAGE_SIZE < end]:
            del self._prot[page]

    def mprotect(self, addr: int, length: int, prot: int) -> None:
        """do_mprotect_pkey() (mm/mprotect.c:710-855) on anonymous mappings: the pages up to
        the first hole take ``prot``, then the hole is ENOMEM."""
        if addr % PAGE_SIZE:
            raise Errno(errno.EINVAL, cite("mm/mprotect.c", "727-728"))
        if not length:
            return
        end = addr + _page_align(length)
        if end <= addr or end > _U64:
            raise Errno(errno.ENOMEM, cite("mm/mprotect.c", "733-734"))
        if prot & ~MPROTECT_BITS:
            raise Errno(errno.EINVAL, cite("mm/mprotect.c", "735-736"))
        if self._find(addr) is None:
            raise Errno(errno.ENOMEM, cite("mm/mprotect.c", "753-755"))
        pos = addr
        while pos < end:
            m = self._find(pos)
            if m is None:
                raise Errno(errno.ENOMEM, cite("mm/mprotect.c", "787-788"))
            set_protection(self._prot, range(pos // PAGE_SIZE, min(m.end, end) // PAGE_SIZE), prot)
            pos = m.end

    def _usable(self, addr: int, write: bool) -> tuple[Mapping, int] | None:
        """The mapping holding ``addr`` and the end of the run of pages from ``addr`` on
        that allow the access (None: ``addr`` itself faults)."""
        m = self._find(addr)
        if m is None:
            return None
        if not self._prot:
            return m, m.end
        page = addr // PAGE_SIZE
        if not prot_allows(self._prot.get(page, PROT_READ | PROT_WRITE), write):  # arch/x86/mm/pgprot.c:9-16
            return None
        stops = [p * PAGE_SIZE for p, prot in self._prot.items()
                 if page < p and p * PAGE_SIZE < m.end and not prot_allows(prot, write)]
        return m, min(stops, default=m.end)

    def _find(self, addr: int) -> Mapping | None:
        i = bisect.bisect_right(self._maps, addr, key=lambda x: x.start) - 1
        if i >= 0 and self._maps[i].start <= addr < self._maps[i].end:
            return self._maps[i]
        return None

    def lookup(self, addr: int, write: bool = False) -> Mapping | None:
        """The mapping that holds ``addr`` (the "page" behind a user address), or None,
        also when the page does not allow the access."""
        found = self._usable(addr, write)
        return found[0] if found else None

    def usable_end(self, addr: int, write: bool = False) -> int:
        """Where the run of mapped pages from ``addr`` on that allow the access ends
        (``addr`` itself when it faults): get_user_pages() pins up to there."""
        found = self._usable(addr, write)
        return found[1] if found else addr

    def any_mapped(self, addr: int, length: int) -> bool:
        """True when some byte of [addr, addr+length) is mapped."""
        i = bisect.bisect_left(self._maps, addr + length, key=lambda x: x.start) - 1
        return i >= 0 and self._maps[i].end > addr

    def is_mapped(self, addr: int, length: int, write: bool = False) -> bool:
        """True when every byte of [addr, addr+length) is mapped (and allows the access)."""
        end = addr + length
        while addr < end:
            found = self._usable(addr, write)
            if found is None:
                return False
            addr = found[1]
        return True

    def read(self, addr: int, length: int) -> bytes:
        out = bytearray()
        end = addr + length
        while addr < end:
            found = self._usable(addr, False)
            if found is None:
                raise Errno(errno.EFAULT, "include/linux/uaccess.h:copy_from_user")
            m, stop = found
            n = min(end, stop) - addr
            out += m.data[addr - m.start : addr - m.start + n]
            addr += n
        return bytes(out)

    def write(self, addr: int, data: bytes) -> None:
        if not self.is_mapped(addr, len(data), write=True):
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
            found = self._usable(addr, False)
            if found is None:
                raise Errno(errno.EFAULT, cite("lib/usercopy.c", 80))
            m, stop = found
            n = min(end, stop) - addr
            lo = addr - m.start
            if isinstance(m.data, PageBytes):
                if not m.data.zeroed(lo, lo + n):
                    return False
            elif m.data[lo : lo + n].count(0) != n:
                return False
            addr += n
        return True

    def copy_struct_from_user(self, ksize: int, addr: int, usize: int) -> bytes:
        """include/linux/uaccess.h:387-408: zero-extend a short copy; E2BIG for a
        non-zero tail past ``ksize`` (checked before the copy, as the kernel does)."""
        size = min(ksize, usize)
        if usize > ksize and not self.check_zeroed_user(addr + ksize, usize - ksize):
            raise Errno(errno.E2BIG, cite("include/linux/uaccess.h", 402))
        return self.read(addr, size).ljust(ksize, b"\0")
