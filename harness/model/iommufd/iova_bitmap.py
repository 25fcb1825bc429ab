"""drivers/iommu/iommufd/iova_bitmap.c: the user's dirty bitmap a read_and_clear_dirty fills."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from ..errors import Errno, cite

if TYPE_CHECKING:
    from ..kernel import ModelKernel


IOVA_BITMAP_C = "drivers/iommu/iommufd/iova_bitmap.c"


class DirtyBitmap:
    """struct iommu_dirty_bitmap over a user bitmap.

    ``record`` is iova_bitmap_set(): bits are set in address order and the
    call stops at the first byte whose page cannot be pinned."""

    def __init__(self, k: ModelKernel, iova: int, length: int, page_size: int, data: int):
        self.k = k
        self.iova = iova
        self.pgshift = (page_size & -page_size).bit_length() - 1
        self.data = data
        self.length = length
        self.err: Errno | None = None   # the first range it could not record (6.12's bitmap->err)
        # iova_bitmap_alloc(): mapped_total_index (iova_bitmap.c:257-258), in bytes
        self.total_index = ((length - 1) >> self.pgshift) // 8 + 1

    def record(self, iova: int, length: int) -> None:
        if not length or length > self.length or iova < self.iova or iova - self.iova > self.length - length:
            self.err = self.err or Errno(errno.EPROTO, cite(IOVA_BITMAP_C, 420))
            return
        mm = self.k.mm
        cur = (iova - self.iova) >> self.pgshift
        last = (iova + length - 1 - self.iova) >> self.pgshift
        while cur <= last:
            byte = cur // 8
            if byte >= self.total_index:
                return  # iova_bitmap_advance_to(): -EINVAL, nothing set
            addr = self.data + byte
            m = mm.lookup(addr, write=True)   # pinned FOLL_WRITE (iova_bitmap.c:198-201)
            if m is None:
                return  # iova_bitmap_get(): pin failed, the rest is dropped
            m.data[addr - m.start] |= 1 << (cur % 8)
            cur += 1
