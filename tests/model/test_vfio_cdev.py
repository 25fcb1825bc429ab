"""/dev/vfio/devices/vfioX (drivers/vfio/device_cdev.c, vfio_main.c): binding to
an iommufd, attach/detach, and the exclusion with the group path."""

from __future__ import annotations

import errno

from test_vfio_util import Rig, bind_arg, status

from harness.model.pci.pci import pci_core
from harness.uapi import vfio as uv


def info(r: Rig, dev: int) -> object:
    return r.ioctl(dev, uv.VFIO_DEVICE_GET_INFO, uv.vfio_device_info(argsz=24))


def test_unbound_cdev_is_einval() -> None:
    r = Rig()
    dev = r.fd("/dev/vfio/devices/vfio0")
    # vfio_main.c:1280-1281: no access before BIND_IOMMUFD
    res = r.ioctl(dev, uv.VFIO_DEVICE_GET_INFO, uv.vfio_device_info(argsz=24))
    assert (res.errno, res.where) == (errno.EINVAL, "drivers/vfio/vfio_main.c:1281")
    assert r.b.read(dev, 4).errno == errno.EINVAL


def test_bind_argument_checks() -> None:
    r = Rig()
    iommufd = r.fd("/dev/iommu")
    dev = r.fd("/dev/vfio/devices/vfio0")
    # device_cdev.c:78-79
    assert r.ioctl(dev, uv.VFIO_DEVICE_BIND_IOMMUFD, bind_arg(iommufd, argsz=15)).errno == errno.EINVAL
    assert r.ioctl(dev, uv.VFIO_DEVICE_BIND_IOMMUFD, bind_arg(iommufd, flags=1)).errno == errno.EINVAL
    assert r.ioctl(dev, uv.VFIO_DEVICE_BIND_IOMMUFD, bind_arg(-1)).errno == errno.EINVAL
    # iommufd_ctx_from_fd(): EBADF / EBADFD (iommufd/main.c:495-509)
    assert r.ioctl(dev, uv.VFIO_DEVICE_BIND_IOMMUFD, bind_arg(77)).errno == errno.EBADF
    assert r.ioctl(dev, uv.VFIO_DEVICE_BIND_IOMMUFD, bind_arg(r.eventfd())).errno == errno.EBADFD
    # nothing held after the failures: the group can still be opened
    assert r.open("/dev/vfio/1").ok


def test_bind_attach_detach() -> None:
    r = Rig()
    iommufd, ioas, dev = r.cdev_device()
    assert info(r, dev).ok
    assert pci_core(r.k).groups[1].owner_cnt == 1
    # second bind on the same fd: EINVAL (device_cdev.c:91-93)
    res = r.ioctl(dev, uv.VFIO_DEVICE_BIND_IOMMUFD, bind_arg(iommufd))
    assert (res.errno, res.where) == (errno.EINVAL, "drivers/vfio/device_cdev.c:92")
    # ATTACH flags != 0: EINVAL (device_cdev.c:175-176); DETACH too (:210-211)
    att = uv.vfio_device_attach_iommufd_pt(argsz=12, flags=1, pt_id=ioas)
    assert r.ioctl(dev, uv.VFIO_DEVICE_ATTACH_IOMMUFD_PT, att).errno == errno.EINVAL
    det = uv.vfio_device_detach_iommufd_pt(argsz=8)
    assert r.ioctl(dev, uv.VFIO_DEVICE_DETACH_IOMMUFD_PT, det).ok
    assert r.ioctl(dev, uv.VFIO_DEVICE_DETACH_IOMMUFD_PT, uv.vfio_device_detach_iommufd_pt(argsz=7)).errno \
        == errno.EINVAL
    # an id that is no IOAS or HWPT
    bad = uv.vfio_device_attach_iommufd_pt(argsz=12, pt_id=0xFFFFFFFF)
    assert not r.ioctl(dev, uv.VFIO_DEVICE_ATTACH_IOMMUFD_PT, bad).ok
    r.close(dev)
    assert pci_core(r.k).groups[1].owner_cnt == 0


def test_attach_returns_hwpt_id() -> None:
    r = Rig()
    _, ioas, dev = r.cdev_device()
    res = r.ioctl(dev, uv.VFIO_DEVICE_ATTACH_IOMMUFD_PT, uv.vfio_device_attach_iommufd_pt(argsz=12, pt_id=ioas))
    # device_cdev.c:183: the (automatic) HWPT id replaces the IOAS id
    assert res.ok and res.s.pt_id not in (0, ioas)


def test_second_cdev_fd_bind_einval() -> None:
    r = Rig()
    iommufd, _, _ = r.cdev_device()
    dev2 = r.fd("/dev/vfio/devices/vfio0")
    # vfio_df_open(): a second open only through the group path (vfio_main.c:573-574)
    res = r.ioctl(dev2, uv.VFIO_DEVICE_BIND_IOMMUFD, bind_arg(iommufd))
    assert (res.errno, res.where) == (errno.EINVAL, "drivers/vfio/vfio_main.c:574")


def test_group_open_then_cdev_bind_ebusy() -> None:
    r = Rig()
    iommufd = r.fd("/dev/iommu")
    r.fd("/dev/vfio/1")
    # docs/measured.md: the cdev open succeeds; BIND fails in vfio_device_block_group()
    dev = r.fd("/dev/vfio/devices/vfio0")
    res = r.ioctl(dev, uv.VFIO_DEVICE_BIND_IOMMUFD, bind_arg(iommufd))
    assert (res.errno, res.where) == (errno.EBUSY, "drivers/vfio/group.c:418")


def test_cdev_bind_then_group_open_ebusy() -> None:
    r = Rig()
    _, _, dev = r.cdev_device()
    # group.c:460-461: cdev_device_open_cnt blocks the group open
    res = r.open("/dev/vfio/1")
    assert (res.errno, res.where) == (errno.EBUSY, "drivers/vfio/group.c:461")
    r.close(dev)
    assert r.open("/dev/vfio/1").ok


def test_unbound_cdev_does_not_block_group() -> None:
    r = Rig()
    r.fd("/dev/vfio/devices/vfio0")
    assert r.open("/dev/vfio/1").ok


def test_cdev_bind_on_nonviable_group_eperm() -> None:
    r = Rig()
    iommufd = r.fd("/dev/iommu")
    dev = r.fd("/dev/vfio/devices/vfio2")  # 00:1f.0, group 3 with ahci and i801_smbus
    res = r.ioctl(dev, uv.VFIO_DEVICE_BIND_IOMMUFD, bind_arg(iommufd))
    assert (res.errno, res.where) == (errno.EPERM, "drivers/iommu/iommu.c:3258")
    # the failed bind unblocked the group (device_cdev.c:137)
    gfd = r.fd("/dev/vfio/3")
    assert status(r, gfd).s.flags == 0


def test_two_iommufds_one_group() -> None:
    # Two functions in one group (vfio-pci both) bound to different iommufds:
    # the second is EPERM (iommu.c:3257-3260).
    r = Rig()
    for bdf, drv in (("0000:00:1f.2", "ahci"), ("0000:00:1f.3", "i801_smbus")):
        assert r.write(f"/sys/bus/pci/drivers/{drv}/unbind", bdf).ok
    assert r.write("/sys/bus/pci/devices/0000:00:1f.2/driver_override", "vfio-pci").ok
    assert r.write("/sys/bus/pci/drivers_probe", "0000:00:1f.2").ok
    a, b = r.fd("/dev/iommu"), r.fd("/dev/iommu")
    d1 = r.fd("/dev/vfio/devices/vfio2")
    d2 = r.fd(f"/dev/vfio/devices/{r.k.topology.functions['0000:00:1f.2'].cdev}")
    assert r.ioctl(d1, uv.VFIO_DEVICE_BIND_IOMMUFD, bind_arg(a)).ok
    assert r.ioctl(d2, uv.VFIO_DEVICE_BIND_IOMMUFD, bind_arg(b)).errno == errno.EPERM
    # the same iommufd shares the ownership
    assert r.ioctl(d2, uv.VFIO_DEVICE_BIND_IOMMUFD, bind_arg(a)).ok
    assert pci_core(r.k).groups[3].owner_cnt == 2


def test_cdev_only_ioctls_on_group_fd() -> None:
    r = Rig()
    iommufd = r.fd("/dev/iommu")
    _, _, dev = r.legacy_device()
    # BIND on a group-path fd: EINVAL (device_cdev.c:82-83)
    res = r.ioctl(dev, uv.VFIO_DEVICE_BIND_IOMMUFD, bind_arg(iommufd))
    assert (res.errno, res.where) == (errno.EINVAL, "drivers/vfio/device_cdev.c:83")
    # ATTACH on a group-path fd reaches vfio_pci_core_ioctl(): ENOTTY (vfio_pci_core.c:1516)
    att = uv.vfio_device_attach_iommufd_pt(argsz=12, pt_id=1)
    assert r.ioctl(dev, uv.VFIO_DEVICE_ATTACH_IOMMUFD_PT, att).errno == errno.ENOTTY


def test_cdev_without_config() -> None:
    from harness.model.topologies import DEFAULT_CONFIG

    r = Rig(config=DEFAULT_CONFIG - {"VFIO_DEVICE_CDEV"})
    assert not r.b.path_exists("/dev/vfio/devices/vfio0")
    _, _, dev = r.legacy_device()
    # vfio.h:404-408: the stub BIND is ENOTTY
    assert r.ioctl(dev, uv.VFIO_DEVICE_BIND_IOMMUFD, bind_arg(3)).errno == errno.ENOTTY


def test_iommufd_owner_survives_device_close_order() -> None:
    r = Rig()
    iommufd, _, dev = r.cdev_device()
    r.close(iommufd)
    # the bound device holds the context (iommufd_ctx_from_fd's reference)
    assert r.ioctl(dev, uv.VFIO_DEVICE_GET_INFO, uv.vfio_device_info(argsz=24)).ok
    r.close(dev)
    assert pci_core(r.k).groups[1].owner_cnt == 0

