"""drivers/iommu/iommufd/ioas.c: the IOAS object and its ioctls, and the
RLIMIT_MODE half of IOMMU_OPTION."""

from __future__ import annotations

import bisect
import ctypes
import errno
from typing import TYPE_CHECKING

from ...uapi import iommufd as u
from ..errors import Errno, cite
from .io_pagetable import (
    IoPagetable,
    iopt_destroy_table,
    iopt_disable_large_pages,
    iopt_enable_large_pages,
    iopt_get_pages,
    iopt_map_file_pages,
    iopt_map_pages,
    iopt_map_user_pages,
    iopt_set_allow_iova,
    iopt_unmap_all,
    iopt_unmap_iova,
)
from .pages import IOPT_ADDRESS_FILE
from .private import (
    IOAS_C,
    IOMMU_CACHE,
    IOMMU_READ,
    IOMMU_WRITE,
    IOMMUFD_OBJ_IOAS,
    IOPT_ALLOC_IOVA,
    IOPT_PAGES_ACCOUNT_MM,
    IOPT_PAGES_ACCOUNT_USER,
    U64_MAX,
    ULONG_MAX,
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
        raise Errno(errno.EOPNOTSUPP, cite(IOAS_C, 44))
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
        raise Errno(errno.EOPNOTSUPP, cite(IOAS_C, 72))
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
                raise Errno(errno.EFAULT, cite(IOAS_C, 95))
        cmd.num_iovas += 1
    ucmd.respond()
    if cmd.num_iovas > max_iovas:
        raise Errno(errno.EMSGSIZE, cite(IOAS_C, 105))
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
            raise Errno(errno.EFAULT, cite(IOAS_C, 123)) from None
        r = u.iommu_iova_range.from_buffer_copy(raw)
        if r.start >= r.last:
            raise Errno(errno.EINVAL, cite(IOAS_C, 126))
        j = bisect.bisect_right(starts, r.last)
        if j and lasts[j - 1] >= r.start:
            raise Errno(errno.EINVAL, cite(IOAS_C, 129))
        starts.insert(j, r.start)
        lasts.insert(j, r.last)
    return list(zip(starts, lasts, strict=True))


def iommufd_ioas_allow_iovas(ucmd: Ucmd[u.iommu_ioas_allow_iovas]) -> int:
    """ioas.c:142-180."""
    cmd = ucmd.cmd
    if cmd.__reserved:
        raise Errno(errno.EOPNOTSUPP, cite(IOAS_C, 152))
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


def check_map_flags(map_flags: int, values: tuple[int, ...], where: tuple[str, str, str]) -> int:
    """The argument checks IOMMU_IOAS_MAP, MAP_FILE and COPY open with: no flag but
    FIXED_IOVA, WRITEABLE and READABLE (EOPNOTSUPP), every IOVA and length below ULONG_MAX
    (EOVERFLOW), readable or writeable (EINVAL); ``where`` cites the three checks of the
    caller.  Returns the iopt flags: IOPT_ALLOC_IOVA unless FIXED_IOVA."""
    if map_flags & ~_MAP_FLAGS:
        raise Errno(errno.EOPNOTSUPP, where[0])
    if any(v >= ULONG_MAX for v in values):
        raise Errno(errno.EOVERFLOW, where[1])
    if not map_flags & (u.IOMMU_IOAS_MAP_WRITEABLE | u.IOMMU_IOAS_MAP_READABLE):
        raise Errno(errno.EINVAL, where[2])
    return 0 if map_flags & u.IOMMU_IOAS_MAP_FIXED_IOVA else IOPT_ALLOC_IOVA


def iommufd_ioas_map_file(ucmd: Ucmd[u.iommu_ioas_map_file]) -> int:
    """ioas.c:204-242@7.2: IOMMU_IOAS_MAP of ``length`` bytes of file ``fd`` from byte
    ``start`` (the struct has no reserved field)."""
    cmd = ucmd.cmd
    flags = check_map_flags(cmd.flags, (cmd.iova, cmd.length),
                            (cite(IOAS_C, 215, "7.2"), cite(IOAS_C, 218, "7.2"), cite(IOAS_C, 222, "7.2")))
    ioas = get_ioas(ucmd.ictx, cmd.ioas_id)
    cmd.iova = iopt_map_file_pages(ucmd.k, ioas.iopt, cmd.iova, cmd.fd, cmd.start, cmd.length,
                                   conv_iommu_prot(cmd.flags), flags)
    ucmd.respond()
    return 0


def iommufd_ioas_map(ucmd: Ucmd[u.iommu_ioas_map]) -> int:
    """ioas.c:200-237."""
    cmd = ucmd.cmd
    if cmd.__reserved:
        raise Errno(errno.EOPNOTSUPP, cite(IOAS_C, 212))
    flags = check_map_flags(cmd.flags, (cmd.iova, cmd.length),
                            (cite(IOAS_C, 212), cite(IOAS_C, 214), cite(IOAS_C, 218)))
    ioas = get_ioas(ucmd.ictx, cmd.ioas_id)
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
    flags = check_map_flags(cmd.flags, (cmd.length, cmd.src_iova, cmd.dst_iova),
                            (cite(IOAS_C, 255), cite(IOAS_C, 258), cite(IOAS_C, 262)))
    src_ioas = get_ioas(ictx, cmd.src_ioas_id)
    pages_list = iopt_get_pages(src_ioas.iopt, cmd.src_iova, cmd.length)
    dst_ioas = get_ioas(ictx, cmd.dst_ioas_id)
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
            raise Errno(errno.EOVERFLOW, cite(IOAS_C, 313))
        unmapped, err = iopt_unmap_iova(ucmd.k, ioas.iopt, cmd.iova, cmd.length)
        if err is not None:
            raise err
        if not unmapped:
            raise Errno(errno.ENOENT, cite(IOAS_C, 321))
    cmd.length = unmapped
    ucmd.respond()
    return 0


def iommufd_ioas_change_process(ucmd: Ucmd[u.iommu_ioas_change_process]) -> int:
    """ioas.c:519-591@7.2: move the pinned-memory accounting of every map of every IOAS of
    the context to the calling process, all or nothing.

    Preconditions, in the kernel's order: __reserved is 0 (EOPNOTSUPP); then, over every
    IOAS in id order (iommufd_take_all_iova_rwsem()) and its areas in IOVA order, the first
    area whose pages are NULL (a map or unmap half done on another thread) is EBUSY and the
    first one not made by IOMMU_IOAS_MAP_FILE (IOAS_MAP, the VFIO compat MAP_DMA, an
    IOAS_COPY of those) is EINVAL.  No IOAS, or no area, passes.

    What success does, as the model follows it: the model has one process, which runs as
    root (CAP_IPC_LOCK), so every iopt_pages has account_mode NONE (pages.c:1388-1391@7.2),
    need_charge_update() is false for all of them, charge_current() charges nothing, and
    change_mm() makes the pages' source mm, task and user the caller's, which they already
    are.  So a success changes no state of the model: the maps, their pins and what an
    access reads through them stay as they were.  ENOMEM of the xa_store() is not modelled."""
    cmd = ucmd.cmd
    if cmd.__reserved:
        raise Errno(errno.EOPNOTSUPP, cite(IOAS_C, 532, "7.2"))
    ioas_list = [obj for _, obj in sorted(ucmd.ictx.objects.items())
                 if isinstance(obj, IommufdIoas) and obj.finalized and obj.users > 0]
    for ioas in ioas_list:
        for area in ioas.iopt.areas:
            if area.pages is None:
                raise Errno(errno.EBUSY, cite(IOAS_C, 541, "7.2"))
            if area.pages.type != IOPT_ADDRESS_FILE:
                raise Errno(errno.EINVAL, cite(IOAS_C, 545, "7.2"))
    return 0


def iommufd_option_rlimit_mode(cmd: u.iommu_option, ictx: IommufdCtx) -> None:
    """ioas.c:334-366.  The harness runs as root: capable(CAP_SYS_RESOURCE)."""
    if cmd.object_id:
        raise Errno(errno.EOPNOTSUPP, cite(IOAS_C, 338))
    if cmd.op == u.IOMMU_OPTION_OP_GET:
        cmd.val64 = int(ictx.account_mode == IOPT_PAGES_ACCOUNT_MM)
        return
    if cmd.op == u.IOMMU_OPTION_OP_SET:
        if ictx.objects:
            raise Errno(errno.EBUSY, cite(IOAS_C, 352))
        if cmd.val64 == 0:
            ictx.account_mode = IOPT_PAGES_ACCOUNT_USER
        elif cmd.val64 == 1:
            ictx.account_mode = IOPT_PAGES_ACCOUNT_MM
        else:
            raise Errno(errno.EINVAL, cite(IOAS_C, 359))
        return
    raise Errno(errno.EOPNOTSUPP, cite(IOAS_C, 365))


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
        raise Errno(errno.EINVAL, cite(IOAS_C, 382))
    raise Errno(errno.EOPNOTSUPP, cite(IOAS_C, 384))


def iommufd_ioas_option(ucmd: Ucmd[u.iommu_option]) -> None:
    """ioas.c:387-410."""
    cmd = ucmd.cmd
    if cmd.__reserved:
        raise Errno(errno.EOPNOTSUPP, cite(IOAS_C, 394))
    ioas = get_ioas(ucmd.ictx, cmd.object_id)
    if cmd.option_id == u.IOMMU_OPTION_HUGE_PAGES:
        iommufd_ioas_option_huge_pages(cmd, ioas)
        return
    raise Errno(errno.EOPNOTSUPP, cite(IOAS_C, 405))
