"""Real boots of the test kernel in QEMU (docs/vm.md): only where a bzImage is
available and qemu-system-x86_64 is installed.  The kernel is find_kernel()'s explicit
choice ($VFIO_CONFORMANCE_KERNEL, else the cached build of the default series), and the
release the guest reports is checked against the version that image was built as.
Under TCG each boot takes about a minute."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path
from typing import Any

import pytest

from harness.backends.guest_layout import PROFILES
from harness.kernel.image import image_version
from harness.runner.topology import bind_roles
from harness.uapi.kernel_version import at_least
from harness.uapi.vfio import VFIO_GROUP_FLAGS_VIABLE, VFIO_GROUP_GET_STATUS
from harness.vm import Vm, find_kernel, observe

KERNEL = find_kernel()
# build.json's kernelversion beside a cached build, else the bzImage's own version string.
VERSION = image_version(KERNEL) if KERNEL is not None else None
pytestmark = [pytest.mark.vm, pytest.mark.slow,
              pytest.mark.skipif(KERNEL is None or shutil.which("qemu-system-x86_64") is None,
                                reason="needs a test kernel bzImage and qemu-system-x86_64")]

VIOMMU = PROFILES["viommu"]
PF = VIOMMU.offering("sriov-pf").bdf
ISOLATED = VIOMMU.offering("isolated").bdf
NONVIABLE = VIOMMU.offering("nonviable").bdf
BRIDGE = next(f.bdf for f in VIOMMU.functions if f.name == "pci-bridge")
SIBLING = next(f.bdf for f in VIOMMU.functions if f.group == VIOMMU.offering("nonviable").group and f.driver
               and not f.vfio)


def group_flags(agent: Any, group: int | None) -> int:
    """VFIO_GROUP_GET_STATUS flags of /dev/vfio/<group>, through the agent."""
    opened = agent.open(f"/dev/vfio/{group}")
    assert opened.ok, opened
    try:
        res = agent.ioctl(opened.ret, VFIO_GROUP_GET_STATUS, struct.pack("<II", 8, 0))
        assert res.ok, res
        return int(struct.unpack("<II", res.data)[1])
    finally:
        agent.close(opened.ret)


def test_viommu_guest_topology(tmp_path: Path) -> None:
    assert KERNEL is not None
    with Vm(workdir=tmp_path, init_options={"topo": "1"}) as vm:
        vm.start("viommu", KERNEL)
        assert vm.hello, vm.console_tail()
        assert vm.wait_console(r"vfioconf: topology printed", 120), vm.console_tail()
        dump = observe.parse_dump(vm.console_text())
        fns = dump.topology.functions
        # The bound functions, in bind order, got the cdevs the model expects.
        prof = PROFILES["viommu"]
        assert [(fns[b].driver, fns[b].cdev) for b in prof.bind_order()] == [
            ("vfio-pci", f"vfio{i}") for i in range(len(prof.bind_order()))]
        # The bridge group: the bridge, one e1000 on vfio-pci and one on e1000.
        bridge = fns[BRIDGE].iommu_group
        assert bridge is not None
        assert fns[NONVIABLE].iommu_group == bridge == fns[SIBLING].iommu_group
        assert fns[SIBLING].driver == "e1000"
        assert sorted(f.bdf for f in dump.topology.groups()[bridge]) == sorted([BRIDGE, NONVIABLE, SIBLING])
        # The isolated e1000 and the NVMe PF are alone in their groups.
        for bdf in (ISOLATED, PF):
            assert dump.topology.siblings(bdf) == [], bdf
        # The groups and the drivers are the declared ones (the group numbers are the guest's own).
        declared = prof.machine_functions()
        for f in declared:
            assert fns[f.bdf].driver == ("vfio-pci" if f.vfio else f.driver), f.bdf
            assert {g.bdf for g in declared if g.group == f.group} == {
                g.bdf for g in declared if fns[g.bdf].iommu_group == fns[f.bdf].iommu_group}, f.bdf
        assert fns[PF].sriov_totalvfs == 3 and fns[PF].reset_methods == ()
        assert dump.params.get("vfio_pci.enable_sriov") == "Y"

        agent = vm.agent
        if agent is not None:
            facts = agent.facts()
            assert VERSION is not None and facts.kernel.startswith(VERSION), (facts.kernel, KERNEL, VERSION)
            assert facts.profile == "viommu" and facts.enable_sriov
            # Measured: beside the emulated Intel IOMMU, 6.12's IOMMU_TEST_OP_MOCK_DOMAIN fails
            # (EINVAL), 7.2's works.
            assert facts.mock_domains == at_least(facts.kernel, "7.2"), facts
            topo = agent.topology()
            assert {b: f.iommu_group for b, f in topo.functions.items()} == {
                b: f.iommu_group for b, f in fns.items()}
            # The bridge group (and the ICH9 one) are not viable; the isolated ones are.
            assert group_flags(agent, bridge) & VFIO_GROUP_FLAGS_VIABLE == 0
            assert group_flags(agent, fns["0000:00:1f.0"].iommu_group) & VFIO_GROUP_FLAGS_VIABLE == 0
            for bdf in (ISOLATED, PF):
                assert group_flags(agent, fns[bdf].iommu_group) & VFIO_GROUP_FLAGS_VIABLE
            # Each role binds, alone, the function declared to offer it.
            for f in prof.functions:
                for role in f.roles:
                    bound = bind_roles({"x": role}, topo, agent.may_touch)
                    assert not isinstance(bound, str) and bound["x"].bdf == f.bdf, (role, bound)
            # SR-IOV through the agent: both VFs come up on vfio-pci, one group each.
            res = agent.sysfs_write(f"/sys/bus/pci/devices/{PF}/sriov_numvfs", "2")
            assert res.ok, (res, vm.console_tail())
            after = agent.topology()
            vfs = {b: f for b, f in after.functions.items() if f.physfn == PF}
            assert len(vfs) == 2, vm.console_tail()
            assert all(f.driver == "vfio-pci" and f.cdev and not after.siblings(b) for b, f in vfs.items())
            groups = {f.iommu_group for f in vfs.values()}
            assert len(groups) == 2 and not groups & {f.iommu_group for f in fns.values()}
        assert vm.scan_console() == [], vm.console_tail()


def test_mock_guest_has_iommufd_and_one_noiommu_vfio_device(tmp_path: Path) -> None:
    assert KERNEL is not None
    with Vm(workdir=tmp_path, init_options={"topo": "1"}) as vm:
        vm.start("mock", KERNEL)
        assert vm.wait_console(r"vfioconf: topology printed", 120), vm.console_tail()
        dump = observe.parse_dump(vm.console_text())
        assert "/dev/iommu" in dump.nodes and "/dev/vfio/noiommu-0" in dump.nodes
        assert not any(n.startswith("/dev/vfio/devices/") for n in dump.nodes), dump.nodes
        noiommu = PROFILES["mock"].offering("noiommu").bdf
        for bdf, f in dump.topology.functions.items():
            if bdf == noiommu:
                assert (f.driver, f.iommu_group) == ("vfio-pci", 0), f
            else:
                assert f.iommu_group is None and f.driver != "vfio-pci", f
        if vm.agent is not None:
            facts = vm.agent.facts()
            assert facts.mock_domains and facts.profile == "mock" and facts.vfio_noiommu
            topo = vm.agent.topology()
            assert topo.functions[noiommu].noiommu and topo.functions[noiommu].cdev is None
            bound = bind_roles({"dev": "noiommu"}, topo)
            assert not isinstance(bound, str) and bound["dev"].bdf == noiommu
            assert isinstance(bind_roles({"dev": "vfio"}, topo), str)
        assert vm.scan_console() == [], vm.console_tail()
