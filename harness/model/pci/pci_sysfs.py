"""drivers/pci/pci-sysfs.c: the read-only files of a PCI function (vendor, device,
class) and its iommu_group and driver links."""

from __future__ import annotations

import errno
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import Errno
from .pci import PciDev, sysfs_pci_dev

if TYPE_CHECKING:
    from ..kernel import ModelKernel, SysfsReader

DevOf = Callable[["ModelKernel", "re.Match[str]"], PciDev]


def iommu_group_show(k: ModelKernel, m: re.Match[str]) -> str:
    """The iommu_group link's target name (a symlink in sysfs; the model reads it
    as the group number)."""
    pdev = sysfs_pci_dev(k, m)
    if pdev.group is None:
        raise Errno(errno.ENOENT, "fs/sysfs")
    return f"{pdev.group.id}\n"


def driver_show(k: ModelKernel, m: re.Match[str]) -> str:
    """The driver link's target name (a symlink in sysfs, present only while bound)."""
    pdev = sysfs_pci_dev(k, m)
    if pdev.driver is None:
        raise Errno(errno.ENOENT, "fs/sysfs")
    return f"{pdev.driver.name}\n"


def attr_show(field: str, fmt: str, dev: DevOf = sysfs_pci_dev) -> SysfsReader:
    """The show() of a read-only attribute: ``field`` of the function ``dev`` finds
    (sysfs_pci_dev, or iov.py's sriov_pf for an attribute only PFs have), in ``fmt``."""
    def show(k: ModelKernel, m: re.Match[str]) -> str:
        pdev = dev(k, m)
        return fmt.format(getattr(pdev.fn, field)) + "\n"
    return show
