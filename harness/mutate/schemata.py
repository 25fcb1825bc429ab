"""Mutant schemata: many mutants compiled into one kernel, one of them live at a time.

Building and booting a kernel per mutant costs 25-40 s before any case runs; a full run of
the scope (1,794 mutants on 6.12.118) would take 15 hours.  A schemata kernel holds every mutant
of a *layer* behind a switch, ``(__VCM(n) ? mutated : original)``, that reads a module
parameter the guest sets (the agent's ``select_mutant`` op): one build and one boot serve the
whole layer, and a mutant costs only the cases it runs (Untch, Offutt and Harrold, "Mutation
analysis using mutant schemata", ISSTA 1993).

Each mutant is one span of its file replaced (operators.py); here a span becomes a switch:

- an expression (a condition made false or negated, an errno replaced): the span is the whole
  ``if``/``while`` condition, or the errno's name, and the switch is a conditional expression,
  ``(__VCM(3) ? !!(!(c)) : __VCM(4) ? !!(0 && (c)) : !!(c))`` (``!!``: a pointer condition and
  its mutants' ints are all made ints), or ``-(__VCM(5) ? (EINVAL) : (ENOENT))``.  A ``boundary``
  mutant, whose own span is one operator, is widened to its condition;
- a statement (``drop_output``): ``{ if (!(__VCM(7))) { stmt; } }``.

Mutants with the same span share one switch; spans that overlap otherwise (an errno inside a
condition) go to different layers, and each layer is one kernel.  The switch of a file is
``static int __vcm_selected`` behind ``module_param_named(vcm_<file>_<hash>, ...)``, declared after
the file's last ``#include`` at file scope (a ``pr_fmt`` defined before the includes stays first).
A mutant number is unique over the run, so the guest writes the same number to every file's
parameter and only the file holding that mutant switches.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from .operators import _LOOP, Mutant, _conditions, mask

SELECTOR = "__VCM"
CONDITION, ERRNO, STATEMENT = "condition", "errno", "statement"
_KIND = {"remove_check": CONDITION, "negate": CONDITION, "boundary": CONDITION, "errno": ERRNO,
         "drop_output": STATEMENT}
_DIRECTIVE = re.compile(r"\s*#\s*(\w+)")


@dataclass(frozen=True)
class Switch:
    """The mutants replacing one span of a file."""

    file: str
    start: int
    end: int
    kind: str                             # CONDITION, ERRNO or STATEMENT
    arms: tuple[tuple[int, str], ...]     # (mutant number, the span's text in that mutant)

    def overlaps(self, other: Switch) -> bool:
        return self.file == other.file and self.start < other.end and other.start < self.end

    def text(self, original: str) -> str:
        if self.kind == STATEMENT:
            live = " || ".join(f"{SELECTOR}({n})" for n, _ in self.arms)
            return f"{{ if (!({live})) {{ {original} }} }}"
        truth = "!!" if self.kind == CONDITION else ""     # a pointer condition and an int one mix
        chain = "".join(f"{SELECTOR}({n}) ? {truth}({replaced}) : " for n, replaced in self.arms)
        return f"({chain}{truth}({original}))"


@dataclass
class Layer:
    """The switches of one schemata kernel."""

    switches: list[Switch] = field(default_factory=list)

    def fits(self, s: Switch) -> bool:
        return not any(s.overlaps(t) for t in self.switches)

    def numbers(self) -> list[int]:
        return [n for s in self.switches for n, _ in s.arms]

    def numbers_in(self, file: str) -> list[int]:
        return [n for s in self.switches if s.file == file for n, _ in s.arms]

    def files(self) -> list[str]:
        return sorted({s.file for s in self.switches})

    def without(self, numbers: Iterable[int]) -> Layer:
        """This layer with the mutants ``numbers`` taken out (those that would not build)."""
        drop = set(numbers)
        out = Layer()
        for s in self.switches:
            arms = tuple(a for a in s.arms if a[0] not in drop)
            if arms:
                out.switches.append(Switch(s.file, s.start, s.end, s.kind, arms))
        return out

    def key(self, texts: dict[str, str]) -> str:
        """A hash of the files this layer makes: the name of its kernel image."""
        h = hashlib.sha256()
        for f in self.files():
            h.update(f.encode() + b"\0" + schema_text(f, texts[f], self).encode() + b"\0")
        return h.hexdigest()[:12]


def parameter(file: str) -> str:
    """The module parameter switching ``file``'s mutants: vcm_<stem>_<hash of the path>."""
    stem = re.sub(r"\W", "_", PurePosixPath(file).stem)
    return f"vcm_{stem}_{hashlib.sha256(file.encode()).hexdigest()[:6]}"


def _prologue(file: str) -> str:
    return ("#include <linux/moduleparam.h>\n"
            "static int __vcm_selected __read_mostly;\n"
            f"module_param_named({parameter(file)}, __vcm_selected, int, 0644);\n"
            f"#define {SELECTOR}(n) unlikely(READ_ONCE(__vcm_selected) == (n))\n")


def _widened(m: Mutant, text: str, conditions: list[tuple[int, int]]) -> tuple[int, int, str]:
    """(start, end, mutated text) of the span the mutant's switch replaces."""
    if m.operator != "boundary":
        return m.start, m.end, m.replacement
    start, end = min(((a, b) for a, b in conditions if a <= m.start and m.end <= b), key=lambda ab: ab[1] - ab[0])
    return start, end, text[start:m.start] + m.replacement + text[m.end:end]


def plan(numbered: list[tuple[int, Mutant]], texts: dict[str, str]) -> list[Layer]:
    """The layers holding every mutant of ``numbered`` ((number, mutant) pairs; texts: file -> source)."""
    conditions = {f: list(_conditions(mask(t), 0, len(t), _LOOP)) for f, t in texts.items()}
    grouped: dict[tuple[str, int, int, str], list[tuple[int, str]]] = {}
    for n, m in numbered:
        start, end, mutated = _widened(m, texts[m.file], conditions[m.file])
        grouped.setdefault((m.file, start, end, _KIND[m.operator]), []).append((n, mutated))
    layers: list[Layer] = []
    for (file, start, end, kind), arms in sorted(grouped.items()):
        s = Switch(file, start, end, kind, tuple(arms))
        home = next((layer for layer in layers if layer.fits(s)), None)
        if home is None:
            home = Layer()
            layers.append(home)
        home.switches.append(s)
    return layers


def _prologue_at(text: str, before: int) -> int:
    """Where the switch variable is declared: the end of the last ``#include`` (or of the
    ``#endif`` closing a block of them) at file scope before offset ``before``."""
    masked = mask(text)
    at, conditional, braces, pos = 0, 0, 0, 0
    for line in masked[:before].splitlines(keepends=True):
        directive = _DIRECTIVE.match(line)
        if directive is not None:
            word = directive.group(1)
            conditional += (word in ("if", "ifdef", "ifndef")) - (word == "endif")
            if word in ("include", "endif") and conditional == 0 and braces == 0:
                at = pos + len(line)
        else:
            braces += line.count("{") - line.count("}")
        pos += len(line)
    return at


def render(file: str, text: str, layer: Layer) -> tuple[str, list[tuple[Switch, int, int]]]:
    """``file``'s source with the layer's switches in it and the switch variable declared, and
    the first and last line of each switch in that text."""
    mine = sorted((s for s in layer.switches if s.file == file), key=lambda s: s.start)
    if not mine:
        return text, []
    at = _prologue_at(text, mine[0].start)
    pieces = [text[:at], _prologue(file)]
    line = 1 + "".join(pieces).count("\n")
    pos, placed = at, []
    for s in mine:
        gap = text[pos:s.start]
        line += gap.count("\n")
        body = s.text(text[s.start:s.end])
        placed.append((s, line, line + body.count("\n")))
        line += body.count("\n")
        pieces += [gap, body]
        pos = s.end
    pieces.append(text[pos:])
    return "".join(pieces), placed


def schema_text(file: str, text: str, layer: Layer) -> str:
    return render(file, text, layer)[0]


def numbers_at(layer: Layer, file: str, text: str, lines: Iterable[int]) -> set[int]:
    """The mutants of ``layer`` whose switch covers one of ``lines`` of ``file``'s schema text
    (a compiler's error lines): those to build another way."""
    wanted = set(lines)
    return {n for s, first, last in render(file, text, layer)[1] if any(first <= ln <= last for ln in wanted)
            for n, _ in s.arms}
