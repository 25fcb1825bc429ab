"""Which errnos an ioctl handler of one kernel series can return, read from that series' source.

The scan is lexical: the handler's function (found from the ``file:line`` the series' view of
``harness.uapi`` names, ``uapi.for_series(series).IOCTLS[name].handler``) and the functions it
calls, to a bounded depth, within the iommufd and VFIO sources of that series
(``sources(series)``: 7.2 split fault.c into eventq.c and added viommu.c, driver.c and
vfio_pci_dmabuf.c); every ``-EXXX`` literal in those bodies is
an errno the handler can return.  That over-approximates (a callee's errno may
be swallowed) and misses errnos that come from outside the scanned files (the
mm, the PCI core, copy_*_user's -EFAULT is named by the callers), so the matrix
calls them "errnos the handler's code names", each with the line that names it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

# The files scanned, per series: the handlers' own and what they call into.
_COMMON = (
    "drivers/iommu/iommufd/main.c", "drivers/iommu/iommufd/ioas.c", "drivers/iommu/iommufd/io_pagetable.c",
    "drivers/iommu/iommufd/pages.c", "drivers/iommu/iommufd/hw_pagetable.c", "drivers/iommu/iommufd/device.c",
    "drivers/iommu/iommufd/vfio_compat.c", "drivers/iommu/iommufd/selftest.c",
    "drivers/iommu/iommufd/iova_bitmap.c", "drivers/iommu/iommufd/iommufd_private.h",
    "drivers/vfio/container.c", "drivers/vfio/group.c", "drivers/vfio/vfio_main.c", "drivers/vfio/device_cdev.c",
    "drivers/vfio/iommufd.c", "drivers/vfio/vfio_iommu_type1.c",
    "drivers/vfio/pci/vfio_pci_core.c", "drivers/vfio/pci/vfio_pci_intrs.c", "drivers/vfio/pci/vfio_pci_config.c",
    "include/linux/uaccess.h",
)
SOURCES_BY_SERIES: dict[str, tuple[str, ...]] = {
    "6.12": (*_COMMON, "drivers/iommu/iommufd/fault.c"),
    # fault.c became eventq.c (IOMMU_FAULT_QUEUE_ALLOC and IOMMU_VEVENTQ_ALLOC); viommu.c holds
    # the vIOMMU, vDEVICE and HW queue handlers, driver.c their helpers; vfio_pci_dmabuf.c the
    # VFIO_DEVICE_FEATURE_DMA_BUF handler.
    "7.2": (*_COMMON, "drivers/iommu/iommufd/eventq.c", "drivers/iommu/iommufd/viommu.c",
            "drivers/iommu/iommufd/driver.c", "drivers/vfio/pci/vfio_pci_dmabuf.c"),
}
SOURCES = SOURCES_BY_SERIES["6.12"]


def sources(series: str) -> tuple[str, ...]:
    """The files the errno scan reads in a tree of ``series``."""
    try:
        return SOURCES_BY_SERIES[series]
    except KeyError:
        raise ValueError(f"no errno-scan file list for kernel series {series!r} "
                         f"(known: {', '.join(SOURCES_BY_SERIES)})") from None


# vfs_ioctl() turns -ENOIOCTLCMD into ENOTTY for user space (fs/ioctl.c:51-52).
_USER_VISIBLE = {"ENOIOCTLCMD": "ENOTTY"}

# Every ioctl passes its file's dispatcher first: (function, depth scanned).  iommufd's
# checks the size (main.c iommufd_fops_ioctl, copy_struct_from_user's E2BIG).
DISPATCHERS = {
    "iommufd": ("iommufd_fops_ioctl", 1), "device": ("vfio_device_fops_unl_ioctl", 0),
    "group": ("vfio_group_fops_unl_ioctl", 0), "container": ("vfio_fops_unl_ioctl", 0),
}

_FUNC = re.compile(r"^(?:[A-Za-z_][\w \t\*]*?[ \t\*])?([A-Za-z_]\w*)\s*\(([^;{}]*?)\)\s*\n\{", re.M)
_ERRNO = re.compile(r"-(E[A-Z0-9]{2,})\b")
_CALL = re.compile(r"\b([A-Za-z_]\w*)\s*\(")
_NOT_CALLS = frozenset({"if", "for", "while", "switch", "return", "sizeof", "typeof", "defined", "offsetof",
                        "container_of", "ERR_PTR", "PTR_ERR", "IS_ERR", "WARN_ON", "unlikely", "likely"})


@dataclass
class Function:
    name: str
    file: str
    start: int                      # line of the opening brace's function header
    end: int
    errnos: dict[str, int] = field(default_factory=dict)   # errno -> first line naming it
    calls: set[str] = field(default_factory=set)


def parse_functions(relpath: str, text: str) -> list[Function]:
    """Top-level C function definitions of one file (kernel style: the body's braces at column 0)."""
    out = []
    for m in _FUNC.finditer(text):
        open_at = m.end() - 1
        close = text.find("\n}", open_at)
        if close < 0:
            continue
        body = text[open_at:close + 2]
        first = text.count("\n", 0, m.start()) + 1
        body_line = text.count("\n", 0, open_at) + 1
        f = Function(m.group(1), relpath, first, text.count("\n", 0, close + 2) + 1)
        for e in _ERRNO.finditer(body):
            f.errnos.setdefault(e.group(1), body_line + body.count("\n", 0, e.start()))
        f.calls = {c.group(1) for c in _CALL.finditer(body)} - _NOT_CALLS - {f.name}
        out.append(f)
    return out


class KernelIndex:
    def __init__(self, functions: Iterable[Function]):
        self.by_name: dict[str, Function] = {}
        self.by_file: dict[str, list[Function]] = {}
        for f in functions:
            self.by_name.setdefault(f.name, f)
            self.by_file.setdefault(f.file, []).append(f)

    @classmethod
    def load(cls, root: Path, files: Iterable[str] = SOURCES) -> KernelIndex:
        funcs: list[Function] = []
        for rel in files:
            p = root / rel
            if p.is_file():
                funcs.extend(parse_functions(rel, p.read_text(errors="replace")))
        return cls(funcs)

    def at(self, file: str, line: int) -> Function | None:
        """The function defined in ``file`` (a path suffix) that spans ``line``."""
        for rel, funcs in self.by_file.items():
            if rel == file or rel.endswith("/" + file):
                for f in funcs:
                    if f.start <= line <= f.end:
                        return f
        return None

    def errnos(self, root: Function, depth: int = 2) -> dict[str, str]:
        """errno -> "file:line" of the first place naming it, over ``root`` and its callees."""
        found: dict[str, str] = {}
        seen = {root.name}
        frontier = [root]
        for level in range(depth + 1):
            nxt = []
            for f in frontier:
                for e, line in sorted(f.errnos.items(), key=lambda kv: kv[1]):
                    found.setdefault(_USER_VISIBLE.get(e, e), f"{f.file}:{line}")
                if level < depth:
                    for c in sorted(f.calls):
                        g = self.by_name.get(c)
                        if g is not None and c not in seen:
                            seen.add(c)
                            nxt.append(g)
            frontier = nxt
        return found


def handler_errnos(index: KernelIndex, handler: str, fd_kinds: Iterable[str], depth: int = 2,
                   dispatchers: Mapping[str, tuple[str, int]] = DISPATCHERS) -> dict[str, str] | None:
    """The errnos of the handler at ``handler`` ("file.c:line"), or None where it is not in the scanned source."""
    if ":" not in handler:
        return None
    file, _, line = handler.rpartition(":")
    fn = index.at(file, int(line))
    if fn is None:
        return None
    out = index.errnos(fn, depth)
    for kind in fd_kinds:
        name, dispatch_depth = dispatchers.get(kind, ("", 0))
        d = index.by_name.get(name)
        if d is not None:
            for e, ln in index.errnos(d, dispatch_depth).items():
                if e != "ENOTTY":  # the dispatcher's ENOTTY is for numbers it does not know
                    out.setdefault(e, ln)
    return out
