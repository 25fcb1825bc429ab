"""The test VM's PCI layout, declared once.

Each guest profile lists the PCI functions the launcher adds (at fixed guest
addresses, so bind lists and case expectations are stable), the driver the guest
kernel gives each, which IOMMU group each shares, which of them guest-init binds
to vfio-pci, and the topology roles (harness.backends.roles) each is there to
offer.  The QEMU command line (``harness.vm.qemu``), the kernel command line's
bind list and the reference model's boot topology
(``harness.model.topologies.vm_topology``, which adds its table of hardware
facts per device kind) all come from here.  It lives among the backends, not in
``harness.vm``, because the model reads it and may not import the VM
(tests/test_layering.py); it imports only the role registry.

Profiles (docs/measured.md):

- ``viommu``: q35 + the emulated Intel IOMMU, VFIO devices.  IOMMU_TEST_OP_MOCK_DOMAIN
  fails with EINVAL under the vIOMMU, so mock-domain cases cannot run here.
- ``mock``: no vIOMMU; iommufd's selftest mock domains work.  Booted with vfio's
  enable_unsafe_noiommu_mode, so its one e1000, bound to vfio-pci, gets a vfio-noiommu
  group (drivers/vfio/group.c vfio_noiommu_group_alloc(), /dev/vfio/noiommu-N).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .roles import check

# The virtio-serial port the guest agent serves on (/dev/virtio-ports/<name>).
AGENT_PORT = "vfioconf.agent"
# 9p mount tag of the host root; the guest mounts it as / (root=/dev/root).
ROOT_TAG = "/dev/root"


@dataclass(frozen=True)
class GuestFunction:
    """One PCI function of the guest."""

    bdf: str
    name: str                           # its device kind: the model keys its hardware facts by it
    vendor: int
    device: int
    # The driver the guest kernel binds it to at boot (its own; guest-init then moves the
    # `vfio` ones to vfio-pci); None: the kernel has no driver for it.
    driver: str | None = None
    # Functions with the same number share an IOMMU group (docs/measured.md).  The number
    # is the model's; the guest's kernel numbers its groups in its own probe order.
    group: int | None = None
    # The `-device` value that creates it; "" for the machine's built-in functions.
    qemu: str = ""
    # guest-init binds it to vfio-pci (driver_override + drivers_probe), in list order,
    # so /dev/vfio/devices/vfioN numbers follow that order.
    vfio: bool = False
    # guest-init clears its reset_method before binding (the QEMU 7.2 NVMe quirk:
    # an FLR through vfio-pci drops the VFs but leaves VF Enable set).
    clear_reset: bool = False
    # The topology roles (harness.backends.roles) it is in the guest for: binding one of
    # them alone picks this function (tests/test_roles.py checks it on the model).
    roles: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for role in self.roles:
            check(role)


# Functions every q35 guest has without being asked (-nodefaults keeps these).
# The ICH9 functions at 00:1f.* share one group; there is no lpc_ich driver in the test kernel.
ICH9_LPC = GuestFunction("0000:00:1f.0", "ich9-lpc", 0x8086, 0x2918, group=3)
Q35_BUILTIN = (
    GuestFunction("0000:00:00.0", "q35-host-bridge", 0x8086, 0x29C0, group=0),
    ICH9_LPC,
    GuestFunction("0000:00:1f.2", "ich9-ahci", 0x8086, 0x2922, driver="ahci", group=3),
    GuestFunction("0000:00:1f.3", "ich9-smbus", 0x8086, 0x2930, driver="i801_smbus", group=3),
)

# The launcher's own devices: outside the range test functions use.
VIRTIO_SERIAL = GuestFunction("0000:00:10.0", "virtio-serial", 0x1AF4, 0x1003, driver="virtio-pci",
                              qemu="virtio-serial-pci,id=vser0,bus=pcie.0,addr=10.0")
VIRTIO_9P = GuestFunction("0000:00:11.0", "virtio-9p", 0x1AF4, 0x1009, driver="virtio-pci",
                          qemu=f"virtio-9p-pci,fsdev=root,mount_tag={ROOT_TAG},bus=pcie.0,addr=11.0")

LAUNCHER = (VIRTIO_SERIAL, VIRTIO_9P)

NVME_SUBSYS = "nvme-subsys,id=s0"
# The NVMe PF's QEMU properties, declared once: its `-device` value and the MSI-X sizes the
# model gives the PF and its VFs (harness.model.topologies.nvme_msix_vectors) both come from here.
NVME_PF_PROPS: dict[str, int | str] = dict(
    serial="vfioconf0", subsys="s0", sriov_max_vfs=3, sriov_vq_flexible=8, sriov_vi_flexible=4,
    max_ioqpairs=12, msix_qsize=6,
)
NVME_PF = "nvme," + ",".join(f"{k}={v}" for k, v in NVME_PF_PROPS.items()) + ",bus=pcie.0,addr=03.0"

VIOMMU_FUNCTIONS = (
    # An e1000 alone in its group, with no reset method and on the root bus.
    GuestFunction("0000:00:02.0", "e1000", 0x8086, 0x100E, driver="e1000", group=1,
                  qemu="e1000,bus=pcie.0,addr=02.0", vfio=True,
                  roles=("isolated", "vfio", "no-reset", "no-hot-reset")),
    # The SR-IOV NVMe PF (VFs appear at 00:03.1-00:03.3 when sriov_numvfs is written).
    # No function is `resettable` in the guest: guest-init clears this one's reset_method
    # (the model, which keeps its FLR, binds the role to it).
    GuestFunction("0000:00:03.0", "nvme", 0x1B36, 0x0010, driver="nvme", group=2, qemu=NVME_PF, vfio=True,
                  clear_reset=True, roles=("sriov-pf",)),
    # A conventional PCI bridge with two e1000s behind it: devices behind it alias
    # to the bridge for DMA, so the three share one IOMMU group.  The first goes to
    # vfio-pci, the second stays on e1000: a non-viable group with exactly one
    # kernel-driver sibling.
    GuestFunction("0000:00:04.0", "pci-bridge", 0x1B36, 0x0001, group=4,
                  qemu="pci-bridge,id=br1,chassis_nr=1,bus=pcie.0,addr=04.0"),
    GuestFunction("0000:01:01.0", "e1000", 0x8086, 0x100E, driver="e1000", group=4,
                  qemu="e1000,bus=br1,addr=01.0", vfio=True, roles=("nonviable",)),
    GuestFunction("0000:01:02.0", "e1000", 0x8086, 0x100E, driver="e1000", group=4,
                  qemu="e1000,bus=br1,addr=02.0"),
)

# The ICH9 LPC bridge goes to vfio-pci too: its group holds ahci and i801_smbus
# (two kernel-driver siblings, docs/measured.md), the group GET_STATUS reports not viable.
_ICH9_LPC_VFIO = replace(ICH9_LPC, vfio=True)


@dataclass(frozen=True)
class Profile:
    name: str
    # -device intel-iommu before every test function (it must exist before the
    # devices it translates are realized).
    viommu: bool
    # Test functions, in the order they go on the QEMU command line.
    functions: tuple[GuestFunction, ...]
    # Built-in functions guest-init binds to vfio-pci as well.
    builtin_vfio: tuple[GuestFunction, ...] = ()
    # -device values that are no PCI function (an NVMe subsystem) and go before them.
    qemu_prelude: tuple[str, ...] = ()
    # Kernel command line words the profile needs.
    cmdline: tuple[str, ...] = ()

    def bind_order(self) -> tuple[str, ...]:
        """The functions guest-init binds to vfio-pci, in order: the model's cdev
        numbering (vfio0 = 00:02.0, vfio1 = 00:03.0, vfio2 = 00:1f.0, vfio3 = 01:01.0)."""
        fns = [f for f in (*self.functions, *self.builtin_vfio) if f.vfio]
        return tuple(f.bdf for f in sorted(fns, key=lambda f: (f.bdf.split(":")[1] != "00", f.bdf)))

    def clear_reset(self) -> tuple[str, ...]:
        return tuple(f.bdf for f in self.functions if f.clear_reset)

    def all_functions(self) -> tuple[GuestFunction, ...]:
        """Every function the guest should show at boot (without VFs), by address."""
        fns = {f.bdf: f for f in (*Q35_BUILTIN, *LAUNCHER, *self.functions)}
        for f in self.builtin_vfio:
            fns[f.bdf] = f
        return tuple(fns[b] for b in sorted(fns))

    def machine_functions(self) -> tuple[GuestFunction, ...]:
        """The functions cases meet: all but the launcher's own, by address."""
        return tuple(f for f in self.all_functions() if f not in LAUNCHER)

    def offering(self, role: str) -> GuestFunction:
        """The function declared to offer ``role``; KeyError when none is."""
        fn = next((f for f in self.functions if role in f.roles), None)
        if fn is None:
            raise KeyError(f"no function of profile {self.name!r} offers role {role!r}")
        return fn


# The mock guest's one VFIO function: without an IOMMU, vfio-pci gets it only in vfio's
# no-IOMMU mode, which gives it a vfio-noiommu group of its own.
# The e1000 driver (built in) is kept from starting (initcall_blacklist=): its probe of the
# function costs about 0.5 s of a TCG boot, and nothing in this guest needs it.
MOCK_FUNCTIONS = (
    GuestFunction("0000:00:02.0", "e1000", 0x8086, 0x100E, group=0,
                  qemu="e1000,bus=pcie.0,addr=02.0", vfio=True, roles=("noiommu",)),
)
# vfio is built in: its module parameter goes on the kernel command line.
NOIOMMU_PARAM = "vfio.enable_unsafe_noiommu_mode=1"
NO_E1000_DRIVER = "initcall_blacklist=e1000_init_module"

PROFILES: dict[str, Profile] = {
    # q35 + intel-iommu: e1000s, a bridge group, an SR-IOV NVMe PF on vfio-pci.
    "viommu": Profile(
        name="viommu", viommu=True, functions=VIOMMU_FUNCTIONS, builtin_vfio=(_ICH9_LPC_VFIO,),
        qemu_prelude=(NVME_SUBSYS,),
        cmdline=("intel_iommu=on", "vfio_pci.enable_sriov=1", "hugepages=128"),
    ),
    # q35 without a vIOMMU: iommufd selftest mock domains, and an e1000 in vfio's no-IOMMU mode.
    "mock": Profile(
        name="mock", viommu=False, functions=MOCK_FUNCTIONS,
        cmdline=("hugepages=128", NOIOMMU_PARAM, NO_E1000_DRIVER),
    ),
}


def profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown VM profile {name!r} (known: {', '.join(PROFILES)})") from None
