"""How the model fails a syscall: raise ``Errno`` with the kernel line it mirrors, named by ``cite``."""

from __future__ import annotations

import errno as _errno

SERIES = "6.12"  # the series a citation names when it names none


def cite(path: str, line: int | str, series: str = SERIES) -> str:
    """The kernel line (or range, "187-189") an errno comes from, in the tree of ``series``:
    ``drivers/vfio/group.c:418`` for 6.12, ``drivers/vfio/vfio_iommu_type1.c:1702@7.2`` for a newer
    series.  tests/test_citations.py opens every ``Errno(errno.X, cite(...))`` of the model in its
    tree and checks the line says X."""
    return f"{path}:{line}" if series == SERIES else f"{path}:{line}@{series}"


class Errno(Exception):
    """A syscall failure.  ``where`` is the kernel line the model mirrors (see ``cite``)."""

    def __init__(self, code: int, where: str = ""):
        name = _errno.errorcode.get(code, str(code))
        super().__init__(f"{name} ({where})" if where else name)
        self.code = code
        self.where = where

    @property
    def name(self) -> str:
        return _errno.errorcode.get(self.code, str(self.code))


# include/linux/errno.h: kernel-internal codes and what userspace sees.
ENOIOCTLCMD = 515  # fs/ioctl.c:52-53 turns it into ENOTTY


def userspace_errno(code: int) -> int:
    return _errno.ENOTTY if code == ENOIOCTLCMD else code
