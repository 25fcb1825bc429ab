"""Ctrl-C and SIGTERM that stop a run between two steps, not inside a library.

A KeyboardInterrupt raised at an arbitrary bytecode can land inside Hypothesis's own
bookkeeping (its engine setup asserts on state a half-run setup left behind: exit 3, "a bug
in the harness") or in the except clause that reports the interruption (the process then
dies of SIGINT).  Inside ``deferred()`` the first SIGINT or SIGTERM only records that a stop
was asked for; the run calls ``check()`` at its safe points (before each example, between
rounds) and unwinds from there with KeyboardInterrupt, like any interrupted command.

A run stuck where it never calls ``check()`` (a guest that does not answer) still stops: a
second signal, or ``grace_s`` seconds without a ``check()``, raises KeyboardInterrupt in the
main thread at once; and SIGTERM keeps its hard exit 20 s later, should the unwinding itself
be stuck (QEMU dies with us, PR_SET_PDEATHSIG; `vfio-conformance restore` replays PCI state).
"""

from __future__ import annotations

import _thread
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

TERM_HARD_EXIT_S = 20.0

_pending: int | None = None       # the signal that asked for a stop, not yet acted on
_active = False


def check() -> None:
    """Unwind here if a stop was asked for (a no-op outside ``deferred()``)."""
    global _pending
    if _pending is not None:
        _pending = None
        raise KeyboardInterrupt


def stop_requested() -> bool:
    return _pending is not None


def _start_timer(seconds: float, action: object) -> None:
    t = threading.Timer(seconds, action)  # type: ignore[arg-type]
    t.daemon = True
    t.start()


def _hard_exit() -> None:
    os._exit(128 + signal.SIGTERM)


def _force_if_still_pending(signum: int) -> None:
    if _active and _pending == signum:
        _thread.interrupt_main()


def _handler(grace_s: float):  # type: ignore[no-untyped-def]
    def handle(signum: int, _frame: FrameType | None) -> None:
        global _pending
        if signum == signal.SIGTERM:
            _start_timer(TERM_HARD_EXIT_S, _hard_exit)
        if _pending is not None:   # asked twice: stop now
            _pending = None
            raise KeyboardInterrupt
        _pending = signum
        _start_timer(grace_s, lambda: _force_if_still_pending(signum))
    return handle


@contextmanager
def deferred(grace_s: float = 10.0) -> Iterator[None]:
    """SIGINT and SIGTERM only ask for a stop inside this block (main thread only; elsewhere
    it changes nothing).  A stop asked for and not yet acted on unwinds at the block's end."""
    global _active, _pending
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handle = _handler(grace_s)
    previous = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)}
    _active, _pending = True, None
    try:
        yield
    finally:
        _active = False
        for s, h in previous.items():
            signal.signal(s, h)
    check()
