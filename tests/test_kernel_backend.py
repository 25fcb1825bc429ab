"""The kernel backend's syscall plumbing, on this machine's real kernel.

No VFIO is needed: memory, ioctl buffers, fds and eventfds behave the same for
any file.  The sysfs safety rules are in test_kernel_backend_sysfs.py.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import gzip
import mmap
import os
import struct
import termios
from pathlib import Path

import pytest

from harness.backends import kernel as kmod
from harness.backends.kernel import PAGE, KernelBackend

KVM_GET_API_VERSION = 0xAE00  # _IO(KVMIO, 0x00)
KVM_CREATE_VM = 0xAE01        # _IO(KVMIO, 0x01)



def test_mmap_write_read_round_trip(kb: KernelBackend) -> None:
    m = kb.mmap(3 * PAGE)
    assert m.ok and m.ret % PAGE == 0 and m.ret > 0
    payload = bytes(range(256)) * 20
    assert kb.write_mem(m.ret + 100, payload).ok
    back = kb.read_mem(m.ret + 100, len(payload))
    assert back.ok and back.data == payload
    # The address is a real one in this process: ctypes sees the same bytes.
    assert ctypes.string_at(m.ret + 100, 4) == payload[:4]
    # Fresh anonymous memory reads as zeros, up to the page-rounded end.
    assert kb.read_mem(m.ret + 3 * PAGE - 8, 8).data == b"\0" * 8


def test_mmap_rounds_to_pages_and_faults_past_the_end(kb: KernelBackend) -> None:
    m = kb.mmap(10)
    assert kb.read_mem(m.ret, PAGE).ok
    r = kb.read_mem(m.ret, PAGE + 1)
    assert r.errno == errno.EFAULT and r.data == b""


def test_an_aligned_mmap_starts_on_the_boundary_and_holds_only_its_pages(kb: KernelBackend) -> None:
    huge = 2 << 20
    for _ in range(3):   # whatever lies around it, each one is aligned
        m = kb.mmap(5 * PAGE, huge)
        assert m.ok and m.ret % huge == 0
        assert kb.write_mem(m.ret, b"x" * 5 * PAGE).ok
        assert kb.read_mem(m.ret + 5 * PAGE, 1).errno == errno.EFAULT
    # The over-allocation around it was given back: the pages before and after are not mapped.
    with open("/proc/self/maps") as f:
        spans = [tuple(int(x, 16) for x in line.split()[0].split("-")) for line in f]
    assert (m.ret, m.ret + 5 * PAGE) in spans or any(lo <= m.ret and m.ret + 5 * PAGE <= hi for lo, hi in spans)
    assert not any(lo < m.ret < hi for lo, hi in spans)
    assert kb.mmap(PAGE, 3 * PAGE).errno == errno.EINVAL


def test_mmap_of_zero_bytes_is_einval(kb: KernelBackend) -> None:
    assert kb.mmap(0).errno == errno.EINVAL


def test_memory_outside_this_backends_mappings_is_efault_and_untouched(kb: KernelBackend) -> None:
    buf = ctypes.create_string_buffer(b"harness heap", 64)
    addr = ctypes.addressof(buf)
    r = kb.read_mem(addr, 8)
    assert r.errno == errno.EFAULT and r.data == b""
    w = kb.write_mem(addr, b"XXXXXXXX")
    assert w.errno == errno.EFAULT
    assert buf.value == b"harness heap"
    assert "not in a mapping of this backend" in kb.last_refusal
    # NULL and a wild address: no segfault, just EFAULT.
    assert kb.read_mem(0, 1).errno == errno.EFAULT
    assert kb.write_mem(0xDEAD_0000_0000, b"x").errno == errno.EFAULT


def test_partial_munmap_splits_the_mapping(kb: KernelBackend) -> None:
    m = kb.mmap(3 * PAGE).ret
    assert kb.write_mem(m, b"a" * 3 * PAGE).ok
    assert kb.munmap(m + PAGE, PAGE).ok
    assert kb.read_mem(m, PAGE).data == b"a" * PAGE
    assert kb.read_mem(m + 2 * PAGE, PAGE).data == b"a" * PAGE
    assert kb.read_mem(m + PAGE, 1).errno == errno.EFAULT
    # A range spanning the hole is not wholly mapped.
    assert kb.read_mem(m + PAGE - 1, 2).errno == errno.EFAULT


def test_munmap_never_unmaps_memory_it_did_not_map(kb: KernelBackend) -> None:
    own = mmap.mmap(-1, PAGE)
    own[:5] = b"still"
    addr = ctypes.addressof(ctypes.c_char.from_buffer(own))
    assert kb.munmap(addr, PAGE).ok  # like munmap(2) on a range with nothing of ours in it
    assert own[:5] == b"still"       # a real munmap would have made this segfault
    assert kb.munmap(addr + 1, PAGE).errno == errno.EINVAL
    assert kb.munmap(addr, 0).errno == errno.EINVAL


def test_munmap_then_access_faults(kb: KernelBackend) -> None:
    m = kb.mmap(PAGE).ret
    assert kb.munmap(m, PAGE).ok
    assert kb.read_mem(m, 1).errno == errno.EFAULT
    assert kb.write_mem(m, b"x").errno == errno.EFAULT


def test_ioctl_bytes_buffer_is_filled_by_the_kernel(kb: KernelBackend) -> None:
    r, w = os.pipe()
    kb.adopt_fd(r)
    kb.adopt_fd(w)
    os.write(w, b"hello")
    res = kb.ioctl(r, termios.FIONREAD, b"\xff" * 4)
    assert (res.ret, res.errno) == (0, 0)
    assert struct.unpack("<i", res.data) == (5,)


def test_ioctl_int_argument_is_the_raw_pointer(kb: KernelBackend) -> None:
    r, w = os.pipe()
    kb.adopt_fd(r)
    kb.adopt_fd(w)
    assert kb.ioctl(r, termios.FIONREAD, 0).errno == errno.EFAULT       # NULL
    assert kb.ioctl(r, termios.FIONREAD, None).errno == errno.EFAULT    # None is 0
    m = kb.mmap(PAGE).ret
    os.write(w, b"abc")
    assert kb.ioctl(r, termios.FIONREAD, m).ok                          # a pointer into our mapping
    assert kb.read_mem(m, 4).data == struct.pack("<i", 3)


def test_ioctl_short_buffer_returns_exactly_the_bytes_given(kb: KernelBackend) -> None:
    # TCGETS writes a whole struct termios (36 bytes); the case gave 4.  The rest
    # lands in the scratch page, not in the interpreter's heap.
    master, slave = os.openpty()
    kb.adopt_fd(master)
    kb.adopt_fd(slave)
    res = kb.ioctl(slave, termios.TCGETS, b"\0" * 4)
    assert res.ok and len(res.data) == 4
    full = kb.ioctl(slave, termios.TCGETS, b"\0" * 64)
    iflag, oflag, cflag, lflag = struct.unpack_from("<4I", full.data)
    assert [iflag, oflag, cflag, lflag] == termios.tcgetattr(slave)[:4]
    assert full.data[:4] == res.data


def test_ioctl_failure_still_returns_the_buffer(kb: KernelBackend, tmp_path: Path) -> None:
    p = tmp_path / "plain"
    p.write_bytes(b"x")
    fd = kb.adopt_fd(os.open(p, os.O_RDONLY))
    res = kb.ioctl(fd, 0x3B99, b"\x01\x02\x03")  # an ioctl no regular file knows
    assert (res.ret, res.errno) == (-1, errno.ENOTTY)
    assert res.data == b"\x01\x02\x03"
    assert kb.ioctl(fd, termios.TCGETS, b"\0" * 64).errno == errno.ENOTTY


def test_ioctl_empty_buffer(kb: KernelBackend) -> None:
    r, w = os.pipe()
    kb.adopt_fd(r)
    kb.adopt_fd(w)
    res = kb.ioctl(r, termios.FIONREAD, b"")
    assert res.ok and res.data == b""


def test_fds_the_backend_did_not_open_are_ebadf_without_a_syscall(kb: KernelBackend) -> None:
    r, w = os.pipe()
    try:
        assert kb.close(r).errno == errno.EBADF
        os.fstat(r)  # still open
        refused = kb.ioctl(r, termios.FIONREAD, b"\x01\x02\x03\x04")
        # As the kernel's fdget() failing: EBADF, the argument left as it was (found by the fuzzer).
        assert refused.errno == errno.EBADF and refused.data == b"\x01\x02\x03\x04"
        assert kb.write(w, b"x").errno == errno.EBADF
        assert kb.read(r, 1).errno == errno.EBADF
        assert "not opened by this backend" in kb.last_refusal
    finally:
        os.close(r)
        os.close(w)


def test_eventfd_read_write(kb: KernelBackend) -> None:
    ev = kb.eventfd(3)
    assert ev.ok and ev.ret >= 0
    assert os.readlink(f"/proc/self/fd/{ev.ret}") == "anon_inode:[eventfd]"
    r = kb.read(ev.ret, 8)
    assert (r.ret, r.data) == (8, struct.pack("<Q", 3))
    assert kb.read(ev.ret, 8).errno == errno.EAGAIN   # non-blocking, counter 0
    assert kb.write(ev.ret, struct.pack("<Q", 2)).ret == 8
    assert kb.read(ev.ret, 8).data == struct.pack("<Q", 2)
    assert kb.read(ev.ret, 4).errno == errno.EINVAL
    assert kb.write(ev.ret, b"\0" * 4).errno == errno.EINVAL
    assert kb.write(ev.ret, b"\xff" * 8).errno == errno.EINVAL
    assert fcntl.fcntl(ev.ret, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
    assert kb.close(ev.ret).ok
    assert kb.close(ev.ret).errno == errno.EBADF


def test_memfd_is_a_sized_shmem_file(kb: KernelBackend) -> None:
    mfd = kb.memfd(3 * PAGE, "kb-test")
    assert mfd.ok and mfd.ret >= 0
    assert os.readlink(f"/proc/self/fd/{mfd.ret}") == "/memfd:kb-test (deleted)"
    assert os.fstat(mfd.ret).st_size == 3 * PAGE
    assert fcntl.fcntl(mfd.ret, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
    assert kb.write(mfd.ret, b"abc").ret == 3
    assert os.pread(mfd.ret, 3, 0) == b"abc"
    assert kb.read(mfd.ret, 4 * PAGE).data == b"\0" * (3 * PAGE - 3)   # from the position to the size
    assert os.readlink(f"/proc/self/fd/{kb.memfd(0).ret}") == "/memfd:vfio-conformance (deleted)"
    assert kb.close(mfd.ret).ok
    assert kb.close(mfd.ret).errno == errno.EBADF


def test_memfd_refusals_leave_no_fd(kb: KernelBackend) -> None:
    before = set(os.listdir("/proc/self/fd"))
    for size, name in ((-1, "x"), (1 << 63, "x"), (1 << 64, "x"), (PAGE, "n" * 250), (PAGE, "nul\0")):
        res = kb.memfd(size, name)
        assert (res.ret, res.errno) == (-1, errno.EINVAL), (size, name)
    assert set(os.listdir("/proc/self/fd")) == before


def test_memfds_are_closed_at_reset(kb: KernelBackend) -> None:
    fd = kb.memfd(PAGE).ret
    kb.reset()
    with pytest.raises(OSError) as e:
        os.fstat(fd)
    assert e.value.errno == errno.EBADF


def test_open_of_a_missing_node_is_enoent(kb: KernelBackend) -> None:
    for path in ("/dev/iommu", "/dev/vfio/vfio", "/dev/vfio/devices/vfio9", "/dev/vfio/42"):
        res = kb.open(path)
        assert (res.ret, res.errno) == (-1, errno.ENOENT), path


def test_reset_closes_fds_and_unmaps(kb: KernelBackend) -> None:
    ev = kb.eventfd(0).ret
    r, _w = os.pipe()
    kb.adopt_fd(r)
    m = kb.mmap(PAGE).ret
    kb.reset()
    for fd in (ev, r):
        with pytest.raises(OSError) as e:
            os.fstat(fd)
        assert e.value.errno == errno.EBADF
    assert kb.read_mem(m, 1).errno == errno.EFAULT
    os.close(_w)


def test_fds_an_ioctl_creates_are_closed_at_reset(kb: KernelBackend) -> None:
    """KVM_CREATE_VM installs an anon-inode fd like VFIO_GROUP_GET_DEVICE_FD does."""
    try:
        kvm = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        pytest.skip(f"/dev/kvm: {e.strerror}")
    kb.adopt_fd(kvm)
    assert kb.ioctl(kvm, KVM_GET_API_VERSION, 0).ret == 12  # ret is the C return value
    vm = kb.ioctl(kvm, KVM_CREATE_VM, 0)
    if not vm.ok:
        pytest.skip(f"KVM_CREATE_VM: {vm.errno_name}")
    assert os.readlink(f"/proc/self/fd/{vm.ret}") == "anon_inode:kvm-vm"
    assert kb.close(vm.ret).ok  # the backend knows it as its own
    vm2 = kb.ioctl(kvm, KVM_CREATE_VM, 0).ret
    kb.reset()
    with pytest.raises(OSError):
        os.fstat(vm2)


def test_constructing_without_root_on_the_host_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(PermissionError, match="kernel backend needs root"):
        KernelBackend(devices=("0000:00:02.0",))
    KernelBackend(root=str(tmp_path), state_file=tmp_path / "s.json")  # a test tree needs no root


def test_device_names_are_checked_and_normalised(tmp_path: Path) -> None:
    b = KernelBackend(devices=("00:02.0", "0000:00:1F.2"), root=str(tmp_path), state_file=tmp_path / "s.json")
    assert b.devices == {"0000:00:02.0", "0000:00:1f.2"}
    with pytest.raises(ValueError, match="not a PCI function address"):
        KernelBackend(devices=("eth0",), root=str(tmp_path))


def _write_config(root: Path, lines: list[str], gz: bool = True) -> None:
    text = "\n".join(lines) + "\n"
    if gz:
        (root / "proc").mkdir(parents=True, exist_ok=True)
        with gzip.open(root / "proc" / "config.gz", "wt") as f:
            f.write(text)
    else:
        (root / "boot").mkdir(parents=True, exist_ok=True)
        (root / "boot" / f"config-{os.uname().release}").write_text(text)


def test_facts_from_config_gz(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_config(tmp_path, ["# CONFIG_VFIO_NOIOMMU is not set", "CONFIG_VFIO=m", "CONFIG_IOMMUFD=y",
                             "CONFIG_IOMMUFD_VFIO_CONTAINER=y", "CONFIG_VFIO_CONTAINER=n", 'CONFIG_LOCALVERSION=""'])
    param = tmp_path / "sys/module/vfio_pci/parameters/enable_sriov"
    param.parent.mkdir(parents=True)
    param.write_text("Y\n")
    monkeypatch.setenv("VFIO_CONFORMANCE_PROFILE", "vm-viommu")
    f = KernelBackend(root=str(tmp_path), state_file=tmp_path / "s.json").facts()
    assert f.kernel == os.uname().release
    assert f.config == {"VFIO", "IOMMUFD", "IOMMUFD_VFIO_CONTAINER"}
    assert f.container == "iommufd"
    assert f.enable_sriov is True and f.profile == "vm-viommu"
    assert f.mock_domains is False  # no IOMMUFD_TEST


def test_facts_from_boot_config_and_legacy_container(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VFIO_CONFORMANCE_PROFILE", raising=False)
    _write_config(tmp_path, ["CONFIG_VFIO=y", "CONFIG_VFIO_CONTAINER=y", "CONFIG_IOMMUFD_TEST=y"], gz=False)
    b = KernelBackend(root=str(tmp_path), state_file=tmp_path / "s.json")
    f = b.facts()
    assert f.container == ""        # no /dev/vfio/vfio node
    assert f.mock_domains is False  # no /dev/iommu: not probed
    assert f.enable_sriov is False and f.profile == ""
    (tmp_path / "dev/vfio").mkdir(parents=True)
    (tmp_path / "dev/vfio/vfio").touch()
    assert KernelBackend(root=str(tmp_path), state_file=tmp_path / "s.json").facts().container == "legacy"


def test_an_ioctl_buffer_is_followed_by_a_guard_page(monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernel copying past a buffer faults at the guard instead of reaching the heap.
    Probed with write(2) from the buffer's addresses: the kernel's own access check."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.write.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t)
    r, w = os.pipe()
    seen: dict[str, int] = {}

    def probe(fd: int, request: int, addr: int) -> int:
        seen["last_byte"] = libc.write(w, addr + PAGE - 1, 1)
        ctypes.set_errno(0)
        seen["guard"] = libc.write(w, addr + PAGE, 1)
        seen["guard_errno"] = ctypes.get_errno()
        return 0

    monkeypatch.setattr(kmod, "_ioctl", probe)
    try:
        assert kmod.libc_ioctl(r, 0, b"\0" * 16).ok
        assert seen == {"last_byte": 1, "guard": -1, "guard_errno": errno.EFAULT}
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.parametrize("sizes", [(3 * PAGE + 5, 16, 1), (kmod._Scratch.PAGES * PAGE + 1, 8)])
def test_every_ioctl_buffer_looks_fresh(monkeypatch: pytest.MonkeyPatch, sizes: tuple[int, ...]) -> None:
    """One buffer after another (the scratch mapping reused, or a fresh one past its size): each
    shows its own bytes, zeros to the end of its last page, then the guard page; what the kernel
    wrote in it comes back, and nothing of an earlier argument shows."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.write.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t)
    r, w = os.pipe()
    seen: list[tuple[bytes, int, int]] = []

    def probe(fd: int, request: int, addr: int) -> int:
        n = request                                      # the test passes the size as the request
        end = (n + PAGE - 1) // PAGE * PAGE
        ctypes.set_errno(0)
        guard = libc.write(w, addr + end, 1)
        seen.append((ctypes.string_at(addr, end), guard, ctypes.get_errno()))
        ctypes.memset(addr, 0x5A, 1)                     # the kernel writing its output
        return 0

    monkeypatch.setattr(kmod, "_ioctl", probe)
    try:
        for n in sizes:
            res = kmod.libc_ioctl(r, n, b"\xa5" * n)
            assert res.ok and res.data == b"\x5a" + b"\xa5" * (n - 1)
            shown, guard, err = seen[-1]
            assert shown == b"\xa5" * n + bytes(len(shown) - n)
            assert (guard, err) == (-1, errno.EFAULT)
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.parametrize("mock_errno,expected", [(0, True), (errno.EINVAL, False)])
def test_mock_domain_probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mock_errno: int, expected: bool) -> None:
    """facts().mock_domains asks the kernel: IOAS_ALLOC, then TEST_CMD MOCK_DOMAIN on that IOAS.
    (Under an emulated Intel IOMMU the second fails with EINVAL: docs/measured.md.)"""
    from harness.uapi import iommufd, iommufd_test

    _write_config(tmp_path, ["CONFIG_IOMMUFD=y", "CONFIG_IOMMUFD_TEST=y"])
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev/iommu").write_text("")
    calls: list[tuple[int, int, bytes]] = []

    def fake_ioctl(fd: int, request: int, arg: bytes | int | None) -> kmod.OpResult:
        assert isinstance(arg, bytes)
        calls.append((fd, request, arg))
        if request == iommufd.IOMMU_IOAS_ALLOC:
            out = iommufd.iommu_ioas_alloc.from_buffer_copy(arg)
            assert out.size == ctypes.sizeof(iommufd.iommu_ioas_alloc)
            out.out_ioas_id = 7
            return kmod.OpResult(data=bytes(out))
        cmd = iommufd_test.iommu_test_cmd.from_buffer_copy(arg)
        assert (request, cmd.size, cmd.op, cmd.id) == (
            iommufd_test.IOMMU_TEST_CMD, 72, iommufd_test.IOMMU_TEST_OP_MOCK_DOMAIN, 7)
        return kmod.OpResult(ret=-1 if mock_errno else 0, errno=mock_errno, data=arg)

    monkeypatch.setattr(kmod, "libc_ioctl", fake_ioctl)
    f = KernelBackend(root=str(tmp_path), state_file=tmp_path / "s.json").facts()
    assert f.mock_domains is expected
    assert [c[1] for c in calls] == [iommufd.IOMMU_IOAS_ALLOC, iommufd_test.IOMMU_TEST_CMD]
    with pytest.raises(OSError):  # the probe's fd is closed again
        os.fstat(calls[0][0])
