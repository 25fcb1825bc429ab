"""The error every step of providing a kernel raises."""

from __future__ import annotations


class KernelBuildError(RuntimeError):
    """The kernel could not be provided; the message says why and what to do."""
