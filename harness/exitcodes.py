"""The exit codes of every `vfio-conformance` command, one meaning each.

They are pytest's own (`vfio-conformance run` returns pytest's status, and `python3 -m
pytest conformance` must mean the same), extended by one code pytest does not have:
ENVIRONMENT.  argparse's usage errors exit USAGE_ERROR (pytest's 4), not argparse's 2,
which here means interrupted.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

OK = 0
FAILED = 1
INTERRUPTED = 2
INTERNAL_ERROR = 3
USAGE_ERROR = 4
NO_MATCH = 5
ENVIRONMENT = 6

MEANINGS = {
    OK: "everything ran and passed",
    FAILED: "a finding: a case failed or errored, a case file is malformed, a fuzz divergence, "
            "an unexpected change between kernels, a fault-injection problem",
    INTERRUPTED: "interrupted (Ctrl-C, SIGTERM)",
    INTERNAL_ERROR: "a bug in the harness (it printed a traceback)",
    USAGE_ERROR: "a usage error: an unknown option, a bad value, options that do not go together",
    NO_MATCH: "nothing to do: no case matched --cases, no test was collected, no cached kernel",
    ENVIRONMENT: "what the run needs could not be had: the kernel image or its build, the VM, the backend, "
                 "the target host, the PCI state to put back",
}


def table() -> str:
    """The table for --help."""
    return "exit codes:\n" + "\n".join(f"  {code}  {text}" for code, text in MEANINGS.items())


class ArgumentParser(argparse.ArgumentParser):
    """argparse's usage errors exit USAGE_ERROR, not argparse's 2."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message}\n")
