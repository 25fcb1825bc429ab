"""Drive the state machine: profiles, time budget, progress, the regression case.

The run is a series of rounds; each round is one Hypothesis run of the machine
with its own seed (``seed``, ``seed + 1``, ...), so a finding is reproduced by
re-running with the seed it names.  The first divergence ends the run: Hypothesis
has shrunk it by then, and its steps become ``cases/regressions/<id>.yaml``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hypothesis
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis.database import DirectoryBasedExampleDatabase, ExampleDatabase
from hypothesis.errors import Flaky

from ..cache_root import cache_root
from ..cases.case import CaseError
from ..runner import interrupts
from .kcov import KcovGuide, PcLog
from .lockstep import Lockstep
from .machine import Divergence, find_machine, make_machine, tape_strategy
from .regression import write_regression


@dataclass(frozen=True)
class Profile:
    name: str
    examples_per_round: int
    steps_per_sequence: int
    rounds: int | None              # None: until the duration is spent
    duration_s: float | None
    database: bool                  # keep Hypothesis's example database between runs
    invalid_share: float = 0.3      # of the arguments drawn from their invalid side
    # Shrinking a divergence stops after this long (Hypothesis's own limit is 5 minutes, which
    # a VM target's divergence once took, past a 10 minute --duration; it has no public knob,
    # so ShrinkGuard enforces ours); the replay minimiser (minimise()) then drops what steps
    # it still can.
    shrink_seconds: float = 60


PROFILES = {
    # Deterministic and bounded: the same seed and number of sequences every time.
    "ci": Profile("ci", examples_per_round=250, steps_per_sequence=15, rounds=3, duration_s=None, database=False),
    "nightly": Profile("nightly", examples_per_round=100, steps_per_sequence=20, rounds=None, duration_s=7200.0,
                       database=True),
}


def default_database_dir() -> Path:
    return cache_root() / "fuzz-db"


@dataclass
class Finding:
    summary: str
    steps: list[dict[str, Any]]
    seed: int
    case: Path | None = None


@dataclass
class FuzzReport:
    sequences: int = 0
    steps: int = 0
    seconds: float = 0.0
    rounds: int = 0
    seeds: list[int] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    kcov: PcLog | None = None           # the kernel PCs reached, with coverage guidance (fuzz/kcov.py)

    @property
    def sequences_per_s(self) -> float:
        return self.sequences / self.seconds if self.seconds else 0.0

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        return (f"{self.sequences} sequences, {self.steps} steps in {self.seconds:.1f} s "
                f"({self.sequences_per_s:.0f} sequences/s, {self.steps_per_s:.0f} steps/s), "
                f"{len(self.findings)} divergences" + (f", {self.kcov.line()}" if self.kcov else ""))


class _ShrinkBudgetSpent(BaseException):
    """Ends a Hypothesis run from inside the machine once shrinking is over budget (a
    BaseException: Hypothesis takes any Exception for one more failure to shrink; it still
    notices the example ended early and may say so as Flaky, which the caller expects)."""


class ShrinkGuard:
    """Our bound on shrinking time: it keeps the shortest divergence seen and, once the first
    one is ``seconds`` old, stops the run before the next example; the caller then goes on
    with the shortest one."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.first_at: float | None = None
        self.shortest: Divergence | None = None
        self.spent = False

    def before_example(self) -> None:
        if self.first_at is not None and time.monotonic() - self.first_at >= self.seconds:
            self.spent = True
            raise _ShrinkBudgetSpent

    def saw(self, d: Divergence) -> None:
        if self.first_at is None:
            self.first_at = time.monotonic()
        if self.shortest is None or len(d.steps) < len(self.shortest.steps):
            self.shortest = Divergence(d.summary, list(d.steps))


def replay(lockstep: Lockstep, steps: list[dict[str, Any]],
           after_step: Callable[[], str] | None = None) -> tuple[int, str] | None:
    """Run ``steps`` afresh: (index, summary) of the first divergence, or None (also when
    the steps no longer make a valid sequence)."""
    lockstep.start()
    bound: set[str] = set(lockstep.roles)   # names the topology roles bind
    try:
        for i, raw in enumerate(steps):
            interrupts.check()
            try:
                problem = lockstep.run_raw(raw, bound, i, after_step)
            except CaseError:
                return None  # a name a removed step bound
            if problem:
                return i, problem
        return None
    finally:
        lockstep.finish()


def minimise(lockstep: Lockstep, steps: list[dict[str, Any]], summary: str,
             after_step: Callable[[], str] | None = None) -> tuple[list[dict[str, Any]], str]:
    """Drop every step the divergence does not need, one at a time from the end, after
    Hypothesis's shrinking (whose result depends on how much time it was given)."""
    found = replay(lockstep, steps, after_step)
    if found is None:
        return steps, summary   # not reproducible on its own: keep what Hypothesis gave
    steps, summary = steps[:found[0] + 1], found[1]
    i = len(steps) - 2
    while i >= 0:
        candidate = steps[:i] + steps[i + 1:]
        again = replay(lockstep, candidate, after_step)
        if again is not None and again[0] == len(candidate) - 1:
            steps, summary = candidate, again[1]
        i -= 1
    return steps, summary


def fuzz(lockstep: Lockstep, profile: Profile, *, seed: int | None = None, duration_s: float | None = None,
         rounds: int | None = None, examples: int | None = None, out_dir: Path | None = None,
         database_dir: Path | None = None, kernel: str = "model", mock_domains: bool = True,
         invalid_share: float | None = None, after_step: Callable[[], str] | None = None,
         progress: Callable[[str], None] = print, machine_kind: str = "iommufd",
         kcov: KcovGuide | None = None) -> FuzzReport:
    """Run the ``machine_kind`` machine (``iommufd`` or ``vfio``) on ``lockstep`` under ``profile``;
    ``kcov`` (started): each sequence's new kernel PCs guide Hypothesis (fuzz/kcov.py)."""
    kind = find_machine(machine_kind)
    report = FuzzReport(kcov=kcov.log if kcov else None)
    # The CI profile is the same run every time; the others start where chance says.
    base = seed if seed is not None else (0 if profile.rounds is not None else random.SystemRandom().randrange(1 << 32))
    budget = duration_s if duration_s is not None else profile.duration_s
    max_rounds = rounds if rounds is not None else (None if budget is not None else profile.rounds)
    db: ExampleDatabase | None = None
    if profile.database:
        # A directory per machine: the tapes of one machine mean nothing to another.
        db = DirectoryBasedExampleDatabase(str(Path(database_dir or default_database_dir()) / machine_kind))
    share = invalid_share if invalid_share is not None else profile.invalid_share
    if kind.roles is not None:
        lockstep.use_roles(kind.roles)
    machine = make_machine(lockstep, invalid_share=share, mock_domains=mock_domains, after_step=after_step,
                           kind=machine_kind)
    started = lockstep.steps_run

    def sequence(tape: bytes) -> None:
        interrupts.check()   # Ctrl-C unwinds here, never inside Hypothesis's engine
        guard.before_example()
        m = machine()
        report.sequences += 1
        try:
            m.run(tape)
        except Divergence as e:
            guard.saw(e)
            raise
        finally:
            m.teardown()
            if kcov is not None:   # after the reset: the sequence's PCs, its clean-up's too
                kcov.after_sequence()

    sequence.__name__ = sequence.__qualname__ = machine.__name__
    tapes = tape_strategy(profile.steps_per_sequence)
    start = time.monotonic()
    last_progress = start
    while max_rounds is None or report.rounds < max_rounds:
        interrupts.check()
        if budget is not None and time.monotonic() - start >= budget:
            break
        round_seed = base + report.rounds
        report.seeds.append(round_seed)
        guard = ShrinkGuard(profile.shrink_seconds)
        test = hypothesis.seed(round_seed)(settings(
            max_examples=examples or profile.examples_per_round, deadline=None, database=db,
            derandomize=False, print_blob=False, report_multiple_bugs=False, verbosity=Verbosity.quiet,
            phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink),
            suppress_health_check=list(HealthCheck))(given(tapes)(sequence)))
        try:
            test()
        except (Divergence, _ShrinkBudgetSpent, Flaky) as e:
            if isinstance(e, Flaky) and not guard.spent:
                raise
            found = e if isinstance(e, Divergence) else guard.shortest
            assert found is not None   # the guard stops only a run that diverged
            steps, summary = minimise(lockstep, found.steps, found.summary, after_step)
            f = Finding(summary, steps, round_seed)
            if out_dir is not None:
                f.case = write_regression(out_dir, steps, summary, str(round_seed),
                                          str(database_dir or default_database_dir()) if db else None,
                                          kernel, mock_domains, lockstep.roles)
            report.findings.append(f)
            break
        finally:
            report.rounds += 1
            report.steps = lockstep.steps_run - started
            report.seconds = time.monotonic() - start
        if time.monotonic() - last_progress >= 10 or max_rounds is not None:
            if kcov is not None:
                kcov.note()
            progress(f"fuzz: round {report.rounds} (seed {round_seed}): {report.line()}")
            last_progress = time.monotonic()
    report.steps = lockstep.steps_run - started
    report.seconds = time.monotonic() - start
    if kcov is not None:
        kcov.note()
    return report
