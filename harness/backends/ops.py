"""The Backend operations, declared once: each one's parameters and what it returns.

``Backend`` (base.py) keeps the typed signatures; this table is what code that
handles operations by name reads: the agent's dispatch (``harness/agent/server.py``)
and its client's generated methods (``harness/agent/client.py``, ``AgentBackend``
and ``Batch``).  A test checks the table against ``Backend``'s methods, names and
defaults.  Parameters whose types include ``bytes`` travel as ``{"b64": ...}`` on
the agent's wire (docs/agent.md).

This module is on the agent's import path in the guest: standard library only.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .base import MEMFD_NAME

REQUIRED: Any = object()

# Parameter types, as the agent accepts them from JSON (bytes arrive as {"b64"}).
INT: tuple[type, ...] = (int,)
STR: tuple[type, ...] = (str,)
BOOL: tuple[type, ...] = (bool,)
BYTES: tuple[type, ...] = (bytes,)
IOCTL_ARG: tuple[type, ...] = (bytes, int, type(None))  # a buffer, a raw value or pointer, or 0
JSON: tuple[type, ...] = (object,)                        # any JSON value (or bytes)

# Result kinds: what an operation returns.
RESULT = "OpResult"      # on the wire: ret, errno, data (base64), where
FACTS = "Facts"
TOPOLOGY = "Topology"
TRUTH = "bool"
TEXT = "str"
FILES = "dict[str, bytes]"
NOTHING = "None"
VALUE = "value"          # any JSON value (bytes as {"b64"})


@dataclass(frozen=True)
class Param:
    name: str
    types: tuple[type, ...]
    default: Any = REQUIRED

    @property
    def is_bytes(self) -> bool:
        return bytes in self.types


@dataclass(frozen=True)
class Op:
    name: str
    params: tuple[Param, ...] = ()
    result: str = RESULT
    # How long a client waits for the reply when an op may take longer than most (s).
    timeout: float | None = None

    @property
    def has_bytes(self) -> bool:
        return any(p.is_bytes for p in self.params)

    def bind(self, args: Sequence[Any], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        """``args`` and ``kwargs`` as the full positional list, defaults filled in, bytes-like
        values as bytes (a snapshot of a buffer the caller may reuse); TypeError as a Python
        call of the Backend method would raise."""
        params = self.params
        if len(args) > len(params):
            raise TypeError(f"{self.name}() takes {len(params)} arguments, {len(args)} given")
        values = list(args)
        if kwargs or len(values) < len(params):
            unknown = sorted(set(kwargs) - {p.name for p in params})
            if unknown:
                raise TypeError(f"{self.name}() got an unexpected keyword argument {unknown[0]!r}")
            for p in params[len(values):]:
                value = kwargs.pop(p.name, p.default)
                if value is REQUIRED:
                    raise TypeError(f"{self.name}() missing argument {p.name!r}")
                values.append(value)
            if kwargs:
                raise TypeError(f"{self.name}() got multiple values for argument {sorted(kwargs)[0]!r}")
        if self.has_bytes:
            values = [bytes(v) if isinstance(v, (bytearray, memoryview)) else v for v in values]
        return tuple(values)


_FD = Param("fd", INT)
_PATH = Param("path", STR)
_ADDR = Param("addr", INT)
_LENGTH = Param("length", INT)
_IOCTL = (_FD, Param("request", INT), Param("arg", IOCTL_ARG, None))

BACKEND_OPS: tuple[Op, ...] = (
    Op("facts", result=FACTS),
    Op("topology", result=TOPOLOGY),
    Op("path_exists", (_PATH,), TRUTH),
    Op("may_touch", (Param("bdf", STR),), TRUTH),
    Op("open", (_PATH, Param("flags", INT, os.O_RDWR))),
    Op("close", (_FD,)),
    Op("ioctl", _IOCTL),
    Op("mmap", (_LENGTH, Param("align", INT, 0))),
    Op("munmap", (_ADDR, _LENGTH)),
    Op("mprotect", (_ADDR, _LENGTH, Param("prot", INT))),
    Op("read_mem", (_ADDR, _LENGTH)),
    Op("write_mem", (_ADDR, Param("data", BYTES))),
    Op("read", (_FD, _LENGTH)),
    Op("write", (_FD, Param("data", BYTES))),
    Op("pread", (_FD, _LENGTH, Param("offset", INT))),
    Op("pwrite", (_FD, Param("data", BYTES), Param("offset", INT))),
    Op("mmap_fd", (_FD, _LENGTH, Param("offset", INT), Param("shared", BOOL, True))),
    Op("eventfd", (Param("initval", INT, 0),)),
    Op("memfd", (Param("size", INT), Param("name", STR, MEMFD_NAME))),
    Op("sysfs_read", (_PATH,)),
    Op("sysfs_write", (_PATH, Param("value", STR))),
    Op("ioctl_fail_nth", (*_IOCTL, Param("nth", INT))),
    Op("fault_injected", result=TRUTH),
    Op("setup_fault_injection", result=TEXT),
    Op("gcov_collect", (Param("reset", BOOL, False),), FILES, timeout=120.0),
    Op("kcov_enable", result=TEXT),
    Op("kcov_collect", result=VALUE),
    Op("select_mutant", (Param("number", INT),), TEXT),
    Op("reset", result=NOTHING),
)

BY_NAME: dict[str, Op] = {op.name: op for op in BACKEND_OPS}
