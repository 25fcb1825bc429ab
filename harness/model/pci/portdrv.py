"""drivers/pci/pcie/portdrv.c: the PCIe port driver."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from ..errors import Errno, cite
from .pci import PciDev, PciDriver

if TYPE_CHECKING:
    from ..kernel import ModelKernel


class PcieportDriver(PciDriver):
    """drivers/pci/pcie/portdrv.c: only PCIe ports, of which the topology has none
    (pcie_portdrv_probe() rejects the rest with -ENODEV)."""

    name = "pcieport"
    driver_managed_dma = True

    def probe(self, k: ModelKernel, pdev: PciDev) -> None:
        raise Errno(errno.ENODEV, cite("drivers/pci/pcie/portdrv.c", 693))
