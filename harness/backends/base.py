"""The operations a case can perform on a kernel, and what each returns.

Two implementations: the bundled reference model (``harness.model``) and a
real kernel (``harness.backends.kernel``).  Everything a backend returns is
plain data, so traces from the two can be compared field by field.
"""

from __future__ import annotations

import errno as _errno
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace

# Drivers that set driver_managed_dma, so binding them does not claim DMA
# ownership of the group (drivers/vfio/pci/vfio_pci.c, drivers/pci/pci-stub.c,
# drivers/pci/pcie/portdrv.c).
DRIVER_MANAGED_DMA = frozenset({"vfio-pci", "pci-stub", "pcieport"})


@dataclass(frozen=True)
class OpResult:
    """The result of one operation: ``ret`` as the syscall returned it (an fd,
    an address, a count, 0), ``errno`` 0 on success, and any bytes read back."""

    ret: int = 0
    errno: int = 0
    data: bytes = b""

    @property
    def ok(self) -> bool:
        return self.errno == 0

    @property
    def errno_name(self) -> str | None:
        return errno_name(self.errno) if self.errno else None


# Where Python's errno table picks an alias, use the name the kernel's sources use.
_KERNEL_NAMES = {_errno.EOPNOTSUPP: "EOPNOTSUPP", _errno.EAGAIN: "EAGAIN", _errno.EDEADLK: "EDEADLK"}


def errno_name(code: int) -> str:
    return _KERNEL_NAMES.get(code) or _errno.errorcode.get(code, str(code))


# The header bits a config write changes on QEMU's e1000 and NVMe, (offset, mask): IO, MEM,
# MASTER and SERR of the command register, the cache line size (docs/measured.md: all ones
# written keep those; the latency timer stays 0).  No sysfs file tells it; the kernel backend
# gives it to these devices (harness.backends.guest_layout's), the model's hardware table to its own.
QEMU_HEADER_WMASK = ((0x04, 0x07), (0x05, 0x01), (0x0C, 0xFF))
QEMU_IDS = frozenset({(0x8086, 0x100E), (0x1B36, 0x0010)})


@dataclass
class PciFunction:
    bdf: str
    vendor: int
    device: int
    iommu_group: int | None
    driver: str | None = None
    driver_override: str | None = None
    sriov_totalvfs: int = 0
    sriov_numvfs: int = 0
    physfn: str | None = None       # set on VFs: the PF's bdf
    cdev: str | None = None         # "vfio3" when /dev/vfio/devices/vfio3 exists
    # Its IOMMU group is a vfio-noiommu one (no IOMMU behind it: vfio made the group in its
    # enable_unsafe_noiommu_mode, /dev/vfio/noiommu-N, drivers/vfio/group.c).
    noiommu: bool = False
    is_pcie: bool = True
    name: str = ""                  # a human label ("e1000", "nvme", "ich9-lpc")
    # -- Hardware description.  A kernel backend discovers these from sysfs (the
    # `class`, `resource`, `reset_method` and `sriov_*` files, the config space's
    # capability list); the reference model answers the VFIO device ioctls from them.
    class_code: int = 0
    # pci_resource_len() of BARs 0-5: 0 for an unimplemented BAR or the upper half
    # of a 64-bit BAR.
    bar_sizes: tuple[int, ...] = (0, 0, 0, 0, 0, 0)
    io_bars: tuple[int, ...] = ()   # indices of the BARs in I/O space (never mmappable)
    rom_size: int = 0               # expansion ROM BAR size; 0: no ROM
    interrupt_pin: int = 0          # PCI_INTERRUPT_PIN (1 = INTA); 0: no INTx
    msi_vectors: int = 0            # 1 << (MSI Multiple Message Capable); 0: no MSI capability
    msix_vectors: int = 0           # MSI-X table size; 0: no MSI-X capability
    msix_bar: int = 0               # MSI-X table BIR ...
    msix_table_offset: int = 0      # ... and offset in that BAR
    bar_mem64: tuple[int, ...] = () # indices of the 64-bit memory BARs (the next BAR is their upper half)
    # The config space as the hardware shows it (what vfio-pci's virtualization starts from):
    # the command register once the function is enabled, the header bits a write changes,
    # the capability chain as (offset, ID) in chain order, the PCI Express capability's
    # flags (version, port type) and the extended chain as (offset, ID, version).
    command: int = 0
    config_wmask: tuple[tuple[int, int], ...] = ()   # (offset, bits a write changes) of the header
    capabilities: tuple[tuple[int, int], ...] = ()
    pcie_flags: int = 0
    ext_capabilities: tuple[tuple[int, int, int], ...] = ()
    # The reset methods pci_init_reset_methods() found, in the kernel's order
    # ("flr", "pm", "bus", ...): what `reset_method` reads at boot.
    reset_methods: tuple[str, ...] = ()
    # The functions a slot or secondary-bus reset of this function's slot/bus would
    # reset, this one included; empty when neither pci_probe_reset_slot() nor
    # pci_probe_reset_bus() succeeds (a function on the root bus).
    hot_reset_functions: tuple[str, ...] = ()
    # The kernel driver whose id_table matches the function (what binds it when no
    # driver_override is set); None: no such driver in the kernel.
    native_driver: str | None = None
    # SR-IOV capability of a PF (sriov_offset, sriov_stride, sriov_vf_device) and what
    # each of its VFs has (the IOV BARs divided by TotalVFs, the VF's MSI-X table
    # size and reset methods; a VF's MSI-X table sits where the PF's does).
    sriov_offset: int = 0
    sriov_stride: int = 0
    sriov_vf_device: int = 0
    sriov_vf_bar_sizes: tuple[int, ...] = (0, 0, 0, 0, 0, 0)
    sriov_vf_msix_vectors: int = 0
    sriov_vf_reset_methods: tuple[str, ...] = ()

    @property
    def is_pf(self) -> bool:
        return self.sriov_totalvfs > 0

    @property
    def is_vf(self) -> bool:
        return self.physfn is not None


@dataclass
class Topology:
    functions: dict[str, PciFunction] = field(default_factory=dict)

    def groups(self) -> dict[int, list[PciFunction]]:
        out: dict[int, list[PciFunction]] = {}
        for f in sorted(self.functions.values(), key=lambda f: f.bdf):
            if f.iommu_group is not None:
                out.setdefault(f.iommu_group, []).append(f)
        return out

    def copy(self) -> Topology:
        """An independent copy (every PciFunction field is immutable, so a shallow
        copy of each function is enough, and much cheaper than deepcopy)."""
        return Topology({bdf: replace(f) for bdf, f in self.functions.items()})

    def siblings(self, bdf: str) -> list[PciFunction]:
        g = self.functions[bdf].iommu_group
        return [f for f in self.groups().get(g, []) if f.bdf != bdf] if g is not None else []


@dataclass(frozen=True)
class Facts:
    """What a target kernel is, as far as cases may depend on it."""

    kernel: str = "6.12.117"
    # Kconfig symbols without the CONFIG_ prefix.
    config: frozenset[str] = frozenset()
    # What /dev/vfio/vfio is: "legacy" (drivers/vfio/container.c) or
    # "iommufd" (CONFIG_IOMMUFD_VFIO_CONTAINER), or "" when absent.
    container: str = "legacy"
    # IOMMU_TEST_OP_MOCK_DOMAIN works (no vIOMMU in the guest; docs/measured.md).
    mock_domains: bool = False
    # vfio_pci.enable_sriov at start.
    enable_sriov: bool = False
    # vfio.enable_unsafe_noiommu_mode at start (drivers/vfio/vfio_main.c vfio_noiommu).
    vfio_noiommu: bool = False
    profile: str = ""
    # The IOMMU the VFIO devices sit behind (QEMU 7.2 intel-iommu by default:
    # aw-bits 39; the interrupt window is reserved as IOMMU_RESV_MSI).
    iommu: IommuHw = field(default_factory=lambda: IommuHw())


@dataclass(frozen=True)
class IommuHw:
    kind: str = "intel"
    aperture_start: int = 0
    aperture_last: int = (1 << 39) - 1
    # Inclusive (start, last) reserved ranges every device of this IOMMU reports.
    reserved: tuple[tuple[int, int], ...] = ((0xFEE0_0000, 0xFEEF_FFFF),)
    pgsize_bitmap: int = 0x4020_1000  # 4K | 2M | 1G
    dirty_tracking: bool = False


# The name memfd() gives a memfd when the case names none ("memfd:NAME" in /proc/self/fd).
MEMFD_NAME = "vfio-conformance"


# The most bytes one read(2) of a step returns: a longer read is cut to this, on every backend.
MAX_READ = 1 << 24


def valid_align(align: int) -> bool:
    """An ``align`` mmap() takes: 0 (none), or a power of two of at least a page."""
    return align == 0 or (align >= 4096 and not align & (align - 1))


class Backend(ABC):
    """One target.  File descriptors and addresses are the target's own numbers."""

    name: str = "?"
    # Whether a signal may cut one of its operations short (a case's time limit) and leave it
    # usable after reset(): not over an agent's channel, where a reply would come after it.
    interruptible: bool = True

    @abstractmethod
    def facts(self) -> Facts: ...

    @abstractmethod
    def topology(self) -> Topology: ...

    @abstractmethod
    def path_exists(self, path: str) -> bool: ...

    def may_touch(self, bdf: str) -> bool:
        """Whether cases may use (and change the binding of) this PCI function."""
        return True

    @abstractmethod
    def open(self, path: str, flags: int = os.O_RDWR) -> OpResult: ...

    @abstractmethod
    def close(self, fd: int) -> OpResult: ...

    @abstractmethod
    def ioctl(self, fd: int, request: int, arg: bytes | int | None) -> OpResult:
        """``bytes``: copied into a buffer whose address is passed, read back into
        ``data`` after the call.  ``int``: passed as the argument itself (also how a
        raw pointer such as NULL is passed).  ``None``: 0."""

    @abstractmethod
    def mmap(self, length: int, align: int = 0) -> OpResult:
        """Anonymous read/write private mapping; ``ret`` is the address, a multiple of
        ``align`` (a power of two) when it is given."""

    @abstractmethod
    def munmap(self, addr: int, length: int) -> OpResult:
        """munmap(2) of [addr, addr + length): a part of a mapping leaves a hole in it."""

    @abstractmethod
    def mprotect(self, addr: int, length: int, prot: int) -> OpResult:
        """mprotect(2) of pages of a mapping a step made (``prot``: PROT_* of harness/uapi/mman.py);
        read_mem/write_mem of a page that no longer allows the access are EFAULT."""

    @abstractmethod
    def read_mem(self, addr: int, length: int) -> OpResult: ...

    @abstractmethod
    def write_mem(self, addr: int, data: bytes) -> OpResult: ...

    @abstractmethod
    def read(self, fd: int, length: int) -> OpResult: ...

    @abstractmethod
    def write(self, fd: int, data: bytes) -> OpResult: ...

    @abstractmethod
    def pread(self, fd: int, length: int, offset: int) -> OpResult:
        """pread(2) at ``offset`` (a loff_t: an offset of 2**63 or more is passed as the
        negative number it is); ``data`` holds what was read."""

    @abstractmethod
    def pwrite(self, fd: int, data: bytes, offset: int) -> OpResult:
        """pwrite(2) at ``offset`` (a loff_t, as for pread)."""

    @abstractmethod
    def mmap_fd(self, fd: int, length: int, offset: int, shared: bool = True) -> OpResult:
        """A read/write mapping of ``fd`` at ``offset`` (MAP_SHARED, or MAP_PRIVATE when
        ``shared`` is false); ``ret`` is the address.  ``munmap`` and ``reset`` unmap it."""

    @abstractmethod
    def eventfd(self, initval: int = 0) -> OpResult: ...

    @abstractmethod
    def memfd(self, size: int, name: str = MEMFD_NAME) -> OpResult:
        """memfd_create(2) (MFD_CLOEXEC) then ftruncate(2) to ``size``; ``ret`` is the fd.
        A failed ftruncate closes the new fd and returns its errno."""

    @abstractmethod
    def sysfs_read(self, path: str) -> OpResult: ...

    @abstractmethod
    def sysfs_write(self, path: str, value: str) -> OpResult: ...

    def ioctl_fail_nth(self, fd: int, request: int, arg: bytes | int | None, nth: int) -> OpResult:
        """The ioctl with its ``nth`` fault-injection site failing (a real kernel only)."""
        raise NotImplementedError(f"{self.name}: fault injection needs a real kernel")

    def fault_injected(self) -> bool:
        """Whether the last ioctl_fail_nth() reached its armed site."""
        raise NotImplementedError(f"{self.name}: fault injection needs a real kernel")

    def setup_fault_injection(self) -> str:
        """Make every allocation injectable; "" or why it cannot be done."""
        return f"{self.name}: fault injection needs a real kernel"

    def gcov_collect(self, reset: bool = False) -> dict[str, bytes]:
        """A gcov kernel's counters: each .gcda under /sys/kernel/debug/gcov by its path
        there (which is the build tree's path); ``reset``: then zero them all."""
        raise NotImplementedError(f"{self.name}: kernel coverage needs a real kernel")

    def select_mutant(self, number: int) -> str:
        """Make mutant ``number`` of a mutant-schemata kernel the live one (0: none), by
        writing it to every ``vcm_*`` module parameter (harness/mutate/schemata.py): "" or why not."""
        return f"{self.name}: mutant schemata need a real kernel"

    def kcov_enable(self) -> str:
        """Trace the kernel PCs the calling thread runs (KCOV, backends/kcov.py): "" or why not."""
        return f"{self.name}: KCOV needs a real kernel"

    def kcov_collect(self) -> bytes:
        """The distinct kernel PCs traced since the last collect, as backends/kcov.py encodes
        them (b"" when kcov_enable did not succeed)."""
        return b""

    @abstractmethod
    def reset(self) -> None:
        """Close every fd and unmap every mapping this backend made, and put back
        any sysfs state a case changed, so the next case starts clean."""
