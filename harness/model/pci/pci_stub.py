"""drivers/pci/pci-stub.c: a driver that binds whatever it is told to and does nothing."""

from __future__ import annotations

from .pci import PciDriver


class PciStubDriver(PciDriver):
    """drivers/pci/pci-stub.c: no ids unless given at load; probe always succeeds."""

    name = "pci-stub"
    driver_managed_dma = True
