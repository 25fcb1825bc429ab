"""drivers/iommu/iommufd/eventq.c (7.2): the vEVENTQ object and its fd (read() of
struct iommufd_vevent_header records, each followed by the event's data), fed by the driver
through iommufd_viommu_report_event() (driver.c).  The fault queue, the other half of
eventq.c, is in ``fault``.  Every citation is a 7.2 line.
"""

from __future__ import annotations

import ctypes
import errno
from typing import TYPE_CHECKING, Any

from ...uapi import iommufd as u
from ..errors import Errno, cite
from ..kernel import File
from .fault import eventq_respond_with_fd
from .private import DRIVER_C, EVENTQ_C, IommufdObject, Ucmd
from .viommu import IOMMUFD_OBJ_VEVENTQ, IommufdViommu, iommufd_get_viommu

if TYPE_CHECKING:
    from ..kernel import ModelKernel
    from .main import IommufdCtx

HDR_SIZE = ctypes.sizeof(u.iommufd_vevent_header)
# eventq.c:502@7.2
VEVENTQ_MAX_DEPTH = 1 << 19
INT_MAX = (1 << 31) - 1


class Vevent:
    """struct iommufd_vevent (iommufd_private.h:602-607@7.2); ``lost`` marks the queue's
    lost_events_header (IOMMU_VEVENTQ_FLAG_LOST_EVENTS, no data)."""

    __slots__ = ("data", "lost", "sequence")

    def __init__(self, data: bytes, lost: bool = False):
        self.data = data
        self.lost = lost
        self.sequence = 0

    def header(self) -> bytes:
        flags = u.IOMMU_VEVENTQ_FLAG_LOST_EVENTS if self.lost else 0
        return bytes(u.iommufd_vevent_header(flags=flags, sequence=self.sequence))


class IommufdVeventq(IommufdObject):
    """struct iommufd_veventq (iommufd_private.h:617-631@7.2)."""

    type = IOMMUFD_OBJ_VEVENTQ

    def __init__(self, ictx: IommufdCtx, viommu: IommufdViommu, type_: int, depth: int):
        super().__init__()
        self.ictx = ictx
        self.viommu = viommu
        self.veventq_type = type_
        self.depth = depth
        self.num_events = 0
        self.sequence = 0
        self.deliver: list[Vevent] = []
        self.lost_events_header = Vevent(b"", lost=True)
        self.filep: VeventqFile | None = None

    def destroy(self, k: ModelKernel) -> None:
        """iommufd_veventq_destroy() / _abort() (eventq.c:230-258)."""
        self.deliver.clear()
        self.viommu.users -= 1
        self.viommu.veventqs.remove(self)

    def abort(self, k: ModelKernel) -> None:
        """iommufd_object_abort_and_destroy() puts the file first (main.c:141-157@7.2)."""
        if self.filep is not None:
            self.filep.release(k)
            self.filep = None
        self.destroy(k)

    def handler(self, vevent: Vevent) -> None:
        """iommufd_vevent_handler() (iommufd_private.h:651-669@7.2): a lost_events_header at the
        tail is replaced by the new node (which may be that header again, with a new sequence)."""
        if self.deliver and self.deliver[-1] is self.lost_events_header:
            self.deliver.pop()
        self.deliver.append(vevent)
        vevent.sequence = self.sequence
        self.sequence = (self.sequence + 1) & INT_MAX


class VeventqFile(File):
    """The anon inode "[iommufd-viommu-event]" (eventq.c:498-499,544-545): read only."""

    kind = "iommufd_veventq"

    def __init__(self, veventq: IommufdVeventq):
        self.veventq = veventq

    def read(self, k: ModelKernel, length: int) -> bytes:
        """iommufd_veventq_fops_read() (eventq.c:311-374; f_pos is always 0).  A header copied
        out takes the lost_events_header off the queue (iommufd_veventq_deliver_fetch())."""
        q = self.veventq
        if length < HDR_SIZE:
            raise Errno(errno.EINVAL, cite(EVENTQ_C, 325, "7.2"))
        out = bytearray()
        rc: Errno | None = None
        while q.deliver:
            cur = q.deliver[0]
            done = len(out)
            if done >= length or length - done < HDR_SIZE:
                break
            if not cur.lost and HDR_SIZE + len(cur.data) > length - done:
                if done == 0:
                    rc = Errno(errno.EINVAL, cite(EVENTQ_C, 347, "7.2"))
                break
            q.deliver.pop(0)
            out += cur.header() + cur.data
            if not cur.lost:
                q.num_events -= 1
        if not out and rc is not None:
            raise rc
        return bytes(out)

    def release(self, k: ModelKernel) -> None:
        """iommufd_eventq_fops_release() (eventq.c:396-403)."""
        self.veventq.users -= 1
        k.put_file(self.veventq.ictx)


def iommufd_viommu_find_veventq(viommu: IommufdViommu, type_: int) -> IommufdVeventq | None:
    """iommufd_private.h:679-692@7.2."""
    for q in viommu.veventqs:
        if q.veventq_type == type_:
            assert isinstance(q, IommufdVeventq)
            return q
    return None


def iommufd_veventq_alloc(ucmd: Ucmd[Any]) -> int:
    """eventq.c:504-570."""
    cmd = ucmd.cmd
    ictx = ucmd.ictx
    if cmd.flags or cmd.__reserved or cmd.type == u.IOMMU_VEVENTQ_TYPE_DEFAULT:
        raise Errno(errno.EOPNOTSUPP, cite(EVENTQ_C, 514, "7.2"))
    if not cmd.veventq_depth or cmd.veventq_depth > VEVENTQ_MAX_DEPTH:
        raise Errno(errno.EINVAL, cite(EVENTQ_C, 516, "7.2"))
    viommu = iommufd_get_viommu(ucmd, cmd.viommu_id)
    if iommufd_viommu_find_veventq(viommu, cmd.type) is not None:
        raise Errno(errno.EEXIST, cite(EVENTQ_C, 525, "7.2"))
    veventq = IommufdVeventq(ictx, viommu, cmd.type, cmd.veventq_depth)
    ictx.object_alloc(veventq)
    viommu.users += 1
    viommu.veventqs.append(veventq)
    return eventq_respond_with_fd(ucmd, veventq, VeventqFile(veventq), "out_veventq_id", "out_veventq_fd")


def iommufd_viommu_report_event(viommu: IommufdViommu, type_: int, event_data: bytes) -> None:
    """iommufd_viommu_report_event() (driver.c:133-177@7.2): with the queue full, the
    lost_events_header stands for the event (a failed GFP_NOWAIT allocation is not modelled)."""
    veventq = iommufd_viommu_find_veventq(viommu, type_)
    if veventq is None:
        raise Errno(errno.EOPNOTSUPP, cite(DRIVER_C, 148, "7.2"))
    if veventq.num_events == veventq.depth:
        vevent = veventq.lost_events_header
    else:
        vevent = Vevent(bytes(event_data))
        veventq.num_events += 1
    veventq.handler(vevent)
