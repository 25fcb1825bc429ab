#!/usr/bin/env python3
"""What a mutant costs: the same mutants in a schemata kernel and built one by one.

    python3 benchmarks/bench_mutate.py [--sample 6] [--seed 3] [--case-lines FILE] [--json]

Runs ``vfio-conformance mutate --sample N --seed S --only-reaching --fresh`` twice, in a
schemata kernel (the default, harness/mutate/schemata.py) and with ``--one-by-one``, each timed
from outside, and reports the wall-clock seconds per mutant of each, their ratio, and whether
the two runs reached the same verdicts (they must: a schemata switch is the mutant).  The
schemata kernel of the source is usually built already (it is kept); the first run after a
source change pays its build once.

The target: the whole scope (1,794 mutants on 6.12.118) in a 2-hour nightly on 2 cores, so at
most 4 s per mutant of wall clock.  This measures one run; two shards side by side (``mutate
--shard 1/2`` and ``--shard 2/2``, one per core) take about half the wall clock per mutant.

Needs the series' test-kernel build, its source tree, QEMU and $VFIO_CONFORMANCE_ACCEL as for
`vfio-conformance mutate`.  Exit status: 0 target met and verdicts equal, 1 target missed or
verdicts differ, 2 something did not run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_S_PER_MUTANT = 7200 / 1794


def _run(args: list[str], report: Path) -> tuple[float, dict[str, str], str]:
    """(wall seconds, mutant id -> verdict, error text or "")."""
    start = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "harness", "mutate", *args, "--report", str(report), "--min-score", "0"],
                       cwd=ROOT, capture_output=True, text=True)
    seconds = time.monotonic() - start
    try:
        data = json.loads((report / "mutate.json").read_text())
    except (OSError, ValueError):
        return seconds, {}, f"exit {r.returncode}: {r.stderr[-2000:]}"
    return seconds, {m["id"]: m["verdict"] for m in data["mutants"]}, ""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sample", type=int, default=6)
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--case-lines", default=None, help="as for mutate: the cases reaching each mutant")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    common = ["--sample", str(a.sample), "--seed", str(a.seed), "--only-reaching", "--fresh"]
    if a.case_lines:
        common += ["--case-lines", a.case_lines]
    with tempfile.TemporaryDirectory() as tmp:
        schemata = _run(common, Path(tmp) / "schemata")
        alone = _run([*common, "--one-by-one"], Path(tmp) / "alone")
    failed = [f"{name}: {err}" for name, (_, _, err) in (("schemata", schemata), ("one by one", alone)) if err]
    per = {name: seconds / max(1, len(verdicts)) for name, (seconds, verdicts, _) in
           (("schemata", schemata), ("one by one", alone))}
    differ = sorted(i for i in schemata[1] if alone[1].get(i) != schemata[1][i])
    out = {"mutants": len(schemata[1]), "seconds per mutant": {k: round(v, 1) for k, v in per.items()},
           "one by one / schemata": round(per["one by one"] / per["schemata"], 1) if per["schemata"] else None,
           "target seconds per mutant": round(TARGET_S_PER_MUTANT, 1),
           "ratio (target / schemata)": round(TARGET_S_PER_MUTANT / per["schemata"], 2) if per["schemata"] else None,
           "verdicts differing": differ, "failed": failed}
    if a.json:
        print(json.dumps(out, indent=2))
    else:
        for k, v in out.items():
            print(f"{k:28} {v}")
    if failed:
        return 2
    return 0 if not differ and per["schemata"] <= TARGET_S_PER_MUTANT else 1


if __name__ == "__main__":
    sys.exit(main())
