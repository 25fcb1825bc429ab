"""drivers/vfio/virqfd.c: an eventfd whose signal runs a handler in the kernel (the INTx unmask
eventfd, ioeventfds).  The driver's slot for it (``struct virqfd **pvirqfd``) is an attribute of
an owner object: ``IrqCtx.unmask``, ``VfioPciIoeventfd.virqfd``."""

from __future__ import annotations

import errno
from collections.abc import Callable

from ..errors import Errno, cite
from ..eventfd import EPOLLHUP, EPOLLIN, EventFd, eventfd_ctx_fdget
from ..kernel import ModelKernel

VIRQFD_C = "drivers/vfio/virqfd.c"


class Virqfd:
    """struct virqfd: ``handler`` runs in the eventfd's wake-up and answers whether ``thread``
    must run too (the kernel schedules it as work, the model runs it at once)."""

    def __init__(self, eventfd: EventFd, handler: Callable[[], bool], thread: Callable[[], None] | None,
                 owner: object, slot: str):
        self.eventfd = eventfd
        self.handler = handler
        self.thread = thread
        self.owner = owner
        self.slot = slot

    def _run(self) -> None:
        if self.handler() and self.thread is not None:
            self.thread()

    def wakeup(self, efd: EventFd, key: int) -> None:
        """virqfd_wakeup() (:40-76)."""
        if key & EPOLLIN:
            efd.do_read()  # :47: the virqfd consumes the count, so user space reads nothing
            self._run()
        if key & EPOLLHUP and getattr(self.owner, self.slot) is self:
            # :56-72: the eventfd is closing; the driver's slot empties, so a new eventfd
            # can take it without an explicit removal.
            setattr(self.owner, self.slot, None)
            self.deactivate()

    def deactivate(self) -> None:
        """virqfd_deactivate() -> virqfd_shutdown() (:34-38,84-95): off the eventfd's wait queue."""
        if self.wakeup in self.eventfd.wqh:
            self.eventfd.wqh.remove(self.wakeup)


def vfio_virqfd_enable(k: ModelKernel, fd: int, handler: Callable[[], bool],
                       thread: Callable[[], None] | None, owner: object, slot: str) -> None:
    """:111-200."""
    efd = eventfd_ctx_fdget(k, fd, cite(VIRQFD_C, 138), cite("fs/eventfd.c", 371))
    if getattr(owner, slot) is not None:
        raise Errno(errno.EBUSY, cite(VIRQFD_C, 160))
    virqfd = Virqfd(efd, handler, thread, owner, slot)
    setattr(owner, slot, virqfd)
    efd.wqh.append(virqfd.wakeup)
    if efd.count:
        # :179-182: an event already pending runs the handler once, but nothing reads the
        # count: it stays for user space (or the next wake-up) to consume.
        virqfd._run()


def vfio_virqfd_disable(owner: object, slot: str) -> None:
    """:203-223."""
    virqfd = getattr(owner, slot)
    if virqfd is not None:
        virqfd.deactivate()
        setattr(owner, slot, None)
