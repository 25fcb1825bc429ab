"""What one case did on one backend, step by step."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PASS, FAIL, SKIP, ERROR = "pass", "fail", "skip", "error"


@dataclass
class StepRecord:
    index: int
    line: int
    kind: str
    label: str
    request: dict[str, Any] = field(default_factory=dict)
    ret: int = 0
    errno: str | None = None
    out: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    # The kernel line the model says it followed for a failure (model only).
    where: str = ""
    # The model's version gates (model/gates.py) the step consulted (model only).
    gates: tuple[str, ...] = ()
    cleanup: bool = False
    from_fixture: bool = False

    @property
    def outcome(self) -> str:
        return self.errno or f"ok ret={self.ret}"


@dataclass
class Trace:
    case_id: str
    backend: str
    status: str = PASS
    reason: str = ""
    steps: list[StepRecord] = field(default_factory=list)
