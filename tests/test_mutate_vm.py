"""One mutant, built and booted: the iommufd dispatcher without its size check is killed.

``iommufd_fops_ioctl`` (drivers/iommu/iommufd/main.c) refuses a command shorter than the
ioctl's minimum with EINVAL; made false, the size-below-min cases see the handler run instead.
Needs $VFIO_CONFORMANCE_KERNEL, the 6.12 source tree and its finished test-kernel build, and
QEMU; builds one mutant in the mutation workspace (about 20 s of make, more on a loaded
machine) and runs the cases reaching it in TCG guests: minutes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cache_root import cache_root
from harness.kernel.errors import KernelBuildError
from harness.mutate.workspace import finished_build

ROOT = Path(__file__).resolve().parent.parent


def _build() -> str:
    try:
        finished_build("6.12")
    except (KernelBuildError, OSError) as e:
        return str(e)
    return ""


MISSING = ("" if os.environ.get("VFIO_CONFORMANCE_KERNEL") else "needs $VFIO_CONFORMANCE_KERNEL") or _build() or (
    "" if shutil.which("qemu-system-x86_64") else "needs qemu-system-x86_64")
pytestmark = [pytest.mark.vm, pytest.mark.slow, pytest.mark.kernel, pytest.mark.skipif(bool(MISSING), reason=MISSING)]


def _mutate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", "mutate", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=3600)


@pytest.mark.parametrize("how", ["schemata", "one-by-one"])
def test_the_dispatcher_without_its_size_check_is_killed(tmp_path: Path, how: str) -> None:
    listed = _mutate("--functions", "iommufd_fops_ioctl", "--operators", "remove_check", "--list")
    assert listed.returncode == 0, listed.stderr
    (line,) = [x for x in listed.stdout.splitlines() if "'ucmd.user_size < op->min_size'" in x]
    mutant = line.split()[0]
    built_alone = ["--one-by-one"] if how == "one-by-one" else []
    r = _mutate("--mutant", mutant, "--fresh", "--only-reaching", "--report", str(tmp_path), *built_alone)
    assert r.returncode == 0, r.stdout + r.stderr
    data = json.loads((tmp_path / "mutate.json").read_text())
    (result,) = data["mutants"]
    assert result["id"] == mutant and result["verdict"] == "killed", result
    assert result["by"].startswith("size-below-min"), result      # cases/size/below-min.yaml
    assert "+\tif (0 && (ucmd.user_size < op->min_size))" in result["diff"]
    assert data["score"] == 1.0
    assert result["schemata"] == (how == "schemata")


def test_a_schemata_kernel_kills_with_the_switch_on_and_passes_with_it_off(tmp_path: Path) -> None:
    """Three mutants of one function killed in the schemata kernel; the same kernel with every
    switch off passes the cases that killed them."""
    listed = _mutate("--functions", "iommufd_option_rlimit_mode", "--list")
    assert listed.returncode == 0, listed.stderr
    # The reserved-field and value checks: killed by one case each when their switch is on.
    picked = [x.split()[0] for x in listed.stdout.splitlines() if ":negate:" in x][:3]
    r = _mutate(*[a for m in picked for a in ("--mutant", m)], "--fresh", "--only-reaching", "--report", str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    data = json.loads((tmp_path / "mutate.json").read_text())
    assert sorted(x["id"] for x in data["mutants"]) == sorted(picked)
    assert all(x["verdict"] == "killed" and x["schemata"] and x["cases_run"] >= 1 for x in data["mutants"]), data
    _, _, key = finished_build("6.12")
    kernels = (cache_root() / "mutate" / key / "schemata").glob("*.bzImage")
    image = max(kernels, key=lambda p: p.stat().st_mtime)          # the one this run used
    off = subprocess.run([sys.executable, "-m", "harness", "vm", "--kernel", str(image), "--cases", "ioas/option*",
                          "--report", str(tmp_path / "off"), "-q"], cwd=ROOT, capture_output=True, text=True,
                         timeout=1800)
    assert off.returncode == 0, off.stdout + off.stderr
    killers = {x["by"] for x in data["mutants"]}
    passed = {c["test_id"] for c in json.loads((tmp_path / "off" / "diff.json").read_text())["cases"]
              if c["status"] == "pass"}
    assert killers <= passed, (killers, passed)
