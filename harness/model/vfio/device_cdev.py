"""drivers/vfio/device_cdev.c: /dev/vfio/devices/vfioX, VFIO_DEVICE_BIND_IOMMUFD
and VFIO_DEVICE_{ATTACH,DETACH}_IOMMUFD_PT.

6.12 checks no VF token on this path: BIND never calls the driver's match(),
so a VF whose PF is on vfio-pci binds without one (fixed upstream in v6.17,
86624ba3b522).  The VF still counts as a PF token user once open."""

from __future__ import annotations

import errno
import re

from ...uapi import vfio as uv
from ..errors import Errno
from ..kernel import File, ModelKernel
from .group import vfio_device_block_group, vfio_device_unblock_group
from .vfio_main import (
    VfioDeviceFile,
    copy_to_user,
    get_struct,
    offsetofend,
    vfio_df_close,
    vfio_df_open,
    vfio_state,
)

CDEV_C = "drivers/vfio/device_cdev.c"


def vfio_device_fops_cdev_open(k: ModelKernel, m: re.Match[str]) -> File:
    """device_cdev.c:23-54: access is blocked until BIND_IOMMUFD."""
    index = int(m["n"])
    device = next((d for d in vfio_state(k).devices.values() if d.index == index), None)
    if device is None or device.refcount <= 0:
        raise Errno(errno.ENODEV, f"{CDEV_C}:32")
    device.refcount += 1  # vfio_device_try_get_registration()
    return VfioDeviceFile(device, None)


def vfio_df_ioctl_bind_iommufd(k: ModelKernel, df: VfioDeviceFile, arg: int) -> int:
    """device_cdev.c:63-139."""
    from ..iommufd import ctx_from_file

    if "VFIO_DEVICE_CDEV" not in k.facts.config:
        raise Errno(errno.ENOTTY, "drivers/vfio/vfio.h:407")
    device = df.device
    minsz = offsetofend(uv.vfio_device_bind_iommufd, "out_devid")
    bind = get_struct(k, uv.vfio_device_bind_iommufd, arg, minsz, f"{CDEV_C}:76")
    if bind.argsz < minsz or bind.flags or bind.iommufd < 0:
        raise Errno(errno.EINVAL, f"{CDEV_C}:79")
    if df.group is not None:
        raise Errno(errno.EINVAL, f"{CDEV_C}:83")
    vfio_device_block_group(device)
    try:
        if df.access_granted:
            raise Errno(errno.EINVAL, f"{CDEV_C}:92")
        f = k.files.get(bind.iommufd)
        if f is None:
            raise Errno(errno.EBADF, "drivers/iommu/iommufd/main.c:501")
        ictx = ctx_from_file(f)
        if ictx is None:
            raise Errno(errno.EBADFD, "drivers/iommu/iommufd/main.c:505")
        df.iommufd = ictx
        k.get_file(ictx)  # iommufd_ctx_from_fd()'s reference, put at unbind
        try:
            vfio_df_open(k, df)
            off = uv.vfio_device_bind_iommufd.offsetof("out_devid")
            try:
                copy_to_user(k, arg + off, (df.devid & 0xFFFFFFFF).to_bytes(4, "little"), f"{CDEV_C}:116")
            except Errno:
                vfio_df_close(k, df)
                raise
        except Errno:
            df.iommufd = None
            k.put_file(ictx)
            raise
    except Errno:
        vfio_device_unblock_group(device)
        raise
    device.cdev_opened = True
    df.access_granted = True
    return 0


def vfio_df_unbind_iommufd(k: ModelKernel, df: VfioDeviceFile) -> None:
    """device_cdev.c:141-160."""
    if not df.access_granted:
        return
    device = df.device
    vfio_df_close(k, df)
    if df.iommufd is not None:
        k.put_file(df.iommufd)
        df.iommufd = None
    device.cdev_opened = False
    vfio_device_unblock_group(device)


def vfio_df_ioctl_attach_pt(k: ModelKernel, df: VfioDeviceFile, arg: int) -> int:
    """device_cdev.c:162-196: the HWPT the device ended up on goes back in pt_id."""
    device = df.device
    minsz = offsetofend(uv.vfio_device_attach_iommufd_pt, "pt_id")
    attach = get_struct(k, uv.vfio_device_attach_iommufd_pt, arg, minsz, f"{CDEV_C}:173")
    if attach.argsz < minsz or attach.flags:
        raise Errno(errno.EINVAL, f"{CDEV_C}:176")
    attach.pt_id = device.attach_ioas(k, attach.pt_id)
    off = uv.vfio_device_attach_iommufd_pt.offsetof("pt_id")
    try:
        copy_to_user(k, arg + off, attach.pt_id.to_bytes(4, "little"), f"{CDEV_C}:184")
    except Errno:
        device.detach_ioas(k)
        raise
    return 0


def vfio_df_ioctl_detach_pt(k: ModelKernel, df: VfioDeviceFile, arg: int) -> int:
    """device_cdev.c:198-218."""
    minsz = offsetofend(uv.vfio_device_detach_iommufd_pt, "flags")
    detach = get_struct(k, uv.vfio_device_detach_iommufd_pt, arg, minsz, f"{CDEV_C}:208")
    if detach.argsz < minsz or detach.flags:
        raise Errno(errno.EINVAL, f"{CDEV_C}:211")
    df.device.detach_ioas(k)
    return 0

