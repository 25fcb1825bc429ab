"""Cases and the model across kernel series: per-kernel expectations, kernel ranges a case
applies to, and version gates that have teeth (take one away and the 7.2 cases fail)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from harness.cases.case import Case, CaseError
from harness.cases.loader import Loader
from harness.model import gates
from harness.model.backend import ModelBackend
from harness.model.topologies import default_facts
from harness.runner.engine import Runner
from harness.runner.session import run_case

ROOT = Path(__file__).resolve().parent.parent
CORPUS = Loader(ROOT / "cases")

VERSIONED = """\
id: container-example
area: container
purpose: An example.
verified_on: []
requires: {container: legacy}
steps:
  - open: /dev/vfio/vfio
    as: container
  - ioctl: VFIO_CHECK_EXTENSION
    fd: container
    value: VFIO_TYPE1_NESTING_IOMMU
    expect:
      by_kernel:
        "<7.2": {ret: 1}
        ">=7.2": {ret: 0}
"""


def load(tmp_path: Path, text: str) -> list[Case]:
    d = tmp_path / "cases" / "container"
    d.mkdir(parents=True, exist_ok=True)
    (d / "case.yaml").write_text(textwrap.dedent(text))
    return Loader(tmp_path / "cases").load_file(d / "case.yaml")


def model(release: str) -> ModelBackend:
    return ModelBackend(facts=default_facts(release))


def status(case: Case, release: str) -> str:
    return run_case(case, [model(release)]).status


def test_by_kernel_picks_the_expectation_of_the_release(tmp_path: Path) -> None:
    (case,) = load(tmp_path, VERSIONED)
    assert status(case, "6.12.118") == "pass"
    assert status(case, "7.2.13") == "pass"
    # The same expectation on both kernels fails on one of them.
    (fixed,) = load(tmp_path, VERSIONED.replace('">=7.2": {ret: 0}', '">=7.2": {ret: 1}'))
    assert status(fixed, "7.2.13") == "fail"


def test_a_release_no_range_covers_fails_with_a_reason(tmp_path: Path) -> None:
    (case,) = load(tmp_path, VERSIONED.replace('"<7.2"', '"6.12"'))
    outcome = run_case(case, [model("6.18.2")])
    assert outcome.status == "fail" and "no expectation for kernel 6.18.2" in outcome.reason


@pytest.mark.parametrize(("old", "new", "field"), [
    ('"<7.2": {ret: 1}', '"7.x": {ret: 1}', "by_kernel.7.x"),
    ('">=7.2": {ret: 0}', '">=7.2": {by_kernel: {"7.2": ok}}', "by_kernel"),
    ('">=7.2": {ret: 0}', '">=7.2": {bogus: 0}', "bogus"),
    ("expect:\n      by_kernel:", "expect:\n      errno: EINVAL\n      by_kernel:", "expect"),
])
def test_malformed_by_kernel_names_the_field(tmp_path: Path, old: str, new: str, field: str) -> None:
    with pytest.raises(CaseError) as e:
        load(tmp_path, VERSIONED.replace(old, new))
    assert field in str(e.value) and "case.yaml:" in str(e.value)


def test_requires_kernel_skips_other_kernels_with_the_reason(tmp_path: Path) -> None:
    (case,) = load(tmp_path, VERSIONED.replace("requires: {container: legacy}",
                                               'requires: {container: legacy, kernel: ">=7.2"}'))
    outcome = run_case(case, [model("6.12.118")])
    assert outcome.status == "skip" and "applies to kernels >=7.2" in outcome.reason
    assert status(case, "7.2.13") == "pass"
    with pytest.raises(CaseError, match=r"requires\.kernel"):
        load(tmp_path, VERSIONED.replace("requires: {container: legacy}", 'requires: {kernel: "new"}'))


@pytest.mark.parametrize("release", ["6.12.118", "7.2.13"])
def test_the_corpus_passes_on_the_model_of_each_series(release: str) -> None:
    cases, errors = CORPUS.load_all()
    assert cases and not errors
    backends = [model(release)]
    bad = {c.test_id: o.reason for c in cases if (o := run_case(c, backends)).status not in ("pass", "skip")}
    assert bad == {}


def gated_cases(name: str) -> list[Case]:
    """The corpus cases whose model run on 7.2 consults gate ``name``."""
    cases, _ = CORPUS.load_all()
    out = []
    for c in cases:
        trace = Runner(model("7.2.13")).run(c)
        if any(name in s.gates for s in trace.steps):
            out.append(c)
    return out


@pytest.mark.parametrize("name", sorted(gates.GATES))
def test_every_gate_has_teeth(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Some case consults each gate, and with the gate taken away (7.2 behaving like 6.12)
    one of them fails on the 7.2 model."""
    consulted = gated_cases(name)
    assert consulted, f"no case reaches version gate {name}"
    monkeypatch.setitem(gates.GATES, name, gates.Gate(name, "999", "", "", ""))
    failed = [c.test_id for c in consulted if status(c, "7.2.13") == "fail"]
    assert failed, f"taking gate {name} away fails none of {[c.test_id for c in consulted]}"


def test_gates_are_declared_with_both_citations() -> None:
    for g in gates.GATES.values():
        assert g.what and g.before and "@7.2" in g.after, g


def test_docs_list_every_gate_as_declared() -> None:
    """docs/series.md's table is a second copy of GATES: it must say what gates.py says."""
    text = (ROOT / "docs" / "series.md").read_text().split("## The gates", 1)[1].split("\n## ", 1)[0]
    rows = {line.split("|")[1].strip().strip("`"): [c.strip() for c in line.split("|")[2:6]]
            for line in text.splitlines() if line.startswith("| `")}
    assert rows == {g.name: [g.since, g.what, g.before, g.after] for g in gates.GATES.values()}
