"""drivers/iommu/iommufd/iommufd_test.h (Linux 6.12.117): the CONFIG_IOMMUFD_TEST selftest uAPI.

``struct iommu_test_cmd`` has an anonymous union: ctypes promotes its members, so
``cmd.mock_domain.out_hwpt_id`` reads as in C.  The union member structs are anonymous in
C; their classes are named ``iommu_test_cmd_<member>`` and are not registered as structs.
"""

from __future__ import annotations

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
    u32,
    u64,
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
) = range(1, 16)

MOCK_APERTURE_START = 1 << 24
MOCK_APERTURE_LAST = (1 << 31) - 1

MOCK_FLAGS_ACCESS_WRITE = 1 << 0
MOCK_FLAGS_ACCESS_SYZ = 1 << 16

MOCK_ACCESS_RW_WRITE = 1 << 0
MOCK_ACCESS_RW_SLOW_PATH = 1 << 2

MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES = 1 << 0

MOCK_FLAGS_DEVICE_NO_DIRTY = 1 << 0
MOCK_FLAGS_DEVICE_HUGE_IOVA = 1 << 1

MOCK_NESTED_DOMAIN_IOTLB_ID_MAX = 3
MOCK_NESTED_DOMAIN_IOTLB_NUM = 4

IOMMU_HW_INFO_TYPE_SELFTEST = 0xFEEDBEEF
IOMMU_HW_INFO_SELFTEST_REGVAL = 0xDEADBEEF

IOMMU_HWPT_DATA_SELFTEST = 0xDEAD
IOMMU_TEST_IOTLB_DEFAULT = 0xBADBEEF

IOMMU_HWPT_INVALIDATE_DATA_SELFTEST = 0xDEADBEEF
IOMMU_HWPT_INVALIDATE_DATA_SELFTEST_INVALID = 0xDADBEEF

IOMMU_TEST_INVALIDATE_FLAG_ALL = 1 << 0


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


class iommu_hwpt_invalidate_selftest(Struct):
    _fields_ = [("flags", u32), ("iotlb_id", u32)]


register_structs(iommu_test_cmd, iommu_test_hw_info, iommu_hwpt_selftest, iommu_hwpt_invalidate_selftest)

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
    )
).number

register_constants(globals(), "IOMMU_TEST_", "MOCK_", "IOMMU_HW_INFO_", "IOMMU_HWPT_")
