"""Build (or find in the cache) the x86_64 test kernel the suite boots in QEMU.

One entry point, :func:`ensure_kernel`, used by ``vfio-conformance kernel build``, the VM runner and CI.
It returns the path of a ``bzImage`` built from

- a Linux source tree: ``source=`` (a user's tree, e.g. to validate a patch), else the source
  tarball of a kernel series (``series=``, default 6.12; the table is harness/kernel/series.py):
  Debian's ``linux-source-6.12``, installed with apt if missing, or ``linux-source-7.2``, downloaded
  from Debian unstable into the cache; either is extracted once into the cache;
- a config: ``x86_64_defconfig`` merged with the fragment ``config/vfio-conformance.config``
  (``scripts/kconfig/merge_config.sh -m``, then ``make olddefconfig``), after which every ``CONFIG_``
  line of the fragment is checked against the resulting ``.config`` (Kconfig drops unmet requests
  silently); a request that did not stick fails the build, with the dependencies that explain it.

Cache layout (root: harness/kernel/cache.py: ``$VFIO_CONFORMANCE_CACHE``, else
``$XDG_CACHE_HOME/vfio-conformance``, else ``~/.cache/vfio-conformance``)::

    apt/<suite>/                 sources.list, lists, package cache of apt-get for a downloaded series
    deb/linux-source-<series>/   the downloaded .deb, unpacked (usr/src/linux-source-<series>.tar.xz)
    src/linux-source-<series>/   the extracted tarball (+ .tarball: size and mtime it came from)
    build/<build key>/           the O= build directory (kept: incremental rebuilds, gcov notes), build.log
    kernels/<key>/               bzImage, config, build.json: written once, atomically

``key = f"{kernelversion}-{sha256(fragment bytes)[:12]}"`` for a series' Debian source.  A ``source=`` tree
adds ``-<sha256(resolved path)[:8]>`` to the build key (one build directory per tree, so an edit
rebuilds incrementally) and ``-<state>`` to the key, where state hashes the newest mtime and the
number of files in the tree (``.git`` excluded): any edit, checkout or patch gives a new key.

A build directory whose ``build.log`` ends with ``exit 0`` but whose cache entry is missing (a
build run by hand, or a process killed after make) is adopted without running make, when its
``.config`` satisfies the fragment.  The series' ``$VFIO_CONFORMANCE_KERNEL`` (``..._7_2`` for 7.2;
a bzImage) short-circuits all of this when no source is given; :func:`select_kernel` is the one
rule for which kernel a run uses when none is named.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import glob
import hashlib
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from . import series as _series
from .cache import CACHE_ENV as CACHE_ENV
from .cache import cache_root as cache_root
from .series import INSTALL, FetchError, Series
from .series import KERNEL_ENV as KERNEL_ENV

FRAGMENT = Path(__file__).resolve().parent / "config" / "vfio-conformance.config"
ARCH = "x86"
DEFCONFIG = "arch/x86/configs/x86_64_defconfig"
IMAGE = "arch/x86/boot/bzImage"


# --coverage: gcov for the code under test only.  GCOV_PROFILE is set on make's command line as a
# recursively expanded variable, so every kbuild sub-make evaluates it against its own $(obj): "y"
# in these directories, empty elsewhere (with GCOV_PROFILE_ALL=n, no other file is instrumented).
COVERAGE_DIRS = ("drivers/iommu/iommufd", "drivers/vfio", "drivers/vfio/pci")
COVERAGE_FRAGMENT = b"\n# --coverage\nCONFIG_GCOV_KERNEL=y\nCONFIG_GCOV_PROFILE_ALL=n\n"
COVERAGE_MAKE_VARS = (f"GCOV_PROFILE=$(if $(filter {' '.join(COVERAGE_DIRS)},$(obj)),y)",)

# Build prerequisites: commands (shutil.which) and development headers (dpkg-query), with the
# Debian package providing each.
PREREQ_TOOLS = {"make": "make", "gcc": "gcc", "flex": "flex", "bison": "bison", "bc": "bc"}
PREREQ_LIBS = {"libelf-dev": "/usr/include/gelf.h", "libssl-dev": "/usr/include/openssl/ssl.h"}

PROGRESS_EVERY = 30.0
LOG_TAIL = 40
_COMPILE_LINE = re.compile(r"^\s+(CC|AS|LD|AR|HOSTCC|OBJCOPY|GEN|BUILD|VDSO\S*)\s+(\S+)")


class KernelBuildError(RuntimeError):
    """The kernel could not be provided; the message says why and what to do."""


class KernelConfigError(KernelBuildError):
    """The fragment's requests did not all survive Kconfig."""


# --------------------------------------------------------------------------------------------------
# Paths and keys


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fragment_bytes(fragment: Path | None = None, coverage: bool = False) -> bytes:
    """The exact bytes merged over the defconfig: the fragment file, plus the coverage options."""
    data = Path(fragment or FRAGMENT).read_bytes()
    return data + COVERAGE_FRAGMENT if coverage else data


def makefile_version(makefile_text: str) -> str:
    """``make kernelversion`` from a top-level Makefile's VERSION/PATCHLEVEL/SUBLEVEL/EXTRAVERSION."""
    vals = dict(re.findall(r"^(VERSION|PATCHLEVEL|SUBLEVEL|EXTRAVERSION)\s*=[ \t]*(.*?)\s*$",
                           makefile_text, re.M))
    if not vals.get("VERSION"):
        raise KernelBuildError("not a Linux top-level Makefile (no VERSION =)")
    v = vals["VERSION"]
    if vals.get("PATCHLEVEL"):
        v += "." + vals["PATCHLEVEL"]
        if vals.get("SUBLEVEL"):
            v += "." + vals["SUBLEVEL"]
    return v + vals.get("EXTRAVERSION", "")


def tree_version(source: Path) -> str:
    makefile = source / "Makefile"
    if not makefile.is_file() or not (source / "Kconfig").is_file():
        raise KernelBuildError(f"{source} is not a Linux source tree (no Makefile and Kconfig at its top)")
    return makefile_version(makefile.read_text(errors="replace"))


def tree_state(source: Path) -> str:
    """A hash of the newest mtime (ns) and the number of files in ``source``, ``.git`` excluded."""
    newest = count = 0
    stack = [str(source)]
    while stack:
        with os.scandir(stack.pop()) as it:
            for e in it:
                if e.is_dir(follow_symlinks=False):
                    if e.name != ".git":
                        stack.append(e.path)
                    continue
                count += 1
                newest = max(newest, e.stat(follow_symlinks=False).st_mtime_ns)
    return _sha256(f"{newest} {count}".encode())[:8]


@dataclass(frozen=True)
class Keys:
    version: str
    fragment_sha: str          # full sha256 of fragment_bytes()
    build: str                 # build/<build>
    cache: str                 # kernels/<cache>


def compute_keys(version: str, fragment: bytes, source: Path | None = None) -> Keys:
    """Keys for the Debian source (``source=None``) or for a user's tree."""
    sha = _sha256(fragment)
    build = f"{version}-{sha[:12]}"
    if source is None:
        return Keys(version, sha, build, build)
    build += "-" + _sha256(str(Path(source).resolve()).encode())[:8]
    return Keys(version, sha, build, f"{build}-{tree_state(Path(source))}")


# --------------------------------------------------------------------------------------------------
# A series' Debian source package


_apt_updated = False


def _is_root() -> bool:
    return os.geteuid() == 0


def apt_install(packages: Sequence[str], why: str) -> None:
    """``apt-get install -y`` (after one ``apt-get update`` per process), as root; else a clear error."""
    global _apt_updated
    pkgs = sorted(set(packages))
    if not pkgs:
        return
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", *pkgs]
    if not _is_root() or shutil.which("apt-get") is None:
        raise KernelBuildError(f"{why} needs {' '.join(pkgs)}, which is not installed; as root run: "
                               f"apt-get update && {' '.join(cmd)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print(f"[kernel] installing {' '.join(pkgs)} ({why})", file=sys.stderr)
    for step in ([["apt-get", "update", "-q"]] if not _apt_updated else []) + [cmd]:
        r = subprocess.run(step, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if r.returncode:
            raise KernelBuildError(f"{' '.join(step)} failed ({r.returncode}):\n{_tail(r.stdout)}")
        if step[1] == "update":
            _apt_updated = True


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


def _tarball_id(tarball: Path) -> str:
    st = tarball.stat()
    return f"{st.st_size} {st.st_mtime_ns}"


def get_series(series: str | Series | None = None) -> Series:
    """A series of harness/kernel/series.py by name (None: the default, 6.12)."""
    if isinstance(series, Series):
        return series
    try:
        return _series.get_series(series)
    except ValueError as e:
        raise KernelBuildError(str(e)) from None


def _extracted(s: Series, tarball: Path) -> Path | None:
    """The cache's extraction of ``tarball``, if it is there and from this very tarball."""
    dest = s.src_dir()
    stamp = dest / ".tarball"
    try:
        if tarball.is_file() and stamp.read_text().strip() == _tarball_id(tarball):
            return dest
    except OSError:
        pass
    return None


def _package_version(s: Series) -> str | None:
    """The Debian version of the series' package: installed (dpkg-query) or downloaded into the cache."""
    if s.obtain != INSTALL:
        return _series.deb_version(s)
    if shutil.which("dpkg-query") is None:
        return None
    r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", s.package], capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else None


def debian_version(series: str | Series | None = None, *, tarball: Path | None = None) -> str | None:
    """The kernel version of the series' tarball without extracting it all, or None if it is not there
    (not installed, or not downloaded yet).  ``tarball`` replaces the series' (tests)."""
    s = get_series(series)
    own = tarball is None
    tarball = tarball or s.tarball()
    src = _extracted(s, tarball)
    if src is not None:
        return tree_version(src)
    if not tarball.is_file():
        return None
    m = re.match(r"\d+\.\d+(?:\.\d+)?", (_package_version(s) or "") if own else "")
    if m:
        return m.group(0)
    r = subprocess.run(["tar", "-xJOf", str(tarball), "--occurrence=1", f"{s.package}/Makefile"],
                       capture_output=True, text=True)
    return makefile_version(r.stdout) if r.returncode == 0 else None


def _obtain(s: Series, tarball: Path) -> None:
    """Put the series' tarball in place: apt-get install (root), or the download into the cache."""
    if s.obtain == INSTALL:
        apt_install([s.package], f"the kernel source ({tarball})")
    else:
        try:
            _series.download(s)
        except FetchError as e:
            raise KernelBuildError(str(e)) from e
    if not tarball.is_file():
        raise KernelBuildError(f"{s.package} is there but {tarball} is missing")


def debian_source(series: str | Series | None = None, *, tarball: Path | None = None) -> Path:
    """The series' Debian source, extracted once into ``<cache>/src/<package>/`` (the package installed
    or downloaded first if its tarball is missing).  A directory there that was not extracted from
    this very tarball (no matching ``.tarball`` stamp: an older package, or extracted by hand) is
    replaced.  ``tarball`` replaces the series' (tests)."""
    s = get_series(series)
    tarball = tarball or s.tarball()
    dest = s.src_dir()
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _locked(dest.parent / f".{s.package}.lock", f"another fetch or extraction of {s.package}"):
        if not tarball.is_file():
            _obtain(s, tarball)
        if _extracted(s, tarball):
            return dest
        if shutil.which("xz") is None:
            apt_install(["xz-utils"], f"extracting {tarball}")
        print(f"[kernel] extracting {tarball} into {dest.parent} (once; about 1.5 GB"
              + ("; replacing a tree without this tarball's stamp" if dest.exists() else "") + ")", file=sys.stderr)
        tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest.parent))
        try:
            subprocess.run(["tar", "-xJf", str(tarball), "-C", str(tmp)], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            (tmp / s.package / ".tarball").write_text(_tarball_id(tarball) + "\n")
            old = None
            if dest.exists():
                old = dest.parent / f".old-{os.getpid()}"
                os.rename(dest, old)
            os.rename(tmp / s.package, dest)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except subprocess.CalledProcessError as e:
            raise KernelBuildError(f"extracting {tarball} failed: {e.stderr.strip()}") from e
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


# --------------------------------------------------------------------------------------------------
# Fragment verification


def parse_config(text: str) -> dict[str, str]:
    """``CONFIG_X=v`` and ``# CONFIG_X is not set`` (as "n") lines of a .config or fragment."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        m = re.match(r"(CONFIG_[A-Za-z0-9_]+)=(.*)$", line)
        if m:
            out[m.group(1)] = m.group(2)
            continue
        m = re.match(r"# (CONFIG_[A-Za-z0-9_]+) is not set$", line)
        if m:
            out[m.group(1)] = "n"
    return out


def _satisfied(want: str, got: str | None) -> bool:
    if want == "n":
        return got in (None, "n")
    if want == "m":          # with MODULES=n, Kconfig turns m into y
        return got in ("m", "y")
    return got == want


@dataclass
class KEntry:
    """One ``config``/``menuconfig`` definition, as far as explaining a dropped request needs."""
    name: str
    where: str
    prompt: bool = False
    prompt_if: str | None = None
    depends: list[str] = field(default_factory=list)   # own ``depends on`` and enclosing if/menu/choice


@dataclass
class Kconfig:
    entries: dict[str, list[KEntry]] = field(default_factory=dict)
    selects: dict[str, list[tuple[str, str | None]]] = field(default_factory=dict)   # target -> (by, if)


_KEYWORDS = ("config", "menuconfig", "choice", "endchoice", "menu", "endmenu", "if", "endif", "comment",
             "source", "osource", "rsource", "orsource", "mainmenu")


def parse_kconfig(srctree: Path, arch: str = ARCH) -> Kconfig:
    """Follow ``source`` from ``srctree/Kconfig``, recording entries, their dependencies and selects.

    A deliberately small reader: no macro expansion beyond $(SRCARCH)/$(HEADER_ARCH), no defaults.
    """
    kc = Kconfig()
    seen: set[Path] = set()

    def read(path: Path, conds: list[str]) -> None:
        if path in seen or not path.is_file():
            return
        seen.add(path)
        lines = path.read_text(errors="replace").splitlines()
        stack: list[tuple[str, list[str]]] = []       # (kind, conditions it adds)
        current: KEntry | None = None
        block: list[str] | None = None                # the menu/choice whose depends lines follow
        i = 0

        def enclosing() -> list[str]:
            return conds + [c for _, cs in stack for c in cs]

        while i < len(lines):
            raw = lines[i]
            lineno = i + 1
            i += 1
            while raw.endswith("\\") and i < len(lines):
                raw = raw[:-1] + " " + lines[i].strip()
                i += 1
            s = raw.split("#", 1)[0].strip() if '"' not in raw else raw.strip()
            if not s or s.startswith("#"):
                continue
            word, _, rest = s.partition(" ")
            rest = rest.strip()
            if word in ("help", "---help---"):
                indent = None
                while i < len(lines):
                    nxt = lines[i]
                    if nxt.strip():
                        ind = len(nxt.expandtabs()) - len(nxt.expandtabs().lstrip())
                        base = len(raw.expandtabs()) - len(raw.expandtabs().lstrip())
                        if indent is None:
                            if ind <= base:
                                break
                            indent = ind
                        elif ind < indent:
                            break
                    i += 1
                continue
            if word in _KEYWORDS:
                current = None
                block = None
            if word in ("config", "menuconfig"):
                current = KEntry(rest, f"{path.relative_to(srctree)}:{lineno}", depends=list(enclosing()))
                kc.entries.setdefault(rest, []).append(current)
            elif word in ("menu", "choice"):
                block = []
                stack.append((word, block))
            elif word == "if":
                stack.append(("if", [rest]))
            elif word in ("endif", "endmenu", "endchoice"):
                if stack:
                    stack.pop()
            elif word in ("source", "osource", "rsource", "orsource"):
                m = re.match(r'"([^"]*)"', rest)
                if m:
                    name = m.group(1).replace("$(SRCARCH)", arch).replace("$(HEADER_ARCH)", arch)
                    if "$(" not in name:
                        rel = path.parent if word in ("rsource", "orsource") else srctree
                        for p in sorted(glob.glob(str(rel / name))):
                            read(Path(p), enclosing())
            elif word == "depends" and rest.startswith("on "):
                expr = rest[3:].strip()
                if current is not None:
                    current.depends.append(expr)
                elif block is not None:
                    block.append(expr)
            elif word in ("select",) and current is not None:
                target, _, cond = rest.partition(" if ")
                kc.selects.setdefault(target.strip(), []).append((current.name, cond.strip() or None))
            elif current is not None and word in ("bool", "tristate", "string", "int", "hex", "prompt"):
                m = re.match(r'"(?:[^"\\]|\\.)*"\s*(?:if\s+(.*))?$', rest)
                if m:
                    current.prompt = True
                    current.prompt_if = m.group(1)

    read(srctree / "Kconfig", [])
    return kc


def _annotate(expr: str, config: dict[str, str]) -> str:
    """``A && !B`` -> ``A [=y] && !B [=n]``, values from the built .config."""
    def val(m: re.Match[str]) -> str:
        sym = m.group(0)
        if sym in ("y", "n", "m") or sym.isdigit():
            return sym
        return f"{sym} [={config.get('CONFIG_' + sym, 'n')}]"
    parts = re.split(r'("[^"]*")', expr)
    return "".join(p if p.startswith('"') else re.sub(r"\b[A-Za-z0-9_]+\b", val, p) for p in parts)


def _why(sym: str, want: str, got: str | None, kc: Kconfig, config: dict[str, str]) -> str:
    name = sym.removeprefix("CONFIG_")
    defs = kc.entries.get(name)
    if not defs:
        return "not a Kconfig symbol of this tree"
    reasons: list[str] = []
    if want == "n":
        by = [f"{s} [={config.get('CONFIG_' + s, 'n')}]" + (f" if {_annotate(c, config)}" if c else "")
              for s, c in kc.selects.get(name, []) if config.get("CONFIG_" + s, "n") != "n"]
        if by:
            reasons.append("selected by " + ", ".join(by))
    for d in defs:
        if not d.prompt:
            reasons.append(f"no prompt ({d.where}): only defaults and selects set it")
        elif d.prompt_if:
            reasons.append(f"prompt only if {_annotate(d.prompt_if, config)} ({d.where})")
        if want != "n" and d.depends:
            reasons.append(f"depends on {' && '.join(_annotate(e, config) for e in d.depends)} ({d.where})")
    return "; ".join(reasons) or "no reason found in Kconfig"


@dataclass
class Verification:
    failures: list[str]        # one line per request that did not stick, with the reason
    unknown: list[str]         # =n requests of symbols this tree does not define (harmless, but stale)

    @property
    def ok(self) -> bool:
        return not self.failures


def verify_config(fragment_text: str, config_text: str, srctree: Path | None = None) -> Verification:
    """Check each CONFIG_ request of the fragment against a resolved .config.

    ``=y``/``=m``/values must be there; ``=n`` must be unset or ``n``.  With ``srctree``, failures
    carry the Kconfig reason (dependencies with their values, selects, prompt-less symbols) and
    ``=n`` requests of symbols the tree does not define are listed in ``unknown``.
    """
    wanted = parse_config(fragment_text)
    config = parse_config(config_text)
    bad = [(s, w, config.get(s)) for s, w in wanted.items() if not _satisfied(w, config.get(s))]
    kc = parse_kconfig(srctree) if srctree is not None else None
    failures = []
    for sym, want, got in bad:
        line = f"{sym}={want} requested, got {'not set' if got in (None, 'n') else got}"
        if kc is not None:
            line += f": {_why(sym, want, got, kc, config)}"
        failures.append(line)
    unknown = []
    if kc is not None:
        unknown = [s for s, w in wanted.items() if w == "n" and s.removeprefix("CONFIG_") not in kc.entries]
    return Verification(failures, unknown)


def _check_config(fragment: bytes, builddir: Path, srctree: Path | None) -> None:
    v = verify_config(fragment.decode(), (builddir / ".config").read_text(), srctree)
    for s in v.unknown:
        print(f"[kernel] note: the fragment's {s}=n names no symbol of this tree (no effect)", file=sys.stderr)
    if not v.ok:
        raise KernelConfigError(
            f"{len(v.failures)} request(s) of the config fragment did not survive Kconfig "
            f"({builddir / '.config'}):\n" + "\n".join("  " + f for f in v.failures))


# --------------------------------------------------------------------------------------------------
# Running make


def _tail(text: str, n: int = LOG_TAIL) -> str:
    return "\n".join(text.splitlines()[-n:])


def _fmt_elapsed(seconds: float) -> str:
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
                print(f"[kernel] {label}: {_fmt_elapsed(now - start)} elapsed, last: {last[0] or '-'}",
                      file=err, flush=True)
                next_report = now + progress_every
    except BaseException:                 # Ctrl-C, or a timeout around us: make goes down with us
        proc.terminate()
        proc.wait()
        raise
    finally:
        reader.join()
    return rc


@contextlib.contextmanager
def _locked(path: Path, what: str) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"[kernel] waiting for {what} (lock {path})", file=sys.stderr)
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _log_status(log: Path) -> str | None:
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


def _gcc_version() -> str:
    try:
        return subprocess.run(["gcc", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    except (OSError, IndexError):
        return "unknown"


def _store(keys: Keys, builddir: Path, info: dict[str, object], force: bool) -> Path:
    """Copy bzImage and .config into kernels/<key>/ with build.json, atomically (rename of a full dir)."""
    kernels = cache_root() / "kernels"
    kernels.mkdir(parents=True, exist_ok=True)
    final = kernels / keys.cache
    tmp = Path(tempfile.mkdtemp(prefix=f".{keys.cache}.", dir=kernels))
    try:
        tmp.chmod(0o755)                   # mkdtemp's 0700 would hide the kernel from other users
        shutil.copy2(builddir / IMAGE, tmp / "bzImage")
        shutil.copy2(builddir / ".config", tmp / "config")
        image = (tmp / "bzImage").read_bytes()
        info = {**info, "key": keys.cache, "kernelversion": keys.version, "fragment_sha256": keys.fragment_sha,
                "build_dir": str(builddir), "bzimage_bytes": len(image), "bzimage_sha256": _sha256(image)}
        (tmp / "build.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        if final.exists():
            if not force:
                return final / "bzImage"       # another process stored it meanwhile
            old = kernels / f".{keys.cache}.old-{os.getpid()}"
            os.rename(final, old)
            shutil.rmtree(old, ignore_errors=True)
        os.rename(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final / "bzImage"


def _adoptable(builddir: Path, fragment: bytes) -> bool:
    if _log_status(builddir / "build.log") != "exit 0" or not (builddir / IMAGE).is_file():
        return False
    if not (builddir / ".config").is_file():
        return False
    return verify_config(fragment.decode(), (builddir / ".config").read_text()).ok


def _time_v(log_text: str) -> dict[str, object]:
    """Wall clock and max RSS from ``/usr/bin/time -v`` output at the end of a hand-run build's log."""
    out: dict[str, object] = {"duration_s": None}
    m = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)", log_text)
    if m:
        out["duration_s"] = round(int(m.group(1) or 0) * 3600 + int(m.group(2)) * 60 + float(m.group(3)), 1)
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", log_text)
    if m:
        out["max_rss_kb"] = int(m.group(1))
    return out


def _adopt(keys: Keys, builddir: Path) -> Path:
    log = builddir / "build.log"
    src = builddir / "source"
    info: dict[str, object] = {
        "source": os.path.realpath(src) if src.is_symlink() else "unknown",
        "source_kind": "adopted build directory",
        "date": _dt.datetime.fromtimestamp(log.stat().st_mtime, _dt.timezone.utc).isoformat(timespec="seconds"),
        "gcc": _gcc_version(),
        **_time_v(log.read_text(errors="replace")),
    }
    return _store(keys, builddir, info, force=False)


def _build(keys: Keys, srctree: Path, source_kind: str, builddir: Path, fragment: bytes, jobs: int,
           coverage: bool, force: bool) -> Path:
    builddir.mkdir(parents=True, exist_ok=True)
    log_path = builddir / "build.log"
    frag_path = builddir / FRAGMENT.name
    frag_path.write_bytes(fragment)
    make = ["make", "-C", str(srctree), f"O={builddir}"]
    print(f"[kernel] building {keys.version} ({keys.cache}) from {srctree} in {builddir}, -j{jobs}; "
          f"log {log_path}", file=sys.stderr)
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
                                       f"{_tail(log_path.read_text(errors='replace'))}")
        try:
            _check_config(fragment, builddir, srctree)
        except KernelConfigError as e:
            log.write(f"{e}\nexit 1\n")
            raise
        cmd = [*make, f"-j{jobs}", *(COVERAGE_MAKE_VARS if coverage else ()), "bzImage"]
        rc = run_logged(cmd, log, cwd=builddir, label="make bzImage")
        log.write(f"exit {rc}\n")
    duration = time.monotonic() - start
    if rc:
        raise KernelBuildError(f"make bzImage failed (exit {rc}) after {_fmt_elapsed(duration)}; "
                               f"last {LOG_TAIL} lines of {log_path}:\n{_tail(log_path.read_text(errors='replace'))}")
    info: dict[str, object] = {
        "source": str(srctree), "source_kind": source_kind, "jobs": jobs, "coverage": coverage,
        "coverage_dirs": list(COVERAGE_DIRS) if coverage else [],
        "duration_s": round(duration, 1),
        "max_rss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "gcc": _gcc_version(),
    }
    path = _store(keys, builddir, info, force=True)
    print(f"[kernel] built in {_fmt_elapsed(duration)}: {path}", file=sys.stderr)
    return path


# --------------------------------------------------------------------------------------------------
# Entry points


def default_jobs() -> int:
    return len(os.sched_getaffinity(0)) + 1


def _keys_for(source: Path | None, fragment: bytes, s: Series) -> Keys | None:
    if source is not None:
        return compute_keys(tree_version(source), fragment, source)
    version = debian_version(s)
    return compute_keys(version, fragment) if version else None


def build_info(image: Path) -> dict[str, object] | None:
    """The build.json _store() wrote beside a cached kernel's bzImage, or None."""
    try:
        info = json.loads((image.parent / "build.json").read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def is_coverage_kernel(image: Path) -> bool:
    """Whether a cached kernel (its build.json) or a build tree's bzImage (the fragment
    _build() merged into that tree) is a --coverage build."""
    info = build_info(image)
    if info is not None:
        return bool(info.get("coverage"))
    builddir = image.parents[len(Path(IMAGE).parts) - 1]
    try:
        return COVERAGE_FRAGMENT.strip() in (builddir / FRAGMENT.name).read_bytes()
    except OSError:
        return False


def image_version(image: Path) -> str | None:
    """The kernel version of a bzImage: build.json's ``kernelversion`` beside a cached one, else the
    release at the start of the version string its x86 setup header points to (boot protocol
    >= 2.00: "HdrS" at 0x202, the string's offset - 0x200 at 0x20e), else None."""
    info = build_info(image)
    if info is not None and info.get("kernelversion"):
        return str(info["kernelversion"])
    try:
        with open(image, "rb") as f:
            head = f.read(0x10000)
    except OSError:
        return None
    if len(head) < 0x210 or head[0x202:0x206] != b"HdrS":
        return None
    start = int.from_bytes(head[0x20E:0x210], "little") + 0x200
    text = head[start:start + 256].split(b"\0", 1)[0].decode("ascii", "replace")
    return text.split(" ", 1)[0] or None


def describe_kernel(image: Path, how: str) -> str:
    """One line for the log: the image, its version and how it was chosen."""
    version = image_version(image)
    what = f"Linux {version}" if version else "version unknown"
    if (build_info(image) or {}).get("coverage"):
        what += ", gcov"
    return f"{image} ({what}; {how})"


def env_kernel(series: str | Series | None = None) -> Path | None:
    """The bzImage the series' ``$VFIO_CONFORMANCE_KERNEL[_X_Y]`` names, or None when it is unset."""
    s = get_series(series)
    env = os.environ.get(s.kernel_env)
    if not env:
        return None
    if not Path(env).is_file():
        raise KernelBuildError(f"${s.kernel_env}={env} is not a file")
    return Path(env)


def select_kernel(series: str | Series | None = None, *, coverage: bool = False,
                  build: bool = True) -> tuple[Path | None, str]:
    """The kernel a run uses when no image is named, and how it was chosen (for the log).

    The series' ``$VFIO_CONFORMANCE_KERNEL[_X_Y]`` (not for ``coverage``), else the cached build of
    the series' Debian source with the shipped fragment, looked up by its key, built on a miss when
    ``build`` (else None).  Never whatever else the cache holds.
    """
    s = get_series(series)
    env = None if coverage else env_kernel(s)
    if env is not None:
        return env, f"${s.kernel_env}"
    how = f"series {s.name}: the cached build of {s.package}" + (" with gcov" if coverage else "")
    if build:
        return ensure_kernel(coverage=coverage, series=s), how
    return cached_kernel(coverage=coverage, series=s), how


def cached_kernel(source: Path | None = None, fragment: Path | None = None, coverage: bool = False, *,
                  series: str | Series | None = None) -> Path | None:
    """The cached bzImage for these inputs, or None; never builds, installs, downloads or extracts."""
    keys = _keys_for(source, fragment_bytes(fragment, coverage), get_series(series))
    if keys is None:
        return None
    image = cache_root() / "kernels" / keys.cache / "bzImage"
    return image if image.is_file() else None


def ensure_kernel(source: Path | None = None, jobs: int | None = None, force: bool = False, *,
                  fragment: Path | None = None, coverage: bool = False,
                  series: str | Series | None = None) -> Path:
    """The path of a bzImage for ``source`` (default: the Debian source of ``series``, default 6.12)
    and the fragment.

    A cache hit returns at once; otherwise the kernel is configured, verified and built (about 15
    minutes cold on 2 cores; see docs/kernel.md).  ``force`` rebuilds (incrementally) even on a hit.
    Raises :class:`KernelBuildError` (or :class:`KernelConfigError`) with a message for the user.
    """
    s = get_series(series)
    if source is None and fragment is None and not coverage:
        env_image = env_kernel(s)
        if env_image is not None:
            return env_image
    if source is not None:
        source = Path(source).resolve()
    frag = fragment_bytes(fragment, coverage)
    keys = _keys_for(source, frag, s)
    if keys is not None and not force:
        image = cache_root() / "kernels" / keys.cache / "bzImage"
        if image.is_file():
            return image
        if source is None and _adoptable(cache_root() / "build" / keys.build, frag):
            print(f"[kernel] adopting the finished build in {cache_root() / 'build' / keys.build}", file=sys.stderr)
            return _adopt(keys, cache_root() / "build" / keys.build)
    if source is None:
        srctree = debian_source(s)
        keys = compute_keys(tree_version(srctree), frag)
        kind = f"debian {s.package} from {s.suite} ({s.tarball()})"
    else:
        srctree = source
        kind = "tree"
        assert keys is not None
    ensure_prereqs()
    builddir = cache_root() / "build" / keys.build
    with _locked(cache_root() / "build" / f"{keys.build}.lock", f"another build in {builddir}"):
        image = cache_root() / "kernels" / keys.cache / "bzImage"
        if image.is_file() and not force:
            return image                      # built by whoever held the lock
        log = builddir / "build.log"
        if log.is_file() and _log_status(log) is None and time.time() - log.stat().st_mtime < 120:
            raise KernelBuildError(f"{log} is being written by a build this tool did not start; "
                                   "wait for it to end with 'exit N', then run again")
        return _build(keys, srctree, kind, builddir, frag, jobs or default_jobs(), coverage, force)
