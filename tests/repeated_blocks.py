"""Blocks of case text typed again and again: every run of WINDOW consecutive lines of a case
file's steps, cleanup and variants (comments and blank lines dropped) that stands in MAX_FILES or
more case files.  ``python3 tests/repeated_blocks.py`` lists them, most repeated first."""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WINDOW = 6
MAX_FILES = 3
SECTIONS = ("steps:", "cleanup:", "variants:", "matrix:")
_SHARED = ("fixtures", "macros")


def setup_lines(text: str) -> list[str]:
    """The lines of the sections that set a case up and run it, without comments."""
    out: list[str] = []
    inside = False
    for line in text.splitlines():
        bare = line.split(" #")[0].rstrip()
        if not bare.strip() or bare.lstrip().startswith("#"):
            continue
        if not line.startswith(" "):
            inside = bare.startswith(SECTIONS)
            continue
        if inside:
            out.append(bare)
    return out


def repeated(cases_dir: Path, window: int = WINDOW,
             max_files: int = MAX_FILES) -> list[tuple[tuple[str, ...], list[str]]]:
    where: dict[tuple[str, ...], set[str]] = defaultdict(set)
    for path in sorted(cases_dir.glob("*/*.yaml")):
        if path.parent.name in _SHARED:
            continue
        lines = setup_lines(path.read_text())
        for i in range(len(lines) - window + 1):
            where[tuple(lines[i:i + window])].add(str(path.relative_to(cases_dir)))
    found = [(block, sorted(files)) for block, files in where.items() if len(files) >= max_files]
    return sorted(found, key=lambda x: -len(x[1]))


if __name__ == "__main__":
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "cases"
    for block, files in repeated(root):
        print(f"{len(files)} files: {', '.join(files[:6])}{' ...' if len(files) > 6 else ''}")
        print("\n".join(f"    {line}" for line in block))
