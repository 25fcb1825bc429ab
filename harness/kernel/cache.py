"""The one rule for where the suite caches kernel sources, builds and kernels.

``$VFIO_CONFORMANCE_CACHE``, else ``$XDG_CACHE_HOME/vfio-conformance``, else
``~/.cache/vfio-conformance``.  Every module that reads or writes the cache (the kernel build,
the source finder, the VM's kernel choice, the fuzzer's example database) asks :func:`cache_root`.
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
