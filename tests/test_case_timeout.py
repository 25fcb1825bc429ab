"""A case that runs past its time limit fails naming its step, and the next case runs
(issue 10, item 2: running never hangs)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.cases.loader import Loader
from harness.exitcodes import USAGE_ERROR
from harness.model.backend import ModelBackend
from harness.runner.deadline import CaseTimeout, alarm, can_interrupt
from harness.runner.engine import Runner
from harness.runner.trace import FAIL, PASS

PROJECT = Path(__file__).resolve().parent.parent

CASE = """\
id: ioas-{name}
area: ioas
purpose: Three steps on the model.
verified_on: []
steps:
  - open: /dev/iommu
    as: iommufd
  - ioctl: IOMMU_IOAS_ALLOC
    fd: iommufd
    save: {{ioas: out_ioas_id}}
  - mmap: 0x4000
    as: buf
"""


def write_cases(root: Path, *names: str) -> Path:
    area = root / "cases" / "ioas"
    area.mkdir(parents=True)
    for name in names:
        (area / f"{name}.yaml").write_text(CASE.format(name=name))
    return root / "cases"


@pytest.mark.skipif(not can_interrupt(), reason="SIGALRM does not reach this thread")
def test_the_alarm_cuts_a_runaway_loop_short() -> None:
    start = time.monotonic()
    with pytest.raises(CaseTimeout), alarm(0.2):
        while True:
            pass
    assert time.monotonic() - start < 30


def test_no_alarm_without_a_limit() -> None:
    with alarm(None):
        time.sleep(0.01)   # nothing fires, nothing is left armed
    with alarm(0):
        pass


def test_a_timed_out_case_fails_naming_its_step_and_the_next_case_passes(tmp_path: Path) -> None:
    cases, errors = Loader(write_cases(tmp_path, "slow", "next")).load_all()
    assert not errors
    runner = Runner(ModelBackend())
    slow, nxt = sorted(cases, key=lambda c: c.id != "ioas-slow")
    trace = runner.run(slow, timeout=1e-9)
    assert trace.status == FAIL
    assert re.fullmatch(r"timed out after 1e-09 s in step [1-3] \((open /dev/iommu|IOMMU_IOAS_ALLOC|mmap), "
                        r"line (6|8|11)\)", trace.reason), trace.reason
    after = runner.run(nxt, timeout=60)
    assert after.status == PASS, after.reason
    assert [s.label for s in after.steps] == ["open /dev/iommu", "IOMMU_IOAS_ALLOC", "mmap"]


def test_cli_case_timeout_fails_the_case_in_the_reports(tmp_path: Path) -> None:
    root = write_cases(tmp_path, "slow")
    report = tmp_path / "report"
    r = subprocess.run([sys.executable, "-m", "harness", "run", "--cases-dir", str(root), "--report", str(report),
                        "--case-timeout", "1e-9"], cwd=PROJECT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "timed out after 1e-09 s in step" in r.stdout
    assert 'failures="1"' in (report / "results.xml").read_text()


def test_case_timeout_must_be_a_finite_number(tmp_path: Path) -> None:
    for bad in ("-1", "nan", "inf", "soon"):
        r = subprocess.run([sys.executable, "-m", "harness", "run", "--case-timeout", bad], cwd=PROJECT,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == USAGE_ERROR and "--case-timeout" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_the_default_limit_is_per_backend() -> None:
    r = subprocess.run([sys.executable, "-m", "harness", "run", "--help"], cwd=PROJECT, capture_output=True,
                       text=True, timeout=60)
    assert "default 60 on the model, 300 with a kernel" in " ".join(r.stdout.split())
