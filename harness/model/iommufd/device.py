"""drivers/iommu/iommufd/device.c: binding devices, attaching them to IOAS or
HWPTs, in-kernel accesses (iommufd_access) and IOMMU_GET_HW_INFO."""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from ...uapi import iommufd as u
from ..errors import Errno, cite
from ..gates import HW_INFO_ATS_CAP, HW_INFO_INPUT_TYPE
from ..iommu.iommu import (
    IOMMU_CAP_CACHE_COHERENCY,
    IOMMU_CAP_DIRTY_TRACKING,
    IOMMU_CAP_ENFORCE_CACHE_COHERENCY,
    IOMMU_CAP_PCI_ATS_SUPPORTED,
    IommuDomain,
    dev_iommu_ops,
)
from . import hw_pagetable as hwpt_c
from .io_pagetable import (
    ContigIter,
    IoptArea,
    iopt_add_access,
    iopt_remove_access,
    iopt_remove_reserved_iova,
    iopt_table_enforce_dev_resv_regions,
)
from .pages import PagesAccess, iopt_pages_rw_access
from .private import (
    DEVICE_C,
    FAULT_C,
    IOMMU_READ,
    IOMMU_WRITE,
    IOMMUFD_ACCESS_RW_WRITE,
    IOMMUFD_OBJ_ACCESS,
    IOMMUFD_OBJ_ANY,
    IOMMUFD_OBJ_DEVICE,
    IOMMUFD_OBJ_HWPT_NESTED,
    IOMMUFD_OBJ_HWPT_PAGING,
    IOMMUFD_OBJ_IOAS,
    PAGE_SIZE,
    PAGES_C,
    ULONG_MAX,
    IommufdObject,
    Ucmd,
    check_add_overflow,
    copy_to_user_partial,
)

if TYPE_CHECKING:
    from ...backends.base import IommuHw
    from ..iommu.iommu import IommuGroup
    from ..kernel import ModelKernel
    from ..memory import Mapping
    from .hw_pagetable import HwptPaging, IommufdHwPagetable
    from .ioas import IommufdIoas
    from .main import IommufdCtx


class Bindable(Protocol):
    """What the VFIO side hands to iommufd_device_bind(): a device with its
    IOMMU group, its name and the IOMMU it sits behind."""

    iommu_group: IommuGroup | None
    bdf: str
    hw: IommuHw


class AttachHandle:
    """struct iommufd_attach_handle: what the group's NO_PASID slot points at
    while an iommufd domain is attached (faults are routed through it)."""

    __slots__ = ("domain", "idev")

    def __init__(self, idev: IommufdDevice, domain: IommuDomain):
        self.idev = idev
        self.domain = domain


class IommufdGroup:
    """struct iommufd_group (iommufd_private.h:398-406)."""

    def __init__(self, ictx: IommufdCtx, group: IommuGroup):
        self.ictx = ictx
        self.group = group
        self.ref = 1
        self.hwpt: IommufdHwPagetable | None = None
        self.device_list: list[IommufdDevice] = []
        self.handle: AttachHandle | None = None


def iommufd_get_group(ictx: IommufdCtx, dev: Any) -> IommufdGroup:
    """device.c:61-133; keyed by the group object itself."""
    group = getattr(dev, "iommu_group", None)
    if group is None:
        raise Errno(errno.ENODEV, cite(DEVICE_C, 72))
    igroup = ictx.groups.get(id(group))
    if igroup is not None:
        igroup.ref += 1
        return igroup
    igroup = ictx.groups[id(group)] = IommufdGroup(ictx, group)
    return igroup


def iommufd_put_group(igroup: IommufdGroup) -> None:
    """device.c:21-38."""
    igroup.ref -= 1
    if igroup.ref == 0:
        igroup.ictx.groups.pop(id(igroup.group), None)


class IommufdDevice(IommufdObject):
    """struct iommufd_device (iommufd_private.h:413-424).

    The VFIO side uses ``id``, ``attach``, ``replace``, ``detach`` and ``unbind``."""

    type = IOMMUFD_OBJ_DEVICE

    def __init__(self, ictx: IommufdCtx, dev: Any, igroup: IommufdGroup, is_mock: bool):
        super().__init__()
        self.ictx = ictx
        self.dev = dev
        self.igroup = igroup
        self.is_mock = is_mock
        self.enforce_cache_coherency = False
        self.iopf_enabled = 0

    def destroy(self, k: ModelKernel) -> None:
        """iommufd_device_destroy() (device.c:135-144)."""
        group = self.igroup.group
        group.device_release_dma_owner()
        iommufd_put_group(self.igroup)
        if not self.is_mock:
            k.put_file(self.ictx)

    # -- the API VFIO calls ------------------------------------------------------
    def attach(self, k: ModelKernel, pt_id: int) -> int:
        """iommufd_device_attach() (device.c:813-828): an IOAS id (automatic
        domain) or a HWPT id; returns the HWPT id the device ended up on.
        The device must not be attached already (VFIO uses ``replace``)."""
        pt_id = iommufd_device_change_pt(k, self, pt_id, iommufd_device_do_attach)
        self.users += 1
        return pt_id

    def replace(self, k: ModelKernel, pt_id: int) -> int:
        """iommufd_device_replace() (device.c:846-850)."""
        return iommufd_device_change_pt(k, self, pt_id, iommufd_device_do_replace)

    def detach(self, k: ModelKernel) -> None:
        """iommufd_device_detach() (device.c:860-867)."""
        hwpt = iommufd_hw_pagetable_detach(k, self)
        iommufd_hw_pagetable_put(k, self.ictx, hwpt)
        self.users -= 1

    def unbind(self, k: ModelKernel) -> None:
        """iommufd_device_unbind() (device.c:279-282)."""
        self.ictx.object_destroy_user(k, self)


def iommufd_device_bind(k: ModelKernel, ictx: IommufdCtx, dev: Any, is_mock: bool = False) -> IommufdDevice:
    """device.c:162-236."""
    ops = dev_iommu_ops(k, dev)
    if not ops.capable(dev, IOMMU_CAP_CACHE_COHERENCY):
        raise Errno(errno.EINVAL, cite(DEVICE_C, 174))
    igroup = iommufd_get_group(ictx, dev)
    try:
        # iommu_group_has_isolated_msi(): interrupt remapping isolates MSIs;
        # allow_unsafe_interrupts stays at its default (N).
        if not is_mock and "IRQ_REMAP" not in k.facts.config:
            raise Errno(errno.EPERM, cite(DEVICE_C, 189))
        igroup.group.device_claim_dma_owner(ictx)
    except BaseException:
        iommufd_put_group(igroup)
        raise
    idev = IommufdDevice(ictx, dev, igroup, is_mock)
    ictx.object_alloc(idev)
    if not is_mock:
        k.get_file(ictx)
    idev.enforce_cache_coherency = ops.capable(dev, IOMMU_CAP_ENFORCE_CACHE_COHERENCY)
    idev.users += 1
    ictx.finalize(idev)
    return idev


def iommufd_ctx_has_group(ictx: IommufdCtx, group: IommuGroup) -> bool:
    """device.c:248-267."""
    for obj in ictx.objects.values():
        if obj.finalized and isinstance(obj, IommufdDevice) and obj.igroup.group is group:
            return True
    return False


# -- attach / detach / replace -----------------------------------------------------------

def iommufd_fault_iopf_enable(k: ModelKernel, idev: IommufdDevice) -> None:
    """fault.c:19-46."""
    fn = k.topology.functions.get(getattr(idev.dev, "bdf", ""))
    if fn is not None and fn.is_vf:
        raise Errno(errno.EINVAL, cite(FAULT_C, 31))
    idev.iopf_enabled += 1
    if idev.iopf_enabled > 1:
        return
    try:
        dev_iommu_ops(k, idev.dev).enable_iopf(idev.dev)
    except BaseException:
        idev.iopf_enabled -= 1
        raise


def iommufd_fault_iopf_disable(idev: IommufdDevice) -> None:
    """fault.c:48-56."""
    if idev.iopf_enabled:
        idev.iopf_enabled -= 1


def _attach_dev(k: ModelKernel, domain: IommuDomain, idev: IommufdDevice) -> None:
    """__iommu_group_set_domain() -> domain->ops->attach_dev() for the group."""
    domain.ops.attach_dev(domain, idev.dev)


def iommufd_hwpt_attach_device(k: ModelKernel, hwpt: IommufdHwPagetable, idev: IommufdDevice) -> None:
    """device.c:369-403 with iommu_attach_group_handle() (iommu.c:3532-3557)."""
    if hwpt.fault is not None:
        iommufd_fault_iopf_enable(k, idev)
    try:
        domain = hwpt.domain
        assert domain is not None
        if dev_iommu_ops(k, idev.dev) is not domain.owner:
            raise Errno(errno.EINVAL, cite("drivers/iommu/iommu.c", 2191))
        _attach_dev(k, domain, idev)
    except BaseException:
        if hwpt.fault is not None:
            iommufd_fault_iopf_disable(idev)
        raise
    idev.igroup.handle = AttachHandle(idev, domain)


def iommufd_hwpt_detach_device(k: ModelKernel, hwpt: IommufdHwPagetable, idev: IommufdDevice) -> None:
    """device.c:419-434."""
    handle = idev.igroup.handle
    idev.igroup.handle = None
    if hwpt.fault is not None:
        hwpt.fault.auto_response_faults(handle)
        iommufd_fault_iopf_disable(idev)


def iommufd_device_attach_reserved_iova(idev: IommufdDevice, hwpt_paging: HwptPaging, k: ModelKernel) -> None:
    """device.c:331-354 (no modelled IOMMU has a SW MSI window: no msi cookie)."""
    regions = dev_iommu_ops(k, idev.dev).resv_regions(idev.dev)
    iopt_table_enforce_dev_resv_regions(hwpt_paging.ioas.iopt, idev.dev, regions)


def iommufd_hw_pagetable_attach(k: ModelKernel, hwpt: IommufdHwPagetable, idev: IommufdDevice) -> None:
    """device.c:481-523."""
    hwpt_paging = hwpt_c.find_hwpt_paging(hwpt)
    igroup = idev.igroup
    if igroup.hwpt is not None and igroup.hwpt is not hwpt:
        raise Errno(errno.EINVAL, cite(DEVICE_C, 490))
    if hwpt_paging is not None:
        iommufd_device_attach_reserved_iova(idev, hwpt_paging, k)
    try:
        if not igroup.device_list:
            iommufd_hwpt_attach_device(k, hwpt, idev)
            igroup.hwpt = hwpt
    except BaseException:
        if hwpt_paging is not None:
            iopt_remove_reserved_iova(hwpt_paging.ioas.iopt, idev.dev)
        raise
    hwpt.users += 1
    igroup.device_list.append(idev)


def iommufd_hw_pagetable_detach(k: ModelKernel, idev: IommufdDevice) -> IommufdHwPagetable:
    """device.c:525-543."""
    igroup = idev.igroup
    hwpt = igroup.hwpt
    assert hwpt is not None
    hwpt_paging = hwpt_c.find_hwpt_paging(hwpt)
    igroup.device_list.remove(idev)
    if not igroup.device_list:
        iommufd_hwpt_detach_device(k, hwpt, idev)
        igroup.hwpt = None
    if hwpt_paging is not None:
        iopt_remove_reserved_iova(hwpt_paging.ioas.iopt, idev.dev)
    return hwpt


def iommufd_hw_pagetable_put(k: ModelKernel, ictx: IommufdCtx, hwpt: IommufdHwPagetable) -> None:
    """iommufd_private.h:382-396: an automatic domain dies with its last user."""
    if isinstance(hwpt, hwpt_c.HwptPaging) and hwpt.auto_domain:
        with contextlib.suppress(Errno):
            ictx.object_remove(k, hwpt, hwpt.id, 0)
        return
    hwpt.users -= 1


def iommufd_device_do_attach(k: ModelKernel, idev: IommufdDevice,
                             hwpt: IommufdHwPagetable) -> IommufdHwPagetable | None:
    """device.c:545-555."""
    iommufd_hw_pagetable_attach(k, hwpt, idev)
    return None


def iommufd_group_remove_reserved_iova(igroup: IommufdGroup, hwpt_paging: HwptPaging) -> None:
    """device.c:557-567."""
    for cur in igroup.device_list:
        iopt_remove_reserved_iova(hwpt_paging.ioas.iopt, cur.dev)


def iommufd_group_do_replace_reserved_iova(k: ModelKernel, igroup: IommufdGroup,
                                           hwpt_paging: HwptPaging) -> None:
    """device.c:569-597."""
    old = hwpt_c.find_hwpt_paging(igroup.hwpt)
    try:
        if old is None or hwpt_paging.ioas is not old.ioas:
            for cur in igroup.device_list:
                regions = dev_iommu_ops(k, cur.dev).resv_regions(cur.dev)
                iopt_table_enforce_dev_resv_regions(hwpt_paging.ioas.iopt, cur.dev, regions)
    except BaseException:
        iommufd_group_remove_reserved_iova(igroup, hwpt_paging)
        raise


def iommufd_hwpt_replace_device(k: ModelKernel, idev: IommufdDevice, hwpt: IommufdHwPagetable,
                                old: IommufdHwPagetable) -> None:
    """device.c:436-479 with iommu_replace_group_handle() (iommu.c:3588-3621),
    which calls the new domain's attach_dev without the owner check attach does."""
    old_handle = idev.igroup.handle
    iopf_on = hwpt.fault is not None and old.fault is None
    if iopf_on:
        iommufd_fault_iopf_enable(k, idev)
    try:
        assert hwpt.domain is not None
        _attach_dev(k, hwpt.domain, idev)
    except BaseException:
        if iopf_on:
            iommufd_fault_iopf_disable(idev)
        raise
    idev.igroup.handle = AttachHandle(idev, hwpt.domain)
    if old.fault is not None:
        old.fault.auto_response_faults(old_handle)
        if hwpt.fault is None:
            iommufd_fault_iopf_disable(idev)


def iommufd_device_do_replace(k: ModelKernel, idev: IommufdDevice,
                              hwpt: IommufdHwPagetable) -> IommufdHwPagetable | None:
    """device.c:599-664."""
    hwpt_paging = hwpt_c.find_hwpt_paging(hwpt)
    igroup = idev.igroup
    if igroup.hwpt is None:
        raise Errno(errno.EINVAL, cite(DEVICE_C, 613))
    if idev not in igroup.device_list:
        raise Errno(errno.EINVAL, cite(DEVICE_C, 618))
    if hwpt is igroup.hwpt:
        return None
    old_hwpt = igroup.hwpt
    if hwpt_paging is not None:
        iommufd_group_do_replace_reserved_iova(k, igroup, hwpt_paging)
    try:
        iommufd_hwpt_replace_device(k, idev, hwpt, old_hwpt)
    except BaseException:
        if hwpt_paging is not None:
            iommufd_group_remove_reserved_iova(igroup, hwpt_paging)
        raise
    old_paging = hwpt_c.find_hwpt_paging(old_hwpt)
    if old_paging is not None and (hwpt_paging is None or hwpt_paging.ioas is not old_paging.ioas):
        iommufd_group_remove_reserved_iova(igroup, old_paging)
    igroup.hwpt = hwpt
    num_devices = len(igroup.device_list)
    hwpt.users += num_devices
    if num_devices > 1:
        old_hwpt.users -= num_devices - 1
    return old_hwpt


AttachFn = Callable[["ModelKernel", IommufdDevice, "IommufdHwPagetable"], "IommufdHwPagetable | None"]


def iommufd_device_auto_get_domain(k: ModelKernel, idev: IommufdDevice, ioas: IommufdIoas,
                                   do_attach: AttachFn) -> tuple[IommufdHwPagetable | None, int]:
    """device.c:675-751: reuse an automatic domain of the IOAS that takes the
    device (EINVAL means "incompatible, try the next"), else allocate one."""
    immediate_attach = do_attach is iommufd_device_do_attach
    ictx = idev.ictx
    for hwpt in list(ioas.hwpt_list):
        if not hwpt.auto_domain:
            continue
        try:
            destroy = do_attach(k, idev, hwpt)
        except Errno as e:
            if e.code == errno.EINVAL:
                continue
            raise
        return destroy, hwpt.id
    hwpt_paging = hwpt_c.iommufd_hwpt_paging_alloc(k, ictx, ioas, idev, 0, immediate_attach, None)
    destroy = None
    if not immediate_attach:
        with ictx.abort_on_error(k, hwpt_paging):
            destroy = do_attach(k, idev, hwpt_paging)
    hwpt_paging.auto_domain = True
    ictx.finalize(hwpt_paging)
    return destroy, hwpt_paging.id


def iommufd_device_change_pt(k: ModelKernel, idev: IommufdDevice, pt_id: int, do_attach: AttachFn) -> int:
    """device.c:753-799."""
    ictx = idev.ictx
    pt_obj = ictx.get_object(pt_id, IOMMUFD_OBJ_ANY)
    if pt_obj.type in (IOMMUFD_OBJ_HWPT_NESTED, IOMMUFD_OBJ_HWPT_PAGING):
        assert isinstance(pt_obj, hwpt_c.IommufdHwPagetable)
        destroy = do_attach(k, idev, pt_obj)
    elif pt_obj.type == IOMMUFD_OBJ_IOAS:
        destroy, pt_id = iommufd_device_auto_get_domain(k, idev, pt_obj, do_attach)  # type: ignore[arg-type]
    else:
        raise Errno(errno.EINVAL, cite(DEVICE_C, 786))
    if destroy is not None:
        iommufd_hw_pagetable_put(k, ictx, destroy)
    return pt_id


# -- iommufd_access ---------------------------------------------------------------------

UnmapFn = Callable[["ModelKernel", Any, int, int], None]


class AccessOps:
    """struct iommufd_access_ops."""

    def __init__(self, needs_pin_pages: bool, unmap: UnmapFn | None):
        self.needs_pin_pages = needs_pin_pages
        self.unmap = unmap


class IommufdAccess(IommufdObject):
    """struct iommufd_access (iommufd_private.h:437-447)."""

    type = IOMMUFD_OBJ_ACCESS

    def __init__(self, ictx: IommufdCtx, ops: AccessOps, data: Any):
        super().__init__()
        self.ictx = ictx
        self.ops = ops
        self.data = data
        self.ioas: IommufdIoas | None = None
        self.ioas_unpin: IommufdIoas | None = None
        self.iova_alignment = PAGE_SIZE if ops.needs_pin_pages else 1
        self.iopt_access_list_id = 0

    def destroy(self, k: ModelKernel) -> None:
        """iommufd_access_destroy_object() (device.c:934-944)."""
        if self.ioas is not None:
            with contextlib.suppress(Errno):  # WARN_ON
                iommufd_access_change_ioas(k, self, None)
        k.put_file(self.ictx)


def iommufd_access_change_ioas(k: ModelKernel, access: IommufdAccess, new_ioas: IommufdIoas | None) -> None:
    """device.c:875-920."""
    iopt_access_list_id = access.iopt_access_list_id
    cur_ioas = access.ioas
    if cur_ioas is not access.ioas_unpin:
        raise Errno(errno.EBUSY, cite(DEVICE_C, 886))
    if cur_ioas is new_ioas:
        return
    access.ioas = None
    if new_ioas is not None:
        try:
            iopt_add_access(new_ioas.iopt, access)
        except BaseException:
            access.ioas = cur_ioas
            raise
        new_ioas.users += 1
    if cur_ioas is not None:
        if access.ops.unmap is not None:
            access.ops.unmap(k, access.data, 0, ULONG_MAX)
        iopt_remove_access(cur_ioas.iopt, access, iopt_access_list_id)
        cur_ioas.users -= 1
    access.ioas = new_ioas
    access.ioas_unpin = new_ioas


def iommufd_access_change_ioas_id(k: ModelKernel, access: IommufdAccess, id_: int) -> None:
    """device.c:922-932."""
    ioas = access.ictx.get_object(id_, IOMMUFD_OBJ_IOAS)
    iommufd_access_change_ioas(k, access, ioas)  # type: ignore[arg-type]


def iommufd_access_create(k: ModelKernel, ictx: IommufdCtx, ops: AccessOps, data: Any) -> IommufdAccess:
    """device.c:959-990."""
    access = IommufdAccess(ictx, ops, data)
    ictx.object_alloc(access)
    access.users += 1
    k.get_file(ictx)
    ictx.finalize(access)
    return access


def iommufd_access_destroy(k: ModelKernel, access: IommufdAccess) -> None:
    """device.c:998-1002."""
    access.ictx.object_destroy_user(k, access)


def iommufd_access_attach(k: ModelKernel, access: IommufdAccess, ioas_id: int) -> None:
    """device.c:1016-1030."""
    if access.ioas is not None:
        raise Errno(errno.EINVAL, cite(DEVICE_C, 1023))
    iommufd_access_change_ioas_id(k, access, ioas_id)


def iommufd_access_replace(k: ModelKernel, access: IommufdAccess, ioas_id: int) -> None:
    """device.c:1032-1045."""
    if access.ioas is None:
        raise Errno(errno.ENOENT, cite(DEVICE_C, 1039))
    iommufd_access_change_ioas_id(k, access, ioas_id)


def iommufd_access_notify_unmap(k: ModelKernel, iopt: Any, iova: int, length: int) -> None:
    """device.c:1063-1083."""
    for _, access in sorted(iopt.access_list.items()):
        if access.ops.unmap is not None:
            access.ops.unmap(k, access.data, iova, length)


def iopt_area_add_access(k: ModelKernel, area: IoptArea, start_index: int, last_index: int,
                         flags: int) -> list[tuple[Mapping, int]]:
    """pages.c:1916-1961: returns the pages, as (mapping, offset)."""
    pages = area.pages
    assert pages is not None
    if flags & IOMMUFD_ACCESS_RW_WRITE and not pages.writable:
        raise Errno(errno.EPERM, cite(PAGES_C, 1925))
    exact = next((a for a in pages.accesses if a.start == start_index and a.last == last_index), None)
    if exact is not None:
        area.num_accesses += 1
        exact.users += 1
    else:
        pages.pin(k, start_index, last_index)
        pages.accesses.append(PagesAccess(start_index, last_index))
        area.num_accesses += 1
    return [pages.page(k, i) for i in range(start_index, last_index + 1)]


def iopt_area_remove_access(k: ModelKernel, area: IoptArea, start_index: int, last_index: int) -> None:
    """pages.c:1972-1994."""
    pages = area.pages
    assert pages is not None
    exact = next((a for a in pages.accesses if a.start == start_index and a.last == last_index), None)
    if exact is None:
        return
    area.num_accesses -= 1
    exact.users -= 1
    if exact.users:
        return
    pages.accesses.remove(exact)
    pages.unpin_unused(k)


def _remove_access_range(k: ModelKernel, iopt: Any, iova: int, last_iova: int) -> None:
    it = ContigIter(iopt, iova, last_iova)
    for area, cur in it.steps:
        iopt_area_remove_access(k, area, area.iova_to_index(cur), area.iova_to_index(min(last_iova, area.last)))


def iommufd_access_unpin_pages(k: ModelKernel, access: IommufdAccess, iova: int, length: int) -> None:
    """device.c:1094-1128."""
    if not length:
        return
    last_iova = check_add_overflow(iova, length - 1)
    if last_iova is None or access.ioas_unpin is None:
        return
    _remove_access_range(k, access.ioas_unpin.iopt, iova, last_iova)


def check_area_prot(area: IoptArea, flags: int) -> bool:
    """device.c:1142-1147."""
    if flags & IOMMUFD_ACCESS_RW_WRITE:
        return bool(area.iommu_prot & IOMMU_WRITE)
    return bool(area.iommu_prot & IOMMU_READ)


def iommufd_access_pin_pages(k: ModelKernel, access: IommufdAccess, iova: int, length: int,
                             flags: int) -> list[tuple[Mapping, int]]:
    """device.c:1168-1242."""
    if "IOMMUFD_TEST" in k.facts.config and (access.iova_alignment != PAGE_SIZE or access.ops.unmap is None):
        raise Errno(errno.EINVAL, cite(DEVICE_C, 1181))
    if not length:
        raise Errno(errno.EINVAL, cite(DEVICE_C, 1184))
    last_iova = check_add_overflow(iova, length - 1)
    if last_iova is None:
        raise Errno(errno.EOVERFLOW, cite(DEVICE_C, 1186))
    if access.ioas is None:
        raise Errno(errno.ENOENT, cite(DEVICE_C, 1190))
    iopt = access.ioas.iopt
    it = ContigIter(iopt, iova, last_iova)
    out: list[tuple[Mapping, int]] = []
    cur_iova = iova
    try:
        for area, cur in it.steps:
            cur_iova = cur
            last = min(last_iova, area.last)
            last_index = area.iova_to_index(last)
            index = area.iova_to_index(cur)
            # iopt_area_contig_is_aligned() (device.c:1130-1140)
            aligned = area.start_byte(cur) % PAGE_SIZE == 0 and (
                last_iova <= area.last or area.start_byte(area.last) % PAGE_SIZE == PAGE_SIZE - 1)
            if area.prevent_access or not aligned:
                raise Errno(errno.EINVAL, cite(DEVICE_C, 1204))
            if not check_area_prot(area, flags):
                raise Errno(errno.EPERM, cite(DEVICE_C, 1209))
            out += iopt_area_add_access(k, area, index, last_index, flags)
        cur_iova = it.cur_iova
        if not it.done:
            raise Errno(errno.ENOENT, cite(DEVICE_C, 1220))
    except BaseException:
        if iova < cur_iova:
            _remove_access_range(k, iopt, iova, cur_iova - 1)
        raise
    return out


def iommufd_access_rw(k: ModelKernel, access: IommufdAccess, iova: int, data: bytearray, flags: int) -> None:
    """device.c:1257-1307: for a read, ``data`` is filled in place."""
    length = len(data)
    if not length:
        raise Errno(errno.EINVAL, cite(DEVICE_C, 1267))
    last_iova = check_add_overflow(iova, length - 1)
    if last_iova is None:
        raise Errno(errno.EOVERFLOW, cite(DEVICE_C, 1269))
    if access.ioas is None:
        raise Errno(errno.ENOENT, cite(DEVICE_C, 1273))
    it = ContigIter(access.ioas.iopt, iova, last_iova)
    pos = 0
    for area, cur in it.steps:
        last = min(last_iova, area.last)
        nbytes = last - cur + 1
        if area.prevent_access:
            raise Errno(errno.EINVAL, cite(DEVICE_C, 1284))
        if not check_area_prot(area, flags):
            raise Errno(errno.EPERM, cite(DEVICE_C, 1289))
        assert area.pages is not None
        chunk = bytearray(data[pos : pos + nbytes])
        iopt_pages_rw_access(k, area.pages, area.start_byte(cur), chunk, flags)
        data[pos : pos + nbytes] = chunk
        pos += nbytes
    if not it.done:
        raise Errno(errno.ENOENT, cite(DEVICE_C, 1301))


# -- IOMMU_GET_HW_INFO -------------------------------------------------------------------

def iommufd_get_hw_info(ucmd: Ucmd[u.iommu_hw_info]) -> int:
    """device.c:1309-1414."""
    cmd = ucmd.cmd
    k = ucmd.k
    reserved = cmd.__reserved
    in_type = 0
    if k.since(HW_INFO_INPUT_TYPE):
        if cmd.flags & ~u.IOMMU_HW_INFO_FLAG_INPUT_TYPE or reserved[0] or reserved[1] or reserved[2]:
            raise Errno(errno.EOPNOTSUPP,
                        cite(DEVICE_C, 1558 if cmd.flags & ~u.IOMMU_HW_INFO_FLAG_INPUT_TYPE else 1560, "7.2"))
        if cmd.flags & u.IOMMU_HW_INFO_FLAG_INPUT_TYPE:
            in_type = cmd.in_data_type
    elif cmd.flags or reserved[0] or reserved[1] or reserved[2]:
        raise Errno(errno.EOPNOTSUPP, cite(DEVICE_C, 1322))
    idev = ucmd.ictx.get_object(cmd.dev_id, IOMMUFD_OBJ_DEVICE)
    assert isinstance(idev, IommufdDevice)
    ops = dev_iommu_ops(k, idev.dev)
    info = ops.hw_info(idev.dev, in_type)
    if info is None:
        cmd.out_data_type = u.IOMMU_HW_INFO_TYPE_NONE
        data = b""
    else:
        cmd.out_data_type, data = info
    copy_len = min(cmd.data_len, len(data))
    if not copy_to_user_partial(k, cmd.data_uptr, data[:copy_len]):
        raise Errno(errno.EFAULT, cite(DEVICE_C, 1353))
    # clear_user() of the rest of the user's buffer
    if copy_len < cmd.data_len and not copy_to_user_partial(k, cmd.data_uptr + copy_len,
                                                            bytes(cmd.data_len - copy_len)):
        raise Errno(errno.EFAULT, cite(DEVICE_C, 1363))
    cmd.data_len = len(data)
    cmd.out_capabilities = 0
    if ops.capable(idev.dev, IOMMU_CAP_DIRTY_TRACKING):
        cmd.out_capabilities |= u.IOMMU_HW_CAP_DIRTY_TRACKING
    if k.since(HW_INFO_ATS_CAP) and not ops.capable(idev.dev, IOMMU_CAP_PCI_ATS_SUPPORTED):
        cmd.out_capabilities |= u.IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED  # :1620-1622@7.2
    # No modelled device has PASID enabled: dev->iommu->max_pasids == 0.
    cmd.out_max_pasid_log2 = 0
    ucmd.respond()
    return 0
