"""Kernel splats in a guest's console log.

A splat is a kernel report the runner must attribute to the case that was
running: WARN, BUG, KASAN/KFENCE/UBSAN reports, lockdep and debug-objects
(ODEBUG) reports, sleeping in atomic context, oopses, general protection
faults, panics, RCU stalls, soft/hard lockups, hung tasks and ACPICA errors (a
failed allocation inside ACPICA, as fault injection provokes on the device-open
path, has been seen to corrupt its state).  Each comes back
once, with the byte offset of its first line in the log and an excerpt of the
report (up to its end marker).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

MAX_LINES = 80
MAX_EXCERPT = 8192


@dataclass(frozen=True)
class Splat:
    kind: str      # see TRIGGERS
    title: str     # the first line, without its timestamp
    offset: int    # byte offset of the first line in the console log
    excerpt: str   # the report's lines as logged (timestamps kept)

    def __str__(self) -> str:
        return f"{self.kind} at console offset {self.offset}: {self.title}"


# (kind, pattern on a line without its printk timestamp); the first that matches wins.
TRIGGERS: tuple[tuple[str, re.Pattern[str]], ...] = tuple((k, re.compile(p)) for k, p in (
    ("KASAN", r"^BUG: KASAN: "),
    ("KFENCE", r"^BUG: KFENCE: "),
    ("soft lockup", r"^watchdog: BUG: soft lockup"),
    ("hard lockup", r"^(NMI )?watchdog: Watchdog detected hard LOCKUP"),
    ("lockdep", r"^(WARNING: (possible (circular|recursive) locking|inconsistent lock state|suspicious RCU usage"
                r"|bad unlock balance|held lock freed|lock held when returning|possible irq lock inversion"
                r"|.*-safe -> .*-unsafe lock order|Nested lock was not taken|\S+/\d+ still has locks held)"
                r"|\[ BUG: Invalid wait context \]|INFO: trying to register non-static key)"),
    # debug_print_object()'s WARN: its message comes before the WARNING line, which it absorbs.
    ("ODEBUG", r"^ODEBUG: (\w+ \w+ \(active state \d+\) object|object \S+ is (NOT )?on stack)"),
    ("atomic sleep", r"^BUG: (sleeping function called from invalid context|scheduling while atomic)"),
    ("WARNING", r"^WARNING: (CPU: \d+ PID: \d+ at |at )"),
    ("BUG", r"^(kernel BUG at |BUG: )"),
    ("GPF", r"^(Oops: )?general protection fault"),
    ("Oops", r"^Oops: "),
    ("panic", r"^Kernel panic - not syncing"),
    ("RCU stall", r"^(rcu: )?INFO: \S+ (self-)?detected stalls?\b"),
    ("hung task", r"^INFO: task .+ blocked for more than \d+ seconds"),
    ("UBSAN", r"^UBSAN: "),
    ("ACPI", r"^ACPI (BIOS )?Error"),
))

# A report of these kinds that is already open absorbs them (an oops after
# "BUG: unable to handle page fault", a GPF in a KASAN report).
_FOLLOW_UPS = frozenset({"Oops", "GPF"})
# Kinds whose report goes on with a line of another kind, which it absorbs.
_ABSORBS = {"ODEBUG": frozenset({"WARNING"})}
# Reports framed by a line of '=' (KASAN, KFENCE, UBSAN, lockdep use them).
_RULED = frozenset({"KASAN", "KFENCE", "UBSAN"})
# Reports that end with their stack dump.
_ENDS_WITH_STACK = frozenset({"hung task", "RCU stall", "soft lockup", "hard lockup", "lockdep", "atomic sleep"})
# Reports of one line (ACPICA prints each error, and each method it aborts, on its own).
_ONE_LINE = frozenset({"ACPI"})

_TIMESTAMP = re.compile(r"^\[\s*\d+\.\d+\]\s?(\[\s*[CT]\d+\]\s?)?")
_END_TRACE = re.compile(r"^---\[ end ")
_RULE = re.compile(r"^={20,}\s*$")


def strip_timestamp(line: str) -> str:
    return _TIMESTAMP.sub("", line, count=1)


def classify(line: str) -> str | None:
    """The splat kind a console line starts, or None."""
    text = strip_timestamp(line)
    for kind, pat in TRIGGERS:
        if pat.search(text):
            return kind
    return None


class _Open:
    def __init__(self, kind: str, title: str, offset: int):
        self.kind, self.title, self.offset = kind, title, offset
        self.lines: list[str] = []

    def done(self) -> Splat:
        excerpt = "\n".join(self.lines)
        if len(excerpt) > MAX_EXCERPT:
            excerpt = excerpt[:MAX_EXCERPT] + "\n[...]"
        return Splat(self.kind, self.title, self.offset, excerpt)


def scan(data: bytes | str, base_offset: int = 0) -> list[Splat]:
    """Splats in console output ``data``, which starts at ``base_offset`` of the log."""
    raw = data.encode() if isinstance(data, str) else data
    out: list[Splat] = []
    cur: _Open | None = None
    pos = 0
    for chunk in raw.splitlines(keepends=True):
        offset = base_offset + pos
        pos += len(chunk)
        line = chunk.decode("utf-8", errors="replace").rstrip("\r\n")
        text = strip_timestamp(line)
        kind = classify(line)
        absorbed = kind is not None and cur is not None and (
            (kind in _FOLLOW_UPS and cur.kind != "panic") or kind in _ABSORBS.get(cur.kind, ()))
        if cur is not None and kind is not None and not absorbed:
            out.append(cur.done())
            cur = None
        if cur is None:
            if kind is None:
                continue
            cur = _Open(kind, text.strip(), offset)
        cur.lines.append(line)
        ended = (
            _END_TRACE.match(text) is not None
            or (cur.kind in _RULED and len(cur.lines) > 2 and _RULE.match(text) is not None)
            or (cur.kind in _ENDS_WITH_STACK and text.strip() == "</TASK>")
            or cur.kind in _ONE_LINE
            or len(cur.lines) >= MAX_LINES
        )
        if ended:
            out.append(cur.done())
            cur = None
    if cur is not None:
        out.append(cur.done())
    return out


def scan_file(path: Path, since_offset: int = 0) -> list[Splat]:
    try:
        with open(path, "rb") as f:
            f.seek(since_offset)
            data = f.read()
    except FileNotFoundError:
        return []
    return scan(data, since_offset)
