"""drivers/vfio: the legacy container, groups, device files, the cdev path, the
type1 IOMMU backend and vfio-pci.

One module per kernel file: ``vfio_main`` (struct vfio_device, device files,
features, capability chains, SET_IRQS validation), ``group``, ``container``,
``vfio_iommu_type1``, ``iommufd`` (drivers/vfio/iommufd.c), ``device_cdev``,
``pci_core`` (vfio_pci_core.c), ``pci_intrs`` (vfio_pci_intrs.c) and
``vfio_pci`` (the driver and its enable_sriov parameter).

Nodes:
  /dev/vfio/vfio               the legacy container (container == "legacy" and CONFIG_VFIO_CONTAINER)
  /dev/vfio/<N>                while IOMMU group N has a member bound to vfio-pci
  /dev/vfio/devices/vfio<X>    for each registered device (CONFIG_VFIO_DEVICE_CDEV)
"""

from __future__ import annotations

from ..kernel import ModelKernel
from .container import install_container
from .group import install_group_nodes
from .vfio_main import install_cdev_nodes, vfio_state
from .vfio_pci import install_vfio_pci

__all__ = ["install"]


def install(k: ModelKernel) -> None:
    """vfio_init() (vfio_main.c), then the type1 backend and vfio-pci."""
    if "VFIO" not in k.facts.config:
        return
    # vfio.enable_unsafe_noiommu_mode as the kernel booted with it (vfio_main.c:58-61)
    vfio_state(k).noiommu = "VFIO_NOIOMMU" in k.facts.config and k.facts.vfio_noiommu
    if k.facts.container == "legacy" and "VFIO_CONTAINER" in k.facts.config:
        install_container(k)
    install_group_nodes(k)
    if "VFIO_DEVICE_CDEV" in k.facts.config:
        install_cdev_nodes(k)
    install_vfio_pci(k)
