"""The kernel lines a VM run of the corpus reached, read from the guests of a gcov kernel
(``vm --coverage``).

Each guest's counters are zeroed once it has booted (what booting and probing ran is not
the corpus's), read when the guest is shut down, and, with ``per_case``, read and zeroed
after every case as well: the lines that case reached, by case id (``by_case``), which
``kernel-lines-by-case.json`` keeps (docs/kernel.md).  A guest that died took its
counters with it: the cases whose lines were lost are listed (``lost``).

Only counter files that changed since the zeroing go through gcov (a case touches a few
of the ~40 instrumented objects); the executable lines of every file come from the
zeroed counters read at the first boot.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..kernel import gcov

PARTIAL_FORMAT = "vfio-conformance kernel lines, partial"


@dataclass
class CaseLines:
    guest: str
    status: str                          # the case's outcome: pass, fail, skip, error
    lines: dict[str, list[int]]          # source file -> lines hit, ascending


@dataclass
class KernelLines:
    image: Path
    per_case: bool = False
    total: gcov.Coverage = field(default_factory=dict)
    by_case: dict[str, CaseLines] = field(default_factory=dict)
    lost: list[str] = field(default_factory=list)
    release: str = ""
    _zero: dict[str, bytes] = field(default_factory=dict)
    _since_read: dict[str, list[str]] = field(default_factory=dict)   # guest -> cases whose counts are unread

    def __post_init__(self) -> None:
        self.build, self.source, self.dirs = gcov.coverage_build(self.image)

    def booted(self, agent: Any, release: str, guest: str) -> None:
        """A fresh guest (``guest``: its profile): zero its counters; the first one also gives the
        executable lines."""
        self.release = self.release or release
        agent.gcov_collect(reset=True)
        if not self._zero:
            self._zero = agent.gcov_collect()
            gcov.merge_into(self.total, self._lines(self._zero))
        self._since_read[guest] = []

    def ran(self, agent: Any, case_id: str, guest: str, status: str) -> None:
        """A case ran in the guest ``agent`` is the agent of."""
        if not self.per_case:
            self._since_read.setdefault(guest, []).append(case_id)
            return
        cov = self._read(agent)
        self.by_case[case_id] = CaseLines(guest, status,
                                          {p: sorted(f.hit) for p, f in sorted(cov.items()) if f.counts})

    def closing(self, agent: Any | None, guest: str) -> None:
        """The guest is being shut down (``agent`` None: it died, and its counters with it)."""
        unread = self._since_read.pop(guest, [])
        if agent is None:
            self.lost += unread
            return
        try:
            self._read(agent)
        except BaseException:
            self.lost += unread
            raise

    def _read(self, agent: Any) -> gcov.Coverage:
        gcda = agent.gcov_collect(reset=True)
        cov = self._lines({p: d for p, d in gcda.items() if self._zero.get(p) != d})
        # Lines of a file that ran: a zero count is the same as no entry, so only hits are kept.
        for f in cov.values():
            f.counts = {ln: n for ln, n in f.counts.items() if n}
        gcov.merge_into(self.total, cov)
        return cov

    def _lines(self, gcda: dict[str, bytes]) -> gcov.Coverage:
        return gcov.line_coverage(self.build, self.source, gcda)

    def save(self, path: Path) -> None:
        """This process's share of the run (one per pytest-xdist worker), for ``load_partials``."""
        data = {"format": PARTIAL_FORMAT, "image": str(self.image), "release": self.release,
                "per_case": self.per_case, "total": gcov.to_data(self.total), "lost": self.lost,
                "cases": {k: {"guest": c.guest, "status": c.status, "lines": c.lines}
                          for k, c in sorted(self.by_case.items())}}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data))


@dataclass
class RunLines:
    """The shares of one run, merged."""

    total: gcov.Coverage = field(default_factory=dict)
    by_case: dict[str, CaseLines] = field(default_factory=dict)
    lost: list[str] = field(default_factory=list)
    per_case: bool = False
    release: str = ""


def load_partials(paths: list[Path]) -> RunLines:
    run = RunLines()
    for p in sorted(paths):
        data = json.loads(p.read_text())
        if data.get("format") != PARTIAL_FORMAT:
            raise ValueError(f"{p}: not a partial kernel-lines file")
        gcov.merge_into(run.total, gcov.from_data(data["total"]))
        run.lost += data["lost"]
        run.per_case = run.per_case or bool(data["per_case"])
        run.release = run.release or str(data["release"])
        for k, c in data["cases"].items():
            run.by_case[k] = CaseLines(c["guest"], c["status"], {f: list(ls) for f, ls in c["lines"].items()})
    return run
