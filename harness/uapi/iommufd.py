"""include/uapi/linux/iommufd.h (Linux 6.12.117), declared once.

``min_size`` of each ioctl is offsetofend(<last member>) exactly as given to
IOCTL_OP() in drivers/iommu/iommufd/main.c:378-411.
"""

from __future__ import annotations

from .abi import (
    _IO,
    FD_IOMMUFD,
    Ioctl,
    PointerField,
    Struct,
    aligned_u64,
    register_constants,
    register_ioctl,
    register_structs,
    u8,
    u16,
    u32,
)

IOMMUFD_TYPE = ord(";")

IOMMUFD_CMD_BASE = 0x80
IOMMUFD_CMD_DESTROY = IOMMUFD_CMD_BASE
IOMMUFD_CMD_IOAS_ALLOC = 0x81
IOMMUFD_CMD_IOAS_ALLOW_IOVAS = 0x82
IOMMUFD_CMD_IOAS_COPY = 0x83
IOMMUFD_CMD_IOAS_IOVA_RANGES = 0x84
IOMMUFD_CMD_IOAS_MAP = 0x85
IOMMUFD_CMD_IOAS_UNMAP = 0x86
IOMMUFD_CMD_OPTION = 0x87
IOMMUFD_CMD_VFIO_IOAS = 0x88
IOMMUFD_CMD_HWPT_ALLOC = 0x89
IOMMUFD_CMD_GET_HW_INFO = 0x8A
IOMMUFD_CMD_HWPT_SET_DIRTY_TRACKING = 0x8B
IOMMUFD_CMD_HWPT_GET_DIRTY_BITMAP = 0x8C
IOMMUFD_CMD_HWPT_INVALIDATE = 0x8D
IOMMUFD_CMD_FAULT_QUEUE_ALLOC = 0x8E

# Flags and enums.
IOMMU_IOAS_MAP_FIXED_IOVA = 1 << 0
IOMMU_IOAS_MAP_WRITEABLE = 1 << 1
IOMMU_IOAS_MAP_READABLE = 1 << 2

IOMMU_OPTION_RLIMIT_MODE = 0
IOMMU_OPTION_HUGE_PAGES = 1
IOMMU_OPTION_OP_SET = 0
IOMMU_OPTION_OP_GET = 1

IOMMU_VFIO_IOAS_GET = 0
IOMMU_VFIO_IOAS_SET = 1
IOMMU_VFIO_IOAS_CLEAR = 2

IOMMU_HWPT_ALLOC_NEST_PARENT = 1 << 0
IOMMU_HWPT_ALLOC_DIRTY_TRACKING = 1 << 1
IOMMU_HWPT_FAULT_ID_VALID = 1 << 2

IOMMU_VTD_S1_SRE = 1 << 0
IOMMU_VTD_S1_EAFE = 1 << 1
IOMMU_VTD_S1_WPE = 1 << 2

IOMMU_HWPT_DATA_NONE = 0
IOMMU_HWPT_DATA_VTD_S1 = 1

IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17 = 1 << 0
IOMMU_HW_INFO_TYPE_NONE = 0
IOMMU_HW_INFO_TYPE_INTEL_VTD = 1

IOMMU_HW_CAP_DIRTY_TRACKING = 1 << 0
IOMMU_HW_CAP_PCI_PASID_EXEC = 1 << 1
IOMMU_HW_CAP_PCI_PASID_PRIV = 1 << 2

IOMMU_HWPT_DIRTY_TRACKING_ENABLE = 1
IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR = 1

IOMMU_HWPT_INVALIDATE_DATA_VTD_S1 = 0
IOMMU_VTD_INV_FLAGS_LEAF = 1 << 0

IOMMU_PGFAULT_FLAGS_PASID_VALID = 1 << 0
IOMMU_PGFAULT_FLAGS_LAST_PAGE = 1 << 1
IOMMU_PGFAULT_PERM_READ = 1 << 0
IOMMU_PGFAULT_PERM_WRITE = 1 << 1
IOMMU_PGFAULT_PERM_EXEC = 1 << 2
IOMMU_PGFAULT_PERM_PRIV = 1 << 3

IOMMUFD_PAGE_RESP_SUCCESS = 0
IOMMUFD_PAGE_RESP_INVALID = 1


class iommu_destroy(Struct):
    _fields_ = [("size", u32), ("id", u32)]


class iommu_ioas_alloc(Struct):
    _fields_ = [("size", u32), ("flags", u32), ("out_ioas_id", u32)]


class iommu_iova_range(Struct):
    _fields_ = [("start", aligned_u64), ("last", aligned_u64)]


class iommu_ioas_iova_ranges(Struct):
    _fields_ = [
        ("size", u32),
        ("ioas_id", u32),
        ("num_iovas", u32),
        ("__reserved", u32),
        ("allowed_iovas", aligned_u64),
        ("out_iova_alignment", aligned_u64),
    ]


class iommu_ioas_allow_iovas(Struct):
    _fields_ = [
        ("size", u32),
        ("ioas_id", u32),
        ("num_iovas", u32),
        ("__reserved", u32),
        ("allowed_iovas", aligned_u64),
    ]


class iommu_ioas_map(Struct):
    _fields_ = [
        ("size", u32),
        ("flags", u32),
        ("ioas_id", u32),
        ("__reserved", u32),
        ("user_va", aligned_u64),
        ("length", aligned_u64),
        ("iova", aligned_u64),
    ]


class iommu_ioas_copy(Struct):
    _fields_ = [
        ("size", u32),
        ("flags", u32),
        ("dst_ioas_id", u32),
        ("src_ioas_id", u32),
        ("length", aligned_u64),
        ("dst_iova", aligned_u64),
        ("src_iova", aligned_u64),
    ]


class iommu_ioas_unmap(Struct):
    _fields_ = [("size", u32), ("ioas_id", u32), ("iova", aligned_u64), ("length", aligned_u64)]


class iommu_option(Struct):
    _fields_ = [
        ("size", u32),
        ("option_id", u32),
        ("op", u16),
        ("__reserved", u16),
        ("object_id", u32),
        ("val64", aligned_u64),
    ]


class iommu_vfio_ioas(Struct):
    _fields_ = [("size", u32), ("ioas_id", u32), ("op", u16), ("__reserved", u16)]


class iommu_hwpt_vtd_s1(Struct):
    _fields_ = [
        ("flags", aligned_u64),
        ("pgtbl_addr", aligned_u64),
        ("addr_width", u32),
        ("__reserved", u32),
    ]


class iommu_hwpt_alloc(Struct):
    _fields_ = [
        ("size", u32),
        ("flags", u32),
        ("dev_id", u32),
        ("pt_id", u32),
        ("out_hwpt_id", u32),
        ("__reserved", u32),
        ("data_type", u32),
        ("data_len", u32),
        ("data_uptr", aligned_u64),
        ("fault_id", u32),
        ("__reserved2", u32),
    ]


class iommu_hw_info_vtd(Struct):
    _fields_ = [
        ("flags", u32),
        ("__reserved", u32),
        ("cap_reg", aligned_u64),
        ("ecap_reg", aligned_u64),
    ]


class iommu_hw_info(Struct):
    _fields_ = [
        ("size", u32),
        ("flags", u32),
        ("dev_id", u32),
        ("data_len", u32),
        ("data_uptr", aligned_u64),
        ("out_data_type", u32),
        ("out_max_pasid_log2", u8),
        ("__reserved", u8 * 3),
        ("out_capabilities", aligned_u64),
    ]


class iommu_hwpt_set_dirty_tracking(Struct):
    _fields_ = [("size", u32), ("flags", u32), ("hwpt_id", u32), ("__reserved", u32)]


class iommu_hwpt_get_dirty_bitmap(Struct):
    _fields_ = [
        ("size", u32),
        ("hwpt_id", u32),
        ("flags", u32),
        ("__reserved", u32),
        ("iova", aligned_u64),
        ("length", aligned_u64),
        ("page_size", aligned_u64),
        ("data", aligned_u64),
    ]


class iommu_hwpt_vtd_s1_invalidate(Struct):
    _fields_ = [
        ("addr", aligned_u64),
        ("npages", aligned_u64),
        ("flags", u32),
        ("__reserved", u32),
    ]


class iommu_hwpt_invalidate(Struct):
    _fields_ = [
        ("size", u32),
        ("hwpt_id", u32),
        ("data_uptr", aligned_u64),
        ("data_type", u32),
        ("entry_len", u32),
        ("entry_num", u32),
        ("__reserved", u32),
    ]


class iommu_hwpt_pgfault(Struct):
    _fields_ = [
        ("flags", u32),
        ("dev_id", u32),
        ("pasid", u32),
        ("grpid", u32),
        ("perm", u32),
        ("__reserved", u32),
        ("addr", aligned_u64),
        ("length", u32),
        ("cookie", u32),
    ]


class iommu_hwpt_page_response(Struct):
    _fields_ = [("cookie", u32), ("code", u32)]


class iommu_fault_alloc(Struct):
    _fields_ = [("size", u32), ("flags", u32), ("out_fault_id", u32), ("out_fault_fd", u32)]


register_structs(
    iommu_destroy, iommu_ioas_alloc, iommu_iova_range, iommu_ioas_iova_ranges,
    iommu_ioas_allow_iovas, iommu_ioas_map, iommu_ioas_copy, iommu_ioas_unmap,
    iommu_option, iommu_vfio_ioas, iommu_hwpt_vtd_s1, iommu_hwpt_alloc,
    iommu_hw_info_vtd, iommu_hw_info, iommu_hwpt_set_dirty_tracking,
    iommu_hwpt_get_dirty_bitmap, iommu_hwpt_vtd_s1_invalidate, iommu_hwpt_invalidate,
    iommu_hwpt_pgfault, iommu_hwpt_page_response, iommu_fault_alloc,
)


def _op(name: str, cmd: int, struct: type[Struct], last: str, handler: str, **kw: object) -> Ioctl:
    return register_ioctl(
        Ioctl(
            name=name,
            number=_IO(IOMMUFD_TYPE, cmd),
            fd_kinds=frozenset({FD_IOMMUFD}),
            struct=struct,
            min_size=struct.offsetofend(last),
            size_field="size",
            handler=f"drivers/iommu/iommufd/{handler}",
            **kw,  # type: ignore[arg-type]
        )
    )


_RANGES = PointerField(iommu_iova_range, "num_iovas", "in")

IOMMU_DESTROY = _op("IOMMU_DESTROY", IOMMUFD_CMD_DESTROY, iommu_destroy, "id", "main.c:247").number
IOMMU_IOAS_ALLOC = _op(
    "IOMMU_IOAS_ALLOC", IOMMUFD_CMD_IOAS_ALLOC, iommu_ioas_alloc, "out_ioas_id", "ioas.c:37",
).number
IOMMU_IOAS_ALLOW_IOVAS = _op(
    "IOMMU_IOAS_ALLOW_IOVAS", IOMMUFD_CMD_IOAS_ALLOW_IOVAS, iommu_ioas_allow_iovas,
    "allowed_iovas", "ioas.c:142", pointers={"allowed_iovas": _RANGES},
).number
IOMMU_IOAS_COPY = _op(
    "IOMMU_IOAS_COPY", IOMMUFD_CMD_IOAS_COPY, iommu_ioas_copy, "src_iova", "ioas.c:239",
    flag_fields={"flags": "IOMMU_IOAS_MAP_"},
).number
IOMMU_IOAS_IOVA_RANGES = _op(
    "IOMMU_IOAS_IOVA_RANGES", IOMMUFD_CMD_IOAS_IOVA_RANGES, iommu_ioas_iova_ranges,
    "out_iova_alignment", "ioas.c:62",
    pointers={"allowed_iovas": PointerField(iommu_iova_range, "num_iovas", "out")},
).number
IOMMU_IOAS_MAP = _op(
    "IOMMU_IOAS_MAP", IOMMUFD_CMD_IOAS_MAP, iommu_ioas_map, "iova", "ioas.c:200",
    flag_fields={"flags": "IOMMU_IOAS_MAP_"},
).number
IOMMU_IOAS_UNMAP = _op(
    "IOMMU_IOAS_UNMAP", IOMMUFD_CMD_IOAS_UNMAP, iommu_ioas_unmap, "length", "ioas.c:296",
).number
IOMMU_OPTION = _op("IOMMU_OPTION", IOMMUFD_CMD_OPTION, iommu_option, "val64", "main.c:315").number
IOMMU_VFIO_IOAS = _op(
    "IOMMU_VFIO_IOAS", IOMMUFD_CMD_VFIO_IOAS, iommu_vfio_ioas, "__reserved", "vfio_compat.c:123",
).number
IOMMU_HWPT_ALLOC = _op(
    "IOMMU_HWPT_ALLOC", IOMMUFD_CMD_HWPT_ALLOC, iommu_hwpt_alloc, "__reserved", "hw_pagetable.c:267",
    flag_fields={"flags": "IOMMU_HWPT_"},
    pointers={"data_uptr": PointerField(None, "data_len", "in")},
).number
IOMMU_GET_HW_INFO = _op(
    "IOMMU_GET_HW_INFO", IOMMUFD_CMD_GET_HW_INFO, iommu_hw_info, "__reserved", "device.c:1309",
    pointers={"data_uptr": PointerField(None, "data_len", "out")},
).number
IOMMU_HWPT_SET_DIRTY_TRACKING = _op(
    "IOMMU_HWPT_SET_DIRTY_TRACKING", IOMMUFD_CMD_HWPT_SET_DIRTY_TRACKING,
    iommu_hwpt_set_dirty_tracking, "__reserved", "hw_pagetable.c:362",
).number
IOMMU_HWPT_GET_DIRTY_BITMAP = _op(
    "IOMMU_HWPT_GET_DIRTY_BITMAP", IOMMUFD_CMD_HWPT_GET_DIRTY_BITMAP,
    iommu_hwpt_get_dirty_bitmap, "data", "hw_pagetable.c:387",
).number
IOMMU_HWPT_INVALIDATE = _op(
    "IOMMU_HWPT_INVALIDATE", IOMMUFD_CMD_HWPT_INVALIDATE, iommu_hwpt_invalidate,
    "__reserved", "hw_pagetable.c:413",
).number
IOMMU_FAULT_QUEUE_ALLOC = _op(
    "IOMMU_FAULT_QUEUE_ALLOC", IOMMUFD_CMD_FAULT_QUEUE_ALLOC, iommu_fault_alloc,
    "out_fault_fd", "fault.c:393",
).number

register_constants(globals(), "IOMMU_", "IOMMUFD_")
