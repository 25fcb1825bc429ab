"""IOMMU_IOAS_MAP_FILE and IOMMU_IOAS_CHANGE_PROCESS (7.2: ioas.c, io_pagetable.c, pages.c)
on the model, over a memfd (harness/model/memfd.py)."""

from __future__ import annotations

import errno
from typing import Any

from test_iommufd_util import PAGE_SIZE, Result, Rig

from harness import uapi
from harness.model.memfd import memfd_create
from harness.uapi import iommufd_test as st

V72 = uapi.for_series("7.2")
U64_MAX = (1 << 64) - 1
RW = V72.CONSTANTS["IOMMU_IOAS_MAP_READABLE"] | V72.CONSTANTS["IOMMU_IOAS_MAP_WRITEABLE"]
FIXED = V72.CONSTANTS["IOMMU_IOAS_MAP_FIXED_IOVA"]


def io72(r: Rig, name: str, **fields: Any) -> Result:
    """A 7.2 iommufd ioctl by name (Rig.io knows 6.12's), ``size`` sizeof."""
    op = V72.IOCTLS[name]
    assert op.struct is not None
    return r.call(op.struct(size=op.sizeof, **fields), op.number)


def map_file(r: Rig, ioas: int, fd: int, length: int, start: int = 0, iova: int | None = None,
             flags: int = RW) -> Result:
    return io72(r, "IOMMU_IOAS_MAP_FILE", ioas_id=ioas, fd=fd, start=start, length=length,
                iova=iova or 0, flags=flags | (FIXED if iova is not None else 0))


def rig() -> tuple[Rig, int, int]:
    """A 7.2 model with an IOAS and a 4-page memfd."""
    r = Rig(kernel="7.2.13")
    return r, r.ioas(), memfd_create(r.k, "t", 4 * PAGE_SIZE)


def test_the_612_table_has_neither_ioctl() -> None:
    r = Rig(kernel="6.12.118")
    for name in ("IOMMU_IOAS_MAP_FILE", "IOMMU_IOAS_CHANGE_PROCESS"):
        res = r.raw_ioctl(V72.IOCTLS[name].number, r.buffer(b"\x28" + bytes(39)))
        assert res.errno == errno.ENOTTY, name


def test_auto_iova_follows_the_file_offset() -> None:
    r, ioas, mfd = rig()
    # start 0: the alignment is the length's (roundup_pow_of_two), never IOVA 0
    assert map_file(r, ioas, mfd, 4 * PAGE_SIZE).s.iova == 0x4000
    # start 0x10: alignment 0x10 and the same offset in the page
    res = map_file(r, ioas, mfd, PAGE_SIZE, start=0x10)
    assert res.ok and res.s.iova % PAGE_SIZE == 0x10
    assert r.unmap(ioas, 0x4000, 4 * PAGE_SIZE).s.length == 4 * PAGE_SIZE


def test_argument_errors_in_the_kernels_order() -> None:
    r, ioas, mfd = rig()
    cases = [
        (dict(flags=RW | 1 << 3), errno.EOPNOTSUPP, "ioas.c:215@7.2"),
        (dict(length=U64_MAX), errno.EOVERFLOW, "ioas.c:218@7.2"),
        (dict(flags=0), errno.EINVAL, "ioas.c:222@7.2"),
        (dict(length=0), errno.EINVAL, "io_pagetable.c:493@7.2"),
        (dict(start=U64_MAX - 0xFFF, length=0x2000), errno.EOVERFLOW, "io_pagetable.c:495@7.2"),
        (dict(fd=-1), errno.EBADF, "io_pagetable.c:516@7.2"),
        (dict(length=U64_MAX - 1), errno.EINVAL, "pages.c:1373@7.2"),
    ]
    for fields, err, where in cases:
        args = dict(ioas_id=ioas, fd=mfd, start=0, length=PAGE_SIZE, flags=RW) | fields
        res = io72(r, "IOMMU_IOAS_MAP_FILE", **args)
        assert (res.errno, res.where) == (err, "drivers/iommu/iommufd/" + where), fields
    assert io72(r, "IOMMU_IOAS_MAP_FILE", ioas_id=ioas + 7, fd=mfd, length=PAGE_SIZE, flags=RW).errno == errno.ENOENT


def test_the_file_is_checked_only_when_pinned() -> None:
    r, ioas, mfd = rig()
    ev = r.k.open("/dev/iommu")   # any file that is not shmem
    base = st.MOCK_APERTURE_START
    assert map_file(r, ioas, ev, PAGE_SIZE, iova=base).ok
    assert map_file(r, ioas, mfd, 8 * PAGE_SIZE, iova=base + 0x10000).ok   # past the end
    # a mock domain pins every area: the first one fails it
    res = r.test(st.IOMMU_TEST_OP_MOCK_DOMAIN, ioas)
    assert (res.errno, res.where) == (errno.EINVAL, "mm/gup.c:3461@7.2")
    assert r.unmap(ioas, base, PAGE_SIZE).ok
    res = r.test(st.IOMMU_TEST_OP_MOCK_DOMAIN, ioas)
    assert (res.errno, res.where) == (errno.EINVAL, "mm/gup.c:3464@7.2")


def test_with_a_domain_the_pages_are_pinned_at_map_time() -> None:
    r, ioas, mfd = rig()
    r.mock_domain(ioas)
    base = st.MOCK_APERTURE_START
    assert map_file(r, ioas, mfd, 4 * PAGE_SIZE, iova=base).ok
    assert map_file(r, ioas, mfd, 5 * PAGE_SIZE, iova=base + 0x10000).where == "mm/gup.c:3464@7.2"
    # a partly covered last page is past the end too
    half = memfd_create(r.k, "half", PAGE_SIZE + PAGE_SIZE // 2)
    assert map_file(r, ioas, half, PAGE_SIZE // 2, start=PAGE_SIZE, iova=base + 0x20000).errno == errno.EINVAL
    assert map_file(r, ioas, mfd, PAGE_SIZE, start=0x100).where.endswith("io_pagetable.c:152")


def test_an_access_reads_the_file_through_the_iova() -> None:
    r, ioas, mfd = rig()
    f = r.k.files[mfd]
    f.write(r.k, b"\x00" * 8 + b"file!")
    assert map_file(r, ioas, mfd, 4 * PAGE_SIZE, iova=0x100000).ok
    r.k.close(mfd)   # the pages hold the file
    acc = r.test(st.IOMMU_TEST_OP_CREATE_ACCESS, ioas, create_access={"flags": 0}).s.create_access.out_access_fd
    dst = r.mmap(PAGE_SIZE)
    assert r.test(st.IOMMU_TEST_OP_ACCESS_RW, acc, access_rw={"iova": 0x100008, "length": 5, "uptr": dst}).ok
    assert r.k.mm.read(dst, 5) == b"file!"


def change_process(r: Rig, reserved: int = 0) -> Result:
    return io72(r, "IOMMU_IOAS_CHANGE_PROCESS", __reserved=reserved)


def test_change_process_takes_file_maps_only() -> None:
    r, ioas, mfd = rig()
    assert change_process(r).ok
    assert change_process(r, 1).where == "drivers/iommu/iommufd/ioas.c:532@7.2"
    assert map_file(r, ioas, mfd, PAGE_SIZE, iova=0x100000).ok
    assert change_process(r).ok
    other = r.ioas()
    assert r.map(other, r.mmap(PAGE_SIZE), PAGE_SIZE, iova=0x100000).ok
    res = change_process(r)
    assert (res.errno, res.where) == (errno.EINVAL, "drivers/iommu/iommufd/ioas.c:545@7.2")
    assert r.unmap(other, 0x100000, PAGE_SIZE).ok
    assert change_process(r).ok


def test_change_process_sees_a_half_done_area_as_busy() -> None:
    """area->pages NULL: a map or unmap in progress on another thread; the model has one, so
    this is reached only by setting the state up directly."""
    r, ioas, mfd = rig()
    assert map_file(r, ioas, mfd, PAGE_SIZE, iova=0x100000).ok
    obj = r.k.files[r.fd].objects[ioas]   # type: ignore[attr-defined]
    obj.iopt.areas[0].pages = None
    res = change_process(r)
    assert (res.errno, res.where) == (errno.EBUSY, "drivers/iommu/iommufd/ioas.c:541@7.2")
