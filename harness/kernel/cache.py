"""The cache of built kernels: keys, lookup, storing a build, adopting a finished build directory.

Under the cache root (harness/cache_root.py)::

    build/<build key>/      the O= build directory (kept: incremental rebuilds, gcov notes), build.log
    build/<build key>.lock  held while a build of that key runs
    kernels/<key>/          bzImage, config, build.json: written once, atomically

``key = f"{kernelversion}-{sha256(fragment bytes)[:12]}"`` for a series' Debian source.  A ``source=``
tree adds ``-<sha256(resolved path)[:8]>`` to the build key (one build directory per tree, so an
edit rebuilds incrementally) and ``-<state>`` to the key, where state hashes the newest mtime and
the number of files in the tree (``.git`` excluded): any edit, checkout or patch gives a new key.
The keys are the names of kernels already built: changing how they are computed throws those
builds away (tests/test_kernel_build.py pins them).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..cache_root import cache_root
from . import make as _make
from . import source as _source
from .kconfig import fragment_bytes, verify_config
from .make import IMAGE, log_status
from .series import Series


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


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
    return sha256(f"{newest} {count}".encode())[:8]


@dataclass(frozen=True)
class Keys:
    version: str
    fragment_sha: str          # full sha256 of fragment_bytes()
    build: str                 # build/<build>
    cache: str                 # kernels/<cache>


def compute_keys(version: str, fragment: bytes, source: Path | None = None) -> Keys:
    """Keys for the Debian source (``source=None``) or for a user's tree."""
    sha = sha256(fragment)
    build = f"{version}-{sha[:12]}"
    if source is None:
        return Keys(version, sha, build, build)
    build += "-" + sha256(str(Path(source).resolve()).encode())[:8]
    return Keys(version, sha, build, f"{build}-{tree_state(Path(source))}")


def keys_for(source: Path | None, fragment: bytes, s: Series) -> Keys | None:
    """The keys of a tree, or of the series' Debian source (None while its tarball is not there)."""
    if source is not None:
        return compute_keys(_source.tree_version(source), fragment, source)
    version = _source.debian_version(s)
    return compute_keys(version, fragment) if version else None


def kernels_dir() -> Path:
    return cache_root() / "kernels"


def build_dir(keys: Keys) -> Path:
    return cache_root() / "build" / keys.build


def build_lock(keys: Keys) -> Path:
    return cache_root() / "build" / f"{keys.build}.lock"


def image_path(keys: Keys) -> Path:
    return kernels_dir() / keys.cache / "bzImage"


def cached_kernel(source: Path | None = None, fragment: Path | None = None, coverage: bool = False, *,
                  sanitizers: bool = False, series: str | Series | None = None) -> Path | None:
    """The cached bzImage for these inputs, or None; never builds, installs, downloads or extracts."""
    keys = keys_for(source, fragment_bytes(fragment, coverage, sanitizers), _source.get_series(series))
    if keys is None:
        return None
    image = image_path(keys)
    return image if image.is_file() else None


def store(keys: Keys, builddir: Path, info: dict[str, object], force: bool) -> Path:
    """Copy bzImage and .config into kernels/<key>/ with build.json, atomically (rename of a full dir)."""
    kernels = kernels_dir()
    kernels.mkdir(parents=True, exist_ok=True)
    final = kernels / keys.cache
    tmp = Path(tempfile.mkdtemp(prefix=f".{keys.cache}.", dir=kernels))
    try:
        tmp.chmod(0o755)                   # mkdtemp's 0700 would hide the kernel from other users
        shutil.copy2(builddir / IMAGE, tmp / "bzImage")
        shutil.copy2(builddir / ".config", tmp / "config")
        image = (tmp / "bzImage").read_bytes()
        info = {**info, "key": keys.cache, "kernelversion": keys.version, "fragment_sha256": keys.fragment_sha,
                "build_dir": str(builddir), "bzimage_bytes": len(image), "bzimage_sha256": sha256(image)}
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


# --------------------------------------------------------------------------------------------------
# A finished build directory without its cache entry (built by hand, or killed after make)


def adoptable(builddir: Path, fragment: bytes) -> bool:
    if log_status(builddir / "build.log") != "exit 0" or not (builddir / IMAGE).is_file():
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


def adopt(keys: Keys, builddir: Path) -> Path:
    log = builddir / "build.log"
    src = builddir / "source"
    info: dict[str, object] = {
        "source": os.path.realpath(src) if src.is_symlink() else "unknown",
        "source_kind": "adopted build directory",
        "date": _dt.datetime.fromtimestamp(log.stat().st_mtime, _dt.timezone.utc).isoformat(timespec="seconds"),
        "gcc": _make.gcc_version(),
        **_time_v(log.read_text(errors="replace")),
    }
    return store(keys, builddir, info, force=False)
