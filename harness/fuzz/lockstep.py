"""Run generated steps on one or two backends at once and diff each step as it runs.

Each backend keeps its own bindings (the fd, id and address a name stands for on
that target), so one step text means the same operation everywhere; the traces
grow step by step and are compared through the runner's normaliser, so the
declared rules (ids, fds, addresses, automatic IOVAs) decide what may differ.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..backends.base import Backend
from ..cases.case import Step
from ..cases.steps import parse_steps
from ..runner.compare import behaviour, change_key
from ..runner.diff import Diff, Divergence, compare_step
from ..runner.engine import HarnessError, Runner
from ..runner.normalise import Normaliser
from ..runner.topology import bind_roles
from ..runner.trace import StepRecord, Trace


@dataclass
class StepOutcome:
    records: list[StepRecord]
    divergence: str = ""             # the diff's summary of this step, "" when the backends agree


@dataclass
class Lockstep:
    backends: list[Backend]
    traces: list[Trace] = field(default_factory=list)
    envs: list[dict[str, Any]] = field(default_factory=list)
    steps_run: int = 0
    # Topology roles every sequence starts with bound (``{"dev": "isolated"}``: ``${dev.group}``),
    # each backend binding them in its own topology as a case's ``requires.topology`` would.
    roles: dict[str, str] = field(default_factory=dict)
    _role_envs: list[dict[str, Any]] | None = None
    # Each trace's normaliser, fed a step at a time (the diff of whole traces per step was
    # quadratic in the sequence's length).
    _normalisers: list[Normaliser] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.start()

    def use_roles(self, roles: dict[str, str]) -> None:
        self.roles, self._role_envs = dict(roles), None
        self.start()

    def role_bindings(self) -> list[dict[str, Any]]:
        """Each backend's roles, bound once (a sequence's sysfs moves are undone by ``finish``)."""
        if self._role_envs is None:
            envs = []
            for b in self.backends:
                bound = bind_roles(self.roles, b.topology(), b.may_touch) if self.roles else {}
                if isinstance(bound, str):
                    raise RuntimeError(f"{b.name}: {bound}")
                envs.append(dict(bound))
            self._role_envs = envs
        return self._role_envs

    def start(self) -> None:
        """A fresh sequence: empty traces and bindings (the backends are reset by ``finish``)."""
        self.traces = [Trace("fuzz", b.name) for b in self.backends]
        self.envs = [dict(e) for e in self.role_bindings()]
        self._normalisers = [Normaliser() for _ in self.backends]

    def finish(self) -> None:
        """Close every fd, unmap every mapping, restore what sysfs writes changed."""
        for b in self.backends:
            b.reset()

    def run_raw(self, raw: dict[str, Any], bound: set[str], index: int,
                after_step: Callable[[], str] | None = None) -> str:
        """One step given as case-format data (``bound``: the names earlier steps bound; it
        grows): what went wrong, a divergence or what ``after_step`` saw, or ""."""
        (step,) = parse_steps([raw], bound, "<fuzz>")
        step.index = index
        return self.run(step).divergence or (after_step() if after_step else "")

    def succeeded(self) -> bool:
        """The last step succeeded on every backend: a name it bound stands for an object on each."""
        return all(not t.steps[-1].errno and not t.steps[-1].failures for t in self.traces)

    def run(self, step: Step) -> StepOutcome:
        records = []
        for b, env, t in zip(self.backends, self.envs, self.traces, strict=True):
            try:
                rec = Runner(b).execute(step, env)
            except HarnessError as e:   # e.g. a name bound on one side only: itself a divergence
                rec = StepRecord(step.index, step.line, step.kind, step.label(), failures=[f"harness: {e}"])
            rec.index = len(t.steps)
            t.steps.append(rec)
            records.append(rec)
        self.steps_run += 1
        if len(self.traces) < 2:
            return StepOutcome(records)
        last = len(self.traces[0].steps) - 1
        normalised = [n.step(r) for n, r in zip(self._normalisers, records, strict=True)]
        mine = self.unexplained(last, normalised)
        harness = [r.failures[0] for r in records if r.failures and r.failures[0].startswith("harness:")]
        if mine or (harness and len(harness) != len(records)):
            summary = Diff("fuzz", self.traces[0], self.traces[1], mine).summary() if mine else "; ".join(harness)
            return StepOutcome(records, summary)
        return StepOutcome(records)

    def unexplained(self, index: int, normalised: list[dict[str, Any]]) -> list[Divergence]:
        """How the first two backends differ at step ``index`` (each step normalised)."""
        return compare_step(index, normalised[0], normalised[1])


@dataclass
class PredictedLockstep(Lockstep):
    """Two kernels and the models of their releases, in that order: a difference between the
    kernels is a finding only where the two models do not predict it (runner/compare.py), so a
    fuzz run lists the behaviour changes no version gate explains."""

    # The expected changes met on the way: (step label, field, kernel A's value, kernel B's).
    expected: list[tuple[str, str, Any, Any]] = field(default_factory=list)

    def unexplained(self, index: int, normalised: list[dict[str, Any]]) -> list[Divergence]:
        # What differs only because the two series' structs differ is neither (runner/compare.py).
        kernels = behaviour(compare_step(index, normalised[0], normalised[1]))
        models = {change_key(d): d for d in behaviour(compare_step(index, normalised[2], normalised[3]))}
        found = [d for d in kernels if change_key(d) not in models]
        shown = {change_key(d) for d in kernels}
        # A change the models predict that the kernels do not make: the models' values, named so.
        found += [Divergence(index, d.label, f"{d.what} (the models' change, which the kernels do not make)",
                             d.left, d.right) for k, d in models.items() if k not in shown]
        self.expected += [(d.label, d.what, d.left, d.right) for d in kernels if change_key(d) in models]
        return found
