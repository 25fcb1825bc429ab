"""drivers/iommu/iommufd/selftest.c: IOMMU_TEST_CMD (CONFIG_IOMMUFD_TEST)
with the mock IOMMU driver, mock devices, mock (nested) domains and the
test access object.

Mock devices are a real iommufd_device each, in its own IOMMU group.  When
``facts.mock_domains`` is false (a guest with the emulated Intel IOMMU),
binding a mock device fails with EINVAL, as measured on 6.12.
"""

from __future__ import annotations

import ctypes
import errno
import struct
from typing import TYPE_CHECKING, Any

from ...uapi import iommufd as u
from ...uapi import iommufd_test as ut
from ..errors import Errno, cite
from ..gates import HWPT_ALLOC_PASID, MOCK_DEVICE_FLAGS_PASID, MOCK_DIRTY_COUNTS_BITS, MOCK_PAGING_USER_DATA
from ..iommu.iommu import (
    IOMMU_CAP_CACHE_COHERENCY,
    IOMMU_CAP_DIRTY_TRACKING,
    IOMMU_DOMAIN_NESTED,
    IOMMU_DOMAIN_UNMANAGED,
    IommuDomain,
    IommuGroup,
    IommuOps,
    UserData,
)
from ..kernel import File
from . import device as device_c
from . import eventq as eventq_c
from . import viommu as viommu_c
from .fault import (
    IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE,
    IOMMU_FAULT_PAGE_REQUEST_PASID_VALID,
    iommu_report_device_fault,
    unused_fd,
)
from .hw_pagetable import HwptNested, HwptPaging
from .io_pagetable import iopt_reserve_iova
from .ioas import get_ioas, syz_conv_iova
from .iova_bitmap import DirtyBitmap
from .pages import pin_count
from .private import (
    IOMMU_DIRTY_NO_CLEAR,
    IOMMU_NO_PASID,
    IOMMUFD_OBJ_DEVICE,
    IOMMUFD_OBJ_HWPT_NESTED,
    IOMMUFD_OBJ_HWPT_PAGING,
    IOMMUFD_OBJ_SELFTEST,
    PAGE_SIZE,
    SELFTEST_C,
    ULONG_MAX,
    IommufdObject,
    Ucmd,
    check_add_overflow,
    copy_to_user_partial,
)

if TYPE_CHECKING:
    from ..kernel import ModelKernel
    from ..memory import Mapping
    from .device import IommufdAccess, IommufdDevice
    from .main import IommufdCtx


# -- the mock driver (selftest.c:124-635) ------------------------------------------------

MOCK_DIRTY_TRACK = 1
MOCK_IO_PAGE_SIZE = PAGE_SIZE // 2
MOCK_HUGE_PAGE_SIZE = 512 * MOCK_IO_PAGE_SIZE


class MockDev:
    """struct mock_dev: a device on the iommufd_mock bus, alone in its group."""

    def __init__(self, k: ModelKernel, id_: int, flags: int):
        self.id = id_
        self.flags = flags
        self.bdf = f"iommufd_mock{id_}"
        self.iommu_group: IommuGroup | None = IommuGroup(id=_MOCK_GROUP_BASE + id_, members=[self.bdf])
        self.iommu_ops = MOCK_OPS
        self.hw = None
        # With the emulated Intel IOMMU present the mock bus devices get no
        # iommu (measured: MOCK_DOMAIN fails with EINVAL).
        self.probed = bool(k.facts.mock_domains)
        # 7.2 (selftest.c:177-189,1001-1008@7.2): the vIOMMU of the nested domain the device is
        # attached to and its virt_id there, and the per-device cache a vIOMMU invalidates
        self.viommu: viommu_c.IommufdViommu | None = None
        self.vdev_id = 0
        self.cache = [ut.IOMMU_TEST_DEV_CACHE_DEFAULT] * ut.MOCK_DEV_CACHE_NUM


_MOCK_GROUP_BASE = 1 << 20
_MOCK_IDA = "iommufd.mock_dev_ida"
_MEMORY_LIMIT = "iommufd.test_memory_limit"


class MockDomain(IommuDomain):
    """struct mock_iommu_domain (mock_domain_alloc_paging(), selftest.c:284-301)."""

    def __init__(self, ops: IommuOps, dev: MockDev | None):
        super().__init__(ops, IOMMU_DOMAIN_UNMANAGED)
        self.aperture_start = ut.MOCK_APERTURE_START
        self.aperture_end = ut.MOCK_APERTURE_LAST
        self.pgsize_bitmap = MOCK_IO_PAGE_SIZE
        if dev is not None and dev.flags & ut.MOCK_FLAGS_DEVICE_HUGE_IOVA:
            self.pgsize_bitmap |= MOCK_HUGE_PAGE_SIZE
        self.flags = 0
        # xarray indexes (iova / MOCK_IO_PAGE_SIZE) whose entry has MOCK_PFN_DIRTY_IOVA
        self.dirty: set[int] = set()

    def has_entry(self, index: int) -> bool:
        return self.is_mapped(index * MOCK_IO_PAGE_SIZE)

    def unmap_range(self, iova: int, last: int) -> None:
        if self.dirty:
            lo, hi = iova // MOCK_IO_PAGE_SIZE, last // MOCK_IO_PAGE_SIZE
            self.dirty = {i for i in self.dirty if not lo <= i <= hi}

    def set_dirty_tracking(self, enable: bool) -> None:
        """selftest.c:195-213."""
        if enable and not self.dirty_ops:
            raise Errno(errno.EINVAL, cite(SELFTEST_C, 203))
        self.flags = (self.flags | MOCK_DIRTY_TRACK) if enable else (self.flags & ~MOCK_DIRTY_TRACK)

    def read_and_clear_dirty(self, iova: int, size: int, flags: int, dirty: DirtyBitmap | None) -> Errno | None:
        """mock_domain_read_and_clear_dirty() (selftest.c:243-277) with
        mock_test_and_clear_dirty() (215-241).  The loop visits one
        MOCK_IO_PAGE_SIZE entry per step from ``iova``; only dirty entries do
        anything, so only those are visited here.  No entry is ever a huge
        IOPTE: the model's user pages are not physically contiguous."""
        if not self.flags & MOCK_DIRTY_TRACK and dirty is not None:
            return Errno(errno.EINVAL, cite(SELFTEST_C, 254))
        lo = iova // MOCK_IO_PAGE_SIZE
        steps = max(1, (size + MOCK_IO_PAGE_SIZE - 1) // MOCK_IO_PAGE_SIZE)
        hits = sorted(i for i in self.dirty if lo <= i < lo + steps and self.has_entry(i))
        for idx in hits:
            if not flags & IOMMU_DIRTY_NO_CLEAR:
                self.dirty.discard(idx)
            if dirty is not None:
                dirty.record(iova + (idx - lo) * MOCK_IO_PAGE_SIZE, MOCK_IO_PAGE_SIZE)
        return None


class MockNestedDomain(IommuDomain):
    """struct mock_iommu_domain_nested (selftest.c:303-319)."""

    def __init__(self, ops: IommuOps, parent: MockDomain, iotlb: int):
        super().__init__(ops, IOMMU_DOMAIN_NESTED)
        self.parent = parent
        self.iotlb = [iotlb] * ut.MOCK_NESTED_DOMAIN_IOTLB_NUM
        self.mock_viommu: viommu_c.IommufdViommu | None = None  # 7.2: allocated on a vIOMMU

    def cache_invalidate_user(self, k: ModelKernel, type_: int, uptr: int, entry_len: int,
                              entry_num: int) -> tuple[int, Errno | None]:
        """mock_domain_cache_invalidate_user() (selftest.c:582-629)."""
        processed = 0
        if type_ != ut.IOMMU_HWPT_INVALIDATE_DATA_SELFTEST:
            return 0, Errno(errno.EINVAL, cite(SELFTEST_C, 595))
        ksize = ctypes.sizeof(ut.iommu_hwpt_invalidate_selftest)
        min_len = ut.iommu_hwpt_invalidate_selftest.offsetofend("iotlb_id")
        for i in range(entry_num):
            # iommu_copy_struct_from_user_array() (include/linux/iommu.h:464-481)
            if entry_len < min_len or ksize < entry_len:
                return processed, Errno(errno.EINVAL, cite("include/linux/iommu.h", 431))
            try:
                raw = k.mm.copy_struct_from_user(ksize, (uptr + entry_len * i) & ULONG_MAX, entry_len)
            except Errno as e:
                return processed, e
            inv = ut.iommu_hwpt_invalidate_selftest.from_buffer_copy(raw)
            if inv.flags & ~ut.IOMMU_TEST_INVALIDATE_FLAG_ALL:
                return processed, Errno(errno.EOPNOTSUPP, cite(SELFTEST_C, 606))
            if inv.iotlb_id > ut.MOCK_NESTED_DOMAIN_IOTLB_ID_MAX:
                return processed, Errno(errno.EINVAL, cite(SELFTEST_C, 611))
            if inv.flags & ut.IOMMU_TEST_INVALIDATE_FLAG_ALL:
                self.iotlb = [0] * ut.MOCK_NESTED_DOMAIN_IOTLB_NUM
            else:
                self.iotlb[inv.iotlb_id] = 0
            processed += 1
        return processed, None


class MockOps(IommuOps):
    """static const struct iommu_ops mock_ops (selftest.c:545-572)."""

    name = "mock"
    user_pasid_table = True

    def capable(self, dev: Any, cap: int) -> bool:
        """mock_domain_capable() (selftest.c:494-508)."""
        if not getattr(dev, "probed", False):
            return False  # device_iommu_capable() without dev->iommu
        if cap == IOMMU_CAP_CACHE_COHERENCY:
            return True
        if cap == IOMMU_CAP_DIRTY_TRACKING:
            return not dev.flags & ut.MOCK_FLAGS_DEVICE_NO_DIRTY
        return False

    def hw_info(self, dev: Any, in_type: int = u.IOMMU_HW_INFO_TYPE_DEFAULT) -> tuple[int, bytes] | None:
        """mock_domain_hw_info() (selftest.c:180-193): struct iommu_test_hw_info; 7.2 refuses an
        asked-for type other than its own (selftest.c:309-311@7.2)."""
        if in_type not in (u.IOMMU_HW_INFO_TYPE_DEFAULT, ut.IOMMU_HW_INFO_TYPE_SELFTEST):
            raise Errno(errno.EOPNOTSUPP, cite(SELFTEST_C, 311, "7.2"))
        return ut.IOMMU_HW_INFO_TYPE_SELFTEST, struct.pack("<II", 0, ut.IOMMU_HW_INFO_SELFTEST_REGVAL)

    def domain_alloc_user(self, k: ModelKernel, dev: Any, flags: int, parent: IommuDomain | None,
                          user_data: UserData | None) -> IommuDomain:
        """mock_domain_alloc_user() (selftest.c:321-367)."""
        if parent is None:
            has_dirty_flag = bool(flags & u.IOMMU_HWPT_ALLOC_DIRTY_TRACKING)
            no_dirty_ops = bool(dev.flags & ut.MOCK_FLAGS_DEVICE_NO_DIRTY)
            paging_flags = u.IOMMU_HWPT_ALLOC_NEST_PARENT | u.IOMMU_HWPT_ALLOC_DIRTY_TRACKING
            if k.since(HWPT_ALLOC_PASID):
                paging_flags |= u.IOMMU_HWPT_ALLOC_PASID  # selftest.c:496-498@7.2
            if flags & ~paging_flags:
                raise Errno(errno.EOPNOTSUPP, cite(SELFTEST_C, 339))
            if (user_data is not None and not k.since(MOCK_PAGING_USER_DATA)) or (has_dirty_flag and no_dirty_ops):
                raise Errno(errno.EOPNOTSUPP, cite(SELFTEST_C, 341))
            domain = MockDomain(self, dev)
            domain.dirty_ops = has_dirty_flag
            if user_data is not None:
                self._paging_user_data(k, domain, user_data)
            return domain
        assert user_data is not None
        if user_data.type != ut.IOMMU_HWPT_DATA_SELFTEST or flags:
            raise Errno(errno.EOPNOTSUPP, cite(SELFTEST_C, 353))
        if not isinstance(parent, MockDomain):
            raise Errno(errno.EINVAL, cite(SELFTEST_C, 355))
        # iommu_copy_struct_from_user(&user_cfg, user_data, IOMMU_HWPT_DATA_SELFTEST, iotlb)
        ksize = ctypes.sizeof(ut.iommu_hwpt_selftest)
        if user_data.len < ut.iommu_hwpt_selftest.offsetofend("iotlb") or ksize < user_data.len:
            raise Errno(errno.EINVAL, cite("include/linux/iommu.h", 431))
        raw = k.mm.copy_struct_from_user(ksize, user_data.uptr, user_data.len)
        return MockNestedDomain(self, parent, ut.iommu_hwpt_selftest.from_buffer_copy(raw).iotlb)

    @staticmethod
    def _paging_user_data(k: ModelKernel, domain: MockDomain, user_data: UserData) -> None:
        """7.2: mock_domain_alloc_paging_flags() (selftest.c:508-517@7.2) reads struct
        iommu_hwpt_selftest, whose pagetable_type mock_domain_alloc_pgtable() (440-472@7.2)
        turns into the default or the huge page table (PAGE_SIZE and MOCK_HUGE_PAGE_SIZE)."""
        if user_data.type not in (ut.IOMMU_HWPT_DATA_SELFTEST, u.IOMMU_HWPT_DATA_NONE):
            raise Errno(errno.EOPNOTSUPP, cite(SELFTEST_C, 510, "7.2"))
        cls: Any = k.abi.STRUCTS["iommu_hwpt_selftest"]
        cfg = cls.from_buffer_copy(_iommu_copy_struct_from_user(k, cls, user_data, ut.IOMMU_HWPT_DATA_SELFTEST,
                                                                "iotlb"))
        if cfg.pagetable_type == ut.MOCK_IOMMUPT_HUGE:
            domain.pgsize_bitmap = MOCK_HUGE_PAGE_SIZE | PAGE_SIZE
        elif cfg.pagetable_type != ut.MOCK_IOMMUPT_DEFAULT:
            raise Errno(errno.EOPNOTSUPP, cite(SELFTEST_C, 470, "7.2"))

    def attach_dev(self, domain: IommuDomain, dev: Any) -> None:
        """mock_domain_nop_attach() (selftest.c:160-169); 7.2 (selftest.c:226-240@7.2): a nested
        domain of a vIOMMU takes only a device with a vDEVICE there, whose virt_id the device
        keeps (TRIGGER_VEVENT reports it)."""
        if domain.dirty_ops and getattr(dev, "flags", 0) & ut.MOCK_FLAGS_DEVICE_NO_DIRTY:
            raise Errno(errno.EINVAL, cite(SELFTEST_C, 166))
        new_viommu = getattr(domain, "mock_viommu", None) if domain.type == IOMMU_DOMAIN_NESTED else None
        vdev_id = 0 if new_viommu is None else viommu_c.iommufd_viommu_get_vdev_id(new_viommu, dev)
        if isinstance(dev, MockDev) and new_viommu is not dev.viommu:
            dev.viommu = new_viommu
            dev.vdev_id = vdev_id

    def enable_iopf(self, dev: Any) -> None:
        """mock_dev_enable_feat(): iopf_queue_add_device() on mock-iopfq."""

    # -- 7.2: the vIOMMU ops of mock_ops (selftest.c:864-865@7.2) --------------------------
    def get_viommu_size(self, dev: Any, viommu_type: int) -> int:
        """mock_get_viommu_size() (selftest.c:785-791@7.2): 0 for a type it does not know."""
        return int(viommu_type == ut.IOMMU_VIOMMU_TYPE_SELFTEST)

    def viommu_init(self, k: ModelKernel, viommu: viommu_c.IommufdViommu, parent_domain: IommuDomain,
                    user_data: UserData | None) -> None:
        """mock_viommu_init() (selftest.c:793-846@7.2): with data, struct iommu_viommu_selftest
        is read, two pages are offered for mmap and in_data comes back as out_data."""
        mock = MockViommu(parent_domain)
        if user_data is not None:
            cls: Any = k.abi.STRUCTS["iommu_viommu_selftest"]
            data = cls.from_buffer_copy(_iommu_copy_struct_from_user(
                k, cls, user_data, ut.IOMMU_VIOMMU_TYPE_SELFTEST, "out_data"))
            mock.mmap_offset = viommu_c.iommufd_viommu_alloc_mmap(viommu.ictx, viommu, PAGE_SIZE * 2)
            data.out_data = data.in_data
            data.out_mmap_length = PAGE_SIZE * 2
            data.out_mmap_offset = mock.mmap_offset
            # iommu_copy_struct_to_user() (include/linux/iommu.h:604-631@7.2): the checks passed
            # on the way in; copy_struct_to_user() writes user_data.len bytes
            try:
                k.mm.write(user_data.uptr, bytes(data)[: user_data.len])
            except Errno:
                viommu_c.iommufd_viommu_destroy_mmap(viommu, mock.mmap_offset)
                raise
        viommu.ops = mock


MOCK_OPS = MockOps()


def _iommu_copy_struct_from_user(k: ModelKernel, cls: Any, user_data: UserData, data_type: int,
                                 min_last: str) -> bytes:
    """iommu_copy_struct_from_user() (include/linux/iommu.h:466-493@7.2)."""
    if user_data.type != data_type:
        raise Errno(errno.EINVAL, cite("include/linux/iommu.h", 473, "7.2"))
    if user_data.len < cls.offsetofend(min_last) or ctypes.sizeof(cls) < user_data.len:
        raise Errno(errno.EINVAL, cite("include/linux/iommu.h", 475, "7.2"))
    return k.mm.copy_struct_from_user(ctypes.sizeof(cls), user_data.uptr, user_data.len)


class MockViommu(viommu_c.ViommuOps):
    """struct mock_viommu's own part (selftest.c:145-153@7.2) with mock_viommu_ops (777-783)."""

    def __init__(self, s2_parent: IommuDomain):
        self.s2_parent = s2_parent
        self.hw_queue: list[viommu_c.IommufdHwQueue | None] = [None] * ut.IOMMU_TEST_HW_QUEUE_MAX
        self.mmap_offset = 0

    def destroy(self, k: ModelKernel, viommu: viommu_c.IommufdViommu) -> None:
        """mock_viommu_destroy() (selftest.c:599-614@7.2)."""
        if self.mmap_offset:
            viommu_c.iommufd_viommu_destroy_mmap(viommu, self.mmap_offset)

    def alloc_domain_nested(self, k: ModelKernel, viommu: viommu_c.IommufdViommu, flags: int,
                            user_data: UserData) -> IommuDomain:
        """mock_viommu_alloc_domain_nested() (selftest.c:616-631@7.2) with
        __mock_domain_alloc_nested() (343-366@7.2)."""
        if flags & ~u.IOMMU_HWPT_ALLOC_PASID:
            raise Errno(errno.EOPNOTSUPP, cite(SELFTEST_C, 624, "7.2"))
        if user_data.type != ut.IOMMU_HWPT_DATA_SELFTEST:
            raise Errno(errno.EOPNOTSUPP, cite(SELFTEST_C, 351, "7.2"))
        cls: Any = k.abi.STRUCTS["iommu_hwpt_selftest"]
        cfg = cls.from_buffer_copy(_iommu_copy_struct_from_user(k, cls, user_data, ut.IOMMU_HWPT_DATA_SELFTEST,
                                                                "iotlb"))
        assert isinstance(self.s2_parent, MockDomain)
        nested = MockNestedDomain(MOCK_OPS, self.s2_parent, cfg.iotlb)
        nested.mock_viommu = viommu
        return nested

    def cache_invalidate(self, k: ModelKernel, viommu: viommu_c.IommufdViommu, type_: int, uptr: int,
                         entry_len: int, entry_num: int) -> tuple[int, Errno | None]:
        """mock_viommu_cache_invalidate() (selftest.c:633-701@7.2): the whole array is read
        first (iommu_copy_struct_from_full_user_array(), include/linux/iommu.h:561-591@7.2),
        then each entry invalidates the cache of the device at its vdev_id."""
        if entry_num == 0 and type_ == ut.IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST:
            return 0, None
        cls = ut.iommu_viommu_invalidate_selftest
        ksize = ctypes.sizeof(cls)
        if type_ != ut.IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST:
            return 0, Errno(errno.EINVAL, cite("include/linux/iommu.h", 570, "7.2"))
        if not entry_num:
            return 0, Errno(errno.EINVAL, cite("include/linux/iommu.h", 572, "7.2"))
        cmds = []
        try:
            if entry_len == ksize:
                raw = k.mm.read(uptr, entry_num * entry_len)
                cmds = [cls.from_buffer_copy(raw, i * ksize) for i in range(entry_num)]
            else:
                cmds = [cls.from_buffer_copy(k.mm.copy_struct_from_user(ksize, uptr + entry_len * i, entry_len))
                        for i in range(entry_num)]
        except Errno as e:
            if e.code != errno.EFAULT:
                return 0, e
            return 0, Errno(errno.EFAULT, cite("include/linux/iommu.h", 577, "7.2"))
        for done, cur in enumerate(cmds):
            if cur.flags & ~ut.IOMMU_TEST_INVALIDATE_FLAG_ALL:
                return done, Errno(errno.EOPNOTSUPP, cite(SELFTEST_C, 667, "7.2"))
            if cur.cache_id > ut.MOCK_DEV_CACHE_ID_MAX:
                return done, Errno(errno.EINVAL, cite(SELFTEST_C, 672, "7.2"))
            dev = viommu_c.iommufd_viommu_find_dev(viommu, cur.vdev_id)
            if dev is None:
                return done, Errno(errno.EINVAL, cite(SELFTEST_C, 681, "7.2"))
            if cur.flags & ut.IOMMU_TEST_INVALIDATE_FLAG_ALL:
                dev.cache = [0] * ut.MOCK_DEV_CACHE_NUM
            else:
                dev.cache[cur.cache_id] = 0
        return len(cmds), None

    def get_hw_queue_size(self, viommu: viommu_c.IommufdViommu, type_: int) -> int:
        """mock_viommu_get_hw_queue_size() (selftest.c:703-709@7.2)."""
        return int(type_ == ut.IOMMU_HW_QUEUE_TYPE_SELFTEST)

    def hw_queue_init_phys(self, k: ModelKernel, hw_queue: viommu_c.IommufdHwQueue, index: int) -> None:
        """mock_hw_queue_init_phys() (selftest.c:724-775@7.2): queues are allocated from index
        0 up, each depending on the one before it (which is then busy).  The base address
        check (755-759) holds by construction: the parent's domain maps what the IOAS maps."""
        if index >= ut.IOMMU_TEST_HW_QUEUE_MAX:
            raise Errno(errno.EINVAL, cite(SELFTEST_C, 734, "7.2"))
        if self.hw_queue[index] is not None:
            raise Errno(errno.EEXIST, cite(SELFTEST_C, 739, "7.2"))
        prev = self.hw_queue[index - 1] if index else None
        if index and prev is None:
            raise Errno(errno.EIO, cite(SELFTEST_C, 746, "7.2"))
        if prev is not None:
            viommu_c.iommufd_object_depend(hw_queue, prev)
        self.hw_queue[index] = hw_queue

        def destroy(q: viommu_c.IommufdHwQueue) -> None:
            """mock_hw_queue_destroy() (selftest.c:711-722@7.2)."""
            self.hw_queue[index] = None
            if prev is not None:
                viommu_c.iommufd_object_undepend(q, prev)

        hw_queue.destroy_op = destroy


def mock_dev_create(k: ModelKernel, dev_flags: int) -> MockDev:
    """selftest.c:693-731."""
    if k.since(MOCK_DEVICE_FLAGS_PASID):
        if dev_flags & ~(ut.MOCK_FLAGS_DEVICE_NO_DIRTY | ut.MOCK_FLAGS_DEVICE_PASID):
            raise Errno(errno.EINVAL, cite(SELFTEST_C, 995, "7.2"))
    elif dev_flags & ~(ut.MOCK_FLAGS_DEVICE_NO_DIRTY | ut.MOCK_FLAGS_DEVICE_HUGE_IOVA):
        raise Errno(errno.EINVAL, cite(SELFTEST_C, 700))
    ida = k.state.setdefault(_MOCK_IDA, set())
    assert isinstance(ida, set)
    id_ = 0
    while id_ in ida:
        id_ += 1
    ida.add(id_)
    return MockDev(k, id_, dev_flags)


def mock_dev_destroy(k: ModelKernel, mdev: MockDev) -> None:
    """selftest.c:733-736 (the ida entry goes in mock_dev_release())."""
    ida = k.state.get(_MOCK_IDA)
    if isinstance(ida, set):
        ida.discard(mdev.id)
    mdev.iommu_group = None


class SelftestObj(IommufdObject):
    """struct selftest_obj of TYPE_IDEV (selftest.c:147-158)."""

    type = IOMMUFD_OBJ_SELFTEST

    def __init__(self) -> None:
        super().__init__()
        self.idev: IommufdDevice | None = None
        self.mock_dev: MockDev | None = None

    def destroy(self, k: ModelKernel) -> None:
        """iommufd_selftest_destroy() (selftest.c:1459-1472)."""
        assert self.idev is not None and self.mock_dev is not None
        self.idev.detach(k)
        # 7.2: the unbind's REMOVE_WAIT meets the wait_cnt a vDEVICE holds and runs the device's
        # pre_destroy first (main.c:203-220@7.2, device.c:175-182@7.2)
        viommu_c.iommufd_device_remove_vdev(k, self.idev)
        self.idev.unbind(k)
        mock_dev_destroy(k, self.mock_dev)


def get_md_pagetable(ictx: IommufdCtx, mockpt_id: int) -> MockDomain:
    """selftest.c:648-664."""
    hwpt = ictx.get_object(mockpt_id, IOMMUFD_OBJ_HWPT_PAGING)
    assert isinstance(hwpt, HwptPaging)
    if not isinstance(hwpt.domain, MockDomain):
        raise Errno(errno.EINVAL, cite(SELFTEST_C, 660))
    return hwpt.domain


def get_md_pagetable_nested(ictx: IommufdCtx, mockpt_id: int) -> MockNestedDomain:
    """selftest.c:666-683."""
    hwpt = ictx.get_object(mockpt_id, IOMMUFD_OBJ_HWPT_NESTED)
    assert isinstance(hwpt, HwptNested)
    if not isinstance(hwpt.domain, MockNestedDomain):
        raise Errno(errno.EINVAL, cite(SELFTEST_C, 678))
    return hwpt.domain


# -- the ops --------------------------------------------------------------------------

def iommufd_test_mock_domain(ucmd: Ucmd[ut.iommu_test_cmd]) -> None:
    """selftest.c:744-805."""
    cmd = ucmd.cmd
    ictx = ucmd.ictx
    k = ucmd.k
    pt_id = cmd.id
    sobj = SelftestObj()
    ictx.object_alloc(sobj)
    try:
        dev_flags = cmd.mock_domain_flags.dev_flags if cmd.op == ut.IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS else 0
        mdev = mock_dev_create(k, dev_flags)
        try:
            idev = device_c.iommufd_device_bind(k, ictx, mdev, is_mock=True)
            try:
                pt_id = idev.attach(k, pt_id)
            except BaseException:
                idev.unbind(k)
                raise
        except BaseException:
            mock_dev_destroy(k, mdev)
            raise
    except BaseException:
        ictx.object_abort(sobj)
        raise
    sobj.idev = idev
    sobj.mock_dev = mdev
    cmd.mock_domain.out_hwpt_id = pt_id
    cmd.mock_domain.out_stdev_id = sobj.id
    cmd.mock_domain.out_idev_id = idev.id
    try:
        ucmd.respond()
    except BaseException:
        idev.detach(k)
        idev.unbind(k)
        mock_dev_destroy(k, mdev)
        ictx.object_abort(sobj)
        raise
    ictx.finalize(sobj)


def iommufd_test_mock_domain_replace(ucmd: Ucmd[ut.iommu_test_cmd]) -> None:
    """selftest.c:808-843."""
    cmd = ucmd.cmd
    sobj = ucmd.ictx.get_object(cmd.id, IOMMUFD_OBJ_SELFTEST)
    assert isinstance(sobj, SelftestObj) and sobj.idev is not None
    cmd.mock_domain_replace.pt_id = sobj.idev.replace(ucmd.k, cmd.mock_domain_replace.pt_id)
    ucmd.respond()


def iommufd_test_add_reserved(ucmd: Ucmd[ut.iommu_test_cmd]) -> None:
    """selftest.c:846-867."""
    cmd = ucmd.cmd
    start, length = cmd.add_reserved.start, cmd.add_reserved.length
    if not length:
        raise Errno(errno.EINVAL, cite(SELFTEST_C, 855))
    last = check_add_overflow(start, length - 1)
    if last is None:
        raise Errno(errno.EOVERFLOW, cite(SELFTEST_C, 857))
    ioas = get_ioas(ucmd.ictx, cmd.id)
    iopt_reserve_iova(ioas.iopt, start, last, None)


def _gup(k: ModelKernel, uptr: int) -> tuple[Mapping, int]:
    """get_user_pages_fast() of one page: (mapping, page offset) or EFAULT."""
    addr = uptr & ~(PAGE_SIZE - 1)
    m = k.mm.lookup(addr)
    if m is None:
        raise Errno(errno.EFAULT, "mm/gup.c:get_user_pages_fast")
    return m, addr - m.start


def iommufd_test_md_check_pa(ucmd: Ucmd[ut.iommu_test_cmd]) -> None:
    """selftest.c:870-922: every IOVA maps the page under the user VA."""
    cmd = ucmd.cmd
    k = ucmd.k
    iova, length, uptr = cmd.check_map.iova, cmd.check_map.length, cmd.check_map.uptr
    if (iova % MOCK_IO_PAGE_SIZE or length % MOCK_IO_PAGE_SIZE or uptr % MOCK_IO_PAGE_SIZE
            or check_add_overflow(uptr, length) is None):
        raise Errno(errno.EINVAL, cite(SELFTEST_C, 882))
    mock = get_md_pagetable(ucmd.ictx, cmd.id)
    while length:
        m, moff = _gup(k, uptr)
        ent = _mock_phys(mock, iova)
        if ent is None or ent[0] is not m or ent[1] != moff + uptr % PAGE_SIZE:
            raise Errno(errno.EINVAL, cite(SELFTEST_C, 911))
        iova += MOCK_IO_PAGE_SIZE
        uptr += MOCK_IO_PAGE_SIZE
        length -= MOCK_IO_PAGE_SIZE


def _mock_phys(mock: MockDomain, iova: int) -> tuple[Mapping, int] | None:
    """The physical address (mapping, offset; MOCK_IO_PAGE_SIZE granular) the
    mock domain holds for ``iova``."""
    if not mock.has_entry(iova // MOCK_IO_PAGE_SIZE):
        return None
    assert mock.iopt is not None
    area = mock.iopt.area_iter_first(iova, iova)
    assert area is not None and area.pages is not None
    sb = area.start_byte(iova)
    pin = area.pages.find_pin(sb // PAGE_SIZE)
    if pin is None:
        return None
    off = pin.moff + (sb // PAGE_SIZE - pin.start) * PAGE_SIZE + sb % PAGE_SIZE
    return pin.mapping, off & ~(MOCK_IO_PAGE_SIZE - 1)


def iommufd_test_md_check_refs(ucmd: Ucmd[ut.iommu_test_cmd]) -> None:
    """selftest.c:925-957."""
    cmd = ucmd.cmd
    k = ucmd.k
    length, uptr, refs = cmd.check_refs.length, cmd.check_refs.uptr, cmd.check_refs.refs
    if length % PAGE_SIZE or uptr % PAGE_SIZE or check_add_overflow(uptr, length) is None:
        raise Errno(errno.EINVAL, cite(SELFTEST_C, 933))
    while length:
        m, moff = _gup(k, uptr)
        if pin_count(k, m, moff) != refs:
            raise Errno(errno.EIO, cite(SELFTEST_C, 949))
        uptr += PAGE_SIZE
        length -= PAGE_SIZE


def iommufd_test_md_check_iotlb(ucmd: Ucmd[ut.iommu_test_cmd]) -> None:
    """selftest.c:959-979."""
    cmd = ucmd.cmd
    nested = get_md_pagetable_nested(ucmd.ictx, cmd.id)
    iotlb_id = cmd.check_iotlb.id
    if iotlb_id > ut.MOCK_NESTED_DOMAIN_IOTLB_ID_MAX or nested.iotlb[iotlb_id] != cmd.check_iotlb.iotlb:
        raise Errno(errno.EINVAL, cite(SELFTEST_C, 976))


# -- the test access (selftest.c:981-1356) ----------------------------------------------

class StaccessItem:
    __slots__ = ("id", "iova", "length")

    def __init__(self, iova: int, length: int, id_: int):
        self.iova = iova
        self.length = length
        self.id = id_


class SelftestAccess(File):
    """struct selftest_access behind the anon inode "[iommufd_test_staccess]"."""

    kind = "iommufd_test_staccess"

    def __init__(self) -> None:
        self.access: IommufdAccess | None = None
        self.items: list[StaccessItem] = []
        self.next_id = 0

    def release(self, k: ModelKernel) -> None:
        """iommufd_test_staccess_release() (selftest.c:1063-1075)."""
        if self.access is not None:
            iommufd_test_access_unmap(k, self, 0, ULONG_MAX)
            device_c.iommufd_access_destroy(k, self.access)


def iommufd_test_access_unmap(k: ModelKernel, staccess: Any, iova: int, length: int) -> None:
    """selftest.c:1014-1033: the access ops' unmap callback."""
    iova_last = iova + length - 1
    assert isinstance(staccess, SelftestAccess)
    for item in list(staccess.items):
        if iova > item.iova + item.length - 1 or iova_last < item.iova:
            continue
        # staccess->access is read only per item (selftest.c:1028): an access whose create
        # failed after the attach (selftest.c:1149-1151, staccess->access never set) has no
        # items, and its detach's unmap callback walks an empty list.
        assert staccess.access is not None
        staccess.items.remove(item)
        device_c.iommufd_access_unpin_pages(k, staccess.access, item.iova, item.length)


SELFTEST_ACCESS_OPS_PIN = device_c.AccessOps(True, iommufd_test_access_unmap)
SELFTEST_ACCESS_OPS = device_c.AccessOps(False, iommufd_test_access_unmap)


def iommufd_access_get(k: ModelKernel, fd: int) -> SelftestAccess:
    """selftest.c:999-1012."""
    f = k.files.get(fd)
    if f is None:
        raise Errno(errno.EBADFD, cite(SELFTEST_C, 1005))
    if not isinstance(f, SelftestAccess):
        raise Errno(errno.EBADFD, cite(SELFTEST_C, 1009))
    return f


def iommufd_test_access_item_destroy(ucmd: Ucmd[ut.iommu_test_cmd]) -> None:
    """selftest.c:1035-1061."""
    k = ucmd.k
    staccess = iommufd_access_get(k, ucmd.cmd.id)
    item_id = ucmd.cmd.destroy_access_pages.access_pages_id
    for item in staccess.items:
        if item.id == item_id:
            staccess.items.remove(item)
            assert staccess.access is not None
            device_c.iommufd_access_unpin_pages(k, staccess.access, item.iova, item.length)
            return
    raise Errno(errno.ENOENT, cite(SELFTEST_C, 1060))


def iommufd_test_create_access(ucmd: Ucmd[ut.iommu_test_cmd]) -> None:
    """selftest.c:1112-1164."""
    cmd = ucmd.cmd
    k = ucmd.k
    flags = cmd.create_access.flags
    if flags & ~ut.MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES:
        raise Errno(errno.EOPNOTSUPP, cite(SELFTEST_C, 1123))
    staccess = SelftestAccess()
    fdno = unused_fd(k)
    ops = SELFTEST_ACCESS_OPS_PIN if flags & ut.MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES else SELFTEST_ACCESS_OPS
    access = device_c.iommufd_access_create(k, ucmd.ictx, ops, staccess)
    try:
        device_c.iommufd_access_attach(k, access, cmd.id)
        cmd.create_access.out_access_fd = fdno
        ucmd.respond()
    except BaseException:
        device_c.iommufd_access_destroy(k, access)
        raise
    staccess.access = access
    k.install_fd(staccess)


def iommufd_test_access_replace_ioas(ucmd: Ucmd[ut.iommu_test_cmd]) -> None:
    """selftest.c:1166-1180."""
    staccess = iommufd_access_get(ucmd.k, ucmd.cmd.id)
    assert staccess.access is not None
    device_c.iommufd_access_replace(ucmd.k, staccess.access, ucmd.cmd.access_replace_ioas.ioas_id)


def _syz_conv(staccess: SelftestAccess, iova: int) -> int:
    """iommufd_test_syz_conv_iova() (selftest.c:93-106)."""
    access = staccess.access
    if access is None or access.ioas is None:
        return 0
    return syz_conv_iova(access.ioas.iopt, iova)


def iommufd_test_access_pages(ucmd: Ucmd[ut.iommu_test_cmd]) -> None:
    """selftest.c:1204-1297."""
    cmd = ucmd.cmd
    k = ucmd.k
    ap = cmd.access_pages
    iova, length, uptr, flags = ap.iova, ap.length, ap.uptr, ap.flags
    if length > 16 * 1024 * 1024:
        raise Errno(errno.ENOMEM, cite(SELFTEST_C, 1218))
    if flags & ~(ut.MOCK_FLAGS_ACCESS_WRITE | ut.MOCK_FLAGS_ACCESS_SYZ):
        raise Errno(errno.EOPNOTSUPP, cite(SELFTEST_C, 1221))
    staccess = iommufd_access_get(k, cmd.id)
    access = staccess.access
    assert access is not None
    if access.ops is not SELFTEST_ACCESS_OPS_PIN:
        raise Errno(errno.EOPNOTSUPP, cite(SELFTEST_C, 1228))
    if flags & ut.MOCK_FLAGS_ACCESS_SYZ:
        iova = _syz_conv(staccess, ap.iova)
    npages = (((iova + length + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)) - (iova & ~(PAGE_SIZE - 1))) // PAGE_SIZE
    pages = device_c.iommufd_access_pin_pages(k, access, iova, length, flags & ut.MOCK_FLAGS_ACCESS_WRITE)
    try:
        if uptr:
            # iommufd_test_check_pages() (selftest.c:1183-1202)
            u_ = uptr - (iova - (iova & ~(PAGE_SIZE - 1)))
            for i in range(npages):
                m, moff = _gup(k, u_)
                got = pages[i] if i < len(pages) else None
                if got is None or got[0] is not m or got[1] != moff:
                    raise Errno(errno.EBADE, cite(SELFTEST_C, 1197))
                u_ += PAGE_SIZE
        item = StaccessItem(iova, length, staccess.next_id)
        staccess.next_id += 1
        staccess.items.append(item)
        ap.out_access_pages_id = item.id
        try:
            ucmd.respond()
        except BaseException:
            staccess.items.remove(item)
            raise
    except BaseException:
        device_c.iommufd_access_unpin_pages(k, access, iova, length)
        raise


def iommufd_test_access_rw(ucmd: Ucmd[ut.iommu_test_cmd]) -> None:
    """selftest.c:1299-1353."""
    cmd = ucmd.cmd
    k = ucmd.k
    rw = cmd.access_rw
    iova, length, ubuf, flags = rw.iova, rw.length, rw.uptr, rw.flags
    if length > 16 * 1024 * 1024:
        raise Errno(errno.ENOMEM, cite(SELFTEST_C, 1311))
    if flags & ~(ut.MOCK_ACCESS_RW_WRITE | ut.MOCK_ACCESS_RW_SLOW_PATH | ut.MOCK_FLAGS_ACCESS_SYZ):
        raise Errno(errno.EOPNOTSUPP, cite(SELFTEST_C, 1315))
    staccess = iommufd_access_get(k, cmd.id)
    assert staccess.access is not None
    tmp = bytearray(length)
    if flags & ut.MOCK_ACCESS_RW_WRITE:
        try:
            tmp[:] = k.mm.read(ubuf, length)
        except Errno:
            raise Errno(errno.EFAULT, cite(SELFTEST_C, 1330)) from None
    if flags & ut.MOCK_FLAGS_ACCESS_SYZ:
        iova = _syz_conv(staccess, rw.iova)
    device_c.iommufd_access_rw(k, staccess.access, iova, tmp, flags)
    if not flags & ut.MOCK_ACCESS_RW_WRITE and not copy_to_user_partial(k, ubuf, bytes(tmp)):
        raise Errno(errno.EFAULT, cite(SELFTEST_C, 1344))


def iommufd_test_dirty(ucmd: Ucmd[ut.iommu_test_cmd]) -> None:
    """selftest.c:1358-1424."""
    cmd = ucmd.cmd
    k = ucmd.k
    d = cmd.dirty
    iova, length, page_size, uptr = d.iova, d.length, d.page_size, d.uptr
    if not page_size or not length or iova % page_size or length % page_size or not uptr:
        raise Errno(errno.EINVAL, cite(SELFTEST_C, 1372))
    nmax = length // page_size
    if nmax > (16 << 20) * 8:
        raise Errno(errno.EOVERFLOW, cite(SELFTEST_C, 1375))
    mock = get_md_pagetable(ucmd.ictx, cmd.id)
    if not mock.flags & MOCK_DIRTY_TRACK:
        raise Errno(errno.EINVAL, cite(SELFTEST_C, 1382))
    try:
        bits = int.from_bytes(k.mm.read(uptr, (nmax + 7) // 8), "little")
    except Errno:
        raise Errno(errno.EFAULT, cite(SELFTEST_C, 1395)) from None
    count = 0
    bits &= (1 << nmax) - 1
    counts_every_bit = k.since(MOCK_DIRTY_COUNTS_BITS)
    while bits:  # test_bit() over the set bits only
        low = bits & -bits
        bits ^= low
        cur = iova + (low.bit_length() - 1) * page_size
        if counts_every_bit:
            # set_dirty() of the IOPTE holding cur; an empty one is -ENOENT, ignored
            # (selftest.c:1734-1739@7.2, generic_pt/iommu_pt.h:343-358@7.2)
            idx = cur // MOCK_IO_PAGE_SIZE
            count += 1
        else:
            idx = cur // page_size  # the xarray index, as the kernel computes it (selftest.c:1405)
            if not mock.has_entry(idx):
                continue
            count += 1
        if mock.has_entry(idx):
            mock.dirty.add(idx)
    d.out_nr_dirty = count
    ucmd.respond()


def iommufd_test_trigger_iopf(ucmd: Ucmd[ut.iommu_test_cmd]) -> None:
    """selftest.c:1426-1457: the return of iommu_report_device_fault() is ignored."""
    t = ucmd.cmd.trigger_iopf
    idev = ucmd.ictx.get_object(t.dev_id, IOMMUFD_OBJ_DEVICE)
    assert isinstance(idev, device_c.IommufdDevice)
    if not isinstance(idev.dev, MockDev):
        raise Errno(errno.EINVAL, cite(SELFTEST_C, 1438))
    flags = IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE
    if t.pasid != IOMMU_NO_PASID:
        flags |= IOMMU_FAULT_PAGE_REQUEST_PASID_VALID
    iommu_report_device_fault(ucmd.k, idev, flags, t.pasid, t.grpid, t.perm, t.addr)


def iommufd_test_trigger_vevent(ucmd: Ucmd[Any]) -> None:
    """iommufd_test_trigger_vevent() (selftest.c:1783-1809@7.2): one struct
    iommu_viommu_event_selftest with the device's virt_id, to the vIOMMU of the nested domain it
    is attached to (ENOENT without one, or with virt_id 0)."""
    idev = viommu_c.iommufd_get_device(ucmd, ucmd.cmd.trigger_vevent.dev_id)
    mdev = idev.dev
    if not isinstance(mdev, MockDev) or mdev.viommu is None or not mdev.vdev_id:
        raise Errno(errno.ENOENT, cite(SELFTEST_C, 1789, "7.2"))
    event = ut.iommu_viommu_event_selftest(virt_id=mdev.vdev_id)
    eventq_c.iommufd_viommu_report_event(mdev.viommu, ut.IOMMU_VEVENTQ_TYPE_SELFTEST, bytes(event))


def iommufd_test_dev_check_cache(ucmd: Ucmd[Any]) -> None:
    """iommufd_test_dev_check_cache() (selftest.c:1299-1315@7.2)."""
    idev = viommu_c.iommufd_get_device(ucmd, ucmd.cmd.id)
    c = ucmd.cmd.check_dev_cache
    mdev = idev.dev
    if not isinstance(mdev, MockDev) or c.id > ut.MOCK_DEV_CACHE_ID_MAX or mdev.cache[c.id] != c.cache:
        raise Errno(errno.EINVAL, cite(SELFTEST_C, 1312, "7.2"))


def iommufd_test_set_memory_limit(ucmd: Ucmd[ut.iommu_test_cmd]) -> None:
    """selftest.c:1523-1529: only batching changes; the value is module-wide."""
    limit = ucmd.cmd.memory_limit.limit
    if limit < 8 + 4:
        raise Errno(errno.EINVAL, cite(SELFTEST_C, 1527))
    ucmd.k.state[_MEMORY_LIMIT] = limit


_OPS = {
    ut.IOMMU_TEST_OP_ADD_RESERVED: iommufd_test_add_reserved,
    ut.IOMMU_TEST_OP_MOCK_DOMAIN: iommufd_test_mock_domain,
    ut.IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS: iommufd_test_mock_domain,
    ut.IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE: iommufd_test_mock_domain_replace,
    ut.IOMMU_TEST_OP_MD_CHECK_MAP: iommufd_test_md_check_pa,
    ut.IOMMU_TEST_OP_MD_CHECK_REFS: iommufd_test_md_check_refs,
    ut.IOMMU_TEST_OP_MD_CHECK_IOTLB: iommufd_test_md_check_iotlb,
    ut.IOMMU_TEST_OP_CREATE_ACCESS: iommufd_test_create_access,
    ut.IOMMU_TEST_OP_ACCESS_REPLACE_IOAS: iommufd_test_access_replace_ioas,
    ut.IOMMU_TEST_OP_ACCESS_PAGES: iommufd_test_access_pages,
    ut.IOMMU_TEST_OP_ACCESS_RW: iommufd_test_access_rw,
    ut.IOMMU_TEST_OP_DESTROY_ACCESS_PAGES: iommufd_test_access_item_destroy,
    ut.IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT: iommufd_test_set_memory_limit,
    ut.IOMMU_TEST_OP_DIRTY: iommufd_test_dirty,
    ut.IOMMU_TEST_OP_TRIGGER_IOPF: iommufd_test_trigger_iopf,
}
# The ops 7.2 added that the model has (selftest.c:2121-2124,2161-2162@7.2): in the switch of a
# series that names them; 6.12 answers EOPNOTSUPP.
_OPS_SINCE_7_2 = {
    "IOMMU_TEST_OP_DEV_CHECK_CACHE": iommufd_test_dev_check_cache,
    "IOMMU_TEST_OP_TRIGGER_VEVENT": iommufd_test_trigger_vevent,
}


def iommufd_test(ucmd: Ucmd[Any]) -> None:
    """selftest.c:1474-1541 (__reserved is never checked)."""
    fn = _OPS.get(ucmd.cmd.op)
    if fn is None:
        fn = next((f for name, f in _OPS_SINCE_7_2.items()
                   if ucmd.k.abi.CONSTANTS.get(name) == ucmd.cmd.op), None)
    if fn is None:
        raise Errno(errno.EOPNOTSUPP, cite(SELFTEST_C, 1539))
    fn(ucmd)
