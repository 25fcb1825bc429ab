"""The agent (harness.agent) and its host side (harness.agent.client.AgentBackend),
on this machine's real kernel.

The agent runs as a real subprocess over pipes, a pty, or a unix socket, on a
KernelBackend over a fake sysfs tree in a temporary directory (test_kernel_backend_sysfs's
FakePci, as plain files: no PCI core behind it), so nothing of the host changes.
Most checks are differential: the same ops on a local KernelBackend and through the
agent must give the same results, fds and addresses aside.
"""

from __future__ import annotations

import errno
import inspect
import json
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
import tty
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_kernel_backend_sysfs import E1000, NVME, OTHER, FakePci

from harness.agent import protocol
from harness.agent.client import (
    AgentBackend,
    AgentConnectionError,
    AgentRemoteError,
    AgentTimeout,
    Batch,
    Call,
    from_wire,
)
from harness.agent.protocol import LineBuffer, encode
from harness.agent.server import SIGNATURES, Agent, serve
from harness.backends import ops
from harness.backends.base import Backend, Facts, IommuHw, OpResult, PciFunction, Topology
from harness.backends.kernel import PAGE, KernelBackend
from harness.backends.sysfs_state import VM_ENV

REPO = Path(__file__).resolve().parent.parent
FIFO_FLAGS = os.O_RDWR | os.O_NONBLOCK


def make_root(root: Path) -> Path:
    """A fake /: FakePci's sysfs, a FIFO, a file outside what the backend may open.

    Its sysfs files are plain files (no FakePci writer in the agent's process): a
    write overwrites from offset 0 without truncating.  So E1000's driver_override
    starts as "vfio-pci" and tests write 8-character values, which restore cleanly."""
    f = FakePci(root)
    for drv in ("vfio-pci", "e1000", "nvme"):
        f.add_driver(drv)
    f.add_function(E1000, 0x8086, 0x100E, 0x020000, 1, "e1000", pcie=False, override="vfio-pci")
    f.add_function(NVME, 0x1B36, 0x0010, 0x010802, 2, "nvme", totalvfs=3)
    f.add_function(OTHER, 0x8086, 0x10D3, 0x020000, 4, "e1000")
    os.mkfifo(root / "fifo")
    (root / "etc").mkdir()
    (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    return root


def agent_env(vm: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != VM_ENV}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    if vm:
        env[VM_ENV] = "1"  # what --vm sets; passed anyway so a bug in --vm shows as a difference
    return env


def agent_argv(root: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "harness.agent", "--root", str(root), "--state-file", str(root / "state.json"),
            *extra]


@pytest.fixture
def roots(tmp_path: Path) -> tuple[Path, Path]:
    """Two identical fake roots: one for the local backend, one for the agent's."""
    return make_root(tmp_path / "local"), make_root(tmp_path / "remote")


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[AgentBackend]:
    root = make_root(tmp_path / "root")
    b = AgentBackend.spawn(agent_argv(root, "--vm", "--devices", E1000), env=agent_env(True), cwd=str(REPO),
                           request_timeout=30)
    yield b
    b.close()


# -- differential: the same ops locally and through the agent ---------------------------


def script(b: Backend, vm: bool) -> list[tuple[Any, ...]]:
    """Ops covering every Backend method; what each returned, with fds and addresses
    replaced by what they are (their numbers differ between processes)."""
    obs: list[tuple[Any, ...]] = []

    def rec(label: str, res: OpResult, handle: bool = False) -> OpResult:
        ret: Any = ("handle" if res.ret >= 0 else res.ret) if handle else res.ret
        where = getattr(getattr(b, "last_error", None), "where", "") if res.errno else ""
        # This process's mapping addresses (mmap_base is randomised over 1 TiB below 0x7fff...) and fd numbers.
        where = re.sub(r"0x7[0-9a-f]{11}", "<addr>", re.sub(r"fd \d+ was", "fd <n> was", where))
        obs.append((label, ret, res.errno, res.data, where))
        return res

    obs.append(("facts", b.facts()))
    obs.append(("topology", b.topology()))
    obs.append(("path_exists", b.path_exists(f"/sys/bus/pci/devices/{E1000}"), b.path_exists("/nope"),
                b.path_exists("relative")))
    obs.append(("may_touch", b.may_touch(E1000), b.may_touch(OTHER), b.may_touch("eth0")))
    # Files: missing nodes, refusals outside the VM, a FIFO to ioctl on inside it.
    for path in ("/dev/iommu", "/dev/vfio/vfio", "/dev/vfio/devices/vfio9", "/missing"):
        rec(f"open {path}", b.open(path), handle=True)
    passwd = rec("open passwd", b.open("/etc/passwd", os.O_RDONLY), handle=True)
    if passwd.ok:
        rec("read passwd", b.read(passwd.ret, 100))
        rec("close passwd", b.close(passwd.ret))
    fifo = rec("open fifo", b.open("/fifo", FIFO_FLAGS), handle=True)
    if fifo.ok:
        rec("write fifo", b.write(fifo.ret, b"hello"))
        rec("FIONREAD bytes", b.ioctl(fifo.ret, termios.FIONREAD, b"\xff" * 4))
        rec("FIONREAD NULL", b.ioctl(fifo.ret, termios.FIONREAD, 0))
        rec("FIONREAD None", b.ioctl(fifo.ret, termios.FIONREAD, None))
        rec("FIONREAD empty", b.ioctl(fifo.ret, termios.FIONREAD, b""))
        m = rec("mmap for FIONREAD", b.mmap(PAGE), handle=True)
        rec("FIONREAD pointer", b.ioctl(fifo.ret, termios.FIONREAD, m.ret + 8))
        rec("read_mem FIONREAD", b.read_mem(m.ret + 8, 4))
        rec("TCGETS on a fifo", b.ioctl(fifo.ret, termios.TCGETS, b"\0" * 60))
        rec("read fifo", b.read(fifo.ret, 3))
        rec("read fifo rest", b.read(fifo.ret, 100))
        rec("read fifo empty", b.read(fifo.ret, 100))
        rec("close fifo", b.close(fifo.ret))
        rec("close fifo again", b.close(fifo.ret))
    rec("ioctl unowned fd", b.ioctl(1, termios.FIONREAD, b"\0" * 4))
    rec("read unowned fd", b.read(0, 1))
    # Memory.
    m = rec("mmap", b.mmap(3 * PAGE), handle=True)
    payload = bytes(range(256)) * 20
    rec("write_mem", b.write_mem(m.ret + 100, payload))
    rec("read_mem", b.read_mem(m.ret + 100, len(payload)))
    rec("read_mem past end", b.read_mem(m.ret, 3 * PAGE + 1))
    rec("munmap middle", b.munmap(m.ret + PAGE, PAGE))
    rec("read_mem hole", b.read_mem(m.ret + PAGE, 1))
    rec("read_mem head", b.read_mem(m.ret, 8))
    rec("munmap unaligned", b.munmap(m.ret + 1, PAGE))
    rec("mmap 0", b.mmap(0), handle=True)
    rec("read_mem NULL", b.read_mem(0, 1))
    rec("write_mem wild", b.write_mem(0xDEAD_0000_0000, b"x"))
    rec("read_mem negative", b.read_mem(m.ret, -1))
    # Eventfds.
    ev = rec("eventfd", b.eventfd(3), handle=True)
    rec("eventfd read", b.read(ev.ret, 8))
    rec("eventfd read empty", b.read(ev.ret, 8))
    rec("eventfd write", b.write(ev.ret, struct.pack("<Q", 2)))
    rec("eventfd short read", b.read(ev.ret, 4))
    rec("eventfd FIONREAD", b.ioctl(ev.ret, termios.FIONREAD, b"\0" * 4))
    rec("eventfd huge", b.eventfd(1 << 70), handle=True)
    # Memfds.
    mfd = rec("memfd", b.memfd(2 * PAGE, "agent-test"), handle=True)
    rec("memfd write", b.write(mfd.ret, b"file data"))
    rec("memfd read at the end of the write", b.read(mfd.ret, 4))
    rec("memfd read to the size", b.read(mfd.ret, 3 * PAGE))
    rec("memfd default name", b.memfd(0), handle=True)
    rec("memfd negative size", b.memfd(-1), handle=True)
    rec("memfd size past loff_t", b.memfd(1 << 64), handle=True)
    rec("memfd name too long", b.memfd(PAGE, "n" * 250), handle=True)
    # Sysfs.
    rec("sysfs_read vendor", b.sysfs_read(f"/sys/bus/pci/devices/{E1000}/vendor"))
    rec("sysfs_read outside", b.sysfs_read("/etc/passwd"))
    rec("sysfs_read missing", b.sysfs_read("/sys/nope"))
    rec("sysfs_write named", b.sysfs_write(f"/sys/bus/pci/devices/{E1000}/driver_override", "pci-stub"))
    rec("sysfs_write other", b.sysfs_write(f"/sys/bus/pci/devices/{OTHER}/reset_method", "bus flr"))
    rec("sysfs_write rescan", b.sysfs_write("/sys/bus/pci/rescan", "1"))
    obs.append(("topology after writes", b.topology()))
    rec("sysfs_read override", b.sysfs_read(f"/sys/bus/pci/devices/{E1000}/driver_override"))
    b.reset()
    obs.append(("topology after reset", b.topology()))
    rec("read_mem after reset", b.read_mem(m.ret, 1))
    rec("eventfd after reset", b.read(ev.ret, 8))
    rec("memfd after reset", b.read(mfd.ret, 8))
    return obs


@pytest.mark.parametrize("vm", [False, True], ids=["host", "vm"])
def test_agent_matches_the_local_kernel_backend(roots: tuple[Path, Path], vm: bool,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    local_root, remote_root = roots
    if vm:
        monkeypatch.setenv(VM_ENV, "1")
    else:
        monkeypatch.delenv(VM_ENV, raising=False)
    local = KernelBackend((E1000,), root=str(local_root), state_file=local_root / "state.json")
    expected = script(local, vm)
    extra = ["--vm"] if vm else []
    with AgentBackend.spawn(agent_argv(remote_root, "--devices", E1000, *extra), env=agent_env(vm),
                            cwd=str(REPO)) as remote:
        assert remote.hello["vm"] is vm
        got = script(remote, vm)
    assert [o[0] for o in got] == [o[0] for o in expected]
    for g, e in zip(got, expected, strict=True):
        assert g == e, g[0]
    # The script reached what it meant to: successes, errnos and refusals of each kind.
    seen = {o[0]: o for o in expected}
    assert seen["open /missing"][2] == errno.ENOENT
    assert seen["ioctl unowned fd"][2] == errno.EBADF and "not opened by this backend" in seen["ioctl unowned fd"][4]
    assert seen["read_mem"][3] == bytes(range(256)) * 20
    assert seen["sysfs_write named"][1] == len("pci-stub")
    assert seen["topology after writes"][1].functions[E1000].driver_override == "pci-stub"
    assert seen["topology after reset"][1] == seen["topology"][1]
    assert seen["memfd"][1] == "handle" and seen["memfd write"][1] == len(b"file data")
    assert seen["memfd read to the size"][3] == b"\0" * (2 * PAGE - len(b"file data") - 4)
    for bad in ("memfd negative size", "memfd size past loff_t", "memfd name too long"):
        assert seen[bad][1:3] == (-1, errno.EINVAL), bad
    assert seen["memfd after reset"][2] == errno.EBADF
    if vm:
        assert seen["FIONREAD bytes"][3] == struct.pack("<i", 5)
        assert seen["FIONREAD NULL"][2] == errno.EFAULT
        assert seen["read_mem FIONREAD"][3] == struct.pack("<i", 5)
        assert seen["sysfs_write other"][2] == 0  # every function is fair game in the VM
    else:
        assert seen["open passwd"][2] == errno.EPERM and "outside the VFIO" in seen["open passwd"][4]
        assert seen["sysfs_write other"][2] == errno.EPERM and "may touch" in seen["sysfs_write other"][4]


# -- the host side's API ----------------------------------------------------------------


def test_the_op_table_is_the_backend_interface() -> None:
    """Every public Backend method is in harness.backends.ops and vice versa, with the
    same parameter names and defaults (the agent may also default what the Python
    method requires: ``arg`` of ioctl is 0 when a request leaves it out)."""
    methods = {n for n in dir(Backend) if not n.startswith("_") and callable(getattr(Backend, n))}
    assert methods == set(ops.BY_NAME)
    assert Backend.__abstractmethods__ <= methods
    for op in ops.BACKEND_OPS:
        params = list(inspect.signature(getattr(Backend, op.name)).parameters.values())[1:]
        assert [p.name for p in params] == [p.name for p in op.params], op.name
        for p, q in zip(params, op.params, strict=True):
            if p.default is not inspect.Parameter.empty:
                assert q.default == p.default, (op.name, p.name)
        wants_bytes = {p.name for p in params if "bytes" in str(p.annotation)}
        assert wants_bytes == {p.name for p in op.params if p.is_bytes}, op.name
    assert set(SIGNATURES) == set(protocol.OPS) == methods | {"ping", "hello", "shutdown"}
    assert not AgentBackend.__abstractmethods__
    assert AgentBackend.name == "kernel"


def test_the_client_has_every_op() -> None:
    for op in ops.BACKEND_OPS:
        assert getattr(AgentBackend, op.name).__name__ == op.name
        assert callable(getattr(Batch, op.name)), op.name
    b = Batch()
    call = b.open("/dev/iommu")                  # defaults filled in as the Python method would
    assert (call.op, call.args) == ("open", ("/dev/iommu", os.O_RDWR))
    buf = bytearray(b"ab")
    call = b.ioctl(3, 7, arg=buf)                # keywords too; a buffer is copied as it is now
    buf[0] = 0
    assert call.args == (3, 7, b"ab") and type(call.args[2]) is bytes
    with pytest.raises(TypeError, match="missing argument 'length'"):
        b.munmap(0x1000)
    with pytest.raises(TypeError, match="unexpected keyword argument 'size'"):
        b.mmap(4096, size=1)
    with pytest.raises(TypeError, match="multiple values"):
        b.mmap(4096, length=1)
    assert len(b) == 2


def test_hello(agent: AgentBackend) -> None:
    h = agent.hello
    assert (h["hello"], h["protocol"], h["kernel"]) == (protocol.HELLO, protocol.PROTOCOL_VERSION, os.uname().release)
    assert h["pid"] == agent._process.pid  # type: ignore[union-attr]
    assert h["vm"] is True and h["devices"] == [E1000] and h["channel"] == "stdio"
    assert agent.kernel_release == os.uname().release
    assert h["ops"] == sorted(protocol.OPS)
    assert agent.ping("x") == "x"
    assert agent.ping(b"\0\xff") == b"\0\xff"
    assert agent.ping({"nested": [1, None, "a"]}) == {"nested": [1, None, "a"]}


def test_a_new_host_session_starts_clean(agent: AgentBackend) -> None:
    """The handshake resets the agent: a host that vanished mid-write on a virtio-serial
    port never shows as an EOF, so its fds would otherwise still be open."""
    ev = agent.eventfd(1).ret
    agent.hello = agent._handshake(10)
    assert agent.read(ev, 8).errno == errno.EBADF
    # A failed reset stops the new session (its sysfs record is the state to fix first).
    root = Path(agent.hello["root"])
    assert agent.sysfs_write(f"/sys/bus/pci/devices/{E1000}/driver_override", "pci-stub").ok
    (root / f"sys/devices/pci0000:00/{E1000}/driver_override").unlink()
    with pytest.raises(AgentConnectionError, match="could not reset what an earlier session left: RestoreError"):
        agent._handshake(10)


def test_batch_runs_in_order_in_one_round_trip(agent: AgentBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    fifo = agent.open("/fifo", FIFO_FLAGS).ret
    addr = agent.mmap(PAGE).ret
    trips: list[int] = []
    real = agent._exchange

    def counted(*a: Any, **k: Any) -> Any:
        trips.append(1)
        return real(*a, **k)

    monkeypatch.setattr(agent, "_exchange", counted)
    with agent.batch() as b:
        w1 = b.write_mem(addr, b"1")
        r1 = b.read_mem(addr, 1)
        w2 = b.write_mem(addr, b"2")
        r2 = b.read_mem(addr, 1)
        wr = b.write(fifo, b"abc")
        io = [b.ioctl(fifo, termios.FIONREAD, b"\0" * 4) for _ in range(100)]
        bad = b.ioctl(12345, termios.FIONREAD, None)
        p = b.ping([1, 2])
        assert not r1.done
    assert len(trips) == 1
    assert (w1.result(), w2.result()) == (OpResult(), OpResult())
    assert (r1.result().data, r2.result().data) == (b"1", b"2")
    assert wr.result().ret == 3
    assert all(c.result() == OpResult(data=struct.pack("<i", 3)) for c in io)
    assert bad.result().errno == errno.EBADF and "fd 12345 was not opened" in bad.where
    assert p.result() == [1, 2]
    # last_error follows the last op that returned an OpResult, as if run one by one.
    assert agent.last_error is not None and agent.last_error.where == bad.where
    with agent.batch():
        pass
    assert len(trips) == 1  # an empty batch costs nothing


def test_an_exception_in_a_batch_is_raised_after_all_ops_ran(agent: AgentBackend) -> None:
    addr = agent.mmap(PAGE).ret
    calls: list[Call] = []
    with pytest.raises(AgentRemoteError) as e, agent.batch() as b:
        calls.append(b.write_mem(addr, b"before"))
        calls.append(b.call("mmap", "not a length"))
        calls.append(b.write_mem(addr + 8, b"after"))
    assert e.value.type == "ProtocolError" and "length must be int" in str(e.value)
    assert calls[1].error is e.value and agent.last_exception is e.value
    assert calls[2].result().ok
    assert agent.read_mem(addr, 13).data == b"before\0\0after"


def test_execute_fills_calls_without_raising(agent: AgentBackend) -> None:
    calls = [Call("eventfd", (1,)), Call("nope"), Call("ping", ("x",))]
    agent.execute(calls)
    assert calls[0].result().ok
    assert calls[1].error is not None and "unknown op" in calls[1].error.message
    with pytest.raises(AgentRemoteError):
        calls[1].result()
    assert calls[2].result() == "x"
    with agent.batch() as b:  # values come back typed, as from the Backend methods
        topo, facts, exists = b.topology(), b.facts(), b.path_exists("/fifo")
    assert isinstance(topo.result(), Topology) and E1000 in topo.result().functions
    assert facts.result() == agent.facts() and exists.result() is True
    with pytest.raises(Exception, match="has not run"):
        Call("ping").result()


def test_agent_side_exception_is_reported_and_the_agent_carries_on(agent: AgentBackend) -> None:
    with pytest.raises(AgentRemoteError) as e:
        agent.call("ioctl", "three", 1)
    assert e.value.op == "ioctl" and "fd must be int" in e.value.message
    with pytest.raises(AgentRemoteError, match="missing argument length"):
        agent.call("mmap")
    with pytest.raises(AgentRemoteError, match="unknown op"):
        agent.call("format_disk")
    assert agent.eventfd(0).ok


def test_reset_failure_comes_back_as_restore_error(agent: AgentBackend) -> None:
    root = Path(agent.hello["root"])
    override = root / f"sys/devices/pci0000:00/{E1000}/driver_override"
    assert agent.sysfs_write(f"/sys/bus/pci/devices/{E1000}/driver_override", "pci-stub").ok
    override.unlink()  # restore cannot write it back
    with pytest.raises(AgentRemoteError) as e:
        agent.reset()
    assert e.value.type == "RestoreError" and "could not put the PCI functions back" in e.value.message
    assert "Traceback" in e.value.traceback
    assert agent.ping() is None  # still serving


def test_topology_is_cached_until_a_sysfs_write(agent: AgentBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    ops: list[str] = []
    real = agent.call

    def counted(op: str, *a: Any, **k: Any) -> Any:
        ops.append(op)
        return real(op, *a, **k)

    monkeypatch.setattr(agent, "call", counted)
    t1 = agent.topology()
    t1.functions[E1000].driver = "mutated"   # a copy: the cache is not touched
    assert agent.topology().functions[E1000].driver == "e1000"
    agent.reset()                            # nothing was written: still valid
    agent.facts()
    agent.facts()
    assert ops.count("topology") == 1 and ops.count("facts") == 1
    path = f"/sys/bus/pci/devices/{E1000}/driver_override"
    assert agent.sysfs_write(path, "pci-stub").ok
    assert agent.topology().functions[E1000].driver_override == "pci-stub"
    agent.reset()
    assert agent.topology().functions[E1000].driver_override == "vfio-pci"
    assert ops.count("topology") == 3
    with agent.batch() as b:                 # a write inside a batch counts too
        b.sysfs_write(path, "pci-stub")
    assert agent.topology().functions[E1000].driver_override == "pci-stub"


# -- the wire: malformed requests, partial reads, framing ----------------------------------


class RawAgent:
    """The agent as a subprocess, spoken to line by line."""

    def __init__(self, root: Path, stdin: Any = subprocess.PIPE, *extra: str):
        self.proc = subprocess.Popen(agent_argv(root, "--vm", *extra), stdin=stdin, stdout=subprocess.PIPE,
                                     env=agent_env(True), cwd=str(REPO))
        assert self.proc.stdout is not None
        self.buf = LineBuffer()
        self.hello = self.line()

    def send(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def line(self, timeout: float = 30) -> Any:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while (line := self.buf.pop()) is None:
            assert select.select([fd], [], [], max(0, deadline - time.monotonic()))[0], "no reply"
            data = os.read(fd, 65536)
            assert data, f"agent exited ({self.proc.wait()})"
            self.buf.feed(data)
        return json.loads(line)

    def close(self) -> int:
        if self.proc.stdin:
            self.proc.stdin.close()
        return self.proc.wait(timeout=30)


def test_malformed_requests_get_error_replies_and_the_agent_survives(tmp_path: Path) -> None:
    a = RawAgent(make_root(tmp_path / "root"))
    assert a.hello["hello"] == protocol.HELLO
    bad: list[tuple[bytes, Any, str]] = [
        (b"garbage", None, "malformed request"),
        (b"\xff\xfe\x00", None, "malformed request"),
        (b"[" * 100000 + b"]" * 100000, None, ""),                   # nesting past the recursion limit
        (b'"a string"', None, "a request is a JSON object"),
        (b'{"id": 1}', 1, "unknown op None"),
        (b'{"id": 2, "op": 5}', 2, "unknown op 5"),
        (b'{"id": 3, "op": "ioctl", "args": ["x", 1]}', 3, "fd must be int"),
        (b'{"id": 4, "op": "ioctl", "args": [true, 1]}', 4, "fd must be int, not bool"),
        (b'{"id": 5, "op": "write_mem", "args": [1, {"b64": "!"}]}', 5, "bad base64"),
        (b'{"id": 6, "op": "write_mem", "args": [1, {"b64": 7}]}', 6, "b64 must be a string"),
        (b'{"id": 7, "op": "mmap", "args": {"lenght": 4096}}', 7, "has no argument lenght"),
        (b'{"id": 8, "op": "mmap", "args": 4096}', 8, "args must be a list or an object"),
        (b'{"id": 9, "op": "mmap", "args": [1, 2, 3]}', 9, "at most 2 arguments"),
        (b'{"id": 10, "op": "open", "args": {"flags": 0}}', 10, "in order without gaps"),
    ]
    for line, rid, message in bad:
        a.send(line + b"\n")
        reply = a.line()
        assert reply["id"] == rid and "error" in reply, line[:40]
        assert message in reply["error"], (line[:40], reply)
    # A batch with broken members: each gets its own reply, the rest run.
    a.send(b'[{"id": 20, "op": "ping", "args": [1]}, 7, {"id": 22, "op": "mmap", "args": {"length": 4096}}]\n')
    r = a.line()
    assert r[0] == {"id": 20, "value": 1}
    assert r[1]["id"] is None and "JSON object" in r[1]["error"]
    assert r[2]["id"] == 22 and r[2]["errno"] == 0 and r[2]["ret"] > 0
    a.send(b"[]\n\n   \n")  # an empty batch; blank lines get no reply
    assert a.line() == []
    a.send(b'{"id": 30, "op": "ping", "args": {"payload": "alive"}}\n')
    assert a.line() == {"id": 30, "value": "alive"}
    assert a.close() == 0


def test_requests_trickling_in_byte_by_byte(tmp_path: Path) -> None:
    """The agent reads whatever each read(2) returns: partial lines, several lines at once."""
    ours, theirs = socket.socketpair()
    a = RawAgent(make_root(tmp_path / "root"), theirs)
    theirs.close()
    reqs = encode({"id": 1, "op": "eventfd", "args": [7]}) + encode({"id": 2, "op": "ping", "args": ["ü"]})
    for i in range(len(reqs)):
        ours.send(reqs[i:i + 1])
        time.sleep(0.001)
    assert a.line()["errno"] == 0
    assert a.line() == {"id": 2, "value": "ü"}
    # Two requests and half of a third in one write, the rest later.
    third = encode({"id": 5, "op": "ping", "args": [5]})
    ours.send(encode({"id": 3, "op": "ping", "args": [3]}) + encode({"id": 4, "op": "ping", "args": [4]}) + third[:9])
    assert [a.line()["value"], a.line()["value"]] == [3, 4]
    time.sleep(0.05)
    ours.send(third[9:])
    assert a.line()["value"] == 5
    ours.close()  # EOF: the agent resets and exits
    assert a.proc.wait(timeout=30) == 0


def fake_agent(sock: socket.socket, chunk: int, replies: Callable[[dict[str, Any]], Any],
               preamble: bytes = b"") -> threading.Thread:
    """A stand-in agent that writes everything ``chunk`` bytes at a time."""

    def send(data: bytes) -> None:
        for i in range(0, len(data), chunk):
            sock.sendall(data[i:i + chunk])
            time.sleep(0.0005)

    def run() -> None:
        buf = LineBuffer()
        send(preamble)
        with sock:
            while True:
                line = buf.pop()
                if line is None:
                    data = sock.recv(65536)
                    if not data:
                        return
                    buf.feed(data)
                    continue
                if not line.strip():
                    continue
                msg = json.loads(line)
                out = replies(msg)
                if out is not None:
                    send(encode(out))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def hello_for(msg: dict[str, Any]) -> dict[str, Any]:
    return {"id": msg["id"], "hello": protocol.HELLO, "protocol": protocol.PROTOCOL_VERSION, "kernel": "6.12.0",
            "pid": 1}


def test_host_reads_replies_split_anywhere_and_skips_stale_bytes() -> None:
    """Byte-sized writes from the agent; before its hello, what a reused virtio-serial
    port or an ssh login may leave: half a reply, a reply to someone else, a
    banner, an unsolicited hello."""
    ours, theirs = socket.socketpair()

    def replies(msg: dict[str, Any]) -> Any:
        if msg["op"] == "hello":
            return hello_for(msg)
        if msg["op"] == "read_mem":
            return {"id": msg["id"], "ret": 0, "errno": 0, "data": protocol.b64(b"\x00\n\xff" * 1000)}
        return {"id": msg["id"], "value": msg["args"][0]}

    preamble = (b'"data": "AAAA"}\n{"id": 41, "value": 1}\nWelcome to the test host\n'
                + encode({"hello": protocol.HELLO, "protocol": 1, "kernel": "6.12.0", "pid": 1}))
    t = fake_agent(theirs, 1, replies, preamble)
    fd = ours.detach()
    b = AgentBackend.from_fds(fd, fd, request_timeout=30)
    assert b.hello["kernel"] == "6.12.0" and "id" not in b.hello
    assert b.ping("x" * 300) == "x" * 300
    assert b.read_mem(0, 3000).data == b"\x00\n\xff" * 1000
    b.close()
    t.join(5)


def test_a_newer_protocol_is_refused() -> None:
    ours, theirs = socket.socketpair()
    fake_agent(theirs, 4096, lambda m: {**hello_for(m), "protocol": 2})
    fd = ours.detach()
    with pytest.raises(AgentConnectionError, match="protocol 2"):
        AgentBackend.from_fds(fd, fd, hello_timeout=10)


def test_line_buffer() -> None:
    lb = LineBuffer(max_line=10)
    assert lb.pop() is None
    for ch in b"ab\ncd":
        lb.feed(bytes([ch]))
    assert (lb.pop(), lb.pop()) == (b"ab", None)
    lb.feed(b"e\n\n")
    assert (lb.pop(), lb.pop(), lb.pop()) == (b"cde", b"", None)
    lb.feed(b"x" * 8)
    lb.feed(b"x" * 8)           # past max_line without a newline
    assert lb.pop() is LineBuffer.TOO_LONG
    lb.feed(b"yyy\nok\n")        # the rest of the long line is dropped
    assert (lb.pop(), lb.pop()) == (b"ok", None)
    lb.feed(b"z" * 12 + b"\nfine\n")  # a long line arriving whole
    assert (lb.pop(), lb.pop(), lb.pop()) == (LineBuffer.TOO_LONG, b"fine", None)


def test_too_long_line_gets_an_error(tmp_path: Path) -> None:
    agent = Agent(KernelBackend(root=str(tmp_path), state_file=tmp_path / "s.json"))
    reply = json.loads(agent.handle_line(LineBuffer.TOO_LONG) or b"")
    assert reply["id"] is None and reply["error"].startswith("request line too long")


def test_wire_round_trip_of_facts_and_topology() -> None:
    iommu = IommuHw(kind="amd", reserved=((1, 2), (5, 9)), dirty_tracking=True)
    facts = Facts(kernel="6.12.117", config=frozenset({"VFIO", "IOMMUFD"}), container="iommufd", mock_domains=True,
                  enable_sriov=True, profile="p", iommu=iommu)
    wire = json.loads(encode(protocol.to_wire(facts)))
    assert wire["config"] == ["IOMMUFD", "VFIO"]
    assert from_wire(Facts, wire) == facts
    f = PciFunction("0000:00:02.0", 0x8086, 0x100E, 3, driver="e1000", bar_sizes=(1, 2, 3, 4, 5, 6), io_bars=(2,),
                    reset_methods=("flr", "bus"), hot_reset_functions=("0000:00:02.0",), physfn=None)
    topo = Topology({f.bdf: f, "0000:00:03.0": PciFunction("0000:00:03.0", 1, 2, None)})
    wire = json.loads(encode(protocol.to_wire(topo)))
    assert from_wire(Topology, wire) == topo
    wire["functions"][f.bdf]["added_in_a_later_version"] = 1   # unknown fields are ignored,
    del wire["functions"][f.bdf]["rom_size"]                   # missing ones take their defaults
    assert from_wire(Topology, wire) == topo
    with pytest.raises(TypeError):
        from_wire(Facts, {"config": "VFIO"})


# -- transports ---------------------------------------------------------------------------


def test_unix_socket_transport(tmp_path: Path) -> None:
    """connect() is the client of QEMU's server-mode socket chardev; here the agent's
    stdin/stdout are the accepted connection, as the virtio port is in the guest.
    connect() waits for the socket to appear."""
    root = make_root(tmp_path / "root")
    path = str(tmp_path / "agent.sock")
    procs: list[subprocess.Popen[bytes]] = []

    def qemu() -> None:
        time.sleep(0.3)
        with socket.socket(socket.AF_UNIX) as srv:
            srv.bind(path)
            srv.listen(1)
            conn, _ = srv.accept()
            with conn:
                procs.append(subprocess.Popen(agent_argv(root, "--vm"), stdin=conn.fileno(), stdout=conn.fileno(),
                                              env=agent_env(True), cwd=str(REPO)))

    t = threading.Thread(target=qemu, daemon=True)
    t.start()
    b = AgentBackend.connect(path, timeout=30)
    t.join(10)
    assert b.hello["pid"] == procs[0].pid
    ev = b.eventfd(9).ret
    assert b.read(ev, 8).data == struct.pack("<Q", 9)
    b.shutdown()
    assert procs[0].wait(timeout=30) == 0


def test_connect_gives_up_after_its_timeout(tmp_path: Path) -> None:
    start = time.monotonic()
    with pytest.raises(AgentConnectionError, match=r"waited 0\.3 s"):
        AgentBackend.connect(str(tmp_path / "never.sock"), timeout=0.3)
    assert time.monotonic() - start < 5


def test_channel_on_a_tty(tmp_path: Path) -> None:
    """--channel opens a character device read-write; a tty (an emulated serial port)
    is put in raw mode so every byte passes untouched."""
    master, slave = os.openpty()
    tty.setraw(slave)  # before the agent gets there, so nothing is echoed meanwhile
    name = os.ttyname(slave)
    proc = subprocess.Popen(agent_argv(make_root(tmp_path / "root"), "--vm", "--channel", name, "--exit-on-eof"),
                            env=agent_env(True), cwd=str(REPO), stdin=subprocess.DEVNULL)
    b = AgentBackend.from_fds(master, master, hello_timeout=30, describe="pty")
    os.close(slave)  # (kept open until the agent had it: the node goes with its last user)
    assert b.hello["channel"] == name
    data = bytes(range(256)) * 64  # every byte value: \n, \r, ^C, ^D, XOFF ...
    m = b.mmap(len(data)).ret
    assert b.write_mem(m, data).ok and b.read_mem(m, len(data)).data == data
    b.close()  # the agent reads EIO (hang-up), resets, and with --exit-on-eof exits
    assert proc.wait(timeout=30) == 0


def _fifo_host(tmp_path: Path) -> tuple[str, str]:
    to_agent, from_agent = str(tmp_path / "to-agent"), str(tmp_path / "from-agent")
    os.mkfifo(to_agent)
    os.mkfifo(from_agent)
    return to_agent, from_agent


def test_the_agent_outlives_a_host_and_waits_for_the_next(tmp_path: Path) -> None:
    """On a channel, EOF is a host going away (a virtio-serial port reads 0 while no
    host is connected): the agent resets (fds of that session closed) and says hello
    to the next host.  Emulated with two FIFOs, which read EOF while no writer has
    them open; the second host also finds half a request left by the first."""
    root = make_root(tmp_path / "root")
    to_agent, from_agent = _fifo_host(tmp_path)
    local = KernelBackend(root=str(root), state_file=root / "state.json")
    agent = Agent(local, {"channel": "fifo"})
    # O_RDWR on its own FIFO keeps the agent's write side from failing with EPIPE
    # while no host reads; the read side gets EOF whenever no host writes.
    rfd = os.open(to_agent, os.O_RDONLY | os.O_NONBLOCK)
    os.set_blocking(rfd, True)
    wfd = os.open(from_agent, os.O_RDWR)
    t = threading.Thread(target=serve, args=(agent, rfd, wfd), kwargs={"reconnect": True}, daemon=True)
    t.start()

    def host() -> AgentBackend:
        r = os.open(from_agent, os.O_RDONLY)
        w = os.open(to_agent, os.O_WRONLY)
        return AgentBackend.from_fds(r, w, hello_timeout=10)

    first = host()
    ev = first.eventfd(0).ret
    assert ev in local._fds
    first._chan.send(b'{"id": 99, "op": "pi', time.monotonic() + 5, "half a request")
    first.close()
    deadline = time.monotonic() + 10
    while ev in local._fds and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ev not in local._fds  # reset when the host went away
    second = host()
    assert second.ping("again") == "again"
    second.shutdown()
    t.join(10)
    assert not t.is_alive()
    os.close(rfd)
    os.close(wfd)


def test_a_hung_op_times_out_and_the_connection_is_dropped(tmp_path: Path) -> None:
    root = make_root(tmp_path / "root")
    b = AgentBackend.spawn(agent_argv(root, "--vm"), env=agent_env(True), cwd=str(REPO), request_timeout=0.5)
    fifo = b.open("/fifo", os.O_RDWR).ret  # blocking: a read of the empty FIFO never returns
    start = time.monotonic()
    with pytest.raises(AgentTimeout, match=r"no reply to read within 0\.5 s"):
        b.read(fifo, 1)
    assert 0.4 < time.monotonic() - start < 5
    with pytest.raises(AgentConnectionError, match="unusable"):
        b.ping()
    proc = b._process
    assert proc is not None
    b.close()  # the stuck agent gets SIGTERM, resets and exits
    assert proc.returncode == 128 + signal.SIGTERM


def test_a_per_call_timeout(agent: AgentBackend) -> None:
    assert agent.ping("quick", timeout=10) == "quick"
    fifo = agent.open("/fifo", os.O_RDWR).ret
    with pytest.raises(AgentTimeout):
        agent.call("read", fifo, 1, timeout=0.2)


def test_startup_failure_is_reported_in_the_hello(tmp_path: Path) -> None:
    root = make_root(tmp_path / "root")
    with pytest.raises(AgentConnectionError, match="could not start: ValueError: 'eth0' is not a PCI function"):
        AgentBackend.spawn(agent_argv(root, "--devices", "eth0"), env=agent_env(False), cwd=str(REPO),
                           stderr=subprocess.DEVNULL)


def test_the_reason_is_read_even_when_the_agent_is_gone_before_the_host_speaks() -> None:
    ours, theirs = socket.socketpair()
    theirs.sendall(encode({"hello": protocol.HELLO, "protocol": 1, "error": "PermissionError: needs root"}))
    theirs.close()
    fd = ours.detach()
    with pytest.raises(AgentConnectionError, match="could not start: PermissionError: needs root"):
        AgentBackend.from_fds(fd, fd, hello_timeout=10)


def test_agent_exits_on_eof_and_on_shutdown(tmp_path: Path) -> None:
    root = make_root(tmp_path / "root")
    b = AgentBackend.spawn(agent_argv(root, "--vm"), env=agent_env(True), cwd=str(REPO))
    proc = b._process
    assert proc is not None
    b.shutdown()
    assert proc.returncode == 0
    with pytest.raises(AgentConnectionError):
        b.ping()
    b = AgentBackend.spawn(agent_argv(root, "--vm"), env=agent_env(True), cwd=str(REPO))
    b.close()
    assert b._process is not None and b._process.returncode == 0


def test_a_vanished_agent_is_a_connection_error(agent: AgentBackend) -> None:
    assert agent._process is not None
    agent._process.kill()
    agent._process.wait()
    with pytest.raises(AgentConnectionError, match=r"exit status -9"):
        agent.ping()


def test_usage_errors(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "harness.agent", "--bogus"], capture_output=True,
                         env=agent_env(False), cwd=str(REPO))
    assert run.returncode == 2 and b"unknown argument '--bogus'" in run.stderr
    run = subprocess.run([sys.executable, "-m", "harness.agent", "--help"], capture_output=True,
                         env=agent_env(False), cwd=str(REPO))
    assert run.returncode == 0 and b"--channel" in run.stderr
    run = subprocess.run([sys.executable, "-m", "harness.agent", "--channel", str(tmp_path / "no-port")],
                         capture_output=True, env=agent_env(False), cwd=str(REPO))
    assert run.returncode == 1 and b"cannot open the channel" in run.stderr


# -- what the agent imports -------------------------------------------------------------------


def test_the_agent_imports_only_the_stdlib_and_the_kernel_backend() -> None:
    """It runs in a slow guest: no pytest, no model, no third-party packages."""
    code = ("import sys, harness.agent.__main__, harness.agent.server, harness.backends.kernel\n"
            "print('\\n'.join(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, check=True,
                         env=agent_env(False), cwd=str(REPO)).stdout.split()
    ours = {m for m in out if m.split(".")[0] not in sys.stdlib_module_names}
    allowed = {"__main__", "harness", "harness.agent", "harness.agent.__main__", "harness.agent.protocol",
               "harness.agent.server", "harness.backends", "harness.backends.base", "harness.backends.kernel",
               "harness.backends.ops", "harness.backends.pci_sysfs", "harness.backends.sysfs_state",
               "harness.cache_root",   # the restore state file's default place; os and pathlib only
               "harness.backends.kcov"}   # KCOV for the fuzzer's guidance; array, ctypes, fcntl, mmap, zlib
    assert {m for m in ours if not m.startswith("harness.uapi")} <= allowed, ours - allowed


def test_the_host_side_does_not_import_the_model_or_the_kernel_backend() -> None:
    code = "import sys, harness.agent.client; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, check=True,
                         env=agent_env(False), cwd=str(REPO)).stdout.split()
    assert not [m for m in out if m.startswith(("harness.model", "harness.backends.kernel", "harness.runner"))]

