"""The test kernel the VM tests boot, and the marks that skip them without one.

CI sets VFIO_CONFORMANCE_KERNEL: then a missing image fails instead of skipping."""

from __future__ import annotations

import os
import shutil

import pytest

from harness.vm import find_kernel

KERNEL = find_kernel()
if os.environ.get("VFIO_CONFORMANCE_KERNEL") and KERNEL is None:
    raise RuntimeError("VFIO_CONFORMANCE_KERNEL is set but names no kernel image")
VM_MARKS = [pytest.mark.vm, pytest.mark.slow,
            pytest.mark.skipif(KERNEL is None or shutil.which("qemu-system-x86_64") is None,
                               reason="needs a test kernel bzImage and qemu-system-x86_64")]
