"""drivers/iommu/iommufd/fault.c: the fault queue object and its fd (read
iommu_hwpt_pgfault records, write iommu_hwpt_page_response), fed by the iommu
core's iommu_report_device_fault() (drivers/iommu/io-pgfault.c)."""

from __future__ import annotations

import ctypes
import errno
from typing import TYPE_CHECKING, Any

from ...uapi import iommufd as u
from ..errors import Errno, cite
from ..iommu.iommu import IOMMU_DOMAIN_NESTED, dev_iommu_ops
from ..kernel import File
from .private import (
    FAULT_C,
    IOMMUFD_OBJ_FAULT,
    IommufdObject,
    Ucmd,
)

if TYPE_CHECKING:
    from ..kernel import ModelKernel
    from .device import AttachHandle
    from .main import IommufdCtx

FAULT_SIZE = ctypes.sizeof(u.iommu_hwpt_pgfault)
RESPONSE_SIZE = ctypes.sizeof(u.iommu_hwpt_page_response)

# include/linux/iommu.h: iommu_fault_page_request flags
IOMMU_FAULT_PAGE_REQUEST_PASID_VALID = 1 << 0
IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE = 1 << 1


class IopfGroup:
    """struct iopf_group: the faults of one page request group, with the attach
    handle they came through."""

    __slots__ = ("cookie", "faults", "handle")

    def __init__(self, faults: list[dict[str, int]], handle: AttachHandle):
        self.faults = faults
        self.handle = handle
        self.cookie = 0


class IommufdFault(IommufdObject):
    """struct iommufd_fault (iommufd_private.h:460-471)."""

    type = IOMMUFD_OBJ_FAULT

    def __init__(self, ictx: IommufdCtx):
        super().__init__()
        self.ictx = ictx
        self.deliver: list[IopfGroup] = []
        self.response: dict[int, IopfGroup] = {}
        self.filep: FaultFile | None = None

    def destroy(self, k: ModelKernel) -> None:
        """iommufd_fault_destroy() (fault.c:215-239): every pending group is
        answered IOMMU_PAGE_RESP_INVALID."""
        self.deliver.clear()
        self.response.clear()

    def abort(self, k: ModelKernel) -> None:
        """iommufd_object_abort_and_destroy() puts the file first (main.c:103-119)."""
        if self.filep is not None:
            self.filep.release(k)
            self.filep = None
        self.destroy(k)

    def auto_response_faults(self, handle: AttachHandle | None) -> None:
        """iommufd_auto_response_faults() (fault.c:96-131)."""
        self.deliver = [g for g in self.deliver if g.handle is not handle]
        self.response = {c: g for c, g in self.response.items() if g.handle is not handle}

    def iopf_handler(self, group: IopfGroup) -> None:
        """iommufd_fault_iopf_handler() (fault.c:451-468)."""
        self.deliver.append(group)


class FaultFile(File):
    """The anon inode "[iommufd-pgfault]" (fault.c:384-391)."""

    kind = "iommufd_fault"

    def __init__(self, fault: IommufdFault):
        self.fault = fault

    def read(self, k: ModelKernel, length: int) -> bytes:
        """fault.c:256-311 (f_pos is always 0)."""
        fault = self.fault
        if length % FAULT_SIZE:
            raise Errno(errno.ESPIPE, cite(FAULT_C, 269))
        out = bytearray()
        rc = None
        while fault.deliver:
            group = fault.deliver[0]
            done = len(out)
            if done >= length or len(group.faults) * FAULT_SIZE > length - done:
                if done == 0:
                    rc = Errno(errno.EINVAL, cite(FAULT_C, 280))
                break
            fault.deliver.pop(0)
            cookie = 1
            while cookie in fault.response:
                cookie += 1
            group.cookie = cookie
            fault.response[cookie] = group
            for f in group.faults:
                rec = u.iommu_hwpt_pgfault(
                    flags=f["flags"], dev_id=group.handle.idev.id, pasid=f["pasid"],
                    grpid=f["grpid"], perm=f["perm"], addr=f["addr"], length=0, cookie=cookie)
                out += bytes(rec)
        if not out and rc is not None:
            raise rc
        return bytes(out)

    def write(self, k: ModelKernel, data: bytes) -> int:
        """fault.c:313-356."""
        fault = self.fault
        if len(data) % RESPONSE_SIZE:
            raise Errno(errno.ESPIPE, cite(FAULT_C, 324))
        done = 0
        rc = None
        while len(data) > done:
            resp = u.iommu_hwpt_page_response.from_buffer_copy(data[done : done + RESPONSE_SIZE])
            if resp.code not in (u.IOMMUFD_PAGE_RESP_SUCCESS, u.IOMMUFD_PAGE_RESP_INVALID):
                rc = Errno(errno.EINVAL, cite(FAULT_C, 339))
                break
            if fault.response.pop(resp.cookie, None) is None:
                rc = Errno(errno.EINVAL, cite(FAULT_C, 345))
                break
            done += RESPONSE_SIZE
        if done == 0 and rc is not None:
            raise rc
        return done

    def release(self, k: ModelKernel) -> None:
        """fault.c:373-382."""
        self.fault.users -= 1
        k.put_file(self.fault.ictx)


def iommufd_fault_alloc(ucmd: Ucmd[u.iommu_fault_alloc]) -> int:
    """fault.c:393-449."""
    cmd = ucmd.cmd
    ictx = ucmd.ictx
    if cmd.flags:
        raise Errno(errno.EOPNOTSUPP, cite(FAULT_C, 402))
    fault = IommufdFault(ictx)
    ictx.object_alloc(fault)
    return eventq_respond_with_fd(ucmd, fault, FaultFile(fault), "out_fault_id", "out_fault_fd")


def eventq_respond_with_fd(ucmd: Ucmd[Any], obj: Any, filep: File, id_field: str, fd_field: str) -> int:
    """The end of an object that comes with its own fd (a fault queue, fault.c:414-446; a vEVENTQ,
    eventq.c:415-436@7.2): the file holds the context and a users reference, the id and the fd
    number go back, and only once the object is finalized is the fd installed."""
    k, ictx = ucmd.k, ucmd.ictx
    obj.filep = filep
    obj.users += 1
    k.get_file(ictx)
    setattr(ucmd.cmd, id_field, obj.id)
    setattr(ucmd.cmd, fd_field, unused_fd(k))
    with ictx.abort_on_error(k, obj):
        ucmd.respond()
    ictx.finalize(obj)
    k.install_fd(filep)
    return 0


def unused_fd(k: ModelKernel) -> int:
    """get_unused_fd_flags(): the fd install_fd() will hand out next."""
    fd = 3
    while fd in k.files:
        fd += 1
    return fd


def iommu_report_device_fault(k: ModelKernel, idev: Any, flags: int, pasid: int, grpid: int, perm: int,
                              addr: int) -> None:
    """io-pgfault.c:214-283 for a single last-page request; the fault goes to
    the fault queue of the HWPT attached to the device's group, if that HWPT
    has one.  A request with a PASID is routed to the RID's domain only when
    the driver has a user PASID table and that domain is nested."""
    handle = idev.igroup.handle
    if handle is None:
        return
    if flags & IOMMU_FAULT_PAGE_REQUEST_PASID_VALID and (
            not dev_iommu_ops(k, idev.dev).user_pasid_table or handle.domain.type != IOMMU_DOMAIN_NESTED):
        return
    hwpt = handle.domain.iopf_handler
    if hwpt is None or hwpt.fault is None:
        return
    fault = {"flags": flags, "pasid": pasid, "grpid": grpid, "perm": perm, "addr": addr}
    hwpt.fault.iopf_handler(IopfGroup([fault], handle))
