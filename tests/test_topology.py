"""Topology copies and the binding of case roles to PCI functions."""

from __future__ import annotations

import dataclasses
import typing

from harness.backends.base import PciFunction, Topology
from harness.model.topologies import vm_topology
from harness.runner.topology import bind_roles


def test_copy_is_independent_and_fields_stay_immutable() -> None:
    topo = vm_topology()
    dup = topo.copy()
    dup.functions["0000:00:02.0"].driver = "e1000"
    assert topo.functions["0000:00:02.0"].driver == "vfio-pci"
    # copy() relies on every field being immutable; a list or dict field would be shared.
    hints = typing.get_type_hints(PciFunction)
    for f in dataclasses.fields(PciFunction):
        assert "list" not in str(hints[f.name]) and "dict" not in str(hints[f.name]), f.name


def fn(bdf: str, group: int, driver: str | None, **kw: typing.Any) -> PciFunction:
    return PciFunction(bdf, 0x8086, 0x100E, iommu_group=group, driver=driver, **kw)


def topo(*fns: PciFunction) -> Topology:
    return Topology({f.bdf: f for f in fns})


def test_roles_bind_distinct_functions_by_their_definition() -> None:
    t = topo(fn("0:a", 1, "vfio-pci"), fn("0:b", 2, "vfio-pci"), fn("0:c", 2, "e1000"),
             fn("0:d", 3, "vfio-pci", sriov_totalvfs=3), fn("0:e", 4, "vfio-pci"))
    roles = bind_roles({"x": "isolated", "g": "nonviable", "pf": "sriov-pf", "y": "isolated"}, t)
    assert not isinstance(roles, str)
    assert (roles["x"].bdf, roles["g"].bdf, roles["pf"].bdf, roles["y"].bdf) == ("0:a", "0:b", "0:d", "0:e")
    assert (roles["g"].sibling, roles["g"].sibling_driver) == ("0:c", "e1000")


def test_nonviable_needs_exactly_one_kernel_driver_sibling() -> None:
    two = topo(fn("0:a", 1, "vfio-pci"), fn("0:b", 1, "ahci"), fn("0:c", 1, "i801_smbus"))
    assert isinstance(bind_roles({"g": "nonviable"}, two), str)
    managed = topo(fn("0:a", 1, "vfio-pci"), fn("0:b", 1, "pci-stub"))
    assert isinstance(bind_roles({"g": "nonviable"}, managed), str)


def test_roles_only_use_functions_the_backend_may_touch() -> None:
    t = topo(fn("0:a", 1, "vfio-pci"), fn("0:b", 2, "vfio-pci"), fn("0:c", 2, "e1000"))
    assert bind_roles({"x": "isolated"}, t, lambda bdf: bdf != "0:a") == "no PCI function for role x: isolated " \
        "(among those this run may use)"
    # A non-viable group is usable only when its sibling may be touched too.
    assert isinstance(bind_roles({"g": "nonviable"}, t, lambda bdf: bdf != "0:c"), str)
    assert not isinstance(bind_roles({"g": "nonviable"}, t, lambda bdf: True), str)


def test_reset_roles_follow_the_functions_reset_capabilities() -> None:
    t = topo(fn("0:a", 1, "vfio-pci"), fn("0:b", 2, "vfio-pci", reset_methods=("flr",)),
             fn("0:c", 3, "vfio-pci", hot_reset_functions=("0:c",)), fn("0:d", 4, "vfio-pci", reset_methods=("pm",)),
             fn("0:e", 4, "e1000"))
    roles = bind_roles({"n": "no-reset", "r": "resettable"}, t)
    assert not isinstance(roles, str)
    assert (roles["n"].bdf, roles["r"].bdf) == ("0:a", "0:b")
    # 0:d has a reset method but shares its group, so only 0:b is "resettable".
    assert isinstance(bind_roles({"a": "resettable", "b": "resettable"}, t), str)
    # 0:c can take a bus reset: the two functions without one are 0:a and 0:b.
    both = bind_roles({"a": "no-hot-reset", "b": "no-hot-reset"}, t)
    assert not isinstance(both, str) and {both["a"].bdf, both["b"].bdf} == {"0:a", "0:b"}
    assert isinstance(bind_roles({"a": "no-hot-reset", "b": "no-hot-reset", "c": "no-hot-reset"}, t), str)


def test_the_mock_guest_gives_its_e1000_a_noiommu_group_on_the_model() -> None:
    """The model booted as the mock guest (no IOMMU, vfio.enable_unsafe_noiommu_mode=1): vfio
    makes the e1000 an IOMMU group of its own, /dev/vfio/noiommu-0, and no cdev; without the
    mode vfio-pci cannot take a function that has no IOMMU group."""
    import dataclasses as dc

    from harness.model.backend import ModelBackend
    from harness.model.topologies import guest_facts

    facts = guest_facts("mock")
    model = ModelBackend(vm_topology("mock"), facts)
    e1000 = model.topology().functions["0000:00:02.0"]
    assert (e1000.driver, e1000.iommu_group, e1000.noiommu, e1000.cdev) == ("vfio-pci", 0, True, None)
    assert model.path_exists("/dev/vfio/noiommu-0")
    assert not model.path_exists("/dev/vfio/0") and not model.path_exists("/dev/vfio/devices/vfio0")
    off = ModelBackend(vm_topology("mock"), dc.replace(facts, vfio_noiommu=False))
    assert not off.path_exists("/dev/vfio/noiommu-0")
    assert off.topology().functions["0000:00:02.0"].driver != "vfio-pci"


def test_cases_asking_for_the_noiommu_role_run_in_the_mock_guest_and_pass_on_its_model() -> None:
    from pathlib import Path

    from harness.cases.loader import Loader
    from harness.model.backend import ModelBackend
    from harness.runner.session import Session, run_case
    from harness.runner.target import profile_for

    loader = Loader(Path(__file__).resolve().parents[1] / "cases")
    noiommu, errors = loader.load_all("noiommu/*.yaml")
    others, more_errors = loader.load_all("viability/isolated-viable.yaml")
    in_mock, mock_errors = loader.load_all("mock/*.yaml")
    mock = [c for c in in_mock if c.requires.mock_domains]
    assert noiommu and others and mock and not errors and not more_errors and not mock_errors
    assert {profile_for(c) for c in noiommu + mock} == {"mock"} and {profile_for(c) for c in others} == {"viommu"}
    # On the viommu guest's model they have no function to run on ...
    assert {run_case(c, [ModelBackend()]).status for c in noiommu} == {"skip"}
    # ... the model alone (`vfio-conformance run`) runs them on the mock guest's, booted once per
    # run, and every other case on the viommu guest's: one model per profile, as a VM run has
    # one guest per profile.
    session = Session("model", model_kernel="7.2.13")
    assert {session.run(c).status for c in noiommu} == {"pass"}
    assert {session.run(c).status for c in others} == {"pass"}
    assert {session.run(c).status for c in mock} == {"pass"}
    assert sorted(session.models) == ["mock", "viommu"]
    assert session.models["mock"].facts().vfio_noiommu and not session.models["viommu"].facts().vfio_noiommu
    assert {m.facts().kernel for m in session.models.values()} == {"7.2.13"}
    assert session.backends("mock") == [session.models["mock"]]
