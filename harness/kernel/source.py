"""The Linux source tree of a kernel series: one extraction of its tarball, shared by everyone.

For each series (harness/kernel/series.py) the cache holds one tree, ``<cache>/src/<package>/``:
the series' tarball extracted once, with a ``.tarball`` stamp (size and mtime of the tarball it
came from).  A tree without the stamp of the tarball at hand (an older package, or extracted by
hand) is replaced by a fresh extraction.  The kernel build (:func:`debian_source`, which also
installs or downloads the package when its tarball is missing), the coverage matrix, the C layout
test and the KUnit parser test (:func:`find_source`, which never installs or downloads) all read
that same tree.  ``<cache>`` is harness.cache_root.cache_root().

:func:`find_source` looks, in order, at:

1. the series' own variable, a source tree: ``$VFIO_CONFORMANCE_KSRC`` for the default series,
   ``$VFIO_CONFORMANCE_KSRC_7_2`` for 7.2 (so a 6.12 tree named for the layout test is never
   taken for 7.2); a tree there that lacks one of the files is an error;
2. the cache's tree of the series, extracted first if the series' tarball is there
   (``/usr/src/linux-source-6.12.tar.xz``, or the cache's download of ``linux-source-7.2``) and
   the tree is missing or stale; without a tarball, the tree as it is.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

from . import series as _series
from .apt import apt_install
from .errors import KernelBuildError
from .lock import locked
from .series import DEFAULT_SERIES, INSTALL, KSRC_ENV, FetchError, Series

VERSION = DEFAULT_SERIES
ENV = KSRC_ENV

UAPI_HEADERS = (
    "include/uapi/linux/vfio.h",
    "include/uapi/linux/iommufd.h",
    "drivers/iommu/iommufd/iommufd_test.h",
)

TARBALL_STAMP = ".tarball"


def get_series(series: str | Series | None = None) -> Series:
    """A series of harness/kernel/series.py by name (None: the default, 6.12)."""
    if isinstance(series, Series):
        return series
    try:
        return _series.get_series(series)
    except ValueError as e:
        raise KernelBuildError(str(e)) from None


# --------------------------------------------------------------------------------------------------
# Versions


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


def _tarball_id(tarball: Path) -> str:
    st = tarball.stat()
    return f"{st.st_size} {st.st_mtime_ns}"


def _extracted(s: Series, tarball: Path) -> Path | None:
    """The cache's tree of the series, if it is there and from this very tarball."""
    dest = s.src_dir()
    try:
        if tarball.is_file() and (dest / TARBALL_STAMP).read_text().strip() == _tarball_id(tarball):
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


# --------------------------------------------------------------------------------------------------
# The one extraction


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


def _extract(s: Series, tarball: Path, dest: Path) -> None:
    print(f"[kernel] extracting {tarball} into {dest.parent} (once; about 1.5 GB"
          + ("; replacing a tree without this tarball's stamp" if dest.exists() else "") + ")", file=sys.stderr)
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest.parent))
    try:
        subprocess.run(["tar", "-xJf", str(tarball), "-C", str(tmp)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        (tmp / s.package / TARBALL_STAMP).write_text(_tarball_id(tarball) + "\n")
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


def debian_source(series: str | Series | None = None, *, tarball: Path | None = None,
                  fetch: bool = True) -> Path:
    """The series' tree, ``<cache>/src/<package>/``, extracted from its tarball unless the stamp says
    it already was.  A missing tarball is installed or downloaded first when ``fetch``, else an error
    (as is a missing xz then).  ``tarball`` replaces the series' (tests)."""
    s = get_series(series)
    tarball = tarball or s.tarball()
    dest = s.src_dir()
    dest.parent.mkdir(parents=True, exist_ok=True)
    with locked(dest.parent / f".{s.package}.lock", f"another fetch or extraction of {s.package}"):
        if not tarball.is_file():
            if not fetch:
                raise KernelBuildError(f"no {tarball} to extract {s.package} from")
            _obtain(s, tarball)
        if _extracted(s, tarball):
            return dest
        if shutil.which("xz") is None:
            if not fetch:
                raise KernelBuildError(f"extracting {tarball} needs xz (Debian package xz-utils)")
            apt_install(["xz-utils"], f"extracting {tarball}")
        _extract(s, tarball, dest)
    return dest


# --------------------------------------------------------------------------------------------------
# Files the harness reads


def _missing(root: Path, files: Iterable[str]) -> list[str]:
    return [f for f in files if not (root / f).is_file()]


def find_source(files: Iterable[str] = UAPI_HEADERS, series: str | None = None) -> Path | None:
    """A source tree of the series holding every one of ``files`` (paths relative to the tree's top),
    or None.  Never installs or downloads; may extract the series' tarball, once, into the cache.

    The series' ``$VFIO_CONFORMANCE_KSRC[_X_Y]`` set to a directory that lacks one of them is an error.
    """
    s = _series.get_series(series)
    wanted = list(files)
    env = os.environ.get(s.ksrc_env)
    if env:
        missing = _missing(Path(env), wanted)
        if missing:
            raise FileNotFoundError(f"${s.ksrc_env}={env} has no {', '.join(missing)}")
        return Path(env)
    tree = s.src_dir()
    if s.tarball().is_file():
        try:
            tree = debian_source(s, fetch=False)
        except (KernelBuildError, OSError) as e:
            print(f"[kernel] {e}", file=sys.stderr)
    return tree if not _missing(tree, wanted) else None
