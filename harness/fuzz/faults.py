"""Fault injection over corpus cases, the approach of the kernel's iommufd_fail_nth.c.

For each ioctl step of a case, the case runs again and again on the kernel with
that step's Nth fault-injection site made to fail (``/proc/thread-self/fail-nth``:
slab and page allocations, user copies), N = 1, 2, ... until the step runs
without reaching its Nth site.  After each run:

- the kernel printed no WARN, BUG, oops or KASAN report (the guest's console);
- every iommufd the case opened still works (IOMMU_IOAS_ALLOC, then IOMMU_DESTROY
  of the new IOAS, succeed on it);
- every fd the case opened closes without an error.

What the step returned for each N is tallied, so the report says which errnos
the failure paths give (ENOMEM mostly; EFAULT from a failed copy) and where the
kernel misbehaved.  The model takes no part: it cannot fail an allocation.
"""

from __future__ import annotations

import errno as _errno
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .. import uapi
from ..backends.base import Backend, OpResult
from ..cases.case import Case
from ..runner.engine import HarnessError, Runner
from ..runner.topology import unmet

LIMIT = 400   # fault sites per step at most (iommufd_fail_nth.c's limit)


class _Armed:
    """A kernel backend whose next ioctl fails its ``nth`` fault site (everything else passes through)."""

    def __init__(self, kernel: Backend):
        self._kernel = kernel
        self.nth = 0

    def ioctl(self, fd: int, request: int, arg: bytes | int | None) -> OpResult:
        nth, self.nth = self.nth, 0
        if nth:
            return self._kernel.ioctl_fail_nth(fd, request, arg, nth)
        return self._kernel.ioctl(fd, request, arg)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._kernel, name)


@dataclass
class StepFaults:
    case: str
    step: int                   # 1-based, as reports number steps
    label: str
    line: int
    sites: int = 0              # fault sites the step reached
    outcomes: Counter[str] = field(default_factory=Counter)   # errno (or "ok") -> how many N gave it
    by_nth: list[str] = field(default_factory=list)            # what N = 1, 2, ... gave
    problems: list[str] = field(default_factory=list)          # "N=3: ..." where the kernel misbehaved

    def line_text(self) -> str:
        got = ", ".join(f"{e} x{n}" for e, n in self.outcomes.most_common())
        text = f"{self.case} step {self.step} ({self.label}, line {self.line}): {self.sites} fault sites"
        text += f": {got}" if got else ""
        return text + "".join(f"\n    PROBLEM {p}" for p in self.problems)


def _probe_iommufd(kernel: Backend, fd: int) -> str:
    """"" when IOMMU_IOAS_ALLOC + IOMMU_DESTROY work on ``fd``, else what failed."""
    alloc = uapi.ioctl("IOMMU_IOAS_ALLOC")
    res = kernel.ioctl(fd, alloc.number, uapi.encode(alloc.struct, {"size": alloc.sizeof}))  # type: ignore[arg-type]
    if not res.ok:
        return f"IOMMU_IOAS_ALLOC on the iommufd afterwards: {res.errno_name}"
    ioas = uapi.decode(alloc.struct, res.data)["out_ioas_id"]  # type: ignore[arg-type]
    destroy = uapi.ioctl("IOMMU_DESTROY")
    res = kernel.ioctl(fd, destroy.number, uapi.encode(destroy.struct, {"size": destroy.sizeof, "id": ioas}))  # type: ignore[arg-type]
    return "" if res.ok else f"IOMMU_DESTROY of a fresh IOAS afterwards: {res.errno_name}"


def _one_run(case: Case, kernel: Backend, armed: _Armed, at: int, nth: int,
             after_step: Callable[[], str] | None) -> tuple[bool, str | None, list[str]]:
    """Run ``case`` up to step ``at`` with its ``nth`` site failing: (site reached, the
    step's errno or None, problems)."""
    problems: list[str] = []
    runner = Runner(armed)  # type: ignore[arg-type]
    env = runner.bindings(case)
    if isinstance(env, str):
        raise HarnessError(env)
    iommufds: list[int] = []
    opened: list[int] = []
    try:
        for step in case.steps[:at]:
            rec = runner.execute(step, env)
            if rec.failures:
                raise HarnessError(f"step {step.index + 1} did not run as the case expects: {rec.failures[0]}")
            if step.kind == "open" and rec.errno is None:
                opened.append(rec.ret)
                if str(rec.request.get("path", "")).endswith("/dev/iommu"):
                    iommufds.append(rec.ret)
        armed.nth = nth
        rec = runner.execute(case.steps[at], env)
        reached = kernel.fault_injected()
        got = rec.errno
        if reached:
            for fd in iommufds:
                why = _probe_iommufd(kernel, fd)
                if why:
                    problems.append(why)
            for fd in opened:
                res = kernel.close(fd)
                if not res.ok and res.errno != _errno.EBADF:  # a step of the case may have closed it
                    problems.append(f"close({fd}) afterwards: {res.errno_name}")
        return reached, got, problems
    finally:
        kernel.reset()
        splat = after_step() if after_step else ""
        if splat:
            problems.append(splat)


class TargetLost(Exception):
    """The kernel side stopped answering while a case ran; ``steps`` holds what was measured,
    the step it died in last (with the problem)."""

    def __init__(self, steps: list[StepFaults]):
        super().__init__(steps[-1].problems[-1] if steps and steps[-1].problems else "target lost")
        self.steps = steps


def inject_case(case: Case, kernel: Backend, *, limit: int = LIMIT,
                after_step: Callable[[], str] | None = None) -> list[StepFaults]:
    """Every ioctl step of ``case``, each of its fault sites failing in turn (``case`` must
    be able to run on ``kernel``: run_faults checks)."""
    armed = _Armed(kernel)
    out = []
    for at, step in enumerate(case.steps):
        if step.kind != "ioctl":
            continue
        sf = StepFaults(case.test_id, at + 1, step.label(), step.line)
        for nth in range(1, limit + 1):
            try:
                reached, got, problems = _one_run(case, kernel, armed, at, nth, after_step)
            except HarnessError as e:
                sf.problems.append(f"N={nth}: the case could not be replayed: {e}")
                break
            except (OSError, RuntimeError) as e:   # the agent or the guest is gone (AgentTimeout is an OSError)
                sf.problems.append(f"N={nth}: the kernel side stopped answering: {e}")
                out.append(sf)
                raise TargetLost(out) from e
            sf.problems.extend(f"N={nth}: {p}" for p in problems)
            if not reached:
                break
            sf.sites = nth
            sf.outcomes[got or "ok"] += 1
            sf.by_nth.append(got or "ok")
        else:
            sf.problems.append(f"more than {limit} fault sites; stopped there")
        out.append(sf)
    return out


@dataclass
class FaultReport:
    steps: list[StepFaults] = field(default_factory=list)
    cases: int = 0
    skipped: list[str] = field(default_factory=list)

    @property
    def runs(self) -> int:
        return sum(s.sites + 1 for s in self.steps)

    @property
    def problems(self) -> list[str]:
        return [f"{s.case} step {s.step} ({s.label}): {p}" for s in self.steps for p in s.problems]

    def summary(self) -> str:
        errnos: Counter[str] = Counter()
        for s in self.steps:
            errnos.update(s.outcomes)
        return (f"{self.cases} cases, {len(self.steps)} ioctl steps, {sum(s.sites for s in self.steps)} fault sites "
                f"({self.runs} runs); step results with a site failing: "
                + (", ".join(f"{e} x{n}" for e, n in errnos.most_common()) or "none")
                + f"; {len(self.problems)} problems")

    def markdown(self) -> str:
        lines = ["# Fault injection", "", f"- {self.summary()}", ""]
        if self.problems:
            lines += ["## Problems", ""] + [f"- {p}" for p in self.problems] + [""]
        lines += ["## Per step", "", "The step's result with its Nth fault site failing, N = 1, 2, ...", "",
                  "| case | step | fault sites | results | N = 1, 2, ... |", "|---|---|---|---|---|"]
        lines += [f"| `{s.case}` | {s.step} `{s.label}` (line {s.line}) | {s.sites} | "
                  + ", ".join(f"{e} x{n}" for e, n in s.outcomes.most_common()) + " | " + " ".join(s.by_nth) + " |"
                  for s in self.steps]
        if self.skipped:
            lines += ["", "## Not run", ""] + [f"- {x}" for x in self.skipped]
        return "\n".join(lines) + "\n"


def run_faults(cases: Iterable[Case], kernel_for: Callable[[Case], tuple[Backend, Callable[[], str] | None]],
               *, limit: int = LIMIT, progress: Callable[[str], None] = print,
               lost: Callable[[Case], str] | None = None, into: FaultReport | None = None) -> FaultReport:
    """``lost(case)`` is called when the kernel side died during ``case``: it drops that
    target (the next ``kernel_for`` boots a fresh one) and returns what the console said.
    ``into``: the report to fill, so a caller interrupted mid-way still has what was measured."""
    report = into if into is not None else FaultReport()
    ready: set[int] = set()
    for case in cases:
        kernel, after_step = kernel_for(case)
        if id(kernel) not in ready:
            why = kernel.setup_fault_injection()
            if why:
                raise RuntimeError(why)
            ready.add(id(kernel))
        reason = unmet(case, kernel)
        if reason:
            report.skipped.append(f"{case.test_id}: {reason}")
            continue
        try:
            steps = inject_case(case, kernel, limit=limit, after_step=after_step)
        except TargetLost as e:
            steps = e.steps
            excerpt = lost(case) if lost else ""
            if excerpt:
                steps[-1].problems.append("console before it stopped:\n      " + excerpt.replace("\n", "\n      "))
            ready.discard(id(kernel))
        report.cases += 1
        report.steps.extend(steps)
        for s in steps:
            if s.problems:
                progress("faults: " + s.line_text())
        progress(f"faults: {case.test_id}: {sum(s.sites for s in steps)} sites over {len(steps)} ioctl steps")
    return report
