"""drivers/vfio/iommufd.c: a VFIO device bound to an iommufd (the cdev path, or
the group path with an iommufd as the container), through the iommufd API of
harness.model.iommufd."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from ..errors import Errno, cite
from ..kernel import ModelKernel

if TYPE_CHECKING:
    from ..iommufd import IommufdCtx
    from .vfio_main import VfioDevice, VfioDeviceFile

IOMMUFD_C = "drivers/vfio/iommufd.c"


def vfio_device_is_noiommu(vdev: VfioDevice) -> bool:
    """vfio.h:116-120."""
    return vdev.group is not None and vdev.group.noiommu


def vfio_iommufd_device_has_compat_ioas(vdev: VfioDevice, ictx: IommufdCtx) -> bool:
    """iommufd.c:13-19."""
    try:
        ictx.vfio_compat_ioas_get_id()
    except Errno:
        return False
    return True


def vfio_df_iommufd_bind(k: ModelKernel, df: VfioDeviceFile) -> None:
    """iommufd.c:21-33: a noiommu device binds to nothing (iommufd.c:28-30)."""
    assert df.iommufd is not None
    if vfio_device_is_noiommu(df.device):
        return
    df.devid = df.device.bind_iommufd(k, df.iommufd)


def vfio_df_iommufd_unbind(k: ModelKernel, df: VfioDeviceFile) -> None:
    """iommufd.c:55-66 (nothing for a noiommu device, iommufd.c:61-62)."""
    if vfio_device_is_noiommu(df.device):
        return
    df.device.unbind_iommufd(k)


def vfio_iommufd_compat_attach_ioas(k: ModelKernel, vdev: VfioDevice, ictx: IommufdCtx) -> None:
    """iommufd.c:35-53: the group path attaches to the compat IOAS and cannot
    tell the user the HWPT id; a noiommu device attaches to nothing (iommufd.c:43-45)."""
    if vfio_device_is_noiommu(vdev):
        return
    ioas_id = ictx.vfio_compat_ioas_get_id()  # ENODEV without a compat IOAS
    vdev.attach_ioas(k, ioas_id)


def vfio_iommufd_device_ictx(vdev: VfioDevice) -> IommufdCtx | None:
    """iommufd.c:68-74."""
    return vdev.iommufd_device.ictx if vdev.iommufd_device is not None else None


def vfio_iommufd_get_dev_id(vdev: VfioDevice, ictx: IommufdCtx) -> int:
    """iommufd.c:89-110: the devid when ``ictx`` owns the device, -ENOENT when it
    owns the group but not this device, -ENODEV otherwise."""
    if vfio_iommufd_device_ictx(vdev) is ictx:
        assert vdev.iommufd_device is not None
        return vdev.iommufd_device.id
    group = vdev.iommu_group
    if group is None:
        return -errno.ENODEV
    return -errno.ENOENT if ictx.has_group(group) else -errno.ENODEV


# -- the physical-device ops (iommufd.c:117-173) ---------------------------------------

def vfio_iommufd_physical_bind(k: ModelKernel, vdev: VfioDevice, ictx: IommufdCtx) -> int:
    """iommufd_device_bind() claims the group's DMA ownership for ``ictx``."""
    idev = ictx.device_bind(k, vdev)
    vdev.iommufd_device = idev
    return idev.id


def vfio_iommufd_physical_unbind(k: ModelKernel, vdev: VfioDevice) -> None:
    idev = vdev.iommufd_device
    if idev is None:
        return
    if vdev.iommufd_attached:
        idev.detach(k)
        vdev.iommufd_attached = False
    idev.unbind(k)
    vdev.iommufd_device = None


def vfio_iommufd_physical_attach_ioas(k: ModelKernel, vdev: VfioDevice, pt_id: int) -> int:
    """Attach, or replace when already attached; returns the HWPT id."""
    idev = vdev.iommufd_device
    if idev is None:
        raise Errno(errno.EINVAL, cite(IOMMUFD_C, 150))
    pt_id = idev.replace(k, pt_id) if vdev.iommufd_attached else idev.attach(k, pt_id)
    vdev.iommufd_attached = True
    return pt_id


def vfio_iommufd_physical_detach_ioas(k: ModelKernel, vdev: VfioDevice) -> None:
    idev = vdev.iommufd_device
    if idev is None or not vdev.iommufd_attached:
        return
    idev.detach(k)
    vdev.iommufd_attached = False
