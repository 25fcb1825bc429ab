"""The build step: merge the config, verify it, ``make bzImage`` in an O= build directory.

Everything make prints goes to ``<build dir>/build.log``, which ends with ``exit N``; every
``PROGRESS_EVERY`` seconds a line on stderr says how long it has run and what it compiles.
Nothing here knows about the cache: :func:`make_kernel` returns what the cache records.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import re
import resource
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

from .apt import apt_install
from .errors import KernelBuildError
from .kconfig import DEFCONFIG, FRAGMENT, KernelConfigError, check_config

IMAGE = "arch/x86/boot/bzImage"

# --coverage: gcov for the code under test only.  GCOV_PROFILE is set on make's command line as a
# recursively expanded variable, so every kbuild sub-make evaluates it against its own $(obj): "y"
# in these directories, empty elsewhere (with GCOV_PROFILE_ALL=n, no other file is instrumented).
COVERAGE_DIRS = ("drivers/iommu/iommufd", "drivers/vfio", "drivers/vfio/pci")
COVERAGE_MAKE_VARS = (f"GCOV_PROFILE=$(if $(filter {' '.join(COVERAGE_DIRS)},$(obj)),y)",)

# Build prerequisites: commands (shutil.which) and development headers (dpkg-query), with the
# Debian package providing each.
PREREQ_TOOLS = {"make": "make", "gcc": "gcc", "flex": "flex", "bison": "bison", "bc": "bc"}
PREREQ_LIBS = {"libelf-dev": "/usr/include/gelf.h", "libssl-dev": "/usr/include/openssl/ssl.h"}

PROGRESS_EVERY = 30.0
LOG_TAIL = 40
_COMPILE_LINE = re.compile(r"^\s+(CC|AS|LD|AR|HOSTCC|OBJCOPY|GEN|BUILD|VDSO\S*)\s+(\S+)")


def missing_prereqs() -> list[str]:
    """Debian packages the build needs and the machine lacks."""
    missing = [pkg for tool, pkg in PREREQ_TOOLS.items() if shutil.which(tool) is None]
    dpkg = shutil.which("dpkg-query")
    for pkg, header in PREREQ_LIBS.items():
        if dpkg:
            r = subprocess.run([dpkg, "-W", "-f=${db:Status-Status}", pkg], capture_output=True, text=True)
            installed = r.returncode == 0 and r.stdout.strip() == "installed"
        else:
            installed = Path(header).exists()
        if not installed:
            missing.append(pkg)
    return missing


def ensure_prereqs() -> None:
    apt_install(missing_prereqs(), "building the kernel")


def default_jobs() -> int:
    return len(os.sched_getaffinity(0)) + 1


def tail(text: str, n: int = LOG_TAIL) -> str:
    return "\n".join(text.splitlines()[-n:])


def fmt_elapsed(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}m{s:02d}s"


def run_logged(cmd: Sequence[str], log: IO[str], *, cwd: Path | None = None, label: str = "make",
               progress_every: float = PROGRESS_EVERY, err: IO[str] | None = None) -> int:
    """Run ``cmd`` with its output appended to ``log``; every ``progress_every`` s a line on ``err``."""
    err = err or sys.stderr
    log.write(f"$ {' '.join(cmd)}\n")
    log.flush()
    start = time.monotonic()
    last = [""]
    proc = subprocess.Popen(list(cmd), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, text=True, errors="replace", bufsize=1)

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            m = _COMPILE_LINE.match(line)
            if m:
                last[0] = f"{m.group(1)} {m.group(2)}"
        log.flush()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    next_report = start + progress_every
    try:
        while True:
            try:
                rc = proc.wait(timeout=min(1.0, progress_every))
                break
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic()
            if now >= next_report:
                print(f"[kernel] {label}: {fmt_elapsed(now - start)} elapsed, last: {last[0] or '-'}",
                      file=err, flush=True)
                next_report = now + progress_every
    except BaseException:                 # Ctrl-C, or a timeout around us: make goes down with us
        proc.terminate()
        proc.wait()
        raise
    finally:
        reader.join()
    return rc


def log_status(log: Path) -> str | None:
    """"exit N" if ``log`` ends with make's exit status line, else None (absent, running or killed)."""
    try:
        lines = log.read_text(errors="replace").rstrip().splitlines()
    except OSError:
        return None
    return lines[-1].strip() if lines and re.fullmatch(r"exit -?\d+", lines[-1].strip()) else None


@contextlib.contextmanager
def _exit_line_on_interrupt(log: IO[str]) -> Iterator[None]:
    """End the log with an exit line when interrupted, so the next run does not wait for a dead build."""
    try:
        yield
    except (KeyboardInterrupt, SystemExit):
        log.write("\nexit 130\n")
        raise


def gcc_version() -> str:
    try:
        return subprocess.run(["gcc", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    except (OSError, IndexError):
        return "unknown"


def make_kernel(srctree: Path, builddir: Path, fragment: bytes, *, jobs: int, coverage: bool,
                what: str, sanitizers: bool = False) -> dict[str, object]:
    """Configure (merge_config, olddefconfig), verify and build ``srctree`` in ``builddir``.

    Returns what the cache records about the build (without the source and its kind); raises
    :class:`KernelBuildError` (:class:`KernelConfigError`) with the log's tail.  ``what`` names
    the kernel in the first progress line.
    """
    builddir.mkdir(parents=True, exist_ok=True)
    log_path = builddir / "build.log"
    frag_path = builddir / FRAGMENT.name
    frag_path.write_bytes(fragment)
    make = ["make", "-C", str(srctree), f"O={builddir}"]
    print(f"[kernel] building {what} from {srctree} in {builddir}, -j{jobs}; log {log_path}", file=sys.stderr)
    start = time.monotonic()
    with open(log_path, "w") as log, _exit_line_on_interrupt(log):
        steps: list[tuple[str, list[str]]] = [
            ("merge_config", ["sh", str(srctree / "scripts/kconfig/merge_config.sh"), "-m", "-O", str(builddir),
                              str(srctree / DEFCONFIG), str(frag_path)]),
            ("olddefconfig", [*make, "olddefconfig"]),
        ]
        for label, cmd in steps:
            rc = run_logged(cmd, log, cwd=builddir, label=label)
            if rc:
                log.write(f"exit {rc}\n")
                raise KernelBuildError(f"{label} failed (exit {rc}); last lines of {log_path}:\n"
                                       f"{tail(log_path.read_text(errors='replace'))}")
        try:
            check_config(fragment, builddir, srctree)
        except KernelConfigError as e:
            log.write(f"{e}\nexit 1\n")
            raise
        cmd = [*make, f"-j{jobs}", *(COVERAGE_MAKE_VARS if coverage else ()), "bzImage"]
        rc = run_logged(cmd, log, cwd=builddir, label="make bzImage")
        log.write(f"exit {rc}\n")
    duration = time.monotonic() - start
    if rc:
        raise KernelBuildError(f"make bzImage failed (exit {rc}) after {fmt_elapsed(duration)}; "
                               f"last {LOG_TAIL} lines of {log_path}:\n{tail(log_path.read_text(errors='replace'))}")
    return {
        "jobs": jobs, "coverage": coverage, "coverage_dirs": list(COVERAGE_DIRS) if coverage else [],
        "sanitizers": sanitizers,
        "duration_s": round(duration, 1),
        "max_rss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "gcc": gcc_version(),
    }
