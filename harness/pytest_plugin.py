"""pytest integration: one test per case, ids equal to case ids.

Options: --backend model|kernel|both, --model-kernel RELEASE (the release the
model mirrors when it runs alone), --cases GLOB (relative to the cases folder),
--seed N, --device BDF (kernel backends touch only these), and
--report-dir DIR (JUnit, KTAP, Markdown and diff.json written at the end,
merged across pytest-xdist workers; --report-junit PATH moves the JUnit file).
A run that stops early (Ctrl-C, a backend that cannot be set up, a crash of
the harness) says so in each of them (harness/runner/run_state.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from . import resources
from .cases.case import Case, CaseError
from .cases.loader import Loader
from .exitcodes import ENVIRONMENT, USAGE_ERROR
from .runner.deadline import DEFAULT_KERNEL_TIMEOUT, DEFAULT_MODEL_TIMEOUT, case_timeout
from .runner.outcome import CaseOutcome, malformed_outcome, unfinished
from .runner.session import BACKENDS, Session
from .runner.target import TargetUnusable
from .runner.trace import ERROR, FAIL, SKIP

_OUTCOME = pytest.StashKey[CaseOutcome]()
# Outcomes reported to this process (with xdist: the controller hears every worker).
_outcomes: list[CaseOutcome] = []
# What ended the session early, if anything did (KeyboardInterrupt, pytest.exit's Exit, an internal error).
_stopped: list[BaseException] = []


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("vfio-conformance")
    g.addoption("--backend", choices=BACKENDS, default="model", help="where cases run (default: model)")
    g.addoption("--cases", default="**/*.yaml", help="glob of case files under the cases folder")
    g.addoption("--cases-dir", default=None, help="the cases folder (default: the bundled corpus)")
    g.addoption("--seed", type=int, default=0, help="seed for randomised runs (fuzzing)")
    g.addoption("--device", action="append", default=[], metavar="BDF",
                help="PCI function the kernel backend may touch (repeatable)")
    g.addoption("--report-dir", default=None, help="write the JUnit, KTAP, Markdown and JSON reports here")
    g.addoption("--report-junit", default=None, metavar="PATH",
                help="the JUnit report goes here instead of REPORT_DIR/results.xml")
    g.addoption("--target", default=None, metavar="ssh://[user@]host[:port]/checkout",
                help="the kernel backend runs on that host, through the agent over ssh")
    g.addoption("--vm-kernel", default=None, metavar="BZIMAGE",
                help="run the kernel side in QEMU guests booted from this kernel (with --backend both|kernel)")
    g.addoption("--model-kernel", default=None, metavar="RELEASE",
                help="with --backend model: the kernel release the model mirrors (e.g. 7.2.13; default 6.12.117)")
    g.addoption("--accel", choices=("auto", "kvm", "tcg"), default=None, help="QEMU accelerator (default: auto)")
    g.addoption("--case-timeout", type=case_timeout, default=None, metavar="SECONDS",
                help=f"a case that runs longer on a backend fails, naming its step (default: "
                     f"{DEFAULT_MODEL_TIMEOUT:g} on the model, {DEFAULT_KERNEL_TIMEOUT:g} with a kernel; 0: no limit)")
    g.addoption("--kernel-lines", default=None, metavar="DIR",
                help="with --vm-kernel on a gcov kernel: save the kernel lines the run reached in DIR, one file "
                     "per process (`vfio-conformance vm --coverage` merges them)")
    g.addoption("--kernel-lines-per-case", action="store_true",
                help="with --kernel-lines: also which lines each case reached (counters zeroed before every case)")
    g.addoption("--record-verified", action="store_true",
                help="add the kernel release to verified_on of every case file whose cases all passed on "
                     "kernel and model")


def timeout_of(config: pytest.Config) -> float | None:
    """The limit per case and backend this run has (None: none)."""
    value = config.getoption("--case-timeout")
    if value is None:
        model_only = config.getoption("--backend") == "model" and not config.getoption("--vm-kernel")
        return DEFAULT_MODEL_TIMEOUT if model_only else DEFAULT_KERNEL_TIMEOUT
    return float(value) or None


def cases_root(config: pytest.Config) -> Path:
    opt = config.getoption("--cases-dir")
    return Path(opt) if opt else resources.cases_dir()


def load_cases(config: pytest.Config) -> tuple[list[Case], list[CaseError]]:
    cached = getattr(config, "_vfio_cases", None)
    if cached is None:
        cached = Loader(cases_root(config)).load_all(config.getoption("--cases"))
        config._vfio_cases = cached  # type: ignore[attr-defined]
    return cached  # type: ignore[no-any-return]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "case" not in metafunc.fixturenames:
        return
    cases, errors = load_cases(metafunc.config)
    params = [pytest.param(c, id=c.test_id) for c in cases]
    params += [pytest.param(e, id=f"malformed:{Path(e.path).name}") for e in errors]
    metafunc.parametrize("case", params)


@pytest.fixture(scope="session")
def conformance_backends(request: pytest.FixtureRequest) -> Any:
    cfg = request.config
    backend = cfg.getoption("--backend")
    if cfg.getoption("--vm-kernel"):
        if backend == "model":
            pytest.exit("--vm-kernel needs --backend both or kernel", returncode=USAGE_ERROR)
        from .runner.vmtarget import VmTarget

        image = Path(cfg.getoption("--vm-kernel"))
        lines = kernel_lines(cfg, image)
        target = VmTarget(image, backend, cfg.getoption("--accel"), Path(str(cfg.rootpath)), timeout_of(cfg), lines)
        yield target
        target.close()
        if lines is not None:
            lines.save(Path(cfg.getoption("--kernel-lines")) / f"lines-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
                       ".json")
        return
    try:
        session = Session(backend, tuple(cfg.getoption("--device")), cfg.getoption("--target"),
                          cfg.getoption("--model-kernel"), Path(str(cfg.rootpath)), timeout_of(cfg))
    except (OSError, RuntimeError, ValueError) as e:
        pytest.exit(f"cannot set up the {backend} backend: {e}", returncode=ENVIRONMENT)
    yield session


def kernel_lines(cfg: pytest.Config, image: Path) -> Any:
    """The gcov counter reader of --kernel-lines, or None."""
    if not cfg.getoption("--kernel-lines"):
        return None
    from .kernel.gcov import CoverageError
    from .runner.kernel_lines import KernelLines

    try:
        return KernelLines(image, cfg.getoption("--kernel-lines-per-case"))
    except CoverageError as e:
        pytest.exit(f"--kernel-lines: {e}", returncode=ENVIRONMENT)


def run_one(case: Case | CaseError, target: Any, item: pytest.Item) -> None:
    if isinstance(case, CaseError):
        item.stash[_OUTCOME] = malformed_outcome(case)
        pytest.fail(str(case), pytrace=False)
    try:
        outcome = target.run(case)  # a Session, or a VmTarget (which also watches the guest's console)
    except TargetUnusable as e:
        pytest.exit(f"cannot set up the kernel target: {e}", returncode=ENVIRONMENT)
    except Exception as e:
        # A harness or model bug: the case is an error in every report, not missing from them;
        # pytest shows the traceback.
        item.stash[_OUTCOME] = unfinished(case, ERROR, f"the harness raised {type(e).__name__}: {e}")
        raise
    item.stash[_OUTCOME] = outcome
    if outcome.status == SKIP:
        pytest.skip(outcome.reason)
    if outcome.status in (FAIL, ERROR):
        pytest.fail(describe_failure(outcome), pytrace=False)


def describe_failure(o: CaseOutcome) -> str:
    lines = [f"{o.location}: {o.test_id}: {o.purpose}", f"  {o.reason}"]
    for s in o.steps:
        mark = "!!" if s.diverges or s.failures else "  "
        outs = "  ".join(f"{b}: {r}" for b, r in s.outcomes.items())
        lines.append(f"  {mark} {s.index + 1:2d}. line {s.line:<4d} {s.label:<40s} {outs}")
        for b, fs in s.failures.items():
            lines.extend(f"        {b}: {f}" for f in fs)
        if s.where and (s.failures or s.diverges):
            lines.append(f"        model followed {s.where}")
    return "\n".join(lines)


def pytest_configure(config: pytest.Config) -> None:
    _outcomes.clear()
    _stopped.clear()


def pytest_keyboard_interrupt(excinfo: pytest.ExceptionInfo[BaseException]) -> None:
    """Ctrl-C, SIGTERM (the CLI turns it into KeyboardInterrupt) or pytest.exit(): what stopped the run."""
    _stopped.append(excinfo.value)


def pytest_internalerror(excinfo: pytest.ExceptionInfo[BaseException]) -> None:
    _stopped.append(excinfo.value)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Corpus cases run in guests are ``vm``, on any kernel ``kernel`` (so -m "not vm" works)."""
    marks = ([pytest.mark.vm] if config.getoption("--vm-kernel") else []) + (
        [pytest.mark.kernel] if config.getoption("--backend") in ("kernel", "both") else [])
    for item in items:
        if "case" in getattr(item, "fixturenames", ()):
            for mark in marks:
                item.add_marker(mark)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if call.when == "call" and _OUTCOME in item.stash:
        # A plain attribute: pytest-xdist carries it from the worker with the report.
        report.vfio_outcome = json.dumps(item.stash[_OUTCOME].to_json())
    return report


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    data = getattr(report, "vfio_outcome", None)
    if report.when == "call" and data:
        _outcomes.append(CaseOutcome.from_json(json.loads(data)))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    if hasattr(config, "workerinput"):
        return  # xdist worker: the controller writes the reports
    tr = config.pluginmanager.get_plugin("terminalreporter")
    if config.getoption("--record-verified"):
        from .runner.verified import record_verified

        updated, problems = record_verified(_outcomes, Path(str(config.rootpath)))
        if tr is not None:
            tr.write_line(f"vfio-conformance: recorded the kernel release in {len(updated)} case files")
            for problem in problems:
                tr.write_line(f"vfio-conformance: {problem}")
    out = config.getoption("--report-dir")
    if out:
        from .report import write_reports
        from .runner.run_state import run_state, with_not_run

        cases, errors = load_cases(config)
        state = run_state(int(exitstatus), _stopped, len(cases) + len(errors))
        outcomes = with_not_run(sorted(_outcomes, key=lambda o: o.test_id), cases, errors, state)
        junit = config.getoption("--report-junit")
        paths = write_reports(outcomes, Path(out), state, Path(junit) if junit else None)
        if tr is not None:
            for p in paths:
                tr.write_line(f"vfio-conformance: wrote {p}")
