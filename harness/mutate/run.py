"""One mutation run: generate the mutants, pick the sample, and for each one run cases on it
until one kills it: in a schemata kernel that holds every mutant of the scope behind a switch
(schemata.py; one build and boot for all, the switch set before each case), or built and booted
alone (``schemata`` False, or a mutant whose switch does not compile).

Cases are tried in this order: those whose kernel coverage reaches the mutated lines
(``--case-lines``; those entering the mutated function when the lines have no code of their own;
for a case written after that measurement, and without it for every case,
those with an ioctl whose handler reaches the mutated function: the static call graph of
harness/mutate/scope.py), then the rest of the corpus unless
``only_reaching``.  A case kills a mutant when it fails, errors, diverges from the model or the
kernel prints a splat while it runs, and only when the same case passes on the unmutated test
kernel (checked once per case, on a guest of that kernel kept for the run): a case that fails
anyway kills nothing.  A case that hangs until its timeout is a kill reported as "timed out".
"""

from __future__ import annotations

import random
import re
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..cases.case import Case
from ..runner.outcome import CaseOutcome
from ..runner.target import Guest, TargetUnusable, profile_for
from ..runner.trace import ERROR, FAIL, PASS
from ..runner.vmtarget import VmTarget
from ..vm import VmError
from .case_lines import CaseLines
from .equivalent import Equivalent
from .operators import OPERATORS, Mutant, mutants_of
from .results import EQUIVALENT, IDENTICAL, KILLED, NOT_COMPILED, SURVIVED, TIMED_OUT, Result, ResultsCache
from .schemata import plan
from .scope import Scope
from .workspace import Workspace

DEFAULT_CASE_TIMEOUT = 60.0
_ERRNO = re.compile(r"-(E[A-Z][A-Z0-9]+)\b")
_HANG = ("timed out", "stopped answering")


def generate(texts: dict[str, str], scope: Scope, operators: tuple[str, ...] = OPERATORS) -> list[Mutant]:
    """Every mutant of the scope's functions, in file and offset order (``texts``: file -> its source)."""
    out: list[Mutant] = []
    for file, funcs in sorted(scope.by_file().items()):
        out += mutants_of(file, texts[file], [(f.name, f.start, f.end) for f in funcs], operators)
    return out


def sample(mutants: list[Mutant], n: int | None, seed: int) -> list[Mutant]:
    """``n`` mutants picked by ``seed`` (the same ones for the same source every time), in source order."""
    if n is None or n >= len(mutants):
        return list(mutants)
    ordered = sorted(mutants, key=lambda m: m.id)
    picked = {m.id for m in random.Random(seed).sample(ordered, n)}
    return [m for m in mutants if m.id in picked]


def case_ioctls(case: Case) -> set[str]:
    """The ioctls a case's steps call, typed (``ioctl:``) or through a raw pointer (``raw_ioctl:``)."""
    named = (s.spec.get(s.kind) for s in case.steps if s.kind in ("ioctl", "raw_ioctl"))
    return {str(getattr(v, "text", v)) for v in named}     # a raw_ioctl's request is an expression


def case_errnos(case: Case) -> set[str]:
    return {s.expect.errno for s in case.steps if s.expect is not None and s.expect.errno}


def mutant_errnos(mutant: Mutant, text: str) -> set[str]:
    """The errnos named where the mutant is: its own line and the three after it (an error check's body)."""
    lines = text.splitlines()[mutant.line - 1:mutant.line + 3 + mutant.original.count("\n")]
    return set(_ERRNO.findall("\n".join(lines)))


def order_cases(mutant: Mutant, cases: list[Case], scope: Scope, lines: CaseLines | None,
                only_reaching: bool, source: str = "", killer: str = "") -> list[Case]:
    """The cases to run on ``mutant``: those reaching it first (see the module's docstring); among
    them, ``killer`` (the case that killed it in an earlier run) first, then those whose ioctl's
    handler reaches it in fewer calls, then those expecting an errno named where the mutant is,
    then those running in the guest most of them need (one boot for a kill)."""
    reach = scope.roots.get(mutant.function, {})
    statically = {c.test_id for c in cases if case_ioctls(c) & reach.keys()}
    if lines is not None:
        span = range(mutant.line, mutant.line + mutant.original.count("\n") + 1)
        ids = lines.reaching_mutant(mutant.file, span, mutant.function)
        if ids is None:
            ids = statically
        first = [c for c in cases if c.test_id in ids or (c.test_id not in lines.measured and c.test_id in statically)]
    else:
        first = [c for c in cases if c.test_id in statically]
    errnos = mutant_errnos(mutant, source) if source else set()
    profiles = [profile_for(c) for c in first]
    common = max(sorted(set(profiles)), key=profiles.count) if profiles else "viommu"

    def rank(c: Case) -> tuple[bool, int, bool, bool]:
        distance = min((reach[i] for i in case_ioctls(c) if i in reach), default=99)
        return c.test_id != killer, distance, not (case_errnos(c) & errnos), profile_for(c) != common

    first.sort(key=rank)
    if only_reaching:
        return first
    chosen = {c.test_id for c in first}
    rest = [c for c in cases if c.test_id not in chosen]
    rest.sort(key=lambda c: profile_for(c) != common)
    return first + rest


def _kills(o: CaseOutcome) -> bool:
    return o.status in (FAIL, ERROR)


def _first_lines(text: str, n: int = 6) -> str:
    return "\n".join(text.splitlines()[:n])


@dataclass
class Baseline:
    """The unmutated test kernel: does a case pass on it?  Asked only of cases that fail on a mutant."""

    image: Path
    accel: str | None
    root: Path | None
    case_timeout: float
    verdicts: dict[str, bool] = field(default_factory=dict)
    target: VmTarget | None = None

    def passes(self, case: Case) -> bool:
        if case.test_id not in self.verdicts:
            if self.target is None:
                self.target = VmTarget(self.image, "both", self.accel, self.root, self.case_timeout)
            self.verdicts[case.test_id] = self.target.run(case).status == PASS
        return self.verdicts[case.test_id]

    def close(self) -> None:
        if self.target is not None:
            self.target.close()


@dataclass
class Runner:
    workspace: Workspace
    cases: list[Case]
    scope: Scope
    baseline: Baseline
    cache: ResultsCache
    equivalents: dict[str, Equivalent]
    lines: CaseLines | None = None
    only_reaching: bool = False
    accel: str | None = None
    cases_root: Path | None = None
    case_timeout: float = DEFAULT_CASE_TIMEOUT
    jobs: int = 2
    progress: Callable[[str], None] = lambda line: print(line, file=sys.stderr)
    schemata: bool = True
    finished: int = 0
    planned: int = 0

    def run(self, mutants: Iterable[Mutant], deadline: float | None = None) -> list[Result]:
        """The verdict of each mutant, in order.  Past ``deadline`` (a ``time.monotonic()`` value:
        ``--budget``) no mutant is started: the results so far are returned, the results cache's
        verdicts included, and a later run resumes with the rest."""
        mutants = list(mutants)
        todo = [m for m in mutants if self.cache.get(m.id) is None]
        self.planned = len(todo)
        if len(todo) < len(mutants):
            self.progress(f"mutate: {len(mutants) - len(todo)} of {len(mutants)} mutants have a verdict in the "
                          "results cache for this corpus")
        one_by_one = todo if not self.schemata else self._run_schemata(todo, deadline)
        for m in one_by_one:
            if deadline is not None and time.monotonic() >= deadline:
                break
            with self.workspace.session():
                self._done(m, self.one(m))
        out = self.cached(mutants)
        if len(out) < len(mutants):
            self.progress(f"mutate: budget spent: {len(mutants) - len(out)} of {len(mutants)} mutants not run "
                          "(a later run resumes from the results cache)")
        return out

    def _done(self, m: Mutant, r: Result) -> None:
        self.cache.put(r)
        r = self._equivalent(r)
        self.finished += 1
        self.progress(f"mutate: [{self.finished}/{self.planned}] {m.name} ({m.id}): {r.verdict}"
                      + (f" by {r.by}" if r.by else "") + f"; build {r.build_s:.0f} s, run {r.run_s:.0f} s, "
                      f"{r.cases_run} cases")

    def _run_schemata(self, mutants: list[Mutant], deadline: float | None) -> list[Mutant]:
        """Run ``mutants`` in schemata kernels (schemata.py), a layer per kernel; the mutants no
        layer could build (or whose layer's guests could not be used) are returned, to be built
        one by one."""
        if not mutants or (deadline is not None and time.monotonic() >= deadline):
            return []
        # The layers hold every mutant of the scope, numbered in source order: the same kernels
        # for every run of this source (a sample, a shard, a resumed run), each built once.
        texts = {f: self.workspace.original_text(f) for f in sorted(self.scope.by_file())}
        everything = list(enumerate(generate(texts, self.scope), 1))
        number = {m.id: n for n, m in everything}
        wanted = {number[m.id]: m for m in mutants if m.id in number}
        left = [m for m in mutants if m.id not in number]
        for i, layer in enumerate(plan(everything, texts), 1):
            mine = [n for n in layer.numbers() if n in wanted]
            if not mine:
                continue
            if deadline is not None and time.monotonic() >= deadline:
                return left
            with self.workspace.session():
                built = self.workspace.build_layer(layer, texts, self.jobs)
            left += [wanted[n] for n in sorted(built.dropped) if n in wanted]
            if built.image is None:
                self.progress(f"mutate: schemata kernel {i} did not build: its mutants are built one by one\n"
                              + built.log_tail)
                continue
            self.progress(f"mutate: schemata kernel {i} ({len(built.layer.numbers())} mutants, {len(mine)} to run) "
                          + ("from the cache" if built.cached else f"built in {built.seconds:.0f} s")
                          + (f"; {len(built.dropped)} taken out (built one by one)" if built.dropped else ""))
            live = Selection(VmTarget(built.image, "both", self.accel, self.cases_root, self.case_timeout))
            try:
                run = [n for n in mine if n not in built.dropped]
                for k, n in enumerate(run):
                    if deadline is not None and time.monotonic() >= deadline:
                        return left
                    try:
                        self._done(wanted[n], self._switched_again(wanted[n], n, live))
                    except SchemataUnusable as e:
                        self.progress(f"mutate: schemata kernel {i}: {e}; the rest of its mutants are built one by one")
                        left += [wanted[j] for j in run[k:]]
                        break
            finally:
                live.target.close()
        return left

    def _switched_again(self, m: Mutant, n: int, live: Selection) -> Result:
        """``switched``, once more on fresh guests when a guest could not be booted or switched
        (a boot that timed out on a loaded machine); twice is the schemata kernel's trouble."""
        try:
            return self.switched(m, n, live)
        except SchemataUnusable as e:
            self.progress(f"mutate: {m.name}: {e}; once more on fresh guests")
            live.fresh()
            return self.switched(m, n, live)

    def switched(self, m: Mutant, n: int, live: Selection) -> Result:
        """Mutant ``m``, number ``n`` of the schemata kernel ``live`` runs, switched on for its cases.
        A kill on a guest that ran other mutants first stands only if the killing case passes there
        with no mutant switched on; else (or when that guest was replaced) the mutant runs again on
        fresh guests, whose verdict stands."""
        start = time.monotonic()
        r = self._result(m)
        live.begin()
        self._cases(m, r, live.target, lambda case: live.select(case, n))
        if r.verdict in (KILLED, TIMED_OUT) and not live.clean and not live.confirms(r.by, self.cases):
            live.fresh()
            killer, r = r.by, self._result(m)
            live.begin()
            self._cases(m, r, live.target, lambda case: live.select(case, n), killer)
        r.run_s = round(time.monotonic() - start, 1)
        r.schemata = True
        return r

    def _result(self, m: Mutant) -> Result:
        return Result(m.id, m.name, m.file, m.line, m.operator, m.function, SURVIVED,
                      diff=m.diff(self.workspace.original_text(m.file)))

    def cached(self, mutants: Iterable[Mutant]) -> list[Result]:
        """The results cache's verdicts of those of ``mutants`` it has, in order."""
        return [self._equivalent(r) for r in (self.cache.get(m.id) for m in mutants) if r is not None]

    def _equivalent(self, r: Result) -> Result:
        """A survivor the reviewed list names is equivalent, with the list's reason (never otherwise)."""
        e = self.equivalents.get(r.id)
        if r.verdict == SURVIVED and e is not None:
            return Result(**{**r.to_json(), "verdict": EQUIVALENT, "by": e.reason})  # type: ignore[arg-type]
        return r

    def one(self, m: Mutant) -> Result:
        """Mutant ``m`` built alone: its object compared with the original's and its twins' first."""
        r = self._result(m)
        self.workspace.apply(m)
        try:
            obj = self.workspace.object_name(m.file)
            built = self.workspace.make(self.jobs, obj)
            r.build_s = round(built.seconds, 1)
            if not built.ok:
                r.verdict, r.by, r.detail = NOT_COMPILED, f"make {obj} failed", built.log_tail
                return r
            r.object_sha = self.workspace.object_sha(m.file)
            if r.object_sha == self.workspace.object_sha(m.file, original=True):
                r.verdict, r.by = IDENTICAL, f"{obj} is the original's object code"
                return r
            twin = self.cache.twin(r.object_sha)
            if twin is not None:
                r.verdict, r.by, r.detail = twin.verdict, f"{twin.name} ({twin.id}), the same object code: {twin.by}", \
                    twin.detail
                return r
            built = self.workspace.make(self.jobs, append=True)
            r.build_s = round(r.build_s + built.seconds, 1)
            if not built.ok:
                r.verdict, r.by, r.detail = NOT_COMPILED, "make bzImage failed", built.log_tail
                return r
            start = time.monotonic()
            target = VmTarget(self.workspace.image, "both", self.accel, self.cases_root, self.case_timeout)
            try:
                self._cases(m, r, target)
            finally:
                target.close()
                r.run_s = round(time.monotonic() - start, 1)
            return r
        finally:
            self.workspace.restore()

    @staticmethod
    def _run(target: VmTarget, case: Case) -> CaseOutcome:
        """The case on the mutant.  A guest that could not be booted or reached (its agent gone
        while it reported the topology) is booted again once; twice is the mutant's doing."""
        try:
            return target.run(case)
        except (OSError, VmError):
            target.target.discard(profile_for(case))
            return target.run(case)

    def _cases(self, m: Mutant, r: Result, target: VmTarget, before: Callable[[Case], None] | None = None,
               killer: str = "") -> None:
        """Run the mutant's cases (``before`` each one: switch the mutant on in its guest) until one
        kills it; ``killer`` (else the case that killed it in the results cache's last run) first."""
        source = self.workspace.original_text(m.file)
        previous = self.cache.previous(m.id)
        if not killer and previous is not None and previous.verdict in (KILLED, TIMED_OUT):
            killer = previous.by
        for case in order_cases(m, self.cases, self.scope, self.lines, self.only_reaching, source, killer):
            try:
                if before is not None:
                    before(case)
                o = self._run(target, case)
            except (TargetUnusable, OSError, VmError) as e:
                if before is not None:
                    raise SchemataUnusable(f"{type(e).__name__}: {e}") from e
                r.verdict, r.by, r.detail = KILLED, "boot", _first_lines(f"{type(e).__name__}: {e}")
                return
            r.cases_run += 1
            if _kills(o) and self.baseline.passes(case):
                hang = any(h in o.reason for h in _HANG)
                r.verdict, r.by, r.detail = (TIMED_OUT if hang else KILLED), case.test_id, _first_lines(o.reason)
                return


class SchemataUnusable(RuntimeError):
    """A schemata kernel's guest that cannot switch mutants (or boot): not any mutant's doing."""


@dataclass
class Selection:
    """Which mutant each guest of a schemata kernel has switched on, and whether the mutant being
    run has had only guests that ran no other mutant before it (``clean``)."""

    target: VmTarget
    live: dict[str, tuple[Guest, int, set[int]]] = field(default_factory=dict)  # profile -> guest, live, ran
    clean: bool = True

    def begin(self) -> None:
        self.clean = True

    def select(self, case: Case, n: int) -> None:
        profile = profile_for(case)
        g = self.target.target.guest(profile)
        held = self.live.get(profile)
        if held is None or held[0] is not g:
            held = (g, 0, set())
        if held[1] != n:
            why = g.kernel.select_mutant(n)
            if why:
                raise SchemataUnusable(why)
        ran = held[2] | {n}
        self.clean = self.clean and ran <= {n}
        self.live[profile] = (g, n, ran)

    def confirms(self, case_id: str, cases: list[Case]) -> bool:
        """Whether the killing case passes with no mutant switched on, in the guest it killed in."""
        case = next((c for c in cases if c.test_id == case_id), None)
        if case is None:
            return False
        held = self.live.get(profile_for(case))
        if held is None or self.target.target.guests.get(profile_for(case)) is not held[0]:
            return False                      # the guest was replaced (a hang, a splat)
        self.select(case, 0)
        return self.target.run(case).status == PASS

    def fresh(self) -> None:
        """Replace every guest: the next case boots a new one, which has run no mutant."""
        for profile in list(self.target.target.guests):
            self.target.target.discard(profile)
        self.live.clear()
