"""A real kernel behind the Backend interface: os.open, libc ioctl/mmap, sysfs.

What a case passes reaches the kernel unchanged: an ioctl's ``bytes`` argument
is the whole buffer the kernel sees (a lying ``argsz`` is not padded), and an
``int`` is the raw argument (NULL, a dangling pointer).  Errors come back as
errno values, never as exceptions.

The harness is protected from what cases do with real memory and fds: a
struct buffer sits at the start of its own mapping with an inaccessible guard
page after it, so a kernel that copies past a short buffer faults (EFAULT)
instead of overwriting the interpreter's heap; ``read_mem``/``write_mem`` only
touch mappings this backend made, and ``munmap`` only unmaps those; ``close``,
``ioctl``, ``read`` and ``write`` only act on fds this backend opened (or an
ioctl of it returned), anything else is EBADF without a syscall.

The host is protected by ``sysfs_state``: sysfs writes are limited to the PCI
functions the user named, and what they change is recorded before the change
and put back by ``reset()``.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import glob
import gzip
import mmap as _mm
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from ..uapi.mman import MPROTECT_BITS, PROT_NONE, PROT_READ, PROT_WRITE, prot_allows, set_protection
from ..uapi.vfio import VFIO_GROUP_GET_DEVICE_FD
from .base import MAX_READ, MEMFD_NAME, Backend, Facts, OpResult, Topology, valid_align
from .kcov import Kcov
from .pci_sysfs import ENABLE_SRIOV, NOIOMMU_MODE, SysfsTree, normalise_bdf, normalise_path
from .sysfs_state import (
    RefusedError,
    StateStore,
    WritePolicy,
    bool_param,
    default_state_file,
    in_vm,
    restore_from_state_file,
)

__all__ = ["KernelBackend", "RestoreError", "restore_from_state_file"]

PAGE = os.sysconf("SC_PAGE_SIZE")
PROFILE_ENV = "VFIO_CONFORMANCE_PROFILE"
GCOV_ROOT = "/sys/kernel/debug/gcov"
MUTANT_PARAMETERS = "/sys/module/*/parameters/vcm_*"   # harness/mutate/schemata.py
# A read(2) larger than this is cut to it: the buffer is allocated in the harness.
_U64 = (1 << 64) - 1

_libc = ctypes.CDLL(None, use_errno=True)
_ioctl = _libc.ioctl
_ioctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong)
_ioctl.restype = ctypes.c_int
_mmap = _libc.mmap
_mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long)
_mmap.restype = ctypes.c_void_p
_munmap = _libc.munmap
_munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
_munmap.restype = ctypes.c_int
_mprotect = _libc.mprotect
_mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
_mprotect.restype = ctypes.c_int
MAP_FAILED = ctypes.c_void_p(-1).value


def _page_up(n: int) -> int:
    return (n + PAGE - 1) & ~(PAGE - 1)


def _loff_t(offset: int) -> int:
    """A file offset as the syscall's signed loff_t/off_t takes it (2**63 and above wrap)."""
    return offset - (1 << 64) if offset >= 1 << 63 else offset


def _fail(err: int) -> OpResult:
    return OpResult(ret=-1, errno=err)


def _libc_mmap(length: int) -> tuple[int, int]:
    """(address, 0) or (0, errno) for an anonymous private read/write mapping."""
    addr = _mmap(None, length, PROT_READ | PROT_WRITE, _mm.MAP_PRIVATE | _mm.MAP_ANONYMOUS, -1, 0)
    if addr is None or addr == MAP_FAILED:
        return 0, ctypes.get_errno()
    return int(addr), 0


Around = tuple[Callable[[], None], Callable[[], None]]


def _nothing() -> None:
    pass


class _Scratch:
    """SCRATCH_PAGES read/write pages followed by a PROT_NONE guard page, mapped once: an ioctl
    argument of n bytes is placed at the start of the last page_up(n) of them, the rest of its
    last page zeroed, so the kernel sees what a fresh mapping would show (the bytes, zeros to
    the page's end, then a fault) without three syscalls and a TLB flush per ioctl (each a
    noticeable cost in a TCG guest)."""

    PAGES = 16

    def __init__(self) -> None:
        self.size = self.PAGES * PAGE
        self.base = 0
        self.lock = threading.Lock()

    def place(self, data: bytes) -> int:
        """The address ``data`` now starts at (0: no scratch mapping, use a fresh one)."""
        n = len(data)
        size = _page_up(max(n, 1))
        if size > self.size:
            return 0
        if not self.base:
            addr, err = _libc_mmap(self.size + PAGE)
            if err or _mprotect(addr + self.size, PAGE, PROT_NONE) != 0:
                if not err:
                    _munmap(addr, self.size + PAGE)
                return 0
            self.base = addr
        addr = self.base + self.size - size
        ctypes.memmove(addr, data, n)
        ctypes.memset(addr + n, 0, size - n)
        return addr


_SCRATCH = _Scratch()


def _ioctl_at(fd: int, request: int, addr: int, n: int, before: Callable[[], None],
              after: Callable[[], None]) -> OpResult:
    before()
    ctypes.set_errno(0)
    ret = _ioctl(fd, request & _U64, addr)
    err = ctypes.get_errno() if ret == -1 else 0
    after()
    return OpResult(ret=ret, errno=err, data=ctypes.string_at(addr, n))


def libc_ioctl(fd: int, request: int, arg: bytes | int | None, around: Around | None = None) -> OpResult:
    """One ioctl(2).  ``bytes`` are copied to the start of a page-aligned buffer followed by a
    PROT_NONE guard page (the scratch mapping, or a fresh one for a larger argument), its
    address is passed, and the same number of bytes is read back whatever the result.
    ``around`` = (before, after) run right before and right after the ioctl itself, no other
    syscall between (fault injection arms and disarms there)."""
    before, after = around or (_nothing, _nothing)
    if not isinstance(arg, (bytes, bytearray)):
        before()
        ctypes.set_errno(0)
        ret = _ioctl(fd, request & _U64, int(arg or 0) & _U64)
        err = ctypes.get_errno() if ret == -1 else 0
        after()
        return OpResult(ret=ret, errno=err)
    n = len(arg)
    with _SCRATCH.lock:
        addr = _SCRATCH.place(bytes(arg))
        if addr:
            return _ioctl_at(fd, request, addr, n, before, after)
    size = _page_up(max(n, 1))
    addr, err = _libc_mmap(size + PAGE)
    if err:
        return _fail(err)
    try:
        if _mprotect(addr + size, PAGE, PROT_NONE) != 0:
            return _fail(ctypes.get_errno())
        ctypes.memmove(addr, bytes(arg), n)
        return _ioctl_at(fd, request, addr, n, before, after)
    finally:
        _munmap(addr, size + PAGE)


@dataclass(frozen=True)
class Refusal:
    """Why the backend refused an operation; ``where`` shows in the trace like the
    model's kernel-line citations."""

    op: str
    reason: str

    @property
    def where(self) -> str:
        return f"vfio-conformance refused {self.op}: {self.reason}"


class RestoreError(RuntimeError):
    """reset() could not put the PCI functions back as they were."""


class KernelBackend(Backend):
    name = "kernel"

    def __init__(self, devices: tuple[str, ...] = (), *, root: str = "/",
                 state_file: str | os.PathLike[str] | None = None):
        self.tree = SysfsTree(root)
        if self.tree.is_host and os.geteuid() != 0:
            raise PermissionError(
                "the kernel backend needs root: it opens /dev/vfio and /dev/iommu, pins memory for DMA "
                "and rebinds the PCI functions named with --device. Run it as root on a test host or in "
                "the test VM, or use --backend model"
            )
        self.devices = frozenset(normalise_bdf(d) for d in devices)
        self.vm = in_vm()
        self.policy = WritePolicy(self.tree, self.devices, vm=self.vm)
        self.store = StateStore(Path(state_file) if state_file is not None else default_state_file(), self.tree)
        self._fds: set[int] = set()
        self._kcov: Kcov | None = None
        # Page-granular [start, end) ranges of the mappings this backend made.
        self._maps: dict[int, int] = {}
        # Page address -> protection, for the pages of those mprotect() changed from read/write.
        self._prot: dict[int, int] = {}
        self._facts: Facts | None = None
        # vfio_pci.enable_sriov as the run found it.
        self._enable_sriov0 = bool_param(self.tree.read(ENABLE_SRIOV))
        self.last_error: Refusal | None = None
        self.last_refusal = ""
        self._fail_nth_fd: int | None = None   # /proc/thread-self/fail-nth, opened on first use
        self._fault_injected = False

    # -- helpers -------------------------------------------------------------
    def _refuse(self, op: str, reason: str, err: int = errno.EPERM) -> OpResult:
        self.last_error = Refusal(op, reason)
        self.last_refusal = self.last_error.where
        return _fail(err)

    def _owned(self, fd: int, op: str) -> OpResult | None:
        self.last_error = None
        if fd in self._fds:
            return None
        return self._refuse(op, f"fd {fd} was not opened by this backend", errno.EBADF)

    def _foreign_device(self, request: int, arg: bytes | int | None) -> OpResult | None:
        """VFIO_GROUP_GET_DEVICE_FD opens (and resets) the device it names: on a real host only a
        function named with --device (or a VF of one) may be opened.  A name that is no PCI
        address opens nothing and goes to the kernel as asked."""
        if request != VFIO_GROUP_GET_DEVICE_FD or not isinstance(arg, bytes):
            return None
        words = arg.split(b"\0", 1)[0].decode(errors="replace").split()
        try:
            bdf = normalise_bdf(words[0]) if words else ""
        except ValueError:
            return None
        if not bdf or self.may_touch(bdf):
            return None
        return self._refuse("VFIO_GROUP_GET_DEVICE_FD", f"{bdf} was not named with --device", errno.EPERM)

    def may_touch(self, bdf: str) -> bool:
        """Whether sysfs writes may change this PCI function (named with --device,
        a VF of one, or anything inside the test VM)."""
        return self.policy.allowed_function(bdf)

    def adopt_fd(self, fd: int) -> int:
        """Let this backend operate on (and close at reset) an fd opened elsewhere."""
        self._fds.add(fd)
        return fd

    def _covered(self, addr: int, length: int, write: bool | None = None) -> bool:
        """True when every byte of [addr, addr+length) lies in this backend's mappings (and,
        ``write`` given, on pages that allow that access: a fault would kill the harness)."""
        start, end = addr, addr + length
        if self._own_run_end(addr, end) < end:
            return False
        return write is None or all(prot_allows(p, write) for a, p in self._prot.items()
                                    if start < a + PAGE and a < end)

    # -- Backend: facts and topology ----------------------------------------
    def facts(self) -> Facts:
        if self._facts is None:
            config = self._kconfig()
            container = ""
            if "IOMMUFD_VFIO_CONTAINER" in config:
                container = "iommufd"
            elif "VFIO_CONTAINER" in config and self.path_exists("/dev/vfio/vfio"):
                container = "legacy"
            # Facts.iommu keeps its defaults.  Later: describe the real IOMMU from
            # /sys/class/iommu/*/intel-iommu/cap and ecap (aperture from MGAW, page
            # sizes from SLLPS, dirty tracking from ecap SSADS) and from
            # /sys/kernel/iommu_groups/*/reserved_regions.
            self._facts = Facts(
                kernel=os.uname().release, config=config, container=container,
                mock_domains="IOMMUFD_TEST" in config and self.path_exists("/dev/iommu")
                and self._probe_mock_domain(),
                enable_sriov=self._enable_sriov0, vfio_noiommu=bool_param(self.tree.read(NOIOMMU_MODE)),
                profile=os.environ.get(PROFILE_ENV, ""),
            )
        return self._facts

    def _kconfig(self) -> frozenset[str]:
        """CONFIG_ symbols set to y or m, without the prefix."""
        text = None
        try:
            with gzip.open(self.tree.path("/proc/config.gz"), "rt", errors="replace") as f:
                text = f.read()
        except OSError:
            try:
                text = Path(self.tree.path(f"/boot/config-{os.uname().release}")).read_text(errors="replace")
            except OSError:
                return frozenset()
        out = set()
        for line in text.splitlines():
            name, sep, value = line.partition("=")
            if sep and name.startswith("CONFIG_") and value in ("y", "m"):
                out.add(name[len("CONFIG_"):])
        return frozenset(out)

    def _probe_mock_domain(self) -> bool:
        """IOMMU_TEST_OP_MOCK_DOMAIN on a fresh IOAS works (it fails with EINVAL
        under an emulated Intel IOMMU: docs/measured.md).  Everything goes with the fd."""
        from ..uapi import iommufd, iommufd_test

        try:
            fd = os.open(self.tree.path("/dev/iommu"), os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            alloc = iommufd.iommu_ioas_alloc(size=ctypes.sizeof(iommufd.iommu_ioas_alloc))
            res = libc_ioctl(fd, iommufd.IOMMU_IOAS_ALLOC, bytes(alloc))
            if not res.ok:
                return False
            ioas = iommufd.iommu_ioas_alloc.from_buffer_copy(res.data).out_ioas_id
            cmd = iommufd_test.iommu_test_cmd(
                size=ctypes.sizeof(iommufd_test.iommu_test_cmd), op=iommufd_test.IOMMU_TEST_OP_MOCK_DOMAIN, id=ioas,
            )
            return libc_ioctl(fd, iommufd_test.IOMMU_TEST_CMD, bytes(cmd)).ok
        finally:
            os.close(fd)

    def topology(self) -> Topology:
        return self.tree.topology()

    def path_exists(self, path: str) -> bool:
        try:
            return os.path.exists(self.tree.path(path))
        except ValueError:
            return False

    # -- Backend: files ------------------------------------------------------
    def _open_refusal(self, path: str, flags: int) -> str | None:
        """Why ``path`` may not be opened, or None.  Outside the VM only VFIO and
        iommufd nodes of the named functions are opened."""
        if self.vm:
            return None
        if flags & os.O_CREAT:
            return "O_CREAT: the backend opens existing device nodes only"
        norm = normalise_path(path)
        if norm is None:
            return "not an absolute path"
        if norm in ("/dev/iommu", "/dev/vfio/vfio"):
            return None
        if not os.path.lexists(self.tree.path(norm)):
            return None  # the kernel says ENOENT
        parts = norm.split("/")[1:]
        if parts[:2] != ["dev", "vfio"] or len(parts) not in (3, 4):
            return f"{norm}: outside the VFIO and iommufd device nodes"
        if len(parts) == 4 and parts[2] == "devices":
            if any(self.tree.cdev(b) == parts[3] for b in self._allowed_functions()):
                return None
            return f"{norm} is not the VFIO cdev of a function named with --device"
        group = parts[2].removeprefix("noiommu-")
        if len(parts) == 3 and group.isdigit():
            members = self.tree.group_members(int(group))
            if any(self.may_touch(b) for b in members):
                return None
            return f"{norm}: IOMMU group {group} holds no function named with --device"
        return f"{norm}: outside the VFIO and iommufd device nodes"

    def _allowed_functions(self) -> list[str]:
        return [b for b in self.tree.functions() if self.may_touch(b)]

    def open(self, path: str, flags: int = os.O_RDWR) -> OpResult:
        self.last_error = None
        why = self._open_refusal(path, flags)
        if why:
            return self._refuse("open", why)
        try:
            fd = os.open(self.tree.path(path), flags | os.O_CLOEXEC)
        except OSError as e:
            return _fail(e.errno or errno.EIO)
        except ValueError:
            return _fail(errno.ENOENT)
        self._fds.add(fd)
        return OpResult(ret=fd)

    def close(self, fd: int) -> OpResult:
        refused = self._owned(fd, "close")
        if refused:
            return refused
        self._fds.discard(fd)
        try:
            os.close(fd)
        except OSError as e:
            return _fail(e.errno or errno.EIO)
        return OpResult()

    def ioctl(self, fd: int, request: int, arg: bytes | int | None) -> OpResult:
        return self._ioctl(fd, request, arg)

    def _ioctl(self, fd: int, request: int, arg: bytes | int | None, around: Around | None = None) -> OpResult:
        refused = self._owned(fd, "ioctl") or self._foreign_device(request, arg)
        if refused:
            # fdget() fails before the kernel looks at the argument: the buffer comes back as passed.
            return replace(refused, data=arg) if isinstance(arg, bytes) else refused
        # An fd the kernel installs for us (VFIO_GROUP_GET_DEVICE_FD's return value,
        # IOMMU_FAULT_QUEUE_ALLOC's out_fault_fd) is ours to close at reset.  The kernel
        # installs the lowest free number (fs/file.c alloc_fd), and no VFIO or iommufd ioctl
        # installs more than one, so that number is all there is to look at (listing the fd
        # table around every ioctl was most of an ioctl's cost in a TCG guest).
        lowest = _lowest_free_fd(fd)
        res = libc_ioctl(fd, request, arg, around)
        if res.ok and lowest not in self._fds:
            try:
                if os.readlink(f"/proc/self/fd/{lowest}").startswith("anon_inode:"):
                    self._fds.add(lowest)
            except OSError:
                pass
        return res

    def ioctl_fail_nth(self, fd: int, request: int, arg: bytes | int | None, nth: int) -> OpResult:
        """The ioctl with the ``nth`` fault-injection site it reaches made to fail
        (/proc/thread-self/fail-nth: slab, page allocation, usercopy...; Documentation/
        fault-injection/fault-injection.rst).  ``fault_injected()`` then says whether that
        site was reached.  Armed after the argument is in place, disarmed right after."""
        self._fault_injected = False
        if fd not in self._fds:
            return self._ioctl(fd, request, arg)  # refused, as any ioctl on it
        if self._fail_nth_fd is None:
            self._fail_nth_fd = os.open("/proc/thread-self/fail-nth", os.O_RDWR | os.O_CLOEXEC)
        ctl = self._fail_nth_fd

        def arm() -> None:
            os.pwrite(ctl, str(nth).encode(), 0)

        def disarm() -> None:
            try:
                left = os.pread(ctl, 32, 0)
            except OSError:  # the read itself hit the armed site: it was not reached before
                left = b"1"
            for _ in range(2):  # disarming can fail the same way (iommufd_fail_nth.c does this too)
                try:
                    os.pwrite(ctl, b"0", 0)
                    break
                except OSError:
                    left = b"1"
            self._fault_injected = left.strip() == b"0"

        return self._ioctl(fd, request, arg, (arm, disarm))

    def fault_injected(self) -> bool:
        return self._fault_injected

    def setup_fault_injection(self) -> str:
        """Let fail-nth fail any allocation, as iommufd_fail_nth.c's setup does: failslab and
        fail_page_alloc stop ignoring sleeping (and highmem) allocations, and every fault
        type stops logging each injection.  Only inside the test VM (the settings are
        global and not put back).  Returns "" or why it could not be done."""
        if not self.vm:
            return "fault injection changes global debugfs settings: only inside the test VM"
        debugfs = "/sys/kernel/debug"
        settings = [("failslab/ignore-gfp-wait", "N"), ("fail_page_alloc/ignore-gfp-wait", "N"),
                    ("fail_page_alloc/ignore-gfp-highmem", "N")]
        settings += [(f"{d}/verbose", "0") for d in self.tree.listdir(debugfs) if d.startswith("fail")]
        for rel, value in settings:
            try:
                self.tree.write(f"{debugfs}/{rel}", value)
            except OSError as e:
                return f"{debugfs}/{rel}: {e.strerror} (CONFIG_FAULT_INJECTION_DEBUG_FS, debugfs mounted?)"
        return ""

    def gcov_collect(self, reset: bool = False) -> dict[str, bytes]:
        """Only inside the test VM (a reset is global).  Empty when the kernel has no gcov."""
        if not self.vm:
            raise RefusedError("kernel coverage counters are global: only inside the test VM")
        root = self.tree.path(GCOV_ROOT)
        out: dict[str, bytes] = {}
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                if name.endswith(".gcda"):
                    full = os.path.join(dirpath, name)
                    with open(full, "rb") as f:
                        out[GCOV_ROOT + full[len(root):]] = f.read()
        if reset and os.path.exists(os.path.join(root, "reset")):
            with open(os.path.join(root, "reset"), "w") as f:
                f.write("1")
        return out

    def select_mutant(self, number: int) -> str:
        """Only inside the test VM (a switch of the mutation run's own kernel)."""
        if not self.vm:
            return "selecting a mutant changes the kernel: only inside the test VM"
        params = glob.glob(os.path.join(self.tree.path("/sys/module"), MUTANT_PARAMETERS[len("/sys/module/"):]))
        if not params:
            return f"no {MUTANT_PARAMETERS} in this kernel: it is not a mutant-schemata build"
        for p in params:
            try:
                with open(p, "w") as f:
                    f.write(str(number))
            except OSError as e:
                return f"{p}: {e.strerror}"
        return ""

    def kcov_enable(self) -> str:
        if self._kcov is None:
            self._kcov = Kcov()
        return self._kcov.enable()

    def kcov_collect(self) -> bytes:
        return self._kcov.collect() if self._kcov is not None else b""

    def read(self, fd: int, length: int) -> OpResult:
        refused = self._owned(fd, "read")
        if refused:
            return refused
        if length < 0:
            return _fail(errno.EINVAL)
        try:
            data = os.read(fd, min(length, MAX_READ))
        except OSError as e:
            return _fail(e.errno or errno.EIO)
        return OpResult(ret=len(data), data=data)

    def write(self, fd: int, data: bytes) -> OpResult:
        refused = self._owned(fd, "write")
        if refused:
            return refused
        try:
            return OpResult(ret=os.write(fd, data))
        except OSError as e:
            return _fail(e.errno or errno.EIO)

    def pread(self, fd: int, length: int, offset: int) -> OpResult:
        refused = self._owned(fd, "pread")
        if refused:
            return refused
        if length < 0 or not -(1 << 63) <= offset <= _U64:
            return _fail(errno.EINVAL)
        try:
            data = os.pread(fd, min(length, MAX_READ), _loff_t(offset))
        except OSError as e:
            return _fail(e.errno or errno.EIO)
        return OpResult(ret=len(data), data=data)

    def pwrite(self, fd: int, data: bytes, offset: int) -> OpResult:
        refused = self._owned(fd, "pwrite")
        if refused:
            return refused
        if not -(1 << 63) <= offset <= _U64:
            return _fail(errno.EINVAL)
        try:
            return OpResult(ret=os.pwrite(fd, data, _loff_t(offset)))
        except OSError as e:
            return _fail(e.errno or errno.EIO)

    def mmap_fd(self, fd: int, length: int, offset: int, shared: bool = True) -> OpResult:
        refused = self._owned(fd, "mmap_fd")
        if refused:
            return refused
        if not 0 <= length <= _U64 or not -(1 << 63) <= offset <= _U64:
            return _fail(errno.EINVAL)
        flags = _mm.MAP_SHARED if shared else _mm.MAP_PRIVATE
        addr = _mmap(None, length, PROT_READ | PROT_WRITE, flags, fd, _loff_t(offset))
        if addr is None or addr == MAP_FAILED:
            return _fail(ctypes.get_errno())
        self._maps[int(addr)] = int(addr) + _page_up(length)
        return OpResult(ret=int(addr))

    def eventfd(self, initval: int = 0) -> OpResult:
        self.last_error = None
        try:
            fd = os.eventfd(initval, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        except OSError as e:
            return _fail(e.errno or errno.EIO)
        except OverflowError:
            return _fail(errno.EINVAL)
        self._fds.add(fd)
        return OpResult(ret=fd)

    def memfd(self, size: int, name: str = MEMFD_NAME) -> OpResult:
        """memfd_create(2) + ftruncate(2).  A memfd is anonymous memory of this process:
        nothing to refuse, on a host or in the VM."""
        self.last_error = None
        try:
            fd = os.memfd_create(name, os.MFD_CLOEXEC)
        except OSError as e:
            return _fail(e.errno or errno.EIO)
        except ValueError:  # an embedded NUL: the kernel would read a shorter name
            return _fail(errno.EINVAL)
        try:
            os.ftruncate(fd, size)
        except (OSError, OverflowError) as e:
            os.close(fd)
            # A size past 2^63 - 1 is a negative loff_t to the kernel: EINVAL (fs/open.c).
            return _fail(getattr(e, "errno", None) or errno.EINVAL)
        self._fds.add(fd)
        return OpResult(ret=fd)

    # -- Backend: memory -----------------------------------------------------
    def mmap(self, length: int, align: int = 0) -> OpResult:
        self.last_error = None
        if not valid_align(align) or (align and length <= 0):
            return _fail(errno.EINVAL)
        addr, err = _libc_mmap((_page_up(length) + align - PAGE if align else length) & _U64)
        if err:
            return _fail(err)
        if align:   # map more than asked, then unmap what lies before and after the aligned part
            start, end = (addr + align - 1) & ~(align - 1), addr + _page_up(length) + align - PAGE
            for lo, hi in ((addr, start), (start + _page_up(length), end)):
                if hi > lo:
                    _munmap(lo, hi - lo)
            addr = start
        self._maps[addr] = addr + _page_up(length)
        return OpResult(ret=addr)

    def munmap(self, addr: int, length: int) -> OpResult:
        """munmap(2) restricted to this backend's mappings: the parts of the range
        outside them are left alone (the kernel would unmap whatever is there,
        the interpreter's own memory included) and the call succeeds like it."""
        self.last_error = None
        if addr % PAGE or length <= 0 or addr < 0 or addr + length > _U64:
            return _fail(errno.EINVAL)
        end = addr + _page_up(length)
        for s, e in list(self._maps.items()):
            lo, hi = max(s, addr), min(e, end)
            if lo >= hi:
                continue
            if _munmap(lo, hi - lo) != 0:
                return _fail(ctypes.get_errno())
            del self._maps[s]
            if s < lo:
                self._maps[s] = lo
            if hi < e:
                self._maps[hi] = e
            for page in [a for a in self._prot if lo <= a < hi]:
                del self._prot[page]
        return OpResult()

    def _own_run_end(self, addr: int, end: int) -> int:
        """Where the run of this backend's mappings from ``addr`` on stops, at most ``end``."""
        while addr < end:
            hit = next((e for s, e in self._maps.items() if s <= addr < e), None)
            if hit is None:
                break
            addr = hit
        return min(addr, end)

    def mprotect(self, addr: int, length: int, prot: int) -> OpResult:
        """mprotect(2) restricted to this backend's mappings: a call the kernel refuses before
        looking at the mappings (an unaligned address, a bad ``prot``, a wrapping length) reaches
        it; otherwise only the run of those mappings from ``addr`` on is changed (the pages after
        it may be the interpreter's) and, like the kernel at a hole, the rest is ENOMEM."""
        self.last_error = None
        if not 0 <= addr <= _U64 or not 0 <= length <= _U64 or not 0 <= prot < 1 << 64:
            return _fail(errno.EINVAL)
        end = addr + _page_up(length)
        stop = end
        if addr % PAGE == 0 and length and end <= _U64 and not prot & ~MPROTECT_BITS:
            stop = self._own_run_end(addr, end)
            if stop == addr:
                return self._refuse("mprotect", f"{addr:#x} is not in a mapping of this backend", errno.ENOMEM)
        ctypes.set_errno(0)
        if _mprotect(addr, stop - addr if stop < end else length, prot) != 0:
            return _fail(ctypes.get_errno())
        set_protection(self._prot, range(addr, stop, PAGE), prot)
        if stop < end:
            return self._refuse("mprotect", f"[{stop:#x}, {end:#x}) is not in a mapping of this backend",
                                errno.ENOMEM)
        return OpResult()

    def read_mem(self, addr: int, length: int) -> OpResult:
        self.last_error = None
        if length < 0:
            return _fail(errno.EINVAL)
        if not self._covered(addr, length, write=False):
            return self._refuse("read_mem", f"[{addr:#x}, +{length:#x}) is not in a mapping of this backend",
                                errno.EFAULT)
        return OpResult(data=ctypes.string_at(addr, length))

    def write_mem(self, addr: int, data: bytes) -> OpResult:
        self.last_error = None
        if not self._covered(addr, len(data), write=True):
            return self._refuse("write_mem", f"[{addr:#x}, +{len(data):#x}) is not in a mapping of this backend",
                                errno.EFAULT)
        ctypes.memmove(addr, bytes(data), len(data))
        return OpResult()

    # -- Backend: sysfs ------------------------------------------------------
    def sysfs_read(self, path: str) -> OpResult:
        self.last_error = None
        norm = normalise_path(path)
        if norm is None or not norm.startswith("/sys/"):
            return self._refuse("sysfs_read", f"{path!r} is not under /sys")
        try:
            fd = os.open(self.tree.path(norm), os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            return _fail(e.errno or errno.EIO)
        try:
            data = os.read(fd, 1 << 16)
        except OSError as e:
            return _fail(e.errno or errno.EIO)
        finally:
            os.close(fd)
        return OpResult(ret=len(data), data=data)

    def sysfs_write(self, path: str, value: str) -> OpResult:
        """One write(2) of ``value`` if the host-safety policy allows it, after the
        functions it may change are recorded.  A refusal is EPERM, the file untouched."""
        self.last_error = None
        try:
            if self.store.failures:
                raise RefusedError(f"an earlier restore failed ({'; '.join(self.store.failures)}); "
                              f"state kept in {self.store.path}")
            change = self.policy.check(path, value)
            self.store.record(change)
        except RefusedError as e:
            return self._refuse("sysfs_write", str(e))
        try:
            return OpResult(ret=self.tree.write(path, value))
        except OSError as e:
            return _fail(e.errno or errno.EIO)

    # -- Backend: reset ------------------------------------------------------
    def reset(self) -> None:
        """Close every fd and unmap every mapping this backend made, then put back
        every recorded sysfs value.  Raises RestoreError if something could not be
        put back; the state file then stays, listing what failed."""
        for fd in sorted(self._fds):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()
        for s, e in self._maps.items():
            _munmap(s, e - s)
        self._maps.clear()
        self._prot.clear()
        self.last_error = None
        failures = self.store.restore()
        if failures:
            raise RestoreError(
                "could not put the PCI functions back: " + "; ".join(failures)
                + f". The record stays in {self.store.path}; replay it with "
                "harness.backends.sysfs_state.restore_from_state_file once fixed"
            )


def _lowest_free_fd(open_fd: int) -> int:
    """The number the next fd this process opens gets (dup() takes the lowest free one)."""
    probe = os.dup(open_fd)
    os.close(probe)
    return probe

