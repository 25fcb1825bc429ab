"""The lcov tracefile of kernel line coverage: written from real gcov output (a gcc --coverage
build laid out as a gcov kernel lays it out, tests/test_gcov.py), read back, accepted by lcov's
own tools, and turned into genhtml's pages; and the reports made of it (harness/coverage/kernel_lines.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.coverage import kernel_lines as report
from harness.kernel import gcov, lcov
from harness.runner.kernel_lines import CaseLines, KernelLines, load_partials
from tests.test_gcov import _build, needs_gcc


@pytest.fixture
def real(tmp_path: Path) -> tuple[Path, gcov.Coverage]:
    src, build, gcda = _build(tmp_path, [[]])          # argc 1: f() returns 0, "return 1" never runs
    return src, gcov.line_coverage(build, src, gcda)


@pytest.fixture
def info(real: tuple[Path, gcov.Coverage], tmp_path: Path) -> Path:
    """The lcov tracefile of ``real``."""
    src, cov = real
    path = tmp_path / "t.info"
    path.write_text(lcov.write_info(cov, src, "t"))
    return path


@needs_gcc
def test_gcov_gives_each_function_its_span_and_calls(real: tuple[Path, gcov.Coverage]) -> None:
    _src, cov = real
    f = cov["drivers/vfio/group.c"]
    assert {n: (fn.start, fn.end, fn.calls) for n, fn in f.functions.items()} == {"f": (1, 6, 1), "main": (8, 12, 1)}
    assert f.function_at(4) is f.functions["f"] and f.function_at(7) is None
    lines, hit = f.lines_of(f.functions["f"])
    assert 4 in lines - hit and {3, 5} <= hit


@needs_gcc
def test_the_tracefile_reads_back_to_the_same_counts(real: tuple[Path, gcov.Coverage]) -> None:
    src, cov = real
    text = lcov.write_info(cov, src, "t")
    assert f"SF:{src}/drivers/vfio/group.c" in text.splitlines()
    assert "DA:4,0" in text and "FNDA:1,f" in text and "LH:" in text and text.endswith("end_of_record\n")
    back = lcov.read_info(text, src)
    f, g = cov["drivers/vfio/group.c"], back["drivers/vfio/group.c"]
    assert g.counts == f.counts
    assert {n: (fn.start, fn.calls) for n, fn in g.functions.items()} == {"f": (1, 1), "main": (8, 1)}
    assert g.functions["f"].end == 7              # not in the format: up to the next function
    # Merged into a run that has the exact spans, those stay and the counts add up.
    total = gcov.merge_into(gcov.from_data(gcov.to_data(cov)), back)
    assert total["drivers/vfio/group.c"].functions["f"].end == 6
    assert total["drivers/vfio/group.c"].counts == {ln: 2 * n for ln, n in f.counts.items()}


@needs_gcc
@pytest.mark.skipif(shutil.which("lcov") is None, reason="lcov (Debian package lcov) not installed")
def test_lcov_itself_reads_the_tracefile(real: tuple[Path, gcov.Coverage], info: Path) -> None:
    _, cov = real
    f = cov["drivers/vfio/group.c"]
    proc = subprocess.run(["lcov", "--summary", str(info)], capture_output=True, text=True, check=True)
    summary = proc.stdout + proc.stderr
    assert f"({len(f.hit)} of {len(f.counts)} lines)" in summary
    assert "(2 of 2 functions)" in summary


@needs_gcc
@pytest.mark.skipif(shutil.which("genhtml") is None, reason="genhtml (Debian package lcov) not installed")
def test_genhtml_writes_a_page_per_source_file(real: tuple[Path, gcov.Coverage], info: Path,
                                               tmp_path: Path) -> None:
    src, _ = real
    assert lcov.genhtml(info, tmp_path / "html", src, "t") == ""
    assert (tmp_path / "html" / "index.html").is_file()
    page = (tmp_path / "html" / "drivers/vfio/group.c.gcov.html").read_text()
    assert 'class="lineNoCov"' in page and "return 1;" in page     # the line that never ran, marked


def test_without_genhtml_the_reason_is_said(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert "apt-get install lcov" in lcov.genhtml(tmp_path / "x.info", tmp_path / "html", tmp_path, "t")


def test_a_malformed_tracefile_line_is_named() -> None:
    with pytest.raises(lcov.InfoError, match=r"f\.info:3: 'DA:x,1'"):
        lcov.read_info("TN:t\nSF:/s/a.c\nDA:x,1\nend_of_record\n", Path("/s"), "f.info")


def _file(path: str, fn: str, start: int, end: int, counts: dict[int, int]) -> gcov.FileCoverage:
    return gcov.FileCoverage(path, counts, {fn: gcov.FunctionSpan(fn, start, end, 1)})


def test_a_handler_is_the_function_spanning_the_cited_line_and_its_missed_lines_are_listed() -> None:
    # VFIO_GROUP_GET_STATUS is cited at drivers/vfio/group.c:352 in 6.12.
    cov = {"drivers/vfio/group.c": _file("drivers/vfio/group.c", "vfio_group_ioctl_get_status", 350, 380,
                                         {352: 1, 356: 1, 357: 0, 358: 0, 360: 2, 390: 0})}
    (h,) = report.handlers(cov, "6.12.118")
    assert (h.ioctl, h.function.name, h.function.lines, h.function.hit) == ("VFIO_GROUP_GET_STATUS",
                                                                             "vfio_group_ioctl_get_status", 5, 3)
    assert report.spans(h.function.missed) == "357-358"
    md = report.markdown(cov, "6.12.118", "t", [])
    assert ("| VFIO_GROUP_GET_STATUS | drivers/vfio/group.c:350 vfio_group_ioctl_get_status() | 60.0% of 5 "
            "| 357-358 |") in md


def test_the_targets_leave_out_the_files_they_do_not_count() -> None:
    cov = {p: _file(p, "x", 1, 9, {1: 1, 2: 0}) for p in
           ("drivers/iommu/iommufd/main.c", "drivers/iommu/iommufd/selftest.c", "drivers/vfio/pci/vfio_pci_igd.c")}
    cov["drivers/iommu/iommufd/selftest.c"].counts = {1: 1, 2: 1, 3: 1}
    iommufd, _vfio, pci = report.TARGETS
    assert iommufd.figures(cov) == (1, 2)
    assert pci.figures(cov) == (0, 0)
    assert report.spans([1, 2, 3, 7, 9, 10]) == "1-3, 7, 9-10"


def test_the_shares_of_a_run_merge(tmp_path: Path) -> None:
    image = tmp_path / "bzImage"
    image.write_bytes(b"")
    (tmp_path / "build.json").write_text(json.dumps({"coverage": True, "build_dir": str(tmp_path), "source": "/s"}))
    shares = []
    for name, counts, case in (("gw0", {1: 1, 2: 0}, "one"), ("gw1", {1: 0, 2: 3}, "two")):
        share = KernelLines(image, per_case=True, release="6.12.118")
        share.total = {"drivers/vfio/group.c": _file("drivers/vfio/group.c", "g", 1, 9, counts)}
        share.by_case[case] = CaseLines("viommu", "pass", {"drivers/vfio/group.c": sorted(
            share.total["drivers/vfio/group.c"].hit)})
        share.save(tmp_path / f"lines-{name}.json")
        shares.append(tmp_path / f"lines-{name}.json")
    run = load_partials(shares)
    assert run.total["drivers/vfio/group.c"].counts == {1: 1, 2: 3}
    assert run.total["drivers/vfio/group.c"].functions["g"].calls == 2
    assert run.by_case == {"one": CaseLines("viommu", "pass", {"drivers/vfio/group.c": [1]}),
                           "two": CaseLines("viommu", "pass", {"drivers/vfio/group.c": [2]})}
    assert run.per_case and run.release == "6.12.118"
    (tmp_path / "other.json").write_text("{}")
    with pytest.raises(ValueError, match="not a partial"):
        load_partials([tmp_path / "other.json"])


def test_the_least_covered_functions_leave_out_module_init_and_exit(tmp_path: Path) -> None:
    (tmp_path / "drivers/vfio").mkdir(parents=True)
    (tmp_path / "drivers/vfio/vfio_main.c").write_text(
        "static int __init vfio_init(void)\n{\n\treturn 0;\n}\n\nstatic int vfio_used(void)\n{\n\treturn 0;\n}\n")
    f = gcov.FileCoverage("drivers/vfio/vfio_main.c", {1: 0, 3: 0, 6: 0, 8: 0},
                          {"vfio_init": gcov.FunctionSpan("vfio_init", 1, 4),
                           "vfio_used": gcov.FunctionSpan("vfio_used", 6, 9)})
    cov = {f.path: f}
    vfio = report.TARGETS[1]
    assert [fn.name for fn in report.least_covered(cov, vfio)] == ["vfio_init", "vfio_used"]
    assert [fn.name for fn in report.least_covered(cov, vfio, tmp_path)] == ["vfio_used"]


def test_a_record_without_functions_reads() -> None:
    cov = lcov.read_info("SF:/s/drivers/vfio/pci/vfio_pci_config.c\nDA:1384,3\nend_of_record\n", Path("/s"))
    assert cov["drivers/vfio/pci/vfio_pci_config.c"].counts == {1384: 3}


def test_vm_coverage_refuses_a_bad_tracefile_before_it_boots_anything(tmp_path: Path) -> None:
    from harness.cli import main
    from harness.exitcodes import USAGE_ERROR

    image = tmp_path / "bzImage"
    image.write_bytes(b"")
    (tmp_path / "build.json").write_text(json.dumps({"coverage": True, "build_dir": str(tmp_path), "source": "/s"}))
    bad = tmp_path / "bad.info"
    bad.write_text("SF:/s/a.c\nDA:one,1\nend_of_record\n")
    assert main(["vm", "--kernel", str(image), "--coverage", "--merge", str(bad), "--report", str(tmp_path)]) \
        == USAGE_ERROR
    assert not (tmp_path / "results.xml").exists()
    assert main(["vm", "--kernel", str(image), "--merge", str(bad)]) == USAGE_ERROR      # without --coverage
