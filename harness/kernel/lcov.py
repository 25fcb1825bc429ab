"""Kernel line coverage as an lcov tracefile (``.info``), and its HTML pages by lcov's genhtml.

The tracefile is lcov's plain format (``geninfo(1)``): per source file ``SF:``, each
function's first line and calls (``FN:``, ``FNDA:``), each executable line's count
(``DA:``) and the totals.  ``SF:`` names the file in the kernel source tree the counts
belong to, so genhtml (Debian package ``lcov``) shows each line of it marked, and lcov's
own tools (``lcov -a``) merge it with other runs.  ``read_info`` reads such a file back,
e.g. ``fuzz --vm --coverage``'s, to merge it into a ``vm --coverage`` run.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from .gcov import Coverage, FileCoverage, FunctionSpan


def write_info(cov: Coverage, source: Path, test_name: str = "") -> str:
    """``cov`` as a tracefile; ``source``: the tree its paths are relative to."""
    out: list[str] = []
    for f in sorted(cov.values(), key=lambda f: f.path):
        if test_name:
            out.append(f"TN:{test_name}")
        out.append(f"SF:{source / f.path}")
        functions = sorted(f.functions.values(), key=lambda fn: (fn.start, fn.name))
        out += [f"FN:{fn.start},{fn.name}" for fn in functions]
        out += [f"FNDA:{fn.calls},{fn.name}" for fn in functions]
        out += [f"FNF:{len(functions)}", f"FNH:{sum(1 for fn in functions if fn.calls)}"]
        out += [f"DA:{ln},{n}" for ln, n in sorted(f.counts.items())]
        out += [f"LF:{len(f.counts)}", f"LH:{len(f.hit)}", "end_of_record"]
    return "\n".join(out) + "\n"


class InfoError(ValueError):
    pass


def read_info(text: str, source: Path, origin: str = "tracefile") -> Coverage:
    """A tracefile's line counts and functions, by path relative to ``source`` (paths outside
    it are kept as they are).  A function's last line is not in the format: it is taken to
    end where the next one starts (merged into a run of the same kernel, whose own spans
    come first, the exact ones win)."""
    cov: Coverage = {}
    current: FileCoverage | None = None
    roots = (str(source.resolve()) + "/", str(source) + "/")
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        tag, _, value = line.partition(":")
        try:
            if tag == "SF":
                path = next((value[len(r):] for r in roots if value.startswith(r)), value)
                current = cov.setdefault(path, FileCoverage(path))
            elif line == "end_of_record":
                if current is not None:
                    _close_spans(current)
                current = None
            elif current is None:
                continue                      # TN:, or whatever precedes the first SF:
            elif tag == "DA":
                ln, n = value.split(",")[:2]
                current.counts[int(ln)] = current.counts.get(int(ln), 0) + int(n)
            elif tag == "FN":
                start, name = value.split(",", 1)
                current.functions.setdefault(name, FunctionSpan(name, int(start), int(start)))
            elif tag == "FNDA":
                n, name = value.split(",", 1)
                current.functions.setdefault(name, FunctionSpan(name, 0, 0)).calls += int(n)
        except ValueError as e:
            raise InfoError(f"{origin}:{number}: {raw!r} is not a tracefile line ({e})") from None
    return cov


def _close_spans(f: FileCoverage) -> None:
    spans = sorted(f.functions.values(), key=lambda fn: fn.start)
    last = max(f.counts, default=0)
    for i, fn in enumerate(spans):
        fn.end = max(fn.start, spans[i + 1].start - 1 if i + 1 < len(spans) else last)


def genhtml(info: Path, out_dir: Path, source: Path, title: str) -> str:
    """Write genhtml's per-line pages of ``info`` under ``out_dir``; "" when done, else why not."""
    tool = shutil.which("genhtml")
    if tool is None:
        return ("genhtml not found: the per-line HTML pages need lcov's genhtml (Debian package lcov: "
                "apt-get install lcov); the .info file is written all the same")
    proc = subprocess.run([tool, "--quiet", "--legend", "--title", title, "--prefix", str(source),
                           "--ignore-errors", "source", "--output-directory", str(out_dir), str(info)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return f"genhtml failed: {(proc.stderr or proc.stdout).strip()[-500:]}"
    return ""
