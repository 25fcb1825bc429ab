"""Run cases on a kernel under test in QEMU, diffed against the model.

One guest per profile (measured.md: IOMMU_TEST_OP_MOCK_DOMAIN only works
without the emulated Intel IOMMU): cases that need mock domains run in the
``mock`` guest, every other case in the ``viommu`` guest.  Each guest is booted
on first use; a kernel splat printed while a case ran fails that case with the
console excerpt, and a guest that hangs or dies is replaced before the next case.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from ..backends.base import Backend
from ..cases.model import Case
from ..model.backend import ModelBackend
from ..vm import Vm, VmError
from .outcome import CaseOutcome
from .session import run_case
from .trace import ERROR, FAIL


def profile_for(case: Case) -> str:
    return "mock" if case.requires.mock_domains else "viommu"


class VmTarget:
    def __init__(self, kernel: Path, backend: str = "both", accel: str | None = None, root: Path | None = None):
        if backend not in ("both", "kernel"):
            raise ValueError("a VM run is --backend both or kernel")
        self.kernel, self.backend, self.accel, self.root = kernel, backend, accel, root
        self._vms: dict[str, Vm] = {}
        self._models: dict[str, ModelBackend] = {}
        self.boots: list[tuple[str, str, float]] = []   # (profile, accel, seconds to the agent)

    def _vm(self, profile: str) -> Vm:
        vm = self._vms.get(profile)
        if vm is not None and vm.alive() and vm.agent is not None:
            return vm
        if vm is not None:
            vm.close()
        vm = Vm(accel=self.accel).start(profile, self.kernel)
        self._vms[profile] = vm
        self.boots.append((profile, vm.accel or "?", vm.boot_seconds or 0.0))
        agent = vm.agent
        # The model boots with the guest's own topology and facts: both sides start equal.
        self._models[profile] = ModelBackend(agent.topology(), agent.facts())
        return vm

    def backends(self, profile: str) -> list[Backend]:
        vm = self._vm(profile)
        return [vm.agent] + ([self._models[profile]] if self.backend == "both" else [])

    def run(self, case: Case) -> CaseOutcome:
        profile = profile_for(case)
        start = time.monotonic()
        try:
            vm = self._vm(profile)
        except VmError as e:
            return _outcome(case, ERROR, f"the {profile} guest did not come up: {e}", start)
        offset = vm.console_offset()
        try:
            outcome = run_case(case, self.backends(profile), self.root)
        except (OSError, VmError) as e:  # AgentTimeout is a TimeoutError: a hung kernel
            outcome = _outcome(case, ERROR, f"the {profile} guest stopped answering: {e}", start)
            outcome.reason += "\n" + vm.console_tail(30)
            vm.close()
        splats = vm.scan_console(offset)
        if splats:
            excerpt = "\n".join(f"{s.kind}: {s.excerpt}" for s in splats)
            outcome = replace(outcome, status=FAIL, reason=f"kernel {splats[0].kind} while this case ran\n{excerpt}"
                              + (f"\n{outcome.reason}" if outcome.reason else ""))
            vm.close()  # never run the next case on a tainted kernel
        return outcome

    def close(self) -> None:
        for vm in self._vms.values():
            vm.close()
        self._vms.clear()


def _outcome(case: Case, status: str, reason: str, start: float) -> CaseOutcome:
    return CaseOutcome(
        test_id=case.test_id, area=case.area, purpose=case.purpose, location=f"{case.path}:{case.line}",
        source=case.source, verified_on=case.verified_on, status=status, reason=reason,
        backends=["kernel", "model"], duration_s=time.monotonic() - start,
    )
