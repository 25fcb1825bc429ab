"""mprotect(2) and partial munmap(2) of a case's mappings, on the model and on this machine's real
kernel through the kernel backend (a real mprotect: no VFIO needed), the same sequence on both:
a PROT_NONE page faults on read, a PROT_READ one on write, as the kernel's uaccess does; the
kernel backend refuses what would fault the harness itself, and memory it did not map."""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import termios
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.backends.base import Backend
from harness.backends.kernel import PAGE, KernelBackend
from harness.model.backend import ModelBackend
from harness.model.errors import Errno
from harness.model.iommufd.private import copy_to_user_partial
from harness.model.kernel import File, ModelKernel
from harness.model.memory import UserMemory
from harness.uapi.mman import PROT_EXEC, PROT_NONE, PROT_READ, PROT_WRITE

RW = PROT_READ | PROT_WRITE


@pytest.fixture(params=["model", "kernel"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "model":
        b: Backend = ModelBackend()
    else:
        (tmp_path / "sys").mkdir()
        b = KernelBackend(root=str(tmp_path), state_file=tmp_path / "state.json")
    yield b
    b.reset()


def test_a_read_only_page_reads_but_does_not_write(backend: Backend) -> None:
    m = backend.mmap(2 * PAGE).ret
    assert backend.write_mem(m + PAGE - 3, b"abcdef").ok
    assert backend.mprotect(m, PAGE, PROT_READ).ok
    assert backend.read_mem(m + PAGE - 3, 6).data == b"abcdef"
    assert backend.write_mem(m + PAGE - 3, b"x").errno == errno.EFAULT
    assert backend.write_mem(m + PAGE - 1, b"xy").errno == errno.EFAULT   # straddles into it
    assert backend.write_mem(m + PAGE, b"XYZ").ok                           # the next page is untouched
    assert backend.read_mem(m + PAGE - 3, 6).data == b"abcXYZ"
    assert backend.mprotect(m, PAGE, RW).ok
    assert backend.write_mem(m, b"again").ok


def test_a_prot_none_page_neither_reads_nor_writes(backend: Backend) -> None:
    m = backend.mmap(3 * PAGE).ret
    assert backend.mprotect(m + PAGE, PAGE, PROT_NONE).ok
    assert backend.read_mem(m, PAGE).ok
    assert backend.read_mem(m + PAGE - 1, 2).errno == errno.EFAULT
    assert backend.write_mem(m + 2 * PAGE - 1, b"ab").errno == errno.EFAULT
    assert backend.read_mem(m + 2 * PAGE, PAGE).ok
    # Write only is readable on x86 (arch/x86/mm/pgprot.c), exec only too.
    for prot in (PROT_WRITE, PROT_EXEC):
        assert backend.mprotect(m + PAGE, PAGE, prot).ok
        assert backend.read_mem(m + PAGE, 8).ok


def test_mprotect_errors_are_the_kernels(backend: Backend) -> None:
    m = backend.mmap(2 * PAGE).ret
    assert backend.mprotect(m + 1, PAGE, PROT_READ).errno == errno.EINVAL
    assert backend.mprotect(m, PAGE, 0x10).errno == errno.EINVAL
    assert backend.mprotect(m, 0, PROT_NONE).ok                     # nothing to do
    assert backend.write_mem(m, b"x").ok
    assert backend.mprotect(m, 3 * PAGE, PROT_READ).errno == errno.ENOMEM   # runs past the mapping:
    assert backend.write_mem(m + PAGE, b"x").errno == errno.EFAULT           # its pages changed all the same
    assert backend.read_mem(m, 1).data == b"x"


def test_munmap_of_a_middle_page_leaves_a_hole(backend: Backend) -> None:
    m = backend.mmap(3 * PAGE).ret
    assert backend.write_mem(m, b"a" * 3 * PAGE).ok
    assert backend.munmap(m + PAGE, PAGE).ok
    assert backend.read_mem(m, PAGE).data == b"a" * PAGE
    assert backend.read_mem(m + 2 * PAGE, PAGE).data == b"a" * PAGE
    assert backend.read_mem(m + PAGE, 1).errno == errno.EFAULT
    assert backend.mprotect(m, 3 * PAGE, PROT_READ).errno == errno.ENOMEM   # the hole


def test_munmap_forgets_a_pages_protection(backend: Backend) -> None:
    m = backend.mmap(2 * PAGE).ret
    assert backend.mprotect(m, 2 * PAGE, PROT_NONE).ok
    assert backend.munmap(m + PAGE, PAGE).ok
    assert backend.read_mem(m, 1).errno == errno.EFAULT
    assert backend.mprotect(m, PAGE, RW).ok
    assert backend.read_mem(m, PAGE).data == bytes(PAGE)


# -- the kernel backend on its own -------------------------------------------------------------



def test_the_kernel_sees_the_protection(kb: KernelBackend) -> None:
    """The kernel's own copy_to_user/copy_from_user into the pages fault: the protection is real."""
    r, w = os.pipe()
    kb.adopt_fd(r)
    kb.adopt_fd(w)
    os.write(w, b"hello")
    m = kb.mmap(2 * PAGE).ret
    assert kb.mprotect(m, PAGE, PROT_READ).ok
    assert kb.mprotect(m + PAGE, PAGE, PROT_NONE).ok
    assert kb.ioctl(r, termios.FIONREAD, m).errno == errno.EFAULT        # put_user to PROT_READ
    libc = ctypes.CDLL(None, use_errno=True)
    ctypes.set_errno(0)
    assert libc.write(w, ctypes.c_void_p(m + PAGE), 1) == -1 and ctypes.get_errno() == errno.EFAULT
    assert kb.mprotect(m, PAGE, RW).ok
    assert kb.ioctl(r, termios.FIONREAD, m).ok
    assert kb.read_mem(m, 4).data == (5).to_bytes(4, "little")


def test_mprotect_never_touches_memory_it_did_not_map(kb: KernelBackend) -> None:
    own = mmap.mmap(-1, 2 * PAGE)
    own[:5] = b"still"
    addr = ctypes.addressof(ctypes.c_char.from_buffer(own))
    assert kb.mprotect(addr, PAGE, PROT_NONE).errno == errno.ENOMEM
    assert "not in a mapping of this backend" in kb.last_refusal
    own[:5] = b"wrote"             # still writable: a real mprotect would have made this segfault
    # A range from its own mapping on into memory it did not map right after it: its own page only.
    m = kb.mmap(2 * PAGE).ret
    assert kb.munmap(m + PAGE, PAGE).ok
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long)
    map_fixed_noreplace = 0x100000
    foreign = libc.mmap(m + PAGE, PAGE, PROT_READ | PROT_WRITE,
                        mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | map_fixed_noreplace, -1, 0)
    assert foreign == m + PAGE
    try:
        assert kb.mprotect(m, 2 * PAGE, PROT_READ).errno == errno.ENOMEM
        assert kb.write_mem(m, b"x").errno == errno.EFAULT
        ctypes.memmove(foreign, b"alive", 5)      # a real mprotect of both pages would segfault here
        assert ctypes.string_at(foreign, 5) == b"alive"
    finally:
        libc.munmap(ctypes.c_void_p(foreign), ctypes.c_size_t(PAGE))


# -- the model's uaccess ------------------------------------------------------------------------


def test_model_copies_stop_where_the_kernels_do() -> None:
    mm = UserMemory()
    m = mm.mmap(3 * PAGE)
    mm.write(m, b"z" * 3 * PAGE)
    mm.mprotect(m + PAGE, PAGE, PROT_READ)
    mm.mprotect(m + 2 * PAGE, PAGE, PROT_NONE)
    assert mm.read(m, 2 * PAGE) == b"z" * 2 * PAGE
    with pytest.raises(Errno) as e:
        mm.read(m + 2 * PAGE - 4, 8)
    assert e.value.code == errno.EFAULT
    with pytest.raises(Errno):
        mm.write(m + PAGE - 2, b"abcd")   # all or nothing: nothing lands
    assert mm.read(m + PAGE - 2, 2) == b"zz"
    assert mm.lookup(m + PAGE) is not None and mm.lookup(m + PAGE, write=True) is None
    assert mm.usable_end(m, write=True) == m + PAGE and mm.usable_end(m) == m + 2 * PAGE
    assert not mm.is_mapped(m, 2 * PAGE, write=True) and mm.is_mapped(m, 2 * PAGE)
    with pytest.raises(Errno):
        mm.check_zeroed_user(m + 2 * PAGE, 1)


def test_model_copy_to_user_partial_lands_up_to_the_read_only_page() -> None:
    b = ModelBackend()
    k = b.kernel
    m = k.mm.mmap(2 * PAGE)
    k.mm.mprotect(m + PAGE, PAGE, PROT_READ)
    assert not copy_to_user_partial(k, m + PAGE - 2, b"abcd")
    assert k.mm.read(m + PAGE - 2, 4) == b"ab\0\0"


def test_model_munmap_keeps_the_written_pages_of_what_stays() -> None:
    mm = UserMemory()
    m = mm.mmap(4 * PAGE)
    mm.write(m, bytes(range(256)) * 16 * 4)
    mm.munmap(m + PAGE, 2 * PAGE - 5)         # rounded up to the page
    assert mm.read(m, PAGE) == (bytes(range(256)) * 16)
    assert mm.read(m + 3 * PAGE, PAGE) == (bytes(range(256)) * 16)
    assert not mm.is_mapped(m + PAGE, 1) and not mm.is_mapped(m + 3 * PAGE - 1, 1)


def test_model_file_mapping_holds_its_file_until_its_last_page_goes() -> None:
    released: list[str] = []

    class Mappable(File):
        def mmap(self, k: ModelKernel, length: int, pgoff: int, shared: bool) -> None:
            pass

        def release(self, k: ModelKernel) -> None:
            released.append("released")

    k = ModelBackend().kernel
    fd = k.install_fd(Mappable())
    addr = k.mmap_fd(fd, 2 * PAGE, 0, True)
    k.close(fd)
    k.munmap(addr, 1)                  # the first page (the length is rounded up)
    assert not released and k.mm.is_mapped(addr + PAGE, PAGE)
    k.munmap(addr + PAGE, PAGE)
    assert released == ["released"]
