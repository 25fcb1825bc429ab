"""Dispatching agent requests to a local KernelBackend, and the serving loop."""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import time
from collections.abc import Callable
from json import loads
from typing import Any

from ..backends.base import Backend, OpResult
from ..backends.ops import BACKEND_OPS, REQUIRED, RESULT
from .protocol import HELLO, OPS, PROTOCOL_VERSION, LineBuffer, ProtocolError, arg, b64, encode, to_wire

# op -> its parameters: (name, accepted types, default).  The Backend methods
# take these positionally, in this order.
SIGNATURES: dict[str, tuple[tuple[str, tuple[type, ...], Any], ...]] = {
    name: tuple((p.name, p.types, p.default) for p in op.params) for name, op in OPS.items()
}
# The ops the backend performs, and those of them that return an OpResult.
BACKEND_OP_NAMES = frozenset(op.name for op in BACKEND_OPS)
RESULT_OPS = frozenset(op.name for op in BACKEND_OPS if op.result == RESULT)


def _exact(types: tuple[type, ...]) -> frozenset[type]:
    """The JSON types an argument of ``types`` arrives as (bytes as a {"b64"} dict)."""
    if object in types:
        return frozenset({int, float, str, bool, type(None), list, dict})
    return frozenset(dict if t is bytes else t for t in types)


# Per op, for the common case of a full positional argument list: each position's
# exact JSON types (``type(True) is bool``, so no bool passes for an int).
_EXACT = {op: tuple(_exact(p[1]) for p in sig) for op, sig in SIGNATURES.items()}
_HAS_BYTES = frozenset(name for name, op in OPS.items() if op.has_bytes)


def _fast_args(op: str, args: Any) -> list[Any] | None:
    """``args`` checked and converted, or None to take the slow path (which also
    says what is wrong)."""
    exact = _EXACT[op]
    if type(args) is not list or len(args) != len(exact):
        return None
    for v, ok in zip(args, exact):  # noqa: B905 (lengths checked)
        if type(v) not in ok:
            return None
    if op in _HAS_BYTES:
        return [arg(v) for v in args]
    return args


def _check_args(op: str, args: Any) -> list[Any]:
    fast = _fast_args(op, args)
    if fast is not None:
        return fast
    sig = SIGNATURES[op]
    if isinstance(args, list):
        if len(args) > len(sig):
            raise ProtocolError(f"{op} takes at most {len(sig)} arguments, got {len(args)}")
        values = [arg(a) for a in args]
    elif isinstance(args, dict):
        names = [p[0] for p in sig]
        unknown = sorted(set(args) - set(names))
        if unknown:
            raise ProtocolError(f"{op} has no argument {', '.join(unknown)} (it takes: {', '.join(names) or 'none'})")
        values = []
        for name in names:
            if name not in args:
                break
            values.append(arg(args[name]))
        if len(values) != len(args):
            raise ProtocolError(f"{op}: arguments must be given in order without gaps ({', '.join(names)})")
    else:
        raise ProtocolError(f"args must be a list or an object, not {type(args).__name__}")
    for i, (name, types, default) in enumerate(sig):
        if i >= len(values):
            if default is REQUIRED:
                raise ProtocolError(f"{op}: missing argument {name}")
            values.append(default)
            continue
        v = values[i]
        if not isinstance(v, types) or (isinstance(v, bool) and bool not in types and object not in types):
            want = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise ProtocolError(f"{op}: {name} must be {want}, not {type(v).__name__}")
    return values


def error_reply(rid: Any, exc: BaseException, with_traceback: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {"id": rid, "error": str(exc) or type(exc).__name__, "type": type(exc).__name__}
    if with_traceback and not isinstance(exc, ProtocolError):
        import traceback  # only when something went wrong: it costs start-up time in the guest

        out["traceback"] = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-4000:]
    return out


class Agent:
    """Turns request lines into reply lines against one backend (a KernelBackend
    in the guest; any Backend in tests)."""

    def __init__(self, backend: Backend, info: dict[str, Any] | None = None):
        self.backend = backend
        self.info = dict(info or {})
        self.stopped = False
        self._methods: dict[str, Callable[..., Any]] = {
            op: getattr(backend, op) for op in BACKEND_OP_NAMES
        }

    # -- messages --------------------------------------------------------------
    def hello(self, rid: Any = None) -> dict[str, Any]:
        msg: dict[str, Any] = {"hello": HELLO, "protocol": PROTOCOL_VERSION, "kernel": os.uname().release,
                               "pid": os.getpid(), "python": sys.version.split()[0], "backend": self.backend.name,
                               "ops": sorted(OPS)}
        msg.update(self.info)
        if rid is not None:
            msg["id"] = rid
        return msg

    def handle_line(self, line: bytes) -> bytes | None:
        """The reply line for one request line; None for a blank line (which the
        host sends to end any stale partial line before its first request)."""
        if line is LineBuffer.TOO_LONG:
            return encode(error_reply(None, ProtocolError("request line too long; skipped")))
        if not line.strip():
            return None
        try:
            msg = loads(line)
        except Exception as e:
            return encode(error_reply(None, ProtocolError(f"malformed request: {e}")))
        try:
            if isinstance(msg, list):
                return encode([self.handle(m) for m in msg])
            return encode(self.handle(msg))
        except Exception as e:  # a reply that would not encode
            return encode(error_reply(msg.get("id") if isinstance(msg, dict) else None, e))

    def handle(self, msg: Any) -> dict[str, Any]:
        """One request object -> one reply object.  Never raises (but for
        KeyboardInterrupt and SystemExit)."""
        rid = None
        try:
            if not isinstance(msg, dict):
                raise ProtocolError(f"a request is a JSON object, not {type(msg).__name__}")
            rid = msg.get("id")
            op = msg.get("op")
            if op not in _EXACT:
                raise ProtocolError(f"unknown op {op!r} (known: {', '.join(sorted(OPS))})")
            args = _check_args(op, msg.get("args", []))
            if op in RESULT_OPS:
                backend = self.backend
                if hasattr(backend, "last_error"):
                    backend.last_error = None
                res: OpResult = self._methods[op](*args)
                reply: dict[str, Any] = {"id": rid, "ret": res.ret, "errno": res.errno}
                if res.data:
                    reply["data"] = b64(res.data)
                if res.errno:
                    why = getattr(backend, "last_error", None)
                    if why is not None:
                        reply["where"] = str(getattr(why, "where", why))
                return reply
            if op == "ping":
                return {"id": rid, "value": args[0]}
            if op == "hello":
                reply = self.hello(rid)
                if args[0]:
                    try:
                        self.backend.reset()
                    except Exception as e:
                        reply["reset_error"] = f"{type(e).__name__}: {e}"
                return reply
            if op == "shutdown":
                self.stopped = True
                self.backend.reset()
                return {"id": rid, "value": None}
            return {"id": rid, "value": to_wire(self._methods[op](*args))}
        except Exception as e:
            return error_reply(rid, e)


# -- the loop ---------------------------------------------------------------------


class _Disconnected(Exception):
    pass


def log(msg: str) -> None:
    with contextlib.suppress(OSError):
        os.write(2, f"vfio-agent[{os.getpid()}]: {msg}\n".encode(errors="replace"))


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except (BrokenPipeError, ConnectionError) as e:
            raise _Disconnected(str(e)) from None
        except OSError as e:
            if e.errno == errno.EIO:  # a tty (pty, serial) whose other side hung up
                raise _Disconnected(str(e)) from None
            raise
        view = view[n:]


def serve(agent: Agent, rfd: int, wfd: int, *, reconnect: bool = False, read_size: int = 1 << 20) -> int:
    """Answer requests from ``rfd`` on ``wfd`` until shutdown, or until EOF unless
    ``reconnect``.  At every EOF the backend is reset (the host session that made
    fds, mappings and sysfs changes is gone).  With ``reconnect`` (a virtio-serial
    port: reads return 0 while no host is connected, and writes block until one
    is), the agent then says hello again, which waits for the next host."""
    buf = LineBuffer()
    idle_eofs = 0
    while True:
        got_data = False
        try:
            write_all(wfd, encode(agent.hello()))
            while not agent.stopped:
                line = buf.pop()
                if line is None:
                    try:
                        data = os.read(rfd, read_size)
                    except OSError as e:
                        if e.errno in (errno.EIO, errno.ECONNRESET):
                            data = b""
                        else:
                            raise
                    if not data:
                        raise _Disconnected("end of input")
                    got_data = True
                    buf.feed(data)
                    continue
                reply = agent.handle_line(line)
                if reply is not None:
                    write_all(wfd, reply)
            return 0
        except _Disconnected as e:
            buf.clear()
            try:
                agent.backend.reset()
            except Exception as exc:
                log(f"reset after disconnect failed: {exc}")
            if not reconnect:
                return 0
            idle_eofs = 0 if got_data else idle_eofs + 1
            log(f"host disconnected ({e}); waiting for the next one")
            if idle_eofs:
                # Not a virtio port (whose hello write blocks until a host connects):
                # do not spin on a channel that keeps reporting EOF.
                time.sleep(min(0.05 * idle_eofs, 1.0))
