"""fs/eventfd.c, enough for VFIO interrupt triggers and virqfds."""

from __future__ import annotations

import errno
from collections.abc import Callable

from .errors import Errno, cite
from .kernel import File, ModelKernel

# include/uapi/linux/eventpoll.h: the poll keys an eventfd wakes its wait queue with.
EPOLLIN = 0x001
EPOLLHUP = 0x010


class EventFd(File):
    kind = "eventfd"

    def __init__(self, count: int = 0):
        self.count = count
        # ctx->wqh: the poll callbacks queued on the eventfd (a virqfd's virqfd_wakeup()).
        self.wqh: list[Callable[[EventFd, int], None]] = []

    def _wake_up(self, key: int) -> None:
        for wakeup in list(self.wqh):
            wakeup(self, key)

    def signal(self, n: int = 1) -> None:
        """eventfd_signal_mask() (:56-76): the count grows, then an EPOLLIN wake-up."""
        self.count += n
        self._wake_up(EPOLLIN)

    def do_read(self) -> int:
        """eventfd_ctx_do_read() (:176-181), not a semaphore eventfd: the whole count."""
        value, self.count = self.count, 0
        return value

    def read(self, k: ModelKernel, length: int) -> bytes:
        if length < 8:
            raise Errno(errno.EINVAL, cite("fs/eventfd.c", 221))
        if self.count == 0:
            raise Errno(errno.EAGAIN, cite("fs/eventfd.c", 227))  # the harness opens eventfds non-blocking
        return self.do_read().to_bytes(8, "little")

    def write(self, k: ModelKernel, data: bytes) -> int:
        if len(data) < 8:
            raise Errno(errno.EINVAL, cite("fs/eventfd.c", 255))
        value = int.from_bytes(data[:8], "little")
        if value == 0xFFFF_FFFF_FFFF_FFFF:
            raise Errno(errno.EINVAL, cite("fs/eventfd.c", 259))
        self.count += value
        if value:
            self._wake_up(EPOLLIN)  # :272-274, under the wait queue's lock
        return 8

    def release(self, k: ModelKernel) -> None:
        """eventfd_release() (:109-113): the last close wakes the waiters with EPOLLHUP; an
        eventfd_ctx reference a driver holds keeps the counter, not the file."""
        self._wake_up(EPOLLHUP)


def eventfd_ctx_fdget(k: ModelKernel, fd: int, badf: str = "fs/eventfd.c:352",
                      inval: str = "fs/eventfd.c:371") -> EventFd:
    """fs/eventfd.c:347-375: EBADF for a closed fd, EINVAL for a file that is no
    eventfd (vfio_virqfd_enable() does the same at other lines)."""
    f = k.files.get(fd)
    if f is None:
        raise Errno(errno.EBADF, badf)
    if not isinstance(f, EventFd):
        raise Errno(errno.EINVAL, inval)
    return f
