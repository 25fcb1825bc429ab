"""drivers/iommu/iommu.c: the iommu core.

DMA ownership per IOMMU group: kernel drivers without ``driver_managed_dma``
count as users of the default domain; VFIO and iommufd claim ownership,
exclusively per group (legacy container) or shared per owner (iommufd).
Groups: one per iommu_group number of the topology, a new one per VF.
Domains (struct iommu_domain) and the driver callbacks iommufd reaches through
them (struct iommu_ops, include/linux/iommu.h); the Intel driver is in
``intel/iommu.py``, the mock driver of CONFIG_IOMMUFD_TEST in iommufd's ``selftest.py``.

A paging domain's page table is not stored: it always holds exactly the
areas of the io_pagetable it was added to (iopt_table_add_domain() fills it,
every map and unmap keeps it in step), so "is this IOVA mapped" is answered
from the io_pagetable.  Only per-PTE state the iopt does not have (the mock's
dirty bits) is kept by the driver.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import Errno, cite

if TYPE_CHECKING:
    from ..iommufd.io_pagetable import IoPagetable
    from ..iommufd.iova_bitmap import DirtyBitmap
    from ..kernel import ModelKernel
    from ..pci.pci import PciCore, PciDev

ULONG_MAX = (1 << 64) - 1  # include/vdso/limits.h, 64-bit

# include/linux/iommu.h
IOMMU_READ = 1 << 0
IOMMU_WRITE = 1 << 1
IOMMU_CACHE = 1 << 2
IOMMU_NO_PASID = 0
IOMMU_DIRTY_NO_CLEAR = 1 << 0

# include/linux/iommu.h: enum iommu_cap
IOMMU_CAP_CACHE_COHERENCY = 0
IOMMU_CAP_NOEXEC = 1
IOMMU_CAP_PRE_BOOT_PROTECTION = 2
IOMMU_CAP_ENFORCE_CACHE_COHERENCY = 3
IOMMU_CAP_DEFERRED_FLUSH = 4
IOMMU_CAP_DIRTY_TRACKING = 5
IOMMU_CAP_PCI_ATS_SUPPORTED = 6  # 7.2 (include/linux/iommu.h:276@7.2)

# include/linux/iommu.h: domain types
IOMMU_DOMAIN_BLOCKED = 0
IOMMU_DOMAIN_UNMANAGED = 1 << 1  # __IOMMU_DOMAIN_PAGING
IOMMU_DOMAIN_NESTED = 1 << 6


# -- groups and their DMA ownership ------------------------------------------

@dataclass(eq=False)
class IommuGroup:
    id: int
    owner_cnt: int = 0
    owner: Any = None
    # bdfs of the member functions, in bus order.
    members: list[str] = field(default_factory=list)

    def dma_owner_claimed(self) -> bool:
        """iommu_group_dma_owner_claimed(): iommu.c:3325-3334."""
        return self.owner_cnt != 0

    def device_use_default_domain(self) -> None:
        """A kernel driver probes a member (iommu.c:3110-3138)."""
        if self.owner_cnt and self.owner is not None:
            raise Errno(errno.EBUSY, cite("drivers/iommu/iommu.c", 3128))
        self.owner_cnt += 1

    def device_unuse_default_domain(self) -> None:
        """iommu.c:3148-3160."""
        if self.owner_cnt:
            self.owner_cnt -= 1

    def claim_dma_owner(self, owner: Any) -> None:
        """iommu_group_claim_dma_owner(): exclusive, for the legacy container (iommu.c:3214-3233)."""
        if self.owner_cnt:
            raise Errno(errno.EPERM, cite("drivers/iommu/iommu.c", 3223))
        self.owner = owner
        self.owner_cnt += 1

    def device_claim_dma_owner(self, owner: Any) -> None:
        """iommu_device_claim_dma_owner(): shared by one owner (iommu.c:3244-3271)."""
        if self.owner_cnt:
            if self.owner is not owner:
                raise Errno(errno.EPERM, cite("drivers/iommu/iommu.c", 3258))
            self.owner_cnt += 1
            return
        self.owner = owner
        self.owner_cnt += 1

    def release_dma_owner(self) -> None:
        """iommu_group_release_dma_owner() (iommu.c:3290-3302): back to the default domain."""
        self.owner_cnt = 0
        self.owner = None

    def device_release_dma_owner(self) -> None:
        """iommu_device_release_dma_owner(): iommu.c:3304-3317."""
        if self.owner_cnt > 1:
            self.owner_cnt -= 1
        else:
            self.release_dma_owner()


def iommu_group_get_or_alloc(core: PciCore, number: int | None) -> IommuGroup | None:
    if number is None:
        return None
    group = core.groups.get(number)
    if group is None:
        group = core.groups[number] = IommuGroup(number)
    return group


def iommu_group_alloc(core: PciCore) -> IommuGroup:
    """iommu_group_alloc(): the lowest free id (ida_alloc, iommu.c)."""
    n = 0
    while n in core.groups:
        n += 1
    group = core.groups[n] = IommuGroup(n)
    return group


def iommu_group_add_device(group: IommuGroup | None, pdev: PciDev) -> None:
    if group is not None and pdev.bdf not in group.members:
        group.members.append(pdev.bdf)
        group.members.sort()


def iommu_group_remove_device(core: PciCore, pdev: PciDev) -> None:
    """iommu_release_device(): the group goes away with its last member."""
    group = pdev.group
    if group is None:
        return
    if pdev.bdf in group.members:
        group.members.remove(pdev.bdf)
    if not group.members and core.groups.get(group.id) is group:
        del core.groups[group.id]


# -- domains and the driver's ops -------------------------------------------

class UserData:
    """struct iommu_user_data (include/linux/iommu.h)."""

    __slots__ = ("len", "type", "uptr")

    def __init__(self, type_: int, uptr: int, len_: int):
        self.type = type_
        self.uptr = uptr
        self.len = len_


class IommuDomain:
    """struct iommu_domain."""

    def __init__(self, ops: IommuOps, type_: int):
        self.ops = ops
        self.owner = ops
        self.type = type_
        self.aperture_start = 0
        self.aperture_end = ULONG_MAX
        self.pgsize_bitmap = 0
        self.dirty_ops = False
        self.iopf_handler: Any = None  # the hwpt whose fault queue gets the faults
        self.iopt: IoPagetable | None = None

    # -- page table ---------------------------------------------------------
    def is_mapped(self, iova: int) -> bool:
        iopt = self.iopt
        if iopt is None or self not in iopt.domains:
            return False
        area = iopt.area_iter_first(iova, iova)
        return area is not None

    def unmap_range(self, iova: int, last: int) -> None:
        """The domain's PTEs for [iova, last] go away."""

    def check_map(self, iommu_prot: int) -> None:
        """What iommu_map() of an area with ``iommu_prot`` into this domain would refuse
        (the driver's map_pages); raises its Errno."""

    # -- dirty tracking (struct iommu_dirty_ops) -------------------------------
    def set_dirty_tracking(self, enable: bool) -> None:
        pass

    def read_and_clear_dirty(self, iova: int, size: int, flags: int, dirty: DirtyBitmap | None) -> Errno | None:
        return None

    # -- nesting (domain_nested_ops) -------------------------------------------
    def cache_invalidate_user(self, k: ModelKernel, type_: int, uptr: int, entry_len: int,
                              entry_num: int) -> tuple[int, Errno | None]:
        return 0, Errno(errno.EOPNOTSUPP, cite("drivers/iommu/iommufd/hw_pagetable.c", 448))

    def enforce_cache_coherency(self) -> bool:
        return False


class IommuOps:
    """struct iommu_ops: the driver of the IOMMU a device sits behind."""

    name = "?"
    user_pasid_table = False

    def capable(self, dev: Any, cap: int) -> bool:
        return False

    def hw_info(self, dev: Any, in_type: int = 0) -> tuple[int, bytes] | None:
        """ops->hw_info: (the type it reports, its data), None without the op; ``in_type`` the
        type asked for (7.2's IOMMU_HW_INFO_FLAG_INPUT_TYPE; 0 = IOMMU_HW_INFO_TYPE_DEFAULT)."""
        return None

    def domain_alloc_user(self, k: ModelKernel, dev: Any, flags: int, parent: IommuDomain | None,
                          user_data: UserData | None) -> IommuDomain:
        raise Errno(errno.EOPNOTSUPP, cite("drivers/iommu/iommufd/hw_pagetable.c", 119))

    def attach_dev(self, domain: IommuDomain, dev: Any) -> None:
        """domain->ops->attach_dev()."""

    def resv_regions(self, dev: Any) -> list[tuple[int, int]]:
        """iommu_get_resv_regions() minus IOMMU_RESV_DIRECT_RELAXABLE, inclusive."""
        return []

    def enable_iopf(self, dev: Any) -> None:
        raise Errno(errno.ENODEV, cite("drivers/iommu/iommu.c", 2920))


_HW_OPS = "iommufd.hw_ops"


def dev_iommu_ops(k: ModelKernel, dev: Any) -> IommuOps:
    """dev_iommu_ops(): the mock driver for a mock device, else the driver of
    the IOMMU in ``dev.hw`` (one ops object per IOMMU kind, so domains of
    devices behind the same IOMMU share an owner)."""
    ops = getattr(dev, "iommu_ops", None)
    if isinstance(ops, IommuOps):
        return ops
    from .intel.iommu import HwIommuOps  # the driver module builds on this one's types

    hw = getattr(dev, "hw", None) or k.facts.iommu
    cache = k.state.setdefault(_HW_OPS, {})
    assert isinstance(cache, dict)
    found = cache.get(hw)
    if found is None:
        found = cache[hw] = HwIommuOps(hw)
    assert isinstance(found, IommuOps)
    return found

