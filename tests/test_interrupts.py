"""Ctrl-C inside a fuzz run is deferred to the run's safe points (harness/runner/interrupts.py); an
interrupt inside a case unwinds as itself, whatever the cleanup after it raises."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from harness.backends.base import OpResult
from harness.cases.loader import Loader
from harness.model.backend import ModelBackend
from harness.runner import interrupts
from harness.runner.engine import Runner

ROOT = Path(__file__).resolve().parents[1]


def _signal_self(sig: int) -> None:
    os.kill(os.getpid(), sig)
    time.sleep(0.05)   # the handler runs at the next bytecode of the main thread


def test_first_signal_waits_for_check() -> None:
    with pytest.raises(KeyboardInterrupt), interrupts.deferred(grace_s=30):
        _signal_self(signal.SIGINT)
        assert interrupts.stop_requested()   # nothing raised yet
        interrupts.check()
        pytest.fail("check() did not unwind")


def test_second_signal_stops_at_once() -> None:
    reached = []
    with pytest.raises(KeyboardInterrupt), interrupts.deferred(grace_s=30):
        _signal_self(signal.SIGINT)
        reached.append("after first")
        _signal_self(signal.SIGINT)
        reached.append("after second")
    assert reached == ["after first"]


def test_a_stop_never_checked_unwinds_after_the_grace_period() -> None:
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt), interrupts.deferred(grace_s=0.2):
        _signal_self(signal.SIGINT)
        while time.monotonic() - start < 10:
            time.sleep(0.01)
    assert time.monotonic() - start < 5


def test_a_stop_asked_at_the_end_unwinds_when_the_block_ends() -> None:
    with pytest.raises(KeyboardInterrupt), interrupts.deferred(grace_s=30):
        _signal_self(signal.SIGINT)
    assert not interrupts.stop_requested()


def test_handlers_are_put_back() -> None:
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with interrupts.deferred():
        assert signal.getsignal(signal.SIGINT) is not before[0]
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


class _DesyncedModel(ModelBackend):
    """The model, interrupted in an ioctl, whose reset then fails as a guest agent's does after a
    request left mid-reply (VmError: "expected the reply to request N, got N-1")."""

    def ioctl(self, fd: int, request: int, arg: bytes | int | None) -> OpResult:
        raise KeyboardInterrupt

    def reset(self) -> None:
        super().reset()
        raise OSError("expected the reply to request 2, got 1")


def test_an_interrupt_mid_step_propagates_whatever_the_cleanup_raises() -> None:
    cases, _ = Loader(ROOT / "cases").load_all("ioas/copy-fixed.yaml")
    with pytest.raises(KeyboardInterrupt):
        Runner(_DesyncedModel()).run(cases[0], timeout=60)
