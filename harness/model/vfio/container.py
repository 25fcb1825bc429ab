"""drivers/vfio/container.c: the legacy /dev/vfio/vfio container, the registered
IOMMU backends (type1, noiommu), attaching groups (which claims their DMA
ownership) and the ioctls the container answers before it hands the rest to its
backend."""

from __future__ import annotations

import errno
import re
from typing import TYPE_CHECKING, Any

from ...uapi import vfio as uv
from ..errors import Errno, cite
from ..kernel import File, ModelKernel
from .vfio_main import vfio_state

if TYPE_CHECKING:
    from .group import VfioGroup

CONTAINER_C = "drivers/vfio/container.c"


class VfioIommuDriver:
    """struct vfio_iommu_driver_ops.  ``data`` is the backend's iommu_data."""

    name = "?"
    is_noiommu = False

    def check_extension(self, k: ModelKernel, data: Any, arg: int) -> int:
        """ops->ioctl(data, VFIO_CHECK_EXTENSION, arg)."""
        return 0

    def open(self, k: ModelKernel, arg: int) -> Any:
        raise NotImplementedError

    def release(self, k: ModelKernel, data: Any) -> None:
        pass

    def ioctl(self, k: ModelKernel, data: Any, cmd: int, arg: int) -> int:
        raise Errno(errno.ENOTTY, cite(CONTAINER_C, 52))

    def attach_group(self, k: ModelKernel, data: Any, group: VfioGroup) -> None:
        pass

    def detach_group(self, k: ModelKernel, data: Any, group: VfioGroup) -> None:
        pass


class VfioNoiommuDriver(VfioIommuDriver):
    """vfio_noiommu_ops (container.c:32-74): it reports its extension while
    vfio.enable_unsafe_noiommu_mode is on (container.c:49-50); attaching and detaching
    a group does nothing, and every other ioctl (MAP_DMA, UNMAP_DMA, GET_INFO...) is
    ENOTTY."""

    name = "vfio-noiommu"
    is_noiommu = True

    def check_extension(self, k: ModelKernel, data: Any, arg: int) -> int:
        return 1 if vfio_state(k).noiommu and arg == uv.VFIO_NOIOMMU_IOMMU else 0

    def open(self, k: ModelKernel, arg: int) -> Any:
        """container.c:32-40 (the caller is root: CAP_SYS_RAWIO)."""
        if arg != uv.VFIO_NOIOMMU_IOMMU:
            raise Errno(errno.EINVAL, cite(CONTAINER_C, 35))
        return None

    def ioctl(self, k: ModelKernel, data: Any, cmd: int, arg: int) -> int:
        if cmd == uv.VFIO_CHECK_EXTENSION:
            return self.check_extension(k, data, arg)
        raise Errno(errno.ENOTTY, cite(CONTAINER_C, 52))


def vfio_register_iommu_driver(k: ModelKernel, driver: VfioIommuDriver) -> None:
    """container.c:91-121: list_add puts the newest driver first."""
    vfio_state(k).iommu_drivers.insert(0, driver)


class VfioContainer(File):
    """struct vfio_container behind an open /dev/vfio/vfio.  Attached groups
    hold a file reference, as they hold the kref in the kernel."""

    kind = "container"

    def __init__(self) -> None:
        self.group_list: list[VfioGroup] = []  # newest first (list_add)
        self.iommu_driver: VfioIommuDriver | None = None
        self.iommu_data: Any = None
        self.noiommu = False

    def ioctl(self, k: ModelKernel, cmd: int, arg: int) -> int:
        """vfio_fops_unl_ioctl() (container.c:327-357): anything it does not know
        goes to the backend, and without one it is the initial -EINVAL."""
        if cmd == uv.VFIO_GET_API_VERSION:
            return uv.VFIO_API_VERSION
        if cmd == uv.VFIO_CHECK_EXTENSION:
            return vfio_container_ioctl_check_extension(k, self, arg)
        if cmd == uv.VFIO_SET_IOMMU:
            return vfio_ioctl_set_iommu(k, self, arg)
        if self.iommu_driver is not None:
            return self.iommu_driver.ioctl(k, self.iommu_data, cmd, arg)
        raise Errno(errno.EINVAL, cite(CONTAINER_C, 333))


def vfio_iommu_driver_allowed(k: ModelKernel, container: VfioContainer, driver: VfioIommuDriver) -> bool:
    """container.c:80-86."""
    if "VFIO_NOIOMMU" not in k.facts.config:
        return True
    return container.noiommu == driver.is_noiommu


def vfio_container_ioctl_check_extension(k: ModelKernel, container: VfioContainer, arg: int) -> int:
    """container.c:184-232: without a backend, the first registered driver that
    reports the extension answers."""
    driver = container.iommu_driver
    if driver is not None:
        return driver.check_extension(k, container.iommu_data, arg)
    ret = 0
    for drv in vfio_state(k).iommu_drivers:
        if container.group_list and not vfio_iommu_driver_allowed(k, container, drv):
            continue
        ret = drv.check_extension(k, None, arg)
        if ret > 0:
            break
    return ret


def vfio_ioctl_set_iommu(k: ModelKernel, container: VfioContainer, arg: int) -> int:
    """container.c:260-325: each driver that reports the type is opened and
    given every group; the last failure is what the caller sees (ENODEV when no
    driver reports the type at all)."""
    if not container.group_list or container.iommu_driver is not None:
        raise Errno(errno.EINVAL, cite(CONTAINER_C, 278))
    err = Errno(errno.ENODEV, cite(CONTAINER_C, 264))
    for driver in vfio_state(k).iommu_drivers:
        if not vfio_iommu_driver_allowed(k, container, driver):
            continue
        if driver.check_extension(k, None, arg) <= 0:
            continue
        try:
            data = driver.open(k, arg)
        except Errno as e:
            err = e
            continue
        try:
            _vfio_container_attach_groups(k, container, driver, data)
        except Errno as e:
            driver.release(k, data)
            err = e
            continue
        container.iommu_driver = driver
        container.iommu_data = data
        return 0
    raise err


def _vfio_container_attach_groups(k: ModelKernel, container: VfioContainer, driver: VfioIommuDriver,
                                   data: Any) -> None:
    """__vfio_container_attach_groups() (container.c:235-258): unwinds the groups already attached on a failure."""
    done: list[VfioGroup] = []
    for group in container.group_list:
        try:
            driver.attach_group(k, data, group)
        except Errno:
            for g in reversed(done):
                driver.detach_group(k, data, g)
            raise
        done.append(group)


def vfio_container_from_file(f: File) -> VfioContainer | None:
    """container.c:395-406."""
    return f if isinstance(f, VfioContainer) else None


def vfio_container_attach_group(k: ModelKernel, container: VfioContainer, group: VfioGroup) -> None:
    """container.c:416-466: claims the group's DMA ownership exclusively (EPERM
    while a kernel driver or another owner holds it; a noiommu group has no DMA
    ownership to claim), then attaches it to the backend if the container has one.
    Noiommu and real groups never share a container (container.c:430-434)."""
    if container.group_list and container.noiommu != group.noiommu:
        raise Errno(errno.EPERM, cite(CONTAINER_C, 432))
    iommu_group = group.iommu_group
    assert iommu_group is not None
    if not group.noiommu:
        iommu_group.claim_dma_owner(group)  # container.c:437; EPERM iommu.c:3223
    driver = container.iommu_driver
    if driver is not None:
        try:
            driver.attach_group(k, container.iommu_data, group)
        except Errno:
            if not group.noiommu:
                iommu_group.release_dma_owner()
            raise
    group.container = container
    group.container_users = 1
    container.noiommu = group.noiommu  # container.c:457
    container.group_list.insert(0, group)
    k.get_file(container)


def vfio_group_detach_container(k: ModelKernel, group: VfioGroup) -> None:
    """container.c:468-501: the last group out deprivileges the container and
    releases its backend."""
    container = group.container
    assert container is not None
    driver = container.iommu_driver
    if driver is not None:
        driver.detach_group(k, container.iommu_data, group)
    if group.iommu_group is not None and not group.noiommu:  # container.c:483-484
        group.iommu_group.release_dma_owner()
    group.container = None
    group.container_users = 0
    container.group_list.remove(group)
    if driver is not None and not container.group_list:
        driver.release(k, container.iommu_data)
        container.iommu_driver = None
        container.iommu_data = None
    k.put_file(container)


def vfio_group_use_container(k: ModelKernel, group: VfioGroup) -> None:
    """container.c:503-520: EINVAL until VFIO_SET_IOMMU; the device keeps the
    group file open."""
    assert group.container is not None
    if group.container.iommu_driver is None:
        raise Errno(errno.EINVAL, cite(CONTAINER_C, 512))
    assert group.opened_file is not None
    k.get_file(group.opened_file)
    group.container_users += 1


def vfio_group_unuse_container(k: ModelKernel, group: VfioGroup) -> None:
    """container.c:522-529."""
    group.container_users -= 1
    assert group.opened_file is not None
    k.put_file(group.opened_file)


def install_container(k: ModelKernel) -> None:
    """vfio_container_init() (container.c:573-596) and the IOMMU backends that
    register after it: noiommu first, then type1 (module load order), so type1 is
    first on the list."""
    from .vfio_iommu_type1 import install_type1

    if "VFIO_NOIOMMU" in k.facts.config:
        vfio_register_iommu_driver(k, VfioNoiommuDriver())
    if "VFIO_IOMMU_TYPE1" in k.facts.config:
        vfio_register_iommu_driver(k, install_type1(k))

    def open_container(k: ModelKernel, m: re.Match[str]) -> File:
        return VfioContainer()  # vfio_fops_open() (container.c:359-374)

    k.register_node(r"/dev/vfio/vfio", open_container)
