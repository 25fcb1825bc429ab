"""The corpus runs what it ran before it was rewritten onto fixture variants, `extends` and macros
(issue 11, item 1): every test id, and on the model of each release the same steps with the
same bytes, results and outputs (tests/corpus_traces.py), as the baseline recorded before the
rewrite.  A change that means to change what a case does updates the baseline on purpose:
``python3 tests/corpus_traces.py RELEASE`` prints the table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from corpus_traces import RELEASES, ROOT, hashes

BASELINE = Path(__file__).parent / "data" / "corpus-traces.json"


@pytest.mark.parametrize("release", RELEASES)
def test_every_case_runs_the_steps_of_the_baseline(release: str) -> None:
    want = json.loads(BASELINE.read_text())[release]
    got = hashes(ROOT / "cases", release)
    assert sorted(got) == sorted(want), "test ids changed"
    changed = sorted(t for t in got if got[t] != want[t])
    assert not changed, f"{len(changed)} cases run other steps than the baseline: {changed[:10]}"
