"""IOAS ioctls (drivers/iommu/iommufd/ioas.c) over the io_pagetable
(io_pagetable.c, pages.c), without any domain unless said otherwise."""

from __future__ import annotations

import ctypes
import errno
import struct

from test_iommufd_util import PAGE_SIZE, Rig

from harness.model.topologies import DEFAULT_CONFIG
from harness.uapi import iommufd as u
from harness.uapi import iommufd_test as st

U64_MAX = (1 << 64) - 1
HPAGE = 2 << 20
MAP_RW = u.IOMMU_IOAS_MAP_READABLE | u.IOMMU_IOAS_MAP_WRITEABLE


def aligned_buffer(r: Rig, size: int, align: int) -> int:
    """A mapping whose start is ``align`` aligned (the model's mmap only
    page-aligns, so over-allocate and pick an aligned address inside)."""
    base = r.mmap(size + align)
    return (base + align - 1) & ~(align - 1)


# -- automatic IOVA allocation (io_pagetable.c:118-179) ---------------------------------

def test_first_auto_iova_is_page_size() -> None:
    # the allowed span starts at PAGE_SIZE: IOVA 0 is never handed out (154-160)
    r = Rig()
    ioas = r.ioas()
    buf = aligned_buffer(r, PAGE_SIZE, PAGE_SIZE)
    assert r.map(ioas, buf, PAGE_SIZE).s.iova == PAGE_SIZE
    assert r.map(ioas, buf, PAGE_SIZE).s.iova == 2 * PAGE_SIZE


def test_auto_iova_is_aligned_to_length_and_uptr() -> None:
    # min(roundup_pow_of_two(length), 1 << __ffs(uptr)) (137-142)
    r = Rig()
    ioas = r.ioas()
    buf = aligned_buffer(r, 64 * PAGE_SIZE, HPAGE)
    # 3 pages -> 16K alignment: first 16K-aligned start in [4K, ...) is 16K
    assert r.map(ioas, buf, 3 * PAGE_SIZE).s.iova == 0x4000
    # uptr only 4K aligned caps the alignment at 4K: the hole after 16K+12K
    assert r.map(ioas, buf + PAGE_SIZE, 8 * PAGE_SIZE).s.iova == 0x7000
    # 16 pages, 2M-aligned uptr: 64K alignment, after 0x7000+0x8000=0xf000 -> 0x10000
    assert r.map(ioas, buf, 16 * PAGE_SIZE).s.iova == 0x10000


def test_auto_iova_keeps_the_sub_page_offset() -> None:
    # aligned_start |= page_offset (83-84)
    r = Rig()
    ioas = r.ioas()
    buf = aligned_buffer(r, 2 * PAGE_SIZE, HPAGE)
    res = r.map(ioas, buf + 0x800, PAGE_SIZE)
    # alignment min(4K, 0x800) = 0x800; ALIGN(4K, 0x800) | 0x800 = 0x1800
    assert res.ok and res.s.iova == 0x1800


def test_thp_caps_alignment_at_hpage_size() -> None:
    # CONFIG_TRANSPARENT_HUGEPAGE: max_alignment = HPAGE_SIZE (144-146)
    r = Rig()
    ioas = r.ioas()
    buf = aligned_buffer(r, 8 << 20, 8 << 20)
    assert r.map(ioas, buf, 4 << 20).s.iova == HPAGE
    # without THP the cap is PAGE_SIZE (docs/measured.md: 4 KiB aligned only)
    r2 = Rig(config=DEFAULT_CONFIG - {"TRANSPARENT_HUGEPAGE"})
    ioas2 = r2.ioas()
    buf2 = aligned_buffer(r2, 8 << 20, 8 << 20)
    assert r2.map(ioas2, buf2, 4 << 20).s.iova == PAGE_SIZE


def test_auto_iova_skips_reserved_and_respects_allowed() -> None:
    r = Rig()
    ioas = r.ioas()
    buf = aligned_buffer(r, 8 * PAGE_SIZE, HPAGE)
    # reserve [4K, 4K + 400K): the first hole is after it (selftest area_auto_iova)
    assert r.test(st.IOMMU_TEST_OP_ADD_RESERVED, ioas,
                  add_reserved={"start": PAGE_SIZE, "length": 100 * PAGE_SIZE}).ok
    res = r.map(ioas, buf, 2 * PAGE_SIZE)
    assert res.s.iova == 0x1000 + 100 * PAGE_SIZE + 0x1000  # 0x65000 rounded up to 8K = 0x66000
    # allowed ranges that hit a reserved range: EADDRINUSE (io_pagetable.c:792-797)
    ranges = r.buffer(bytes(u.iommu_iova_range(start=PAGE_SIZE, last=600 * PAGE_SIZE)))
    assert r.io("IOMMU_IOAS_ALLOW_IOVAS", ioas_id=ioas, num_iovas=1,
                allowed_iovas=ranges).errno == errno.EADDRINUSE
    ranges = r.buffer(bytes(u.iommu_iova_range(start=200 * PAGE_SIZE, last=600 * PAGE_SIZE - 1)))
    assert r.io("IOMMU_IOAS_ALLOW_IOVAS", ioas_id=ioas, num_iovas=1, allowed_iovas=ranges).ok
    assert r.map(ioas, buf, PAGE_SIZE).s.iova == 200 * PAGE_SIZE
    # a length that does not fit in the allowed span: ENOSPC (178)
    assert r.map(ioas, buf, 512 * PAGE_SIZE).errno == errno.ENOSPC


def test_auto_iova_alignment_below_iopt_alignment_is_einval() -> None:
    # iova_alignment < iopt->iova_alignment (151-152): huge pages off -> PAGE_SIZE
    r = Rig()
    ioas = r.ioas()
    opt = r.io("IOMMU_OPTION", option_id=u.IOMMU_OPTION_HUGE_PAGES, op=u.IOMMU_OPTION_OP_SET,
               object_id=ioas, val64=0)
    assert opt.ok
    buf = aligned_buffer(r, 2 * PAGE_SIZE, HPAGE)
    res = r.map(ioas, buf + 0x800, PAGE_SIZE)
    assert res.errno == errno.EINVAL and res.where.endswith("io_pagetable.c:152")


def test_huge_length_auto_is_eoverflow() -> None:
    r = Rig()
    ioas = r.ioas()
    # length >= ULONG_MAX / 2 (130-131); pages.c:1152 would take > SIZE_MAX - PAGE_SIZE
    res = r.map(ioas, 0, 1 << 63)
    assert res.errno == errno.EOVERFLOW and res.where.endswith("io_pagetable.c:131")


# -- IOAS_MAP checks (ioas.c:200-237) --------------------------------------------------

def test_map_argument_checks_in_order() -> None:
    r = Rig()
    ioas = r.ioas()
    buf = r.mmap(PAGE_SIZE)
    assert r.map(ioas, buf, PAGE_SIZE, flags=MAP_RW | 8).where.endswith("ioas.c:212")
    assert r.io("IOMMU_IOAS_MAP", ioas_id=ioas, flags=MAP_RW, user_va=buf, length=PAGE_SIZE,
                __reserved=1).errno == errno.EOPNOTSUPP
    assert r.map(ioas, buf, U64_MAX).where.endswith("ioas.c:214")
    assert r.map(ioas, buf, PAGE_SIZE, iova=U64_MAX).errno == errno.EOVERFLOW
    assert r.map(ioas, buf, PAGE_SIZE, flags=0).where.endswith("ioas.c:218")
    assert r.map(99, buf, PAGE_SIZE).errno == errno.ENOENT
    assert r.map(ioas, buf, 0).where.endswith("pages.c:1153")
    assert r.map(ioas, U64_MAX - PAGE_SIZE + 1, PAGE_SIZE).where.endswith("pages.c:1156")


def test_fixed_map_checks() -> None:
    r = Rig()
    ioas = r.ioas()
    buf = r.mmap(4 * PAGE_SIZE)
    base = 1 << 24
    assert r.map(ioas, buf, 2 * PAGE_SIZE, iova=base + 16 * PAGE_SIZE).ok
    # over-map: EEXIST (io_pagetable.c:199-200), as the selftest "area" test
    for iova, n in ((16, 2), (16, 1), (17, 1), (15, 2), (15, 3)):
        assert r.map(ioas, buf, n * PAGE_SIZE, iova=base + iova * PAGE_SIZE).errno == errno.EEXIST
    # overflowing iova + length: EOVERFLOW (191-192)
    assert r.map(ioas, buf, 2 * PAGE_SIZE, iova=U64_MAX - PAGE_SIZE).errno == errno.EOVERFLOW
    # a reserved range: EINVAL (195-196)
    assert r.test(st.IOMMU_TEST_OP_ADD_RESERVED, ioas, add_reserved={"start": base, "length": PAGE_SIZE}).ok
    assert r.map(ioas, buf, PAGE_SIZE, iova=base).where.endswith("io_pagetable.c:196")
    # no alignment needed without a domain: IOVA 1 works
    assert r.map(ioas, buf, PAGE_SIZE, iova=1).ok


def test_without_a_domain_nothing_is_pinned() -> None:
    # "For non-domain page tables this will only setup a lazy reference"
    # (io_pagetable.c:407-411): an unmapped VA maps fine (selftest area_auto_iova uses 1<<31)
    r = Rig()
    ioas = r.ioas()
    assert r.map(ioas, 1 << 31, 10 * PAGE_SIZE).ok


def test_with_a_domain_unmapped_user_va_is_efault() -> None:
    # iopt_area_fill_domains() pins (pages.c:1409-1450): EFAULT, nothing left behind
    r = Rig()
    ioas = r.ioas()
    r.mock_domain(ioas)
    buf = r.mmap(8 * PAGE_SIZE)
    r.k.mm.munmap(buf, 8 * PAGE_SIZE)
    buf = r.mmap(4 * PAGE_SIZE)  # the next 4 pages after it are unmapped
    res = r.map(ioas, buf, 8 * PAGE_SIZE)
    assert res.errno == errno.EFAULT
    # the area was aborted: the same IOVA range maps again
    assert r.map(ioas, buf, 4 * PAGE_SIZE, iova=1 << 24).ok


# -- UNMAP (ioas.c:296-332, io_pagetable.c:660-779) -------------------------------------

def test_unmap_exact_and_all() -> None:
    r = Rig()
    ioas = r.ioas()
    buf = r.mmap(PAGE_SIZE)
    for i in range(10):
        assert r.map(ioas, buf, PAGE_SIZE, iova=(1 << 24) + i * PAGE_SIZE).ok
    res = r.unmap(ioas, 1 << 24, PAGE_SIZE)
    assert res.ok and res.s.length == PAGE_SIZE
    res = r.unmap(ioas, 0, U64_MAX)
    assert res.ok and res.s.length == 9 * PAGE_SIZE
    # unmap-all of nothing still succeeds with length 0 (io_pagetable.c:777-778)
    res = r.unmap(ioas, 0, U64_MAX)
    assert res.ok and res.s.length == 0
    # any other range that unmaps nothing is ENOENT (ioas.c:320-321)
    assert r.unmap(ioas, 0, PAGE_SIZE).where.endswith("ioas.c:321")


def test_unmap_argument_errors() -> None:
    r = Rig()
    ioas = r.ioas()
    assert r.unmap(99, 0, U64_MAX).errno == errno.ENOENT  # the IOAS is looked up first
    assert r.unmap(ioas, U64_MAX, 1).where.endswith("ioas.c:313")
    assert r.unmap(ioas, PAGE_SIZE, U64_MAX - 1).where.endswith("io_pagetable.c:770")
    assert r.unmap(ioas, 0, 0).where.endswith("io_pagetable.c:767")


def test_partial_area_is_enoent_after_earlier_areas_went() -> None:
    # io_pagetable.c:688-690: an area not inside [start, last] stops the walk
    # with ENOENT; areas before it are already unmapped (and not reported).
    r = Rig()
    ioas = r.ioas()
    buf = r.mmap(2 * PAGE_SIZE)
    base = 1 << 24
    assert r.map(ioas, buf, PAGE_SIZE, iova=base).ok
    assert r.map(ioas, buf, 2 * PAGE_SIZE, iova=base + PAGE_SIZE).ok
    res = r.unmap(ioas, base, 2 * PAGE_SIZE)
    assert res.errno == errno.ENOENT and res.where.endswith("io_pagetable.c:689")
    assert r.map(ioas, buf, PAGE_SIZE, iova=base).ok  # the first area is gone
    # splitting is never allowed through IOAS_UNMAP
    assert r.unmap(ioas, base + 2 * PAGE_SIZE, PAGE_SIZE).errno == errno.ENOENT
    res = r.unmap(ioas, base - PAGE_SIZE, 8 * PAGE_SIZE)
    assert res.ok and res.s.length == 3 * PAGE_SIZE


# -- COPY (ioas.c:239-294) ------------------------------------------------------------

def copy(r: Rig, src: int, src_iova: int, dst: int, length: int, dst_iova: int | None = None,
         flags: int = u.IOMMU_IOAS_MAP_WRITEABLE) -> object:
    if dst_iova is not None:
        flags |= u.IOMMU_IOAS_MAP_FIXED_IOVA
    return r.io("IOMMU_IOAS_COPY", src_ioas_id=src, src_iova=src_iova, dst_ioas_id=dst, length=length,
                dst_iova=dst_iova or 0, flags=flags)


def test_copy_within_and_between() -> None:
    r = Rig()
    a, b = r.ioas(), r.ioas()
    buf = r.mmap(2 * PAGE_SIZE)
    base = 1 << 24
    assert r.map(a, buf, PAGE_SIZE, iova=base).ok
    assert copy(r, a, base, a, PAGE_SIZE, base + PAGE_SIZE).ok  # type: ignore[attr-defined]
    res = copy(r, a, base, b, PAGE_SIZE)
    assert res.ok and res.s.dst_iova == PAGE_SIZE  # type: ignore[attr-defined]
    # the copy spans the two contiguous areas of a
    res = copy(r, a, base, b, 2 * PAGE_SIZE, dst_iova=base)
    assert res.ok  # type: ignore[attr-defined]


def test_copy_source_must_be_fully_covered() -> None:
    # iopt_get_pages(): ENOENT unless contiguous areas cover the range (648-649)
    r = Rig()
    a, b = r.ioas(), r.ioas()
    buf = r.mmap(PAGE_SIZE)
    base = 1 << 24
    assert r.map(a, buf, PAGE_SIZE, iova=base).ok
    res = copy(r, a, base - PAGE_SIZE, b, PAGE_SIZE)
    assert res.errno == errno.ENOENT and res.where.endswith("io_pagetable.c:649")  # type: ignore[attr-defined]
    assert copy(r, a, base + 1, b, PAGE_SIZE).errno == errno.ENOENT  # type: ignore[attr-defined]
    assert copy(r, a, base, b, 0).where.endswith("io_pagetable.c:628")  # type: ignore[attr-defined]
    assert copy(r, a, base, b, PAGE_SIZE, flags=0).where.endswith("ioas.c:262")  # type: ignore[attr-defined]
    assert copy(r, a, base, 99, PAGE_SIZE).errno == errno.ENOENT  # type: ignore[attr-defined]


def test_copy_of_a_read_only_mapping_cannot_be_writeable() -> None:
    # iopt_insert_area(): IOMMU_WRITE on pages that are not writable: EPERM (214-215)
    r = Rig()
    a, b = r.ioas(), r.ioas()
    buf = r.mmap(PAGE_SIZE)
    assert r.map(a, buf, PAGE_SIZE, iova=1 << 24, flags=u.IOMMU_IOAS_MAP_READABLE).ok
    assert copy(r, a, 1 << 24, b, PAGE_SIZE).where.endswith("io_pagetable.c:215")  # type: ignore[attr-defined]
    assert copy(r, a, 1 << 24, b, PAGE_SIZE, flags=u.IOMMU_IOAS_MAP_READABLE).ok  # type: ignore[attr-defined]


# -- IOVA_RANGES and ALLOW_IOVAS (ioas.c:62-180) ------------------------------------------

def test_iova_ranges_emsgsize_contract() -> None:
    r = Rig()
    ioas = r.ioas()
    assert r.test(st.IOMMU_TEST_OP_ADD_RESERVED, ioas, add_reserved={"start": PAGE_SIZE, "length": PAGE_SIZE}).ok
    out = r.mmap(PAGE_SIZE)
    res = r.io("IOMMU_IOAS_IOVA_RANGES", ioas_id=ioas, num_iovas=1, allowed_iovas=out)
    # the struct is written back before EMSGSIZE (101-105): 2 needed, 1 written
    assert res.errno == errno.EMSGSIZE and res.s.num_iovas == 2 and res.s.out_iova_alignment == 1
    assert struct.unpack("<QQQQ", r.k.mm.read(out, 32)) == (0, PAGE_SIZE - 1, 0, 0)
    res = r.io("IOMMU_IOAS_IOVA_RANGES", ioas_id=ioas, num_iovas=2, allowed_iovas=out)
    assert res.ok and res.s.num_iovas == 2
    assert struct.unpack("<QQQQ", r.k.mm.read(out, 32)) == (0, PAGE_SIZE - 1, 2 * PAGE_SIZE, U64_MAX)
    # a NULL array with room claimed faults (93-96)
    assert r.io("IOMMU_IOAS_IOVA_RANGES", ioas_id=ioas, num_iovas=2, allowed_iovas=0).errno == errno.EFAULT
    # but with num_iovas 0 nothing is written: EMSGSIZE
    assert r.io("IOMMU_IOAS_IOVA_RANGES", ioas_id=ioas, num_iovas=0, allowed_iovas=0).errno == errno.EMSGSIZE
    assert r.io("IOMMU_IOAS_IOVA_RANGES", ioas_id=ioas, __reserved=1).where.endswith("ioas.c:72")


def test_allow_iovas_validation() -> None:
    r = Rig()
    ioas = r.ioas()

    def allow(*ranges: tuple[int, int]) -> object:
        raw = b"".join(bytes(u.iommu_iova_range(start=s, last=lst)) for s, lst in ranges)
        return r.io("IOMMU_IOAS_ALLOW_IOVAS", ioas_id=ioas, num_iovas=len(ranges),
                    allowed_iovas=r.buffer(raw) if raw else 0)

    assert allow((10, 10)).where.endswith("ioas.c:126")  # type: ignore[attr-defined]
    assert allow((0, 100), (100, 200)).where.endswith("ioas.c:129")  # type: ignore[attr-defined]
    assert allow((0, 100), (101, 200)).ok  # type: ignore[attr-defined]
    assert allow().ok  # type: ignore[attr-defined]
    res = r.io("IOMMU_IOAS_ALLOW_IOVAS", ioas_id=ioas, num_iovas=1, allowed_iovas=0)
    assert res.where.endswith("ioas.c:123")
    # an allowed range forbids a reservation over it (io_pagetable.c:810-812)
    assert allow((1 << 24, (1 << 24) + 600 * PAGE_SIZE)).ok  # type: ignore[attr-defined]
    res = r.test(st.IOMMU_TEST_OP_ADD_RESERVED, ioas,
                 add_reserved={"start": (1 << 24) + PAGE_SIZE, "length": PAGE_SIZE})
    assert res.errno == errno.EADDRINUSE


# -- DESTROY and OPTION -----------------------------------------------------------------

def test_destroy_busy_while_referenced() -> None:
    # iommufd_object_remove(): refcount_dec_if_one(users) or EBUSY (main.c:212-214)
    r = Rig()
    ioas = r.ioas()
    buf = r.mmap(PAGE_SIZE)
    assert r.map(ioas, buf, PAGE_SIZE, iova=1 << 24).ok
    stdev, hwpt, idev = r.mock_domain(ioas)
    for obj in (ioas, hwpt, idev):
        assert r.destroy(obj).where.endswith("main.c:213")
    assert r.destroy(stdev).ok  # the selftest object owns the device
    # the automatic HWPT went with its last device; the IOAS is free again
    assert r.destroy(hwpt).errno == errno.ENOENT
    assert r.destroy(ioas).ok


def test_rlimit_mode_option() -> None:
    # selftest global_options (iommufd.c:154-187), ioas.c:334-366, main.c:315-339
    r = Rig()
    res = r.io("IOMMU_OPTION", option_id=u.IOMMU_OPTION_RLIMIT_MODE, op=u.IOMMU_OPTION_OP_GET, val64=1)
    assert res.ok and res.s.val64 == 0
    assert r.io("IOMMU_OPTION", option_id=0, op=u.IOMMU_OPTION_OP_SET, val64=1).ok
    assert r.io("IOMMU_OPTION", option_id=0, op=u.IOMMU_OPTION_OP_SET, val64=2).where.endswith("ioas.c:359")
    assert r.io("IOMMU_OPTION", option_id=0, op=u.IOMMU_OPTION_OP_GET).s.val64 == 1
    assert r.io("IOMMU_OPTION", option_id=0, op=2).where.endswith("ioas.c:365")
    assert r.io("IOMMU_OPTION", option_id=0, op=0, object_id=1).where.endswith("ioas.c:338")
    assert r.io("IOMMU_OPTION", option_id=2).where.endswith("main.c:331")
    assert r.io("IOMMU_OPTION", option_id=0, __reserved=1).where.endswith("main.c:321")
    assert r.io("IOMMU_OPTION", option_id=u.IOMMU_OPTION_HUGE_PAGES).errno == errno.ENOENT
    r.ioas()
    assert r.io("IOMMU_OPTION", option_id=0, op=u.IOMMU_OPTION_OP_SET).where.endswith("ioas.c:352")


def test_huge_pages_option() -> None:
    # selftest ioas_option_huge_pages and ioas_align_change (iommufd.c:1264-1352)
    r = Rig()
    ioas = r.ioas()

    def opt(op: int, val: int = 3) -> object:
        return r.io("IOMMU_OPTION", option_id=u.IOMMU_OPTION_HUGE_PAGES, op=op, object_id=ioas, val64=val)

    assert opt(u.IOMMU_OPTION_OP_GET).s.val64 == 1  # type: ignore[attr-defined]
    buf = r.mmap(2 * PAGE_SIZE)
    base = 1 << 24
    assert r.map(ioas, buf, PAGE_SIZE, iova=base).ok
    assert opt(u.IOMMU_OPTION_OP_SET, 0).ok  # type: ignore[attr-defined]
    assert opt(u.IOMMU_OPTION_OP_GET).s.val64 == 0  # type: ignore[attr-defined]
    # PAGE_SIZE alignment now: a half-page user offset is rejected at insert (219-220)
    res = r.map(ioas, buf + 2048, PAGE_SIZE, iova=base + PAGE_SIZE)
    assert res.where.endswith("io_pagetable.c:220")
    assert opt(u.IOMMU_OPTION_OP_SET, 2).where.endswith("ioas.c:382")  # type: ignore[attr-defined]
    assert opt(u.IOMMU_OPTION_OP_SET, 1).ok  # type: ignore[attr-defined]
    assert r.map(ioas, buf + 2048, PAGE_SIZE, iova=base + PAGE_SIZE).ok
    # going back to PAGE_SIZE alignment with that area: EADDRINUSE (1020-1025)
    assert opt(u.IOMMU_OPTION_OP_SET, 0).where.endswith("io_pagetable.c:1025")  # type: ignore[attr-defined]
    assert opt(u.IOMMU_OPTION_OP_GET).s.val64 == 1  # type: ignore[attr-defined]


def test_ioas_alloc_flags() -> None:
    r = Rig()
    s = u.iommu_ioas_alloc(size=ctypes.sizeof(u.iommu_ioas_alloc), flags=1)
    assert r.call(s, u.IOMMU_IOAS_ALLOC).where.endswith("ioas.c:44")
