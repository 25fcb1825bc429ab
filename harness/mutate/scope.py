"""What `mutate` mutates: the ioctl handlers of one kernel series and the functions they call.

The handlers are those the series' uAPI declarations name (``uapi.for_series(s).IOCTLS[n].handler``,
the same ``file:line`` the coverage matrix's errno scan starts from) and the ioctl dispatchers
(harness.coverage.kernel_errnos.DISPATCHERS: iommufd's checks every command's size); their callees
are followed to ``depth`` through the scanned files (harness.coverage.kernel_errnos.KernelIndex).
Only ``.c`` files under ``MUTATED_DIRS`` are mutated (a header would rebuild half the kernel).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .. import uapi
from ..coverage.kernel_errnos import DISPATCHERS, Function, KernelIndex, sources

MUTATED_DIRS = ("drivers/iommu/iommufd/", "drivers/vfio/", "drivers/vfio/pci/")
DEFAULT_DEPTH = 2


def mutable_file(rel: str) -> bool:
    return rel.endswith(".c") and any(rel.startswith(d) and "/" not in rel[len(d):] for d in MUTATED_DIRS)


@dataclass(frozen=True)
class Scope:
    functions: list[Function]            # in file order, then line order
    roots: dict[str, dict[str, int]]     # function name -> ioctl whose handler reaches it -> in how many calls

    def by_file(self) -> dict[str, list[Function]]:
        out: dict[str, list[Function]] = {}
        for f in self.functions:
            out.setdefault(f.file, []).append(f)
        return out


def _reach(index: KernelIndex, root: Function, depth: int) -> list[tuple[Function, int]]:
    """``root`` and the functions it calls within ``depth`` calls, each with its distance."""
    seen = {root.name}
    found = [(root, 0)]
    frontier = [root]
    for level in range(1, depth + 1):
        nxt = []
        for f in frontier:
            for c in sorted(f.calls):
                g = index.by_name.get(c)
                if g is not None and c not in seen:
                    seen.add(c)
                    found.append((g, level))
                    nxt.append(g)
        frontier = nxt
    return found


def handler_scope(index: KernelIndex, series: str = uapi.DEFAULT_SERIES, depth: int = DEFAULT_DEPTH) -> Scope:
    """Every function a handler of ``series`` (or a dispatcher) reaches within ``depth`` calls."""
    view = uapi.for_series(series)
    roots: dict[str, dict[str, int]] = {}

    def add(fn: str, ioctl: str, distance: int) -> None:
        per = roots.setdefault(fn, {})
        per[ioctl] = min(per.get(ioctl, distance), distance)

    for name, io in sorted(view.IOCTLS.items()):
        handler = getattr(io, "handler", "") or ""
        if ":" not in handler:
            continue
        file, _, line = handler.rpartition(":")
        fn = index.at(file, int(line))
        if fn is None:
            continue
        for g, distance in _reach(index, fn, depth):
            add(g.name, name, distance)
        for kind in sorted(io.fd_kinds):
            dname, ddepth = DISPATCHERS.get(kind, ("", 0))
            d = index.by_name.get(dname)
            if d is not None:
                for g, distance in _reach(index, d, ddepth):
                    add(g.name, name, distance)
    funcs = [index.by_name[n] for n in roots if mutable_file(index.by_name[n].file)]
    funcs.sort(key=lambda f: (f.file, f.start))
    return Scope(funcs, {f.name: roots[f.name] for f in funcs})


def load_scope(root: Path, series: str = uapi.DEFAULT_SERIES, depth: int = DEFAULT_DEPTH) -> Scope:
    return handler_scope(KernelIndex.load(root, sources(series)), series, depth)


def narrow(scope: Scope, files: Iterable[str] = (), functions: Iterable[str] = ()) -> Scope:
    """Only the functions in ``files`` (globs or path suffixes) and named in ``functions`` (globs)."""
    files, functions = list(files), list(functions)

    def keep(f: Function) -> bool:
        if files and not any(fnmatch.fnmatch(f.file, p) or f.file == p or f.file.endswith("/" + p) for p in files):
            return False
        return not functions or any(fnmatch.fnmatch(f.name, p) for p in functions)

    kept = [f for f in scope.functions if keep(f)]
    return Scope(kept, {f.name: scope.roots[f.name] for f in kept})
