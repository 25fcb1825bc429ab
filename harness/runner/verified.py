"""``--record-verified``: write the kernel release into every case file that passed on it.

A file qualifies when every one of its test ids in the run (each variant) ran on
a kernel and on the model and passed, the two agreeing (or differing only where
the case documents it).  Files with a variant that failed, was skipped or ran on
one backend only are left alone: ``verified_on`` claims conformance.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from ..cases.verified import add_release
from .outcome import CaseOutcome
from .trace import PASS


def record_verified(outcomes: list[CaseOutcome], root: Path) -> tuple[list[Path], list[str]]:
    """(files updated, problems)."""
    by_file: dict[str, list[CaseOutcome]] = defaultdict(list)
    for o in outcomes:
        by_file[o.location.rsplit(":", 1)[0]].append(o)
    updated: list[Path] = []
    problems: list[str] = []
    for loc, outs in sorted(by_file.items()):
        releases = {o.kernel for o in outs}
        if len(releases) != 1 or "" in releases:
            continue
        if not all(o.status == PASS and "model" in o.backends and len(o.backends) == 2 for o in outs):
            continue
        path = Path(loc) if Path(loc).is_absolute() else root / loc
        try:
            if add_release(path, releases.pop()):
                updated.append(path)
        except (OSError, ValueError) as e:
            problems.append(str(e))
    return updated, problems
