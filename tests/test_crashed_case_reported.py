"""A case during which the harness itself raises is an error in every report, not missing from
them (the JUnit of pytest had it, the KTAP and Markdown did not)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

TEST = '''
from harness.pytest_plugin import run_one


class Crashing:
    def run(self, case):
        raise KeyError("a bug in the harness")


def test_case(case, request):
    run_one(case, Crashing(), request.node)
'''


def test_a_crashed_case_is_an_error_in_every_report(tmp_path: Path) -> None:
    test = tmp_path / "test_crash.py"
    test.write_text(textwrap.dedent(TEST))
    report = tmp_path / "reports"
    proc = subprocess.run([sys.executable, "-m", "pytest", str(test), "-p", "harness.pytest_plugin",
                           "-p", "no:cacheprovider", "--report-dir", str(report), "-q",
                           "--cases-dir", str(ROOT / "cases"), "--cases", "ioas/allow-iovas-*"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          # this checkout's harness, and only through -p (not also the installed entry point)
                          env={**os.environ, "PYTHONPATH": str(ROOT), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    ktap = (report / "results.ktap").read_text()
    junit = (report / "results.xml").read_text()
    markdown = (report / "report.md").read_text()
    for text in (ktap, junit, markdown):
        assert "the harness raised KeyError" in text
    assert ktap.count("not ok") >= 2 and "# ERROR" in ktap
