"""Topology roles, declared once: what a case's ``requires: topology:`` may ask for.

Each role has a name (the case language), a predicate over a backend's
``Topology`` (which PCI function it binds), the attributes a case reads of the
bound function (``${dev.bdf}``) and a one-line doc.  Everyone takes roles from
here: the case loader checks names against ``ROLES``, the runner binds with
``fits`` (an unknown role raises, it is never silently unmet), the fuzz machines
register theirs through ``check``, the VM's guest layout declares which function
offers which role (``guest_layout``), and docs/case-format.md's "Topology roles"
table is ``markdown_table()`` (tests/test_roles.py checks it).

Why here: the predicates read ``PciFunction`` and ``Topology`` (backends.base),
so the registry sits beside them; the case loader, which may otherwise import
only ``uapi``, may import this one module (tests/test_layering.py): role names
are part of the case language.  This module imports nothing but backends.base,
which imports nothing of ours, so the loader gains no backend.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .base import DRIVER_MANAGED_DMA, PciFunction, Topology

# What a bound role offers a case (``${dev.NAME}``), and what each is.
ATTRIBUTES: dict[str, str] = {
    "bdf": "the function's address (also what `${dev}` alone gives)",
    "group": "its IOMMU group number (`/dev/vfio/${dev.group}`)",
    "cdev": "its VFIO cdev, `/dev/vfio/devices/vfioN` (\"\" when it has none)",
    "name": "a human label (`e1000`, `nvme`)",
    "sibling": "the group member on a kernel driver that claims DMA (its bdf)",
    "sibling_driver": "that member's driver",
    "totalvfs": "`sriov_totalvfs`",
}
COMMON = ("bdf", "group", "cdev", "name")


@dataclass(frozen=True)
class RoleSpec:
    name: str
    doc: str                                        # completes "a PCI function that is ..."
    fits: Callable[[Topology, PciFunction], bool]   # beyond being bound to vfio-pci with a group
    attributes: tuple[str, ...] = COMMON
    # The role is played by a function in a vfio-noiommu group; every other role wants an IOMMU.
    noiommu: bool = False


class UnknownRole(ValueError):
    """A role name the registry does not declare."""


def _claims_dma(f: PciFunction) -> bool:
    return f.driver is not None and f.driver not in DRIVER_MANAGED_DMA


def kernel_sibling(topo: Topology, f: PciFunction) -> PciFunction | None:
    """The first member of ``f``'s group on a kernel driver that claims DMA ownership."""
    return next((s for s in topo.siblings(f.bdf) if _claims_dma(s)), None)


def _alone(topo: Topology, f: PciFunction) -> bool:
    return not topo.siblings(f.bdf) and f.sriov_numvfs == 0


_SPECS = (
    RoleSpec("isolated", "alone in its IOMMU group, not an SR-IOV PF",
             lambda t, f: not t.siblings(f.bdf) and not f.is_pf),
    # Exactly one claimant, so a case can make the group viable by moving `sibling`.
    RoleSpec("nonviable", "in a group with exactly one member on a kernel driver without "
             "`driver_managed_dma` (so moving it makes the group viable)",
             lambda t, f: sum(1 for s in t.siblings(f.bdf) if _claims_dma(s)) == 1,
             (*COMMON, "sibling", "sibling_driver")),
    RoleSpec("sriov-pf", "SR-IOV capable (≥ 2 VFs), no VFs enabled",
             lambda t, f: f.sriov_totalvfs >= 2 and f.sriov_numvfs == 0, (*COMMON, "totalvfs")),
    RoleSpec("vfio", "any such function", lambda t, f: True),
    RoleSpec("no-reset", "alone in its group, no VFs, and no reset method (`reset_method` empty: "
             "vfio-pci's `reset_works` is false)",
             lambda t, f: _alone(t, f) and not f.reset_methods),
    RoleSpec("resettable", "alone in its group, no VFs, with a reset method (FLR, PM, bus...)",
             lambda t, f: _alone(t, f) and bool(f.reset_methods)),
    RoleSpec("no-hot-reset", "alone in its group, no VFs, and neither a slot nor a bus reset possible "
             "(a function on the root bus)",
             lambda t, f: _alone(t, f) and not f.hot_reset_functions),
    RoleSpec("noiommu", "in a vfio-noiommu group: no IOMMU behind it, vfio's `enable_unsafe_noiommu_mode` "
             "made the group (`/dev/vfio/noiommu-${dev.group}`, no cdev); no other role takes such a function",
             lambda t, f: True, noiommu=True),
)
ROLES: dict[str, RoleSpec] = {s.name: s for s in _SPECS}


def check(role: str) -> RoleSpec:
    """The spec of ``role``; UnknownRole, naming the known ones, for another name."""
    try:
        return ROLES[role]
    except KeyError:
        raise UnknownRole(f"unknown role {role!r} (roles: {', '.join(ROLES)})") from None


def fits(role: str, topo: Topology, f: PciFunction) -> bool:
    """Whether ``f`` can play ``role``: every role wants a function bound to vfio-pci, in a group."""
    spec = check(role)
    return (f.driver == "vfio-pci" and f.iommu_group is not None and f.noiommu == spec.noiommu
            and spec.fits(topo, f))


def markdown_table() -> str:
    """docs/case-format.md's "Topology roles" tables: the roles, then their attributes."""
    rows = ["| role | a function bound to vfio-pci, in an IOMMU group, that is ... | attributes |", "|---|---|---|"]
    rows += [f"| `{s.name}` | {s.doc} | {', '.join(f'`{a}`' for a in s.attributes)} |" for s in _SPECS]
    rows += ["", "| attribute | value |", "|---|---|"]
    rows += [f"| `{a}` | {doc} |" for a, doc in ATTRIBUTES.items()]
    return "\n".join(rows) + "\n"
