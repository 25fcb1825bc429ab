"""Real boots (docs/vm.md): the VM runs from a checkout and an interpreter anywhere, /tmp
included, and a guest whose agent cannot start stops the run after that one guest.

The guest mounts its own tmpfs on /tmp; guest-init binds the host's folders the agent needs
(vfioconf.reach) back from the host's root.  Only where a test kernel and qemu-system-x86_64
are there (like tests/test_vm_boot.py); under TCG each run takes one to two minutes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.cases.loader import Loader
from harness.exitcodes import ENVIRONMENT
from harness.vm import find_kernel

ROOT = Path(__file__).resolve().parent.parent
KERNEL = find_kernel()
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", ".tox", "build", "dist", "*.egg-info", "__pycache__",
                                    "reports", ".mypy_cache", ".ruff_cache", ".hypothesis")
# A few cases of the viommu guest: enough to see the agent answer.
CASES = "ioas/copy-*.yaml"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(KERNEL is None or shutil.which("qemu-system-x86_64") is None,
                       reason="needs a test kernel bzImage and qemu-system-x86_64"),
]


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.setdefault("VFIO_CONFORMANCE_ACCEL", "tcg")
    return {**env, **extra}


@pytest.fixture(scope="module")
def under_tmp() -> Iterator[Path]:
    """A folder under /tmp itself (the guest's tmpfs hides it), whatever TMPDIR says."""
    d = Path(tempfile.mkdtemp(prefix="vfioconf-anywhere-", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_a_checkout_and_a_venv_under_tmp_run_in_the_guest(under_tmp: Path) -> None:
    checkout = under_tmp / "checkout"
    shutil.copytree(ROOT, checkout, ignore=NOT_SOURCE)
    venv = under_tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
    # --system-site-packages reaches the base interpreter's packages only: when pytest itself runs
    # in a venv (README's command), the new venv sees that venv's packages through a .pth file.
    site = venv / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    (site / "parent-venv.pth").write_text("\n".join(p for p in sys.path if p.endswith("site-packages")) + "\n")
    report = under_tmp / "report"
    done = subprocess.run([str(venv / "bin" / "python"), "-m", "harness", "vm", "--kernel", str(KERNEL),
                           "--cases", CASES, "--report", str(report)], cwd=checkout, env=environment(),
                          capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    cases, _ = Loader(checkout / "cases").load_all(CASES)
    suites = ET.parse(report / "results.xml").getroot()
    tests = list(suites.iter("testcase"))
    assert len(tests) == len(cases) > 0
    assert not [t.get("name") for t in tests if t.find("failure") is not None or t.find("error") is not None]


def test_an_agent_that_cannot_start_stops_the_run_after_one_guest(tmp_path: Path) -> None:
    cases, _ = Loader(ROOT / "cases").load_all("ioas/*")
    assert len(cases) > 1   # a guest per case would boot more than once
    done = subprocess.run([sys.executable, "-m", "harness", "vm", "--kernel", str(KERNEL), "--cases", "ioas/*",
                           "--report", str(tmp_path / "r")], cwd=ROOT,
                          env=environment(VFIO_CONFORMANCE_GUEST_PYTHON="/nonexistent/python3"),
                          capture_output=True, text=True, timeout=1200)
    out = done.stdout + done.stderr
    assert done.returncode == ENVIRONMENT, out[-4000:]
    assert "cannot set up the kernel target" in out and "agent could not start" in out
    assert "exited with status 127 before it said hello (python /nonexistent/python3" in out
    # The guest's console excerpt, of one boot.
    assert "/nonexistent/python3: not found" in out
    assert out.count("vfioconf: init at") == 1, out[-4000:]
