"""`vfio-conformance mutate` without a VM: the operators on kernel source, ids and sampling,
the case-lines reader, the score arithmetic, the results cache and resuming, the equivalent
list, the reports and the command line."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.coverage.kernel_errnos import parse_functions
from harness.coverage.kernel_lines import BY_CASE_FORMAT
from harness.mutate import equivalent as eq
from harness.mutate.case_lines import CaseLines, CaseLinesError
from harness.mutate.operators import OPERATORS, Mutant, mask, mutants_of
from harness.mutate.report import write
from harness.mutate.results import (
    EQUIVALENT,
    IDENTICAL,
    KILLED,
    NOT_COMPILED,
    SURVIVED,
    TIMED_OUT,
    Result,
    ResultsCache,
    Tally,
    tally,
)
from harness.mutate.run import Runner, case_ioctls, sample
from harness.mutate.scope import Scope
from harness.mutate.workspace import Workspace

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data" / "mutate"

# drivers/iommu/iommufd/ioas.c (Linux 6.12.118): iommufd_ioas_iova_ranges(), verbatim.
IOAS_C = (DATA / "ioas.c").read_text()

# drivers/vfio/pci/vfio_pci_core.c (Linux 6.12.118): vfio_pci_ioctl_get_info(), lines 983-1005 abridged
# (the caps and the minsz clamp left out, the final copy_to_user() folded in), and a comment added
# that names code: nothing in it may be mutated.
VFIO_C = (DATA / "vfio_pci_core.c").read_text()


def _mutants(name: str, text: str, ops: tuple[str, ...] = OPERATORS) -> list[Mutant]:
    return mutants_of(name, text, [(f.name, f.start, f.end) for f in parse_functions(name, text)], ops)


def _hunks(diff: str) -> list[str]:
    return [line for line in diff.splitlines() if line.startswith("@@")]


def _balanced(text: str) -> bool:
    m = mask(text)
    return all(m.count(a) == m.count(b) for a, b in ("()", "{}", "[]"))


@pytest.mark.parametrize("name,text", [("drivers/iommu/iommufd/ioas.c", IOAS_C),
                                       ("drivers/vfio/pci/vfio_pci_core.c", VFIO_C)])
def test_every_mutant_is_one_balanced_change(name: str, text: str) -> None:
    ms = _mutants(name, text)
    assert {m.operator for m in ms} == set(OPERATORS)
    for m in ms:
        mutated = m.apply(text)
        assert mutated != text
        assert _balanced(mutated), m.name
        assert len(_hunks(m.diff(text))) == 1, m.name
        # Outside the span nothing changed.
        assert mutated[:m.start] == text[:m.start] and mutated[m.start + len(m.replacement):] == text[m.end:]
        assert text.count("\n", 0, m.start) + 1 == m.line


def test_the_operators_on_ioas_iova_ranges() -> None:
    by = {(m.line, m.operator, m.index): m for m in _mutants("drivers/iommu/iommufd/ioas.c", IOAS_C)}
    # An error check, its condition made false; and negated.
    assert by[(10, "remove_check", 0)].apply(IOAS_C).splitlines()[9] == "\tif (0 && (cmd->__reserved))"
    assert by[(10, "negate", 0)].apply(IOAS_C).splitlines()[9] == "\tif (!(cmd->__reserved))"
    # The relational boundaries, both ways.
    assert by[(26, "boundary", 0)].apply(IOAS_C).splitlines()[25] == "\t\tif (cmd->num_iovas <= max_iovas) {"
    assert by[(43, "boundary", 0)].apply(IOAS_C).splitlines()[42] == "\tif (cmd->num_iovas >= max_iovas)"
    # Returned and assigned errnos.
    assert by[(11, "errno", 0)].apply(IOAS_C).splitlines()[10] == "\t\treturn -EINVAL;"
    assert by[(44, "errno", 0)].apply(IOAS_C).splitlines()[43] == "\t\trc = -EINVAL;"
    # Output fields dropped.
    assert by[(21, "drop_output", 0)].apply(IOAS_C).splitlines()[20] == "\t{ }"
    assert by[(20, "drop_output", 0)].original == "cmd->num_iovas = 0;"
    # A condition over two lines is one change, made false as a whole.
    two = by[(32, "remove_check", 0)]
    assert two.original == "copy_to_user(&ranges[cmd->num_iovas], &elm,\n\t\t\t\t\t sizeof(elm))"
    assert "if (0 && (copy_to_user(&ranges[cmd->num_iovas], &elm,\n\t\t\t\t\t sizeof(elm)))) {" in two.apply(IOAS_C)
    # Not error checks: `if (!span.is_hole) continue;` is only negated.
    assert (24, "negate", 0) in by and (24, "remove_check", 0) not in by
    # `cmd->num_iovas++` is no assignment of an output: not dropped; `rc = ...` is no member.
    assert {m.line for m in by.values() if m.operator == "drop_output"} == {20, 21}


def test_nothing_in_a_comment_is_mutated_and_ternaries_are() -> None:
    ms = _mutants("drivers/vfio/pci/vfio_pci_core.c", VFIO_C)
    assert not [m for m in ms if m.line == 8]          # the comment's if, < and -EINVAL
    lines = VFIO_C.splitlines()
    assert {m.line for m in ms if m.operator == "errno"} == {10, 13, 21}
    ternary = next(m for m in ms if m.operator == "errno" and m.line == 21)
    assert ternary.apply(VFIO_C).splitlines()[20] == lines[20].replace("-EFAULT", "-EINVAL")
    assert next(m for m in ms if m.operator == "errno" and m.line == 13).replacement == "EOPNOTSUPP"
    flags = [m for m in ms if m.operator == "drop_output"]
    assert [m.original for m in flags] == ["info.flags = VFIO_DEVICE_FLAGS_PCI;",
                                           "info.flags |= VFIO_DEVICE_FLAGS_RESET;",
                                           "info.num_regions = VFIO_PCI_NUM_REGIONS + vdev->num_regions;"]


def test_ids_are_stable_unique_and_name_the_change() -> None:
    a = _mutants("drivers/iommu/iommufd/ioas.c", IOAS_C)
    b = _mutants("drivers/iommu/iommufd/ioas.c", IOAS_C)
    assert [m.id for m in a] == [m.id for m in b]
    assert len({m.id for m in a}) == len(a)
    assert all(re.fullmatch(r"[0-9a-f]{12}", m.id) for m in a)
    # Another file with the same text gives other ids; so does a moved line.
    c = _mutants("drivers/iommu/iommufd/other.c", IOAS_C)
    assert not {m.id for m in a} & {m.id for m in c}
    moved = _mutants("drivers/iommu/iommufd/ioas.c", "\n" + IOAS_C)
    assert not {m.id for m in a} & {m.id for m in moved}
    assert a[0].name == f"drivers/iommu/iommufd/ioas.c:{a[0].line}:{a[0].operator}:{a[0].index}"


def test_apply_refuses_another_source() -> None:
    m = _mutants("drivers/iommu/iommufd/ioas.c", IOAS_C)[0]
    with pytest.raises(ValueError, match="does not have"):
        m.apply(IOAS_C.replace("__reserved", "__reserve_"))


def test_the_sample_is_the_same_for_the_same_seed() -> None:
    ms = _mutants("drivers/iommu/iommufd/ioas.c", IOAS_C) + _mutants("drivers/vfio/pci/vfio_pci_core.c", VFIO_C)
    one, again, other = sample(ms, 5, 1), sample(list(reversed(ms)), 5, 1), sample(ms, 5, 2)
    assert {m.id for m in one} == {m.id for m in again} and len(one) == 5
    assert [m.id for m in one] != [m.id for m in other]
    assert sample(ms, None, 1) == ms and sample(ms, 10_000, 1) == ms
    assert [ms.index(m) for m in one] == sorted(ms.index(m) for m in one)   # source order


def _by_case(cases: dict[str, Any]) -> dict[str, Any]:
    return {"format": BY_CASE_FORMAT, "version": 1, "release": "6.12.118", "cases": cases}


def test_case_lines_reads_what_vm_coverage_per_case_writes() -> None:
    from harness.coverage.kernel_lines import by_case_json
    from harness.runner.kernel_lines import CaseLines as Ran

    written = by_case_json({"ioas-a": Ran("mock", "pass", {"drivers/iommu/iommufd/ioas.c": [10, 11, 21]}),
                            "ioas-b": Ran("mock", "pass", {"drivers/iommu/iommufd/ioas.c": [44]}),
                            "ioas-c": Ran("mock", "fail", {"drivers/iommu/iommufd/ioas.c": [21]})},
                           [], "6.12.118", Path("bzImage"), Path("src"), ["drivers/iommu/iommufd"])
    cl = CaseLines.parse(json.loads(written))
    assert cl.release == "6.12.118"
    assert cl.reaching("drivers/iommu/iommufd/ioas.c", [21]) == {"ioas-a"}      # ioas-c failed unmutated
    assert cl.reaching("drivers/iommu/iommufd/ioas.c", [11, 44]) == {"ioas-a", "ioas-b"}
    assert cl.reaching("drivers/iommu/iommufd/ioas.c", [1]) == set()
    assert "executable" not in json.loads(written)       # no total coverage given
    assert cl.reaching_mutant("drivers/iommu/iommufd/ioas.c", [12], "iommufd_ioas_alloc") == set()


def test_a_line_without_code_is_reached_by_the_cases_entering_its_function() -> None:
    from harness.coverage.kernel_lines import by_case_json
    from harness.kernel import gcov
    from harness.runner.kernel_lines import CaseLines as Ran

    ioas = "drivers/iommu/iommufd/ioas.c"
    total = {ioas: gcov.FileCoverage(ioas, {10: 2, 11: 2, 13: 0, 21: 1, 44: 1},
                                     {"alloc": gcov.FunctionSpan("alloc", 9, 22),
                                      "option": gcov.FunctionSpan("option", 40, 50)})}
    written = by_case_json({"ioas-a": Ran("mock", "pass", {ioas: [10, 11]}),
                            "ioas-b": Ran("mock", "pass", {ioas: [21]}),
                            "ioas-c": Ran("mock", "pass", {ioas: [44]})},
                           [], "6.12.118", Path("bzImage"), Path("src"), ["drivers/iommu/iommufd"], total)
    cl = CaseLines.parse(json.loads(written))
    # Line 12 (say a `return -EINVAL;` the compiler folded into line 11's `if`) has no code:
    # the cases entering alloc() may reach its mutant.
    assert cl.reaching_mutant(ioas, [12], "alloc") == {"ioas-a", "ioas-b"}
    # Line 13 has code no case ran: none reaches it, as before.
    assert cl.reaching_mutant(ioas, [13], "alloc") == set()
    # A function the measurement has no span for: unknown (static reach decides).
    assert cl.reaching_mutant(ioas, [30], "inlined") is None
    # A file the measurement has no executable lines for: line by line, as before.
    assert cl.reaching_mutant("drivers/vfio/group.c", [5], "f") == set()


@pytest.mark.parametrize(("data", "says"), [
    ([1, 2], "not a 'vfio-conformance kernel lines by case' file"),
    ({**_by_case({}), "version": 2}, "version 2"),
    (_by_case({"a": {"status": "pass"}}), "cases: a: no lines object"),
    (_by_case({"a": {"status": "pass", "lines": {"ioas.c": ["10-12"]}}}), "lines: ioas.c: not a list"),
    ({**_by_case({}), "executable": [1]}, "executable: not an object"),
    ({**_by_case({}), "executable": {"ioas.c": [True]}}, "executable: ioas.c: not a list of line numbers"),
    ({**_by_case({}), "functions": {"ioas.c": {"f": [1]}}}, "functions: ioas.c: not an object of [start, end]"),
])
def test_case_lines_refuses_what_is_not_that_format(data: Any, says: str) -> None:
    with pytest.raises(CaseLinesError) as e:
        CaseLines.parse(data, "f.json")
    assert str(e.value).startswith("f.json: ") and says in str(e.value)


def _result(verdict: str, n: int = 0, op: str = "negate", file: str = "a.c") -> Result:
    return Result(f"{n:012x}", f"{file}:{n}:{op}:0", file, n, op, "f", verdict, diff="--- a\n+++ b\n")


def test_the_score_leaves_out_what_did_not_compile_and_the_equivalents() -> None:
    rs = [_result(KILLED, 1), _result(KILLED, 2), _result(TIMED_OUT, 3), _result(SURVIVED, 4),
          _result(NOT_COMPILED, 5), _result(EQUIVALENT, 6), _result(SURVIVED, 7, "errno", "b.c")]
    t = tally(rs)["all"]
    assert (t.total, t.scored, t.detected) == (7, 5, 3)
    assert t.score == pytest.approx(0.6) and t.score_text() == "60.0% (3/5)"
    per_op = tally(rs, "operator")
    assert per_op["errno"].score == 0.0 and per_op["negate"].score == pytest.approx(3 / 4)
    assert tally(rs, "file")["b.c"].counts[SURVIVED] == 1
    assert Tally().score is None and Tally().score_text() == "n/a"
    only_uncompiled = Tally()
    only_uncompiled.add(NOT_COMPILED)
    assert only_uncompiled.score is None


class _NoWorkspace(Workspace):
    """A workspace in a folder that does not exist: building anything in it raises."""


NO_TREE = (FileNotFoundError, subprocess.CalledProcessError)    # building with no source tree


def _runner(tmp_path: Path, entries: list[eq.Equivalent] = (), cache: ResultsCache | None = None) -> Runner:
    ws = _NoWorkspace(tmp_path / "nosrc", tmp_path / "nobuild", "k", tmp_path / "ws")
    return Runner(ws, [], Scope([], {}), None, cache or ResultsCache(tmp_path / "r.jsonl"),  # type: ignore[arg-type]
                  eq.for_series(entries, "6.12"), progress=lambda line: None)


def test_the_results_cache_survives_a_crash_and_a_run_resumes_from_it(tmp_path: Path) -> None:
    ms = _mutants("drivers/iommu/iommufd/ioas.c", IOAS_C)[:3]
    path = tmp_path / "r.jsonl"
    cache = ResultsCache(path)
    for m, verdict in zip(ms, (KILLED, SURVIVED, NOT_COMPILED), strict=True):
        cache.put(Result(m.id, m.name, m.file, m.line, m.operator, m.function, verdict, by="x"))
    with open(path, "a") as f:
        f.write('{"id": "cut short by a cra')               # the line a kill -9 left
    again = ResultsCache(path)
    assert [again.get(m.id).verdict for m in ms] == [KILLED, SURVIVED, NOT_COMPILED]  # type: ignore[union-attr]
    # Every mutant cached: the run builds nothing (the workspace's folders do not exist).
    results = _runner(tmp_path, cache=again).run(ms)
    assert [r.verdict for r in results] == [KILLED, SURVIVED, NOT_COMPILED]
    # One not cached: the run does try to build it, and fails on the missing source.
    fresh = _mutants("drivers/iommu/iommufd/ioas.c", IOAS_C)[3]
    with pytest.raises(NO_TREE):
        _runner(tmp_path, cache=again).run([*ms, fresh])


def test_a_spent_budget_starts_no_mutant_and_keeps_the_cached_verdicts(tmp_path: Path) -> None:
    ms = _mutants("drivers/iommu/iommufd/ioas.c", IOAS_C)[:4]
    cache = ResultsCache(tmp_path / "r.jsonl")
    for m in (ms[1], ms[3]):
        cache.put(Result(m.id, m.name, m.file, m.line, m.operator, m.function, KILLED, by="x"))
    lines: list[str] = []
    runner = _runner(tmp_path, cache=cache)
    runner.progress = lines.append
    # The deadline has passed: building ms[0] would raise on the missing source, so nothing is built.
    results = runner.run(ms, deadline=time.monotonic() - 1)
    assert [r.id for r in results] == [ms[1].id, ms[3].id]
    assert lines[-1].startswith("mutate: budget spent: 2 of 4 mutants not run")
    # A deadline still ahead is no limit: the first uncached mutant is started.
    with pytest.raises(NO_TREE):
        _runner(tmp_path, cache=cache).run(ms, deadline=time.monotonic() + 3600)


GOOD = {"equivalent": [{"id": "0123456789ab", "mutant": "drivers/vfio/vfio_main.c:10:negate:0", "series": "6.12",
                        "reason": "the flag is set again two lines below"}]}


def test_the_equivalent_list_is_validated() -> None:
    assert eq.parse(GOOD)[0].reason == "the flag is set again two lines below"
    assert eq.parse(None) == [] and eq.parse({"equivalent": []}) == []
    bad = {"equivalent": [
        {"id": "xyz", "mutant": "a.c:1:negate:0", "series": "6.12", "reason": "no program can see it"},
        {"id": "0123456789ab", "mutant": "a.c:1", "series": "6.12", "reason": "no program can see it"},
        {"id": "0123456789ab", "mutant": "a.c:1:negate:0", "series": "", "reason": "equivalent"},
        {"id": "0123456789ac", "mutant": "a.c:1:negate:0", "series": "6.12", "reason": "x", "by": "me"},
        "just a string",
    ]}
    with pytest.raises(eq.EquivalentListError) as e:
        eq.parse(bad)
    text = str(e.value)
    for problem in ("'xyz' is not a mutant id", "'a.c:1' is not file:line:operator:index", "no series",
                    "a reason of 4 words", "listed twice", "unknown keys ['by']", "entry 5"):
        assert problem in text
    with pytest.raises(eq.EquivalentListError):
        eq.parse({"equivalents": []})


def test_the_committed_equivalent_list_loads() -> None:
    entries = eq.load()
    assert all(len(e.reason.split()) >= eq.MIN_REASON_WORDS for e in entries)


def test_a_stale_equivalent_entry_is_found() -> None:
    ms = _mutants("drivers/iommu/iommufd/ioas.c", IOAS_C)
    m = ms[0]
    ok = eq.Equivalent(m.id, m.name, "6.12", "reason of four words")
    moved = eq.Equivalent(m.id, "drivers/iommu/iommufd/ioas.c:99:negate:0", "6.12", "reason of four words")
    gone = eq.Equivalent("ffffffffffff", m.name, "6.12", "reason of four words")
    other = eq.Equivalent("ffffffffffff", m.name, "7.2", "reason of four words")
    assert eq.check_against([ok, other], ms, "6.12") == []
    problems = eq.check_against([moved, gone], ms, "6.12")
    assert len(problems) == 2 and "stale" in problems[1] and "the source has it as" in problems[0]


def test_only_a_listed_survivor_is_equivalent(tmp_path: Path) -> None:
    listed = eq.Equivalent(f"{4:012x}", "a.c:4:negate:0", "6.12", "no program can see this")
    on_72 = eq.Equivalent(f"{5:012x}", "a.c:5:negate:0", "7.2", "no program can see this")
    also_killed = eq.Equivalent(f"{6:012x}", "a.c:6:negate:0", "6.12", "no program can see this")
    r = _runner(tmp_path, [listed, on_72, also_killed])
    assert r._equivalent(_result(SURVIVED, 4)).verdict == EQUIVALENT
    assert r._equivalent(_result(SURVIVED, 4)).by == "no program can see this"
    assert r._equivalent(_result(SURVIVED, 5)).verdict == SURVIVED       # reviewed on another series
    assert r._equivalent(_result(SURVIVED, 7)).verdict == SURVIVED       # not listed
    assert r._equivalent(_result(KILLED, 6)).verdict == KILLED           # a kill stays a kill


def test_the_reports(tmp_path: Path) -> None:
    m = _mutants("drivers/iommu/iommufd/ioas.c", IOAS_C)[0]
    survivor = Result(m.id, m.name, m.file, m.line, m.operator, m.function, SURVIVED, diff=m.diff(IOAS_C),
                      cases_run=12)
    rs = [survivor, _result(KILLED, 2), _result(NOT_COMPILED, 3), _result(TIMED_OUT, 4, "errno")]
    paths = write(rs, tmp_path, {"series": "6.12"})
    assert [p.name for p in paths] == ["mutate.md", "mutate.json", "mutate.xml", "mutate.ktap"]
    md = (tmp_path / "mutate.md").read_text()
    assert "score: 66.7% (2/3)" in md and f"{m.file}:{m.line}" in md and "+\tif (0 && (cmd->__reserved))" in md
    data = json.loads((tmp_path / "mutate.json").read_text())
    assert data["counts"][SURVIVED] == 1 and data["score"] == pytest.approx(2 / 3)
    assert data["per_operator"]["errno"][TIMED_OUT] == 1
    suites = ET.fromstring((tmp_path / "mutate.xml").read_text())
    failures = suites.findall(".//failure")
    assert len(failures) == 1 and m.id in failures[0].get("message", "") + (failures[0].text or "") + \
        "".join(tc.get("name", "") for tc in suites.iter("testcase") if tc.find("failure") is not None)
    assert len(suites.findall(".//skipped")) == 1
    ktap = (tmp_path / "mutate.ktap").read_text()
    assert ktap.startswith("KTAP version 1") and "pass:2 fail:1" in ktap and "skip:1" in ktap


def test_survivors_no_case_reached_are_counted_apart(tmp_path: Path) -> None:
    reached = Result("0" * 11 + "1", "a.c:1:negate:0", "a.c", 1, "negate", "f", SURVIVED, diff="--- a\n", cases_run=3)
    unreached = Result("0" * 11 + "2", "a.c:2:errno:0", "a.c", 2, "errno", "g", SURVIVED, diff="--- a\n")
    rs = [reached, unreached, _result(KILLED, 3), _result(TIMED_OUT, 4)]
    t = tally(rs)["all"]
    assert (t.unreached, t.score_text(), t.reached_score_text()) == (1, "50.0% (2/4)", "66.7% (2/3)")
    assert tally([_result(KILLED, 1)])["all"].unreached == 0
    write(rs, tmp_path, {})
    md = (tmp_path / "mutate.md").read_text()
    assert "## Survivors a case reached (1)" in md and "### a.c:1 negate in f()" in md
    assert "## Survivors no case reached (1), by function" in md and "- a.c g() (1): 2 errno `000000000002`" in md
    assert "### a.c:2" not in md
    data = json.loads((tmp_path / "mutate.json").read_text())
    assert data["unreached_survivors"] == 1 and data["reached_score"] == pytest.approx(2 / 3)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", "mutate", *args], cwd=ROOT, capture_output=True,
                          text=True)


def test_usage_errors_exit_4() -> None:
    for bad in (["--operators", "swap"], ["--sample", "0"], ["--min-score", "101"], ["--budget", "0"]):
        r = _cli(*bad)
        assert r.returncode == 4, (bad, r.stderr)


def test_a_malformed_equivalent_list_fails_before_anything_is_built(tmp_path: Path) -> None:
    bad = tmp_path / "eq.yaml"
    bad.write_text(yaml.safe_dump({"equivalent": [{"id": "nope"}]}))
    r = _cli("--equivalent", str(bad), "--list")
    assert r.returncode == 1 and "is not a mutant id" in r.stderr


def test_the_workspace_never_writes_the_shared_tree(tmp_path: Path) -> None:
    src, build = tmp_path / "src", tmp_path / "build"
    (src / "drivers/iommu/iommufd").mkdir(parents=True)
    original = src / "drivers/iommu/iommufd/ioas.c"
    original.write_text(IOAS_C)
    (build / "drivers/iommu/iommufd").mkdir(parents=True)
    (build / "drivers/iommu/iommufd/.ioas.o.cmd").write_text(f"savedcmd := gcc -I{src}/include -o {build}/x.o\n")
    (build / "Makefile").write_text(f"include {src}/Makefile\n")
    (build / "source").symlink_to(src)
    ws = Workspace(src, build, "k", tmp_path / "ws")
    m = next(m for m in _mutants("drivers/iommu/iommufd/ioas.c", IOAS_C) if m.operator == "remove_check")
    with ws.session():
        copy = ws.src / m.file
        assert copy.stat().st_ino == original.stat().st_ino          # a hard-link copy
        cmd = (ws.build / "drivers/iommu/iommufd/.ioas.o.cmd").read_text()
        assert cmd == f"savedcmd := gcc -I{ws.src}/include -o {ws.build}/x.o\n"
        assert (ws.build / "Makefile").read_text() == f"include {ws.src}/Makefile\n"
        assert (ws.build / "source").resolve() == ws.src.resolve()
        ws.apply(m)
        assert copy.read_text() == m.apply(IOAS_C) and copy.stat().st_ino != original.stat().st_ino
        assert original.read_text() == IOAS_C
        (ws.build / "drivers/iommu/iommufd/ioas.o").write_text("mutant object")
    # Put back at the end of the session: the original's inode again, the mutant's object gone.
    assert copy.stat().st_ino == original.stat().st_ino
    assert not (ws.build / "drivers/iommu/iommufd/ioas.o").exists()
    assert (build / "drivers/iommu/iommufd/.ioas.o.cmd").read_text().startswith(f"savedcmd := gcc -I{src}/")
    # A run killed while a mutant was in place: the next session puts the file back first.
    with ws.session():
        ws.apply(m)
    ws2 = Workspace(src, build, "k", tmp_path / "ws")
    (ws2.root / "mutated").write_text(m.file + "\n")
    tmp = copy.with_name("x")
    tmp.write_text("left by a killed run")
    tmp.replace(copy)
    with ws2.session():
        assert copy.read_text() == IOAS_C


def test_the_cases_reaching_a_mutant_come_first() -> None:
    from harness.cases.loader import Loader
    from harness.mutate.run import order_cases

    cases, _ = Loader(ROOT / "cases").load_all("**/*.yaml")
    m = next(m for m in _mutants("drivers/iommu/iommufd/ioas.c", IOAS_C)
             if m.operator == "remove_check" and m.original == "cmd->__reserved")
    scope = Scope([], {"iommufd_ioas_iova_ranges": {"IOMMU_IOAS_IOVA_RANGES": 0, "IOMMU_DESTROY": 2}})
    everything = order_cases(m, cases, scope, None, only_reaching=False, source=IOAS_C)
    reaching = order_cases(m, cases, scope, None, only_reaching=True, source=IOAS_C)
    assert len(everything) == len(cases) and everything[:len(reaching)] == reaching
    direct = [c for c in reaching if "IOMMU_IOAS_IOVA_RANGES" in {s.spec.get("ioctl") for s in c.steps}]
    assert direct and reaching[:len(direct)] == direct
    # Among the direct ones, those expecting the errno of the check's body (EOPNOTSUPP) first.
    expecting = [c for c in direct if "EOPNOTSUPP" in {s.expect.errno for s in c.steps if s.expect}]
    assert direct[:len(expecting)] == expecting
    # With case lines, exactly the cases covering the mutated line, and, of the cases the lines do
    # not name (newer than the measurement), those static reach picks.
    measured = {c.test_id: {"status": "pass", "lines": {m.file: [1]}} for c in cases}
    measured[direct[-1].test_id] = {"status": "pass", "lines": {m.file: [m.line]}}
    measured[direct[0].test_id] = {"status": "fail", "lines": {m.file: [m.line]}}
    lines = CaseLines.parse(_by_case(measured))
    assert order_cases(m, cases, scope, lines, only_reaching=True, source=IOAS_C) == [direct[-1]]
    del measured[direct[1].test_id]
    lines = CaseLines.parse(_by_case(measured))
    picked = order_cases(m, cases, scope, lines, only_reaching=True, source=IOAS_C)
    assert sorted(c.test_id for c in picked) == sorted([direct[1].test_id, direct[-1].test_id])
    # The mutated line without code of its own: the cases entering its function (every case here,
    # all measured at line 1, inside it) but not the one that failed unmutated.
    lines.executable[m.file] = {1}
    lines.functions[m.file] = {m.function: (1, m.line + 1)}
    picked = order_cases(m, cases, scope, lines, only_reaching=True, source=IOAS_C)
    assert len(picked) == len(cases) - 1 and direct[0] not in picked


def test_list_picks_the_same_sample_every_time() -> None:
    from harness.coverage.kernel_errnos import sources
    from harness.kernel.source import find_source
    from tests.kernel_source import unavailable

    if find_source(sources("6.12"), series="6.12") is None:
        unavailable("needs the Linux 6.12 source tree")
    first, again = _cli("--list", "--sample", "7", "--seed", "1"), _cli("--list", "--sample", "7", "--seed", "1")
    assert first.returncode == 0, first.stderr
    assert first.stdout == again.stdout and len(first.stdout.splitlines()) == 7
    other = _cli("--list", "--sample", "7", "--seed", "2")
    assert other.stdout != first.stdout
    one = first.stdout.splitlines()[3].split()[0]
    picked = _cli("--list", "--mutant", one)
    assert [line.split()[0] for line in picked.stdout.splitlines()] == [one]
    assert _cli("--list", "--functions", "no_such_function").returncode == 5


# A tree the size of one file, built with the real gcc and make the way the workspace builds the
# kernel (``make -C src O=build TARGET``): an object on its own, and a "bzImage" that cannot link.
TINY_C = """#include <errno.h>

static int unused_check(int x)
{
\tif (x < 0)
\t\treturn -EINVAL;
\treturn 0;
}

int used_check(int x)
{
\tif (x > 7)
\t\treturn -EINVAL;
\treturn 0;
}
"""
TINY_MAKEFILE = """MAKEFLAGS += --no-builtin-rules
Makefile: ;
%.o: FORCE
\tmkdir -p $(O)/$(dir $@) && gcc -O2 -c $(CURDIR)/$*.c -o $(O)/$@
bzImage:
\t@echo cannot link here; false
FORCE:
.PHONY: FORCE bzImage
"""


def _tiny_tree(tmp_path: Path) -> tuple[Workspace, list[Mutant]]:
    src, build = tmp_path / "src", tmp_path / "build"
    (src / "drivers/vfio").mkdir(parents=True)
    (src / "drivers/vfio/tiny.c").write_text(TINY_C)
    (src / "Makefile").write_text(TINY_MAKEFILE)
    build.mkdir()
    subprocess.run(["make", "-s", "-C", str(src), f"O={build}", "drivers/vfio/tiny.o"], check=True)
    return Workspace(src, build, "k", tmp_path / "ws"), _mutants("drivers/vfio/tiny.c", TINY_C, ("negate",))


def test_a_mutant_compiled_to_the_original_code_is_not_booted_and_not_scored(tmp_path: Path) -> None:
    ws, (unused, used) = _tiny_tree(tmp_path)
    assert (unused.function, used.function) == ("unused_check", "used_check")
    runner = _runner(tmp_path)
    with ws.session():
        runner.workspace = ws
        # gcc drops the static function no one calls: its mutant is the original's object code.
        same = runner.one(unused)
        assert same.verdict == IDENTICAL and same.object_sha == ws.object_sha(unused.file, original=True)
        # The other one's code differs: it goes on to the link (which this tree cannot do).
        other = runner.one(used)
        assert other.verdict == NOT_COMPILED and other.by == "make bzImage failed", other
        assert other.object_sha not in ("", same.object_sha)
    t = tally([same, _result(KILLED, 1)])["all"]
    assert (t.total, t.scored, t.score_text()) == (2, 1, "100.0% (1/1)")


def test_a_mutant_with_the_object_code_of_one_already_run_takes_its_verdict(tmp_path: Path) -> None:
    ws, (_, used) = _tiny_tree(tmp_path)
    runner = _runner(tmp_path)
    with ws.session():
        runner.workspace = ws
        sha = runner.one(used).object_sha
        runner.cache.put(Result("0123456789ab", "drivers/vfio/tiny.c:99:negate:0", used.file, 99, "negate",
                                "used_check", KILLED, by="some-case", object_sha=sha))
        twin = runner.one(used)
    assert twin.verdict == KILLED and twin.by.startswith("drivers/vfio/tiny.c:99:negate:0 (0123456789ab), the same")


def test_a_raw_ioctl_step_reaches_its_handler_too() -> None:
    """--only-reaching picks cases by the ioctls they call: an ioctl through a raw pointer counts."""
    from harness.cases.loader import Loader

    cases, errors = Loader(ROOT / "cases").load_all("device/info-readonly-arg-efault.yaml")
    assert not errors and cases
    assert {"VFIO_DEVICE_GET_INFO", "VFIO_DEVICE_GET_REGION_INFO", "VFIO_DEVICE_GET_IRQ_INFO"} <= \
        set().union(*(case_ioctls(c) for c in cases))
    assert all("VFIO_GROUP_GET_DEVICE_FD" in case_ioctls(c) for c in cases)    # the fixture's, typed


# --------------------------------------------------------------------------------------------------
# Mutant schemata (harness/mutate/schemata.py)

# Functions with every operator's shapes: a pointer condition (its arms must all be ints), a
# relational boundary, errnos returned and assigned, output writes, an error check in a loop.
SCHEMA_C = """#include <errno.h>
#include <stddef.h>

struct out { int flags; int out_count; };

int check(struct out *cmd, const char *p, int n)
{
\tint rc = 0;

\tif (p)
\t\treturn -ENOENT;
\tif (n > 4 && n <= 9)
\t\treturn -EINVAL;
\tcmd->flags = n;
\twhile (n < 3)
\t\tn++;
\tif (n >= 12)
\t\trc = -EOVERFLOW;
\tcmd->out_count = n * 2;
\treturn rc;
}
"""
FAKE_MODULEPARAM = """#define module_param_named(name, var, type, perm)
#define __read_mostly
#define READ_ONCE(x) (x)
#define unlikely(x) (x)
"""
DRIVER = """
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv)
{
\tint n;
\t(void)argc;
\tSELECT;
\tfor (n = 0; n < 14; n++) {
\t\tstruct out o = {0, 0};
\t\tint r1 = check(&o, NULL, n), r2 = check(&o, "x", n);
\t\tprintf("%d %d %d %d;", r1, r2, o.flags, o.out_count);
\t}
\treturn 0;
}
"""


def _behaviour(tmp_path: Path, name: str, text: str, select: str) -> str:
    """What ``text`` (with DRIVER appended, ``select`` run first) prints, compiled with gcc."""
    (tmp_path / "linux").mkdir(exist_ok=True)
    (tmp_path / "linux" / "moduleparam.h").write_text(FAKE_MODULEPARAM)
    c, exe = tmp_path / f"{name}.c", tmp_path / name
    c.write_text(text + DRIVER.replace("SELECT", select))
    subprocess.run(["gcc", "-Wall", "-Werror", "-Wno-unused-variable", "-I", str(tmp_path), "-o", str(exe), str(c)],
                   check=True, capture_output=True, text=True)
    return subprocess.run([str(exe), "0"], check=True, capture_output=True, text=True).stdout


def test_a_schemata_program_behaves_as_each_mutant_built_alone(tmp_path: Path) -> None:
    from harness.mutate.schemata import plan, schema_text

    file = "drivers/vfio/schema.c"
    ms = _mutants(file, SCHEMA_C)
    assert {m.operator for m in ms} == set(OPERATORS)
    layers = plan(list(enumerate(ms, 1)), {file: SCHEMA_C})
    assert len(layers) == 1 and sorted(layers[0].numbers()) == list(range(1, len(ms) + 1))
    schema = schema_text(file, SCHEMA_C, layers[0])
    assert schema.index("module_param_named(vcm_schema_") > schema.index("#include <stddef.h>")
    original = _behaviour(tmp_path, "original", SCHEMA_C, "(void)argv")
    assert _behaviour(tmp_path, "none", schema, "__vcm_selected = atoi(argv[1])") == original
    differing = 0
    for n, m in enumerate(ms, 1):
        alone = _behaviour(tmp_path, f"m{n}", m.apply(SCHEMA_C), "(void)argv")
        assert _behaviour(tmp_path, f"s{n}", schema, f"__vcm_selected = {n}") == alone, m.name
        differing += alone != original
    assert differing >= len(ms) - 2           # the mutants do change what the program does


def test_overlapping_spans_go_to_different_layers_and_the_same_span_shares_a_switch() -> None:
    from harness.mutate.schemata import plan

    file = "drivers/vfio/schema.c"
    ms = _mutants(file, SCHEMA_C)
    boundary = [m for m in ms if m.operator == "boundary" and m.line == 12]
    negate = next(m for m in ms if m.operator == "negate" and m.line == 12)
    inner = Mutant(file, 12, "errno", 9, "check", negate.start + 1, negate.start + 2, SCHEMA_C[negate.start + 1], "m")
    layers = plan([(1, negate), (2, boundary[0]), (3, boundary[1]), (4, inner)], {file: SCHEMA_C})
    assert [sorted(layer.numbers()) for layer in layers] == [[1, 2, 3], [4]]
    (switch,) = layers[0].switches                 # the boundaries widened to negate's condition
    assert (switch.start, switch.end) == (negate.start, negate.end) and len(switch.arms) == 3


SCHEMA_MAKEFILE = """MAKEFLAGS += --no-builtin-rules
Makefile: ;
%.o: FORCE
\tmkdir -p $(O)/$(dir $@) && gcc -Wall -Werror -I$(CURDIR)/include -c $(CURDIR)/$*.c -o $(O)/$@
bzImage: FORCE
\tmkdir -p $(O)/arch/x86/boot && cat $(O)/drivers/vfio/*.o > $(O)/arch/x86/boot/bzImage
FORCE:
.PHONY: FORCE bzImage
"""


def test_a_mutant_whose_switch_does_not_compile_is_taken_out_of_its_layer(tmp_path: Path) -> None:
    from harness.mutate.schemata import plan

    src, build = tmp_path / "src", tmp_path / "build"
    (src / "drivers/vfio").mkdir(parents=True)
    (src / "include/linux").mkdir(parents=True)
    (src / "include/linux/moduleparam.h").write_text(FAKE_MODULEPARAM)
    (src / "drivers/vfio/schema.c").write_text(SCHEMA_C)
    (src / "Makefile").write_text(SCHEMA_MAKEFILE)
    build.mkdir()
    file = "drivers/vfio/schema.c"
    ms = _mutants(file, SCHEMA_C)
    errno_at = next(m for m in ms if m.operator == "errno")
    broken = Mutant(file, errno_at.line, "errno", 5, "check", errno_at.start, errno_at.end, errno_at.original,
                    "NO_SUCH_ERRNO")
    numbered = [*enumerate(ms, 1), (len(ms) + 1, broken)]
    ws = Workspace(src, build, "k", tmp_path / "ws")
    with ws.session():
        built = ws.build_layer(plan(numbered, {file: SCHEMA_C})[0], {file: SCHEMA_C})
    assert built.image is not None and built.image.read_bytes(), built.log_tail
    # The broken one and the one sharing its switch (the same span) go; the rest is built.
    shared = ms.index(errno_at) + 1
    assert built.dropped == {shared, len(ms) + 1}
    assert sorted(built.layer.numbers()) == [n for n in range(1, len(ms) + 1) if n != shared]
    assert (src / file).read_text() == SCHEMA_C             # put back


def test_a_verdict_counts_for_its_corpus_and_hints_the_next(tmp_path: Path) -> None:
    ms = _mutants("drivers/iommu/iommufd/ioas.c", IOAS_C)[:3]
    path = tmp_path / "r.jsonl"
    old = ResultsCache(path, "corpus-a")
    for m, verdict in zip(ms, (KILLED, SURVIVED, NOT_COMPILED), strict=True):
        old.put(Result(m.id, m.name, m.file, m.line, m.operator, m.function, verdict, by="case-x"))
    same, new = ResultsCache(path, "corpus-a"), ResultsCache(path, "corpus-b")
    assert [same.get(m.id).verdict for m in ms] == [KILLED, SURVIVED, NOT_COMPILED]  # type: ignore[union-attr]
    # Another corpus: the booted verdicts are run again, the killer kept as a hint; a build failure stands.
    assert [new.get(m.id) for m in ms[:2]] == [None, None]
    assert new.previous(ms[0].id).by == "case-x"            # type: ignore[union-attr]
    assert new.get(ms[2].id).verdict == NOT_COMPILED        # type: ignore[union-attr]
