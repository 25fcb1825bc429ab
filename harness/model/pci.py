"""The PCI core and the driver core's binding, as VFIO and the sysfs files see them.

Mirrors drivers/pci/{pci-driver.c,pci-sysfs.c,iov.c,pci.c,bus.c},
drivers/base/{bus.c,dd.c} and drivers/iommu/iommu.c's group membership:

- one ``PciDev`` (struct pci_dev) per function of ``k.topology``; the topology's
  ``PciFunction`` objects are kept current (driver, driver_override, numvfs, VFs, cdev),
  so the backend's ``topology()`` shows the present state;
- one ``IommuGroup`` per iommu_group number;
- drivers (struct pci_driver) registered on the bus: the topology's native kernel
  drivers, pci-stub, pcieport here, vfio-pci by ``harness.model.vfio``.  Binding a
  driver without ``driver_managed_dma`` counts the function's group as a user of the
  default domain (pci_dma_configure(), pci-driver.c:1686-1689);
- the sysfs files the cases write: driver_override, bind/unbind, drivers_probe,
  sriov_numvfs/totalvfs/offset/stride/vf_device, reset_method, and the iommu_group
  and driver links (read as the group number and the driver name).
"""

from __future__ import annotations

import contextlib
import errno
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..backends.base import DRIVER_MANAGED_DMA, PciFunction
from .errors import Errno
from .iommu.iommu import (
    IommuGroup,
    iommu_group_add_device,
    iommu_group_alloc,
    iommu_group_get_or_alloc,
    iommu_group_remove_device,
)

if TYPE_CHECKING:
    from .kernel import ModelKernel

PAGE_SIZE = 4096
# include/uapi/linux/pci_regs.h
PCI_CFG_SPACE_SIZE = 256
PCI_CFG_SPACE_EXP_SIZE = 4096

# include/linux/device/bus.h:269-278 (enum bus_notifier_event)
BUS_NOTIFY_ADD_DEVICE = 0
BUS_NOTIFY_DEL_DEVICE = 1
BUS_NOTIFY_REMOVED_DEVICE = 2
BUS_NOTIFY_BIND_DRIVER = 3
BUS_NOTIFY_BOUND_DRIVER = 4
BUS_NOTIFY_UNBIND_DRIVER = 5
BUS_NOTIFY_UNBOUND_DRIVER = 6
BUS_NOTIFY_DRIVER_NOT_BOUND = 7

# drivers/pci/pci.c:5141-5150: pci_reset_fn_methods[] names, in priority order
RESET_METHODS = ("device_specific", "acpi", "flr", "af_flr", "pm", "bus", "cxl_bus")
# include/linux/pci.h: PCI_NUM_RESET_METHODS (the terminating 0 included)
PCI_NUM_RESET_METHODS = len(RESET_METHODS) + 1

_STATE = "pci"
_DEV = "/sys/bus/pci/devices"
_DRV = "/sys/bus/pci/drivers"
_BDF = r"[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]"

Notifier = Callable[["ModelKernel", int, "PciDev"], None]
SysfsStore = Callable[["ModelKernel", "re.Match[str]", str], None]


class ProbeError(Errno):
    """A driver's probe() failed: the driver core hands it back as a positive
    number so callers can tell it from a core failure (dd.c:728-733)."""


class PciDev:
    """struct pci_dev, with the driver core's struct device fields it needs."""

    def __init__(self, fn: PciFunction, group: IommuGroup | None, physfn: PciDev | None = None):
        self.fn = fn
        self.group = group
        self.physfn = physfn
        self.driver: PciDriver | None = None
        self.drvdata: object | None = None      # dev_get_drvdata()
        self.reset_methods: list[str] = list(fn.reset_methods)
        self.virtfns: dict[int, PciDev] = {}     # VF id -> VF
        self.match_driver = True                 # set by pci_bus_add_device() (bus.c:351)

    @property
    def bdf(self) -> str:
        """pci_name()."""
        return self.fn.bdf

    @property
    def is_physfn(self) -> bool:
        return self.fn.sriov_totalvfs > 0

    @property
    def is_virtfn(self) -> bool:
        return self.physfn is not None

    @property
    def num_vfs(self) -> int:
        """pci_num_vf(): iov->num_VFs."""
        return self.fn.sriov_numvfs

    @property
    def cfg_size(self) -> int:
        """pci_cfg_space_size(): extended config space on PCI Express."""
        return PCI_CFG_SPACE_EXP_SIZE if self.fn.is_pcie else PCI_CFG_SPACE_SIZE

    @property
    def devfn(self) -> int:
        dev, fn = self.bdf.split(":")[2].split(".")
        return (int(dev, 16) << 3) | int(fn)

    @property
    def bus_number(self) -> int:
        return int(self.bdf.split(":")[1], 16)

    @property
    def domain(self) -> int:
        return int(self.bdf.split(":")[0], 16)

    def resource_len(self, bar: int) -> int:
        """pci_resource_len() of BARs 0-5 and the ROM (6)."""
        if bar == 6:
            return self.fn.rom_size
        return self.fn.bar_sizes[bar] if 0 <= bar < len(self.fn.bar_sizes) else 0

    def reset_supported(self) -> bool:
        """pci_reset_supported(): dev->reset_methods[0] != 0."""
        return bool(self.reset_methods)

    def __repr__(self) -> str:
        return f"PciDev({self.bdf})"


class PciDriver:
    """struct pci_driver.  ``probe`` raises Errno to fail, like returning < 0."""

    name = "?"
    driver_managed_dma = False
    has_sriov_configure = False

    def match_id(self, pdev: PciDev) -> bool:
        """do_pci_match_id() over the id_table entries that are not override-only."""
        return False

    def probe(self, k: ModelKernel, pdev: PciDev) -> None:
        pass

    def remove(self, k: ModelKernel, pdev: PciDev) -> None:
        pass

    def sriov_configure(self, k: ModelKernel, pdev: PciDev, nr_virtfn: int) -> int:
        raise Errno(errno.ENOENT, "drivers/pci/iov.c:444")


class KernelDriver(PciDriver):
    """A native kernel driver (e1000, nvme, ahci, ...): it matches the functions
    whose ``native_driver`` names it, probes them successfully, and counts as a
    user of the group's default domain."""

    # Drivers with .sriov_configure = pci_sriov_configure_simple
    # (drivers/nvme/host/pci.c: nvme_driver).
    _SRIOV_SIMPLE = frozenset({"nvme"})

    def __init__(self, name: str):
        self.name = name
        self.driver_managed_dma = name in DRIVER_MANAGED_DMA
        self.has_sriov_configure = name in self._SRIOV_SIMPLE

    def match_id(self, pdev: PciDev) -> bool:
        return pdev.fn.native_driver == self.name

    def probe(self, k: ModelKernel, pdev: PciDev) -> None:
        # Bound through driver_override to a device it does not drive: the
        # model's driver rejects it as real drivers do for unknown hardware.
        if pdev.fn.native_driver != self.name:
            raise Errno(errno.ENODEV, "drivers/base/dd.c:648")

    def sriov_configure(self, k: ModelKernel, pdev: PciDev, nr_virtfn: int) -> int:
        if not self.has_sriov_configure:
            return super().sriov_configure(k, pdev, nr_virtfn)
        return pci_sriov_configure_simple(k, pdev, nr_virtfn)


class PciStubDriver(PciDriver):
    """drivers/pci/pci-stub.c: no ids unless given at load; probe always succeeds."""

    name = "pci-stub"
    driver_managed_dma = True


class PcieportDriver(PciDriver):
    """drivers/pci/pcie/portdrv.c: only PCIe ports, of which the topology has none
    (pcie_portdrv_probe() rejects the rest with -ENODEV)."""

    name = "pcieport"
    driver_managed_dma = True

    def probe(self, k: ModelKernel, pdev: PciDev) -> None:
        raise Errno(errno.ENODEV, "drivers/pci/pcie/portdrv.c:693")


class PciCore:
    """The bus: devices in bus order, the registered drivers in registration
    order, the IOMMU groups and the bus notifiers."""

    def __init__(self) -> None:
        self.devices: dict[str, PciDev] = {}
        self.drivers: dict[str, PciDriver] = {}
        self.groups: dict[int, IommuGroup] = {}
        self.notifiers: list[tuple[object, Notifier]] = []
        # The driver each function had in the topology the model booted with; a
        # driver binds these when it registers (the state the backend described).
        self.boot_driver: dict[str, str] = {}
        # True while a driver registers at boot: its probe recreates described
        # state (a PF already on vfio-pci with VFs) that a later probe would refuse.
        self.booting = False


def pci_core(k: ModelKernel) -> PciCore:
    core = k.state.get(_STATE)
    if not isinstance(core, PciCore):
        raise Errno(errno.ENODEV, "drivers/pci: the PCI core is not installed")
    return core


def pci_get_dev(k: ModelKernel, bdf: str) -> PciDev | None:
    """bus_find_device_by_name(): device_match_name() uses sysfs_streq(), so a
    trailing newline is ignored (drivers/base/core.c:5358)."""
    return pci_core(k).devices.get(sysfs_strip(bdf))


def sysfs_strip(buf: str) -> str:
    """The string sysfs_streq() compares: up to one trailing newline dropped (lib/string.c)."""
    return buf[:-1] if buf.endswith("\n") else buf


# -- bus notifiers ----------------------------------------------------------------------

def bus_register_notifier(k: ModelKernel, owner: object, fn: Notifier) -> None:
    pci_core(k).notifiers.append((owner, fn))


def bus_unregister_notifier(k: ModelKernel, owner: object) -> None:
    core = pci_core(k)
    core.notifiers = [(o, f) for o, f in core.notifiers if o is not owner]


def bus_notify(k: ModelKernel, pdev: PciDev, action: int) -> None:
    for _, fn in list(pci_core(k).notifiers):
        fn(k, action, pdev)


# -- driver registration and matching (pci-driver.c, dd.c) ------------------------------

def pci_register_driver(k: ModelKernel, drv: PciDriver) -> None:
    """__pci_register_driver(), at boot: the driver binds the functions the
    topology the model boots with has on it, in bus order (PFs before their VFs).
    Functions the topology shows unbound stay unbound, whatever would match them:
    the topology is the state after whatever the host did since its boot."""
    core = pci_core(k)
    core.drivers[drv.name] = drv
    core.booting = True
    try:
        for pdev in list(core.devices.values()):
            if core.boot_driver.get(pdev.bdf) == drv.name and pdev.driver is None:
                del core.boot_driver[pdev.bdf]
                with contextlib.suppress(Errno):  # left unbound, as after a failed probe
                    driver_probe_device(k, drv, pdev)
    finally:
        core.booting = False


def device_match_driver_override(pdev: PciDev, drv: PciDriver) -> int:
    """include/linux/device.h:840-847: >0 match, 0 no match, <0 no override set."""
    if pdev.fn.driver_override is not None:
        return 1 if pdev.fn.driver_override == drv.name else 0
    return -1


def pci_match_device(drv: PciDriver, pdev: PciDev) -> bool:
    """pci-driver.c:190-224: an override names the one driver that may bind
    (and always matches it); otherwise the id table decides."""
    ret = device_match_driver_override(pdev, drv)
    if ret == 0:
        return False
    if drv.match_id(pdev):
        return True
    return ret > 0


def driver_match_device(drv: PciDriver, pdev: PciDev) -> bool:
    """pci_bus_match() (pci-driver.c:1534-1550)."""
    return pdev.match_driver and pci_match_device(drv, pdev)


def really_probe(k: ModelKernel, drv: PciDriver, pdev: PciDev) -> None:
    """dd.c:663-786 with pci_device_probe(): pci_dma_configure() first, which
    for a driver without driver_managed_dma takes a default-domain user of the
    group (EBUSY while a VFIO user owns it); then the driver's probe()."""
    if not drv.driver_managed_dma and pdev.group is not None:
        pdev.group.device_use_default_domain()  # iommu.c:3125; dd.c:700-702
    pdev.driver = drv
    try:
        drv.probe(k, pdev)
    except Errno as e:
        pdev.driver = None
        pdev.drvdata = None
        bus_notify(k, pdev, BUS_NOTIFY_DRIVER_NOT_BOUND)
        if not drv.driver_managed_dma and pdev.group is not None:
            pdev.group.device_unuse_default_domain()  # pci_dma_cleanup(), dd.c:779-780
        raise ProbeError(e.code, e.where) from None
    pdev.fn.driver = drv.name
    bus_notify(k, pdev, BUS_NOTIFY_BOUND_DRIVER)


def driver_probe_device(k: ModelKernel, drv: PciDriver, pdev: PciDev) -> None:
    """__driver_probe_device() (dd.c:838-887)."""
    if pdev.driver is not None:
        raise Errno(errno.EBUSY, "drivers/base/dd.c:845")
    really_probe(k, drv, pdev)


def device_attach(k: ModelKernel, pdev: PciDev) -> bool:
    """__device_attach() (dd.c:1111-1169): try each driver in registration
    order; a probe failure moves on to the next driver, a core failure stops.
    True when the device ends up bound."""
    if pdev.driver is not None:
        return True
    for drv in list(pci_core(k).drivers.values()):
        if not driver_match_device(drv, pdev):
            continue
        try:
            driver_probe_device(k, drv, pdev)
        except ProbeError:
            continue  # dd.c:1034-1040: "the next driver can try its luck"
        return True
    return False


def device_release_driver(k: ModelKernel, pdev: PciDev) -> None:
    """device_release_driver_internal() -> pci_device_remove() (pci-driver.c:
    463-497) and pci_dma_cleanup()."""
    drv = pdev.driver
    if drv is None:
        return
    bus_notify(k, pdev, BUS_NOTIFY_UNBIND_DRIVER)
    drv.remove(k, pdev)
    if not drv.driver_managed_dma and pdev.group is not None:
        pdev.group.device_unuse_default_domain()  # pci-driver.c:1699-1700
    pdev.driver = None
    pdev.drvdata = None
    pdev.fn.driver = None
    bus_notify(k, pdev, BUS_NOTIFY_UNBOUND_DRIVER)


# -- SR-IOV (iov.c) ----------------------------------------------------------------------

def pci_iov_virtfn_bdf(pdev: PciDev, vf_id: int) -> str:
    """pci_iov_virtfn_bus() / pci_iov_virtfn_devfn() (iov.c:19-33)."""
    routing = pdev.devfn + pdev.fn.sriov_offset + pdev.fn.sriov_stride * vf_id
    bus = pdev.bus_number + (routing >> 8)
    devfn = routing & 0xFF
    return f"{pdev.domain:04x}:{bus:02x}:{devfn >> 3:02x}.{devfn & 7}"


def pci_iov_add_virtfn(k: ModelKernel, pdev: PciDev, vf_id: int) -> None:
    """iov.c:303-353: the VF joins the bus (BUS_NOTIFY_ADD_DEVICE, where the
    IOMMU gives it a group: on the measured q35 + intel-iommu guest each VF gets a
    new one), then pci_bus_add_device() probes it."""
    core = pci_core(k)
    pf = pdev.fn
    group = iommu_group_alloc(core)
    fn = PciFunction(
        bdf=pci_iov_virtfn_bdf(pdev, vf_id), vendor=pf.vendor, device=pf.sriov_vf_device,
        iommu_group=group.id, physfn=pf.bdf, is_pcie=pf.is_pcie, name=f"{pf.name}-vf{vf_id}",
        class_code=pf.class_code, bar_sizes=pf.sriov_vf_bar_sizes, msix_vectors=pf.sriov_vf_msix_vectors,
        msix_bar=pf.msix_bar, msix_table_offset=pf.msix_table_offset,
        reset_methods=pf.sriov_vf_reset_methods, native_driver=pf.native_driver,
    )
    vf = PciDev(fn, group, physfn=pdev)
    iommu_group_add_device(group, vf)
    core.devices[fn.bdf] = vf
    core.devices = dict(sorted(core.devices.items()))
    k.topology.functions[fn.bdf] = fn
    pdev.virtfns[vf_id] = vf
    bus_notify(k, vf, BUS_NOTIFY_ADD_DEVICE)
    with contextlib.suppress(Errno):  # pci_bus_add_device() only warns (bus.c:352-354)
        device_attach(k, vf)


def pci_iov_remove_virtfn(k: ModelKernel, pdev: PciDev, vf_id: int) -> None:
    """iov.c:355-382: pci_stop_and_remove_bus_device() unbinds the VF's driver
    and removes it from the bus and its IOMMU group."""
    vf = pdev.virtfns.pop(vf_id, None)
    if vf is None:
        return
    core = pci_core(k)
    device_release_driver(k, vf)
    bus_notify(k, vf, BUS_NOTIFY_DEL_DEVICE)
    iommu_group_remove_device(core, vf)
    core.devices.pop(vf.bdf, None)
    k.topology.functions.pop(vf.bdf, None)
    bus_notify(k, vf, BUS_NOTIFY_REMOVED_DEVICE)


def pci_enable_sriov(k: ModelKernel, pdev: PciDev, nr_virtfn: int) -> None:
    """sriov_enable() (iov.c:601-709).  The hardware always has the MMIO and bus
    numbers the VFs need."""
    if not pdev.is_physfn:
        raise Errno(errno.ENOSYS, "drivers/pci/iov.c:pci_enable_sriov")
    if nr_virtfn == 0:
        return
    if pdev.num_vfs:
        raise Errno(errno.EINVAL, "drivers/pci/iov.c:617")
    if nr_virtfn < 0 or nr_virtfn > pdev.fn.sriov_totalvfs:
        raise Errno(errno.EINVAL, "drivers/pci/iov.c:626")
    for i in range(nr_virtfn):
        pci_iov_add_virtfn(k, pdev, i)
    pdev.fn.sriov_numvfs = nr_virtfn  # iov.c:691


def pci_disable_sriov(k: ModelKernel, pdev: PciDev) -> None:
    """sriov_disable() (iov.c:720-741)."""
    if not pdev.num_vfs:
        return
    for i in range(pdev.num_vfs):
        pci_iov_remove_virtfn(k, pdev, i)
    pdev.fn.sriov_numvfs = 0


def pci_vfs_assigned(pdev: PciDev) -> bool:
    """pci_vfs_assigned(): VFs flagged PCI_DEV_FLAGS_ASSIGNED (only Xen's pciback
    and KVM's legacy assignment set it): never in the model."""
    return False


def pci_sriov_configure_simple(k: ModelKernel, pdev: PciDev, nr_virtfn: int) -> int:
    """iov.c:1210-1234."""
    if not pdev.is_physfn:
        raise Errno(errno.ENODEV, "drivers/pci/iov.c:1217")
    if pci_vfs_assigned(pdev):
        raise Errno(errno.EPERM, "drivers/pci/iov.c:1221")
    if nr_virtfn == 0:
        pci_disable_sriov(k, pdev)
        return 0
    pci_enable_sriov(k, pdev, nr_virtfn)
    return nr_virtfn


# -- resets (pci.c) ----------------------------------------------------------------------

def pci_try_reset_function(pdev: PciDev) -> None:
    """pci.c:5478-5494 and __pci_reset_function_locked() (5329-5356): the enabled methods
    in order, one that returns -ENOTTY passing to the next.  The function's own methods
    (flr, pm, ...) work here.  "bus" is pci_reset_bus_function() (5036-5056): no hotplug
    slot in these topologies, so pci_parent_bus_reset() (4963-4979), which resets only a
    function alone on a non-root bus.  pci_init_reset_methods() probed it at enumeration,
    when the bus may have held this function alone (the first one scanned behind a bridge
    does): the list can name "bus" where doing it fails."""
    if not pdev.reset_supported():
        raise Errno(errno.ENOTTY, "drivers/pci/pci.c:5482-5483")
    for method in pdev.reset_methods:
        if method != "bus" or pdev.fn.hot_reset_functions == (pdev.bdf,):
            return
    raise Errno(errno.ENOTTY, "drivers/pci/pci.c:4971-4973,5355")


def pci_probe_reset_slot_or_bus(pdev: PciDev) -> bool:
    """pci_probe_reset_slot() || pci_probe_reset_bus() succeeds (pci.c:5723,5826)."""
    return bool(pdev.fn.hot_reset_functions)


# -- sysfs ------------------------------------------------------------------------------

def kstrtou16(buf: str) -> int:
    """kstrtou16(s, 0) (lib/kstrtox.c:275-287, 120-127, 98-109): an optional '+',
    base from the prefix (0x hex, 0 octal), one optional trailing newline."""
    s = buf[1:] if buf.startswith("+") else buf
    base = 10
    if s.startswith("0"):
        base = 16 if s[1:2].lower() == "x" and s[2:3] and s[2] in "0123456789abcdefABCDEF" else 8
        if base == 16:
            s = s[2:]
    digits = ""
    for c in s:
        v = int(c, 16) if c in "0123456789abcdefABCDEF" else 99
        if v >= base:
            break
        digits += c
    if not digits:
        raise Errno(errno.EINVAL, "lib/kstrtox.c:104")
    rest = s[len(digits):]
    if rest.startswith("\n"):
        rest = rest[1:]
    if rest:
        raise Errno(errno.EINVAL, "lib/kstrtox.c:109")
    value = int(digits, base)
    if value >= 1 << 64:
        raise Errno(errno.ERANGE, "lib/kstrtox.c:102")
    if value > 0xFFFF:
        raise Errno(errno.ERANGE, "lib/kstrtox.c:284")
    return value


def kstrtobool(buf: str) -> bool:
    """lib/kstrtox.c:348-388."""
    c = buf[:1]
    if c in ("y", "Y", "t", "T", "1"):
        return True
    if c in ("n", "N", "f", "F", "0"):
        return False
    if c in ("o", "O"):
        if buf[1:2] in ("n", "N"):
            return True
        if buf[1:2] in ("f", "F"):
            return False
    raise Errno(errno.EINVAL, "lib/kstrtox.c:387")


def _resolve(k: ModelKernel, m: re.Match[str]) -> PciDev:
    """/sys/bus/pci/devices/<bdf>[/virtfnN|/physfn]...: the device the path names."""
    pdev = pci_core(k).devices.get(m["bdf"].lower())
    if pdev is None:
        raise Errno(errno.ENOENT, "fs/sysfs")
    for link in filter(None, (m["links"] or "").split("/")):
        nxt: PciDev | None
        if link == "physfn":
            nxt = pdev.physfn
        else:
            nxt = pdev.virtfns.get(int(link[len("virtfn"):]))
        if nxt is None:
            raise Errno(errno.ENOENT, "fs/sysfs")
        pdev = nxt
    return pdev


def sysfs_store(store: SysfsStore) -> SysfsStore:
    """The sysfs write path every store runs behind: at most a page is passed
    (kernfs_fop_write_iter(), fs/kernfs/file.c:318-322) and an empty write never
    reaches the store (sysfs_kf_write(), fs/sysfs/file.c:137-138)."""

    def write(k: ModelKernel, m: re.Match[str], buf: str) -> None:
        if not buf:
            return
        store(k, m, buf[:PAGE_SIZE])

    return write


def driver_override_show(k: ModelKernel, m: re.Match[str]) -> str:
    """drivers/base/bus.c:479-484: sysfs_emit("%s\\n") of a NULL name prints "(null)"."""
    name = _resolve(k, m).fn.driver_override
    return f"{name if name is not None else '(null)'}\n"


@sysfs_store
def driver_override_store(k: ModelKernel, m: re.Match[str], buf: str) -> None:
    """drivers/base/bus.c:466-477 -> __device_set_driver_override() (dd.c:383-440)."""
    pdev = _resolve(k, m)
    if len(buf) >= PAGE_SIZE - 1:
        raise Errno(errno.EINVAL, "drivers/base/dd.c:398")
    s = buf.split("\0", 1)[0]
    if not s:
        pdev.fn.driver_override = None  # dd.c:406-414
        return
    s = s.split("\n", 1)[0]
    pdev.fn.driver_override = s or None  # "\n" clears it (dd.c:427-436)


def sriov_numvfs_show(k: ModelKernel, m: re.Match[str]) -> str:
    pdev = _pf(k, m)
    return f"{pdev.num_vfs}\n"  # iov.c:393-406


@sysfs_store
def sriov_numvfs_store(k: ModelKernel, m: re.Match[str], buf: str) -> None:
    """iov.c:415-481."""
    pdev = _pf(k, m)
    try:
        num_vfs = kstrtou16(buf.split("\0", 1)[0])
    except Errno:
        raise Errno(errno.EINVAL, "drivers/pci/iov.c:424") from None
    if num_vfs > pdev.fn.sriov_totalvfs:
        raise Errno(errno.ERANGE, "drivers/pci/iov.c:427")
    if num_vfs == pdev.num_vfs:
        return
    drv = pdev.driver
    if drv is None:
        raise Errno(errno.ENOENT, "drivers/pci/iov.c:437")
    if not drv.has_sriov_configure:
        raise Errno(errno.ENOENT, "drivers/pci/iov.c:444")
    if num_vfs == 0:
        drv.sriov_configure(k, pdev, 0)
        return
    if pdev.num_vfs:
        raise Errno(errno.EBUSY, "drivers/pci/iov.c:460")
    drv.sriov_configure(k, pdev, num_vfs)


def _pf(k: ModelKernel, m: re.Match[str]) -> PciDev:
    """The SR-IOV attributes are visible on PFs only (sriov_pf_attrs_are_visible, iov.c:556-562)."""
    pdev = _resolve(k, m)
    if not pdev.is_physfn:
        raise Errno(errno.ENOENT, "fs/sysfs")
    return pdev


def reset_method_show(k: ModelKernel, m: re.Match[str]) -> str:
    """pci.c:5152-5172: nothing at all (not even a newline) when every method is off."""
    pdev = _reset_dev(k, m)
    return " ".join(pdev.reset_methods) + "\n" if pdev.reset_methods else ""


@sysfs_store
def reset_method_store(k: ModelKernel, m: re.Match[str], buf: str) -> None:
    """pci.c:5186-5251."""
    pdev = _reset_dev(k, m)
    buf = buf.split("\0", 1)[0]
    if sysfs_strip(buf) == "":
        pdev.reset_methods = []
        return
    if sysfs_strip(buf) == "default":
        pdev.reset_methods = list(pdev.fn.reset_methods)  # pci_init_reset_methods()
        return
    methods: list[str] = []
    for name in buf.split(" "):
        if sysfs_strip(name) == "":
            continue
        name = name.strip()
        if name not in RESET_METHODS:
            raise Errno(errno.EINVAL, "drivers/pci/pci.c:5250")  # Invalid reset method
        if name not in pdev.fn.reset_methods:
            raise Errno(errno.EINVAL, "drivers/pci/pci.c:5250")  # Unsupported (probe fails)
        if len(methods) == PCI_NUM_RESET_METHODS - 1:
            raise Errno(errno.EINVAL, "drivers/pci/pci.c:5250")  # Too many
        methods.append(name)
    pdev.reset_methods = methods


def _reset_dev(k: ModelKernel, m: re.Match[str]) -> PciDev:
    """reset_method is created only for a function with a reset method at
    enumeration (pci_dev_reset_method_attr_is_visible(), pci.c:5259-5268)."""
    pdev = _resolve(k, m)
    if not pdev.fn.reset_methods:
        raise Errno(errno.ENOENT, "fs/sysfs")
    return pdev


def iommu_group_show(k: ModelKernel, m: re.Match[str]) -> str:
    """The iommu_group link's target name (a symlink in sysfs; the model reads it
    as the group number)."""
    pdev = _resolve(k, m)
    if pdev.group is None:
        raise Errno(errno.ENOENT, "fs/sysfs")
    return f"{pdev.group.id}\n"


def driver_show(k: ModelKernel, m: re.Match[str]) -> str:
    """The driver link's target name (a symlink in sysfs, present only while bound)."""
    pdev = _resolve(k, m)
    if pdev.driver is None:
        raise Errno(errno.ENOENT, "fs/sysfs")
    return f"{pdev.driver.name}\n"


def _attr_reader(field: str, fmt: str, pf_only: bool = True) -> Callable[[ModelKernel, re.Match[str]], str]:
    def show(k: ModelKernel, m: re.Match[str]) -> str:
        pdev = _pf(k, m) if pf_only else _resolve(k, m)
        return fmt.format(getattr(pdev.fn, field)) + "\n"
    return show


def _driver(k: ModelKernel, m: re.Match[str]) -> PciDriver:
    drv = pci_core(k).drivers.get(m["drv"])
    if drv is None:
        raise Errno(errno.ENOENT, "fs/sysfs")
    return drv


@sysfs_store
def bind_store(k: ModelKernel, m: re.Match[str], buf: str) -> None:
    """drivers/base/bus.c:258-276 -> device_driver_attach() (dd.c:1216-1230):
    ENODEV unless the device exists and the driver matches it; a probe failure
    comes back as its own errno."""
    drv = _driver(k, m)
    pdev = pci_get_dev(k, buf.split("\0", 1)[0])
    if pdev is None or not driver_match_device(drv, pdev):
        raise Errno(errno.ENODEV, "drivers/base/bus.c:263")
    try:
        driver_probe_device(k, drv, pdev)
    except ProbeError as e:
        raise Errno(e.code, e.where) from None


@sysfs_store
def unbind_store(k: ModelKernel, m: re.Match[str], buf: str) -> None:
    """drivers/base/bus.c:235-250."""
    drv = _driver(k, m)
    pdev = pci_get_dev(k, buf.split("\0", 1)[0])
    if pdev is None or pdev.driver is not drv:
        raise Errno(errno.ENODEV, "drivers/base/bus.c:240")
    device_release_driver(k, pdev)


@sysfs_store
def drivers_probe_store(k: ModelKernel, m: re.Match[str], buf: str) -> None:
    """drivers/base/bus.c:309-322: ENODEV for an unknown device; a core failure
    while attaching (not a probe failure, which only moves on to the next driver)
    becomes EINVAL."""
    pdev = pci_get_dev(k, buf.split("\0", 1)[0])
    if pdev is None:
        raise Errno(errno.ENODEV, "drivers/base/bus.c:317")
    if pdev.driver is not None:
        return  # bus_rescan_devices_helper() (bus.c:824)
    try:
        device_attach(k, pdev)
    except Errno:
        raise Errno(errno.EINVAL, "drivers/base/bus.c:313") from None


def install(k: ModelKernel) -> None:
    """Enumerate ``k.topology``: one PciDev per function, its IOMMU group, VFs
    linked to their PF; register the built-in drivers and bind the functions the
    topology has on them (vfio-pci binds its own when ``harness.model.vfio``
    registers it); register the sysfs files."""
    core = PciCore()
    k.state[_STATE] = core
    for fn in sorted(k.topology.functions.values(), key=lambda f: f.bdf):
        if fn.driver is not None:
            core.boot_driver[fn.bdf] = fn.driver
            if fn.native_driver is None and fn.driver not in ("vfio-pci", "pci-stub", "pcieport"):
                fn.native_driver = fn.driver  # a kernel driver drives what it was found on
        fn.driver = None
        pdev = PciDev(fn, iommu_group_get_or_alloc(core, fn.iommu_group))
        iommu_group_add_device(pdev.group, pdev)
        core.devices[fn.bdf] = pdev
    for pdev in core.devices.values():
        pf = core.devices.get(pdev.fn.physfn) if pdev.fn.physfn is not None else None
        if pf is None:
            continue
        pdev.physfn = pf
        vf_id = next((i for i in range(pf.fn.sriov_totalvfs) if pci_iov_virtfn_bdf(pf, i) == pdev.bdf),
                     len(pf.virtfns))
        pf.virtfns[vf_id] = pdev

    drivers: list[PciDriver] = [PcieportDriver()]
    if "PCI_STUB" in k.facts.config:
        drivers.append(PciStubDriver())
    native = {f.native_driver for f in k.topology.functions.values() if f.native_driver}
    native |= {d for d in core.boot_driver.values() if d not in ("vfio-pci", "pci-stub", "pcieport")}
    drivers += [KernelDriver(name) for name in sorted(native)]
    for drv in drivers:
        pci_register_driver(k, drv)

    dev = _DEV + rf"/(?P<bdf>{_BDF})(?P<links>(?:/(?:virtfn\d+|physfn))*)/"
    k.register_sysfs(dev + "driver_override", driver_override_show, driver_override_store)
    k.register_sysfs(dev + "sriov_numvfs", sriov_numvfs_show, sriov_numvfs_store)
    k.register_sysfs(dev + "sriov_totalvfs", _attr_reader("sriov_totalvfs", "{}"), None)
    k.register_sysfs(dev + "sriov_offset", _attr_reader("sriov_offset", "{}"), None)
    k.register_sysfs(dev + "sriov_stride", _attr_reader("sriov_stride", "{}"), None)
    k.register_sysfs(dev + "sriov_vf_device", _attr_reader("sriov_vf_device", "{:x}"), None)
    k.register_sysfs(dev + "reset_method", reset_method_show, reset_method_store)
    k.register_sysfs(dev + "iommu_group", iommu_group_show, None)
    k.register_sysfs(dev + "driver", driver_show, None)
    k.register_sysfs(dev + "vendor", _attr_reader("vendor", "0x{:04x}", pf_only=False), None)
    k.register_sysfs(dev + "device", _attr_reader("device", "0x{:04x}", pf_only=False), None)
    k.register_sysfs(dev + "class", _attr_reader("class_code", "0x{:06x}", pf_only=False), None)
    k.register_sysfs(_DRV + r"/(?P<drv>[^/]+)/bind", None, bind_store)
    k.register_sysfs(_DRV + r"/(?P<drv>[^/]+)/unbind", None, unbind_store)
    k.register_sysfs(r"/sys/bus/pci/drivers_probe", None, drivers_probe_store)
