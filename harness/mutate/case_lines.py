"""Which kernel lines each case reaches: the reader of ``vm --coverage --per-case``'s JSON.

The format: ``{"cases": {case_id: {"drivers/iommu/iommufd/ioas.c": [71, 72, ...], ...}}}``.  The
reader is tolerant: a file may be named by a suffix of its path (``ioas.c``), lines may be
numbers, numeric strings or ``"a-b"`` ranges, a case's value may also be a list of ``"file:line"``
strings, and entries it cannot read are skipped (counted in ``skipped``), never fatal.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def _lines(value: Any) -> set[int]:
    out: set[int] = set()
    for v in value if isinstance(value, list) else [value]:
        if isinstance(v, bool):
            continue
        if isinstance(v, int):
            out.add(v)
        elif isinstance(v, str):
            a, _, b = v.partition("-")
            if a.strip().isdigit() and (not b or b.strip().isdigit()):
                out.update(range(int(a), int(b or a) + 1))
    return out


@dataclass
class CaseLines:
    lines: dict[str, dict[str, set[int]]] = field(default_factory=dict)   # case -> file -> lines
    skipped: int = 0

    @classmethod
    def parse(cls, data: Any) -> CaseLines:
        out = cls()
        cases = data.get("cases") if isinstance(data, dict) else None
        if not isinstance(cases, dict):
            out.skipped += 1
            return out
        for case, files in cases.items():
            per: dict[str, set[int]] = {}
            if isinstance(files, dict):
                for f, ls in files.items():
                    per.setdefault(str(f), set()).update(_lines(ls))
            elif isinstance(files, list):
                for item in files:
                    f, _, ln = str(item).rpartition(":")
                    if f and ln.strip().isdigit():
                        per.setdefault(f, set()).add(int(ln))
                    else:
                        out.skipped += 1
            else:
                out.skipped += 1
                continue
            out.lines[str(case)] = per
        return out

    @classmethod
    def load(cls, path: Path) -> CaseLines:
        return cls.parse(json.loads(Path(path).read_text()))

    def reaching(self, file: str, lines: Iterable[int]) -> set[str]:
        """The cases whose coverage includes one of ``lines`` of ``file`` (a path, or a suffix either way)."""
        wanted = set(lines)
        out = set()
        for case, files in self.lines.items():
            for f, ls in files.items():
                if (f == file or file.endswith("/" + f) or f.endswith("/" + file)) and ls & wanted:
                    out.add(case)
                    break
        return out
