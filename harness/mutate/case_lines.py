"""Which kernel lines each case reaches: ``kernel-lines-by-case.json`` as ``vm --coverage
--per-case`` writes it (harness/coverage/kernel_lines.py ``by_case_json``; the format is in
docs/kernel.md).  Only the cases that passed on the unmutated kernel count: a case that failed
there cannot tell a mutant apart; a case the file does not name at all (written after the
measurement) is not known to miss a line, so the run falls back to static reach for it.  A file
that is not that format, or another version of it, is refused with what is wrong, before
anything is built."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..coverage.kernel_lines import BY_CASE_FORMAT

VERSION = 1


class CaseLinesError(ValueError):
    pass


@dataclass
class CaseLines:
    lines: dict[str, dict[str, set[int]]] = field(default_factory=dict)   # case -> file -> lines
    release: str = ""
    measured: set[str] = field(default_factory=set)     # every case the file names, whatever its status

    @classmethod
    def parse(cls, data: Any, origin: str = "case lines") -> CaseLines:
        if not isinstance(data, dict) or data.get("format") != BY_CASE_FORMAT:
            raise CaseLinesError(f"{origin}: not a {BY_CASE_FORMAT!r} file (vfio-conformance vm --coverage "
                                 "--per-case writes kernel-lines-by-case.json)")
        if data.get("version") != VERSION:
            raise CaseLinesError(f"{origin}: version {data.get('version')!r}, this harness reads {VERSION}")
        cases = data.get("cases")
        if not isinstance(cases, dict):
            raise CaseLinesError(f"{origin}: cases: not an object")
        out = cls(release=str(data.get("release", "")))
        for case, entry in cases.items():
            where = f"{origin}: cases: {case}"
            if not isinstance(entry, dict) or not isinstance(entry.get("lines"), dict):
                raise CaseLinesError(f"{where}: no lines object")
            out.measured.add(str(case))
            if entry.get("status") != "pass":
                continue
            per: dict[str, set[int]] = {}
            for file, lines in entry["lines"].items():
                if not isinstance(lines, list) or not all(isinstance(n, int) and not isinstance(n, bool)
                                                          for n in lines):
                    raise CaseLinesError(f"{where}: lines: {file}: not a list of line numbers")
                per[str(file)] = set(lines)
            out.lines[str(case)] = per
        return out

    @classmethod
    def load(cls, path: Path) -> CaseLines:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CaseLinesError(f"{path}: {e}") from None
        return cls.parse(data, str(path))

    def reaching(self, file: str, lines: Iterable[int]) -> set[str]:
        """The cases whose lines of ``file`` (relative to the source tree) include one of ``lines``."""
        wanted = set(lines)
        return {case for case, files in self.lines.items() if files.get(file, set()) & wanted}
