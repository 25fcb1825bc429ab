"""drivers/vfio/pci/vfio_pci_intrs.c: VFIO_DEVICE_SET_IRQS for vfio-pci: INTx
trigger/mask/unmask, MSI and MSI-X vector blocks, the error and request
eventfds.  Eventfds are harness.model.eventfd.EventFd files; the kernel keeps an
eventfd_ctx reference, so a trigger outlives the user's fd, as here."""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import TYPE_CHECKING

from ...uapi import vfio as uv
from ..errors import Errno, cite
from ..eventfd import EventFd, eventfd_ctx_fdget
from ..kernel import ModelKernel
from .virqfd import Virqfd, vfio_virqfd_disable, vfio_virqfd_enable

if TYPE_CHECKING:
    from .pci_core import VfioPciCoreDevice

INTRS_C = "drivers/vfio/pci/vfio_pci_intrs.c"


class IrqCtx:
    """struct vfio_pci_irq_ctx."""

    def __init__(self, trigger: EventFd | None):
        self.trigger = trigger
        self.masked = False
        self.unmask: Virqfd | None = None  # the virqfd that unmasks INTx
        self.mask: Virqfd | None = None    # never set: DATA_EVENTFD | ACTION_MASK is ENOTTY


def _s32(data: bytes, i: int) -> int:
    return int.from_bytes(data[4 * i : 4 * i + 4], "little", signed=True)


def is_intx(vdev: VfioPciCoreDevice) -> bool:
    return vdev.irq_type == uv.VFIO_PCI_INTX_IRQ_INDEX


def is_irq_none(vdev: VfioPciCoreDevice) -> bool:
    return vdev.irq_type not in (uv.VFIO_PCI_INTX_IRQ_INDEX, uv.VFIO_PCI_MSI_IRQ_INDEX,
                                 uv.VFIO_PCI_MSIX_IRQ_INDEX)


# -- INTx -------------------------------------------------------------------------------

def vfio_send_intx_eventfd(vdev: VfioPciCoreDevice) -> None:
    """:88-99 (the loopback a DATA_NONE/BOOL trigger does)."""
    ctx = vdev.ctx.get(0)
    if is_intx(vdev) and not vdev.virq_disabled and ctx is not None and ctx.trigger is not None:
        ctx.trigger.signal()


def vfio_pci_intx_unmask_handler(vdev: VfioPciCoreDevice, ctx: IrqCtx) -> bool:
    """:165-202, the unmask of an ioctl or of the unmask eventfd's virqfd.  True would send the
    INTx eventfd (an interrupt still pending): the model's functions raise none."""
    if is_intx(vdev) and ctx.masked and not vdev.virq_disabled:
        ctx.masked = False
    return False


def __vfio_pci_intx_unmask(vdev: VfioPciCoreDevice, ctx: IrqCtx) -> None:
    """:204-212."""
    if vfio_pci_intx_unmask_handler(vdev, ctx):
        vfio_send_intx_eventfd(vdev)


def vfio_intx_enable(vdev: VfioPciCoreDevice, trigger: EventFd | None) -> None:
    """:250-322."""
    if not is_irq_none(vdev):
        raise Errno(errno.EINVAL, cite(INTRS_C, 260))
    if not vdev.dev.fn.interrupt_pin:
        raise Errno(errno.ENODEV, cite(INTRS_C, 263))
    ctx = IrqCtx(trigger)
    ctx.masked = vdev.virq_disabled
    vdev.ctx[0] = ctx
    vdev.irq_type = uv.VFIO_PCI_INTX_IRQ_INDEX


def vfio_intx_disable(vdev: VfioPciCoreDevice) -> None:
    """:349-368."""
    ctx = vdev.ctx.pop(0, None)
    if ctx is not None:
        vfio_virqfd_disable(ctx, "unmask")  # :357-358
        vfio_virqfd_disable(ctx, "mask")
    vdev.irq_type = uv.VFIO_PCI_NUM_IRQS


def vfio_pci_set_intx_unmask(k: ModelKernel, vdev: VfioPciCoreDevice, index: int, start: int, count: int,
                             flags: int, data: bytes) -> None:
    """:587-616."""
    if not is_intx(vdev) or start != 0 or count != 1:
        raise Errno(errno.EINVAL, cite(INTRS_C, 592))
    ctx = vdev.ctx[0]
    if flags & uv.VFIO_IRQ_SET_DATA_NONE:
        __vfio_pci_intx_unmask(vdev, ctx)
    elif flags & uv.VFIO_IRQ_SET_DATA_BOOL:
        if data[0]:
            __vfio_pci_intx_unmask(vdev, ctx)
    elif flags & uv.VFIO_IRQ_SET_DATA_EVENTFD:
        fd = _s32(data, 0)
        if fd >= 0:
            vfio_virqfd_enable(k, fd, lambda: vfio_pci_intx_unmask_handler(vdev, ctx),
                               lambda: vfio_send_intx_eventfd(vdev), ctx, "unmask")
        else:
            vfio_virqfd_disable(ctx, "unmask")


def vfio_pci_set_intx_mask(k: ModelKernel, vdev: VfioPciCoreDevice, index: int, start: int, count: int,
                           flags: int, data: bytes) -> None:
    """:618-636."""
    if not is_intx(vdev) or start != 0 or count != 1:
        raise Errno(errno.EINVAL, cite(INTRS_C, 623))
    ctx = vdev.ctx[0]
    if flags & uv.VFIO_IRQ_SET_DATA_NONE:
        ctx.masked = True
    elif flags & uv.VFIO_IRQ_SET_DATA_BOOL:
        if data[0]:
            ctx.masked = True
    elif flags & uv.VFIO_IRQ_SET_DATA_EVENTFD:
        raise Errno(errno.ENOTTY, cite(INTRS_C, 632))


def vfio_pci_set_intx_trigger(k: ModelKernel, vdev: VfioPciCoreDevice, index: int, start: int, count: int,
                              flags: int, data: bytes) -> None:
    """:638-683."""
    if is_intx(vdev) and not count and flags & uv.VFIO_IRQ_SET_DATA_NONE:
        vfio_intx_disable(vdev)
        return
    if not (is_intx(vdev) or is_irq_none(vdev)) or start != 0 or count != 1:
        raise Errno(errno.EINVAL, cite(INTRS_C, 648))
    if flags & uv.VFIO_IRQ_SET_DATA_EVENTFD:
        fd = _s32(data, 0)
        trigger = eventfd_ctx_fdget(k, fd) if fd >= 0 else None
        if is_intx(vdev):
            vdev.ctx[0].trigger = trigger  # vfio_intx_set_signal()
        else:
            vfio_intx_enable(vdev, trigger)
        return
    if not is_intx(vdev):
        raise Errno(errno.EINVAL, cite(INTRS_C, 673))
    if flags & uv.VFIO_IRQ_SET_DATA_NONE or (flags & uv.VFIO_IRQ_SET_DATA_BOOL and data[0]):
        vfio_send_intx_eventfd(vdev)


# -- MSI / MSI-X ------------------------------------------------------------------------

def vfio_msi_enable(vdev: VfioPciCoreDevice, nvec: int, msix: bool) -> None:
    """:381-414: pci_alloc_irq_vectors(pdev, 1, nvec) gets every vector the capability
    has; with nvec = start + count = 0 (DATA_EVENTFD, start 0, count 0) it asks for at
    most 0 and at least 1, which __pci_enable_msix_range() refuses with ERANGE (MSI never
    gets here: its validation needs start < count of vectors)."""
    if not is_irq_none(vdev):
        raise Errno(errno.EINVAL, cite(INTRS_C, 389))
    if nvec < 1:
        raise Errno(errno.ERANGE, cite("drivers/pci/msi/msi.c", 799))
    vdev.irq_type = uv.VFIO_PCI_MSIX_IRQ_INDEX if msix else uv.VFIO_PCI_MSI_IRQ_INDEX


def vfio_msi_set_vector_signal(k: ModelKernel, vdev: VfioPciCoreDevice, vector: int, fd: int) -> None:
    """:447-536: drop the vector's trigger, then install the new one (fd >= 0)."""
    vdev.ctx.pop(vector, None)
    if fd < 0:
        return
    vdev.ctx[vector] = IrqCtx(eventfd_ctx_fdget(k, fd))


def vfio_msi_set_block(k: ModelKernel, vdev: VfioPciCoreDevice, start: int, count: int, fds: bytes | None) -> None:
    """:538-555: on a failure the vectors from ``start`` up to the failed one lose
    their triggers."""
    j = start
    try:
        for i in range(count):
            j = start + i
            fd = _s32(fds, i) if fds is not None else -1
            vfio_msi_set_vector_signal(k, vdev, j, fd)
    except Errno:
        for i in range(start, j):
            vfio_msi_set_vector_signal(k, vdev, i, -1)
        raise


def vfio_msi_disable(vdev: VfioPciCoreDevice) -> None:
    """:557-582."""
    vdev.ctx.clear()
    vdev.irq_type = uv.VFIO_PCI_NUM_IRQS


def vfio_pci_set_msi_trigger(k: ModelKernel, vdev: VfioPciCoreDevice, index: int, start: int, count: int,
                             flags: int, data: bytes) -> None:
    """:685-736."""
    msix = index == uv.VFIO_PCI_MSIX_IRQ_INDEX
    if vdev.irq_type == index and not count and flags & uv.VFIO_IRQ_SET_DATA_NONE:
        vfio_msi_disable(vdev)
        return
    if not (vdev.irq_type == index or is_irq_none(vdev)):
        raise Errno(errno.EINVAL, cite(INTRS_C, 699))
    if flags & uv.VFIO_IRQ_SET_DATA_EVENTFD:
        if vdev.irq_type == index:
            vfio_msi_set_block(k, vdev, start, count, data)
            return
        vfio_msi_enable(vdev, start + count, msix)
        try:
            vfio_msi_set_block(k, vdev, start, count, data)
        except Errno:
            vfio_msi_disable(vdev)
            raise
        return
    if vdev.irq_type != index:
        raise Errno(errno.EINVAL, cite(INTRS_C, 721))
    for i in range(start, start + count):
        ctx = vdev.ctx.get(i)
        if ctx is None or ctx.trigger is None:
            continue
        if flags & uv.VFIO_IRQ_SET_DATA_NONE or (flags & uv.VFIO_IRQ_SET_DATA_BOOL and data[i - start]):
            ctx.trigger.signal()


# -- error and request eventfds ---------------------------------------------------------

def vfio_pci_set_ctx_trigger_single(k: ModelKernel, vdev: VfioPciCoreDevice, which: str, count: int,
                                    flags: int, data: bytes) -> None:
    """:738-805 on vdev.err_trigger / vdev.req_trigger."""
    cur: EventFd | None = getattr(vdev, which)
    if flags & uv.VFIO_IRQ_SET_DATA_NONE:
        if cur is None:
            raise Errno(errno.EINVAL, cite(INTRS_C, 751))
        if count:
            cur.signal()
        else:
            setattr(vdev, which, None)
        return
    if flags & uv.VFIO_IRQ_SET_DATA_BOOL:
        if not count:
            raise Errno(errno.EINVAL, cite(INTRS_C, 763))
        if data[0] and cur is not None:
            cur.signal()
        return
    if flags & uv.VFIO_IRQ_SET_DATA_EVENTFD:
        if not count:
            raise Errno(errno.EINVAL, cite(INTRS_C, 781))
        fd = _s32(data, 0)
        if fd == -1:
            setattr(vdev, which, None)
            return
        if fd >= 0:
            setattr(vdev, which, eventfd_ctx_fdget(k, fd))
            return
    raise Errno(errno.EINVAL, cite(INTRS_C, 804))


def vfio_pci_set_err_trigger(k: ModelKernel, vdev: VfioPciCoreDevice, index: int, start: int, count: int,
                             flags: int, data: bytes) -> None:
    """:807-816."""
    if index != uv.VFIO_PCI_ERR_IRQ_INDEX or start != 0 or count > 1:
        raise Errno(errno.EINVAL, cite(INTRS_C, 812))
    vfio_pci_set_ctx_trigger_single(k, vdev, "err_trigger", count, flags, data)


def vfio_pci_set_req_trigger(k: ModelKernel, vdev: VfioPciCoreDevice, index: int, start: int, count: int,
                             flags: int, data: bytes) -> None:
    """:818-827."""
    if index != uv.VFIO_PCI_REQ_IRQ_INDEX or start != 0 or count > 1:
        raise Errno(errno.EINVAL, cite(INTRS_C, 823))
    vfio_pci_set_ctx_trigger_single(k, vdev, "req_trigger", count, flags, data)


SetFn = Callable[[ModelKernel, "VfioPciCoreDevice", int, int, int, int, bytes], None]


def vfio_pci_set_irqs_ioctl(k: ModelKernel, vdev: VfioPciCoreDevice, flags: int, index: int, start: int,
                            count: int, data: bytes) -> int:
    """:829-884: exactly one action bit picks the handler; anything else is ENOTTY."""
    action = flags & uv.VFIO_IRQ_SET_ACTION_TYPE_MASK
    func: SetFn | None = None
    if index == uv.VFIO_PCI_INTX_IRQ_INDEX:
        func = {uv.VFIO_IRQ_SET_ACTION_MASK: vfio_pci_set_intx_mask,
                uv.VFIO_IRQ_SET_ACTION_UNMASK: vfio_pci_set_intx_unmask,
                uv.VFIO_IRQ_SET_ACTION_TRIGGER: vfio_pci_set_intx_trigger}.get(action)
    elif index in (uv.VFIO_PCI_MSI_IRQ_INDEX, uv.VFIO_PCI_MSIX_IRQ_INDEX):
        if action == uv.VFIO_IRQ_SET_ACTION_TRIGGER:
            func = vfio_pci_set_msi_trigger
    elif index == uv.VFIO_PCI_ERR_IRQ_INDEX:
        if action == uv.VFIO_IRQ_SET_ACTION_TRIGGER and vdev.dev.fn.is_pcie:
            func = vfio_pci_set_err_trigger
    elif index == uv.VFIO_PCI_REQ_IRQ_INDEX and action == uv.VFIO_IRQ_SET_ACTION_TRIGGER:
        func = vfio_pci_set_req_trigger
    if func is None:
        raise Errno(errno.ENOTTY, cite(INTRS_C, 881))
    func(k, vdev, index, start, count, flags, data)
    return 0
