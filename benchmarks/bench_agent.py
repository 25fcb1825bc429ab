#!/usr/bin/env python3
"""What one ioctl costs through the agent, against the same ioctl in a C loop.

    python3 benchmarks/bench_agent.py [--n 10000] [--batch 100] [--repeats 3] [--json]

The ioctl is FIONREAD on a pipe (a FIFO the agent's backend opens; the C loop
uses pipe(2)): the cheapest real ioctl there is, so every layer's overhead shows.
Layers, each timed as the best of --repeats runs of --n ioctls:

  c loop                 ioctl(fd, FIONREAD, &v) in a tight loop (gcc -O2; --cc, or --c-binary)
  libc_ioctl             kernel.py's ioctl helper alone (bytes argument: guard-page scratch mapping)
  libc_ioctl int arg     the same with a raw pointer (no scratch mapping)
  kernel backend         KernelBackend.ioctl, local (the helper, plus its scan of /proc/self/fd)
  agent dispatch         Agent.handle_line on a batch of --batch requests, in this process, per ioctl:
                         JSON in and out, argument checks, KernelBackend.ioctl (no transport)
  agent protocol only    the same on a backend whose ioctl does nothing: the agent's own overhead
  over pipes, single     AgentBackend.ioctl on a spawned agent: one round trip per ioctl
  over pipes, batched    AgentBackend.batch() of --batch ioctls per round trip
  ping round trip        AgentBackend.ping(): the transport alone

and, once: the agent's start-up (spawn to hello) and its import time.

The target (the issue's): the executor's per-ioctl cost, batched, within 3x of the
C loop.  Run it in the test VM too (the same script, with the guest's python3 and a
C binary built for it: --c-binary) for the number that target is about.

Exit status: 0 target met, 1 missed, 2 something did not run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import termios
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TARGET_RATIO = 3.0
C_SOURCE = r"""
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/ioctl.h>
int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 100000;
    int p[2], v = 0;
    struct timespec a, b;
    if (pipe(p) || write(p[1], "hello", 5) != 5) return 1;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++)
        if (ioctl(p[0], FIONREAD, &v)) return 2;
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%.3f\n", ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / n);
    return v != 5;
}
"""


@dataclass
class Row:
    layer: str
    us: float | None = None        # microseconds per ioctl (per op for ping)
    note: str = ""
    error: str = ""


def best(fn: Callable[[], float], repeats: int) -> float:
    return min(fn() for _ in range(repeats))


def timed(n: int, body: Callable[[], Any]) -> float:
    """Microseconds per call of ``body`` over n calls."""
    t = time.perf_counter()
    for _ in range(n):
        body()
    return (time.perf_counter() - t) / n * 1e6


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path):
        self.a = args
        self.work = workdir
        self.rows: list[Row] = []
        self.extra: dict[str, Any] = {}
        self.root = workdir / "root"
        (self.root / "sys").mkdir(parents=True)
        os.mkfifo(self.root / "fifo")

    def row(self, layer: str, fn: Callable[[], tuple[float, str] | float]) -> None:
        try:
            out = fn()
            us, note = out if isinstance(out, tuple) else (out, "")
            self.rows.append(Row(layer, us, note))
        except Exception as e:
            self.rows.append(Row(layer, error=f"{type(e).__name__}: {e}"))

    # -- layers ----------------------------------------------------------------------
    def c_loop(self) -> tuple[float, str]:
        exe = self.a.c_binary
        if exe is None:
            cc = shutil.which(self.a.cc)
            if cc is None:
                raise RuntimeError(f"no C compiler {self.a.cc!r} (give --cc or --c-binary)")
            src = self.work / "fionread.c"
            src.write_text(C_SOURCE)
            exe = str(self.work / "fionread")
            subprocess.run([cc, "-O2", "-o", exe, str(src)], check=True, capture_output=True)
        n = max(self.a.n * 100, 100_000)
        runs = [float(subprocess.run([exe, str(n)], check=True, capture_output=True, text=True).stdout)
                for _ in range(max(self.a.repeats, 3))]
        return min(runs) / 1000, f"{n} ioctls per run, median {statistics.median(runs):.0f} ns"

    def local(self) -> None:
        from harness.backends import kernel as kmod
        from harness.backends.kernel import KernelBackend

        n, reps = self.a.n, self.a.repeats
        r, w = os.pipe()
        os.write(w, b"hello")
        buf = b"\0" * 4
        try:
            self.row("libc_ioctl", lambda: best(lambda: timed(n, lambda: kmod.libc_ioctl(r, termios.FIONREAD, buf)),
                                                reps))
            kb = KernelBackend(root=str(self.root), state_file=self.work / "state.json")
            m = kb.mmap(4096).ret
            self.row("libc_ioctl int arg", lambda: best(lambda: timed(n, lambda: kmod.libc_ioctl(r, termios.FIONREAD,
                                                                                                m)), reps))
            kb.adopt_fd(r)

            def backend() -> tuple[float, str]:
                us = best(lambda: timed(n, lambda: kb.ioctl(r, termios.FIONREAD, buf)), reps)
                probe = best(lambda: timed(n, lambda: kmod._lowest_free_fd(r)), reps)
                return us, f"its probe for the fd an ioctl may install (dup + close) alone: {probe:.1f} us"

            self.row("kernel backend", backend)
            self._dispatch(kb, r)
            kb.reset()
        finally:
            with contextlib.suppress(OSError):
                os.close(r)
            os.close(w)

    def _dispatch(self, kb: Any, fd: int) -> None:
        from harness.agent.protocol import encode
        from harness.agent.server import Agent
        from harness.backends.base import OpResult

        n, reps, size = self.a.n, self.a.repeats, self.a.batch
        line = encode([{"id": i, "op": "ioctl", "args": [fd, termios.FIONREAD, b"\0" * 4]} for i in range(size)])[:-1]
        agent = Agent(kb)
        self.row("agent dispatch", lambda: best(lambda: timed(max(1, n // size), lambda: agent.handle_line(line)),
                                                reps) / size)

        class Null:
            name = "null"
            last_error = None

            def __getattr__(self, op: str) -> Any:
                return lambda *a: OpResult(data=b"\5\0\0\0")

        null = Agent(Null())  # type: ignore[arg-type]
        self.row("agent protocol only", lambda: best(lambda: timed(max(1, n // size), lambda: null.handle_line(line)),
                                                     reps) / size)

    def remote(self) -> None:
        from harness.agent.client import AgentBackend

        n, reps, size = self.a.n, self.a.repeats, self.a.batch
        argv = [*self.a.agent_cmd, "--vm", "--root", str(self.root), "--state-file", str(self.work / "agent.json")]
        starts = []
        for _ in range(3):
            t = time.perf_counter()
            b = AgentBackend.spawn(argv, cwd=str(ROOT))
            starts.append(time.perf_counter() - t)
            b.close()
        self.extra["agent_start_ms"] = min(starts) * 1000
        with AgentBackend.spawn(argv, cwd=str(ROOT)) as b:
            fd = b.open("/fifo", os.O_RDWR | os.O_NONBLOCK).ret
            assert b.write(fd, b"hello").ret == 5
            assert b.ioctl(fd, termios.FIONREAD, b"\0" * 4).data == b"\5\0\0\0"
            self.row("over pipes, single", lambda: best(lambda: timed(n, lambda: b.ioctl(fd, termios.FIONREAD,
                                                                                           b"\0" * 4)), reps))

            def batched() -> None:
                with b.batch() as bt:
                    for _ in range(size):
                        bt.ioctl(fd, termios.FIONREAD, b"\0" * 4)

            self.row(f"over pipes, batched {size}",
                     lambda: best(lambda: timed(max(1, n // size), batched), reps) / size)
            self.row("ping round trip", lambda: best(lambda: timed(n, b.ping), reps))

    def imports(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}

        def wall(code: str) -> float:
            runs = []
            for _ in range(5):
                t = time.perf_counter()
                subprocess.run([sys.executable, "-S", "-c", code], check=True, env=env, cwd=str(ROOT))
                runs.append(time.perf_counter() - t)
            return min(runs) * 1000

        bare = wall("pass")
        agent = wall("import harness.agent.__main__, harness.agent.server, harness.backends.kernel")
        self.extra["python_start_ms"] = bare
        self.extra["agent_import_ms"] = agent - bare
        out = subprocess.run([sys.executable, "-S", "-X", "importtime", "-c",
                              "import harness.agent.__main__, harness.agent.server, harness.backends.kernel"],
                             check=True, env=env, cwd=str(ROOT), capture_output=True, text=True).stderr
        selfs: list[tuple[int, str]] = []
        for line in out.splitlines():
            parts = line.split("|")
            if len(parts) == 3 and parts[0].startswith("import time:") and parts[1].strip().isdigit():
                selfs.append((int(parts[0].split(":")[1]), parts[2].strip()))
        self.extra["import_self_us_top"] = [f"{name} {us}" for us, name in sorted(selfs, reverse=True)[:8]]

    def run(self) -> None:
        self.row("c loop", self.c_loop)
        self.local()
        self.remote()
        try:
            self.imports()
        except Exception as e:
            self.extra["import_error"] = f"{type(e).__name__}: {e}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=10_000, help="ioctls per timed run (default 10000)")
    p.add_argument("--batch", type=int, default=100, help="ioctls per batch (default 100)")
    p.add_argument("--repeats", type=int, default=3, help="runs per layer; the best counts (default 3)")
    p.add_argument("--cc", default="gcc")
    p.add_argument("--c-binary", help="a prebuilt C loop (its source is C_SOURCE in this file)")
    p.add_argument("--agent-cmd", nargs="+", default=[sys.executable, "-m", "harness.agent"],
                   help="how to start the agent (default: this python, -m harness.agent)")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-agent-") as tmp:
        bench = Bench(a, Path(tmp))
        bench.run()
    c = next((r.us for r in bench.rows if r.layer == "c loop"), None)
    batched = next((r for r in bench.rows if r.layer.startswith("over pipes, batched")), None)
    ratio = batched.us / c if c and batched and batched.us is not None else None
    failed = [r for r in bench.rows if r.error]
    if a.json:
        print(json.dumps({"rows": [r.__dict__ for r in bench.rows], "c_us": c, "batched_ratio": ratio,
                          "target_ratio": TARGET_RATIO, **bench.extra}, indent=1))
    else:
        print(f"FIONREAD on a pipe, best of {a.repeats} runs of {a.n}; python {sys.version.split()[0]}, "
              f"kernel {os.uname().release}, {os.cpu_count()} CPUs\n")
        print(f"| {'layer':28} | {'us/ioctl':>10} | {'x C loop':>9} | note")
        print(f"|{'-' * 30}|{'-' * 12}|{'-' * 11}|------")
        for r in bench.rows:
            if r.error:
                print(f"| {r.layer:28} | {'FAILED TO RUN':>10} | {'':>9} | {r.error}")
                continue
            assert r.us is not None
            x = f"{r.us / c:.1f}" if c else "?"
            print(f"| {r.layer:28} | {r.us:10.2f} | {x:>9} | {r.note}")
        print()
        for k, v in bench.extra.items():
            print(f"{k}: {', '.join(v) if isinstance(v, list) else (f'{v:.1f}' if isinstance(v, float) else v)}")
        verdict = "FAILED TO RUN" if ratio is None else ("ok" if ratio <= TARGET_RATIO else "MISSED")
        print(f"\ntarget: batched per-ioctl cost <= {TARGET_RATIO:g}x the C loop: "
              f"{'?' if ratio is None else f'{ratio:.0f}x'} {verdict}")
    if failed or ratio is None:
        return 2
    return 0 if ratio <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
