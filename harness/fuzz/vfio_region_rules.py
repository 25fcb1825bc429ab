"""The VFIO machine's BAR region rules: preads and pwrites of a device fd's BAR and ROM
regions at the start and the end of the region, across the end and past it, with the memory
decoding of the virtual command register on or off (the config rules,
harness/fuzz/vfio_config_rules.py, turn it) (harness/fuzz/vfio_rules.py).

A BAR's contents are the device's registers, which the model does not emulate: reads are
compared through a mask of 0 (their errno and length), and writes write zeros only (a
register of the emulated NVMe or NIC that takes a zero does nothing: no DMA starts)."""

from __future__ import annotations

from ..uapi.vfio import VFIO_PCI_BAR0_REGION_INDEX, VFIO_PCI_BAR5_REGION_INDEX, VFIO_PCI_ROM_REGION_INDEX
from .machine import Choices, one_of, precondition, rule
from .vfio_state import VfioState

# BAR0 (every function here has it) most, then BAR1, the ROM, the others (mostly unimplemented: EINVAL).
REGIONS = (VFIO_PCI_BAR0_REGION_INDEX, VFIO_PCI_BAR0_REGION_INDEX, VFIO_PCI_BAR0_REGION_INDEX + 1,
           VFIO_PCI_ROM_REGION_INDEX, *range(VFIO_PCI_BAR0_REGION_INDEX + 2, VFIO_PCI_BAR5_REGION_INDEX + 1))
WITHIN = (1 << 40) - 1   # an offset relative to the end stays in the region's index (a BAR of size 0 too)


class RegionRules(VfioState):
    def _size(self, device: str, index: int) -> str:
        return self.saved_info(device, "VFIO_DEVICE_GET_REGION_INFO", index, "size")

    @precondition(lambda self: self.has_device())
    @rule
    def bar_rw(self, c: Choices) -> None:
        """A read, or a write of zeros, at the start of a BAR or the ROM, an edge before its end
        (valid), or across the end, at it, past it (invalid)."""
        device, index = c.pick(self.fds_of("device")), c.pick(REGIONS)
        write = c.coin()
        f = self.fields(c, ["offset", "length"])
        size = self._size(device, index)
        back = f.get("offset", one_of(None, 4, 8, 0x1000, 0x800), one_of(2, 0, -0x1000))
        length = f.get("length", one_of(4, 1, 2, 8), one_of(0, 16, 0x2000))
        where = "0" if back is None else f"(${size} - {back}) & {WITHIN:#x}"
        offset = f"({index} << 40) + ({where})"
        if write:
            self.do({"pwrite": device, "offset": offset, "hex": "00" * length})
        else:
            self.do({"pread": device, "offset": offset, "length": length, "mask": "0"})
