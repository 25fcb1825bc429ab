"""drivers/vfio/pci/vfio_pci_core.c: struct vfio_pci_core_device, open/close,
the device ioctls (GET_INFO, GET_REGION_INFO, GET_IRQ_INFO, SET_IRQS, RESET,
GET_PCI_HOT_RESET_INFO, PCI_HOT_RESET, IOEVENTFD), the driver features
(PCI_VF_TOKEN, LOW_POWER_*), VF tokens and the name match of GET_DEVICE_FD,
SR-IOV configuration, registration and unregistration.

The device's hardware (BARs, ROM, INTx pin, MSI/MSI-X, reset methods) is the
``PciFunction`` description of harness.backends.base."""

from __future__ import annotations

import ctypes
import errno
import uuid
from typing import TYPE_CHECKING

from ...uapi import vfio as uv
from ..base.bus import BUS_NOTIFY_ADD_DEVICE, Notifier, bus_register_notifier, bus_unregister_notifier
from ..errors import Errno, cite
from ..eventfd import EventFd
from ..kernel import File, ModelKernel
from ..pci.iov import pci_disable_sriov, pci_enable_sriov
from ..pci.pci import PciDev, pci_core, pci_probe_reset_slot_or_bus, pci_try_reset_function
from . import iommufd as vfio_iommufd
from . import pci_config, pci_intrs, pci_rdwr
from .vfio_main import (
    VfioDevice,
    VfioDeviceFile,
    VfioInfoCap,
    copy_from_user,
    copy_to_user,
    get_struct,
    offsetofend,
    put_struct,
    vfio_assign_device_set,
    vfio_check_feature,
    vfio_device_busy,
    vfio_find_device_in_devset,
    vfio_init_device,
    vfio_register_group_dev,
    vfio_release_device_set,
    vfio_set_irqs_validate_and_prepare,
    vfio_state,
    vfio_unregister_group_dev,
)
from .virqfd import Virqfd, vfio_virqfd_disable, vfio_virqfd_enable

if TYPE_CHECKING:
    from ..iommufd import IommufdCtx

CORE_C = "drivers/vfio/pci/vfio_pci_core.c"
RDWR_C = "drivers/vfio/pci/vfio_pci_rdwr.c"
VFIO_PCI_OFFSET_SHIFT = 40
VFIO_PCI_OFFSET_MASK = (1 << VFIO_PCI_OFFSET_SHIFT) - 1
VFIO_PCI_IOEVENTFD_MAX = 1000  # vfio_pci_priv.h:12
UUID_STRING_LEN = 36
VF_TOKEN_ARG = "vf_token="


def VFIO_PCI_INDEX_TO_OFFSET(index: int) -> int:
    return index << VFIO_PCI_OFFSET_SHIFT


class VfioPciVfToken:
    """struct vfio_pci_vf_token."""

    def __init__(self, value: bytes):
        self.uuid = value
        self.users = 0


class VfioPciIoeventfd:
    """struct vfio_pci_ioeventfd."""

    def __init__(self, bar: int, pos: int, data: int, count: int):
        self.bar = bar
        self.pos = pos
        self.data = data
        self.count = count
        self.virqfd: Virqfd | None = None


class VfioPciCoreDevice(VfioDevice):
    """struct vfio_pci_core_device with vfio_pci_ops (drivers/vfio/pci/vfio_pci.c:130-147)."""

    name = "vfio-pci"

    def __init__(self, k: ModelKernel, pdev: PciDev):
        super().__init__(k, pdev)
        self.vf_token: VfioPciVfToken | None = None
        self.sriov_pf_core_dev: VfioPciCoreDevice | None = None
        self.sriov_active = False
        # The state vfio_pci_core_enable() / _disable() set up and tear down.
        self.reset_works = False
        self.irq_type = uv.VFIO_PCI_NUM_IRQS
        self.ctx: dict[int, pci_intrs.IrqCtx] = {}
        self.virq_disabled = False
        self.err_trigger: EventFd | None = None
        self.req_trigger: EventFd | None = None
        self.ioeventfds: list[VfioPciIoeventfd] = []
        self.pm_runtime_engaged = False
        self.pm_wake_eventfd: EventFd | None = None
        self.intx_pin = 0          # vconfig[PCI_INTERRUPT_PIN]
        self.msix_bar = 0xFF
        self.msix_offset = 0
        self.msix_size = 0
        self.has_dyn_msix = False
        self.bar_mmap_supported = [False] * 6
        # The virtual config space (vfio_config_init(), pci_config.py).
        self.vconfig = bytearray()
        self.config_map = bytearray()
        self.bardirty = True
        self.extended_caps = False

    # -- vfio_device_ops ---------------------------------------------------------
    def open_device(self, k: ModelKernel) -> None:
        """vfio_pci_open_device() (vfio_pci.c:103-128)."""
        vfio_pci_core_enable(self)
        vfio_pci_core_finish_enable(self)

    def close_device(self, k: ModelKernel) -> None:
        vfio_pci_core_close_device(self)

    def ioctl(self, k: ModelKernel, df: VfioDeviceFile, cmd: int, arg: int) -> int:
        return vfio_pci_core_ioctl(k, self, cmd, arg)

    def device_feature(self, k: ModelKernel, flags: int, arg: int, argsz: int) -> int:
        return vfio_pci_core_ioctl_feature(k, self, flags, arg, argsz)

    def read(self, k: ModelKernel, length: int, pos: int) -> bytes:
        out = pci_rdwr.vfio_pci_rw(self, pos, length, None)
        assert isinstance(out, bytes)
        return out

    def write(self, k: ModelKernel, data: bytes, pos: int) -> int:
        done = pci_rdwr.vfio_pci_rw(self, pos, len(data), data)
        assert isinstance(done, int)
        return done

    def mmap(self, k: ModelKernel, length: int, pgoff: int, shared: bool) -> None:
        vfio_pci_core_mmap(self, length, pgoff, shared)

    def match(self, k: ModelKernel, buf: str) -> int:
        return vfio_pci_core_match(self, buf)

    has_token_check = True

    def match_token_uuid(self, k: ModelKernel, uuid: bytes | None) -> None:
        """vfio_pci_core_match_token_uuid() (vfio_pci_core.c:1920-2005@7.2): the checks of
        vfio_pci_validate_vf_token(), with the token BIND_IOMMUFD passed."""
        vfio_pci_validate_vf_token(self, uuid is not None, uuid or b"")

    def bind_iommufd(self, k: ModelKernel, ictx: IommufdCtx) -> int:
        return vfio_iommufd.vfio_iommufd_physical_bind(k, self, ictx)

    def unbind_iommufd(self, k: ModelKernel) -> None:
        vfio_iommufd.vfio_iommufd_physical_unbind(k, self)

    def attach_ioas(self, k: ModelKernel, pt_id: int) -> int:
        return vfio_iommufd.vfio_iommufd_physical_attach_ioas(k, self, pt_id)

    def detach_ioas(self, k: ModelKernel) -> None:
        vfio_iommufd.vfio_iommufd_physical_detach_ioas(k, self)

    def pm_runtime_get(self, k: ModelKernel) -> None:
        """vfio_device_pm_runtime_get() resuming a device that went to runtime
        suspend after LOW_POWER_ENTRY dropped its usage count:
        vfio_pci_core_runtime_resume() (:469-488) signals the wakeup eventfd and
        leaves low power.  (The kernel suspends asynchronously after the entry
        ioctl returns; the model takes it as done by the next ioctl.  A PF with
        VFs enabled keeps a usage count and never suspends.)"""
        if self.pm_runtime_engaged and not self.sriov_active and self.pm_wake_eventfd is not None:
            self.pm_wake_eventfd.signal()
            self.pm_runtime_engaged = False
            self.pm_wake_eventfd = None


# -- open / close (:503-765) ---------------------------------------------------------------

def vfio_pci_core_enable(vdev: VfioPciCoreDevice) -> None:
    """:503-591: reset the function (reset_works says whether a method worked),
    build the virtual config space, read the MSI-X location."""
    fn = vdev.dev.fn
    try:
        pci_try_reset_function(vdev.dev)
        vdev.reset_works = True
    except Errno:
        vdev.reset_works = False
    pci_config.pci_enable_device(vdev.dev)
    pci_config.vfio_config_init(vdev)
    # vfio_config_init() (vfio_pci_config.c:1783-1819): a VF's pin reads 0
    vdev.intx_pin = 0 if vdev.dev.is_virtfn else fn.interrupt_pin
    if fn.msix_vectors:
        vdev.msix_bar = fn.msix_bar
        vdev.msix_offset = fn.msix_table_offset
        vdev.msix_size = fn.msix_vectors * 16
        # pci_msix_can_alloc_dyn(): x86's vector and interrupt-remapping MSI
        # domains support MSI_FLAG_PCI_MSIX_ALLOC_DYN (arch/x86/include/asm/msi.h:65-66)
        vdev.has_dyn_msix = True
    else:
        vdev.msix_bar = 0xFF
        vdev.has_dyn_msix = False


def vfio_pci_probe_mmaps(vdev: VfioPciCoreDevice) -> None:
    """:1729-1790: memory BARs are mmappable (a sub-page BAR gets the rest of its
    page reserved); I/O BARs are not."""
    fn = vdev.dev.fn
    vdev.bar_mmap_supported = [
        bool(vdev.dev.resource_len(i)) and i not in fn.io_bars for i in range(6)
    ]


def vfio_pci_core_mmap(vdev: VfioPciCoreDevice, length: int, pgoff: int, shared: bool) -> None:
    """:1755-1826: a BAR that is mmappable, within its page-aligned length, MAP_SHARED."""
    index = pgoff >> (VFIO_PCI_OFFSET_SHIFT - 12)
    if index >= uv.VFIO_PCI_NUM_REGIONS:
        raise Errno(errno.EINVAL, cite(CORE_C, 1767))
    if not shared:
        raise Errno(errno.EINVAL, cite(CORE_C, 1771))
    if index >= uv.VFIO_PCI_ROM_REGION_INDEX:
        raise Errno(errno.EINVAL, cite(CORE_C, 1782))
    if not vdev.bar_mmap_supported[index]:
        raise Errno(errno.EINVAL, cite(CORE_C, 1784))
    phys_len = (vdev.dev.resource_len(index) + 0xFFF) & ~0xFFF
    req_len = (length + 0xFFF) & ~0xFFF
    req_start = (pgoff & ((1 << (VFIO_PCI_OFFSET_SHIFT - 12)) - 1)) << 12
    if req_start + req_len > phys_len:
        raise Errno(errno.EINVAL, cite(CORE_C, 1793))


def vfio_pci_core_finish_enable(vdev: VfioPciCoreDevice) -> None:
    """:752-764: an open VF counts as a user of its PF's token."""
    vfio_pci_probe_mmaps(vdev)
    pf = vdev.sriov_pf_core_dev
    if pf is not None and pf.vf_token is not None:
        pf.vf_token.users += 1


def vfio_pci_core_disable(vdev: VfioPciCoreDevice) -> None:
    """:594-726: interrupts, ioeventfds and low power off."""
    vdev.pm_runtime_engaged = False
    vdev.pm_wake_eventfd = None
    pci_config.vfio_pci_set_power_state(vdev, pci_config.PCI_D0)  # :626
    if pci_intrs.is_intx(vdev):
        pci_intrs.vfio_intx_disable(vdev)  # :631-633, SET_IRQS DATA_NONE of the irq type
    vdev.ctx.clear()
    vdev.irq_type = uv.VFIO_PCI_NUM_IRQS
    for ioeventfd in vdev.ioeventfds:
        vfio_virqfd_disable(ioeventfd, "virqfd")  # :636-642
    vdev.ioeventfds.clear()
    vdev.virq_disabled = False


def vfio_pci_core_close_device(vdev: VfioPciCoreDevice) -> None:
    """:729-749."""
    pf = vdev.sriov_pf_core_dev
    if pf is not None and pf.vf_token is not None:
        pf.vf_token.users -= 1
    vfio_pci_core_disable(vdev)
    vdev.err_trigger = None
    vdev.req_trigger = None


# -- ioctls ----------------------------------------------------------------------------------

def vfio_pci_get_irq_count(vdev: VfioPciCoreDevice, irq_type: int) -> int:
    """:767-800."""
    fn = vdev.dev.fn
    if irq_type == uv.VFIO_PCI_INTX_IRQ_INDEX:
        return 1 if vdev.intx_pin else 0
    if irq_type == uv.VFIO_PCI_MSI_IRQ_INDEX:
        return fn.msi_vectors
    if irq_type == uv.VFIO_PCI_MSIX_IRQ_INDEX:
        return fn.msix_vectors
    if irq_type == uv.VFIO_PCI_ERR_IRQ_INDEX:
        return 1 if fn.is_pcie else 0
    if irq_type == uv.VFIO_PCI_REQ_IRQ_INDEX:
        return 1
    return 0


def vfio_pci_ioctl_get_info(k: ModelKernel, vdev: VfioPciCoreDevice, arg: int) -> int:
    """:983-1038: no zPCI or AtomicOps capability on these functions, so no
    chain: argsz is never raised; bytes 16..23 are written only when argsz
    covers them."""
    minsz = offsetofend(uv.vfio_device_info, "num_irqs")
    info = get_struct(k, uv.vfio_device_info, arg, minsz, cite(CORE_C, 992))
    if info.argsz < minsz:
        raise Errno(errno.EINVAL, cite(CORE_C, 995))
    minsz = min(info.argsz, ctypes.sizeof(info))
    info.flags = uv.VFIO_DEVICE_FLAGS_PCI
    if vdev.reset_works:
        info.flags |= uv.VFIO_DEVICE_FLAGS_RESET
    info.num_regions = uv.VFIO_PCI_NUM_REGIONS
    info.num_irqs = uv.VFIO_PCI_NUM_IRQS
    put_struct(k, info, arg, minsz, cite(CORE_C, 1037))
    return 0


def vfio_pci_ioctl_get_region_info(k: ModelKernel, vdev: VfioPciCoreDevice, arg: int) -> int:
    """:1040-1179."""
    minsz = offsetofend(uv.vfio_region_info, "offset")
    info = get_struct(k, uv.vfio_region_info, arg, minsz, cite(CORE_C, 1050))
    if info.argsz < minsz:
        raise Errno(errno.EINVAL, cite(CORE_C, 1053))
    pdev = vdev.dev
    caps = VfioInfoCap()
    index = info.index
    rw = uv.VFIO_REGION_INFO_FLAG_READ | uv.VFIO_REGION_INFO_FLAG_WRITE
    if index == uv.VFIO_PCI_CONFIG_REGION_INDEX:
        info.offset = VFIO_PCI_INDEX_TO_OFFSET(index)
        info.size = pdev.cfg_size
        info.flags = rw
    elif uv.VFIO_PCI_BAR0_REGION_INDEX <= index <= uv.VFIO_PCI_BAR5_REGION_INDEX:
        info.offset = VFIO_PCI_INDEX_TO_OFFSET(index)
        info.size = pdev.resource_len(index)
        if not info.size:
            info.flags = 0
        else:
            info.flags = rw
            if vdev.bar_mmap_supported[index]:
                info.flags |= uv.VFIO_REGION_INFO_FLAG_MMAP
                if index == vdev.msix_bar:
                    hdr = uv.vfio_info_cap_header(id=uv.VFIO_REGION_INFO_CAP_MSIX_MAPPABLE, version=1)
                    caps.add_capability(hdr)  # msix_mmappable_cap()
    elif index == uv.VFIO_PCI_ROM_REGION_INDEX:
        info.offset = VFIO_PCI_INDEX_TO_OFFSET(index)
        info.flags = 0
        info.size = pdev.resource_len(index)
        if info.size:
            info.flags = uv.VFIO_REGION_INFO_FLAG_READ  # pci_map_rom() finds the image
    elif index == uv.VFIO_PCI_VGA_REGION_INDEX:
        # vdev->has_vga: CONFIG_VFIO_PCI_VGA is off (vfio_vga_disabled())
        raise Errno(errno.EINVAL, cite(CORE_C, 1119))
    else:
        # no device-specific regions: vdev->num_regions is 0 for vfio-pci here
        raise Errno(errno.EINVAL, cite(CORE_C, 1134))
    caps.copy_to_info(k, info, arg, uv.VFIO_REGION_INFO_FLAG_CAPS, f"{CORE_C}:1170")
    put_struct(k, info, arg, minsz, cite(CORE_C, 1178))
    return 0


def vfio_pci_ioctl_get_irq_info(k: ModelKernel, vdev: VfioPciCoreDevice, arg: int) -> int:
    """:1181-1216."""
    minsz = offsetofend(uv.vfio_irq_info, "count")
    info = get_struct(k, uv.vfio_irq_info, arg, minsz, cite(CORE_C, 1188))
    if info.argsz < minsz or info.index >= uv.VFIO_PCI_NUM_IRQS:
        raise Errno(errno.EINVAL, cite(CORE_C, 1191))
    if info.index == uv.VFIO_PCI_ERR_IRQ_INDEX and not vdev.dev.fn.is_pcie:
        raise Errno(errno.EINVAL, cite(CORE_C, 1202))
    info.flags = uv.VFIO_IRQ_INFO_EVENTFD
    info.count = vfio_pci_get_irq_count(vdev, info.index)
    if info.index == uv.VFIO_PCI_INTX_IRQ_INDEX:
        info.flags |= uv.VFIO_IRQ_INFO_MASKABLE | uv.VFIO_IRQ_INFO_AUTOMASKED
    elif info.index != uv.VFIO_PCI_MSIX_IRQ_INDEX or not vdev.has_dyn_msix:
        info.flags |= uv.VFIO_IRQ_INFO_NORESIZE
    put_struct(k, info, arg, minsz, cite(CORE_C, 1215))
    return 0


def vfio_pci_ioctl_set_irqs(k: ModelKernel, vdev: VfioPciCoreDevice, arg: int) -> int:
    """:1218-1252."""
    minsz = offsetofend(uv.vfio_irq_set, "count")
    hdr = get_struct(k, uv.vfio_irq_set, arg, minsz, cite(CORE_C, 1228))
    max_ = vfio_pci_get_irq_count(vdev, hdr.index)
    data_size = vfio_set_irqs_validate_and_prepare(hdr, max_, uv.VFIO_PCI_NUM_IRQS)
    data = b""
    if data_size:
        data = copy_from_user(k, arg + minsz, data_size, cite(CORE_C, 1238))  # memdup_user()
    return pci_intrs.vfio_pci_set_irqs_ioctl(k, vdev, hdr.flags, hdr.index, hdr.start, hdr.count, data)


def vfio_pci_ioctl_reset(vdev: VfioPciCoreDevice) -> int:
    """:1254-1279."""
    if not vdev.reset_works:
        raise Errno(errno.EINVAL, cite(CORE_C, 1260))
    pci_config.vfio_pci_set_power_state(vdev, pci_config.PCI_D0)  # :1273
    pci_try_reset_function(vdev.dev)  # ENOTTY once the user turned every method off
    return 0


def _hot_reset_devs(k: ModelKernel, vdev: VfioPciCoreDevice) -> list[PciDev]:
    """vfio_pci_for_each_slot_or_bus(): the functions a slot/bus reset hits."""
    devices = pci_core(k).devices
    return [devices[b] for b in vdev.dev.fn.hot_reset_functions if b in devices]


def vfio_pci_ioctl_get_pci_hot_reset_info(k: ModelKernel, vdev: VfioPciCoreDevice, arg: int) -> int:
    """:1281-1355: ENOSPC with the needed count in hdr.count when the array does
    not fit."""
    minsz = offsetofend(uv.vfio_pci_hot_reset_info, "count")
    hdr = get_struct(k, uv.vfio_pci_hot_reset_info, arg, minsz, cite(CORE_C, 1294))
    if hdr.argsz < minsz:
        raise Errno(errno.EINVAL, cite(CORE_C, 1297))
    hdr.flags = 0
    if not pci_probe_reset_slot_or_bus(vdev.dev):
        raise Errno(errno.ENODEV, cite(CORE_C, 1305))
    devs = _hot_reset_devs(k, vdev)
    count = len(devs)
    esize = ctypes.sizeof(uv.vfio_pci_dependent_device)
    if count > (hdr.argsz - ctypes.sizeof(hdr)) // esize:
        hdr.count = count
        put_struct(k, hdr, arg, minsz, cite(CORE_C, 1351))
        raise Errno(errno.ENOSPC, cite(CORE_C, 1317))
    flags = 0
    if vdev.cdev_opened:
        flags = uv.VFIO_PCI_HOT_RESET_FLAG_DEV_ID | uv.VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED
    out = bytearray()
    ictx = vfio_iommufd.vfio_iommufd_device_ictx(vdev)
    assert vdev.dev_set is not None
    for pdev in devs:
        info = uv.vfio_pci_dependent_device(segment=pdev.domain, bus=pdev.bus_number, devfn=pdev.devfn)
        if flags & uv.VFIO_PCI_HOT_RESET_FLAG_DEV_ID:
            other = vfio_find_device_in_devset(vdev.dev_set, pdev)
            if other is None or ictx is None:
                info.devid = uv.VFIO_PCI_DEVID_NOT_OWNED & 0xFFFFFFFF
            else:
                devid = vfio_iommufd.vfio_iommufd_get_dev_id(other, ictx)
                if devid > 0:
                    info.devid = devid
                elif devid == -errno.ENOENT:
                    info.devid = uv.VFIO_PCI_DEVID_OWNED
                else:
                    info.devid = uv.VFIO_PCI_DEVID_NOT_OWNED & 0xFFFFFFFF
            if info.devid == uv.VFIO_PCI_DEVID_NOT_OWNED & 0xFFFFFFFF:
                flags &= ~uv.VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED
        else:
            if pdev.group is None:
                raise Errno(errno.EPERM, cite(CORE_C, 860))
            info.group_id = pdev.group.id
        out += bytes(info)
    copy_to_user(k, arg + ctypes.sizeof(hdr), bytes(out), cite(CORE_C, 1342))
    hdr.count = count
    hdr.flags = flags
    put_struct(k, hdr, arg, minsz, cite(CORE_C, 1351))
    return 0


def vfio_pci_dev_set_hot_reset(k: ModelKernel, vdev: VfioPciCoreDevice, groups: list[File] | None,
                               ictx: IommufdCtx | None) -> int:
    """:2439-2549: every function the reset hits must be in the dev_set (bound to
    vfio-pci), and every dev_set device owned by the caller: in one of the given
    groups, or (cdev) bound to the caller's iommufd or in a group it owns."""
    from .group import vfio_file_has_dev

    dev_set = vdev.dev_set
    assert dev_set is not None
    first = dev_set.device_list[0]
    assert isinstance(first, VfioPciCoreDevice)
    if not pci_probe_reset_slot_or_bus(first.dev) or any(
            vfio_find_device_in_devset(dev_set, p) is None for p in _hot_reset_devs(k, first)):
        raise Errno(errno.EINVAL, cite(CORE_C, 2451))
    for cur in dev_set.device_list:
        if ictx is not None:
            devid = vfio_iommufd.vfio_iommufd_get_dev_id(cur, ictx)
            owned = devid > 0 or devid == -errno.ENOENT
        else:
            owned = any(vfio_file_has_dev(f, cur) for f in groups or [])
        if not owned:
            raise Errno(errno.EINVAL, cite(CORE_C, 2497))
    for cur in dev_set.device_list:
        if isinstance(cur, VfioPciCoreDevice):
            pci_config.vfio_pci_set_power_state(cur, pci_config.PCI_D0)  # :2530-2531
    return 0


def vfio_pci_ioctl_pci_hot_reset(k: ModelKernel, vdev: VfioPciCoreDevice, arg: int) -> int:
    """:1357-1464."""
    from .group import vfio_group_from_file

    minsz = offsetofend(uv.vfio_pci_hot_reset, "count")
    hdr = get_struct(k, uv.vfio_pci_hot_reset, arg, minsz, cite(CORE_C, 1444))
    if hdr.argsz < minsz or hdr.flags:
        raise Errno(errno.EINVAL, cite(CORE_C, 1447))
    if bool(hdr.count) == vdev.cdev_opened:
        raise Errno(errno.EINVAL, cite(CORE_C, 1451))
    if not pci_probe_reset_slot_or_bus(vdev.dev):
        raise Errno(errno.ENODEV, cite(CORE_C, 1457))
    if not hdr.count:
        return vfio_pci_dev_set_hot_reset(k, vdev, None, vfio_iommufd.vfio_iommufd_device_ictx(vdev))
    # vfio_pci_ioctl_pci_hot_reset_groups() (:1357-1434)
    if hdr.count > len(_hot_reset_devs(k, vdev)):
        raise Errno(errno.EINVAL, cite(CORE_C, 1378))
    raw = copy_from_user(k, arg + ctypes.sizeof(hdr), 4 * hdr.count, cite(CORE_C, 1391))
    files: list[File] = []
    for i in range(hdr.count):
        fd = int.from_bytes(raw[4 * i : 4 * i + 4], "little", signed=True)
        f = k.files.get(fd)
        if f is None:
            raise Errno(errno.EBADF, cite(CORE_C, 1403))
        if vfio_group_from_file(f) is None:
            raise Errno(errno.EINVAL, cite(CORE_C, 1410))
        files.append(f)
    return vfio_pci_dev_set_hot_reset(k, vdev, files, None)


def vfio_pci_ioeventfd(k: ModelKernel, vdev: VfioPciCoreDevice, offset: int, data: int, count: int,
                       fd: int) -> int:
    """vfio_pci_rdwr.c:435-522.  ``offset`` is a loff_t: the BAR index is its
    arithmetic shift, so an offset with bit 63 set gives a negative index that
    passes the `bar > VFIO_PCI_BAR5_REGION_INDEX` test; the kernel then reads
    pdev->resource[] out of bounds.  The model refuses it there with EINVAL."""
    if offset >= 1 << 63:
        offset -= 1 << 64
    pos = offset & VFIO_PCI_OFFSET_MASK
    bar = offset >> VFIO_PCI_OFFSET_SHIFT
    if bar > uv.VFIO_PCI_BAR5_REGION_INDEX or bar < 0:
        raise Errno(errno.EINVAL, cite(RDWR_C, 445))
    if pos + count > vdev.dev.resource_len(bar):
        raise Errno(errno.EINVAL, cite(RDWR_C, 448))
    if bar == vdev.msix_bar and not (pos + count <= vdev.msix_offset or pos >= vdev.msix_offset + vdev.msix_size):
        raise Errno(errno.EINVAL, cite(RDWR_C, 454))
    for ioeventfd in vdev.ioeventfds:
        if (ioeventfd.pos, ioeventfd.bar, ioeventfd.data, ioeventfd.count) == (pos, bar, data, count):
            if fd == -1:
                vfio_virqfd_disable(ioeventfd, "virqfd")
                vdev.ioeventfds.remove(ioeventfd)
                return 0
            raise Errno(errno.EEXIST, cite(RDWR_C, 477))
    if fd < 0:
        raise Errno(errno.ENODEV, cite(RDWR_C, 484))
    if len(vdev.ioeventfds) >= VFIO_PCI_IOEVENTFD_MAX:
        raise Errno(errno.ENOSPC, cite(RDWR_C, 489))
    ioeventfd = VfioPciIoeventfd(bar, pos, data, count)
    vfio_virqfd_enable(k, fd, lambda: pci_rdwr.vfio_pci_ioeventfd_handler(vdev, ioeventfd), None,
                       ioeventfd, "virqfd")
    vdev.ioeventfds.insert(0, ioeventfd)
    return 0


def vfio_pci_ioctl_ioeventfd(k: ModelKernel, vdev: VfioPciCoreDevice, arg: int) -> int:
    """:1466-1489."""
    minsz = offsetofend(uv.vfio_device_ioeventfd, "fd")
    ioeventfd = get_struct(k, uv.vfio_device_ioeventfd, arg, minsz, cite(CORE_C, 1474))
    if ioeventfd.argsz < minsz:
        raise Errno(errno.EINVAL, cite(CORE_C, 1477))
    if ioeventfd.flags & ~uv.VFIO_DEVICE_IOEVENTFD_SIZE_MASK:
        raise Errno(errno.EINVAL, cite(CORE_C, 1480))
    count = ioeventfd.flags & uv.VFIO_DEVICE_IOEVENTFD_SIZE_MASK
    if bin(count).count("1") != 1 or ioeventfd.fd < -1:
        raise Errno(errno.EINVAL, cite(CORE_C, 1485))
    return vfio_pci_ioeventfd(k, vdev, ioeventfd.offset, ioeventfd.data, count, ioeventfd.fd)


def vfio_pci_core_ioctl(k: ModelKernel, vdev: VfioPciCoreDevice, cmd: int, arg: int) -> int:
    """:1491-1518."""
    if cmd == uv.VFIO_DEVICE_GET_INFO:
        return vfio_pci_ioctl_get_info(k, vdev, arg)
    if cmd == uv.VFIO_DEVICE_GET_IRQ_INFO:
        return vfio_pci_ioctl_get_irq_info(k, vdev, arg)
    if cmd == uv.VFIO_DEVICE_GET_PCI_HOT_RESET_INFO:
        return vfio_pci_ioctl_get_pci_hot_reset_info(k, vdev, arg)
    if cmd == uv.VFIO_DEVICE_GET_REGION_INFO:
        return vfio_pci_ioctl_get_region_info(k, vdev, arg)
    if cmd == uv.VFIO_DEVICE_IOEVENTFD:
        return vfio_pci_ioctl_ioeventfd(k, vdev, arg)
    if cmd == uv.VFIO_DEVICE_PCI_HOT_RESET:
        return vfio_pci_ioctl_pci_hot_reset(k, vdev, arg)
    if cmd == uv.VFIO_DEVICE_RESET:
        return vfio_pci_ioctl_reset(vdev)
    if cmd == uv.VFIO_DEVICE_SET_IRQS:
        return vfio_pci_ioctl_set_irqs(k, vdev, arg)
    raise Errno(errno.ENOTTY, cite(CORE_C, 1516))


# -- features ----------------------------------------------------------------------------------

def vfio_pci_runtime_pm_entry(vdev: VfioPciCoreDevice, efd: EventFd | None) -> None:
    """:319-338."""
    if vdev.pm_runtime_engaged:
        raise Errno(errno.EINVAL, cite(CORE_C, 329))
    vdev.pm_runtime_engaged = True
    vdev.pm_wake_eventfd = efd


def vfio_pci_core_feature_token(k: ModelKernel, vdev: VfioPciCoreDevice, flags: int, arg: int,
                                argsz: int) -> int:
    """:1521-1547: SET only (a GET could leak the previous user's token); 6.12
    replaces the token whatever the VFs' state (the uAPI comment's conditions are
    not checked)."""
    if vdev.vf_token is None:
        raise Errno(errno.ENOTTY, cite(CORE_C, 1530))
    if not vfio_check_feature(flags, argsz, uv.VFIO_DEVICE_FEATURE_SET, 16):
        return 0
    vdev.vf_token.uuid = copy_from_user(k, arg, 16, cite(CORE_C, 1541))
    return 0


def vfio_pci_core_ioctl_feature(k: ModelKernel, vdev: VfioPciCoreDevice, flags: int, arg: int,
                                argsz: int) -> int:
    """:1549-1565 with the low-power handlers (:340-437)."""
    feature = flags & uv.VFIO_DEVICE_FEATURE_MASK
    set_ = uv.VFIO_DEVICE_FEATURE_SET
    if feature == uv.VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY:
        if vfio_check_feature(flags, argsz, set_, 0):
            vfio_pci_runtime_pm_entry(vdev, None)
        return 0
    if feature == uv.VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP:
        entry_size = ctypes.sizeof(uv.vfio_device_low_power_entry_with_wakeup)
        if not vfio_check_feature(flags, argsz, set_, entry_size):
            return 0
        entry = get_struct(k, uv.vfio_device_low_power_entry_with_wakeup, arg, entry_size, cite(CORE_C, 377))
        if entry.wakeup_eventfd < 0:
            raise Errno(errno.EINVAL, cite(CORE_C, 380))
        efd = pci_intrs.eventfd_ctx_fdget(k, entry.wakeup_eventfd)
        vfio_pci_runtime_pm_entry(vdev, efd)
        return 0
    if feature == uv.VFIO_DEVICE_FEATURE_LOW_POWER_EXIT:
        if vfio_check_feature(flags, argsz, set_, 0):
            vdev.pm_runtime_engaged = False  # vfio_pci_runtime_pm_exit()
            vdev.pm_wake_eventfd = None
        return 0
    if feature == uv.VFIO_DEVICE_FEATURE_PCI_VF_TOKEN:
        return vfio_pci_core_feature_token(k, vdev, flags, arg, argsz)
    raise Errno(errno.ENOTTY, cite(CORE_C, 1563))


# -- VF tokens and the GET_DEVICE_FD name (:1868-2005) -----------------------------------------

def uuid_parse(s: str) -> bytes:
    """lib/uuid.c: uuid_is_valid() then the 16 bytes in string order."""
    if len(s) < UUID_STRING_LEN:
        raise Errno(errno.EINVAL, cite("lib/uuid.c", 111))
    for i, c in enumerate(s[:UUID_STRING_LEN]):
        if i in (8, 13, 18, 23):
            if c != "-":
                raise Errno(errno.EINVAL, cite("lib/uuid.c", 111))
        elif c not in "0123456789abcdefABCDEF":
            raise Errno(errno.EINVAL, cite("lib/uuid.c", 111))
    return bytes.fromhex(s[:UUID_STRING_LEN].replace("-", ""))


def vfio_pci_validate_vf_token(vdev: VfioPciCoreDevice, vf_token: bool, value: bytes) -> None:
    """:1868-1952."""
    if vdev.dev.is_virtfn:
        pf = vdev.sriov_pf_core_dev
        if pf is None:
            if not vf_token:
                return
            raise Errno(errno.EINVAL, cite(CORE_C, 1906))  # PF not bound to vfio-pci
        if not vf_token:
            raise Errno(errno.EACCES, cite(CORE_C, 1912))
        assert pf.vf_token is not None
        if value != pf.vf_token.uuid:
            raise Errno(errno.EACCES, cite(CORE_C, 1922))
    elif vdev.vf_token is not None:
        if vdev.vf_token.users:
            if not vf_token:
                raise Errno(errno.EACCES, cite(CORE_C, 1931))
            if value != vdev.vf_token.uuid:
                raise Errno(errno.EACCES, cite(CORE_C, 1938))
        elif vf_token:
            vdev.vf_token.uuid = value
    elif vf_token:
        raise Errno(errno.EINVAL, cite(CORE_C, 1948))  # not a PF or VF


def vfio_pci_core_match(vdev: VfioPciCoreDevice, buf: str) -> int:
    """:1956-2005: "<pci name>[ vf_token=<uuid>]", 0 when the name is not this
    device's."""
    name = vdev.bdf
    if not buf.startswith(name):
        return 0
    vf_token = False
    value = b""
    if len(buf) > len(name):
        rest = buf[len(name):]
        if rest[0] != " ":
            return 0
        i = 0
        while i < len(rest):
            if rest[i] == " ":
                i += 1
                continue
            if not vf_token and rest.startswith(VF_TOKEN_ARG, i):
                i += len(VF_TOKEN_ARG)
                if len(rest) - i < UUID_STRING_LEN:
                    raise Errno(errno.EINVAL, cite(CORE_C, 1984))
                value = uuid_parse(rest[i:])
                vf_token = True
                i += UUID_STRING_LEN
            else:
                raise Errno(errno.EINVAL, cite(CORE_C, 1994))  # unknown or repeated option
    vfio_pci_validate_vf_token(vdev, vf_token, value)
    return 1


# -- SR-IOV and registration (:2007-2353) ---------------------------------------------------

def vfio_pci_bus_notifier(vdev: VfioPciCoreDevice) -> Notifier:
    """:2007-2034: a VF of this PF appearing on the bus gets driver_override set
    to the PF's driver, so it binds to vfio-pci rather than its native driver."""

    def notifier(k: ModelKernel, action: int, pdev: PciDev) -> None:
        if action == BUS_NOTIFY_ADD_DEVICE and pdev.is_virtfn and pdev.physfn is vdev.dev:
            pdev.fn.driver_override = vdev.name

    return notifier


def vf_token_initial(k: ModelKernel, pdev: PciDev) -> bytes:
    """uuid_gen() in the kernel (:2071): random.  The model makes a value fixed
    per kernel instance (the PF's name and how many tokens this kernel made) so a
    run is reproducible; no case can know either."""
    st = vfio_state(k)
    st.tokens_made += 1
    return uuid.uuid5(uuid.NAMESPACE_OID, f"vfio-pci vf_token {pdev.bdf} {st.tokens_made}").bytes


def vfio_pci_vf_init(k: ModelKernel, vdev: VfioPciCoreDevice) -> None:
    """:2036-2080."""
    pdev = vdev.dev
    if pdev.is_virtfn:
        vdev.sriov_pf_core_dev = next((cur for cur in vfio_state(k).sriov_pfs if cur.dev is pdev.physfn), None)
        return
    if not pdev.is_physfn:
        return
    vdev.vf_token = VfioPciVfToken(vf_token_initial(k, pdev))
    bus_register_notifier(k, vdev, vfio_pci_bus_notifier(vdev))


def vfio_pci_vf_uninit(k: ModelKernel, vdev: VfioPciCoreDevice) -> None:
    """:2082-2091."""
    if vdev.vf_token is None:
        return
    bus_unregister_notifier(k, vdev)
    vdev.vf_token = None


def vfio_pci_core_register_device(k: ModelKernel, vdev: VfioPciCoreDevice) -> None:
    """:2158-2250: refuses a PF that already has VFs (it could not track their
    users).  At boot a PF the topology shows on vfio-pci with VFs is taken as
    having enabled them itself."""
    pdev = vdev.dev
    booting = pci_core(k).booting
    if pdev.num_vfs and not booting:
        raise Errno(errno.EBUSY, cite(CORE_C, 2194))
    if pdev.is_virtfn or not pdev.fn.hot_reset_functions:
        vfio_assign_device_set(k, vdev, vdev)
    else:
        vfio_assign_device_set(k, vdev, ("reset", tuple(sorted(pdev.fn.hot_reset_functions))))
    vfio_pci_vf_init(k, vdev)
    cdev = pdev.fn.cdev if booting else None
    want = int(cdev[4:]) if cdev and cdev.startswith("vfio") and cdev[4:].isdigit() else None
    vfio_init_device(k, vdev, want)
    try:
        vfio_register_group_dev(k, vdev)
    except Errno:
        vfio_pci_vf_uninit(k, vdev)
        vfio_state(k).device_ida.discard(vdev.index)
        vfio_release_device_set(k, vdev)
        raise
    if booting and pdev.num_vfs:
        vfio_state(k).sriov_pfs.append(vdev)
        vdev.sriov_active = True


def vfio_pci_core_remove_blocks(k: ModelKernel, vdev: VfioPciCoreDevice) -> bool:
    """Whether unbinding would wait for a user to close a device file: this
    device's, or one of its VFs' (vfio_pci_core_sriov_configure(vdev, 0) removes them)."""
    if vfio_device_busy(vdev):
        return True
    return any(vfio_device_busy(d) for d in _vf_vfio_devices(k, vdev))


def _vf_vfio_devices(k: ModelKernel, vdev: VfioPciCoreDevice) -> list[VfioDevice]:
    devices = vfio_state(k).devices
    return [d for vf in vdev.dev.virtfns.values() if (d := devices.get(vf.bdf)) is not None]


def vfio_pci_core_unregister_device(k: ModelKernel, vdev: VfioPciCoreDevice) -> None:
    """:2253-2266.  Where the kernel would block until device files are closed
    (vfio_unregister_group_dev() waiting on its registration), the model refuses
    with EBUSY before changing anything."""
    if vfio_pci_core_remove_blocks(k, vdev):
        raise Errno(errno.EBUSY, cite("drivers/vfio/vfio_main.c", 411))
    vfio_pci_core_sriov_configure(k, vdev, 0)
    vfio_unregister_group_dev(k, vdev)
    vfio_pci_vf_uninit(k, vdev)


def vfio_pci_core_sriov_configure(k: ModelKernel, vdev: VfioPciCoreDevice, nr_virtfn: int) -> int:
    """:2285-2352."""
    pfs = vfio_state(k).sriov_pfs
    pdev = vdev.dev
    if nr_virtfn:
        if vdev in pfs:
            raise Errno(errno.EINVAL, cite(CORE_C, 2302))
        pfs.append(vdev)
        pci_config.vfio_pci_set_power_state(vdev, pci_config.PCI_D0)  # :2323
        vdev.sriov_active = True
        try:
            pci_enable_sriov(k, pdev, nr_virtfn)
        except Errno:
            vdev.sriov_active = False
            pfs.remove(vdev)
            raise
        return nr_virtfn
    if pdev.num_vfs:
        if any(vfio_device_busy(d) for d in _vf_vfio_devices(k, vdev)):
            raise Errno(errno.EBUSY, cite("drivers/vfio/vfio_main.c", 411))
        pci_disable_sriov(k, pdev)
    vdev.sriov_active = False
    if vdev in pfs:
        pfs.remove(vdev)
    return 0

