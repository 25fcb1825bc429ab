"""Where the fuzzer's two sides come from: the model alone, this host's kernel, or a QEMU guest."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..backends.base import Backend
from ..model.backend import ModelBackend
from .lockstep import Lockstep


@dataclass
class Target:
    lockstep: Lockstep
    kernel: str                                  # what the regression cases say they were found on
    mock_domains: bool
    after_step: Callable[[], str] | None = None  # a kernel splat or a dead guest, as a divergence
    closers: list[Callable[[], Any]] = field(default_factory=list)
    console_tail: Callable[[int], str] | None = None   # the guest's last console lines

    def close(self) -> None:
        for c in self.closers:
            c()


def model_target() -> Target:
    """The model alone: no divergence is possible, but a model crash (an exception that is
    no errno) or a harness error is found and shrunk all the same."""
    model = ModelBackend()
    return Target(Lockstep([model]), "the model alone", model.facts().mock_domains)


def host_target(devices: tuple[str, ...] = ()) -> Target:
    """This host's kernel (root) against the model booted with its topology."""
    from ..runner.session import make_backends

    backends: list[Backend] = make_backends("both", devices)
    facts = backends[0].facts()
    return Target(Lockstep(backends), facts.kernel, facts.mock_domains, closers=[backends[0].reset])


def vm_target(kernel: Path, profile: str = "mock", accel: str | None = None,
              model_class: type[ModelBackend] = ModelBackend) -> Target:
    """A guest booted from ``kernel`` (the ``mock`` profile has IOMMU_TEST_OP_MOCK_DOMAIN) against
    the model booted as its twin (runner/target.py)."""
    from ..runner.target import KernelTarget

    target = KernelTarget(kernel, accel, model_class)
    guest = target.guest(profile)
    facts = guest.model.facts()
    return Target(Lockstep([guest.kernel, guest.model]), facts.kernel, facts.mock_domains, guest.trouble,
                  [target.close], guest.vm.console_tail)
