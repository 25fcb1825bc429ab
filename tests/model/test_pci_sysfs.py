"""The model's PCI core through sysfs: binding, driver_override, drivers_probe,
DMA ownership of kernel drivers, SR-IOV and reset_method.  Expected values come
from the 6.12 sources cited beside them."""

from __future__ import annotations

import ctypes
import errno

from test_vfio_util import AHCI, E1000, LPC, NVME, SMBUS, Rig, status

from harness.model.errors import Errno
from harness.model.lib.kstrtox import kstrtou16
from harness.model.pci.pci import pci_core
from harness.uapi import vfio as uv

DEV = "/sys/bus/pci/devices"
DRV = "/sys/bus/pci/drivers"
PARAM = "/sys/module/vfio_pci/parameters/enable_sriov"


def test_boot_kernel_drivers_count_as_default_domain_users() -> None:
    # pci_dma_configure() (pci-driver.c:1686-1689): ahci and i801_smbus lack
    # driver_managed_dma, vfio-pci has it (vfio_pci.c:205).
    r = Rig()
    groups = pci_core(r.k).groups
    assert groups[3].owner_cnt == 2
    assert groups[1].owner_cnt == 0
    assert groups[3].members == [LPC, AHCI, SMBUS]


def test_topology_reflects_boot_state() -> None:
    topo = Rig().b.topology()
    assert topo.functions[E1000].driver == "vfio-pci"
    assert topo.functions[E1000].cdev == "vfio0"
    assert topo.functions[AHCI].driver == "ahci"


def test_driver_override_show_and_clear() -> None:
    r = Rig()
    # bus.c:483: sysfs_emit("%s\n", NULL) prints "(null)"
    assert r.read(f"{DEV}/{E1000}/driver_override") == "(null)\n"
    assert r.write(f"{DEV}/{E1000}/driver_override", "vfio-pci\n").ok
    assert r.read(f"{DEV}/{E1000}/driver_override") == "vfio-pci\n"
    # dd.c:427-436: "\n" clears it
    assert r.write(f"{DEV}/{E1000}/driver_override", "\n").ok
    assert r.read(f"{DEV}/{E1000}/driver_override") == "(null)\n"
    # dd.c:397-398: len >= PAGE_SIZE - 1 is EINVAL
    res = r.write(f"{DEV}/{E1000}/driver_override", "x" * 4095)
    assert res.errno == errno.EINVAL


def test_unbind_errors_and_owner_count() -> None:
    r = Rig()
    # bus.c:240-249: ENODEV unless the device is bound to this driver
    assert r.write(f"{DRV}/ahci/unbind", E1000).errno == errno.ENODEV
    assert r.write(f"{DRV}/ahci/unbind", "0000:00:09.0").errno == errno.ENODEV
    assert r.write(f"{DRV}/ahci/unbind", AHCI + "\n").ok
    assert pci_core(r.k).groups[3].owner_cnt == 1  # pci_dma_cleanup() (pci-driver.c:1699-1700)
    assert r.b.topology().functions[AHCI].driver is None


def test_bind_errors() -> None:
    r = Rig()
    # bus.c:263-275: an unknown device or a driver that does not match: ENODEV;
    # vfio-pci only matches with driver_override (vfio_pci.c:192, override_only)
    assert r.write(f"{DRV}/vfio-pci/bind", "0000:00:09.0").errno == errno.ENODEV
    assert r.write(f"{DRV}/ahci/unbind", AHCI).ok
    assert r.write(f"{DRV}/vfio-pci/bind", AHCI).errno == errno.ENODEV
    # already bound: __driver_probe_device() EBUSY (dd.c:844-845)
    assert r.write(f"{DRV}/i801_smbus/bind", SMBUS).errno == errno.EBUSY
    # a driver that matches and probes: bound again, owner_cnt back up
    assert r.write(f"{DRV}/ahci/bind", AHCI).ok
    assert pci_core(r.k).groups[3].owner_cnt == 2


def test_drivers_probe_with_override_binds_vfio_pci() -> None:
    r = Rig()
    assert r.write(f"{DRV}/ahci/unbind", AHCI).ok
    assert r.write(f"{DEV}/{AHCI}/driver_override", "vfio-pci").ok
    assert r.write("/sys/bus/pci/drivers_probe", AHCI).ok
    f = r.b.topology().functions[AHCI]
    # vfio_init_device(): ida_alloc gives the lowest free index (vfio_main.c:275)
    assert (f.driver, f.cdev) == ("vfio-pci", "vfio4")  # the boot topology holds vfio0-3
    assert r.b.path_exists("/dev/vfio/devices/vfio4")
    # drivers_probe of an unknown device: ENODEV (bus.c:316-317)
    assert r.write("/sys/bus/pci/drivers_probe", "0000:00:09.0").errno == errno.ENODEV


def test_pci_stub_sibling_makes_group_viable() -> None:
    r = Rig()
    for bdf, drv in ((AHCI, "ahci"), (SMBUS, "i801_smbus")):
        assert r.write(f"{DRV}/{drv}/unbind", bdf).ok
        assert r.write(f"{DEV}/{bdf}/driver_override", "pci-stub").ok
        assert r.write("/sys/bus/pci/drivers_probe", bdf).ok
        assert r.b.topology().functions[bdf].driver == "pci-stub"
    gfd = r.fd("/dev/vfio/3")
    # group.c:382-383: owner_cnt == 0 -> VIABLE (pci-stub has driver_managed_dma)
    assert status(r, gfd).s.flags == uv.VFIO_GROUP_FLAGS_VIABLE


def test_kernel_driver_bind_on_owned_group_is_ebusy() -> None:
    r = Rig()
    assert r.write(f"{DRV}/ahci/unbind", AHCI).ok
    assert r.write(f"{DRV}/i801_smbus/unbind", SMBUS).ok
    container = r.fd("/dev/vfio/vfio")
    gfd = r.fd("/dev/vfio/3")
    assert r.ioctl(gfd, uv.VFIO_GROUP_SET_CONTAINER, ctypes.c_int32(container)).ok
    # iommu_device_use_default_domain(): owner set -> EBUSY (iommu.c:3125-3130),
    # returned as is by device_driver_attach() (dd.c:1216-1230)
    res = r.write(f"{DRV}/ahci/bind", AHCI)
    assert (res.errno, res.where) == (errno.EBUSY, "drivers/iommu/iommu.c:3128")
    # drivers_probe turns the same core failure into EINVAL (bus.c:313,318-319)
    assert r.write("/sys/bus/pci/drivers_probe", AHCI).errno == errno.EINVAL
    r.close(gfd)  # releases ownership (group.c:492-493)
    assert r.write(f"{DRV}/ahci/bind", AHCI).ok


def test_sriov_attrs_only_on_pf() -> None:
    r = Rig()
    # sriov_pf_attrs_are_visible() (iov.c:556-562)
    assert r.read(f"{DEV}/{E1000}/sriov_numvfs") == errno.ENOENT
    assert r.read(f"{DEV}/{NVME}/sriov_totalvfs") == "3\n"
    assert r.read(f"{DEV}/{NVME}/sriov_numvfs") == "0\n"
    assert r.read(f"{DEV}/{NVME}/sriov_vf_device") == "10\n"


def test_sriov_numvfs_enable_sriov_off_is_enoent() -> None:
    r = Rig(enable_sriov=False)
    assert r.read(PARAM) == "N\n"
    res = r.write(f"{DEV}/{NVME}/sriov_numvfs", "2")
    # vfio_pci_sriov_configure(): !enable_sriov -> ENOENT (vfio_pci.c:185-186)
    assert (res.errno, res.where) == (errno.ENOENT, "drivers/vfio/pci/vfio_pci.c:186")
    # the same count as now returns early, success (iov.c:431-432)
    assert r.write(f"{DEV}/{NVME}/sriov_numvfs", "0").ok


def test_sriov_numvfs_parse_and_range() -> None:
    r = Rig()
    # kstrtou16() failure: EINVAL (iov.c:423-424); above totalvfs: ERANGE (:426-427)
    assert r.write(f"{DEV}/{NVME}/sriov_numvfs", "two").errno == errno.EINVAL
    assert r.write(f"{DEV}/{NVME}/sriov_numvfs", "-1").errno == errno.EINVAL
    assert r.write(f"{DEV}/{NVME}/sriov_numvfs", "4").errno == errno.ERANGE
    assert r.write(f"{DEV}/{NVME}/sriov_numvfs", "70000").errno == errno.EINVAL


def test_kstrtou16() -> None:
    # lib/kstrtox.c:25-41, 98-109: base from the prefix, one trailing newline
    assert kstrtou16("0x10\n") == 16
    assert kstrtou16("010") == 8
    assert kstrtou16("+3") == 3
    for bad in ("", "\n", "3\n\n", "0x", "3 "):
        try:
            kstrtou16(bad)
        except Errno as e:
            assert e.code == errno.EINVAL
        else:
            raise AssertionError(bad)


def test_sriov_enable_creates_vfs_on_vfio_pci() -> None:
    r = Rig()
    assert r.write(PARAM, "Y").ok
    assert r.write(f"{DEV}/{NVME}/sriov_numvfs", "2\n").ok
    assert r.read(f"{DEV}/{NVME}/sriov_numvfs") == "2\n"
    topo = r.b.topology()
    # iov.c:19-33: VF routing ID = PF devfn + offset + stride * id (1, 1)
    vf0, vf1 = topo.functions["0000:00:03.1"], topo.functions["0000:00:03.2"]
    for vf in (vf0, vf1):
        # vfio_pci_bus_notifier() sets driver_override (vfio_pci_core.c:2016-2021)
        assert (vf.driver_override, vf.driver, vf.physfn) == ("vfio-pci", "vfio-pci", NVME)
    assert (vf0.cdev, vf1.cdev) == ("vfio4", "vfio5")  # the boot topology holds vfio0-3
    # one new IOMMU group each (docs/measured.md)
    assert len({vf0.iommu_group, vf1.iommu_group, 0, 1, 2, 3, 4}) == 7
    assert topo.functions[NVME].sriov_numvfs == 2
    assert r.read(f"{DEV}/{NVME}/virtfn1/driver_override") == "vfio-pci\n"
    assert r.b.path_exists(f"/dev/vfio/{vf0.iommu_group}")
    # iov.c:457-462: changing a non-zero count is EBUSY
    assert r.write(f"{DEV}/{NVME}/sriov_numvfs", "3").errno == errno.EBUSY
    # disabling removes them (vfio_pci_core.c:2334-2336)
    assert r.write(f"{DEV}/{NVME}/sriov_numvfs", "0").ok
    topo = r.b.topology()
    assert "0000:00:03.1" not in topo.functions
    assert not r.b.path_exists(f"/dev/vfio/devices/{vf0.cdev}")


def test_sriov_disable_with_enable_sriov_off_is_enoent() -> None:
    r = Rig()
    r.enable_vfs(2)
    assert r.write(PARAM, "N").ok
    # vfio_pci.c:185-186 applies to 0 as well
    assert r.write(f"{DEV}/{NVME}/sriov_numvfs", "0").errno == errno.ENOENT


def test_pf_with_vfs_refused_by_vfio_pci() -> None:
    r = Rig()
    r.enable_vfs(1)
    # Unbinding vfio-pci disables SR-IOV first (vfio_pci_core.c:2255); put the PF
    # on the native nvme driver, which enables VFs itself (pci_sriov_configure_simple)
    assert r.write(f"{DRV}/vfio-pci/unbind", NVME).ok
    assert r.b.topology().functions[NVME].sriov_numvfs == 0
    assert r.write(f"{DEV}/{NVME}/driver_override", "nvme").ok
    assert r.write("/sys/bus/pci/drivers_probe", NVME).ok
    assert r.b.topology().functions[NVME].driver == "nvme"
    assert r.write(f"{DEV}/{NVME}/sriov_numvfs", "1").ok
    vf = r.b.topology().functions["0000:00:03.1"]
    assert (vf.driver, vf.driver_override) == ("nvme", None)
    assert r.write(f"{DRV}/nvme/unbind", NVME).ok
    assert r.write(f"{DEV}/{NVME}/driver_override", "vfio-pci").ok
    # vfio_pci_core_register_device(): pci_num_vf() -> EBUSY (vfio_pci_core.c:2192-2195)
    res = r.write(f"{DRV}/vfio-pci/bind", NVME)
    assert (res.errno, res.where) == (errno.EBUSY, "drivers/vfio/pci/vfio_pci_core.c:2194")
    # through drivers_probe a probe failure only moves on (dd.c:1034-1040): success, unbound
    assert r.write("/sys/bus/pci/drivers_probe", NVME).ok
    assert r.b.topology().functions[NVME].driver is None


def test_unbind_while_device_open_refused() -> None:
    r = Rig()
    _, _, dev = r.legacy_device()
    # The kernel blocks in vfio_unregister_group_dev(); the model refuses
    res = r.write(f"{DRV}/vfio-pci/unbind", E1000)
    assert (res.errno, res.where) == (errno.EBUSY, "drivers/vfio/vfio_main.c:411")
    r.close(dev)
    assert r.write(f"{DRV}/vfio-pci/unbind", E1000).ok
    assert not r.b.path_exists("/dev/vfio/1")
    assert not r.b.path_exists("/dev/vfio/devices/vfio0")


def test_group_fd_outlives_unbind() -> None:
    r = Rig()
    gfd = r.fd("/dev/vfio/1")
    assert r.write(f"{DRV}/vfio-pci/unbind", E1000).ok
    # vfio_device_remove_group() clears iommu_group: GET_STATUS ENODEV (group.c:367-369)
    res = status(r, gfd)
    assert (res.errno, res.where) == (errno.ENODEV, "drivers/vfio/group.c:369")


def test_reset_method() -> None:
    r = Rig()
    # not created without a method (pci.c:5259-5268)
    assert r.read(f"{DEV}/{E1000}/reset_method") == errno.ENOENT
    assert r.read(f"{DEV}/{NVME}/reset_method") == "flr\n"
    # unknown or unsupported method: EINVAL (pci.c:5218-5226,5250)
    assert r.write(f"{DEV}/{NVME}/reset_method", "bus").errno == errno.EINVAL
    assert r.write(f"{DEV}/{NVME}/reset_method", "\n").ok
    assert r.read(f"{DEV}/{NVME}/reset_method") == ""   # pci.c:5168-5171
    assert r.write(f"{DEV}/{NVME}/reset_method", "default").ok
    assert r.read(f"{DEV}/{NVME}/reset_method") == "flr\n"


def test_enable_sriov_param() -> None:
    r = Rig()
    # kstrtobool() (lib/kstrtox.c:348-388)
    for text, want in (("0", "N\n"), ("on", "Y\n"), ("off\n", "N\n"), ("t", "Y\n")):
        assert r.write(PARAM, text).ok
        assert r.read(PARAM) == want
    assert r.write(PARAM, "x").errno == errno.EINVAL


def test_links_read_as_names() -> None:
    r = Rig()
    assert r.read(f"{DEV}/{AHCI}/iommu_group") == "3\n"
    assert r.read(f"{DEV}/{AHCI}/driver") == "ahci\n"
    assert r.read(f"{DEV}/0000:00:00.0/driver") == errno.ENOENT


def test_empty_write_never_reaches_the_store() -> None:
    r = Rig()
    assert r.write(f"{DEV}/{E1000}/driver_override", "vfio-pci").ok
    # sysfs_kf_write(): a zero-length write returns 0 at once (fs/sysfs/file.c:137-138)
    assert r.write(f"{DEV}/{E1000}/driver_override", "").ok
    assert r.read(f"{DEV}/{E1000}/driver_override") == "vfio-pci\n"


def test_boot_with_vfs_already_enabled() -> None:
    # A topology as a kernel backend reports it after `sriov_numvfs=2` on vfio-pci:
    # the model boots into that state (PF on the sriov_pfs list, VFs linked to it).
    r = Rig()
    r.enable_vfs(2)
    topo = r.b.topology()
    r2 = Rig(topo)
    t2 = r2.b.topology()
    assert t2.functions["0000:00:03.1"].driver == "vfio-pci"
    assert t2.functions[NVME].sriov_numvfs == 2
    # the boot topology holds vfio0-3
    assert (t2.functions["0000:00:03.1"].cdev, t2.functions["0000:00:03.2"].cdev) == ("vfio4", "vfio5")
    # the VF knows its PF: without a token it is refused (vfio_pci_core.c:1909-1912)
    grp = t2.functions["0000:00:03.1"].iommu_group
    container = r2.fd("/dev/vfio/vfio")
    g = r2.fd(f"/dev/vfio/{grp}")
    assert r2.ioctl(g, uv.VFIO_GROUP_SET_CONTAINER, ctypes.c_int32(container)).ok
    assert r2.ioctl(container, uv.VFIO_SET_IOMMU, uv.VFIO_TYPE1v2_IOMMU).ok
    assert r2.ioctl(g, uv.VFIO_GROUP_GET_DEVICE_FD, b"0000:00:03.1\0").errno == errno.EACCES
    # no VF device is open (a group fd does not count): disabling removes them
    assert r2.write(f"{DEV}/{NVME}/sriov_numvfs", "0").ok
    assert "0000:00:03.1" not in r2.b.topology().functions
    assert status(r2, g).errno == errno.ENODEV  # the group lost its last device (group.c:367-369)
