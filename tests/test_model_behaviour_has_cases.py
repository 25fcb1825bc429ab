"""Behaviour the model's unit tests check also runs on a kernel (issue 11, item 4): every kernel
line tests/model/ pins as the source of an errno (``….where.endswith("io_pagetable.c:131")``,
``….where == "mm/memfd.c:432"``) is the ``where`` of some step of some case when the corpus runs
on the model of a release of tests/corpus_traces.py, so a VM run puts that line to the kernel.
The exceptions are listed below, each with the reason no case can make a kernel in our VMs take
that path."""

from __future__ import annotations

import ast
import shutil
from collections.abc import Iterable
from pathlib import Path

import pytest
from corpus_traces import RELEASES, ROOT, traces

MODEL_TESTS = Path(__file__).parent / "model"

# pinned citation -> why no case reaches it
NO_CASE: dict[str, str] = {
    "device.c:72":
        "iommufd_device_bind() of a device without an IOMMU group: every device a case can bind has "
        "one (a vfio-pci function behind the VT-d, a selftest mock device), and a noiommu VFIO device "
        "never calls it (drivers/vfio/iommufd.c:28-30)",
    "drivers/iommu/iommu.c:2191":
        "a mock device offered an Intel IOMMU domain: the mock guest has no VT-d, and in the viommu "
        "guest no mock device can be made (IOMMU_TEST_OP_MOCK_DOMAIN is EINVAL there, docs/measured.md)",
    "mm/memfd.c:432":
        "memfd_create() of a name over 249 bytes: the case language refuses such a name at load "
        "(harness/cases/steps.py), so only the model's Python API can ask for one",
}


def _text(node: ast.expr, consts: dict[str, str]) -> str | None:
    """The string a literal, a module constant or an f-string of those stands for."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name):
        return consts.get(node.id)
    if isinstance(node, ast.JoinedStr):
        parts = [_text(v.value if isinstance(v, ast.FormattedValue) else v, consts) for v in node.values]
        return None if None in parts else "".join(p for p in parts if p is not None)
    return None


def _is_where(node: ast.expr) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "where"


def pinned_in(source: str) -> Iterable[tuple[str, bool, int]]:
    """(citation, exact, line) for every ``X.where.endswith("...")`` / ``X.where == "..."``."""
    tree = ast.parse(source)
    consts = {t.id: v.value for n in tree.body if isinstance(n, ast.Assign)
              for t in n.targets if isinstance(t, ast.Name)
              for v in [n.value] if isinstance(v, ast.Constant) and isinstance(v.value, str)}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "endswith" and _is_where(node.func.value) and len(node.args) == 1):
            text = _text(node.args[0], consts)
            if text is not None:
                yield text, False, node.lineno
        elif isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], ast.Eq):
            left, right = node.left, node.comparators[0]
            if _is_where(right):
                left, right = right, left
            text = _text(right, consts) if _is_where(left) else None
            if text is not None:
                yield text, True, node.lineno


def pinned() -> dict[tuple[str, bool], list[str]]:
    """Each pinned citation and the test lines that pin it."""
    out: dict[tuple[str, bool], list[str]] = {}
    for path in sorted(MODEL_TESTS.glob("*.py")):
        for text, exact, line in pinned_in(path.read_text()):
            out.setdefault((text, exact), []).append(f"{path.relative_to(ROOT)}:{line}")
    return out


def reached(cases_dir: Path) -> set[str]:
    """Every ``where`` a step of a case of ``cases_dir`` gives on the model of each release."""
    return {step["where"] for release in RELEASES for t in traces(cases_dir, release).values()
            for step in t["steps"] if step.get("where")}


def unreached(pins: Iterable[tuple[str, bool]], wheres: set[str]) -> list[tuple[str, bool]]:
    return sorted(p for p in pins
                  if not any(w == p[0] if p[1] else w.endswith(p[0]) for w in wheres))


def test_the_collector_reads_both_forms_and_resolves_fstrings() -> None:
    source = ('CORE = "drivers/vfio/pci/vfio_pci_core.c"\n'
              'assert res.where.endswith("io_pagetable.c:131")\n'
              'assert m.last_error.where == "mm/memfd.c:432"\n'
              'assert "fs/open.c:193" == s.where\n'
              'assert r.ioctl(dev).where == f"{CORE}:1451"\n'
              'assert other.endswith("not-a-where")\n')
    assert list(pinned_in(source)) == [("io_pagetable.c:131", False, 2), ("mm/memfd.c:432", True, 3),
                                       ("fs/open.c:193", True, 4),
                                       ("drivers/vfio/pci/vfio_pci_core.c:1451", True, 5)]


def test_an_endswith_pin_matches_the_tail_and_an_exact_one_only_itself() -> None:
    wheres = {"drivers/iommu/iommufd/io_pagetable.c:131", "mm/gup.c:3464@7.2"}
    pins = [("io_pagetable.c:131", False), ("io_pagetable.c:13", False),
            ("gup.c:3464@7.2", True), ("mm/gup.c:3464@7.2", True)]
    assert unreached(pins, wheres) == [("gup.c:3464@7.2", True), ("io_pagetable.c:13", False)]


def test_removing_the_case_that_reaches_a_line_leaves_it_unreached(tmp_path: Path) -> None:
    pin = ("io_pagetable.c:767", False)
    case = ROOT / "cases" / "ioas" / "unmap-zero-length.yaml"
    with_case, without = tmp_path / "with", tmp_path / "without"   # traces() caches per folder
    for cases in (with_case, without):
        for shared in ("fixtures", "macros"):
            shutil.copytree(ROOT / "cases" / shared, cases / shared)
        (cases / "ioas").mkdir()
        shutil.copy(ROOT / "cases" / "ioas" / "map-zero-length.yaml", cases / "ioas")
    shutil.copy(case, with_case / "ioas")
    assert unreached([pin], reached(with_case)) == []
    assert unreached([pin], reached(without)) == [pin]


def test_the_pins_are_found() -> None:
    pins = pinned()
    assert len(pins) > 80 and ("mm/memfd.c:432", True) in pins and ("io_pagetable.c:131", False) in pins


@pytest.mark.parametrize("release", RELEASES)
def test_the_corpus_runs_on_the_model(release: str) -> None:
    assert traces(ROOT / "cases", release)


def test_every_pinned_line_is_reached_by_a_case() -> None:
    pins = pinned()
    missing = [p for p in unreached(pins, reached(ROOT / "cases")) if p[0] not in NO_CASE]
    assert not missing, "model behaviour no case runs on a kernel; write a case or list it in NO_CASE:\n" + \
        "\n".join(f"  {text}  (pinned at {', '.join(pins[(text, exact)])})" for text, exact in missing)


def test_every_exception_is_still_pinned_and_still_unreached() -> None:
    pins = pinned()
    texts = {text for text, _ in pins}
    assert sorted(set(NO_CASE) - texts) == [], "NO_CASE names a line no model test pins"
    now_reached = set(NO_CASE) - {text for text, _ in unreached(pins, reached(ROOT / "cases"))}
    assert not now_reached, f"a case reaches these now; drop them from NO_CASE: {sorted(now_reached)}"
