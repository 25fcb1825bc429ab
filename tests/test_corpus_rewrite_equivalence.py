"""The corpus runs what it ran before it was rewritten onto fixture variants, `extends` and macros
(issue 11, item 1): every test id, and on the model of each release the same steps with the
same bytes, results and outputs (tests/corpus_traces.py), as the baseline recorded before the
rewrite.  A change that means to change what a case does updates the baseline on purpose:
``python3 tests/corpus_traces.py RELEASE`` prints the table.  Cases written since (an id whose
case, the part before any ``[variant]``, the baseline never had) are not the rewrite's business
and are left out; a new variant of a baseline case is not: it changes what that case runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from corpus_traces import RELEASES, ROOT, hashes

BASELINE = Path(__file__).parent / "data" / "corpus-traces.json"


def case_of(test_id: str) -> str:
    return test_id.split("[", 1)[0]


def new_cases_left_out(got: dict[str, str], baseline: dict[str, str]) -> dict[str, str]:
    known = {case_of(t) for t in baseline}
    return {t: h for t, h in got.items() if case_of(t) in known}


def test_only_cases_the_baseline_never_had_are_left_out() -> None:
    baseline = {"a[legacy]": "1", "b": "2"}
    got = {"a[legacy]": "1", "a[iommufd-compat]": "3", "b": "2", "c[legacy]": "4", "c": "5"}
    assert new_cases_left_out(got, baseline) == {"a[legacy]": "1", "a[iommufd-compat]": "3", "b": "2"}


@pytest.mark.parametrize("release", RELEASES)
def test_every_case_runs_the_steps_of_the_baseline(release: str) -> None:
    want = json.loads(BASELINE.read_text())[release]
    got = new_cases_left_out(hashes(ROOT / "cases", release), want)
    assert sorted(got) == sorted(want), "test ids changed"
    changed = sorted(t for t in got if got[t] != want[t])
    assert not changed, f"{len(changed)} cases run other steps than the baseline: {changed[:10]}"
