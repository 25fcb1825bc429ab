"""Kernel line coverage from gcov data: a real gcc --coverage build and real gcov, laid out
as a gcov kernel lays them out (notes in the build tree, counters under debugfs)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.kernel import gcov

SOURCE = """\
int f(int x)
{
	if (x > 2)
		return 1;
	return 0;
}

int main(int argc, char **argv)
{
	(void)argv;
	return f(argc);
}
"""


def _build(tmp: Path, runs: list[list[str]]) -> tuple[Path, Path, dict[str, bytes]]:
    src, build = tmp / "src", tmp / "build"
    (src / "drivers/vfio").mkdir(parents=True)
    (build / "drivers/vfio").mkdir(parents=True)
    c = src / "drivers/vfio/group.c"
    c.write_text(SOURCE)
    obj = build / "drivers/vfio/group.o"
    subprocess.run(["gcc", "--coverage", "-c", str(c), "-o", str(obj)], check=True, cwd=build)
    exe = build / "prog"
    subprocess.run(["gcc", "--coverage", str(obj), "-o", str(exe)], check=True, cwd=build)
    for extra in runs:
        subprocess.run([str(exe), *extra], check=False, cwd=build)
    data = (build / "drivers/vfio/group.gcda").read_bytes()
    (build / "drivers/vfio/group.gcda").unlink()   # only the notes stay in the build tree
    return src, build, {f"{gcov.GCOV_ROOT}{build}/drivers/vfio/group.gcda": data}


needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("gcov") is None, reason="no gcc/gcov")


@needs_gcc
def test_lines_hit_and_executable_per_source_file(tmp_path: Path) -> None:
    src, build, gcda = _build(tmp_path, [[]])
    cov = gcov.line_coverage(build, src, gcda)
    assert list(cov) == ["drivers/vfio/group.c"]
    f = cov["drivers/vfio/group.c"]
    assert {3, 4, 5} <= f.lines                   # the if and both returns are executable
    assert 5 in f.hit and 4 not in f.hit          # argc == 1: "return 0" ran, "return 1" did not
    assert 2 not in f.lines                       # a brace is not
    assert 0 < f.percent < 100


@needs_gcc
def test_merge_is_the_union_of_lines_hit(tmp_path: Path) -> None:
    src_a, build_a, gcda_a = _build(tmp_path / "a", [[]])
    src_b, build_b, gcda_b = _build(tmp_path / "b", [["x", "y", "z"]])   # argc 4: the other branch
    a = gcov.line_coverage(build_a, src_a, gcda_a)
    b = gcov.line_coverage(build_b, src_b, gcda_b)
    only_a = a["drivers/vfio/group.c"].hit - b["drivers/vfio/group.c"].hit
    only_b = b["drivers/vfio/group.c"].hit - a["drivers/vfio/group.c"].hit
    assert only_a and only_b
    total = gcov.merge_into(gcov.merge_into({}, a), b)
    f = total["drivers/vfio/group.c"]
    assert f.hit == a["drivers/vfio/group.c"].hit | b["drivers/vfio/group.c"].hit
    assert f.percent == 100.0
    assert gcov.by_directory(total) == {"drivers/vfio": (len(f.hit), len(f.lines))}
    assert "| drivers/vfio | 100.0% of" in gcov.markdown(total, "t")
    assert json.loads(gcov.to_json(total))["drivers/vfio/group.c"]["percent"] == 100.0


@needs_gcc
def test_counters_of_another_build_are_ignored(tmp_path: Path) -> None:
    src, build, gcda = _build(tmp_path, [[]])
    other = {k.replace(str(build), str(tmp_path / "elsewhere")): v for k, v in gcda.items()}
    assert gcov.line_coverage(build, src, other) == {}


def test_a_kernel_without_coverage_is_refused(tmp_path: Path) -> None:
    image = tmp_path / "bzImage"
    image.write_bytes(b"")
    with pytest.raises(gcov.CoverageError, match=r"build\.json"):
        gcov.coverage_build(image)
    (tmp_path / "build.json").write_text(json.dumps({"coverage": False, "build_dir": str(tmp_path)}))
    with pytest.raises(gcov.CoverageError, match="without --coverage"):
        gcov.coverage_build(image)
    (tmp_path / "build.json").write_text(json.dumps({"coverage": True, "build_dir": str(tmp_path / "gone"),
                                                     "source": "/src"}))
    with pytest.raises(gcov.CoverageError, match="is gone"):
        gcov.coverage_build(image)
