"""fs/eventfd.c, enough for VFIO interrupt triggers."""

from __future__ import annotations

import errno

from .errors import Errno, cite
from .kernel import File, ModelKernel


class EventFd(File):
    kind = "eventfd"

    def __init__(self, count: int = 0):
        self.count = count

    def signal(self, n: int = 1) -> None:
        self.count += n

    def read(self, k: ModelKernel, length: int) -> bytes:
        if length < 8:
            raise Errno(errno.EINVAL, cite("fs/eventfd.c", 221))
        if self.count == 0:
            raise Errno(errno.EAGAIN, cite("fs/eventfd.c", 227))  # the harness opens eventfds non-blocking
        value, self.count = self.count, 0
        return value.to_bytes(8, "little")

    def write(self, k: ModelKernel, data: bytes) -> int:
        if len(data) < 8:
            raise Errno(errno.EINVAL, cite("fs/eventfd.c", 255))
        value = int.from_bytes(data[:8], "little")
        if value == 0xFFFF_FFFF_FFFF_FFFF:
            raise Errno(errno.EINVAL, cite("fs/eventfd.c", 259))
        self.count += value
        return 8
