"""The VFIO machine's interrupt rules: VFIO_DEVICE_SET_IRQS on a device fd's INTx, MSI and
MSI-X (trigger with DATA_NONE, DATA_BOOL and DATA_EVENTFD, INTx mask and unmask, the disable
with count 0), start and count at the bounds of the index's count (0, count - 1, count,
count + 1, wrapping past 2^32), flag combinations that name no or two data types or actions
or unknown bits, indexes past the last; the eventfds they name, read back after a loopback;
and VFIO_DEVICE_GET_PCI_HOT_RESET_INFO with too little room (ENOSPC with the count filled)
and with room for the devices (harness/fuzz/vfio_rules.py).

An index's count is the one VFIO_DEVICE_GET_IRQ_INFO answers, saved the first time (as
the region rules save a region's size), so the bounds follow the function the target has
(the machine's functions are e1000s: INTx only, MSI and MSI-X counts 0)."""

from __future__ import annotations

import ctypes
from typing import Any

from ..uapi import vfio as uv
from .machine import Choices, one_of, precondition, rule
from .vfio_state import VfioState

INDEXES = (uv.VFIO_PCI_INTX_IRQ_INDEX, uv.VFIO_PCI_MSI_IRQ_INDEX, uv.VFIO_PCI_MSIX_IRQ_INDEX)
INDEX_OK = one_of(INDEXES[0], *INDEXES)      # INTx twice: the only index with vectors here
# The error and request indexes (not this family's, and the e1000 is no PCIe function), then past the last.
INDEX_BAD = one_of(uv.VFIO_PCI_ERR_IRQ_INDEX, uv.VFIO_PCI_REQ_IRQ_INDEX, uv.VFIO_PCI_NUM_IRQS, 100, "U32_MAX")
# An eventfd trigger first: it enables the index (the other actions need an enabled INTx).
DATA_TYPES = ("VFIO_IRQ_SET_DATA_EVENTFD", "VFIO_IRQ_SET_DATA_NONE", "VFIO_IRQ_SET_DATA_BOOL")
ACTIONS = ("VFIO_IRQ_SET_ACTION_TRIGGER", "VFIO_IRQ_SET_ACTION_TRIGGER", "VFIO_IRQ_SET_ACTION_MASK",
           "VFIO_IRQ_SET_ACTION_UNMASK")
# Two data types, two actions, none of either, a bit no flag has.
FLAGS_BAD = one_of("VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_ACTION_TRIGGER",
                   "VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER | VFIO_IRQ_SET_ACTION_MASK",
                   "VFIO_IRQ_SET_ACTION_TRIGGER", "VFIO_IRQ_SET_DATA_NONE", "0",
                   "VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_UNMASK | VFIO_IRQ_SET_ACTION_MASK",
                   "VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER | (1 << 6)", "1 << 31")
# (start, count) with {n} the index's count: within it, then at and past its bounds and wrapping.
BOUNDS_OK = (("0", "1"), ("0", "1"), ("0", "{n}"), ("({n} - 1) & U32_MAX", "1"), ("0", "0"))
BOUNDS_BAD = (("{n}", "0"), ("{n}", "1"), ("0", "{n} + 1"), ("({n} - 1) & U32_MAX", "2"), ("U32_MAX", "1"),
              ("1", "U32_MAX"), ("U32_MAX", "U32_MAX"), ("0x80000000", "0x80000000"), ("1", "0"))
DATA_ROOM = 2        # data elements sent for a count the machine does not know (the e1000s' counts are at most 1)
DEP_SIZE = ctypes.sizeof(uv.vfio_pci_dependent_device)
HOT_RESET_SIZE = ctypes.sizeof(uv.vfio_pci_hot_reset_info)


class IrqRules(VfioState):
    def _irq_count(self, device: str, index: int) -> str:
        return self.saved_info(device, "VFIO_DEVICE_GET_IRQ_INFO", index, "count")

    def _eventfd(self, c: Choices) -> str:
        """An eventfd the machine made (one made here when there is none)."""
        if not self.eventfds:
            self.open_eventfd(c)
        return c.pick(self.eventfds)

    @precondition(lambda self: len(self.eventfds) < 3)
    @rule
    def open_eventfd(self, c: Choices) -> None:
        n = self.name("efd")
        self.do({"eventfd": 0, "as": n})
        self.eventfds.append(n)

    @precondition(lambda self: self.eventfds)
    @rule
    def read_eventfd(self, c: Choices) -> None:
        """What the loopbacks signalled (EAGAIN: nothing)."""
        self.do({"read": c.pick(self.eventfds), "length": 8})

    def _data(self, c: Choices, data_type: str, count: str, ok: bool) -> dict[str, Any] | None:
        """The payload: a bool or an eventfd (or -1) per vector of a known count, else DATA_ROOM
        of them; ``ok`` false: one short, or, for eventfds, an fd that is no eventfd or closed."""
        if data_type == "VFIO_IRQ_SET_DATA_NONE":
            return None
        n = int(count) if count.isdigit() else DATA_ROOM
        if not ok and c.coin():
            n -= 1
            ok = True
        if data_type == "VFIO_IRQ_SET_DATA_BOOL":
            return {"u8": [c.pick((1, 0)) for _ in range(n)]}
        bad = [f"${f}" for f in self.any_fd() if f not in self.eventfds] + ["9999"]
        fds = [c.pick([f"${e}" for e in self.eventfds] + ["-1"]) if ok else c.pick(bad) for _ in range(n)]
        return {"s32": fds}

    @precondition(lambda self: self.has_device())
    @rule
    def set_irqs(self, c: Choices) -> None:
        """VFIO_DEVICE_SET_IRQS of INTx, MSI or MSI-X: an action with a data type, start and count
        at the bounds of the index's count, a payload; one of them (or the index) invalid.  A
        quarter of the time the disable of an index (DATA_NONE | ACTION_TRIGGER, count 0)."""
        device = c.pick(self.fds_of("device"))
        if c.chance(0.25):
            self.do({"ioctl": "VFIO_DEVICE_SET_IRQS", "fd": device,
                     "args": {"flags": "VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER",
                              "index": c.pick(INDEXES), "start": 0, "count": 0}})
            return
        action, data_type = c.pick(ACTIONS), c.pick(DATA_TYPES)
        if data_type == "VFIO_IRQ_SET_DATA_EVENTFD":
            self._eventfd(c)
        f = self.fields(c, ["index", "flags", "bounds", "bounds", "data"])
        index = f.get("index", INDEX_OK, INDEX_BAD)
        flags = f.get("flags", f"{data_type} | {action}", FLAGS_BAD)
        start, count = f.get("bounds", one_of(*BOUNDS_OK), one_of(*BOUNDS_BAD))
        # An index past the family's has no count to save (GET_IRQ_INFO refuses it): 1 stands for it.
        total = f"${self._irq_count(device, index)}" if index in INDEXES else "1"
        start, count = (s.format(n=total) for s in (start, count))
        raw: dict[str, Any] = {"ioctl": "VFIO_DEVICE_SET_IRQS", "fd": device,
                               "args": {"flags": flags, "index": index, "start": start, "count": count}}
        # Under flags without DATA_EVENTFD the payload is no fds to the normaliser, which compares
        # its bytes: the fd numbers of two targets differ, so a bool payload stands in there.
        if "VFIO_IRQ_SET_DATA_EVENTFD" not in flags:
            data_type = "VFIO_IRQ_SET_DATA_BOOL" if data_type == "VFIO_IRQ_SET_DATA_EVENTFD" else data_type
        data = self._data(c, data_type, count, f.bad != "data")
        if data:
            raw["data"] = data
        self.do(raw)

    @precondition(lambda self: self.has_device())
    @rule
    def hot_reset_info(self, c: Choices) -> None:
        """VFIO_DEVICE_GET_PCI_HOT_RESET_INFO with room for 0 (ENOSPC, the count filled) to 8
        devices; invalid: an argsz below the header's or past the buffer."""
        device = c.pick(self.fds_of("device"))
        f = self.fields(c, ["argsz"])
        room = c.pick((0, 2, 1, 4, 8))
        raw: dict[str, Any] = {"ioctl": "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO", "fd": device}
        if room:
            raw["data"] = {"hex": "00" * (room * DEP_SIZE)}
        argsz = f.get("argsz", None, one_of(HOT_RESET_SIZE - 1, 0, HOT_RESET_SIZE + 64 * DEP_SIZE, "U32_MAX"))
        if argsz is not None:
            raw["args"] = {"argsz": argsz}
        self.do(raw)
