"""`vfio-conformance mutate`: mutants of the kernel's uAPI handlers, and which ones the suite kills.

Mutants (harness/mutate/operators.py) of the ioctl handlers and the functions they call, in
drivers/iommu/iommufd, drivers/vfio and drivers/vfio/pci of the series' test-kernel source; each
is built incrementally in the mutation workspace, booted in QEMU, and the cases reaching it run
until one kills it.  Reports: mutate.md, mutate.json, mutate.xml, mutate.ktap (docs/mutate.md).
Exit 0: no survivor outside the reviewed equivalent list (or the score reaches --min-score);
1: a survivor (or the score is below --min-score), or a stale or malformed equivalent list;
5: no mutant matched; 6: no source tree or test-kernel build (the other codes as for every
command: vfio-conformance --help).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from . import resources
from .durations import parse_duration
from .exitcodes import ENVIRONMENT, FAILED, INTERRUPTED, NO_MATCH, OK, USAGE_ERROR
from .kernel.series import DEFAULT_SERIES, SERIES


def _operators(text: str) -> tuple[str, ...]:
    from .mutate.operators import OPERATORS

    ops = tuple(o.strip() for o in text.split(",") if o.strip())
    bad = [o for o in ops if o not in OPERATORS]
    if bad or not ops:
        raise argparse.ArgumentTypeError(f"operators are {', '.join(OPERATORS)}, not {text!r}")
    return ops


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a number of mutants of at least 1")
    return int(text)


def _shard(text: str) -> tuple[int, int]:
    k, _, n = text.partition("/")
    if not (k.isdigit() and n.isdigit() and 1 <= int(k) <= int(n)):
        raise argparse.ArgumentTypeError(f"{text!r}: K/N with 1 <= K <= N, e.g. 1/2")
    return int(k), int(n)


def _percent(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"{text!r}: a percentage from 0 to 100")
    return value


def add_parser(sub: Any) -> None:
    from .mutate.operators import OPERATORS
    from .runner.deadline import case_timeout

    m = sub.add_parser("mutate", help="mutation testing: mutants of the kernel's uAPI handlers the suite must kill",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    m.add_argument("--series", choices=tuple(SERIES), default=DEFAULT_SERIES,
                   help="the kernel series whose test-kernel source and build are mutated (default 6.12)")
    m.add_argument("--files", action="append", default=[], metavar="GLOB",
                   help="only these source files (glob or path suffix, e.g. ioas.c; repeatable)")
    m.add_argument("--functions", action="append", default=[], metavar="GLOB",
                   help="only these functions (glob, e.g. 'iommufd_ioas_*'; repeatable)")
    m.add_argument("--operators", type=_operators, default=OPERATORS, metavar="OP,OP",
                   help=f"operators to apply (default all: {','.join(OPERATORS)})")
    m.add_argument("--mutant", action="append", default=[], metavar="ID",
                   help="only this mutant (its id, or its file:line:operator:index; repeatable)")
    m.add_argument("--sample", type=_count, default=None, metavar="N", help="N mutants picked by --seed (default all)")
    m.add_argument("--seed", type=int, default=0, help="the sample's seed (default 0)")
    m.add_argument("--shard", type=_shard, default=None, metavar="K/N",
                   help="only every N-th of the picked mutants, from the K-th: N runs side by side share the "
                        "schemata kernels and the results cache")
    m.add_argument("--case-lines", default=None, metavar="FILE",
                   help="JSON of the kernel lines each case reaches (vm --coverage --per-case): run those cases "
                        "first")
    m.add_argument("--only-reaching", action="store_true",
                   help="run only the cases reaching the mutant (by --case-lines, else by the ioctls whose "
                        "handler reaches the mutated function), not the rest of the corpus")
    m.add_argument("--cases", default="**/*.yaml", help="glob of case files under the cases folder")
    m.add_argument("--cases-dir", default=None, help="cases folder (default: the bundled corpus)")
    m.add_argument("--accel", choices=("auto", "kvm", "tcg"), default=None)
    m.add_argument("--case-timeout", type=case_timeout, default=60.0, metavar="SECONDS",
                   help="a case running longer on a mutant kills it as timed out (default 60)")
    m.add_argument("--equivalent", default=None, metavar="FILE",
                   help="the reviewed list of equivalent mutants (default harness/mutate/equivalent.yaml)")
    m.add_argument("--min-score", type=_percent, default=None, metavar="PCT",
                   help="exit 0 when the score reaches PCT even with survivors (default: any survivor fails)")
    m.add_argument("--budget", type=parse_duration, default=None, metavar="TIME",
                   help="start no mutant after TIME (e.g. 40m): the report scores those run and counts the rest "
                        "as not run; the same command later resumes from the results cache")
    m.add_argument("--one-by-one", action="store_true",
                   help="build and boot each mutant alone (its object compared with the original's first: "
                        "identical code is not scored) instead of many mutants in one schemata kernel")
    m.add_argument("--fresh", action="store_true",
                   help="run every mutant again, even those the results cache has a verdict for")
    m.add_argument("--list", action="store_true", help="list the (sampled) mutants and exit; nothing is built")
    m.add_argument("--jobs", "-j", type=int, default=2, metavar="N", help="make -jN for each mutant (default 2)")
    m.add_argument("--report", default="reports/mutate", help="mutate.md, .json, .xml and .ktap go here")
    m.add_argument("--ktap", default=None, metavar="PATH",
                   help="also write the KTAP report to PATH; '-': print it on stdout")
    m.set_defaults(func=cmd_mutate)


def _say(args: argparse.Namespace, line: str) -> None:
    if args.verbosity >= 0:
        print(line, file=sys.stderr)


def cmd_mutate(args: argparse.Namespace) -> int:
    from .cache_root import cache_root
    from .cases.loader import load_for_command
    from .coverage.kernel_errnos import sources
    from .kernel import cache
    from .kernel.errors import KernelBuildError
    from .kernel.source import find_source
    from .mutate import equivalent as eq
    from .mutate.case_lines import CaseLines, CaseLinesError
    from .mutate.report import write
    from .mutate.results import SURVIVED, ResultsCache, sha, tally, tree_hash
    from .mutate.run import Baseline, Runner, generate, sample
    from .mutate.scope import load_scope, narrow
    from .mutate.workspace import Workspace, finished_build
    from .runner.run_state import INTERRUPTED as STOPPED
    from .runner.run_state import RunState

    try:
        entries = eq.load(Path(args.equivalent) if args.equivalent else eq.DEFAULT_LIST)
    except eq.EquivalentListError as e:
        print(f"mutate: {e}", file=sys.stderr)
        return FAILED
    try:
        if args.list:       # the source is enough
            tree = find_source(sources(args.series), series=args.series)
            if tree is None:
                raise KernelBuildError(f"no source tree of the {args.series} series (vfio-conformance kernel "
                                       f"build --series {args.series} extracts it)")
            source, builddir, key = tree, Path(), ""
        else:
            source, builddir, key = finished_build(args.series)
    except KernelBuildError as e:
        print(f"mutate: {e}", file=sys.stderr)
        return ENVIRONMENT
    full = load_scope(source, args.series)
    scope = narrow(full, args.files, args.functions)
    texts = {f: (source / f).read_text() for f in full.by_file()}
    everything = generate(texts, full)
    stale = eq.check_against(entries, everything, args.series)
    if stale:
        print("mutate: the equivalent list is stale:\n  " + "\n  ".join(stale), file=sys.stderr)
        return FAILED
    mutants = [m for m in generate(texts, scope, args.operators)
               if not args.mutant or m.id in args.mutant or m.name in args.mutant]
    picked = sample(mutants, args.sample, args.seed)
    if args.shard is not None:
        k, n = args.shard
        picked = picked[k - 1::n]
    if not picked:
        print(f"mutate: no mutant in {len(scope.functions)} functions (--files {args.files} --functions "
              f"{args.functions})", file=sys.stderr)
        return NO_MATCH
    _say(args, f"mutate: {len(everything)} mutants in {len(full.functions)} handler functions of {source}; "
               f"{len(mutants)} in scope; running {len(picked)}"
               + (f" (--sample {args.sample} --seed {args.seed})" if args.sample else ""))
    if args.list:
        for m in picked:
            print(f"{m.id} {m.name} {m.function}() {m.original.splitlines()[0]!r} -> {m.replacement.splitlines()[0]!r}")
        return OK
    cases_dir = Path(args.cases_dir) if args.cases_dir else resources.cases_dir()
    cases = load_for_command(cases_dir, args.cases, "mutate")
    if not cases:
        return NO_MATCH
    try:
        lines = CaseLines.load(Path(args.case_lines)) if args.case_lines else None
    except CaseLinesError as e:
        print(f"mutate: --case-lines {e}", file=sys.stderr)
        return USAGE_ERROR
    if lines is not None and lines.release and not lines.release.startswith(key.split("-")[0]):
        print(f"mutate: --case-lines {args.case_lines} was measured on {lines.release}, the mutants are of "
              f"{key.split('-')[0]}: its line numbers do not apply", file=sys.stderr)
        return USAGE_ERROR
    corpus = tree_hash(cases_dir, resources.HARNESS / "model")
    options = sha([(args.case_lines and Path(args.case_lines).read_bytes()) or b"", str(args.only_reaching).encode(),
                   args.cases.encode()])[:8]
    src_hash = sha(texts[f].encode() for f in sorted(texts))[:8]
    results_path = cache_root() / "mutate" / "results" / f"{key}-{src_hash}.jsonl"
    image = cache.kernels_dir() / key / "bzImage"
    baseline = Baseline(image if image.is_file() else builddir / "arch/x86/boot/bzImage", args.accel, cases_dir,
                        args.case_timeout)
    workspace = Workspace(source, builddir, key)
    results_cache = ResultsCache(results_path, f"{corpus}-{options}")
    if args.fresh:
        results_cache.results.clear()
    runner = Runner(workspace, cases, full, baseline, results_cache, eq.for_series(entries, args.series),
                    lines, args.only_reaching, args.accel, cases_dir, args.case_timeout, args.jobs,
                    progress=(lambda line: _say(args, line)), schemata=not args.one_by_one)
    header = {"kernel source": f"{source} (build {key})", "series": args.series,
              "selection": (f"--sample {args.sample} --seed {args.seed} of " if args.sample else "all ")
              + f"{len(mutants)} mutants in scope",
              "cases": ("--case-lines " + args.case_lines if lines else "static reach (ioctls whose handler reaches "
                        "the function)") + (", only those" if args.only_reaching else ", then the rest of the corpus"),
              "results cache": str(results_path)}
    report = Path(args.report)
    args.ktap_written = report / "mutate.ktap"
    results = []
    state = RunState(planned=len(picked))
    start = time.monotonic()
    try:
        results = runner.run(picked, None if args.budget is None else start + args.budget)
    except KeyboardInterrupt:
        state = RunState(STOPPED, "KeyboardInterrupt (Ctrl-C or SIGTERM)", len(picked))
        results = runner.cached(picked)
    except KernelBuildError as e:
        print(f"mutate: {e}", file=sys.stderr)
        return ENVIRONMENT
    finally:
        baseline.close()
    header["wall clock"] = f"{time.monotonic() - start:.0f} s for {len(results)} mutants"
    not_run = len(picked) - len(results) if args.budget is not None and not state.stopped_early else 0
    if args.budget is not None and not state.stopped_early:
        header["budget"] = (f"{args.budget:.0f} s: {not_run} of {len(picked)} mutants not run (the same command "
                            "resumes them from the results cache)" if not_run else f"{args.budget:.0f} s, not spent")
    for p in write(results, report, header, state):
        _say(args, f"mutate: wrote {p}")
    t = tally(results).get("all")
    if t is not None:
        print(f"mutate: score {t.score_text()} (reached: {t.reached_score_text()}); " + ", ".join(
              f"{v} {n}" for v, n in t.counts.items())
              + (f"; {not_run} of {len(picked)} not run (--budget spent)" if not_run else ""))
    for r in results:
        if r.verdict == SURVIVED:
            print(f"mutate: survived: {r.name} ({r.id}) in {r.function}()")
    if state.stopped_early:
        return INTERRUPTED
    if args.min_score is not None:
        return OK if t is not None and t.score is not None and 100 * t.score >= args.min_score else FAILED
    return FAILED if any(r.verdict == SURVIVED for r in results) else OK


__all__ = ["USAGE_ERROR", "add_parser", "cmd_mutate"]
