"""Installing a Debian package the kernel build needs (a build tool, the 6.12 source package)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence

from .errors import KernelBuildError

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
            tail = "\n".join(r.stdout.splitlines()[-40:])
            raise KernelBuildError(f"{' '.join(step)} failed ({r.returncode}):\n{tail}")
        if step[1] == "update":
            _apt_updated = True
