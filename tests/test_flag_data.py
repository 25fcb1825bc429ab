"""The struct a flag makes a handler read after the fixed part (Ioctl.flag_data): VFIO_IOMMU_DIRTY_PAGES
GET_BITMAP's vfio_iommu_type1_dirty_bitmap_get and VFIO_IOMMU_UNMAP_DMA GET_DIRTY_BITMAP's vfio_bitmap,
given typed under ``data:``: checked at load, packed after the struct, its user pointer named like
the struct's own (an address, renamed by the diff) and the memory behind it read back."""

from __future__ import annotations

import ctypes
import shutil
from pathlib import Path

import pytest

from harness import uapi
from harness.cases.case import CaseError
from harness.cases.loader import Loader
from harness.cases.steps import parse_steps
from harness.model.backend import ModelBackend
from harness.runner.engine import Runner
from harness.runner.normalise import role_of
from harness.runner.trace import PASS
from harness.uapi import abi
from harness.uapi import vfio as uv

CORPUS = Path(__file__).resolve().parent.parent / "cases"

CASE = """\
id: container-typed-data
area: container
purpose: GET_BITMAP with the bitmap placed by the harness, then UNMAP with a buffer of the case.
verified_on: []
fixture: vfio-group-container
steps:
  - mmap: 0x4000
    as: buf
  - vfio_dma_map: {vaddr: $buf, iova: 0x100000, size: 0x4000}
  - vfio_dirty_pages: {}
  - ioctl: VFIO_IOMMU_DIRTY_PAGES
    fd: container
    args: {flags: VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP}
    data: {iova: 0x100000, size: 0x4000, bitmap: {pgsize: 4096, size: 8, data: {hex: "f0ffffffffffffff"}}}
  - mmap: 0x1000
    as: bm
  - ioctl: VFIO_IOMMU_UNMAP_DMA
    fd: container
    args: {flags: VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP, iova: 0x100000, size: 0x4000}
    data: {pgsize: 4096, size: 8, data: $bm}
    expect: {out: {size: 0x4000, data.pgsize: 4096}}
"""


def test_declared_on_the_two_ioctls_with_their_pointers() -> None:
    get = uapi.IOCTLS["VFIO_IOMMU_DIRTY_PAGES"].flag_data
    unmap = uapi.IOCTLS["VFIO_IOMMU_UNMAP_DMA"].flag_data
    assert get is not None and unmap is not None
    assert get[0] == "VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP"
    assert get[1].__name__ == "vfio_iommu_type1_dirty_bitmap_get"
    assert (unmap[0], unmap[1].__name__) == ("VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP", "vfio_bitmap")
    assert set(abi.pointer_fields(get[1])) == {"bitmap.data"}
    assert set(abi.pointer_fields(unmap[1])) == {"data"}
    for series in uapi.SERIES:   # the same struct in every series' view
        io = uapi.for_series(series).IOCTLS["VFIO_IOMMU_DIRTY_PAGES"]
        assert io.flag_data is not None and ctypes.sizeof(io.flag_data[1]) == 40


@pytest.mark.parametrize("ioctl, data, message", [
    ("VFIO_IOMMU_DIRTY_PAGES", {"iova": 0, "nope": 1}, "has no field 'nope'"),
    ("VFIO_IOMMU_DIRTY_PAGES", {"bitmap": 3}, "give a mapping of its fields"),
    ("VFIO_IOMMU_GET_INFO", {"iova": 0}, "unknown element type 'iova'"),   # no flag_data
])
def test_typed_data_is_checked_at_load(ioctl: str, data: dict, message: str) -> None:
    with pytest.raises(CaseError, match=message):
        parse_steps([{"open": "/dev/vfio/vfio", "as": "c"}, {"ioctl": ioctl, "fd": "c", "data": data}], set())


def test_typed_data_keeps_the_element_forms() -> None:
    steps = parse_steps([{"open": "/dev/vfio/vfio", "as": "c"},
                         {"ioctl": "VFIO_IOMMU_UNMAP_DMA", "fd": "c", "data": {"u64": [4096, 8, 0]}}], set())
    assert steps[1].spec["data"] == {"u64": [4096, 8, 0]}


def test_the_model_gets_the_struct_and_the_trace_names_the_pointer(tmp_path: Path) -> None:
    root = tmp_path / "cases"
    shutil.copytree(CORPUS / "fixtures", root / "fixtures")
    shutil.copytree(CORPUS / "macros", root / "macros")
    (root / "container").mkdir()
    (root / "container" / "typed-data.yaml").write_text(CASE)
    cases, errors = Loader(root).load_all()
    assert not errors, errors
    trace = Runner(ModelBackend()).run(cases[0], timeout=60)
    assert trace.status == PASS, trace.reason
    get, unmap = (s for s in trace.steps if {"data.iova", "data.pgsize"} & set(s.request))
    # argsz covers the typed data; the fields are recorded one by one
    assert get.request["argsz"] == 8 + ctypes.sizeof(uv.vfio_iommu_type1_dirty_bitmap_get)
    assert (get.request["data.iova"], get.request["data.bitmap.size"]) == (0x100000, 8)
    # the harness placed the bitmap: its address in the request, its bytes read back after the
    # call (four pages dirty; bits shift 0, so the whole u64 is the kernel's)
    assert get.request["data.bitmap.data"] > 0
    assert get.out["data.bitmap.data"] == "0f00000000000000"
    # a buffer of the case: the same address as the mmap step returned
    bm = [s for s in trace.steps if s.kind == "mmap"][-1]
    assert unmap.request["data.data"] == bm.ret
    assert role_of(get, "request.data.bitmap.data") == role_of(unmap, "request.data.data") == "addr"
