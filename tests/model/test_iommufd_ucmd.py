"""The iommufd ioctl entry: drivers/iommu/iommufd/main.c:413-446, in order:
compat hand-off, get_user(size) (EFAULT), cmd compare (ENOTTY), size < min
(EINVAL), copy_struct_from_user (E2BIG / EFAULT), handler; output through
iommufd_ucmd_respond() copies min(size, sizeof) (iommufd_private.h:116-123)."""

from __future__ import annotations

import ctypes
import errno
import struct

import pytest
from test_iommufd_util import PAGE_SIZE, Rig

from harness.uapi import iommufd as u
from harness.uapi.abi import _IO, _IOC, IOCTLS

IOMMUFD_IOCTLS = [name for name, op in IOCTLS.items() if op.size_field == "size" and name.startswith("IOMMU_")
                  and name != "IOMMU_TEST_CMD"]


def test_every_iommufd_ioctl_is_served() -> None:
    assert len(IOMMUFD_IOCTLS) == 15  # main.c:378-407, without IOMMU_TEST_CMD


def test_null_pointer_faults_before_anything_else() -> None:
    # main.c:430-432: get_user() is the first thing after the nr range check
    r = Rig()
    res = r.raw_ioctl(u.IOMMU_DESTROY, 0)
    assert res.errno == errno.EFAULT and res.where.endswith("main.c:430")


def test_nr_below_base_goes_to_vfio_compat_and_never_faults() -> None:
    # main.c:424-426 -> vfio_compat.c:537-538 -ENOIOCTLCMD -> ENOTTY (fs/ioctl.c)
    r = Rig()
    for nr in (0x00, 0x63, 0x7F):
        res = r.raw_ioctl(_IO(u.IOMMUFD_TYPE, nr), 0)
        assert res.errno == errno.ENOTTY


def test_gap_in_table_reads_size_first() -> None:
    # With CONFIG_IOMMUFD_TEST the table runs to 0xa0 (main.c:408-410), so
    # 0x8f..0x9f are in range: get_user() first, then op->ioctl_num (0) != cmd.
    r = Rig()
    buf = r.buffer(struct.pack("<I", 8) + bytes(60))
    for nr in (0x8F, 0x95, 0x9F):
        assert r.raw_ioctl(_IO(u.IOMMUFD_TYPE, nr), 0).errno == errno.EFAULT
        assert r.raw_ioctl(_IO(u.IOMMUFD_TYPE, nr), buf).errno == errno.ENOTTY
    # beyond the table: compat, ENOTTY whatever the pointer
    assert r.raw_ioctl(_IO(u.IOMMUFD_TYPE, 0xA1), 0).errno == errno.ENOTTY


def test_gap_without_iommufd_test_is_compat() -> None:
    from harness.model.topologies import DEFAULT_CONFIG

    r = Rig(config=DEFAULT_CONFIG - {"IOMMUFD_TEST"})
    # table is 15 long: 0x8f is past it, straight to compat (no get_user)
    assert r.raw_ioctl(_IO(u.IOMMUFD_TYPE, 0x8F), 0).errno == errno.ENOTTY
    assert r.raw_ioctl(_IO(u.IOMMUFD_TYPE, 0xA0), 0).errno == errno.ENOTTY


def test_full_cmd_must_match() -> None:
    # main.c:435-436: the table holds the exact _IO() number
    r = Rig()
    buf = r.buffer(bytes(u.iommu_destroy(size=8, id=0)))
    wrong = _IOC(3, u.IOMMUFD_TYPE, 0x80, 8)  # _IOWR(';', 0x80, 8 bytes)
    assert r.raw_ioctl(wrong, buf).errno == errno.ENOTTY
    assert r.raw_ioctl(wrong, 0).errno == errno.EFAULT  # but size is read first


@pytest.mark.parametrize("name", IOMMUFD_IOCTLS)
def test_size_rules_like_the_selftest(name: str) -> None:
    """tools/testing/selftests/iommu/iommufd.c:88-132 (TEST_LENGTH)."""
    op = IOCTLS[name]
    assert op.struct is not None and op.min_size is not None
    r = Rig()
    sizeof = op.sizeof

    def run(size: int, extra: int) -> int:
        raw = bytearray(sizeof + 1)
        raw[0:4] = struct.pack("<I", size)
        raw[sizeof] = extra
        return r.raw_ioctl(op.number, r.buffer(bytes(raw))).errno

    assert run(op.min_size - 1, 0xFF) == errno.EINVAL  # main.c:437-438
    assert run(sizeof + 1, 0xFF) == errno.E2BIG  # include/linux/uaccess.h:400-403
    assert run(sizeof + 1, 0) == run(sizeof, 0xFF)


def test_min_sizes_are_the_kernel_ones() -> None:
    # offsetofend(<last>) as given to IOCTL_OP (main.c:379-407)
    assert IOCTLS["IOMMU_HWPT_ALLOC"].min_size == 24
    assert IOCTLS["IOMMU_GET_HW_INFO"].min_size == 32
    r = Rig()
    s = u.iommu_hwpt_alloc(size=23)
    assert r.call(s, u.IOMMU_HWPT_ALLOC).errno == errno.EINVAL
    s = u.iommu_hwpt_alloc(size=24, dev_id=99)
    assert r.call(s, u.IOMMU_HWPT_ALLOC).errno == errno.ENOENT  # hw_pagetable.c:287-289


def test_e2big_wins_over_handler_checks() -> None:
    # copy_struct_from_user() runs before the handler's EOPNOTSUPP (ioas.c:43-44)
    r = Rig()
    s = u.iommu_ioas_alloc(size=ctypes.sizeof(u.iommu_ioas_alloc) + 8, flags=1)
    assert r.call(s, u.IOMMU_IOAS_ALLOC, extra=b"\0" * 7 + b"\1").errno == errno.E2BIG
    assert r.call(s, u.IOMMU_IOAS_ALLOC, extra=bytes(8)).errno == errno.EOPNOTSUPP


def test_tail_scan_stops_at_first_nonzero_byte() -> None:
    # lib/usercopy.c:45-82: a non-zero byte before an unmapped page is E2BIG,
    # an unmapped page before any non-zero byte is EFAULT.
    r = Rig()
    addr = r.mmap(PAGE_SIZE)  # followed by an unmapped guard page
    s = u.iommu_destroy(size=2 * PAGE_SIZE, id=0)
    r.k.mm.write(addr, bytes(s) + b"\1")
    assert r.raw_ioctl(u.IOMMU_DESTROY, addr).errno == errno.E2BIG
    r.k.mm.write(addr + 8, b"\0")
    assert r.raw_ioctl(u.IOMMU_DESTROY, addr).errno == errno.EFAULT


def test_unmapped_struct_after_size_faults_in_the_copy() -> None:
    # size is readable but the rest is not: copy_from_user() EFAULT (uaccess.h:405-406)
    r = Rig()
    addr = r.mmap(PAGE_SIZE)
    at = addr + PAGE_SIZE - 4
    r.k.mm.write(at, struct.pack("<I", ctypes.sizeof(u.iommu_destroy)))
    assert r.raw_ioctl(u.IOMMU_DESTROY, at).errno == errno.EFAULT


def test_response_is_truncated_to_user_size() -> None:
    # iommufd_private.h:119-120: min(user_size, sizeof); nothing lands past size
    r = Rig()
    r.ioas()
    raw = bytes(u.iommu_ioas_iova_ranges(size=16, ioas_id=1, num_iovas=0)) + b"\xaa" * 8
    addr = r.buffer(raw)
    res = r.raw_ioctl(u.IOMMU_IOAS_IOVA_RANGES, addr)
    assert res.errno == errno.EINVAL  # 16 < min 32
    full = u.iommu_ioas_iova_ranges(size=32, ioas_id=1, num_iovas=0)
    back = r.call(full, u.IOMMU_IOAS_IOVA_RANGES, extra=b"\xaa" * 8)
    assert back.errno == errno.EMSGSIZE and back.s.num_iovas == 1  # ioas.c:101-105
    # an IOAS_ALLOC of exactly min size gets its id, and the byte after is untouched
    addr = r.buffer(bytes(u.iommu_ioas_alloc(size=12)) + b"\xbb")
    assert r.raw_ioctl(u.IOMMU_IOAS_ALLOC, addr).ok
    assert r.k.mm.read(addr, 13)[8:] == struct.pack("<I", 2) + b"\xbb"


def test_destroy_unknown_id_is_enoent() -> None:
    r = Rig()
    assert r.destroy(0).where.endswith("main.c:208")
    assert r.destroy(12345).errno == errno.ENOENT


def test_ids_are_the_lowest_free_from_one() -> None:
    # xa_alloc() with XA_FLAGS_ALLOC1 (main.c:55, 272)
    r = Rig()
    assert [r.ioas() for _ in range(3)] == [1, 2, 3]
    assert r.destroy(2).ok
    assert r.ioas() == 2
    assert r.ioas() == 4
