"""Version gates: the uAPI behaviours that changed between the kernel series the model follows.

The model boots as the release of the kernel it is compared with (``Facts.kernel``) and asks
``k.since(GATE)`` where a rule differs between series: the old rule cites the 6.12 line, the
new one the 7.2 line.  Each gate is declared once here, with both citations, so that

- a reader sees every version-dependent rule of the model in one table,
- ``vfio-conformance compare`` can tie a kernel-vs-kernel behaviour change to the gate that
  explains it (the model records the gates a step consulted), and
- a test can take a gate away and watch the 7.2 cases fail.

``since`` is the first release with the new behaviour where the upstream commit pins it,
else the first series this project measured it on ("7.2": changed somewhere after 6.12).
Citations of a 7.2 line carry ``@7.2`` (``drivers/vfio/vfio_iommu_type1.c:1702@7.2``, what
``errors.cite(path, line, "7.2")`` makes); citations without a suffix are 6.12.117 lines.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..uapi.kernel_version import at_least


@dataclass(frozen=True)
class Gate:
    name: str
    since: str     # first release with the new behaviour
    what: str      # the change a user of the uAPI sees
    before: str    # 6.12 line(s) of the old rule
    after: str     # 7.2 line(s) of the new rule
    commit: str = ""


TYPE1_OVERFLOW_EOVERFLOW = "type1-overflow-eoverflow"
TYPE1_NESTING_REMOVED = "type1-nesting-removed"
CDEV_BIND_TOKEN = "cdev-bind-token"
CDEV_PASID_ATTACH = "cdev-pasid-attach"
HW_INFO_INPUT_TYPE = "hw-info-input-type"
HW_INFO_ATS_CAP = "hw-info-ats-cap"
HWPT_INVALIDATE_ANY_OBJECT = "hwpt-invalidate-any-object"
HWPT_ALLOC_PASID = "hwpt-alloc-pasid"
HWPT_PAGING_FAULT_ID = "hwpt-paging-fault-id"
MOCK_DEVICE_FLAGS_PASID = "mock-device-flags-pasid"
DIRTY_BITMAP_ZERO_LENGTH = "dirty-bitmap-zero-length"
DIRTY_BITMAP_WALK_ERRORS = "dirty-bitmap-walk-errors"
MOCK_PAGING_USER_DATA = "mock-paging-user-data"
MOCK_DIRTY_COUNTS_BITS = "mock-dirty-counts-bits"
USER_PAGES_OVERFLOW_FIRST = "user-pages-overflow-first"

GATES: dict[str, Gate] = {g.name: g for g in (
    Gate(TYPE1_OVERFLOW_EOVERFLOW, "7.2",
         "VFIO_IOMMU_MAP_DMA / UNMAP_DMA whose iova or vaddr range wraps past 2^64 fails with EOVERFLOW "
         "(was EINVAL), checked before alignment; a range may now end exactly at 2^64 - 1",
         "drivers/vfio/vfio_iommu_type1.c:1578-1587, 1302-1305",
         "drivers/vfio/vfio_iommu_type1.c:1693-1702@7.2, 1414-1437@7.2", "6012379ede6a"),
    Gate(TYPE1_NESTING_REMOVED, "7.2",
         "VFIO_TYPE1_NESTING_IOMMU is gone: CHECK_EXTENSION answers 0, and SET_IOMMU takes the number "
         "(__VFIO_RESERVED_TYPE1_NESTING_IOMMU) as a plain type1v2 whose domains no longer need nesting",
         "drivers/vfio/vfio_iommu_type1.c:2645-2650, 2551-2553, 2205-2209",
         "drivers/vfio/vfio_iommu_type1.c:2726-2731@7.2, 2634@7.2"),
    Gate(CDEV_BIND_TOKEN, "7.2",
         "VFIO_DEVICE_BIND_IOMMUFD takes VFIO_DEVICE_BIND_FLAG_TOKEN (a VF token read from token_uuid_ptr), "
         "reads the whole struct by argsz (a non-zero tail past it is E2BIG), and checks the VF token as the "
         "group path does (a VF of a vfio-pci PF without one: EACCES)",
         "drivers/vfio/device_cdev.c:63-92",
         "drivers/vfio/device_cdev.c:63-127@7.2", "86624ba3b522"),
    Gate(CDEV_PASID_ATTACH, "7.2",
         "VFIO_DEVICE_ATTACH/DETACH_IOMMUFD_PT take VFIO_DEVICE_ATTACH_PASID / DETACH_PASID and a pasid "
         "field; other flag bits are still EINVAL",
         "drivers/vfio/device_cdev.c:172-176, 208-211",
         "drivers/vfio/device_cdev.c:207-228@7.2, 266-286@7.2"),
    Gate(HW_INFO_INPUT_TYPE, "7.2",
         "IOMMU_GET_HW_INFO takes IOMMU_HW_INFO_FLAG_INPUT_TYPE with in_data_type (a type the driver does "
         "not report is EOPNOTSUPP); other flag bits are still EOPNOTSUPP",
         "drivers/iommu/iommufd/device.c:1320-1322",
         "drivers/iommu/iommufd/device.c:1557-1564@7.2"),
    Gate(HW_INFO_ATS_CAP, "7.2",
         "IOMMU_GET_HW_INFO sets IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED in out_capabilities for a device that "
         "cannot use ATS",
         "drivers/iommu/iommufd/device.c:1374-1376",
         "drivers/iommu/iommufd/device.c:1616-1622@7.2"),
    Gate(HWPT_INVALIDATE_ANY_OBJECT, "7.2",
         "IOMMU_HWPT_INVALIDATE looks hwpt_id up as any object (a nested HWPT or a vIOMMU): another kind of "
         "object is EINVAL, where 6.12 asked for a nested HWPT and said ENOENT",
         "drivers/iommu/iommufd/hw_pagetable.c:442-446",
         "drivers/iommu/iommufd/hw_pagetable.c:524-552@7.2"),
    Gate(HWPT_ALLOC_PASID, "7.2",
         "IOMMU_HWPT_ALLOC takes IOMMU_HWPT_ALLOC_PASID (bit 3), which 6.12 refuses as unknown (EOPNOTSUPP)",
         "drivers/iommu/iommufd/hw_pagetable.c:110-122",
         "drivers/iommu/iommufd/hw_pagetable.c@7.2"),
    Gate(HWPT_PAGING_FAULT_ID, "7.2",
         "IOMMU_HWPT_ALLOC of a paging HWPT (pt_id an IOAS) takes IOMMU_HWPT_FAULT_ID_VALID (6.12: EOPNOTSUPP, "
         "only a nested HWPT could): the fault_id is looked up (ENOENT when it names no fault object)",
         "drivers/iommu/iommufd/hw_pagetable.c:110-122",
         "drivers/iommu/iommufd/hw_pagetable.c:113-127@7.2, 149-150@7.2"),
    Gate(MOCK_DEVICE_FLAGS_PASID, "7.2",
         "IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS takes MOCK_FLAGS_DEVICE_PASID (bit 2) and no longer "
         "MOCK_FLAGS_DEVICE_HUGE_IOVA (bit 1, EINVAL)",
         "drivers/iommu/iommufd/selftest.c:698-700",
         "drivers/iommu/iommufd/selftest.c@7.2"),
    Gate(DIRTY_BITMAP_ZERO_LENGTH, "7.2",
         "IOMMU_HWPT_GET_DIRTY_BITMAP no longer refuses a length of 0 with EINVAL: length - 1 wraps, so "
         "an iova other than 0 fails with EOVERFLOW",
         "drivers/iommu/iommufd/io_pagetable.c:524-525",
         "drivers/iommu/iommufd/io_pagetable.c:608-609@7.2"),
    Gate(DIRTY_BITMAP_WALK_ERRORS, "7.2",
         "IOMMU_HWPT_GET_DIRTY_BITMAP no longer fails for what its walk met (the return of "
         "iova_bitmap_for_each() is dropped): a range not wholly mapped (6.12: EINVAL), a domain not tracking "
         "(6.12: the driver's EINVAL), a bit outside the bitmap (6.12: EPROTO); 7.2 returns 0",
         "drivers/iommu/iommufd/io_pagetable.c:476-477,508, drivers/iommu/iommufd/iova_bitmap.c:392,419-420",
         "drivers/iommu/iommufd/io_pagetable.c:592@7.2"),
    Gate(MOCK_PAGING_USER_DATA, "7.2",
         "IOMMU_HWPT_ALLOC of a mock paging HWPT takes IOMMU_HWPT_DATA_SELFTEST user data (6.12: EOPNOTSUPP): "
         "its pagetable_type picks the default or the huge mock page table, another type is EOPNOTSUPP",
         "drivers/iommu/iommufd/selftest.c:340-341",
         "drivers/iommu/iommufd/selftest.c:505-522@7.2, 440-472@7.2"),
    Gate(MOCK_DIRTY_COUNTS_BITS, "7.2",
         "IOMMU_TEST_OP_DIRTY counts every set bit of its bitmap in out_nr_dirty, mapped or not (6.12: only "
         "the bits whose xarray entry, looked up at iova / page_size, exists), and marks the IOPTE holding "
         "iova + i * page_size dirty (6.12: the entry at index iova / page_size)",
         "drivers/iommu/iommufd/selftest.c:1398-1415",
         "drivers/iommu/iommufd/selftest.c:1734-1739@7.2, drivers/iommu/generic_pt/iommu_pt.h:343-375@7.2"),
    Gate(USER_PAGES_OVERFLOW_FIRST, "7.2",
         "IOMMU_IOAS_MAP (and the compat VFIO_IOMMU_MAP_DMA) of user memory checks the user address + length "
         "for overflow (EOVERFLOW) before the length (EINVAL above SIZE_MAX - PAGE_SIZE): a length of "
         "2^64 - PAGE_SIZE fails with EOVERFLOW (6.12: EINVAL)",
         "drivers/iommu/iommufd/pages.c:1152-1156",
         "drivers/iommu/iommufd/pages.c:1406-1407@7.2, 1372-1373@7.2"),
)}


def gate_open(release: str, name: str) -> bool:
    """Whether a kernel of ``release`` has the new behaviour of gate ``name``."""
    return at_least(release, GATES[name].since)
