"""drivers/iommu/iommufd/iommufd_test.h (Linux 6.12.117 and 7.2.13): the CONFIG_IOMMUFD_TEST
selftest uAPI.  What 7.2 adds or drops is declared with ``abi.since`` / ``abi.until``.

``struct iommu_test_cmd`` has an anonymous union: ctypes promotes its members, so
``cmd.mock_domain.out_hwpt_id`` reads as in C.  The union member structs are anonymous in
C; their classes are named ``iommu_test_cmd_<member>`` and are not registered as structs.
"""

from __future__ import annotations

from typing import ClassVar

from .abi import (
    _IO,
    FD_IOMMUFD,
    Ioctl,
    PointerField,
    Struct,
    Union,
    aligned_u64,
    register_constants,
    register_ioctl,
    register_structs,
    s32,
    since,
    u32,
    u64,
    until,
)
from .iommufd import IOMMUFD_CMD_BASE, IOMMUFD_TYPE

(
    IOMMU_TEST_OP_ADD_RESERVED,
    IOMMU_TEST_OP_MOCK_DOMAIN,
    IOMMU_TEST_OP_MD_CHECK_MAP,
    IOMMU_TEST_OP_MD_CHECK_REFS,
    IOMMU_TEST_OP_CREATE_ACCESS,
    IOMMU_TEST_OP_DESTROY_ACCESS_PAGES,
    IOMMU_TEST_OP_ACCESS_PAGES,
    IOMMU_TEST_OP_ACCESS_RW,
    IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT,
    IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE,
    IOMMU_TEST_OP_ACCESS_REPLACE_IOAS,
    IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS,
    IOMMU_TEST_OP_DIRTY,
    IOMMU_TEST_OP_MD_CHECK_IOTLB,
    IOMMU_TEST_OP_TRIGGER_IOPF,
    # 7.2 (iommufd_test.h:26-33)
    IOMMU_TEST_OP_DEV_CHECK_CACHE,
    IOMMU_TEST_OP_TRIGGER_VEVENT,
    IOMMU_TEST_OP_PASID_ATTACH,
    IOMMU_TEST_OP_PASID_REPLACE,
    IOMMU_TEST_OP_PASID_DETACH,
    IOMMU_TEST_OP_PASID_CHECK_HWPT,
    IOMMU_TEST_OP_DMABUF_GET,
    IOMMU_TEST_OP_DMABUF_REVOKE,
) = range(1, 24)

# 7.2 (iommufd_test.h:36-39): iommu_hwpt_selftest.pagetable_type of a mock domain.
MOCK_IOMMUPT_DEFAULT = 0
MOCK_IOMMUPT_HUGE = 1

MOCK_APERTURE_START = 1 << 24
MOCK_APERTURE_LAST = (1 << 31) - 1
# 7.2 (iommufd_test.h:45-46): 6.12 has the same sizes in selftest.c only.
MOCK_PAGE_SIZE = 2048
MOCK_HUGE_PAGE_SIZE = 512 * MOCK_PAGE_SIZE

MOCK_FLAGS_ACCESS_WRITE = 1 << 0
MOCK_FLAGS_ACCESS_SYZ = 1 << 16

MOCK_ACCESS_RW_WRITE = 1 << 0
MOCK_ACCESS_RW_SLOW_PATH = 1 << 2

MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES = 1 << 0

MOCK_FLAGS_DEVICE_NO_DIRTY = 1 << 0
# 6.12 only: 7.2 picks huge IOVA pages per domain (MOCK_IOMMUPT_HUGE), not per device
# (iommufd_test.h:63-66 of 7.2 has NO_DIRTY and PASID only).
MOCK_FLAGS_DEVICE_HUGE_IOVA = 1 << 1
MOCK_FLAGS_DEVICE_PASID = 1 << 2  # 7.2

MOCK_NESTED_DOMAIN_IOTLB_ID_MAX = 3
MOCK_NESTED_DOMAIN_IOTLB_NUM = 4

# 7.2 (iommufd_test.h:73-79)
MOCK_DEV_CACHE_ID_MAX = 3
MOCK_DEV_CACHE_NUM = 4
IOMMU_TEST_PASID_RESERVED = 1024
MOCK_PASID_WIDTH = 20

IOMMU_HW_INFO_TYPE_SELFTEST = 0xFEEDBEEF
IOMMU_HW_INFO_SELFTEST_REGVAL = 0xDEADBEEF

IOMMU_HWPT_DATA_SELFTEST = 0xDEAD
IOMMU_TEST_IOTLB_DEFAULT = 0xBADBEEF
IOMMU_TEST_DEV_CACHE_DEFAULT = 0xBADDAD  # 7.2

IOMMU_HWPT_INVALIDATE_DATA_SELFTEST = 0xDEADBEEF
IOMMU_HWPT_INVALIDATE_DATA_SELFTEST_INVALID = 0xDADBEEF

IOMMU_TEST_INVALIDATE_FLAG_ALL = 1 << 0

# 7.2 (iommufd_test.h:246-291): the mock driver's vIOMMU, vEVENTQ and HW queue types.
IOMMU_VIOMMU_TYPE_SELFTEST = 0xDEADBEEF
IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST = 0xDEADBEEF
IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST_INVALID = 0xDADBEEF
IOMMU_VEVENTQ_TYPE_SELFTEST = 0xBEEFBEEF
IOMMU_HW_QUEUE_TYPE_SELFTEST = 0xDEADBEEF
IOMMU_TEST_HW_QUEUE_MAX = 2


class iommu_test_cmd_add_reserved(Struct):
    _fields_ = [("start", aligned_u64), ("length", aligned_u64)]


class iommu_test_cmd_mock_domain(Struct):
    _fields_ = [("out_stdev_id", u32), ("out_hwpt_id", u32), ("out_idev_id", u32)]


class iommu_test_cmd_mock_domain_flags(Struct):
    _fields_ = [("out_stdev_id", u32), ("out_hwpt_id", u32), ("out_idev_id", u32), ("dev_flags", u32)]


class iommu_test_cmd_mock_domain_replace(Struct):
    _fields_ = [("pt_id", u32)]


class iommu_test_cmd_check_map(Struct):
    _fields_ = [("iova", aligned_u64), ("length", aligned_u64), ("uptr", aligned_u64)]


class iommu_test_cmd_check_refs(Struct):
    _fields_ = [("length", aligned_u64), ("uptr", aligned_u64), ("refs", u32)]


class iommu_test_cmd_create_access(Struct):
    _fields_ = [("out_access_fd", u32), ("flags", u32)]


class iommu_test_cmd_destroy_access_pages(Struct):
    _fields_ = [("access_pages_id", u32)]


class iommu_test_cmd_access_pages(Struct):
    _fields_ = [
        ("flags", u32),
        ("out_access_pages_id", u32),
        ("iova", aligned_u64),
        ("length", aligned_u64),
        ("uptr", aligned_u64),
    ]


class iommu_test_cmd_access_rw(Struct):
    _fields_ = [("iova", aligned_u64), ("length", aligned_u64), ("uptr", aligned_u64), ("flags", u32)]


class iommu_test_cmd_memory_limit(Struct):
    _fields_ = [("limit", u32)]


class iommu_test_cmd_access_replace_ioas(Struct):
    _fields_ = [("ioas_id", u32)]


class iommu_test_cmd_dirty(Struct):
    _fields_ = [
        ("flags", u32),
        ("iova", aligned_u64),
        ("length", aligned_u64),
        ("page_size", aligned_u64),
        ("uptr", aligned_u64),
        ("out_nr_dirty", aligned_u64),
    ]


class iommu_test_cmd_check_iotlb(Struct):
    _fields_ = [("id", u32), ("iotlb", u32)]


class iommu_test_cmd_trigger_iopf(Struct):
    _fields_ = [("dev_id", u32), ("pasid", u32), ("grpid", u32), ("perm", u32), ("addr", u64)]


# 7.2 (iommufd_test.h:162-195); the pasid_* members take the mock device's stdev_id in ``id``.
class iommu_test_cmd_check_dev_cache(Struct):
    _fields_ = [("id", u32), ("cache", u32)]


class iommu_test_cmd_trigger_vevent(Struct):
    _fields_ = [("dev_id", u32)]


class iommu_test_cmd_pasid_attach(Struct):
    _fields_ = [("pasid", u32), ("pt_id", u32)]


class iommu_test_cmd_pasid_replace(Struct):
    _fields_ = [("pasid", u32), ("pt_id", u32)]


class iommu_test_cmd_pasid_detach(Struct):
    _fields_ = [("pasid", u32)]


class iommu_test_cmd_pasid_check(Struct):
    _fields_ = [("pasid", u32), ("hwpt_id", u32)]


class iommu_test_cmd_dmabuf_get(Struct):
    _fields_ = [("length", u32), ("open_flags", u32)]


class iommu_test_cmd_dmabuf_revoke(Struct):
    _fields_ = [("dmabuf_fd", s32), ("revoked", u32)]


class iommu_test_cmd_union(Union):
    _fields_ = [
        ("add_reserved", iommu_test_cmd_add_reserved),
        ("mock_domain", iommu_test_cmd_mock_domain),
        ("mock_domain_flags", iommu_test_cmd_mock_domain_flags),
        ("mock_domain_replace", iommu_test_cmd_mock_domain_replace),
        ("check_map", iommu_test_cmd_check_map),
        ("check_refs", iommu_test_cmd_check_refs),
        ("create_access", iommu_test_cmd_create_access),
        ("destroy_access_pages", iommu_test_cmd_destroy_access_pages),
        ("access_pages", iommu_test_cmd_access_pages),
        ("access_rw", iommu_test_cmd_access_rw),
        ("memory_limit", iommu_test_cmd_memory_limit),
        ("access_replace_ioas", iommu_test_cmd_access_replace_ioas),
        ("dirty", iommu_test_cmd_dirty),
        ("check_iotlb", iommu_test_cmd_check_iotlb),
        ("trigger_iopf", iommu_test_cmd_trigger_iopf),
    ]
    _appended_: ClassVar[dict[str, list[tuple[str, type]]]] = {"7.2": [
        ("check_dev_cache", iommu_test_cmd_check_dev_cache),
        ("trigger_vevent", iommu_test_cmd_trigger_vevent),
        ("pasid_attach", iommu_test_cmd_pasid_attach),
        ("pasid_replace", iommu_test_cmd_pasid_replace),
        ("pasid_detach", iommu_test_cmd_pasid_detach),
        ("pasid_check", iommu_test_cmd_pasid_check),
        ("dmabuf_get", iommu_test_cmd_dmabuf_get),
        ("dmabuf_revoke", iommu_test_cmd_dmabuf_revoke),
    ]}


class iommu_test_cmd(Struct):
    _anonymous_ = ("_u",)
    _fields_ = [
        ("size", u32),
        ("op", u32),
        ("id", u32),
        ("__reserved", u32),
        ("_u", iommu_test_cmd_union),
        ("last", u32),
    ]


class iommu_test_hw_info(Struct):
    _fields_ = [("flags", u32), ("test_reg", u32)]


class iommu_hwpt_selftest(Struct):
    _fields_ = [("iotlb", u32)]
    # 7.2 (iommufd_test.h:223-226; MOCK_IOMMUPT_*): sizeof 4 in 6.12, 8 in 7.2.
    _appended_: ClassVar[dict[str, list[tuple[str, type]]]] = {"7.2": [("pagetable_type", u32)]}


class iommu_hwpt_invalidate_selftest(Struct):
    _fields_ = [("flags", u32), ("iotlb_id", u32)]


class iommu_viommu_selftest(Struct):
    """7.2 (iommufd_test.h:260-265): IOMMU_VIOMMU_ALLOC data for IOMMU_VIOMMU_TYPE_SELFTEST."""

    _fields_ = [
        ("in_data", u32),
        ("out_data", u32),
        ("out_mmap_offset", aligned_u64),
        ("out_mmap_length", aligned_u64),
    ]


class iommu_viommu_invalidate_selftest(Struct):
    """7.2 (iommufd_test.h:277-282)."""

    _fields_ = [("flags", u32), ("vdev_id", u32), ("cache_id", u32)]


class iommu_viommu_event_selftest(Struct):
    """7.2 (iommufd_test.h:286-288): the record after each iommufd_vevent_header."""

    _fields_ = [("virt_id", u32)]


register_structs(
    iommu_test_cmd, iommu_test_hw_info, iommu_hwpt_selftest, iommu_hwpt_invalidate_selftest,
    iommu_viommu_selftest, iommu_viommu_invalidate_selftest, iommu_viommu_event_selftest,
)

since(
    "7.2",
    "IOMMU_TEST_OP_DEV_CHECK_CACHE", "IOMMU_TEST_OP_TRIGGER_VEVENT", "IOMMU_TEST_OP_PASID_ATTACH",
    "IOMMU_TEST_OP_PASID_REPLACE", "IOMMU_TEST_OP_PASID_DETACH", "IOMMU_TEST_OP_PASID_CHECK_HWPT",
    "IOMMU_TEST_OP_DMABUF_GET", "IOMMU_TEST_OP_DMABUF_REVOKE",
    "MOCK_IOMMUPT_DEFAULT", "MOCK_IOMMUPT_HUGE", "MOCK_PAGE_SIZE", "MOCK_HUGE_PAGE_SIZE",
    "MOCK_FLAGS_DEVICE_PASID", "MOCK_DEV_CACHE_ID_MAX", "MOCK_DEV_CACHE_NUM", "IOMMU_TEST_PASID_RESERVED",
    "MOCK_PASID_WIDTH", "IOMMU_TEST_DEV_CACHE_DEFAULT",
    "IOMMU_VIOMMU_TYPE_SELFTEST", "IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST",
    "IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST_INVALID", "IOMMU_VEVENTQ_TYPE_SELFTEST",
    "IOMMU_HW_QUEUE_TYPE_SELFTEST", "IOMMU_TEST_HW_QUEUE_MAX",
    "iommu_viommu_selftest", "iommu_viommu_invalidate_selftest", "iommu_viommu_event_selftest",
)
until("7.2", "MOCK_FLAGS_DEVICE_HUGE_IOVA")

# The union member each op reads or writes: iommufd_test() (drivers/iommu/iommufd/selftest.c:1474-1535).
# MOCK_DOMAIN_FLAGS reads dev_flags and writes out_* through mock_domain, which overlays them
# (selftest.c:761-762,784-786).
TEST_OP_MEMBER: dict[int, str] = {
    IOMMU_TEST_OP_ADD_RESERVED: "add_reserved",
    IOMMU_TEST_OP_MOCK_DOMAIN: "mock_domain",
    IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS: "mock_domain_flags",
    IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE: "mock_domain_replace",
    IOMMU_TEST_OP_MD_CHECK_MAP: "check_map",
    IOMMU_TEST_OP_MD_CHECK_REFS: "check_refs",
    IOMMU_TEST_OP_MD_CHECK_IOTLB: "check_iotlb",
    IOMMU_TEST_OP_CREATE_ACCESS: "create_access",
    IOMMU_TEST_OP_ACCESS_REPLACE_IOAS: "access_replace_ioas",
    IOMMU_TEST_OP_ACCESS_PAGES: "access_pages",
    IOMMU_TEST_OP_ACCESS_RW: "access_rw",
    IOMMU_TEST_OP_DESTROY_ACCESS_PAGES: "destroy_access_pages",
    IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT: "memory_limit",
    IOMMU_TEST_OP_DIRTY: "dirty",
    IOMMU_TEST_OP_TRIGGER_IOPF: "trigger_iopf",
    # 7.2: iommufd_test() (selftest.c:2093-2179 of 7.2)
    IOMMU_TEST_OP_DEV_CHECK_CACHE: "check_dev_cache",
    IOMMU_TEST_OP_TRIGGER_VEVENT: "trigger_vevent",
    IOMMU_TEST_OP_PASID_ATTACH: "pasid_attach",
    # iommufd_test_pasid_replace() reads cmd->pasid_attach (selftest.c:1915-1916 of 7.2), not
    # pasid_replace; the two have the same layout.
    IOMMU_TEST_OP_PASID_REPLACE: "pasid_attach",
    IOMMU_TEST_OP_PASID_DETACH: "pasid_detach",
    IOMMU_TEST_OP_PASID_CHECK_HWPT: "pasid_check",
    IOMMU_TEST_OP_DMABUF_GET: "dmabuf_get",
    IOMMU_TEST_OP_DMABUF_REVOKE: "dmabuf_revoke",
}

IOMMU_TEST_CMD = register_ioctl(
    Ioctl(
        name="IOMMU_TEST_CMD",
        number=_IO(IOMMUFD_TYPE, IOMMUFD_CMD_BASE + 32),
        fd_kinds=frozenset({FD_IOMMUFD}),
        struct=iommu_test_cmd,
        min_size=iommu_test_cmd.offsetofend("last"),
        size_field="size",
        pointers={
            "check_map.uptr": PointerField(None, "check_map.length", "in"),
            "check_refs.uptr": PointerField(None, "check_refs.length", "in"),
            "access_pages.uptr": PointerField(None, "access_pages.length", "in"),
            "access_rw.uptr": PointerField(None, "access_rw.length", "inout"),
            # One bit per dirty.page_size of dirty.length (selftest.c:1393).
            "dirty.uptr": PointerField(None, None, "in"),
        },
        handler="drivers/iommu/iommufd/selftest.c:1474",
        handlers={"7.2": "drivers/iommu/iommufd/selftest.c:2093"},
    )
).number

register_constants(
    globals(), "IOMMU_TEST_", "MOCK_", "IOMMU_HW_INFO_", "IOMMU_HWPT_", "IOMMU_VIOMMU_", "IOMMU_VEVENTQ_",
    "IOMMU_HW_QUEUE_",
)
