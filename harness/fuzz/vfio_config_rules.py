"""The VFIO machine's config-space rules: preads and pwrites of a device fd's config region
(VFIO_PCI_CONFIG_REGION_INDEX) at the edges of the registers and capabilities, across them
and past the end of config space; the command register (memory and I/O decoding, INTx
disable), BAR and ROM BAR sizing writes (harness/fuzz/vfio_rules.py).

Only what vfio-pci decides is compared byte for byte: the IDs, the command register, the
class code, the capability pointer, the interrupt pin, and a BAR's type bits (its address
is the firmware's).  The other bytes are the hardware's or the firmware's (a capability's
body, the status register, the interrupt line), which the model does not describe: they are compared through a mask of
0, so a read there compares its errno and its length only."""

from __future__ import annotations

from .machine import Choices, hex_, one_of, precondition, rule
from .vfio_state import VfioState

CONFIG = "VFIO_PCI_CONFIG_REGION_INDEX << 40"
# Register and capability edges: the header's registers, the first capabilities (at 0x40,
# 0x50 ... on the functions here), the end of the standard header (0x40) and of
# conventional config space (0x100), the first extended capability, the end of PCIe's (0x1000).
EDGES = (0x0, 0x2, 0x4, 0x6, 0x8, 0xC, 0x10, 0x14, 0x18, 0x20, 0x24, 0x2C, 0x30, 0x34, 0x3C, 0x3E,
         0x40, 0x44, 0x48, 0x50, 0x60, 0x70, 0x80, 0xA0, 0xC0, 0xFC, 0x100, 0x104, 0x140, 0xFFC)
# Raw writes stay in the standard header: the model drops writes to a capability (the PM,
# PCI Express ... write handlers are not mirrored, harness/model/vfio/pci_config.py).
HEADER_EDGES = tuple(e for e in EDGES if e < 0x40)
PAST_END = (0x1000, 0x1001, 0x2000, 1 << 39, (1 << 40) - 1)
LENGTHS = (4, 1, 2, 8, 3, 16)
# Bytes compared whole: IDs, command, class code, capability pointer, interrupt pin.  Not the
# interrupt line: virtual, but it starts as the line the guest's firmware assigned (the
# fuzzer's run against 6.12.118 read 0x0b where the model has 0).
_EXACT = {*range(0, 6), *range(9, 12), 0x34, 0x3D}
# A BAR's and the ROM BAR's first byte: the type bits (memory/I/O, 64-bit, prefetch, ROM enable).
_TYPE_BITS = {**{0x10 + 4 * i: 0x0F for i in range(6)}, 0x30: 0x01}
COMMAND_VALUES = one_of(0x0006, 0x0000, 0x0002, 0x0007, 0x0406, 0x0400, 0x0004, 0xFFFF)
SIZING = one_of("ffffffff", "00000000", "ffffffffffffffff", "fffffffe")


def config_mask(offset: int, length: int) -> int:
    """The bits of a read of ``length`` at ``offset`` in config space that are compared."""
    mask = 0
    for i in range(min(length, 16)):
        at = offset + i
        byte = 0xFF if at in _EXACT else _TYPE_BITS.get(at, 0)
        mask |= byte << 8 * i
    return mask


class ConfigRules(VfioState):
    def _config_at(self, c: Choices, edges: tuple[int, ...] = EDGES) -> tuple[str, int, int]:
        """A device fd, an offset and a length: at or a byte or two off an edge (valid), or
        past the end of config space or of the region (invalid)."""
        device = c.pick(self.fds_of("device"))
        f = self.fields(c, ["offset", "length"])
        offset = f.get("offset", lambda c: c.pick(edges) + c.pick((0, 0, 1, 2, 3)), one_of(*PAST_END))
        length = f.get("length", one_of(*LENGTHS), one_of(0, 0x1001, 0x10000))
        return device, offset, length

    @precondition(lambda self: self.has_device())
    @rule
    def config_read(self, c: Choices) -> None:
        device, offset, length = self._config_at(c)
        self.do({"pread": device, "offset": f"({CONFIG}) + {hex_(offset)}", "length": length,
                 "mask": hex_(config_mask(offset, length)) if length <= 16 else "0"})

    @precondition(lambda self: self.has_device())
    @rule
    def config_write(self, c: Choices) -> None:
        """Raw bytes at an edge of the standard header (or past the end), a value for the command register, or a BAR
        or the ROM BAR sized (all ones) or cleared; a read of what it wrote follows."""
        what = c.pick(("raw", "command", "bar"))
        if what == "command":
            device, offset = c.pick(self.fds_of("device")), 0x4
            data = c.draw(COMMAND_VALUES).to_bytes(2, "little").hex()
        elif what == "bar":
            device, offset = c.pick(self.fds_of("device")), c.pick((0x10, 0x14, 0x18, 0x1C, 0x20, 0x24, 0x30))
            data = c.draw(SIZING)
        else:
            device, offset, length = self._config_at(c, HEADER_EDGES)
            data = c.blob(min(length, 16)).hex()
        self.do({"pwrite": device, "offset": f"({CONFIG}) + {hex_(offset)}", "hex": data})
        length = max(len(data) // 2, 1)
        self.do({"pread": device, "offset": f"({CONFIG}) + {hex_(offset)}", "length": length,
                 "mask": hex_(config_mask(offset, length))})
