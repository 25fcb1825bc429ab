"""A case's wall-clock limit: checked between steps, and (where a signal can do it safely)
cutting a step short that runs away on its own, such as a model loop over a huge range."""

from __future__ import annotations

import argparse
import math
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

# Per case and backend, in seconds, unless --case-timeout says otherwise: the model answers in
# milliseconds; a kernel, the more so one in a TCG guest, takes longer.
DEFAULT_MODEL_TIMEOUT = 60.0
DEFAULT_KERNEL_TIMEOUT = 300.0


def case_timeout(text: str) -> float:
    """A --case-timeout value: seconds, finite and not negative (0: no limit)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a finite number of seconds, 0 for no limit")
    return value


class CaseTimeout(BaseException):
    """The case's time ran out.  A BaseException, so that no ``except Exception`` in the code
    under a step (the model's, a backend's) takes it for a failure of its own."""


def can_interrupt() -> bool:
    """SIGALRM reaches this thread: the main thread of a platform with setitimer (pytest and
    pytest-xdist workers run tests there)."""
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


@contextmanager
def alarm(seconds: float | None) -> Iterator[None]:
    """Raise CaseTimeout in this thread once ``seconds`` have passed, wherever it runs Python
    code (a C call that never returns is not cut short).  Nothing where no signal can do it:
    then the check between steps is all the limit there is."""
    if not seconds or seconds <= 0 or not can_interrupt():
        yield
        return

    armed = True

    def fire(signum: int, _frame: FrameType | None) -> None:
        if armed:
            raise CaseTimeout

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        armed = False
        # Only our own alarm is taken back: one armed meanwhile by other code
        # stays armed.  A signal already caught is handled by a Python function even so: after
        # SIG_DFL or SIG_IGN were put back, Python would raise "ignored due to race condition".
        if signal.getsignal(signal.SIGALRM) is fire:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous if callable(previous) else _ignore)


def _ignore(signum: int, _frame: FrameType | None) -> None:
    pass
