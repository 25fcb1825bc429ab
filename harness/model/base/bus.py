"""drivers/base/bus.c: the bus's notifier chain, finding a device by name, and the
bus's sysfs files (driver_override, bind, unbind, drivers_probe).

bus.c and dd.c call each other (drivers/base/base.h); the stores here import dd.py
where they call it.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import Errno, cite
from ..kernel import sysfs_store
from ..lib.string import sysfs_strip
from ..memory import PAGE_SIZE
from ..pci.pci import PciDev, PciDriver, pci_core, sysfs_pci_dev
from ..pci.pci_driver import pci_bus_match

if TYPE_CHECKING:
    from ..kernel import ModelKernel

# include/linux/device/bus.h:269-278 (enum bus_notifier_event)
BUS_NOTIFY_ADD_DEVICE = 0
BUS_NOTIFY_DEL_DEVICE = 1
BUS_NOTIFY_REMOVED_DEVICE = 2
BUS_NOTIFY_BIND_DRIVER = 3
BUS_NOTIFY_BOUND_DRIVER = 4
BUS_NOTIFY_UNBIND_DRIVER = 5
BUS_NOTIFY_UNBOUND_DRIVER = 6
BUS_NOTIFY_DRIVER_NOT_BOUND = 7

Notifier = Callable[["ModelKernel", int, "PciDev"], None]


def bus_register_notifier(k: ModelKernel, owner: object, fn: Notifier) -> None:
    pci_core(k).notifiers.append((owner, fn))


def bus_unregister_notifier(k: ModelKernel, owner: object) -> None:
    core = pci_core(k)
    core.notifiers = [(o, f) for o, f in core.notifiers if o is not owner]


def bus_notify(k: ModelKernel, pdev: PciDev, action: int) -> None:
    for _, fn in list(pci_core(k).notifiers):
        fn(k, action, pdev)


def pci_get_dev(k: ModelKernel, bdf: str) -> PciDev | None:
    """bus_find_device_by_name(): device_match_name() uses sysfs_streq(), so a
    trailing newline is ignored (drivers/base/core.c:5358)."""
    return pci_core(k).devices.get(sysfs_strip(bdf))


def driver_override_show(k: ModelKernel, m: re.Match[str]) -> str:
    """drivers/base/bus.c:479-484: sysfs_emit("%s\\n") of a NULL name prints "(null)"."""
    name = sysfs_pci_dev(k, m).fn.driver_override
    return f"{name if name is not None else '(null)'}\n"


@sysfs_store
def driver_override_store(k: ModelKernel, m: re.Match[str], buf: str) -> None:
    """drivers/base/bus.c:466-477 -> __device_set_driver_override() (dd.c:383-440)."""
    pdev = sysfs_pci_dev(k, m)
    if len(buf) >= PAGE_SIZE - 1:
        raise Errno(errno.EINVAL, cite("drivers/base/dd.c", 398))
    s = buf.split("\0", 1)[0]
    if not s:
        pdev.fn.driver_override = None  # dd.c:406-414
        return
    s = s.split("\n", 1)[0]
    pdev.fn.driver_override = s or None  # "\n" clears it (dd.c:427-436)


def _driver(k: ModelKernel, m: re.Match[str]) -> PciDriver:
    drv = pci_core(k).drivers.get(m["drv"])
    if drv is None:
        raise Errno(errno.ENOENT, "fs/sysfs")
    return drv


@sysfs_store
def bind_store(k: ModelKernel, m: re.Match[str], buf: str) -> None:
    """drivers/base/bus.c:258-276 -> device_driver_attach() (dd.c:1216-1230):
    ENODEV unless the device exists and the driver matches it; a probe failure
    comes back as its own errno."""
    from .dd import ProbeError, driver_probe_device

    drv = _driver(k, m)
    pdev = pci_get_dev(k, buf.split("\0", 1)[0])
    if pdev is None or not pci_bus_match(drv, pdev):
        raise Errno(errno.ENODEV, cite("drivers/base/bus.c", 263))
    try:
        driver_probe_device(k, drv, pdev)
    except ProbeError as e:
        raise Errno(e.code, e.where) from None


@sysfs_store
def unbind_store(k: ModelKernel, m: re.Match[str], buf: str) -> None:
    """drivers/base/bus.c:235-250."""
    from .dd import device_release_driver

    drv = _driver(k, m)
    pdev = pci_get_dev(k, buf.split("\0", 1)[0])
    if pdev is None or pdev.driver is not drv:
        raise Errno(errno.ENODEV, cite("drivers/base/bus.c", 240))
    device_release_driver(k, pdev)


@sysfs_store
def drivers_probe_store(k: ModelKernel, m: re.Match[str], buf: str) -> None:
    """drivers/base/bus.c:309-322: ENODEV for an unknown device; a core failure
    while attaching (not a probe failure, which only moves on to the next driver)
    becomes EINVAL."""
    from .dd import device_attach

    pdev = pci_get_dev(k, buf.split("\0", 1)[0])
    if pdev is None:
        raise Errno(errno.ENODEV, cite("drivers/base/bus.c", 317))
    if pdev.driver is not None:
        return  # bus_rescan_devices_helper() (bus.c:824)
    try:
        device_attach(k, pdev)
    except Errno:
        raise Errno(errno.EINVAL, cite("drivers/base/bus.c", 313)) from None
