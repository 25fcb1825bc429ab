"""The kernel series the suite builds and reads, declared once.

Per series: the Debian package carrying its source tarball, the Debian suite that package comes
from, and how it is obtained:

- ``install``: from the machine's own apt sources, ``apt-get install`` into ``/usr/src`` (root).
- ``download``: from ``suite`` into the cache, without touching the machine's apt configuration,
  lists or installed packages: apt-get reads a one-line sources file and keeps its lists (and
  package cache) in ``<cache>/apt/<suite>/``; ``apt-get download`` fetches the .deb into a folder of
  the cache and ``dpkg-deb -x`` unpacks it into ``<cache>/deb/<package>/``, where the tarball is
  ``usr/src/<package>.tar.xz``.

Either way the tarball (top directory ``<package>/``) is then extracted once into
``<cache>/src/<package>/`` by :func:`harness.kernel.source.debian_source`: the one tree of the
series that the build and the harness's readers share.

A series' environment variables: ``$VFIO_CONFORMANCE_KERNEL`` and ``$VFIO_CONFORMANCE_KSRC`` name a
bzImage and a source tree for the default series; another series has its own, with its name's dots
as underscores (``$VFIO_CONFORMANCE_KERNEL_7_2``, ``$VFIO_CONFORMANCE_KSRC_7_2``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..cache_root import cache_root

DEBIAN_MIRROR = "http://deb.debian.org/debian"
DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")

INSTALL = "install"
DOWNLOAD = "download"

KERNEL_ENV = "VFIO_CONFORMANCE_KERNEL"
KSRC_ENV = "VFIO_CONFORMANCE_KSRC"

# The .deb apt-get download fetched, recorded beside what dpkg-deb unpacked (its version names the
# kernel before the tarball is extracted).
DEB_STAMP = ".deb"


class FetchError(RuntimeError):
    """The series' source package could not be downloaded or unpacked."""


@dataclass(frozen=True)
class Series:
    name: str          # "6.12"
    package: str       # the Debian binary package with the source tarball
    suite: str         # the Debian suite it comes from
    obtain: str        # INSTALL or DOWNLOAD

    @property
    def is_default(self) -> bool:
        return self.name == DEFAULT_SERIES

    def _env(self, base: str) -> str:
        return base if self.is_default else f"{base}_{self.name.replace('.', '_')}"

    @property
    def kernel_env(self) -> str:
        """The variable naming a bzImage to use for this series instead of the cached build."""
        return self._env(KERNEL_ENV)

    @property
    def ksrc_env(self) -> str:
        """The variable naming a source tree of this series for the files the harness reads."""
        return self._env(KSRC_ENV)

    def tarball(self) -> Path:
        """Where the source tarball is once the package is there (installed, or downloaded and unpacked)."""
        if self.obtain == INSTALL:
            return Path("/usr/src") / f"{self.package}.tar.xz"
        return self.deb_root() / "usr" / "src" / f"{self.package}.tar.xz"

    def src_dir(self) -> Path:
        """The tarball, extracted once: the kernel build's source and every reader's (harness.kernel.source)."""
        return cache_root() / "src" / self.package

    def deb_root(self) -> Path:
        """What ``dpkg-deb -x`` unpacked (DOWNLOAD series)."""
        return cache_root() / "deb" / self.package

    def apt_dir(self) -> Path:
        """The sources file, lists and package cache of apt-get for this series' suite."""
        return cache_root() / "apt" / self.suite


DEFAULT_SERIES = "6.12"
SERIES: dict[str, Series] = {s.name: s for s in (
    Series("6.12", "linux-source-6.12", "bookworm-security", INSTALL),
    Series("7.2", "linux-source-7.2", "unstable", DOWNLOAD),
)}


def get_series(name: str | None = None) -> Series:
    """The series called ``name`` (None: the default)."""
    try:
        return SERIES[name or DEFAULT_SERIES]
    except KeyError:
        raise ValueError(f"unknown kernel series {name!r} (known: {', '.join(SERIES)})") from None


# --------------------------------------------------------------------------------------------------
# DOWNLOAD: apt-get pointed at the cache


def sources_line(suite: str, mirror: str = DEBIAN_MIRROR, keyring: Path = DEBIAN_KEYRING) -> str:
    return f"deb [signed-by={keyring}] {mirror} {suite} main"


def apt_options(apt_dir: Path) -> list[str]:
    """apt-get options that replace the machine's sources, lists and package cache by ``apt_dir``'s."""
    return ["-o", f"Dir::Etc::sourcelist={apt_dir / 'sources.list'}", "-o", "Dir::Etc::sourceparts=-",
            "-o", f"Dir::State::Lists={apt_dir / 'lists'}", "-o", f"Dir::Cache={apt_dir / 'cache'}"]


def update_command(apt_dir: Path) -> list[str]:
    return ["apt-get", "-q", *apt_options(apt_dir), "update"]


def download_command(apt_dir: Path, package: str) -> list[str]:
    """Run in the folder the .deb should land in."""
    return ["apt-get", "-q", *apt_options(apt_dir), "download", package]


def unpack_command(deb: Path, dest: Path) -> list[str]:
    return ["dpkg-deb", "-x", str(deb), str(dest)]


def deb_version(series: Series) -> str | None:
    """The Debian version of the downloaded package (``7.2.13-1``), or None before a download."""
    try:
        name = (series.deb_root() / DEB_STAMP).read_text().strip()
    except OSError:
        return None
    m = re.fullmatch(rf"{re.escape(series.package)}_([^_]+)_[^_]+\.deb", name)
    return m.group(1) if m else None


def _run(cmd: list[str], cwd: Path | None = None) -> None:
    try:
        r = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           stdin=subprocess.DEVNULL, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    except OSError as e:
        raise FetchError(f"{cmd[0]}: {e}") from e
    if r.returncode:
        tail = "\n".join(r.stdout.splitlines()[-20:])
        raise FetchError(f"{' '.join(cmd)} failed ({r.returncode}):\n{tail}")


def download(series: Series, line: str | None = None) -> Path:
    """Fetch ``series.package`` from its suite into the cache and unpack it; returns the tarball.

    ``line`` replaces the sources line (tests point it at a local repository).  The caller holds
    the series' lock (source.debian_source).  ``deb_root()`` is replaced as a whole, by a rename.
    """
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise FetchError(f"fetching {series.package} needs {tool} (Debian's apt and dpkg)")
    apt = series.apt_dir()
    (apt / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (apt / "cache").mkdir(parents=True, exist_ok=True)
    (apt / "sources.list").write_text((line or sources_line(series.suite)) + "\n")
    dest = series.deb_root()
    dest.parent.mkdir(parents=True, exist_ok=True)
    print(f"[kernel] fetching {series.package} from Debian {series.suite} into {dest.parent} "
          "(apt-get update and download with the cache's own sources and lists)", file=sys.stderr)
    _run(update_command(apt))
    tmp = Path(tempfile.mkdtemp(prefix=f".{series.package}.", dir=dest.parent))
    try:
        _run(download_command(apt, series.package), cwd=tmp)
        debs = sorted(tmp.glob(f"{series.package}_*.deb"))
        if len(debs) != 1:
            raise FetchError(f"apt-get download {series.package} left {[d.name for d in debs]} in {tmp}")
        root = tmp / "root"
        _run(unpack_command(debs[0], root))
        tarball = root / series.tarball().relative_to(dest)
        if not tarball.is_file():
            raise FetchError(f"{debs[0].name} has no {tarball.relative_to(root)}")
        (root / DEB_STAMP).write_text(debs[0].name + "\n")
        if dest.exists():
            old = dest.parent / f".{series.package}.old-{os.getpid()}"
            os.rename(dest, old)
            shutil.rmtree(old, ignore_errors=True)
        os.rename(root, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return series.tarball()
