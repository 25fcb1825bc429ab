"""Mock domains and HWPTs through IOMMU_TEST_CMD (drivers/iommu/iommufd/
selftest.c, hw_pagetable.c, device.c), checked against the 6.12 selftests'
expectations (tools/testing/selftests/iommu/iommufd.c)."""

from __future__ import annotations

import errno
import struct

import pytest
from test_iommufd_util import PAGE_SIZE, Rig

from harness.model.errors import Errno
from harness.uapi import iommufd as u
from harness.uapi import iommufd_test as st

U64_MAX = (1 << 64) - 1
START, LAST = st.MOCK_APERTURE_START, st.MOCK_APERTURE_LAST


def ranges(r: Rig, ioas: int) -> tuple[list[tuple[int, int]], int]:
    out = r.mmap(PAGE_SIZE)
    res = r.io("IOMMU_IOAS_IOVA_RANGES", ioas_id=ioas, num_iovas=8, allowed_iovas=out)
    assert res.ok
    vals = struct.unpack("<16Q", r.k.mm.read(out, 128))
    return [(vals[2 * i], vals[2 * i + 1]) for i in range(res.s.num_iovas)], res.s.out_iova_alignment


def test_mock_domain_ids_and_narrowed_ranges() -> None:
    # selftest.c:754-791: selftest object, then the device, then the automatic HWPT
    r = Rig()
    ioas = r.ioas()
    assert r.mock_domain(ioas) == (2, 4, 3)
    # iopt_table_add_domain() reserves outside the aperture (io_pagetable.c:1079-1091)
    # and takes the domain's smallest page size, MOCK_IO_PAGE_SIZE (1066-1068)
    assert ranges(r, ioas) == ([(START, LAST)], PAGE_SIZE // 2)
    # the same with two mock devices: the second reuses the automatic HWPT
    # (device.c:698-721: any auto domain that takes the device)
    assert r.mock_domain(ioas) == (5, 4, 6)


def test_mock_domain_with_areas_outside_the_aperture() -> None:
    r = Rig()
    ioas = r.ioas()
    buf = r.mmap(PAGE_SIZE)
    assert r.map(ioas, buf, PAGE_SIZE, iova=PAGE_SIZE).ok
    res = r.test(st.IOMMU_TEST_OP_MOCK_DOMAIN, ioas)
    assert res.errno == errno.EADDRINUSE and res.where.endswith("io_pagetable.c:812")
    # everything was unwound: ids are reused, ownership released
    assert r.unmap(ioas, 0, U64_MAX).ok
    assert r.mock_domain(ioas) == (2, 4, 3)


def test_mock_domain_alignment_rules() -> None:
    # selftest ioas_iova_alloc (iommufd.c:1295-1308): lengths not a multiple
    # of MOCK_PAGE_SIZE fail EINVAL (io_pagetable.c:270-271)
    r = Rig()
    ioas = r.ioas()
    r.mock_domain(ioas)
    buf = r.mmap(2 * PAGE_SIZE)
    assert r.map(ioas, buf, 2048).ok
    assert r.map(ioas, buf, 2049).where.endswith("io_pagetable.c:271")
    assert r.map(ioas, buf, PAGE_SIZE, iova=START + 1).where.endswith("io_pagetable.c:189")


def test_mock_domain_fails_with_the_intel_iommu_present() -> None:
    # docs/measured.md: MOCK_DOMAIN with the emulated Intel IOMMU present fails EINVAL
    r = Rig(mock_domains=False)
    ioas = r.ioas()
    res = r.test(st.IOMMU_TEST_OP_MOCK_DOMAIN, ioas)
    assert res.errno == errno.EINVAL
    assert r.ioas() == 2  # the selftest object's id was given back


def test_mock_domain_flags() -> None:
    r = Rig()
    ioas = r.ioas()
    res = r.test(st.IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS, ioas, mock_domain_flags={"dev_flags": 4})
    assert res.where.endswith("selftest.c:700")
    assert r.test(st.IOMMU_TEST_OP_MOCK_DOMAIN, 99).errno == errno.ENOENT
    assert r.test(99).where.endswith("selftest.c:1539")


def test_replace_frees_the_automatic_hwpt() -> None:
    # selftest mock_domain.replace (iommufd.c:1703-1731)
    r = Rig()
    ioas = r.ioas()
    stdev, hwpt, _ = r.mock_domain(ioas)
    other = r.ioas()
    res = r.test(st.IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE, stdev, mock_domain_replace={"pt_id": other})
    assert res.ok
    new_hwpt = res.s.mock_domain_replace.pt_id
    # the old automatic HWPT was put and destroyed (iommufd_private.h:221-226)
    res = r.test(st.IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE, stdev, mock_domain_replace={"pt_id": hwpt})
    assert res.errno == errno.ENOENT
    res = r.test(st.IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE, stdev, mock_domain_replace={"pt_id": other})
    assert res.ok and res.s.mock_domain_replace.pt_id == new_hwpt
    assert r.test(st.IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE, stdev, mock_domain_replace={"pt_id": ioas}).ok
    assert r.destroy(other).ok


def test_hwpt_alloc_and_rotation() -> None:
    # selftest mock_domain.alloc_hwpt (iommufd.c:1733-1761)
    r = Rig()
    ioas = r.ioas()
    stdev, _, idev = r.mock_domain(ioas)
    res = r.io("IOMMU_HWPT_ALLOC", dev_id=idev, pt_id=ioas, flags=~u.IOMMU_HWPT_ALLOC_NEST_PARENT & 0xFFFFFFFF)
    assert res.where.endswith("hw_pagetable.c:122")
    h0 = r.io("IOMMU_HWPT_ALLOC", dev_id=idev, pt_id=ioas).s.out_hwpt_id
    h1 = r.io("IOMMU_HWPT_ALLOC", dev_id=idev, pt_id=ioas, flags=u.IOMMU_HWPT_ALLOC_NEST_PARENT).s.out_hwpt_id
    for h in (h0, h1):
        assert r.test(st.IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE, stdev, mock_domain_replace={"pt_id": h}).ok
        assert r.destroy(h).errno == errno.EBUSY
    assert r.test(st.IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE, stdev, mock_domain_replace={"pt_id": ioas}).ok
    assert r.destroy(h1).ok
    stdev2, hwpt2, _ = r.mock_domain(h0)
    assert hwpt2 == h0
    assert r.destroy(stdev2).ok
    assert r.destroy(h0).ok


def test_hwpt_alloc_argument_errors() -> None:
    # selftest alloc_hwpt_nested negative cases (iommufd.c:295-343)
    r = Rig()
    ioas = r.ioas()
    _, _, idev = r.mock_domain(ioas)
    assert r.io("IOMMU_HWPT_ALLOC", dev_id=ioas, pt_id=idev).where.endswith("main.c:140")
    assert r.io("IOMMU_HWPT_ALLOC", dev_id=idev, pt_id=idev).where.endswith("hw_pagetable.c:324")
    assert r.io("IOMMU_HWPT_ALLOC", dev_id=idev, pt_id=99).where.endswith("hw_pagetable.c:293")
    flags = u.IOMMU_HWPT_ALLOC_NEST_PARENT | u.IOMMU_HWPT_FAULT_ID_VALID
    assert r.io("IOMMU_HWPT_ALLOC", dev_id=idev, pt_id=ioas, flags=flags).errno == errno.EOPNOTSUPP
    assert r.io("IOMMU_HWPT_ALLOC", dev_id=idev, pt_id=ioas, __reserved=1).where.endswith("hw_pagetable.c:282")
    assert r.io("IOMMU_HWPT_ALLOC", dev_id=idev, pt_id=ioas, data_len=4).where.endswith("hw_pagetable.c:285")
    assert r.io("IOMMU_HWPT_ALLOC", dev_id=idev, pt_id=ioas, data_type=1).where.endswith("hw_pagetable.c:285")
    # user data on a paging domain: the mock driver refuses it (selftest.c:340-341)
    data = r.buffer(struct.pack("<I", 0))
    res = r.io("IOMMU_HWPT_ALLOC", dev_id=idev, pt_id=ioas, data_type=st.IOMMU_HWPT_DATA_SELFTEST, data_len=4,
               data_uptr=data)
    assert res.where.endswith("selftest.c:341")
    # __reserved2 is never checked (uapi-notes 4.1)
    assert r.io("IOMMU_HWPT_ALLOC", dev_id=idev, pt_id=ioas, __reserved2=7).ok


def test_nested_hwpt_and_invalidate() -> None:
    r = Rig()
    ioas = r.ioas()
    stdev, _, idev = r.mock_domain(ioas)
    parent = r.io("IOMMU_HWPT_ALLOC", dev_id=idev, pt_id=ioas, flags=u.IOMMU_HWPT_ALLOC_NEST_PARENT).s.out_hwpt_id
    plain = r.io("IOMMU_HWPT_ALLOC", dev_id=idev, pt_id=ioas).s.out_hwpt_id
    data = r.buffer(struct.pack("<I", st.IOMMU_TEST_IOTLB_DEFAULT))

    def nested(pt: int, dtype: int = st.IOMMU_HWPT_DATA_SELFTEST, dlen: int = 4, uptr: int = data,
               flags: int = 0) -> object:
        return r.io("IOMMU_HWPT_ALLOC", dev_id=idev, pt_id=pt, data_type=dtype, data_len=dlen, data_uptr=uptr,
                    flags=flags)

    assert nested(parent, dtype=0).where.endswith("hw_pagetable.c:285")  # type: ignore[attr-defined]
    assert nested(parent, dtype=st.IOMMU_HWPT_DATA_SELFTEST + 1).where.endswith("selftest.c:353")  # type: ignore[attr-defined]
    assert nested(parent, dlen=3).where.endswith("include/linux/iommu.h:431")  # type: ignore[attr-defined]
    assert nested(parent, dlen=5).where.endswith("include/linux/iommu.h:431")  # type: ignore[attr-defined]
    assert nested(parent, uptr=0).errno == errno.EFAULT  # type: ignore[attr-defined]
    flags = u.IOMMU_HWPT_ALLOC_NEST_PARENT
    assert nested(parent, flags=flags).where.endswith("hw_pagetable.c:231")  # type: ignore[attr-defined]
    assert nested(plain).where.endswith("hw_pagetable.c:234")  # type: ignore[attr-defined]
    n0 = nested(parent).s.out_hwpt_id  # type: ignore[attr-defined]
    assert nested(n0).where.endswith("hw_pagetable.c:324")  # type: ignore[attr-defined]
    assert r.destroy(parent).errno == errno.EBUSY  # the nested HWPT holds it (hw_pagetable.c:242)
    for i in range(4):
        check = {"id": i, "iotlb": st.IOMMU_TEST_IOTLB_DEFAULT}
        assert r.test(st.IOMMU_TEST_OP_MD_CHECK_IOTLB, n0, check_iotlb=check).ok
    assert r.test(st.IOMMU_TEST_OP_MD_CHECK_IOTLB, n0, check_iotlb={"id": 4}).where.endswith("selftest.c:976")

    def inv(hwpt: int, reqs: list[tuple[int, int]], entry_len: int = 8, dtype: int = 0xDEADBEEF,
            uptr: int | None = None, num: int | None = None) -> object:
        raw = b"".join(struct.pack("<II", f, i) for f, i in reqs) or bytes(8)
        return r.io("IOMMU_HWPT_INVALIDATE", hwpt_id=hwpt, data_uptr=r.buffer(raw) if uptr is None else uptr,
                    data_type=dtype, entry_len=entry_len, entry_num=len(reqs) if num is None else num)

    res = inv(parent, [(0, 0)])
    assert res.errno == errno.ENOENT and res.s.entry_num == 0  # type: ignore[attr-defined]
    res = inv(n0, [])
    assert res.ok and res.s.entry_num == 0  # type: ignore[attr-defined]
    assert inv(n0, [(0, 0)], dtype=0xDADBEEF).where.endswith("selftest.c:595")  # type: ignore[attr-defined]
    assert inv(n0, [(0, 0)], entry_len=9).where.endswith("include/linux/iommu.h:431")  # type: ignore[attr-defined]
    assert inv(n0, [(0, 0)], entry_len=0).where.endswith("hw_pagetable.c:438")  # type: ignore[attr-defined]
    assert inv(n0, [(0, 0)], uptr=0).where.endswith("hw_pagetable.c:438")  # type: ignore[attr-defined]
    assert inv(n0, [(0, 0)], num=(1 << 19) + 1).where.endswith("hw_pagetable.c:438")  # type: ignore[attr-defined]
    # the first entry is done, the second fails: entry_num says 1 (hw_pagetable.c:450-457)
    res = inv(n0, [(0, 0), (0xFFFFFFFF, 1)])
    assert res.errno == errno.EOPNOTSUPP and res.s.entry_num == 1  # type: ignore[attr-defined]
    res = inv(n0, [(0, 1), (0, 4)])
    assert res.errno == errno.EINVAL and res.s.entry_num == 1  # type: ignore[attr-defined]
    got = [r.test(st.IOMMU_TEST_OP_MD_CHECK_IOTLB, n0, check_iotlb={"id": i, "iotlb": 0}).ok for i in range(4)]
    assert got == [True, True, False, False]
    res = inv(n0, [(st.IOMMU_TEST_INVALIDATE_FLAG_ALL, 0)])
    assert res.ok and res.s.entry_num == 1  # type: ignore[attr-defined]
    assert all(r.test(st.IOMMU_TEST_OP_MD_CHECK_IOTLB, n0, check_iotlb={"id": i, "iotlb": 0}).ok for i in range(4))
    # a device on the nested HWPT keeps it busy
    assert r.test(st.IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE, stdev, mock_domain_replace={"pt_id": n0}).ok
    assert r.destroy(n0).errno == errno.EBUSY
    assert r.test(st.IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE, stdev, mock_domain_replace={"pt_id": ioas}).ok
    assert r.destroy(n0).ok and r.destroy(parent).ok


def test_check_map_and_refs() -> None:
    # MD_CHECK_MAP compares the domain's PFN with the user VA's (selftest.c:870-922);
    # MD_CHECK_REFS counts pins (925-957): one per iopt_pages holding the page
    r = Rig()
    ioas = r.ioas()
    _, hwpt, _ = r.mock_domain(ioas)
    buf = r.mmap(8 * PAGE_SIZE)
    other = r.mmap(8 * PAGE_SIZE)

    def check_map(iova: int, length: int, uptr: int) -> int:
        return r.test(st.IOMMU_TEST_OP_MD_CHECK_MAP, hwpt,
                      check_map={"iova": iova, "length": length, "uptr": uptr}).errno

    def refs(uptr: int, length: int, n: int) -> int:
        return r.test(st.IOMMU_TEST_OP_MD_CHECK_REFS, check_refs={"length": length, "uptr": uptr, "refs": n}).errno

    assert refs(buf, 8 * PAGE_SIZE, 0) == 0
    iova = r.map(ioas, buf + 2048, 3 * PAGE_SIZE).s.iova
    assert check_map(iova, 3 * PAGE_SIZE, buf + 2048) == 0
    assert check_map(iova, 2048, buf) == errno.EINVAL
    assert check_map(iova, 2048, other + 2048) == errno.EINVAL
    assert check_map(iova + 1, 2048, buf) == errno.EINVAL
    # pages 0..3 are pinned once, the rest not
    assert refs(buf, 4 * PAGE_SIZE, 1) == 0
    assert refs(buf + 4 * PAGE_SIZE, 4 * PAGE_SIZE, 0) == 0
    assert refs(buf, PAGE_SIZE, 2) == errno.EIO
    # a second IOAS_MAP of the same memory is a second iopt_pages: two pins
    iova2 = r.map(ioas, buf, PAGE_SIZE).s.iova
    assert refs(buf, PAGE_SIZE, 2) == 0
    assert r.unmap(ioas, iova2, PAGE_SIZE).ok and r.unmap(ioas, iova, 3 * PAGE_SIZE).ok
    assert refs(buf, 8 * PAGE_SIZE, 0) == 0
    assert refs(buf + 1, PAGE_SIZE, 0) == errno.EINVAL
    assert refs(0, PAGE_SIZE, 0) == errno.EFAULT


def test_get_hw_info_of_a_mock_device() -> None:
    # selftest get_hw_info (iommufd.c:602-658), device.c:1309-1414
    r = Rig()
    ioas = r.ioas()
    _, _, idev = r.mock_domain(ioas)
    out = r.buffer(b"\xee" * 16)
    res = r.io("IOMMU_GET_HW_INFO", dev_id=idev, data_len=16, data_uptr=out)
    assert res.ok and res.s.out_data_type == st.IOMMU_HW_INFO_TYPE_SELFTEST and res.s.data_len == 8
    assert res.s.out_capabilities == u.IOMMU_HW_CAP_DIRTY_TRACKING
    # the data, then the rest of the user's buffer zeroed (1361-1366)
    assert r.k.mm.read(out, 16) == struct.pack("<II", 0, 0xDEADBEEF) + bytes(8)
    out = r.buffer(b"\xee" * 8)
    res = r.io("IOMMU_GET_HW_INFO", dev_id=idev, data_len=4, data_uptr=out)
    assert res.s.data_len == 8 and r.k.mm.read(out, 8) == bytes(4) + b"\xee" * 4
    assert r.io("IOMMU_GET_HW_INFO", dev_id=idev).ok  # NULL buffer of length 0
    assert r.io("IOMMU_GET_HW_INFO", dev_id=idev, data_len=4).where.endswith("device.c:1353")
    assert r.io("IOMMU_GET_HW_INFO", dev_id=idev, flags=1).where.endswith("device.c:1322")
    assert r.io("IOMMU_GET_HW_INFO", dev_id=ioas).errno == errno.ENOENT
    _, _, nodirty = r.mock_domain(ioas, st.MOCK_FLAGS_DEVICE_NO_DIRTY)
    assert r.io("IOMMU_GET_HW_INFO", dev_id=nodirty).s.out_capabilities == 0


def test_dirty_tracking() -> None:
    # selftest iommufd_dirty_tracking (iommufd.c:1915-2048), hw_pagetable.c:362-408,
    # io_pagetable.c:518-617, selftest.c:195-277, 1358-1424
    r = Rig()
    ioas = r.ioas()
    _, _, idev = r.mock_domain(ioas)
    ioas2 = r.ioas()
    buf = r.mmap(16 * 2048)
    assert r.map(ioas2, buf, 16 * 2048, iova=START).ok
    plain = r.io("IOMMU_HWPT_ALLOC", dev_id=idev, pt_id=ioas2).s.out_hwpt_id
    assert r.io("IOMMU_HWPT_SET_DIRTY_TRACKING", hwpt_id=plain, flags=1).where.endswith("io_pagetable.c:601")
    hwpt = r.io("IOMMU_HWPT_ALLOC", dev_id=idev, pt_id=ioas2, flags=u.IOMMU_HWPT_ALLOC_DIRTY_TRACKING).s.out_hwpt_id
    assert r.io("IOMMU_HWPT_SET_DIRTY_TRACKING", hwpt_id=hwpt, flags=2).where.endswith("hw_pagetable.c:371")
    # __reserved is not checked by SET_DIRTY_TRACKING
    assert r.io("IOMMU_HWPT_SET_DIRTY_TRACKING", hwpt_id=hwpt, __reserved=5).ok

    bits = r.buffer(struct.pack("<H", 0b1010_0000_0000_0011))
    dirty = {"iova": START, "length": 16 * 2048, "page_size": 2048, "uptr": bits}
    assert r.test(st.IOMMU_TEST_OP_DIRTY, hwpt, dirty=dirty).where.endswith("selftest.c:1382")
    assert r.io("IOMMU_HWPT_SET_DIRTY_TRACKING", hwpt_id=hwpt, flags=1).ok
    res = r.test(st.IOMMU_TEST_OP_DIRTY, hwpt, dirty=dirty)
    assert res.ok and res.s.dirty.out_nr_dirty == 4

    out = r.buffer(bytes(8))

    def bitmap(flags: int = 0, **kw: int) -> object:
        args = {"hwpt_id": hwpt, "iova": START, "length": 16 * 2048, "page_size": 2048, "data": out,
                "flags": flags}
        args.update(kw)
        return r.io("IOMMU_HWPT_GET_DIRTY_BITMAP", **args)

    assert bitmap(flags=u.IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR).ok  # type: ignore[attr-defined]
    assert r.k.mm.read(out, 2) == struct.pack("<H", 0b1010_0000_0000_0011)
    r.k.mm.write(out, bytes(2))
    assert bitmap().ok  # type: ignore[attr-defined]
    assert r.k.mm.read(out, 2) == struct.pack("<H", 0b1010_0000_0000_0011)
    r.k.mm.write(out, bytes(2))
    assert bitmap().ok  # type: ignore[attr-defined]  # cleared by the previous read
    assert r.k.mm.read(out, 2) == bytes(2)
    # 4K bitmap granularity: two 2K pages per bit
    assert r.test(st.IOMMU_TEST_OP_DIRTY, hwpt, dirty=dirty).ok
    assert bitmap(page_size=4096).ok  # type: ignore[attr-defined]
    assert r.k.mm.read(out, 1) == bytes([0b1100_0001])
    # range checks (io_pagetable.c:518-545)
    assert bitmap(length=0).where.endswith("io_pagetable.c:525")  # type: ignore[attr-defined]
    assert bitmap(iova=U64_MAX).where.endswith("io_pagetable.c:528")  # type: ignore[attr-defined]
    assert bitmap(iova=START + 1).where.endswith("io_pagetable.c:535")  # type: ignore[attr-defined]
    assert bitmap(page_size=0).where.endswith("io_pagetable.c:538")  # type: ignore[attr-defined]
    assert bitmap(page_size=8192, length=6 * 2048).where.endswith("io_pagetable.c:542")  # type: ignore[attr-defined]
    assert bitmap(flags=2).where.endswith("hw_pagetable.c:396")  # type: ignore[attr-defined]
    # an unmapped bitmap is not an error (iova_bitmap_set() drops what it cannot pin); a hole is
    # in 6.12.118 (io_pagetable.c:476-477; 7.2 drops the walk's result, gate dirty-bitmap-walk-errors)
    assert bitmap(data=0).ok  # type: ignore[attr-defined]
    assert bitmap(iova=START + 32 * 2048).where.endswith("io_pagetable.c:477")  # type: ignore[attr-defined]
    assert r.destroy(hwpt).ok and r.destroy(plain).ok


def test_dirty_hwpt_and_a_no_dirty_device() -> None:
    # selftest enforce_dirty (iommufd.c:1915-1938)
    r = Rig()
    ioas = r.ioas()
    _, _, idev = r.mock_domain(ioas)
    hwpt = r.io("IOMMU_HWPT_ALLOC", dev_id=idev, pt_id=ioas, flags=u.IOMMU_HWPT_ALLOC_DIRTY_TRACKING).s.out_hwpt_id
    stdev = r.mock_domain(hwpt)[0]
    res = r.test(st.IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS, hwpt, mock_domain_flags={"dev_flags": 1})
    assert res.where.endswith("selftest.c:166")
    assert r.destroy(stdev).ok and r.destroy(hwpt).ok
    ioas2 = r.ioas()
    _, _, nodirty = r.mock_domain(ioas2, st.MOCK_FLAGS_DEVICE_NO_DIRTY)
    res = r.io("IOMMU_HWPT_ALLOC", dev_id=nodirty, pt_id=ioas2, flags=u.IOMMU_HWPT_ALLOC_DIRTY_TRACKING)
    assert res.where.endswith("hw_pagetable.c:125")


def test_iopf_through_a_fault_queue() -> None:
    # selftest alloc_hwpt_nested iopf part (iommufd.c:345-361, 533-548) and
    # _test_cmd_trigger_iopf (iommufd_utils.h:742-777); fault.c
    r = Rig()
    ioas = r.ioas()
    stdev, _, idev = r.mock_domain(ioas)
    parent = r.io("IOMMU_HWPT_ALLOC", dev_id=idev, pt_id=ioas, flags=u.IOMMU_HWPT_ALLOC_NEST_PARENT).s.out_hwpt_id
    fa = r.io("IOMMU_FAULT_QUEUE_ALLOC")
    assert fa.ok
    fault_id, fault_fd = fa.s.out_fault_id, fa.s.out_fault_fd
    assert r.io("IOMMU_FAULT_QUEUE_ALLOC", flags=1).where.endswith("fault.c:402")
    data = r.buffer(struct.pack("<I", st.IOMMU_TEST_IOTLB_DEFAULT))
    base = {"dev_id": idev, "pt_id": parent, "data_type": st.IOMMU_HWPT_DATA_SELFTEST, "data_len": 4,
            "data_uptr": data, "flags": u.IOMMU_HWPT_FAULT_ID_VALID}
    assert r.io("IOMMU_HWPT_ALLOC", **base, fault_id=0xFFFFFFFF).errno == errno.ENOENT
    iopf_hwpt = r.io("IOMMU_HWPT_ALLOC", **base, fault_id=fault_id).s.out_hwpt_id
    trigger = {"dev_id": idev, "pasid": 1, "grpid": 2, "perm": 3, "addr": 0xDEADBEAF}
    f = r.k.fget(fault_fd)
    # not attached yet: the fault has no handler and is dropped (io-pgfault.c:222-224)
    assert r.test(st.IOMMU_TEST_OP_TRIGGER_IOPF, trigger_iopf=trigger).ok
    assert f.read(r.k, 40) == b""
    assert r.test(st.IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE, stdev, mock_domain_replace={"pt_id": iopf_hwpt}).ok
    assert r.destroy(iopf_hwpt).errno == errno.EBUSY
    assert r.test(st.IOMMU_TEST_OP_TRIGGER_IOPF, trigger_iopf=trigger).ok
    rec = u.iommu_hwpt_pgfault.from_buffer_copy(f.read(r.k, 40))
    # fault.c:241-254: LAST_PAGE | PASID_VALID, the device id, cookie 1
    assert (rec.flags, rec.dev_id, rec.pasid, rec.grpid, rec.perm, rec.addr, rec.cookie) == (
        3, idev, 1, 2, 3, 0xDEADBEAF, 1)
    assert f.write(r.k, bytes(u.iommu_hwpt_page_response(cookie=rec.cookie, code=0))) == 8
    # a second response for the same cookie: EINVAL (fault.c:343-347)
    resp = bytes(u.iommu_hwpt_page_response(cookie=1, code=0))
    assert r.k.fget(fault_fd) is f
    with pytest.raises(Errno) as exc:
        f.write(r.k, resp)
    assert exc.value.code == errno.EINVAL
    assert r.test(st.IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE, stdev, mock_domain_replace={"pt_id": ioas}).ok
    assert r.destroy(iopf_hwpt).ok
    assert r.destroy(fault_id).errno == errno.EBUSY  # the fd holds it (fault.c:422)
    r.k.close(fault_fd)
    assert r.destroy(fault_id).ok
    # a non-mock device id: EINVAL; a bad id: ENOENT
    assert r.test(st.IOMMU_TEST_OP_TRIGGER_IOPF, trigger_iopf={"dev_id": 99}).errno == errno.ENOENT


def test_close_releases_everything() -> None:
    # iommufd_fops_release() (main.c:280-313) destroys mock devices, their
    # domains and the IOAS, and gives the pinned pages back
    r = Rig()
    ioas = r.ioas()
    stdev, _, _ = r.mock_domain(ioas)
    sobj = r.k.fget(r.fd).objects[stdev]  # type: ignore[attr-defined]
    group = sobj.mock_dev.iommu_group
    assert group.owner_cnt == 1
    buf = r.mmap(4 * PAGE_SIZE)
    assert r.map(ioas, buf, 4 * PAGE_SIZE).ok
    r.k.close(r.fd)
    assert group.owner_cnt == 0 and group.owner is None
    fd = r.k.open("/dev/iommu")
    res = r.test(st.IOMMU_TEST_OP_MD_CHECK_REFS, check_refs={"length": 4 * PAGE_SIZE, "uptr": buf, "refs": 0})
    assert fd == r.fd and res.ok


def test_allowed_ranges_outside_the_aperture_block_the_attach() -> None:
    # iopt_table_add_domain() reserves outside the aperture; iopt_reserve_iova()
    # refuses a range that meets an allowed one (io_pagetable.c:810-812)
    r = Rig()
    ioas = r.ioas()
    rng = r.buffer(bytes(u.iommu_iova_range(start=PAGE_SIZE, last=2 * PAGE_SIZE - 1)))
    assert r.io("IOMMU_IOAS_ALLOW_IOVAS", ioas_id=ioas, num_iovas=1, allowed_iovas=rng).ok
    res = r.test(st.IOMMU_TEST_OP_MOCK_DOMAIN, ioas)
    assert res.errno == errno.EADDRINUSE and res.where.endswith("io_pagetable.c:812")
    rng = r.buffer(bytes(u.iommu_iova_range(start=START, last=START + PAGE_SIZE - 1)))
    assert r.io("IOMMU_IOAS_ALLOW_IOVAS", ioas_id=ioas, num_iovas=1, allowed_iovas=rng).ok
    r.mock_domain(ioas)
    # the allowed range now limits automatic IOVAs to it
    buf = r.mmap(2 * PAGE_SIZE)
    assert r.map(ioas, buf, PAGE_SIZE).s.iova == START
    assert r.map(ioas, buf, PAGE_SIZE).errno == errno.ENOSPC
