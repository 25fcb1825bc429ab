"""drivers/vfio/pci/vfio_pci_rdwr.c: BAR and ROM accesses through the device fd, and the
dispatch of a read or write by region (vfio_pci_rw() of vfio_pci_core.c).

A BAR's contents are the device's registers, which the model does not emulate: it keeps
the bytes written, and reads zeros where nothing was (cases compare BAR data through a
mask).  What vfio-pci itself decides is mirrored: the region's end, the MSI-X table
(reads of it fill with 0xff, writes to it are dropped), the memory enable of the virtual
command register (EIO when it is off), the ROM's read-only region, the VGA region."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from ...uapi import vfio as uv
from ..errors import Errno, cite
from . import pci_config

if TYPE_CHECKING:
    from ..pci.pci import PciDev
    from .pci_core import VfioPciCoreDevice, VfioPciIoeventfd

RDWR_C = "drivers/vfio/pci/vfio_pci_rdwr.c"
CORE_C = "drivers/vfio/pci/vfio_pci_core.c"
VFIO_PCI_OFFSET_SHIFT = 40
VFIO_PCI_OFFSET_MASK = (1 << VFIO_PCI_OFFSET_SHIFT) - 1
PCI_ROM_RESOURCE = 6
ROM_SIGNATURE = b"\x55\xaa"   # what pci_map_rom() checks an image starts with


def bar_memory(pdev: PciDev, bar: int) -> bytearray:
    """The model's stand-in for a BAR's registers (a ROM starts with its signature)."""
    mem: dict[int, bytearray] = pdev.__dict__.setdefault("bar_memory", {})
    if bar not in mem:
        mem[bar] = bytearray(pdev.resource_len(bar))
        if bar == PCI_ROM_RESOURCE:
            mem[bar][:2] = ROM_SIGNATURE
    return mem[bar]


def vfio_pci_core_do_io_rw(vdev: VfioPciCoreDevice, test_mem: bool, io: bytearray, pos: int, count: int,
                           x_start: int, x_end: int, data: bytes | None) -> tuple[int, bytes]:
    """:141-207: the excluded range [x_start, x_end) fills reads with 0xff and drops writes;
    an access outside it with the memory enable off fails with EIO (:49, :77), what was
    done before it notwithstanding."""
    out = bytearray()
    done = 0
    while count:
        if pos < x_start:
            fillable = min(count, x_start - pos)
        elif pos >= x_end:
            fillable = count
        else:
            fillable = 0
        if fillable:
            width = next(w for w in (8, 4, 2, 1) if fillable >= w and not pos % w)
            if test_mem and not pci_config.memory_enabled(vdev):
                raise Errno(errno.EIO, cite(RDWR_C, 77 if data is None else 49))
            if data is None:
                out += io[pos:pos + width]
            else:
                io[pos:pos + width] = data[done:done + width]
            filled = width
        else:
            filled = min(count, x_end - pos)
            if data is None:
                out += b"\xff" * filled
        count -= filled
        done += filled
        pos += filled
    return done, bytes(out)


def vfio_pci_bar_rw(vdev: VfioPciCoreDevice, ppos: int, count: int, data: bytes | None) -> bytes | int:
    """:235-308."""
    pdev = vdev.dev
    pos = ppos & VFIO_PCI_OFFSET_MASK
    bar = ppos >> VFIO_PCI_OFFSET_SHIFT
    end = pdev.resource_len(bar)   # pci_resource_start() is set for every BAR the function has
    if not end:
        raise Errno(errno.EINVAL, cite(RDWR_C, 254))
    if pos >= end:
        raise Errno(errno.EINVAL, cite(RDWR_C, 257))
    count = min(count, end - pos)
    x_start = x_end = 0
    if bar == PCI_ROM_RESOURCE:
        # pci_map_rom() (drivers/pci/rom.c:254-269) reads the image's signature through the
        # ROM BAR; with the memory enable of the command register (written through to the
        # function, vfio_pci_config.c:613) off it reads all ones, no image: NULL, ENOMEM.
        if not pci_config.memory_enabled(vdev):
            raise Errno(errno.ENOMEM, cite(RDWR_C, 269))
        x_start, x_end = end, end   # the image fills the ROM BAR here
    if bar == vdev.msix_bar:
        x_start, x_end = vdev.msix_offset, vdev.msix_offset + vdev.msix_size
    test_mem = bar not in pdev.fn.io_bars
    done, out = vfio_pci_core_do_io_rw(vdev, test_mem, bar_memory(pdev, bar), pos, count, x_start, x_end, data)
    return out if data is None else done


def vfio_pci_rw(vdev: VfioPciCoreDevice, ppos: int, count: int, data: bytes | None) -> bytes | int:
    """vfio_pci_core_read()/_write() and vfio_pci_rw() (vfio_pci_core.c:1568-1639)."""
    if not count:
        return b"" if data is None else 0
    index = ppos >> VFIO_PCI_OFFSET_SHIFT
    if index >= uv.VFIO_PCI_NUM_REGIONS:   # vdev->num_regions: no device-specific regions
        raise Errno(errno.EINVAL, cite(CORE_C, 1575))
    if index == uv.VFIO_PCI_CONFIG_REGION_INDEX:
        return pci_config.vfio_pci_config_rw(vdev, ppos & VFIO_PCI_OFFSET_MASK, count, data)
    if index == uv.VFIO_PCI_ROM_REGION_INDEX:
        if data is not None:
            raise Errno(errno.EINVAL, cite(CORE_C, 1591))
        return vfio_pci_bar_rw(vdev, ppos, count, None)
    if index <= uv.VFIO_PCI_BAR5_REGION_INDEX:
        return vfio_pci_bar_rw(vdev, ppos, count, data)
    # VFIO_PCI_VGA_REGION_INDEX: CONFIG_VFIO_PCI_VGA is off, the stub refuses
    raise Errno(errno.EINVAL, cite("drivers/vfio/pci/vfio_pci_priv.h", 51))


def vfio_pci_ioeventfd_handler(vdev: VfioPciCoreDevice, ioeventfd: VfioPciIoeventfd) -> bool:
    """:408-426, an ioeventfd's virqfd handler: the data goes to the BAR (through its
    register stand-in), unless the BAR is memory and the command register's memory enable
    is off.  Never asks for the thread: the memory lock is never contended here."""
    test_mem = ioeventfd.bar not in vdev.dev.fn.io_bars
    if test_mem and not pci_config.memory_enabled(vdev):
        return False
    io = bar_memory(vdev.dev, ioeventfd.bar)
    io[ioeventfd.pos:ioeventfd.pos + ioeventfd.count] = ioeventfd.data.to_bytes(8, "little")[:ioeventfd.count]
    return False
