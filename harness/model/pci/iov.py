"""drivers/pci/iov.c: SR-IOV: enabling and disabling VFs, and the sriov_* sysfs files."""

from __future__ import annotations

import contextlib
import errno
import re
from typing import TYPE_CHECKING

from ...backends.base import PciFunction
from ..base.bus import BUS_NOTIFY_ADD_DEVICE, BUS_NOTIFY_DEL_DEVICE, BUS_NOTIFY_REMOVED_DEVICE, bus_notify
from ..base.dd import device_attach, device_release_driver
from ..errors import Errno, cite
from ..iommu.iommu import iommu_group_add_device, iommu_group_alloc, iommu_group_remove_device
from ..kernel import sysfs_store
from ..lib.kstrtox import kstrtou16
from .pci import PciDev, pci_core, sysfs_pci_dev

if TYPE_CHECKING:
    from ..kernel import ModelKernel


def pci_iov_virtfn_bdf(pdev: PciDev, vf_id: int) -> str:
    """pci_iov_virtfn_bus() / pci_iov_virtfn_devfn() (iov.c:19-33)."""
    routing = pdev.devfn + pdev.fn.sriov_offset + pdev.fn.sriov_stride * vf_id
    bus = pdev.bus_number + (routing >> 8)
    devfn = routing & 0xFF
    return f"{pdev.domain:04x}:{bus:02x}:{devfn >> 3:02x}.{devfn & 7}"


def pci_iov_add_virtfn(k: ModelKernel, pdev: PciDev, vf_id: int) -> None:
    """iov.c:303-353: the VF joins the bus (BUS_NOTIFY_ADD_DEVICE, where the
    IOMMU gives it a group: on the measured q35 + intel-iommu guest each VF gets a
    new one), then pci_bus_add_device() probes it."""
    core = pci_core(k)
    pf = pdev.fn
    group = iommu_group_alloc(core)
    fn = PciFunction(
        bdf=pci_iov_virtfn_bdf(pdev, vf_id), vendor=pf.vendor, device=pf.sriov_vf_device,
        iommu_group=group.id, physfn=pf.bdf, is_pcie=pf.is_pcie, name=f"{pf.name}-vf{vf_id}",
        class_code=pf.class_code, bar_sizes=pf.sriov_vf_bar_sizes, msix_vectors=pf.sriov_vf_msix_vectors,
        msix_bar=pf.msix_bar, msix_table_offset=pf.msix_table_offset,
        reset_methods=pf.sriov_vf_reset_methods, native_driver=pf.native_driver,
    )
    vf = PciDev(fn, group, physfn=pdev)
    iommu_group_add_device(group, vf)
    core.devices[fn.bdf] = vf
    core.devices = dict(sorted(core.devices.items()))
    k.topology.functions[fn.bdf] = fn
    pdev.virtfns[vf_id] = vf
    bus_notify(k, vf, BUS_NOTIFY_ADD_DEVICE)
    with contextlib.suppress(Errno):  # pci_bus_add_device() only warns (bus.c:352-354)
        device_attach(k, vf)


def pci_iov_remove_virtfn(k: ModelKernel, pdev: PciDev, vf_id: int) -> None:
    """iov.c:355-382: pci_stop_and_remove_bus_device() unbinds the VF's driver
    and removes it from the bus and its IOMMU group."""
    vf = pdev.virtfns.pop(vf_id, None)
    if vf is None:
        return
    core = pci_core(k)
    device_release_driver(k, vf)
    bus_notify(k, vf, BUS_NOTIFY_DEL_DEVICE)
    iommu_group_remove_device(core, vf)
    core.devices.pop(vf.bdf, None)
    k.topology.functions.pop(vf.bdf, None)
    bus_notify(k, vf, BUS_NOTIFY_REMOVED_DEVICE)


def pci_enable_sriov(k: ModelKernel, pdev: PciDev, nr_virtfn: int) -> None:
    """sriov_enable() (iov.c:601-709).  The hardware always has the MMIO and bus
    numbers the VFs need."""
    if not pdev.is_physfn:
        raise Errno(errno.ENOSYS, cite("drivers/pci/iov.c", 1077))
    if nr_virtfn == 0:
        return
    if pdev.num_vfs:
        raise Errno(errno.EINVAL, cite("drivers/pci/iov.c", 617))
    if nr_virtfn < 0 or nr_virtfn > pdev.fn.sriov_totalvfs:
        raise Errno(errno.EINVAL, cite("drivers/pci/iov.c", 626))
    for i in range(nr_virtfn):
        pci_iov_add_virtfn(k, pdev, i)
    pdev.fn.sriov_numvfs = nr_virtfn  # iov.c:691


def pci_disable_sriov(k: ModelKernel, pdev: PciDev) -> None:
    """sriov_disable() (iov.c:720-741)."""
    if not pdev.num_vfs:
        return
    for i in range(pdev.num_vfs):
        pci_iov_remove_virtfn(k, pdev, i)
    pdev.fn.sriov_numvfs = 0


def pci_vfs_assigned(pdev: PciDev) -> bool:
    """pci_vfs_assigned(): VFs flagged PCI_DEV_FLAGS_ASSIGNED (only Xen's pciback
    and KVM's legacy assignment set it): never in the model."""
    return False


def pci_sriov_configure_simple(k: ModelKernel, pdev: PciDev, nr_virtfn: int) -> int:
    """iov.c:1210-1234."""
    if not pdev.is_physfn:
        raise Errno(errno.ENODEV, cite("drivers/pci/iov.c", 1217))
    if pci_vfs_assigned(pdev):
        raise Errno(errno.EPERM, cite("drivers/pci/iov.c", 1221))
    if nr_virtfn == 0:
        pci_disable_sriov(k, pdev)
        return 0
    pci_enable_sriov(k, pdev, nr_virtfn)
    return nr_virtfn


# -- sysfs ------------------------------------------------------------------------------

def sriov_numvfs_show(k: ModelKernel, m: re.Match[str]) -> str:
    pdev = sriov_pf(k, m)
    return f"{pdev.num_vfs}\n"  # iov.c:393-406


@sysfs_store
def sriov_numvfs_store(k: ModelKernel, m: re.Match[str], buf: str) -> None:
    """iov.c:415-481."""
    pdev = sriov_pf(k, m)
    try:
        num_vfs = kstrtou16(buf.split("\0", 1)[0])
    except Errno:
        raise Errno(errno.EINVAL, cite("drivers/pci/iov.c", 424)) from None
    if num_vfs > pdev.fn.sriov_totalvfs:
        raise Errno(errno.ERANGE, cite("drivers/pci/iov.c", 427))
    if num_vfs == pdev.num_vfs:
        return
    drv = pdev.driver
    if drv is None:
        raise Errno(errno.ENOENT, cite("drivers/pci/iov.c", 437))
    if not drv.has_sriov_configure:
        raise Errno(errno.ENOENT, cite("drivers/pci/iov.c", 444))
    if num_vfs == 0:
        drv.sriov_configure(k, pdev, 0)
        return
    if pdev.num_vfs:
        raise Errno(errno.EBUSY, cite("drivers/pci/iov.c", 460))
    drv.sriov_configure(k, pdev, num_vfs)


def sriov_pf(k: ModelKernel, m: re.Match[str]) -> PciDev:
    """The SR-IOV attributes are visible on PFs only (sriov_pf_attrs_are_visible, iov.c:556-562)."""
    pdev = sysfs_pci_dev(k, m)
    if not pdev.is_physfn:
        raise Errno(errno.ENOENT, "fs/sysfs")
    return pdev
