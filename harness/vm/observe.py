"""What a booted guest looks like, and how that differs from the model's view.

guest-init prints one ``vfioconf-pci`` line per PCI function when booted with
``vfioconf.topo=1`` (the sysfs facts: ids, class, driver, group, cdev, reset
methods, SR-IOV counts, resources); ``parse_dump`` turns them into a Topology.
``differences`` compares two topologies field by field, for the fields both a
guest's sysfs and the model's ``vm_topology()`` describe.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..backends.base import PciFunction, Topology

_PCI_LINE = re.compile(r"vfioconf-pci (.*)$")
_NODES_LINE = re.compile(r"vfioconf-nodes(.*)$")
_MEM_LINE = re.compile(r"vfioconf-mem (\S+): (\d+)")
_PARAM_LINE = re.compile(r"vfioconf-param (\S+)=(\S+)")
_IO_RESOURCE = 0x100    # IORESOURCE_IO
_PCI_CFG_SPACE_SIZE = 256


@dataclass
class GuestDump:
    topology: Topology = field(default_factory=Topology)
    nodes: list[str] = field(default_factory=list)
    meminfo: dict[str, int] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    raw: dict[str, dict[str, str]] = field(default_factory=dict)   # bdf -> the line's fields


def _opt(value: str) -> str | None:
    return None if value in ("-", "", "(null)") else value


def _resources(text: str) -> tuple[tuple[int, ...], tuple[int, ...], int]:
    """(BAR sizes 0-5, indices of I/O BARs, ROM size) from "start:end:flags,..."."""
    sizes: list[int] = []
    io: list[int] = []
    rom = 0
    for i, item in enumerate(text.split(",") if text else []):
        try:
            start, end, flags = (int(x, 16) for x in item.split(":"))
        except ValueError:
            start = end = flags = 0
        size = end - start + 1 if (start, end, flags) != (0, 0, 0) else 0
        if i < 6:
            sizes.append(size)
            if size and flags & _IO_RESOURCE:
                io.append(i)
        elif i == 6:
            rom = size
    return tuple(sizes + [0] * (6 - len(sizes))), tuple(io), rom


def function_from_fields(kv: dict[str, str]) -> PciFunction:
    group = _opt(kv.get("group", "-"))
    reset = _opt(kv.get("reset", "-"))
    bars, io_bars, rom = _resources(kv.get("res", ""))
    driver = _opt(kv.get("driver", "-"))
    try:
        cfgsize = int(kv.get("cfgsize", "0"))
    except ValueError:
        cfgsize = 0
    return PciFunction(
        bdf=kv["bdf"], vendor=int(kv.get("vendor", "0"), 16), device=int(kv.get("device", "0"), 16),
        iommu_group=int(group) if group is not None else None, driver=driver,
        driver_override=_opt(kv.get("override", "-")),
        sriov_totalvfs=int(kv["totalvfs"]) if kv.get("totalvfs", "-").isdigit() else 0,
        sriov_numvfs=int(kv["numvfs"]) if kv.get("numvfs", "-").isdigit() else 0,
        physfn=_opt(kv.get("physfn", "-")), cdev=_opt(kv.get("cdev", "-")),
        is_pcie=cfgsize > _PCI_CFG_SPACE_SIZE, name=driver or "",
        class_code=int(kv.get("class", "0"), 16), bar_sizes=bars, io_bars=io_bars, rom_size=rom,
        reset_methods=() if reset in (None, "none") else tuple(reset.split(",")),
    )


def parse_dump(text: str) -> GuestDump:
    """The guest-init dump in console text (the last dump wins per function)."""
    out = GuestDump()
    for line in text.splitlines():
        line = line.rstrip("\r")
        if m := _PCI_LINE.search(line):
            kv = dict(item.split("=", 1) for item in m.group(1).split() if "=" in item)
            if "bdf" in kv:
                out.raw[kv["bdf"]] = kv
                out.topology.functions[kv["bdf"]] = function_from_fields(kv)
        elif m := _NODES_LINE.search(line):
            out.nodes = m.group(1).split()
        elif m := _MEM_LINE.search(line):
            out.meminfo[m.group(1)] = int(m.group(2))
        elif m := _PARAM_LINE.search(line):
            out.params[m.group(1)] = m.group(2)
    return out


COMPARED = ("vendor", "device", "iommu_group", "driver", "cdev", "sriov_totalvfs", "class_code",
            "bar_sizes", "io_bars", "rom_size", "reset_methods", "is_pcie")


def differences(observed: Topology, expected: Topology, fields: tuple[str, ...] = COMPARED,
                ignore: tuple[str, ...] = ()) -> list[str]:
    """Human-readable differences, ``expected`` being the model's view.  Functions
    only one side has are listed too (``ignore``: BDFs to leave out)."""
    out: list[str] = []
    for bdf in sorted(set(observed.functions) | set(expected.functions)):
        if bdf in ignore:
            continue
        o, e = observed.functions.get(bdf), expected.functions.get(bdf)
        if o is None:
            out.append(f"{bdf}: in the model, not in the guest")
            continue
        if e is None:
            out.append(f"{bdf}: in the guest ({o.name or hex(o.class_code)}), not in the model")
            continue
        for name in fields:
            ov, ev = getattr(o, name), getattr(e, name)
            if ov != ev:
                out.append(f"{bdf} {name}: guest {_fmt(ov)}, model {_fmt(ev)}")
    return out


def _fmt(v: object) -> str:
    if isinstance(v, int) and not isinstance(v, bool) and v > 9:
        return hex(v)
    if isinstance(v, tuple):
        return "(" + ", ".join(_fmt(x) for x in v) + ")"
    return repr(v)


def summary(topo: Topology) -> list[str]:
    """One line per function, grouped by IOMMU group."""
    lines = []
    for f in sorted(topo.functions.values(), key=lambda f: (f.iommu_group is None, f.iommu_group or 0, f.bdf)):
        extra = []
        if f.cdev:
            extra.append(f"cdev {f.cdev}")
        if f.sriov_totalvfs:
            extra.append(f"VFs {f.sriov_numvfs}/{f.sriov_totalvfs}")
        if f.physfn:
            extra.append(f"VF of {f.physfn}")
        if f.reset_methods:
            extra.append("reset " + ",".join(f.reset_methods))
        group = "-" if f.iommu_group is None else str(f.iommu_group)
        lines.append(f"group {group:>2}  {f.bdf}  {f.vendor:04x}:{f.device:04x}  "
                     f"{f.driver or '(no driver)':<12} {'  '.join(extra)}".rstrip())
    return lines
