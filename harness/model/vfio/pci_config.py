"""drivers/vfio/pci/vfio_pci_config.c: the config space a vfio-pci user reads and writes
through the config region (VFIO_PCI_CONFIG_REGION_INDEX).

vfio_config_init() copies the header and every capability the driver knows into ``vconfig``
and maps each byte to the capability it belongs to; an access is cut into aligned chunks
within one capability, and each chunk goes through that capability's permission bits:
virtualized bits come from (and go to) ``vconfig``, the others from (to) the hardware.

The hardware is ``PciFunction``'s description (harness.model.topologies.HARDWARE): the
IDs, command register, BARs, capability chains.  Bytes it does not describe (the
contents of a capability past its header, revision, subsystem IDs) read as 0 here: cases
compare them through a mask.  The PM capability's control register moves the function between
D0 and D3hot (vfio_pm_config_write()).  Not mirrored yet: the write handlers of the PCI Express,
PCI-X, VPD, AF, AER and power-budget capabilities (the model drops such writes), MSI's
virtualized registers, and the BAR restore after a backdoor reset."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from ..errors import Errno, cite

if TYPE_CHECKING:
    from ..pci.pci import PciDev
    from .pci_core import VfioPciCoreDevice

CONFIG_C = "drivers/vfio/pci/vfio_pci_config.c"
PCI_STD_HEADER_SIZEOF = 64
PCI_CFG_SPACE_SIZE = 256
PCI_COMMAND = 0x04
PCI_STATUS = 0x06
PCI_CAPABILITY_LIST = 0x34
PCI_INTERRUPT_PIN = 0x3D
PCI_BASE_ADDRESS_0 = 0x10
PCI_ROM_ADDRESS = 0x30
PCI_COMMAND_IO = 0x1
PCI_COMMAND_MEMORY = 0x2
PCI_COMMAND_INTX_DISABLE = 0x400
PCI_STATUS_CAP_LIST = 0x10
PCI_CAP_ID_BASIC = 0        # the fake capability ID of the standard header (:32)
PCI_CAP_ID_PM = 0x01
PCI_PM_CTRL = 4
PCI_PM_CTRL_STATE_MASK = 0x3
PCI_D0 = 0
PCI_D3HOT = 3
PCI_CAP_ID_EXP = 0x10
PCI_CAP_ID_INVALID = 0xFF
PCI_CAP_ID_INVALID_VIRT = 0xFE
PCI_CAP_ID_MAX = 0x15
PCI_EXT_CAP_ID_MAX = 0x20
PCI_EXP_TYPE_RC_END = 0x9
VARIABLE = 0xFF

# pci_cap_length[] (:43-64): 0 hides the capability, VARIABLE asks vfio_cap_len().
PCI_CAP_LENGTH = {
    0x01: 8, 0x02: 12, 0x03: 8, 0x05: VARIABLE, 0x07: VARIABLE, 0x08: VARIABLE, 0x09: VARIABLE,
    0x10: VARIABLE, 0x11: 12, 0x12: VARIABLE, 0x13: 6,
}
# pci_ext_cap_length[] (:71-100).
PCI_EXT_CAP_LENGTH = {
    0x01: 0x2C, 0x02: VARIABLE, 0x03: 12, 0x04: 16, 0x08: VARIABLE, 0x09: VARIABLE, 0x0B: VARIABLE,
    0x0D: VARIABLE, 0x0E: 8, 0x0F: 8, 0x10: 0x40, 0x12: 0x30, 0x13: 0x10, 0x15: VARIABLE,
    0x16: VARIABLE, 0x17: VARIABLE, 0x18: 8, 0x23: VARIABLE,
}


def _perm_bits(*fields: tuple[int, int, int, int]) -> tuple[bytes, bytes]:
    """(virt, write) bytes of the standard header from (offset, size, virt, write) fields."""
    virt, write = bytearray(PCI_STD_HEADER_SIZEOF), bytearray(PCI_STD_HEADER_SIZEOF)
    for off, size, v, w in fields:
        virt[off:off + size] = v.to_bytes(size, "little")
        write[off:off + size] = w.to_bytes(size, "little")
    return bytes(virt), bytes(write)


# init_pci_cap_basic_perm() (:656-701).
_ALL = 0xFFFFFFFF
BASIC_VIRT, BASIC_WRITE = _perm_bits(
    (0x00, 2, 0xFFFF, 0), (0x02, 2, 0xFFFF, 0),                  # vendor, device: virtualized
    (PCI_COMMAND, 2, PCI_COMMAND_INTX_DISABLE, 0xFFFF),
    (PCI_STATUS, 2, PCI_STATUS_CAP_LIST, 0),
    (0x0C, 1, 0, 0xFF), (0x0D, 1, 0, 0xFF), (0x0F, 1, 0, 0xFF),  # cache line, latency, BIST
    *((PCI_BASE_ADDRESS_0 + 4 * i, 4, _ALL, _ALL) for i in range(6)),
    (PCI_ROM_ADDRESS, 4, _ALL, _ALL),
    (PCI_CAPABILITY_LIST, 1, 0xFF, 0),
    (0x3C, 1, 0xFF, 0xFF), (PCI_INTERRUPT_PIN, 1, 0xFF, 0),
)


def is_bar(offset: int) -> bool:
    """is_bar() (:34-36)."""
    return PCI_BASE_ADDRESS_0 <= offset < PCI_BASE_ADDRESS_0 + 24 or PCI_ROM_ADDRESS <= offset < PCI_ROM_ADDRESS + 4


# -- the hardware ---------------------------------------------------------------------------

def _bar_address(bar: int, size: int) -> int:
    """Where the model's firmware put a BAR: any address aligned to its size will do (the
    guest's firmware picks its own; cases compare BARs through their size masks)."""
    return 0xE0000000 + (bar + 1) * max(size, 0x1000000)


def hw_config(pdev: PciDev) -> bytearray:
    """The function's config space as the hardware shows it, built once from its description."""
    cfg: bytearray | None = getattr(pdev, "config", None)
    if cfg is not None:
        return cfg
    fn = pdev.fn
    cfg = bytearray(pdev.cfg_size)
    cfg[0:2] = fn.vendor.to_bytes(2, "little")
    cfg[2:4] = fn.device.to_bytes(2, "little")
    cfg[PCI_COMMAND:PCI_COMMAND + 2] = fn.command.to_bytes(2, "little")
    if fn.capabilities:
        cfg[PCI_STATUS] |= PCI_STATUS_CAP_LIST
    cfg[8:12] = (fn.class_code << 8).to_bytes(4, "little")
    bar = 0
    while bar < 6:
        size = pdev.resource_len(bar)
        off = PCI_BASE_ADDRESS_0 + 4 * bar
        if bar in fn.io_bars and size:
            cfg[off:off + 4] = (0xC000 + 0x100 * bar | 1).to_bytes(4, "little")
        elif size:
            flags = 0x4 if bar in fn.bar_mem64 else 0
            cfg[off:off + 4] = (_bar_address(bar, size) | flags).to_bytes(4, "little")
        bar += 2 if bar in fn.bar_mem64 else 1
    if fn.rom_size:
        cfg[PCI_ROM_ADDRESS:PCI_ROM_ADDRESS + 4] = _bar_address(6, fn.rom_size).to_bytes(4, "little")
    caps = fn.capabilities
    if caps:
        cfg[PCI_CAPABILITY_LIST] = caps[0][0]
    for i, (off, cap) in enumerate(caps):
        cfg[off] = cap
        cfg[off + 1] = caps[i + 1][0] if i + 1 < len(caps) else 0
        if cap == PCI_CAP_ID_EXP:
            cfg[off + 2:off + 4] = fn.pcie_flags.to_bytes(2, "little")
    cfg[PCI_INTERRUPT_PIN] = fn.interrupt_pin
    ecaps = fn.ext_capabilities
    for i, (off, cap, version) in enumerate(ecaps):
        nxt = ecaps[i + 1][0] if i + 1 < len(ecaps) else 0
        cfg[off:off + 4] = (cap | version << 16 | nxt << 20).to_bytes(4, "little")
    pdev.config = cfg  # type: ignore[attr-defined]
    return cfg


def hw_write(pdev: PciDev, pos: int, data: bytes) -> None:
    """A config write as the device takes it: only the bits it implements as writable change."""
    cfg = hw_config(pdev)
    wmask = dict(pdev.fn.config_wmask)
    for i, b in enumerate(data):
        m = wmask.get(pos + i, 0)
        cfg[pos + i] = (cfg[pos + i] & ~m) | (b & m)


def pci_enable_device(pdev: PciDev) -> None:
    """pci_enable_resources(): the command register decodes every BAR type the function has."""
    cfg = hw_config(pdev)
    fn = pdev.fn
    cmd = int.from_bytes(cfg[PCI_COMMAND:PCI_COMMAND + 2], "little")
    if any(pdev.resource_len(b) for b in fn.io_bars):
        cmd |= PCI_COMMAND_IO
    if any(pdev.resource_len(b) for b in range(7) if b not in fn.io_bars):
        cmd |= PCI_COMMAND_MEMORY
    cfg[PCI_COMMAND:PCI_COMMAND + 2] = cmd.to_bytes(2, "little")


# -- power state (drivers/pci/pci.c, vfio_pci_core.c:268-316) -----------------------------------

def _pm_cap(pdev: PciDev) -> int | None:
    """pdev->pm_cap: the PM capability's offset, None when the function has none."""
    return next((off for off, cap in pdev.fn.capabilities if cap == PCI_CAP_ID_PM), None)


def current_state(pdev: PciDev) -> int:
    """pdev->current_state as the PMCSR power state bits hold it (D0 without a PM capability)."""
    pm = _pm_cap(pdev)
    if pm is None:
        return PCI_D0
    return hw_config(pdev)[pm + PCI_PM_CTRL] & PCI_PM_CTRL_STATE_MASK


def pci_set_power_state(pdev: PciDev, state: int) -> None:
    """pci_set_power_state() (drivers/pci/pci.c:1436-1445,1604-1625) for D0 and D3hot: without
    a PM capability nothing changes; D1 and D2 need d1_support/d2_support from the PMC, which
    the functions here do not advertise (-EIO, the state unchanged)."""
    pm = _pm_cap(pdev)
    if pm is None or state not in (PCI_D0, PCI_D3HOT):
        return
    cfg = hw_config(pdev)
    cfg[pm + PCI_PM_CTRL] = (cfg[pm + PCI_PM_CTRL] & ~PCI_PM_CTRL_STATE_MASK) | state


def vfio_pci_set_power_state(vdev: VfioPciCoreDevice, state: int) -> int:
    """vfio_pci_set_power_state() (vfio_pci_core.c:268-316): a PF with VFs enabled stays where it
    is for any state below D0 (:274-279, -EBUSY).  The save/restore around D3hot for NoSoftRst-
    functions (needs_pm_restore) is not mirrored: the guests' PM-capable function (QEMU's NVMe)
    sets No_Soft_Reset."""
    if state > PCI_D0 and vdev.sriov_active:
        return -errno.EBUSY
    pci_set_power_state(vdev.dev, state)
    return 0


def _pm_write(vdev: VfioPciCoreDevice, offset: int, val: int) -> None:
    """vfio_pm_config_write() (vfio_pci_config.c:719-747): the state bits are not written by
    vfio_default_config_write() (init_pci_cap_pm_perm(), :773: writable are ~STATE_MASK), a
    write at PCI_PM_CTRL asks vfio_pci_set_power_state() for them; its result is not reported."""
    if offset == PCI_PM_CTRL:
        vfio_pci_set_power_state(vdev, val & PCI_PM_CTRL_STATE_MASK)


# -- vfio_config_init() (:1734-1837) ------------------------------------------------------------

def vfio_cap_len(vdev: VfioPciCoreDevice, cap: int, pos: int) -> int:
    """:1309-1382, for the capabilities a PciFunction describes (a PCI Express one's length
    follows its version and port type; others the model cannot size count as the header)."""
    pdev = vdev.dev
    if cap == PCI_CAP_ID_EXP:
        if pdev.cfg_size > PCI_CFG_SPACE_SIZE:
            vdev.extended_caps = bool(int.from_bytes(hw_config(pdev)[PCI_CFG_SPACE_SIZE:PCI_CFG_SPACE_SIZE + 4],
                                                     "little"))
        flags = pdev.fn.pcie_flags
        rc_end = (flags >> 4) & 0xF == PCI_EXP_TYPE_RC_END
        if flags & 0xF == 1:
            return 0xC if rc_end else 0x14
        return 0x2C if rc_end else 0x3C
    return 4


def vfio_cap_init(vdev: VfioPciCoreDevice) -> None:
    """:1521-1612: hidden capabilities (length 0) are skipped in the virtual chain."""
    phys = hw_config(vdev.dev)
    vconfig, cmap = vdev.vconfig, vdev.config_map
    if not phys[PCI_STATUS] & PCI_STATUS_CAP_LIST:
        return
    pos = phys[PCI_CAPABILITY_LIST]
    prev = PCI_CAPABILITY_LIST
    loops = (PCI_CFG_SPACE_SIZE - PCI_STD_HEADER_SIZEOF) // 4
    caps = 0
    while pos and loops:
        loops -= 1
        cap, nxt = phys[pos], phys[pos + 1]
        length = PCI_CAP_LENGTH.get(cap, 0) if 0 < cap <= PCI_CAP_ID_MAX else 0
        if length == VARIABLE:
            length = vfio_cap_len(vdev, cap, pos)
        if not length:
            vconfig[prev] = nxt
            pos = nxt
            continue
        cmap[pos:pos + length] = bytes([cap]) * length
        vconfig[pos:pos + length] = phys[pos:pos + length]
        prev = pos + 1
        pos = nxt
        caps += 1
    if not caps:
        vconfig[PCI_STATUS] &= ~PCI_STATUS_CAP_LIST


def vfio_ecap_init(vdev: VfioPciCoreDevice) -> None:
    """:1614-1714: a hidden extended capability is skipped by its predecessor's next field, or,
    first in the chain, left as a placeholder header with ID and version zeroed."""
    if not vdev.extended_caps:
        return
    phys = hw_config(vdev.dev)
    vconfig, cmap = vdev.vconfig, vdev.config_map
    epos = PCI_CFG_SPACE_SIZE
    loops = (vdev.dev.cfg_size - PCI_CFG_SPACE_SIZE) // 4
    prev: int | None = None
    ecaps = 0
    while loops and epos >= PCI_CFG_SPACE_SIZE:
        loops -= 1
        header = int.from_bytes(phys[epos:epos + 4], "little")
        ecap, nxt = header & 0xFFFF, (header >> 20) & 0xFFC
        length = PCI_EXT_CAP_LENGTH.get(ecap, 0) if ecap <= PCI_EXT_CAP_ID_MAX else 0
        if length == VARIABLE:
            length = 4
        hidden = False
        if not length:
            if prev is not None:
                word = int.from_bytes(vconfig[prev:prev + 4], "little") & ~(0xFFC << 20) | nxt << 20
                vconfig[prev:prev + 4] = word.to_bytes(4, "little")
                epos = nxt
                continue
            length, hidden = 4, True
        cmap[epos:epos + length] = bytes([ecap & 0xFF]) * length
        vconfig[epos:epos + length] = phys[epos:epos + length]
        if hidden:
            word = int.from_bytes(vconfig[epos:epos + 4], "little") & (0xFFC << 20)
            vconfig[epos:epos + 4] = word.to_bytes(4, "little")
        else:
            ecaps += 1
        prev = epos
        epos = nxt
    if not ecaps:
        vconfig[PCI_CFG_SPACE_SIZE:PCI_CFG_SPACE_SIZE + 4] = bytes(4)


def vfio_config_init(vdev: VfioPciCoreDevice) -> None:
    """:1734-1837: the header and the known capabilities copied from the hardware."""
    pdev = vdev.dev
    phys = hw_config(pdev)
    vdev.config_map = bytearray([PCI_CAP_ID_BASIC]) * PCI_STD_HEADER_SIZEOF + \
        bytearray([PCI_CAP_ID_INVALID]) * (pdev.cfg_size - PCI_STD_HEADER_SIZEOF)
    vdev.vconfig = bytearray(pdev.cfg_size)
    vdev.vconfig[:PCI_STD_HEADER_SIZEOF] = phys[:PCI_STD_HEADER_SIZEOF]
    vdev.bardirty = True
    vdev.extended_caps = False
    if pdev.is_virtfn:
        vdev.vconfig[0:2] = pdev.fn.vendor.to_bytes(2, "little")
        vdev.vconfig[2:4] = pdev.fn.device.to_bytes(2, "little")
        vdev.vconfig[PCI_INTERRUPT_PIN] = 0
    vfio_cap_init(vdev)
    vfio_ecap_init(vdev)


# -- accesses ---------------------------------------------------------------------------------

def _u(b: bytes | bytearray) -> int:
    return int.from_bytes(b, "little")


def vfio_bar_fixup(vdev: VfioPciCoreDevice) -> None:
    """:471-523: BAR sizing: the virtual BARs keep only the bits their size allows, and
    the flags of their type; an unimplemented BAR reads 0."""
    if not vdev.bardirty:
        return
    pdev, v = vdev.dev, vdev.vconfig
    i = 0
    while i < 6:
        off = PCI_BASE_ADDRESS_0 + 4 * i
        size = pdev.resource_len(i)
        if not size:
            v[off:off + 4] = bytes(4)
            i += 1
            continue
        mask = ~(size - 1) & ((1 << 64) - 1)
        if i in pdev.fn.io_bars:
            flags = 0x1
        else:
            flags = 0x4 if i in pdev.fn.bar_mem64 else 0
        v[off:off + 4] = ((_u(v[off:off + 4]) & mask & 0xFFFFFFFF) | flags).to_bytes(4, "little")
        if flags & 0x4:
            v[off + 4:off + 8] = (_u(v[off + 4:off + 8]) & (mask >> 32)).to_bytes(4, "little")
            i += 1
        i += 1
    rom = pdev.resource_len(6)
    if rom:
        mask = (~(rom - 1) | 1) & 0xFFFFFFFF
        rom_bar = _u(v[PCI_ROM_ADDRESS:PCI_ROM_ADDRESS + 4]) & mask
        v[PCI_ROM_ADDRESS:PCI_ROM_ADDRESS + 4] = rom_bar.to_bytes(4, "little")
    else:
        v[PCI_ROM_ADDRESS:PCI_ROM_ADDRESS + 4] = bytes(4)
    vdev.bardirty = False


def _default_read(vdev: VfioPciCoreDevice, pos: int, count: int, virt: int) -> int:
    """vfio_default_config_read() (:175-199)."""
    val = _u(vdev.vconfig[pos:pos + count])
    if virt != (1 << 8 * count) - 1:
        val = (_u(hw_config(vdev.dev)[pos:pos + count]) & ~virt) | (val & virt)
    return val


def _default_write(vdev: VfioPciCoreDevice, pos: int, count: int, virt: int, write: int, val: int) -> None:
    """vfio_default_config_write() (:201-245)."""
    if not write:
        return
    if write & virt:
        cur = _u(vdev.vconfig[pos:pos + count])
        cur = (cur & ~(write & virt)) | (val & write & virt)
        vdev.vconfig[pos:pos + count] = cur.to_bytes(count, "little")
    if write & ~virt:
        phys = _u(hw_config(vdev.dev)[pos:pos + count])
        phys = (phys & ~(write & ~virt)) | (val & write & ~virt)
        hw_write(vdev.dev, pos, phys.to_bytes(count, "little"))


def _basic_read(vdev: VfioPciCoreDevice, pos: int, count: int) -> int:
    """vfio_basic_config_read() (:525-544)."""
    if is_bar(pos):
        vfio_bar_fixup(vdev)
    return _default_read(vdev, pos, count, _u(BASIC_VIRT[pos:pos + count]))


def _basic_write(vdev: VfioPciCoreDevice, pos: int, count: int, val: int) -> None:
    """vfio_basic_config_write() (:563-653): the memory and I/O enables are remembered in
    vconfig (BAR accesses test the memory one), INTx disable is emulated."""
    _default_write(vdev, pos, count, _u(BASIC_VIRT[pos:pos + count]), _u(BASIC_WRITE[pos:pos + count]), val)
    v = vdev.vconfig
    if pos == PCI_COMMAND:
        mask = PCI_COMMAND_MEMORY | PCI_COMMAND_IO
        cmd = (_u(v[PCI_COMMAND:PCI_COMMAND + 2]) & ~mask) | (val & mask)
        v[PCI_COMMAND:PCI_COMMAND + 2] = cmd.to_bytes(2, "little")
    if PCI_COMMAND <= pos <= PCI_COMMAND + 1:
        vdev.virq_disabled = bool(_u(v[PCI_COMMAND:PCI_COMMAND + 2]) & PCI_COMMAND_INTX_DISABLE)
    if is_bar(pos):
        vdev.bardirty = True


def _direct_read(vdev: VfioPciCoreDevice, pos: int, count: int, offset: int) -> int:
    """vfio_direct_config_read() (:248-270): the hardware, but a capability's ID and next
    pointer (an extended one's whole header) as vconfig has them."""
    raw = bytearray(hw_config(vdev.dev)[pos:pos + count])
    if pos >= PCI_CFG_SPACE_SIZE:
        if offset < 4:
            raw[:] = vdev.vconfig[pos:pos + count]
    elif pos >= PCI_STD_HEADER_SIZEOF:
        if offset == 0 and count > 1:
            raw[:2] = vdev.vconfig[pos:pos + 2]
        elif offset == 1:
            raw[:1] = vdev.vconfig[pos:pos + 1]
    return _u(raw)


def _cap_start(vdev: VfioPciCoreDevice, pos: int) -> int:
    """vfio_find_cap_start() (:1117-1132)."""
    cmap = vdev.config_map
    base = PCI_CFG_SPACE_SIZE if pos >= PCI_CFG_SPACE_SIZE else PCI_STD_HEADER_SIZEOF
    cap = cmap[pos]
    if cap == PCI_CAP_ID_BASIC and pos < PCI_STD_HEADER_SIZEOF:
        return 0
    while pos - 1 >= base and cmap[pos - 1] == cap:
        pos -= 1
    return pos


def vfio_config_do_rw(vdev: VfioPciCoreDevice, pos: int, count: int, data: bytes | None) -> tuple[int, bytes]:
    """:1868-1957: one chunk (aligned, within one capability's dword); ``data`` None reads.
    Returns the chunk's length and, for a read, its bytes."""
    cfg_size = vdev.dev.cfg_size
    if pos < 0 or pos >= cfg_size or pos + count > cfg_size:
        raise Errno(errno.EFAULT, cite(CONFIG_C, 1880))
    cmap = vdev.config_map
    cap = cmap[pos]
    rem = 1
    while (pos + rem) % 4 and cmap[pos + rem] == cap:
        rem += 1
    count = min(count, rem)
    count = 4 if count >= 4 and not pos % 4 else 2 if count >= 2 and not pos % 2 else 1
    if data is not None:
        val = _u(data[:count])
        if cap == PCI_CAP_ID_INVALID:
            hw_write(vdev.dev, pos, data[:count])           # unassigned_perms: raw
        elif cap == PCI_CAP_ID_INVALID_VIRT:
            vdev.vconfig[pos:pos + count] = data[:count]
        elif cap == PCI_CAP_ID_BASIC and pos < PCI_STD_HEADER_SIZEOF:
            _basic_write(vdev, pos, count, val)
        elif cap == PCI_CAP_ID_PM and pos < PCI_CFG_SPACE_SIZE:
            _pm_write(vdev, pos - _cap_start(vdev, pos), val)
        # other capabilities: read-only (direct_ro) here; see the module's note on write handlers
        return count, b""
    if cap == PCI_CAP_ID_INVALID:
        val = _u(hw_config(vdev.dev)[pos:pos + count])
    elif cap == PCI_CAP_ID_INVALID_VIRT:
        val = _u(vdev.vconfig[pos:pos + count])
    elif cap == PCI_CAP_ID_BASIC and pos < PCI_STD_HEADER_SIZEOF:
        val = _basic_read(vdev, pos, count)
    else:
        val = _direct_read(vdev, pos, count, pos - _cap_start(vdev, pos))
    return count, val.to_bytes(count, "little")


def vfio_pci_config_rw(vdev: VfioPciCoreDevice, pos: int, count: int, data: bytes | None) -> bytes | int:
    """:1959-1982: chunk by chunk; a chunk that fails fails the whole call."""
    out = bytearray()
    done = 0
    while count:
        n, chunk = vfio_config_do_rw(vdev, pos, count, None if data is None else data[done:])
        out += chunk
        count -= n
        done += n
        pos += n
    return bytes(out) if data is None else done


def memory_enabled(vdev: VfioPciCoreDevice) -> bool:
    """__vfio_pci_memory_enabled() (:404-418): the virtual command register's memory enable,
    and never in D3hot (:415)."""
    cmd = _u(vdev.vconfig[PCI_COMMAND:PCI_COMMAND + 2])
    return current_state(vdev.dev) < PCI_D3HOT and bool(cmd & PCI_COMMAND_MEMORY)
