"""drivers/pci/probe.c: the PCI subsystem at boot, as VFIO and the sysfs files see it.

Enumeration of ``k.topology`` and the drivers registered at boot:

- one ``PciDev`` (struct pci_dev) per function of ``k.topology`` (pci.py);
- one ``IommuGroup`` per iommu_group number (harness/model/iommu/iommu.py);
- drivers (struct pci_driver) registered on the bus: the topology's native kernel
  drivers (here), pci-stub, pcieport, vfio-pci (``harness.model.vfio``).  Binding a
  driver without ``driver_managed_dma`` counts the function's group as a user of the
  default domain (pci_dma_configure(), pci-driver.c:1686-1689; harness/model/base/dd.py);
- the sysfs files the cases write: driver_override, bind/unbind, drivers_probe
  (base/bus.py), sriov_numvfs/totalvfs/offset/stride/vf_device (iov.py), reset_method
  (pci.py), and the iommu_group and driver links (pci_sysfs.py; read as the group
  number and the driver name).
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from ...backends.base import DRIVER_MANAGED_DMA
from ..base.bus import (
    bind_store,
    driver_override_show,
    driver_override_store,
    drivers_probe_store,
    unbind_store,
)
from ..errors import Errno, cite
from ..iommu.iommu import iommu_group_add_device, iommu_group_get_or_alloc
from .iov import pci_iov_virtfn_bdf, pci_sriov_configure_simple, sriov_numvfs_show, sriov_numvfs_store, sriov_pf
from .pci import PCI_STATE, PciCore, PciDev, PciDriver, reset_method_show, reset_method_store
from .pci_driver import pci_register_driver
from .pci_stub import PciStubDriver
from .pci_sysfs import attr_show, driver_show, iommu_group_show
from .portdrv import PcieportDriver

if TYPE_CHECKING:
    from ..kernel import ModelKernel

_DEV = "/sys/bus/pci/devices"
_DRV = "/sys/bus/pci/drivers"
_BDF = r"[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]"


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
            raise Errno(errno.ENODEV, cite("drivers/base/dd.c", 648))

    def sriov_configure(self, k: ModelKernel, pdev: PciDev, nr_virtfn: int) -> int:
        if not self.has_sriov_configure:
            return super().sriov_configure(k, pdev, nr_virtfn)
        return pci_sriov_configure_simple(k, pdev, nr_virtfn)


def install(k: ModelKernel) -> None:
    """Enumerate ``k.topology``: one PciDev per function, its IOMMU group, VFs
    linked to their PF; register the built-in drivers and bind the functions the
    topology has on them (vfio-pci binds its own when ``harness.model.vfio``
    registers it); register the sysfs files."""
    core = PciCore()
    k.state[PCI_STATE] = core
    for fn in sorted(k.topology.functions.values(), key=lambda f: f.bdf):
        if fn.driver is not None:
            core.boot_driver[fn.bdf] = fn.driver
            if fn.native_driver is None and fn.driver not in ("vfio-pci", "pci-stub", "pcieport"):
                fn.native_driver = fn.driver  # a kernel driver drives what it was found on
        fn.driver = None
        # A function in a vfio-noiommu group has no IOMMU group until vfio makes one
        # (harness.model.vfio.group.vfio_noiommu_group_alloc).
        pdev = PciDev(fn, iommu_group_get_or_alloc(core, None if fn.noiommu else fn.iommu_group))
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
    k.register_sysfs(dev + "sriov_totalvfs", attr_show("sriov_totalvfs", "{}", sriov_pf), None)
    k.register_sysfs(dev + "sriov_offset", attr_show("sriov_offset", "{}", sriov_pf), None)
    k.register_sysfs(dev + "sriov_stride", attr_show("sriov_stride", "{}", sriov_pf), None)
    k.register_sysfs(dev + "sriov_vf_device", attr_show("sriov_vf_device", "{:x}", sriov_pf), None)
    k.register_sysfs(dev + "reset_method", reset_method_show, reset_method_store)
    k.register_sysfs(dev + "iommu_group", iommu_group_show, None)
    k.register_sysfs(dev + "driver", driver_show, None)
    k.register_sysfs(dev + "vendor", attr_show("vendor", "0x{:04x}"), None)
    k.register_sysfs(dev + "device", attr_show("device", "0x{:04x}"), None)
    k.register_sysfs(dev + "class", attr_show("class_code", "0x{:06x}"), None)
    k.register_sysfs(_DRV + r"/(?P<drv>[^/]+)/bind", None, bind_store)
    k.register_sysfs(_DRV + r"/(?P<drv>[^/]+)/unbind", None, unbind_store)
    k.register_sysfs(r"/sys/bus/pci/drivers_probe", None, drivers_probe_store)
