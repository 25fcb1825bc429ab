#!/usr/bin/env python3
"""Throughput of the differential fuzzer, against the project's targets.

    python3 benchmarks/bench_fuzz.py [--seconds 20] [--machine all|iommufd|vfio] [--vm [--kernel BZIMAGE]] [--json]

For each state machine (iommufd, vfio):
(a) the model alone: sequences and ioctl steps per second (target 500 sequences/s of about
    10 steps; sequences here run up to 20, so the ratio is taken on steps/s / 10), and how
    the time splits between Hypothesis (generating, mutating, shrinking) and the steps;
(b) with --vm: the kernel in the guest the machine needs (TCG) and the model in lockstep
    (target 50 sequences/s of about 10 steps), and the same split.

Ratios above 1 meet the target.  Exit status 0 when every target that ran was met, 1
otherwise, 2 when a part did not run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from harness.fuzz import MACHINE_PROFILES, PROFILES, Lockstep, fuzz  # noqa: E402
from harness.fuzz.targets import Target, model_target, vm_target  # noqa: E402

TARGETS = {"model": 500.0, "vm": 50.0}


class _Timed(Lockstep):
    """The lockstep, timing its own steps (parsing the step, running it on every backend,
    comparing, the after-step check)."""

    spent = 0.0

    def run_raw(self, *args: Any, **kwargs: Any) -> str:
        t = time.perf_counter()
        try:
            return super().run_raw(*args, **kwargs)
        finally:
            self.spent += time.perf_counter() - t


def measure(target: Target, name: str, machine: str, seconds: float) -> dict[str, Any]:
    timed = _Timed(target.lockstep.backends)
    # The nightly profile without its example database: a benchmark replays nothing saved.
    profile = dataclasses.replace(PROFILES["nightly"], database=False)
    report = fuzz(timed, profile, seed=1, duration_s=seconds, kernel=target.kernel,
                  mock_domains=target.mock_domains, after_step=target.after_step, progress=lambda _: None,
                  machine_kind=machine)
    target.close()
    per_10_steps = report.steps_per_s / 10
    return {
        "target": name, "machine": machine, "sequences": report.sequences, "steps": report.steps,
        "seconds": round(report.seconds, 2),
        "sequences_per_s": round(report.sequences_per_s, 1), "steps_per_s": round(report.steps_per_s, 1),
        "steps_per_sequence": round(report.steps / max(report.sequences, 1), 1),
        "share_in_steps": round(timed.spent / report.seconds, 2) if report.seconds else 0.0,
        "goal_sequences_per_s": TARGETS[name], "ratio": round(per_10_steps / TARGETS[name], 3),
        "divergences": len(report.findings),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--vm", action="store_true")
    ap.add_argument("--kernel", default=None)
    ap.add_argument("--machine", choices=("all", *MACHINE_PROFILES), default="all")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    machines = list(MACHINE_PROFILES) if args.machine == "all" else [args.machine]
    rows = [measure(model_target(), "model", m, args.seconds) for m in machines]
    if args.vm:
        from harness.vm import find_kernel

        kernel = Path(args.kernel) if args.kernel else find_kernel()
        if kernel is None:
            print("bench_fuzz: no test kernel (build one: vfio-conformance kernel build)", file=sys.stderr)
            return 2
        rows += [measure(vm_target(kernel, MACHINE_PROFILES[m]), "vm", m, args.seconds) for m in machines]
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print(f"{'target':6} {'machine':8} {'seq/s':>7} {'steps/s':>8} {'steps/seq':>9} {'in steps':>8} "
              f"{'goal':>6} {'ratio':>6}")
        for r in rows:
            print(f"{r['target']:6} {r['machine']:8} {r['sequences_per_s']:7.1f} {r['steps_per_s']:8.1f} "
                  f"{r['steps_per_sequence']:9.1f} "
                  f"{r['share_in_steps']:8.0%} {r['goal_sequences_per_s']:6.0f} {r['ratio']:6.2f}")
        print("in steps: the share of the time spent running steps on the backends; the rest is Hypothesis.")
        print("ratio: (steps/s / 10) / goal, the goal being sequences of about 10 steps per second.")
    return 0 if all(r["ratio"] >= 1 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
