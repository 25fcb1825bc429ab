"""drivers/iommu/iommufd/io_pagetable.c (+ io_pagetable.h, double_span.h):
the IOVA -> user-VA map of an IOAS, its allowed and reserved ranges, and the
domains it keeps filled.

Areas never overlap, so they are a list sorted by IOVA; reserved ranges may
overlap (several owners), allowed ranges may not.  The interval-tree span
iterators of the kernel are replaced by explicit merges with the same result:
used spans merge overlapping and adjacent nodes, holes are what is left.
"""

from __future__ import annotations

import bisect
import contextlib
import errno
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..errors import Errno, cite
from ..gates import DIRTY_BITMAP_WALK_ERRORS, DIRTY_BITMAP_ZERO_LENGTH, USER_PAGES_OVERFLOW_FIRST
from ..iommu.iommu import IommuDomain
from .iova_bitmap import DirtyBitmap
from .pages import IOPT_ADDRESS_FILE, IoptPages, iopt_alloc_file_pages, iopt_alloc_pages
from .private import (
    HPAGE_SIZE,
    IO_PAGETABLE_C,
    IOMMU_WRITE,
    IOPT_ALLOC_IOVA,
    PAGE_SIZE,
    PAGES_C,
    ULONG_MAX,
    check_add_overflow,
)

if TYPE_CHECKING:
    from ..kernel import ModelKernel
    from .device import IommufdAccess


def ffs_bit(x: int) -> int:
    """1UL << __ffs(x)."""
    return x & -x


def roundup_pow_of_two(x: int) -> int:
    return 1 << (x - 1).bit_length()


def merged_spans(nodes: Iterable[tuple[int, int]], first: int, last: int) -> list[tuple[int, int]]:
    """The used spans of interval_tree_span_iter over [first, last]: nodes
    clipped to the range, overlapping or adjacent ones merged."""
    out: list[list[int]] = []
    for s, lst in sorted(n for n in nodes if n[1] >= first and n[0] <= last):
        s, lst = max(s, first), min(lst, last)
        if out and s <= out[-1][1] + 1:
            if lst > out[-1][1]:
                out[-1][1] = lst
            continue
        out.append([s, lst])
    return [(a, b) for a, b in out]


def holes(nodes: Iterable[tuple[int, int]], first: int, last: int) -> list[tuple[int, int]]:
    """The holes of interval_tree_span_iter over [first, last]."""
    out: list[tuple[int, int]] = []
    cur = first
    for s, lst in merged_spans(nodes, first, last):
        if s > cur:
            out.append((cur, s - 1))
        cur = lst + 1
    if cur <= last:
        out.append((cur, last))
    return out


class IoptArea:
    """struct iopt_area (io_pagetable.h:39-51)."""

    __slots__ = (
        "iommu_prot",
        "iopt",
        "last",
        "num_accesses",
        "page_offset",
        "pages",
        "pages_index",
        "pages_last",
        "prevent_access",
        "start",
        "storage_domain",
    )

    def __init__(self, iopt: IoPagetable):
        self.iopt = iopt
        self.start = 0
        self.last = 0
        self.pages: IoptPages | None = None
        self.page_offset = 0
        self.pages_index = 0
        self.pages_last = 0
        self.iommu_prot = 0
        self.storage_domain: IommuDomain | None = None
        self.num_accesses = 0
        self.prevent_access = False

    @property
    def length(self) -> int:
        return self.last - self.start + 1

    def start_byte(self, iova: int) -> int:
        """iopt_area_start_byte() (io_pagetable.h:101-109)."""
        return (iova - self.start) + self.page_offset + self.pages_index * PAGE_SIZE

    def iova_to_index(self, iova: int) -> int:
        return self.start_byte(iova) // PAGE_SIZE


class Reserved:
    """struct iopt_reserved."""

    __slots__ = ("last", "owner", "start")

    def __init__(self, start: int, last: int, owner: object):
        self.start = start
        self.last = last
        self.owner = owner


class PagesListElm:
    """struct iopt_pages_list (io_pagetable.c:23-29)."""

    __slots__ = ("area", "length", "pages", "start_byte")

    def __init__(self, pages: IoptPages, start_byte: int, length: int):
        self.pages = pages
        self.area: IoptArea | None = None
        self.start_byte = start_byte
        self.length = length


class IoPagetable:
    """struct io_pagetable (iommufd_private.h:44-58)."""

    def __init__(self) -> None:
        # iopt_init_table() (io_pagetable.c:849-865)
        self.areas: list[IoptArea] = []
        self.allowed: list[tuple[int, int]] = []
        self.reserved: list[Reserved] = []
        self.domains: list[IommuDomain] = []
        self.access_list: dict[int, IommufdAccess] = {}
        self.disable_large_pages = False
        self.iova_alignment = 1

    # -- interval lookups -------------------------------------------------------
    def area_iter_first(self, start: int, last: int) -> IoptArea | None:
        areas = self.areas
        i = bisect.bisect_left(areas, start, key=lambda a: a.last)
        if i < len(areas) and areas[i].start <= last:
            return areas[i]
        return None

    def reserved_iter_first(self, start: int, last: int) -> Reserved | None:
        for r in self.reserved:
            if r.start <= last and r.last >= start:
                return r
        return None

    def allowed_iter_first(self, start: int, last: int) -> tuple[int, int] | None:
        for a in self.allowed:
            if a[0] <= last and a[1] >= start:
                return a
        return None

    def _insert_area(self, area: IoptArea) -> None:
        bisect.insort(self.areas, area, key=lambda a: a.start)

    def _remove_area(self, area: IoptArea) -> None:
        self.areas.remove(area)

    def iova_ranges(self) -> list[tuple[int, int]]:
        """The holes of reserved_itree over [0, ULONG_MAX] (ioas.c:83-100)."""
        return holes(((r.start, r.last) for r in self.reserved), 0, ULONG_MAX)


# -- iopt_area_contig_iter (io_pagetable.c:31-71, io_pagetable.h:147-170) ---------

class ContigIter:
    """iopt_for_each_contig_area(): ``steps`` is the (area, cur_iova) pairs the
    loop body sees, ``done`` is iopt_area_contig_done() after the loop."""

    __slots__ = ("cur_iova", "done", "steps")

    def __init__(self, iopt: IoPagetable, iova: int, last_iova: int):
        self.steps: list[tuple[IoptArea, int]] = []
        cur = iova
        area = iopt.area_iter_first(iova, iova)
        if area is None or area.pages is None:
            area = None
        while area is not None:
            self.steps.append((area, cur))
            if last_iova <= area.last:
                break
            cur = area.last + 1
            nxt = iopt.area_iter_first(cur, last_iova)
            if nxt is None or cur != nxt.start or nxt.pages is None:
                area = None
                break
            area = nxt
        self.cur_iova = cur
        self.done = area is not None and last_iova <= area.last


# -- IOVA allocation ---------------------------------------------------------------

def _alloc_iova_check_range(start: int, last: int, length: int, iova_alignment: int,
                            page_offset: int) -> int | None:
    """__alloc_iova_check_range() (io_pagetable.c:73-90): the aligned start, or None."""
    aligned = check_add_overflow(start, iova_alignment - 1)
    if aligned is None:
        return None
    aligned &= ~(iova_alignment - 1)
    aligned |= page_offset
    if aligned >= last or last - aligned < length - 1:
        return None
    return aligned


def iopt_alloc_iova(k: ModelKernel, iopt: IoPagetable, uptr: int, length: int) -> int:
    """io_pagetable.c:118-179: the first hole (in IOVA order, inside the first
    allowed span that fits) of reserved + areas that takes the aligned length.
    Never returns IOVA 0."""
    page_offset = uptr % PAGE_SIZE
    max_alignment = PAGE_SIZE
    if length == 0 or length >= ULONG_MAX // 2:
        raise Errno(errno.EOVERFLOW, cite(IO_PAGETABLE_C, 131))
    if not uptr:
        iova_alignment = roundup_pow_of_two(length)
    else:
        iova_alignment = min(roundup_pow_of_two(length), ffs_bit(uptr))
    if "TRANSPARENT_HUGEPAGE" in k.facts.config:
        max_alignment = HPAGE_SIZE
    if iova_alignment >= max_alignment:
        iova_alignment = max_alignment
    if iova_alignment < iopt.iova_alignment:
        raise Errno(errno.EINVAL, cite(IO_PAGETABLE_C, 152))

    first, last = PAGE_SIZE, ULONG_MAX - PAGE_SIZE
    if not iopt.allowed:
        allowed_spans = [(first, last)]
    else:
        allowed_spans = merged_spans(iopt.allowed, first, last)
    used = [(r.start, r.last) for r in iopt.reserved] + [(a.start, a.last) for a in iopt.areas]
    for a_start, a_last in allowed_spans:
        s = _alloc_iova_check_range(a_start, a_last, length, iova_alignment, page_offset)
        if s is None:
            continue
        for h_start, h_last in holes(used, s, a_last):
            got = _alloc_iova_check_range(h_start, h_last, length, iova_alignment, page_offset)
            if got is not None:
                return got
    raise Errno(errno.ENOSPC, cite(IO_PAGETABLE_C, 178))


def iopt_check_iova(iopt: IoPagetable, iova: int, length: int) -> None:
    """io_pagetable.c:181-202."""
    if iova & (iopt.iova_alignment - 1):
        raise Errno(errno.EINVAL, cite(IO_PAGETABLE_C, 189))
    last = check_add_overflow(iova, length - 1)
    if last is None:
        raise Errno(errno.EOVERFLOW, cite(IO_PAGETABLE_C, 192))
    if iopt.reserved_iter_first(iova, last) is not None:
        raise Errno(errno.EINVAL, cite(IO_PAGETABLE_C, 196))
    if iopt.area_iter_first(iova, last) is not None:
        raise Errno(errno.EEXIST, cite(IO_PAGETABLE_C, 200))


def _area_geometry(iopt: IoPagetable, pages: IoptPages, iova: int, start_byte: int, length: int,
                   iommu_prot: int) -> IoptArea:
    """The checks and fields of iopt_insert_area() (io_pagetable.c:207-240),
    without the insertion."""
    if iommu_prot & IOMMU_WRITE and not pages.writable:
        raise Errno(errno.EPERM, cite(IO_PAGETABLE_C, 215))
    area = IoptArea(iopt)
    area.iommu_prot = iommu_prot
    area.page_offset = start_byte % PAGE_SIZE
    if area.page_offset & (iopt.iova_alignment - 1):
        raise Errno(errno.EINVAL, cite(IO_PAGETABLE_C, 220))
    area.start = iova
    last = check_add_overflow(iova, length - 1)
    if last is None:
        raise Errno(errno.EOVERFLOW, cite(IO_PAGETABLE_C, 224))
    area.last = last
    area.pages_index = start_byte // PAGE_SIZE
    plast = check_add_overflow(start_byte, length - 1)
    if plast is None:
        raise Errno(errno.EOVERFLOW, cite(IO_PAGETABLE_C, 228))
    area.pages_last = plast // PAGE_SIZE
    return area


def iopt_alloc_area_pages(k: ModelKernel, iopt: IoPagetable, pages_list: list[PagesListElm],
                          length: int, dst_iova: int, iommu_prot: int, flags: int) -> int:
    """io_pagetable.c:254-311: choose or check the IOVA and insert the areas
    (pages still NULL).  All or nothing."""
    if (length & (iopt.iova_alignment - 1)) or not length:
        raise Errno(errno.EINVAL, cite(IO_PAGETABLE_C, 271))
    if flags & IOPT_ALLOC_IOVA:
        # The first entry guesses the ideal alignment: its user address, or its file offset
        # (io_pagetable.c:278-292@7.2).
        elm = pages_list[0]
        base = elm.pages.start if elm.pages.type == IOPT_ADDRESS_FILE else elm.pages.uptr
        dst_iova = iopt_alloc_iova(k, iopt, base + elm.start_byte, length)
    else:
        iopt_check_iova(iopt, dst_iova, length)
    iova = dst_iova
    for elm in pages_list:
        elm.area = _area_geometry(iopt, elm.pages, iova, elm.start_byte, elm.length, iommu_prot)
        iova += elm.length
    for elm in pages_list:
        assert elm.area is not None
        iopt._insert_area(elm.area)
    return dst_iova


def iopt_area_fill_domains(k: ModelKernel, area: IoptArea, pages: IoptPages) -> None:
    """pages.c:1409-1483: pin the area's pages into every domain."""
    iopt = area.iopt
    if not iopt.domains:
        return
    for d in iopt.domains:   # batch_to_domain() -> iommu_map() into each (pages.c:1409-1440)
        d.check_map(area.iommu_prot)
    pages.pin(k, area.pages_index, area.pages_last)
    area.storage_domain = iopt.domains[0]
    pages.domain_areas.append(area)


def iopt_area_unfill_domains(k: ModelKernel, area: IoptArea, pages: IoptPages) -> None:
    """pages.c:1493-1518."""
    if area.storage_domain is None:
        return
    for d in area.iopt.domains:
        d.unmap_range(area.start, area.last)
    pages.domain_areas.remove(area)
    area.storage_domain = None
    pages.unpin_unused(k)


def iopt_map_pages(k: ModelKernel, iopt: IoPagetable, pages_list: list[PagesListElm], length: int,
                   dst_iova: int, iommu_prot: int, flags: int) -> int:
    """io_pagetable.c:362-394."""
    iova = iopt_alloc_area_pages(k, iopt, pages_list, length, dst_iova, iommu_prot, flags)
    done: list[PagesListElm] = []
    try:
        for elm in pages_list:
            assert elm.area is not None
            iopt_area_fill_domains(k, elm.area, elm.pages)
            done.append(elm)
    except BaseException:
        # iopt_fill_domains_pages() undo, then iopt_free_pages_list() aborts the areas
        for elm in done:
            assert elm.area is not None
            iopt_area_unfill_domains(k, elm.area, elm.pages)
        for elm in pages_list:
            if elm.area is not None:
                iopt._remove_area(elm.area)
                elm.area = None
        raise
    for elm in pages_list:
        assert elm.area is not None
        elm.area.pages = elm.pages
    return iova


def iopt_map_user_pages(k: ModelKernel, account_mode: int, iopt: IoPagetable, iova: int, uptr: int,
                        length: int, iommu_prot: int, flags: int) -> int:
    """io_pagetable.c:415-443.  Returns the IOVA used."""
    # 7.2's iopt_alloc_user_pages() checks the user range before iopt_alloc_pages() the length
    # (the gate is consulted only where the range wraps: elsewhere the order changes nothing).
    if check_add_overflow(uptr, length) is None and k.since(USER_PAGES_OVERFLOW_FIRST):
        raise Errno(errno.EOVERFLOW, cite(PAGES_C, 1407, "7.2"))
    pages = iopt_alloc_pages(uptr, length, bool(iommu_prot & IOMMU_WRITE))
    return iopt_map_common(k, iopt, pages, iova, length, uptr - pages.uptr, iommu_prot, flags)


def iopt_map_common(k: ModelKernel, iopt: IoPagetable, pages: IoptPages, iova: int, length: int,
                    start_byte: int, iommu_prot: int, flags: int) -> int:
    """The common half of iopt_map_user_pages() (io_pagetable.c:422-443) and
    iopt_map_file_pages() (iopt_map_common(), io_pagetable.c:408-433@7.2).
    pages.c:1172-1175: as root (CAP_IPC_LOCK) pages->account_mode is NONE, so the
    IOPT_PAGES_ACCOUNT_MM upgrade of io_pagetable.c:427-429 never applies."""
    elm = PagesListElm(pages, start_byte, length)
    return iopt_map_pages(k, iopt, [elm], length, iova, iommu_prot, flags)


def iopt_map_file_pages(k: ModelKernel, iopt: IoPagetable, iova: int, fd: int, start: int, length: int,
                        iommu_prot: int, flags: int) -> int:
    """io_pagetable.c:482-527@7.2.  Returns the IOVA used.  dma_buf_get(fd) finds no
    dma-buf in the model (VFIO_DEVICE_FEATURE_DMA_BUF is not modelled), so every fd takes
    the file path: any open file is taken here, what it is matters only when its pages are
    pinned (a domain to fill, an access)."""
    if not length:
        raise Errno(errno.EINVAL, cite(IO_PAGETABLE_C, 493, "7.2"))
    if check_add_overflow(start, length - 1) is None:
        raise Errno(errno.EOVERFLOW, cite(IO_PAGETABLE_C, 495, "7.2"))
    start_byte = start % PAGE_SIZE
    file = k.files.get(fd)   # fget()
    if file is None:
        raise Errno(errno.EBADF, cite(IO_PAGETABLE_C, 516, "7.2"))
    pages = iopt_alloc_file_pages(file, start_byte, start, length, bool(iommu_prot & IOMMU_WRITE))
    return iopt_map_common(k, iopt, pages, iova, length, start_byte, iommu_prot, flags)


def iopt_get_pages(iopt: IoPagetable, iova: int, length: int) -> list[PagesListElm]:
    """io_pagetable.c:619-658."""
    if not length:
        raise Errno(errno.EINVAL, cite(IO_PAGETABLE_C, 628))
    last_iova = check_add_overflow(iova, length - 1)
    if last_iova is None:
        raise Errno(errno.EOVERFLOW, cite(IO_PAGETABLE_C, 630))
    it = ContigIter(iopt, iova, last_iova)
    out: list[PagesListElm] = []
    for area, cur in it.steps:
        last = min(last_iova, area.last)
        assert area.pages is not None
        out.append(PagesListElm(area.pages, area.start_byte(cur), last - cur + 1))
    if not it.done:
        raise Errno(errno.ENOENT, cite(IO_PAGETABLE_C, 649))
    return out


# -- unmap ------------------------------------------------------------------------

def iopt_unmap_iova_range(k: ModelKernel, iopt: IoPagetable, start: int,
                          last: int) -> tuple[int, Errno | None]:
    """io_pagetable.c:660-749.  Returns (unmapped bytes, error): areas removed
    before an error stay removed and are counted."""
    from .device import iommufd_access_notify_unmap

    unmapped = 0
    tries = 0
    while True:
        restart = False
        while True:
            area = iopt.area_iter_first(start, last)
            if area is None:
                break
            if area.pages is None:
                return unmapped, Errno(errno.EBUSY, cite(IO_PAGETABLE_C, 684))
            if area.start < start or area.last > last:
                return unmapped, Errno(errno.ENOENT, cite(IO_PAGETABLE_C, 689))
            if area.start != start:
                tries = 0
            if area.num_accesses:
                start = area.start
                area.prevent_access = True
                iommufd_access_notify_unmap(k, iopt, area.start, area.length)
                tries += 1
                if tries > 100:
                    return unmapped, Errno(errno.EDEADLOCK, cite(IO_PAGETABLE_C, 713))
                restart = True
                break
            pages = area.pages
            area.pages = None
            iopt_area_unfill_domains(k, area, pages)
            iopt._remove_area(area)
            unmapped += area.last - area.start + 1
            if area.last >= last:
                break
            start = area.last + 1
        if not restart:
            return unmapped, None


def iopt_unmap_iova(k: ModelKernel, iopt: IoPagetable, iova: int,
                    length: int) -> tuple[int, Errno | None]:
    """io_pagetable.c:761-773."""
    if not length:
        return 0, Errno(errno.EINVAL, cite(IO_PAGETABLE_C, 767))
    last = check_add_overflow(iova, length - 1)
    if last is None:
        return 0, Errno(errno.EOVERFLOW, cite(IO_PAGETABLE_C, 770))
    return iopt_unmap_iova_range(k, iopt, iova, last)


def iopt_unmap_all(k: ModelKernel, iopt: IoPagetable) -> tuple[int, Errno | None]:
    """io_pagetable.c:775-779."""
    return iopt_unmap_iova_range(k, iopt, 0, ULONG_MAX)


# -- allowed and reserved ranges ---------------------------------------------------

def iopt_set_allow_iova(iopt: IoPagetable, allowed: list[tuple[int, int]]) -> None:
    """io_pagetable.c:782-801."""
    for s, lst in allowed:
        if iopt.reserved_iter_first(s, lst) is not None:
            raise Errno(errno.EADDRINUSE, cite(IO_PAGETABLE_C, 796))
    iopt.allowed = sorted(allowed)


def iopt_reserve_iova(iopt: IoPagetable, start: int, last: int, owner: object) -> None:
    """io_pagetable.c:803-822."""
    if iopt.area_iter_first(start, last) is not None or iopt.allowed_iter_first(start, last) is not None:
        raise Errno(errno.EADDRINUSE, cite(IO_PAGETABLE_C, 812))
    bisect.insort(iopt.reserved, Reserved(start, last, owner), key=lambda r: r.start)


def iopt_remove_reserved_iova(iopt: IoPagetable, owner: object) -> None:
    """io_pagetable.c:824-847."""
    iopt.reserved = [r for r in iopt.reserved if r.owner is not owner]


def iopt_destroy_table(iopt: IoPagetable, k: ModelKernel) -> None:
    """io_pagetable.c:867-884."""
    if "IOMMUFD_TEST" in k.facts.config:
        iopt_remove_reserved_iova(iopt, None)
    iopt.allowed = []


# -- domains -----------------------------------------------------------------------

def iopt_fill_domain(k: ModelKernel, iopt: IoPagetable, domain: IommuDomain) -> None:
    """io_pagetable.c:955-1008: pin every area into the new domain; on
    failure the areas touched are put back."""
    touched: list[IoptArea] = []
    try:
        for area in iopt.areas:
            pages = area.pages
            if pages is None:
                continue
            domain.check_map(area.iommu_prot)   # iopt_area_fill_domain() -> iommu_map() (pages.c:1358-1376)
            pages.pin(k, area.pages_index, area.pages_last)
            if area.storage_domain is None:
                area.storage_domain = domain
                pages.domain_areas.append(area)
                touched.append(area)
    except BaseException:
        for area in touched:
            assert area.pages is not None
            area.pages.domain_areas.remove(area)
            area.storage_domain = None
            area.pages.unpin_unused(k)
        raise


def iopt_unfill_domain(k: ModelKernel, iopt: IoPagetable, domain: IommuDomain) -> None:
    """io_pagetable.c:895-945 (the domain is already out of iopt.domains)."""
    if iopt.domains:
        storage = iopt.domains[0]
        for area in iopt.areas:
            if area.pages is None:
                continue
            if area.storage_domain is domain:
                area.storage_domain = storage
            domain.unmap_range(area.start, area.last)
        return
    for area in iopt.areas:
        pages = area.pages
        if pages is None:
            continue
        pages.domain_areas.remove(area)
        area.storage_domain = None
        domain.unmap_range(area.start, area.last)
        pages.unpin_unused(k)


def iopt_check_iova_alignment(iopt: IoPagetable, new_iova_alignment: int) -> None:
    """io_pagetable.c:1011-1037."""
    mask = new_iova_alignment - 1
    for area in iopt.areas:
        if (area.start & mask) or (area.length & mask) or (area.page_offset & mask):
            raise Errno(errno.EADDRINUSE, cite(IO_PAGETABLE_C, 1025))
    for access in iopt.access_list.values():
        if access.iova_alignment > new_iova_alignment:
            raise Errno(errno.EADDRINUSE, cite(IO_PAGETABLE_C, 1034))


def iopt_table_add_domain(k: ModelKernel, iopt: IoPagetable, domain: IommuDomain) -> None:
    """io_pagetable.c:1039-1115."""
    new_iova_alignment = max(ffs_bit(domain.pgsize_bitmap), iopt.iova_alignment)
    if new_iova_alignment > PAGE_SIZE:
        raise Errno(errno.EINVAL, cite(IO_PAGETABLE_C, 1070))
    if new_iova_alignment != iopt.iova_alignment:
        iopt_check_iova_alignment(iopt, new_iova_alignment)
    try:
        if domain.aperture_start != 0:
            iopt_reserve_iova(iopt, 0, domain.aperture_start - 1, domain)
        if domain.aperture_end != ULONG_MAX:
            iopt_reserve_iova(iopt, domain.aperture_end + 1, ULONG_MAX, domain)
        iopt_fill_domain(k, iopt, domain)
    except BaseException:
        iopt_remove_reserved_iova(iopt, domain)
        raise
    iopt.iova_alignment = new_iova_alignment
    iopt.domains.append(domain)
    domain.iopt = iopt


def iopt_calculate_iova_alignment(iopt: IoPagetable) -> None:
    """io_pagetable.c:1117-1151."""
    new = PAGE_SIZE if iopt.disable_large_pages else 1
    for d in iopt.domains:
        new = max(ffs_bit(d.pgsize_bitmap), new)
    for access in iopt.access_list.values():
        new = max(access.iova_alignment, new)
    if new > iopt.iova_alignment:
        iopt_check_iova_alignment(iopt, new)
    iopt.iova_alignment = new


def iopt_table_remove_domain(k: ModelKernel, iopt: IoPagetable, domain: IommuDomain) -> None:
    """io_pagetable.c:1153-1184: the tail domain takes the removed one's index."""
    if domain not in iopt.domains:
        return
    index = iopt.domains.index(domain)
    tail = iopt.domains.pop()
    if index != len(iopt.domains):
        iopt.domains[index] = tail
    iopt_unfill_domain(k, iopt, domain)
    iopt_remove_reserved_iova(iopt, domain)
    with contextlib.suppress(Exception):  # WARN_ON: the alignment stays as it was
        iopt_calculate_iova_alignment(iopt)


# -- VFIO type1 (v1) splitting ------------------------------------------------------

def iopt_area_split(iopt: IoPagetable, area: IoptArea, iova: int) -> None:
    """io_pagetable.c:1195-1296."""
    alignment = iopt.iova_alignment
    last_iova = area.last
    start_iova = area.start
    new_start = iova + 1
    if iova in (start_iova, last_iova):
        return
    pages = area.pages
    if pages is None or area.prevent_access:
        raise Errno(errno.EBUSY, cite(IO_PAGETABLE_C, 1213))
    if new_start & (alignment - 1) or area.start_byte(new_start) & (alignment - 1):
        raise Errno(errno.EINVAL, cite(IO_PAGETABLE_C, 1217))
    if area.num_accesses:
        raise Errno(errno.EINVAL, cite(IO_PAGETABLE_C, 1235))
    if area.storage_domain is not None and not iopt.disable_large_pages:
        raise Errno(errno.EINVAL, cite(IO_PAGETABLE_C, 1244))
    lhs = _area_geometry(iopt, pages, start_iova, area.start_byte(start_iova),
                         new_start - start_iova, area.iommu_prot)
    rhs = _area_geometry(iopt, pages, new_start, area.start_byte(new_start),
                         last_iova - new_start + 1, area.iommu_prot)
    iopt._remove_area(area)
    iopt._insert_area(lhs)
    iopt._insert_area(rhs)
    if area.storage_domain is not None:
        pages.domain_areas.remove(area)
        pages.domain_areas.extend((lhs, rhs))
    for side in (lhs, rhs):
        side.storage_domain = area.storage_domain
        side.pages = pages


def iopt_cut_iova(iopt: IoPagetable, iovas: list[int]) -> None:
    """io_pagetable.c:1298-1317."""
    for iova in iovas:
        area = iopt.area_iter_first(iova, iova)
        if area is None:
            continue
        iopt_area_split(iopt, area, iova)


def iopt_enable_large_pages(iopt: IoPagetable) -> None:
    """io_pagetable.c:1319-1330."""
    iopt.disable_large_pages = False
    with contextlib.suppress(Exception):  # WARN_ON
        iopt_calculate_iova_alignment(iopt)


def iopt_disable_large_pages(iopt: IoPagetable) -> None:
    """io_pagetable.c:1332-1356."""
    if iopt.disable_large_pages:
        return
    if iopt.domains and iopt.areas:
        raise Errno(errno.EINVAL, cite(IO_PAGETABLE_C, 1344))
    iopt.disable_large_pages = True
    try:
        iopt_calculate_iova_alignment(iopt)
    except BaseException:
        iopt.disable_large_pages = False
        raise


# -- accesses -----------------------------------------------------------------------

def iopt_add_access(iopt: IoPagetable, access: IommufdAccess) -> None:
    """io_pagetable.c:1358-1382 (xa_alloc from index 0)."""
    new_id = 0
    while new_id in iopt.access_list:
        new_id += 1
    iopt.access_list[new_id] = access
    try:
        iopt_calculate_iova_alignment(iopt)
    except BaseException:
        del iopt.access_list[new_id]
        raise
    access.iopt_access_list_id = new_id


def iopt_remove_access(iopt: IoPagetable, access: IommufdAccess, iopt_access_list_id: int) -> None:
    """io_pagetable.c:1384-1394."""
    iopt.access_list.pop(iopt_access_list_id, None)
    with contextlib.suppress(Exception):  # WARN_ON
        iopt_calculate_iova_alignment(iopt)


# -- device reserved regions -----------------------------------------------------------

def iopt_table_enforce_dev_resv_regions(iopt: IoPagetable, dev: Any,
                                        regions: list[tuple[int, int]]) -> None:
    """io_pagetable.c:1397-1446.  ``regions`` are the device's inclusive
    (start, last) regions other than IOMMU_RESV_DIRECT_RELAXABLE; none of the
    modelled IOMMUs reports IOMMU_RESV_SW_MSI, so sw_msi_start never changes."""
    try:
        for start, last in regions:
            iopt_reserve_iova(iopt, start, last, dev)
    except BaseException:
        iopt_remove_reserved_iova(iopt, dev)
        raise


# -- dirty tracking ----------------------------------------------------------------

def iommufd_check_iova_range(k: ModelKernel, iopt: IoPagetable, iova: int, length: int, page_size: int) -> None:
    """io_pagetable.c:518-545; 7.2 (602-626@7.2) has no length check: a length of 0 is a
    length - 1 of U64_MAX, which overflows but for iova 0."""
    pgsize = iopt.iova_alignment
    if not length:
        if not k.since(DIRTY_BITMAP_ZERO_LENGTH):
            raise Errno(errno.EINVAL, cite(IO_PAGETABLE_C, 525))
        if iova:
            raise Errno(errno.EOVERFLOW, cite(IO_PAGETABLE_C, 609, "7.2"))
    last_iova = iova + ((length - 1) & ULONG_MAX)
    if last_iova > ULONG_MAX:
        raise Errno(errno.EOVERFLOW, cite(IO_PAGETABLE_C, 528))
    end = (last_iova + 1) & ULONG_MAX
    if (iova & (pgsize - 1)) or (end & (pgsize - 1)):
        raise Errno(errno.EINVAL, cite(IO_PAGETABLE_C, 535))
    if not page_size:
        raise Errno(errno.EINVAL, cite(IO_PAGETABLE_C, 538))
    if (iova & (page_size - 1)) or (end & (page_size - 1)):
        raise Errno(errno.EINVAL, cite(IO_PAGETABLE_C, 542))


def iopt_read_and_clear_dirty_data(k: ModelKernel, iopt: IoPagetable, domain: IommuDomain, flags: int,
                                   iova: int, length: int, page_size: int, data: int) -> None:
    """io_pagetable.c:547-563 with iommu_read_and_clear_dirty() (481-516) and
    __iommu_read_and_clear_dirty() (452-478).  6.12 returns what the walk met
    (iova_bitmap_for_each(), iova_bitmap.c:388-393): the driver's error, a range
    not wholly mapped, a bit iova_bitmap_set() could not record; 7.2 drops it
    (gate dirty-bitmap-walk-errors)."""
    iommufd_check_iova_range(k, iopt, iova, length, page_size)
    if not domain.dirty_ops:
        raise Errno(errno.EOPNOTSUPP, cite(IO_PAGETABLE_C, 494))
    length = ((length - 1) & ULONG_MAX) + 1   # 0 (7.2, iova 0): the whole 64-bit space
    bitmap = DirtyBitmap(k, iova, length, page_size, data)
    last_iova = iova + length - 1
    it = ContigIter(iopt, iova, last_iova)
    err: Errno | None = None
    for area, cur in it.steps:
        last = min(last_iova, area.last)
        err = domain.read_and_clear_dirty(cur, last - cur + 1, flags, bitmap)
        if err is not None:
            break
    if k.since(DIRTY_BITMAP_WALK_ERRORS):
        return
    if err is not None:
        raise err
    if not it.done:
        raise Errno(errno.EINVAL, cite(IO_PAGETABLE_C, 477))
    if bitmap.err is not None:
        raise bitmap.err


def iopt_set_dirty_tracking(iopt: IoPagetable, domain: IommuDomain, enable: bool) -> None:
    """io_pagetable.c:594-617."""
    if not domain.dirty_ops:
        raise Errno(errno.EOPNOTSUPP, cite(IO_PAGETABLE_C, 601))
    if enable:
        # iopt_clear_dirty_data() (565-592)
        for area in iopt.areas:
            if area.pages is None:
                continue
            err = domain.read_and_clear_dirty(area.start, area.length, 0, None)
            if err is not None:
                raise err
    domain.set_dirty_tracking(enable)
