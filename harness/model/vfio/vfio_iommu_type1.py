"""drivers/vfio/vfio_iommu_type1.c: the type1 / type1v2 backend of the legacy
container: IOMMU domains per attached group, the usable IOVA list (domain
aperture minus reserved regions), DMA mappings with pinning of the user pages,
MAP/UNMAP/GET_INFO/DIRTY_PAGES.

The IOMMU is the one the group's devices sit behind (``k.facts.iommu``); its
driver's capabilities come from the iommu core (harness/model/iommu/), as
iommufd sees them.  No device DMA happens in the model, so dirty tracking reports what the
kernel reports for devices that cannot track: every mapped page dirty."""

from __future__ import annotations

import ctypes
import errno
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...uapi import vfio as uv
from ..errors import Errno, cite
from ..gates import TYPE1_NESTING_REMOVED, TYPE1_OVERFLOW_EOVERFLOW
from ..kernel import ModelKernel, sysfs_store
from ..lib.kstrtox import kstrtouint
from .container import VfioIommuDriver
from .vfio_main import (
    VfioInfoCap,
    copy_from_user,
    copy_to_user,
    get_struct,
    offsetofend,
    put_struct,
)

if TYPE_CHECKING:
    from .group import VfioGroup

TYPE1_C = "drivers/vfio/vfio_iommu_type1.c"
PAGE_SIZE = 4096
PAGE_MASK = ~(PAGE_SIZE - 1) & ((1 << 64) - 1)
U64_MAX = (1 << 64) - 1
SIZE_MAX = U64_MAX
INT_MAX = (1 << 31) - 1
# arch/x86: TASK_SIZE_MAX with 4-level paging, USER_PTR_MAX (cpu/common.c:2486)
USER_PTR_MAX = (1 << 47) - PAGE_SIZE
# vfio_iommu_type1.c:58: the dma_entry_limit module parameter's default (U16_MAX)
DMA_ENTRY_LIMIT = 0xFFFF
# vfio_iommu_type1.c:141-152
DIRTY_BITMAP_PAGES_MAX = INT_MAX
IOMMU_READ = 1 << 0
IOMMU_WRITE = 1 << 1


def DIRTY_BITMAP_BYTES(n: int) -> int:
    """ALIGN(n, 64) / 8."""
    return ((n + 63) & ~63) // 8


DIRTY_BITMAP_SIZE_MAX = DIRTY_BITMAP_BYTES(DIRTY_BITMAP_PAGES_MAX)


def _ffs(x: int) -> int:
    """__ffs(): the index of the lowest set bit."""
    return (x & -x).bit_length() - 1


def access_ok(addr: int, size: int) -> bool:
    """arch/x86/include/asm/uaccess_64.h:98-107."""
    total = (addr + size) & U64_MAX
    return total <= USER_PTR_MAX and total >= addr


@dataclass(eq=False)
class VfioDma:
    """struct vfio_dma."""

    iova: int
    vaddr: int
    size: int
    prot: int
    iommu_mapped: bool = False
    vaddr_invalid: bool = False
    bitmap: int | None = None  # dirty bits, bit n = page n of the mapping


@dataclass(eq=False)
class VfioDomain:
    """struct vfio_domain: an IOMMU domain and the groups attached to it."""

    ops: Any
    enforce_cache_coherency: bool
    aperture_start: int
    aperture_end: int
    pgsize_bitmap: int
    groups: list[VfioGroup] = field(default_factory=list)


@dataclass(eq=False)
class VfioIommu:
    """struct vfio_iommu."""

    v2: bool
    nesting: bool
    domain_list: list[VfioDomain] = field(default_factory=list)
    iova_list: list[list[int]] = field(default_factory=list)  # [start, end] inclusive, sorted
    dma_list: list[VfioDma] = field(default_factory=list)     # sorted by iova
    dma_avail: int = DMA_ENTRY_LIMIT
    vaddr_invalid_count: int = 0
    pgsize_bitmap: int = PAGE_MASK
    num_non_pinned_groups: int = 0
    dirty_page_tracking: bool = False

    # -- the dma tree -------------------------------------------------------
    def find_dma(self, start: int, size: int) -> VfioDma | None:
        """vfio_find_dma() (:165-182), its comparisons as written: with a zero
        size it finds a mapping that starts strictly below ``start``."""
        for dma in self.dma_list:
            if start + size <= dma.iova or start >= dma.iova + dma.size:
                continue
            return dma
        return None

    def first_index(self, start: int, size: int) -> int | None:
        """vfio_find_dma_first_node() (:184-207)."""
        for i, dma in enumerate(self.dma_list):
            if start < dma.iova + dma.size:
                if size and dma.iova >= start + size:
                    return None
                return i
        return None

    def link_dma(self, dma: VfioDma) -> None:
        self.dma_list.append(dma)
        self.dma_list.sort(key=lambda d: d.iova)


def vfio_update_pgsize_bitmap(iommu: VfioIommu) -> None:
    """:1126-1147."""
    bitmap = U64_MAX
    for d in iommu.domain_list:
        bitmap &= d.pgsize_bitmap
    if bitmap & ~PAGE_MASK:
        bitmap &= PAGE_MASK
        bitmap |= PAGE_SIZE
    iommu.pgsize_bitmap = bitmap


# -- the IOVA list (:1923-2135) ----------------------------------------------------------

def vfio_iommu_aper_conflict(iommu: VfioIommu, start: int, end: int) -> bool:
    iova = iommu.iova_list
    if not iova:
        return False
    first, last = iova[0], iova[-1]
    if start > last[1] or end < first[0]:
        return True
    if start > first[0] and iommu.find_dma(first[0], start - first[0]):
        return True
    return bool(end < last[1] and iommu.find_dma(end + 1, last[1] - end))


def vfio_iommu_aper_resize(iova: list[list[int]], start: int, end: int) -> None:
    if not iova:
        iova.append([start, end])
        return
    while iova:
        node = iova[0]
        if start < node[0]:
            break
        if node[0] <= start < node[1]:
            node[0] = start
            break
        iova.pop(0)
    for node in list(iova):
        if end > node[1]:
            continue
        if node[0] < end <= node[1]:
            node[1] = end
            continue
        iova.remove(node)


def vfio_iommu_resv_exclude(iova: list[list[int]], resv: list[tuple[int, int]]) -> None:
    for start, end in resv:
        for n in list(iova):
            if start > n[1] or end < n[0]:
                continue
            i = iova.index(n)
            new: list[list[int]] = []
            if start > n[0]:
                new.append([n[0], start - 1])
            if end < n[1]:
                new.append([end + 1, n[1]])
            iova[i : i + 1] = new
    if not iova:
        raise Errno(errno.EINVAL, cite(TYPE1_C, 2082))


def vfio_iommu_iova_dma_valid(iommu: VfioIommu, start: int, end: int) -> bool:
    """:1498-1514."""
    if any(node[0] <= start and end <= node[1] for node in iommu.iova_list):
        return True
    return not iommu.iova_list


# -- attach / detach (:2145-2538) -------------------------------------------------------

def _group_resv_regions(k: ModelKernel, group: VfioGroup) -> list[tuple[int, int]]:
    """iommu_get_group_resv_regions(): the reserved regions of the group's devices."""
    from ..iommu.iommu import dev_iommu_ops

    out: list[tuple[int, int]] = []
    for pdev in _group_pci_devs(k, group):
        for r in dev_iommu_ops(k, pdev).resv_regions(pdev):
            if r not in out:
                out.append(r)
    return sorted(out)


def _group_pci_devs(k: ModelKernel, group: VfioGroup) -> list[Any]:
    from ..pci.pci import pci_core

    if group.iommu_group is None:
        return []
    devices = pci_core(k).devices
    return [devices[b] for b in group.iommu_group.members if b in devices]


def vfio_iommu_type1_attach_group(k: ModelKernel, iommu: VfioIommu, group: VfioGroup) -> None:
    """:2145-2343."""
    from ..iommu.iommu import IOMMU_CAP_ENFORCE_CACHE_COHERENCY, dev_iommu_ops

    if iommu.vaddr_invalid_count:
        raise Errno(errno.EBUSY, cite(TYPE1_C, 2162))
    if any(group in d.groups for d in iommu.domain_list):
        raise Errno(errno.EINVAL, cite(TYPE1_C, 2167))
    devs = _group_pci_devs(k, group)
    dev = devs[0] if devs else None
    ops = dev_iommu_ops(k, dev)
    hw = getattr(ops, "hw", k.facts.iommu)
    if iommu.nesting:
        # iommu_enable_nesting(): no enable_nesting op in this IOMMU driver
        raise Errno(errno.EINVAL, cite("drivers/iommu/iommu.c", 2736))
    domain = VfioDomain(ops, False, hw.aperture_start, hw.aperture_last, hw.pgsize_bitmap)
    if vfio_iommu_aper_conflict(iommu, domain.aperture_start, domain.aperture_end):
        raise Errno(errno.EINVAL, cite(TYPE1_C, 2219))
    resv = _group_resv_regions(k, group)
    if any(iommu.find_dma(s, e - s + 1) for s, e in resv):
        raise Errno(errno.EINVAL, cite(TYPE1_C, 2228))
    iova_copy = [list(n) for n in iommu.iova_list]
    vfio_iommu_aper_resize(iova_copy, domain.aperture_start, domain.aperture_end)
    vfio_iommu_resv_exclude(iova_copy, resv)
    # iommu_group_has_isolated_msi(): interrupt remapping isolates MSIs;
    # allow_unsafe_interrupts stays at its default (N).
    if "IRQ_REMAP" not in k.facts.config:
        raise Errno(errno.EPERM, cite(TYPE1_C, 2259))
    domain.enforce_cache_coherency = dev is not None and ops.capable(dev, IOMMU_CAP_ENFORCE_CACHE_COHERENCY)
    domain.groups.append(group)
    for d in iommu.domain_list:
        if d.ops is domain.ops and d.enforce_cache_coherency == domain.enforce_cache_coherency:
            d.groups.append(group)  # reuse the compatible domain (:2280-2298)
            break
    else:
        vfio_iommu_replay(k, iommu)
        iommu.domain_list.insert(0, domain)
        vfio_update_pgsize_bitmap(iommu)
    iommu.iova_list = iova_copy
    iommu.num_non_pinned_groups += 1


def vfio_iommu_replay(k: ModelKernel, iommu: VfioIommu) -> None:
    """:1668-1821: a new domain maps every existing mapping; the first domain
    pins what was mapped while there was none."""
    for dma in iommu.dma_list:
        if not dma.iommu_mapped and not k.mm.is_mapped(dma.vaddr, dma.size, bool(dma.prot & IOMMU_WRITE)):
            raise Errno(errno.EFAULT, cite(TYPE1_C, 1729))
    for dma in iommu.dma_list:
        dma.iommu_mapped = True


def vfio_iommu_type1_detach_group(k: ModelKernel, iommu: VfioIommu, group: VfioGroup) -> None:
    """:2455-2538: the last group of the last domain takes every mapping with it."""
    for domain in iommu.domain_list:
        if group not in domain.groups:
            continue
        domain.groups.remove(group)
        if not domain.groups:
            if len(iommu.domain_list) == 1:
                vfio_iommu_unmap_unpin_all(iommu)
            iommu.domain_list.remove(domain)
            vfio_update_pgsize_bitmap(iommu)
        break
    # vfio_iommu_aper_expand() + vfio_iommu_resv_refresh(): recompute from the rest
    if iommu.domain_list:
        iova: list[list[int]] = []
        for d in iommu.domain_list:
            vfio_iommu_aper_resize(iova, d.aperture_start, d.aperture_end)
        resv: list[tuple[int, int]] = []
        for d in iommu.domain_list:
            for g in d.groups:
                resv += _group_resv_regions(k, g)
        try:
            vfio_iommu_resv_exclude(iova, sorted(set(resv)))
            iommu.iova_list = iova
        except Errno:
            pass
    iommu.num_non_pinned_groups -= 1
    if iommu.dirty_page_tracking:
        vfio_iommu_populate_bitmap_full(iommu)


def vfio_iommu_unmap_unpin_all(iommu: VfioIommu) -> None:
    """:2345-2351."""
    while iommu.dma_list:
        vfio_remove_dma(iommu, iommu.dma_list[0])


def vfio_remove_dma(iommu: VfioIommu, dma: VfioDma) -> None:
    """:1112-1124."""
    iommu.dma_list.remove(dma)
    if dma.vaddr_invalid:
        iommu.vaddr_invalid_count -= 1
    iommu.dma_avail += 1


# -- dirty bitmaps --------------------------------------------------------------------

def vfio_iommu_populate_bitmap_full(iommu: VfioIommu) -> None:
    """:272-282."""
    pgshift = _ffs(iommu.pgsize_bitmap)
    for dma in iommu.dma_list:
        if dma.bitmap is not None:
            dma.bitmap |= (1 << (dma.size >> pgshift)) - 1


def verify_bitmap_size(npages: int, bitmap_size: int) -> None:
    """:1232-1239."""
    if not npages or not bitmap_size or bitmap_size > DIRTY_BITMAP_SIZE_MAX or \
            bitmap_size < DIRTY_BITMAP_BYTES(npages):
        raise Errno(errno.EINVAL, cite(TYPE1_C, 1236))


def update_user_bitmap(k: ModelKernel, bitmap: int, iommu: VfioIommu, dma: VfioDma, base_iova: int,
                       pgsize: int) -> None:
    """:1149-1184: every page dirty when a group cannot report dirty pages (all
    of them, in the model); the bits land at their offset from ``base_iova``.

    The kernel shifts ``dma->bitmap`` in place, over BITS_TO_LONGS(nbits + shift) words
    (bitmap_shift_left(), lib/bitmap.c:137-159), and ORs the WHOLE user u64 at the first
    word in (bitmap_or() over BITS_TO_LONGS(shift) = 1 word, lib/bitmap.c:245-253), not
    only its ``shift`` low bits; it writes those words out, past ``nbits`` included.  The
    shifted bits above ``nbits`` stay in ``dma->bitmap`` (the next GET_BITMAP clears only the
    first ``nbits``): a later report of the same mapping carries them again."""
    pgshift = _ffs(pgsize)
    nbits = dma.size >> pgshift
    bit_offset = (dma.iova - base_iova) >> pgshift
    copy_offset = bit_offset // 64
    shift = bit_offset % 64
    bits = dma.bitmap or 0
    if iommu.num_non_pinned_groups and dma.iommu_mapped:
        bits |= (1 << nbits) - 1
    if shift:
        words = (1 << (DIRTY_BITMAP_BYTES(nbits + shift) * 8)) - 1
        bits = (bits & ~words) | ((bits << shift) & words)
        raw = copy_from_user(k, bitmap + copy_offset * 8, 8, cite(TYPE1_C, 1174))
        bits |= int.from_bytes(raw, "little")
    dma.bitmap = bits
    nbytes = DIRTY_BITMAP_BYTES(nbits + shift)
    copy_to_user(k, bitmap + copy_offset * 8, (bits & ((1 << (nbytes * 8)) - 1)).to_bytes(nbytes, "little"),
                 cite(TYPE1_C, 1181))


def vfio_iova_dirty_bitmap(k: ModelKernel, bitmap: int, iommu: VfioIommu, iova: int, size: int,
                           pgsize: int) -> None:
    """:1186-1230: the range must not bisect a mapping."""
    dma = iommu.find_dma(iova, 1)
    if dma is not None and dma.iova != iova:
        raise Errno(errno.EINVAL, cite(TYPE1_C, 1202))
    dma = iommu.find_dma(iova + size - 1, 0)
    if dma is not None and dma.iova + dma.size != iova + size:
        raise Errno(errno.EINVAL, cite(TYPE1_C, 1206))
    for dma in list(iommu.dma_list):
        if dma.iova < iova:
            continue
        if dma.iova > iova + size - 1:
            break
        update_user_bitmap(k, bitmap, iommu, dma, iova, pgsize)
        # :1226-1227: bitmap_clear() of the first nbits only; vfio_dma_populate_bitmap()
        # sets none (no pinned pfns without an emulated device)
        dma.bitmap = (dma.bitmap or 0) & ~((1 << (dma.size >> _ffs(pgsize))) - 1)


# -- MAP / UNMAP --------------------------------------------------------------------------

def vfio_dma_do_map(k: ModelKernel, iommu: VfioIommu, map_: uv.vfio_iommu_type1_dma_map) -> None:
    """:1548-1666."""
    set_vaddr = bool(map_.flags & uv.VFIO_DMA_MAP_FLAG_VADDR)
    iova, vaddr, size = map_.iova, map_.vaddr, map_.size
    if k.since(TYPE1_OVERFLOW_EOVERFLOW):
        if not size:
            raise Errno(errno.EINVAL, cite(TYPE1_C, 1698, "7.2"))
        if iova + size - 1 > U64_MAX or vaddr + size - 1 > U64_MAX:
            raise Errno(errno.EOVERFLOW, cite(TYPE1_C, 1702, "7.2"))
    prot = 0
    if map_.flags & uv.VFIO_DMA_MAP_FLAG_WRITE:
        prot |= IOMMU_WRITE
    if map_.flags & uv.VFIO_DMA_MAP_FLAG_READ:
        prot |= IOMMU_READ
    if (prot and set_vaddr) or (not prot and not set_vaddr):
        raise Errno(errno.EINVAL, cite(TYPE1_C, 1570))
    pgsize = 1 << _ffs(iommu.pgsize_bitmap)
    if not size or (size | iova | vaddr) & (pgsize - 1):
        raise Errno(errno.EINVAL, cite(TYPE1_C, 1579))
    # 6.12 reports a wrapping range as EINVAL (gate TYPE1_OVERFLOW_EOVERFLOW)
    if iova + size - 1 > U64_MAX or vaddr + size - 1 > U64_MAX:
        raise Errno(errno.EINVAL, cite(TYPE1_C, 1585))
    dma = iommu.find_dma(iova, size)
    if set_vaddr:
        if dma is None:
            raise Errno(errno.ENOENT, cite(TYPE1_C, 1592))
        if not dma.vaddr_invalid or dma.iova != iova or dma.size != size:
            raise Errno(errno.EINVAL, cite(TYPE1_C, 1595))
        dma.vaddr = vaddr
        dma.vaddr_invalid = False
        iommu.vaddr_invalid_count -= 1
        return
    if dma is not None:
        raise Errno(errno.EEXIST, cite(TYPE1_C, 1606))
    if not iommu.dma_avail:
        raise Errno(errno.ENOSPC, cite(TYPE1_C, 1611))
    if not vfio_iommu_iova_dma_valid(iommu, iova, iova + size - 1):
        raise Errno(errno.EINVAL, cite(TYPE1_C, 1616))
    iommu.dma_avail -= 1
    dma = VfioDma(iova, vaddr, size, prot)
    iommu.link_dma(dma)
    if iommu.domain_list:
        # vfio_pin_map_dma(): pin_user_pages_remote() fails on the first
        # unmapped page (or a read-only one: FOLL_WRITE for IOMMU_WRITE, :559-560) and the
        # whole mapping is removed again
        dma.iommu_mapped = True
        if not k.mm.is_mapped(vaddr, size, bool(prot & IOMMU_WRITE)):
            vfio_remove_dma(iommu, dma)
            raise Errno(errno.EFAULT, cite(TYPE1_C, 563))
    if iommu.dirty_page_tracking:
        if size // pgsize > DIRTY_BITMAP_PAGES_MAX:
            vfio_remove_dma(iommu, dma)
            raise Errno(errno.EINVAL, cite(TYPE1_C, 239))
        dma.bitmap = 0


def vfio_dma_do_unmap(k: ModelKernel, iommu: VfioIommu, unmap: uv.vfio_iommu_type1_dma_unmap,
                      bitmap: uv.vfio_bitmap) -> None:
    """:1270-1419: sets ``unmap.size`` to the bytes unmapped."""
    iova, size = unmap.iova, unmap.size
    unmap_all = bool(unmap.flags & uv.VFIO_DMA_UNMAP_FLAG_ALL)
    invalidate_vaddr = bool(unmap.flags & uv.VFIO_DMA_UNMAP_FLAG_VADDR)
    unmapped = 0
    try:
        pgsize = 1 << _ffs(iommu.pgsize_bitmap)
        if iova & (pgsize - 1):
            raise Errno(errno.EINVAL, cite(TYPE1_C, 1296))
        if unmap_all:
            if iova or size:
                raise Errno(errno.EINVAL, cite(TYPE1_C, 1300))
            size = U64_MAX
        elif k.since(TYPE1_OVERFLOW_EOVERFLOW):
            if not size or size & (pgsize - 1):
                raise Errno(errno.EINVAL, cite(TYPE1_C, 1431, "7.2"))
            if iova + size - 1 > U64_MAX:
                raise Errno(errno.EOVERFLOW, cite(TYPE1_C, 1434, "7.2"))
        elif not size or size & (pgsize - 1) or iova + size - 1 > U64_MAX or size > SIZE_MAX:
            raise Errno(errno.EINVAL, cite(TYPE1_C, 1304))
        if unmap.flags & uv.VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP and (
                not iommu.dirty_page_tracking or bitmap.pgsize != pgsize):
            raise Errno(errno.EINVAL, cite(TYPE1_C, 1310))
        if iommu.v2 and not unmap_all:
            dma = iommu.find_dma(iova, 1)
            if dma is not None and dma.iova != iova:
                raise Errno(errno.EINVAL, cite(TYPE1_C, 1349))
            dma = iommu.find_dma(iova + size - 1, 0)
            if dma is not None and dma.iova + dma.size != iova + size:
                raise Errno(errno.EINVAL, cite(TYPE1_C, 1353))
        first = iommu.first_index(iova, size)
        if first is None:
            return
        end = iova + size
        victims: list[VfioDma] = []
        for dma in list(iommu.dma_list[first:]):
            if dma.iova >= end:
                break
            if not iommu.v2 and iova > dma.iova:
                break
            if invalidate_vaddr:
                if dma.vaddr_invalid:
                    for d in victims:
                        d.vaddr_invalid = False
                        iommu.vaddr_invalid_count -= 1
                    unmapped = 0
                    raise Errno(errno.EINVAL, cite(TYPE1_C, 1377))
                dma.vaddr_invalid = True
                iommu.vaddr_invalid_count += 1
                victims.append(dma)
                unmapped += dma.size
                continue
            if unmap.flags & uv.VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP:
                update_user_bitmap(k, bitmap.data, iommu, dma, iova, pgsize)
            unmapped += dma.size
            vfio_remove_dma(iommu, dma)
    finally:
        unmap.size = unmapped


# -- GET_INFO -----------------------------------------------------------------------------

def vfio_iommu_type1_get_info(k: ModelKernel, iommu: VfioIommu, arg: int) -> int:
    """:2756-2813: capabilities MIGRATION, DMA_AVAIL, IOVA_RANGE; when argsz is too
    small the needed size goes back in argsz and nothing of the chain is written."""
    minsz = offsetofend(uv.vfio_iommu_type1_info, "iova_pgsizes")
    info = get_struct(k, uv.vfio_iommu_type1_info, arg, minsz, cite(TYPE1_C, 2767))
    if info.argsz < minsz:
        raise Errno(errno.EINVAL, cite(TYPE1_C, 2770))
    minsz = min(info.argsz, ctypes.sizeof(info))
    info.flags = uv.VFIO_IOMMU_INFO_PGSIZES
    info.iova_pgsizes = iommu.pgsize_bitmap
    caps = VfioInfoCap()
    mig = uv.vfio_iommu_type1_info_cap_migration()
    mig.header.id = uv.VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION
    mig.header.version = 1
    mig.pgsize_bitmap = 1 << _ffs(iommu.pgsize_bitmap)
    mig.max_dirty_bitmap_size = DIRTY_BITMAP_SIZE_MAX
    caps.add_capability(mig)
    avail = uv.vfio_iommu_type1_info_dma_avail()
    avail.header.id = uv.VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL
    avail.header.version = 1
    avail.avail = iommu.dma_avail
    caps.add_capability(avail)
    if iommu.iova_list:
        hdr_size = ctypes.sizeof(uv.vfio_iommu_type1_info_cap_iova_range)
        range_size = ctypes.sizeof(uv.vfio_iova_range)
        off = caps.add(hdr_size + range_size * len(iommu.iova_list), uv.VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, 1)
        caps.buf[off + 8 : off + 12] = len(iommu.iova_list).to_bytes(4, "little")
        for i, (start, end) in enumerate(iommu.iova_list):
            r = uv.vfio_iova_range(start=start, end=end)
            pos = off + hdr_size + i * range_size
            caps.buf[pos : pos + range_size] = bytes(r)
    # Only the first minsz bytes come from the user: cap_offset starts 0 (vfio_iommu_type1.c:2759).
    caps.copy_to_info(k, info, arg, uv.VFIO_IOMMU_INFO_CAPS, f"{TYPE1_C}:2803")
    put_struct(k, info, arg, minsz, cite(TYPE1_C, 2812))
    return 0


def vfio_iommu_type1_map_dma(k: ModelKernel, iommu: VfioIommu, arg: int) -> int:
    """:2815-2832."""
    mask = uv.VFIO_DMA_MAP_FLAG_READ | uv.VFIO_DMA_MAP_FLAG_WRITE | uv.VFIO_DMA_MAP_FLAG_VADDR
    minsz = offsetofend(uv.vfio_iommu_type1_dma_map, "size")
    map_ = get_struct(k, uv.vfio_iommu_type1_dma_map, arg, minsz, cite(TYPE1_C, 2826))
    if map_.argsz < minsz or map_.flags & ~mask:
        raise Errno(errno.EINVAL, cite(TYPE1_C, 2829))
    vfio_dma_do_map(k, iommu, map_)
    return 0


def vfio_iommu_type1_unmap_dma(k: ModelKernel, iommu: VfioIommu, arg: int) -> int:
    """:2834-2885: the unmapped size is written back only on success."""
    mask = uv.VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP | uv.VFIO_DMA_UNMAP_FLAG_VADDR | uv.VFIO_DMA_UNMAP_FLAG_ALL
    minsz = offsetofend(uv.vfio_iommu_type1_dma_unmap, "size")
    unmap = get_struct(k, uv.vfio_iommu_type1_dma_unmap, arg, minsz, cite(TYPE1_C, 2848))
    bitmap = uv.vfio_bitmap()
    if unmap.argsz < minsz or unmap.flags & ~mask:
        raise Errno(errno.EINVAL, cite(TYPE1_C, 2851))
    if unmap.flags & uv.VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP and unmap.flags & (
            uv.VFIO_DMA_UNMAP_FLAG_ALL | uv.VFIO_DMA_UNMAP_FLAG_VADDR):
        raise Errno(errno.EINVAL, cite(TYPE1_C, 2856))
    if unmap.flags & uv.VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP:
        if unmap.argsz < minsz + ctypes.sizeof(bitmap):
            raise Errno(errno.EINVAL, cite(TYPE1_C, 2862))
        bitmap = get_struct(k, uv.vfio_bitmap, arg + minsz, ctypes.sizeof(bitmap), cite(TYPE1_C, 2867))
        if not access_ok(bitmap.data, bitmap.size):
            raise Errno(errno.EINVAL, cite(TYPE1_C, 2870))
        verify_bitmap_size(unmap.size >> _ffs(bitmap.pgsize), bitmap.size)
    vfio_dma_do_unmap(k, iommu, unmap, bitmap)
    put_struct(k, unmap, arg, minsz, cite(TYPE1_C, 2883))
    return 0


def vfio_iommu_type1_dirty_pages(k: ModelKernel, iommu: VfioIommu, arg: int) -> int:
    """:2887-2989."""
    if not iommu.v2:
        raise Errno(errno.EACCES, cite(TYPE1_C, 2898))
    mask = (uv.VFIO_IOMMU_DIRTY_PAGES_FLAG_START | uv.VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP
            | uv.VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP)
    minsz = offsetofend(uv.vfio_iommu_type1_dirty_bitmap, "flags")
    dirty = get_struct(k, uv.vfio_iommu_type1_dirty_bitmap, arg, minsz, cite(TYPE1_C, 2903))
    if dirty.argsz < minsz or dirty.flags & ~mask:
        raise Errno(errno.EINVAL, cite(TYPE1_C, 2906))
    # _ffs(0) and __fls(0) are undefined; with no flag the checks below all fail
    if dirty.flags & (dirty.flags - 1):
        raise Errno(errno.EINVAL, cite(TYPE1_C, 2910))
    if dirty.flags & uv.VFIO_IOMMU_DIRTY_PAGES_FLAG_START:
        pgsize = 1 << _ffs(iommu.pgsize_bitmap)
        if not iommu.dirty_page_tracking:
            if any(d.size // pgsize > DIRTY_BITMAP_PAGES_MAX for d in iommu.dma_list):
                raise Errno(errno.EINVAL, cite(TYPE1_C, 239))
            for d in iommu.dma_list:
                d.bitmap = 0
            iommu.dirty_page_tracking = True
        return 0
    if dirty.flags & uv.VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP:
        if iommu.dirty_page_tracking:
            iommu.dirty_page_tracking = False
            for d in iommu.dma_list:
                d.bitmap = None
        return 0
    if dirty.flags & uv.VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP:
        data_size = dirty.argsz - minsz
        rng_size = ctypes.sizeof(uv.vfio_iommu_type1_dirty_bitmap_get)
        if not data_size or data_size < rng_size:
            raise Errno(errno.EINVAL, cite(TYPE1_C, 2939))
        rng = get_struct(k, uv.vfio_iommu_type1_dirty_bitmap_get, arg + minsz, rng_size, cite(TYPE1_C, 2943))
        if k.since(TYPE1_OVERFLOW_EOVERFLOW):
            if not rng.size:
                raise Errno(errno.EINVAL, cite(TYPE1_C, 3033, "7.2"))
            if rng.iova + rng.size - 1 > U64_MAX:
                raise Errno(errno.EOVERFLOW, cite(TYPE1_C, 3036, "7.2"))
        elif rng.iova + rng.size > U64_MAX:
            raise Errno(errno.EINVAL, cite(TYPE1_C, 2946))
        if not access_ok(rng.bitmap.data, rng.bitmap.size):
            raise Errno(errno.EINVAL, cite(TYPE1_C, 2949))
        verify_bitmap_size(rng.size >> _ffs(rng.bitmap.pgsize), rng.bitmap.size)
        iommu_pgsize = 1 << _ffs(iommu.pgsize_bitmap)
        if rng.bitmap.pgsize != iommu_pgsize:
            raise Errno(errno.EINVAL, cite(TYPE1_C, 2963))
        if rng.iova & (iommu_pgsize - 1):
            raise Errno(errno.EINVAL, cite(TYPE1_C, 2967))
        if not rng.size or rng.size & (iommu_pgsize - 1):
            raise Errno(errno.EINVAL, cite(TYPE1_C, 2971))
        if not iommu.dirty_page_tracking:
            raise Errno(errno.EINVAL, cite(TYPE1_C, 2981))
        vfio_iova_dirty_bitmap(k, rng.bitmap.data, iommu, rng.iova, rng.size, rng.bitmap.pgsize)
        return 0
    raise Errno(errno.EINVAL, cite(TYPE1_C, 2988))


def vfio_iommu_type1_check_extension(k: ModelKernel, iommu: VfioIommu | None, arg: int) -> int:
    """:2642-2664."""
    if arg in (uv.VFIO_TYPE1_IOMMU, uv.VFIO_TYPE1v2_IOMMU, uv.VFIO_UNMAP_ALL):
        return 1
    if arg == uv.VFIO_TYPE1_NESTING_IOMMU:
        return 0 if k.since(TYPE1_NESTING_REMOVED) else 1
    if arg == uv.VFIO_UPDATE_VADDR:
        return 1 if iommu is not None else 0  # no emulated (mdev) groups in the model
    if arg == uv.VFIO_DMA_CC_IOMMU:
        if iommu is None:
            return 0
        return int(all(d.enforce_cache_coherency for d in iommu.domain_list))
    return 0


class VfioIommuType1Driver(VfioIommuDriver):
    """vfio_iommu_driver_ops_type1 (:3162-3176), with the module parameter
    dma_entry_limit (:58-61) a new container's dma_avail starts from."""

    name = "vfio-iommu-type1"

    def __init__(self) -> None:
        self.dma_entry_limit = DMA_ENTRY_LIMIT

    def check_extension(self, k: ModelKernel, data: Any, arg: int) -> int:
        return vfio_iommu_type1_check_extension(k, data, arg)

    def open(self, k: ModelKernel, arg: int) -> Any:
        """:2540-2573."""
        avail = self.dma_entry_limit  # :2565
        if arg == uv.VFIO_TYPE1_IOMMU:
            return VfioIommu(v2=False, nesting=False, dma_avail=avail)
        if arg == uv.VFIO_TYPE1_NESTING_IOMMU:
            # 7.2 keeps the number as __VFIO_RESERVED_TYPE1_NESTING_IOMMU, a plain v2 (:2634@7.2)
            return VfioIommu(v2=True, nesting=not k.since(TYPE1_NESTING_REMOVED), dma_avail=avail)
        if arg == uv.VFIO_TYPE1v2_IOMMU:
            return VfioIommu(v2=True, nesting=False, dma_avail=avail)
        raise Errno(errno.EINVAL, cite(TYPE1_C, 2559))

    def release(self, k: ModelKernel, data: Any) -> None:
        """:2589-2613."""
        vfio_iommu_unmap_unpin_all(data)
        data.domain_list.clear()
        data.iova_list.clear()

    def attach_group(self, k: ModelKernel, data: Any, group: VfioGroup) -> None:
        vfio_iommu_type1_attach_group(k, data, group)

    def detach_group(self, k: ModelKernel, data: Any, group: VfioGroup) -> None:
        vfio_iommu_type1_detach_group(k, data, group)

    def ioctl(self, k: ModelKernel, data: Any, cmd: int, arg: int) -> int:
        """vfio_iommu_type1_ioctl() (:2991-3010)."""
        iommu: VfioIommu = data
        if cmd == uv.VFIO_CHECK_EXTENSION:
            return vfio_iommu_type1_check_extension(k, iommu, arg)
        if cmd == uv.VFIO_IOMMU_GET_INFO:
            return vfio_iommu_type1_get_info(k, iommu, arg)
        if cmd == uv.VFIO_IOMMU_MAP_DMA:
            return vfio_iommu_type1_map_dma(k, iommu, arg)
        if cmd == uv.VFIO_IOMMU_UNMAP_DMA:
            return vfio_iommu_type1_unmap_dma(k, iommu, arg)
        if cmd == uv.VFIO_IOMMU_DIRTY_PAGES:
            return vfio_iommu_type1_dirty_pages(k, iommu, arg)
        raise Errno(errno.ENOTTY, cite(TYPE1_C, 3008))


DMA_ENTRY_LIMIT_PARAM = "/sys/module/vfio_iommu_type1/parameters/dma_entry_limit"


def install_type1(k: ModelKernel) -> VfioIommuType1Driver:
    """The type1 backend and its 0644 module parameter dma_entry_limit (:58-61), read and
    written through param_get_uint() / param_set_uint() (kernel/params.c:215-238)."""
    drv = VfioIommuType1Driver()

    def show(k: ModelKernel, m: re.Match[str]) -> str:
        return f"{drv.dma_entry_limit}\n"

    @sysfs_store
    def store(k: ModelKernel, m: re.Match[str], buf: str) -> None:
        drv.dma_entry_limit = kstrtouint(buf)

    k.register_sysfs(re.escape(DMA_ENTRY_LIMIT_PARAM), show, store)
    return drv
