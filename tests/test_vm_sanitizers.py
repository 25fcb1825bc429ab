"""The sanitizer kernel (``kernel build --sanitizers``) in QEMU: it boots with KASAN, lockdep and
debug objects on and nothing to report, and corpus cases run on it pass with no splat.

Only with $VFIO_CONFORMANCE_SANITIZER_KERNEL (a bzImage; the nightly runs set it, docs/ci.md):
the build is not part of CI's budget.  Under TCG a boot takes about twice the plain kernel's.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from harness.cases.loader import Loader
from harness.runner.vmtarget import VmTarget
from harness.vm import Vm

ROOT = Path(__file__).resolve().parent.parent
ENV = "VFIO_CONFORMANCE_SANITIZER_KERNEL"
KERNEL = Path(os.environ[ENV]) if os.environ.get(ENV) else None
if KERNEL is not None and not KERNEL.is_file():
    raise RuntimeError(f"{ENV} is set but names no kernel image")
pytestmark = [pytest.mark.vm, pytest.mark.slow,
              pytest.mark.skipif(KERNEL is None or shutil.which("qemu-system-x86_64") is None,
                                 reason=f"needs ${ENV} (a kernel build --sanitizers bzImage) and qemu-system-x86_64")]

# Map, unmap and device-open paths of both interfaces: the code KASAN and lockdep watch.
CASES = ("ioas/**", "device/**")
SAMPLE = 12


def test_the_sanitizer_kernel_boots_with_its_checkers_on_and_nothing_to_report(tmp_path: Path) -> None:
    assert KERNEL is not None
    with Vm(workdir=tmp_path) as vm:
        vm.start("viommu", KERNEL)
        assert vm.hello, vm.console_tail()
        text = vm.console_text()
        assert "KernelAddressSanitizer initialized" in text, vm.console_tail()
        assert "Lock dependency validator" in text, vm.console_tail()
        assert vm.scan_console() == [], vm.console_tail()


def test_corpus_cases_run_clean_on_the_sanitizer_kernel() -> None:
    assert KERNEL is not None
    loader = Loader(ROOT / "cases")
    cases = [c for pattern in CASES for c in loader.load_all(pattern)[0][:SAMPLE // len(CASES)]]
    assert len(cases) == SAMPLE
    target = VmTarget(KERNEL, "both", root=ROOT)
    try:
        outcomes = [target.run(c) for c in cases]
    finally:
        target.close()
    bad = [(o.test_id, o.status, o.reason) for o in outcomes if o.status not in ("pass", "skip")]
    assert bad == []
