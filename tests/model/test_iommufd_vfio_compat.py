"""The VFIO container ioctls an iommufd context serves (drivers/iommu/
iommufd/vfio_compat.c), checked against the selftest's expectations
(tools/testing/selftests/iommu/iommufd.c:2050-2437)."""

from __future__ import annotations

import ctypes
import errno
import struct

from test_iommufd_util import PAGE_SIZE, Rig

from harness.uapi import iommufd as u
from harness.uapi import iommufd_test as st
from harness.uapi import vfio as vc

START = st.MOCK_APERTURE_START


def compat_rig(version: int = vc.VFIO_TYPE1v2_IOMMU) -> tuple[Rig, int]:
    """FIXTURE_SETUP(vfio_compat_mock_domain) (iommufd.c:2159-2177)."""
    r = Rig()
    ioas = r.ioas()
    r.mock_domain(ioas)
    assert r.io("IOMMU_VFIO_IOAS", op=u.IOMMU_VFIO_IOAS_SET, ioas_id=ioas).ok
    assert r.raw_ioctl(vc.VFIO_SET_IOMMU, version).ok
    return r, ioas


def map_dma(r: Rig, vaddr: int, iova: int, size: int, flags: int = 3, argsz: int = 32) -> int:
    m = vc.vfio_iommu_type1_dma_map(argsz=argsz, flags=flags, vaddr=vaddr, iova=iova, size=size)
    return r.call(m, vc.VFIO_IOMMU_MAP_DMA).errno


def unmap_dma(r: Rig, iova: int, size: int, flags: int = 0, argsz: int = 24) -> tuple[int, int]:
    m = vc.vfio_iommu_type1_dma_unmap(argsz=argsz, flags=flags, iova=iova, size=size)
    res = r.call(m, vc.VFIO_IOMMU_UNMAP_DMA)
    return res.errno, res.s.size


def test_simple_ioctls_and_extensions() -> None:
    r = Rig()
    assert r.raw_ioctl(vc.VFIO_GET_API_VERSION, 0).ret == vc.VFIO_API_VERSION
    ext = {t: r.raw_ioctl(vc.VFIO_CHECK_EXTENSION, t) for t in range(12)}
    # vfio_compat.c:282-312
    assert {t: x.ret for t, x in ext.items() if x.ok} == {
        0: 0, 1: 1, 2: 0, 3: 1, 5: 0, 6: 0, 7: 0, 8: 1, 9: 1, 10: 0, 11: 0}
    assert ext[vc.VFIO_DMA_CC_IOMMU].errno == errno.ENODEV  # no compat IOAS yet (256-264)
    assert r.raw_ioctl(vc.VFIO_IOMMU_DIRTY_PAGES, 0).errno == errno.ENOTTY  # 536-538


def test_everything_needs_the_compat_ioas() -> None:
    # selftest unmap_cmd/map_cmd/info_cmd/set_iommu_cmd (iommufd.c:2058-2114)
    r = Rig()
    buf = r.mmap(PAGE_SIZE)
    assert map_dma(r, buf, START, PAGE_SIZE, argsz=1) == errno.EINVAL
    assert map_dma(r, buf, START, PAGE_SIZE, flags=1 << 31) == errno.EINVAL
    assert map_dma(r, buf, START, PAGE_SIZE) == errno.ENODEV
    assert unmap_dma(r, START, PAGE_SIZE, argsz=1)[0] == errno.EINVAL
    assert unmap_dma(r, START, PAGE_SIZE, flags=1 << 31)[0] == errno.EINVAL
    assert unmap_dma(r, START, PAGE_SIZE)[0] == errno.ENODEV
    info = vc.vfio_iommu_type1_info(argsz=1)
    assert r.call(info, vc.VFIO_IOMMU_GET_INFO).errno == errno.EINVAL
    info = vc.vfio_iommu_type1_info(argsz=ctypes.sizeof(info))
    assert r.call(info, vc.VFIO_IOMMU_GET_INFO).errno == errno.ENODEV
    assert r.raw_ioctl(vc.VFIO_SET_IOMMU, vc.VFIO_TYPE1v2_IOMMU).errno == errno.ENODEV
    assert r.raw_ioctl(vc.VFIO_SET_IOMMU, vc.VFIO_TYPE1_IOMMU).errno == errno.ENODEV
    # an unsupported type is EINVAL before the IOAS is looked for (333-335)
    assert r.raw_ioctl(vc.VFIO_SET_IOMMU, vc.VFIO_SPAPR_TCE_IOMMU).errno == errno.EINVAL
    # NULL structs fault (170-171)
    assert r.raw_ioctl(vc.VFIO_IOMMU_MAP_DMA, 0).errno == errno.EFAULT


def test_vfio_ioas_ioctl() -> None:
    # selftest vfio_ioas (iommufd.c:2116-2146), vfio_compat.c:123-157
    r = Rig()
    assert r.io("IOMMU_VFIO_IOAS", op=u.IOMMU_VFIO_IOAS_GET).where.endswith("vfio_compat.c:17")
    assert r.io("IOMMU_VFIO_IOAS", op=u.IOMMU_VFIO_IOAS_SET).errno == errno.ENOENT
    ioas = r.ioas()
    assert r.io("IOMMU_VFIO_IOAS", op=u.IOMMU_VFIO_IOAS_SET, ioas_id=ioas).ok
    assert r.io("IOMMU_VFIO_IOAS", op=u.IOMMU_VFIO_IOAS_GET).s.ioas_id == ioas
    assert r.io("IOMMU_VFIO_IOAS", op=u.IOMMU_VFIO_IOAS_CLEAR).ok
    assert r.io("IOMMU_VFIO_IOAS", op=u.IOMMU_VFIO_IOAS_GET).errno == errno.ENODEV
    assert r.io("IOMMU_VFIO_IOAS", op=3).where.endswith("vfio_compat.c:155")
    assert r.io("IOMMU_VFIO_IOAS", op=0, __reserved=1).where.endswith("vfio_compat.c:129")
    # destroying the compat IOAS clears it (main.c:218-219)
    assert r.io("IOMMU_VFIO_IOAS", op=u.IOMMU_VFIO_IOAS_SET, ioas_id=ioas).ok
    assert r.destroy(ioas).ok
    assert r.io("IOMMU_VFIO_IOAS", op=u.IOMMU_VFIO_IOAS_GET).errno == errno.ENODEV


def test_map_unmap_and_unmap_all() -> None:
    # selftest vfio_compat_mock_domain.map (iommufd.c:2343-2393)
    r, _ = compat_rig()
    size = 16 * PAGE_SIZE
    buf = r.mmap(size)
    assert map_dma(r, buf, START, size) == 0
    assert unmap_dma(r, START, size) == (0, size)
    assert unmap_dma(r, START, size) == (0, 0)  # unmapping nothing succeeds here
    assert map_dma(r, buf, START, size) == 0
    assert unmap_dma(r, START, size, flags=vc.VFIO_DMA_UNMAP_FLAG_ALL)[0] == errno.EINVAL  # 224-226
    assert unmap_dma(r, 0, 0, flags=vc.VFIO_DMA_UNMAP_FLAG_ALL) == (0, size)
    for i in range(16):
        assert map_dma(r, buf + i * PAGE_SIZE, START + i * PAGE_SIZE, PAGE_SIZE) == 0
    for i in (5, 0, 15, 7):
        assert unmap_dma(r, START + i * PAGE_SIZE, PAGE_SIZE) == (0, PAGE_SIZE)
    # a failing unmap still reports what it unmapped (247-249)
    assert unmap_dma(r, START + PAGE_SIZE, 0) == (errno.EINVAL, 0)
    # pages 1-3 go, page 4 is only partly covered: ENOENT with 3 pages reported
    assert unmap_dma(r, START + PAGE_SIZE, 3 * PAGE_SIZE + 1) == (errno.ENOENT, 3 * PAGE_SIZE)


def test_type1_can_cut_type1v2_cannot() -> None:
    # selftest vfio_compat_mock_domain.huge_map (iommufd.c:2395-2437)
    for version, expect in ((vc.VFIO_TYPE1_IOMMU, 0), (vc.VFIO_TYPE1v2_IOMMU, errno.ENOENT)):
        r, ioas = compat_rig(version)
        size = 16 * PAGE_SIZE
        buf = r.mmap(size)
        assert map_dma(r, buf, START, size) == 0
        for i in (3, 0, 15, 8):
            assert unmap_dma(r, START + i * PAGE_SIZE, PAGE_SIZE)[0] == expect
        # and HUGE_PAGES reads back off for type1 (iommufd.c:2198-2214)
        opt = r.io("IOMMU_OPTION", option_id=u.IOMMU_OPTION_HUGE_PAGES, op=u.IOMMU_OPTION_OP_GET, object_id=ioas)
        assert opt.s.val64 == (0 if version == vc.VFIO_TYPE1_IOMMU else 1)


def test_set_iommu_type1_with_mappings_in_a_domain_is_einval() -> None:
    # iopt_disable_large_pages(): domains and areas both present (io_pagetable.c:1341-1346)
    r, _ = compat_rig()
    buf = r.mmap(PAGE_SIZE)
    assert map_dma(r, buf, START, PAGE_SIZE) == 0
    assert r.raw_ioctl(vc.VFIO_SET_IOMMU, vc.VFIO_TYPE1_IOMMU).where.endswith("io_pagetable.c:1344")
    assert r.raw_ioctl(vc.VFIO_SET_IOMMU, vc.VFIO_TYPE1v2_IOMMU).ok  # any number of times


def test_dma_cc_follows_the_hwpts() -> None:
    r = Rig()
    ioas = r.ioas()
    assert r.io("IOMMU_VFIO_IOAS", op=u.IOMMU_VFIO_IOAS_SET, ioas_id=ioas).ok
    assert r.raw_ioctl(vc.VFIO_CHECK_EXTENSION, vc.VFIO_DMA_CC_IOMMU).ret == 1
    r.mock_domain(ioas)  # the mock IOMMU cannot enforce coherency
    assert r.raw_ioctl(vc.VFIO_CHECK_EXTENSION, vc.VFIO_DMA_CC_IOMMU).ret == 0


def get_info(r: Rig, argsz: int) -> tuple[vc.vfio_iommu_type1_info, bytes]:
    # only the first 16 bytes are read (minsz, vfio_compat.c:449-458)
    buf = r.buffer(bytes(vc.vfio_iommu_type1_info(argsz=argsz))[:16].ljust(256, b"\xaa"))
    res = r.raw_ioctl(vc.VFIO_IOMMU_GET_INFO, buf)
    assert res.ok, res
    raw = r.k.mm.read(buf, 256)
    return vc.vfio_iommu_type1_info.from_buffer_copy(raw[:24]), raw


def test_get_info_caps_chain() -> None:
    # selftest vfio_compat_mock_domain.get_info (iommufd.c:2288-2327), vfio_compat.c:439-516
    r, _ = compat_rig()
    info, raw = get_info(r, 16)  # pre-cap ABI: 16 bytes back
    assert (info.argsz, info.flags, info.iova_pgsizes) == (72, 3, PAGE_SIZE)
    assert raw[16:24] == b"\xaa" * 8
    info, raw = get_info(r, 24)
    # dma_avail is 12 (-> 16), the IOVA cap 16 + 16 per range: 24 + 16 + 32
    assert (info.argsz, info.cap_offset) == (72, 0)
    info, raw = get_info(r, 72)
    assert info.cap_offset == 24
    assert struct.unpack("<HHII", raw[24:36]) == (vc.VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, 1, 40, 0xFFFFFFFF)
    assert struct.unpack("<HHIII", raw[40:56])[:4] == (vc.VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, 1, 0, 1)
    assert struct.unpack("<QQ", raw[56:72]) == (START, st.MOCK_APERTURE_LAST)
    for argsz in range(24, 73):
        info, raw = get_info(r, argsz)
        assert info.flags == 3 and info.argsz == 72
        assert raw[argsz:] == b"\xaa" * (256 - argsz)  # nothing past argsz
    # a short argsz still gets the first cap's next patched once argsz reaches
    # the second cap (vfio_compat.c:488-492)
    info, raw = get_info(r, 48)
    assert info.cap_offset == 0 and struct.unpack("<I", raw[28:32]) == (40,)
    info, raw = get_info(r, 39)
    assert struct.unpack("<I", raw[28:32]) == (0,)


def test_vfio_container_node_with_iommufd_container() -> None:
    r = Rig(container="iommufd")
    assert r.k.node_exists("/dev/vfio/vfio")
    fd = r.k.open("/dev/vfio/vfio")
    # main.c:266-270: IOPT_PAGES_ACCOUNT_MM, what RLIMIT_MODE GET reports
    opt = r.io("IOMMU_OPTION", option_id=u.IOMMU_OPTION_RLIMIT_MODE, op=u.IOMMU_OPTION_OP_GET)
    assert opt.s.val64 == 0
    buf = r.buffer(bytes(u.iommu_option(size=24, option_id=0, op=u.IOMMU_OPTION_OP_GET)))
    assert r.raw_ioctl(u.IOMMU_OPTION, buf, fd=fd).ok
    assert u.iommu_option.from_buffer_copy(r.k.mm.read(buf, 24)).val64 == 1
    assert not Rig(container="legacy").k.node_exists("/dev/vfio/vfio")
