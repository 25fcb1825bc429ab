"""drivers/vfio/device_cdev.c: /dev/vfio/devices/vfioX, VFIO_DEVICE_BIND_IOMMUFD
and VFIO_DEVICE_{ATTACH,DETACH}_IOMMUFD_PT.

6.12 checks no VF token on this path: BIND never calls the driver's match(),
so a VF whose PF is on vfio-pci binds without one (fixed upstream in v6.17,
86624ba3b522: VFIO_DEVICE_BIND_FLAG_TOKEN, version gate cdev-bind-token).  The VF
still counts as a PF token user once open."""

from __future__ import annotations

import ctypes
import errno
import re
from typing import Any

from ...uapi import vfio as uv
from ..errors import Errno, cite
from ..gates import CDEV_BIND_TOKEN, CDEV_PASID_ATTACH
from ..kernel import File, ModelKernel
from .group import vfio_device_block_group, vfio_device_unblock_group
from .vfio_main import (
    VfioDevice,
    VfioDeviceFile,
    copy_from_user,
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
        raise Errno(errno.ENODEV, cite(CDEV_C, 32))
    device.refcount += 1  # vfio_device_try_get_registration()
    return VfioDeviceFile(device, None)


def vfio_df_ioctl_bind_iommufd(k: ModelKernel, df: VfioDeviceFile, arg: int) -> int:
    """device_cdev.c:63-139."""
    from ..iommufd import ctx_from_file

    if "VFIO_DEVICE_CDEV" not in k.facts.config:
        raise Errno(errno.ENOTTY, cite("drivers/vfio/vfio.h", 407))
    device = df.device
    minsz = offsetofend(uv.vfio_device_bind_iommufd, "out_devid")
    token = k.since(CDEV_BIND_TOKEN)
    if token:
        # get_user(argsz), then copy_struct_from_user() of the whole 7.2 struct (:97-105@7.2)
        user_size = int.from_bytes(copy_from_user(k, arg, 4, cite(CDEV_C, 97, "7.2")), "little")
        if user_size < minsz:
            raise Errno(errno.EINVAL, cite(CDEV_C, 101, "7.2"))
        cls: Any = k.abi.STRUCTS["vfio_device_bind_iommufd"]
        bind = cls.from_buffer_copy(k.mm.copy_struct_from_user(ctypes.sizeof(cls), arg, user_size))
        if bind.iommufd < 0 or bind.flags & ~uv.VFIO_DEVICE_BIND_FLAG_TOKEN:
            raise Errno(errno.EINVAL, cite(CDEV_C, 107, "7.2"))
    else:
        bind = get_struct(k, uv.vfio_device_bind_iommufd, arg, minsz, cite(CDEV_C, 76))
        if bind.argsz < minsz or bind.flags or bind.iommufd < 0:
            raise Errno(errno.EINVAL, cite(CDEV_C, 79))
    if df.group is not None:
        raise Errno(errno.EINVAL, cite(CDEV_C, 111, "7.2") if token else cite(CDEV_C, 83))
    vfio_device_block_group(device)
    try:
        if df.access_granted:
            raise Errno(errno.EINVAL, cite(CDEV_C, 120, "7.2") if token else cite(CDEV_C, 92))
        if token:
            vfio_df_check_token(k, device, bind)
        f = k.files.get(bind.iommufd)
        if f is None:
            raise Errno(errno.EBADF, cite("drivers/iommu/iommufd/main.c", 501))
        ictx = ctx_from_file(f)
        if ictx is None:
            raise Errno(errno.EBADFD, cite("drivers/iommu/iommufd/main.c", 505))
        df.iommufd = ictx
        k.get_file(ictx)  # iommufd_ctx_from_fd()'s reference, put at unbind
        try:
            vfio_df_open(k, df)
            off = uv.vfio_device_bind_iommufd.offsetof("out_devid")
            try:
                copy_to_user(k, arg + off, (df.devid & 0xFFFFFFFF).to_bytes(4, "little"), cite(CDEV_C, 116))
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


def vfio_df_check_token(k: ModelKernel, device: VfioDevice, bind: Any) -> None:
    """:63-81@7.2: the driver's VF token check, with the token BIND_FLAG_TOKEN points at."""
    if not device.has_token_check:
        if bind.flags & uv.VFIO_DEVICE_BIND_FLAG_TOKEN:
            raise Errno(errno.EINVAL, cite(CDEV_C, 70, "7.2"))
        return
    uuid = None
    if bind.flags & uv.VFIO_DEVICE_BIND_FLAG_TOKEN:
        uuid = copy_from_user(k, bind.token_uuid_ptr, 16, cite(CDEV_C, 79, "7.2"))
    device.match_token_uuid(k, uuid)


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
    attach = get_struct(k, uv.vfio_device_attach_iommufd_pt, arg, minsz, cite(CDEV_C, 173))
    if k.since(CDEV_PASID_ATTACH):
        if attach.argsz < minsz or attach.flags & ~uv.VFIO_DEVICE_ATTACH_PASID:
            raise Errno(errno.EINVAL, cite(CDEV_C, 211, "7.2"))
        if attach.flags & uv.VFIO_DEVICE_ATTACH_PASID:
            pasid = _pasid(k, arg, "vfio_device_attach_iommufd_pt", attach.argsz,
                           cite(CDEV_C, 221, "7.2"), cite(CDEV_C, 224, "7.2"))
            raise Errno(errno.ENOSYS, f"not modelled: attaching PASID {pasid} "
                                      "(drivers/vfio/iommufd.c:185-208@7.2)")
    elif attach.argsz < minsz or attach.flags:
        raise Errno(errno.EINVAL, cite(CDEV_C, 176))
    attach.pt_id = device.attach_ioas(k, attach.pt_id)
    off = uv.vfio_device_attach_iommufd_pt.offsetof("pt_id")
    try:
        copy_to_user(k, arg + off, attach.pt_id.to_bytes(4, "little"), cite(CDEV_C, 184))
    except Errno:
        device.detach_ioas(k)
        raise
    return 0


def vfio_df_ioctl_detach_pt(k: ModelKernel, df: VfioDeviceFile, arg: int) -> int:
    """device_cdev.c:198-218."""
    minsz = offsetofend(uv.vfio_device_detach_iommufd_pt, "flags")
    detach = get_struct(k, uv.vfio_device_detach_iommufd_pt, arg, minsz, cite(CDEV_C, 208))
    if k.since(CDEV_PASID_ATTACH):
        if detach.argsz < minsz or detach.flags & ~uv.VFIO_DEVICE_DETACH_PASID:
            raise Errno(errno.EINVAL, cite(CDEV_C, 269, "7.2"))
        if detach.flags & uv.VFIO_DEVICE_DETACH_PASID:
            _pasid(k, arg, "vfio_device_detach_iommufd_pt", detach.argsz,
                   cite(CDEV_C, 279, "7.2"), cite(CDEV_C, 282, "7.2"))
            # vfio_iommufd_physical_pasid_detach_ioas(): no PASID of the model's devices is
            # ever attached (attaching is not modelled), so this is its no-op (iommufd.c:219-220@7.2)
            return 0
    elif detach.argsz < minsz or detach.flags:
        raise Errno(errno.EINVAL, cite(CDEV_C, 211))
    df.device.detach_ioas(k)
    return 0


def _pasid(k: ModelKernel, arg: int, struct: str, argsz: int, short: str, fault: str) -> int:
    """The pasid of an ATTACH/DETACH_PASID request (:213-228@7.2, :272-286@7.2): vfio-pci has the
    pasid ops, so argsz must reach past pasid."""
    cls: Any = k.abi.STRUCTS[struct]
    xend = cls.offsetof("pasid") + 4
    if argsz < xend:
        raise Errno(errno.EINVAL, short)
    return int.from_bytes(copy_from_user(k, arg + cls.offsetof("pasid"), 4, fault), "little")

