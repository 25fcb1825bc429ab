"""drivers/pci/pci.c: the PCI core's state and function resets.

The bus (``PciCore``): one ``PciDev`` (struct pci_dev) per function of ``k.topology``,
whose ``PciFunction`` is kept current (driver, driver_override, numvfs, VFs, cdev) so
the backend's ``topology()`` shows the present state; the registered drivers (struct
pci_driver); the IOMMU groups; the bus notifiers.
"""

from __future__ import annotations

import errno
import re
from typing import TYPE_CHECKING

from ...backends.base import PciFunction
from ..errors import Errno, cite
from ..kernel import sysfs_store
from ..lib.string import sysfs_strip

if TYPE_CHECKING:
    from ..base.bus import Notifier
    from ..iommu.iommu import IommuGroup
    from ..kernel import ModelKernel

# include/uapi/linux/pci_regs.h
PCI_CFG_SPACE_SIZE = 256
PCI_CFG_SPACE_EXP_SIZE = 4096

# drivers/pci/pci.c:5141-5150: pci_reset_fn_methods[] names, in priority order
RESET_METHODS = ("device_specific", "acpi", "flr", "af_flr", "pm", "bus", "cxl_bus")
# include/linux/pci.h: PCI_NUM_RESET_METHODS (the terminating 0 included)
PCI_NUM_RESET_METHODS = len(RESET_METHODS) + 1

PCI_STATE = "pci"


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
        raise Errno(errno.ENOENT, cite("drivers/pci/iov.c", 444))


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
    core = k.state.get(PCI_STATE)
    if not isinstance(core, PciCore):
        raise Errno(errno.ENODEV, "drivers/pci: the PCI core is not installed")
    return core


def sysfs_pci_dev(k: ModelKernel, m: re.Match[str]) -> PciDev:
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


# -- resets -----------------------------------------------------------------------------

def pci_try_reset_function(pdev: PciDev) -> None:
    """pci.c:5478-5494 and __pci_reset_function_locked() (5329-5356): the enabled methods
    in order, one that returns -ENOTTY passing to the next.  The function's own methods
    (flr, pm, ...) work here.  "bus" is pci_reset_bus_function() (5036-5056): no hotplug
    slot in these topologies, so pci_parent_bus_reset() (4963-4979), which resets only a
    function alone on a non-root bus.  pci_init_reset_methods() probed it at enumeration,
    when the bus may have held this function alone (the first one scanned behind a bridge
    does): the list can name "bus" where doing it fails."""
    if not pdev.reset_supported():
        raise Errno(errno.ENOTTY, cite("drivers/pci/pci.c", "5482-5483"))
    for method in pdev.reset_methods:
        if method != "bus" or pdev.fn.hot_reset_functions == (pdev.bdf,):
            return
    raise Errno(errno.ENOTTY, "drivers/pci/pci.c:4971-4973,5355")


def pci_probe_reset_slot_or_bus(pdev: PciDev) -> bool:
    """pci_probe_reset_slot() || pci_probe_reset_bus() succeeds (pci.c:5723,5826)."""
    return bool(pdev.fn.hot_reset_functions)


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
            raise Errno(errno.EINVAL, cite("drivers/pci/pci.c", 5255))  # Invalid reset method
        if name not in pdev.fn.reset_methods:
            raise Errno(errno.EINVAL, cite("drivers/pci/pci.c", 5260))  # Unsupported (probe fails)
        if len(methods) == PCI_NUM_RESET_METHODS - 1:
            raise Errno(errno.EINVAL, cite("drivers/pci/pci.c", 5265))  # Too many
        methods.append(name)
    pdev.reset_methods = methods


def _reset_dev(k: ModelKernel, m: re.Match[str]) -> PciDev:
    """reset_method is created only for a function with a reset method at
    enumeration (pci_dev_reset_method_attr_is_visible(), pci.c:5259-5268)."""
    pdev = sysfs_pci_dev(k, m)
    if not pdev.fn.reset_methods:
        raise Errno(errno.ENOENT, "fs/sysfs")
    return pdev
