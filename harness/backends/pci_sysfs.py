"""Reading the PCI core's sysfs: the functions, their drivers, groups and SR-IOV state.

Every path the harness names is an absolute sysfs path ("/sys/bus/pci/...");
``SysfsTree`` maps it under a root, "/" on a real host and a directory of
regular files and symlinks in the harness's own tests.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any

from .base import QEMU_HEADER_WMASK, QEMU_IDS, PciFunction, Topology

BDF_RE = re.compile(r"[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]\Z")
PCI_DEVICES = "/sys/bus/pci/devices"
PCI_DRIVERS = "/sys/bus/pci/drivers"
DRIVERS_PROBE = "/sys/bus/pci/drivers_probe"
ENABLE_SRIOV = "/sys/module/vfio_pci/parameters/enable_sriov"
# vfio.enable_unsafe_noiommu_mode (drivers/vfio/vfio_main.c: vfio_noiommu, 0644).
NOIOMMU_MODE = "/sys/module/vfio/parameters/enable_unsafe_noiommu_mode"
# vfio_iommu_type1.dma_entry_limit: how many mappings a type1 container opened afterwards takes.
DMA_ENTRY_LIMIT = "/sys/module/vfio_iommu_type1/parameters/dma_entry_limit"
# PCI_CFG_SPACE_SIZE: a config file larger than this exposes extended config
# space, which only PCI Express (and PCI-X 2.0) functions have.
PCI_CFG_SPACE_SIZE = 256

# include/linux/pci_ids.h, base class << 8 | subclass: a label for functions without a driver.
_CLASS_NAMES = {
    0x0100: "scsi", 0x0101: "ide", 0x0106: "sata", 0x0108: "nvme", 0x0200: "ethernet",
    0x0300: "vga", 0x0403: "audio", 0x0600: "host-bridge", 0x0601: "isa-bridge",
    0x0604: "pci-bridge", 0x0c03: "usb", 0x0c05: "smbus", 0x0880: "system-peripheral",
}


def normalise_bdf(text: str) -> str:
    """"00:02.0" or "0000:00:02.0" (any case) as the kernel names it, else ValueError."""
    bdf = text.strip().lower()
    if re.fullmatch(r"[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]", bdf):
        bdf = "0000:" + bdf
    if not BDF_RE.match(bdf):
        raise ValueError(f"{text!r} is not a PCI function address (DDDD:BB:DD.F)")
    return bdf


def normalise_path(path: str) -> str | None:
    """An absolute path with "." and ".." resolved lexically, or None if it is not absolute."""
    if not path.startswith("/") or "\0" in path:
        return None
    return "/" + os.path.normpath(path).lstrip("/")


class SysfsTree:
    def __init__(self, root: str = "/"):
        self.root = root

    @property
    def is_host(self) -> bool:
        return os.path.realpath(self.root) == "/"

    def path(self, path: str) -> str:
        norm = normalise_path(path)
        if norm is None:
            raise ValueError(f"{path!r} is not an absolute path")
        return os.path.join(self.root, norm.lstrip("/"))

    # -- primitives ---------------------------------------------------------
    def read(self, path: str) -> str | None:
        """The file's text without its trailing newline, None if it can't be read."""
        try:
            with open(self.path(path), encoding="utf-8", errors="replace") as f:
                return f.read().rstrip("\n")
        except OSError:
            return None

    def write(self, path: str, value: str) -> int:
        """One write(2) of ``value``, as `echo -n` would; OSError on failure."""
        fd = os.open(self.path(path), os.O_WRONLY | os.O_CLOEXEC)
        try:
            return os.write(fd, value.encode())
        finally:
            os.close(fd)

    def read_bytes(self, path: str) -> bytes:
        try:
            with open(self.path(path), "rb") as f:
                return f.read()
        except OSError:
            return b""

    def link_name(self, path: str) -> str | None:
        try:
            return os.path.basename(os.readlink(self.path(path)))
        except OSError:
            return None

    def exists(self, path: str) -> bool:
        return os.path.lexists(self.path(path))

    def device_path(self, bdf: str) -> list[str]:
        """The components of /sys/devices/... that /sys/bus/pci/devices/BDF links to."""
        try:
            return os.readlink(self.path(f"{PCI_DEVICES}/{bdf}")).split("/")
        except OSError:
            return []

    def upstream_bridge(self, bdf: str) -> str | None:
        """The bridge above ``bdf``'s bus, or None on a root bus (pci0000:00)."""
        parts = self.device_path(bdf)
        return parts[-2] if len(parts) >= 2 and BDF_RE.match(parts[-2]) else None

    def listdir(self, path: str) -> list[str]:
        try:
            return sorted(os.listdir(self.path(path)))
        except OSError:
            return []

    def read_int(self, path: str, base: int = 10) -> int | None:
        text = self.read(path)
        try:
            return int(text, base) if text is not None else None
        except ValueError:
            return None

    # -- one PCI function ---------------------------------------------------
    def functions(self) -> list[str]:
        return [b for b in self.listdir(PCI_DEVICES) if BDF_RE.match(b)]

    def has_function(self, bdf: str) -> bool:
        return self.exists(f"{PCI_DEVICES}/{bdf}")

    def driver(self, bdf: str) -> str | None:
        return self.link_name(f"{PCI_DEVICES}/{bdf}/driver")

    def driver_override(self, bdf: str) -> str | None:
        text = self.read(f"{PCI_DEVICES}/{bdf}/driver_override")
        return None if text in (None, "", "(null)") else text

    def sriov_numvfs(self, bdf: str) -> int | None:
        return self.read_int(f"{PCI_DEVICES}/{bdf}/sriov_numvfs")

    def reset_method(self, bdf: str) -> str | None:
        return self.read(f"{PCI_DEVICES}/{bdf}/reset_method")

    def physfn(self, bdf: str) -> str | None:
        return self.link_name(f"{PCI_DEVICES}/{bdf}/physfn")

    def virtfns(self, bdf: str) -> list[str]:
        """The PF's VFs in VF index order (the virtfnN links)."""
        links = [n for n in self.listdir(f"{PCI_DEVICES}/{bdf}") if re.fullmatch(r"virtfn\d+", n)]
        links.sort(key=lambda n: int(n[6:]))
        return [v for v in (self.link_name(f"{PCI_DEVICES}/{bdf}/{n}") for n in links) if v]

    def iommu_group(self, bdf: str) -> int | None:
        name = self.link_name(f"{PCI_DEVICES}/{bdf}/iommu_group")
        return int(name) if name is not None and name.isdigit() else None

    def noiommu_group(self, group: int | None) -> bool:
        """Whether IOMMU group ``group`` is one vfio made in no-IOMMU mode (its name,
        iommu_group_set_name(), drivers/vfio/group.c vfio_noiommu_group_alloc())."""
        if group is None:
            return False
        return (self.read(f"/sys/kernel/iommu_groups/{group}/name") or "").strip() == "vfio-noiommu"

    def group_members(self, group: int) -> list[str]:
        return self.listdir(f"/sys/kernel/iommu_groups/{group}/devices")

    def cdev(self, bdf: str) -> str | None:
        """"vfio3" when the function has /dev/vfio/devices/vfio3 (drivers/vfio/device_cdev.c)."""
        entries = self.listdir(f"{PCI_DEVICES}/{bdf}/vfio-dev")
        return entries[0] if len(entries) == 1 else None

    def is_pcie(self, bdf: str) -> bool | None:
        try:
            return os.path.getsize(self.path(f"{PCI_DEVICES}/{bdf}/config")) > PCI_CFG_SPACE_SIZE
        except OSError:
            return None

    def resources(self, bdf: str) -> list[tuple[int, int]]:
        """(size, flags) of every line of the `resource` file: BARs 0-5, the ROM,
        then the SR-IOV VF BARs of a PF (drivers/pci/pci-sysfs.c resource_show)."""
        out = []
        for line in (self.read(f"{PCI_DEVICES}/{bdf}/resource") or "").splitlines():
            try:
                start, end, flags = (int(x, 16) for x in line.split())
            except ValueError:
                out.append((0, 0))
                continue
            out.append((end - start + 1 if end else 0, flags))
        return out

    def bar_sizes(self, bdf: str) -> tuple[int, ...]:
        """Sizes of BARs 0-5 (0 when unused)."""
        sizes = [size for size, _ in self.resources(bdf)[:6]]
        return tuple(sizes + [0] * (6 - len(sizes)))

    def class_name(self, bdf: str) -> str:
        code = self.read_int(f"{PCI_DEVICES}/{bdf}/class", 16)
        if code is None:
            return ""
        return _CLASS_NAMES.get(code >> 8, f"class-{code:06x}")

    def function(self, bdf: str) -> PciFunction:
        driver = self.driver(bdf)
        group = self.iommu_group(bdf)
        f_noiommu = self.noiommu_group(group)
        f = PciFunction(
            bdf=bdf,
            vendor=self.read_int(f"{PCI_DEVICES}/{bdf}/vendor", 16) or 0,
            device=self.read_int(f"{PCI_DEVICES}/{bdf}/device", 16) or 0,
            iommu_group=group,
            noiommu=f_noiommu,
            driver=driver,
            driver_override=self.driver_override(bdf),
            sriov_totalvfs=self.read_int(f"{PCI_DEVICES}/{bdf}/sriov_totalvfs") or 0,
            sriov_numvfs=self.sriov_numvfs(bdf) or 0,
            physfn=self.physfn(bdf),
            # A noiommu device has vfio-dev/vfioN in sysfs but no cdev node (vfio.h:359-366).
            cdev=None if f_noiommu else self.cdev(bdf),
            name=driver or self.class_name(bdf),
        )
        pcie = self.is_pcie(bdf)
        if pcie is not None:
            f.is_pcie = pcie
        return fill_hardware_fields(f, self, bdf)

    def topology(self) -> Topology:
        return Topology({bdf: self.function(bdf) for bdf in self.functions()})


def fill_hardware_fields(f: PciFunction, tree: SysfsTree, bdf: str) -> PciFunction:
    """Fill the hardware-description fields PciFunction has grown (BAR sizes, ...)
    from sysfs, for those this tree can answer; the rest keep their defaults.
    The names are guesses at what the hardware description will call them."""
    have = {fl.name for fl in dataclasses.fields(f)}
    values: dict[str, Any] = {}
    if "bar_sizes" in have:
        values["bar_sizes"] = tree.bar_sizes(bdf)
    if "revision" in have:
        rev = tree.read_int(f"{PCI_DEVICES}/{bdf}/revision", 16)
        if rev is not None:
            values["revision"] = rev
    if "class_code" in have:
        code = tree.read_int(f"{PCI_DEVICES}/{bdf}/class", 16)
        if code is not None:
            values["class_code"] = code
    values.update({k: v for k, v in _described(tree, bdf, f).items() if k in have})
    return dataclasses.replace(f, **values) if values else f


_IORESOURCE_IO = 0x100  # include/linux/ioport.h
_IORESOURCE_MEM_64 = 0x00100000
_PCI_CAP_ID_MSI, _PCI_CAP_ID_MSIX = 0x05, 0x11  # include/uapi/linux/pci_regs.h
_PCI_CAP_ID_EXP = 0x10


def _capabilities(config: bytes) -> dict[int, int]:
    """Capability id -> offset, walking the standard list (pci_regs.h: PCI_CAPABILITY_LIST)."""
    caps: dict[int, int] = {}
    if len(config) < 64 or not config[0x06] & 0x10:  # PCI_STATUS_CAP_LIST
        return caps
    pos, seen = config[0x34] & ~3, 0
    while pos >= 0x40 and pos + 4 <= len(config) and seen < 48:
        caps.setdefault(config[pos], pos)
        pos, seen = config[pos + 1] & ~3, seen + 1
    return caps


def _chain(config: bytes) -> tuple[tuple[int, int], ...]:
    """The standard capability chain as (offset, ID), in chain order."""
    out: list[tuple[int, int]] = []
    if len(config) < 64 or not config[0x06] & 0x10:
        return ()
    pos = config[0x34] & ~3
    while pos >= 0x40 and pos + 2 <= len(config) and len(out) < 48:
        out.append((pos, config[pos]))
        pos = config[pos + 1] & ~3
    return tuple(out)


def _ext_chain(config: bytes) -> tuple[tuple[int, int, int], ...]:
    """The extended capability chain as (offset, ID, version), from 0x100 (the whole config
    space is readable by root only; a shorter read describes none)."""
    out: list[tuple[int, int, int]] = []
    pos = 0x100
    while pos >= 0x100 and pos + 4 <= len(config) and len(out) < 960:
        header = int.from_bytes(config[pos:pos + 4], "little")
        if not header:
            break
        out.append((pos, header & 0xFFFF, (header >> 16) & 0xF))
        pos = (header >> 20) & 0xFFC
    return tuple(out)


def _described(tree: SysfsTree, bdf: str, f: PciFunction) -> dict[str, Any]:
    """The hardware description the model needs, from sysfs and config space."""
    dev = f"{PCI_DEVICES}/{bdf}"
    res = tree.resources(bdf)
    out: dict[str, Any] = {
        "io_bars": tuple(i for i, (size, flags) in enumerate(res[:6]) if size and flags & _IORESOURCE_IO),
        "rom_size": res[6][0] if len(res) > 6 else 0,
        "reset_methods": tuple((tree.read(f"{dev}/reset_method") or "").split()),
    }
    if f.driver and f.driver not in ("vfio-pci", "pci-stub"):
        out["native_driver"] = f.driver
    # A secondary bus reset needs a bridge above the bus (pci_bus_reset(): bus->self,
    # drivers/pci/pci.c:5798-5806) and resets everything below that bridge.  Slot resets
    # (hotplug controllers) are not described.
    bridge = tree.upstream_bridge(bdf)
    if bridge is not None:
        out["hot_reset_functions"] = tuple(b for b in tree.functions() if bridge in tree.device_path(b)[:-1])
    out["bar_mem64"] = tuple(i for i, (size, flags) in enumerate(res[:6]) if size and flags & _IORESOURCE_MEM_64)
    if (f.vendor, f.device) in QEMU_IDS:
        out["config_wmask"] = QEMU_HEADER_WMASK
    config = tree.read_bytes(f"{dev}/config")
    if len(config) >= 0x40:
        out["interrupt_pin"] = config[0x3D]
        out["command"] = int.from_bytes(config[4:6], "little")
        chain = _chain(config)
        out["capabilities"] = chain
        exp = next((pos for pos, cap in chain if cap == _PCI_CAP_ID_EXP), None)
        if exp is not None:
            out["pcie_flags"] = int.from_bytes(config[exp + 2:exp + 4], "little")
        out["ext_capabilities"] = _ext_chain(config)
        caps = _capabilities(config)
        if _PCI_CAP_ID_MSI in caps and caps[_PCI_CAP_ID_MSI] + 4 <= len(config):
            ctrl = int.from_bytes(config[caps[_PCI_CAP_ID_MSI] + 2:caps[_PCI_CAP_ID_MSI] + 4], "little")
            out["msi_vectors"] = 1 << ((ctrl >> 1) & 7)
        if _PCI_CAP_ID_MSIX in caps and caps[_PCI_CAP_ID_MSIX] + 8 <= len(config):
            at = caps[_PCI_CAP_ID_MSIX]
            ctrl = int.from_bytes(config[at + 2:at + 4], "little")
            table = int.from_bytes(config[at + 4:at + 8], "little")
            out.update(msix_vectors=(ctrl & 0x7FF) + 1, msix_bar=table & 7, msix_table_offset=table & ~7)
    if f.sriov_totalvfs:
        for name in ("sriov_offset", "sriov_stride"):
            value = tree.read_int(f"{dev}/{name}")
            if value is not None:
                out[name] = value
        vf_device = tree.read_int(f"{dev}/sriov_vf_device", 16)
        if vf_device is not None:
            out["sriov_vf_device"] = vf_device
        # The IOV resources hold every VF's BAR back to back (drivers/pci/iov.c sriov_init).
        iov = [size // f.sriov_totalvfs for size, _ in res[7:13]]
        if iov:
            out["sriov_vf_bar_sizes"] = tuple(iov + [0] * (6 - len(iov)))
    return out
