"""pread/pwrite and mmap of an fd: the model's syscall layer (fs/read_write.c, mm/mmap.c) and
the steps' checks at load."""

from __future__ import annotations

import errno

import pytest

from harness.cases.case import CaseError
from harness.cases.steps import parse_steps
from harness.model.backend import ModelBackend


def test_pread_syscall_checks_come_before_the_file() -> None:
    b = ModelBackend()
    efd = b.eventfd(0).ret
    assert b.pread(efd, 8, 1 << 63).errno == errno.EINVAL       # a negative loff_t
    assert b.pread(efd, 8, 0).errno == errno.ESPIPE             # no FMODE_PREAD
    assert b.pwrite(efd, b"\0" * 8, 0).errno == errno.ESPIPE
    assert b.pread(99, 8, 0).errno == errno.EBADF
    assert b.mmap_fd(efd, 4096, 0).errno == errno.ENODEV        # no mmap hook
    assert b.mmap_fd(efd, 4096, 1).errno == errno.EINVAL        # not a page multiple


def test_memfd_pread_leaves_the_file_position() -> None:
    b = ModelBackend()
    fd = b.memfd(0x2000).ret
    assert b.pwrite(fd, b"abcd", 0x1000).ret == 4
    assert b.pread(fd, 4, 0x1000).data == b"abcd"
    assert b.pread(fd, 8, (1 << 63) - 4).errno == errno.EINVAL  # pos + count overflows
    assert b.read(fd, 4).data == b"\0" * 4                       # f_pos still 0


def test_device_fd_before_bind_refuses_pread() -> None:
    b = ModelBackend()
    fd = b.open("/dev/vfio/devices/vfio0").ret
    assert b.pread(fd, 4, 7 << 40).errno == errno.EINVAL
    assert b.mmap_fd(fd, 4096, 0).errno == errno.EINVAL


@pytest.mark.parametrize("step, message", [
    ({"pread": "f"}, "needs offset"),
    ({"pread": "f", "offset": 0, "length": 1 << 30}, "buffer sizes"),
    ({"mmap": 4096, "offset": 0}, "give fd"),
    ({"mmap": 4096, "fd": "f", "align": 4096}, "not with fd"),
    ({"pwrite": "nope", "offset": 0, "hex": "00"}, "not bound"),
])
def test_steps_are_checked_at_load(step: dict, message: str) -> None:
    with pytest.raises(CaseError, match=message):
        parse_steps([{"eventfd": 0, "as": "f"}, step], set())
