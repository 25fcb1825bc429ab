"""The kernel image a command runs on: ``--kernel``, else the series' test kernel, said on stderr."""

from __future__ import annotations

import sys
from pathlib import Path

from . import build


def kernel_image(arg: str | None, coverage: bool = False, series: str | None = None) -> Path | None:
    """``--kernel``, else the series' kernel (build.select_kernel: its variable, else its
    cached or freshly built test kernel; ``coverage``: the gcov build), printed to stderr with
    its version; None, said why, if there is no image."""
    try:
        kernel, how = (Path(arg), "--kernel") if arg else build.select_kernel(series, coverage=coverage)
    except build.KernelBuildError as e:
        print(f"vfio-conformance: {e}", file=sys.stderr)
        return None
    if kernel is None or not kernel.is_file():
        print(f"vfio-conformance: no kernel image at {kernel}", file=sys.stderr)
        return None
    print(f"vfio-conformance: kernel under test: {build.describe_kernel(kernel, how)}", file=sys.stderr)
    return kernel
