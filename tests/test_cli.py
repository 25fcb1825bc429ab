"""`vfio-conformance run` end to end on the model: reports a standard parser reads."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from junitparser import JUnitXml

from harness.cases.loader import Loader
from harness.exitcodes import INTERRUPTED, USAGE_ERROR

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.parametrize("jobs", [None, "2"])
def test_run_writes_one_junit_testcase_per_case(tmp_path: Path, jobs: str | None) -> None:
    cases, errors = Loader(ROOT / "cases").load_all("ioas/**")
    assert cases and not errors
    args = ["run", "--cases", "ioas/**", "--report", str(tmp_path)]
    if jobs:
        args += ["-n", jobs]
    proc = run_cli(*args)
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    xml = JUnitXml.fromfile(str(tmp_path / "results.xml"))
    names = [tc.name for suite in xml for tc in suite]
    assert len(names) == len(cases)
    assert set(names) == {c.test_id for c in cases}
    assert sorted(p.name for p in tmp_path.glob("*.xml")) == ["results.xml"], "a *.xml glob counts each case once"
    assert (tmp_path / "results.ktap").read_text().startswith("KTAP version 1")
    assert "ioas" in (tmp_path / "report.md").read_text()


def test_validate_reports_malformed_file_with_line(tmp_path: Path) -> None:
    area = tmp_path / "ioas"
    area.mkdir()
    (area / "bad.yaml").write_text("id: ioas-bad\narea: ioas\npurpose: x\nverified_on: []\nsteps:\n"
                                   "  - open: /dev/iommu\n    as: fd\n  - ioctl: IOMMU_IOAS_ALLOC\n"
                                   "    fd: fd\n    args: {flagz: 1}\n")
    proc = run_cli("validate", "--cases-dir", str(tmp_path))
    assert proc.returncode == 1
    line = proc.stderr.strip().splitlines()[0]
    assert line.startswith(f"{area / 'bad.yaml'}:10: steps[1].args.flagz: ")


def test_no_matching_cases_says_so(tmp_path: Path) -> None:
    proc = run_cli("run", "--cases", "no-such-area/**", "--report", str(tmp_path))
    assert proc.returncode == 5
    assert "no case matched" in proc.stderr


def test_restore_with_nothing_recorded(tmp_path: Path) -> None:
    proc = run_cli("restore", "--state-file", str(tmp_path / "none.json"))
    assert proc.returncode == 0 and "nothing to restore" in proc.stdout


def test_ssh_target_becomes_an_agent_command() -> None:
    from harness.runner.session import agent_command

    assert agent_command("ssh://root@kvm1:2222/srv/vfio-conformance", ("0000:03:00.0", "0000:03:00.1")) == [
        "ssh", "-T", "-p", "2222", "--", "root@kvm1",
        "cd /srv/vfio-conformance && exec python3 -m harness.agent --devices 0000:03:00.0,0000:03:00.1"]
    assert agent_command("ssh://[fe80::1]/x", ())[2:4] == ["--", "fe80::1"]
    for bad in ("kvm1", "ssh://-oProxyCommand=touch${IFS}/tmp/pwned@host/dir", "ssh://-oProxyCommand=x/dir",
                "ssh://host", "ssh://user@@host/x", "ssh://host:99999/x", "ssh://ho st/x"):
        with pytest.raises(ValueError, match="expected ssh://"):
            agent_command(bad, ())
    with pytest.raises(ValueError, match="--device"):
        agent_command("ssh://host/x", ("-oProxyCommand=x",))


def test_sigterm_ends_a_long_run() -> None:
    """Like Ctrl-C (exit 2, "interrupted"), or, where the unwinding is stuck, hard after 20 s (143)."""
    import signal
    import subprocess
    import sys
    import time

    p = subprocess.Popen([sys.executable, "-m", "harness.cli", "fuzz", "--profile", "nightly", "--duration", "120",
                          "--out", "/nonexistent-never-written"], stderr=subprocess.PIPE, text=True,
                         cwd=str(Path(__file__).resolve().parent.parent))
    try:
        time.sleep(4)
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert (p.returncode == INTERRUPTED and "fuzz: interrupted" in err) or p.returncode == 143, (p.returncode, err)


def test_fuzz_coverage_needs_a_vm_and_says_so() -> None:
    p = run_cli("fuzz", "--coverage")
    assert p.returncode == USAGE_ERROR and "--vm" in p.stderr and "gcov" in p.stderr


def test_fuzz_on_the_model_runs_each_machine(tmp_path: Path) -> None:
    p = run_cli("fuzz", "--examples", "5", "--out", str(tmp_path))
    assert p.returncode == 0, p.stderr
    assert "fuzz: iommufd:" in p.stdout and "fuzz: vfio:" in p.stdout
    assert "0 divergences" in p.stdout and not list(tmp_path.iterdir())


def test_version_and_refused_arguments() -> None:
    proc = run_cli("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("vfio-conformance ")
    for argv in (["fuzz", "--duration=nan"], ["fuzz", "--duration=inf"], ["fuzz", "--duration=-5m"],
                 ["fuzz", "--duration=0"], ["run", "--jobs", "0"], ["run", "--jobs=-1"]):
        proc = run_cli(*argv)
        assert proc.returncode == USAGE_ERROR and "error: argument" in proc.stderr, (argv, proc.stderr)


def test_validate_with_no_matching_case_is_not_a_success() -> None:
    proc = run_cli("validate", "--cases", "no-such-area/*")
    assert proc.returncode == 5 and "no case matched" in proc.stderr


def test_sigterm_exits_hard_even_when_its_interrupt_is_swallowed_and_a_case_alarm_runs() -> None:
    """The unwinding SIGTERM starts can be stuck (an interrupt swallowed deep in a library, as
    seen in `mutate`); the hard exit must still come, even after a case's alarm came and went."""
    snippet = """
import os, signal, time
from harness import cli
from harness.runner.deadline import alarm
cli.HARD_EXIT_AFTER = 1.0
signal.signal(signal.SIGTERM, cli._terminated)
try:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(1)
except KeyboardInterrupt:
    pass                                   # swallowed
with alarm(30):                            # the next case's alarm
    pass
time.sleep(30)
print("still running")
"""
    p = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, timeout=60,
                       cwd=str(Path(__file__).resolve().parent.parent))
    assert p.returncode == 128 + signal.SIGTERM and "still running" not in p.stdout, (p.returncode, p.stderr)
