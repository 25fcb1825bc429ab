"""Record in a case file that it passed on a kernel release (its ``verified_on:`` line)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

_LINE = re.compile(r"^verified_on:[ \t]*(\[.*\])[ \t]*(#.*)?$", re.M)


def add_release(path: Path, release: str) -> bool:
    """Add ``release`` to the flow-style ``verified_on: [...]`` line of ``path``.

    Returns False when it was already there; ValueError when the file has no
    such single line (a block-style list is left for a person to edit)."""
    text = path.read_text()
    m = _LINE.search(text)
    if m is None:
        raise ValueError(f"{path}: no one-line 'verified_on: [...]' to add {release} to")
    releases = yaml.safe_load(m.group(1)) or []
    if release in (str(r) for r in releases):
        return False
    releases = sorted({str(r) for r in releases} | {release}, key=_version_key)
    line = "verified_on: [" + ", ".join(f'"{r}"' for r in releases) + "]" + (f"  {m.group(2)}" if m.group(2) else "")
    path.write_text(text[:m.start()] + line + text[m.end():])
    return True


def _version_key(release: str) -> tuple[tuple[int, str], ...]:
    return tuple((int(p), "") if p.isdigit() else (-1, p) for p in re.split(r"[.\-+]", release))
