"""Find a Linux source tree of a kernel series, or the few files of one the harness reads.

For ``series`` (default 6.12; the table is harness/kernel/series.py), in order:

1. the series' own variable, a source tree: ``$VFIO_CONFORMANCE_KSRC`` for the default series,
   ``$VFIO_CONFORMANCE_KSRC_7_2`` for 7.2 (so a 6.12 tree named for the layout test is never
   taken for 7.2); a tree there that lacks one of the files is an error;
2. the kernel build's extraction of the series' tarball, ``<cache>/src/linux-source-<series>/``,
   if it holds every file (``vfio-conformance kernel build --series 7.2`` puts 7.2's there);
3. ``<cache>/linux-source-<series>/``, single files extracted earlier, else the missing files are
   extracted there from the series' tarball (``/usr/src/linux-source-6.12.tar.xz``, or the cache's
   download of ``linux-source-7.2``).  Each file is extracted to a temporary directory and renamed
   into place, so concurrent test workers never see a partial file.

Nothing here installs or downloads a package: without a tree or tarball the answer is None.
``<cache>`` is harness.kernel.cache.cache_root().
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

from .series import DEFAULT_SERIES, KSRC_ENV, get_series

VERSION = DEFAULT_SERIES
ENV = KSRC_ENV

UAPI_HEADERS = (
    "include/uapi/linux/vfio.h",
    "include/uapi/linux/iommufd.h",
    "drivers/iommu/iommufd/iommufd_test.h",
)


def cache_dir(series: str | None = None) -> Path:
    """Where single files of the series' tarball are extracted (``<cache>/linux-source-<series>``)."""
    return get_series(series).files_dir()


def _missing(root: Path, files: Iterable[str]) -> list[str]:
    return [f for f in files if not (root / f).is_file()]


def _extract(tarball: Path, top: str, dest: Path, files: list[str]) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".extract-") as tmp:
        subprocess.run(
            ["tar", "-xJf", str(tarball), "-C", tmp, *(f"{top}/{f}" for f in files)],
            check=True, capture_output=True,
        )
        for f in files:
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            os.replace(Path(tmp, top, f), dest / f)


def find_source(files: Iterable[str] = UAPI_HEADERS, series: str | None = None) -> Path | None:
    """A directory of the series' source holding every one of ``files`` (paths relative to the
    tree's top), or None.

    The series' ``$VFIO_CONFORMANCE_KSRC[_X_Y]`` set to a directory that lacks one of them is an error.
    """
    s = get_series(series)
    wanted = list(files)
    env = os.environ.get(s.ksrc_env)
    if env:
        missing = _missing(Path(env), wanted)
        if missing:
            raise FileNotFoundError(f"${s.ksrc_env}={env} has no {', '.join(missing)}")
        return Path(env)
    for root in (s.src_dir(), s.files_dir()):
        if not _missing(root, wanted):
            return root
    cache = s.files_dir()
    tarball = s.tarball()
    if not tarball.is_file() or shutil.which("tar") is None:
        return None
    try:
        _extract(tarball, s.package, cache, _missing(cache, wanted))
    except (OSError, subprocess.CalledProcessError):
        return None
    return cache if not _missing(cache, wanted) else None


def find_uapi_headers(series: str | None = None) -> Path | None:
    """A directory with include/uapi/linux/{vfio,iommufd}.h and drivers/iommu/iommufd/iommufd_test.h."""
    return find_source(UAPI_HEADERS, series)
