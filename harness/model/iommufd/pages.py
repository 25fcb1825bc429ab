"""drivers/iommu/iommufd/pages.c: iopt_pages, the pinned user pages behind
one IOAS_MAP, shared by every area (and every IOAS, after IOAS_COPY) that
maps a slice of them.

A page is pinned while an access or a domain-backed area needs it (the
kernel's access_itree and domains_itree); pinning reads the user address
space at that moment, so a page pinned once stays the same page even if the
user later unmaps or remaps the address.  A pinned page is a slice of a
``Mapping``'s bytearray: the model's physical page.

The caller runs as root (CAP_IPC_LOCK), so iopt_alloc_pages() picks
IOPT_PAGES_ACCOUNT_NONE (pages.c:1172-1175) and no RLIMIT_MEMLOCK accounting
can fail: it is not modelled.
"""

from __future__ import annotations

import bisect
import errno
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..errors import Errno, cite
from ..memfd import memfd_pin_folios
from ..memory import Mapping
from .private import (
    __IOMMUFD_ACCESS_RW_SLOW_PATH,
    IOMMUFD_ACCESS_RW_KTHREAD,
    IOMMUFD_ACCESS_RW_WRITE,
    IOPT_PAGES_ACCOUNT_NONE,
    PAGE_SIZE,
    PAGES_C,
    SIZE_MAX,
    check_add_overflow,
    copy_to_user_partial,
)

if TYPE_CHECKING:
    from ..kernel import File, ModelKernel
    from .io_pagetable import IoptArea

_REGISTRY = "iommufd.pinned_pages"

# enum iopt_address_type (io_pagetable.h@7.2): where the pages come from.  6.12 has user
# memory only; 7.2's IOMMU_IOAS_MAP_FILE maps a memfd (its dma-buf kind is not modelled).
IOPT_ADDRESS_USER = 0
IOPT_ADDRESS_FILE = 1


class PagesAccess:
    """struct iopt_pages_access (io_pagetable.h:236-239)."""

    __slots__ = ("last", "start", "users")

    def __init__(self, start: int, last: int):
        self.start = start
        self.last = last
        self.users = 1


class Pin:
    """Pages [start, last] of an iopt_pages, pinned from ``mapping`` at
    byte offset ``moff`` (of page ``start``)."""

    __slots__ = ("last", "mapping", "moff", "start")

    def __init__(self, start: int, last: int, mapping: Mapping, moff: int):
        self.start = start
        self.last = last
        self.mapping = mapping
        self.moff = moff


class IoptPages:
    """struct iopt_pages (io_pagetable.h:189-207): ``npages`` pages from ``uptr`` (user
    memory) or, for IOPT_ADDRESS_FILE, from byte ``start`` of ``file`` (7.2)."""

    def __init__(self, start_byte: int, length: int, writable: bool):
        self.type = IOPT_ADDRESS_USER
        self.uptr = 0
        self.file: File | None = None
        self.start = 0
        self.npages = (length + start_byte + PAGE_SIZE - 1) // PAGE_SIZE
        self.writable = writable
        self.account_mode = IOPT_PAGES_ACCOUNT_NONE
        # domains_itree: areas whose storage_domain holds these pages
        self.domain_areas: list[IoptArea] = []
        # access_itree
        self.accesses: list[PagesAccess] = []
        self.pins: list[Pin] = []

    # -- pinning -----------------------------------------------------------
    def _users(self) -> list[tuple[int, int]]:
        spans = [(a.pages_index, a.pages_last) for a in self.domain_areas]
        spans += [(x.start, x.last) for x in self.accesses]
        return spans

    def find_pin(self, index: int) -> Pin | None:
        i = bisect.bisect_right(self.pins, index, key=lambda p: p.start) - 1
        if i >= 0 and self.pins[i].last >= index:
            return self.pins[i]
        return None

    def _gaps(self, start: int, last: int) -> Iterator[tuple[int, int]]:
        cur = start
        for p in self.pins:
            if p.last < cur:
                continue
            if p.start > last:
                break
            if p.start > cur:
                yield cur, p.start - 1
            cur = p.last + 1
            if cur > last:
                return
        if cur <= last:
            yield cur, last

    def pin(self, k: ModelKernel, start: int, last: int) -> None:
        """pfn_reader_user_pin() for every index of [start, last] not already
        pinned: all or nothing, EFAULT at an unmapped page (pages.c:792-795); file
        pages through memfd_pin_folios() (pages.c:928-929@7.2), one pin per page."""
        new: list[Pin] = []
        for gs, gl in self._gaps(start, last):
            if self.type == IOPT_ADDRESS_FILE:
                new += [Pin(gs + i, gs + i, folio, 0) for i, folio in enumerate(self._file_folios(gs, gl))]
                continue
            idx = gs
            while idx <= gl:
                addr = self.uptr + idx * PAGE_SIZE
                # FOLL_WRITE when writable (pages.c:717-718): a read-only page faults too
                m = k.mm.lookup(addr, self.writable)
                if m is None:
                    raise Errno(errno.EFAULT, cite(PAGES_C, 795))
                n = min(gl - idx + 1, (k.mm.usable_end(addr, self.writable) - addr) // PAGE_SIZE)
                new.append(Pin(idx, idx + n - 1, m, addr - m.start))
                idx += n
        if not new:
            return
        self.pins.extend(new)
        self.pins.sort(key=lambda p: p.start)
        reg = k.state.setdefault(_REGISTRY, set())
        assert isinstance(reg, set)
        reg.add(self)

    def unpin_unused(self, k: ModelKernel) -> None:
        """Drop the pins no access and no domain holds any more (the unpin half
        of iopt_area_unfill_domain / iopt_pages_unfill_xarray)."""
        if not self.pins:
            return
        users: list[list[int]] = []
        for us, ul in sorted(self._users()):
            if users and us <= users[-1][1] + 1:
                users[-1][1] = max(users[-1][1], ul)
            else:
                users.append([us, ul])
        merged: list[Pin] = []
        for p in self.pins:
            for us, ul in users:
                s, lst = max(us, p.start), min(ul, p.last)
                if s <= lst:
                    merged.append(Pin(s, lst, p.mapping, p.moff + (s - p.start) * PAGE_SIZE))
        self.pins = merged
        if not merged:
            reg = k.state.get(_REGISTRY)
            if isinstance(reg, set):
                reg.discard(self)

    def _file_folios(self, start: int, last: int) -> list[Mapping]:
        """The memfd's pages of indexes [start, last] (pin_memfd_pages(), pages.c:824-870@7.2)."""
        assert self.file is not None
        first = self.start + start * PAGE_SIZE
        return memfd_pin_folios(self.file, first, self.start + (last + 1) * PAGE_SIZE - 1)

    # -- the page behind an index ---------------------------------------------
    def page(self, k: ModelKernel, index: int) -> tuple[Mapping, int]:
        """The physical page of ``index``: the pinned one, else whatever the
        user address (or the file) maps now (a transient pin; EFAULT if nothing)."""
        p = self.find_pin(index)
        if p is not None:
            return p.mapping, p.moff + (index - p.start) * PAGE_SIZE
        if self.type == IOPT_ADDRESS_FILE:
            return self._file_folios(index, index)[0], 0
        addr = self.uptr + index * PAGE_SIZE
        m = k.mm.lookup(addr)
        if m is None:
            raise Errno(errno.EFAULT, cite(PAGES_C, 795))
        return m, addr - m.start

    def rw_slow(self, k: ModelKernel, start_byte: int, data: bytearray, write: bool) -> None:
        """iopt_pages_rw_slow() / iopt_pages_rw_page(): through the pages the
        pfn_reader finds (pinned ones first, else freshly pinned)."""
        length = len(data)
        first = start_byte // PAGE_SIZE
        last = (start_byte + length - 1) // PAGE_SIZE
        pages = [self.page(k, i) for i in range(first, last + 1)]  # fails before any copy
        pos = 0
        off = start_byte % PAGE_SIZE
        for m, moff in pages:
            n = min(PAGE_SIZE - off, length - pos)
            if write:
                m.data[moff + off : moff + off + n] = data[pos : pos + n]
            else:
                data[pos : pos + n] = m.data[moff + off : moff + off + n]
            pos += n
            off = 0


def _pages_length_ok(length: int) -> bool:
    """The length iopt_alloc_pages() takes: size_t for the iommu API, and DIV_ROUND_UP
    kept from overflow (pages.c:1148-1153; 1368-1373@7.2)."""
    return 0 < length <= SIZE_MAX - PAGE_SIZE


def iopt_alloc_pages(uptr: int, length: int, writable: bool) -> IoptPages:
    """pages.c:1142-1180 (user memory)."""
    if not _pages_length_ok(length):
        raise Errno(errno.EINVAL, cite(PAGES_C, 1153))
    if check_add_overflow(uptr, length) is None:
        raise Errno(errno.EOVERFLOW, cite(PAGES_C, 1156))
    pages = IoptPages(uptr % PAGE_SIZE, length, writable)
    pages.uptr = uptr & ~(PAGE_SIZE - 1)
    return pages


def iopt_alloc_file_pages(file: File, start_byte: int, start: int, length: int, writable: bool) -> IoptPages:
    """pages.c:1417-1431@7.2, with the length check of its iopt_alloc_pages() (1372-1373@7.2).
    Nothing here asks what the file is: a file that is not a memfd, or a range past its
    end, fails only when the pages are pinned (memfd_pin_folios())."""
    if not _pages_length_ok(length):
        raise Errno(errno.EINVAL, cite(PAGES_C, 1373, "7.2"))
    pages = IoptPages(start_byte, length, writable)
    pages.file = file
    pages.start = start - start_byte
    pages.type = IOPT_ADDRESS_FILE
    return pages


def pin_count(k: ModelKernel, mapping: Mapping, moff: int) -> int:
    """How many iopt_pages hold the physical page at ``mapping``+``moff``
    pinned: the page_ref_count() / GUP_PIN_COUNTING_BIAS that
    IOMMU_TEST_OP_MD_CHECK_REFS reads (selftest.c:944-951)."""
    reg = k.state.get(_REGISTRY)
    if not isinstance(reg, set):
        return 0
    n = 0
    for pages in reg:
        for p in pages.pins:
            if p.mapping is mapping and p.moff <= moff < p.moff + (p.last - p.start + 1) * PAGE_SIZE:
                n += 1
    return n


def iopt_pages_rw_access(k: ModelKernel, pages: IoptPages, start_byte: int, data: bytearray, flags: int) -> None:
    """pages.c:1832-1884.  The model has one process, so current->mm is always
    the pages' source mm: the copy_to/from_user() fast path, unless the
    selftest asks for the slow path (the pinned pages, pfn_reader style)."""
    write = bool(flags & IOMMUFD_ACCESS_RW_WRITE)
    change_mm = False
    if "IOMMUFD_TEST" in k.facts.config and flags & __IOMMUFD_ACCESS_RW_SLOW_PATH:
        change_mm = True
    if write and not pages.writable:
        raise Errno(errno.EPERM, cite(PAGES_C, 1845))
    if pages.type != IOPT_ADDRESS_USER:
        # pages.c:2368-2371@7.2: file pages are read and written through the pages only
        pages.rw_slow(k, start_byte, data, write)
        return
    if not (flags & IOMMUFD_ACCESS_RW_KTHREAD) and change_mm:
        if start_byte // PAGE_SIZE == (start_byte + len(data) - 1) // PAGE_SIZE:
            # iopt_pages_rw_page() (pages.c:1785-1819): pin_user_pages_remote()
            # of the page the mm has now, whatever is pinned
            addr = pages.uptr + (start_byte & ~(PAGE_SIZE - 1))
            m = k.mm.lookup(addr)
            if m is None:
                raise Errno(errno.EFAULT, cite(PAGES_C, 1802))
            off = addr - m.start + start_byte % PAGE_SIZE
            if write:
                m.data[off : off + len(data)] = data
            else:
                data[:] = m.data[off : off + len(data)]
            return
        pages.rw_slow(k, start_byte, data, write)
        return
    addr = pages.uptr + start_byte
    if write:
        if not copy_to_user_partial(k, addr, bytes(data)):
            raise Errno(errno.EFAULT, cite(PAGES_C, 1872))
        return
    try:
        data[:] = k.mm.read(addr, len(data))
    except Errno:
        raise Errno(errno.EFAULT, cite(PAGES_C, 1875)) from None
