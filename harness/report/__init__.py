"""Reports of a run: JUnit XML for CI, KTAP v1 for kselftest tooling, a Markdown report, and the
step-by-step diff as JSON (docs/reports.md says which file is for what).

The renderers are pure (CaseOutcome list and how the run ended in, text out); `write_reports`
puts their output in a folder, each file written whole or not at all.  Only the CLI and the
pytest plugin import this package (docs/architecture.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from ..runner.outcome import CaseOutcome
from ..runner.run_state import RunState
from .junit import render_junit
from .ktap import render_ktap
from .markdown import render_markdown

__all__ = ["FILES", "JUNIT", "KTAP", "render_diff_json", "render_junit", "render_ktap", "render_markdown", "unique",
           "write_atomic", "write_junit_and_ktap", "write_reports"]


def render_diff_json(outcomes: list[CaseOutcome], state: RunState | None = None) -> str:
    """Every case with its side-by-side steps, and how the run ended, for tools (not for CI counts)."""
    run = asdict(state or RunState())
    return json.dumps({"run": run, "cases": [o.to_json() for o in outcomes]}, indent=1, sort_keys=True) + "\n"


JUNIT, KTAP = "results.xml", "results.ktap"
FILES: dict[str, Callable[[list[CaseOutcome], RunState | None], str]] = {
    JUNIT: render_junit,
    KTAP: render_ktap,
    "report.md": render_markdown,
    "diff.json": render_diff_json,
}


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same folder and a rename, so a
    reader sees the old file or the new one, never a half-written one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def unique(outcomes: list[CaseOutcome]) -> list[CaseOutcome]:
    """Drop exact repeats of an outcome (same case, same result), keeping the first.

    pytest hands the plugin a case's recorded properties with the call report and
    again with the teardown report; a report lists each case once."""
    seen: set[str] = set()
    out = []
    for o in outcomes:
        key = json.dumps(o.to_json(), sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            out.append(o)
    return out


def write_junit_and_ktap(outcomes: list[CaseOutcome], folder: Path, stem: str, state: RunState) -> list[Path]:
    """`<stem>.xml` and `<stem>.ktap` in `folder` (fuzz, faults), both rendered before either is written."""
    texts = {f"{stem}.xml": render_junit(outcomes, state), f"{stem}.ktap": render_ktap(outcomes, state)}
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        write_atomic(folder / name, text)
    return [folder / name for name in texts]


def write_reports(outcomes: list[CaseOutcome], folder: Path, state: RunState | None = None,
                  junit: Path | None = None) -> list[Path]:
    """Render every report (all before writing any) and write them into `folder`, creating it
    (the JUnit file at `junit` instead, when given).  Exact repeats of an outcome are reported
    once.  Returns the paths written, in the order of FILES."""
    folder = Path(folder)
    outcomes = unique(outcomes)
    texts = {name: render(outcomes, state) for name, render in FILES.items()}
    paths = []
    for name, text in texts.items():
        path = Path(junit) if name == JUNIT and junit else folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, text)
        paths.append(path)
    return paths
