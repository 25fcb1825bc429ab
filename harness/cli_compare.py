"""`vfio-conformance compare`: the behaviour changes between a baseline and a candidate kernel.

Each kernel is a bzImage, a Linux source tree (built like `kernel build --source`), or a
series name (its test kernel).  The corpus runs on both, each in its own guests beside the
model of its release (runner/target.py), and the kernel traces are compared step by step
(runner/compare.py); then a fixed set of fuzz seeds runs both state machines on the two
kernels and the two models in lockstep (fuzz/lockstep.py: PredictedLockstep), each
unexplained difference shrunk to a regression case.  Exit 0: every change is expected;
1: an unexpected change (or a fuzz finding); 6: a kernel could not be had or booted (the
other codes as for every command: vfio-conformance --help).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from . import resources
from .exitcodes import ENVIRONMENT, FAILED, INTERRUPTED, NO_MATCH, OK, USAGE_ERROR
from .kernel import build
from .kernel.series import SERIES
from .kernel.under_test import kernel_image


def resolve(spec: str) -> Path | None:
    """A bzImage for ``spec``: a file is the image, a folder a source tree to build, else a series."""
    path = Path(spec)
    if path.is_file():
        return kernel_image(spec)
    if path.is_dir():
        try:
            image = build.ensure_kernel(path)
        except build.KernelBuildError as e:
            print(f"compare: {e}", file=sys.stderr)
            return None
        return kernel_image(str(image))
    if spec in SERIES:
        return kernel_image(None, series=spec)
    print(f"compare: {spec!r} is neither a bzImage, a source tree nor a series ({', '.join(SERIES)})",
          file=sys.stderr)
    return None


def _fuzz_seeds(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--fuzz-seeds takes numbers separated by commas, not {text!r}") from None


def add_parser(sub: Any) -> None:
    c = sub.add_parser("compare", help="the uAPI behaviour changes between a baseline and a candidate kernel",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("--baseline", metavar="KERNEL", help="bzImage, source tree or series (e.g. 6.12)")
    c.add_argument("--candidate", metavar="KERNEL", help="bzImage, source tree or series (e.g. 7.2)")
    c.add_argument("--series", action="append", default=[], choices=tuple(SERIES),
                   help="twice: the two series' test kernels, baseline first (--series 6.12 --series 7.2)")
    c.add_argument("--cases", default="**/*.yaml", help="glob of case files under the cases folder")
    c.add_argument("--cases-dir", default=None, help="cases folder (default: the bundled corpus)")
    c.add_argument("--accel", choices=("auto", "kvm", "tcg"), default=None)
    c.add_argument("--fuzz-seeds", type=_fuzz_seeds, default=[0], metavar="N,N",
                   help="fuzz rounds (one per seed and machine) on both kernels; empty: none (default 0)")
    c.add_argument("--fuzz-examples", type=int, default=100, help="sequences per fuzz round (default 100)")
    c.add_argument("--report", default="reports/compare",
                   help="compare.md, compare-junit.xml, compare.ktap and fuzz regressions go here")
    c.set_defaults(func=cmd_compare)


def _kernels(args: argparse.Namespace) -> tuple[str, str] | None:
    if args.series:
        if len(args.series) != 2 or args.baseline or args.candidate:
            print("compare: give --series twice (baseline, candidate), or --baseline and --candidate",
                  file=sys.stderr)
            return None
        return args.series[0], args.series[1]
    if not args.baseline or not args.candidate:
        print("compare: give --baseline and --candidate (or --series twice)", file=sys.stderr)
        return None
    for spec in (args.baseline, args.candidate):
        if not Path(spec).exists() and spec not in SERIES:
            print(f"compare: {spec!r} is neither a bzImage, a source tree nor a series ({', '.join(SERIES)})",
                  file=sys.stderr)
            return None
    return args.baseline, args.candidate


def cmd_compare(args: argparse.Namespace) -> int:
    from .cases.loader import load_for_command
    from .report.compare import write_compare_reports
    from .runner.compare import compare
    from .runner.target import KernelTarget, profile_for
    from .vm import VmError

    specs = _kernels(args)
    if specs is None:
        return USAGE_ERROR
    images = [resolve(s) for s in specs]
    if None in images:
        return ENVIRONMENT
    cases_dir = Path(args.cases_dir) if args.cases_dir else resources.cases_dir()
    cases = load_for_command(cases_dir, args.cases, "compare")
    if not cases:
        return NO_MATCH
    targets = [KernelTarget(image, args.accel) for image in images]  # type: ignore[arg-type]
    report_dir = Path(args.report)

    def progress(line: str) -> None:
        if args.verbosity >= 0:
            print(line, file=sys.stderr)

    def pair_for(case: Any) -> Any:
        guests = [t.guest(profile_for(case)) for t in targets]
        return tuple((g.kernel, g.model) for g in guests)

    try:
        report = compare(cases, pair_for, progress=progress)
        findings = _fuzz(args, targets, report_dir, progress)
    except VmError as e:
        print(f"compare: a guest did not come up: {e}", file=sys.stderr)
        return ENVIRONMENT
    except KeyboardInterrupt:
        print("compare: interrupted; no report written", file=sys.stderr)
        return INTERRUPTED
    finally:
        for t in targets:
            t.close()
    paths = write_compare_reports(report, report_dir, specs[0], specs[1])
    print(f"compare: {report.summary()}")
    for c, ch in report.unexpected:
        print(f"compare: UNEXPECTED {c.case.test_id}: {ch.line_text()} ({ch.why})")
    for f in findings:
        print(f"compare: UNEXPECTED (fuzz, seed {f.seed}): {f.summary}; regression case {f.case}")
    for p in paths:
        print(f"compare: wrote {p}", file=sys.stderr)
    return FAILED if report.unexpected or findings or report.errors else OK


def _fuzz(args: argparse.Namespace, targets: list[Any], report_dir: Path, progress: Any) -> list[Any]:
    """Each machine, each seed, on the two kernels and the two models in lockstep."""
    from .fuzz import MACHINE_PROFILES, PROFILES, fuzz
    from .fuzz.lockstep import PredictedLockstep

    findings = []
    for kind, profile in sorted(MACHINE_PROFILES.items()):
        for seed in args.fuzz_seeds:
            guests = [t.guest(profile) for t in targets]
            lockstep = PredictedLockstep([guests[0].kernel, guests[1].kernel, guests[0].model, guests[1].model])

            def trouble(guests: list[Any] = guests) -> str:
                return next((f"{g.release}: {t}" for g in guests if (t := g.trouble())), "")

            releases = " -> ".join(g.release for g in guests)
            report = fuzz(lockstep, PROFILES["ci"], seed=seed, rounds=1, examples=args.fuzz_examples,
                          out_dir=report_dir / "regressions", kernel=releases,
                          mock_domains=guests[0].model.facts().mock_domains, after_step=trouble,
                          progress=lambda _: None, machine_kind=kind)
            progress(f"compare: fuzz {kind} seed {seed} on {releases}: {report.line()}, "
                     f"{len(lockstep.expected)} expected changes met")
            findings += report.findings
    return findings
