"""How a run ended, for the reports: complete, interrupted (Ctrl-C, SIGTERM), refused (the backend
could not be set up, so nothing ran) or crashed (the harness itself failed), with the reason.

A run that stopped early still reports every case it meant to run: those it never reached are
skipped with the reason "not run: ..." (`not_run`), so a report's counts add up to the plan.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import exitcodes
from ..cases.case import Case, CaseError
from .outcome import CaseOutcome, malformed_outcome, unfinished
from .trace import SKIP

COMPLETE, INTERRUPTED, REFUSED, CRASHED = "complete", "interrupted", "refused", "crashed"
NOT_RUN = "not run"


@dataclass(frozen=True)
class RunState:
    how: str = COMPLETE
    reason: str = ""            # what stopped it: the signal, the backend's error, the traceback's last line
    planned: int = 0            # cases (and malformed files) the run meant to report

    @property
    def stopped_early(self) -> bool:
        return self.how != COMPLETE

    def headline(self, reported: int) -> str:
        """One line: what happened, with how far the run got ("interrupted after 3 of 40 cases")."""
        if self.how == COMPLETE:
            return f"complete: {reported} cases"
        if self.how == REFUSED:
            return self.reason or "refused to run"
        what = "interrupted" if self.how == INTERRUPTED else "the harness crashed"
        after = f"{what} after {reported} of {self.planned} cases"
        return f"{after}: {self.reason}" if self.reason and self.how == CRASHED else after

    def not_run_reason(self) -> str:
        return f"{NOT_RUN}: {self.how}"


def is_not_run(o: CaseOutcome) -> bool:
    return o.status == SKIP and o.reason.startswith(NOT_RUN + ":")


def with_not_run(outcomes: list[CaseOutcome], cases: list[Case], malformed: list[CaseError],
                 state: RunState) -> list[CaseOutcome]:
    """`outcomes` plus, when the run stopped early, one "not run" skip for each planned case that
    has no outcome (a malformed file is an error whether or not the run got to it)."""
    if not state.stopped_early:
        return list(outcomes)
    seen = {o.test_id for o in outcomes}
    out = list(outcomes)
    out += [unfinished(c, SKIP, state.not_run_reason(), backends=()) for c in cases if c.test_id not in seen]
    out += [m for m in map(malformed_outcome, malformed) if m.test_id not in seen]
    return out


def reported(outcomes: list[CaseOutcome]) -> int:
    """Cases with a result of their own (not the "not run" filler)."""
    return sum(1 for o in outcomes if not is_not_run(o))





def run_state(exitstatus: int, stopped: list[BaseException], planned: int) -> RunState:
    """How a pytest session ended, from its exit status and what stopped it (the exception
    pytest_keyboard_interrupt or pytest_internalerror saw)."""
    last = stopped[-1] if stopped else None
    message = " ".join(str(getattr(last, "msg", "") or last or "").split()) if last is not None else ""
    if isinstance(last, KeyboardInterrupt) or (last is None and exitstatus == exitcodes.INTERRUPTED):
        return RunState(INTERRUPTED, message or "KeyboardInterrupt (Ctrl-C or SIGTERM)", planned)
    if last is not None and hasattr(last, "returncode"):   # pytest.exit(): its message is the reason
        # ENVIRONMENT: the plugin's pytest.exit() when the backend or target cannot be set up.
        how = REFUSED if exitstatus == exitcodes.ENVIRONMENT else INTERRUPTED
        return RunState(how, message or f"pytest.exit (status {exitstatus})", planned)
    if last is not None or exitstatus == exitcodes.INTERNAL_ERROR:
        what = f"{type(last).__name__}: {message}" if last is not None else "pytest internal error"
        return RunState(CRASHED, what, planned)
    return RunState(COMPLETE, "", planned)
