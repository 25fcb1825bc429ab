"""drivers/iommu/iommufd/iommufd_private.h: the object base every iommufd
object shares, the ucmd a handler works on, and the constants of the core.
"""

from __future__ import annotations

import ctypes
import errno
from typing import TYPE_CHECKING, Generic, TypeVar

from ..errors import Errno, cite

# include/linux/iommu.h, which every iommufd file includes
from ..iommu.iommu import IOMMU_CACHE as IOMMU_CACHE
from ..iommu.iommu import IOMMU_DIRTY_NO_CLEAR as IOMMU_DIRTY_NO_CLEAR
from ..iommu.iommu import IOMMU_NO_PASID as IOMMU_NO_PASID
from ..iommu.iommu import IOMMU_READ as IOMMU_READ
from ..iommu.iommu import IOMMU_WRITE as IOMMU_WRITE

if TYPE_CHECKING:
    from ..kernel import ModelKernel
    from .main import IommufdCtx

PAGE_SIZE = 4096
ULONG_MAX = (1 << 64) - 1
U64_MAX = ULONG_MAX
SIZE_MAX = ULONG_MAX
U32_MAX = (1 << 32) - 1
# include/linux/pgtable.h (x86-64): HPAGE_PMD_SIZE
HPAGE_SIZE = 2 << 20

# iommufd_private.h:125-138
IOMMUFD_OBJ_NONE = 0
IOMMUFD_OBJ_ANY = IOMMUFD_OBJ_NONE
IOMMUFD_OBJ_DEVICE = 1
IOMMUFD_OBJ_HWPT_PAGING = 2
IOMMUFD_OBJ_HWPT_NESTED = 3
IOMMUFD_OBJ_IOAS = 4
IOMMUFD_OBJ_ACCESS = 5
IOMMUFD_OBJ_FAULT = 6
IOMMUFD_OBJ_SELFTEST = 7

# io_pagetable.h:172-176
IOPT_PAGES_ACCOUNT_NONE = 0
IOPT_PAGES_ACCOUNT_USER = 1
IOPT_PAGES_ACCOUNT_MM = 2

# iommufd_private.h:65-67
IOPT_ALLOC_IOVA = 1 << 0

# include/linux/iommufd.h: IOMMUFD_ACCESS_RW_*
IOMMUFD_ACCESS_RW_READ = 0
IOMMUFD_ACCESS_RW_WRITE = 1 << 0
IOMMUFD_ACCESS_RW_KTHREAD = 1 << 1
__IOMMUFD_ACCESS_RW_SLOW_PATH = 1 << 2

# iommufd_private.h:184-186
REMOVE_WAIT_SHORTTERM = 1


# The files of drivers/iommu/iommufd/ the model's errnos cite (errors.cite)
IOMMUFD_DIR = "drivers/iommu/iommufd"
DEVICE_C = f"{IOMMUFD_DIR}/device.c"
DRIVER_C = f"{IOMMUFD_DIR}/driver.c"
EVENTQ_C = f"{IOMMUFD_DIR}/eventq.c"
FAULT_C = f"{IOMMUFD_DIR}/fault.c"
HW_PAGETABLE_C = f"{IOMMUFD_DIR}/hw_pagetable.c"
IOAS_C = f"{IOMMUFD_DIR}/ioas.c"
IO_PAGETABLE_C = f"{IOMMUFD_DIR}/io_pagetable.c"
MAIN_C = f"{IOMMUFD_DIR}/main.c"
PAGES_C = f"{IOMMUFD_DIR}/pages.c"
PRIVATE_H = f"{IOMMUFD_DIR}/iommufd_private.h"
SELFTEST_C = f"{IOMMUFD_DIR}/selftest.c"
VFIO_COMPAT_C = f"{IOMMUFD_DIR}/vfio_compat.c"
VIOMMU_C = f"{IOMMUFD_DIR}/viommu.c"


def check_add_overflow(a: int, b: int) -> int | None:
    """include/linux/overflow.h for unsigned long: a + b, or None on wrap."""
    r = a + b
    return None if r > ULONG_MAX else r


class IommufdObject:
    """struct iommufd_object (iommufd_private.h:141-146).  ``users`` is the
    refcount that decides EBUSY on destroy; ``finalized`` is False while the id
    is reserved (XA_ZERO_ENTRY) but the object is not yet visible."""

    type: int = IOMMUFD_OBJ_NONE

    def __init__(self) -> None:
        self.id = 0
        self.users = 1
        self.finalized = False

    def destroy(self, k: ModelKernel) -> None:
        """iommufd_object_ops[type].destroy."""

    def abort(self, k: ModelKernel) -> None:
        """iommufd_object_ops[type].abort, defaulting to destroy (main.c:121-124)."""
        self.destroy(k)


S = TypeVar("S", bound=ctypes.Structure)


class Ucmd(Generic[S]):
    """struct iommufd_ucmd (iommufd_private.h:105-110)."""

    __slots__ = ("cmd", "ictx", "k", "ubuffer", "user_size")

    def __init__(self, k: ModelKernel, ictx: IommufdCtx, ubuffer: int, user_size: int, cmd: S):
        self.k = k
        self.ictx = ictx
        self.ubuffer = ubuffer
        self.user_size = user_size
        self.cmd = cmd

    def respond(self) -> None:
        """iommufd_ucmd_respond() (iommufd_private.h:116-123): copy back at most
        the user's size."""
        n = min(self.user_size, ctypes.sizeof(self.cmd))
        data = bytes(self.cmd)[:n]
        try:
            self.k.mm.write(self.ubuffer, data)
        except Errno:
            raise Errno(errno.EFAULT, cite(PRIVATE_H, 121)) from None


def copy_to_user_partial(k: ModelKernel, addr: int, data: bytes) -> bool:
    """copy_to_user(): bytes up to the first unmapped (or read-only) page land; False if any
    did not (the caller then fails with EFAULT)."""
    mm = k.mm
    pos = 0
    while pos < len(data):
        m = mm.lookup(addr + pos, write=True)
        if m is None:
            return False
        off = addr + pos - m.start
        n = min(len(data) - pos, mm.usable_end(addr + pos, write=True) - (addr + pos))
        m.data[off : off + n] = data[pos : pos + n]
        pos += n
    return True
