"""Build (or find in the cache) the x86_64 test kernel the suite boots in QEMU.

One entry point, :func:`ensure_kernel`, used by ``vfio-conformance kernel build``, the VM runner and CI.
It returns the path of a ``bzImage`` built from

- a Linux source tree: ``source=`` (a user's tree, e.g. to validate a patch), else the tree of a
  kernel series (``series=``, default 6.12): its Debian tarball, extracted once into the cache
  (harness/kernel/source.py; installing or downloading the package first: series.py);
- a config: the fragment merged over ``x86_64_defconfig`` and verified (harness/kernel/kconfig.py);

by make in an O= build directory (harness/kernel/make.py), stored in the cache under a key of its
inputs (harness/kernel/cache.py).  A build directory of the Debian key that finished but has no
cache entry is adopted without running make.  The series' ``$VFIO_CONFORMANCE_KERNEL`` (``..._7_2``
for 7.2; a bzImage) short-circuits all of this when no source is given; :func:`select_kernel` is
the one rule for which kernel a run uses when none is named.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from . import cache, make
from .cache import cached_kernel as cached_kernel
from .errors import KernelBuildError as KernelBuildError
from .image import describe_kernel as describe_kernel
from .kconfig import fragment_bytes
from .lock import locked
from .series import Series
from .source import debian_source, get_series, tree_version


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


def ensure_kernel(source: Path | None = None, jobs: int | None = None, force: bool = False, *,
                  fragment: Path | None = None, coverage: bool = False, sanitizers: bool = False,
                  series: str | Series | None = None) -> Path:
    """The path of a bzImage for ``source`` (default: the Debian source of ``series``, default 6.12)
    and the fragment.

    A cache hit returns at once; otherwise the kernel is configured, verified and built (about 15
    minutes cold on 2 cores; see docs/kernel.md).  ``force`` rebuilds (incrementally) even on a hit.
    Raises :class:`KernelBuildError` (or :class:`kconfig.KernelConfigError`) with a message for the user.
    """
    s = get_series(series)
    if source is None and fragment is None and not coverage and not sanitizers:
        env_image = env_kernel(s)
        if env_image is not None:
            return env_image
    if source is not None:
        source = Path(source).resolve()
    frag = fragment_bytes(fragment, coverage, sanitizers)
    keys = cache.keys_for(source, frag, s)
    if keys is not None and not force:
        image = cache.image_path(keys)
        if image.is_file():
            return image
        if source is None and cache.adoptable(cache.build_dir(keys), frag):
            print(f"[kernel] adopting the finished build in {cache.build_dir(keys)}", file=sys.stderr)
            return cache.adopt(keys, cache.build_dir(keys))
    if source is None:
        srctree = debian_source(s)
        keys = cache.compute_keys(tree_version(srctree), frag)
        kind = f"debian {s.package} from {s.suite} ({s.tarball()})"
    else:
        srctree = source
        kind = "tree"
        assert keys is not None
    make.ensure_prereqs()
    builddir = cache.build_dir(keys)
    with locked(cache.build_lock(keys), f"another build in {builddir}"):
        image = cache.image_path(keys)
        if image.is_file() and not force:
            return image                      # built by whoever held the lock
        log = builddir / "build.log"
        if log.is_file() and make.log_status(log) is None and time.time() - log.stat().st_mtime < 120:
            raise KernelBuildError(f"{log} is being written by a build this tool did not start; "
                                   "wait for it to end with 'exit N', then run again")
        start = time.monotonic()
        info = make.make_kernel(srctree, builddir, frag, jobs=jobs or make.default_jobs(), coverage=coverage,
                                sanitizers=sanitizers, what=f"{keys.version} ({keys.cache})")
        path = cache.store(keys, builddir, {"source": str(srctree), "source_kind": kind, **info}, force=True)
        print(f"[kernel] built in {make.fmt_elapsed(time.monotonic() - start)}: {path}", file=sys.stderr)
        return path
