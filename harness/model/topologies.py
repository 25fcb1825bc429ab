"""Topologies and facts the model boots with when no kernel tells it otherwise.

``vm_topology`` is the guest the VM runner boots (q35 + intel-iommu): an
isolated e1000, an SR-IOV NVMe PF, the ICH9 functions at 00:1f.* that share
one group (docs/measured.md: binding 00:1f.0 to vfio-pci gives a group that
GET_STATUS reports not viable; two of its members stay on kernel drivers), and
two e1000s behind a conventional PCI bridge, which share one group with the
bridge: one on vfio-pci, one on e1000, the non-viable group with exactly one
kernel-driver sibling that cases can move (to be confirmed on the VM).
"""

from __future__ import annotations

from ..backends.base import Facts, PciFunction, Topology

DEFAULT_CONFIG = frozenset(
    {
        "IOMMUFD", "IOMMUFD_TEST", "IOMMUFD_DRIVER", "VFIO", "VFIO_CONTAINER",
        "VFIO_IOMMU_TYPE1", "VFIO_DEVICE_CDEV", "VFIO_GROUP", "VFIO_NOIOMMU", "VFIO_PCI",
        "VFIO_PCI_CORE", "PCI_IOV", "PCI_STUB", "INTEL_IOMMU", "IRQ_REMAP",
        "TRANSPARENT_HUGEPAGE", "FAULT_INJECTION", "FAILSLAB",
    }
)


# A secondary bus reset of bus 1 (below the pci-bridge) resets both e1000s.
BEHIND_BRIDGE = ("0000:01:01.0", "0000:01:02.0")


DEFAULT_RELEASE = "6.12.117"


def default_facts(release: str = DEFAULT_RELEASE) -> Facts:
    """The model answers for both guest profiles at once: VFIO devices behind a
    vIOMMU and working mock domains; it mirrors kernel ``release`` (model/gates.py)."""
    return Facts(
        kernel=release, config=DEFAULT_CONFIG, container="legacy",
        mock_domains=True, enable_sriov=True, profile="model",
    )


def vm_topology() -> Topology:
    # The hardware fields (class_code, BARs, ROM, INTx pin, MSI/MSI-X, reset methods,
    # SR-IOV layout, native driver) describe QEMU 7.2's devices.  They are hardware
    # descriptions a kernel backend discovers from sysfs (`class`, `resource`,
    # `reset_method`, `sriov_*`, the config space); these values are what the model
    # boots with when no kernel told it.  No function here can be hot reset: they all
    # sit on the root bus (pci_probe_reset_bus() needs bus->self).
    fns = [
        PciFunction("0000:00:00.0", 0x8086, 0x29C0, iommu_group=0, driver=None, name="q35-host-bridge",
                    class_code=0x060000),
        # e1000: 128 KiB MMIO BAR0, 64-byte I/O BAR1, option ROM; INTx only, no reset
        # method (docs/measured.md: the upstream reset, MSI and MSI-X tests skip on it).
        PciFunction("0000:00:02.0", 0x8086, 0x100E, iommu_group=1, driver="vfio-pci", cdev="vfio0",
                    is_pcie=False, name="e1000", class_code=0x020000,
                    bar_sizes=(0x20000, 0x40, 0, 0, 0, 0), io_bars=(1,), rom_size=0x40000,
                    interrupt_pin=1, native_driver="e1000"),
        # QEMU NVMe with SR-IOV (sriov_max_vfs=3, msix_qsize=6): 16 KiB 64-bit BAR0 with
        # the MSI-X table at 0x2000, FLR; VFs at function offset 1 stride 1, each with
        # one MSI-X vector (sriov_max_vi_per_vf defaults to sriov_vi_flexible / max VFs).
        PciFunction("0000:00:03.0", 0x1B36, 0x0010, iommu_group=2, driver="vfio-pci", cdev="vfio1",
                    sriov_totalvfs=3, name="nvme", class_code=0x010802,
                    bar_sizes=(0x4000, 0, 0, 0, 0, 0), interrupt_pin=1, msix_vectors=6, msix_bar=0,
                    msix_table_offset=0x2000, reset_methods=("flr",), native_driver="nvme",
                    sriov_offset=1, sriov_stride=1, sriov_vf_device=0x0010,
                    sriov_vf_bar_sizes=(0x4000, 0, 0, 0, 0, 0), sriov_vf_msix_vectors=1,
                    sriov_vf_reset_methods=("flr",)),
        # ICH9 at 00:1f.*: one IOMMU group; no lpc_ich driver in the test kernel.
        PciFunction("0000:00:1f.0", 0x8086, 0x2918, iommu_group=3, driver="vfio-pci", cdev="vfio2",
                    is_pcie=False, name="ich9-lpc", class_code=0x060100),
        PciFunction("0000:00:1f.2", 0x8086, 0x2922, iommu_group=3, driver="ahci", is_pcie=False,
                    name="ich9-ahci", class_code=0x010601, bar_sizes=(0, 0, 0, 0, 0x20, 0x1000),
                    io_bars=(4,), interrupt_pin=1, msi_vectors=1, native_driver="ahci"),
        PciFunction("0000:00:1f.3", 0x8086, 0x2930, iommu_group=3, driver="i801_smbus", is_pcie=False,
                    name="ich9-smbus", class_code=0x0C0500, bar_sizes=(0, 0, 0, 0, 0x40, 0),
                    io_bars=(4,), interrupt_pin=1, native_driver="i801_smbus"),
        # QEMU `pci-bridge` (1b36:0001) at 00:04.0 with two e1000s behind it: devices
        # behind a conventional bridge alias to it for DMA, so all three share a group.
        PciFunction("0000:00:04.0", 0x1B36, 0x0001, iommu_group=4, driver=None, is_pcie=False,
                    name="pci-bridge", class_code=0x060400),
        PciFunction("0000:01:01.0", 0x8086, 0x100E, iommu_group=4, driver="vfio-pci", cdev="vfio3",
                    is_pcie=False, name="e1000", class_code=0x020000,
                    bar_sizes=(0x20000, 0x40, 0, 0, 0, 0), io_bars=(1,), rom_size=0x40000,
                    interrupt_pin=1, native_driver="e1000", hot_reset_functions=BEHIND_BRIDGE),
        PciFunction("0000:01:02.0", 0x8086, 0x100E, iommu_group=4, driver="e1000",
                    is_pcie=False, name="e1000", class_code=0x020000,
                    bar_sizes=(0x20000, 0x40, 0, 0, 0, 0), io_bars=(1,), rom_size=0x40000,
                    interrupt_pin=1, native_driver="e1000", hot_reset_functions=BEHIND_BRIDGE),
    ]
    return Topology({f.bdf: f for f in fns})
