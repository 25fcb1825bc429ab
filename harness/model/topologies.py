"""Topologies and facts the model boots with when no kernel tells it otherwise.

``vm_topology`` is the guest the VM runner boots (q35 + intel-iommu): an
isolated e1000, an SR-IOV NVMe PF, the ICH9 functions at 00:1f.* that share
one group (docs/measured.md: binding 00:1f.0 to vfio-pci gives a group that
GET_STATUS reports not viable; two of its members stay on kernel drivers), and
two e1000s behind a conventional PCI bridge, which share one group with the
bridge: one on vfio-pci, one on e1000, the non-viable group with exactly one
kernel-driver sibling that cases can move.  The layout (addresses, IDs, drivers,
groups) is harness.backends.guest_layout's; this module adds the hardware facts.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..backends.base import QEMU_HEADER_WMASK, Facts, PciFunction, Topology
from ..backends.guest_layout import NVME_PF_PROPS, PROFILES

DEFAULT_CONFIG = frozenset(
    {
        "IOMMUFD", "IOMMUFD_TEST", "IOMMUFD_DRIVER", "VFIO", "VFIO_CONTAINER",
        "VFIO_IOMMU_TYPE1", "VFIO_DEVICE_CDEV", "VFIO_GROUP", "VFIO_NOIOMMU", "VFIO_PCI",
        "VFIO_PCI_CORE", "PCI_IOV", "PCI_STUB", "INTEL_IOMMU", "IRQ_REMAP",
        "TRANSPARENT_HUGEPAGE", "FAULT_INJECTION", "FAILSLAB",
    }
)


DEFAULT_RELEASE = "6.12.117"


def default_facts(release: str = DEFAULT_RELEASE) -> Facts:
    """The model answers for both guest profiles at once: VFIO devices behind a
    vIOMMU and working mock domains; it mirrors kernel ``release`` (model/gates.py)."""
    return Facts(
        kernel=release, config=DEFAULT_CONFIG, container="legacy",
        mock_domains=True, enable_sriov=True, profile="model",
    )


def guest_facts(profile: str, release: str | None = None) -> Facts:
    """The facts of the model alone as the test VM guest of ``profile``, mirroring ``release``
    (default: DEFAULT_RELEASE): for the ``viommu`` guest the default machine's (default_facts);
    for the ``mock`` one, without a vIOMMU, those of a guest booted in vfio's no-IOMMU mode
    (docs/vm.md)."""
    facts = default_facts(release or DEFAULT_RELEASE)
    return facts if PROFILES[profile].viommu else replace(facts, vfio_noiommu=True, profile=profile)


def nvme_msix_vectors(props: dict[str, int | str] = NVME_PF_PROPS) -> tuple[int, int]:
    """The MSI-X Table Size of QEMU 7.2's SR-IOV NVMe PF and of each of its VFs, from its
    `-device` properties.  hw/nvme/ctrl.c gives the PF msix_qsize vectors minus the
    sriov_vi_flexible ones it keeps for its VFs (nvme_init_state(): conf_msix_qsize;
    nvme_update_msixcap_ts() writes that Table Size), and a VF sriov_max_vi_per_vf, whose
    default is sriov_vi_flexible / sriov_max_vfs.  The guest's PF reports 2
    (VFIO_DEVICE_GET_IRQ_INFO, cases/device/irq-info-count.yaml)."""
    qsize, flexible, max_vfs = (int(props[k]) for k in ("msix_qsize", "sriov_vi_flexible", "sriov_max_vfs"))
    return qsize - flexible, flexible // max_vfs


_NVME_PF_MSIX, _NVME_VF_MSIX = nvme_msix_vectors()

# Hardware facts by device kind (GuestFunction.name): QEMU 7.2's devices as the guest's
# kernel sees them.  A kernel backend discovers these from sysfs (`class`, `resource`,
# `reset_method`, `sriov_*`, the config space); they are what the model boots with when
# no kernel told it.  The NVMe's SR-IOV and MSI-X sizes follow guest_layout.NVME_PF_PROPS.
# Neither the e1000 nor the NVMe has an MSI capability (msi_vectors 0).
HARDWARE: dict[str, dict[str, Any]] = {
    "q35-host-bridge": dict(class_code=0x060000),
    # 128 KiB MMIO BAR0, 64-byte I/O BAR1, option ROM; INTx only, no reset method
    # (docs/measured.md: the upstream reset, MSI and MSI-X tests skip on it).
    # Config space (read in the 6.12.118 and 7.2.13 guests, /sys/bus/pci/devices/*/config and
    # the vfio-pci config region, docs/measured.md): command 0x0103 (IO, MEM, SERR) once enabled,
    # a write of all ones leaves IO|MEM|MASTER|SERR and keeps a cache line size; no
    # capabilities (PCI_STATUS_CAP_LIST clear).
    "e1000": dict(is_pcie=False, class_code=0x020000, bar_sizes=(0x20000, 0x40, 0, 0, 0, 0), io_bars=(1,),
                  rom_size=0x40000, interrupt_pin=1, command=0x0103, config_wmask=QEMU_HEADER_WMASK),
    # SR-IOV: 16 KiB 64-bit BAR0 with the MSI-X table at 0x2000, FLR; VFs at function offset 1
    # stride 1; MSI-X vectors from the QEMU properties (nvme_msix_vectors()).
    # Config space (measured as the e1000's): BAR0 64-bit, command as the e1000's; capabilities
    # MSI-X at 0x40 -> PCI Express (v2, root-complex integrated endpoint) at 0x80 -> PM at 0x60;
    # extended: ARI at 0x100 -> SR-IOV at 0x120.
    "nvme": dict(sriov_totalvfs=int(NVME_PF_PROPS["sriov_max_vfs"]), class_code=0x010802,
                 bar_sizes=(0x4000, 0, 0, 0, 0, 0), interrupt_pin=1,
                 bar_mem64=(0,), command=0x0103, config_wmask=QEMU_HEADER_WMASK,
                 capabilities=((0x40, 0x11), (0x80, 0x10), (0x60, 0x01)), pcie_flags=0x0092,
                 ext_capabilities=((0x100, 0x0E, 1), (0x120, 0x10, 1)),
                 msix_vectors=_NVME_PF_MSIX, msix_bar=0, msix_table_offset=0x2000, reset_methods=("flr",),
                 sriov_offset=1, sriov_stride=1, sriov_vf_device=0x0010,
                 sriov_vf_bar_sizes=(0x4000, 0, 0, 0, 0, 0), sriov_vf_msix_vectors=_NVME_VF_MSIX,
                 sriov_vf_reset_methods=("flr",)),
    "ich9-lpc": dict(is_pcie=False, class_code=0x060100),
    "ich9-ahci": dict(is_pcie=False, class_code=0x010601, bar_sizes=(0, 0, 0, 0, 0x20, 0x1000), io_bars=(4,),
                      interrupt_pin=1, msi_vectors=1),
    "ich9-smbus": dict(is_pcie=False, class_code=0x0C0500, bar_sizes=(0, 0, 0, 0, 0x40, 0), io_bars=(4,),
                       interrupt_pin=1),
    # QEMU `pci-bridge` (1b36:0001): a conventional PCI-PCI bridge.
    "pci-bridge": dict(is_pcie=False, class_code=0x060400),
}


def _bus(bdf: str) -> str:
    return bdf.rsplit(":", 1)[0]


def vm_topology(profile_name: str = "viommu") -> Topology:
    """The guest's functions (harness.backends.guest_layout) with their hardware facts, at
    boot: the ``vfio`` ones on vfio-pci with cdevs in bind order, the others on their driver.
    A function on the root bus cannot be hot reset (pci_probe_reset_bus() needs
    bus->self); a secondary bus reset below a bridge resets every function on that bus.
    A profile without a vIOMMU has no IOMMU groups but the vfio-noiommu ones vfio made for its
    ``vfio`` functions (numbered from 0 in bind order, without cdevs: drivers/vfio/vfio.h:359-366)."""
    profile = PROFILES[profile_name]
    layout = sorted(profile.machine_functions(), key=lambda f: (f.group is None, f.group or 0, f.bdf))
    bound = profile.bind_order()
    cdevs = {bdf: f"vfio{i}" for i, bdf in enumerate(bound)}
    fns = []
    for f in layout:
        root_bus = _bus(f.bdf).endswith(":00")
        group, cdev, override = f.group, cdevs.get(f.bdf), None
        if not profile.viommu:
            # guest-init binds through driver_override, which stays (a reprobe binds vfio-pci again)
            group = bound.index(f.bdf) if f.bdf in bound else None
            cdev, override = None, "vfio-pci" if f.vfio else None
        fns.append(PciFunction(
            f.bdf, f.vendor, f.device, iommu_group=group, driver="vfio-pci" if f.vfio else f.driver,
            cdev=cdev, driver_override=override, name=f.name, native_driver=f.driver,
            noiommu=not profile.viommu and group is not None,
            hot_reset_functions=() if root_bus else tuple(g.bdf for g in layout if _bus(g.bdf) == _bus(f.bdf)),
            **HARDWARE[f.name]))
    return Topology({f.bdf: f for f in fns})
