"""drivers/pci/pci-driver.c: registering a PCI driver and matching it to a device."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from ..errors import Errno
from .pci import PciDev, PciDriver, pci_core

if TYPE_CHECKING:
    from ..kernel import ModelKernel


def pci_register_driver(k: ModelKernel, drv: PciDriver) -> None:
    """__pci_register_driver(), at boot: the driver binds the functions the
    topology the model boots with has on it, in bus order (PFs before their VFs).
    Functions the topology shows unbound stay unbound, whatever would match them:
    the topology is the state after whatever the host did since its boot."""
    from ..base.dd import driver_probe_device  # dd.c binds through pci_bus_match() below

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


def pci_bus_match(drv: PciDriver, pdev: PciDev) -> bool:
    """pci_bus_match() (pci-driver.c:1534-1550)."""
    return pdev.match_driver and pci_match_device(drv, pdev)
