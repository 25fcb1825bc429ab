"""The result of one case on one or two backends, as plain data for reports.

It crosses process boundaries (pytest-xdist workers), so it converts to and
from a JSON-able dict.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..cases.case import Case, CaseError
from .diff import Diff
from .trace import ERROR, FAIL, PASS, SKIP, Trace


@dataclass
class StepView:
    """One row of the side-by-side view."""

    index: int
    line: int
    label: str
    outcomes: dict[str, str]            # backend -> "ok ret=0" / "EINVAL"
    failures: dict[str, list[str]]      # backend -> expectation mismatches
    where: str = ""                     # the model's kernel citation, if it failed
    diverges: bool = False


@dataclass
class CaseOutcome:
    test_id: str
    area: str
    purpose: str
    location: str                       # cases/ioas/map-unaligned-iova.yaml:1
    source: str
    verified_on: list[str]
    status: str                         # pass, fail, skip, error
    reason: str = ""
    backends: list[str] = field(default_factory=list)
    divergence: str = ""                # first divergence, one line; "" if none
    known_difference: str = ""          # why a divergence is accepted, if it is
    steps: list[StepView] = field(default_factory=list)
    duration_s: float = 0.0
    kernel: str = ""                    # the release of the kernel it ran on, "" for the model alone

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> CaseOutcome:
        d = dict(d)
        d["steps"] = [StepView(**s) for s in d.get("steps", [])]
        return cls(**d)


def steps_view(traces: list[Trace], d: Diff | None) -> list[StepView]:
    """Rows lined up by step: a case's steps first, then its cleanup steps, so a
    trace that stopped early leaves gaps rather than shifting its cleanup up."""
    diverging = {x.step for x in d.divergences} if d else set()
    keyed = [{(s.cleanup, s.index): (i, s) for i, s in enumerate(t.steps)} for t in traces]
    rows = []
    for key in sorted(set().union(*keyed)):
        recs = {t.backend: k[key][1] for t, k in zip(traces, keyed, strict=True) if key in k}
        positions = {k[key][0] for k in keyed if key in k}
        first = next(iter(recs.values()))
        rows.append(StepView(
            index=first.index, line=first.line, label=("cleanup: " if first.cleanup else "") + first.label,
            outcomes={b: r.outcome for b, r in recs.items()},
            failures={b: r.failures for b, r in recs.items() if r.failures},
            where=next((r.where for r in recs.values() if r.where), ""),
            diverges=bool(positions & diverging),
        ))
    return rows


def combine(statuses: list[str]) -> str:
    """A case passes only where it ran and passed everywhere: a skip on one
    backend means it was not compared."""
    for s in (ERROR, FAIL, SKIP):
        if s in statuses:
            return s
    return PASS


def unfinished(case: Case, status: str, reason: str, seconds: float = 0.0,
               backends: tuple[str, ...] = ("kernel", "model")) -> CaseOutcome:
    """The outcome of a case that did not run to its end (its guest did not come up, the
    harness raised): no steps, the reason says why."""
    return CaseOutcome(
        test_id=case.test_id, area=case.area, purpose=case.purpose, location=f"{case.path}:{case.line}",
        source=case.source, verified_on=case.verified_on, status=status, reason=reason,
        backends=list(backends), duration_s=seconds,
    )


def malformed_outcome(e: CaseError) -> CaseOutcome:
    """A case file that does not load: an error under its own name, malformed:<file name>."""
    return CaseOutcome(
        test_id=f"malformed:{Path(e.path).name}", area=Path(e.path).parent.name, purpose="(malformed case file)",
        location=f"{e.path}:{e.line}", source="", verified_on=[], status=ERROR, reason=str(e),
    )
