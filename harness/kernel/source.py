"""Find a Linux 6.12 source tree, or the few files of one the harness reads.

In order: ``$VFIO_CONFORMANCE_KSRC`` (a source tree), the cache
``~/.cache/vfio-conformance/linux-source-6.12/`` (files extracted earlier), else the files
are extracted from Debian's ``/usr/src/linux-source-6.12.tar.xz`` into that cache.  Each
file is extracted to a temporary directory and renamed into place, so concurrent test
workers never see a partial file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

VERSION = "6.12"
ENV = "VFIO_CONFORMANCE_KSRC"
TARBALL = Path(f"/usr/src/linux-source-{VERSION}.tar.xz")

UAPI_HEADERS = (
    "include/uapi/linux/vfio.h",
    "include/uapi/linux/iommufd.h",
    "drivers/iommu/iommufd/iommufd_test.h",
)


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vfio-conformance" / f"linux-source-{VERSION}"


def _missing(root: Path, files: Iterable[str]) -> list[str]:
    return [f for f in files if not (root / f).is_file()]


def _extract(tarball: Path, dest: Path, files: list[str]) -> None:
    top = f"linux-source-{VERSION}"
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".extract-") as tmp:
        subprocess.run(
            ["tar", "-xJf", str(tarball), "-C", tmp, *(f"{top}/{f}" for f in files)],
            check=True, capture_output=True,
        )
        for f in files:
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            os.replace(Path(tmp, top, f), dest / f)


def find_source(files: Iterable[str] = UAPI_HEADERS) -> Path | None:
    """A directory holding every one of ``files`` (paths relative to the tree's top), or None.

    ``$VFIO_CONFORMANCE_KSRC`` set to a directory that lacks one of them is an error.
    """
    wanted = list(files)
    env = os.environ.get(ENV)
    if env:
        missing = _missing(Path(env), wanted)
        if missing:
            raise FileNotFoundError(f"${ENV}={env} has no {', '.join(missing)}")
        return Path(env)
    cache = cache_dir()
    missing = _missing(cache, wanted)
    if not missing:
        return cache
    if not TARBALL.is_file() or shutil.which("tar") is None:
        return None
    try:
        _extract(TARBALL, cache, missing)
    except (OSError, subprocess.CalledProcessError):
        return None
    return cache if not _missing(cache, wanted) else None


def find_uapi_headers() -> Path | None:
    """A directory with include/uapi/linux/{vfio,iommufd}.h and drivers/iommu/iommufd/iommufd_test.h."""
    return find_source(UAPI_HEADERS)
