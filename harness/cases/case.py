"""What a loaded case is: plain data the runner executes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..uapi.kernel_version import in_range

# data:/tail: element types -> (bytes, signed); the runner packs them by this table.
DATA_TYPES = {"u8": (1, False), "u16": (2, False), "u32": (4, False), "s32": (4, True), "u64": (8, False)}
# The most bytes the harness itself holds for one step (an ioctl's buffer, a pointer field's
# memory, read_mem): a case asking for more is refused, it does not take the host's memory.
MAX_TRANSFER = 1 << 24
U64_MAX = (1 << 64) - 1


def int_range(width: int, signed: bool) -> tuple[int, int]:
    """The values an integer of ``width`` bytes holds."""
    bits = width * 8
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


_LINE_BREAKS = {ord(c): repr(c)[1:-1] for c in "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"}


class CaseError(Exception):
    """A malformed case: names file, line and field."""

    def __init__(self, path: Path | str, line: int, where: str, message: str):
        self.path, self.line, self.where, self.message = str(path), line, where, message
        super().__init__(str(self))

    def __str__(self) -> str:
        loc = f"{self.path}:{self.line}" if self.line else self.path
        text = f"{loc}: {self.where}: {self.message}" if self.where else f"{loc}: {self.message}"
        # One line, whatever a hostile file put in a key or value the message quotes.
        return text.translate(_LINE_BREAKS)


class ArrayValue(list):  # type: ignore[type-arg]
    """The elements of an array field (``__reserved: [0, 1, 0]``), not flags to OR."""


@dataclass(frozen=True)
class Matcher:
    """One expected field value: ``op`` is eq, has, lacks, ne, ge, gt, le, lt, aligned or any."""

    op: str
    value: Any = None


@dataclass
class Expectation:
    errno: str | None = None          # None: success expected
    # `expect: any`: whatever the call returns is fine; only a kernel/model diff fails
    # (the steps of a fuzzer's regression case).
    anything: bool = False
    ret: list[Matcher] | None = None
    out: dict[str, list[Matcher]] = field(default_factory=dict)
    untouched_past_size: bool = False
    text: str | None = None
    data: str | None = None           # hex
    # `expect: {by_kernel: {RANGE: expectation, ...}}`: where the contract changed between
    # kernels, the expectation of the first range the target's release lies in.
    by_kernel: list[tuple[str, Expectation]] = field(default_factory=list)

    def for_kernel(self, release: str) -> Expectation | None:
        """The expectation that holds on ``release`` (None: the case says nothing for it)."""
        if not self.by_kernel:
            return self
        return next((e for r, e in self.by_kernel if in_range(release, r)), None)


@dataclass
class Step:
    index: int
    kind: str
    line: int
    spec: dict[str, Any]
    bind: str | None = None
    save: dict[str, str] = field(default_factory=dict)
    expect: Expectation = field(default_factory=Expectation)
    note: str = ""
    from_fixture: bool = False
    # uAPI names the step needs the target kernel to have: its ioctl and "struct.member" of
    # each field it sets (uapi.available() answers per release).
    uses: frozenset[str] = frozenset()

    def label(self) -> str:
        target = self.spec.get(self.kind)
        if self.kind == "ioctl":
            return str(target)
        if self.kind == "raw_ioctl":
            return f"raw_ioctl {getattr(target, 'text', target)}"
        return f"{self.kind} {target}" if isinstance(target, str) else self.kind


@dataclass(frozen=True)
class KnownDifference:
    """A documented kernel-vs-contract difference: a divergence at ``step`` (the
    case step's line, 0 = any step) in a field matching ``field`` (a prefix of
    "errno", "ret", "out.<name>", "request.<name>"; "" = any) is accepted on the
    ``kernels`` listed (a release matches by its leading components: "6.12"
    covers 6.12.117), for ``reason``."""

    reason: str
    kernels: tuple[str, ...]
    step_line: int = 0
    field: str = ""

    def covers(self, release: str, line: int, what: str) -> bool:
        """Whether it accepts a divergence in ``what`` at the step of ``line`` on ``release``."""
        return (bool(release) and any(in_range(release, v) for v in self.kernels)
                and self.step_line in (0, line) and what.startswith(self.field))


@dataclass
class Requirements:
    config: list[str] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)
    container: str | None = None
    mock_domains: bool | None = None
    kernel: str = ""                  # a release range (uapi/kernel_version.py); "" = every kernel
    topology: dict[str, str] = field(default_factory=dict)


@dataclass
class Case:
    id: str
    area: str
    purpose: str
    path: Path
    line: int
    source: str = ""
    verified_on: list[str] = field(default_factory=list)
    requires: Requirements = field(default_factory=Requirements)
    steps: list[Step] = field(default_factory=list)
    cleanup: list[Step] = field(default_factory=list)
    variant: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    known_differences: list[KnownDifference] = field(default_factory=list)

    @property
    def test_id(self) -> str:
        return f"{self.id}[{self.variant}]" if self.variant else self.id

    @property
    def uses(self) -> set[str]:
        return {name for s in self.steps for name in s.uses}

    @property
    def kernel_verified(self) -> bool:
        return bool(self.verified_on)
