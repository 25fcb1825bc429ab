"""python3 -m harness.agent [--channel PATH] [--devices BDF,...] [--vm] [--root DIR] [--state-file PATH]

Serves the kernel backend's operations over stdin/stdout, or over ``--channel``
(a virtio-serial port such as /dev/virtio-ports/vfio-agent, or any character
device or tty: opened O_RDWR; a tty is put in raw mode).  On a channel the
agent outlives a host's disconnect: it resets the backend and waits for the
next host.  docs/agent.md has the protocol.

    --devices BDF,...   the PCI functions cases may touch (KernelBackend devices)
    --vm                inside the disposable test VM: every PCI function may be used
                        (sets VFIO_CONFORMANCE_VM=1 for the kernel backend)
    --root DIR          sysfs/dev root of the kernel backend (tests use a fake tree)
    --state-file PATH   the kernel backend's restore record
    --exit-on-eof       on a channel too, exit when the host disconnects
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from typing import Any

# Argument parsing by hand: argparse costs more to import than the rest of the
# agent's own modules together, and in a TCG guest every import shows.


class UsageError(Exception):
    pass


def parse(argv: list[str]) -> dict[str, Any]:
    opts: dict[str, Any] = {"channel": None, "devices": [], "vm": False, "root": "/", "state_file": None,
                            "exit_on_eof": False}
    valued = {"--channel": "channel", "--devices": "devices", "--root": "root", "--state-file": "state_file"}
    it = iter(argv)
    for a in it:
        name, eq, value = a.partition("=")
        if name in valued:
            if not eq:
                nxt = next(it, None)
                if nxt is None:
                    raise UsageError(f"{name} needs a value")
                value = nxt
            key = valued[name]
            if key == "devices":
                opts["devices"] += [d for d in value.split(",") if d.strip()]
            else:
                opts[key] = value
        elif a == "--vm":
            opts["vm"] = True
        elif a == "--exit-on-eof":
            opts["exit_on_eof"] = True
        elif a in ("-h", "--help"):
            raise UsageError("")
        else:
            raise UsageError(f"unknown argument {a!r}")
    return opts


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _raw_tty(fd: int) -> None:
    import termios
    import tty

    tty.setraw(fd, termios.TCSANOW)


def main(argv: list[str] | None = None) -> int:
    try:
        opts = parse(sys.argv[1:] if argv is None else argv)
    except UsageError as e:
        print(__doc__.strip() if not str(e) else f"harness.agent: {e}", file=sys.stderr)
        return 0 if not str(e) else 2
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)

    if opts["channel"]:
        try:
            fd = os.open(opts["channel"], os.O_RDWR | os.O_CLOEXEC | os.O_NOCTTY)
        except OSError as e:
            print(f"harness.agent: cannot open the channel {opts['channel']}: {e.strerror}", file=sys.stderr)
            return 1
        if os.isatty(fd):
            _raw_tty(fd)
        rfd = wfd = fd
    else:
        # The protocol gets the original stdin/stdout; fd 1 becomes stderr, so that
        # a stray print() (ours or a library's) cannot corrupt the stream.
        rfd, wfd = os.dup(0), os.dup(1)
        os.set_inheritable(rfd, False)
        os.set_inheritable(wfd, False)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        os.dup2(2, 1)

    from .protocol import encode
    from .server import Agent, log, serve, write_all

    info: dict[str, Any] = {"vm": opts["vm"], "devices": opts["devices"], "root": opts["root"],
                            "channel": opts["channel"] or "stdio"}
    try:
        if opts["vm"]:
            from ..backends.sysfs_state import VM_ENV

            os.environ[VM_ENV] = "1"
        from ..backends.kernel import KernelBackend

        backend = KernelBackend(tuple(opts["devices"]), root=opts["root"], state_file=opts["state_file"])
    except Exception as e:
        # Say why in the hello, where the host looks first.
        from .protocol import HELLO, PROTOCOL_VERSION

        msg = {"hello": HELLO, "protocol": PROTOCOL_VERSION, "kernel": os.uname().release, "pid": os.getpid(),
               "error": f"{type(e).__name__}: {e}", **info}
        log(msg["error"])
        with contextlib.suppress(Exception):
            write_all(wfd, encode(msg))
        return 1

    agent = Agent(backend, info)
    try:
        return serve(agent, rfd, wfd, reconnect=bool(opts["channel"]) and not opts["exit_on_eof"])
    finally:
        try:
            backend.reset()
        except Exception as e:
            log(f"reset at exit failed: {e}")


if __name__ == "__main__":
    sys.exit(main())
