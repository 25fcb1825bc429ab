"""--record-verified writes a kernel release into verified_on only where every variant passed on both backends."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cases.loader import Loader
from harness.cases.verified import add_release
from harness.runner.outcome import CaseOutcome
from harness.runner.verified import record_verified

CASE = """\
id: ioas-x
area: ioas
purpose: p
verified_on: ["6.12.117"]   # kept
steps:
  - open: /dev/iommu
"""


def _outcome(loc: str, status: str = "pass", kernel: str = "6.12.118",
             backends: tuple[str, ...] = ("kernel", "model"), tid: str = "ioas-x") -> CaseOutcome:
    return CaseOutcome(test_id=tid, area="ioas", purpose="p", location=loc, source="", verified_on=[],
                       status=status, backends=list(backends), kernel=kernel)


def test_add_release_keeps_the_file_loadable_and_sorted(tmp_path: Path) -> None:
    p = tmp_path / "ioas" / "x.yaml"
    p.parent.mkdir()
    p.write_text(CASE)
    assert add_release(p, "6.12.118") is True
    assert add_release(p, "6.12.118") is False
    assert add_release(p, "6.9.1") is True
    assert 'verified_on: ["6.9.1", "6.12.117", "6.12.118"]  # kept' in p.read_text()
    cases, errors = Loader(tmp_path).load_all("**/*.yaml")
    assert not errors and cases[0].verified_on == ["6.9.1", "6.12.117", "6.12.118"]


def test_a_block_style_list_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "x.yaml"
    p.write_text(CASE.replace('verified_on: ["6.12.117"]   # kept', "verified_on:\n  - 6.12.117"))
    with pytest.raises(ValueError, match="no one-line"):
        add_release(p, "6.12.118")


@pytest.mark.parametrize("bad", [
    {"status": "fail"}, {"status": "skip"}, {"kernel": ""}, {"backends": ("kernel",)},
])
def test_only_files_whose_every_variant_passed_on_both_are_recorded(tmp_path: Path, bad: dict) -> None:  # type: ignore[type-arg]
    for name in ("good", "bad"):
        (tmp_path / f"{name}.yaml").write_text(CASE)
    outcomes = [_outcome("good.yaml:1", tid="a[v1]"), _outcome("good.yaml:1", tid="a[v2]"),
                _outcome("bad.yaml:1", tid="b[v1]"), _outcome("bad.yaml:1", tid="b[v2]", **bad)]
    updated, problems = record_verified(outcomes, tmp_path)
    assert updated == [tmp_path / "good.yaml"] and not problems
    assert "6.12.118" not in (tmp_path / "bad.yaml").read_text()
