"""pytest integration: one test per case, ids equal to case ids.

Options: --backend model|kernel|both, --model-kernel RELEASE (the release the
model mirrors when it runs alone), --cases GLOB (relative to the cases folder),
--seed N, --device BDF (kernel backends touch only these), and
--report-dir DIR (JUnit diff report, KTAP and Markdown written at the end,
merged across pytest-xdist workers).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .cases.loader import Loader
from .cases.model import Case, CaseError
from .runner.deadline import DEFAULT_KERNEL_TIMEOUT, DEFAULT_MODEL_TIMEOUT, case_timeout
from .runner.outcome import CaseOutcome, unfinished
from .runner.session import BACKENDS, make_backends, run_case
from .runner.trace import ERROR, FAIL, SKIP

_OUTCOME = pytest.StashKey[CaseOutcome]()
# Outcomes reported to this process (with xdist: the controller hears every worker).
_outcomes: list[CaseOutcome] = []


def malformed_outcome(e: CaseError) -> CaseOutcome:
    return CaseOutcome(
        test_id=f"malformed:{Path(e.path).name}", area=Path(e.path).parent.name, purpose="(malformed case file)",
        location=f"{e.path}:{e.line}", source="", verified_on=[], status=ERROR, reason=str(e),
    )


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("vfio-conformance")
    g.addoption("--backend", choices=BACKENDS, default="model", help="where cases run (default: model)")
    g.addoption("--cases", default="**/*.yaml", help="glob of case files under the cases folder")
    g.addoption("--cases-dir", default=None, help="the cases folder (default: <rootdir>/cases)")
    g.addoption("--seed", type=int, default=0, help="seed for randomised runs (fuzzing)")
    g.addoption("--device", action="append", default=[], metavar="BDF",
                help="PCI function the kernel backend may touch (repeatable)")
    g.addoption("--report-dir", default=None, help="write the diff report, KTAP and Markdown here")
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
    return Path(opt) if opt else Path(str(config.rootpath)) / "cases"


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
            pytest.exit("--vm-kernel needs --backend both or kernel", returncode=4)
        from .runner.vmtarget import VmTarget

        target = VmTarget(Path(cfg.getoption("--vm-kernel")), backend, cfg.getoption("--accel"),
                          Path(str(cfg.rootpath)), timeout_of(cfg))
        yield target
        target.close()
        return
    try:
        yield make_backends(backend, tuple(cfg.getoption("--device")), cfg.getoption("--target"),
                            cfg.getoption("--model-kernel"))
    except (OSError, RuntimeError, ValueError) as e:
        pytest.exit(f"cannot set up the {backend} backend: {e}", returncode=3)


def run_one(case: Case | CaseError, backends: Any, item: pytest.Item) -> None:
    if isinstance(case, CaseError):
        item.stash[_OUTCOME] = malformed_outcome(case)
        pytest.fail(str(case), pytrace=False)
    try:
        if hasattr(backends, "run"):  # a VmTarget picks the guest and watches its console
            outcome = backends.run(case)
        else:
            outcome = run_case(case, backends, Path(str(item.config.rootpath)), timeout_of(item.config))
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

        paths = write_reports(sorted(_outcomes, key=lambda o: o.test_id), Path(out))
        if tr is not None:
            for p in paths:
                tr.write_line(f"vfio-conformance: wrote {p}")
