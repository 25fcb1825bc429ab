"""Reports of a run: the diff as JUnit XML, KTAP v1 for kselftest tooling, and a Markdown report.

The renderers are pure (CaseOutcome list in, text out); `write_reports` puts
their output in a folder, each file written whole or not at all.  Only the
CLI and the pytest plugin import this package (docs/architecture.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

from ..runner.outcome import CaseOutcome
from .junit import render_junit
from .ktap import render_ktap
from .markdown import render_markdown

__all__ = ["FILES", "render_junit", "render_ktap", "render_markdown", "unique", "write_atomic", "write_reports"]

FILES = {
    "diff-junit.xml": render_junit,
    "results.ktap": render_ktap,
    "report.md": render_markdown,
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


def write_reports(outcomes: list[CaseOutcome], folder: Path) -> list[Path]:
    """Render every report (all before writing any) and write them into `folder`, creating it.
    Exact repeats of an outcome are reported once.  Returns the paths written, in the order of FILES."""
    folder = Path(folder)
    outcomes = unique(outcomes)
    texts = {name: render(outcomes) for name, render in FILES.items()}
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in texts.items():
        path = folder / name
        write_atomic(path, text)
        paths.append(path)
    return paths
