#!/usr/bin/env python3
"""Speed and memory of the reference model, against the project's targets.

    python3 benchmarks/bench_model.py [--seconds 3] [--cases GLOB] [--no-cli] [--json]

(a) model steps per second on one core: every loaded case, run again and again
    on one ModelBackend through the Runner for --seconds; every executed step
    (cleanup steps included) counts.
(b) wall time of the whole corpus on the model, one pass, loading included:
    in this process (Loader + a fresh ModelBackend + Runner), in a fresh
    interpreter (imports too), and through the CLI
    (`python3 -m harness run --backend model`, which is pytest plus the reports).
(c) peak memory (ru_maxrss) of this process after (a) and (b), and of the
    largest child process.

A part that cannot run (the model or the corpus is broken, a case raises) is
reported as such, with the error, and the others still run.  Exit status: 0
all ran and every target met, 1 a target missed, 2 something did not run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TARGET_STEPS_PER_S = 50_000
TARGET_CORPUS_S = 3.0
TARGET_RSS_MB = 200.0


@dataclass
class Row:
    measure: str
    value: float | None          # None: did not run
    unit: str
    target: float
    higher_is_better: bool
    note: str = ""
    error: str = ""

    @property
    def ratio(self) -> float | None:
        return None if self.value is None else self.value / self.target

    @property
    def met(self) -> bool | None:
        if self.value is None:
            return None
        return self.value >= self.target if self.higher_is_better else self.value < self.target


@dataclass
class Pass:
    """One run over the corpus."""
    cases: int = 0
    steps: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    crashed: list[str] = field(default_factory=list)   # "case-id: Exception: message"


def load(pattern: str) -> tuple[list[Any], list[Any]]:
    from harness.cases.loader import Loader

    return Loader(ROOT / "cases").load_all(pattern)


def run_pass(cases: list[Any], runner: Any, into: Pass) -> None:
    """Every case once.  A case that raises is recorded, not fatal; the backend is
    rebooted after it so the next case starts clean."""
    for case in cases:
        try:
            trace = runner.run(case)
        except Exception as e:  # a crash is a finding to report, not a stop
            into.crashed.append(f"{case.test_id}: {type(e).__name__}: {e}")
            with contextlib.suppress(Exception):
                runner.backend.reset()
            continue
        into.cases += 1
        into.steps += len(trace.steps)
        into.statuses[trace.status] += 1


def one_pass(pattern: str) -> dict[str, Any]:
    """(b) in this process: load the corpus, boot the model, run every case once."""
    from harness.model.backend import ModelBackend
    from harness.runner.engine import Runner

    t0 = time.perf_counter()
    cases, errors = load(pattern)
    t1 = time.perf_counter()
    p = Pass()
    run_pass(cases, Runner(ModelBackend()), p)
    t2 = time.perf_counter()
    return {"load_s": t1 - t0, "run_s": t2 - t1, "total_s": t2 - t0, "cases": len(cases),
            "malformed": len(errors), "steps": p.steps, "statuses": dict(p.statuses), "crashed": p.crashed,
            "first_malformed": str(errors[0]) if errors else ""}


def throughput(pattern: str, seconds: float) -> tuple[float, Pass, int, float]:
    """(a): steps per second over repeated passes for about `seconds`."""
    from harness.model.backend import ModelBackend
    from harness.runner.engine import Runner

    cases, _ = load(pattern)
    if not cases:
        raise RuntimeError(f"no case loaded from cases/{pattern}")
    runner = Runner(ModelBackend())
    total = Pass()
    passes = 0
    start = time.perf_counter()
    while True:
        run_pass(cases, runner, total)
        passes += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            break
    if total.steps == 0:
        raise RuntimeError(f"{len(cases)} cases ran no step ({dict(total.statuses)}; "
                           f"{len(total.crashed)} crashed{': ' + total.crashed[0] if total.crashed else ''})")
    return total.steps / elapsed, total, passes, elapsed


def breakdown(pattern: str) -> dict[str, float]:
    """Where one pass spends its time: the Runner's steps, the backend's reset between cases (a
    fresh boot of the model) and its topology() (which the Runner asks for per case), timed by
    wrapping them on this one runner and backend."""
    from harness.model.backend import ModelBackend
    from harness.runner.engine import Runner

    cases, _ = load(pattern)
    runner = Runner(ModelBackend())
    spent = {"steps": 0.0, "reset": 0.0, "topology": 0.0}

    def timed(name: str, fn: Any) -> Any:
        def wrapper(*a: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*a)
            finally:
                spent[name] += time.perf_counter() - t
        return wrapper

    backend: Any = runner.backend
    runner._step = timed("steps", runner._step)  # type: ignore[method-assign]
    backend.reset = timed("reset", backend.reset)
    backend.topology = timed("topology", backend.topology)
    steps = 0
    t0 = time.perf_counter()
    for case in cases:
        with contextlib.suppress(Exception):
            steps += len(runner.run(case).steps)
    total = time.perf_counter() - t0
    return {"total_s": total, "steps": steps, **{f"{k}_s": v for k, v in spent.items()}}


def timed_subprocess(argv: list[str], timeout: float) -> tuple[float, subprocess.CompletedProcess[str]]:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    return time.perf_counter() - t0, proc


def pin_one_core() -> str:
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned"
    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpus[-1]})
    return f"pinned to CPU {cpus[-1]}"


def short(text: str, limit: int = 300) -> str:
    t = " ".join(text.split())
    return t if len(t) <= limit else t[: limit - 1] + "…"


def tail(text: str, lines: int = 3) -> str:
    return " / ".join(x.strip() for x in text.strip().splitlines()[-lines:])


def measure(args: argparse.Namespace) -> tuple[list[Row], list[str]]:
    rows: list[Row] = []
    notes: list[str] = [pin_one_core()]

    # (b) first in a fresh interpreter, so its imports are cold.
    try:
        wall, proc = timed_subprocess([sys.executable, str(Path(__file__).resolve()), "--one-pass-child",
                                       "--cases", args.cases], timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"exit {proc.returncode}: {tail(proc.stderr or proc.stdout)}")
        child = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(Row("corpus, one pass, fresh interpreter", wall, "s", TARGET_CORPUS_S, False,
                        note=f"{child['cases']} cases, {child['steps']} steps; load {child['load_s']:.2f} s"))
    except Exception as e:
        rows.append(Row("corpus, one pass, fresh interpreter", None, "s", TARGET_CORPUS_S, False,
                        error=short(f"{type(e).__name__}: {e}")))

    # (b) in this process.
    try:
        r = one_pass(args.cases)
        status = ", ".join(f"{n} {s}" for s, n in sorted(r["statuses"].items()))
        rows.append(Row("corpus, one pass, in process (load + run)", r["total_s"], "s", TARGET_CORPUS_S, False,
                        note=f"load {r['load_s']:.2f} s + run {r['run_s']:.2f} s; {r['cases']} cases ({status})"))
        if r["malformed"]:
            notes.append(f"{r['malformed']} malformed case files skipped, e.g. {short(r['first_malformed'], 200)}")
        if r["crashed"]:
            notes.append(f"{len(r['crashed'])} cases raised instead of producing a trace, e.g. "
                         f"{short(r['crashed'][0], 200)}")
        if r["statuses"].get("error"):
            notes.append(f"{r['statuses']['error']} cases ended in a harness error: the figures cover "
                         "only the steps they reached")
    except Exception as e:
        rows.append(Row("corpus, one pass, in process (load + run)", None, "s", TARGET_CORPUS_S, False,
                        error=short(f"{type(e).__name__}: {e} (at {traceback.extract_tb(e.__traceback__)[-1].name})")))

    # (a)
    try:
        rate, total, passes, elapsed = throughput(args.cases, args.seconds)
        rows.insert(0, Row("model steps per second, one core", rate, "steps/s", TARGET_STEPS_PER_S, True,
                           note=f"{total.steps} steps in {passes} passes, {elapsed:.1f} s"))
    except Exception as e:
        rows.insert(0, Row("model steps per second, one core", None, "steps/s", TARGET_STEPS_PER_S, True,
                           error=short(f"{type(e).__name__}: {e}")))

    # Where (a)'s time goes.
    try:
        b = breakdown(args.cases)
        pass_s = b["total_s"]
        other = pass_s - b["steps_s"] - b["reset_s"] - b["topology_s"]
        notes.append(
            f"where one pass's {pass_s:.2f} s go: steps {b['steps_s'] / pass_s:.0%} "
            f"({b['steps'] / b['steps_s']:,.0f} steps/s counting only the steps), "
            f"backend.reset() {b['reset_s'] / pass_s:.0%}, backend.topology() {b['topology_s'] / pass_s:.0%}, "
            f"other per-case work {other / pass_s:.0%}")
    except Exception as e:
        notes.append(f"time breakdown did not run: {type(e).__name__}: {short(str(e), 200)}")

    # (b) through the CLI.
    if not args.no_cli:
        with tempfile.TemporaryDirectory(prefix="bench-reports-") as out:
            try:
                wall, proc = timed_subprocess([sys.executable, "-m", "harness", "run", "--backend", "model",
                                               "--cases", args.cases, "--report", out], timeout=900)
                written = sorted(p.name for p in Path(out).iterdir())
                note = f"exit {proc.returncode}; wrote {', '.join(written) or 'nothing'}"
                if proc.returncode not in (0, 1):  # 1: some case failed, still a full run
                    rows.append(Row("corpus via `python3 -m harness run --backend model`", None, "s",
                                    TARGET_CORPUS_S, False,
                                    error=short(f"exit {proc.returncode}: {tail(proc.stderr or proc.stdout)}")))
                else:
                    summary = tail(proc.stdout, 1)
                    rows.append(Row("corpus via `python3 -m harness run --backend model`", wall, "s",
                                    TARGET_CORPUS_S, False, note=f"{note}; {summary}"))
            except Exception as e:
                rows.append(Row("corpus via `python3 -m harness run --backend model`", None, "s",
                                TARGET_CORPUS_S, False, error=short(f"{type(e).__name__}: {e}")))

    # (c)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024       # KiB on Linux
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    partial = "covers only what ran: some measurements above failed" if any(r.value is None for r in rows) else ""
    rows.append(Row("peak RSS of this process, (a) + (b)", own, "MB", TARGET_RSS_MB, False, note=partial))
    rows.append(Row("peak RSS of the largest child (fresh pass, CLI)", kids, "MB", TARGET_RSS_MB, False,
                    note=partial))
    return rows, notes


def fmt_value(r: Row) -> str:
    if r.value is None:
        return "did not run"
    if r.unit == "steps/s":
        return f"{r.value:,.0f} steps/s"
    if r.unit == "s":
        return f"{r.value:.2f} s"
    return f"{r.value:.0f} MB"


def fmt_target(r: Row) -> str:
    t = f"{r.target:,.0f}" if r.unit != "s" else f"{r.target:g}"
    return f"{'≥' if r.higher_is_better else '<'} {t} {r.unit}"


def render(rows: list[Row], notes: list[str]) -> str:
    table = [["measure", "measured", "target", "measured/target", ""]]
    for r in rows:
        verdict = {True: "ok", False: "MISSED", None: "FAILED TO RUN"}[r.met]
        table.append([r.measure, fmt_value(r), fmt_target(r), "-" if r.ratio is None else f"{r.ratio:.2f}", verdict])
    widths = [max(len(x[i]) for x in table) for i in range(len(table[0]))]
    out = ["  ".join(c.ljust(w) for c, w in zip(x, widths, strict=True)).rstrip() for x in table]
    out.insert(1, "  ".join("-" * w for w in widths))
    details = [f"- {r.measure}: {r.error or r.note}" for r in rows if r.error or r.note]
    return "\n".join(["vfio-conformance model benchmark", "", *out, "", *details, *(f"- {n}" for n in notes)])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=3.0, help="how long (a) runs (default 3)")
    p.add_argument("--cases", default="**/*.yaml", help="glob of case files under cases/ (default all)")
    p.add_argument("--no-cli", action="store_true", help="skip timing the CLI")
    p.add_argument("--json", action="store_true", help="print the figures as JSON instead of a table")
    p.add_argument("--one-pass-child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.one_pass_child:
        print(json.dumps(one_pass(args.cases)))
        return 0

    rows, notes = measure(args)
    if args.json:
        print(json.dumps({"rows": [{"measure": r.measure, "value": r.value, "unit": r.unit, "target": r.target,
                                    "ratio": r.ratio, "met": r.met, "note": r.note, "error": r.error} for r in rows],
                          "notes": notes}, indent=2))
    else:
        print(render(rows, notes))
    if any(r.met is None for r in rows):
        return 2
    return 0 if all(r.met for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
