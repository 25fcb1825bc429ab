"""drivers/iommu/iommufd: /dev/iommu, and /dev/vfio/vfio when iommufd
provides the VFIO container (CONFIG_IOMMUFD_VFIO_CONTAINER).

One module per kernel file: ``main`` (context, object table, ioctl dispatch),
``ioas``, ``io_pagetable`` and ``pages`` (the IOVA map), ``hw_pagetable``,
``device`` (bind/attach, accesses, GET_HW_INFO), ``vfio_compat``, ``fault``,
``selftest`` (IOMMU_TEST_CMD and the mock driver); ``domain`` holds the iommu
core's domains and the driver of the hardware IOMMU; ``private`` the shared
object base (iommufd_private.h).

The API the VFIO side calls
---------------------------

``ctx_from_file(f) -> IommufdCtx | None``
    iommufd_ctx_from_file(): None when ``f`` is not an iommufd.  To keep the
    context (as VFIO does for a bound device or a container), take a file
    reference with ``k.get_file(ctx)`` and drop it with ``k.put_file(ctx)``.

``IommufdCtx.device_bind(k, dev) -> IommufdDevice``
    iommufd_device_bind(): ``dev`` has ``iommu_group`` (an ``IommuGroup`` or
    None: ENODEV), ``bdf`` and ``hw`` (an ``IommuHw``; optionally
    ``hw_info_data = {"cap_reg": .., "ecap_reg": ..}``).  Checks, in the
    kernel's order: the IOMMU's cache coherency (EINVAL), the group (ENODEV),
    MSI isolation (EPERM unless "IRQ_REMAP" is configured), then claims DMA
    ownership with ``group.device_claim_dma_owner(ctx)`` (EPERM if someone
    else owns it).  The new device object holds a reference on the context
    file until it is unbound.

``IommufdCtx.vfio_compat_ioas_create()``, ``IommufdCtx.vfio_compat_ioas_get_id() -> int``,
``IommufdCtx.vfio_compat_set_no_iommu()``, ``IommufdCtx.has_group(group) -> bool``
    iommufd_vfio_compat_ioas_create(), iommufd_vfio_compat_ioas_get_id()
    (ENODEV when there is none), iommufd_vfio_compat_set_no_iommu(),
    iommufd_ctx_has_group().

``IommufdDevice.id``; ``attach(k, pt_id) -> int``; ``replace(k, pt_id) -> int``;
``detach(k)``; ``unbind(k)``
    iommufd_device_attach() / _replace() / _detach() / _unbind().  ``pt_id``
    is an IOAS (an automatic domain is found or made) or a HWPT; the return
    is the HWPT id.  ``attach`` on an attached device fails EINVAL only when
    the HWPT differs; VFIO must use ``replace`` for an attached device
    (vfio_iommufd_physical_attach_ioas does).  ``unbind`` with the device
    still attached leaves it for close (a kernel WARN).

Every failure is an ``Errno`` citing the 6.12.117 line it mirrors.
"""

from __future__ import annotations

import re

from ..kernel import File, ModelKernel
from .device import Bindable, IommufdDevice
from .main import IommufdCtx, ctx_from_file

__all__ = ["Bindable", "IommufdCtx", "IommufdDevice", "ctx_from_file", "install"]


def install(k: ModelKernel) -> None:
    """module_init(iommufd_init) (main.c:574-598)."""

    def open_iommu(k: ModelKernel, m: re.Match[str]) -> File:
        return IommufdCtx()

    def open_vfio(k: ModelKernel, m: re.Match[str]) -> File:
        # main.c:266-270: /dev/vfio/vfio defaults to VFIO's rlimit accounting
        return IommufdCtx(vfio_container=True)

    k.register_node(r"/dev/iommu", open_iommu, lambda k, m: "IOMMUFD" in k.facts.config)
    if k.facts.container == "iommufd":
        k.register_node(r"/dev/vfio/vfio", open_vfio, lambda k, m: "IOMMUFD" in k.facts.config)
