"""A kernel under test and the model of it: what `vm`, `fuzz`, `faults` and `compare` run against.

A ``KernelTarget`` is one kernel image booted in QEMU guests, one guest per profile
(measured: IOMMU_TEST_OP_MOCK_DOMAIN works only without the emulated Intel IOMMU, so
``mock`` cases run in a guest without it and every other case in the ``viommu`` guest),
each booted on first use and paired with a model booted as its twin: the guest's own
topology and facts, so the model mirrors that kernel's release (model/gates.py).  A
guest that printed a splat, hung or died is discarded, and the next use boots a new one.
With ``lines`` (a gcov kernel, ``vm --coverage``), each guest's counters are zeroed after its
boot and read before it is shut down (runner/kernel_lines.py).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..backends.base import Backend
from ..model.backend import ModelBackend
from ..vm import Vm, VmError
from ..vm.console import Splat
from .kernel_lines import KernelLines
from .topology import profile_for

__all__ = ["Guest", "KernelTarget", "TargetUnusable", "profile_for"]


class TargetUnusable(RuntimeError):
    """No case can run on this target (its guests' agent cannot start): the run stops with
    this message, the console excerpt included, instead of booting a fresh guest per case."""


@dataclass
class Guest:
    """One booted guest of the kernel under test and the model booted as its twin."""

    vm: Vm
    model: ModelBackend
    seen: int = 0                     # console offset up to which splats were reported

    @property
    def kernel(self) -> Backend:
        agent = self.vm.agent
        assert agent is not None
        return agent  # type: ignore[no-any-return]

    @property
    def release(self) -> str:
        return self.model.facts().kernel

    def usable(self) -> bool:
        return self.vm.alive() and self.vm.agent is not None

    def splats(self) -> list[Splat]:
        """Splats printed since the last call."""
        found = self.vm.scan_console(self.seen)
        self.seen = self.vm.console_offset()
        return found

    def trouble(self) -> str:
        """A splat printed since the last call, or a dead guest, said in one line; "" if none."""
        found = self.splats()
        if found:
            return f"kernel {found[0].kind} in the guest: {found[0].excerpt}"
        return "" if self.vm.alive() else "the guest died: " + self.vm.console_tail(10)


@dataclass
class KernelTarget:
    image: Path
    accel: str | None = None
    model_class: type[ModelBackend] = ModelBackend
    guests: dict[str, Guest] = field(default_factory=dict)
    boots: list[tuple[str, str, float]] = field(default_factory=list)  # (profile, accel, seconds to the agent)
    lines: KernelLines | None = None

    def guest(self, profile: str) -> Guest:
        """The guest of ``profile``, booted (or replaced) when there is none that answers."""
        g = self.guests.get(profile)
        if g is not None and g.usable():
            return g
        self.discard(profile)
        vm = Vm(accel=self.accel).start(profile, self.image)
        agent: Any = vm.agent
        g = Guest(vm, self.model_class(agent.topology(), agent.facts()), vm.console_offset())
        self.guests[profile] = g
        self.boots.append((profile, vm.accel or "?", vm.boot_seconds or 0.0))
        if self.lines is not None:
            self.lines.booted(agent, g.release, profile)
        return g

    def discard(self, profile: str, read_counters: bool = True) -> str:
        """Shut the guest of ``profile`` down (it is not to be trusted any more); its console tail.
        ``read_counters`` False: a guest that stopped answering is not asked for its gcov counters,
        nor to power off (QEMU is signalled at once)."""
        g = self.guests.pop(profile, None)
        if g is None:
            return ""
        if self.lines is not None:
            with contextlib.suppress(OSError, VmError):   # closing() lists the cases whose counts are lost
                self.lines.closing(g.kernel if read_counters and g.usable() else None, profile)
        tail = g.vm.console_tail(25)
        g.vm.close(hung=not read_counters)
        return tail

    @property
    def release(self) -> str:
        """The release of the kernel under test, as its first guest reported it ("" before a boot)."""
        return next((g.release for g in self.guests.values()), "")

    def close(self) -> None:
        for profile in list(self.guests):
            self.discard(profile)
