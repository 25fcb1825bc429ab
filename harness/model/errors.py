"""How the model fails a syscall: raise ``Errno`` with the kernel line it mirrors."""

from __future__ import annotations

import errno as _errno


class Errno(Exception):
    """A syscall failure.  ``where`` is the 6.12 source line the model mirrors."""

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
