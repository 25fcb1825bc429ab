"""Reports: JUnit parses with one testcase per case and the right result types, KTAP is valid
KTAP v1 (checked by a strict checker here, and by the kernel's own KUnit parser when its source is
at hand), the Markdown shows the counts and the diverging row."""

from __future__ import annotations

import ast
import importlib
import io
import re
import sys
import xml.etree.ElementTree as ET
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from harness.kernel.source import find_source
from harness.report import render_junit, render_ktap, render_markdown, write_reports
from harness.report.ktap import ktap_name
from harness.runner.outcome import CaseOutcome, StepView

ROOT = Path(__file__).resolve().parent.parent
DIVERGENCE = "step 2 (IOMMU_IOAS_MAP): errno: kernel 'EINVAL' vs model None"
KNOWN = "6.12 checks the group before the IOMMU type (vfio_iommu_type1.c:2741); the model checks the type first"


def outcomes() -> list[CaseOutcome]:
    """One of each: pass, fail with a divergence, skip (with a '#' in its id), error, and a pass
    whose divergence is a documented known difference.  Sent through JSON like the plugin does."""
    passed = CaseOutcome(
        test_id="ioas-map-basic", area="ioas", purpose="IOMMU_IOAS_MAP of one page succeeds.",
        location="cases/ioas/map-basic.yaml:1", source="drivers/iommu/iommufd/ioas.c:213",
        verified_on=["6.12.117"], status="pass", backends=["kernel", "model"], duration_s=0.25,
        steps=[
            StepView(0, 12, "open /dev/iommu", {"kernel": "ok ret=3", "model": "ok ret=3"}, {}),
            StepView(1, 14, "IOMMU_IOAS_ALLOC", {"kernel": "ok ret=0", "model": "ok ret=0"}, {}),
        ])
    failed = CaseOutcome(
        test_id="ioas-map-fixed-unaligned-iova", area="ioas",
        purpose="IOMMU_IOAS_MAP with IOMMU_IOAS_MAP_FIXED_IOVA at an unaligned IOVA fails with EINVAL.",
        location="cases/ioas/map-fixed-unaligned.yaml:1", source="drivers/iommu/iommufd/io_pagetable.c:412-414",
        verified_on=[], status="fail", backends=["kernel", "model"], duration_s=0.5,
        reason=f"divergence: {DIVERGENCE}; model: step 2 (IOMMU_IOAS_MAP, line 14): returned success, expected EINVAL",
        divergence=DIVERGENCE,
        steps=[
            StepView(0, 12, "mmap", {"kernel": "ok ret=140000000", "model": "ok ret=140000000"}, {}),
            StepView(1, 14, "IOMMU_IOAS_MAP flags=FIXED|READABLE", {"kernel": "EINVAL", "model": "ok ret=0"},
                     {"model": ["returned success, expected EINVAL"]}, where="", diverges=True),
            StepView(2, 30, "cleanup: close iommufd", {"kernel": "ok ret=0", "model": "ok ret=0"}, {}),
        ])
    skipped = CaseOutcome(
        test_id="set-iommu-legacy[no#compat]", area="container", purpose="VFIO_SET_IOMMU on a legacy container.",
        location="cases/container/set-iommu.yaml:1", source="drivers/vfio/container.c:300", verified_on=[],
        status="skip", backends=["model"], reason="requires container: legacy, but /dev/vfio/vfio is iommufd")
    errored = CaseOutcome(
        test_id="size-short-argsz", area="size", purpose="A short argsz fails with EINVAL.",
        location="cases/size/short.yaml:3", source="drivers/vfio/vfio_main.c:1200", verified_on=[],
        status="error", backends=["model"], reason="step 3: $ioas: unbound name",
        steps=[StepView(0, 8, "open /dev/iommu", {"model": "ok ret=3"}, {})])
    known = CaseOutcome(
        test_id="map-before-set-iommu", area="container",
        purpose="VFIO_IOMMU_MAP_DMA before VFIO_SET_IOMMU fails.", location="cases/container/map-before.yaml:1",
        source="drivers/vfio/container.c:480", verified_on=["6.12.117"], status="pass",
        backends=["kernel", "model"],
        divergence="step 3 (VFIO_IOMMU_MAP_DMA): errno: kernel 'ENODEV' vs model 'EINVAL'",
        known_difference=KNOWN,
        steps=[StepView(2, 20, "VFIO_IOMMU_MAP_DMA", {"kernel": "ENODEV", "model": "EINVAL"}, {},
                        where="vfio_iommu_type1.c:1630", diverges=True)])
    return [CaseOutcome.from_json(o.to_json()) for o in (passed, failed, skipped, errored, known)]


# -- JUnit -------------------------------------------------------------------------------------------

def test_junit_parses_with_one_testcase_per_outcome_and_the_right_results(tmp_path: Path) -> None:
    from junitparser import Error, Failure, JUnitXml, Skipped

    path = tmp_path / "j.xml"
    path.write_text(render_junit(outcomes()))
    xml = JUnitXml.fromfile(str(path))
    suites = {s.name: s for s in xml}
    assert set(suites) == {"vfio-conformance.container", "vfio-conformance.ioas", "vfio-conformance.size"}
    cases = {c.name: (s.name, c) for s in xml for c in s}
    assert len(cases) == 5 == sum(1 for s in xml for _ in s)
    kinds = {name: [type(r) for r in c.result] for name, (_, c) in cases.items()}
    assert kinds == {
        "ioas-map-basic": [], "map-before-set-iommu": [],
        "ioas-map-fixed-unaligned-iova": [Failure], "set-iommu-legacy[no#compat]": [Skipped],
        "size-short-argsz": [Error],
    }
    for name, (suite, c) in cases.items():
        assert c.classname == suite, name
    _, fail = cases["ioas-map-fixed-unaligned-iova"]
    assert DIVERGENCE in fail.result[0].message
    assert fail.result[0].type == "divergence"
    assert "≠" in fail.result[0].text and "IOMMU_IOAS_MAP flags=FIXED|READABLE" in fail.result[0].text
    assert "requires container: legacy" in cases["set-iommu-legacy[no#compat]"][1].result[0].message
    assert "unbound name" in cases["size-short-argsz"][1].result[0].message
    assert suites["vfio-conformance.ioas"].failures == 1 and suites["vfio-conformance.size"].errors == 1
    assert suites["vfio-conformance.container"].skipped == 1


def _system_out(c: ET.Element) -> dict[str, str]:
    text = c.findtext("system-out") or ""
    return dict(line.split(": ", 1) for line in text.split("\n\n")[0].splitlines())


def test_junit_carries_location_time_and_properties_as_the_schema_allows() -> None:
    # The Jenkins xUnit schema has no file/line attributes and no <properties> in a testcase:
    # what they would say is the testcase's system-out.
    root = ET.fromstring(render_junit(outcomes()))
    by_name = {c.get("name"): c for c in root.iter("testcase")}
    c = by_name["ioas-map-fixed-unaligned-iova"]
    assert c.get("file") is None and c.get("line") is None and c.find("properties") is None
    assert float(c.get("time") or 0) == 0.5
    props = _system_out(c)
    assert props["location"] == "cases/ioas/map-fixed-unaligned.yaml:1"
    assert props["backends"] == "kernel,model"
    assert props["verified_on"] == "model only"
    assert props["source"] == "drivers/iommu/iommufd/io_pagetable.c:412-414"
    assert _system_out(by_name["ioas-map-basic"])["verified_on"] == "6.12.117"
    assert _system_out(by_name["map-before-set-iommu"])["known_difference"] == KNOWN


def test_junit_keeps_a_failure_without_any_reason() -> None:
    # junit-xml silently drops a failure whose message and output are both empty.
    o = outcomes()[1]
    o.reason, o.divergence, o.steps = "", "", []
    root = ET.fromstring(render_junit([o]))
    assert len(list(root.iter("failure"))) == 1


# -- KTAP --------------------------------------------------------------------------------------------

class KtapError(AssertionError):
    pass


@dataclass
class KtapTest:
    number: int
    ok: bool
    name: str
    directive: str = ""          # SKIP, ERROR, ... ("" for none)
    data: str = ""
    subtests: list[KtapTest] = field(default_factory=list)
    diagnostics: list[str] = field(default_factory=list)


RESULT = re.compile(r"(ok|not ok) ([1-9][0-9]*)(?: ([^#]*[^#\s]))?(?: # (.*))?")
DIRECTIVES = ("SKIP", "TODO", "XFAIL", "TIMEOUT", "ERROR")


def check_ktap(text: str) -> list[KtapTest]:
    """A strict KTAP v1 reader: version line, plan, results numbered 1..N that match the plan, nested
    documents indented two spaces per level, '#' only as the directive separator, known directives
    in upper case with the result they require.  Raises KtapError; returns the top-level tests."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    pos = 0

    def line_at(i: int) -> str:
        return lines[i] if i < len(lines) else "<end of output>"

    def document(indent: str) -> list[KtapTest]:
        nonlocal pos
        if line_at(pos) != f"{indent}KTAP version 1":
            raise KtapError(f"line {pos + 1}: expected {indent!r}KTAP version 1, got {line_at(pos)!r}")
        pos += 1
        diags = skip_diagnostics(indent)
        m = re.fullmatch(re.escape(indent) + r"1\.\.(0|[1-9][0-9]*)", line_at(pos))
        if not m:
            raise KtapError(f"line {pos + 1}: expected a plan, got {line_at(pos)!r}")
        planned = int(m.group(1))
        pos += 1
        tests: list[KtapTest] = []
        for n in range(1, planned + 1):
            diags += skip_diagnostics(indent)
            subtests: list[KtapTest] = []
            if line_at(pos).startswith(indent + "  KTAP version"):
                subtests = document(indent + "  ")
                diags += skip_diagnostics(indent)
            t = result(indent, n)
            t.subtests, t.diagnostics, diags = subtests, diags, []
            tests.append(t)
        return tests

    def skip_diagnostics(indent: str) -> list[str]:
        nonlocal pos
        out = []
        while pos < len(lines) and lines[pos].startswith(indent + "#"):
            d = lines[pos][len(indent):]
            if d != "#" and not d.startswith("# "):
                raise KtapError(f"line {pos + 1}: a diagnostic line is '# text': {lines[pos]!r}")
            out.append(d[2:])
            pos += 1
        return out

    def result(indent: str, n: int) -> KtapTest:
        nonlocal pos
        raw = line_at(pos)
        if not raw.startswith(indent) or raw[len(indent):].startswith(" "):
            raise KtapError(f"line {pos + 1}: result {n} at the wrong indentation: {raw!r}")
        m = RESULT.fullmatch(raw[len(indent):])
        if not m:
            raise KtapError(f"line {pos + 1}: expected result {n}, got {raw!r}")
        ok, num, name, rest = m.group(1) == "ok", int(m.group(2)), m.group(3) or "", m.group(4)
        if num != n:
            raise KtapError(f"line {pos + 1}: test number {num}, expected {n}")
        directive, data = "", rest or ""
        if rest is not None:
            word, _, tail = rest.partition(" ")
            if word.upper() in DIRECTIVES:
                if word != word.upper():
                    raise KtapError(f"line {pos + 1}: directive {word!r} must be upper case")
                directive, data = word, tail
                if tail.startswith(" ") or (not tail and rest != word):
                    raise KtapError(f"line {pos + 1}: '# {word}' then one space then the reason: {raw!r}")
        if directive in ("ERROR", "TIMEOUT") and ok:
            raise KtapError(f"line {pos + 1}: {directive} requires 'not ok'")
        pos += 1
        return KtapTest(num, ok, name, directive, data)

    top = document("")
    while pos < len(lines):
        # kselftest's ksft_exit_fail_msg(): "Bail out! <reason>" after the results of a run that stopped.
        if not lines[pos].startswith(("# ", "Bail out! ")):
            raise KtapError(f"line {pos + 1}: only diagnostics may follow the last result: {lines[pos]!r}")
        pos += 1
    return top


def test_ktap_is_valid_ktap_v1_with_the_right_results() -> None:
    text = render_ktap(outcomes())
    top = check_ktap(text)
    assert [(t.name, t.ok, t.directive) for t in top] == [
        ("container", True, ""), ("ioas", False, ""), ("size", False, "")]
    container, ioas, size = (t.subtests for t in top)
    assert [(t.number, t.name, t.ok, t.directive) for t in container] == [
        (1, "set-iommu-legacy[no_compat]", True, "SKIP"), (2, "map-before-set-iommu", True, "")]
    assert container[0].data == "requires container: legacy, but /dev/vfio/vfio is iommufd"
    assert [(t.name, t.ok) for t in ioas] == [("ioas-map-basic", True), ("ioas-map-fixed-unaligned-iova", False)]
    assert any(DIVERGENCE in d for d in ioas[1].diagnostics), "the reason is a diagnostic before the not ok"
    assert [(t.name, t.ok, t.directive) for t in size] == [("size-short-argsz", False, "ERROR")]
    assert "unbound name" in size[0].data
    assert text.rstrip("\n").split("\n")[-1] == "# Totals: pass:2 fail:1 xfail:0 xpass:0 skip:1 error:1"


def test_ktap_all_skipped_area_is_skipped_and_empty_run_has_empty_plan() -> None:
    o = outcomes()[2]
    top = check_ktap(render_ktap([o]))
    assert (top[0].ok, top[0].directive, top[0].data) == (True, "SKIP", "all 1 cases skipped")
    assert check_ktap(render_ktap([])) == []


def test_ktap_names_never_carry_a_hash_or_newline() -> None:
    assert ktap_name("a#b\nc") == "a_b c"
    assert ktap_name("") == "unnamed"


@pytest.mark.parametrize("broken", [
    "KTAP version 1\n1..2\nok 1 a\n",                       # fewer results than planned
    "KTAP version 1\n1..2\nok 1 a\nok 3 b\n",               # numbering gap
    "KTAP version 1\n1..1\nok 1 a#b\n",                     # '#' in a name
    "KTAP version 1\n1..1\nok 1 a # skip why\n",            # directive in lower case
    "KTAP version 1\n1..1\nok 1 a # SKIP  why\n",           # two spaces
    "KTAP version 1\n1..1\nok 1 a # ERROR why\n",           # ERROR must be not ok
    "TAP version 13\n1..1\nok 1 a\n",                       # not KTAP v1
    "KTAP version 1\nok 1 a\n",                             # no plan
    "KTAP version 1\n1..1\n KTAP version 1\n 1..1\n ok 1 x\nok 1 a\n",   # one-space indent
    "KTAP version 1\n1..1\nok 1 a\nok 2 b\n",               # more results than planned
])
def test_the_ktap_checker_rejects_broken_output(broken: str) -> None:
    with pytest.raises(KtapError):
        check_ktap(broken)


def _kunit_parser() -> Any:
    """tools/testing/kunit/kunit_parser.py of the kernel the suite targets, from the 6.12 tree
    every reader shares (harness.kernel.source: the Debian tarball CI installs, extracted once
    into the cache)."""
    kunit = "tools/testing/kunit"
    tree = find_source([f"{kunit}/kunit_parser.py", f"{kunit}/kunit_printer.py"])
    if tree is None:
        pytest.skip("no Linux 6.12 tree to take the kernel's KUnit parser from")
    sys.path.insert(0, str(tree / kunit))
    write_bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True   # the tree stays as extracted
    try:
        return importlib.import_module("kunit_parser")
    finally:
        sys.dont_write_bytecode = write_bytecode
        sys.path.remove(str(tree / kunit))


def test_the_kernels_kunit_parser_reads_our_ktap() -> None:
    kp = _kunit_parser()
    with redirect_stdout(io.StringIO()) as printed:
        main = kp.parse_run_tests(render_ktap(outcomes()).splitlines())
    assert main.counts.errors == 0, printed.getvalue()
    assert main.status == kp.TestStatus.FAILURE
    assert (main.counts.passed, main.counts.failed, main.counts.skipped, main.counts.crashed) == (2, 2, 1, 0)
    assert [t.name for t in main.subtests] == ["container", "ioas", "size"]
    assert [t.status for t in main.subtests] == [kp.TestStatus.SUCCESS, kp.TestStatus.FAILURE, kp.TestStatus.FAILURE]
    assert [t.name for t in main.subtests[1].subtests] == ["ioas-map-basic", "ioas-map-fixed-unaligned-iova"]


# -- Markdown ----------------------------------------------------------------------------------------

def cells(row: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", row.strip())[1:-1]]


def test_markdown_has_the_counts_and_the_diverging_row() -> None:
    md = render_markdown(outcomes())
    assert "**5 cases: 2 pass, 1 fail, 1 skip, 1 error.**" in md
    assert "- Backends: kernel, model\n" in md
    assert "Never ran on a real kernel: 3 of 5 cases" in md
    failures = md.split("## Failures and divergences")[1].split("## Accepted known differences")[0]
    section = failures.split("### `ioas-map-fixed-unaligned-iova`: **FAIL**")[1].split("\n### ")[0]
    assert "- source: `drivers/iommu/iommufd/io_pagetable.c:412-414`" in section
    rows = [cells(r) for r in section.splitlines() if r.startswith("|")]
    assert rows[0] == ["#", "line", "step", "kernel", "model", "", "where"]
    diverging = [r for r in rows[2:] if r[5]]
    assert diverging == [["2", "14", r"`IOMMU_IOAS_MAP flags=FIXED\|READABLE`", "`EINVAL`",
                          "`ok ret=0`<br>✗ returned success, expected EINVAL", "≠✗", ""]]
    assert "`size-short-argsz`: **ERROR**" in failures
    assert "map-before-set-iommu" not in failures


def test_markdown_lists_accepted_known_differences() -> None:
    md = render_markdown(outcomes())
    known = md.split("## Accepted known differences")[1]
    assert "`map-before-set-iommu`" in known and KNOWN.split(";")[0] in known
    row = next(cells(r) for r in known.splitlines() if r.startswith("| `map-before-set-iommu`"))
    assert row[1] == "pass" and "ENODEV" in row[2]
    assert "`vfio_iommu_type1.c:1630`" in known, "the model's citation is shown"


def test_markdown_model_only_run_says_so() -> None:
    md = render_markdown([o for o in outcomes() if o.backends == ["model"]])
    assert "- Backends: model (this run did not touch a real kernel)" in md
    assert "## Accepted known differences\n\nDivergences" in md and md.rstrip().endswith("None.")


# -- Files and layering ------------------------------------------------------------------------------

def test_write_reports_writes_the_four_files_whole(tmp_path: Path) -> None:
    folder = tmp_path / "deep" / "reports"
    paths = write_reports(outcomes(), folder)
    assert [p.name for p in paths] == ["results.xml", "results.ktap", "report.md", "diff.json"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in paths), "no temporary files left"
    assert paths[1].read_text() == render_ktap(outcomes())
    check_ktap(paths[1].read_text())
    ET.parse(paths[0])


def test_write_reports_lists_a_repeated_outcome_once(tmp_path: Path) -> None:
    # The plugin sees each case's outcome with the call report and again with the teardown report.
    doubled = [o for o in outcomes() for _ in range(2)]
    paths = write_reports(sorted(doubled, key=lambda o: o.test_id), tmp_path)
    assert len(list(ET.parse(paths[0]).getroot().iter("testcase"))) == 5
    assert sum(len(t.subtests) for t in check_ktap(paths[1].read_text())) == 5
    # A different result for the same case is not a repeat: both stay visible.
    other = outcomes()[0]
    other.status, other.reason = "fail", "flaky"
    assert len(list(ET.parse(write_reports([outcomes()[0], other], tmp_path)[0]).getroot().iter("testcase"))) == 2


def _harness_imports(path: Path) -> set[str]:
    here = list(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = here[: len(here) - (node.level - 1)] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            found |= {mod} | {f"{mod}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return {m for m in found if m.startswith("harness")}


def test_only_the_cli_and_the_plugin_import_the_reports_and_reports_import_only_the_runner() -> None:
    importers = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "harness").rglob("*.py")
                       if "report" not in p.relative_to(ROOT / "harness").parts[:1]
                       and any(m == "harness.report" or m.startswith("harness.report.") for m in _harness_imports(p)))
    assert set(importers) <= {"harness/cli.py", "harness/cli_compare.py", "harness/pytest_plugin.py",
                              "harness/mutate/report.py"}, importers
    for p in (ROOT / "harness" / "report").rglob("*.py"):
        bad = {m for m in _harness_imports(p) if not m.startswith(("harness.runner", "harness.report"))}
        assert not bad, f"{p.name} imports {bad}"
