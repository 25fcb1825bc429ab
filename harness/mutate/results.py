"""Verdicts of mutants, their arithmetic, and the results cache that lets a run resume.

A verdict is one of ``KILLED`` (a case failed, diverged from the model or the kernel printed a
splat), ``TIMED_OUT`` (the kernel hung: a kill too), ``SURVIVED``, ``NOT_COMPILED`` (the mutant
did not build: no verdict on the suite), ``EQUIVALENT`` (a survivor the reviewed list,
harness/mutate/equivalent.py, says has no uAPI-visible effect) and ``IDENTICAL`` (the compiler
made the original's object code of it: no behaviour can differ, nothing is booted; "trivial
compiler equivalence").  A mutant whose object code another mutant of the run already had takes
that one's verdict, naming it.

score = (killed + timed out) / (total - not compiled - equivalent - identical code)

A survivor that ran no case (``--only-reaching``, and no case reaches its line) is a coverage gap
rather than a detection gap: the tallies count those apart, and the reached score leaves them out.

The cache is one JSON-lines file per kernel source: ``<cache>/mutate/results/<source
key>.jsonl``, one line per finished mutant, appended and flushed as it finishes, so an
interrupted run resumes where it stopped.  The source key names the build (version and config)
and hashes the mutated files' original text.  Each verdict names its corpus: the hash of the
case files and the model (a change to either can change a verdict) and of the options choosing
cases; a run with another corpus runs the mutant again, its earlier killer first.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

KILLED, TIMED_OUT, SURVIVED, NOT_COMPILED, EQUIVALENT = "killed", "timed out", "survived", "not compiled", "equivalent"
IDENTICAL = "identical code"
VERDICTS = (KILLED, TIMED_OUT, SURVIVED, NOT_COMPILED, EQUIVALENT, IDENTICAL)
RAN = (KILLED, TIMED_OUT, SURVIVED)     # the verdicts of a mutant that was booted


@dataclass
class Result:
    id: str
    name: str                      # file:line:operator:index
    file: str
    line: int
    operator: str
    function: str
    verdict: str
    by: str = ""                   # the case that killed it, or why it did not compile / is equivalent
    detail: str = ""               # the failure's first lines, the build log's tail
    diff: str = ""                 # the mutant as a unified diff
    cases_run: int = 0
    build_s: float = 0.0
    run_s: float = 0.0
    object_sha: str = ""           # sha256 of the mutated file's object code ("": not built)
    schemata: bool = False         # run in a schemata kernel (schemata.py), not built alone
    corpus: str = ""               # the corpus (cases, model, case options) the verdict was reached with

    @property
    def unreached(self) -> bool:
        """A survivor no case reached: no case ran on it."""
        return self.verdict == SURVIVED and self.cases_run == 0

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, object]) -> Result:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})  # type: ignore[arg-type]


@dataclass
class Tally:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(VERDICTS, 0))
    unreached: int = 0             # of the survivors, those no case reached

    def add(self, verdict: str, unreached: bool = False) -> None:
        self.counts[verdict] += 1
        self.unreached += unreached

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def scored(self) -> int:
        """The mutants the score is over: every one but those that did not compile, are equivalent
        or compiled to the original's code."""
        return self.total - self.counts[NOT_COMPILED] - self.counts[EQUIVALENT] - self.counts[IDENTICAL]

    @property
    def detected(self) -> int:
        return self.counts[KILLED] + self.counts[TIMED_OUT]

    @property
    def score(self) -> float | None:
        return self.detected / self.scored if self.scored else None

    @property
    def reached_score(self) -> float | None:
        """The score over the mutants some case reached (the unreached survivors left out)."""
        n = self.scored - self.unreached
        return self.detected / n if n else None

    def score_text(self) -> str:
        return _percent(self.detected, self.scored)

    def reached_score_text(self) -> str:
        return _percent(self.detected, self.scored - self.unreached)


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}% ({part}/{whole})" if whole else "n/a"


def tally(results: Iterable[Result], key: str | None = None) -> dict[str, Tally]:
    """Verdict counts overall (``key`` None: under "all") or per ``file`` / ``operator``."""
    out: dict[str, Tally] = {}
    for r in results:
        out.setdefault("all" if key is None else str(getattr(r, key)), Tally()).add(r.verdict, r.unreached)
    return out


def sha(parts: Iterable[bytes]) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(hashlib.sha256(p).digest())
    return h.hexdigest()


def tree_hash(*folders: Path, suffixes: tuple[str, ...] = (".yaml", ".py")) -> str:
    """A hash of every file with one of ``suffixes`` under ``folders`` (paths and contents)."""
    parts: list[bytes] = []
    for folder in folders:
        for p in sorted(folder.rglob("*")):
            if p.is_file() and p.suffix in suffixes and "__pycache__" not in p.parts:
                parts += [str(p.relative_to(folder)).encode(), p.read_bytes()]
    return sha(parts)[:12]


class ResultsCache:
    """The verdicts of one kernel source's mutants.  A verdict counts for the ``corpus`` it was
    reached with; one that needed no case (not compiled, identical code) for every corpus.  The
    verdict of an earlier corpus is kept as a hint: the case that killed the mutant then runs
    first now, so a re-run of an unchanged kill costs one case."""

    def __init__(self, path: Path, corpus: str = ""):
        self.path, self.corpus = path, corpus
        self.results: dict[str, Result] = {}
        try:
            lines = path.read_text().splitlines()
        except FileNotFoundError:
            lines = []
        for line in lines:
            try:
                r = Result.from_json(json.loads(line))
            except (ValueError, TypeError):
                continue                     # a line cut short by a crash
            self.results[r.id] = r

    def get(self, mutant_id: str) -> Result | None:
        """The mutant's verdict for this corpus, or None."""
        r = self.results.get(mutant_id)
        return r if r is not None and (r.corpus == self.corpus or r.verdict not in RAN) else None

    def previous(self, mutant_id: str) -> Result | None:
        """The mutant's latest verdict, for whatever corpus."""
        return self.results.get(mutant_id)

    def twin(self, object_sha: str) -> Result | None:
        """A mutant of this cache that was booted with the same object code, with this corpus."""
        return next((r for r in self.results.values() if object_sha and r.object_sha == object_sha
                     and r.verdict in RAN and r.corpus == self.corpus), None)

    def put(self, result: Result) -> None:
        result.corpus = self.corpus
        self.results[result.id] = result
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps(result.to_json(), sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
