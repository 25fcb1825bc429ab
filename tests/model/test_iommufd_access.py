"""The selftest access object: IOMMU_TEST_OP_CREATE_ACCESS / ACCESS_PAGES /
ACCESS_RW / DESTROY_ACCESS_PAGES / ACCESS_REPLACE_IOAS (selftest.c:981-1356)
over iommufd_access (device.c:875-1307) and pages.c."""

from __future__ import annotations

import errno

from test_iommufd_util import PAGE_SIZE, Rig

from harness.uapi import iommufd as u
from harness.uapi import iommufd_test as st

START = st.MOCK_APERTURE_START
PIN = st.MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES


def create_access(r: Rig, ioas: int, flags: int = 0) -> int:
    res = r.test(st.IOMMU_TEST_OP_CREATE_ACCESS, ioas, create_access={"flags": flags})
    assert res.ok, res
    return int(res.s.create_access.out_access_fd)


def rw(r: Rig, afd: int, iova: int, length: int, ubuf: int, flags: int = 0) -> int:
    return r.test(st.IOMMU_TEST_OP_ACCESS_RW, afd,
                  access_rw={"iova": iova, "length": length, "uptr": ubuf, "flags": flags}).errno


def pages(r: Rig, afd: int, iova: int, length: int, uptr: int = 0, flags: int = 0) -> object:
    return r.test(st.IOMMU_TEST_OP_ACCESS_PAGES, afd,
                  access_pages={"iova": iova, "length": length, "uptr": uptr, "flags": flags})


def test_access_rw_reads_and_writes_the_user_memory_behind_the_iova() -> None:
    # selftest check_access_rw (iommufd.c:1093-1153): the access sees the user
    # buffer through the area; a write lands in the user memory
    r = Rig()
    ioas = r.ioas()
    afd = create_access(r, ioas)
    assert afd == 4  # fd 3 is /dev/iommu (get_unused_fd_flags)
    buf = r.mmap(4 * PAGE_SIZE)
    r.k.mm.write(buf, bytes(i % 251 for i in range(4 * PAGE_SIZE)))
    iova = r.map(ioas, buf, 4 * PAGE_SIZE).s.iova
    tmp = r.mmap(PAGE_SIZE)
    for flags in (0, st.MOCK_ACCESS_RW_SLOW_PATH):
        for off, n in ((PAGE_SIZE - 50, 100), (0, 1), (3 * PAGE_SIZE, PAGE_SIZE), (10, 3 * PAGE_SIZE)):
            assert rw(r, afd, iova + off, n, tmp if n <= PAGE_SIZE else r.mmap(n), flags) == 0
        assert rw(r, afd, iova + PAGE_SIZE - 50, 100, tmp, flags) == 0
        assert r.k.mm.read(tmp, 100) == r.k.mm.read(buf + PAGE_SIZE - 50, 100)
    r.k.mm.write(tmp, b"Z" * 30)
    assert rw(r, afd, iova + 2 * PAGE_SIZE - 10, 30, tmp, st.MOCK_ACCESS_RW_WRITE) == 0
    assert r.k.mm.read(buf + 2 * PAGE_SIZE - 10, 30) == b"Z" * 30


def test_access_rw_spans_contiguous_areas_only() -> None:
    r = Rig()
    ioas = r.ioas()
    afd = create_access(r, ioas)
    a, b = r.mmap(PAGE_SIZE), r.mmap(PAGE_SIZE)
    r.k.mm.write(a, b"A" * PAGE_SIZE)
    r.k.mm.write(b, b"B" * PAGE_SIZE)
    assert r.map(ioas, a, PAGE_SIZE, iova=START).ok
    assert r.map(ioas, b, PAGE_SIZE, iova=START + PAGE_SIZE).ok
    tmp = r.mmap(PAGE_SIZE)
    assert rw(r, afd, START + PAGE_SIZE - 2, 4, tmp) == 0
    assert r.k.mm.read(tmp, 4) == b"AABB"
    # past the last area: ENOENT (device.c:1300-1301); a zero length: EINVAL (1266-1267)
    assert rw(r, afd, START + PAGE_SIZE, PAGE_SIZE + 1, tmp) == errno.ENOENT
    assert rw(r, afd, START, 0, tmp) == errno.EINVAL
    assert rw(r, afd, START - 1, 2, tmp) == errno.ENOENT
    assert rw(r, afd, START, 4, tmp, 1 << 3) == errno.EOPNOTSUPP  # selftest.c:1313-1315
    assert rw(r, afd, START, (16 << 20) + 1, tmp) == errno.ENOMEM  # selftest.c:1310-1311
    assert rw(r, 3, START, 4, tmp) == errno.EBADFD  # not an access fd (selftest.c:1007-1009)


def test_access_rw_permissions() -> None:
    # check_area_prot() (device.c:1142-1147): a read-only mapping refuses writes
    r = Rig()
    ioas = r.ioas()
    afd = create_access(r, ioas)
    buf = r.mmap(PAGE_SIZE)
    assert r.map(ioas, buf, PAGE_SIZE, iova=START, flags=u.IOMMU_IOAS_MAP_READABLE).ok
    tmp = r.mmap(PAGE_SIZE)
    assert rw(r, afd, START, 8, tmp) == 0
    assert rw(r, afd, START, 8, tmp, st.MOCK_ACCESS_RW_WRITE) == errno.EPERM
    # the user buffer is read before the access (selftest.c:1327-1332)
    assert rw(r, afd, START, 8, 0, st.MOCK_ACCESS_RW_WRITE) == errno.EFAULT
    assert rw(r, afd, START, 8, 0) == errno.EFAULT  # copy_to_user at the end (1341-1345)


def test_fast_path_reads_the_mm_slow_path_the_pinned_page() -> None:
    # iopt_pages_rw_access(): the fast path is copy_from_user() on the current
    # mm (pages.c:1869-1876); the slow path goes through the pfn_reader, which
    # takes the pages the domain keeps pinned (pages.c:1744-1779).
    r = Rig()
    ioas = r.ioas()
    r.mock_domain(ioas)
    afd = create_access(r, ioas)
    buf = r.mmap(2 * PAGE_SIZE)
    r.k.mm.write(buf, b"P" * 2 * PAGE_SIZE)
    assert r.map(ioas, buf, 2 * PAGE_SIZE, iova=START).ok
    r.k.mm.munmap(buf, 2 * PAGE_SIZE)
    tmp = r.mmap(2 * PAGE_SIZE)
    assert rw(r, afd, START, 2 * PAGE_SIZE, tmp) == errno.EFAULT
    assert rw(r, afd, START, 2 * PAGE_SIZE, tmp, st.MOCK_ACCESS_RW_SLOW_PATH) == 0
    assert r.k.mm.read(tmp, 2 * PAGE_SIZE) == b"P" * 2 * PAGE_SIZE
    # a single page goes through pin_user_pages_remote() of the mm (pages.c:1785-1819)
    assert rw(r, afd, START, 16, tmp, st.MOCK_ACCESS_RW_SLOW_PATH) == errno.EFAULT


def test_access_pages_pin_check_and_unmap_notification() -> None:
    # selftest access_pin / access_pin_unmap (iommufd.c:995-1091)
    r = Rig()
    ioas = r.ioas()
    afd = create_access(r, ioas, PIN)
    buf = r.mmap(16 * PAGE_SIZE)
    assert r.map(ioas, buf, 16 * PAGE_SIZE, iova=START).ok
    res = pages(r, afd, START, 4 * PAGE_SIZE, buf)
    assert res.ok and res.s.access_pages.out_access_pages_id == 0  # type: ignore[attr-defined]
    res = pages(r, afd, START, 4 * PAGE_SIZE, buf)
    assert res.ok and res.s.access_pages.out_access_pages_id == 1  # type: ignore[attr-defined]
    # the pages are compared with the user VA's (selftest.c:1183-1202)
    assert pages(r, afd, START, PAGE_SIZE, buf + PAGE_SIZE).where.endswith("selftest.c:1197")  # type: ignore[attr-defined]
    # pinning needs page alignment (device.c:1130-1140, 1202-1206)
    assert pages(r, afd, START + 2048, PAGE_SIZE).where.endswith("device.c:1204")  # type: ignore[attr-defined]
    assert pages(r, afd, START + 16 * PAGE_SIZE, PAGE_SIZE).where.endswith("device.c:1220")  # type: ignore[attr-defined]
    assert pages(r, afd, START, 0).where.endswith("device.c:1184")  # type: ignore[attr-defined]
    res = r.test(st.IOMMU_TEST_OP_MD_CHECK_REFS, check_refs={"length": 4 * PAGE_SIZE, "uptr": buf, "refs": 1})
    assert res.ok  # two accesses of the same range: one pin
    # the IOAS cannot go while the access holds it
    assert r.destroy(ioas).errno == errno.EBUSY
    # unmap calls the access' unmap op, which drops its items (device.c:1063-1083)
    res = r.unmap(ioas, START, 16 * PAGE_SIZE)
    assert res.ok and res.s.length == 16 * PAGE_SIZE
    res = r.test(st.IOMMU_TEST_OP_DESTROY_ACCESS_PAGES, afd, destroy_access_pages={"access_pages_id": 0})
    assert res.where.endswith("selftest.c:1060")
    res = r.test(st.IOMMU_TEST_OP_MD_CHECK_REFS, check_refs={"length": 4 * PAGE_SIZE, "uptr": buf, "refs": 0})
    assert res.ok


def test_access_pages_needs_the_pin_ops() -> None:
    r = Rig()
    ioas = r.ioas()
    afd = create_access(r, ioas)
    assert pages(r, afd, START, PAGE_SIZE).where.endswith("selftest.c:1228")  # type: ignore[attr-defined]
    assert pages(r, afd, START, PAGE_SIZE, flags=2).where.endswith("selftest.c:1221")  # type: ignore[attr-defined]
    res = r.test(st.IOMMU_TEST_OP_CREATE_ACCESS, ioas, create_access={"flags": 2})
    assert res.where.endswith("selftest.c:1123")
    assert r.test(st.IOMMU_TEST_OP_CREATE_ACCESS, 99).errno == errno.ENOENT


def test_pin_access_raises_the_iova_alignment() -> None:
    # access->iova_alignment = PAGE_SIZE with needs_pin_pages (device.c:976-979),
    # folded in by iopt_calculate_iova_alignment() (io_pagetable.c:1137-1140)
    r = Rig()
    ioas = r.ioas()
    buf = r.mmap(2 * PAGE_SIZE)
    assert r.map(ioas, buf + 2048, PAGE_SIZE, iova=START + 2048).ok
    res = r.test(st.IOMMU_TEST_OP_CREATE_ACCESS, ioas, create_access={"flags": PIN})
    assert res.where.endswith("io_pagetable.c:1025")
    assert r.unmap(ioas, 0, (1 << 64) - 1).ok
    afd = create_access(r, ioas, PIN)
    res = r.io("IOMMU_IOAS_IOVA_RANGES", ioas_id=ioas)
    assert res.s.out_iova_alignment == PAGE_SIZE
    r.k.close(afd)
    assert r.io("IOMMU_IOAS_IOVA_RANGES", ioas_id=ioas).s.out_iova_alignment == 1


def test_access_replace_ioas_and_close() -> None:
    # selftest user_copy (iommufd.c:1638-1701)
    r = Rig()
    a, b = r.ioas(), r.ioas()
    afd = create_access(r, a, PIN)
    buf = r.mmap(PAGE_SIZE)
    assert r.map(a, buf, PAGE_SIZE, iova=START).ok
    assert pages(r, afd, START, PAGE_SIZE, buf).ok  # type: ignore[attr-defined]
    res = r.test(st.IOMMU_TEST_OP_ACCESS_REPLACE_IOAS, afd, access_replace_ioas={"ioas_id": b})
    assert res.ok
    # the change unmapped everything the access had (device.c:906-914) and moved its ref
    assert r.destroy(a).ok
    assert r.destroy(b).errno == errno.EBUSY
    assert r.test(st.IOMMU_TEST_OP_ACCESS_REPLACE_IOAS, afd, access_replace_ioas={"ioas_id": 99}).errno == errno.ENOENT
    # closing the access fd destroys the access (selftest.c:1063-1075)
    r.k.close(afd)
    assert r.destroy(b).ok


def test_the_access_keeps_the_iommufd_open() -> None:
    # iommufd_access_create() takes a ctx reference (device.c:984)
    r = Rig()
    ioas = r.ioas()
    afd = create_access(r, ioas)
    ctx = r.k.fget(r.fd)
    r.k.close(r.fd)
    assert ctx.objects  # type: ignore[attr-defined]
    r.k.close(afd)
    assert not ctx.objects  # type: ignore[attr-defined]
