"""drivers/iommu/iommufd/ioas.c: the IOAS object and its ioctls, and the
RLIMIT_MODE half of IOMMU_OPTION."""

from __future__ import annotations

import bisect
import ctypes
import errno
from typing import TYPE_CHECKING

from ...uapi import iommufd as u
from ..errors import Errno
from .io_pagetable import (
    IoPagetable,
    iopt_destroy_table,
    iopt_disable_large_pages,
    iopt_enable_large_pages,
    iopt_get_pages,
    iopt_map_pages,
    iopt_map_user_pages,
    iopt_set_allow_iova,
    iopt_unmap_all,
    iopt_unmap_iova,
)
from .private import (
    IOMMU_CACHE,
    IOMMU_READ,
    IOMMU_WRITE,
    IOMMUFD_OBJ_IOAS,
    IOPT_ALLOC_IOVA,
    IOPT_PAGES_ACCOUNT_MM,
    IOPT_PAGES_ACCOUNT_USER,
    U64_MAX,
    ULONG_MAX,
    E,
    IommufdObject,
    Ucmd,
    copy_to_user_partial,
)

if TYPE_CHECKING:
    from ..kernel import ModelKernel
    from .hw_pagetable import HwptPaging
    from .main import IommufdCtx

# selftest.c:35 (iommufd_test.h MOCK_FLAGS_ACCESS_SYZ)
MOCK_FLAGS_ACCESS_SYZ = 1 << 16

_MAP_FLAGS = u.IOMMU_IOAS_MAP_FIXED_IOVA | u.IOMMU_IOAS_MAP_WRITEABLE | u.IOMMU_IOAS_MAP_READABLE


class IommufdIoas(IommufdObject):
    """struct iommufd_ioas (iommufd_private.h:258-263)."""

    type = IOMMUFD_OBJ_IOAS

    def __init__(self) -> None:
        super().__init__()
        self.iopt = IoPagetable()
        self.hwpt_list: list[HwptPaging] = []

    def destroy(self, k: ModelKernel) -> None:
        """iommufd_ioas_destroy() (ioas.c:12-21)."""
        iopt_unmap_all(k, self.iopt)
        iopt_destroy_table(self.iopt, k)


def iommufd_ioas_alloc(ictx: IommufdCtx) -> IommufdIoas:
    """ioas.c:23-35 (the object is not yet finalized)."""
    ioas = IommufdIoas()
    ictx.object_alloc(ioas)
    return ioas


def get_ioas(ictx: IommufdCtx, id_: int) -> IommufdIoas:
    obj = ictx.get_object(id_, IOMMUFD_OBJ_IOAS)
    assert isinstance(obj, IommufdIoas)
    return obj


def iommufd_ioas_alloc_ioctl(ucmd: Ucmd[u.iommu_ioas_alloc]) -> int:
    """ioas.c:37-60."""
    cmd = ucmd.cmd
    if cmd.flags:
        raise E(errno.EOPNOTSUPP, "ioas.c:44")
    ioas = iommufd_ioas_alloc(ucmd.ictx)
    cmd.out_ioas_id = ioas.id
    try:
        ucmd.respond()
    except Errno:
        ucmd.ictx.object_abort_and_destroy(ucmd.k, ioas)
        raise
    ucmd.ictx.finalize(ioas)
    return 0


def iommufd_ioas_iova_ranges(ucmd: Ucmd[u.iommu_ioas_iova_ranges]) -> int:
    """ioas.c:62-110: ranges are written while counting, the struct goes
    back before EMSGSIZE."""
    cmd = ucmd.cmd
    if cmd.__reserved:
        raise E(errno.EOPNOTSUPP, "ioas.c:72")
    ioas = get_ioas(ucmd.ictx, cmd.ioas_id)
    k = ucmd.k
    max_iovas = cmd.num_iovas
    ranges = cmd.allowed_iovas
    cmd.num_iovas = 0
    cmd.out_iova_alignment = ioas.iopt.iova_alignment
    elm_size = ctypes.sizeof(u.iommu_iova_range)
    for start, last in ioas.iopt.iova_ranges():
        if cmd.num_iovas < max_iovas:
            elm = u.iommu_iova_range(start=start, last=last)
            addr = (ranges + cmd.num_iovas * elm_size) & U64_MAX
            if not copy_to_user_partial(k, addr, bytes(elm)):
                raise E(errno.EFAULT, "ioas.c:95")
        cmd.num_iovas += 1
    ucmd.respond()
    if cmd.num_iovas > max_iovas:
        raise E(errno.EMSGSIZE, "ioas.c:105")
    return 0


def iommufd_ioas_load_iovas(k: ModelKernel, uptr: int, num: int) -> list[tuple[int, int]]:
    """ioas.c:112-140 (the ranges loaded so far never overlap, so checking the
    neighbour by start is the interval-tree lookup)."""
    starts: list[int] = []
    lasts: list[int] = []
    elm_size = ctypes.sizeof(u.iommu_iova_range)
    for i in range(num):
        try:
            raw = k.mm.read((uptr + i * elm_size) & U64_MAX, elm_size)
        except Errno:
            raise E(errno.EFAULT, "ioas.c:123") from None
        r = u.iommu_iova_range.from_buffer_copy(raw)
        if r.start >= r.last:
            raise E(errno.EINVAL, "ioas.c:126")
        j = bisect.bisect_right(starts, r.last)
        if j and lasts[j - 1] >= r.start:
            raise E(errno.EINVAL, "ioas.c:129")
        starts.insert(j, r.start)
        lasts.insert(j, r.last)
    return list(zip(starts, lasts, strict=True))


def iommufd_ioas_allow_iovas(ucmd: Ucmd[u.iommu_ioas_allow_iovas]) -> int:
    """ioas.c:142-180."""
    cmd = ucmd.cmd
    if cmd.__reserved:
        raise E(errno.EOPNOTSUPP, "ioas.c:152")
    ioas = get_ioas(ucmd.ictx, cmd.ioas_id)
    allowed = iommufd_ioas_load_iovas(ucmd.k, cmd.allowed_iovas, cmd.num_iovas)
    iopt_set_allow_iova(ioas.iopt, allowed)
    return 0


def conv_iommu_prot(map_flags: int) -> int:
    """ioas.c:182-198."""
    prot = IOMMU_CACHE
    if map_flags & u.IOMMU_IOAS_MAP_WRITEABLE:
        prot |= IOMMU_WRITE
    if map_flags & u.IOMMU_IOAS_MAP_READABLE:
        prot |= IOMMU_READ
    return prot


def iommufd_ioas_map(ucmd: Ucmd[u.iommu_ioas_map]) -> int:
    """ioas.c:200-237."""
    cmd = ucmd.cmd
    if (cmd.flags & ~_MAP_FLAGS) or cmd.__reserved:
        raise E(errno.EOPNOTSUPP, "ioas.c:212")
    if cmd.iova >= ULONG_MAX or cmd.length >= ULONG_MAX:
        raise E(errno.EOVERFLOW, "ioas.c:214")
    if not cmd.flags & (u.IOMMU_IOAS_MAP_WRITEABLE | u.IOMMU_IOAS_MAP_READABLE):
        raise E(errno.EINVAL, "ioas.c:218")
    ioas = get_ioas(ucmd.ictx, cmd.ioas_id)
    flags = 0 if cmd.flags & u.IOMMU_IOAS_MAP_FIXED_IOVA else IOPT_ALLOC_IOVA
    iova = iopt_map_user_pages(ucmd.k, ucmd.ictx.account_mode, ioas.iopt, cmd.iova, cmd.user_va,
                               cmd.length, conv_iommu_prot(cmd.flags), flags)
    cmd.iova = iova
    ucmd.respond()
    return 0


def syz_conv_iova(iopt: IoPagetable, iova: int) -> int:
    """__iommufd_test_syz_conv_iova() (selftest.c:68-91): the u64 is read as
    {u32 nth_area; u32 offset}."""
    nth = iova & 0xFFFF_FFFF
    offset = iova >> 32
    for area in iopt.areas:
        if nth == 0:
            return area.start + offset
        nth -= 1
    return 0


def iommufd_ioas_copy(ucmd: Ucmd[u.iommu_ioas_copy]) -> int:
    """ioas.c:239-294."""
    cmd = ucmd.cmd
    ictx = ucmd.ictx
    k = ucmd.k
    if "IOMMUFD_TEST" in k.facts.config and cmd.flags & MOCK_FLAGS_ACCESS_SYZ:
        # iommufd_test_syz_conv_iova_id() (selftest.c:108-122)
        cmd.flags &= ~MOCK_FLAGS_ACCESS_SYZ
        try:
            src = get_ioas(ictx, cmd.src_ioas_id)
        except Errno:
            pass
        else:
            cmd.src_iova = syz_conv_iova(src.iopt, cmd.src_iova)
    if cmd.flags & ~_MAP_FLAGS:
        raise E(errno.EOPNOTSUPP, "ioas.c:255")
    if cmd.length >= ULONG_MAX or cmd.src_iova >= ULONG_MAX or cmd.dst_iova >= ULONG_MAX:
        raise E(errno.EOVERFLOW, "ioas.c:258")
    if not cmd.flags & (u.IOMMU_IOAS_MAP_WRITEABLE | u.IOMMU_IOAS_MAP_READABLE):
        raise E(errno.EINVAL, "ioas.c:262")
    src_ioas = get_ioas(ictx, cmd.src_ioas_id)
    pages_list = iopt_get_pages(src_ioas.iopt, cmd.src_iova, cmd.length)
    dst_ioas = get_ioas(ictx, cmd.dst_ioas_id)
    flags = 0 if cmd.flags & u.IOMMU_IOAS_MAP_FIXED_IOVA else IOPT_ALLOC_IOVA
    iova = iopt_map_pages(k, dst_ioas.iopt, pages_list, cmd.length, cmd.dst_iova,
                          conv_iommu_prot(cmd.flags), flags)
    cmd.dst_iova = iova
    ucmd.respond()
    return 0


def iommufd_ioas_unmap(ucmd: Ucmd[u.iommu_ioas_unmap]) -> int:
    """ioas.c:296-332."""
    cmd = ucmd.cmd
    ioas = get_ioas(ucmd.ictx, cmd.ioas_id)
    if cmd.iova == 0 and cmd.length == U64_MAX:
        unmapped, err = iopt_unmap_all(ucmd.k, ioas.iopt)
        if err is not None:
            raise err
    else:
        if cmd.iova >= ULONG_MAX or cmd.length >= ULONG_MAX:
            raise E(errno.EOVERFLOW, "ioas.c:313")
        unmapped, err = iopt_unmap_iova(ucmd.k, ioas.iopt, cmd.iova, cmd.length)
        if err is not None:
            raise err
        if not unmapped:
            raise E(errno.ENOENT, "ioas.c:321")
    cmd.length = unmapped
    ucmd.respond()
    return 0


def iommufd_option_rlimit_mode(cmd: u.iommu_option, ictx: IommufdCtx) -> None:
    """ioas.c:334-366.  The harness runs as root: capable(CAP_SYS_RESOURCE)."""
    if cmd.object_id:
        raise E(errno.EOPNOTSUPP, "ioas.c:338")
    if cmd.op == u.IOMMU_OPTION_OP_GET:
        cmd.val64 = int(ictx.account_mode == IOPT_PAGES_ACCOUNT_MM)
        return
    if cmd.op == u.IOMMU_OPTION_OP_SET:
        if ictx.objects:
            raise E(errno.EBUSY, "ioas.c:352")
        if cmd.val64 == 0:
            ictx.account_mode = IOPT_PAGES_ACCOUNT_USER
        elif cmd.val64 == 1:
            ictx.account_mode = IOPT_PAGES_ACCOUNT_MM
        else:
            raise E(errno.EINVAL, "ioas.c:359")
        return
    raise E(errno.EOPNOTSUPP, "ioas.c:365")


def iommufd_ioas_option_huge_pages(cmd: u.iommu_option, ioas: IommufdIoas) -> None:
    """ioas.c:368-385."""
    if cmd.op == u.IOMMU_OPTION_OP_GET:
        cmd.val64 = int(not ioas.iopt.disable_large_pages)
        return
    if cmd.op == u.IOMMU_OPTION_OP_SET:
        if cmd.val64 == 0:
            iopt_disable_large_pages(ioas.iopt)
            return
        if cmd.val64 == 1:
            iopt_enable_large_pages(ioas.iopt)
            return
        raise E(errno.EINVAL, "ioas.c:382")
    raise E(errno.EOPNOTSUPP, "ioas.c:384")


def iommufd_ioas_option(ucmd: Ucmd[u.iommu_option]) -> None:
    """ioas.c:387-410."""
    cmd = ucmd.cmd
    if cmd.__reserved:
        raise E(errno.EOPNOTSUPP, "ioas.c:394")
    ioas = get_ioas(ucmd.ictx, cmd.object_id)
    if cmd.option_id == u.IOMMU_OPTION_HUGE_PAGES:
        iommufd_ioas_option_huge_pages(cmd, ioas)
        return
    raise E(errno.EOPNOTSUPP, "ioas.c:405")
