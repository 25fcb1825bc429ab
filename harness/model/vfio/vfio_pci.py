"""drivers/vfio/pci/vfio_pci.c: the vfio-pci PCI driver (probe, remove,
sriov_configure) and its enable_sriov module parameter."""

from __future__ import annotations

import errno
import re

from ..errors import Errno, cite
from ..kernel import ModelKernel, sysfs_store
from ..lib.kstrtox import kstrtobool
from ..pci.pci import PciDev, PciDriver, pci_core
from ..pci.pci_driver import pci_register_driver
from .pci_core import (
    VfioPciCoreDevice,
    vfio_pci_core_register_device,
    vfio_pci_core_sriov_configure,
    vfio_pci_core_unregister_device,
)

VFIO_PCI_C = "drivers/vfio/pci/vfio_pci.c"
PCI_VENDOR_ID_INTEL = 0x8086
# vfio_pci.c:63-83 (include/linux/pci_ids.h): QAT C3xxx, C62x, DH895xCC and their VFs,
# DSA SPR0, IAX SPR0
_DENYLIST = frozenset({0x19E2, 0x19E3, 0x37C8, 0x37C9, 0x0435, 0x0443, 0x0B25, 0x0CFE})
_PARAM = "/sys/module/vfio_pci/parameters/enable_sriov"


class VfioPciDriver(PciDriver):
    """vfio_pci_driver (vfio_pci.c:198-206).  Its only id is
    PCI_DRIVER_OVERRIDE_DEVICE_VFIO(PCI_ANY_ID, PCI_ANY_ID): it binds only
    functions whose driver_override names it (no new_id or ids= in the model)."""

    name = "vfio-pci"
    driver_managed_dma = True
    has_sriov_configure = True

    def __init__(self, enable_sriov: bool):
        self.enable_sriov = enable_sriov  # module_param(enable_sriov, bool, 0644)
        self.disable_denylist = False

    def probe(self, k: ModelKernel, pdev: PciDev) -> None:
        """vfio_pci_probe() (vfio_pci.c:149-171)."""
        if pdev.fn.vendor == PCI_VENDOR_ID_INTEL and pdev.fn.device in _DENYLIST and not self.disable_denylist:
            raise Errno(errno.EINVAL, cite(VFIO_PCI_C, 155))
        vdev = VfioPciCoreDevice(k, pdev)
        pdev.drvdata = vdev
        vfio_pci_core_register_device(k, vdev)

    def remove(self, k: ModelKernel, pdev: PciDev) -> None:
        """vfio_pci_remove() (vfio_pci.c:173-179)."""
        vdev = pdev.drvdata
        assert isinstance(vdev, VfioPciCoreDevice)
        vfio_pci_core_unregister_device(k, vdev)

    def sriov_configure(self, k: ModelKernel, pdev: PciDev, nr_virtfn: int) -> int:
        """vfio_pci_sriov_configure() (vfio_pci.c:181-189): ENOENT while
        enable_sriov is N, disabling included."""
        if not self.enable_sriov:
            raise Errno(errno.ENOENT, cite(VFIO_PCI_C, 186))
        vdev = pdev.drvdata
        assert isinstance(vdev, VfioPciCoreDevice)
        return vfio_pci_core_sriov_configure(k, vdev, nr_virtfn)


def vfio_pci_driver(k: ModelKernel) -> VfioPciDriver:
    drv = pci_core(k).drivers.get("vfio-pci")
    if not isinstance(drv, VfioPciDriver):
        raise Errno(errno.ENOENT, "fs/sysfs")
    return drv


def enable_sriov_show(k: ModelKernel, m: re.Match[str]) -> str:
    """param_get_bool() (kernel/params.c)."""
    return "Y\n" if vfio_pci_driver(k).enable_sriov else "N\n"


@sysfs_store
def enable_sriov_store(k: ModelKernel, m: re.Match[str], buf: str) -> None:
    """param_attr_store() -> param_set_bool() -> kstrtobool() (kernel/params.c:578-597,312-319)."""
    vfio_pci_driver(k).enable_sriov = kstrtobool(buf)


def install_vfio_pci(k: ModelKernel) -> None:
    """vfio_pci_init() (vfio_pci.c:249-271): registering the driver binds the
    functions the booted topology has on vfio-pci."""
    if "VFIO_PCI" not in k.facts.config:
        return
    pci_register_driver(k, VfioPciDriver(k.facts.enable_sriov))
    if "PCI_IOV" in k.facts.config:
        k.register_sysfs(re.escape(_PARAM), enable_sriov_show, enable_sriov_store)
