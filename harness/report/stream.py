"""`--ktap -`: KTAP on stdout and nothing else there, as a kselftest prints it.

While the command runs, file descriptor 1 points at stderr, so whatever the command, pytest,
Hypothesis or a child process prints goes to stderr; at the end the KTAP file the command wrote
is copied to the real stdout.  `--ktap PATH` copies it to PATH instead.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from . import write_atomic

STDOUT = "-"


@contextlib.contextmanager
def stdout_to_stderr(enabled: bool = True) -> Iterator[int | None]:
    """Point fd 1 (and sys.stdout) at stderr for the body; yields a duplicate of the real stdout
    (None when not enabled), valid inside the body."""
    if not enabled:
        yield None
        return
    sys.stdout.flush()
    real = os.dup(1)
    os.dup2(2, 1)
    try:
        yield real
    finally:
        sys.stdout.flush()
        os.dup2(real, 1)
        os.close(real)


def deliver_ktap(dest: str | None, ktap: Path | None, real_stdout: int | None) -> str:
    """Copy the command's KTAP file to `dest` ("-": the real stdout).  Returns a problem, or ""."""
    if not dest:
        return ""
    if ktap is None or not ktap.is_file():
        return "no KTAP was written (the command stopped before its reports)"
    text = ktap.read_text()
    if dest != STDOUT:
        write_atomic(Path(dest), text)
        return ""
    fd = real_stdout if real_stdout is not None else 1
    data = text.encode()
    while data:
        data = data[os.write(fd, data):]
    return ""
