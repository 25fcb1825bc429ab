"""include/uapi/linux/iommufd.h of Linux 6.12.117 and 7.2.13, declared once.

``min_size`` of each ioctl is offsetofend(<last member>) exactly as given to
IOCTL_OP() in drivers/iommu/iommufd/main.c:378-411 (7.2: main.c:477-518; no ioctl of
6.12 changed its last member).  What 7.2 adds is declared with ``since="7.2"``
(``abi.since`` for constants, structs and members); citations of the 7.2 tree say so.
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
# 7.2: iommufd.h:54-59
IOMMUFD_CMD_IOAS_MAP_FILE = 0x8F
IOMMUFD_CMD_VIOMMU_ALLOC = 0x90
IOMMUFD_CMD_VDEVICE_ALLOC = 0x91
IOMMUFD_CMD_IOAS_CHANGE_PROCESS = 0x92
IOMMUFD_CMD_VEVENTQ_ALLOC = 0x93
IOMMUFD_CMD_HW_QUEUE_ALLOC = 0x94

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
IOMMU_HWPT_ALLOC_PASID = 1 << 3  # 7.2: iommufd.h:411

IOMMU_VTD_S1_SRE = 1 << 0
IOMMU_VTD_S1_EAFE = 1 << 1
IOMMU_VTD_S1_WPE = 1 << 2

IOMMU_HWPT_DATA_NONE = 0
IOMMU_HWPT_DATA_VTD_S1 = 1
IOMMU_HWPT_DATA_ARM_SMMUV3 = 2  # 7.2
IOMMU_HWPT_DATA_AMD_GUEST = 3   # 7.2

IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17 = 1 << 0
IOMMU_HW_INFO_TYPE_NONE = 0
# 7.2 (iommufd.h:680): the input spelling of 0, for in_data_type without
# IOMMU_HW_INFO_FLAG_INPUT_TYPE.
IOMMU_HW_INFO_TYPE_DEFAULT = 0
IOMMU_HW_INFO_TYPE_INTEL_VTD = 1
IOMMU_HW_INFO_TYPE_ARM_SMMUV3 = 2      # 7.2
IOMMU_HW_INFO_TYPE_TEGRA241_CMDQV = 3  # 7.2
IOMMU_HW_INFO_TYPE_AMD = 4             # 7.2

IOMMU_HW_CAP_DIRTY_TRACKING = 1 << 0
IOMMU_HW_CAP_PCI_PASID_EXEC = 1 << 1
IOMMU_HW_CAP_PCI_PASID_PRIV = 1 << 2
# 7.2 (iommufd.h:702-710): set when ATS cannot be used; its absence means ATS may be.
IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED = 1 << 3

# 7.2 (iommufd.h:714-720): an input flag of IOMMU_GET_HW_INFO (6.12 takes flags == 0).
IOMMU_HW_INFO_FLAG_INPUT_TYPE = 1 << 0

IOMMU_HWPT_DIRTY_TRACKING_ENABLE = 1
IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR = 1

IOMMU_HWPT_INVALIDATE_DATA_VTD_S1 = 0
# 7.2 (iommufd.h:857): in enum iommu_hwpt_invalidate_data_type, for a vIOMMU as hwpt_id.
IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3 = 1
IOMMU_VTD_INV_FLAGS_LEAF = 1 << 0

IOMMU_PGFAULT_FLAGS_PASID_VALID = 1 << 0
IOMMU_PGFAULT_FLAGS_LAST_PAGE = 1 << 1
IOMMU_PGFAULT_PERM_READ = 1 << 0
IOMMU_PGFAULT_PERM_WRITE = 1 << 1
IOMMU_PGFAULT_PERM_EXEC = 1 << 2
IOMMU_PGFAULT_PERM_PRIV = 1 << 3

IOMMUFD_PAGE_RESP_SUCCESS = 0
IOMMUFD_PAGE_RESP_INVALID = 1

# 7.2: enum iommu_viommu_type (iommufd.h:1060-1069)
IOMMU_VIOMMU_TYPE_DEFAULT = 0
IOMMU_VIOMMU_TYPE_ARM_SMMUV3 = 1
IOMMU_VIOMMU_TYPE_TEGRA241_CMDQV = 2

# 7.2: enum iommu_veventq_flag, enum iommu_veventq_type (iommufd.h:1175-1222)
IOMMU_VEVENTQ_FLAG_LOST_EVENTS = 1 << 0
IOMMU_VEVENTQ_TYPE_DEFAULT = 0
IOMMU_VEVENTQ_TYPE_ARM_SMMUV3 = 1
IOMMU_VEVENTQ_TYPE_TEGRA241_CMDQV = 2

# 7.2: enum iommu_hw_queue_type (iommufd.h:1304-1319)
IOMMU_HW_QUEUE_TYPE_DEFAULT = 0
IOMMU_HW_QUEUE_TYPE_TEGRA241_CMDQV = 1


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


class iommu_ioas_map_file(Struct):
    """7.2 (iommufd.h:239-247): IOMMU_IOAS_MAP from a memfd (or a VFIO dma-buf) at ``start``."""

    _fields_ = [
        ("size", u32),
        ("flags", u32),
        ("ioas_id", u32),
        ("fd", s32),
        ("start", aligned_u64),
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


# 7.2 (iommufd.h:468-479): nested HWPT data of the ARM and AMD drivers; ``__aligned_le64``
# is a u64 in C's layout (little-endian content).
class iommu_hwpt_arm_smmuv3(Struct):
    _fields_ = [("ste", aligned_u64 * 2)]


class iommu_hwpt_amd_guest(Struct):
    _fields_ = [("dte", aligned_u64 * 4)]


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


class iommu_hw_info_arm_smmuv3(Struct):
    """7.2 (iommufd.h:611-617)."""

    _fields_ = [("flags", u32), ("__reserved", u32), ("idr", u32 * 6), ("iidr", u32), ("aidr", u32)]


class iommu_hw_info_tegra241_cmdqv(Struct):
    """7.2 (iommufd.h:633-639)."""

    _fields_ = [("flags", u32), ("version", u8), ("log2vcmdqs", u8), ("log2vsids", u8), ("__reserved", u8)]


class iommu_hw_info_amd(Struct):
    """7.2 (iommufd.h:662-665)."""

    _fields_ = [("efr", aligned_u64), ("efr2", aligned_u64)]


class iommu_hw_info_data_type(Union):
    # 6.12 has out_data_type alone; 7.2 (iommufd.h:766-769) makes it a union with
    # in_data_type, an input with IOMMU_HW_INFO_FLAG_INPUT_TYPE.
    _fields_ = [("out_data_type", u32)]
    _appended_: ClassVar[dict[str, list[tuple[str, type]]]] = {"7.2": [("in_data_type", u32)]}


class iommu_hw_info(Struct):
    _anonymous_ = ("_u",)
    _fields_ = [
        ("size", u32),
        ("flags", u32),
        ("dev_id", u32),
        ("data_len", u32),
        ("data_uptr", aligned_u64),
        ("_u", iommu_hw_info_data_type),
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


class iommu_viommu_arm_smmuv3_invalidate(Struct):
    """7.2 (iommufd.h:914-916)."""

    _fields_ = [("cmd", aligned_u64 * 2)]


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


class iommu_viommu_tegra241_cmdqv(Struct):
    """7.2 (iommufd.h:1082-1085): driver data of IOMMU_VIOMMU_ALLOC (output)."""

    _fields_ = [("out_vintf_mmap_offset", aligned_u64), ("out_vintf_mmap_length", aligned_u64)]


class iommu_viommu_alloc(Struct):
    """7.2 (iommufd.h:1111-1121).  IOCTL_OP's last member is out_viommu_id (main.c:514-515
    of 7.2): data_len, __reserved and data_uptr came later and stay optional."""

    _fields_ = [
        ("size", u32),
        ("flags", u32),
        ("type", u32),
        ("dev_id", u32),
        ("hwpt_id", u32),
        ("out_viommu_id", u32),
        ("data_len", u32),
        ("__reserved", u32),
        ("data_uptr", aligned_u64),
    ]


class iommu_vdevice_alloc(Struct):
    """7.2 (iommufd.h:1141-1147)."""

    _fields_ = [
        ("size", u32),
        ("viommu_id", u32),
        ("dev_id", u32),
        ("out_vdevice_id", u32),
        ("virt_id", aligned_u64),
    ]


class iommu_ioas_change_process(Struct):
    """7.2 (iommufd.h:1163-1166)."""

    _fields_ = [("size", u32), ("__reserved", u32)]


class iommufd_vevent_header(Struct):
    """7.2 (iommufd.h:1207-1210): read(2) from the vEVENTQ fd yields these, each followed by
    its type's event record."""

    _fields_ = [("flags", u32), ("sequence", u32)]


class iommu_vevent_arm_smmuv3(Struct):
    _fields_ = [("evt", aligned_u64 * 4)]


class iommu_vevent_tegra241_cmdqv(Struct):
    _fields_ = [("lvcmdq_err_map", aligned_u64 * 2)]


class iommu_veventq_alloc(Struct):
    """7.2 (iommufd.h:1286-1295)."""

    _fields_ = [
        ("size", u32),
        ("flags", u32),
        ("viommu_id", u32),
        ("type", u32),
        ("veventq_depth", u32),
        ("out_veventq_id", u32),
        ("out_veventq_fd", u32),
        ("__reserved", u32),
    ]


class iommu_hw_queue_alloc(Struct):
    """7.2 (iommufd.h:1343-1352)."""

    _fields_ = [
        ("size", u32),
        ("flags", u32),
        ("viommu_id", u32),
        ("type", u32),
        ("index", u32),
        ("out_hw_queue_id", u32),
        ("nesting_parent_iova", aligned_u64),
        ("length", aligned_u64),
    ]


register_structs(
    iommu_destroy, iommu_ioas_alloc, iommu_iova_range, iommu_ioas_iova_ranges,
    iommu_ioas_allow_iovas, iommu_ioas_map, iommu_ioas_map_file, iommu_ioas_copy, iommu_ioas_unmap,
    iommu_option, iommu_vfio_ioas, iommu_hwpt_vtd_s1, iommu_hwpt_arm_smmuv3, iommu_hwpt_amd_guest,
    iommu_hwpt_alloc, iommu_hw_info_vtd, iommu_hw_info_arm_smmuv3, iommu_hw_info_tegra241_cmdqv,
    iommu_hw_info_amd, iommu_hw_info, iommu_hwpt_set_dirty_tracking,
    iommu_hwpt_get_dirty_bitmap, iommu_hwpt_vtd_s1_invalidate, iommu_viommu_arm_smmuv3_invalidate,
    iommu_hwpt_invalidate, iommu_hwpt_pgfault, iommu_hwpt_page_response, iommu_fault_alloc,
    iommu_viommu_tegra241_cmdqv, iommu_viommu_alloc, iommu_vdevice_alloc, iommu_ioas_change_process,
    iommufd_vevent_header, iommu_vevent_arm_smmuv3, iommu_vevent_tegra241_cmdqv, iommu_veventq_alloc,
    iommu_hw_queue_alloc,
)

# What 7.2 adds to iommufd.h (the ioctls say since="7.2" themselves).
since(
    "7.2",
    "IOMMUFD_CMD_IOAS_MAP_FILE", "IOMMUFD_CMD_VIOMMU_ALLOC", "IOMMUFD_CMD_VDEVICE_ALLOC",
    "IOMMUFD_CMD_IOAS_CHANGE_PROCESS", "IOMMUFD_CMD_VEVENTQ_ALLOC", "IOMMUFD_CMD_HW_QUEUE_ALLOC",
    "IOMMU_HWPT_ALLOC_PASID", "IOMMU_HWPT_DATA_ARM_SMMUV3", "IOMMU_HWPT_DATA_AMD_GUEST",
    "IOMMU_HW_INFO_TYPE_DEFAULT", "IOMMU_HW_INFO_TYPE_ARM_SMMUV3", "IOMMU_HW_INFO_TYPE_TEGRA241_CMDQV",
    "IOMMU_HW_INFO_TYPE_AMD", "IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED", "IOMMU_HW_INFO_FLAG_INPUT_TYPE",
    "IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3",
    "IOMMU_VIOMMU_TYPE_DEFAULT", "IOMMU_VIOMMU_TYPE_ARM_SMMUV3", "IOMMU_VIOMMU_TYPE_TEGRA241_CMDQV",
    "IOMMU_VEVENTQ_FLAG_LOST_EVENTS", "IOMMU_VEVENTQ_TYPE_DEFAULT", "IOMMU_VEVENTQ_TYPE_ARM_SMMUV3",
    "IOMMU_VEVENTQ_TYPE_TEGRA241_CMDQV", "IOMMU_HW_QUEUE_TYPE_DEFAULT", "IOMMU_HW_QUEUE_TYPE_TEGRA241_CMDQV",
    "iommu_ioas_map_file", "iommu_hwpt_arm_smmuv3", "iommu_hwpt_amd_guest", "iommu_hw_info_arm_smmuv3",
    "iommu_hw_info_tegra241_cmdqv", "iommu_hw_info_amd", "iommu_viommu_arm_smmuv3_invalidate",
    "iommu_viommu_tegra241_cmdqv", "iommu_viommu_alloc", "iommu_vdevice_alloc", "iommu_ioas_change_process",
    "iommufd_vevent_header", "iommu_vevent_arm_smmuv3", "iommu_vevent_tegra241_cmdqv", "iommu_veventq_alloc",
    "iommu_hw_queue_alloc",
)

# Where each handler starts in the 7.2 tree (the 6.12 line is the _op's handler).
HANDLERS_7_2 = {
    "IOMMU_DESTROY": "main.c:308",
    "IOMMU_IOAS_ALLOC": "ioas.c:38",
    "IOMMU_IOAS_ALLOW_IOVAS": "ioas.c:146",
    "IOMMU_IOAS_COPY": "ioas.c:283",
    "IOMMU_IOAS_IOVA_RANGES": "ioas.c:66",
    "IOMMU_IOAS_MAP": "ioas.c:244",
    "IOMMU_IOAS_MAP_FILE": "ioas.c:204",
    "IOMMU_IOAS_UNMAP": "ioas.c:340",
    "IOMMU_IOAS_CHANGE_PROCESS": "ioas.c:519",
    "IOMMU_OPTION": "main.c:409",
    "IOMMU_VFIO_IOAS": "vfio_compat.c:123",
    "IOMMU_HWPT_ALLOC": "hw_pagetable.c:334",
    "IOMMU_GET_HW_INFO": "device.c:1545",
    "IOMMU_HWPT_SET_DIRTY_TRACKING": "hw_pagetable.c:444",
    "IOMMU_HWPT_GET_DIRTY_BITMAP": "hw_pagetable.c:469",
    "IOMMU_HWPT_INVALIDATE": "hw_pagetable.c:495",
    "IOMMU_FAULT_QUEUE_ALLOC": "eventq.c:441",
    "IOMMU_VIOMMU_ALLOC": "viommu.c:17",
    "IOMMU_VDEVICE_ALLOC": "viommu.c:143",
    "IOMMU_VEVENTQ_ALLOC": "eventq.c:504",
    "IOMMU_HW_QUEUE_ALLOC": "viommu.c:366",
}


def _op(name: str, cmd: int, struct: type[Struct], last: str, handler: str | None, **kw: object) -> Ioctl:
    """``handler``: the 6.12 file:line, None for an ioctl 6.12 lacks (then say since=)."""
    return register_ioctl(
        Ioctl(
            name=name,
            number=_IO(IOMMUFD_TYPE, cmd),
            fd_kinds=frozenset({FD_IOMMUFD}),
            struct=struct,
            min_size=struct.offsetofend(last),
            size_field="size",
            handler=f"drivers/iommu/iommufd/{handler}" if handler else "",
            handlers={"7.2": f"drivers/iommu/iommufd/{HANDLERS_7_2[name]}"},
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


# 7.2's new ioctls (IOCTL_OP table main.c:477-518 of 7.2).
IOMMU_IOAS_MAP_FILE = _op(
    "IOMMU_IOAS_MAP_FILE", IOMMUFD_CMD_IOAS_MAP_FILE, iommu_ioas_map_file, "iova", None, since="7.2",
    flag_fields={"flags": "IOMMU_IOAS_MAP_"},
).number
IOMMU_VIOMMU_ALLOC = _op(
    "IOMMU_VIOMMU_ALLOC", IOMMUFD_CMD_VIOMMU_ALLOC, iommu_viommu_alloc, "out_viommu_id", None, since="7.2",
    # Driver data: read in, and written back (the mock's out_data, tegra241's mmap offset).
    pointers={"data_uptr": PointerField(None, "data_len", "inout")},
).number
IOMMU_VDEVICE_ALLOC = _op(
    "IOMMU_VDEVICE_ALLOC", IOMMUFD_CMD_VDEVICE_ALLOC, iommu_vdevice_alloc, "virt_id", None, since="7.2",
).number
IOMMU_IOAS_CHANGE_PROCESS = _op(
    "IOMMU_IOAS_CHANGE_PROCESS", IOMMUFD_CMD_IOAS_CHANGE_PROCESS, iommu_ioas_change_process, "__reserved",
    None, since="7.2",
).number
IOMMU_VEVENTQ_ALLOC = _op(
    "IOMMU_VEVENTQ_ALLOC", IOMMUFD_CMD_VEVENTQ_ALLOC, iommu_veventq_alloc, "out_veventq_fd", None, since="7.2",
).number
IOMMU_HW_QUEUE_ALLOC = _op(
    "IOMMU_HW_QUEUE_ALLOC", IOMMUFD_CMD_HW_QUEUE_ALLOC, iommu_hw_queue_alloc, "length", None, since="7.2",
).number

register_constants(globals(), "IOMMU_", "IOMMUFD_")
