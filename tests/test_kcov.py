"""Coverage guidance's bookkeeping (harness/fuzz/kcov.py) and its absence on the model alone.
The guidance itself, KCOV read through the agent, is tests/test_kcov_vm.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from harness.backends.kcov import decode, encode
from harness.fuzz import PROFILES, Lockstep, fuzz
from harness.fuzz.kcov import KcovGuide, PcLog
from harness.model.backend import ModelBackend

ROOT = Path(__file__).resolve().parent.parent


def test_only_pcs_no_earlier_sequence_reached_count_as_new() -> None:
    log = PcLog()
    assert log.add([0xffffffff81000010, 0xffffffff81000020, 0xffffffff81000010]) == 2
    assert log.add([0xffffffff81000020]) == 0
    assert log.add([0xffffffff81000020, 0xffffffff81000030]) == 1
    assert log.add([]) == 0
    assert log.sequences == 4 and len(log.seen) == 3
    assert log.line() == "3 distinct kernel PCs"


def test_the_growth_table_has_a_row_per_note() -> None:
    log = PcLog()
    log.row(0.0)
    log.add([1, 2, 3])
    log.row(10.04)
    log.add([3, 4])
    log.row(19.0)
    log.row(20.0)      # no sequence since the last row: it replaces it
    assert log.rows == [(0.0, 0, 0), (10.0, 1, 3), (20.0, 2, 4)]
    table = log.markdown("growth").splitlines()
    assert table[2] == "| elapsed s | sequences | distinct PCs |"
    assert table[4:] == ["| 0.0 | 0 | 0 |", "| 10.0 | 1 | 3 |", "| 20.0 | 2 | 4 |"]


def test_the_guests_encoding_of_pcs_round_trips_distinct_and_sorted() -> None:
    pcs = [0xffffffff81234567, 0xffffffff80000000, 0xffffffff81234567, (1 << 64) - 1]
    assert decode(encode(pcs)) == sorted(set(pcs))
    assert decode(b"") == [] and decode(encode([])) == []


def test_the_model_alone_has_no_kcov_and_the_run_is_unguided() -> None:
    why = KcovGuide(ModelBackend()).start()
    assert "KCOV needs a real kernel" in why
    report = fuzz(Lockstep([ModelBackend()]), PROFILES["ci"], seed=0, rounds=1, examples=5,
                  progress=lambda _: None)
    assert report.kcov is None and "PCs" not in report.line()


def test_fuzz_kcov_on_the_model_says_there_is_no_guidance_and_runs(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "harness", "fuzz", "--machine", "iommufd", "--examples", "3",
                          "--kcov", "--report", str(tmp_path), "--out", str(tmp_path / "regressions")],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "fuzz: no coverage guidance: model: KCOV needs a real kernel" in out.stderr
    assert not (tmp_path / "fuzz-kcov.md").exists()
