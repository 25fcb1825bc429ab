"""The gcov test kernel the VM coverage tests boot: $VFIO_CONFORMANCE_COVERAGE_KERNEL (CI sets it,
and then a missing image fails instead of skipping), else the cached `kernel build --coverage`."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from harness.kernel.cache import cached_kernel

ENV = "VFIO_CONFORMANCE_COVERAGE_KERNEL"
KERNEL = Path(os.environ[ENV]) if os.environ.get(ENV) else cached_kernel(coverage=True)
if os.environ.get(ENV) and not (KERNEL and KERNEL.is_file()):
    raise RuntimeError(f"{ENV} is set but names no kernel image")
MARKS = [pytest.mark.vm, pytest.mark.slow,
         pytest.mark.skipif(KERNEL is None or shutil.which("qemu-system-x86_64") is None,
                            reason="needs the --coverage test kernel and qemu-system-x86_64")]
