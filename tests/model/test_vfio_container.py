"""The legacy /dev/vfio/vfio container (drivers/vfio/container.c) and the type1
backend (drivers/vfio/vfio_iommu_type1.c) on the q35 topology: the intel-iommu
facts give the aperture [0, 2^39) with the interrupt window 0xfee00000-0xfeefffff
reserved and page sizes 4K|2M|1G."""

from __future__ import annotations

import ctypes
import errno
import struct

from test_vfio_util import E1000, Rig

from harness.uapi import vfio as uv

T1 = "drivers/vfio/vfio_iommu_type1.c"
RW = uv.VFIO_DMA_MAP_FLAG_READ | uv.VFIO_DMA_MAP_FLAG_WRITE
PGSIZES = 0x4020_1000
# caps: MIGRATION 32 + DMA_AVAIL 12 -> 16 + IOVA_RANGE 16 + 2 * 16 (vfio_info_cap_add aligns to 8)
CAPS_SIZE = 32 + 16 + 48
IOVA_RANGES = [(0, 0xFEDF_FFFF), (0xFEF0_0000, (1 << 39) - 1)]


def dma_map(iova: int, size: int, vaddr: int, flags: int = RW, argsz: int = 32) -> uv.vfio_iommu_type1_dma_map:
    return uv.vfio_iommu_type1_dma_map(argsz=argsz, flags=flags, vaddr=vaddr, iova=iova, size=size)


def dma_unmap(iova: int, size: int, flags: int = 0, argsz: int = 24) -> uv.vfio_iommu_type1_dma_unmap:
    return uv.vfio_iommu_type1_dma_unmap(argsz=argsz, flags=flags, iova=iova, size=size)


def attached(r: Rig, iommu: int | None = uv.VFIO_TYPE1v2_IOMMU) -> tuple[int, int]:
    container = r.fd("/dev/vfio/vfio")
    gfd = r.fd("/dev/vfio/1")
    assert r.ioctl(gfd, uv.VFIO_GROUP_SET_CONTAINER, ctypes.c_int32(container)).ok
    if iommu is not None:
        assert r.ioctl(container, uv.VFIO_SET_IOMMU, iommu).ok
    return container, gfd


def test_api_version_and_extensions_without_group() -> None:
    r = Rig()
    c = r.fd("/dev/vfio/vfio")
    assert r.ioctl(c, uv.VFIO_GET_API_VERSION).ret == 0  # container.c:340
    ext = {e: r.ioctl(c, uv.VFIO_CHECK_EXTENSION, e).ret for e in range(12)}
    # vfio_iommu_type1_check_extension(NULL, arg) (:2642-2664); noiommu answers 0
    assert ext == {0: 0, 1: 1, 2: 0, 3: 1, 4: 0, 5: 0, 6: 1, 7: 0, 8: 0, 9: 1, 10: 0, 11: 0}


def test_extensions_with_backend() -> None:
    r = Rig()
    c, _ = attached(r)
    # UPDATE_VADDR with an iommu and no mdev (:2651-2656); DMA_CC needs snoop
    # control, which QEMU's intel-iommu lacks (intel_iommu_enforce_cache_coherency)
    assert r.ioctl(c, uv.VFIO_CHECK_EXTENSION, uv.VFIO_UPDATE_VADDR).ret == 1
    assert r.ioctl(c, uv.VFIO_CHECK_EXTENSION, uv.VFIO_DMA_CC_IOMMU).ret == 0


def test_set_iommu_rules() -> None:
    r = Rig()
    c = r.fd("/dev/vfio/vfio")
    # no group: EINVAL (container.c:276-279)
    res = r.ioctl(c, uv.VFIO_SET_IOMMU, uv.VFIO_TYPE1v2_IOMMU)
    assert (res.errno, res.where) == (errno.EINVAL, "drivers/vfio/container.c:278")
    c, _ = attached(r, None)
    # no driver reports the type: ENODEV (container.c:264)
    assert r.ioctl(c, uv.VFIO_SET_IOMMU, 99).errno == errno.ENODEV
    assert r.ioctl(c, uv.VFIO_SET_IOMMU, uv.VFIO_NOIOMMU_IOMMU).errno == errno.ENODEV
    # type1 reports UNMAP_ALL as an extension but cannot open it (:2557-2559)
    res = r.ioctl(c, uv.VFIO_SET_IOMMU, uv.VFIO_UNMAP_ALL)
    assert (res.errno, res.where) == (errno.EINVAL, f"{T1}:2559")
    # nesting: iommu_enable_nesting() without the op (iommu.c:2735-2736)
    assert r.ioctl(c, uv.VFIO_SET_IOMMU, uv.VFIO_TYPE1_NESTING_IOMMU).errno == errno.EINVAL
    assert r.ioctl(c, uv.VFIO_SET_IOMMU, uv.VFIO_TYPE1v2_IOMMU).ok
    # a second time: EINVAL
    assert r.ioctl(c, uv.VFIO_SET_IOMMU, uv.VFIO_TYPE1v2_IOMMU).errno == errno.EINVAL


def test_unknown_ioctl_before_and_after_set_iommu() -> None:
    r = Rig()
    c, _ = attached(r, None)
    # container.c:333: ret starts as -EINVAL, no driver to pass it to
    for cmd in (uv.VFIO_IOMMU_MAP_DMA, uv.VFIO_IOMMU_GET_INFO, uv.VFIO_DEVICE_GET_INFO):
        res = r.ioctl(c, cmd, 0)
        assert (res.errno, res.where) == (errno.EINVAL, "drivers/vfio/container.c:333")
    assert r.ioctl(c, uv.VFIO_SET_IOMMU, uv.VFIO_TYPE1v2_IOMMU).ok
    res = r.ioctl(c, uv.VFIO_DEVICE_GET_INFO, 0)
    assert (res.errno, res.where) == (errno.ENOTTY, f"{T1}:3008")


def test_get_info_argsz_growth() -> None:
    r = Rig()
    c, _ = attached(r)
    # argsz < 16: EINVAL (:2769-2770)
    assert r.ioctl(c, uv.VFIO_IOMMU_GET_INFO, uv.vfio_iommu_type1_info(argsz=15)).errno == errno.EINVAL
    # argsz 16: flags and the needed size, only 16 bytes written (:2772, :2795-2797, :2811)
    raw = bytes(uv.vfio_iommu_type1_info(argsz=16))[:16] + b"\xaa" * 8
    res, data = r.ioctl_raw(c, uv.VFIO_IOMMU_GET_INFO, raw)
    assert res.ok
    argsz, flags, pgsizes = struct.unpack_from("<IIQ", data)
    assert (argsz, flags, pgsizes) == (24 + CAPS_SIZE, uv.VFIO_IOMMU_INFO_PGSIZES | uv.VFIO_IOMMU_INFO_CAPS, PGSIZES)
    assert data[16:] == b"\xaa" * 8
    # argsz 24: still too small for the chain, cap_offset stays 0
    res = r.ioctl(c, uv.VFIO_IOMMU_GET_INFO, uv.vfio_iommu_type1_info(argsz=24))
    assert (res.s.argsz, res.s.cap_offset) == (24 + CAPS_SIZE, 0)
    # one byte short: nothing of the chain written
    size = 24 + CAPS_SIZE
    raw = bytes(uv.vfio_iommu_type1_info(argsz=size - 1)).ljust(size, b"\xaa")
    res, data = r.ioctl_raw(c, uv.VFIO_IOMMU_GET_INFO, raw)
    assert data[24:] == b"\xaa" * CAPS_SIZE


def test_get_info_capability_chain() -> None:
    r = Rig()
    c, _ = attached(r)
    size = 24 + CAPS_SIZE
    res, data = r.ioctl_raw(c, uv.VFIO_IOMMU_GET_INFO, bytes(uv.vfio_iommu_type1_info(argsz=size)).ljust(size, b"\0"))
    assert res.ok
    info = uv.vfio_iommu_type1_info.from_buffer_copy(data[:24])
    assert (info.argsz, info.cap_offset) == (size, 24)
    # MIGRATION (:2726-2740): min page size, DIRTY_BITMAP_SIZE_MAX = 2^31 bits / 8
    mig = uv.vfio_iommu_type1_info_cap_migration.from_buffer_copy(data[24:56])
    assert (mig.header.id, mig.header.version, mig.header.next) == (2, 1, 56)
    assert (mig.flags, mig.pgsize_bitmap, mig.max_dirty_bitmap_size) == (0, 4096, 1 << 28)
    # DMA_AVAIL: dma_entry_limit's default U16_MAX (:58, :2742-2754)
    avail = uv.vfio_iommu_type1_info_dma_avail.from_buffer_copy(data[56:68])
    assert (avail.header.id, avail.header.next, avail.avail) == (3, 72, 0xFFFF)
    # IOVA_RANGE: the aperture minus the reserved MSI window, last in the chain
    rng = uv.vfio_iommu_type1_info_cap_iova_range.from_buffer_copy(data[72:88])
    assert (rng.header.id, rng.header.next, rng.nr_iovas) == (1, 0, 2)
    ranges = [struct.unpack_from("<QQ", data, 88 + 16 * i) for i in range(2)]
    assert ranges == IOVA_RANGES


def test_map_unmap_basics() -> None:
    r = Rig()
    c, _ = attached(r)
    buf = r.b.mmap(0x4000).ret
    assert r.ioctl(c, uv.VFIO_IOMMU_MAP_DMA, dma_map(0x100000, 0x4000, buf)).ok
    # overlap: EEXIST (:1605-1606)
    res = r.ioctl(c, uv.VFIO_IOMMU_MAP_DMA, dma_map(0x102000, 0x4000, buf))
    assert (res.errno, res.where) == (errno.EEXIST, f"{T1}:1606")
    # DMA_AVAIL went down by one
    res = r.ioctl(c, uv.VFIO_IOMMU_GET_INFO, uv.vfio_iommu_type1_info(argsz=24))
    size = res.s.argsz
    _, data = r.ioctl_raw(c, uv.VFIO_IOMMU_GET_INFO, bytes(uv.vfio_iommu_type1_info(argsz=size)).ljust(size, b"\0"))
    assert struct.unpack_from("<I", data, 64)[0] == 0xFFFE
    # v2: a partial unmap bisecting the mapping is EINVAL (:1346-1354)
    res = r.ioctl(c, uv.VFIO_IOMMU_UNMAP_DMA, dma_unmap(0x101000, 0x1000))
    assert (res.errno, res.where) == (errno.EINVAL, f"{T1}:1349")
    # nothing in range: success, size 0
    res = r.ioctl(c, uv.VFIO_IOMMU_UNMAP_DMA, dma_unmap(0x200000, 0x1000))
    assert res.ok and res.s.size == 0
    res = r.ioctl(c, uv.VFIO_IOMMU_UNMAP_DMA, dma_unmap(0x100000, 0x4000))
    assert res.ok and res.s.size == 0x4000


def test_map_errors() -> None:
    r = Rig()
    c, _ = attached(r)
    buf = r.b.mmap(0x2000).ret

    def err(m: uv.vfio_iommu_type1_dma_map) -> tuple[int, str]:
        res = r.ioctl(c, uv.VFIO_IOMMU_MAP_DMA, m)
        return res.errno, res.where

    assert err(dma_map(0, 0x1000, buf, argsz=31)) == (errno.EINVAL, f"{T1}:2829")
    assert err(dma_map(0, 0x1000, buf, flags=1 << 3)) == (errno.EINVAL, f"{T1}:2829")
    # neither READ nor WRITE, or VADDR with a protection: :1569-1570
    assert err(dma_map(0, 0x1000, buf, flags=0)) == (errno.EINVAL, f"{T1}:1570")
    assert err(dma_map(0, 0x1000, buf, flags=RW | uv.VFIO_DMA_MAP_FLAG_VADDR)) == (errno.EINVAL, f"{T1}:1570")
    # size 0 or unaligned (:1578-1580)
    assert err(dma_map(0, 0, buf)) == (errno.EINVAL, f"{T1}:1579")
    assert err(dma_map(0x800, 0x1000, buf)) == (errno.EINVAL, f"{T1}:1579")
    # iova + size wraps: EINVAL in 6.12 (:1584-1585; EOVERFLOW only upstream)
    assert err(dma_map((1 << 64) - 0x1000, 0x2000, buf)) == (errno.EINVAL, f"{T1}:1585")
    # inside the reserved interrupt window, or above the aperture (:1615-1616)
    assert err(dma_map(0xFEE0_0000, 0x1000, buf)) == (errno.EINVAL, f"{T1}:1616")
    assert err(dma_map(1 << 39, 0x1000, buf)) == (errno.EINVAL, f"{T1}:1616")
    # the user pages are pinned: an unmapped address faults (:563)
    assert err(dma_map(0, 0x3000, buf)) == (errno.EFAULT, f"{T1}:563")
    # VADDR update of nothing: ENOENT (:1591-1592)
    assert err(dma_map(0, 0x1000, buf, flags=uv.VFIO_DMA_MAP_FLAG_VADDR)) == (errno.ENOENT, f"{T1}:1592")


def test_unmap_all_and_errors() -> None:
    r = Rig()
    c, _ = attached(r)
    buf = r.b.mmap(0x2000).ret
    assert r.ioctl(c, uv.VFIO_IOMMU_MAP_DMA, dma_map(0x10000, 0x1000, buf)).ok
    assert r.ioctl(c, uv.VFIO_IOMMU_MAP_DMA, dma_map(0x20000, 0x2000, buf)).ok
    # :2850-2851 argsz and flags
    assert r.ioctl(c, uv.VFIO_IOMMU_UNMAP_DMA, dma_unmap(0, 0, argsz=23)).errno == errno.EINVAL
    assert r.ioctl(c, uv.VFIO_IOMMU_UNMAP_DMA, dma_unmap(0, 0, flags=1 << 3)).errno == errno.EINVAL
    # ALL with a range: EINVAL (:1299-1300)
    res = r.ioctl(c, uv.VFIO_IOMMU_UNMAP_DMA, dma_unmap(0x10000, 0, flags=uv.VFIO_DMA_UNMAP_FLAG_ALL))
    assert (res.errno, res.where) == (errno.EINVAL, f"{T1}:1300")
    # dirty bitmap with ALL: EINVAL (:2853-2856)
    flags = uv.VFIO_DMA_UNMAP_FLAG_ALL | uv.VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP
    assert r.ioctl(c, uv.VFIO_IOMMU_UNMAP_DMA, dma_unmap(0, 0, flags=flags)).errno == errno.EINVAL
    # size 0 or wrapping: EINVAL (:1302-1304)
    assert r.ioctl(c, uv.VFIO_IOMMU_UNMAP_DMA, dma_unmap(0x10000, 0)).errno == errno.EINVAL
    res = r.ioctl(c, uv.VFIO_IOMMU_UNMAP_DMA, dma_unmap((1 << 64) - 0x1000, 0x2000))
    assert (res.errno, res.where) == (errno.EINVAL, f"{T1}:1304")
    res = r.ioctl(c, uv.VFIO_IOMMU_UNMAP_DMA, dma_unmap(0, 0, flags=uv.VFIO_DMA_UNMAP_FLAG_ALL))
    assert res.ok and res.s.size == 0x3000


def test_type1_v1_unmap_semantics() -> None:
    r = Rig()
    c, _ = attached(r, uv.VFIO_TYPE1_IOMMU)
    buf = r.b.mmap(0x2000).ret
    assert r.ioctl(c, uv.VFIO_IOMMU_MAP_DMA, dma_map(0x10000, 0x2000, buf)).ok
    # v1: a request starting inside a mapping succeeds with size 0 (:1364-1365)
    res = r.ioctl(c, uv.VFIO_IOMMU_UNMAP_DMA, dma_unmap(0x11000, 0x1000))
    assert res.ok and res.s.size == 0
    # one covering the first iova takes the whole mapping
    res = r.ioctl(c, uv.VFIO_IOMMU_UNMAP_DMA, dma_unmap(0x10000, 0x1000))
    assert res.ok and res.s.size == 0x2000


def test_vaddr_invalidate_and_update() -> None:
    r = Rig()
    c, _ = attached(r)
    buf = r.b.mmap(0x1000).ret
    assert r.ioctl(c, uv.VFIO_IOMMU_MAP_DMA, dma_map(0x10000, 0x1000, buf)).ok
    res = r.ioctl(c, uv.VFIO_IOMMU_UNMAP_DMA, dma_unmap(0x10000, 0x1000, flags=uv.VFIO_DMA_UNMAP_FLAG_VADDR))
    assert res.ok and res.s.size == 0x1000
    # invalidating an invalid vaddr again: EINVAL (:1367-1379)
    res = r.ioctl(c, uv.VFIO_IOMMU_UNMAP_DMA, dma_unmap(0x10000, 0x1000, flags=uv.VFIO_DMA_UNMAP_FLAG_VADDR))
    assert (res.errno, res.where) == (errno.EINVAL, f"{T1}:1377")
    # the size must match the mapping (:1593-1595); then the update works
    vaddr = uv.VFIO_DMA_MAP_FLAG_VADDR
    assert r.ioctl(c, uv.VFIO_IOMMU_MAP_DMA, dma_map(0x10000, 0x2000, buf, flags=vaddr)).errno == errno.EINVAL
    assert r.ioctl(c, uv.VFIO_IOMMU_MAP_DMA, dma_map(0x10000, 0x1000, buf, flags=vaddr)).ok


def test_dirty_pages() -> None:
    r = Rig()
    c1, _ = attached(r, uv.VFIO_TYPE1_IOMMU)
    hdr = uv.vfio_iommu_type1_dirty_bitmap(argsz=8, flags=uv.VFIO_IOMMU_DIRTY_PAGES_FLAG_START)
    # type1 v1: EACCES (:2897-2898)
    assert r.ioctl(c1, uv.VFIO_IOMMU_DIRTY_PAGES, hdr).errno == errno.EACCES

    r = Rig()
    c, _ = attached(r)
    buf = r.b.mmap(0x4000).ret
    assert r.ioctl(c, uv.VFIO_IOMMU_MAP_DMA, dma_map(0x10000, 0x4000, buf)).ok
    # two flags at once: EINVAL (:2909-2910)
    both = uv.vfio_iommu_type1_dirty_bitmap(argsz=8, flags=3)
    assert r.ioctl(c, uv.VFIO_IOMMU_DIRTY_PAGES, both).errno == errno.EINVAL
    assert r.ioctl(c, uv.VFIO_IOMMU_DIRTY_PAGES, hdr).ok
    bitmap = r.b.mmap(8).ret
    get = uv.vfio_iommu_type1_dirty_bitmap_get(iova=0x10000, size=0x4000)
    get.bitmap.pgsize, get.bitmap.size, get.bitmap.data = 4096, 8, bitmap
    raw = bytes(uv.vfio_iommu_type1_dirty_bitmap(argsz=8 + ctypes.sizeof(get),
                                                  flags=uv.VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP)) + bytes(get)
    res, _ = r.ioctl_raw(c, uv.VFIO_IOMMU_DIRTY_PAGES, raw)
    assert res.ok, res
    # a group that cannot report dirty pages makes every pinned page dirty (:1164-1165)
    assert r.b.read_mem(bitmap, 8).data == (0xF).to_bytes(8, "little")
    # a range bisecting the mapping: EINVAL (:1200-1202)
    get.iova, get.size = 0x11000, 0x1000
    raw = raw[:8] + bytes(get)
    res, _ = r.ioctl_raw(c, uv.VFIO_IOMMU_DIRTY_PAGES, raw)
    assert (res.errno, res.where) == (errno.EINVAL, f"{T1}:1202")


def _get_bitmap(r: Rig, c: int, iova: int, size: int, bitmap: int) -> None:
    get = uv.vfio_iommu_type1_dirty_bitmap_get(iova=iova, size=size)
    get.bitmap.pgsize, get.bitmap.size, get.bitmap.data = 4096, 8, bitmap
    raw = bytes(uv.vfio_iommu_type1_dirty_bitmap(argsz=8 + ctypes.sizeof(get),
                                                  flags=uv.VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP)) + bytes(get)
    res, _ = r.ioctl_raw(c, uv.VFIO_IOMMU_DIRTY_PAGES, raw)
    assert res.ok, res


def test_dirty_bits_shifted_into_a_word_keep_the_whole_user_word_and_stay_behind() -> None:
    """update_user_bitmap() (:1166-1179): a mapping whose bits start inside a u64 is shifted in
    dma->bitmap itself and OR-ed with the whole user u64 (bitmap_or() over BITS_TO_LONGS(shift)
    words, lib/bitmap.c:245-253); GET_BITMAP then clears only its first nbits (:1226), so the
    bits shifted past them come back in the next report (6.12.118: db, not 1b)."""
    r = Rig()
    c, _ = attached(r)
    buf = r.b.mmap(0x4000).ret
    assert r.ioctl(c, uv.VFIO_IOMMU_MAP_DMA, dma_map(0x100000, 0x2000, buf)).ok
    assert r.ioctl(c, uv.VFIO_IOMMU_MAP_DMA, dma_map(0x103000, 0x2000, buf + 0x2000)).ok
    start = uv.vfio_iommu_type1_dirty_bitmap(argsz=8, flags=uv.VFIO_IOMMU_DIRTY_PAGES_FLAG_START)
    assert r.ioctl(c, uv.VFIO_IOMMU_DIRTY_PAGES, start).ok
    bitmap = r.b.mmap(0x1000).ret
    _get_bitmap(r, c, 0x100000, 0x5000, bitmap)
    assert r.b.read_mem(bitmap, 8).data == (0x1B).to_bytes(8, "little")
    _get_bitmap(r, c, 0x100000, 0x5000, bitmap)
    assert r.b.read_mem(bitmap, 8).data == (0xDB).to_bytes(8, "little")
    # the first mapping two pages into the range: shift 2, the user's 0xa5 bytes all kept
    assert r.b.write_mem(bitmap, b"\xa5" * 8).ok
    _get_bitmap(r, c, 0xFE000, 0x4000, bitmap)
    assert r.b.read_mem(bitmap, 8).data == bytes([0xAD]) + b"\xa5" * 7


def test_last_group_out_deprivileges_container() -> None:
    r = Rig()
    c, gfd = attached(r)
    buf = r.b.mmap(0x1000).ret
    assert r.ioctl(c, uv.VFIO_IOMMU_MAP_DMA, dma_map(0x10000, 0x1000, buf)).ok
    r.close(gfd)
    # container.c:490-496: no backend again
    assert r.ioctl(c, uv.VFIO_IOMMU_GET_INFO, uv.vfio_iommu_type1_info(argsz=24)).errno == errno.EINVAL
    gfd = r.fd("/dev/vfio/1")
    assert r.ioctl(gfd, uv.VFIO_GROUP_SET_CONTAINER, ctypes.c_int32(c)).ok
    assert r.ioctl(c, uv.VFIO_SET_IOMMU, uv.VFIO_TYPE1v2_IOMMU).ok
    # the mappings went with the backend
    res = r.ioctl(c, uv.VFIO_IOMMU_UNMAP_DMA, dma_unmap(0, 0, flags=uv.VFIO_DMA_UNMAP_FLAG_ALL))
    assert res.ok and res.s.size == 0


def test_two_groups_share_a_container() -> None:
    r = Rig()
    c, _ = attached(r)
    g2 = r.fd("/dev/vfio/2")
    # attached at once to the backend that is already set (container.c:442-453)
    assert r.ioctl(g2, uv.VFIO_GROUP_SET_CONTAINER, ctypes.c_int32(c)).ok
    res = r.ioctl(g2, uv.VFIO_GROUP_GET_DEVICE_FD, b"0000:00:03.0\0")
    assert res.ok
    assert r.ioctl(g2, uv.VFIO_GROUP_GET_DEVICE_FD, E1000.encode() + b"\0").errno == errno.ENODEV


def test_no_interrupt_remapping_eperm() -> None:
    from harness.model.topologies import DEFAULT_CONFIG

    r = Rig(config=DEFAULT_CONFIG - {"IRQ_REMAP"})
    c, _ = attached(r, None)
    # iommu_group_has_isolated_msi() false, allow_unsafe_interrupts N (:2255-2261)
    res = r.ioctl(c, uv.VFIO_SET_IOMMU, uv.VFIO_TYPE1v2_IOMMU)
    assert (res.errno, res.where) == (errno.EPERM, f"{T1}:2259")


def test_no_legacy_container_node() -> None:
    # /dev/vfio/vfio is VFIO's only with the legacy container (container.c:408-414)
    assert not Rig(container="").b.path_exists("/dev/vfio/vfio")
    assert Rig(container="iommufd").open("/dev/vfio/vfio").ok  # iommufd's then
