"""Topologies and facts the model boots with when no kernel tells it otherwise.

``vm_topology`` is the guest the VM runner boots (q35 + intel-iommu): an
isolated e1000, an SR-IOV NVMe PF, and the ICH9 functions at 00:1f.* that
share one group (measured.md: binding 00:1f.0 to vfio-pci gives a group that
GET_STATUS reports not viable).
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


def default_facts() -> Facts:
    """The model answers for both guest profiles at once: VFIO devices behind a
    vIOMMU and working mock domains."""
    return Facts(
        kernel="6.12.117", config=DEFAULT_CONFIG, container="legacy",
        mock_domains=True, enable_sriov=True, profile="model",
    )


def vm_topology() -> Topology:
    fns = [
        PciFunction("0000:00:00.0", 0x8086, 0x29C0, iommu_group=0, driver=None, name="q35-host-bridge"),
        PciFunction("0000:00:02.0", 0x8086, 0x100E, iommu_group=1, driver="vfio-pci", cdev="vfio0",
                    is_pcie=False, name="e1000"),
        PciFunction("0000:00:03.0", 0x1B36, 0x0010, iommu_group=2, driver="vfio-pci", cdev="vfio1",
                    sriov_totalvfs=3, name="nvme"),
        PciFunction("0000:00:1f.0", 0x8086, 0x2918, iommu_group=3, driver="vfio-pci", cdev="vfio2",
                    is_pcie=False, name="ich9-lpc"),
        PciFunction("0000:00:1f.2", 0x8086, 0x2922, iommu_group=3, driver="ahci", is_pcie=False,
                    name="ich9-ahci"),
        PciFunction("0000:00:1f.3", 0x8086, 0x2930, iommu_group=3, driver="i801_smbus", is_pcie=False,
                    name="ich9-smbus"),
    ]
    return Topology({f.bdf: f for f in fns})
