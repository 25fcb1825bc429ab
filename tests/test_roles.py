"""The role registry (harness/backends/roles.py) is the one place roles are declared: the
docs, the loader, the runner, the fuzz machines and the guest layout all follow it."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest

from harness.backends import roles
from harness.backends.base import PciFunction, Topology
from harness.backends.guest_layout import PROFILES, GuestFunction
from harness.cases.case import CaseError
from harness.cases.loader import Loader
from harness.fuzz.machine import MACHINES, MachineKind, register
from harness.model.topologies import vm_topology
from harness.runner.topology import Role, bind_roles

DOC = Path(__file__).resolve().parent.parent / "docs" / "case-format.md"
BEGIN = "<!-- generated from harness/backends/roles.py; tests/test_roles.py checks it -->\n"
END = "<!-- end of generated table -->\n"


def test_the_docs_table_is_the_registry() -> None:
    text = DOC.read_text()
    assert BEGIN in text and END in text
    table = text.split(BEGIN, 1)[1].split(END, 1)[0]
    assert table == roles.markdown_table(), "replace the table in docs/case-format.md with:\n" + roles.markdown_table()
    assert all(f"| `{name}` |" in table for name in roles.ROLES)


def test_a_bound_role_carries_exactly_the_registry_attributes() -> None:
    assert [f.name for f in dataclasses.fields(Role)] == list(roles.ATTRIBUTES)
    for spec in roles.ROLES.values():
        assert set(spec.attributes) <= set(roles.ATTRIBUTES), spec.name


CASE = """\
id: dev-example
area: device
purpose: An example.
verified_on: []
requires:
  topology:
    dev: isolatd
steps:
  - open: /dev/vfio/${dev.group}
"""


def test_the_loader_refuses_an_unknown_role_at_its_line(tmp_path: Path) -> None:
    d = tmp_path / "cases" / "device"
    d.mkdir(parents=True)
    (d / "case.yaml").write_text(textwrap.dedent(CASE))
    with pytest.raises(CaseError) as e:
        Loader(tmp_path / "cases").load_file(d / "case.yaml")
    assert (e.value.line, e.value.where) == (7, "requires.topology.dev"), str(e.value)
    assert "unknown role 'isolatd'" in e.value.message
    assert all(name in e.value.message for name in roles.ROLES)
    (d / "case.yaml").write_text(CASE.replace("isolatd", "isolated"))
    (case,) = Loader(tmp_path / "cases").load_file(d / "case.yaml")
    assert case.requires.topology == {"dev": "isolated"}


@pytest.mark.parametrize("role,text,offered", [
    ("isolated", "/dev/vfio/${dev.sibling}", False),   # another role's attribute
    ("nonviable", "/dev/vfio/${dev.sibling}", True),
    ("isolated", "/dev/vfio/${dev.gruop}", False),
])
def test_the_loader_checks_the_attributes_a_step_reads_of_its_role(tmp_path: Path, role: str, text: str,
                                                                   offered: bool) -> None:
    d = tmp_path / "cases" / "device"
    d.mkdir(parents=True)
    (d / "case.yaml").write_text(CASE.replace("isolatd", role).replace("/dev/vfio/${dev.group}", text))
    if offered:
        Loader(tmp_path / "cases").load_file(d / "case.yaml")
        return
    with pytest.raises(CaseError) as e:
        Loader(tmp_path / "cases").load_file(d / "case.yaml")
    assert e.value.line == 9 and f"role {role} offers {', '.join(roles.ROLES[role].attributes)}" in str(e.value)


def test_the_runner_raises_for_an_unknown_role_whatever_the_topology() -> None:
    with pytest.raises(roles.UnknownRole, match=r"unknown role 'isolatd'.*isolated"):
        bind_roles({"dev": "isolatd"}, vm_topology())
    with pytest.raises(roles.UnknownRole):
        bind_roles({"dev": "isolated", "g": "nope"}, Topology({}))
    f = PciFunction("0:a", 0x8086, 0x100E, iommu_group=1, driver="vfio-pci")
    with pytest.raises(roles.UnknownRole):
        roles.fits("nope", Topology({f.bdf: f}), f)
    assert roles.fits("isolated", Topology({f.bdf: f}), f)


def test_every_role_wants_a_vfio_pci_function_in_a_group() -> None:
    on_e1000 = PciFunction("0:a", 0x8086, 0x100E, iommu_group=1, driver="e1000")
    no_group = PciFunction("0:b", 0x8086, 0x100E, iommu_group=None, driver="vfio-pci")
    for f in (on_e1000, no_group):
        assert not any(roles.fits(r, Topology({f.bdf: f}), f) for r in roles.ROLES), f


def test_fuzz_machines_register_only_known_roles() -> None:
    assert MACHINES["vfio"].roles and all(r in roles.ROLES for r in MACHINES["vfio"].roles.values())
    with pytest.raises(roles.UnknownRole):
        register(MachineKind("roles-test", lambda mock_domains: MACHINES["vfio"].build(mock_domains),
                             profile="viommu", roles={"dev": "isolatd"}))
    assert "roles-test" not in MACHINES


def test_the_guest_layout_declares_only_known_roles() -> None:
    with pytest.raises(roles.UnknownRole):
        GuestFunction("0000:00:05.0", "e1000", 0x8086, 0x100E, roles=("bridge",))


def test_each_declared_role_binds_its_function_on_the_model() -> None:
    # The VM's own check of the same is tests/test_vm_boot.py.
    declared_anywhere = set()
    for prof in PROFILES.values():
        topo = vm_topology(prof.name)
        declared = [(r, f.bdf) for f in prof.functions for r in f.roles]
        declared_anywhere |= {r for r, _ in declared}
        for role, bdf in declared:
            bound = bind_roles({"x": role}, topo)
            assert not isinstance(bound, str) and bound["x"].bdf == bdf, (prof.name, role, bound)
            assert prof.offering(role).bdf == bdf
    assert declared_anywhere == set(roles.ROLES) - {"resettable"}
    # The noiommu function plays no other role, and no function of the viommu guest plays it.
    assert isinstance(bind_roles({"x": "vfio"}, vm_topology("mock")), str)
    assert isinstance(bind_roles({"x": "noiommu"}, vm_topology()), str)
    prof, topo = PROFILES["viommu"], vm_topology()
    # The model keeps the NVMe's FLR, which guest-init clears in the guest.
    bound = bind_roles({"x": "resettable"}, topo)
    assert not isinstance(bound, str) and bound["x"].name == "nvme"
