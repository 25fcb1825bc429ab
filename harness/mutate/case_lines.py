"""Which kernel lines each case reaches: ``kernel-lines-by-case.json`` as ``vm --coverage
--per-case`` writes it (harness/coverage/kernel_lines.py ``by_case_json``; the format is in
docs/kernel.md).  Only the cases that passed on the unmutated kernel count: a case that failed
there cannot tell a mutant apart; a case the file does not name at all (written after the
measurement) is not known to miss a line, so the run falls back to static reach for it.  A line
the compiler left without code of its own counts as reached by the cases entering its function
(the file's ``executable`` lines and ``functions`` spans tell).  A file
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
    executable: dict[str, set[int]] = field(default_factory=dict)              # file -> lines with code
    functions: dict[str, dict[str, tuple[int, int]]] = field(default_factory=dict)  # file -> name -> span

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
                if not isinstance(lines, list) or not all(_is_line(n) for n in lines):
                    raise CaseLinesError(f"{where}: lines: {file}: not a list of line numbers")
                per[str(file)] = set(lines)
            out.lines[str(case)] = per
        for file, lines in _object(data, "executable", origin).items():
            if not isinstance(lines, list) or not all(_is_line(n) for n in lines):
                raise CaseLinesError(f"{origin}: executable: {file}: not a list of line numbers")
            out.executable[str(file)] = set(lines)
        for file, spans in _object(data, "functions", origin).items():
            if not isinstance(spans, dict) or not all(isinstance(v, list) and len(v) == 2 and all(map(_is_line, v))
                                                      for v in spans.values()):
                raise CaseLinesError(f"{origin}: functions: {file}: not an object of [start, end] line pairs")
            out.functions[str(file)] = {str(n): (v[0], v[1]) for n, v in spans.items()}
        return out

    @classmethod
    def load(cls, path: Path) -> CaseLines:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CaseLinesError(f"{path}: {e}") from None
        return cls.parse(data, str(path))

    def reaching_mutant(self, file: str, span: Iterable[int], function: str) -> set[str] | None:
        """The cases reaching a mutant's lines (``span``, in ``function``).  When the file's
        executable lines are known and none of ``span`` is among them (the compiler left no code
        of its own there: a ``return -EINVAL;`` folded into its ``if``, a check made dead by an
        earlier one), the cases entering ``function``; None when its span is not known either
        (the caller then goes by static reach)."""
        span = set(span)
        executable = self.executable.get(file)
        if executable is None or executable & span:
            return self.reaching(file, span)
        where = self.functions.get(file, {}).get(function)
        if where is None:
            return None
        return self.reaching(file, range(where[0], where[1] + 1))

    def reaching(self, file: str, lines: Iterable[int]) -> set[str]:
        """The cases whose lines of ``file`` (relative to the source tree) include one of ``lines``."""
        wanted = set(lines)
        return {case for case, files in self.lines.items() if files.get(file, set()) & wanted}


def _is_line(n: Any) -> bool:
    return isinstance(n, int) and not isinstance(n, bool)


def _object(data: dict[str, Any], key: str, origin: str) -> dict[str, Any]:
    """``data[key]``, optional (files written before it existed have none)."""
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise CaseLinesError(f"{origin}: {key}: not an object")
    return value
