"""Every exit code of harness/exitcodes.py, each from a real command line, and where the table is written down."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from harness.exitcodes import (
    ENVIRONMENT,
    FAILED,
    INTERNAL_ERROR,
    INTERRUPTED,
    MEANINGS,
    NO_MATCH,
    OK,
    USAGE_ERROR,
    table,
)

ROOT = Path(__file__).resolve().parent.parent
ONE_CASE = "ioas/vfio-ioas-unknown-op.yaml"


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


def test_the_table_is_in_help_and_readme() -> None:
    assert table() in cli("--help").stdout
    readme = (ROOT / "README.md").read_text()
    for code, meaning in MEANINGS.items():
        assert f"| {code} | {meaning} |" in readme, code
    assert len(set(MEANINGS)) == len(MEANINGS) == 7


def test_ok(tmp_path: Path) -> None:
    assert cli("run", "--cases", ONE_CASE, "--report", str(tmp_path)).returncode == OK


def test_failed_a_malformed_case_file_in_run_and_validate(tmp_path: Path) -> None:
    (tmp_path / "ioas").mkdir()
    (tmp_path / "ioas" / "broken.yaml").write_text("id: broken\nsteps: [\n")
    run = cli("run", "--cases-dir", str(tmp_path), "--report", str(tmp_path / "r"))
    assert run.returncode == FAILED, run.stdout + run.stderr
    assert cli("validate", "--cases-dir", str(tmp_path)).returncode == FAILED


def test_interrupted() -> None:
    p = subprocess.Popen([sys.executable, "-m", "harness", "fuzz", "--profile", "nightly", "--duration", "120",
                          "--out", "/nonexistent-never-written"], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stderr is not None
        assert "fuzz: the" in p.stderr.readline()   # started
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == INTERRUPTED and "interrupted" in err, (p.returncode, err)


def test_internal_error() -> None:
    # The loader does not take an absolute pattern and pathlib raises: a harness bug, with its traceback.
    proc = cli("validate", "--cases", "/etc/passwd")
    assert proc.returncode == INTERNAL_ERROR and "Traceback" in proc.stderr and "internal error" in proc.stderr


def test_usage_errors_argparse_the_cli_and_the_pytest_plugin() -> None:
    assert cli("list", "--no-such-option").returncode == USAGE_ERROR
    assert cli("fuzz", "--coverage").returncode == USAGE_ERROR
    assert cli("compare", "--baseline", "no-such-kernel", "--candidate", "6.12").returncode == USAGE_ERROR
    plugin = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "0", "conformance", "--cases", ONE_CASE,
                             "--vm-kernel", "/nonexistent"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert plugin.returncode == USAGE_ERROR, plugin.stdout


def test_no_match(tmp_path: Path) -> None:
    assert cli("run", "--cases", "no-such-area/*", "--report", str(tmp_path)).returncode == NO_MATCH
    assert cli("validate", "--cases", "no-such-area/*").returncode == NO_MATCH
    fragment = tmp_path / "never-built.config"
    fragment.write_text(f"# {tmp_path}\n")
    assert cli("kernel", "build", "--print-path", "--fragment", str(fragment)).returncode == NO_MATCH


def test_environment(tmp_path: Path) -> None:
    assert cli("fuzz", "--vm", "--kernel", str(tmp_path / "no-bzImage")).returncode == ENVIRONMENT
    assert cli("vm", "--kernel", str(tmp_path / "no-bzImage")).returncode == ENVIRONMENT
    # The backend cannot be set up (no agent at the far end): the plugin ends pytest with it.
    run = cli("run", "--backend", "both", "--target", "ssh://nobody@127.0.0.1:1/x", "--cases", ONE_CASE,
              "--report", str(tmp_path))
    assert run.returncode == ENVIRONMENT and "cannot set up the both backend" in run.stdout + run.stderr


def test_quiet_and_verbose_mean_the_same_on_every_command(tmp_path: Path) -> None:
    for command in ("validate", "list"):
        quiet, normal, verbose = (cli(command, *flag, "--cases", "ioas/*").stdout.splitlines()
                                  for flag in (["-q"], [], ["-v"]))
        assert len(quiet) == 1 and "cases" in quiet[0], (command, quiet)
        assert len(verbose) > len(quiet) and any(ONE_CASE in line for line in verbose), command
        assert not any(ONE_CASE in line for line in normal), command
    run = [cli("run", flag, "--cases", "ioas/vfio-ioas-*", "--report", str(tmp_path)).stdout for flag in ("-q", "-v")]
    assert "PASSED" not in run[0] and "PASSED" in run[1]
    fuzz = cli("fuzz", "-q", "--examples", "5", "--out", str(tmp_path))
    assert fuzz.returncode == OK and "fuzz: the" not in fuzz.stderr and "fuzz: iommufd:" in fuzz.stdout
    for command in (["vm"], ["fuzz"], ["faults"], ["coverage"], ["compare"], ["restore"], ["kernel", "build"]):
        assert "-q, --quiet" in cli(*command, "--help").stdout, command
