"""What the three renderers share: grouping, counts, and the side-by-side step table as text.

Everything here is pure: CaseOutcome data in, plain values out.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from ..runner.outcome import CaseOutcome, StepView

STATUSES = ("pass", "fail", "skip", "error")
MODEL_ONLY = "model only"

# Characters XML 1.0 cannot carry at all (junit-xml strips the same set from what it writes).
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def by_area(outcomes: list[CaseOutcome]) -> list[tuple[str, list[CaseOutcome]]]:
    """Areas in name order; the cases of one area in the order given."""
    groups: dict[str, list[CaseOutcome]] = {}
    for o in outcomes:
        groups.setdefault(o.area or "unknown", []).append(o)
    return sorted(groups.items())


def counts(outcomes: list[CaseOutcome]) -> dict[str, int]:
    c = Counter(o.status for o in outcomes)
    return {s: c.get(s, 0) for s in STATUSES}


def backends_of(outcomes: list[CaseOutcome]) -> list[str]:
    """Every backend any case ran on, in first-seen order."""
    seen: list[str] = []
    for o in outcomes:
        for b in o.backends:
            if b not in seen:
                seen.append(b)
    return seen


def verified(o: CaseOutcome) -> str:
    return ", ".join(o.verified_on) if o.verified_on else MODEL_ONLY


def one_line(text: str) -> str:
    return " ".join(text.split())


def xml_safe(text: str) -> str:
    return _XML_ILLEGAL.sub("", text)


def is_accepted(o: CaseOutcome) -> bool:
    """A divergence the case documents as a known difference of this kernel."""
    return bool(o.divergence and o.known_difference)


def failure_message(o: CaseOutcome) -> str:
    """One line: the first divergence (if not already in the reason) and the reason."""
    reason = one_line(o.reason)
    if o.divergence and o.divergence not in reason:
        head = f"divergence: {one_line(o.divergence)}"
        return f"{head}; {reason}" if reason else head
    return reason or f"{o.status} (no reason recorded)"


def row_backends(o: CaseOutcome) -> list[str]:
    """The backend columns of a case's step table: its backends, then any others its steps name."""
    cols = list(o.backends)
    for s in o.steps:
        for b in list(s.outcomes) + list(s.failures):
            if b not in cols:
                cols.append(b)
    return cols


def marker(s: StepView) -> str:
    """≠ the backends diverge at this step; ✗ a backend missed the step's expectation."""
    return ("≠" if s.diverges else "") + ("✗" if s.failures else "")


@dataclass
class TextTable:
    header: list[str]
    rows: list[list[str]]

    def render(self) -> str:
        everything = [self.header, *self.rows]
        widths = [max(len(r[i]) for r in everything) for i in range(len(self.header))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in everything]
        return "\n".join(lines)


def step_table_text(o: CaseOutcome) -> str:
    """The side-by-side steps as monospace text (JUnit output, logs).

    Columns: marker, #, line, step, one per backend, where.  Expectation
    mismatches follow their row, indented, one per line.
    """
    if not o.steps:
        return "(no steps ran)"
    cols = row_backends(o)
    header = ["", "#", "line", "step", *cols, "where"]
    out: list[str] = []
    rows: list[list[str]] = []
    notes: dict[int, list[str]] = {}
    for s in o.steps:
        rows.append([marker(s), str(s.index + 1), str(s.line), one_line(s.label),
                     *(one_line(s.outcomes.get(b, "-")) for b in cols), s.where])
        notes[len(rows) - 1] = [f"{b}: {one_line(f)}" for b in cols for f in s.failures.get(b, [])]
    rendered = TextTable(header, rows).render().split("\n")
    out.append(rendered[0])
    for i, line in enumerate(rendered[1:]):
        out.append(line)
        out.extend(f"      {n}" for n in notes[i])
    out.append("")
    out.append("≠ the backends diverge at this step   ✗ an expectation was not met")
    return "\n".join(out)


def case_text(o: CaseOutcome) -> str:
    """A case's details as plain text: what it checks, where, why it failed, and the steps."""
    lines = [
        f"{o.location}: {o.test_id}",
        f"purpose: {o.purpose}",
        f"source: {o.source or '-'}",
        f"verified on: {verified(o)}",
        f"backends: {', '.join(o.backends) or '-'}",
        f"status: {o.status}",
    ]
    if o.reason:
        lines.append(f"reason: {o.reason}")
    if o.divergence:
        lines.append(f"first divergence: {o.divergence}")
    if o.known_difference:
        lines.append(f"accepted known difference: {o.known_difference}")
    lines += ["", step_table_text(o)]
    return "\n".join(lines)
