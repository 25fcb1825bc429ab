"""Boot the test kernel in QEMU and reach the guest agent (docs/vm.md).

    with Vm().start("viommu", kernel=Path("bzImage")) as vm:
        backend = vm.agent            # harness.agent.client.AgentBackend
        ...
        splats = vm.scan_console(offset)

KVM is tried first unless disabled; a guest that does not come up under it
(QEMU aborts, or no kernel output within ``kvm_probe_timeout``, or no agent
within ``kvm_boot_timeout``) is killed and booted again under TCG, and the
verdict is remembered for the rest of the process.
"""

from __future__ import annotations

import compileall
import contextlib
import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..backends.guest_layout import profile as get_profile
from ..kernel.series import KERNEL_ENV
from . import console
from .qemu import CHECKOUT, QEMU, LaunchConfig, qemu_command

ACCEL_ENV = "VFIO_CONFORMANCE_ACCEL"        # auto (default), kvm, tcg

# Console lines guest-init prints (harness/vm/guest-init.sh).
_LINUX_VERSION = re.compile(rb"Linux version \d")
_INIT = re.compile(rb"vfioconf: init at ")
_READY = re.compile(rb"vfioconf: ready at ")
_PANIC = re.compile(rb"Kernel panic - not syncing")
_AGENT_EXITED = re.compile(rb"vfioconf: agent exited with status (\d+)")

# Why KVM did not work in this process (None: not tried, or it worked).
_kvm_broken: str | None = None


class VmError(RuntimeError):
    pass


class BootError(VmError):
    """The guest did not come up; ``console_tail`` says how far it got."""

    def __init__(self, message: str, console_tail: str = ""):
        super().__init__(message + (f"\n--- console tail ---\n{console_tail}" if console_tail else ""))
        self.console_tail = console_tail


def find_kernel(series: str | None = None) -> Path | None:
    """The kernel to boot when none is named (harness.kernel.build.select_kernel, never building):
    the series' $VFIO_CONFORMANCE_KERNEL[_X_Y], else the cached build of that series' Debian source
    (default 6.12) with the shipped fragment, looked up by its key; None if neither is there (or
    the variable names no file).  Never "the newest image in the cache"."""
    from ..kernel.build import KernelBuildError, select_kernel

    try:
        return select_kernel(series, build=False)[0]
    except KernelBuildError:
        return None


def precompile(checkout: Path = CHECKOUT) -> None:
    """Byte-compile the checkout's harness on the host.  The guest's root is
    read-only, so a guest never writes __pycache__, and compiling the modules the
    agent imports costs seconds on every TCG boot."""
    with contextlib.suppress(OSError):
        compileall.compile_dir(str(checkout / "harness"), quiet=2, workers=1)


def kvm_usable() -> str | None:
    """None when KVM may be tried, else why not."""
    if _kvm_broken:
        return f"KVM did not boot a guest earlier in this process: {_kvm_broken}"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "/dev/kvm is missing or not accessible"
    return None


def _agent_backend_class() -> Any:
    """harness.agent.client.AgentBackend when it exists (it is written in parallel)."""
    try:
        from ..agent import client as agent_mod  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        return None
    cls = getattr(agent_mod, "AgentBackend", None)
    return cls if cls is not None and hasattr(cls, "connect") else None


def _die_with_parent() -> None:
    """In the forked child: QEMU gets SIGKILL when the harness dies however it dies
    (prctl(PR_SET_PDEATHSIG)), so no guest outlives a killed run."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG


class Vm:
    """One QEMU guest.  ``start()`` returns once the agent said hello (or, with
    ``wait_for="init"``, once guest-init printed "ready": for boots without agent)."""

    def __init__(self, *, accel: str | None = None, memory: str = "2G", smp: int = 1,
                 boot_timeout: float = 300.0, kvm_probe_timeout: float = 10.0, kvm_boot_timeout: float = 60.0,
                 run_timeout: float | None = None, workdir: Path | None = None, keep_workdir: bool = False,
                 wait_for: str = "agent", init_options: dict[str, str] | None = None,
                 interactive: bool = False, qemu: str = QEMU, precompile: bool = True):
        self.accel_wanted = (accel or os.environ.get(ACCEL_ENV) or "auto").lower()
        if self.accel_wanted not in ("auto", "kvm", "tcg"):
            raise ValueError(f"accel must be auto, kvm or tcg, not {self.accel_wanted!r}")
        if wait_for not in ("agent", "init"):
            raise ValueError(f"wait_for must be agent or init, not {wait_for!r}")
        self.memory, self.smp, self.qemu = memory, smp, qemu
        self.boot_timeout, self.kvm_probe_timeout, self.kvm_boot_timeout = (
            boot_timeout, kvm_probe_timeout, kvm_boot_timeout)
        self.run_timeout = run_timeout
        self.wait_for = wait_for
        self.init_options = dict(init_options or {})
        if wait_for == "init":
            self.init_options.setdefault("agent", "0")
        self.interactive = interactive
        self.precompile = precompile
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="vfioconf-vm-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.keep_workdir = keep_workdir
        self.console_log = self.workdir / "console.log"
        self.agent_socket = self.workdir / "agent.sock"
        self.qemu_log = self.workdir / "qemu.log"
        if len(os.fsencode(self.agent_socket)) >= 108:
            raise ValueError(f"{self.agent_socket}: too long for a unix socket path")
        # Filled by start().
        self.proc: subprocess.Popen[bytes] | None = None
        self.config: LaunchConfig | None = None
        self.accel: str | None = None
        self.kvm_failure: str | None = None
        self.attempts: list[tuple[str, str, float]] = []   # (accel, outcome, seconds)
        self.boot_seconds: float | None = None
        self.agent: Any = None                 # an AgentBackend, when that module exists
        self.channel: socket.socket | None = None   # the raw agent socket otherwise
        # The agent's hello: its dict (AgentBackend.hello), or the raw first bytes.
        self.hello: Any = None
        self.timed_out = False
        self._started_at = 0.0
        self._timer: threading.Timer | None = None
        self._qemu_log_file: Any = None

    # -- lifecycle -------------------------------------------------------------
    def start(self, profile: str = "viommu", kernel: Path | None = None,
              extra_qemu_args: Sequence[str] = (), extra_cmdline: Sequence[str] = ()) -> Vm:
        if self.proc is not None:
            raise VmError("this Vm was started already")
        kernel = kernel or find_kernel()
        if kernel is None or not Path(kernel).is_file():
            raise VmError(f"no kernel image (pass one, or set ${KERNEL_ENV}): {kernel}")
        if shutil.which(self.qemu) is None:
            raise VmError(f"{self.qemu} is not installed")
        prof = get_profile(profile)
        if self.precompile:
            precompile()
        order = ["kvm", "tcg"] if self.accel_wanted == "auto" else [self.accel_wanted]
        if order[0] == "kvm" and self.accel_wanted == "auto":
            why = kvm_usable()
            if why:
                self.kvm_failure = why
                order = ["tcg"]
        for accel in order:
            cfg = LaunchConfig(
                profile=prof, kernel=Path(kernel), accel=accel, console_log=self.console_log,
                agent_socket=self.agent_socket, memory=self.memory, smp=self.smp,
                init_options=self.init_options, extra_cmdline=tuple(extra_cmdline),
                extra_qemu_args=tuple(extra_qemu_args), interactive=self.interactive, qemu=self.qemu,
            )
            fallback = accel == "kvm" and len(order) > 1
            try:
                self._boot(cfg, fallback)
                return self
            except _KvmFailed as e:
                global _kvm_broken
                _kvm_broken = self.kvm_failure = str(e)
                self._kill()
        raise VmError("unreachable")

    def _boot(self, cfg: LaunchConfig, kvm_fallback: bool) -> None:
        self.config, self.accel = cfg, cfg.accel
        for p in (self.console_log, self.agent_socket):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        self.console_log.touch()
        argv = qemu_command(cfg)
        (self.workdir / "qemu.argv").write_text("\0".join(argv))
        self._qemu_log_file = open(self.qemu_log, "ab")  # noqa: SIM115 (closed in _kill)
        t0 = self._started_at = time.monotonic()
        self.proc = subprocess.Popen(
            argv, stdin=None if cfg.interactive else subprocess.DEVNULL,
            stdout=None if cfg.interactive else self._qemu_log_file, stderr=self._qemu_log_file,
            start_new_session=not cfg.interactive, preexec_fn=_die_with_parent,
        )
        if self.run_timeout:
            self._timer = threading.Timer(self.run_timeout, self._expire)
            self._timer.daemon = True
            self._timer.start()
        deadline = t0 + (self.kvm_boot_timeout if kvm_fallback else self.boot_timeout)
        try:
            self._wait_up(deadline, kvm_fallback)
        except _KvmFailed as e:
            self.attempts.append((cfg.accel, f"failed: {e}", time.monotonic() - t0))
            raise
        except BaseException as e:
            self.attempts.append((cfg.accel, f"failed: {str(e).splitlines()[0] if str(e) else type(e).__name__}",
                                  time.monotonic() - t0))
            self._kill()
            raise
        self.boot_seconds = time.monotonic() - t0
        self.attempts.append((cfg.accel, "up", self.boot_seconds))

    def _wait_up(self, deadline: float, kvm_fallback: bool) -> None:
        t0 = self._started_at
        agent_cls = _agent_backend_class() if self.wait_for == "agent" else None
        result: dict[str, Any] = {}
        worker: threading.Thread | None = None
        sock: socket.socket | None = None
        while True:
            now = time.monotonic()
            log = self.console_bytes()
            code = self.proc.poll() if self.proc else None
            if code is not None:
                if kvm_fallback and not _LINUX_VERSION.search(log):
                    raise _KvmFailed(f"QEMU exited with status {code} before the kernel printed anything"
                                     f"{self._qemu_stderr_tail()}")
                raise self._boot_error(f"QEMU exited with status {code} during boot{self._qemu_stderr_tail()}")
            if _PANIC.search(log):
                raise BootError("the guest kernel panicked during boot", self.console_tail())
            if kvm_fallback and now - t0 > self.kvm_probe_timeout and not _LINUX_VERSION.search(log):
                raise _KvmFailed(f"no kernel output within {self.kvm_probe_timeout:.0f} s under KVM")
            if now > deadline:
                if kvm_fallback:
                    raise _KvmFailed(f"the guest did not come up within {self.kvm_boot_timeout:.0f} s under KVM")
                raise BootError(f"no {'agent hello' if self.wait_for == 'agent' else 'guest-init ready'} within "
                                f"{deadline - t0:.0f} s under {self.accel}", self.console_tail())
            if self.wait_for == "init":
                if _READY.search(log):
                    return
            elif agent_cls is not None:
                if worker is None and self.agent_socket.exists():
                    worker = threading.Thread(target=self._connect_agent, daemon=True,
                                              args=(agent_cls, deadline - now, result))
                    worker.start()
                if worker is not None and not worker.is_alive():
                    if "agent" in result:
                        self.agent = result["agent"]
                        self.hello = getattr(self.agent, "hello", None)
                        return
                    err = result.get("error")
                    raise self._boot_error(f"connecting to the agent failed: {err!r}")
            else:
                if sock is None and self.agent_socket.exists():
                    sock = self._raw_connect()
                if sock is not None:
                    try:
                        data = sock.recv(65536)
                    except TimeoutError:
                        data = None
                    if data == b"":
                        sock.close()
                        raise self._boot_error("the agent channel closed before a hello")
                    if data:
                        self.channel, self.hello = sock, data
                        return
                    continue  # recv waited already
            time.sleep(0.2)

    def _boot_error(self, message: str) -> BootError:
        """``message`` as a BootError, an AgentStartError when guest-init saw the agent exit."""
        exited = _AGENT_EXITED.search(self.console_bytes())
        if exited is None:
            return BootError(message, self.console_tail())
        cfg = self.config
        where = f" (python {cfg.python}, checkout {cfg.checkout})" if cfg is not None else ""
        return AgentStartError(f"the guest agent exited with status {int(exited.group(1))} before it said hello"
                               f"{where}: {message}", self.console_tail())

    def _raw_connect(self) -> socket.socket | None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(str(self.agent_socket))
        except OSError:
            s.close()
            return None
        s.settimeout(0.5)
        return s

    def _connect_agent(self, cls: Any, timeout: float, result: dict[str, Any]) -> None:
        try:
            result["agent"] = cls.connect(str(self.agent_socket), timeout)
        except Exception as e:
            result["error"] = e

    def _expire(self) -> None:
        self.timed_out = True
        self._signal(signal.SIGKILL)

    def _signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)

    def _kill(self) -> None:
        self._signal(signal.SIGKILL)
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
        self._release()

    def _release(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for closer in (getattr(self.agent, "close", None), getattr(self.channel, "close", None)):
            if closer is not None:
                with contextlib.suppress(Exception):
                    closer()
        self.agent = self.channel = None
        if self._qemu_log_file is not None:
            self._qemu_log_file.close()
            self._qemu_log_file = None

    def stop(self, timeout: float = 10.0, hung: bool = False) -> int | None:
        """Ask the agent to power off (not when ``hung``: it stopped answering already), then
        SIGTERM, then SIGKILL; QEMU's exit status."""
        if self.proc is None:
            return None
        if hung and self.agent is not None:
            with contextlib.suppress(Exception):
                self.agent.close()
        elif self.proc.poll() is None and self.agent is not None and not getattr(self.agent, "closed", False):
            # The agent resets its backend and exits; guest-init then powers off.  A
            # hung agent gets a short deadline, then QEMU is signalled.
            asked = False
            try:
                if hasattr(self.agent, "call"):
                    self.agent.call("shutdown", timeout=timeout)
                else:
                    self.agent.shutdown()
                asked = True
            except Exception:
                pass
            finally:
                with contextlib.suppress(Exception):
                    self.agent.close()
            if asked:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(timeout)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.proc.poll() is not None:
                break
            self._signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout)
        self._release()
        return self.proc.poll()

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for QEMU to exit by itself (the guest powered off)."""
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def close(self, hung: bool = False) -> None:
        self.stop(hung=hung)
        if self._own_workdir and not self.keep_workdir and not self.scan_console():
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Vm:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is not None:
            self.keep_workdir = True
        self.close()

    # -- console ---------------------------------------------------------------
    def console_offset(self) -> int:
        """The console log's current size: pass it to scan_console() after a case."""
        try:
            return self.console_log.stat().st_size
        except FileNotFoundError:
            return 0

    def console_bytes(self, since_offset: int = 0) -> bytes:
        try:
            with open(self.console_log, "rb") as f:
                f.seek(since_offset)
                return f.read()
        except FileNotFoundError:
            return b""

    def console_text(self, since_offset: int = 0) -> str:
        return self.console_bytes(since_offset).decode("utf-8", errors="replace")

    def console_tail(self, lines: int = 40) -> str:
        return "\n".join(self.console_text().splitlines()[-lines:])

    def scan_console(self, since_offset: int = 0) -> list[console.Splat]:
        """Kernel splats (WARN, BUG, KASAN, oops, panic, stalls, hung tasks) logged
        at or after ``since_offset``."""
        return console.scan_file(self.console_log, since_offset)

    def wait_console(self, pattern: str | bytes, timeout: float, since_offset: int = 0) -> re.Match[bytes] | None:
        """The first match of ``pattern`` in the console from ``since_offset``, waiting
        up to ``timeout`` seconds (None if it did not appear or QEMU exited)."""
        pat = re.compile(pattern.encode() if isinstance(pattern, str) else pattern)
        end = time.monotonic() + timeout
        while True:
            m = pat.search(self.console_bytes(since_offset))
            if m or time.monotonic() > end or not self.alive():
                return m
            time.sleep(0.2)

    def _qemu_stderr_tail(self) -> str:
        try:
            text = self.qemu_log.read_text(errors="replace").strip()
        except OSError:
            return ""
        return f": {text.splitlines()[-1]}" if text else ""


class AgentStartError(BootError):
    """The guest booted but its agent exited before it said hello: the interpreter, the
    checkout or an import is missing in the guest.  Every guest would fail the same way."""


class _KvmFailed(VmError):
    pass
