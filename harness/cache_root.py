"""The one rule for where the suite keeps its cache.

``$VFIO_CONFORMANCE_CACHE``, else ``$XDG_CACHE_HOME/vfio-conformance``, else
``~/.cache/vfio-conformance``.  Everything kept there asks :func:`cache_root`: the kernel
sources, builds and kernels (harness/kernel), the fuzzer's example database and the
restore state file of the sysfs backend (harness/backends/sysfs_state.py).

A leaf module at the top of the package, importing nothing of ours, so that a backend can use
it without reaching up into harness.kernel (which sits above the backends: its gcov reader
imports the kernel backend).
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "VFIO_CONFORMANCE_CACHE"


def cache_root() -> Path:
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vfio-conformance"
