"""include/uapi/linux/vfio.h of Linux 6.12.117 and 7.2.13, declared once.

``min_size`` of each ioctl is the ``minsz`` its handler copies from the user and checks
``argsz`` against, written as the same ``offsetofend()`` (the same in 6.12 and 7.2);
``handler`` is where that handler starts in 6.12, ``handlers["7.2"]`` in 7.2.  The
container ioctls cite the type1 handlers; the iommufd compat layer uses the same minsz
(drivers/iommu/iommufd/vfio_compat.c:163,200,449).  What 7.2 adds or drops is declared
with ``abi.since`` / ``abi.until``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from .abi import (
    _IO,
    ARG_INT_PTR,
    ARG_NONE,
    ARG_STRING,
    ARG_STRUCT,
    ARG_U32_PTR,
    ARG_VALUE,
    FD_CONTAINER,
    FD_DEVICE,
    FD_GROUP,
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
    u64,
    until,
    values,
)

# The migration data fd returned by VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE.
FD_MIGRATION = "migration"

VFIO_API_VERSION = 0

VFIO_TYPE1_IOMMU = 1
VFIO_SPAPR_TCE_IOMMU = 2
VFIO_TYPE1v2_IOMMU = 3
VFIO_DMA_CC_IOMMU = 4
VFIO_EEH = 5
# 6.12 only: 7.2 renames it __VFIO_RESERVED_TYPE1_NESTING_IOMMU (vfio.h:39 of 7.2), which
# type1 takes as a plain type1v2 and no longer reports through CHECK_EXTENSION.
VFIO_TYPE1_NESTING_IOMMU = 6
VFIO_SPAPR_TCE_v2_IOMMU = 7
VFIO_NOIOMMU_IOMMU = 8
VFIO_UNMAP_ALL = 9
VFIO_UPDATE_VADDR = 10

VFIO_TYPE = ord(";")
VFIO_BASE = 100

VFIO_GROUP_FLAGS_VIABLE = 1 << 0
VFIO_GROUP_FLAGS_CONTAINER_SET = 1 << 1

VFIO_DEVICE_FLAGS_RESET = 1 << 0
VFIO_DEVICE_FLAGS_PCI = 1 << 1
VFIO_DEVICE_FLAGS_PLATFORM = 1 << 2
VFIO_DEVICE_FLAGS_AMBA = 1 << 3
VFIO_DEVICE_FLAGS_CCW = 1 << 4
VFIO_DEVICE_FLAGS_AP = 1 << 5
VFIO_DEVICE_FLAGS_FSL_MC = 1 << 6
VFIO_DEVICE_FLAGS_CAPS = 1 << 7
VFIO_DEVICE_FLAGS_CDX = 1 << 8

VFIO_DEVICE_API_PCI_STRING = "vfio-pci"
VFIO_DEVICE_API_PLATFORM_STRING = "vfio-platform"
VFIO_DEVICE_API_AMBA_STRING = "vfio-amba"
VFIO_DEVICE_API_CCW_STRING = "vfio-ccw"
VFIO_DEVICE_API_AP_STRING = "vfio-ap"

VFIO_DEVICE_INFO_CAP_ZPCI_BASE = 1
VFIO_DEVICE_INFO_CAP_ZPCI_GROUP = 2
VFIO_DEVICE_INFO_CAP_ZPCI_UTIL = 3
VFIO_DEVICE_INFO_CAP_ZPCI_PFIP = 4
VFIO_DEVICE_INFO_CAP_PCI_ATOMIC_COMP = 5

VFIO_PCI_ATOMIC_COMP32 = 1 << 0
VFIO_PCI_ATOMIC_COMP64 = 1 << 1
VFIO_PCI_ATOMIC_COMP128 = 1 << 2

VFIO_REGION_INFO_FLAG_READ = 1 << 0
VFIO_REGION_INFO_FLAG_WRITE = 1 << 1
VFIO_REGION_INFO_FLAG_MMAP = 1 << 2
VFIO_REGION_INFO_FLAG_CAPS = 1 << 3

VFIO_REGION_INFO_CAP_SPARSE_MMAP = 1
VFIO_REGION_INFO_CAP_TYPE = 2
VFIO_REGION_INFO_CAP_MSIX_MAPPABLE = 3
VFIO_REGION_INFO_CAP_NVLINK2_SSATGT = 4
VFIO_REGION_INFO_CAP_NVLINK2_LNKSPD = 5

# C spells this (1 << 31), an int; the value here is the bit a __u32 type field holds.
VFIO_REGION_TYPE_PCI_VENDOR_TYPE = 1 << 31
VFIO_REGION_TYPE_PCI_VENDOR_MASK = 0xFFFF
VFIO_REGION_TYPE_GFX = 1
VFIO_REGION_TYPE_CCW = 2
VFIO_REGION_TYPE_MIGRATION_DEPRECATED = 3

VFIO_REGION_SUBTYPE_INTEL_IGD_OPREGION = 1
VFIO_REGION_SUBTYPE_INTEL_IGD_HOST_CFG = 2
VFIO_REGION_SUBTYPE_INTEL_IGD_LPC_CFG = 3
VFIO_REGION_SUBTYPE_NVIDIA_NVLINK2_RAM = 1
VFIO_REGION_SUBTYPE_IBM_NVLINK2_ATSD = 1
VFIO_REGION_SUBTYPE_GFX_EDID = 1

VFIO_DEVICE_GFX_LINK_STATE_UP = 1
VFIO_DEVICE_GFX_LINK_STATE_DOWN = 2

VFIO_REGION_SUBTYPE_CCW_ASYNC_CMD = 1
VFIO_REGION_SUBTYPE_CCW_SCHIB = 2
VFIO_REGION_SUBTYPE_CCW_CRW = 3
VFIO_REGION_SUBTYPE_MIGRATION_DEPRECATED = 1

VFIO_DEVICE_STATE_V1_STOP = 0
VFIO_DEVICE_STATE_V1_RUNNING = 1 << 0
VFIO_DEVICE_STATE_V1_SAVING = 1 << 1
VFIO_DEVICE_STATE_V1_RESUMING = 1 << 2
VFIO_DEVICE_STATE_MASK = VFIO_DEVICE_STATE_V1_RUNNING | VFIO_DEVICE_STATE_V1_SAVING | VFIO_DEVICE_STATE_V1_RESUMING


def VFIO_DEVICE_STATE_VALID(state: int) -> int:
    if state & VFIO_DEVICE_STATE_V1_RESUMING:
        return int((state & VFIO_DEVICE_STATE_MASK) == VFIO_DEVICE_STATE_V1_RESUMING)
    return 1


def VFIO_DEVICE_STATE_IS_ERROR(state: int) -> int:
    return int((state & VFIO_DEVICE_STATE_MASK) == (VFIO_DEVICE_STATE_V1_SAVING | VFIO_DEVICE_STATE_V1_RESUMING))


def VFIO_DEVICE_STATE_SET_ERROR(state: int) -> int:
    return (state & ~VFIO_DEVICE_STATE_MASK) | VFIO_DEVICE_STATE_V1_SAVING | VFIO_DEVICE_STATE_V1_RESUMING


VFIO_IRQ_INFO_EVENTFD = 1 << 0
VFIO_IRQ_INFO_MASKABLE = 1 << 1
VFIO_IRQ_INFO_AUTOMASKED = 1 << 2
VFIO_IRQ_INFO_NORESIZE = 1 << 3

VFIO_IRQ_SET_DATA_NONE = 1 << 0
VFIO_IRQ_SET_DATA_BOOL = 1 << 1
VFIO_IRQ_SET_DATA_EVENTFD = 1 << 2
VFIO_IRQ_SET_ACTION_MASK = 1 << 3
VFIO_IRQ_SET_ACTION_UNMASK = 1 << 4
VFIO_IRQ_SET_ACTION_TRIGGER = 1 << 5
VFIO_IRQ_SET_DATA_TYPE_MASK = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_DATA_EVENTFD
VFIO_IRQ_SET_ACTION_TYPE_MASK = VFIO_IRQ_SET_ACTION_MASK | VFIO_IRQ_SET_ACTION_UNMASK | VFIO_IRQ_SET_ACTION_TRIGGER

(
    VFIO_PCI_BAR0_REGION_INDEX,
    VFIO_PCI_BAR1_REGION_INDEX,
    VFIO_PCI_BAR2_REGION_INDEX,
    VFIO_PCI_BAR3_REGION_INDEX,
    VFIO_PCI_BAR4_REGION_INDEX,
    VFIO_PCI_BAR5_REGION_INDEX,
    VFIO_PCI_ROM_REGION_INDEX,
    VFIO_PCI_CONFIG_REGION_INDEX,
    VFIO_PCI_VGA_REGION_INDEX,
) = range(9)
VFIO_PCI_NUM_REGIONS = 9

(
    VFIO_PCI_INTX_IRQ_INDEX,
    VFIO_PCI_MSI_IRQ_INDEX,
    VFIO_PCI_MSIX_IRQ_INDEX,
    VFIO_PCI_ERR_IRQ_INDEX,
    VFIO_PCI_REQ_IRQ_INDEX,
    VFIO_PCI_NUM_IRQS,
) = range(6)

VFIO_CCW_CONFIG_REGION_INDEX, VFIO_CCW_NUM_REGIONS = range(2)
VFIO_CCW_IO_IRQ_INDEX, VFIO_CCW_CRW_IRQ_INDEX, VFIO_CCW_REQ_IRQ_INDEX, VFIO_CCW_NUM_IRQS = range(4)
VFIO_AP_REQ_IRQ_INDEX = 0
VFIO_AP_CFG_CHG_IRQ_INDEX = 1  # 7.2 (vfio.h:675), which moves VFIO_AP_NUM_IRQS up to 2
VFIO_AP_NUM_IRQS = 1

VFIO_PCI_DEVID_OWNED = 0
VFIO_PCI_DEVID_NOT_OWNED = -1

VFIO_PCI_HOT_RESET_FLAG_DEV_ID = 1 << 0
VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED = 1 << 1

VFIO_GFX_PLANE_TYPE_PROBE = 1 << 0
VFIO_GFX_PLANE_TYPE_DMABUF = 1 << 1
VFIO_GFX_PLANE_TYPE_REGION = 1 << 2

VFIO_DEVICE_IOEVENTFD_8 = 1 << 0
VFIO_DEVICE_IOEVENTFD_16 = 1 << 1
VFIO_DEVICE_IOEVENTFD_32 = 1 << 2
VFIO_DEVICE_IOEVENTFD_64 = 1 << 3
VFIO_DEVICE_IOEVENTFD_SIZE_MASK = 0xF

VFIO_DEVICE_FEATURE_MASK = 0xFFFF
VFIO_DEVICE_FEATURE_GET = 1 << 16
VFIO_DEVICE_FEATURE_SET = 1 << 17
VFIO_DEVICE_FEATURE_PROBE = 1 << 18

VFIO_DEVICE_FEATURE_PCI_VF_TOKEN = 0
VFIO_DEVICE_FEATURE_MIGRATION = 1
VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE = 2
VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY = 3
VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP = 4
VFIO_DEVICE_FEATURE_LOW_POWER_EXIT = 5
VFIO_DEVICE_FEATURE_DMA_LOGGING_START = 6
VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP = 7
VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT = 8
VFIO_DEVICE_FEATURE_MIG_DATA_SIZE = 9
VFIO_DEVICE_FEATURE_BUS_MASTER = 10
# 7.2 (vfio.h:1512): GET makes a dma-buf fd of slices of a region (vfio_pci_core.c:1629).
VFIO_DEVICE_FEATURE_DMA_BUF = 11
# 7.2 (vfio.h:1526-1535): SET opts in to vfio_precopy_info.flags being an output
# (VFIO_PRECOPY_INFO_REINIT); without it flags stays reserved (vfio_main.c:1288).
VFIO_DEVICE_FEATURE_MIG_PRECOPY_INFOv2 = 12

VFIO_MIGRATION_STOP_COPY = 1 << 0
VFIO_MIGRATION_P2P = 1 << 1
VFIO_MIGRATION_PRE_COPY = 1 << 2

# enum vfio_device_mig_state
VFIO_DEVICE_STATE_ERROR = 0
VFIO_DEVICE_STATE_STOP = 1
VFIO_DEVICE_STATE_RUNNING = 2
VFIO_DEVICE_STATE_STOP_COPY = 3
VFIO_DEVICE_STATE_RESUMING = 4
VFIO_DEVICE_STATE_RUNNING_P2P = 5
VFIO_DEVICE_STATE_PRE_COPY = 6
VFIO_DEVICE_STATE_PRE_COPY_P2P = 7
VFIO_DEVICE_STATE_NR = 8

# 7.2: the flags of VFIO_DEVICE_BIND_IOMMUFD (vfio.h:934), VFIO_DEVICE_ATTACH_IOMMUFD_PT
# (:975) and VFIO_DEVICE_DETACH_IOMMUFD_PT (:999), and VFIO_MIG_GET_PRECOPY_INFO's
# output flag (:1317).  6.12 takes flags == 0 on all three ioctls.
VFIO_DEVICE_BIND_FLAG_TOKEN = 1 << 0
VFIO_DEVICE_ATTACH_PASID = 1 << 0
VFIO_DEVICE_DETACH_PASID = 1 << 0
VFIO_PRECOPY_INFO_REINIT = 1 << 0

VFIO_DEVICE_FEATURE_CLEAR_MASTER = 0
VFIO_DEVICE_FEATURE_SET_MASTER = 1

VFIO_IOMMU_INFO_PGSIZES = 1 << 0
VFIO_IOMMU_INFO_CAPS = 1 << 1

VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE = 1
VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION = 2
VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL = 3

VFIO_DMA_MAP_FLAG_READ = 1 << 0
VFIO_DMA_MAP_FLAG_WRITE = 1 << 1
VFIO_DMA_MAP_FLAG_VADDR = 1 << 2

VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP = 1 << 0
VFIO_DMA_UNMAP_FLAG_ALL = 1 << 1
VFIO_DMA_UNMAP_FLAG_VADDR = 1 << 2

VFIO_IOMMU_DIRTY_PAGES_FLAG_START = 1 << 0
VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP = 1 << 1
VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP = 1 << 2

VFIO_IOMMU_SPAPR_INFO_DDW = 1 << 0

VFIO_EEH_PE_DISABLE = 0
VFIO_EEH_PE_ENABLE = 1
VFIO_EEH_PE_UNFREEZE_IO = 2
VFIO_EEH_PE_UNFREEZE_DMA = 3
VFIO_EEH_PE_GET_STATE = 4
VFIO_EEH_PE_STATE_NORMAL = 0
VFIO_EEH_PE_STATE_RESET = 1
VFIO_EEH_PE_STATE_STOPPED = 2
VFIO_EEH_PE_STATE_STOPPED_DMA = 4
VFIO_EEH_PE_STATE_UNAVAIL = 5
VFIO_EEH_PE_RESET_DEACTIVATE = 5
VFIO_EEH_PE_RESET_HOT = 6
VFIO_EEH_PE_RESET_FUNDAMENTAL = 7
VFIO_EEH_PE_CONFIGURE = 8
VFIO_EEH_PE_INJECT_ERR = 9


class vfio_info_cap_header(Struct):
    _fields_ = [("id", u16), ("version", u16), ("next", u32)]


class vfio_group_status(Struct):
    _fields_ = [("argsz", u32), ("flags", u32)]


class vfio_device_info(Struct):
    _fields_ = [
        ("argsz", u32),
        ("flags", u32),
        ("num_regions", u32),
        ("num_irqs", u32),
        ("cap_offset", u32),
        ("pad", u32),
    ]


class vfio_device_info_cap_pci_atomic_comp(Struct):
    _fields_ = [("header", vfio_info_cap_header), ("flags", u32), ("reserved", u32)]


class vfio_region_info(Struct):
    _fields_ = [
        ("argsz", u32),
        ("flags", u32),
        ("index", u32),
        ("cap_offset", u32),
        ("size", aligned_u64),
        ("offset", aligned_u64),
    ]


class vfio_region_sparse_mmap_area(Struct):
    _fields_ = [("offset", aligned_u64), ("size", aligned_u64)]


class vfio_region_info_cap_sparse_mmap(Struct):
    _fields_ = [("header", vfio_info_cap_header), ("nr_areas", u32), ("reserved", u32)]
    _trailing_ = ("areas", vfio_region_sparse_mmap_area)


class vfio_region_info_cap_type(Struct):
    _fields_ = [("header", vfio_info_cap_header), ("type", u32), ("subtype", u32)]


class vfio_region_gfx_edid(Struct):
    _fields_ = [
        ("edid_offset", u32),
        ("edid_max_size", u32),
        ("edid_size", u32),
        ("max_xres", u32),
        ("max_yres", u32),
        ("link_state", u32),
    ]


class vfio_device_migration_info(Struct):
    _fields_ = [
        ("device_state", u32),
        ("reserved", u32),
        ("pending_bytes", aligned_u64),
        ("data_offset", aligned_u64),
        ("data_size", aligned_u64),
    ]


class vfio_region_info_cap_nvlink2_ssatgt(Struct):
    _fields_ = [("header", vfio_info_cap_header), ("tgt", aligned_u64)]


class vfio_region_info_cap_nvlink2_lnkspd(Struct):
    _fields_ = [("header", vfio_info_cap_header), ("link_speed", u32), ("__pad", u32)]


class vfio_irq_info(Struct):
    _fields_ = [("argsz", u32), ("flags", u32), ("index", u32), ("count", u32)]


class vfio_irq_set(Struct):
    _fields_ = [("argsz", u32), ("flags", u32), ("index", u32), ("start", u32), ("count", u32)]
    _trailing_ = ("data", u8)


class vfio_pci_dependent_device_union(Union):
    _fields_ = [("group_id", u32), ("devid", u32)]


class vfio_pci_dependent_device(Struct):
    _anonymous_ = ("_u",)
    _fields_ = [("_u", vfio_pci_dependent_device_union), ("segment", u16), ("bus", u8), ("devfn", u8)]


class vfio_pci_hot_reset_info(Struct):
    _fields_ = [("argsz", u32), ("flags", u32), ("count", u32)]
    _trailing_ = ("devices", vfio_pci_dependent_device)


class vfio_pci_hot_reset(Struct):
    _fields_ = [("argsz", u32), ("flags", u32), ("count", u32)]
    _trailing_ = ("group_fds", s32)


class vfio_device_gfx_plane_info_union(Union):
    _fields_ = [("region_index", u32), ("dmabuf_id", u32)]


class vfio_device_gfx_plane_info(Struct):
    _anonymous_ = ("_u",)
    _fields_ = [
        ("argsz", u32),
        ("flags", u32),
        ("drm_plane_type", u32),
        ("drm_format", u32),
        ("drm_format_mod", aligned_u64),
        ("width", u32),
        ("height", u32),
        ("stride", u32),
        ("size", u32),
        ("x_pos", u32),
        ("y_pos", u32),
        ("x_hot", u32),
        ("y_hot", u32),
        ("_u", vfio_device_gfx_plane_info_union),
        ("reserved", u32),
    ]


class vfio_device_ioeventfd(Struct):
    _fields_ = [
        ("argsz", u32),
        ("flags", u32),
        ("offset", aligned_u64),
        ("data", aligned_u64),
        ("fd", s32),
        ("reserved", u32),
    ]


class vfio_device_feature(Struct):
    _fields_ = [("argsz", u32), ("flags", u32)]
    _trailing_ = ("data", u8)


class vfio_device_bind_iommufd(Struct):
    _fields_ = [("argsz", u32), ("flags", u32), ("iommufd", s32), ("out_devid", u32)]
    # 7.2 (vfio.h:937): a user pointer to the 16-byte VF token UUID, read with
    # VFIO_DEVICE_BIND_FLAG_TOKEN (device_cdev.c:77 of 7.2).  sizeof 16 in 6.12, 24 in 7.2;
    # minsz stays offsetofend(out_devid).
    _appended_: ClassVar[dict[str, list[tuple[str, type]]]] = {"7.2": [("token_uuid_ptr", aligned_u64)]}


class vfio_device_attach_iommufd_pt(Struct):
    _fields_ = [("argsz", u32), ("flags", u32), ("pt_id", u32)]
    # 7.2 (vfio.h:977), read only with VFIO_DEVICE_ATTACH_PASID: then argsz must reach
    # offsetofend(pasid) (device_cdev.c:213-221 of 7.2).  sizeof 12 / 16.
    _appended_: ClassVar[dict[str, list[tuple[str, type]]]] = {"7.2": [("pasid", u32)]}


class vfio_device_detach_iommufd_pt(Struct):
    _fields_ = [("argsz", u32), ("flags", u32)]
    # 7.2 (vfio.h:1000), as attach (device_cdev.c:268-276 of 7.2).  sizeof 8 / 12.
    _appended_: ClassVar[dict[str, list[tuple[str, type]]]] = {"7.2": [("pasid", u32)]}


class vfio_device_feature_migration(Struct):
    _fields_ = [("flags", aligned_u64)]


class vfio_device_feature_mig_state(Struct):
    _fields_ = [("device_state", u32), ("data_fd", s32)]


class vfio_precopy_info(Struct):
    _fields_ = [
        ("argsz", u32),
        ("flags", u32),
        ("initial_bytes", aligned_u64),
        ("dirty_bytes", aligned_u64),
    ]


class vfio_device_low_power_entry_with_wakeup(Struct):
    _fields_ = [("wakeup_eventfd", s32), ("reserved", u32)]


class vfio_device_feature_dma_logging_range(Struct):
    _fields_ = [("iova", aligned_u64), ("length", aligned_u64)]


class vfio_device_feature_dma_logging_control(Struct):
    _fields_ = [
        ("page_size", aligned_u64),
        ("num_ranges", u32),
        ("__reserved", u32),
        ("ranges", aligned_u64),
    ]
    _pointers_: ClassVar[dict[str, PointerField]] = {
        "ranges": PointerField(vfio_device_feature_dma_logging_range, "num_ranges", "in"),
    }


class vfio_device_feature_dma_logging_report(Struct):
    _fields_ = [
        ("iova", aligned_u64),
        ("length", aligned_u64),
        ("page_size", aligned_u64),
        ("bitmap", aligned_u64),
    ]
    # One bit per page_size of [iova, iova + length): no field holds the count.
    _pointers_: ClassVar[dict[str, PointerField]] = {"bitmap": PointerField(u64, None, "out")}


class vfio_device_feature_mig_data_size(Struct):
    _fields_ = [("stop_copy_length", aligned_u64)]


class vfio_device_feature_bus_master(Struct):
    _fields_ = [("op", u32)]


class vfio_region_dma_range(Struct):
    """7.2 (vfio.h:1514-1517)."""

    _fields_ = [("offset", u64), ("length", u64)]


class vfio_device_feature_dma_buf(Struct):
    """7.2 (vfio.h:1519-1525): the data of VFIO_DEVICE_FEATURE_DMA_BUF, then nr_ranges ranges."""

    _fields_ = [("region_index", u32), ("open_flags", u32), ("flags", u32), ("nr_ranges", u32)]
    _trailing_ = ("dma_ranges", vfio_region_dma_range)


class vfio_iommu_type1_info(Struct):
    _fields_ = [
        ("argsz", u32),
        ("flags", u32),
        ("iova_pgsizes", aligned_u64),
        ("cap_offset", u32),
        ("pad", u32),
    ]


class vfio_iova_range(Struct):
    _fields_ = [("start", u64), ("end", u64)]


class vfio_iommu_type1_info_cap_iova_range(Struct):
    _fields_ = [("header", vfio_info_cap_header), ("nr_iovas", u32), ("reserved", u32)]
    _trailing_ = ("iova_ranges", vfio_iova_range)


class vfio_iommu_type1_info_cap_migration(Struct):
    _fields_ = [
        ("header", vfio_info_cap_header),
        ("flags", u32),
        ("pgsize_bitmap", u64),
        ("max_dirty_bitmap_size", u64),
    ]


class vfio_iommu_type1_info_dma_avail(Struct):
    _fields_ = [("header", vfio_info_cap_header), ("avail", u32)]


class vfio_iommu_type1_dma_map(Struct):
    _fields_ = [("argsz", u32), ("flags", u32), ("vaddr", u64), ("iova", u64), ("size", u64)]
    # The kernel pins the pages; the device reads or writes them.
    _pointers_: ClassVar[dict[str, PointerField]] = {"vaddr": PointerField(None, "size", "inout")}


class vfio_bitmap(Struct):
    # data is `__u64 __user *`, not a __u64: 8 bytes on 64-bit ABIs only.
    _fields_ = [("pgsize", u64), ("size", u64), ("data", u64)]
    _pointers_: ClassVar[dict[str, PointerField]] = {"data": PointerField(None, "size", "out")}


class vfio_iommu_type1_dma_unmap(Struct):
    _fields_ = [("argsz", u32), ("flags", u32), ("iova", u64), ("size", u64)]
    _trailing_ = ("data", u8)


class vfio_iommu_type1_dirty_bitmap(Struct):
    _fields_ = [("argsz", u32), ("flags", u32)]
    _trailing_ = ("data", u8)


class vfio_iommu_type1_dirty_bitmap_get(Struct):
    _fields_ = [("iova", u64), ("size", u64), ("bitmap", vfio_bitmap)]


class vfio_iommu_spapr_tce_ddw_info(Struct):
    _fields_ = [("pgsizes", u64), ("max_dynamic_windows_supported", u32), ("levels", u32)]


class vfio_iommu_spapr_tce_info(Struct):
    _fields_ = [
        ("argsz", u32),
        ("flags", u32),
        ("dma32_window_start", u32),
        ("dma32_window_size", u32),
        ("ddw", vfio_iommu_spapr_tce_ddw_info),
    ]


class vfio_eeh_pe_err(Struct):
    _fields_ = [("type", u32), ("func", u32), ("addr", u64), ("mask", u64)]


class vfio_eeh_pe_op_union(Union):
    _fields_ = [("err", vfio_eeh_pe_err)]


class vfio_eeh_pe_op(Struct):
    _anonymous_ = ("_u",)
    _fields_ = [("argsz", u32), ("flags", u32), ("op", u32), ("_u", vfio_eeh_pe_op_union)]


class vfio_iommu_spapr_register_memory(Struct):
    _fields_ = [("argsz", u32), ("flags", u32), ("vaddr", u64), ("size", u64)]
    _pointers_: ClassVar[dict[str, PointerField]] = {"vaddr": PointerField(None, "size", "in")}


class vfio_iommu_spapr_tce_create(Struct):
    _fields_ = [
        ("argsz", u32),
        ("flags", u32),
        ("page_shift", u32),
        ("__resv1", u32),
        ("window_size", u64),
        ("levels", u32),
        ("__resv2", u32),
        ("start_addr", u64),
    ]


class vfio_iommu_spapr_tce_remove(Struct):
    _fields_ = [("argsz", u32), ("flags", u32), ("start_addr", u64)]


register_structs(
    vfio_info_cap_header, vfio_group_status, vfio_device_info, vfio_device_info_cap_pci_atomic_comp,
    vfio_region_info, vfio_region_sparse_mmap_area, vfio_region_info_cap_sparse_mmap,
    vfio_region_info_cap_type, vfio_region_gfx_edid, vfio_device_migration_info,
    vfio_region_info_cap_nvlink2_ssatgt, vfio_region_info_cap_nvlink2_lnkspd, vfio_irq_info,
    vfio_irq_set, vfio_pci_dependent_device, vfio_pci_hot_reset_info, vfio_pci_hot_reset,
    vfio_device_gfx_plane_info, vfio_device_ioeventfd, vfio_device_feature, vfio_device_bind_iommufd,
    vfio_device_attach_iommufd_pt, vfio_device_detach_iommufd_pt, vfio_device_feature_migration,
    vfio_device_feature_mig_state, vfio_precopy_info, vfio_device_low_power_entry_with_wakeup,
    vfio_device_feature_dma_logging_control, vfio_device_feature_dma_logging_range,
    vfio_device_feature_dma_logging_report, vfio_device_feature_mig_data_size,
    vfio_device_feature_bus_master, vfio_region_dma_range, vfio_device_feature_dma_buf,
    vfio_iommu_type1_info, vfio_iova_range,
    vfio_iommu_type1_info_cap_iova_range, vfio_iommu_type1_info_cap_migration,
    vfio_iommu_type1_info_dma_avail, vfio_iommu_type1_dma_map, vfio_bitmap, vfio_iommu_type1_dma_unmap,
    vfio_iommu_type1_dirty_bitmap, vfio_iommu_type1_dirty_bitmap_get, vfio_iommu_spapr_tce_ddw_info,
    vfio_iommu_spapr_tce_info, vfio_eeh_pe_err, vfio_eeh_pe_op, vfio_iommu_spapr_register_memory,
    vfio_iommu_spapr_tce_create, vfio_iommu_spapr_tce_remove,
)

since(
    "7.2",
    "VFIO_AP_CFG_CHG_IRQ_INDEX", "VFIO_DEVICE_FEATURE_DMA_BUF", "VFIO_DEVICE_FEATURE_MIG_PRECOPY_INFOv2",
    "VFIO_DEVICE_BIND_FLAG_TOKEN", "VFIO_DEVICE_ATTACH_PASID", "VFIO_DEVICE_DETACH_PASID",
    "VFIO_PRECOPY_INFO_REINIT", "vfio_region_dma_range", "vfio_device_feature_dma_buf",
)
until("7.2", "VFIO_TYPE1_NESTING_IOMMU")
values("VFIO_AP_NUM_IRQS", {"6.12": 1, "7.2": 2})

# Where each handler starts in the 7.2 tree (the 6.12 line is the _op's handler).
HANDLERS_7_2 = {
    "VFIO_GET_API_VERSION": "drivers/vfio/container.c:339",
    "VFIO_CHECK_EXTENSION": "drivers/vfio/container.c:185",
    "VFIO_SET_IOMMU": "drivers/vfio/container.c:260",
    "VFIO_GROUP_GET_STATUS": "drivers/vfio/group.c:325",
    "VFIO_GROUP_SET_CONTAINER": "drivers/vfio/group.c:107",
    "VFIO_GROUP_UNSET_CONTAINER": "drivers/vfio/group.c:81",
    "VFIO_GROUP_GET_DEVICE_FD": "drivers/vfio/group.c:303",
    "VFIO_DEVICE_GET_INFO": "drivers/vfio/pci/vfio_pci_core.c:1073",
    # 7.2 checks minsz in the core for every driver, then asks get_region_info_caps().
    "VFIO_DEVICE_GET_REGION_INFO": "drivers/vfio/vfio_main.c:1300",
    "VFIO_DEVICE_GET_IRQ_INFO": "drivers/vfio/pci/vfio_pci_core.c:1245",
    "VFIO_DEVICE_SET_IRQS": "drivers/vfio/pci/vfio_pci_core.c:1282",
    "VFIO_DEVICE_RESET": "drivers/vfio/pci/vfio_pci_core.c:1318",
    "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO": "drivers/vfio/pci/vfio_pci_core.c:1348",
    "VFIO_DEVICE_PCI_HOT_RESET": "drivers/vfio/pci/vfio_pci_core.c:1503",
    "VFIO_DEVICE_QUERY_GFX_PLANE": "drivers/gpu/drm/i915/gvt/kvmgt.c:1360",
    "VFIO_DEVICE_GET_GFX_DMABUF": "drivers/gpu/drm/i915/gvt/kvmgt.c:1377",
    "VFIO_DEVICE_IOEVENTFD": "drivers/vfio/pci/vfio_pci_core.c:1533",
    "VFIO_DEVICE_FEATURE": "drivers/vfio/vfio_main.c:1239",
    "VFIO_DEVICE_BIND_IOMMUFD": "drivers/vfio/device_cdev.c:83",
    "VFIO_DEVICE_ATTACH_IOMMUFD_PT": "drivers/vfio/device_cdev.c:194",
    "VFIO_DEVICE_DETACH_IOMMUFD_PT": "drivers/vfio/device_cdev.c:253",
    # 7.2's drivers share the minsz check vfio_check_precopy_ioctl() (mlx5/main.c:473).
    "VFIO_MIG_GET_PRECOPY_INFO": "include/linux/vfio.h:301",
    "VFIO_IOMMU_GET_INFO": "drivers/vfio/vfio_iommu_type1.c:2836",
    "VFIO_IOMMU_MAP_DMA": "drivers/vfio/vfio_iommu_type1.c:2895",
    "VFIO_IOMMU_UNMAP_DMA": "drivers/vfio/vfio_iommu_type1.c:2914",
    "VFIO_IOMMU_ENABLE": "drivers/vfio/vfio_iommu_spapr_tce.c:1075",
    "VFIO_IOMMU_DISABLE": "drivers/vfio/vfio_iommu_spapr_tce.c:1085",
    "VFIO_IOMMU_DIRTY_PAGES": "drivers/vfio/vfio_iommu_type1.c:2967",
    "VFIO_IOMMU_SPAPR_TCE_GET_INFO": "drivers/vfio/vfio_iommu_spapr_tce.c:857",
    "VFIO_EEH_PE_OP": "drivers/vfio/vfio_iommu_spapr_tce.c:777",
    "VFIO_IOMMU_SPAPR_REGISTER_MEMORY": "drivers/vfio/vfio_iommu_spapr_tce.c:1016",
    "VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY": "drivers/vfio/vfio_iommu_spapr_tce.c:1046",
    "VFIO_IOMMU_SPAPR_TCE_CREATE": "drivers/vfio/vfio_iommu_spapr_tce.c:1106",
    "VFIO_IOMMU_SPAPR_TCE_REMOVE": "drivers/vfio/vfio_iommu_spapr_tce.c:1147",
}


def _op(
    name: str,
    nr: int,
    fd: str,
    handler: str,
    struct: type[Struct] | None = None,
    last: str | None = None,
    arg: str = ARG_STRUCT,
    flag_fields: Mapping[str, str] | None = None,
    pointers: Mapping[str, PointerField] | None = None,
    flag_min_sizes: Mapping[str, int] | None = None,
    flag_data: tuple[str, type] | None = None,
) -> int:
    """Register ``name`` = _IO(VFIO_TYPE, VFIO_BASE + nr) with minsz offsetofend(struct, last)."""
    io = Ioctl(
        name=name,
        number=_IO(VFIO_TYPE, VFIO_BASE + nr),
        fd_kinds=frozenset({fd}),
        arg=arg,
        struct=struct,
        min_size=struct.offsetofend(last) if struct is not None and last is not None else None,
        size_field="argsz" if struct is not None else None,
        flag_fields=flag_fields or {},
        pointers=pointers or {},
        handler=handler,
        handlers={"7.2": HANDLERS_7_2[name]},
        flag_min_sizes=flag_min_sizes or {},
        flag_data=flag_data,
    )
    return register_ioctl(io).number


_CONTAINER = "drivers/vfio/container.c"
_GROUP = "drivers/vfio/group.c"
_MAIN = "drivers/vfio/vfio_main.c"
_CDEV = "drivers/vfio/device_cdev.c"
_PCI = "drivers/vfio/pci/vfio_pci_core.c"
_GVT = "drivers/gpu/drm/i915/gvt/kvmgt.c"
_TYPE1 = "drivers/vfio/vfio_iommu_type1.c"
_SPAPR = "drivers/vfio/vfio_iommu_spapr_tce.c"

VFIO_GET_API_VERSION = _op("VFIO_GET_API_VERSION", 0, FD_CONTAINER, f"{_CONTAINER}:339", arg=ARG_NONE)
VFIO_CHECK_EXTENSION = _op("VFIO_CHECK_EXTENSION", 1, FD_CONTAINER, f"{_CONTAINER}:185", arg=ARG_VALUE)
VFIO_SET_IOMMU = _op("VFIO_SET_IOMMU", 2, FD_CONTAINER, f"{_CONTAINER}:260", arg=ARG_VALUE)

VFIO_GROUP_GET_STATUS = _op(
    "VFIO_GROUP_GET_STATUS", 3, FD_GROUP, f"{_GROUP}:352", vfio_group_status, "flags",
    flag_fields={"flags": "VFIO_GROUP_FLAGS_"},
)
VFIO_GROUP_SET_CONTAINER = _op("VFIO_GROUP_SET_CONTAINER", 4, FD_GROUP, f"{_GROUP}:102", arg=ARG_INT_PTR)
VFIO_GROUP_UNSET_CONTAINER = _op("VFIO_GROUP_UNSET_CONTAINER", 5, FD_GROUP, f"{_GROUP}:76", arg=ARG_NONE)
VFIO_GROUP_GET_DEVICE_FD = _op("VFIO_GROUP_GET_DEVICE_FD", 6, FD_GROUP, f"{_GROUP}:312", arg=ARG_STRING)

VFIO_DEVICE_GET_INFO = _op(
    "VFIO_DEVICE_GET_INFO", 7, FD_DEVICE, f"{_PCI}:983", vfio_device_info, "num_irqs",
    flag_fields={"flags": "VFIO_DEVICE_FLAGS_"},
)
VFIO_DEVICE_GET_REGION_INFO = _op(
    "VFIO_DEVICE_GET_REGION_INFO", 8, FD_DEVICE, f"{_PCI}:1040", vfio_region_info, "offset",
    flag_fields={"flags": "VFIO_REGION_INFO_FLAG_"},
)
VFIO_DEVICE_GET_IRQ_INFO = _op(
    "VFIO_DEVICE_GET_IRQ_INFO", 9, FD_DEVICE, f"{_PCI}:1181", vfio_irq_info, "count",
    flag_fields={"flags": "VFIO_IRQ_INFO_"},
)
VFIO_DEVICE_SET_IRQS = _op(
    "VFIO_DEVICE_SET_IRQS", 10, FD_DEVICE, f"{_PCI}:1218", vfio_irq_set, "count",
    flag_fields={"flags": "VFIO_IRQ_SET_"},
)
VFIO_DEVICE_RESET = _op("VFIO_DEVICE_RESET", 11, FD_DEVICE, f"{_PCI}:1254", arg=ARG_NONE)
VFIO_DEVICE_GET_PCI_HOT_RESET_INFO = _op(
    "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO", 12, FD_DEVICE, f"{_PCI}:1281", vfio_pci_hot_reset_info, "count",
    flag_fields={"flags": "VFIO_PCI_HOT_RESET_FLAG_"},
)
VFIO_DEVICE_PCI_HOT_RESET = _op(
    "VFIO_DEVICE_PCI_HOT_RESET", 13, FD_DEVICE, f"{_PCI}:1436", vfio_pci_hot_reset, "count",
)
# Served by mdev drivers only (vfio-pci: ENOTTY); i915 GVT-g's minsz.  The mbochs sample
# uses offsetofend(region_index), the same offset.
VFIO_DEVICE_QUERY_GFX_PLANE = _op(
    "VFIO_DEVICE_QUERY_GFX_PLANE", 14, FD_DEVICE, f"{_GVT}:1389", vfio_device_gfx_plane_info, "dmabuf_id",
    flag_fields={"flags": "VFIO_GFX_PLANE_TYPE_"},
)
VFIO_DEVICE_GET_GFX_DMABUF = _op("VFIO_DEVICE_GET_GFX_DMABUF", 15, FD_DEVICE, f"{_GVT}:1406", arg=ARG_U32_PTR)
VFIO_DEVICE_IOEVENTFD = _op(
    "VFIO_DEVICE_IOEVENTFD", 16, FD_DEVICE, f"{_PCI}:1466", vfio_device_ioeventfd, "fd",
    flag_fields={"flags": "VFIO_DEVICE_IOEVENTFD_"},
)
VFIO_DEVICE_FEATURE = _op(
    "VFIO_DEVICE_FEATURE", 17, FD_DEVICE, f"{_MAIN}:1210", vfio_device_feature, "flags",
    flag_fields={"flags": "VFIO_DEVICE_FEATURE_"},
)
VFIO_DEVICE_BIND_IOMMUFD = _op(
    "VFIO_DEVICE_BIND_IOMMUFD", 18, FD_DEVICE, f"{_CDEV}:63", vfio_device_bind_iommufd, "out_devid",
    flag_fields={"flags": "VFIO_DEVICE_BIND_FLAG_"},
    pointers={"token_uuid_ptr": PointerField(None, None, "in")},  # 16 bytes (a UUID)
)
VFIO_DEVICE_ATTACH_IOMMUFD_PT = _op(
    "VFIO_DEVICE_ATTACH_IOMMUFD_PT", 19, FD_DEVICE, f"{_CDEV}:162", vfio_device_attach_iommufd_pt, "pt_id",
    flag_fields={"flags": "VFIO_DEVICE_ATTACH_PASID"},
    flag_min_sizes={"VFIO_DEVICE_ATTACH_PASID": 16},  # offsetofend(pasid) of 7.2
)
VFIO_DEVICE_DETACH_IOMMUFD_PT = _op(
    "VFIO_DEVICE_DETACH_IOMMUFD_PT", 20, FD_DEVICE, f"{_CDEV}:198", vfio_device_detach_iommufd_pt, "flags",
    flag_fields={"flags": "VFIO_DEVICE_DETACH_PASID"},
    flag_min_sizes={"VFIO_DEVICE_DETACH_PASID": 12},  # offsetofend(pasid) of 7.2
)
# On the migration data fd; each variant driver has its own handler, all with this minsz
# (hisilicon/hisi_acc_vfio_pci.c:811, qat/main.c:130).
VFIO_MIG_GET_PRECOPY_INFO = _op(
    "VFIO_MIG_GET_PRECOPY_INFO", 21, FD_MIGRATION, "drivers/vfio/pci/mlx5/main.c:483",
    vfio_precopy_info, "dirty_bytes", flag_fields={"flags": "VFIO_PRECOPY_INFO_"},
)

VFIO_IOMMU_GET_INFO = _op(
    "VFIO_IOMMU_GET_INFO", 12, FD_CONTAINER, f"{_TYPE1}:2756", vfio_iommu_type1_info, "iova_pgsizes",
    flag_fields={"flags": "VFIO_IOMMU_INFO_"},
)
VFIO_IOMMU_MAP_DMA = _op(
    "VFIO_IOMMU_MAP_DMA", 13, FD_CONTAINER, f"{_TYPE1}:2815", vfio_iommu_type1_dma_map, "size",
    flag_fields={"flags": "VFIO_DMA_MAP_FLAG_"}, pointers=vfio_iommu_type1_dma_map._pointers_,
)
VFIO_IOMMU_UNMAP_DMA = _op(
    "VFIO_IOMMU_UNMAP_DMA", 14, FD_CONTAINER, f"{_TYPE1}:2834", vfio_iommu_type1_dma_unmap, "size",
    flag_fields={"flags": "VFIO_DMA_UNMAP_FLAG_"},
    flag_data=("VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP", vfio_bitmap),  # vfio_iommu_type1.c:2858-2866
)
VFIO_IOMMU_ENABLE = _op("VFIO_IOMMU_ENABLE", 15, FD_CONTAINER, f"{_SPAPR}:1075", arg=ARG_NONE)
VFIO_IOMMU_DISABLE = _op("VFIO_IOMMU_DISABLE", 16, FD_CONTAINER, f"{_SPAPR}:1085", arg=ARG_NONE)
VFIO_IOMMU_DIRTY_PAGES = _op(
    "VFIO_IOMMU_DIRTY_PAGES", 17, FD_CONTAINER, f"{_TYPE1}:2887", vfio_iommu_type1_dirty_bitmap, "flags",
    flag_fields={"flags": "VFIO_IOMMU_DIRTY_PAGES_FLAG_"},
    flag_data=("VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP", vfio_iommu_type1_dirty_bitmap_get),  # type1.c:2932-2943
)

VFIO_IOMMU_SPAPR_TCE_GET_INFO = _op(
    "VFIO_IOMMU_SPAPR_TCE_GET_INFO", 12, FD_CONTAINER, f"{_SPAPR}:857", vfio_iommu_spapr_tce_info,
    "dma32_window_size", flag_fields={"flags": "VFIO_IOMMU_SPAPR_INFO_"},
)
# offsetofend(err.mask) for VFIO_EEH_PE_INJECT_ERR (vfio_iommu_spapr_tce.c:815).
VFIO_EEH_PE_OP = _op("VFIO_EEH_PE_OP", 21, FD_CONTAINER, f"{_SPAPR}:777", vfio_eeh_pe_op, "op")
VFIO_IOMMU_SPAPR_REGISTER_MEMORY = _op(
    "VFIO_IOMMU_SPAPR_REGISTER_MEMORY", 17, FD_CONTAINER, f"{_SPAPR}:1016", vfio_iommu_spapr_register_memory,
    "size", pointers=vfio_iommu_spapr_register_memory._pointers_,
)
VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY = _op(
    "VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY", 18, FD_CONTAINER, f"{_SPAPR}:1046", vfio_iommu_spapr_register_memory,
    "size", pointers=vfio_iommu_spapr_register_memory._pointers_,
)
VFIO_IOMMU_SPAPR_TCE_CREATE = _op(
    "VFIO_IOMMU_SPAPR_TCE_CREATE", 19, FD_CONTAINER, f"{_SPAPR}:1106", vfio_iommu_spapr_tce_create, "start_addr",
)
VFIO_IOMMU_SPAPR_TCE_REMOVE = _op(
    "VFIO_IOMMU_SPAPR_TCE_REMOVE", 20, FD_CONTAINER, f"{_SPAPR}:1147", vfio_iommu_spapr_tce_remove, "start_addr",
)

register_constants(globals(), "VFIO_")
