"""The iommu core's domains and the driver callbacks iommufd reaches through
them (drivers/iommu/iommu.c, include/linux/iommu.h), with the driver of the
IOMMU the VFIO devices sit behind (drivers/iommu/intel/iommu.c for kind
"intel"), described by the backend's ``IommuHw`` facts.

The mock driver of CONFIG_IOMMUFD_TEST lives in ``selftest.py``.

A paging domain's page table is not stored: it always holds exactly the
areas of the io_pagetable it was added to (iopt_table_add_domain() fills it,
every map and unmap keeps it in step), so "is this IOVA mapped" is answered
from the io_pagetable.  Only per-PTE state the iopt does not have (the mock's
dirty bits) is kept here.
"""

from __future__ import annotations

import errno
import struct
from typing import TYPE_CHECKING, Any, Protocol

from ...backends.base import IommuHw
from ..errors import Errno
from ..gates import at
from .private import IOMMU_READ, IOMMU_WRITE, ULONG_MAX

if TYPE_CHECKING:
    from ..iommu import IommuGroup
    from ..kernel import ModelKernel
    from .io_pagetable import IoPagetable

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

# include/uapi/linux/iommufd.h
IOMMU_HWPT_ALLOC_NEST_PARENT = 1 << 0
IOMMU_HWPT_ALLOC_DIRTY_TRACKING = 1 << 1
IOMMU_HW_INFO_TYPE_NONE = 0
IOMMU_HW_INFO_TYPE_INTEL_VTD = 1
IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17 = 1 << 0


class Bindable(Protocol):
    """What the VFIO side hands to iommufd_device_bind(): a device with its
    IOMMU group, its name and the IOMMU it sits behind."""

    iommu_group: IommuGroup | None
    bdf: str
    hw: IommuHw


class UserData:
    """struct iommu_user_data (include/linux/iommu.h)."""

    __slots__ = ("len", "type", "uptr")

    def __init__(self, type_: int, uptr: int, len_: int):
        self.type = type_
        self.uptr = uptr
        self.len = len_


class DirtyBitmap:
    """struct iommu_dirty_bitmap over a user bitmap (drivers/iommu/iommufd/iova_bitmap.c).

    ``record`` is iova_bitmap_set(): bits are set in address order and the
    call stops at the first byte whose page cannot be pinned."""

    def __init__(self, k: ModelKernel, iova: int, length: int, page_size: int, data: int):
        self.k = k
        self.iova = iova
        self.pgshift = (page_size & -page_size).bit_length() - 1
        self.data = data
        # iova_bitmap_alloc(): mapped_total_index (iova_bitmap.c:257-258), in bytes
        self.total_index = ((length - 1) >> self.pgshift) // 8 + 1

    def record(self, iova: int, length: int) -> None:
        mm = self.k.mm
        cur = (iova - self.iova) >> self.pgshift
        last = (iova + length - 1 - self.iova) >> self.pgshift
        while cur <= last:
            byte = cur // 8
            if byte >= self.total_index:
                return  # iova_bitmap_advance_to(): -EINVAL, nothing set
            addr = self.data + byte
            m = mm.lookup(addr)
            if m is None:
                return  # iova_bitmap_get(): pin failed, the rest is dropped
            m.data[addr - m.start] |= 1 << (cur % 8)
            cur += 1


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
        return 0, Errno(errno.EOPNOTSUPP, "drivers/iommu/iommufd/hw_pagetable.c:448")

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
        raise Errno(errno.EOPNOTSUPP, "drivers/iommu/iommufd/hw_pagetable.c:119")

    def attach_dev(self, domain: IommuDomain, dev: Any) -> None:
        """domain->ops->attach_dev()."""

    def resv_regions(self, dev: Any) -> list[tuple[int, int]]:
        """iommu_get_resv_regions() minus IOMMU_RESV_DIRECT_RELAXABLE, inclusive."""
        return []

    def enable_iopf(self, dev: Any) -> None:
        raise Errno(errno.ENODEV, "drivers/iommu/iommu.c:iommu_dev_enable_feature")


# -- the IOMMU the VFIO devices sit behind ------------------------------------

def _ecap_sc_support(ecap: int) -> bool:
    """intel/iommu.h: ecap_sc_support(e) = (e >> 7) & 1."""
    return bool((ecap >> 7) & 1)


def _ecap_nest(ecap: int) -> bool:
    """intel/iommu.h: ecap_nest(e) = (e >> 26) & 1 (nested_supported() also
    needs scalable mode; QEMU 7.2's intel-iommu has neither)."""
    return bool((ecap >> 26) & 1)


class HwDomain(IommuDomain):
    """A paging domain of the hardware IOMMU (struct dmar_domain for intel)."""

    def __init__(self, ops: HwIommuOps, hw: IommuHw):
        super().__init__(ops, IOMMU_DOMAIN_UNMANAGED)
        self.aperture_start = hw.aperture_start
        self.aperture_end = hw.aperture_last
        self.pgsize_bitmap = hw.pgsize_bitmap
        self.force_snooping = False
        self.nested_parent = False
        self.sc_support = False
        self.tracking = False

    def check_map(self, iommu_prot: int) -> None:
        """intel_iommu_map() (intel/iommu.c:3717-3750) -> __domain_mapping(): a PTE is
        readable or writable or it is refused (1821-1822).  Only the VFIO compat layer
        maps without either (IOMMU_IOAS_MAP refuses that itself, ioas.c:216-218)."""
        if not iommu_prot & (IOMMU_READ | IOMMU_WRITE):
            raise Errno(errno.EINVAL, "drivers/iommu/intel/iommu.c:1821-1822")

    def enforce_cache_coherency(self) -> bool:
        """intel_iommu_enforce_cache_coherency(): only with snoop control."""
        if not self.sc_support:
            return False
        self.force_snooping = True
        return True

    def set_dirty_tracking(self, enable: bool) -> None:
        self.tracking = enable

    def read_and_clear_dirty(self, iova: int, size: int, flags: int, dirty: DirtyBitmap | None) -> Errno | None:
        # No device DMA happens in the model: nothing is ever dirty.
        if not self.tracking and dirty is not None:
            return Errno(errno.EINVAL, "drivers/iommu/intel/iommu.c:intel_iommu_read_and_clear_dirty")
        return None


class HwIommuOps(IommuOps):
    """The hardware IOMMU's ops, from ``IommuHw`` and the cap/ecap registers
    in the device's ``hw_info_data`` (zeros when the backend gave none)."""

    def __init__(self, hw: IommuHw):
        self.hw = hw
        self.name = hw.kind

    def _regs(self, dev: Any) -> tuple[int, int]:
        data = getattr(dev, "hw_info_data", None) or {}
        return int(data.get("cap_reg", 0)), int(data.get("ecap_reg", 0))

    def capable(self, dev: Any, cap: int) -> bool:
        # intel_iommu_capable() (intel/iommu.c:3904-3921)
        if cap in (IOMMU_CAP_CACHE_COHERENCY, IOMMU_CAP_DEFERRED_FLUSH):
            return True
        if cap == IOMMU_CAP_ENFORCE_CACHE_COHERENCY:
            return _ecap_sc_support(self._regs(dev)[1])
        if cap == IOMMU_CAP_DIRTY_TRACKING:
            return self.hw.dirty_tracking
        return False

    def hw_info(self, dev: Any, in_type: int = 0) -> tuple[int, bytes] | None:
        if self.hw.kind != "intel":
            return None
        # intel_iommu_hw_info() (intel/iommu.c:4430-4446): struct iommu_hw_info_vtd; 7.2 refuses
        # an asked-for type other than its own (intel/iommu.c:3696-3698@7.2)
        if in_type not in (0, IOMMU_HW_INFO_TYPE_INTEL_VTD):
            raise Errno(errno.EOPNOTSUPP, at("drivers/iommu/intel/iommu.c", 3698))
        cap, ecap = self._regs(dev)
        return IOMMU_HW_INFO_TYPE_INTEL_VTD, struct.pack(
            "<IIQQ", IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17, 0, cap, ecap)

    def domain_alloc_user(self, k: ModelKernel, dev: Any, flags: int, parent: IommuDomain | None,
                          user_data: UserData | None) -> IommuDomain:
        # intel_iommu_domain_alloc_user() (intel/iommu.c:3598-3648)
        where = "drivers/iommu/intel/iommu.c:"
        nested = _ecap_nest(self._regs(dev)[1])
        if parent is not None:
            raise Errno(errno.EOPNOTSUPP, where + "3612")  # no VT-d S1 nesting modelled
        if flags & ~(IOMMU_HWPT_ALLOC_NEST_PARENT | IOMMU_HWPT_ALLOC_DIRTY_TRACKING):
            raise Errno(errno.EOPNOTSUPP, where + "3618")
        if flags & IOMMU_HWPT_ALLOC_NEST_PARENT and not nested:
            raise Errno(errno.EOPNOTSUPP, where + "3620")
        if user_data is not None or (flags & IOMMU_HWPT_ALLOC_DIRTY_TRACKING and not self.hw.dirty_tracking):
            raise Errno(errno.EOPNOTSUPP, where + "3622")
        d = HwDomain(self, self.hw)
        d.sc_support = _ecap_sc_support(self._regs(dev)[1])
        d.nested_parent = bool(flags & IOMMU_HWPT_ALLOC_NEST_PARENT)
        d.dirty_ops = bool(flags & IOMMU_HWPT_ALLOC_DIRTY_TRACKING)
        return d

    def attach_dev(self, domain: IommuDomain, dev: Any) -> None:
        # prepare_domain_attach_device() (intel/iommu.c:3659-3671)
        ecap = self._regs(dev)[1]
        if isinstance(domain, HwDomain) and domain.force_snooping and not _ecap_sc_support(ecap):
            raise Errno(errno.EINVAL, "drivers/iommu/intel/iommu.c:3668")
        if domain.dirty_ops and not self.hw.dirty_tracking:
            raise Errno(errno.EINVAL, "drivers/iommu/intel/iommu.c:3671")

    def resv_regions(self, dev: Any) -> list[tuple[int, int]]:
        return list(self.hw.reserved)

    def enable_iopf(self, dev: Any) -> None:
        # intel_iommu_enable_iopf(): the emulated devices have no ATS/PRI
        raise Errno(errno.ENODEV, "drivers/iommu/intel/iommu.c:4196")


_HW_OPS = "iommufd.hw_ops"


def dev_iommu_ops(k: ModelKernel, dev: Any) -> IommuOps:
    """dev_iommu_ops(): the mock driver for a mock device, else the driver of
    the IOMMU in ``dev.hw`` (one ops object per IOMMU kind, so domains of
    devices behind the same IOMMU share an owner)."""
    ops = getattr(dev, "iommu_ops", None)
    if isinstance(ops, IommuOps):
        return ops
    hw = getattr(dev, "hw", None) or k.facts.iommu
    cache = k.state.setdefault(_HW_OPS, {})
    assert isinstance(cache, dict)
    found = cache.get(hw)
    if found is None:
        found = cache[hw] = HwIommuOps(hw)
    assert isinstance(found, IommuOps)
    return found

