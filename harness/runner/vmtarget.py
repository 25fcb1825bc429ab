"""Run cases on a kernel under test in QEMU, diffed against the model (runner/target.py).

Each case runs in the guest its requirements need; a kernel splat printed while a case
ran fails that case with the console excerpt, and a guest that hangs, dies or printed a
splat is replaced before the next case.  A guest whose agent cannot start stops the run
(TargetUnusable): every other guest would fail the same way.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from ..agent.client import AgentInterrupted
from ..backends.base import Backend
from ..cases.case import Case
from ..vm import AgentStartError, VmError
from .kernel_lines import KernelLines
from .outcome import CaseOutcome, unfinished
from .session import run_case
from .target import Guest, KernelTarget, TargetUnusable, profile_for
from .trace import ERROR, FAIL


class VmTarget:
    def __init__(self, kernel: Path, backend: str = "both", accel: str | None = None, root: Path | None = None,
                 case_timeout: float | None = None, lines: KernelLines | None = None):
        if backend not in ("both", "kernel"):
            raise ValueError("a VM run is --backend both or kernel")
        self.target = KernelTarget(kernel, accel, lines=lines)
        self.kernel, self.backend, self.root = kernel, backend, root
        self.case_timeout = case_timeout

    def backends(self, profile: str) -> list[Backend]:
        g = self.target.guest(profile)
        return [g.kernel] + ([g.model] if self.backend == "both" else [])

    def run(self, case: Case) -> CaseOutcome:
        profile = profile_for(case)
        start = time.monotonic()
        try:
            guest = self.target.guest(profile)
        except AgentStartError as e:
            raise TargetUnusable(f"the {profile} guest booted but its agent could not start, and no guest's "
                                 f"will: {e}") from e
        except VmError as e:
            return unfinished(case, ERROR, f"the {profile} guest did not come up: {e}", time.monotonic() - start)
        guest.splats()  # what earlier cases printed is theirs
        try:
            outcome = run_case(case, self.backends(profile), self.root, self.case_timeout)
        except AgentInterrupted:   # Ctrl-C or SIGTERM, masked by the cleanup after it: not a verdict
            raise KeyboardInterrupt from None
        except (OSError, VmError) as e:  # AgentTimeout is a TimeoutError: a hung kernel
            outcome = unfinished(case, ERROR, f"the {profile} guest stopped answering: {e}", time.monotonic() - start)
            if self.target.lines is not None:
                self.target.lines.lost.append(case.test_id)
            outcome.reason += "\n" + self.target.discard(profile, read_counters=False)
        splats = guest.splats() if guest.vm.alive() else []
        if splats:
            excerpt = "\n".join(f"{s.kind}: {s.excerpt}" for s in splats)
            outcome = replace(outcome, status=FAIL, reason=f"kernel {splats[0].kind} while this case ran\n{excerpt}"
                              + (f"\n{outcome.reason}" if outcome.reason else ""))
        self._count_lines(case, profile, guest, outcome)
        if splats:
            self.target.discard(profile)  # never run the next case on a tainted kernel
        return outcome

    def _count_lines(self, case: Case, profile: str, guest: Guest, outcome: CaseOutcome) -> None:
        lines = self.target.lines
        if lines is None or self.target.guests.get(profile) is not guest or not guest.usable():
            return
        try:
            lines.ran(guest.kernel, case.test_id, profile, outcome.status)
        except (OSError, VmError):
            lines.lost.append(case.test_id)
            self.target.discard(profile, read_counters=False)

    def close(self) -> None:
        self.target.close()

