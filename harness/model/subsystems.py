"""Boot order of the model's subsystems: the PCI core first (it owns the
functions, drivers and IOMMU groups), then iommufd, then VFIO, which uses both."""

from __future__ import annotations

from . import iommufd, vfio
from .kernel import ModelKernel
from .pci import probe as pci


def install_subsystems(k: ModelKernel) -> None:
    pci.install(k)
    iommufd.install(k)
    vfio.install(k)
