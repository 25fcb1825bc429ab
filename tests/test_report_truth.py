"""Every report tells the truth about the run (issue 10, item 3): a run that was interrupted or
refused says so in its JUnit, KTAP and Markdown, with the cases it never reached listed; every
JUnit file the project writes is valid against the Jenkins xUnit plugin's JUnit rules
(tests/schemas/junit.xsd); `fuzz` and `faults` write JUnit and KTAP; `--ktap -` prints KTAP on
stdout and nothing else.  The runs are the CLI in a subprocess, on the model."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import xmlschema

from harness.cases.loader import Loader
from harness.exitcodes import ENVIRONMENT
from harness.fuzz.faults import FaultReport, StepFaults
from harness.fuzz.outcomes import FuzzResults, fault_outcomes
from harness.fuzz.run import Finding, FuzzReport
from harness.report import render_junit, render_ktap, render_markdown, write_junit_and_ktap
from harness.runner.run_state import INTERRUPTED, RunState
from tests.test_reports import check_ktap, outcomes

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = xmlschema.XMLSchema(str(ROOT / "tests" / "schemas" / "junit.xsd"))
# The whole corpus: long enough (a few seconds) that the SIGINT sent after the first case's line
# always lands before the last case ends, even when that line reaches the test late.
CASES = "**/*.yaml"


def cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def schema_errors(path: Path) -> list[str]:
    return [f"{e.path}: {e.reason}" for e in SCHEMA.iter_errors(str(path))]


def junit_cases(path: Path) -> dict[str, ET.Element]:
    return {c.get("name") or "": c for c in ET.parse(path).getroot().iter("testcase")}


def planned(pattern: str = CASES) -> list[str]:
    cases, errors = Loader(ROOT / "cases").load_all(pattern)
    assert cases and not errors
    return [c.test_id for c in cases]


def ktap_cases(text: str) -> dict[str, tuple[bool, str, str]]:
    """case name -> (ok, directive, data), over every area, after the strict checker read it."""
    return {t.name: (t.ok, t.directive, t.data) for area in check_ktap(text) for t in area.subtests}


# -- The schema ------------------------------------------------------------------------------------

def test_the_schema_rejects_what_the_jenkins_schema_rejects(tmp_path: Path) -> None:
    # What the old diff-junit.xml had: disabled counts, file/line on a testcase, properties in it.
    bad = tmp_path / "bad.xml"
    bad.write_text('<testsuites disabled="0"><testsuite name="s" tests="1" failures="0" errors="0">'
                   '<testcase name="c" file="x.yaml" line="1"><properties><property name="a" value="b"/>'
                   '</properties></testcase></testsuite></testsuites>')
    errors = " ".join(schema_errors(bad))
    for what in ("disabled", "file", "line", "properties"):
        assert what in errors


def test_every_renderer_writes_schema_valid_junit(tmp_path: Path) -> None:
    state = RunState(INTERRUPTED, "KeyboardInterrupt", 9)
    for name, text in {"complete": render_junit(outcomes()), "interrupted": render_junit(outcomes(), state),
                       "empty": render_junit([])}.items():
        path = tmp_path / f"{name}.xml"
        path.write_text(text)
        assert schema_errors(path) == [], name


# -- run: complete, interrupted, refused -----------------------------------------------------------

def test_a_complete_run_writes_one_junit_file_valid_and_ktap_alone_on_stdout(tmp_path: Path) -> None:
    cases = tmp_path / "cases"
    shutil.copytree(ROOT / "cases" / "fixtures", cases / "fixtures")
    shutil.copytree(ROOT / "cases" / "macros", cases / "macros")
    (cases / "ioas").mkdir(parents=True)
    for src in sorted((ROOT / "cases" / "ioas").glob("allow-iovas-*.yaml")):
        (cases / "ioas" / src.name).write_text(src.read_text())
    (cases / "ioas" / "broken.yaml").write_text("id: broken\narea: ioas\n")
    proc = cli("run", "--cases-dir", str(cases), "--report", str(tmp_path / "r"), "--ktap", "-")
    assert proc.returncode == 1, proc.stderr      # the malformed file fails the run
    results = ktap_cases(proc.stdout)              # stdout is KTAP, nothing else
    assert results["malformed:broken.yaml"][:2] == (False, "ERROR")
    loaded, _ = Loader(cases).load_all()
    assert loaded and sum(1 for ok, _, _ in results.values() if ok) == len(loaded)
    assert "passed" in proc.stderr, "pytest's own output went to stderr"
    assert sorted(p.name for p in (tmp_path / "r").glob("*.xml")) == ["results.xml"]
    junit = tmp_path / "r" / "results.xml"
    assert schema_errors(junit) == []
    assert set(junit_cases(junit)) == set(results)
    assert "Bail out" not in proc.stdout and "INTERRUPTED" not in (tmp_path / "r" / "report.md").read_text()


def test_an_interrupted_run_says_so_in_every_report(tmp_path: Path) -> None:
    report = tmp_path / "r"
    want = planned()
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", "--cases", CASES, "--report", str(report),
                             "-v", "--ktap", "-"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stderr is not None
    try:
        for line in proc.stderr:                    # -v: a line per case as it ends (on stderr with --ktap -)
            if " PASSED" in line or " FAILED" in line or " SKIPPED" in line:
                proc.send_signal(signal.SIGINT)
                break
        out, _ = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 2, out
    bail = re.search(r"^Bail out! interrupted after (\d+) of (\d+) cases$", out, re.M)
    assert bail, out[-2000:]
    ran, of = int(bail.group(1)), int(bail.group(2))
    assert of == len(want) and 1 <= ran < of
    results = ktap_cases(out)                       # the plan is honest: every case has a result line
    assert set(results) == set(want)
    not_run = [n for n, (ok, d, data) in results.items() if d == "SKIP" and data == "not run: interrupted"]
    assert len(not_run) == of - ran
    top = check_ktap(out)
    assert (top[-1].name, top[-1].ok, top[-1].directive) == ("run", False, "ERROR")
    junit = report / "results.xml"
    assert schema_errors(junit) == []
    cases = junit_cases(junit)
    assert set(cases) == set(want) | {"run"}
    error = cases["run"].find("error")
    assert error is not None and error.get("message") == f"interrupted after {ran} of {of} cases"
    assert "interrupted" in (cases["run"].findtext("system-err") or "")
    assert sum(1 for c in cases.values() if c.find("skipped") is not None
               and c.find("skipped").get("message") == "not run: interrupted") == len(not_run)  # type: ignore[union-attr]
    md = (report / "report.md").read_text()
    assert md.startswith(f"# vfio-conformance report\n\n> **INTERRUPTED: interrupted after {ran} of {of} cases.**")


def test_a_refused_run_says_why_in_every_report(tmp_path: Path) -> None:
    # No agent can start on a host that cannot exist (.invalid, RFC 2606): the backend cannot be
    # set up, whoever runs this and whatever the machine has.
    report = tmp_path / "r"
    want = planned("ioas/allow-iovas-*")
    proc = cli("run", "--cases", "ioas/allow-iovas-*", "--backend", "both", "--target",
               "ssh://nosuchhost.invalid/x", "--report", str(report), "--ktap", "-", timeout=120)
    assert proc.returncode == ENVIRONMENT, proc.stderr
    bail = re.search(r"^Bail out! (cannot set up the both backend: .+)$", proc.stdout, re.M)
    assert bail, proc.stdout
    results = ktap_cases(proc.stdout)
    assert set(results) == set(want), "the plan lists every case, not 1..0"
    assert all(r == (True, "SKIP", "not run: refused") for r in results.values())
    junit = report / "results.xml"
    assert schema_errors(junit) == []
    error = junit_cases(junit)["run"].find("error")
    assert error is not None and error.get("type") == "refused" and error.get("message") == bail.group(1)
    md = (report / "report.md").read_text()
    assert "> **REFUSED TO RUN: cannot set up the both backend" in md.split("\n")[2]
    assert f"{len(want)} of {len(want)} cases did not run" in md


# -- fuzz and faults -------------------------------------------------------------------------------

def test_fuzz_writes_junit_and_ktap_and_prints_only_ktap_with_ktap_dash(tmp_path: Path) -> None:
    proc = cli("fuzz", "--examples", "3", "--report", str(tmp_path), "--out", str(tmp_path / "regressions"),
               "--ktap", "-")
    assert proc.returncode == 0, proc.stderr
    assert ktap_cases(proc.stdout) == {"fuzz-iommufd": (True, "", ""), "fuzz-vfio": (True, "", "")}
    assert "sequences" in proc.stderr and "sequences" not in proc.stdout
    assert schema_errors(tmp_path / "fuzz.xml") == []
    assert set(junit_cases(tmp_path / "fuzz.xml")) == {"fuzz-iommufd", "fuzz-vfio"}
    assert (tmp_path / "fuzz.ktap").read_text() == proc.stdout


def test_a_fuzz_divergence_fails_naming_the_case_file_and_an_interruption_is_said(tmp_path: Path) -> None:
    results = FuzzResults(["iommufd", "vfio"], "ci")
    case = tmp_path / "regressions" / "fuzz-0123456789.yaml"
    found = FuzzReport(sequences=4, steps=30, seconds=1.5, rounds=1, seeds=[7],
                       findings=[Finding("step 3 (IOMMU_IOAS_MAP): errno: kernel 'EINVAL' vs model None",
                                         [{}, {}, {}], 7, case)])
    results.finished("iommufd", found, "6.12.118")
    results.stopped("vfio", INTERRUPTED, "interrupted while the vfio machine ran")
    paths = write_junit_and_ktap(results.all_outcomes(), tmp_path, "fuzz", results.run_state())
    assert schema_errors(paths[0]) == []
    cases = junit_cases(paths[0])
    failure = cases["fuzz-iommufd"].find("failure")
    assert failure is not None and failure.get("type") == "divergence"
    assert str(case) in (failure.get("message") or "")
    assert cases["vfio" if "vfio" in cases else "fuzz-vfio"].find("error") is not None
    ktap = paths[1].read_text()
    assert ktap_cases(ktap)["fuzz-iommufd"][0] is False
    assert "Bail out! interrupted after" in ktap


def test_faults_write_one_testcase_per_case_a_misbehaving_kernel_fails_it(tmp_path: Path) -> None:
    cases, _ = Loader(ROOT / "cases").load_all("ioas/allow-iovas-*")
    a, b, c, d = cases[:4]
    report = FaultReport(cases=2, skipped=[f"{c.test_id}: needs CONFIG_IOMMUFD_TEST"])
    report.steps.append(StepFaults(a.test_id, 2, "IOMMU_IOAS_ALLOC", 9, sites=3,
                                   outcomes=Counter({"ENOMEM": 3}), by_nth=["ENOMEM"] * 3))
    report.steps.append(StepFaults(b.test_id, 3, "IOMMU_IOAS_ALLOW_IOVAS", 14, sites=2,
                                   problems=["N=2: IOMMU_IOAS_ALLOC on the iommufd afterwards: EBADF"]))
    state = RunState(INTERRUPTED, "KeyboardInterrupt", 4)
    paths = write_junit_and_ktap(fault_outcomes([a, b, c, d], report, state), tmp_path, "faults", state)
    assert schema_errors(paths[0]) == []
    got = junit_cases(paths[0])
    assert got[f"faults:{a.test_id}"].find("failure") is None and got[f"faults:{a.test_id}"].find("error") is None
    failure = got[f"faults:{b.test_id}"].find("failure")
    assert failure is not None and "EBADF" in (failure.get("message") or "")
    assert got[f"faults:{c.test_id}"].find("skipped").get("message") == "needs CONFIG_IOMMUFD_TEST"  # type: ignore[union-attr]
    assert got[f"faults:{d.test_id}"].find("skipped").get("message") == "not run: interrupted"  # type: ignore[union-attr]
    assert "error" in {e.tag for e in got["run"]}
    ktap = ktap_cases(paths[1].read_text())
    assert ktap[f"faults:{b.test_id}"][0] is False and ktap[f"faults:{d.test_id}"][2] == "not run: interrupted"


def test_markdown_of_a_complete_run_has_no_banner() -> None:
    md = render_markdown(outcomes(), RunState())
    assert md.startswith("# vfio-conformance report\n\n**5 cases")
    assert render_ktap(outcomes(), RunState()) == render_ktap(outcomes())


def test_compare_junit_is_schema_valid_too(tmp_path: Path) -> None:
    from harness.report.compare import render_junit as compare_junit

    path = tmp_path / "compare.xml"
    path.write_text(compare_junit(outcomes()))
    assert schema_errors(path) == []
