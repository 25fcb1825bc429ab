"""The agent's wire protocol, version 1: newline-delimited JSON.

Every message is one line: a JSON object (or, for a batch, a JSON array of
objects) in ASCII (``ensure_ascii``), ended by ``\\n``.  JSON never contains a raw
newline, so the framing is binary-safe once bytes are encoded, and it is
self-synchronising: after a reconnect on a virtio-serial port, a stale half
message left in a buffer spoils at most the one line it ends up in.

Bytes travel as ``{"b64": "<base64>"}`` wherever a value may be bytes (request
arguments) and as a base64 string in a reply's ``data``.

Agent -> host, unsolicited, first (and again after every reconnect)::

    {"hello": "vfio-conformance-agent", "protocol": 1, "kernel": "6.12.0", "pid": 123, ...}

Host -> agent, one request, or a batch (executed in order, one reply line)::

    {"id": 7, "op": "ioctl", "args": [3, 21531, {"b64": "AAAAAA=="}]}
    [{"id": 8, "op": "mmap", "args": [4096]}, {"id": 9, "op": "munmap", "args": [..., 4096]}]

Agent -> host, one reply per request (a list of them for a batch)::

    {"id": 7, "ret": 0, "errno": 0, "data": "BQAAAA=="}                 (OpResult ops)
    {"id": 7, "ret": -1, "errno": 9, "where": "vfio-conformance refused ioctl: ..."}
    {"id": 7, "value": ...}                                              (other ops)
    {"id": 7, "error": "message", "type": "TypeError", "traceback": "..."}  (harness-side exception)

docs/agent.md has the whole list of ops.
"""

from __future__ import annotations

import binascii
import dataclasses
import json
import re
import sys
from typing import Any

from ..backends.ops import BACKEND_OPS, BOOL, JSON, VALUE, Op, Param

PROTOCOL_VERSION = 1
HELLO = "vfio-conformance-agent"
# A line longer than this is refused (and skipped up to its newline): a read(2)
# is capped at 16 MiB by the kernel backend, 22 MiB in base64.
MAX_LINE = 64 << 20

# The agent's own ops, besides the Backend's.
SESSION_OPS: tuple[Op, ...] = (
    Op("ping", (Param("payload", JSON, None),), VALUE),
    # reset=true: a new host session begins; drop what an earlier one left (a host
    # that vanished mid-write on a virtio-serial port is never seen as an EOF).
    Op("hello", (Param("reset", BOOL, False),), VALUE),
    Op("shutdown", result=VALUE),
)
# Every op the agent serves (its hello lists them).
OPS: dict[str, Op] = {op.name: op for op in (*BACKEND_OPS, *SESSION_OPS)}

_dumps = json.JSONEncoder(separators=(",", ":"), default=lambda o: _default(o)).encode


_B64_RE = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")


class ProtocolError(ValueError):
    """A message that does not follow the protocol."""


def _default(o: Any) -> Any:
    if isinstance(o, (bytes, bytearray, memoryview)):
        return {"b64": b64(bytes(o))}
    if isinstance(o, (set, frozenset)):
        return sorted(o)
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return to_wire(o)
    raise TypeError(f"{type(o).__name__} is not serialisable on the agent protocol")


def b64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def unb64(text: str) -> bytes:
    try:
        if sys.version_info >= (3, 11):
            return binascii.a2b_base64(text, strict_mode=True)
        if _B64_RE.fullmatch(text) is None:
            raise ValueError("not base64")
        return binascii.a2b_base64(text)
    except (binascii.Error, ValueError, TypeError) as e:
        raise ProtocolError(f"bad base64: {e}") from None


def encode(msg: Any) -> bytes:
    """One message as a line (bytes anywhere in it become {"b64": ...})."""
    return _dumps(msg).encode("ascii") + b"\n"


def arg(value: Any) -> Any:
    """A request argument as sent: {"b64": ...} is bytes; anything else is itself."""
    if type(value) is dict and len(value) == 1 and "b64" in value:
        if not isinstance(value["b64"], str):
            raise ProtocolError("b64 must be a string")
        return unb64(value["b64"])
    return value


def to_wire(obj: Any) -> Any:
    """A dataclass (Facts, Topology, ...) as JSON-able data: dataclasses become
    dicts of their fields, tuples and sets become lists (sets sorted)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_wire(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_wire(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted(to_wire(v) for v in obj)
    if isinstance(obj, dict):
        return {str(k): to_wire(v) for k, v in obj.items()}
    if isinstance(obj, (bytes, bytearray)):
        return {"b64": b64(bytes(obj))}
    return obj


class LineBuffer:
    """Bytes from a stream in, complete lines out, whatever the read sizes were.

    ``pop()`` returns the next line without its newline, ``None`` when no whole line
    is buffered, or ``TOO_LONG`` once for a line past ``max_line`` (whose bytes are
    then dropped up to its newline)."""

    TOO_LONG = b"\0too-long"

    def __init__(self, max_line: int = MAX_LINE):
        self.max_line = max_line
        self.buf = bytearray()
        self._scan = 0          # bytes of buf known to hold no newline
        self._skipping = False  # inside a line that was too long
        self._report = False

    def feed(self, data: bytes) -> None:
        self.buf += data

    def clear(self) -> None:
        self.buf.clear()
        self._scan = 0
        self._skipping = self._report = False

    def pop(self) -> bytes | None:
        while True:
            if self._report:
                self._report = False
                return self.TOO_LONG
            nl = self.buf.find(b"\n", self._scan)
            if nl < 0:
                self._scan = len(self.buf)
                if self._scan > self.max_line:
                    if not self._skipping:
                        self._skipping = self._report = True
                    self.buf.clear()
                    self._scan = 0
                    continue
                return None
            line = bytes(self.buf[:nl])
            del self.buf[: nl + 1]
            self._scan = 0
            if self._skipping:
                self._skipping = False
                continue
            if len(line) > self.max_line:
                return self.TOO_LONG
            return line
