"""The iommu core's DMA-ownership counter per IOMMU group (drivers/iommu/iommu.c).

Kernel drivers without ``driver_managed_dma`` count as users of the default
domain; VFIO and iommufd claim ownership, exclusively per group (legacy
container) or shared per owner (iommufd).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from typing import Any

from .errors import Errno


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
            raise Errno(errno.EBUSY, "drivers/iommu/iommu.c:3128")
        self.owner_cnt += 1

    def device_unuse_default_domain(self) -> None:
        """iommu.c:3148-3160."""
        if self.owner_cnt:
            self.owner_cnt -= 1

    def claim_dma_owner(self, owner: Any) -> None:
        """iommu_group_claim_dma_owner(): exclusive, for the legacy container (iommu.c:3214-3233)."""
        if self.owner_cnt:
            raise Errno(errno.EPERM, "drivers/iommu/iommu.c:3223")
        self.owner = owner
        self.owner_cnt += 1

    def device_claim_dma_owner(self, owner: Any) -> None:
        """iommu_device_claim_dma_owner(): shared by one owner (iommu.c:3244-3271)."""
        if self.owner_cnt:
            if self.owner is not owner:
                raise Errno(errno.EPERM, "drivers/iommu/iommu.c:3258")
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
