"""`vfio-conformance`: run the corpus, validate case files, list cases."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import traceback
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import resources
from .cli_compare import add_parser as compare_parser
from .cli_mutate import add_parser as mutate_parser
from .durations import parse_duration
from .exitcodes import (
    ENVIRONMENT,
    FAILED,
    INTERNAL_ERROR,
    INTERRUPTED,
    NO_MATCH,
    OK,
    USAGE_ERROR,
    ArgumentParser,
    table,
)
from .kernel.series import SERIES
from .kernel.under_test import kernel_image

if TYPE_CHECKING:
    from .fuzz.kcov import KcovGuide

# What fault injection runs over unless told otherwise (the nightly fuzz profile too).
FAULT_CASES = ["ioas/**", "device/**"]


def _cases_dir(args: argparse.Namespace) -> Path:
    return Path(args.cases_dir) if args.cases_dir else resources.cases_dir()


def cmd_run(args: argparse.Namespace) -> int:
    import pytest

    from .cases.loader import Loader

    cases, errors = Loader(_cases_dir(args)).load_all(args.cases)
    if not cases and not errors:
        print(f"vfio-conformance: no case matched --cases {args.cases!r} under {_cases_dir(args)}", file=sys.stderr)
        return NO_MATCH
    report = Path(args.report)
    report.mkdir(parents=True, exist_ok=True)
    args.ktap_written = report / "results.ktap"
    # The plugin's options as --name=value: pytest reads the arguments before it loads the plugin,
    # and a separate value that names an existing path (the report folder) would be taken for a
    # test path whose conftest.py files (the user's current directory's) are then imported.
    argv = [
        # The CLI imported harness before pytest could rewrite its asserts (it has none to rewrite).
        *resources.suite_argv(), "-p", "no:cacheprovider", "-W", "ignore::pytest.PytestAssertRewriteWarning",
        f"--backend={args.backend}", f"--cases={args.cases}", f"--cases-dir={_cases_dir(args)}",
        f"--report-dir={report}", {-1: "-qq", 0: "-q", 1: "-v"}[args.verbosity],
    ]
    if args.junit:
        argv.append(f"--report-junit={args.junit}")
    if getattr(args, "model_kernel", None):
        argv.append(f"--model-kernel={args.model_kernel}")
    argv += [f"--device={d}" for d in args.device]
    if getattr(args, "target", None):
        argv.append(f"--target={args.target}")
    if getattr(args, "vm_kernel", None):
        argv.append(f"--vm-kernel={args.vm_kernel}")
        if args.accel:
            argv.append(f"--accel={args.accel}")
    if args.jobs:
        argv += ["-n", args.jobs]
    if getattr(args, "case_timeout", None) is not None:
        argv.append(f"--case-timeout={args.case_timeout!r}")
    if getattr(args, "record_verified", False):
        argv.append("--record-verified")
    if getattr(args, "kernel_lines", None):
        argv.append(f"--kernel-lines={args.kernel_lines}")
        if args.per_case:
            argv.append("--kernel-lines-per-case")
    return int(pytest.main(argv))


def cmd_vm(args: argparse.Namespace) -> int:
    """Boot the kernel under test in QEMU and run the corpus on it and on the model."""
    if (args.per_case or args.merge) and not args.coverage:
        print("vfio-conformance: --per-case and --merge go with --coverage", file=sys.stderr)
        return USAGE_ERROR
    missing = [m for m in args.merge if not Path(m).is_file()]
    if missing:
        print(f"vfio-conformance: --merge {missing[0]}: no such file", file=sys.stderr)
        return USAGE_ERROR
    kernel = kernel_image(args.kernel, coverage=args.coverage, series=args.series)
    if kernel is None:
        return ENVIRONMENT
    args.vm_kernel = str(kernel)
    if not args.coverage:
        return cmd_run(args)
    import shutil
    import tempfile

    from .coverage.kernel_lines import write_reports
    from .kernel.gcov import CoverageError, coverage_build
    from .kernel.lcov import InfoError, read_info
    from .runner.kernel_lines import load_partials

    try:
        _build, source, _dirs = coverage_build(kernel)
    except CoverageError as e:
        print(f"vfio-conformance: {e}", file=sys.stderr)
        return ENVIRONMENT
    try:   # before the run, not after it
        merge = {Path(m): read_info(Path(m).read_text(), source, m) for m in args.merge}
    except (InfoError, OSError, UnicodeDecodeError) as e:
        print(f"vfio-conformance: --merge: {e}", file=sys.stderr)
        return USAGE_ERROR
    parts = Path(tempfile.mkdtemp(prefix="vfio-kernel-lines-"))
    try:
        args.kernel_lines = str(parts)
        code = cmd_run(args)
        shares = sorted(parts.glob("lines-*.json"))
        if not shares:
            print("vfio-conformance: --coverage: no guest's counters were read", file=sys.stderr)
            return code or ENVIRONMENT
        for line in write_reports(load_partials(shares), kernel, Path(args.report), merge):
            print(line, file=sys.stderr if line.startswith("vfio-conformance:") else sys.stdout)
    finally:
        shutil.rmtree(parts, ignore_errors=True)
    return code


def cmd_validate(args: argparse.Namespace) -> int:
    from .cases.loader import Loader

    cases, errors = Loader(_cases_dir(args)).load_all(args.cases)
    for e in errors:
        print(e, file=sys.stderr)
    if not cases and not errors:
        print(f"vfio-conformance: no case matched --cases {args.cases!r} under {_cases_dir(args)}", file=sys.stderr)
        return NO_MATCH
    if args.verbosity > 0:
        for c in cases:
            print(f"ok {c.test_id} ({c.path}:{c.line})")
    per_area = Counter(c.area for c in cases)
    unverified = sum(1 for c in cases if not c.kernel_verified)
    print(f"{len(cases)} cases ({', '.join(f'{a} {n}' for a, n in sorted(per_area.items()))}); "
          f"{len(errors)} malformed files; {unverified} never run on a real kernel")
    return FAILED if errors else OK


def cmd_list(args: argparse.Namespace) -> int:
    from .cases.loader import Loader

    cases, errors = Loader(_cases_dir(args)).load_all(args.cases)
    for c in cases if args.verbosity >= 0 else []:
        verified = ",".join(c.verified_on) or "model only"
        print(f"{c.test_id:60s} {c.area:12s} [{verified}] {c.purpose}"
              + (f"  ({c.path}:{c.line})" if args.verbosity > 0 else ""))
    for e in errors:
        print(e, file=sys.stderr)
    if args.verbosity < 0:
        print(f"{len(cases)} cases; {len(errors)} malformed files")
    return FAILED if errors else OK


def cmd_coverage(args: argparse.Namespace) -> int:
    from .cases.loader import Loader
    from .coverage import build_for
    from .coverage.render import dump_json, markdown, summary, text

    series = list(SERIES) if args.series == "all" else [args.series]
    if args.ksrc and len(series) > 1:
        print("vfio-conformance: --ksrc is one series' tree: give --series too", file=sys.stderr)
        return USAGE_ERROR
    cases, errors = Loader(_cases_dir(args)).load_all(args.cases)
    for e in errors:
        print(e, file=sys.stderr)
    report = Path(args.report)
    report.mkdir(parents=True, exist_ok=True)
    for s in series:
        m = build_for(cases, s, Path(args.ksrc) if args.ksrc else None)
        # One series (or -v): the table; every series: each one's summary (the tables are in the files);
        # -q: the summary's first line.
        if args.verbosity < 0:
            print(summary(m)[0])
        else:
            sys.stdout.write(text(m) if len(series) == 1 or args.verbosity > 0 else "\n".join(summary(m)) + "\n\n")
        md, js = report / f"coverage-{s}.md", report / f"coverage-{s}.json"
        md.write_text(markdown(m))
        js.write_text(dump_json(m))
        print(f"vfio-conformance: wrote {md} and {js}", file=sys.stderr)
    return FAILED if errors else OK


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vfio-conformance")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "(not installed)"


def _jobs(text: str) -> str:
    """pytest-xdist's -n: "auto" or a number of workers of at least 1."""
    if text == "auto" or (text.isdigit() and int(text) >= 1):
        return text
    raise argparse.ArgumentTypeError(f"{text!r}: a number of workers of at least 1, or auto")


def cmd_fuzz(args: argparse.Namespace) -> int:
    """Differential fuzzing: generated iommufd and VFIO sequences on kernel and model in lockstep."""
    from .runner import interrupts

    with interrupts.deferred():   # Ctrl-C and SIGTERM stop it between two sequences
        return _fuzz_command(args)


def _fuzz_command(args: argparse.Namespace) -> int:
    from .fuzz import MACHINE_PROFILES, PROFILES

    profile = PROFILES[args.profile]
    if args.coverage and not args.vm:
        print("vfio-conformance: --coverage reads a gcov kernel's counters in the guest: give --vm too",
              file=sys.stderr)
        return USAGE_ERROR
    kernel = kernel_image(args.kernel, coverage=args.coverage, series=args.series) if args.vm else None
    if args.vm and kernel is None:
        return ENVIRONMENT
    coverage = None
    if args.coverage and kernel is not None:
        from .kernel.gcov import CoverageError

        try:
            coverage = _CoverageRun(kernel)
        except CoverageError as e:
            print(f"vfio-conformance: {e}", file=sys.stderr)
            return ENVIRONMENT
    machines = list(MACHINE_PROFILES) if args.machine == "all" else [args.machine]
    share = args.duration / len(machines) if args.duration else None
    code = 0
    from .fuzz.outcomes import FuzzResults
    from .report import write_junit_and_ktap

    results = FuzzResults(machines, profile.name)
    Path(args.report).mkdir(parents=True, exist_ok=True)
    (Path(args.report) / "fuzz-kcov.md").unlink(missing_ok=True)   # this run's table only
    args.ktap_written = Path(args.report) / "fuzz.ktap"
    try:
        for kind in machines:
            try:
                code = max(code, _fuzz_one(args, kind, kernel, profile, share, coverage, results))
            except KeyboardInterrupt:   # while its target was set up
                print("fuzz: interrupted", file=sys.stderr)
                results.stopped(kind, "interrupted", f"interrupted while the {kind} machine's target was set up")
                return INTERRUPTED
            if code not in (OK, FAILED):
                return code
    finally:
        for written in write_junit_and_ktap(results.all_outcomes(), Path(args.report), "fuzz",
                                            results.run_state()):
            print(f"fuzz: wrote {written}", file=sys.stderr)
    if coverage is not None:
        coverage.write(Path(args.report), ", ".join(machines))
    if kernel is not None and (args.faults if args.faults is not None else profile.name == "nightly"):
        # The nightly profile ends with fault injection over the corpus's IOAS and device cases.
        code = max(code, _faults(kernel, args.accel, resources.cases_dir(), FAULT_CASES, 400,
                                 Path(args.report), _progress(args)))
    return code


class _CoverageRun:
    """Kernel line coverage over the machines' runs (``fuzz --vm --coverage``)."""

    def __init__(self, kernel: Path):
        from .kernel import gcov

        self.total: gcov.Coverage = {}
        self.build, self.source, self.dirs = gcov.coverage_build(kernel)

    def start(self, backend: Any) -> None:
        backend.gcov_collect(reset=True)   # what booting and probing ran is not the fuzzer's

    def collect(self, backend: Any, kind: str) -> None:
        from .kernel import gcov

        cov = gcov.line_coverage(self.build, self.source, backend.gcov_collect())
        hit, lines = sum(len(f.hit) for f in cov.values()), sum(len(f.lines) for f in cov.values())
        print(f"fuzz: {kind}: kernel lines hit {hit} of {lines} in {', '.join(self.dirs)}", file=sys.stderr)
        gcov.merge_into(self.total, cov)

    def write(self, report: Path, machines: str) -> None:
        from .coverage import kernel_lines
        from .kernel import gcov, lcov

        report.mkdir(parents=True, exist_ok=True)
        title = f"Kernel lines hit by fuzzing ({machines})"
        targets = ["## Targets (issue 13)", "", *kernel_lines.target_table(self.total, fuzz=True), ""]
        (report / "kernel-coverage.md").write_text(gcov.markdown(self.total, title, targets))
        (report / "kernel-coverage.json").write_text(gcov.to_json(self.total) + "\n")
        # The lines themselves, for `vm --coverage --merge` and lcov's tools.
        (report / "kernel-coverage.info").write_text(lcov.write_info(self.total, self.source, "fuzz"))
        for t in kernel_lines.TARGETS:
            hit, lines = t.figures(self.total)
            print(f"fuzz: coverage {t.label}: {100.0 * hit / lines if lines else 0:.1f}% of {lines} lines"
                  f" (goal {t.fuzz_goal:.0f}%)")
        print(f"fuzz: wrote {report / 'kernel-coverage.md'} and kernel-coverage.info", file=sys.stderr)


def _fuzz_one(args: argparse.Namespace, kind: str, kernel: Path | None, profile: Any, duration: float | None,
              coverage: _CoverageRun | None, results: Any) -> int:
    """One machine's run on its target (``vfio``: the vIOMMU guest; ``iommufd``: the mock guest)."""
    from .fuzz import MACHINE_PROFILES, fuzz
    from .fuzz import targets as t

    try:
        if kernel is not None:
            target = t.vm_target(kernel, MACHINE_PROFILES[kind], accel=args.accel)
        elif args.backend == "both":
            target = t.host_target(tuple(args.device))
        else:
            target = t.model_target()
    except (OSError, RuntimeError) as e:
        print(f"vfio-conformance: cannot set up the fuzz target: {e}", file=sys.stderr)
        results.stopped(kind, "refused", f"cannot set up the fuzz target: {e}")
        return ENVIRONMENT
    progress = _progress(args)
    progress(f"fuzz: the {kind} machine, {profile.name} profile, on {target.kernel} vs the model"
             + (f", {duration:.0f} s" if duration else ""))
    try:
        if coverage is not None:
            coverage.start(target.lockstep.backends[0])
        guide = _kcov_guide(args, target.lockstep.backends[0], kernel is not None, progress)
        report = fuzz(target.lockstep, profile, seed=args.seed, duration_s=duration, examples=args.examples,
                      out_dir=Path(args.out or resources.regressions_dir()),
                      database_dir=Path(args.db) if args.db else None,
                      kernel=target.kernel, mock_domains=target.mock_domains, after_step=target.after_step,
                      progress=progress, machine_kind=kind, kcov=guide)
        if guide is not None:
            table = Path(args.report) / "fuzz-kcov.md"
            with table.open("a") as out:
                out.write(guide.log.markdown(f"Kernel PCs reached by the {kind} machine (KCOV)") + "\n")
            print(f"fuzz: wrote {table}", file=sys.stderr)
        if coverage is not None:
            coverage.collect(target.lockstep.backends[0], kind)
    except KeyboardInterrupt:
        print("fuzz: interrupted", file=sys.stderr)
        results.stopped(kind, "interrupted", f"interrupted while the {kind} machine ran")
        return INTERRUPTED
    except RuntimeError as e:   # no function for a topology role the machine needs
        print(f"fuzz: the {kind} machine cannot run on {target.kernel}: {e}"
              + ("; skipped" if args.machine == "all" else ""), file=sys.stderr)
        if args.machine == "all":
            results.skipped(kind, f"cannot run on {target.kernel}: {e}")
            return OK
        results.stopped(kind, "refused", f"the {kind} machine cannot run on {target.kernel}: {e}")
        return ENVIRONMENT
    finally:
        target.close()
    results.finished(kind, report, target.kernel)
    print(f"fuzz: {kind}: {report.line()}; seeds {report.seeds[0] if report.seeds else '-'}"
          f"..{report.seeds[-1] if report.seeds else '-'}")
    for f in report.findings:
        print(f"fuzz: divergence (seed {f.seed}, {len(f.steps)} steps): {f.summary}")
        if args.verbosity > 0:
            for i, step in enumerate(f.steps, 1):
                print(f"fuzz:   {i:2d}. {step.get('ioctl', step)}")
        if f.case:
            print(f"fuzz: wrote {f.case}; re-run it with: vfio-conformance vm --cases 'regressions/{f.case.name}'")
    return FAILED if report.findings else OK


def _kcov_guide(args: argparse.Namespace, backend: Any, vm: bool, progress: Any) -> KcovGuide | None:
    """Coverage guidance (fuzz/kcov.py): on by default with --vm when the guest has KCOV."""
    if args.kcov is False or (args.kcov is None and not vm):
        return None
    from .fuzz.kcov import KcovGuide

    guide = KcovGuide(backend, steer=not args.kcov_unguided)
    why = guide.start()
    if why:
        progress(f"fuzz: no coverage guidance: {why}")
        return None
    progress("fuzz: kernel coverage (KCOV) counted, steering nothing" if args.kcov_unguided else
             "fuzz: coverage guidance on (KCOV): sequences that reach new kernel code are preferred")
    return guide


def _progress(args: argparse.Namespace) -> Any:
    """Where progress lines go: stderr, or nowhere with -q."""
    if args.verbosity < 0:
        return lambda line: None
    return lambda line: print(line, file=sys.stderr)


def _faults(kernel: Path, accel: str | None, cases_dir: Path, patterns: list[str], limit: int, report_dir: Path,
            progress: Any) -> int:
    from .cases.loader import Loader
    from .fuzz.faults import FaultReport, run_faults
    from .fuzz.outcomes import fault_outcomes
    from .report import write_junit_and_ktap
    from .runner.run_state import RunState
    from .runner.target import KernelTarget, profile_for

    cases: list[Any] = []
    for pattern in patterns:
        found, errors = Loader(cases_dir).load_all(pattern)
        for e in errors:
            print(e, file=sys.stderr)
        cases += found
    target = KernelTarget(kernel, accel)

    def kernel_for(case: Any) -> tuple[Any, Any]:
        guest = target.guest(profile_for(case))
        return guest.kernel, guest.trouble

    def lost(case: Any) -> str:
        return target.discard(profile_for(case))

    report, state = FaultReport(), RunState(planned=len(cases))
    try:
        run_faults(cases, kernel_for, limit=limit, progress=progress,
                   lost=lost, into=report)
    except KeyboardInterrupt:
        print("faults: interrupted", file=sys.stderr)
        state = RunState("interrupted", "KeyboardInterrupt (Ctrl-C or SIGTERM)", len(cases))
    except RuntimeError as e:
        print(f"faults: {e}", file=sys.stderr)
        state = RunState("refused", str(e), len(cases))
    finally:
        target.close()
        for written in write_junit_and_ktap(fault_outcomes(cases, report, state), report_dir, "faults", state):
            print(f"faults: wrote {written}", file=sys.stderr)
    if state.stopped_early:
        return INTERRUPTED if state.how == "interrupted" else ENVIRONMENT
    (report_dir / "faults.md").write_text(report.markdown())
    print(f"faults: {report.summary()}")
    for p in report.problems:
        print(f"faults: PROBLEM {p}")
    print(f"faults: wrote {report_dir / 'faults.md'}", file=sys.stderr)
    return FAILED if report.problems else OK


def cmd_faults(args: argparse.Namespace) -> int:
    """Fault injection (fail-nth) over corpus cases on the kernel in the test VM."""
    kernel = kernel_image(args.kernel, series=args.series)
    if kernel is None:
        return ENVIRONMENT
    args.ktap_written = Path(args.report) / "faults.ktap"
    return _faults(kernel, args.accel, _cases_dir(args), args.cases or FAULT_CASES, args.limit,
                   Path(args.report), _progress(args))


def cmd_restore(args: argparse.Namespace) -> int:
    from .backends.sysfs_state import default_state_file, restore_from_state_file

    path = Path(args.state_file) if args.state_file else default_state_file()
    if not path.exists():
        print(f"vfio-conformance: nothing to restore ({path} does not exist)")
        return OK
    failures = restore_from_state_file(path)
    for f in failures:
        print(f"vfio-conformance: could not restore: {f}", file=sys.stderr)
    if not failures:
        print(f"vfio-conformance: restored every driver binding and SR-IOV setting recorded in {path}")
    return ENVIRONMENT if failures else OK


def cmd_kernel_build(args: argparse.Namespace) -> int:
    from .kernel import build

    source = Path(args.source) if args.source else None
    fragment = Path(args.fragment) if args.fragment else None
    try:
        if args.print_path:
            image = build.cached_kernel(source, fragment, args.coverage, sanitizers=args.sanitizers,
                                        series=args.series)
            if image is None:
                print("vfio-conformance: no cached kernel for these inputs (run without --print-path to build)",
                      file=sys.stderr)
                return NO_MATCH
        else:
            image = build.ensure_kernel(source, args.jobs, args.force, fragment=fragment, coverage=args.coverage,
                                        sanitizers=args.sanitizers, series=args.series)
    except build.KernelBuildError as e:
        print(f"vfio-conformance: {e}", file=sys.stderr)
        return ENVIRONMENT
    print(image)
    return OK


def _kernel_options(sp: argparse.ArgumentParser, kernel_help: str) -> None:
    """--kernel, or --series: which cached (or built) test kernel when no --kernel."""
    which = sp.add_mutually_exclusive_group()
    which.add_argument("--kernel", default=None, help=kernel_help)
    which.add_argument("--series", choices=tuple(SERIES), default=None,
                       help="the kernel series whose test kernel to use (default 6.12)")


def _ktap_option(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--ktap", default=None, metavar="PATH",
                    help="also write the KTAP report to PATH; '-': print it on stdout, like a kselftest, "
                         "and everything else on stderr")
class _Command(ArgumentParser):
    """A subcommand: each has -q and -v, with one meaning everywhere."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        loud = self.add_mutually_exclusive_group()
        loud.add_argument("-q", "--quiet", dest="verbosity", action="store_const", const=-1, default=0,
                          help="only errors and the summary line")
        loud.add_argument("-v", "--verbose", dest="verbosity", action="store_const", const=1,
                          help="more detail: a line per case, the steps of a divergence")


def parser() -> argparse.ArgumentParser:
    from .runner.deadline import DEFAULT_KERNEL_TIMEOUT, DEFAULT_MODEL_TIMEOUT, case_timeout

    timeout_help = (f"a case running longer on a backend fails, naming its step (default {DEFAULT_MODEL_TIMEOUT:g} "
                    f"on the model, {DEFAULT_KERNEL_TIMEOUT:g} with a kernel; 0: no limit)")
    p = ArgumentParser(prog="vfio-conformance", description=__doc__, epilog=table(),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Command)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--cases", default="**/*.yaml", help="glob of case files under the cases folder")
        sp.add_argument("--cases-dir", default=None, help="cases folder (default: the bundled corpus)")

    r = sub.add_parser("run", help="run the corpus and write reports")
    common(r)
    r.add_argument("--backend", choices=("model", "kernel", "both"), default="model")
    r.add_argument("--model-kernel", default=None, metavar="RELEASE",
                   help="with --backend model: the kernel release the model mirrors, e.g. 7.2.13 (default 6.12.117)")
    r.add_argument("--junit", default=None, help="JUnit XML of the results (default REPORT/results.xml)")
    _ktap_option(r)
    r.add_argument("--report", default="reports", help="folder for the reports (default reports/)")
    r.add_argument("--device", action="append", default=[], metavar="BDF",
                   help="PCI function the kernel backend may touch (repeatable)")
    r.add_argument("--target", default=None, metavar="ssh://[user@]host[:port]/checkout",
                   help="run the kernel side on that host through the agent (default: this host)")
    r.add_argument("-n", "--jobs", type=_jobs, default=None, help="parallel workers (pytest-xdist), e.g. auto")
    r.add_argument("--case-timeout", type=case_timeout, default=None, metavar="SECONDS", help=timeout_help)
    r.add_argument("--record-verified", action="store_true",
                   help="with --backend both: add the kernel's release to verified_on of every case file that "
                        "passed on it")
    r.set_defaults(func=cmd_run)

    vm = sub.add_parser("vm", help="boot the kernel under test in QEMU; run every case on it and on the model")
    common(vm)
    _kernel_options(vm, "bzImage (default: the --series test kernel: $VFIO_CONFORMANCE_KERNEL[_X_Y], else built "
                        "or reused from the cache)")
    vm.add_argument("--backend", choices=("both", "kernel"), default="both")
    vm.add_argument("--accel", choices=("auto", "kvm", "tcg"), default=None)
    vm.add_argument("--junit", default=None, help="JUnit XML of the results (default REPORT/results.xml)")
    _ktap_option(vm)
    vm.add_argument("--report", default="reports", help="folder for the reports (default reports/)")
    vm.add_argument("-n", "--jobs", type=_jobs, default=None, help="parallel workers, each with its own guests")
    vm.add_argument("--case-timeout", type=case_timeout, default=None, metavar="SECONDS", help=timeout_help)
    vm.add_argument("--record-verified", action="store_true",
                    help="add the kernel's release to verified_on of every case file that passed on it")
    vm.add_argument("--coverage", action="store_true",
                    help="on the gcov test kernel (kernel build --coverage): the kernel lines the corpus reached, "
                         "per directory, file, function and ioctl handler (REPORT/kernel-coverage.md, .json, "
                         ".info and the HTML pages in REPORT/kernel-coverage/)")
    vm.add_argument("--per-case", action="store_true",
                    help="with --coverage: also which lines each case reached (REPORT/kernel-lines-by-case.json; "
                         "the counters are read and zeroed after every case)")
    vm.add_argument("--merge", action="append", default=[], metavar="INFO",
                    help="with --coverage: add the lines of an lcov tracefile of the same kernel, e.g. "
                         "fuzz --vm --coverage's kernel-coverage.info (repeatable)")
    vm.set_defaults(func=cmd_vm, device=[])

    v = sub.add_parser("validate", help="load every case file and report malformed ones")
    common(v)
    v.set_defaults(func=cmd_validate)

    ls = sub.add_parser("list", help="list cases and whether they ever ran on a kernel")
    common(ls)
    ls.set_defaults(func=cmd_list)
    fz = sub.add_parser("fuzz", help="differential fuzzing of the iommufd and VFIO uAPIs, kernel and model in lockstep")
    fz.add_argument("--vm", action="store_true",
                    help="the kernel side in QEMU guests (iommufd: the mock guest; vfio: the vIOMMU guest)")
    # The fuzz machines' registry, spelled out so the parser does not import Hypothesis (a test keeps them equal).
    fz.add_argument("--machine", choices=("all", "iommufd", "vfio"), default="all",
                    help="which state machine (default all, one after the other, --duration shared)")
    _kernel_options(fz, "bzImage for --vm (default: the --series test kernel)")
    fz.add_argument("--accel", choices=("auto", "kvm", "tcg"), default=None)
    fz.add_argument("--backend", choices=("model", "both"), default="model",
                    help="without --vm: the model alone, or this host's kernel and the model (root)")
    fz.add_argument("--device", action="append", default=[], metavar="BDF", help="with --backend both")
    fz.add_argument("--profile", choices=("ci", "nightly"), default="ci",
                    help="ci: deterministic, bounded; nightly: until --duration, with an example database")
    fz.add_argument("--duration", type=parse_duration, default=None, metavar="TIME", help="e.g. 10m, 2h")
    fz.add_argument("--seed", type=int, default=None, help="first round's seed (default: ci 0, nightly random)")
    fz.add_argument("--examples", type=int, default=None, help="sequences per round")
    fz.add_argument("--out", default=None,
                    help="where regression cases go (default: cases/regressions in a checkout, else "
                         "reports/regressions)")
    fz.add_argument("--db", default=None, metavar="DIR", help="Hypothesis example database (nightly)")
    fz.add_argument("--report", default="reports",
                    help="where fuzz.xml, fuzz.ktap (and faults.md, faults.xml, faults.ktap) go (default reports/)")
    _ktap_option(fz)
    fz.add_argument("--coverage", action="store_true",
                    help="with --vm: on the gcov test kernel (kernel build --coverage), report the kernel lines "
                         "of drivers/iommu/iommufd and drivers/vfio the run hit (reports/kernel-coverage.md; "
                         ".info: for vm --coverage --merge)")
    fz.add_argument("--kcov", action=argparse.BooleanOptionalAction, default=None,
                    help="coverage guidance: each sequence's new kernel PCs (KCOV in the guest) steer Hypothesis; "
                         "their growth goes to fuzz-kcov.md in --report (default: on with --vm when the guest has "
                         "/sys/kernel/debug/kcov)")
    fz.add_argument("--kcov-unguided", action="store_true",
                    help="with --kcov: count the kernel PCs (fuzz-kcov.md, progress lines) but steer nothing, "
                         "the baseline to measure the guidance against")
    fz.add_argument("--faults", action=argparse.BooleanOptionalAction, default=None,
                    help="with --vm: then fault injection over ioas/ and device/ cases (default: nightly only)")
    fz.set_defaults(func=cmd_fuzz)

    fa = sub.add_parser("faults", help="fault injection (fail-nth) over corpus cases on the kernel in the VM")
    fa.add_argument("--cases", action="append", default=None, metavar="GLOB",
                    help="case files (repeatable; default: ioas/** and device/**)")
    fa.add_argument("--cases-dir", default=None, help="cases folder (default: the bundled corpus)")
    _kernel_options(fa, "bzImage (default: the --series test kernel)")
    fa.add_argument("--accel", choices=("auto", "kvm", "tcg"), default=None)
    fa.add_argument("--limit", type=int, default=400, help="fault sites per step at most (default 400)")
    fa.add_argument("--report", default="reports",
                    help="write faults.md, faults.xml and faults.ktap here (default reports/)")
    _ktap_option(fa)
    fa.set_defaults(func=cmd_faults)

    cv = sub.add_parser("coverage", help="the coverage matrix: checks per ioctl, errnos per handler")
    common(cv)
    cv.add_argument("--series", default="all", choices=(*SERIES, "all"),
                    help="the kernel series whose uAPI, cases and handlers the matrix is of (default: all, one "
                         "matrix each)")
    cv.add_argument("--report", default="reports",
                    help="write coverage-<series>.md and coverage-<series>.json here (default reports/)")
    cv.add_argument("--ksrc", default=None, metavar="DIR",
                    help="with one --series: that series' source tree for the handlers' errnos (default: "
                         "find_source's, e.g. Debian's linux-source-6.12, or 7.2's from kernel build --series 7.2)")
    cv.set_defaults(func=cmd_coverage)
    compare_parser(sub)
    mutate_parser(sub)
    rs = sub.add_parser("restore", help="put back the PCI state a crashed kernel-backend run changed")
    rs.add_argument("--state-file", default=None, help="the state file (default: the kernel backend's)")
    rs.set_defaults(func=cmd_restore)

    k = sub.add_parser("kernel", help="the test kernel booted in QEMU")
    ksub = k.add_subparsers(dest="kernel_command", required=True)
    kb = ksub.add_parser("build", help="build the test kernel (or find it in the cache); print its bzImage path",
                         description="Build the x86_64 test kernel (docs/kernel.md) unless cached, and print "
                                     "the path of its bzImage on stdout (only that).")
    which = kb.add_mutually_exclusive_group()
    which.add_argument("--source", metavar="DIR", default=None,
                       help="Linux source tree to build (default: the --series Debian source)")
    which.add_argument("--series", choices=tuple(SERIES), default=None,
                       help="build Debian's linux-source-SERIES (default 6.12; 7.2 is fetched from Debian unstable "
                            "into the cache)")
    kb.add_argument("--jobs", "-j", type=int, default=None, metavar="N", help="make -jN (default: CPUs + 1)")
    kb.add_argument("--fragment", metavar="FILE", default=None,
                    help="Kconfig fragment merged over x86_64_defconfig "
                         "(default: harness/kernel/config/vfio-conformance.config)")
    kb.add_argument("--coverage", action="store_true",
                    help="gcov for drivers/iommu/iommufd, drivers/vfio, drivers/vfio/pci (a separate kernel)")
    kb.add_argument("--sanitizers", action="store_true",
                    help="KASAN, UBSAN, lockdep (PROVE_LOCKING) and debug objects "
                         "(harness/kernel/config/sanitizers.config; a separate kernel, for nightly runs)")
    kb.add_argument("--print-path", action="store_true",
                    help="print the cached bzImage's path, or exit 5; never build")
    kb.add_argument("--force", action="store_true", help="rebuild even when cached")
    kb.set_defaults(func=cmd_kernel_build)
    return p


HARD_EXIT = "vfio-conformance SIGTERM hard exit"
HARD_EXIT_AFTER = 20.0


def _terminated(signum: int, _frame: Any) -> None:
    """SIGTERM unwinds like Ctrl-C (guests stopped, PCI state put back).  Should the unwinding
    itself be stuck (an exception swallowed deep in a library), exit hard 20 s later: QEMU
    dies with us (PR_SET_PDEATHSIG) and `vfio-conformance restore` replays the PCI state.  The
    hard exit is a timer thread, not SIGALRM: a case's own alarm (runner/deadline.py) re-arms
    and cancels that one."""
    if not any(t.name == HARD_EXIT for t in threading.enumerate()):
        timer = threading.Timer(HARD_EXIT_AFTER, os._exit, (128 + signal.SIGTERM,))
        timer.name, timer.daemon = HARD_EXIT, True
        timer.start()
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminated)
    try:
        ktap = getattr(args, "ktap", None)
        if not ktap:
            return int(args.func(args))
        from .report.stream import STDOUT, deliver_ktap, stdout_to_stderr

        with stdout_to_stderr(ktap == STDOUT) as real_stdout:
            code = int(args.func(args))
            problem = deliver_ktap(ktap, getattr(args, "ktap_written", None), real_stdout)
        if problem:
            print(f"vfio-conformance: --ktap: {problem}", file=sys.stderr)
        return code
    except BrokenPipeError:  # `vfio-conformance list | head`
        sys.stderr.close()
        return OK
    except KeyboardInterrupt:
        print("vfio-conformance: interrupted", file=sys.stderr)
        return INTERRUPTED
    except Exception:   # Python's own 1 would read as "a case failed"
        traceback.print_exc()
        print("vfio-conformance: internal error (a bug in the harness)", file=sys.stderr)
        return INTERNAL_ERROR


if __name__ == "__main__":
    sys.exit(main())
