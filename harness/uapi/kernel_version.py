"""Kernel release strings and the version ranges cases and the model are gated by.

A release (``uname -r`` or ``make kernelversion``: "6.12.118", "7.2.13", "7.2.0-rc1",
"6.12.118-vfioconf+") compares by its leading numbers.  A range is one of

- ``"6.12"``: that series (6.12, 6.12.118, 6.12.0-rc1; not 6.1 or 6.120),
- ``">=6.18"``, ``"<6.18"``, ``">7.0"``, ``"<=7.2"``: compared on the leading numbers, where a
  shorter bound is padded with zeros (``">=6.18"`` is ``>= 6.18.0``),
- several of those joined by commas, all of which must hold (``">=6.13,<7.0"``).
"""

from __future__ import annotations

import functools
import re

_RELEASE = re.compile(r"^\s*(\d+(?:\.\d+)*)")
_BOUND = re.compile(r"^(>=|<=|>|<|==)?\s*(\d+(?:\.\d+){0,2})$")
Version = tuple[int, int, int]


class VersionError(ValueError):
    """A release or range that cannot be read."""


@functools.lru_cache(maxsize=256)
def parse(release: str) -> Version:
    """The (major, minor, patch) of a release string; missing parts are 0."""
    m = _RELEASE.match(release)
    if not m:
        raise VersionError(f"not a kernel release: {release!r}")
    major, minor, patch = [*(int(x) for x in m.group(1).split(".")), 0, 0, 0][:3]
    return major, minor, patch


def series(release: str) -> str:
    """"7.2.13" -> "7.2"."""
    major, minor, _ = parse(release)
    return f"{major}.{minor}"


def _one(bound: str) -> tuple[str, Version, int]:
    m = _BOUND.match(bound.strip())
    if not m:
        raise VersionError(f"not a version range: {bound!r} (e.g. \"6.12\", \">=7.2\", \"<6.18\")")
    op, text = m.group(1) or "", m.group(2)
    return op, parse(text), text.count(".") + 1


def check_range(text: str) -> None:
    """Raise VersionError unless ``text`` is a range."""
    if not isinstance(text, str) or not text.strip():
        raise VersionError(f"not a version range: {text!r}")
    for part in text.split(","):
        _one(part)


def in_range(release: str, text: str) -> bool:
    """Whether ``release`` lies in the range ``text`` (see the module docstring)."""
    v = parse(release)
    for part in text.split(","):
        op, bound, width = _one(part)
        if op == "":
            if v[:width] != bound[:width]:
                return False
        elif not {">=": v >= bound, "<=": v <= bound, ">": v > bound, "<": v < bound, "==": v == bound}[op]:
            return False
    return True


def at_least(release: str, version: str) -> bool:
    """``release >= version``: the test of a version gate."""
    return parse(release) >= parse(version)
