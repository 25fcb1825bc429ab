"""The iommufd machine: IOAS alloc/map/copy/unmap, ranges, options, mock domains, destroy,
every iommufd ioctl at its size boundaries and with raw bytes, close (harness/fuzz/machine.py);
with the HWPT and dirty tracking rules (iommufd_hwpt_rules.py) and the access rules
(iommufd_access_rules.py)."""

from __future__ import annotations

import ctypes
from typing import Any

from .. import uapi
from .iommufd_access_rules import AccessRules
from .iommufd_hwpt_rules import DirtyRules, HwptRules
from .iommufd_state import LENGTH_BAD
from .machine import (
    HUGE,
    PAGE,
    U64_MAX,
    Choices,
    MachineKind,
    SequenceMachine,
    hex_,
    ints,
    one_of,
    precondition,
    register,
    rule,
    user_va,
)

# The iommufd ioctls the size rules sweep: every one of the 6.12 table.
IOMMUFD_IOCTLS = tuple(n for n, io in uapi.IOCTLS.items() if "iommufd" in io.fd_kinds)

# Each argument has a valid side and a boundary/invalid side.  IOVAs mostly lie
# above 16 MiB, where a mock domain's aperture starts (MOCK_APERTURE_START).
PAGES = ints(0x1000, 0x5000, PAGE)
IOVA_OK = PAGES
IOVA_BAD = one_of(
    lambda c: PAGES(c) + c.pick((1, 0x100, 0x400, PAGE - 1)),       # not page aligned
    0, U64_MAX - PAGE + 1, U64_MAX, 1 << 63, 0xFEE00000)             # edges, wrap, MSI window
FLAGS_OK = one_of("IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE", "IOMMU_IOAS_MAP_READABLE")
FLAGS_BAD = one_of("0", "IOMMU_IOAS_MAP_WRITEABLE", "IOMMU_IOAS_MAP_READABLE | (1 << 10)")
OPTIONS = (  # (option, object: "" for the IOAS, op, val64)
    ("IOMMU_OPTION_RLIMIT_MODE", "0", "IOMMU_OPTION_OP_GET", 0),
    ("IOMMU_OPTION_HUGE_PAGES", "", "IOMMU_OPTION_OP_SET", 0),
    ("IOMMU_OPTION_HUGE_PAGES", "", "IOMMU_OPTION_OP_GET", 0),
    ("IOMMU_OPTION_HUGE_PAGES", "", "IOMMU_OPTION_OP_SET", 2),
    ("IOMMU_OPTION_HUGE_PAGES", "0", "IOMMU_OPTION_OP_GET", 0),
)


def iommufd_machine(mock_domains: bool = True) -> type[SequenceMachine]:
    """The machine's class; ``mock_domains``: the target has IOMMU_TEST_OP_MOCK_DOMAIN."""

    class IommufdMachine(HwptRules, AccessRules, DirtyRules):
        # -- the objects -------------------------------------------------------
        def _open(self) -> str:
            n = self.name("iommufd")
            self.do({"open": "/dev/iommu", "as": n})
            self.fds.append(n)
            return n

        def _alloc(self, fd: str) -> None:
            n = self.name("ioas")
            self.do({"ioctl": "IOMMU_IOAS_ALLOC", "fd": fd, "save": {n: "out_ioas_id"}})
            self.ioases.append(n)
            self.owner[n] = fd

        def _mmap(self, pages: int) -> None:
            n = self.name("buf")
            self.do({"mmap": pages * PAGE, "align": HUGE, "as": n})
            self.buf_size[n] = pages * PAGE

        def setup(self, c: Choices) -> None:
            """Where every sequence starts: an iommufd, an IOAS (with a mock domain half
            the time, where the target has them) and a user buffer."""
            fd = self._open()
            self._alloc(fd)
            if c.coin() and mock_domains:
                self._mock_domain(fd, self.ioases[0])
            self._mmap(4)

        @precondition(lambda self: len(self.fds) < 2)
        @rule
        def open_iommufd(self, c: Choices) -> None:
            self._open()

        @precondition(lambda self: self.fds)
        @rule
        def ioas_alloc(self, c: Choices) -> None:
            self._alloc(c.pick(self.fds))

        @precondition(lambda self: mock_domains and self.fds and self.ioases)
        @rule
        def mock_domain(self, c: Choices) -> None:
            ioas = c.pick(self.ioases)
            self._mock_domain(self.fd_of(self.fields(c, ["fd"]), ioas), ioas)

        @rule
        def mmap(self, c: Choices) -> None:
            self._mmap(c.between(1, 8))

        # -- IOAS mappings -------------------------------------------------------
        def _map(self, c: Choices, fixed: bool) -> None:
            n = self.name("iova")
            # The IOVA weighs most: its alignment, range and overlap rules are the richest.
            f = self.fields(c, ["fd", "flags", "ioas_id", "user_va", "length"] + (["iova"] * 4 if fixed else []))
            ioas = c.pick(self.ioases)
            buf, offset, length = self.buffer(f)
            flags = f.get("flags", FLAGS_OK, FLAGS_BAD) + (" | IOMMU_IOAS_MAP_FIXED_IOVA" if fixed else "")
            self.do({"ioctl": "IOMMU_IOAS_MAP", "fd": self.fd_of(f, ioas),
                     "args": {"flags": flags, "ioas_id": f.obj("ioas_id", ioas), "user_va": user_va(buf, offset),
                              "length": hex_(length), "iova": hex_(f.get("iova", IOVA_OK, IOVA_BAD) if fixed else 0)},
                     "save": {n: "iova"}})
            self.iovas.append(n)
            self.owner[n], self.source[n] = ioas, (buf, offset)

        @precondition(lambda self: self.ioases and self.buf_size)
        @rule
        def ioas_map_fixed(self, c: Choices) -> None:
            self._map(c, fixed=True)

        @precondition(lambda self: self.ioases and self.buf_size)
        @rule
        def ioas_map_auto(self, c: Choices) -> None:
            self._map(c, fixed=False)

        @precondition(lambda self: self.iovas)
        @rule
        def ioas_unmap(self, c: Choices) -> None:
            pages = c.between(1, 4)
            at = c.pick(self.iovas)
            ioas = self.owner[at]
            f = self.fields(c, ["fd", "ioas_id", "iova", "length"])
            self.do({"ioctl": "IOMMU_IOAS_UNMAP", "fd": self.fd_of(f, ioas),
                     "args": {"ioas_id": f.obj("ioas_id", ioas),
                              "iova": f.get("iova", f"${at}", lambda c: hex_(IOVA_BAD(c))),
                              "length": hex_(f.get("length", pages * PAGE, LENGTH_BAD))}})

        @precondition(lambda self: self.ioases)
        @rule
        def ioas_unmap_all(self, c: Choices) -> None:
            ioas = c.pick(self.ioases)
            self.do({"ioctl": "IOMMU_IOAS_UNMAP", "fd": self.owner[ioas],
                     "args": {"ioas_id": f"${ioas}", "iova": 0, "length": "U64_MAX"}})

        @precondition(lambda self: self.iovas)
        @rule
        def ioas_copy(self, c: Choices) -> None:
            fixed, pages = c.coin(), c.between(1, 4)
            n = self.name("iova")
            at = c.pick(self.iovas)
            src = self.owner[at]
            dst = c.pick([i for i in self.ioases if self.owner[i] == self.owner[src]] or [src])
            f = self.fields(c, ["flags", "dst_ioas_id", "length"] + (["dst_iova"] if fixed else []))
            flags = f.get("flags", FLAGS_OK, FLAGS_BAD) + (" | IOMMU_IOAS_MAP_FIXED_IOVA" if fixed else "")
            self.do({"ioctl": "IOMMU_IOAS_COPY", "fd": self.owner[src],
                     "args": {"flags": flags, "dst_ioas_id": f.obj("dst_ioas_id", dst), "src_ioas_id": f"${src}",
                              "length": hex_(f.get("length", pages * PAGE, LENGTH_BAD)),
                              "dst_iova": hex_(f.get("dst_iova", IOVA_OK, IOVA_BAD) if fixed else 0),
                              "src_iova": f"${at}"},
                     "save": {n: "dst_iova"}})
            self.iovas.append(n)
            self.owner[n] = dst
            if at in self.source:
                self.source[n] = self.source[at]

        # -- IOAS ranges and options -----------------------------------------
        @precondition(lambda self: self.ioases)
        @rule
        def ioas_iova_ranges(self, c: Choices) -> None:
            count = c.between(0, 4)
            ioas = c.pick(self.ioases)
            self.do({"ioctl": "IOMMU_IOAS_IOVA_RANGES", "fd": self.owner[ioas],
                     "args": {"ioas_id": f"${ioas}", "num_iovas": count,
                              "allowed_iovas": {"array": "iommu_iova_range", "count": count}}})

        @precondition(lambda self: self.ioases)
        @rule
        def ioas_allow_iovas(self, c: Choices) -> None:
            ranges = [(c.between(0x1000, 0x5000), c.between(1, 0x100)) for _ in range(c.below(4))]
            ioas = c.pick(self.ioases)
            f = self.fields(c, ["allowed_iovas"])
            ok = [{"start": s * PAGE, "last": (s + n) * PAGE - 1} for s, n in ranges]
            items = f.get("allowed_iovas", ok, [{"start": 2 * PAGE, "last": PAGE}])
            self.do({"ioctl": "IOMMU_IOAS_ALLOW_IOVAS", "fd": self.owner[ioas],
                     "args": {"ioas_id": f"${ioas}", "num_iovas": len(items),
                              "allowed_iovas": {"array": "iommu_iova_range", "items": items} if items else 0}})

        @precondition(lambda self: self.ioases)
        @rule
        def option(self, c: Choices) -> None:
            ioas = c.pick(self.ioases)
            option, obj, op, val = c.pick(OPTIONS)
            self.do({"ioctl": "IOMMU_OPTION", "fd": self.owner[ioas],
                     "args": {"option_id": option, "object_id": obj or f"${ioas}", "op": op, "val64": val}})

        @precondition(lambda self: self.ioases or self.hwpts)
        @rule
        def destroy(self, c: Choices) -> None:
            """Destroy an object: one in use is EBUSY; a mock device's selftest object detaches it."""
            victim = c.pick(self.ioases + self.hwpts + self.nested + [stdev for stdev, _ in self.devices])
            f = self.fields(c, ["fd", "id"])
            self.do({"ioctl": "IOMMU_DESTROY", "fd": self.fd_of(f, victim), "args": {"id": f.obj("id", victim)}})

        # -- sizes and raw bytes ------------------------------------------------
        @precondition(lambda self: self.fds)
        @rule
        def size_boundary(self, c: Choices) -> None:
            """An iommufd ioctl, all fields zero, whose size sits at a boundary of its struct."""
            io = uapi.ioctl(c.pick(IOMMUFD_IOCTLS))
            assert io.min_size is not None
            size, tail = c.pick((
                (io.min_size - 1, ""), (io.min_size, ""), (io.sizeof, ""), (io.sizeof + 8, "00" * 8),
                (io.sizeof + 8, "00" * 7 + "01"), (io.sizeof + 64, ""),   # a size past the buffer: EFAULT
            ))
            raw: dict[str, Any] = {"ioctl": io.name, "fd": c.pick(self.fds), "args": {"size": size}}
            if tail:
                raw["tail"] = {"hex": tail}
            self.do(raw)

        @precondition(lambda self: self.fds)
        @rule
        def raw_bytes(self, c: Choices) -> None:
            """An iommufd ioctl number with random argument bytes; the size field leads them."""
            io = uapi.ioctl(c.pick(IOMMUFD_IOCTLS))
            assert io.struct is not None and io.min_size is not None
            body = c.blob(ctypes.sizeof(io.struct) + 8)
            size = c.pick((len(body) + 4, io.min_size, io.sizeof))
            self.do({"raw_ioctl": hex(io.number), "fd": c.pick(self.fds),
                     "hex": (size.to_bytes(4, "little") + body).hex()})

        @precondition(lambda self: len(self.fds) > 1)
        @rule
        def close(self, c: Choices) -> None:
            """Close an iommufd (never the last: its objects stay named, their ids now dangle)."""
            fd = c.pick(self.fds)
            self.fds.remove(fd)
            self.do({"close": fd})

    IommufdMachine.mock_domains = mock_domains
    return IommufdMachine


register(MachineKind("iommufd", iommufd_machine, profile="mock"))
