"""The iommufd machine's HWPT and dirty tracking rules: IOMMU_HWPT_ALLOC (paging with
NEST_PARENT / DIRTY_TRACKING, nested with selftest data), MOCK_DOMAIN_REPLACE,
IOMMU_HWPT_SET_DIRTY_TRACKING, IOMMU_TEST_OP_DIRTY and IOMMU_HWPT_GET_DIRTY_BITMAP
(harness/fuzz/iommufd_rules.py puts them together)."""

from __future__ import annotations

from .iommufd_state import LENGTH_BAD, IommufdState
from .machine import PAGE, Choices, Fields, hex_, ints, one_of, precondition, rule, user_va

IOVA_OK = ints(0x1000, 0x5000, PAGE)        # above 16 MiB, where a mock domain's aperture starts
HWPT_FLAGS_OK = one_of("0", "IOMMU_HWPT_ALLOC_NEST_PARENT", "IOMMU_HWPT_ALLOC_DIRTY_TRACKING",
                       "IOMMU_HWPT_ALLOC_NEST_PARENT | IOMMU_HWPT_ALLOC_DIRTY_TRACKING")
HWPT_FLAGS_BAD = one_of("1 << 30", "1 << 2", "IOMMU_HWPT_ALLOC_NEST_PARENT | (1 << 7)")
SELFTEST_DATA = "efbead0b"                  # struct iommu_hwpt_selftest {.iotlb = IOMMU_TEST_IOTLB_DEFAULT}
MOCK_IO_PAGE = PAGE // 2                    # the mock domain's IO page size (selftest.c MOCK_IO_PAGE_SIZE)
PAGE_SIZE_OK = one_of(MOCK_IO_PAGE, PAGE)
PAGE_SIZE_BAD = one_of(0, 3000, 1 << 40)
FLAGS_BAD = one_of(2, "1 << 31")
TRACKING = one_of("IOMMU_HWPT_DIRTY_TRACKING_ENABLE", "0")
READ_DIRTY = one_of("0", "IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR")


class HwptRules(IommufdState):
    """HWPTs on a mock device: paging, nested over a nesting parent, the device moved between them."""

    @precondition(lambda self: self.mock_domains and self.devices and self.ioases)
    @rule
    def hwpt_alloc(self, c: Choices) -> None:
        _stdev, idev = c.pick(self.devices)
        ioas = c.pick([i for i in self.ioases if self.owner[i] == self.owner[idev]] or self.ioases)
        f = self.fields(c, ["fd", "flags", "dev_id", "pt_id"])
        flags = str(f.get("flags", HWPT_FLAGS_OK, HWPT_FLAGS_BAD))
        n = self.name("hwpt")
        self.do({"ioctl": "IOMMU_HWPT_ALLOC", "fd": self.fd_of(f, idev),
                 "args": {"flags": flags, "dev_id": f.obj("dev_id", idev), "pt_id": f.obj("pt_id", ioas)},
                 "save": {n: "out_hwpt_id"}})
        self.hwpts.append(n)
        self.owner[n], self.ioas_of[n] = self.owner[idev], ioas
        if "NEST_PARENT" in flags:
            self.parents.append(n)
        if "DIRTY_TRACKING" in flags:
            self.dirty_hwpts.append(n)

    @precondition(lambda self: self.mock_domains and self.devices and self.hwpts)
    @rule
    def hwpt_alloc_nested(self, c: Choices) -> None:
        _stdev, idev = c.pick(self.devices)
        f = self.fields(c, ["flags", "dev_id", "pt_id", "data_type", "data_len"])
        # The parent's valid side is a nesting parent; a paging HWPT that is none is its invalid side.
        parent = str(f.get("pt_id", lambda c: c.pick(self.parents or self.hwpts), lambda c: c.pick(self.hwpts)))
        n = self.name("nested")
        self.do({"ioctl": "IOMMU_HWPT_ALLOC", "fd": self.owner[parent],
                 "args": {"flags": f.get("flags", "0", one_of("IOMMU_HWPT_ALLOC_NEST_PARENT", "1 << 30")),
                          "dev_id": f.obj("dev_id", idev), "pt_id": f"${parent}",
                          "data_type": f.get("data_type", "IOMMU_HWPT_DATA_SELFTEST",
                                             one_of("IOMMU_HWPT_DATA_NONE", "0xff")),
                          "data_len": f.get("data_len", 4, one_of(0, 2)), "data_uptr": {"hex": SELFTEST_DATA}},
                 "save": {n: "out_hwpt_id"}})
        self.nested.append(n)
        self.owner[n] = self.owner[parent]

    @precondition(lambda self: self.mock_domains and self.devices)
    @rule
    def mock_domain_replace(self, c: Choices) -> None:
        """Move a mock device to another page table (an IOAS: its auto domain; a HWPT)."""
        stdev, _idev = c.pick(self.devices)
        pt = c.pick(self.hwpts + self.ioases + self.nested)
        f = self.fields(c, ["fd", "pt_id"])
        self.do({"ioctl": "IOMMU_TEST_CMD", "fd": self.fd_of(f, stdev),
                 "args": {"op": "IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE", "id": f"${stdev}",
                          "mock_domain_replace": {"pt_id": f.obj("pt_id", pt)}}})


class DirtyRules(IommufdState):
    """Dirty tracking of a paging HWPT: enable it, mark IOVAs dirty, read (and clear) the bitmap."""

    def _tracked(self, c: Choices, f: Fields) -> str:
        """A HWPT allocated to track dirty pages, or (none yet, or the "hwpt_id" field gone bad) another."""
        return str(f.get("hwpt_id", lambda c: c.pick(self.dirty_hwpts or self.hwpts),
                         lambda c: c.pick(self.hwpts + self.ioases + self.nested)))

    def _range(self, f: Fields, hwpt: str) -> tuple[str, int, int]:
        """(iova, length, page_size) over the mappings of the HWPT's IOAS, one of them maybe bad."""
        mapped = [i for i in self.iovas if self.owner[i] == self.ioas_of.get(hwpt)]
        iova = f.get("iova", lambda c: f"${c.pick(mapped)}" if mapped else hex_(IOVA_OK(c)),
                     one_of(hex_(0x1000 * PAGE + MOCK_IO_PAGE // 2), "0", "U64_MAX"))
        return str(iova), f.get("length", ints(1, 4, PAGE), LENGTH_BAD), f.get("page_size", PAGE_SIZE_OK, PAGE_SIZE_BAD)

    @precondition(lambda self: self.mock_domains and self.hwpts)
    @rule
    def set_dirty_tracking(self, c: Choices) -> None:
        f = self.fields(c, ["hwpt_id", "flags"])
        hwpt = self._tracked(c, f)
        self.do({"ioctl": "IOMMU_HWPT_SET_DIRTY_TRACKING", "fd": self.owner[hwpt],
                 "args": {"flags": f.get("flags", TRACKING, FLAGS_BAD),
                          "hwpt_id": f.obj("hwpt_id", hwpt)}})

    @precondition(lambda self: self.mock_domains and self.hwpts and self.buf_size)
    @rule
    def mark_dirty(self, c: Choices) -> None:
        """IOMMU_TEST_OP_DIRTY: the bits set in a bitmap written just before mark the mock domain's IO pages dirty."""
        bits = c.blob(8) or b"\x01"
        buf = c.pick(list(self.buf_size))
        f = self.fields(c, ["hwpt_id", "iova", "length", "page_size", "uptr"])
        hwpt = self._tracked(c, f)
        iova, length, page_size = self._range(f, hwpt)
        self.do({"write_mem": {"at": f"${buf}", "hex": bits.hex()}})
        self.do({"ioctl": "IOMMU_TEST_CMD", "fd": self.owner[hwpt],
                 "args": {"op": "IOMMU_TEST_OP_DIRTY", "id": f.obj("hwpt_id", hwpt),
                          "dirty": {"iova": iova, "length": hex_(length), "page_size": page_size,
                                    "uptr": f.get("uptr", f"${buf}", "0")}}})

    @precondition(lambda self: self.mock_domains and self.hwpts and self.buf_size)
    @rule
    def get_dirty_bitmap(self, c: Choices) -> None:
        """IOMMU_HWPT_GET_DIRTY_BITMAP (clearing what it reports, or not: NO_CLEAR), then the bitmap read back."""
        buf = c.pick(list(self.buf_size))
        f = self.fields(c, ["flags", "hwpt_id", "iova", "length", "page_size", "data"])
        hwpt = self._tracked(c, f)
        iova, length, page_size = self._range(f, hwpt)
        self.do({"ioctl": "IOMMU_HWPT_GET_DIRTY_BITMAP", "fd": self.owner[hwpt],
                 "args": {"hwpt_id": f.obj("hwpt_id", hwpt),
                          "flags": f.get("flags", READ_DIRTY, FLAGS_BAD),
                          "iova": iova, "length": hex_(length), "page_size": page_size,
                          "data": f.get("data", user_va(buf, 0), "0")}})
        self.do({"read_mem": {"at": f"${buf}", "length": 8}})
