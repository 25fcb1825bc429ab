"""drivers/iommu/iommufd/vfio_compat.c: the VFIO container ioctls an iommufd
context answers (on /dev/iommu, and as /dev/vfio/vfio with
CONFIG_IOMMUFD_VFIO_CONTAINER), the compat IOAS, and IOMMU_VFIO_IOAS."""

from __future__ import annotations

import ctypes
import errno
import struct
from typing import TYPE_CHECKING

from ...uapi import iommufd as u
from ...uapi import vfio as uv
from ...uapi.abi import Struct
from ..errors import ENOIOCTLCMD, Errno, cite
from .io_pagetable import (
    iopt_cut_iova,
    iopt_disable_large_pages,
    iopt_map_user_pages,
    iopt_unmap_all,
    iopt_unmap_iova,
)
from .ioas import IommufdIoas, get_ioas, iommufd_ioas_alloc
from .private import (
    IOMMU_CACHE,
    IOMMU_READ,
    IOMMU_WRITE,
    PAGE_SIZE,
    U32_MAX,
    ULONG_MAX,
    VFIO_COMPAT_C,
    Ucmd,
    copy_to_user_partial,
)

if TYPE_CHECKING:
    from ..kernel import ModelKernel
    from .main import IommufdCtx

# -- the compat IOAS ------------------------------------------------------------------

def get_compat_ioas(ictx: IommufdCtx) -> IommufdIoas:
    """vfio_compat.c:15-26."""
    ioas = ictx.vfio_ioas
    if ioas is None or ioas.users <= 0:
        raise Errno(errno.ENODEV, cite(VFIO_COMPAT_C, 17))
    return ioas


def iommufd_vfio_compat_set_no_iommu(ictx: IommufdCtx) -> None:
    """vfio_compat.c:55-68."""
    if ictx.vfio_ioas is not None:
        raise Errno(errno.EINVAL, cite(VFIO_COMPAT_C, 64))
    ictx.no_iommu_mode = True


def iommufd_vfio_compat_ioas_create(ictx: IommufdCtx) -> None:
    """vfio_compat.c:80-120: a no-op if a compat IOAS is already there (the
    freshly reserved id is given back)."""
    ioas = iommufd_ioas_alloc(ictx)
    if ictx.no_iommu_mode:
        ictx.object_abort(ioas)
        raise Errno(errno.EINVAL, cite(VFIO_COMPAT_C, 95))
    if ictx.vfio_ioas is not None and ictx.vfio_ioas.users > 0:
        ictx.object_abort(ioas)
        return
    ictx.vfio_ioas = ioas
    ictx.finalize(ioas)


def iommufd_vfio_ioas(ucmd: Ucmd[u.iommu_vfio_ioas]) -> None:
    """vfio_compat.c:123-157."""
    cmd = ucmd.cmd
    ictx = ucmd.ictx
    if cmd.__reserved:
        raise Errno(errno.EOPNOTSUPP, cite(VFIO_COMPAT_C, 129))
    if cmd.op == u.IOMMU_VFIO_IOAS_GET:
        cmd.ioas_id = get_compat_ioas(ictx).id
        ucmd.respond()
        return
    if cmd.op == u.IOMMU_VFIO_IOAS_SET:
        ictx.vfio_ioas = get_ioas(ictx, cmd.ioas_id)
        return
    if cmd.op == u.IOMMU_VFIO_IOAS_CLEAR:
        ictx.vfio_ioas = None
        return
    raise Errno(errno.EOPNOTSUPP, cite(VFIO_COMPAT_C, 155))


# -- the VFIO container ioctls -------------------------------------------------------

def _copy_in(k: ModelKernel, arg: int, cls: type[Struct], minsz: int, where: str) -> Struct:
    try:
        raw = k.mm.read(arg, minsz)
    except Errno:
        raise Errno(errno.EFAULT, where) from None
    return cls.from_buffer_copy(raw.ljust(ctypes.sizeof(cls), b"\0"))


def iommufd_vfio_map_dma(k: ModelKernel, ictx: IommufdCtx, arg: int) -> int:
    """vfio_compat.c:159-195."""
    minsz = uv.vfio_iommu_type1_dma_map.offsetofend("size")
    m = _copy_in(k, arg, uv.vfio_iommu_type1_dma_map, minsz, cite(VFIO_COMPAT_C, 171))
    assert isinstance(m, uv.vfio_iommu_type1_dma_map)
    if m.argsz < minsz or m.flags & ~(uv.VFIO_DMA_MAP_FLAG_READ | uv.VFIO_DMA_MAP_FLAG_WRITE):
        raise Errno(errno.EINVAL, cite(VFIO_COMPAT_C, 174))
    prot = IOMMU_CACHE
    if m.flags & uv.VFIO_DMA_MAP_FLAG_READ:
        prot |= IOMMU_READ
    if m.flags & uv.VFIO_DMA_MAP_FLAG_WRITE:
        prot |= IOMMU_WRITE
    ioas = get_compat_ioas(ictx)
    iopt_map_user_pages(k, ictx.account_mode, ioas.iopt, m.iova, m.vaddr, m.size, prot, 0)
    return 0


def iommufd_vfio_unmap_dma(k: ModelKernel, ictx: IommufdCtx, arg: int) -> int:
    """vfio_compat.c:197-254: the unmapped size goes back even on failure."""
    minsz = uv.vfio_iommu_type1_dma_unmap.offsetofend("size")
    un = _copy_in(k, arg, uv.vfio_iommu_type1_dma_unmap, minsz, cite(VFIO_COMPAT_C, 214))
    assert isinstance(un, uv.vfio_iommu_type1_dma_unmap)
    if un.argsz < minsz or un.flags & ~uv.VFIO_DMA_UNMAP_FLAG_ALL:
        raise Errno(errno.EINVAL, cite(VFIO_COMPAT_C, 217))
    ioas = get_compat_ioas(ictx)
    if un.flags & uv.VFIO_DMA_UNMAP_FLAG_ALL:
        if un.iova != 0 or un.size != 0:
            raise Errno(errno.EINVAL, cite(VFIO_COMPAT_C, 225))
        unmapped, err = iopt_unmap_all(k, ioas.iopt)
    else:
        if ioas.iopt.disable_large_pages:
            iovas = [(un.iova + un.size - 1) & ULONG_MAX, (un.iova - 1) & ULONG_MAX]
            iopt_cut_iova(ioas.iopt, iovas if un.iova else iovas[:1])
        unmapped, err = iopt_unmap_iova(k, ioas.iopt, un.iova, un.size)
    un.size = unmapped
    try:
        k.mm.write(arg, bytes(un)[:minsz])
    except Errno:
        raise Errno(errno.EFAULT, cite(VFIO_COMPAT_C, 249)) from None
    if err is not None:
        raise err
    return 0


def iommufd_vfio_cc_iommu(ictx: IommufdCtx) -> int:
    """vfio_compat.c:256-277."""
    ioas = get_compat_ioas(ictx)
    for hwpt in ioas.hwpt_list:
        if not hwpt.enforce_cache_coherency:
            return 0
    return 1


def iommufd_vfio_check_extension(k: ModelKernel, ictx: IommufdCtx, type_: int) -> int:
    """vfio_compat.c:279-313."""
    if type_ in (uv.VFIO_TYPE1_IOMMU, uv.VFIO_TYPE1v2_IOMMU, uv.VFIO_UNMAP_ALL):
        return int(not ictx.no_iommu_mode)
    if type_ == uv.VFIO_NOIOMMU_IOMMU:
        return int("VFIO_NOIOMMU" in k.facts.config)
    if type_ == uv.VFIO_DMA_CC_IOMMU:
        return iommufd_vfio_cc_iommu(ictx)
    return 0


def iommufd_vfio_set_iommu(k: ModelKernel, ictx: IommufdCtx, type_: int) -> int:
    """vfio_compat.c:315-354 (the caller is root: CAP_SYS_RAWIO)."""
    no_iommu_mode = ictx.no_iommu_mode
    if "VFIO_NOIOMMU" in k.facts.config and type_ == uv.VFIO_NOIOMMU_IOMMU and no_iommu_mode:
        return 0
    if type_ not in (uv.VFIO_TYPE1_IOMMU, uv.VFIO_TYPE1v2_IOMMU) or no_iommu_mode:
        raise Errno(errno.EINVAL, cite(VFIO_COMPAT_C, 335))
    ioas = get_compat_ioas(ictx)
    if type_ == uv.VFIO_TYPE1_IOMMU:
        iopt_disable_large_pages(ioas.iopt)
    return 0


def iommufd_get_pagesizes(ioas: IommufdIoas) -> int:
    """vfio_compat.c:356-375."""
    bitmap = ULONG_MAX
    for d in ioas.iopt.domains:
        bitmap &= d.pgsize_bitmap
    if bitmap & (PAGE_SIZE - 1):
        bitmap &= ~(PAGE_SIZE - 1) & ULONG_MAX
        bitmap |= PAGE_SIZE
    return max(bitmap, ioas.iopt.iova_alignment)


def iommufd_fill_cap_iova(k: ModelKernel, ioas: IommufdIoas, cur: int, avail: int) -> int:
    """vfio_compat.c:377-412."""
    hdr_size = ctypes.sizeof(uv.vfio_iommu_type1_info_cap_iova_range)
    elm_size = ctypes.sizeof(uv.vfio_iova_range)
    nr = 0
    for start, last in ioas.iopt.iova_ranges():
        if avail >= hdr_size + elm_size * (nr + 1):
            rng = uv.vfio_iova_range(start=start, end=last)
            if not copy_to_user_partial(k, cur + hdr_size + elm_size * nr, bytes(rng)):
                raise Errno(errno.EFAULT, cite(VFIO_COMPAT_C, 405))
        nr += 1
    if avail >= hdr_size + elm_size * nr:
        cap = uv.vfio_iommu_type1_info_cap_iova_range(nr_iovas=nr)
        cap.header.id = uv.VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE
        cap.header.version = 1
        if not copy_to_user_partial(k, cur, bytes(cap)):
            raise Errno(errno.EFAULT, cite(VFIO_COMPAT_C, 410))
    return hdr_size + elm_size * nr


def iommufd_fill_cap_dma_avail(k: ModelKernel, ioas: IommufdIoas, cur: int, avail: int) -> int:
    """vfio_compat.c:414-437."""
    cap = uv.vfio_iommu_type1_info_dma_avail(avail=U32_MAX)
    cap.header.id = uv.VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL
    cap.header.version = 1
    size = ctypes.sizeof(cap)
    if avail >= size and not copy_to_user_partial(k, cur, bytes(cap)):
        raise Errno(errno.EFAULT, cite(VFIO_COMPAT_C, 435))
    return size


def iommufd_vfio_iommu_get_info(k: ModelKernel, ictx: IommufdCtx, arg: int) -> int:
    """vfio_compat.c:439-516: caps that do not fit are left out (argsz says
    how much is needed), but each cap's ``next`` is patched whenever the
    user's argsz reaches the start of the following cap."""
    minsz = uv.vfio_iommu_type1_info.offsetofend("iova_pgsizes")
    info = _copy_in(k, arg, uv.vfio_iommu_type1_info, minsz, cite(VFIO_COMPAT_C, 458))
    assert isinstance(info, uv.vfio_iommu_type1_info)
    if info.argsz < minsz:
        raise Errno(errno.EINVAL, cite(VFIO_COMPAT_C, 461))
    minsz = min(info.argsz, ctypes.sizeof(info))
    ioas = get_compat_ioas(ictx)
    info.flags = uv.VFIO_IOMMU_INFO_PGSIZES
    info.iova_pgsizes = iommufd_get_pagesizes(ioas)
    info.cap_offset = 0
    total = ctypes.sizeof(info)
    last_cap: int | None = None
    for fill in (iommufd_fill_cap_dma_avail, iommufd_fill_cap_iova):
        if info.argsz > total:
            cap_size = fill(k, ioas, arg + total, info.argsz - total)
        else:
            cap_size = fill(k, ioas, 0, 0)
        cap_size = (cap_size + 7) & ~7
        if last_cap is not None and info.argsz >= total:
            try:
                k.mm.write(last_cap + uv.vfio_info_cap_header.offsetof("next"), struct.pack("<I", total))
            except Errno:
                raise Errno(errno.EFAULT, cite(VFIO_COMPAT_C, 490)) from None
        last_cap = arg + total
        total += cap_size
    if info.argsz >= total:
        info.cap_offset = ctypes.sizeof(info)
    info.argsz = total
    info.flags |= uv.VFIO_IOMMU_INFO_CAPS
    try:
        k.mm.write(arg, bytes(info)[:minsz])
    except Errno:
        raise Errno(errno.EFAULT, cite(VFIO_COMPAT_C, 507)) from None
    return 0


def iommufd_vfio_ioctl(k: ModelKernel, ictx: IommufdCtx, cmd: int, arg: int) -> int:
    """vfio_compat.c:518-541."""
    if cmd == uv.VFIO_GET_API_VERSION:
        return uv.VFIO_API_VERSION
    if cmd == uv.VFIO_SET_IOMMU:
        return iommufd_vfio_set_iommu(k, ictx, arg)
    if cmd == uv.VFIO_CHECK_EXTENSION:
        return iommufd_vfio_check_extension(k, ictx, arg)
    if cmd == uv.VFIO_IOMMU_GET_INFO:
        return iommufd_vfio_iommu_get_info(k, ictx, arg)
    if cmd == uv.VFIO_IOMMU_MAP_DMA:
        return iommufd_vfio_map_dma(k, ictx, arg)
    if cmd == uv.VFIO_IOMMU_UNMAP_DMA:
        return iommufd_vfio_unmap_dma(k, ictx, arg)
    raise Errno(ENOIOCTLCMD, cite(VFIO_COMPAT_C, 538))
