"""Match a case's requirements to what a backend offers (docs/case-format.md#topology-roles)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from ..backends import roles
from ..backends.base import Backend, PciFunction, Topology
from ..backends.guest_layout import PROFILES
from ..cases.case import Case
from ..uapi import available, span
from ..uapi.kernel_version import in_range


@dataclass(frozen=True)
class Role:
    """What a case sees of a PCI function: ``$dev.bdf``, ``$dev.group``, ... (the fields are
    harness.backends.roles.ATTRIBUTES; a role offers some of them, the others read empty)."""

    bdf: str
    group: int
    cdev: str
    name: str
    sibling: str = ""
    sibling_driver: str = ""
    totalvfs: int = 0

    def __str__(self) -> str:
        return self.bdf


def _role(topo: Topology, f: PciFunction) -> Role:
    sibling = roles.kernel_sibling(topo, f)
    return Role(
        bdf=f.bdf, group=f.iommu_group if f.iommu_group is not None else -1,
        cdev=f"/dev/vfio/devices/{f.cdev}" if f.cdev else "", name=f.name,
        sibling=sibling.bdf if sibling else "", sibling_driver=(sibling.driver or "") if sibling else "",
        totalvfs=f.sriov_totalvfs,
    )


def bind_roles(wanted: dict[str, str], topo: Topology,
               may_touch: Callable[[str], bool] = lambda bdf: True) -> dict[str, Role] | str:
    """Bind each role to a distinct function the backend lets cases use (with a
    kernel-bound sibling, that sibling too); a string is the reason it can't be done.
    An unknown role raises UnknownRole (harness.backends.roles), whatever the topology."""
    for role in wanted.values():
        roles.check(role)
    out: dict[str, Role] = {}
    used: set[str] = set()
    for name, role in wanted.items():
        f = next((f for f in sorted(topo.functions.values(), key=lambda f: f.bdf)
                  if f.bdf not in used and roles.fits(role, topo, f) and may_touch(f.bdf)
                  and all(may_touch(s.bdf) for s in topo.siblings(f.bdf))), None)
        if f is None:
            return f"no PCI function for role {name}: {role} (among those this run may use)"
        used.add(f.bdf)
        out[name] = _role(topo, f)
    return out


@cache
def _has(name: str, release: str) -> bool:
    try:
        return available(name, release)
    except (KeyError, ValueError):  # a member uapi does not list on its own; a pre-6.12 kernel
        return True


def kernel_unmet(case: Case, release: str) -> str | None:
    """Why ``case`` cannot run on a kernel of ``release`` whatever the machine: its kernel range,
    or uAPI names (ioctls, struct members) that release lacks; None if it can."""
    r = case.requires
    if r.kernel and not in_range(release, r.kernel):
        return f"case applies to kernels {r.kernel}, the target is {release}"
    lacking = sorted(n for n in case.uses if not _has(n, release))
    if lacking:
        return f"Linux {release} has no {', '.join(lacking)} (uAPI of {', '.join(str(span(n)) for n in lacking)})"
    return None


def unmet(case: Case, backend: Backend, topo: Topology | None = None) -> str | None:
    """Why ``case`` can't run on ``backend`` (whose topology is ``topo``), or None."""
    facts = backend.facts()
    r = case.requires
    why = kernel_unmet(case, facts.kernel)
    if why:
        return why
    missing = [c for c in r.config if c not in facts.config]
    if missing:
        return "kernel config lacks " + ", ".join("CONFIG_" + c for c in missing)
    if r.container and facts.container != r.container:
        return f"/dev/vfio/vfio is {facts.container or 'absent'}, case needs {r.container}"
    if r.mock_domains and not facts.mock_domains:
        return "mock domains unavailable (IOMMU_TEST_OP_MOCK_DOMAIN needs a guest without a vIOMMU)"
    if r.mock_domains is False and facts.mock_domains and facts.profile == "mock":
        return "case needs a guest with a vIOMMU"
    for node in r.nodes:
        if not backend.path_exists(node):
            return f"{node} does not exist"
    if r.topology:
        bound = bind_roles(r.topology, topo if topo is not None else backend.topology(), backend.may_touch)
        if isinstance(bound, str):
            return bound
    return None


def _offers(profile: str, role: str) -> bool:
    return any(role in f.roles for f in PROFILES[profile].functions)


def mock_guest_only(case: Case) -> bool:
    """The case asks for a role only the mock guest offers (its noiommu function)."""
    return any(_offers("mock", r) and not _offers("viommu", r) for r in case.requires.topology.values())


def profile_for(case: Case) -> str:
    """The test VM guest a case needs: the mock one for mock domains or a role only it offers,
    else the one with the vIOMMU."""
    return "mock" if case.requires.mock_domains or mock_guest_only(case) else "viommu"
