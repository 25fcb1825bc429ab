"""drivers/iommu/intel/iommu.c: the driver of the IOMMU the VFIO devices sit behind
(kind "intel"), described by the backend's ``IommuHw`` facts."""

from __future__ import annotations

import errno
import struct
from typing import TYPE_CHECKING, Any

from ....backends.base import IommuHw
from ....uapi import iommufd as u
from ...errors import Errno, cite
from ..iommu import (
    IOMMU_CAP_CACHE_COHERENCY,
    IOMMU_CAP_DEFERRED_FLUSH,
    IOMMU_CAP_DIRTY_TRACKING,
    IOMMU_CAP_ENFORCE_CACHE_COHERENCY,
    IOMMU_DOMAIN_UNMANAGED,
    IOMMU_READ,
    IOMMU_WRITE,
    IommuDomain,
    IommuOps,
    UserData,
)

if TYPE_CHECKING:
    from ...iommufd.iova_bitmap import DirtyBitmap
    from ...kernel import ModelKernel

def _ecap_sc_support(ecap: int) -> bool:
    """intel/iommu.h: ecap_sc_support(e) = (e >> 7) & 1."""
    return bool((ecap >> 7) & 1)

INTEL_C = "drivers/iommu/intel/iommu.c"


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
            raise Errno(errno.EINVAL, cite(INTEL_C, "1821-1822"))

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
            return Errno(errno.EINVAL, cite(INTEL_C, 4545))
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
        if in_type not in (0, u.IOMMU_HW_INFO_TYPE_INTEL_VTD):
            raise Errno(errno.EOPNOTSUPP, cite(INTEL_C, 3698, "7.2"))
        cap, ecap = self._regs(dev)
        return u.IOMMU_HW_INFO_TYPE_INTEL_VTD, struct.pack(
            "<IIQQ", u.IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17, 0, cap, ecap)

    def domain_alloc_user(self, k: ModelKernel, dev: Any, flags: int, parent: IommuDomain | None,
                          user_data: UserData | None) -> IommuDomain:
        # intel_iommu_domain_alloc_user() (intel/iommu.c:3598-3648)
        nested = _ecap_nest(self._regs(dev)[1])
        if parent is not None:
            raise Errno(errno.EOPNOTSUPP, cite(INTEL_C, 3612))  # no VT-d S1 nesting modelled
        if flags & ~(u.IOMMU_HWPT_ALLOC_NEST_PARENT | u.IOMMU_HWPT_ALLOC_DIRTY_TRACKING):
            raise Errno(errno.EOPNOTSUPP, cite(INTEL_C, 3618))
        if flags & u.IOMMU_HWPT_ALLOC_NEST_PARENT and not nested:
            raise Errno(errno.EOPNOTSUPP, cite(INTEL_C, 3620))
        if user_data is not None or (flags & u.IOMMU_HWPT_ALLOC_DIRTY_TRACKING and not self.hw.dirty_tracking):
            raise Errno(errno.EOPNOTSUPP, cite(INTEL_C, 3622))
        d = HwDomain(self, self.hw)
        d.sc_support = _ecap_sc_support(self._regs(dev)[1])
        d.nested_parent = bool(flags & u.IOMMU_HWPT_ALLOC_NEST_PARENT)
        d.dirty_ops = bool(flags & u.IOMMU_HWPT_ALLOC_DIRTY_TRACKING)
        return d

    def attach_dev(self, domain: IommuDomain, dev: Any) -> None:
        # prepare_domain_attach_device() (intel/iommu.c:3659-3671)
        ecap = self._regs(dev)[1]
        if isinstance(domain, HwDomain) and domain.force_snooping and not _ecap_sc_support(ecap):
            raise Errno(errno.EINVAL, cite(INTEL_C, 3668))
        if domain.dirty_ops and not self.hw.dirty_tracking:
            raise Errno(errno.EINVAL, cite(INTEL_C, 3671))

    def resv_regions(self, dev: Any) -> list[tuple[int, int]]:
        return list(self.hw.reserved)

    def enable_iopf(self, dev: Any) -> None:
        # intel_iommu_enable_iopf(): the emulated devices have no ATS/PRI
        raise Errno(errno.ENODEV, cite(INTEL_C, 4196))
