"""The mutation operators: each one textual change to a C function body that should compile.

Operators (``OPERATORS``):

- ``remove_check``: an error check's condition made false, ``if (c)`` -> ``if (0 && (c))``; an
  error check is an ``if`` whose body returns or jumps (``return``, ``goto``) or sets an errno;
- ``negate``: ``if (c)`` -> ``if (!(c))``;
- ``boundary``: one relational operator of an ``if``/``while`` condition moved, ``<`` <-> ``<=``,
  ``>`` <-> ``>=``;
- ``errno``: a returned or assigned ``-EXXX`` replaced by another (``EINVAL`` -> ``EOPNOTSUPP``,
  any other -> ``EINVAL``);
- ``drop_output``: a statement that writes an output field or a flag (``cmd->...``, ``info.…``, a
  member named ``out_*`` or ``*flags``) replaced by an empty block.

The scan is lexical, over a copy of the file with comments, strings and character literals
blanked (same offsets), so nothing in a comment is ever mutated.  Every mutant is one span of the
file replaced; its id hashes the file, line, operator, index and the span's text, so the same
source gives the same ids, in the same order, every time.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass

OPERATORS = ("remove_check", "negate", "boundary", "errno", "drop_output")

ERRNO_REPLACEMENT = {"EINVAL": "EOPNOTSUPP"}
DEFAULT_ERRNO_REPLACEMENT = "EINVAL"


@dataclass(frozen=True)
class Mutant:
    file: str              # relative to the source tree: drivers/iommu/iommufd/ioas.c
    line: int              # 1-based line where the change starts
    operator: str
    index: int             # the n-th mutant of this operator on this line
    function: str
    start: int             # offsets in the file's text
    end: int
    original: str
    replacement: str

    @property
    def id(self) -> str:
        key = f"{self.file}:{self.line}:{self.operator}:{self.index}:{self.original}:{self.replacement}"
        return hashlib.sha256(key.encode()).hexdigest()[:12]

    @property
    def name(self) -> str:
        """file:line:operator:index, for people."""
        return f"{self.file}:{self.line}:{self.operator}:{self.index}"

    def apply(self, text: str) -> str:
        if text[self.start:self.end] != self.original:
            raise ValueError(f"{self.name}: the source does not have {self.original!r} there")
        return text[:self.start] + self.replacement + text[self.end:]

    def diff(self, text: str) -> str:
        """The unified diff of this mutant against ``text``, three lines of context."""
        return "".join(difflib.unified_diff(text.splitlines(keepends=True), self.apply(text).splitlines(keepends=True),
                                            f"a/{self.file}", f"b/{self.file}"))

    def to_json(self) -> dict[str, object]:
        return {"id": self.id, "name": self.name, "file": self.file, "line": self.line, "operator": self.operator,
                "index": self.index, "function": self.function, "original": self.original,
                "replacement": self.replacement}


# --------------------------------------------------------------------------------------------------
# Lexing


_LEXEMES = re.compile(r'//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'', re.S)


def mask(text: str) -> str:
    """``text`` with comments and string and character literals blanked (newlines kept)."""
    return _LEXEMES.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)


def match_close(masked: str, open_at: int) -> int:
    """The offset of the bracket closing the one at ``open_at``, or -1."""
    pairs = {"(": ")", "{": "}", "[": "]"}
    opener = masked[open_at]
    closer = pairs[opener]
    depth = 0
    for i in range(open_at, len(masked)):
        c = masked[i]
        if c == opener:
            depth += 1
        elif c == closer:
            depth -= 1
            if depth == 0:
                return i
    return -1


def statement_end(masked: str, at: int) -> int:
    """The offset just past the statement starting at ``at``: a block, or up to its ``;`` at depth 0."""
    i = at
    while i < len(masked) and masked[i].isspace():
        i += 1
    if i < len(masked) and masked[i] == "{":
        close = match_close(masked, i)
        return close + 1 if close >= 0 else -1
    depth = 0
    for j in range(i, len(masked)):
        c = masked[j]
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth < 0:
                return -1
        elif c == ";" and depth == 0:
            return j + 1
    return -1


# --------------------------------------------------------------------------------------------------
# Operators


_IF = re.compile(r"\bif\s*\(")
_LOOP = re.compile(r"\b(?:if|while)\s*\(")
_RELATIONAL = re.compile(r"(?<![<>\-])(<=|>=|<|>)(?![<>=])")
_ERRNO = re.compile(r"-(E[A-Z][A-Z0-9]+)\b")
_ERRNO_CONTEXT = re.compile(r"(?:\breturn|[^=!<>]=|\?|:|\bERR_PTR\s*\()\s*$")
_ERROR_BODY = re.compile(r"\breturn\b|\bgoto\b|-E[A-Z][A-Z0-9]+\b|\bPTR_ERR\b|\bERR_PTR\b")
_OUTPUT_STMT = re.compile(
    r"(?m)^[ \t]*(?P<lhs>(?P<root>[A-Za-z_]\w*)(?:(?:->|\.)[A-Za-z_]\w*|\[[^\]\n]*\])*"
    r"(?:->|\.)(?P<member>[A-Za-z_]\w*))\s*(?:[|&+\-]?=)(?!=)")
_OUTPUT_ROOTS = frozenset({"cmd", "info"})
BOUNDARY = {"<": "<=", "<=": "<", ">": ">=", ">=": ">"}

Span = tuple[int, int, str]      # start, end, replacement


def _conditions(masked: str, lo: int, hi: int, pattern: re.Pattern[str]) -> Iterator[tuple[int, int]]:
    """(start, end) of each condition of ``pattern``'s statements (inside the parentheses) in [lo, hi)."""
    for m in pattern.finditer(masked, lo, hi):
        close = match_close(masked, m.end() - 1)
        if close < 0 or close > hi:
            continue
        yield m.end(), close


def remove_check(text: str, masked: str, lo: int, hi: int) -> Iterator[Span]:
    for start, end in _conditions(masked, lo, hi, _IF):
        body_end = statement_end(masked, end + 1)
        if body_end > 0 and _ERROR_BODY.search(masked, end + 1, body_end):
            yield start, end, f"0 && ({text[start:end]})"


def negate(text: str, masked: str, lo: int, hi: int) -> Iterator[Span]:
    for start, end in _conditions(masked, lo, hi, _IF):
        yield start, end, f"!({text[start:end]})"


def boundary(text: str, masked: str, lo: int, hi: int) -> Iterator[Span]:
    for start, end in _conditions(masked, lo, hi, _LOOP):
        for m in _RELATIONAL.finditer(masked, start, end):
            yield m.start(), m.end(), BOUNDARY[m.group(1)]


def errno(text: str, masked: str, lo: int, hi: int) -> Iterator[Span]:
    for m in _ERRNO.finditer(masked, lo, hi):
        if not _ERRNO_CONTEXT.search(masked, max(lo, m.start() - 40), m.start()):
            continue
        name = m.group(1)
        yield m.start(1), m.end(1), ERRNO_REPLACEMENT.get(name, DEFAULT_ERRNO_REPLACEMENT)


def drop_output(text: str, masked: str, lo: int, hi: int) -> Iterator[Span]:
    for m in _OUTPUT_STMT.finditer(masked, lo, hi):
        member = m.group("member")
        if not (m.group("root") in _OUTPUT_ROOTS or member.startswith("out_") or member.endswith("flags")):
            continue
        end = statement_end(masked, m.start("lhs"))
        if 0 < end <= hi:
            yield m.start("lhs"), end, "{ }"


_GENERATORS = {"remove_check": remove_check, "negate": negate, "boundary": boundary, "errno": errno,
               "drop_output": drop_output}


def mutants_of(file: str, text: str, functions: list[tuple[str, int, int]],
               operators: tuple[str, ...] = OPERATORS) -> list[Mutant]:
    """Every mutant of ``operators`` in the bodies of ``functions`` ((name, first line, last line)
    of each, as harness.coverage.kernel_errnos.parse_functions gives them) of one file's ``text``."""
    masked = mask(text)
    line_starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def line_of(offset: int) -> int:
        lo, hi = 0, len(line_starts)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if line_starts[mid] <= offset:
                lo = mid
            else:
                hi = mid
        return lo + 1

    out: list[Mutant] = []
    for name, first, last in functions:
        lo = masked.find("{", line_starts[first - 1])
        hi = line_starts[last] if last < len(line_starts) else len(text)
        if lo < 0 or lo >= hi:
            continue
        for op in operators:
            per_line: dict[int, int] = {}
            for start, end, replacement in _GENERATORS[op](text, masked, lo + 1, hi):
                line = line_of(start)
                index = per_line.get(line, 0)
                per_line[line] = index + 1
                out.append(Mutant(file, line, op, index, name, start, end, text[start:end], replacement))
    out.sort(key=lambda m: (m.file, m.start, OPERATORS.index(m.operator), m.index))
    return out
