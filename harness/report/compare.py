"""The patch-validation report of `vfio-conformance compare`: Markdown for people, and the same
cases as JUnit and KTAP (one test per case: passes when every behaviour change of the kernel is
expected)."""

from __future__ import annotations

from pathlib import Path

from ..runner.compare import CompareReport
from . import write_atomic
from .common import one_line
from .junit import render_junit
from .ktap import render_ktap


def _cell(v: object) -> str:
    return one_line(repr(v) if not isinstance(v, str) else v).replace("|", "\\|")


def render_compare_markdown(r: CompareReport, baseline_label: str = "", candidate_label: str = "") -> str:
    base = f"{r.baseline}" + (f" ({baseline_label})" if baseline_label else "")
    cand = f"{r.candidate}" + (f" ({candidate_label})" if candidate_label else "")
    lines = [f"# Behaviour changes: {r.baseline} -> {r.candidate}", "",
             f"- baseline: {base}", f"- candidate: {cand}", f"- {r.summary()}", "",
             "A change is **expected** when the model of each release predicts it (a version gate of "
             "`harness/model/gates.py`) or the case documents it; anything else is **unexpected**.", ""]
    for title, rows in (("Unexpected changes", r.unexpected),
                        ("Expected changes", [(c, ch) for c, ch in r.changes if ch.expected])):
        lines += [f"## {title} ({len(rows)})", ""]
        if not rows:
            lines += ["None.", ""]
            continue
        lines += ["| case | step | field | baseline | candidate | why |", "|---|---|---|---|---|---|"]
        lines += [f"| {c.case.test_id} | {ch.step + 1} {_cell(ch.label)} (line {ch.line}) | {ch.what} | "
                  f"{_cell(ch.baseline)} | {_cell(ch.candidate)} | {_cell(ch.why)} |" for c, ch in rows]
        lines.append("")
    abi = r.abi()
    if abi:
        lines += [f"## ABI differences ({len(abi)})", "",
                  "What the harness sent or read differs because the two series' structs differ (sizes, "
                  "members one series lacks); not a behaviour change of either kernel.", "",
                  "| ioctl | field | baseline | candidate | steps |", "|---|---|---|---|---|"]
        lines += [f"| {_cell(label)} | {what} | {b} | {c} | {n} |" for (label, what, b, c), n in sorted(abi.items())]
        lines.append("")
    one_side = [c for c in r.cases if c.note and c.status != "skip" and not c.changes]
    if one_side:
        lines += [f"## Cases compared on one kernel only ({len(one_side)})", ""]
        lines += [f"- {c.case.test_id}: {one_line(c.note)}" for c in one_side] + [""]
    if r.errors:
        lines += [f"## Errors ({len(r.errors)})", ""] + [f"- {c.case.test_id}: {one_line(c.note)}" for c in r.errors]
        lines.append("")
    return "\n".join(lines)


def write_compare_reports(r: CompareReport, folder: Path, baseline_label: str = "",
                          candidate_label: str = "") -> list[Path]:
    """compare.md, compare-junit.xml and compare.ktap in ``folder``, each written whole."""
    outcomes = r.outcomes()
    texts = {"compare.md": render_compare_markdown(r, baseline_label, candidate_label),
             "compare-junit.xml": render_junit(outcomes), "compare.ktap": render_ktap(outcomes)}
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in texts.items():
        write_atomic(folder / name, text)
        paths.append(folder / name)
    return paths
