"""drivers/iommu/iommufd/hw_pagetable.c: HWPT objects (paging and nested)
and their ioctls."""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import TYPE_CHECKING

from ...uapi import iommufd as u
from ..errors import Errno, cite
from ..gates import HWPT_ALLOC_PASID, HWPT_INVALIDATE_ANY_OBJECT, HWPT_PAGING_FAULT_ID
from ..iommu.iommu import (
    IOMMU_CAP_DIRTY_TRACKING,
    IOMMU_DOMAIN_NESTED,
    IommuDomain,
    UserData,
    dev_iommu_ops,
)
from . import device as device_c
from .io_pagetable import (
    iopt_read_and_clear_dirty_data,
    iopt_set_dirty_tracking,
    iopt_table_add_domain,
    iopt_table_remove_domain,
)
from .private import (
    HW_PAGETABLE_C,
    IOMMUFD_OBJ_ANY,
    IOMMUFD_OBJ_DEVICE,
    IOMMUFD_OBJ_FAULT,
    IOMMUFD_OBJ_HWPT_NESTED,
    IOMMUFD_OBJ_HWPT_PAGING,
    IOMMUFD_OBJ_IOAS,
    PAGE_SIZE,
    IommufdObject,
    Ucmd,
)

if TYPE_CHECKING:
    from ..kernel import ModelKernel
    from .device import IommufdDevice
    from .fault import IommufdFault
    from .ioas import IommufdIoas
    from .main import IommufdCtx
    from .viommu import IommufdViommu

# hw_pagetable.c:411
IOMMU_HWPT_INVALIDATE_ENTRY_NUM_MAX = 1 << 19

# cache_invalidate_user() of a nested domain, or a vIOMMU's cache_invalidate() (7.2):
# (k, data_type, data_uptr, entry_len, entry_num) -> (entries handled, error)
Invalidate = Callable[..., tuple[int, Errno | None]]


class IommufdHwPagetable(IommufdObject):
    """struct iommufd_hw_pagetable (iommufd_private.h:295-299)."""

    def __init__(self) -> None:
        super().__init__()
        self.domain: IommuDomain | None = None
        self.fault: IommufdFault | None = None

    def _hwpt_destroy(self) -> None:
        """__iommufd_hwpt_destroy() (hw_pagetable.c:11-18)."""
        self.domain = None
        if self.fault is not None:
            self.fault.users -= 1


class HwptPaging(IommufdHwPagetable):
    """struct iommufd_hwpt_paging (iommufd_private.h:301-310)."""

    type = IOMMUFD_OBJ_HWPT_PAGING

    def __init__(self, ioas: IommufdIoas):
        super().__init__()
        self.ioas = ioas
        self.auto_domain = False
        self.enforce_cache_coherency = False
        self.msi_cookie = False
        self.nest_parent = False
        self.pasid_compat = False  # IOMMU_HWPT_ALLOC_PASID (7.2)
        self.in_hwpt_list = False

    def destroy(self, k: ModelKernel) -> None:
        """iommufd_hwpt_paging_destroy() (hw_pagetable.c:20-36); the abort
        path (38-52) is the same once the list entry is gone."""
        if self.in_hwpt_list:
            self.ioas.hwpt_list.remove(self)
            self.in_hwpt_list = False
            assert self.domain is not None
            iopt_table_remove_domain(k, self.ioas.iopt, self.domain)
        self._hwpt_destroy()
        self.ioas.users -= 1


class HwptNested(IommufdHwPagetable):
    """struct iommufd_hwpt_nested (iommufd_private.h:312-315)."""

    type = IOMMUFD_OBJ_HWPT_NESTED

    def __init__(self, parent: HwptPaging, viommu: IommufdViommu | None = None):
        super().__init__()
        self.parent = parent
        self.viommu = viommu  # 7.2: allocated on a vIOMMU, which it holds instead of the parent

    def destroy(self, k: ModelKernel) -> None:
        """hw_pagetable.c:54-61 (54-64@7.2)."""
        self._hwpt_destroy()
        if self.viommu is not None:
            self.viommu.users -= 1
        else:
            self.parent.users -= 1


def find_hwpt_paging(hwpt: IommufdHwPagetable | None) -> HwptPaging | None:
    """iommufd_private.h:334-345."""
    if isinstance(hwpt, HwptPaging):
        return hwpt
    if isinstance(hwpt, HwptNested):
        return hwpt.parent
    return None


def iommufd_hwpt_paging_enforce_cc(hwpt_paging: HwptPaging) -> None:
    """hw_pagetable.c:68-83."""
    if hwpt_paging.enforce_cache_coherency:
        return
    assert hwpt_paging.domain is not None
    hwpt_paging.enforce_cache_coherency = hwpt_paging.domain.enforce_cache_coherency()
    if not hwpt_paging.enforce_cache_coherency:
        raise Errno(errno.EINVAL, cite(HW_PAGETABLE_C, 81))


def iommufd_hwpt_paging_alloc(k: ModelKernel, ictx: IommufdCtx, ioas: IommufdIoas,
                              idev: IommufdDevice, flags: int, immediate_attach: bool,
                              user_data: UserData | None) -> HwptPaging:
    """hw_pagetable.c:104-204.  The object is returned not finalized."""
    valid_flags = u.IOMMU_HWPT_ALLOC_NEST_PARENT | u.IOMMU_HWPT_ALLOC_DIRTY_TRACKING
    if k.since(HWPT_PAGING_FAULT_ID):
        valid_flags |= u.IOMMU_HWPT_FAULT_ID_VALID  # :115@7.2
    if k.since(HWPT_ALLOC_PASID):
        valid_flags |= u.IOMMU_HWPT_ALLOC_PASID  # :116@7.2
    ops = dev_iommu_ops(k, idev.dev)
    if flags & ~valid_flags:
        raise Errno(errno.EOPNOTSUPP, cite(HW_PAGETABLE_C, 122))
    if flags & u.IOMMU_HWPT_ALLOC_DIRTY_TRACKING and not ops.capable(idev.dev, IOMMU_CAP_DIRTY_TRACKING):
        raise Errno(errno.EOPNOTSUPP, cite(HW_PAGETABLE_C, 125))
    if flags & u.IOMMU_HWPT_FAULT_ID_VALID and flags & u.IOMMU_HWPT_ALLOC_NEST_PARENT:
        raise Errno(errno.EOPNOTSUPP, cite(HW_PAGETABLE_C, 128))

    hwpt = HwptPaging(ioas)
    ictx.object_alloc(hwpt)
    ioas.users += 1
    hwpt.nest_parent = bool(flags & u.IOMMU_HWPT_ALLOC_NEST_PARENT)
    hwpt.pasid_compat = bool(flags & u.IOMMU_HWPT_ALLOC_PASID)  # :140@7.2; what it allows is not modelled
    with ictx.abort_on_error(k, hwpt):
        # 7.2 takes FAULT_ID_VALID here and keeps it from the driver (:149-150@7.2)
        hwpt.domain = ops.domain_alloc_user(k, idev.dev, flags & ~u.IOMMU_HWPT_FAULT_ID_VALID, None, user_data)
        if idev.enforce_cache_coherency:
            iommufd_hwpt_paging_enforce_cc(hwpt)
        if immediate_attach:
            device_c.iommufd_hw_pagetable_attach(k, hwpt, idev)
        try:
            iopt_table_add_domain(k, ioas.iopt, hwpt.domain)
        except BaseException:
            if immediate_attach:
                device_c.iommufd_hw_pagetable_detach(k, idev)
            raise
        ioas.hwpt_list.append(hwpt)
        hwpt.in_hwpt_list = True
    return hwpt


def iommufd_hwpt_nested_alloc(k: ModelKernel, ictx: IommufdCtx, parent: HwptPaging,
                              idev: IommufdDevice, flags: int, user_data: UserData) -> HwptNested:
    """hw_pagetable.c:218-265."""
    ops = dev_iommu_ops(k, idev.dev)
    if (flags & ~u.IOMMU_HWPT_FAULT_ID_VALID) or not user_data.len:
        raise Errno(errno.EOPNOTSUPP, cite(HW_PAGETABLE_C, 231))
    assert parent.domain is not None
    if parent.auto_domain or not parent.nest_parent or parent.domain.owner is not ops:
        raise Errno(errno.EINVAL, cite(HW_PAGETABLE_C, 234))
    hwpt = HwptNested(parent)
    ictx.object_alloc(hwpt)
    parent.users += 1
    with ictx.abort_on_error(k, hwpt):
        hwpt.domain = ops.domain_alloc_user(k, idev.dev, flags & ~u.IOMMU_HWPT_FAULT_ID_VALID,
                                            parent.domain, user_data)
        if hwpt.domain.type != IOMMU_DOMAIN_NESTED:
            raise Errno(errno.EINVAL, cite(HW_PAGETABLE_C, 257))
    return hwpt


def iommufd_viommu_alloc_hwpt_nested(k: ModelKernel, ictx: IommufdCtx, viommu: IommufdViommu, flags: int,
                                     user_data: UserData) -> HwptNested:
    """iommufd_viommu_alloc_hwpt_nested() (hw_pagetable.c:286-332@7.2): the vIOMMU's driver
    allocates the nested domain; the HWPT holds the vIOMMU (not the parent)."""
    if flags & ~(u.IOMMU_HWPT_FAULT_ID_VALID | u.IOMMU_HWPT_ALLOC_PASID):
        raise Errno(errno.EOPNOTSUPP, cite(HW_PAGETABLE_C, 295, "7.2"))
    if not user_data.len:
        raise Errno(errno.EOPNOTSUPP, cite(HW_PAGETABLE_C, 297, "7.2"))
    if viommu.ops is None:
        raise Errno(errno.EOPNOTSUPP, cite(HW_PAGETABLE_C, 299, "7.2"))
    hwpt = HwptNested(viommu.hwpt, viommu)
    ictx.object_alloc(hwpt)
    viommu.users += 1
    with ictx.abort_on_error(k, hwpt):
        hwpt.domain = viommu.ops.alloc_domain_nested(k, viommu, flags & ~u.IOMMU_HWPT_FAULT_ID_VALID, user_data)
    return hwpt


def iommufd_hwpt_alloc(ucmd: Ucmd[u.iommu_hwpt_alloc]) -> int:
    """hw_pagetable.c:267-360 (__reserved2 is never looked at)."""
    cmd = ucmd.cmd
    ictx = ucmd.ictx
    k = ucmd.k
    user_data = UserData(cmd.data_type, cmd.data_uptr, cmd.data_len)
    if cmd.__reserved:
        raise Errno(errno.EOPNOTSUPP, cite(HW_PAGETABLE_C, 282))
    if (cmd.data_type == u.IOMMU_HWPT_DATA_NONE and cmd.data_len) or (
            cmd.data_type != u.IOMMU_HWPT_DATA_NONE and not cmd.data_len):
        raise Errno(errno.EINVAL, cite(HW_PAGETABLE_C, 285))
    idev = ictx.get_object(cmd.dev_id, IOMMUFD_OBJ_DEVICE)
    assert isinstance(idev, device_c.IommufdDevice)
    try:
        pt_obj = ictx.get_object(cmd.pt_id, IOMMUFD_OBJ_ANY)
    except Errno:
        raise Errno(errno.EINVAL, cite(HW_PAGETABLE_C, 293)) from None

    from . import viommu as viommu_c  # viommu.c builds on device.c, which imports this file

    hwpt: IommufdHwPagetable
    if pt_obj.type == IOMMUFD_OBJ_IOAS:
        hwpt = iommufd_hwpt_paging_alloc(k, ictx, pt_obj, idev, cmd.flags, False,  # type: ignore[arg-type]
                                         user_data if user_data.len else None)
    elif pt_obj.type == IOMMUFD_OBJ_HWPT_PAGING:
        assert isinstance(pt_obj, HwptPaging)
        hwpt = iommufd_hwpt_nested_alloc(k, ictx, pt_obj, idev, cmd.flags, user_data)
    elif isinstance(pt_obj, viommu_c.IommufdViommu):  # 7.2 only: no vIOMMU exists in 6.12
        if pt_obj.iommu_dev is not viommu_c.iommu_get_iommu_dev(k, idev.dev):
            raise Errno(errno.EINVAL, cite(HW_PAGETABLE_C, 396, "7.2"))
        hwpt = iommufd_viommu_alloc_hwpt_nested(k, ictx, pt_obj, cmd.flags, user_data)
    else:
        raise Errno(errno.EINVAL, cite(HW_PAGETABLE_C, 324))

    with ictx.abort_on_error(k, hwpt):
        if cmd.flags & u.IOMMU_HWPT_FAULT_ID_VALID:
            fault = ictx.get_object(cmd.fault_id, IOMMUFD_OBJ_FAULT)
            hwpt.fault = fault  # type: ignore[assignment]
            assert hwpt.domain is not None
            hwpt.domain.iopf_handler = hwpt
            fault.users += 1
        cmd.out_hwpt_id = hwpt.id
        ucmd.respond()
    ictx.finalize(hwpt)
    return 0


def get_hwpt_paging(ictx: IommufdCtx, id_: int) -> HwptPaging:
    obj = ictx.get_object(id_, IOMMUFD_OBJ_HWPT_PAGING)
    assert isinstance(obj, HwptPaging)
    return obj


def iommufd_hwpt_set_dirty_tracking(ucmd: Ucmd[u.iommu_hwpt_set_dirty_tracking]) -> int:
    """hw_pagetable.c:362-385 (__reserved is not checked)."""
    cmd = ucmd.cmd
    if cmd.flags & ~u.IOMMU_HWPT_DIRTY_TRACKING_ENABLE:
        raise Errno(errno.EOPNOTSUPP, cite(HW_PAGETABLE_C, 371))
    hwpt = get_hwpt_paging(ucmd.ictx, cmd.hwpt_id)
    enable = bool(cmd.flags & u.IOMMU_HWPT_DIRTY_TRACKING_ENABLE)
    assert hwpt.domain is not None
    iopt_set_dirty_tracking(hwpt.ioas.iopt, hwpt.domain, enable)
    return 0


def iommufd_hwpt_get_dirty_bitmap(ucmd: Ucmd[u.iommu_hwpt_get_dirty_bitmap]) -> int:
    """hw_pagetable.c:387-408."""
    cmd = ucmd.cmd
    if (cmd.flags & ~u.IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR) or cmd.__reserved:
        raise Errno(errno.EOPNOTSUPP, cite(HW_PAGETABLE_C, 396))
    hwpt = get_hwpt_paging(ucmd.ictx, cmd.hwpt_id)
    assert hwpt.domain is not None
    iopt_read_and_clear_dirty_data(ucmd.k, hwpt.ioas.iopt, hwpt.domain, cmd.flags, cmd.iova,
                                   cmd.length, cmd.page_size, cmd.data)
    return 0


def _invalidation_target(ucmd: Ucmd[u.iommu_hwpt_invalidate]) -> Invalidate:
    """What invalidates for hwpt_id: 6.12 looks up a nested HWPT (another kind of object is
    ENOENT); 7.2 looks up any object: a nested HWPT's domain or a vIOMMU's driver
    (cache_invalidate), another kind of object is EINVAL (:524-552@7.2)."""
    from . import viommu as viommu_c  # viommu.c builds on device.c, which imports this file

    if not ucmd.k.since(HWPT_INVALIDATE_ANY_OBJECT):
        obj = ucmd.ictx.get_object(ucmd.cmd.hwpt_id, IOMMUFD_OBJ_HWPT_NESTED)
    else:
        obj = ucmd.ictx.get_object(ucmd.cmd.hwpt_id, IOMMUFD_OBJ_ANY)
    if isinstance(obj, viommu_c.IommufdViommu):
        viommu = obj
        if viommu.ops is None:
            raise Errno(errno.EOPNOTSUPP, cite(HW_PAGETABLE_C, 545, "7.2"))
        ops = viommu.ops
        return lambda k, *array: ops.cache_invalidate(k, viommu, *array)
    if not isinstance(obj, HwptNested):
        raise Errno(errno.EINVAL, cite(HW_PAGETABLE_C, 550, "7.2"))
    assert obj.domain is not None
    return obj.domain.cache_invalidate_user


def iommufd_hwpt_invalidate(ucmd: Ucmd[u.iommu_hwpt_invalidate]) -> int:
    """hw_pagetable.c:413-458: entry_num goes back (the number handled) even
    on failure."""
    cmd = ucmd.cmd
    done_num = 0
    rc: Errno | None = None
    if cmd.__reserved:
        rc = Errno(errno.EOPNOTSUPP, cite(HW_PAGETABLE_C, 427))
    elif cmd.entry_num and (not cmd.data_uptr or not cmd.entry_len or cmd.entry_len > PAGE_SIZE
                            or cmd.entry_num > IOMMU_HWPT_INVALIDATE_ENTRY_NUM_MAX):
        rc = Errno(errno.EINVAL, cite(HW_PAGETABLE_C, 438))
    else:
        try:
            invalidate = _invalidation_target(ucmd)
        except Errno as e:
            rc = e
        else:
            done_num, rc = invalidate(ucmd.k, cmd.data_type, cmd.data_uptr, cmd.entry_len, cmd.entry_num)
    cmd.entry_num = done_num
    try:
        ucmd.respond()
    except Errno:
        raise Errno(errno.EFAULT, cite(HW_PAGETABLE_C, 456)) from None
    if rc is not None:
        raise rc
    return 0
