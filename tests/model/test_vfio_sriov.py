"""VF tokens (drivers/vfio/pci/vfio_pci_core.c:1868-2005, uapi-notes §6.3) on the
NVMe PF with two VFs from vfio-pci's own sriov_configure: the VFs are
00:03.1 and 00:03.2, each in a new IOMMU group."""

from __future__ import annotations

import ctypes
import errno
import struct
import uuid

from test_vfio_util import E1000, NVME, OTHER_TOKEN, TOKEN, Rig, bind_arg

from harness.uapi import vfio as uv

CORE = "drivers/vfio/pci/vfio_pci_core.c"
VF0, VF1 = "0000:00:03.1", "0000:00:03.2"


class Sriov:
    """A legacy container holding the PF's and both VFs' groups."""

    def __init__(self, r: Rig):
        self.r = r
        r.enable_vfs(2)
        topo = r.b.topology()
        self.container = r.fd("/dev/vfio/vfio")
        self.groups: dict[str, int] = {}
        for bdf in (NVME, VF0, VF1):
            g = r.fd(f"/dev/vfio/{topo.functions[bdf].iommu_group}")
            assert r.ioctl(g, uv.VFIO_GROUP_SET_CONTAINER, ctypes.c_int32(self.container)).ok
            self.groups[bdf] = g
        assert r.ioctl(self.container, uv.VFIO_SET_IOMMU, uv.VFIO_TYPE1v2_IOMMU).ok

    def open(self, bdf: str, name: str | None = None) -> tuple[int, int, str]:
        res = self.r.ioctl(self.groups[bdf], uv.VFIO_GROUP_GET_DEVICE_FD, (name or bdf).encode() + b"\0")
        return res.ret, res.errno, res.where


def set_token(r: Rig, fd: int, token: str) -> bool:
    raw = struct.pack("<II", 24, uv.VFIO_DEVICE_FEATURE_SET | uv.VFIO_DEVICE_FEATURE_PCI_VF_TOKEN)
    res, _ = r.ioctl_raw(fd, uv.VFIO_DEVICE_FEATURE, raw + uuid.UUID(token).bytes)
    return res.ok


def test_vf_needs_pf_token() -> None:
    s = Sriov(Rig())
    # PF on vfio-pci, no token: EACCES (:1909-1912)
    assert s.open(VF0)[1:] == (errno.EACCES, f"{CORE}:1912")
    # the PF is opened with a token while no VF is in use: it sets the token (:1940-1941)
    pf, err, _ = s.open(NVME, f"{NVME} vf_token={TOKEN}")
    assert err == 0
    # wrong token: EACCES (:1919-1922); right one (any case): OK
    assert s.open(VF0, f"{VF0} vf_token={OTHER_TOKEN}")[1:] == (errno.EACCES, f"{CORE}:1922")
    _vf, err, _ = s.open(VF0, f"{VF0} vf_token={TOKEN.upper()}")
    assert err == 0
    # the PF token is still enforced after the PF closes
    s.r.close(pf)
    assert s.open(VF1)[1] == errno.EACCES
    assert s.open(VF1, f"{VF1}  vf_token={TOKEN} ")[1] == 0


def test_pf_with_vfs_in_use_needs_token() -> None:
    s = Sriov(Rig())
    pf, err, _ = s.open(NVME, f"{NVME} vf_token={TOKEN}")
    assert err == 0
    vf, err, _ = s.open(VF0, f"{VF0} vf_token={TOKEN}")
    assert err == 0
    s.r.close(pf)
    # users > 0: the PF needs the current token (:1926-1939)
    assert s.open(NVME)[1:] == (errno.EACCES, f"{CORE}:1931")
    assert s.open(NVME, f"{NVME} vf_token={OTHER_TOKEN}")[1:] == (errno.EACCES, f"{CORE}:1938")
    pf, err, _ = s.open(NVME, f"{NVME} vf_token={TOKEN}")
    assert err == 0
    s.r.close(pf)
    # the VF's close takes its use away (:734-738): no token needed again
    s.r.close(vf)
    pf, err, _ = s.open(NVME)
    assert err == 0


def test_feature_set_replaces_token_with_vfs_open() -> None:
    s = Sriov(Rig())
    pf, _, _ = s.open(NVME, f"{NVME} vf_token={TOKEN}")
    _vf, err, _ = s.open(VF0, f"{VF0} vf_token={TOKEN}")
    assert err == 0
    # 6.12 checks neither SR-IOV nor open VFs (:1521-1547)
    assert set_token(s.r, pf, OTHER_TOKEN)
    assert s.open(VF1, f"{VF1} vf_token={TOKEN}")[1] == errno.EACCES
    assert s.open(VF1, f"{VF1} vf_token={OTHER_TOKEN}")[1] == 0


def test_token_parse_errors() -> None:
    s = Sriov(Rig())
    # unknown option, repeated vf_token (:1992-1994); short uuid (:1983-1984); bad uuid
    assert s.open(NVME, f"{NVME} foo=1")[1:] == (errno.EINVAL, f"{CORE}:1994")
    assert s.open(NVME, f"{NVME} vf_token={TOKEN} vf_token={TOKEN}")[1:] == (errno.EINVAL, f"{CORE}:1994")
    assert s.open(NVME, f"{NVME} vf_token={TOKEN[:-1]}")[1:] == (errno.EINVAL, f"{CORE}:1984")
    assert s.open(NVME, f"{NVME} vf_token={TOKEN[:-1]}g")[1] == errno.EINVAL
    assert s.open(NVME, f"{NVME} vf_token={TOKEN}x")[1] == errno.EINVAL
    # non-space after the name: no match, ENODEV (:1970-1971, group.c:29)
    assert s.open(NVME, f"{NVME}x vf_token={TOKEN}")[1:] == (errno.ENODEV, "drivers/vfio/group.c:29")


def test_token_on_device_that_is_neither_pf_nor_vf() -> None:
    r = Rig()
    container = r.fd("/dev/vfio/vfio")
    g = r.fd("/dev/vfio/1")
    assert r.ioctl(g, uv.VFIO_GROUP_SET_CONTAINER, ctypes.c_int32(container)).ok
    assert r.ioctl(container, uv.VFIO_SET_IOMMU, uv.VFIO_TYPE1v2_IOMMU).ok
    res = r.ioctl(g, uv.VFIO_GROUP_GET_DEVICE_FD, f"{E1000} vf_token={TOKEN}".encode() + b"\0")
    assert (res.errno, res.where) == (errno.EINVAL, f"{CORE}:1948")


def test_vf_of_pf_not_on_vfio_pci() -> None:
    r = Rig()
    # the PF on its native driver enables VFs (pci_sriov_configure_simple); one VF
    # is then moved to vfio-pci by hand: no sriov_pf_core_dev
    assert r.write("/sys/bus/pci/drivers/vfio-pci/unbind", NVME).ok
    assert r.write(f"/sys/bus/pci/devices/{NVME}/driver_override", "nvme").ok
    assert r.write("/sys/bus/pci/drivers_probe", NVME).ok
    assert r.write(f"/sys/bus/pci/devices/{NVME}/sriov_numvfs", "1").ok
    assert r.write("/sys/bus/pci/drivers/nvme/unbind", VF0).ok
    assert r.write(f"/sys/bus/pci/devices/{VF0}/driver_override", "vfio-pci").ok
    assert r.write("/sys/bus/pci/drivers_probe", VF0).ok
    grp = r.b.topology().functions[VF0].iommu_group
    container = r.fd("/dev/vfio/vfio")
    g = r.fd(f"/dev/vfio/{grp}")
    assert r.ioctl(g, uv.VFIO_GROUP_SET_CONTAINER, ctypes.c_int32(container)).ok
    assert r.ioctl(container, uv.VFIO_SET_IOMMU, uv.VFIO_TYPE1v2_IOMMU).ok
    # a token given anyway: EINVAL (:1900-1906); none: OK
    res = r.ioctl(g, uv.VFIO_GROUP_GET_DEVICE_FD, f"{VF0} vf_token={TOKEN}".encode() + b"\0")
    assert (res.errno, res.where) == (errno.EINVAL, f"{CORE}:1906")
    assert r.ioctl(g, uv.VFIO_GROUP_GET_DEVICE_FD, f"{VF0}".encode() + b"\0").ok


def test_cdev_bind_checks_no_token_in_6_12() -> None:
    r = Rig()
    r.enable_vfs(2)
    iommufd = r.fd("/dev/iommu")
    cdev = r.b.topology().functions[VF0].cdev
    dev = r.fd(f"/dev/vfio/devices/{cdev}")
    # device_cdev.c:63-139 never calls match(): the VF binds without a token
    assert r.ioctl(dev, uv.VFIO_DEVICE_BIND_IOMMUFD, bind_arg(iommufd)).ok
    # ...and counts as a token user (finish_enable, :759-763): the PF now needs the token
    container = r.fd("/dev/vfio/vfio")
    g = r.fd("/dev/vfio/2")
    assert r.ioctl(g, uv.VFIO_GROUP_SET_CONTAINER, ctypes.c_int32(container)).ok
    assert r.ioctl(container, uv.VFIO_SET_IOMMU, uv.VFIO_TYPE1v2_IOMMU).ok
    res = r.ioctl(g, uv.VFIO_GROUP_GET_DEVICE_FD, NVME.encode() + b"\0")
    assert (res.errno, res.where) == (errno.EACCES, f"{CORE}:1931")


def test_sriov_disable_with_vf_open_refused() -> None:
    r = Rig()
    s = Sriov(r)
    _pf, _, _ = s.open(NVME, f"{NVME} vf_token={TOKEN}")
    vf, err, _ = s.open(VF0, f"{VF0} vf_token={TOKEN}")
    assert err == 0
    # the kernel waits for the VF's user in vfio_unregister_group_dev(); the model refuses
    res = r.write(f"/sys/bus/pci/devices/{NVME}/sriov_numvfs", "0")
    assert (res.errno, res.where) == (errno.EBUSY, "drivers/vfio/vfio_main.c:411")
    r.close(vf)
    assert r.write(f"/sys/bus/pci/devices/{NVME}/sriov_numvfs", "0").ok
    assert r.b.topology().functions[NVME].sriov_numvfs == 0


def test_vf_info() -> None:
    s = Sriov(Rig())
    s.open(NVME, f"{NVME} vf_token={TOKEN}")
    vf, err, _ = s.open(VF0, f"{VF0} vf_token={TOKEN}")
    assert err == 0
    r = s.r
    # a VF's INTx pin reads 0 (vfio_pci_config.c:1783-1804): no INTx vector
    res = r.ioctl(vf, uv.VFIO_DEVICE_GET_IRQ_INFO, uv.vfio_irq_info(argsz=16, index=0))
    assert res.ok and res.s.count == 0
    res = r.ioctl(vf, uv.VFIO_DEVICE_GET_IRQ_INFO, uv.vfio_irq_info(argsz=16, index=2))
    assert res.s.count == 1
