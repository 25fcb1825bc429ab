"""drivers/base/dd.c: binding a driver to a device and releasing it."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from ..errors import Errno, cite
from ..pci.pci import PciDev, PciDriver, pci_core
from ..pci.pci_driver import pci_bus_match
from .bus import (
    BUS_NOTIFY_BOUND_DRIVER,
    BUS_NOTIFY_DRIVER_NOT_BOUND,
    BUS_NOTIFY_UNBIND_DRIVER,
    BUS_NOTIFY_UNBOUND_DRIVER,
    bus_notify,
)

if TYPE_CHECKING:
    from ..kernel import ModelKernel


class ProbeError(Errno):
    """A driver's probe() failed: the driver core hands it back as a positive
    number so callers can tell it from a core failure (dd.c:728-733)."""


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
        raise Errno(errno.EBUSY, cite("drivers/base/dd.c", 845))
    really_probe(k, drv, pdev)


def device_attach(k: ModelKernel, pdev: PciDev) -> bool:
    """__device_attach() (dd.c:1111-1169): try each driver in registration
    order; a probe failure moves on to the next driver, a core failure stops.
    True when the device ends up bound."""
    if pdev.driver is not None:
        return True
    for drv in list(pci_core(k).drivers.values()):
        if not pci_bus_match(drv, pdev):
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
