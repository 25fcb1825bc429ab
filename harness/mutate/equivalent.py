"""The reviewed list of equivalent mutants: survivors with no uAPI-visible effect, each with a reason.

``harness/mutate/equivalent.yaml`` (committed; reviewed like a case's ``known_differences``)::

    equivalent:
      - id: 4007ef1420e1                                  # Mutant.id
        mutant: drivers/iommu/iommufd/ioas.c:87:boundary:0   # Mutant.name, for people and staleness
        series: "6.12"
        reason: why no program can tell the difference

A survivor is only ever reported as equivalent through an entry here: every entry needs an id, the
mutant's name, a series and a reason of a few words; ids are unique; and against the mutants the
source gives now, an entry whose id is not among them, or names another mutant, is stale (the
source moved): an error, never silently ignored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .operators import Mutant

DEFAULT_LIST = Path(__file__).resolve().parent / "equivalent.yaml"
_ID = re.compile(r"[0-9a-f]{12}")
MIN_REASON_WORDS = 4


@dataclass(frozen=True)
class Equivalent:
    id: str
    mutant: str
    series: str
    reason: str


class EquivalentListError(ValueError):
    pass


def parse(data: Any, where: str = "equivalent list") -> list[Equivalent]:
    """The entries of a loaded YAML document; raises EquivalentListError listing every problem."""
    if data is None:
        return []
    if not isinstance(data, dict) or set(data) - {"equivalent"}:
        raise EquivalentListError(f"{where}: a mapping with one key, equivalent: (a list)")
    items = data.get("equivalent") or []
    if not isinstance(items, list):
        raise EquivalentListError(f"{where}: equivalent: must be a list")
    problems: list[str] = []
    out: list[Equivalent] = []
    seen: set[str] = set()
    for n, item in enumerate(items, 1):
        if not isinstance(item, dict):
            problems.append(f"entry {n}: a mapping with id, mutant, series and reason")
            continue
        extra = set(item) - {"id", "mutant", "series", "reason"}
        if extra:
            problems.append(f"entry {n}: unknown keys {sorted(extra)}")
        ident, name, series, reason = (str(item.get(k) or "").strip() for k in ("id", "mutant", "series", "reason"))
        if not _ID.fullmatch(ident):
            problems.append(f"entry {n}: id {ident!r} is not a mutant id (12 hex digits)")
        if name.count(":") != 3:
            problems.append(f"entry {n}: mutant {name!r} is not file:line:operator:index")
        if not series:
            problems.append(f"entry {n}: no series (the kernel series it was reviewed on)")
        if len(reason.split()) < MIN_REASON_WORDS:
            problems.append(f"entry {n} ({ident}): a reason of {MIN_REASON_WORDS} words at least says why no "
                            "program can tell the mutant from the kernel")
        if ident in seen:
            problems.append(f"entry {n}: id {ident} listed twice")
        seen.add(ident)
        out.append(Equivalent(ident, name, series, reason))
    if problems:
        raise EquivalentListError(f"{where}:\n  " + "\n  ".join(problems))
    return out


def load(path: Path = DEFAULT_LIST) -> list[Equivalent]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise EquivalentListError(f"{path}: not YAML: {e}") from None
    return parse(data, str(path))


def check_against(entries: Iterable[Equivalent], mutants: Iterable[Mutant], series: str) -> list[str]:
    """Problems of the entries of ``series`` against the mutants its source gives: stale ids and names."""
    by_id = {m.id: m for m in mutants}
    problems = []
    for e in entries:
        if e.series != series:
            continue
        m = by_id.get(e.id)
        if m is None:
            problems.append(f"{e.id} ({e.mutant}): no such mutant in the {series} source any more (stale)")
        elif m.name != e.mutant:
            problems.append(f"{e.id}: listed as {e.mutant}, the source has it as {m.name}")
    return problems


def for_series(entries: Iterable[Equivalent], series: str) -> dict[str, Equivalent]:
    return {e.id: e for e in entries if e.series == series}
