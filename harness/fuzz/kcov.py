"""Coverage guidance: the kernel PCs each sequence reached (KCOV in the guest) steer Hypothesis.

The agent's thread traces the kernel code its syscalls run (harness/backends/kcov.py); after
each sequence (its reset included) one ``kcov_collect`` brings back that sequence's distinct
PCs.  ``PcLog`` keeps every PC seen so far and counts the new ones, which
``hypothesis.target`` is given, so Hypothesis's targeted phase mutates towards the sequences
that reached kernel code no earlier one did.  ``PcLog`` is pure bookkeeping (no kernel, no
Hypothesis); ``KcovGuide`` ties it to a backend.  With the model alone there is no KCOV:
``KcovGuide.start`` says why and the run is unguided.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..backends.base import Backend
from ..backends.kcov import decode

LABEL = "new kernel PCs"
EVERY_S = 10.0      # a row of the growth table at least this often (and at every progress line)


@dataclass
class PcLog:
    """The distinct PCs seen, and how they grew: rows of (elapsed s, sequences, distinct PCs)."""

    seen: set[int] = field(default_factory=set)
    sequences: int = 0
    rows: list[tuple[float, int, int]] = field(default_factory=list)

    def add(self, pcs: list[int]) -> int:
        """One sequence's PCs: how many no earlier sequence reached."""
        before = len(self.seen)
        self.seen.update(pcs)
        self.sequences += 1
        return len(self.seen) - before

    def row(self, elapsed: float) -> None:
        """Note where the count stands ``elapsed`` seconds into the run (once per count of sequences)."""
        if self.rows and self.rows[-1][1] == self.sequences:
            self.rows.pop()
        self.rows.append((round(elapsed, 1), self.sequences, len(self.seen)))

    def line(self) -> str:
        return f"{len(self.seen)} distinct kernel PCs"

    def markdown(self, title: str) -> str:
        out = [f"## {title}", "", "| elapsed s | sequences | distinct PCs |", "|---:|---:|---:|"]
        out += [f"| {t:.1f} | {n} | {pcs} |" for t, n, pcs in self.rows]
        return "\n".join(out) + "\n"


class KcovGuide:
    """KCOV of ``backend`` (the kernel side of a lockstep) as the fuzzer's guide."""

    def __init__(self, backend: Backend, log: PcLog | None = None, steer: bool = True):
        self.backend = backend
        self.steer = steer      # False: count the PCs, steer nothing (the baseline of an A/B)
        self.log = log if log is not None else PcLog()
        self.started = time.monotonic()

    def start(self) -> str:
        """"" once tracing is on, else why there is no guidance.  What ran before (boot,
        probing, the roles' binding) is dropped: it is no sequence's."""
        why = self.backend.kcov_enable()
        if not why:
            self.backend.kcov_collect()
            self.started = time.monotonic()
            self.log.row(0.0)
        return why

    def after_sequence(self) -> int:
        """The sequence just run: count its new PCs and give them to Hypothesis (inside a test)."""
        import hypothesis

        new = self.log.add(decode(self.backend.kcov_collect()))
        if self.steer:
            hypothesis.target(float(new), label=LABEL)
        if time.monotonic() - self.started - (self.log.rows[-1][0] if self.log.rows else 0.0) >= EVERY_S:
            self.note()
        return new

    def note(self) -> None:
        self.log.row(time.monotonic() - self.started)
