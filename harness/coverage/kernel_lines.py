"""What a gcov kernel's counters say about the corpus (``vm --coverage``): per directory, per
file and per function, the issue's targets, and the uncovered lines of every ioctl handler.

The handlers are the ones ``harness.uapi`` cites for the kernel's series (``Ioctl.handler_in``,
the same citations the coverage matrix scans for errnos); each is the function of the run's
own source that spans the cited line, as gcov reports its first and last line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import uapi
from ..kernel import gcov, lcov
from ..runner.kernel_lines import RunLines


@dataclass(frozen=True)
class Target:
    """A line-coverage goal: a directory less the files it does not count; ``goal`` the corpus's
    (issue 12), ``fuzz_goal`` a CI fuzz run's (issue 13)."""

    name: str
    directory: str
    without: tuple[str, ...]
    goal: float
    fuzz_goal: float

    @property
    def label(self) -> str:
        return f"{self.directory} without {', '.join(self.without)}" if self.without else self.directory

    def files(self, cov: gcov.Coverage) -> list[gcov.FileCoverage]:
        return [f for f in cov.values() if f.path.rsplit("/", 1)[0] == self.directory
                and f.path.rsplit("/", 1)[1] not in self.without]

    def figures(self, cov: gcov.Coverage) -> tuple[int, int]:
        files = self.files(cov)
        return sum(len(f.hit) for f in files), sum(len(f.counts) for f in files)


# The mock driver (selftest.c) is test code; igd is Intel graphics only; the vendor variant
# drivers (drivers/vfio/pci/<vendor>/) are not instrumented (kernel build --coverage).
TARGETS = (
    Target("iommufd core", "drivers/iommu/iommufd", ("selftest.c",), 92.0, 85.0),
    Target("drivers/vfio core", "drivers/vfio", (), 80.0, 70.0),
    Target("drivers/vfio/pci core", "drivers/vfio/pci", ("vfio_pci_igd.c",), 60.0, 50.0),
)


@dataclass(frozen=True)
class FunctionFigures:
    file: str
    name: str
    start: int
    end: int
    lines: int
    hit: int
    missed: tuple[int, ...]

    @property
    def percent(self) -> float:
        return 100.0 * self.hit / self.lines if self.lines else 0.0


@dataclass(frozen=True)
class Handler:
    ioctl: str
    function: FunctionFigures


def functions(cov: gcov.Coverage) -> list[FunctionFigures]:
    out = []
    for f in sorted(cov.values(), key=lambda f: f.path):
        for fn in sorted(f.functions.values(), key=lambda fn: fn.start):
            lines, hit = f.lines_of(fn)
            out.append(FunctionFigures(f.path, fn.name, fn.start, fn.end, len(lines), len(hit),
                                       tuple(sorted(lines - hit))))
    return out


def handlers(cov: gcov.Coverage, release: str) -> list[Handler]:
    """Each ioctl handler of the release's series whose file the run instrumented."""
    series = ".".join(release.split(".")[:2])
    try:
        view = uapi.for_series(series)
    except (KeyError, ValueError):
        view = uapi.for_series(uapi.DEFAULT_SERIES)
    out = []
    for name, io in sorted(view.IOCTLS.items()):
        file, _, line = io.handler_in(view.series).rpartition(":")
        f = cov.get(file)
        fn = f.function_at(int(line)) if f is not None and line.isdigit() else None
        if f is None or fn is None:
            continue
        lines, hit = f.lines_of(fn)
        out.append(Handler(name, FunctionFigures(file, fn.name, fn.start, fn.end, len(lines), len(hit),
                                                tuple(sorted(lines - hit)))))
    return out


def spans(lines: tuple[int, ...] | list[int]) -> str:
    """Line numbers as ranges of consecutive ones: 12-14, 20."""
    out: list[str] = []
    for ln in sorted(lines):
        if out and int(out[-1].rsplit("-", 1)[-1]) == ln - 1:
            out[-1] = f"{out[-1].split('-')[0]}-{ln}"
        else:
            out.append(str(ln))
    return ", ".join(out)


def least_covered(cov: gcov.Coverage, target: Target, source: Path | None = None,
                  count: int = 10) -> list[FunctionFigures]:
    """The target's functions with the most executable lines no case reached, less the module
    init and exit functions (``__init``/``__exit`` in their header in ``source``): they ran at
    boot, before the counters were zeroed, and no case can reach them."""
    paths = {f.path for f in target.files(cov)}
    return sorted((fn for fn in functions(cov) if fn.file in paths and fn.missed
                   and not (source is not None and _boot_only(source / fn.file, fn.start))),
                  key=lambda fn: (-len(fn.missed), fn.file, fn.start))[:count]


def _boot_only(path: Path, start: int) -> bool:
    try:
        header = path.read_text(errors="replace").splitlines()[max(0, start - 2):start]
    except OSError:
        return False
    return any("__init" in line or "__exit" in line for line in header)


def _pct(hit: int, total: int) -> str:
    return f"{100.0 * hit / total if total else 0:.1f}%"


def target_table(cov: gcov.Coverage, fuzz: bool = False) -> list[str]:
    """The goals' table: each target's lines hit, of how many, and its corpus (or fuzz) goal."""
    out = ["| code | lines hit | of | goal |", "|---|---|---|---|"]
    for t in TARGETS:
        hit, total = t.figures(cov)
        out.append(f"| {t.label} | {_pct(hit, total)} | {total} | {t.fuzz_goal if fuzz else t.goal:.0f}% |")
    return out


def markdown(cov: gcov.Coverage, release: str, title: str, notes: list[str], source: Path | None = None) -> str:
    out = [f"# {title}", "", *notes, "", "## Targets (issue 12)", "", *target_table(cov)]
    out += ["", "## Directories", "", "| directory | lines hit | of |", "|---|---|---|"]
    for d, (hit, total) in sorted(gcov.by_directory(cov).items()):
        out.append(f"| {d} | {_pct(hit, total)} | {total} |")
    out += ["", "## Files", "", "| file | lines hit | of | functions entered |", "|---|---|---|---|"]
    for f in sorted(cov.values(), key=lambda f: f.path):
        entered = sum(1 for fn in f.functions.values() if fn.calls)
        out.append(f"| {f.path} | {f.percent:.1f}% | {len(f.counts)} | {entered} of {len(f.functions)} |")
    out += ["", "## ioctl handlers", "", "Lines of the handler function itself (not its callees).", "",
            "| ioctl | handler | lines hit | uncovered lines |", "|---|---|---|---|"]
    for h in handlers(cov, release):
        fn = h.function
        out.append(f"| {h.ioctl} | {fn.file}:{fn.start} {fn.name}() | {fn.percent:.1f}% of {fn.lines} "
                   f"| {spans(fn.missed) or '-'} |")
    for t in TARGETS:
        out += ["", f"## Least covered functions: {t.directory}", "", "(Module init and exit functions left out.)", "",
                "| function | lines missed | lines hit | uncovered lines |", "|---|---|---|---|"]
        for fn in least_covered(cov, t, source):
            out.append(f"| {fn.file}:{fn.start} {fn.name}() | {len(fn.missed)} | {fn.percent:.1f}% of {fn.lines} "
                       f"| {spans(fn.missed)} |")
    out += ["", "## Functions", "", "| function | lines hit | of |", "|---|---|---|"]
    for fn in functions(cov):
        out.append(f"| {fn.file}:{fn.start} {fn.name}() | {fn.percent:.1f}% | {fn.lines} |")
    return "\n".join(out) + "\n"


def to_json(cov: gcov.Coverage, release: str) -> str:
    def figures(fn: FunctionFigures) -> dict[str, Any]:
        return {"start": fn.start, "end": fn.end, "lines": fn.lines, "hit": fn.hit,
                "percent": round(fn.percent, 1), "uncovered": list(fn.missed)}

    by_file: dict[str, dict[str, Any]] = {
        f.path: {"lines": len(f.counts), "hit": len(f.hit), "percent": round(f.percent, 1), "functions": {}}
        for f in sorted(cov.values(), key=lambda f: f.path)}
    for fn in functions(cov):
        by_file[fn.file]["functions"][fn.name] = figures(fn)
    targets = {t.name: dict(zip(("hit", "lines"), t.figures(cov), strict=True)) for t in TARGETS}
    return json.dumps({
        "release": release,
        "targets": {k: {**v, "percent": round(100.0 * v["hit"] / v["lines"], 1) if v["lines"] else 0.0}
                    for k, v in targets.items()},
        "directories": {d: {"hit": h, "lines": n} for d, (h, n) in sorted(gcov.by_directory(cov).items())},
        "handlers": {h.ioctl: {"file": h.function.file, "function": h.function.name, **figures(h.function)}
                     for h in handlers(cov, release)},
        "files": by_file,
    }, indent=1)


BY_CASE_FORMAT = "vfio-conformance kernel lines by case"


def by_case_json(by_case: dict[str, Any], lost: list[str], release: str, image: Path, source: Path,
                 dirs: list[str], total: gcov.Coverage | None = None) -> str:
    """``kernel-lines-by-case.json`` (its format: docs/kernel.md).  With ``total``, also each file's
    executable lines and function spans: a line the compiler left no code on (a ``return -EINVAL;``
    folded into its ``if``, a dead check) is reached by no case, yet its mutant may be."""
    out: dict[str, Any] = {
        "format": BY_CASE_FORMAT, "version": 1, "release": release, "kernel": str(image), "source": str(source),
        "instrumented": dirs, "lost": sorted(set(lost)),
        "cases": {k: {"guest": c.guest, "status": c.status, "lines": c.lines} for k, c in sorted(by_case.items())},
    }
    if total is not None:
        out["executable"] = {f: sorted(fc.lines) for f, fc in sorted(total.items())}
        out["functions"] = {f: {n: [s.start, s.end] for n, s in sorted(fc.functions.items())}
                            for f, fc in sorted(total.items())}
    return json.dumps(out, indent=None, separators=(",", ":")) + "\n"


def write_reports(run: RunLines, image: Path, report: Path, merge: dict[Path, gcov.Coverage]) -> list[str]:
    """Write a ``vm --coverage`` run's reports under ``report``, ``merge``'s tracefiles (read
    with ``lcov.read_info``) added; the lines to print (those for stderr start with
    ``vfio-conformance:``)."""
    _build, source, dirs = gcov.coverage_build(image)
    cov = run.total
    for more in merge.values():
        gcov.merge_into(cov, more)
    release = run.release or "unknown release"
    report.mkdir(parents=True, exist_ok=True)
    what = "the corpus" + "".join(f" and {m.name}" for m in merge)
    notes = [f"Kernel lines {what} reached on {release} ({image}), both guests, counters zeroed after each boot."]
    if run.lost:
        lost = sorted(set(run.lost))
        notes.append(f"The counters of {len(lost)} cases died with their guest: {', '.join(lost)}.")
    md, js, info = report / "kernel-coverage.md", report / "kernel-coverage.json", report / "kernel-coverage.info"
    md.write_text(markdown(cov, release, f"Kernel line coverage: {release}", notes, source))
    js.write_text(to_json(cov, release) + "\n")
    info.write_text(lcov.write_info(cov, source, "vfio_conformance"))
    out = [f"vfio-conformance: wrote {md}, {js} and {info}"]
    problem = lcov.genhtml(info, report / "kernel-coverage", source, f"vfio-conformance: {what}, {release}")
    out.append(f"vfio-conformance: {problem}" if problem
               else f"vfio-conformance: wrote {report / 'kernel-coverage' / 'index.html'}")
    if run.per_case:
        cases = report / "kernel-lines-by-case.json"
        cases.write_text(by_case_json(run.by_case, run.lost, release, image, source, dirs, cov))
        out.append(f"vfio-conformance: wrote {cases} ({len(run.by_case)} cases)")
    for t in TARGETS:
        hit, total = t.figures(cov)
        out.append(f"coverage: {t.label}: {_pct(hit, total)} of {total} lines (goal {t.goal:.0f}%)")
    return out
