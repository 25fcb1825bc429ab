"""/dev/vfio/$GROUP (drivers/vfio/group.c): viability, SET/UNSET_CONTAINER with a
legacy container or an iommufd, GET_DEVICE_FD, and the group file's lifetime."""

from __future__ import annotations

import ctypes
import errno

from test_vfio_util import E1000, LPC, NVME, Rig, status

from harness.model.pci.pci import pci_core
from harness.uapi import vfio as uv

VIABLE = uv.VFIO_GROUP_FLAGS_VIABLE
SET = uv.VFIO_GROUP_FLAGS_CONTAINER_SET


def set_container(r: Rig, gfd: int, fd: int) -> object:
    return r.ioctl(gfd, uv.VFIO_GROUP_SET_CONTAINER, ctypes.c_int32(fd))


def test_nodes() -> None:
    r = Rig()
    # a group node exists while a member is on vfio-pci (group 0: host bridge, no driver)
    assert r.b.path_exists("/dev/vfio/1")
    assert not r.b.path_exists("/dev/vfio/0")
    assert r.open("/dev/vfio/0").errno == errno.ENOENT
    assert r.b.path_exists("/dev/vfio/vfio")


def test_viability_isolated_vs_shared_group() -> None:
    r = Rig()
    # group.c:382-383: viable iff owner_cnt == 0; the e1000 group has no kernel
    # driver, group 3 has ahci and i801_smbus (pci-driver.c:1686-1689)
    assert status(r, r.fd("/dev/vfio/1")).s.flags == VIABLE
    assert status(r, r.fd("/dev/vfio/3")).s.flags == 0


def test_get_status_argsz_short() -> None:
    r = Rig()
    res = r.ioctl(r.fd("/dev/vfio/1"), uv.VFIO_GROUP_GET_STATUS, uv.vfio_group_status(argsz=7))
    assert (res.errno, res.where) == (errno.EINVAL, "drivers/vfio/group.c:362")


def test_group_open_twice_ebusy() -> None:
    r = Rig()
    r.fd("/dev/vfio/1")
    res = r.open("/dev/vfio/1")
    assert (res.errno, res.where) == (errno.EBUSY, "drivers/vfio/group.c:469")


def test_legacy_set_container_on_nonviable_group_eperm() -> None:
    r = Rig()
    container = r.fd("/dev/vfio/vfio")
    gfd = r.fd("/dev/vfio/3")
    # iommu_group_claim_dma_owner(): any owner_cnt -> EPERM (iommu.c:3222-3224, container.c:437)
    res = set_container(r, gfd, container)
    assert (res.errno, res.where) == (errno.EPERM, "drivers/iommu/iommu.c:3223")
    assert status(r, gfd).s.flags == 0


def test_set_container_flags_and_errors() -> None:
    r = Rig()
    container = r.fd("/dev/vfio/vfio")
    gfd = r.fd("/dev/vfio/1")
    # bad fd: EBADF (group.c:115-116); a file of the wrong type: EBADFD (:152)
    assert set_container(r, gfd, 99).errno == errno.EBADF
    efd = r.eventfd()
    assert set_container(r, gfd, efd).errno == errno.EBADFD
    assert set_container(r, gfd, container).ok
    # group.c:379-381
    assert status(r, gfd).s.flags == VIABLE | SET
    assert pci_core(r.k).groups[1].owner_cnt == 1
    # set twice: EINVAL (group.c:119-121)
    res = set_container(r, gfd, container)
    assert (res.errno, res.where) == (errno.EINVAL, "drivers/vfio/group.c:120")
    # a bad pointer: EFAULT (group.c:111-112)
    assert r.ioctl(gfd, uv.VFIO_GROUP_SET_CONTAINER, 0).errno == errno.EFAULT


def test_unset_container() -> None:
    r = Rig()
    gfd = r.fd("/dev/vfio/1")
    # nothing set: EINVAL (group.c:81-83)
    assert r.ioctl(gfd, uv.VFIO_GROUP_UNSET_CONTAINER).errno == errno.EINVAL
    container = r.fd("/dev/vfio/vfio")
    assert set_container(r, gfd, container).ok
    assert r.ioctl(gfd, uv.VFIO_GROUP_UNSET_CONTAINER).ok
    assert status(r, gfd).s.flags == VIABLE
    assert pci_core(r.k).groups[1].owner_cnt == 0  # iommu_group_release_dma_owner()


def test_unset_container_with_device_open_ebusy() -> None:
    r = Rig()
    _, gfd, dev = r.legacy_device()
    res = r.ioctl(gfd, uv.VFIO_GROUP_UNSET_CONTAINER)
    assert (res.errno, res.where) == (errno.EBUSY, "drivers/vfio/group.c:87")
    r.close(dev)
    assert r.ioctl(gfd, uv.VFIO_GROUP_UNSET_CONTAINER).ok


def test_get_device_fd_rules() -> None:
    r = Rig()
    gfd = r.fd("/dev/vfio/1")
    name = E1000.encode() + b"\0"
    # before SET_CONTAINER: EINVAL (group.c:173-175)
    res = r.ioctl(gfd, uv.VFIO_GROUP_GET_DEVICE_FD, name)
    assert (res.errno, res.where) == (errno.EINVAL, "drivers/vfio/group.c:174")
    container = r.fd("/dev/vfio/vfio")
    assert set_container(r, gfd, container).ok
    # legacy container before VFIO_SET_IOMMU: EINVAL (container.c:511-512)
    res = r.ioctl(gfd, uv.VFIO_GROUP_GET_DEVICE_FD, name)
    assert (res.errno, res.where) == (errno.EINVAL, "drivers/vfio/container.c:512")
    assert r.ioctl(container, uv.VFIO_SET_IOMMU, uv.VFIO_TYPE1v2_IOMMU).ok
    # unknown name: ENODEV (group.c:28-29); another group's device too
    assert r.ioctl(gfd, uv.VFIO_GROUP_GET_DEVICE_FD, NVME.encode() + b"\0").errno == errno.ENODEV
    assert r.ioctl(gfd, uv.VFIO_GROUP_GET_DEVICE_FD, (E1000 + "x").encode() + b"\0").errno == errno.ENODEV
    # no NUL within PAGE_SIZE: EINVAL; bad pointer: EFAULT (mm/util.c:280-283)
    assert r.ioctl(gfd, uv.VFIO_GROUP_GET_DEVICE_FD, b"a" * 4096).errno == errno.EINVAL
    assert r.ioctl(gfd, uv.VFIO_GROUP_GET_DEVICE_FD, 0).errno == errno.EFAULT
    # twice through the group path: allowed (vfio_main.c:573-582)
    first = r.ioctl(gfd, uv.VFIO_GROUP_GET_DEVICE_FD, name)
    second = r.ioctl(gfd, uv.VFIO_GROUP_GET_DEVICE_FD, name)
    assert first.ok and second.ok and first.ret != second.ret


def test_device_fd_keeps_group_file() -> None:
    r = Rig()
    _, gfd, dev = r.legacy_device()
    r.close(gfd)
    # vfio_group_use_container() took a reference on the group file
    # (container.c:517): the group stays opened and owned
    assert r.open("/dev/vfio/1").errno == errno.EBUSY
    assert pci_core(r.k).groups[1].owner_cnt == 1
    r.close(dev)
    assert pci_core(r.k).groups[1].owner_cnt == 0
    assert r.open("/dev/vfio/1").ok


def test_iommufd_as_container() -> None:
    r = Rig()
    iommufd = r.fd("/dev/iommu")
    gfd = r.fd("/dev/vfio/1")
    assert set_container(r, gfd, iommufd).ok
    assert status(r, gfd).s.flags == VIABLE | SET
    # ownership is claimed per device at open, not at SET_CONTAINER (group.c:372-378)
    assert pci_core(r.k).groups[1].owner_cnt == 0
    dev = r.ioctl(gfd, uv.VFIO_GROUP_GET_DEVICE_FD, E1000.encode() + b"\0")
    assert dev.ok, dev
    assert pci_core(r.k).groups[1].owner_cnt == 1
    # the iommufd path keeps no group file reference: UNSET works with the device open
    assert r.ioctl(gfd, uv.VFIO_GROUP_UNSET_CONTAINER).ok
    r.close(dev.ret)
    assert pci_core(r.k).groups[1].owner_cnt == 0


def test_iommufd_nonviable_group_reports_viable_but_open_eperm() -> None:
    r = Rig()
    iommufd = r.fd("/dev/iommu")
    gfd = r.fd("/dev/vfio/3")
    assert set_container(r, gfd, iommufd).ok
    # group.c:379-381: CONTAINER_SET implies VIABLE
    assert status(r, gfd).s.flags == VIABLE | SET
    # iommu_device_claim_dma_owner(): owner NULL != ictx -> EPERM (iommu.c:3257-3260)
    res = r.ioctl(gfd, uv.VFIO_GROUP_GET_DEVICE_FD, LPC.encode() + b"\0")
    assert (res.errno, res.where) == (errno.EPERM, "drivers/iommu/iommu.c:3258")


def test_unknown_group_ioctl_enotty() -> None:
    r = Rig()
    res = r.ioctl(r.fd("/dev/vfio/1"), uv.VFIO_DEVICE_GET_INFO, 0)
    assert (res.errno, res.where) == (errno.ENOTTY, "drivers/vfio/group.c:407")
