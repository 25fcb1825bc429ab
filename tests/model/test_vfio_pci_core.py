"""vfio-pci device ioctls and features (drivers/vfio/pci/vfio_pci_core.c,
vfio_pci_intrs.c, vfio_pci_rdwr.c, drivers/vfio/vfio_main.c) on the q35 functions:
e1000 (conventional PCI, INTx only, no reset method, BAR0 128K MMIO, BAR1 I/O,
ROM) and the NVMe PF (PCIe, FLR, 6 MSI-X vectors in BAR0 at 0x2000)."""

from __future__ import annotations

import ctypes
import errno
import struct

from test_vfio_util import NVME, Rig

from harness.backends.base import PciFunction, Topology
from harness.uapi import vfio as uv

CORE = "drivers/vfio/pci/vfio_pci_core.c"
MAIN = "drivers/vfio/vfio_main.c"
RDWR = "drivers/vfio/pci/vfio_pci_rdwr.c"
RW = uv.VFIO_REGION_INFO_FLAG_READ | uv.VFIO_REGION_INFO_FLAG_WRITE


def open_e1000(r: Rig) -> int:
    return r.legacy_device()[2]


def open_nvme(r: Rig) -> int:
    return r.legacy_device(NVME, 2)[2]


def region(r: Rig, dev: int, index: int, argsz: int = 32) -> object:
    return r.ioctl(dev, uv.VFIO_DEVICE_GET_REGION_INFO, uv.vfio_region_info(argsz=argsz, index=index))


def irq_info(r: Rig, dev: int, index: int) -> object:
    return r.ioctl(dev, uv.VFIO_DEVICE_GET_IRQ_INFO, uv.vfio_irq_info(argsz=16, index=index))


def irq_set(flags: int, index: int, start: int, count: int, data: bytes = b"", argsz: int | None = None) -> bytes:
    hdr = uv.vfio_irq_set(argsz=argsz if argsz is not None else 20 + len(data), flags=flags, index=index,
                          start=start, count=count)
    return bytes(hdr)[:20] + data


def fds(*fd: int) -> bytes:
    return b"".join(struct.pack("<i", f) for f in fd)


TRIG = uv.VFIO_IRQ_SET_ACTION_TRIGGER
EFD = uv.VFIO_IRQ_SET_DATA_EVENTFD
NONE = uv.VFIO_IRQ_SET_DATA_NONE
BOOL = uv.VFIO_IRQ_SET_DATA_BOOL


# -- GET_INFO -------------------------------------------------------------------------

def test_get_info() -> None:
    r = Rig()
    dev = open_e1000(r)
    res = r.ioctl(dev, uv.VFIO_DEVICE_GET_INFO, uv.vfio_device_info(argsz=24))
    # no reset method -> reset_works false (:524-528, :1001-1002); 9 regions, 5 irqs (:1004-1005)
    assert (res.s.flags, res.s.num_regions, res.s.num_irqs, res.s.cap_offset) == (uv.VFIO_DEVICE_FLAGS_PCI, 9, 5, 0)
    nvme = open_nvme(r)
    res = r.ioctl(nvme, uv.VFIO_DEVICE_GET_INFO, uv.vfio_device_info(argsz=24))
    assert res.s.flags == uv.VFIO_DEVICE_FLAGS_PCI | uv.VFIO_DEVICE_FLAGS_RESET


def test_get_info_argsz() -> None:
    r = Rig()
    dev = open_e1000(r)
    res = r.ioctl(dev, uv.VFIO_DEVICE_GET_INFO, uv.vfio_device_info(argsz=15))
    assert (res.errno, res.where) == (errno.EINVAL, f"{CORE}:995")
    # argsz 16: min(argsz, sizeof) = 16 bytes written (:997, :1037)
    raw = bytes(uv.vfio_device_info(argsz=16))[:16] + b"\xaa" * 8
    res, data = r.ioctl_raw(dev, uv.VFIO_DEVICE_GET_INFO, raw)
    assert res.ok and data[16:] == b"\xaa" * 8 and struct.unpack_from("<I", data, 0)[0] == 16


def test_reset_method_off_before_open_clears_reset_flag() -> None:
    # docs/measured.md's QEMU NVMe workaround: `echo > reset_method` before the open
    r = Rig()
    assert r.write(f"/sys/bus/pci/devices/{NVME}/reset_method", "\n").ok
    nvme = open_nvme(r)
    res = r.ioctl(nvme, uv.VFIO_DEVICE_GET_INFO, uv.vfio_device_info(argsz=24))
    assert res.s.flags == uv.VFIO_DEVICE_FLAGS_PCI
    assert r.ioctl(nvme, uv.VFIO_DEVICE_RESET).errno == errno.EINVAL


def test_reset() -> None:
    r = Rig()
    res = r.ioctl(open_e1000(r), uv.VFIO_DEVICE_RESET)
    assert (res.errno, res.where) == (errno.EINVAL, f"{CORE}:1260")
    nvme = open_nvme(r)
    assert r.ioctl(nvme, uv.VFIO_DEVICE_RESET).ok
    # every method turned off after the open: pci_try_reset_function() ENOTTY (pci.c:5482-5483)
    assert r.write(f"/sys/bus/pci/devices/{NVME}/reset_method", "\n").ok
    res = r.ioctl(nvme, uv.VFIO_DEVICE_RESET)
    assert (res.errno, res.where) == (errno.ENOTTY, "drivers/pci/pci.c:5482-5483")


def _bridge_function_with_bus_method(alone: bool) -> Topology:
    """The non-viable group's vfio-pci function listing "bus" (as the first one scanned behind
    the bridge does), its sibling unbound (the group viable); ``alone``: no sibling on the bus."""
    from dataclasses import replace

    from harness.model.topologies import vm_topology

    topo = vm_topology()
    fn, sib = topo.functions["0000:01:01.0"], topo.functions["0000:01:02.0"]
    topo.functions[fn.bdf] = replace(fn, reset_methods=("bus",),
                                     hot_reset_functions=(fn.bdf,) if alone else fn.hot_reset_functions)
    topo.functions[sib.bdf] = replace(sib, driver=None)
    return topo


def test_the_bus_method_resets_only_a_function_alone_on_its_bus() -> None:
    for alone in (False, True):
        r = Rig(_bridge_function_with_bus_method(alone))
        group = r.k.topology.functions["0000:01:01.0"].iommu_group
        dev = r.legacy_device("0000:01:01.0", group)[2]
        res = r.ioctl(dev, uv.VFIO_DEVICE_GET_INFO, uv.vfio_device_info(argsz=24))
        assert bool(res.s.flags & uv.VFIO_DEVICE_FLAGS_RESET) == alone, alone
        assert r.ioctl(dev, uv.VFIO_DEVICE_RESET).ok == alone


# -- GET_REGION_INFO ------------------------------------------------------------------

def test_region_info_e1000() -> None:
    r = Rig()
    dev = open_e1000(r)
    cfg = region(r, dev, uv.VFIO_PCI_CONFIG_REGION_INDEX)
    # :1056-1061: cfg_size (256 for conventional PCI), R|W, offset index << 40
    assert (cfg.s.size, cfg.s.flags, cfg.s.offset) == (256, RW, 7 << 40)
    bar0 = region(r, dev, 0)
    assert (bar0.s.size, bar0.s.flags, bar0.s.offset) == (0x20000, RW | uv.VFIO_REGION_INFO_FLAG_MMAP, 0)
    # an I/O BAR is not mmappable (vfio_pci_probe_mmaps: !IORESOURCE_MEM)
    bar1 = region(r, dev, 1)
    assert (bar1.s.size, bar1.s.flags) == (0x40, RW)
    # unimplemented BAR: size 0, flags 0, success (:1064-1068)
    bar2 = region(r, dev, 2)
    assert bar2.ok and (bar2.s.size, bar2.s.flags, bar2.s.offset) == (0, 0, 2 << 40)
    rom = region(r, dev, uv.VFIO_PCI_ROM_REGION_INDEX)
    assert (rom.s.size, rom.s.flags) == (0x40000, uv.VFIO_REGION_INFO_FLAG_READ)
    # no VGA (:1117-1119); beyond the regions (:1133-1134); argsz < 32 (:1052-1053)
    assert region(r, dev, uv.VFIO_PCI_VGA_REGION_INDEX).errno == errno.EINVAL
    assert region(r, dev, 9).errno == errno.EINVAL
    assert region(r, dev, 0, argsz=31).errno == errno.EINVAL


def test_region_info_msix_mappable_cap_argsz_growth() -> None:
    r = Rig()
    dev = open_nvme(r)
    assert region(r, dev, uv.VFIO_PCI_CONFIG_REGION_INDEX).s.size == 4096  # PCIe
    # the MSI-X BAR gets VFIO_REGION_INFO_CAP_MSIX_MAPPABLE (:1072-1078, :914-923)
    res = region(r, dev, 0)
    caps = uv.VFIO_REGION_INFO_FLAG_CAPS | uv.VFIO_REGION_INFO_FLAG_MMAP | RW
    # too small: argsz = 32 + 8, cap_offset 0, success (:1161-1166)
    assert res.ok and (res.s.argsz, res.s.flags, res.s.cap_offset, res.s.size) == (40, caps, 0, 0x4000)
    raw = bytes(uv.vfio_region_info(argsz=40, index=0)) + b"\xaa" * 8
    res, data = r.ioctl_raw(dev, uv.VFIO_DEVICE_GET_REGION_INFO, raw)
    info = uv.vfio_region_info.from_buffer_copy(data[:32])
    assert (info.argsz, info.cap_offset) == (40, 32)
    assert struct.unpack_from("<HHI", data, 32) == (uv.VFIO_REGION_INFO_CAP_MSIX_MAPPABLE, 1, 0)


# -- IRQs ----------------------------------------------------------------------------------

def test_irq_info() -> None:
    r = Rig()
    dev = open_e1000(r)
    ev, mask = uv.VFIO_IRQ_INFO_EVENTFD, uv.VFIO_IRQ_INFO_MASKABLE | uv.VFIO_IRQ_INFO_AUTOMASKED
    nores = uv.VFIO_IRQ_INFO_NORESIZE
    got = {i: (irq_info(r, dev, i).s.count, irq_info(r, dev, i).s.flags) for i in (0, 1, 2, 4)}
    # :1205-1213 and vfio_pci_get_irq_count() (:767-800)
    assert got == {0: (1, ev | mask), 1: (0, ev | nores), 2: (0, ev | nores), 4: (1, ev | nores)}
    # ERR only on PCI Express (:1197-1202); index >= 5 (:1190-1191)
    assert irq_info(r, dev, 3).errno == errno.EINVAL
    assert irq_info(r, dev, 5).errno == errno.EINVAL
    nvme = open_nvme(r)
    # dynamic MSI-X on x86: no NORESIZE (:1212-1213); msix_qsize 6 minus the 4 the VFs keep
    assert (irq_info(r, nvme, 2).s.count, irq_info(r, nvme, 2).s.flags) == (2, ev)
    assert irq_info(r, nvme, 3).s.count == 1


def test_set_irqs_validation() -> None:
    r = Rig()
    dev = open_nvme(r)
    efd = r.eventfd()

    def err(raw: bytes) -> tuple[int, str]:
        res, _ = r.ioctl_raw(dev, uv.VFIO_DEVICE_SET_IRQS, raw)
        return res.errno, res.where

    # vfio_set_irqs_validate_and_prepare() (vfio_main.c:1543-1571)
    assert err(irq_set(EFD | TRIG, 2, 0, 1, fds(efd), argsz=19)) == (errno.EINVAL, f"{MAIN}:1547")
    assert err(irq_set(EFD | TRIG | (1 << 6), 2, 0, 1, fds(efd))) == (errno.EINVAL, f"{MAIN}:1547")
    assert err(irq_set(NONE | TRIG, 5, 0, 0)) == (errno.EINVAL, f"{MAIN}:1547")
    assert err(irq_set(NONE | TRIG, 2, 0xFFFF_FFFF, 1)) == (errno.EINVAL, f"{MAIN}:1547")
    # the PF has 2 MSI-X vectors: start 2 is past them, start 1 + count 2 runs past them
    assert err(irq_set(NONE | TRIG, 2, 2, 0)) == (errno.EINVAL, f"{MAIN}:1553")
    assert err(irq_set(NONE | TRIG, 2, 1, 2)) == (errno.EINVAL, f"{MAIN}:1553")
    assert err(irq_set(NONE | BOOL | TRIG, 2, 0, 1, b"\1")) == (errno.EINVAL, f"{MAIN}:1566")
    assert err(irq_set(EFD | TRIG, 2, 0, 2, fds(efd))) == (errno.EINVAL, f"{MAIN}:1571")
    # no MSI capability: zero vectors, so any start is out of range
    assert err(irq_set(NONE | TRIG, 1, 0, 0)) == (errno.EINVAL, f"{MAIN}:1553")
    # not exactly one action: ENOTTY (vfio_pci_intrs.c:880-881)
    assert err(irq_set(NONE, 2, 0, 1)) == (errno.ENOTTY, "drivers/vfio/pci/vfio_pci_intrs.c:881")
    assert err(irq_set(NONE | uv.VFIO_IRQ_SET_ACTION_MASK, 2, 0, 1))[0] == errno.ENOTTY


def test_msix_trigger_loopback_and_disable() -> None:
    r = Rig()
    dev = open_nvme(r)
    e0, e1 = r.eventfd(), r.eventfd()
    res, _ = r.ioctl_raw(dev, uv.VFIO_DEVICE_SET_IRQS, irq_set(EFD | TRIG, 2, 0, 2, fds(e0, e1)))
    assert res.ok
    # DATA_NONE signals every vector with a trigger (vfio_pci_intrs.c:723-733)
    assert r.ioctl_raw(dev, uv.VFIO_DEVICE_SET_IRQS, irq_set(NONE | TRIG, 2, 0, 2))[0].ok
    assert (r.eventfd_count(e0), r.eventfd_count(e1)) == (1, 1)
    assert r.ioctl_raw(dev, uv.VFIO_DEVICE_SET_IRQS, irq_set(BOOL | TRIG, 2, 0, 2, b"\0\1"))[0].ok
    assert (r.eventfd_count(e0), r.eventfd_count(e1)) == (0, 1)
    # INTx while MSI-X is on: EINVAL (vfio_pci_intrs.c:647-648)
    assert r.ioctl_raw(dev, uv.VFIO_DEVICE_SET_IRQS, irq_set(EFD | TRIG, 0, 0, 1, fds(e0)))[0].errno == errno.EINVAL
    # count 0 + DATA_NONE disables (:693-696); then loopback is EINVAL (:720-721)
    assert r.ioctl_raw(dev, uv.VFIO_DEVICE_SET_IRQS, irq_set(NONE | TRIG, 2, 0, 0))[0].ok
    res, _ = r.ioctl_raw(dev, uv.VFIO_DEVICE_SET_IRQS, irq_set(NONE | TRIG, 2, 0, 1))
    assert (res.errno, res.where) == (errno.EINVAL, "drivers/vfio/pci/vfio_pci_intrs.c:721")


def test_msix_bad_eventfds() -> None:
    r = Rig()
    dev = open_nvme(r)
    # eventfd_ctx_fdget(): EBADF; a file that is no eventfd: EINVAL
    assert r.ioctl_raw(dev, uv.VFIO_DEVICE_SET_IRQS, irq_set(EFD | TRIG, 2, 0, 1, fds(99)))[0].errno == errno.EBADF
    res, _ = r.ioctl_raw(dev, uv.VFIO_DEVICE_SET_IRQS, irq_set(EFD | TRIG, 2, 0, 1, fds(dev)))
    assert res.errno == errno.EINVAL
    # the failed enable was undone (vfio_pci_intrs.c:713-715): INTx can be enabled
    e = r.eventfd()
    assert r.ioctl_raw(dev, uv.VFIO_DEVICE_SET_IRQS, irq_set(EFD | TRIG, 0, 0, 1, fds(e)))[0].ok


def test_msix_enable_without_vectors() -> None:
    r = Rig()
    dev = open_nvme(r)
    # start 0 + count 0: pci_alloc_irq_vectors(pdev, 1, 0) is ERANGE (pci/msi/msi.c:798-799)
    res, _ = r.ioctl_raw(dev, uv.VFIO_DEVICE_SET_IRQS, irq_set(EFD | TRIG, 2, 0, 0))
    assert (res.errno, res.where) == (errno.ERANGE, "drivers/pci/msi/msi.c:799")
    # start 1 + count 0 enables MSI-X with no trigger: INTx is refused, the loopback is 0
    assert r.ioctl_raw(dev, uv.VFIO_DEVICE_SET_IRQS, irq_set(EFD | TRIG, 2, 1, 0))[0].ok
    e = r.eventfd()
    assert r.ioctl_raw(dev, uv.VFIO_DEVICE_SET_IRQS, irq_set(EFD | TRIG, 0, 0, 1, fds(e)))[0].errno == errno.EINVAL
    assert r.ioctl_raw(dev, uv.VFIO_DEVICE_SET_IRQS, irq_set(NONE | TRIG, 2, 0, 2))[0].ok


def test_intx_trigger_mask_unmask() -> None:
    r = Rig()
    dev = open_e1000(r)
    e = r.eventfd()
    unmask = uv.VFIO_IRQ_SET_ACTION_UNMASK
    # unmask before INTx is enabled: EINVAL (vfio_pci_intrs.c:591-592)
    assert r.ioctl_raw(dev, uv.VFIO_DEVICE_SET_IRQS, irq_set(NONE | unmask, 0, 0, 1))[0].errno == errno.EINVAL
    assert r.ioctl_raw(dev, uv.VFIO_DEVICE_SET_IRQS, irq_set(EFD | TRIG, 0, 0, 1, fds(e)))[0].ok
    assert r.ioctl_raw(dev, uv.VFIO_DEVICE_SET_IRQS, irq_set(NONE | TRIG, 0, 0, 1))[0].ok
    assert r.eventfd_count(e) == 1
    # masking through an eventfd is not implemented: ENOTTY (:631-632)
    mask = uv.VFIO_IRQ_SET_ACTION_MASK
    res, _ = r.ioctl_raw(dev, uv.VFIO_DEVICE_SET_IRQS, irq_set(EFD | mask, 0, 0, 1, fds(e)))
    assert (res.errno, res.where) == (errno.ENOTTY, "drivers/vfio/pci/vfio_pci_intrs.c:632")
    assert r.ioctl_raw(dev, uv.VFIO_DEVICE_SET_IRQS, irq_set(NONE | mask, 0, 0, 1))[0].ok
    assert r.ioctl_raw(dev, uv.VFIO_DEVICE_SET_IRQS, irq_set(NONE | unmask, 0, 0, 1))[0].ok
    # disable: count 0 with DATA_NONE (:642-645)
    assert r.ioctl_raw(dev, uv.VFIO_DEVICE_SET_IRQS, irq_set(NONE | TRIG, 0, 0, 0))[0].ok


def test_req_trigger() -> None:
    r = Rig()
    dev = open_e1000(r)
    e = r.eventfd()
    # DATA_NONE with no eventfd set: EINVAL (vfio_pci_intrs.c:750-751)
    assert r.ioctl_raw(dev, uv.VFIO_DEVICE_SET_IRQS, irq_set(NONE | TRIG, 4, 0, 1))[0].errno == errno.EINVAL
    assert r.ioctl_raw(dev, uv.VFIO_DEVICE_SET_IRQS, irq_set(EFD | TRIG, 4, 0, 1, fds(e)))[0].ok
    assert r.ioctl_raw(dev, uv.VFIO_DEVICE_SET_IRQS, irq_set(NONE | TRIG, 4, 0, 1))[0].ok
    assert r.eventfd_count(e) == 1


# -- hot reset -------------------------------------------------------------------------------

def test_hot_reset_on_root_bus_enodev() -> None:
    r = Rig()
    dev = open_e1000(r)
    res = r.ioctl(dev, uv.VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, uv.vfio_pci_hot_reset_info(argsz=12))
    assert (res.errno, res.where) == (errno.ENODEV, f"{CORE}:1305")
    hot = uv.vfio_pci_hot_reset(argsz=12, count=0)
    # a group-opened device must pass groups: count 0 is EINVAL (:1450-1451)
    assert r.ioctl(dev, uv.VFIO_DEVICE_PCI_HOT_RESET, hot).where == f"{CORE}:1451"
    res = r.ioctl(dev, uv.VFIO_DEVICE_PCI_HOT_RESET, uv.vfio_pci_hot_reset(argsz=12, flags=1))
    assert (res.errno, res.where) == (errno.EINVAL, f"{CORE}:1447")
    raw = bytes(uv.vfio_pci_hot_reset(argsz=16, count=1)) + fds(3)
    res, _ = r.ioctl_raw(dev, uv.VFIO_DEVICE_PCI_HOT_RESET, raw)
    assert (res.errno, res.where) == (errno.ENODEV, f"{CORE}:1457")


def _bus_topology() -> Topology:
    """Two functions behind a bridge a secondary-bus reset can reset."""
    both = ("0000:01:00.0", "0000:01:00.1")
    fns = [PciFunction(b, 0x8086, 0x100E, iommu_group=i + 1, driver="vfio-pci", cdev=f"vfio{i}", is_pcie=True,
                       bar_sizes=(0x20000, 0, 0, 0, 0, 0), hot_reset_functions=both) for i, b in enumerate(both)]
    return Topology({f.bdf: f for f in fns})


def test_hot_reset_info_enospc_then_devices() -> None:
    r = Rig(_bus_topology())
    dev = r.legacy_device("0000:01:00.0", 1)[2]
    res = r.ioctl(dev, uv.VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, uv.vfio_pci_hot_reset_info(argsz=12))
    # :1315-1318: the needed count goes back with ENOSPC
    assert (res.errno, res.where, res.s.count) == (errno.ENOSPC, f"{CORE}:1317", 2)
    raw = bytes(uv.vfio_pci_hot_reset_info(argsz=28)) + bytes(16)
    res, data = r.ioctl_raw(dev, uv.VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, raw)
    assert res.ok
    assert struct.unpack_from("<III", data) == (28, 0, 2)
    # group ids, segment, bus, devfn (:855-864)
    assert [struct.unpack_from("<IHBB", data, 12 + 8 * i) for i in range(2)] == [(1, 0, 1, 0), (2, 0, 1, 1)]


def test_hot_reset_needs_every_group() -> None:
    r = Rig(_bus_topology())
    container, gfd, dev = r.legacy_device("0000:01:00.0", 1)
    one = bytes(uv.vfio_pci_hot_reset(argsz=16, count=1)) + fds(gfd)
    # the other function's group is not given: not owned (:2496-2497)
    res, _ = r.ioctl_raw(dev, uv.VFIO_DEVICE_PCI_HOT_RESET, one)
    assert (res.errno, res.where) == (errno.EINVAL, f"{CORE}:2497")
    g2 = r.fd("/dev/vfio/2")
    assert r.ioctl(g2, uv.VFIO_GROUP_SET_CONTAINER, ctypes.c_int32(container)).ok
    both = bytes(uv.vfio_pci_hot_reset(argsz=20, count=2)) + fds(gfd, g2)
    assert r.ioctl_raw(dev, uv.VFIO_DEVICE_PCI_HOT_RESET, both)[0].ok
    # more fds than affected functions (:1377-1378); a non-group fd (:1408-1410)
    three = bytes(uv.vfio_pci_hot_reset(argsz=24, count=3)) + fds(gfd, g2, g2)
    assert r.ioctl_raw(dev, uv.VFIO_DEVICE_PCI_HOT_RESET, three)[0].where == f"{CORE}:1378"
    bad = bytes(uv.vfio_pci_hot_reset(argsz=20, count=2)) + fds(gfd, container)
    assert r.ioctl_raw(dev, uv.VFIO_DEVICE_PCI_HOT_RESET, bad)[0].where == f"{CORE}:1410"


# -- IOEVENTFD ---------------------------------------------------------------------------------

def ioeventfd(offset: int, fd: int, flags: int = uv.VFIO_DEVICE_IOEVENTFD_32, data: int = 0) -> object:
    return uv.vfio_device_ioeventfd(argsz=32, flags=flags, offset=offset, data=data, fd=fd)


def test_ioeventfd() -> None:
    r = Rig()
    dev = open_e1000(r)
    e = r.eventfd()
    assert r.ioctl(dev, uv.VFIO_DEVICE_IOEVENTFD, ioeventfd(0x100, e)).ok
    # the same (pos, bar, data, count): EEXIST; fd -1 removes it (vfio_pci_rdwr.c:467-479)
    res = r.ioctl(dev, uv.VFIO_DEVICE_IOEVENTFD, ioeventfd(0x100, e))
    assert (res.errno, res.where) == (errno.EEXIST, f"{RDWR}:477")
    assert r.ioctl(dev, uv.VFIO_DEVICE_IOEVENTFD, ioeventfd(0x100, -1)).ok
    # fd -1 with nothing to remove: ENODEV (:483-485)
    assert r.ioctl(dev, uv.VFIO_DEVICE_IOEVENTFD, ioeventfd(0x100, -1)).errno == errno.ENODEV
    # vfio_pci_core.c:1476-1485: argsz, flags, one size bit, fd >= -1
    assert r.ioctl(dev, uv.VFIO_DEVICE_IOEVENTFD, uv.vfio_device_ioeventfd(argsz=27, flags=4)).errno == errno.EINVAL
    assert r.ioctl(dev, uv.VFIO_DEVICE_IOEVENTFD, ioeventfd(0, e, flags=1 << 4)).errno == errno.EINVAL
    assert r.ioctl(dev, uv.VFIO_DEVICE_IOEVENTFD, ioeventfd(0, e, flags=3)).errno == errno.EINVAL
    assert r.ioctl(dev, uv.VFIO_DEVICE_IOEVENTFD, ioeventfd(0, -2)).errno == errno.EINVAL
    # only BARs (:444-445); not past the BAR's end (:447-448)
    assert r.ioctl(dev, uv.VFIO_DEVICE_IOEVENTFD, ioeventfd(7 << 40, e)).where == f"{RDWR}:445"
    assert r.ioctl(dev, uv.VFIO_DEVICE_IOEVENTFD, ioeventfd(0x1FFFE, e)).where == f"{RDWR}:448"
    assert r.ioctl(dev, uv.VFIO_DEVICE_IOEVENTFD, ioeventfd(0, 99)).errno == errno.EBADF


def test_ioeventfd_msix_table_refused() -> None:
    r = Rig()
    dev = open_nvme(r)
    e = r.eventfd()
    # the MSI-X table is BAR0 0x2000 + 6 * 16 (:450-454)
    assert r.ioctl(dev, uv.VFIO_DEVICE_IOEVENTFD, ioeventfd(0x2010, e)).where == f"{RDWR}:454"
    assert r.ioctl(dev, uv.VFIO_DEVICE_IOEVENTFD, ioeventfd(0x2060, e)).ok


# -- features ----------------------------------------------------------------------------------

def feature(flags: int, payload: bytes = b"", argsz: int | None = None) -> bytes:
    return struct.pack("<II", argsz if argsz is not None else 8 + len(payload), flags) + payload


def test_feature_dispatch() -> None:
    r = Rig()
    dev = open_e1000(r)
    get, set_, probe = uv.VFIO_DEVICE_FEATURE_GET, uv.VFIO_DEVICE_FEATURE_SET, uv.VFIO_DEVICE_FEATURE_PROBE

    def call(raw: bytes) -> tuple[int, str]:
        res, _ = r.ioctl_raw(dev, uv.VFIO_DEVICE_FEATURE, raw)
        return res.errno, res.where

    # vfio_main.c:1219-1232
    assert call(feature(get, argsz=7)) == (errno.EINVAL, f"{MAIN}:1220")
    assert call(feature(get | (1 << 19))) == (errno.EINVAL, f"{MAIN}:1226")
    assert call(feature(get | set_ | 3)) == (errno.EINVAL, f"{MAIN}:1232")
    # no mig_ops / log_ops: ENOTTY from vfio_main.c
    assert call(feature(get | uv.VFIO_DEVICE_FEATURE_MIGRATION)) == (errno.ENOTTY, f"{MAIN}:981")
    assert call(feature(set_ | uv.VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP)) == (errno.ENOTTY, f"{MAIN}:1146")
    # vfio-pci's device_feature: unknown features ENOTTY (vfio_pci_core.c:1563)
    assert call(feature(set_ | uv.VFIO_DEVICE_FEATURE_BUS_MASTER)) == (errno.ENOTTY, f"{CORE}:1563")
    # the VF token exists on PFs only (:1529-1530)
    assert call(feature(set_ | uv.VFIO_DEVICE_FEATURE_PCI_VF_TOKEN, bytes(16))) == (errno.ENOTTY, f"{CORE}:1530")
    # low power: PROBE is 0; GET is not supported (vfio.h:252-254)
    lp = uv.VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY
    assert call(feature(probe | set_ | lp)) == (0, "")
    assert call(feature(get | lp)) == (errno.EINVAL, "include/linux/vfio.h:254")
    assert call(feature(set_ | lp)) == (0, "")
    # already engaged: EINVAL (:327-329); EXIT, then ENTRY works again
    assert call(feature(set_ | lp)) == (errno.EINVAL, f"{CORE}:329")
    assert call(feature(set_ | uv.VFIO_DEVICE_FEATURE_LOW_POWER_EXIT)) == (0, "")
    assert call(feature(set_ | lp)) == (0, "")


def test_low_power_with_wakeup() -> None:
    r = Rig()
    dev = open_e1000(r)
    e = r.eventfd()
    set_ = uv.VFIO_DEVICE_FEATURE_SET
    wake = uv.VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP
    # payload < 8 (vfio.h:260-261); negative eventfd (:379-380)
    assert r.ioctl_raw(dev, uv.VFIO_DEVICE_FEATURE, feature(set_ | wake, bytes(4)))[0].errno == errno.EINVAL
    res, _ = r.ioctl_raw(dev, uv.VFIO_DEVICE_FEATURE, feature(set_ | wake, struct.pack("<iI", -1, 0)))
    assert (res.errno, res.where) == (errno.EINVAL, f"{CORE}:380")
    assert r.ioctl_raw(dev, uv.VFIO_DEVICE_FEATURE, feature(set_ | wake, struct.pack("<iI", e, 0)))[0].ok
    # the next ioctl resumes the device: the wakeup eventfd fires (:477-481)
    assert r.ioctl(dev, uv.VFIO_DEVICE_GET_INFO, uv.vfio_device_info(argsz=24)).ok
    assert r.eventfd_count(e) == 1


def test_vf_token_feature_rules() -> None:
    r = Rig()
    pf = open_nvme(r)
    tok = uv.VFIO_DEVICE_FEATURE_PCI_VF_TOKEN
    get, set_, probe = uv.VFIO_DEVICE_FEATURE_GET, uv.VFIO_DEVICE_FEATURE_SET, uv.VFIO_DEVICE_FEATURE_PROBE

    def call(raw: bytes) -> tuple[int, str]:
        res, _ = r.ioctl_raw(pf, uv.VFIO_DEVICE_FEATURE, raw)
        return res.errno, res.where

    # SET only (:1535-1538 with vfio.h:249-263)
    assert call(feature(get | tok)) == (errno.EINVAL, "include/linux/vfio.h:254")
    assert call(feature(get | probe | tok)) == (errno.EINVAL, "include/linux/vfio.h:254")
    assert call(feature(probe | set_ | tok)) == (0, "")
    assert call(feature(set_ | tok, bytes(15))) == (errno.EINVAL, "include/linux/vfio.h:261")
    assert call(feature(set_ | tok, bytes(16))) == (0, "")
