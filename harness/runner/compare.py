"""Compare two kernels' behaviour, case by case: the patch-validation report.

Each case runs on the baseline kernel and on the candidate kernel, and the two kernel
traces are diffed step by step through the same normalisation as a kernel-vs-model diff.
Every difference is a behaviour change of the kernel itself, and it is

- **expected** when the model predicts it: the model booted as the baseline's twin and the
  model booted as the candidate's twin (each mirroring its kernel's release through the
  version gates of model/gates.py) differ at the same step, in the same field, with the same
  values; the gates the model consulted there name the documented change.  A change at a
  step where the case documents a kernel-vs-contract difference for one of the two releases
  (``known_differences``) is expected too, for that reason;
- **unexpected** otherwise, including a change the model predicts that the kernels do not
  show (a version gate placed at the wrong release).

The same kernel built with and without a patch gives two twins of one release, so every
change the patch makes is unexpected: exactly what a patch author wants listed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..backends.base import Backend
from ..cases.case import Case
from .diff import Diff, Divergence, diff
from .engine import Runner
from .outcome import CaseOutcome, steps_view
from .trace import ERROR, FAIL, PASS, SKIP, Trace

BASELINE, CANDIDATE = "baseline", "candidate"


@dataclass(frozen=True)
class Change:
    """One field of one step that the two kernels answer differently."""

    step: int                 # 0-based
    line: int                 # the case file line of the step
    label: str
    what: str                 # "errno", "ret", "out.<field>", "length", ...
    baseline: Any
    candidate: Any
    expected: bool
    why: str                  # the gate or documented difference, or why it is unexpected
    gates: tuple[str, ...] = ()

    def line_text(self) -> str:
        return (f"step {self.step + 1} ({self.label}, line {self.line}): {self.what}: "
                f"{self.baseline!r} -> {self.candidate!r}")


@dataclass
class CaseComparison:
    case: Case
    changes: list[Change] = field(default_factory=list)
    status: str = PASS        # pass: no unexpected change; fail: one at least; skip: compared on neither
    note: str = ""            # why it was not compared, or ran on one kernel only
    traces: list[Trace] = field(default_factory=list)
    diff: Diff | None = None
    seconds: float = 0.0

    @property
    def unexpected(self) -> list[Change]:
        return [c for c in self.changes if not c.expected]

    @property
    def abi(self) -> list[Divergence]:
        """The divergences of the kernel diff that the two ABIs explain."""
        if not self.diff:
            return []
        kept = behaviour(self.diff.divergences)
        return [d for d in self.diff.divergences if d not in kept and d.what != "ret"]


def change_key(d: Divergence) -> tuple[int, str, str, str]:
    """What makes two divergences the same change: step, field and both values."""
    return d.step, d.what, repr(d.left), repr(d.right)


def _gates(traces: list[Trace], step: int) -> tuple[str, ...]:
    found: set[str] = set()
    for t in traces:
        if step < len(t.steps):
            found.update(t.steps[step].gates)
    return tuple(sorted(found))


def _documented(case: Case, releases: tuple[str, str], line: int, what: str) -> str:
    """The reason of a known difference of ``case`` that covers this step on either release."""
    return next((kd.reason for kd in case.known_differences
                 if any(kd.covers(r, line, what) for r in releases)), "")


def _line(trace: Trace, step: int) -> int:
    return trace.steps[step].line if step < len(trace.steps) else 0


def is_abi(d: Divergence, sent: set[tuple[int, str, str, str]] | None = None) -> bool:
    """A difference in what the harness sent (each series' struct layouts and sizes: a 7.2
    VFIO_DEVICE_BIND_IOMMUFD is 24 bytes, a 6.12 one 16), in an output member only one series
    has, or in an output that reads back what was sent (``sent``: the step's request
    differences as (step, field, left, right)): the two ABIs, not the kernels' behaviour."""
    if d.what.startswith("request.") or (d.what.startswith("out.") and (d.left is None or d.right is None)):
        return True
    return sent is not None and d.what.startswith("out.") and (
        d.step, d.what[len("out."):], repr(d.left), repr(d.right)) in sent


def behaviour(divergences: list[Divergence]) -> list[Divergence]:
    """The divergences that may be behaviour: not ABI ones, and no ``ret`` where the errno
    differs too (a failed call returns -1: the errno says it all)."""
    sent = {(x.step, x.what[len("request."):], repr(x.left), repr(x.right))
            for x in divergences if x.what.startswith("request.")}
    failed = {x.step for x in divergences if x.what == "errno"}
    return [x for x in divergences if not is_abi(x, sent) and not (x.what == "ret" and x.step in failed)]


def classify(case: Case, kernels: Diff, models: Diff, releases: tuple[str, str]) -> list[Change]:
    """Each kernel-vs-kernel divergence as an expected or unexpected change, and each change
    the models predict that the kernels do not show as an unexpected one (ABI differences,
    ``is_abi``, are neither)."""
    predicted = {change_key(d): d for d in behaviour(models.divergences)}
    model_traces = [models.left, models.right]
    changes = []
    for d in behaviour(kernels.divergences):
        line = _line(kernels.left, d.step) or _line(kernels.right, d.step)
        gates = _gates(model_traces, d.step)
        if change_key(d) in predicted:
            del predicted[change_key(d)]
            why = ("version gate " + ", ".join(gates)) if gates else "the model of each release predicts it"
            changes.append(Change(d.step, line, d.label, d.what, d.left, d.right, True, why, gates))
            continue
        documented = _documented(case, releases, line, d.what)
        if documented:
            changes.append(Change(d.step, line, d.label, d.what, d.left, d.right, True,
                                  f"documented difference: {documented}"))
        else:
            changes.append(Change(d.step, line, d.label, d.what, d.left, d.right, False,
                                  "the model predicts no change here"))
    for d in predicted.values():
        line = _line(models.left, d.step) or _line(models.right, d.step)
        gates = _gates(model_traces, d.step)
        changes.append(Change(d.step, line, d.label, d.what, d.left, d.right, False,
                              "the model predicts this change (" + (", ".join(gates) or "no gate")
                              + ") but the kernels do not show it", gates))
    return sorted(changes, key=lambda c: (c.step, c.what))


def compare_case(case: Case, baseline: tuple[Backend, Backend], candidate: tuple[Backend, Backend]) -> CaseComparison:
    """``baseline`` and ``candidate`` are each (kernel, the model booted as its twin)."""
    start = time.monotonic()
    (kernel_a, model_a), (kernel_b, model_b) = baseline, candidate
    ka, kb = Runner(kernel_a).run(case), Runner(kernel_b).run(case)
    ka.backend, kb.backend = BASELINE, CANDIDATE
    result = CaseComparison(case, traces=[ka, kb])
    releases = (kernel_a.facts().kernel, kernel_b.facts().kernel)
    if SKIP in (ka.status, kb.status):
        result.status = SKIP if ka.status == kb.status == SKIP else PASS
        if ka.status == kb.status == SKIP:
            result.note = f"skipped on both: {ka.reason}"
        else:
            only, other = (CANDIDATE, ka) if ka.status == SKIP else (BASELINE, kb)
            result.note = f"runs on the {only} only ({other.reason})"
        result.seconds = time.monotonic() - start
        return result
    result.diff = diff(ka, kb)
    models = diff(Runner(model_a).run(case), Runner(model_b).run(case))
    result.changes = classify(case, result.diff, models, releases)
    result.status = FAIL if result.unexpected else PASS
    if ERROR in (ka.status, kb.status):
        result.status = ERROR
        result.note = "; ".join(f"{t.backend}: {t.reason}" for t in (ka, kb) if t.status == ERROR)
    result.seconds = time.monotonic() - start
    return result


@dataclass
class CompareReport:
    baseline: str             # releases, as the kernels report them
    candidate: str
    cases: list[CaseComparison] = field(default_factory=list)

    @property
    def changes(self) -> list[tuple[CaseComparison, Change]]:
        return [(c, ch) for c in self.cases for ch in c.changes]

    @property
    def unexpected(self) -> list[tuple[CaseComparison, Change]]:
        return [(c, ch) for c, ch in self.changes if not ch.expected]

    @property
    def errors(self) -> list[CaseComparison]:
        return [c for c in self.cases if c.status == ERROR]

    def abi(self) -> dict[tuple[str, str, str, str], int]:
        """The ABI differences met (is_abi), each (ioctl, field, baseline, candidate) with how many steps."""
        out: dict[tuple[str, str, str, str], int] = {}
        for c in self.cases:
            for d in c.abi:
                key = (d.label, d.what, repr(d.left), repr(d.right))
                out[key] = out.get(key, 0) + 1
        return out

    def summary(self) -> str:
        expected = len(self.changes) - len(self.unexpected)
        compared = sum(1 for c in self.cases if c.status != SKIP)
        abi = sum(self.abi().values())
        return (f"{self.baseline} -> {self.candidate}: {compared} cases compared, "
                f"{len(self.changes)} behaviour changes ({expected} expected, {len(self.unexpected)} unexpected)"
                + (f", {abi} steps with ABI differences" if abi else "")
                + (f", {len(self.errors)} errors" if self.errors else ""))

    def outcomes(self) -> list[CaseOutcome]:
        """Each case as a CaseOutcome, for the JUnit and KTAP renderers."""
        return [_outcome(c) for c in self.cases]


def _outcome(c: CaseComparison) -> CaseOutcome:
    reason = "; ".join(f"{ch.line_text()} [{'expected' if ch.expected else 'UNEXPECTED'}: {ch.why}]"
                       for ch in c.changes)
    if c.note:
        reason = f"{c.note}; {reason}" if reason else c.note
    case = c.case
    return CaseOutcome(
        test_id=case.test_id, area=case.area, purpose=case.purpose, location=f"{case.path.name}:{case.line}",
        source=case.source, verified_on=case.verified_on, status=c.status, reason=reason,
        backends=[BASELINE, CANDIDATE], divergence=c.diff.summary() if c.diff and c.diff.first else "",
        known_difference="; ".join(dict.fromkeys(ch.why for ch in c.changes if ch.expected)),
        steps=steps_view(c.traces, c.diff) if c.traces and c.diff else [], duration_s=c.seconds,
    )


def compare(cases: list[Case], pair_for: Callable[[Case], tuple[tuple[Backend, Backend], tuple[Backend, Backend]]],
            progress: Callable[[str], None] | None = None) -> CompareReport:
    """Compare every case; ``pair_for(case)`` gives (baseline, candidate), each (kernel, model twin)."""
    report = CompareReport("", "")
    for i, case in enumerate(cases, 1):
        baseline, candidate = pair_for(case)
        report.baseline, report.candidate = baseline[0].facts().kernel, candidate[0].facts().kernel
        result = compare_case(case, baseline, candidate)
        report.cases.append(result)
        if progress is not None and (result.unexpected or i % 50 == 0 or i == len(cases)):
            progress(f"compare: {i}/{len(cases)} cases, {len(report.changes)} changes, "
                     f"{len(report.unexpected)} unexpected")
    return report
