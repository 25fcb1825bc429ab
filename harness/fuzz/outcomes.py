"""The fuzzer's and fault injection's results as case outcomes, for the same JUnit and KTAP
renderers as a run's (harness/report): one per state machine run (`fuzz.xml`, `fuzz.ktap`), one
per fault-injected case (`faults.xml`, `faults.ktap`).  A divergence is a failure that names the shrunk case file
written for it; a kernel that misbehaved with a fault injected fails its case.  A command that
stopped early says so as a run does (harness/runner/run_state.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..cases.case import Case
from ..runner.outcome import CaseOutcome, unfinished
from ..runner.run_state import COMPLETE, RunState, with_not_run
from ..runner.trace import ERROR, FAIL, PASS, SKIP
from .faults import FaultReport
from .run import FuzzReport


def _machine(kind: str, status: str, reason: str, purpose: str, location: str = "", seconds: float = 0.0,
             steps_text: str = "") -> CaseOutcome:
    return CaseOutcome(test_id=f"fuzz-{kind}", area="fuzz", purpose=purpose, location=location, source="",
                       verified_on=[], status=status, reason=reason, backends=["kernel", "model"],
                       divergence=steps_text, duration_s=seconds)


@dataclass
class FuzzResults:
    """What `vfio-conformance fuzz` found, machine by machine, as it goes."""

    machines: list[str]
    profile: str
    outcomes: list[CaseOutcome] = field(default_factory=list)
    state: RunState = field(default_factory=RunState)

    def finished(self, kind: str, report: FuzzReport, kernel: str) -> None:
        purpose = f"the {kind} machine, {self.profile} profile, on {kernel} vs the model: {report.line()}"
        if not report.findings:
            self.outcomes.append(_machine(kind, PASS, "", purpose, seconds=report.seconds))
            return
        f = report.findings[0]
        where = f"shrunk case written to {f.case}" if f.case else "no case file written (no --out)"
        self.outcomes.append(_machine(
            kind, FAIL, f"divergence (seed {f.seed}, {len(f.steps)} steps): {f.summary}; {where}", purpose,
            location=str(f.case or ""), seconds=report.seconds, steps_text=f.summary))

    def skipped(self, kind: str, reason: str) -> None:
        self.outcomes.append(_machine(kind, SKIP, reason, f"the {kind} machine"))

    def stopped(self, kind: str, how: str, reason: str) -> None:
        """The run ends here: interrupted while `kind` ran, or refused (its target cannot be set up)."""
        self.outcomes.append(_machine(kind, ERROR, reason, f"the {kind} machine"))
        self.state = RunState(how, reason, len(self.machines))

    def all_outcomes(self) -> list[CaseOutcome]:
        out = list(self.outcomes)
        if self.state.how != COMPLETE:
            seen = {o.test_id for o in out}
            out += [_machine(k, SKIP, self.state.not_run_reason(), f"the {k} machine")
                    for k in self.machines if f"fuzz-{k}" not in seen]
        return out

    def run_state(self) -> RunState:
        return RunState(self.state.how, self.state.reason, len(self.machines))


def fault_outcomes(cases: list[Case], report: FaultReport, state: RunState) -> list[CaseOutcome]:
    """One outcome per case: failed where the kernel misbehaved with a fault injected, skipped
    where the case cannot run on the kernel, "not run" where the command stopped first."""
    skipped = dict(s.split(": ", 1) for s in report.skipped if ": " in s)
    problems: dict[str, list[str]] = {}
    for s in report.steps:
        problems.setdefault(s.case, []).extend(f"step {s.step} ({s.label}): {p}" for p in s.problems)
    out: list[CaseOutcome] = []
    reached: list[Case] = []
    for c in cases:
        if c.test_id in skipped:
            o = unfinished(c, SKIP, skipped[c.test_id], backends=("kernel",))
        elif c.test_id in problems:
            found = problems[c.test_id]
            o = unfinished(c, FAIL if found else PASS, "; ".join(found), backends=("kernel",))
        elif not state.stopped_early:
            o = unfinished(c, PASS, "no ioctl step to inject faults into", backends=("kernel",))
        else:
            continue
        reached.append(c)
        out.append(o)
    rest = [c for c in cases if c not in reached]
    out = with_not_run(out, rest, [], state) if state.stopped_early else out
    for o in out:
        o.test_id, o.area = f"faults:{o.test_id}", "faults"
    return out
