"""drivers/iommu/iommufd/viommu.c (7.2): the vIOMMU, vDEVICE and HW queue objects and their
ioctls, with the driver-facing helpers of driver.c they use (the vDEVICE lookups, the mmap
offsets, object dependencies).  The vEVENTQ is in ``eventq``; the nested HWPT allocated on a
vIOMMU and IOMMU_HWPT_INVALIDATE through one in ``hw_pagetable``; the mock driver's vIOMMU in
``selftest``.

Only 7.2 has these ioctls (main.py registers them for a series that declares them), so every
citation here is a 7.2 line.
"""

from __future__ import annotations

import contextlib
import errno
from typing import TYPE_CHECKING, Any

from ...uapi import iommufd as u
from ..errors import Errno, cite
from ..iommu.iommu import IommuDomain, UserData, dev_iommu_ops
from . import device as device_c
from .private import (
    DRIVER_C,
    HW_PAGETABLE_C,
    IO_PAGETABLE_C,
    IOMMUFD_OBJ_DEVICE,
    IOMMUFD_OBJ_HWPT_PAGING,
    PAGE_SIZE,
    REMOVE_WAIT_SHORTTERM,
    VIOMMU_C,
    IommufdObject,
    Ucmd,
    check_add_overflow,
)

if TYPE_CHECKING:
    from ..kernel import ModelKernel
    from ..memory import Mapping
    from .device import IommufdDevice
    from .hw_pagetable import HwptPaging
    from .main import IommufdCtx

# enum iommufd_object_type (iommufd_private.h@7.2): the kinds 7.2 added (the model's numbers
# are its own; only their distinctness matters)
IOMMUFD_OBJ_VIOMMU = 8
IOMMUFD_OBJ_VDEVICE = 9
IOMMUFD_OBJ_VEVENTQ = 10
IOMMUFD_OBJ_HW_QUEUE = 11


class ViommuOps:
    """struct iommufd_viommu_ops (include/linux/iommufd.h@7.2) with the driver's private part of
    its vIOMMU (a driver embeds struct iommufd_viommu in its own).  An op a driver lacks answers
    the way the core answers a NULL op."""

    def destroy(self, k: ModelKernel, viommu: IommufdViommu) -> None:
        pass

    def alloc_domain_nested(self, k: ModelKernel, viommu: IommufdViommu, flags: int,
                            user_data: UserData) -> IommuDomain:
        raise Errno(errno.EOPNOTSUPP, cite(HW_PAGETABLE_C, 299, "7.2"))

    def cache_invalidate(self, k: ModelKernel, viommu: IommufdViommu, type_: int, uptr: int,
                         entry_len: int, entry_num: int) -> tuple[int, Errno | None]:
        """Returns (entries handled, error)."""
        return 0, Errno(errno.EOPNOTSUPP, cite(HW_PAGETABLE_C, 545, "7.2"))

    def get_hw_queue_size(self, viommu: IommufdViommu, type_: int) -> int:
        """0: the type is not supported (without the op: viommu.c:389-392)."""
        return 0

    def hw_queue_init_phys(self, k: ModelKernel, hw_queue: IommufdHwQueue, index: int) -> None:
        raise Errno(errno.EOPNOTSUPP, cite(VIOMMU_C, 391, "7.2"))


class IommufdViommu(IommufdObject):
    """struct iommufd_viommu (include/linux/iommufd.h:99-112@7.2)."""

    type = IOMMUFD_OBJ_VIOMMU

    def __init__(self, ictx: IommufdCtx, hwpt: HwptPaging, iommu_dev: Any, type_: int):
        super().__init__()
        self.ictx = ictx
        self.hwpt = hwpt
        self.iommu_dev = iommu_dev
        self.viommu_type = type_
        self.ops: ViommuOps | None = None
        self.vdevs: dict[int, IommufdVdevice] = {}    # xa vdevs: virt_id -> vDEVICE
        self.veventqs: list[Any] = []                  # struct iommufd_veventq (eventq.py)
        self.mmaps: dict[int, int] = {}                # this owner's immaps: offset -> length

    def destroy(self, k: ModelKernel) -> None:
        """iommufd_viommu_destroy() (viommu.c:6-15)."""
        if self.ops is not None:
            self.ops.destroy(k, self)
        self.hwpt.users -= 1
        self.vdevs.clear()


def iommu_get_iommu_dev(k: ModelKernel, dev: Any) -> Any:
    """__iommu_get_iommu_dev(): the IOMMU instance a device sits behind (its driver's ops
    object stands for it: one per IOMMU in the model)."""
    return dev_iommu_ops(k, dev)


def iommufd_get_device(ucmd: Ucmd[Any], id_: int) -> IommufdDevice:
    """iommufd_get_device() (iommufd_private.h:498-503@7.2)."""
    idev = ucmd.ictx.get_object(id_, IOMMUFD_OBJ_DEVICE)
    assert isinstance(idev, device_c.IommufdDevice)
    return idev


def iommufd_get_viommu(ucmd: Ucmd[Any], id_: int) -> IommufdViommu:
    """iommufd_get_viommu() (iommufd_private.h:671-677@7.2)."""
    viommu = ucmd.ictx.get_object(id_, IOMMUFD_OBJ_VIOMMU)
    assert isinstance(viommu, IommufdViommu)
    return viommu


def iommufd_viommu_alloc_mmap(ictx: IommufdCtx, owner: IommufdViommu, length: int) -> int:
    """_iommufd_alloc_mmap() (driver.c:39-72@7.2) for a page-aligned MMIO range: the lowest free
    offset of the context's mmap tree from PAGE_SIZE on (every live vIOMMU's immaps)."""
    taken = sorted((off, off + n) for obj in ictx.objects.values() if isinstance(obj, IommufdViommu)
                   for off, n in obj.mmaps.items())
    start = PAGE_SIZE
    for lo, hi in taken:
        if start + length <= lo:
            break
        start = max(start, hi)
    owner.mmaps[start] = length
    return start


def iommufd_viommu_destroy_mmap(owner: IommufdViommu, offset: int) -> None:
    """_iommufd_destroy_mmap() (driver.c:75-83@7.2)."""
    owner.mmaps.pop(offset, None)


def iommufd_viommu_alloc_ioctl(ucmd: Ucmd[Any]) -> int:
    """viommu.c:17-111.  The object is the ucmd's new_obj: the core aborts and destroys it when
    the handler fails (main.c:555-560@7.2)."""
    cmd = ucmd.cmd
    ictx = ucmd.ictx
    k = ucmd.k
    user_data = UserData(cmd.type, cmd.data_uptr, cmd.data_len)
    if cmd.flags or cmd.type == u.IOMMU_VIOMMU_TYPE_DEFAULT:
        raise Errno(errno.EOPNOTSUPP, cite(VIOMMU_C, 33, "7.2"))
    idev = iommufd_get_device(ucmd, cmd.dev_id)
    ops = dev_iommu_ops(k, idev.dev)
    get_size = getattr(ops, "get_viommu_size", None)
    init = getattr(ops, "viommu_init", None)
    if get_size is None or init is None:
        raise Errno(errno.EOPNOTSUPP, cite(VIOMMU_C, 41, "7.2"))
    if not get_size(idev.dev, cmd.type):
        raise Errno(errno.EOPNOTSUPP, cite(VIOMMU_C, 47, "7.2"))
    hwpt_paging = ictx.get_object(cmd.hwpt_id, IOMMUFD_OBJ_HWPT_PAGING)
    from .hw_pagetable import HwptPaging
    assert isinstance(hwpt_paging, HwptPaging)
    if not hwpt_paging.nest_parent:
        raise Errno(errno.EINVAL, cite(VIOMMU_C, 67, "7.2"))

    viommu = IommufdViommu(ictx, hwpt_paging, iommu_get_iommu_dev(k, idev.dev), cmd.type)
    ictx.object_alloc(viommu)
    hwpt_paging.users += 1
    with ictx.abort_on_error(k, viommu):
        assert hwpt_paging.domain is not None
        init(k, viommu, hwpt_paging.domain, user_data if user_data.len else None)
        cmd.out_viommu_id = viommu.id
        ucmd.respond()
    ictx.finalize(viommu)
    return 0


# -- vDEVICE -----------------------------------------------------------------------------

class IommufdVdevice(IommufdObject):
    """struct iommufd_vdevice (include/linux/iommufd.h:114-127@7.2).  It holds a reference on its
    vIOMMU and (users and wait_cnt, from iommufd_get_device()) on its device; the device's
    ``idev->vdev`` is the vDEVICE whose ``idev`` it is (``idev_vdev``)."""

    type = IOMMUFD_OBJ_VDEVICE

    def __init__(self, viommu: IommufdViommu, idev: IommufdDevice, virt_id: int):
        super().__init__()
        self.viommu = viommu
        self.idev: IommufdDevice | None = idev
        self.virt_id = virt_id

    def abort(self, k: ModelKernel) -> None:
        """iommufd_vdevice_abort() (viommu.c:113-128): the device's vdev pointer goes with it."""
        if self.viommu.vdevs.get(self.virt_id) is self:
            del self.viommu.vdevs[self.virt_id]
        self.viommu.users -= 1
        self.idev = None

    def destroy(self, k: ModelKernel) -> None:
        """iommufd_vdevice_destroy() (viommu.c:130-141): puts the device reference."""
        idev = self.idev
        self.abort(k)
        assert idev is not None
        idev.users -= 1


class _Tombstone(IommufdObject):
    """XA_ZERO_ENTRY left by REMOVE_OBJ_TOMBSTONE (main.c:278@7.2): the id stays reserved and
    names nothing (lookups and IOMMU_DESTROY answer ENOENT)."""

    def __init__(self, id_: int):
        super().__init__()
        self.id = id_
        self.users = 0


def idev_vdev(ictx: IommufdCtx, idev: IommufdDevice) -> IommufdVdevice | None:
    """``idev->vdev``: set from the vDEVICE's allocation until its abort."""
    for obj in ictx.objects.values():
        if isinstance(obj, IommufdVdevice) and obj.idev is idev:
            return obj
    return None


def iommufd_device_remove_vdev(k: ModelKernel, idev: IommufdDevice) -> None:
    """iommufd_device_remove_vdev() (device.c:140-173@7.2), the device's pre_destroy: a vDEVICE
    still alive when its device goes is destroyed and its id left a tombstone
    (iommufd_object_tombstone_user(), iommufd_private.h:238-252@7.2)."""
    ictx = idev.ictx
    vdev = idev_vdev(ictx, idev)
    if vdev is None or not vdev.finalized:
        return
    vdev.users += 1
    with contextlib.suppress(Errno):  # WARN_ON
        ictx.object_remove(k, vdev, vdev.id, REMOVE_WAIT_SHORTTERM)
        ictx.objects[vdev.id] = _Tombstone(vdev.id)


def iommufd_vdevice_alloc_ioctl(ucmd: Ucmd[Any]) -> int:
    """viommu.c:143-260 (virt_id > ULONG_MAX, line 154, cannot happen on 64-bit; the mock has no
    vdevice_init)."""
    cmd = ucmd.cmd
    ictx = ucmd.ictx
    k = ucmd.k
    viommu = iommufd_get_viommu(ucmd, cmd.viommu_id)
    idev = iommufd_get_device(ucmd, cmd.dev_id)
    if viommu.iommu_dev is not iommu_get_iommu_dev(k, idev.dev):
        raise Errno(errno.EINVAL, cite(VIOMMU_C, 168, "7.2"))
    if idev_vdev(ictx, idev) is not None:
        raise Errno(errno.EEXIST, cite(VIOMMU_C, 179, "7.2"))
    vdev = IommufdVdevice(viommu, idev, cmd.virt_id)
    ictx.object_alloc(vdev)
    viommu.users += 1
    with ictx.abort_on_error(k, vdev):
        if cmd.virt_id in viommu.vdevs:
            raise Errno(errno.EEXIST, cite(VIOMMU_C, 229, "7.2"))  # xa_insert(): -EBUSY
        viommu.vdevs[cmd.virt_id] = vdev
        cmd.out_vdevice_id = vdev.id
        ucmd.respond()
    idev.users += 1  # the iommufd_get_device() reference is kept (viommu.c:254-256)
    ictx.finalize(vdev)
    return 0


def iommufd_viommu_find_dev(viommu: IommufdViommu, vdev_id: int) -> Any:
    """iommufd_viommu_find_dev() (driver.c:93-102@7.2): the device of the vDEVICE at vdev_id."""
    vdev = viommu.vdevs.get(vdev_id)
    return vdev.idev.dev if vdev is not None and vdev.idev is not None else None


def iommufd_viommu_get_vdev_id(viommu: IommufdViommu, dev: Any) -> int:
    """iommufd_viommu_get_vdev_id() (driver.c:106-126@7.2)."""
    for virt_id, vdev in sorted(viommu.vdevs.items()):
        if vdev.idev is not None and vdev.idev.dev is dev:
            return virt_id
    raise Errno(errno.ENOENT, cite(DRIVER_C, 111, "7.2"))


# -- HW queue ----------------------------------------------------------------------------

class _InternalAccess(device_c.IommufdAccess):
    """An internal access (iommufd_access_create_internal(), device.c:1154-1165@7.2): no ops and
    no context reference; what it pins it also locks (area->num_locks)."""

    def destroy(self, k: ModelKernel) -> None:
        """iommufd_access_destroy_object() (device.c:1123-1134@7.2)."""
        if self.ioas is not None:
            with contextlib.suppress(Errno):
                device_c.iommufd_access_change_ioas(k, self, None)


def _area_locked(k: ModelKernel, hw_queue: Any, iova: int, length: int) -> None:
    """IOMMU_IOAS_UNMAP meeting an area an internal access has locked: EBUSY before the area is
    touched (io_pagetable.c:769-773@7.2).  The model's unmap reaches the lock through the
    access's unmap callback, after it has marked the area prevent_access; the kernel never marks
    a locked area, so the mark is taken back."""
    assert isinstance(hw_queue, IommufdHwQueue)
    lo, hi = hw_queue.pinned
    if hi <= lo or iova + length <= lo or hi <= iova:
        return
    access = hw_queue.access
    assert access is not None and access.ioas is not None
    area = access.ioas.iopt.area_iter_first(iova, iova)  # the one area the unmap notifies for
    if area is not None:
        area.prevent_access = False
    raise Errno(errno.EBUSY, cite(IO_PAGETABLE_C, 771, "7.2"))


_INTERNAL_OPS = device_c.AccessOps(True, _area_locked)


class IommufdHwQueue(IommufdObject):
    """struct iommufd_hw_queue (include/linux/iommufd.h:129-141@7.2); ``destroy_op`` is the
    driver's destroy, set once its init accepted the queue."""

    type = IOMMUFD_OBJ_HW_QUEUE

    def __init__(self, type_: int, index: int):
        super().__init__()
        self.viommu: IommufdViommu | None = None
        self.access: device_c.IommufdAccess | None = None
        self.queue_type = type_
        self.index = index
        self.base_addr = 0
        self.length = 0
        self.pinned = (0, 0)  # [aligned_iova, aligned_iova + length) while pinned
        self.destroy_op: Any = None

    def destroy(self, k: ModelKernel) -> None:
        """iommufd_hw_queue_destroy() (viommu.c:275-289)."""
        if self.destroy_op is not None:
            self.destroy_op(self)
        if self.access is not None:
            assert self.viommu is not None
            iommufd_hw_queue_destroy_access(k, self)
        if self.viommu is not None:
            self.viommu.users -= 1


def iommufd_hw_queue_destroy_access(k: ModelKernel, hw_queue: IommufdHwQueue) -> None:
    """viommu.c:262-273: unpin, detach and destroy the internal access."""
    access = hw_queue.access
    assert access is not None
    lo, hi = hw_queue.pinned
    device_c.iommufd_access_unpin_pages(k, access, lo, hi - lo)
    hw_queue.pinned = (0, 0)
    device_c.iommufd_access_change_ioas(k, access, None)  # iommufd_access_detach_internal()
    access.ictx.object_destroy_user(k, access)            # iommufd_access_destroy_internal()


def iommufd_hw_queue_alloc_phys(k: ModelKernel, cmd: Any, viommu: IommufdViommu,
                                hw_queue: IommufdHwQueue) -> device_c.IommufdAccess:
    """iommufd_hw_queue_alloc_phys() (viommu.c:299-364): pin the queue's pages through an internal
    access on the nesting parent's IOAS; they must be physically contiguous (the model's pages
    are: consecutive pages of one mapping).  A page array too large to allocate (ENOMEM) is not
    modelled."""
    aligned_iova = cmd.nesting_parent_iova & ~(PAGE_SIZE - 1)
    offset = cmd.nesting_parent_iova - aligned_iova
    length = check_add_overflow(offset, cmd.length)
    if length is not None:
        length = check_add_overflow(length, PAGE_SIZE - 1)
    if length is None:
        raise Errno(errno.ERANGE, cite(VIOMMU_C, 314 if check_add_overflow(offset, cmd.length) is None else 316, "7.2"))
    max_npages = length // PAGE_SIZE
    length = max_npages * PAGE_SIZE

    ictx = viommu.ictx
    access = _InternalAccess(ictx, _INTERNAL_OPS, hw_queue)
    ictx.object_alloc(access)
    access.users += 1
    ictx.finalize(access)
    try:
        device_c.iommufd_access_change_ioas(k, access, viommu.hwpt.ioas)
        try:
            pages = device_c.iommufd_access_pin_pages(k, access, aligned_iova, length, 0)
            hw_queue.pinned = (aligned_iova, aligned_iova + length)
            if not _contiguous(pages):
                device_c.iommufd_access_unpin_pages(k, access, aligned_iova, length)
                hw_queue.pinned = (0, 0)
                raise Errno(errno.EFAULT, cite(VIOMMU_C, 347, "7.2"))
        except BaseException:
            device_c.iommufd_access_change_ioas(k, access, None)
            raise
    except BaseException:
        ictx.object_destroy_user(k, access)
        raise
    return access


def _contiguous(pages: list[tuple[Mapping, int]]) -> bool:
    """viommu.c:344-349: page_to_pfn(pages[i]) == page_to_pfn(pages[i - 1]) + 1."""
    return all(m is pages[i - 1][0] and off == pages[i - 1][1] + PAGE_SIZE
               for i, (m, off) in enumerate(pages) if i)


def iommufd_hw_queue_alloc_ioctl(ucmd: Ucmd[Any]) -> int:
    """viommu.c:366-440.  The object is the ucmd's new_obj (main.c:555-560@7.2)."""
    cmd = ucmd.cmd
    ictx = ucmd.ictx
    k = ucmd.k
    if cmd.flags or cmd.type == u.IOMMU_HW_QUEUE_TYPE_DEFAULT:
        raise Errno(errno.EOPNOTSUPP, cite(VIOMMU_C, 378, "7.2"))
    if not cmd.length:
        raise Errno(errno.EINVAL, cite(VIOMMU_C, 380, "7.2"))
    if check_add_overflow(cmd.nesting_parent_iova, cmd.length - 1) is None:
        raise Errno(errno.EOVERFLOW, cite(VIOMMU_C, 383, "7.2"))
    viommu = iommufd_get_viommu(ucmd, cmd.viommu_id)
    if viommu.ops is None:
        raise Errno(errno.EOPNOTSUPP, cite(VIOMMU_C, 391, "7.2"))
    if not viommu.ops.get_hw_queue_size(viommu, cmd.type):
        raise Errno(errno.EOPNOTSUPP, cite(VIOMMU_C, 397, "7.2"))
    hw_queue = IommufdHwQueue(cmd.type, cmd.index)
    ictx.object_alloc(hw_queue)
    with ictx.abort_on_error(k, hw_queue):
        hw_queue.access = iommufd_hw_queue_alloc_phys(k, cmd, viommu, hw_queue)
        hw_queue.viommu = viommu
        viommu.users += 1
        hw_queue.length = cmd.length
        hw_queue.base_addr = cmd.nesting_parent_iova
        viommu.ops.hw_queue_init_phys(k, hw_queue, cmd.index)
        cmd.out_hw_queue_id = hw_queue.id
        ucmd.respond()
    ictx.finalize(hw_queue)
    return 0


def iommufd_object_depend(dependent: IommufdObject, depended: IommufdObject) -> None:
    """_iommufd_object_depend() (driver.c:7-19@7.2)."""
    if dependent is depended or dependent.type != depended.type:
        raise Errno(errno.EINVAL, cite(DRIVER_C, 12 if dependent is depended else 15, "7.2"))
    depended.users += 1


def iommufd_object_undepend(dependent: IommufdObject, depended: IommufdObject) -> None:
    """_iommufd_object_undepend() (driver.c:23-31@7.2)."""
    depended.users -= 1
