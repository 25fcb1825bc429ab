"""A real kernel somewhere else: the Backend interface by RPC to ``harness.agent``.

The agent (``python3 -m harness.agent``) runs where the kernel under test is -
in the test VM on a virtio-serial port, or behind ``ssh host`` on stdin/stdout -
and performs each operation on its own KernelBackend.  This side only
serialises: pytest, hypothesis and the model stay on the host.

    b = AgentBackend.spawn([sys.executable, "-m", "harness.agent", "--vm"])   # a subprocess (or ssh)
    b = AgentBackend.connect("/run/vm/agent.sock", timeout=600)              # QEMU's socket chardev
    fd = b.open("/dev/iommu").ret
    with b.batch() as batch:                       # several ops, one round trip
        r = batch.ioctl(fd, IOMMU_IOAS_ALLOC, buf)
        m = batch.read_mem(addr, 16)
    r.result()                                     # the OpResult
    b.close()                                      # disconnect (close(fd) is the Backend op)

A reply that does not come within ``request_timeout`` raises AgentTimeout (the
VM runner takes it for a hung kernel) and leaves the backend unusable.  An
exception inside the agent comes back as AgentRemoteError (also kept in
``last_exception``) and the agent carries on.  The wire protocol is in
``harness/agent/protocol.py`` and docs/agent.md; the ops are
the table in ``harness/backends/ops.py``.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import errno
import json
import os
import secrets
import select
import socket
import subprocess
import time
import types
import typing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any, Union

from ..backends.base import Backend, Facts, OpResult, Topology
from ..backends.ops import BACKEND_OPS, FACTS, FILES, NOTHING, TEXT, TOPOLOGY, TRUTH, VALUE, Op
from .protocol import HELLO, OPS, PROTOCOL_VERSION, LineBuffer, encode, unb64

__all__ = ["AgentBackend", "AgentConnectionError", "AgentError", "AgentRemoteError", "AgentTimeout", "Batch",
           "Call", "RemoteRefusal", "from_wire"]

DEFAULT_REQUEST_TIMEOUT = 60.0
INTERRUPTED = "interrupted mid-request"


class AgentError(RuntimeError):
    """Something went wrong talking to the agent."""


class AgentTimeout(AgentError, TimeoutError):
    """No reply within the timeout: the agent (or the kernel under it) is stuck.
    The connection is unusable afterwards."""


class AgentConnectionError(AgentError, ConnectionError):
    """The agent could not be reached, went away, or broke the protocol."""


class AgentInterrupted(AgentConnectionError):
    """The connection was left mid-request by Ctrl-C or SIGTERM (a reply still unread): a call
    after it is refused with this, which callers must not take for a stuck kernel."""


class AgentRemoteError(AgentError):
    """An exception raised inside the agent while it performed an op (a harness
    error, not an errno: those are OpResults).  ``type`` is the exception class
    name there ("RestoreError" when reset() could not put PCI functions back,
    "ProtocolError" for a request the agent could not parse)."""

    def __init__(self, op: str, type_: str, message: str, traceback: str = ""):
        super().__init__(f"agent {op}: {type_}: {message}")
        self.op = op
        self.type = type_
        self.message = message
        self.traceback = traceback


@dataclass(frozen=True)
class RemoteRefusal:
    """Why the agent's kernel backend refused an op; ``where`` is what the trace
    shows, as with KernelBackend.last_error."""

    where: str


@dataclass
class Call:
    """One op of a batch; filled in when the batch has run."""

    op: str
    args: tuple[Any, ...] = ()
    done: bool = False
    value: Any = None          # an OpResult for the syscall-like ops, else the op's value
    where: str = ""            # the agent-side refusal of this op, "" if none
    error: AgentRemoteError | None = None

    def result(self) -> Any:
        if not self.done:
            raise AgentError(f"{self.op}: the batch has not run")
        if self.error is not None:
            raise self.error
        return self.value


# -- wire -> dataclasses ---------------------------------------------------------------

_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def from_wire(tp: Any, value: Any) -> Any:
    """``value`` (as ``protocol.to_wire`` sent it) as an instance of ``tp``, following
    the type annotations: dataclasses from dicts (unknown keys ignored, missing
    ones defaulted), tuples and frozensets from lists."""
    origin = typing.get_origin(tp)
    targs = typing.get_args(tp)
    if origin is Union or origin is types.UnionType:
        if value is None and type(None) in targs:
            return None
        for t in targs:
            if t is type(None):
                continue
            with contextlib.suppress(TypeError, ValueError):
                return from_wire(t, value)
        raise ValueError(f"{value!r:.60} fits none of {tp}")
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise TypeError(f"{tp.__name__} from {type(value).__name__}")
        hints = _hints(tp)
        kwargs = {f.name: from_wire(hints[f.name], value[f.name])
                  for f in dataclasses.fields(tp) if f.init and f.name in value}
        return tp(**kwargs)
    if origin is tuple:
        if not isinstance(value, list):
            raise TypeError(f"tuple from {type(value).__name__}")
        if len(targs) == 2 and targs[1] is Ellipsis:
            return tuple(from_wire(targs[0], v) for v in value)
        if targs and len(targs) != len(value):
            raise ValueError(f"{tp} from {len(value)} items")
        return tuple(from_wire(t, v) for t, v in zip(targs, value, strict=True)) if targs else tuple(value)
    if origin in (frozenset, set, list):
        if not isinstance(value, list):
            raise TypeError(f"{origin.__name__} from {type(value).__name__}")
        items = [from_wire(targs[0], v) for v in value] if targs else value
        return origin(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise TypeError(f"dict from {type(value).__name__}")
        kt, vt = targs or (Any, Any)
        return {from_wire(kt, k): from_wire(vt, v) for k, v in value.items()}
    if tp is Any:
        return value
    if tp is bytes and isinstance(value, dict) and "b64" in value:
        return unb64(value["b64"])
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise TypeError(f"{tp} from {type(value).__name__} {value!r:.60}")


def _same(value: Any) -> Any:
    return value


def _echo(value: Any) -> Any:
    if isinstance(value, dict) and list(value) == ["b64"]:
        return unb64(value["b64"])
    return value


def _files(value: Any) -> dict[str, bytes]:
    return {path: unb64(v["b64"]) for path, v in value.items()}


# How a reply's "value" becomes what the op returns, by the op's result kind.
_CONVERT: dict[str, Any] = {
    FACTS: lambda v: from_wire(Facts, v),
    TOPOLOGY: lambda v: from_wire(Topology, v),
    TRUTH: bool,
    TEXT: str,
    FILES: _files,
    NOTHING: lambda v: None,
    VALUE: _echo,
}
_VALUE: dict[str, Any] = {name: _CONVERT[op.result] for name, op in OPS.items() if op.result in _CONVERT}


# -- the byte stream -------------------------------------------------------------------


class _Channel:
    """Lines over a read fd and a write fd (the same fd for a socket), with deadlines."""

    def __init__(self, rfd: int, wfd: int, describe: str, owned: bool = True):
        self.rfd, self.wfd = rfd, wfd
        self.describe = describe
        self.owned = owned  # close the fds on close() (a subprocess's pipes are closed by _reap)
        for fd in {rfd, wfd}:
            os.set_blocking(fd, False)
        self.buf = LineBuffer()
        self._rpoll = select.poll()
        self._rpoll.register(rfd, select.POLLIN)
        self._wpoll = select.poll()
        self._wpoll.register(wfd, select.POLLOUT)

    def send(self, data: bytes, deadline: float, what: str) -> None:
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.wfd, view)
            except BlockingIOError:
                self._wait(self._wpoll, deadline, what)
                continue
            except (BrokenPipeError, ConnectionError) as e:
                raise AgentConnectionError(f"{self.describe}: sending {what}: {e}") from None
            view = view[n:]

    def recv(self, deadline: float, what: str) -> bytes:
        """The next line (TOO_LONG for an overlong one)."""
        while True:
            line = self.buf.pop()
            if line is not None:
                return line
            try:
                data = os.read(self.rfd, 1 << 20)
            except BlockingIOError:
                self._wait(self._rpoll, deadline, what)
                continue
            except OSError as e:
                # ECONNRESET on a socket, EIO on a tty whose other side is gone.
                if e.errno not in (errno.ECONNRESET, errno.EIO):
                    raise
                data = b""
            if not data:
                raise AgentConnectionError(f"{self.describe}: the agent closed the connection while we "
                                           f"waited for {what}")
            self.buf.feed(data)

    @staticmethod
    def _wait(poller: select.poll, deadline: float, what: str) -> None:
        left = deadline - time.monotonic()
        if left <= 0 or not poller.poll(max(1, int(left * 1000 + 0.999))):  # noqa: SIM102
            if time.monotonic() >= deadline:  # else a spurious wake-up: try again
                raise AgentTimeout(f"no reply to {what} in time")

    def close(self) -> None:
        if not self.owned:
            return
        self.owned = False
        for fd in {self.rfd, self.wfd}:
            with contextlib.suppress(OSError):
                os.close(fd)


# -- the backend -------------------------------------------------------------------------


class AgentBackend(Backend):
    """Every Backend op performed by a remote ``harness.agent``.  Build it with
    ``spawn()``, ``connect()`` or ``from_fds()``."""

    name = "kernel"
    interruptible = False   # it has its own limit per request (AgentTimeout)

    def __init__(self, channel: _Channel, *, request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
                 hello_timeout: float | None = None, process: subprocess.Popen[bytes] | None = None):
        self._chan = channel
        self._process = process
        self.request_timeout = request_timeout
        self._next_id = 1
        self._broken = ""
        self.closed = False
        # What the engine reads after a failed op (KernelBackend's attributes).
        self.last_error: RemoteRefusal | None = None
        self.last_refusal = ""
        self.last_exception: AgentRemoteError | None = None
        self._facts: Facts | None = None
        self._topology: Topology | None = None
        self._sysfs_dirty = False
        try:
            self.hello: dict[str, Any] = self._handshake(hello_timeout if hello_timeout is not None
                                                        else request_timeout)
        except BaseException:
            self.disconnect()
            raise

    # -- constructors --------------------------------------------------------------------
    @classmethod
    def spawn(cls, argv: Sequence[str], *, request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
              hello_timeout: float = 120.0, stderr: int | IO[Any] | None = None,
              env: dict[str, str] | None = None, cwd: str | None = None) -> AgentBackend:
        """Run the agent as a subprocess (``[python3, -m, harness.agent, ...]``, or
        ``[ssh, host, python3 -m harness.agent ...]``) and talk over its stdin/stdout.
        Its stderr goes where ``stderr`` says (inherited by default)."""
        proc = subprocess.Popen(list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                                env=env, cwd=cwd, bufsize=0)
        assert proc.stdin is not None and proc.stdout is not None
        chan = _Channel(proc.stdout.fileno(), proc.stdin.fileno(), f"agent (pid {proc.pid}, {argv[0]})",
                        owned=False)
        try:
            return cls(chan, request_timeout=request_timeout, hello_timeout=hello_timeout, process=proc)
        except BaseException:
            _reap(proc)
            raise

    @classmethod
    def connect(cls, path: str, timeout: float, *, request_timeout: float = DEFAULT_REQUEST_TIMEOUT) -> AgentBackend:
        """Connect to a unix socket that leads to the agent (QEMU's
        ``-chardev socket,path=PATH,server=on,wait=off`` behind a virtserialport).
        ``timeout`` covers everything up to the agent's hello: the socket appearing,
        the guest booting, the agent starting."""
        deadline = time.monotonic() + timeout
        delay = 0.01
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            try:
                sock.connect(path)
                break
            except (FileNotFoundError, ConnectionRefusedError) as e:
                sock.close()
                if time.monotonic() + delay > deadline:
                    raise AgentConnectionError(f"{path}: {e.strerror} (waited {timeout:g} s)") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
            except OSError:
                sock.close()
                raise
        fd = sock.detach()
        return cls(_Channel(fd, fd, f"agent at {path}"), request_timeout=request_timeout,
                   hello_timeout=max(0.0, deadline - time.monotonic()))

    @classmethod
    def from_fds(cls, rfd: int, wfd: int, *, request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
                 hello_timeout: float | None = None, describe: str = "agent") -> AgentBackend:
        """Talk over fds already connected to an agent (a socketpair, a pty master).
        The backend owns them from now on and closes them on disconnect."""
        return cls(_Channel(rfd, wfd, describe), request_timeout=request_timeout, hello_timeout=hello_timeout)

    # -- connection ----------------------------------------------------------------------
    def _handshake(self, timeout: float) -> dict[str, Any]:
        """Ask for a hello and skip everything before the answer: the agent's own
        first hello, and on a reused virtio-serial port whatever a previous host
        session left half-sent.  The leading newline ends any stale partial request
        on the agent's side; the hello's reset drops fds, mappings and sysfs changes
        an earlier session left (a no-op for a fresh agent)."""
        nonce = f"hello-{secrets.token_hex(8)}"
        deadline = time.monotonic() + timeout
        try:
            self._chan.send(b"\n" + encode({"id": nonce, "op": "hello", "args": [True]}), deadline, "hello")
            unsent = None
        except AgentConnectionError as e:
            unsent = e  # an agent that could not start may be gone already: read why first
        while True:
            try:
                line = self._chan.recv(deadline, "the agent's hello")
            except AgentTimeout:
                raise AgentTimeout(f"{self._chan.describe}: no hello from the agent within {timeout:g} s") from None
            except AgentConnectionError as e:
                raise AgentConnectionError(f"{unsent or e}{self._exit_status()}") from None
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if not isinstance(msg, dict) or msg.get("hello") != HELLO:
                continue
            if msg.get("error"):
                raise AgentConnectionError(f"{self._chan.describe}: the agent could not start: {msg['error']}")
            if msg.get("protocol") != PROTOCOL_VERSION:
                raise AgentConnectionError(f"{self._chan.describe}: agent speaks protocol {msg.get('protocol')!r}, "
                                           f"this host {PROTOCOL_VERSION}")
            if msg.get("id") == nonce:
                if msg.get("reset_error"):
                    raise AgentConnectionError(f"{self._chan.describe}: the agent could not reset what an earlier "
                                               f"session left: {msg['reset_error']}")
                msg.pop("id")
                return dict(msg)

    def _exit_status(self) -> str:
        if self._process is None:
            return ""
        try:
            code = self._process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            return ""
        return f" (agent exit status {code})"

    @property
    def kernel_release(self) -> str:
        return str(self.hello.get("kernel", ""))

    def disconnect(self) -> None:
        """Close the connection.  A spawned agent sees EOF, resets its backend and
        exits; an agent on a virtio-serial port resets and waits for the next host."""
        if self.closed:
            return
        self.closed = True
        self._broken = self._broken or "disconnected"
        self._chan.close()
        if self._process is not None:
            # A timed-out agent is stuck in an op and will not notice EOF.
            _reap(self._process, grace=0.5 if self._broken.startswith("timed out") else 10.0)

    def close(self, fd: int | None = None) -> OpResult:
        """``close(fd)``: the Backend op, close(2) in the agent.  ``close()``: disconnect."""
        if fd is None:
            self.disconnect()
            return OpResult()
        return self._result("close", fd)

    def shutdown(self) -> None:
        """Ask the agent to reset its backend and exit (also on a virtio-serial port),
        then disconnect.  Raises AgentRemoteError if the reset failed."""
        try:
            if not self._broken:
                self.call("shutdown")
        finally:
            self.disconnect()

    def __enter__(self) -> AgentBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.disconnect()

    # -- RPC -----------------------------------------------------------------------------
    def _usable(self) -> None:
        if self._broken == INTERRUPTED:
            raise AgentInterrupted(f"{self._chan.describe}: connection unusable ({self._broken})")
        if self._broken:
            raise AgentConnectionError(f"{self._chan.describe}: connection unusable ({self._broken})")

    def _exchange(self, line: bytes, what: str, timeout: float | None) -> Any:
        self._usable()
        deadline = time.monotonic() + (self.request_timeout if timeout is None else timeout)
        try:
            self._chan.send(line, deadline, what)
            reply = self._chan.recv(deadline, what)
        except AgentTimeout as e:
            self._broken = f"timed out: {e}"
            limit = self.request_timeout if timeout is None else timeout
            raise AgentTimeout(f"{self._chan.describe}: no reply to {what} within {limit:g} s; the agent "
                               f"or the kernel under it is stuck") from None
        except AgentConnectionError as e:
            self._broken = str(e)
            raise AgentConnectionError(f"{e}{self._exit_status()}") from None
        except BaseException:
            self._broken = INTERRUPTED    # the request may be sent and its reply not read
            raise
        try:
            return json.loads(reply)
        except ValueError:
            self._broken = "unparsable reply"
            raise AgentConnectionError(f"{self._chan.describe}: unparsable reply to {what}: {reply[:200]!r}") from None

    def _fill(self, call: Call, reply: Any, rid: int) -> None:
        if not isinstance(reply, dict) or reply.get("id") != rid:
            self._broken = "reply out of step"
            raise AgentConnectionError(f"{self._chan.describe}: expected the reply to request {rid} "
                                       f"({call.op}), got {str(reply)[:200]}")
        call.done = True
        if "error" in reply:
            call.error = AgentRemoteError(call.op, str(reply.get("type", "Exception")), str(reply["error"]),
                                          str(reply.get("traceback", "")))
        elif "errno" in reply:
            data = reply.get("data")
            call.value = OpResult(ret=reply["ret"], errno=reply["errno"], data=unb64(data) if data else b"")
            call.where = reply.get("where", "")
        else:
            call.value = _VALUE.get(call.op, _same)(reply.get("value"))
        self._after(call)

    def _after(self, call: Call) -> None:
        """Bookkeeping as each reply arrives, in request order."""
        op = call.op
        if op == "sysfs_write":
            self._topology = None
            self._sysfs_dirty = True
        elif op in ("reset", "shutdown") and self._sysfs_dirty:
            # reset() put back what the writes changed.  Without a write since the
            # topology was read, it changed nothing the topology shows.
            self._topology = None
            self._sysfs_dirty = False
        if call.error is not None:
            self.last_exception = call.error
        elif isinstance(call.value, OpResult):
            self.last_error = RemoteRefusal(call.where) if call.where else None
            if call.where:
                self.last_refusal = call.where

    def _request(self, call: Call) -> tuple[int, dict[str, Any]]:
        rid = self._next_id
        self._next_id += 1
        return rid, {"id": rid, "op": call.op, "args": list(call.args)}

    def execute(self, calls: Sequence[Call], timeout: float | None = None) -> Sequence[Call]:
        """Run ``calls`` in order in one round trip and fill them in (per-op agent
        exceptions go to each Call's ``error``; nothing raises for them here)."""
        if not calls:
            return calls
        ids, reqs = zip(*(self._request(c) for c in calls), strict=True)
        replies = self._exchange(encode(list(reqs)), f"a batch of {len(calls)} ({calls[0].op}, ...)", timeout)
        if not isinstance(replies, list) or len(replies) != len(calls):
            self._broken = "batch reply out of step"
            raise AgentConnectionError(f"{self._chan.describe}: a batch of {len(calls)} got {str(replies)[:200]}")
        for call, reply, rid in zip(calls, replies, ids, strict=True):
            self._fill(call, reply, rid)
        return calls

    def call(self, op: str, *args: Any, timeout: float | None = None) -> Any:
        """One op in one round trip: its OpResult or value; AgentRemoteError if it raised."""
        c = Call(op, args)
        rid, req = self._request(c)
        self._fill(c, self._exchange(encode(req), op, timeout), rid)
        return c.result()

    @contextlib.contextmanager
    def batch(self, timeout: float | None = None) -> Iterator[Batch]:
        """Collect ops, run them in one round trip when the block ends.  The ops
        return Calls; ``call.result()`` after the block.  The first op that raised in
        the agent is raised at the end of the block, after every op has run."""
        b = Batch()
        yield b
        self.execute(b.calls, timeout)
        for c in b.calls:
            if c.error is not None:
                raise c.error

    def _result(self, op: str, *args: Any) -> OpResult:
        res = self.call(op, *args)
        assert isinstance(res, OpResult)
        return res

    # -- Backend ------------------------------------------------------------------------
    # Every other Backend op is generated from the table (_remote, below the class).
    def facts(self) -> Facts:
        if self._facts is None:
            self._facts = self.call("facts")
        return self._facts

    def topology(self) -> Topology:
        if self._topology is None:
            self._topology = self.call("topology")
        return self._topology.copy()

    def reset(self) -> None:
        """The agent's KernelBackend.reset(); AgentRemoteError (type "RestoreError")
        if PCI functions could not be put back."""
        self.last_error = None
        self.call("reset")

    def ping(self, payload: Any = None, timeout: float | None = None) -> Any:
        """The payload back (any JSON value, or bytes) after one round trip."""
        return self.call("ping", payload, timeout=timeout)


class Batch:
    """Ops recorded for one round trip (``AgentBackend.batch()``); each returns its Call.
    It has a method for every Backend op (generated from the table) and ``ping``."""

    def __init__(self) -> None:
        self.calls: list[Call] = []

    def call(self, op: str, *args: Any) -> Call:
        c = Call(op, args)
        self.calls.append(c)
        return c

    def __len__(self) -> int:
        return len(self.calls)

    def ping(self, payload: Any = None) -> Call:
        return self.call("ping", payload)


def _remote(op: Op) -> Any:
    """AgentBackend's method for ``op``: one round trip."""
    name, timeout = op.name, op.timeout

    def method(self: AgentBackend, *args: Any, **kwargs: Any) -> Any:
        return self.call(name, *op.bind(args, kwargs), timeout=timeout)

    return method


def _recorded(op: Op) -> Any:
    """Batch's method for ``op``: a Call added to the batch."""
    name = op.name

    def method(self: Batch, *args: Any, **kwargs: Any) -> Call:
        return self.call(name, *op.bind(args, kwargs))

    return method


def _generate(cls: type, make: Any) -> None:
    """Give ``cls`` a method per Backend op it does not define itself."""
    for op in BACKEND_OPS:
        if op.name not in cls.__dict__:
            method = make(op)
            method.__name__ = op.name
            method.__qualname__ = f"{cls.__name__}.{op.name}"
            method.__doc__ = getattr(Backend, op.name).__doc__
            setattr(cls, op.name, method)
    abc.update_abstractmethods(cls)


_generate(AgentBackend, _remote)
_generate(Batch, _recorded)


def _reap(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """Let a spawned agent finish (it resets and exits on EOF); stop it if it won't."""
    for f in (proc.stdin, proc.stdout):
        if f is not None:
            with contextlib.suppress(OSError):
                f.close()
    try:
        proc.wait(timeout=grace)
        return
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()  # SIGTERM: the agent resets on its way out
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()

