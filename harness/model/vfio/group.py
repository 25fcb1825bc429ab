"""drivers/vfio/group.c: /dev/vfio/$GROUP, its ioctls (GET_STATUS, SET_CONTAINER,
UNSET_CONTAINER, GET_DEVICE_FD) and the exclusion between the group path and the
cdev path."""

from __future__ import annotations

import errno
import re
from typing import TYPE_CHECKING

from ...uapi import vfio as uv
from ..errors import Errno, cite
from ..kernel import File, ModelKernel
from .vfio_main import (
    PAGE_SIZE,
    VfioDevice,
    VfioDeviceFile,
    get_struct,
    offsetofend,
    put_struct,
    vfio_df_close,
    vfio_df_open,
    vfio_state,
)

if TYPE_CHECKING:
    from ..iommu.iommu import IommuGroup
    from ..iommufd import IommufdCtx
    from .container import VfioContainer

GROUP_C = "drivers/vfio/group.c"


class VfioGroup:
    """struct vfio_group (drivers/vfio/vfio.h:70-97), of type VFIO_IOMMU, or VFIO_NO_IOMMU
    (``noiommu``: a group vfio made for a device without an IOMMU)."""

    def __init__(self, iommu_group: IommuGroup, noiommu: bool = False):
        self.iommu_group: IommuGroup | None = iommu_group
        self.noiommu = noiommu
        self.id = iommu_group.id
        self.device_list: list[VfioDevice] = []  # newest first (list_add)
        self.drivers = 1
        self.opened_file: VfioGroupFile | None = None
        self.container: VfioContainer | None = None
        self.container_users = 0
        self.iommufd: IommufdCtx | None = None
        self.cdev_device_open_cnt = 0

    def has_iommu(self) -> bool:
        """vfio_group_has_iommu() (group.c:58-68)."""
        return self.container is not None or self.iommufd is not None

    def __repr__(self) -> str:
        return f"VfioGroup({self.id})"


class VfioGroupFile(File):
    kind = "group"

    def __init__(self, group: VfioGroup):
        self.group = group

    def ioctl(self, k: ModelKernel, cmd: int, arg: int) -> int:
        """vfio_group_fops_unl_ioctl() (group.c:391-409)."""
        group = self.group
        if cmd == uv.VFIO_GROUP_GET_DEVICE_FD:
            return vfio_group_ioctl_get_device_fd(k, group, arg)
        if cmd == uv.VFIO_GROUP_GET_STATUS:
            return vfio_group_ioctl_get_status(k, group, arg)
        if cmd == uv.VFIO_GROUP_SET_CONTAINER:
            return vfio_group_ioctl_set_container(k, group, arg)
        if cmd == uv.VFIO_GROUP_UNSET_CONTAINER:
            return vfio_group_ioctl_unset_container(k, group)
        raise Errno(errno.ENOTTY, cite(GROUP_C, 407))

    def release(self, k: ModelKernel) -> None:
        """vfio_group_fops_release() (group.c:480-501): device fds hold the group
        file (legacy container), so no device is open here."""
        from .container import vfio_group_detach_container

        group = self.group
        if group.container is not None:
            vfio_group_detach_container(k, group)
        if group.iommufd is not None:
            k.put_file(group.iommufd)
            group.iommufd = None
        group.opened_file = None


def vfio_group_fops_open(k: ModelKernel, m: re.Match[str]) -> File:
    """group.c:438-478 (a noiommu group needs CAP_SYS_RAWIO, group.c:455: the agent is root)."""
    group = vfio_state(k).groups[int(m["n"])]
    if group.drivers == 0:
        raise Errno(errno.ENODEV, cite(GROUP_C, 451))
    if group.cdev_device_open_cnt:
        raise Errno(errno.EBUSY, cite(GROUP_C, 461))
    if group.opened_file is not None:
        raise Errno(errno.EBUSY, cite(GROUP_C, 469))
    f = VfioGroupFile(group)
    group.opened_file = f
    return f


def vfio_group_ioctl_unset_container(k: ModelKernel, group: VfioGroup) -> int:
    """group.c:76-100."""
    from .container import vfio_group_detach_container

    if not group.has_iommu():
        raise Errno(errno.EINVAL, cite(GROUP_C, 82))
    if group.container is not None:
        if group.container_users != 1:
            raise Errno(errno.EBUSY, cite(GROUP_C, 87))
        vfio_group_detach_container(k, group)
    if group.iommufd is not None:
        k.put_file(group.iommufd)
        group.iommufd = None
    return 0


def vfio_group_ioctl_set_container(k: ModelKernel, group: VfioGroup, arg: int) -> int:
    """group.c:102-158."""
    from ..iommufd import ctx_from_file
    from .container import vfio_container_attach_group, vfio_container_from_file

    try:
        fd = k.mm.get_user_s32(arg)
    except Errno:
        raise Errno(errno.EFAULT, cite(GROUP_C, 112)) from None
    f = k.files.get(fd)
    if f is None:
        raise Errno(errno.EBADF, cite(GROUP_C, 116))
    if group.has_iommu():
        raise Errno(errno.EINVAL, cite(GROUP_C, 120))
    if group.iommu_group is None:
        raise Errno(errno.ENODEV, cite(GROUP_C, 124))
    container = vfio_container_from_file(f)
    if container is not None:
        vfio_container_attach_group(k, container, group)
        return 0
    ictx = ctx_from_file(f)
    if ictx is not None:
        if group.noiommu:
            ictx.vfio_compat_set_no_iommu()  # group.c:136-138
        else:
            ictx.vfio_compat_ioas_create()  # group.c:140
        k.get_file(ictx)
        group.iommufd = ictx
        return 0
    raise Errno(errno.EBADFD, cite(GROUP_C, 152))


def vfio_group_ioctl_get_status(k: ModelKernel, group: VfioGroup, arg: int) -> int:
    """group.c:352-389."""
    minsz = offsetofend(uv.vfio_group_status, "flags")
    status = get_struct(k, uv.vfio_group_status, arg, minsz, cite(GROUP_C, 359))
    if status.argsz < minsz:
        raise Errno(errno.EINVAL, cite(GROUP_C, 362))
    status.flags = 0
    if group.iommu_group is None:
        raise Errno(errno.ENODEV, cite(GROUP_C, 369))
    if group.has_iommu():
        status.flags |= uv.VFIO_GROUP_FLAGS_CONTAINER_SET | uv.VFIO_GROUP_FLAGS_VIABLE
    elif not group.iommu_group.dma_owner_claimed():
        status.flags |= uv.VFIO_GROUP_FLAGS_VIABLE
    put_struct(k, status, arg, minsz, cite(GROUP_C, 387))
    return 0


def strndup_user(k: ModelKernel, addr: int, n: int) -> str:
    """mm/util.c:272-290 with strnlen_user(): EFAULT when a byte before the NUL
    faults, EINVAL when there is no NUL in the first ``n`` bytes."""
    out = bytearray()
    for i in range(n):
        m = k.mm.lookup(addr + i)
        if m is None:
            raise Errno(errno.EFAULT, cite("mm/util.c", 280))
        c = m.data[addr + i - m.start]
        if c == 0:
            return out.decode("latin-1")
        out.append(c)
    raise Errno(errno.EINVAL, cite("mm/util.c", 283))


def vfio_device_get_from_name(k: ModelKernel, group: VfioGroup, buf: str) -> VfioDevice:
    """group.c:26-53: the first device whose match() claims the name; a match
    error ends the search with that error."""
    for it in group.device_list:
        ret = it.match(k, buf)
        if ret and it.refcount > 0:
            return it
    raise Errno(errno.ENODEV, cite(GROUP_C, 29))


def vfio_df_group_open(k: ModelKernel, df: VfioDeviceFile) -> None:
    """group.c:167-233."""
    from . import iommufd

    device = df.device
    group = device.group
    assert group is not None
    if not group.has_iommu():
        raise Errno(errno.EINVAL, cite(GROUP_C, 174))
    df.iommufd = group.iommufd
    # A noiommu device's first open needs no compat IOAS: the user would expect translation
    # (the caller has CAP_SYS_RAWIO).
    if (df.iommufd is not None and group.noiommu and device.open_count == 0
            and iommufd.vfio_iommufd_device_has_compat_ioas(device, df.iommufd)):
        df.iommufd = None
        raise Errno(errno.EPERM, cite(GROUP_C, 198))
    try:
        vfio_df_open(k, df)
    except Errno:
        df.iommufd = None
        raise
    if df.iommufd is not None and device.open_count == 1:
        try:
            iommufd.vfio_iommufd_compat_attach_ioas(k, device, df.iommufd)
        except Errno:
            vfio_df_close(k, df)
            df.iommufd = None
            raise
    df.access_granted = True


def vfio_df_group_close(k: ModelKernel, df: VfioDeviceFile) -> None:
    """group.c:235-250."""
    vfio_df_close(k, df)
    df.iommufd = None


def vfio_group_ioctl_get_device_fd(k: ModelKernel, group: VfioGroup, arg: int) -> int:
    """group.c:312-350."""
    buf = strndup_user(k, arg, PAGE_SIZE)
    device = vfio_device_get_from_name(k, group, buf)
    device.refcount += 1  # vfio_device_try_get_registration()
    df = VfioDeviceFile(device, device.group)
    try:
        vfio_df_group_open(k, df)
    except Errno:
        device.refcount -= 1
        raise
    return k.install_fd(df)


# -- the device's group (group.c:581-815) ------------------------------------------------

def vfio_noiommu_group_alloc(k: ModelKernel, device: VfioDevice) -> VfioGroup:
    """group.c:617-650: a new IOMMU group named vfio-noiommu (the lowest free id) with the
    device in it, and its VFIO_NO_IOMMU vfio_group, /dev/vfio/noiommu-$ID (group.c:594-596)."""
    from ..iommu.iommu import iommu_group_add_device, iommu_group_alloc
    from ..pci.pci import pci_core

    iommu_group = iommu_group_alloc(pci_core(k))  # group.c:624
    pdev = device.dev
    pdev.group = iommu_group
    iommu_group_add_device(iommu_group, pdev)     # group.c:631
    pdev.fn.iommu_group, pdev.fn.noiommu = iommu_group.id, True
    group = vfio_state(k).groups[iommu_group.id] = VfioGroup(iommu_group, noiommu=True)
    return group


def vfio_device_set_group(k: ModelKernel, device: VfioDevice) -> None:
    """vfio_group_find_or_alloc() (group.c:667-706): a device without an IOMMU group gets
    a noiommu one in no-IOMMU mode (group.c:673-686, which taints the kernel); without
    that mode it is EINVAL."""
    iommu_group = device.dev.group
    if iommu_group is None and vfio_state(k).noiommu:
        device.group = vfio_noiommu_group_alloc(k, device)
        return
    if iommu_group is None:
        raise Errno(errno.EINVAL, cite(GROUP_C, 689))
    groups = vfio_state(k).groups
    group = groups.get(iommu_group.id)
    if group is not None and group.iommu_group is iommu_group:
        group.drivers += 1
    else:
        group = groups[iommu_group.id] = VfioGroup(iommu_group)
    device.group = group


def vfio_device_remove_group(k: ModelKernel, device: VfioDevice) -> None:
    """group.c:726-771: the last device's removal takes the group off the list
    and revokes its users: the container is detached and the IOMMU group cleared,
    so a group fd still open answers ENODEV."""
    from .container import vfio_group_detach_container

    group = device.group
    if group is None:
        return
    if group.noiommu:  # group.c:731-732
        from ..iommu.iommu import iommu_group_remove_device
        from ..pci.pci import pci_core

        iommu_group_remove_device(pci_core(k), device.dev)
        device.dev.group = None
        device.dev.fn.iommu_group, device.dev.fn.noiommu = None, False
    group.drivers -= 1
    if group.drivers:
        return
    groups = vfio_state(k).groups
    if groups.get(group.id) is group:
        del groups[group.id]
    if group.container is not None:
        vfio_group_detach_container(k, group)
    group.iommu_group = None


def vfio_device_group_register(device: VfioDevice) -> None:
    assert device.group is not None
    device.group.device_list.insert(0, device)  # group.c:776 list_add


def vfio_device_group_unregister(device: VfioDevice) -> None:
    if device.group is not None and device in device.group.device_list:
        device.group.device_list.remove(device)


def vfio_device_group_use_iommu(k: ModelKernel, device: VfioDevice) -> None:
    """group.c:787-802 -> vfio_group_use_container() (container.c:503-520): the
    device holds the group file while it is open."""
    from .container import vfio_group_use_container

    group = device.group
    assert group is not None
    if group.container is None:
        raise Errno(errno.EINVAL, cite(GROUP_C, 795))
    vfio_group_use_container(k, group)


def vfio_device_group_unuse_iommu(k: ModelKernel, device: VfioDevice) -> None:
    """group.c:804-815."""
    from .container import vfio_group_unuse_container

    group = device.group
    if group is None or group.container is None:
        return
    vfio_group_unuse_container(k, group)


def vfio_device_block_group(device: VfioDevice) -> None:
    """group.c:411-427: a cdev bind keeps the group file from being opened."""
    group = device.group
    assert group is not None
    if group.opened_file is not None:
        raise Errno(errno.EBUSY, cite(GROUP_C, 418))
    group.cdev_device_open_cnt += 1


def vfio_device_unblock_group(device: VfioDevice) -> None:
    """group.c:429-436."""
    if device.group is not None:
        device.group.cdev_device_open_cnt -= 1


def vfio_group_from_file(f: File) -> VfioGroup | None:
    """group.c:822-829."""
    return f.group if isinstance(f, VfioGroupFile) else None


def vfio_file_has_dev(f: File, device: VfioDevice) -> bool:
    """group.c:907-916."""
    group = vfio_group_from_file(f)
    return group is not None and group is device.group


def install_group_nodes(k: ModelKernel) -> None:
    """/dev/vfio/$GROUP: present while a vfio_group exists for the IOMMU group
    (from the first vfio-pci bind of a member to the last unbind)."""

    def exists(k: ModelKernel, m: re.Match[str]) -> bool:
        group = vfio_state(k).groups.get(int(m["n"]))
        return group is not None and group.noiommu == bool(m["noiommu"])

    k.register_node(r"/dev/vfio/(?P<noiommu>noiommu-)?(?P<n>0|[1-9][0-9]*)", vfio_group_fops_open, exists)

