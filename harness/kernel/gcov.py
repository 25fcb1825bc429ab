"""Kernel line coverage of a run, from a gcov test kernel (``kernel build --coverage``).

The guest's counters (``/sys/kernel/debug/gcov/<build dir>/<obj>.gcda``, read by the
agent's ``gcov_collect``) are laid beside copies of the build's ``.gcno`` notes in a
scratch tree, and ``gcov --json-format`` says which lines of each source file are
executable, how often each ran, and where each function starts and ends.  Runs in several
guests merge by adding the counts (so the lines hit are the union).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..backends.kernel import GCOV_ROOT
from .image import build_info


class CoverageError(RuntimeError):
    pass


@dataclass
class FunctionSpan:
    name: str
    start: int
    end: int
    calls: int = 0                              # times it was entered


@dataclass
class FileCoverage:
    path: str                                   # relative to the source tree: drivers/vfio/group.c
    counts: dict[int, int] = field(default_factory=dict)   # executable line -> times it ran
    functions: dict[str, FunctionSpan] = field(default_factory=dict)

    @property
    def lines(self) -> set[int]:
        """The executable lines."""
        return set(self.counts)

    @property
    def hit(self) -> set[int]:
        return {ln for ln, n in self.counts.items() if n > 0}

    @property
    def percent(self) -> float:
        return _percent(len(self.hit), len(self.counts))

    def function_at(self, line: int) -> FunctionSpan | None:
        """The function whose body holds ``line``."""
        return next((f for f in self.functions.values() if f.start <= line <= f.end), None)

    def lines_of(self, fn: FunctionSpan) -> tuple[set[int], set[int]]:
        """(executable, hit) lines of ``fn``."""
        lines = {ln for ln in self.counts if fn.start <= ln <= fn.end}
        return lines, {ln for ln in lines if self.counts[ln] > 0}


def _percent(hit: int, total: int) -> float:
    return 100.0 * hit / total if total else 0.0


Coverage = dict[str, FileCoverage]


def coverage_build(bzimage: Path) -> tuple[Path, Path, list[str]]:
    """(build dir, source tree, instrumented dirs) of a cached coverage kernel, from the
    build.json stored beside its bzImage."""
    info = build_info(bzimage)
    if info is None:
        raise CoverageError(f"{bzimage.parent / 'build.json'}: missing or unreadable (kernel coverage needs a "
                            "kernel from `vfio-conformance kernel build --coverage`)")
    if not info.get("coverage"):
        raise CoverageError(f"{bzimage} was built without --coverage")
    build = Path(str(info["build_dir"]))
    if not build.is_dir():
        raise CoverageError(f"{build}: the build tree of {bzimage} is gone (its .gcno notes are needed)")
    dirs = info.get("coverage_dirs", [])
    return build, Path(str(info["source"])), [str(d) for d in dirs] if isinstance(dirs, list) else []


def line_coverage(build: Path, source: Path, gcda: dict[str, bytes], prefix: str = GCOV_ROOT) -> Coverage:
    """Each instrumented source file's executable and hit lines, from ``gcda`` (by path under
    ``prefix`` + the build dir, as the kernel lays them out)."""
    if shutil.which("gcov") is None:
        raise CoverageError("gcov not found (Debian package gcc)")
    root = f"{prefix}{build}/"
    out: Coverage = {}
    with tempfile.TemporaryDirectory(prefix="vfio-gcov-") as tmp:
        scratch = Path(tmp)
        for path, data in sorted(gcda.items()):
            if not path.startswith(root):
                continue
            rel = path[len(root):]
            notes = build / rel.replace(".gcda", ".gcno")
            if not notes.is_file():
                continue
            where = scratch / rel
            where.parent.mkdir(parents=True, exist_ok=True)
            where.write_bytes(data)
            shutil.copy(notes, where.with_suffix(".gcno"))
            for f in _gcov_json(where, source):
                merge_into(out, {f.path: f})
    return out


def _gcov_json(gcda: Path, source: Path) -> list[FileCoverage]:
    proc = subprocess.run(["gcov", "--json-format", "--stdout", "-o", str(gcda.parent), str(gcda)],
                          cwd=gcda.parent, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise CoverageError(f"gcov {gcda}: {proc.stderr.strip()[-500:]}")
    files: list[FileCoverage] = []
    for line in proc.stdout.splitlines():
        if not line.startswith("{"):
            continue
        for entry in json.loads(line).get("files", []):
            name = _relative(entry["file"], source)
            if not name.endswith(".c"):
                continue   # lines of inline functions in headers count where they are defined
            f = FileCoverage(name)
            for ln in entry.get("lines", []):
                # A line listed twice (code of two functions on it) ran as often as its busier part.
                f.counts[ln["line_number"]] = max(f.counts.get(ln["line_number"], 0), int(ln["count"]))
            for fn in entry.get("functions", []):
                f.functions[fn["name"]] = FunctionSpan(fn["name"], int(fn["start_line"]), int(fn["end_line"]),
                                                       int(fn["execution_count"]))
            files.append(f)
    return files


def _relative(name: str, source: Path) -> str:
    for base in (str(source.resolve()) + "/", str(source) + "/"):
        if name.startswith(base):
            return name[len(base):]
    while name.startswith("../"):
        name = name[3:]
    return name


def merge_into(total: Coverage, more: Coverage) -> Coverage:
    for path, f in more.items():
        t = total.setdefault(path, FileCoverage(path))
        for ln, n in f.counts.items():
            t.counts[ln] = t.counts.get(ln, 0) + n
        for name, fn in f.functions.items():
            have = t.functions.setdefault(name, FunctionSpan(fn.name, fn.start, fn.end))
            have.calls += fn.calls
    return total


def by_directory(cov: Coverage) -> dict[str, tuple[int, int]]:
    """(lines hit, executable lines) per directory."""
    out: dict[str, tuple[int, int]] = {}
    for f in cov.values():
        d = f.path.rsplit("/", 1)[0]
        hit, total = out.get(d, (0, 0))
        out[d] = (hit + len(f.hit), total + len(f.counts))
    return out


def markdown(cov: Coverage, title: str, head: list[str] | None = None) -> str:
    """Per directory and per file; ``head``: lines that go first, under the title."""
    lines = [f"# {title}", "", *(head or []), "| code | lines hit |", "|---|---|"]
    for d, (hit, total) in sorted(by_directory(cov).items()):
        lines.append(f"| {d} | {100.0 * hit / total if total else 0:.1f}% of {total} |")
    lines += ["", "| file | lines hit | of |", "|---|---|---|"]
    for f in sorted(cov.values(), key=lambda f: f.path):
        lines.append(f"| {f.path} | {f.percent:.1f}% | {len(f.lines)} |")
    return "\n".join(lines) + "\n"


def to_json(cov: Coverage) -> str:
    return json.dumps({f.path: {"lines": len(f.lines), "hit": len(f.hit), "percent": round(f.percent, 1)}
                       for f in sorted(cov.values(), key=lambda f: f.path)}, indent=1)


def to_data(cov: Coverage) -> dict[str, Any]:
    """``cov`` as JSON data, every count and function span kept (``from_data`` reads it)."""
    return {f.path: {"counts": [[ln, n] for ln, n in sorted(f.counts.items())],
                     "functions": [[fn.name, fn.start, fn.end, fn.calls] for fn in f.functions.values()]}
            for f in sorted(cov.values(), key=lambda f: f.path)}


def from_data(data: dict[str, Any]) -> Coverage:
    return {path: FileCoverage(path, {int(ln): int(n) for ln, n in d["counts"]},
                               {fn[0]: FunctionSpan(*fn) for fn in d["functions"]})
            for path, d in data.items()}
