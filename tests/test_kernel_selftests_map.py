"""docs/kernel-selftests.yaml against the 6.12 selftest sources and the case corpus.

The map lists every TEST/TEST_F/TEST_F_TIMEOUT/TEST_FAIL_NTH of
tools/testing/selftests/iommu/{iommufd.c,iommufd_fail_nth.c}, in file order and at its
line; every case id it names must exist.  Without the sources the tests that need them
skip, unless VFIO_CONFORMANCE_REQUIRE_HEADERS=1 (CI), when they fail.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from kernel_source import unavailable

from harness.cases.loader import Loader
from harness.kernel import source

REPO = Path(__file__).resolve().parent.parent
MAP_FILE = REPO / "docs" / "kernel-selftests.yaml"
CASES_DIR = REPO / "cases"
SELFTEST_DIR = "tools/testing/selftests/iommu"
FILES = {"iommufd.c": "", "iommufd_fail_nth.c": "fail_nth:"}   # file -> test-name prefix
STATUSES = {"covered", "partial", "not-covered"}
ENTRY_KEYS = {"test", "file", "line", "status", "cases", "note"}

# A test declaration at the start of a line (the TEST_F inside TEST_FAIL_NTH's #define
# body is indented, so it is not one): TEST(name), TEST_F(fixture, name),
# TEST_F_TIMEOUT(fixture, name, timeout), TEST_FAIL_NTH(fixture, name).
TEST_RE = re.compile(
    r"^(TEST|TEST_F|TEST_F_TIMEOUT|TEST_FAIL_NTH)\(\s*(\w+)\s*(?:,\s*(\w+)\s*)?(?:,[^)]*)?\)",
    re.MULTILINE,
)


@pytest.fixture(scope="module")
def selftests() -> Path:
    root = source.find_source([f"{SELFTEST_DIR}/{f}" for f in FILES])
    if root is None:
        unavailable(f"no Linux {source.VERSION} selftest sources: set ${source.ENV} "
                     f"or install linux-source-{source.VERSION}")
    assert root is not None
    return root / SELFTEST_DIR


@pytest.fixture(scope="module")
def mapping() -> dict[str, Any]:
    data = yaml.safe_load(MAP_FILE.read_text())
    assert isinstance(data, dict), f"{MAP_FILE}: not a mapping"
    return data


@pytest.fixture(scope="module")
def entries(mapping: dict[str, Any]) -> list[dict[str, Any]]:
    tests = mapping.get("tests")
    assert isinstance(tests, list) and tests, f"{MAP_FILE}: tests must be a non-empty list"
    return tests


def parse_tests(name: str, text: str) -> list[tuple[str, str, int]]:
    """(test, file, line) of every test declared in one selftest file, in file order."""
    prefix = FILES[name]
    found = []
    for m in TEST_RE.finditer(text):
        macro, first, second = m.groups()
        test = first if macro == "TEST" else f"{first}.{second}"
        assert macro == "TEST" or second, f"{name}: {m.group(0)!r} has no test name"
        found.append((prefix + test, name, text.count("\n", 0, m.start()) + 1))
    return found


def test_parser_skips_macro_bodies() -> None:
    text = ("TEST(plain)\n"
            "#define WRAP(f, n) \\\n\tTEST_F(f, n) \\\n\t{ }\n"
            "TEST_F(fix, one)\n"
            "TEST_F_TIMEOUT(fix, slow, 300)\n")
    assert parse_tests("iommufd.c", text) == [
        ("plain", "iommufd.c", 1), ("fix.one", "iommufd.c", 5), ("fix.slow", "iommufd.c", 6)]
    assert parse_tests("iommufd_fail_nth.c", "TEST_FAIL_NTH(basic_fail_nth, basic)\n") == [
        ("fail_nth:basic_fail_nth.basic", "iommufd_fail_nth.c", 1)]


def test_source_key(mapping: dict[str, Any]) -> None:
    assert mapping.get("source") == f"{SELFTEST_DIR} (linux-source-{source.VERSION})"
    assert set(mapping) == {"source", "tests"}


def test_entries_well_formed(entries: list[dict[str, Any]]) -> None:
    for e in entries:
        assert isinstance(e, dict) and set(e) == ENTRY_KEYS, f"bad entry keys: {e}"
        where = e["test"]
        assert e["file"] in FILES, f"{where}: unknown file {e['file']!r}"
        assert isinstance(e["line"], int) and e["line"] > 0, f"{where}: bad line"
        assert e["status"] in STATUSES, f"{where}: bad status {e['status']!r}"
        assert isinstance(e["cases"], list), f"{where}: cases must be a list"
        assert all(isinstance(c, str) and "[" not in c for c in e["cases"]), \
            f"{where}: case ids are the id: field, without [variant]"
        assert len(set(e["cases"])) == len(e["cases"]), f"{where}: duplicate case ids"
        note = e["note"]
        assert isinstance(note, str) and note.strip(), f"{where}: needs a note"
        if e["status"] == "not-covered":
            assert not e["cases"], f"{where}: not-covered but lists cases"
        else:
            assert e["cases"], f"{where}: {e['status']} but lists no case"
    names = [e["test"] for e in entries]
    assert len(set(names)) == len(names), "duplicate test entries"


def test_case_ids_exist(entries: list[dict[str, Any]]) -> None:
    cases, errors = Loader(CASES_DIR).load_all("**/*.yaml")
    known = {c.id for c in cases}
    unknown = sorted({f"{e['test']}: {c}" for e in entries for c in e["cases"] if c not in known})
    assert not unknown, f"case ids not in the corpus: {unknown}" + (
        f" (cases that failed to load: {errors})" if errors else "")


def test_lists_exactly_the_selftests(selftests: Path, entries: list[dict[str, Any]]) -> None:
    declared = [t for name in FILES for t in parse_tests(name, (selftests / name).read_text())]
    assert declared, f"no tests parsed from {selftests}"
    listed = [(e["test"], e["file"], e["line"]) for e in entries]
    missing = sorted({t[0] for t in declared} - {t[0] for t in listed})
    extra = sorted({t[0] for t in listed} - {t[0] for t in declared})
    assert not missing, f"selftests not in {MAP_FILE.name}: {missing}"
    assert not extra, f"{MAP_FILE.name} lists tests the sources lack: {extra}"
    assert listed == declared, "entries must follow the files' order, each at its TEST line"
