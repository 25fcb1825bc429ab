"""Compare the traces of one case on two backends, step by step."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .normalise import normalise
from .trace import Trace


@dataclass
class Divergence:
    step: int                      # 0-based index into the traces
    label: str
    what: str                      # "errno", "ret", "out.<field>", "request.<field>", "length"
    left: Any
    right: Any


@dataclass
class Diff:
    case_id: str
    left: Trace
    right: Trace
    divergences: list[Divergence] = field(default_factory=list)

    @property
    def first(self) -> Divergence | None:
        return self.divergences[0] if self.divergences else None

    def summary(self) -> str:
        d = self.first
        if d is None:
            return "no divergence"
        return (f"step {d.step + 1} ({d.label}): {d.what}: "
                f"{self.left.backend} {d.left!r} vs {self.right.backend} {d.right!r}")


def compare_step(i: int, x: dict[str, Any], y: dict[str, Any]) -> list[Divergence]:
    """How step ``i``, normalised on both sides (runner/normalise.py), differs."""
    out = []
    label = x["step"]
    for key in ("errno", "ret"):
        if x[key] != y[key]:
            out.append(Divergence(i, label, key, x[key], y[key]))
    if x["errno"] != y["errno"]:
        return out  # outputs of a failed call are not comparable
    for part in ("request", "out"):
        for k in sorted(set(x[part]) | set(y[part])):
            if x[part].get(k) != y[part].get(k):
                out.append(Divergence(i, label, f"{part}.{k}", x[part].get(k), y[part].get(k)))
    return out


def diff(left: Trace, right: Trace) -> Diff:
    result = Diff(left.case_id, left, right)
    a, b = normalise(left), normalise(right)
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        result.divergences += compare_step(i, x, y)
    if len(a) != len(b):
        i = min(len(a), len(b))
        result.divergences.append(Divergence(i, "(end)", "length", f"{len(a)} steps", f"{len(b)} steps"))
    return result
