"""drivers/vfio/vfio_main.c: struct vfio_device, the device file (group-path and
cdev fds alike), open counting, VFIO_DEVICE_FEATURE dispatch, the info capability
chain helpers and SET_IRQS validation; plus the user-copy helpers the VFIO handlers
share and the global state of drivers/vfio."""

from __future__ import annotations

import ctypes
import errno
import struct
from typing import TYPE_CHECKING, Any, TypeVar

from ...backends.base import IommuHw
from ...uapi import vfio as uv
from ..errors import Errno, cite
from ..kernel import File, ModelKernel

if TYPE_CHECKING:
    from ..iommu.iommu import IommuGroup
    from ..iommufd import IommufdCtx, IommufdDevice
    from ..pci.pci import PciDev
    from .container import VfioIommuDriver
    from .group import VfioGroup

MAIN_C = "drivers/vfio/vfio_main.c"
VFIO_H = "include/linux/vfio.h"
U32_MAX = (1 << 32) - 1
PAGE_SIZE = 4096

_STATE = "vfio"
S = TypeVar("S", bound=ctypes.Structure)


class VfioDeviceSet:
    """struct vfio_device_set: devices that must reset together."""

    def __init__(self, key: object):
        self.key = key
        self.device_list: list[VfioDevice] = []


class VfioState:
    """The file-scope globals of drivers/vfio: vfio_main.c's device ida and
    device sets, group.c's group list, container.c's IOMMU driver list, and
    vfio_pci_core.c's vfio_pci_sriov_pfs."""

    def __init__(self) -> None:
        self.device_ida: set[int] = set()
        self.device_sets: dict[object, VfioDeviceSet] = {}
        self.groups: dict[int, VfioGroup] = {}          # vfio.group_list, by iommu group id
        self.iommu_drivers: list[VfioIommuDriver] = []  # newest first (list_add)
        self.devices: dict[str, VfioDevice] = {}        # registered devices by PCI name
        self.sriov_pfs: list[Any] = []                  # vfio_pci_sriov_pfs
        self.tokens_made = 0                            # VF tokens generated (pci_core)
        # vfio.enable_unsafe_noiommu_mode (vfio_main.c:58-61): an enum false without
        # CONFIG_VFIO_NOIOMMU (vfio.h:42); install_vfio sets it from the facts.
        self.noiommu = False


def vfio_state(k: ModelKernel) -> VfioState:
    st = k.state.get(_STATE)
    if not isinstance(st, VfioState):
        st = k.state[_STATE] = VfioState()
    return st


# -- user memory ----------------------------------------------------------------------

def copy_from_user(k: ModelKernel, addr: int, size: int, where: str) -> bytes:
    """copy_from_user(): EFAULT, cited at the handler line, when any byte faults."""
    try:
        return k.mm.read(addr, size)
    except Errno:
        raise Errno(errno.EFAULT, where) from None


def copy_to_user(k: ModelKernel, addr: int, data: bytes, where: str) -> None:
    try:
        k.mm.write(addr, data)
    except Errno:
        raise Errno(errno.EFAULT, where) from None


def get_struct(k: ModelKernel, cls: type[S], addr: int, minsz: int, where: str) -> S:
    """copy_from_user(&s, arg, minsz) into a zeroed struct."""
    raw = copy_from_user(k, addr, minsz, where)
    return cls.from_buffer_copy(raw.ljust(ctypes.sizeof(cls), b"\0"))


def put_struct(k: ModelKernel, obj: ctypes.Structure, addr: int, size: int, where: str) -> None:
    """copy_to_user(arg, &s, size): the first ``size`` bytes of the struct."""
    copy_to_user(k, addr, bytes(obj)[:size], where)


def offsetofend(cls: type[ctypes.Structure], name: str) -> int:
    d = getattr(cls, name)
    return int(d.offset + d.size)


# -- capability chains (vfio_main.c:1470-1533) ------------------------------------------

class VfioInfoCap:
    """struct vfio_info_cap: capabilities chained at the head of a buffer."""

    def __init__(self) -> None:
        self.buf = bytearray()

    @property
    def size(self) -> int:
        return len(self.buf)

    def add(self, size: int, id_: int, version: int) -> int:
        """vfio_info_cap_add(): append a zeroed, 8-byte aligned capability and
        link the previous tail to it; returns its offset."""
        size = (size + 7) & ~7
        off = len(self.buf)
        self.buf += bytes(size)
        struct.pack_into("<HHI", self.buf, off, id_, version, 0)
        tmp = 0
        while True:
            nxt = struct.unpack_from("<I", self.buf, tmp + 4)[0]
            if not nxt:
                break
            tmp = nxt
        struct.pack_into("<I", self.buf, tmp + 4, off)
        return off

    def add_capability(self, cap: ctypes.Structure) -> None:
        """vfio_info_add_capability(): the header's id and version, the payload after it."""
        raw = bytes(cap)
        id_, version = struct.unpack_from("<HH", raw)
        off = self.add(len(raw), id_, version)
        self.buf[off + 8 : off + len(raw)] = raw[8:]

    def copy_to_info(self, k: ModelKernel, info: Any, arg: int, caps_flag: int, where: str) -> None:
        """The tail every VFIO INFO ioctl open-codes (vfio_iommu_type1.c:2792-2806,
        vfio_pci_core.c:1158-1171): set ``caps_flag``; then either grow ``argsz``
        to what the chain needs and copy nothing (the call still succeeds), or copy
        the chain right after the struct and point ``cap_offset`` at it."""
        if not self.size:
            return
        info.flags |= caps_flag
        if info.argsz < ctypes.sizeof(info) + self.size:
            info.argsz = ctypes.sizeof(info) + self.size
            info.cap_offset = 0
        else:
            self.shift(ctypes.sizeof(info))
            copy_to_user(k, arg + ctypes.sizeof(info), bytes(self.buf), where)
            info.cap_offset = ctypes.sizeof(info)

    def shift(self, offset: int) -> None:
        """vfio_info_cap_shift(): make the next offsets relative to the user buffer."""
        tmp = 0
        while True:
            nxt = struct.unpack_from("<I", self.buf, tmp + 4)[0]
            if not nxt:
                break
            struct.pack_into("<I", self.buf, tmp + 4, nxt + offset)
            tmp = nxt


# -- struct vfio_device ------------------------------------------------------------------

class VfioDevice:
    """struct vfio_device, with the vfio_device_ops a driver overrides.  Also
    what the iommufd side binds (``Bindable``): ``iommu_group``, ``bdf``, ``hw``."""

    name = "?"  # ops->name

    def __init__(self, k: ModelKernel, pdev: PciDev):
        self.dev = pdev
        self.hw: IommuHw = k.facts.iommu
        self.index = -1
        self.group: VfioGroup | None = None
        self.dev_set: VfioDeviceSet | None = None
        self.open_count = 0
        self.cdev_opened = False
        # Registration references: the driver's, and one per open device file
        # (vfio_device_try_get_registration()).
        self.refcount = 0
        self.iommufd_device: IommufdDevice | None = None
        self.iommufd_attached = False

    # -- Bindable ----------------------------------------------------------------
    @property
    def iommu_group(self) -> IommuGroup | None:
        return self.dev.group

    @property
    def bdf(self) -> str:
        return self.dev.bdf

    @property
    def cdev_name(self) -> str:
        return f"vfio{self.index}"

    # -- vfio_device_ops (defaults: the op is absent) -----------------------------
    def open_device(self, k: ModelKernel) -> None:
        pass

    def close_device(self, k: ModelKernel) -> None:
        pass

    def ioctl(self, k: ModelKernel, df: VfioDeviceFile, cmd: int, arg: int) -> int:
        raise Errno(errno.EINVAL, cite(MAIN_C, 1307))

    def device_feature(self, k: ModelKernel, flags: int, arg: int, argsz: int) -> int:
        raise Errno(errno.ENOTTY, cite(MAIN_C, 1261))

    def read(self, k: ModelKernel, length: int, pos: int) -> bytes:
        raise Errno(errno.EINVAL, cite(MAIN_C, 1328))

    def write(self, k: ModelKernel, data: bytes, pos: int) -> int:
        raise Errno(errno.EINVAL, cite(MAIN_C, 1345))

    def mmap(self, k: ModelKernel, length: int, pgoff: int, shared: bool) -> None:
        raise Errno(errno.EINVAL, cite(MAIN_C, 1360))

    def match(self, k: ModelKernel, buf: str) -> int:
        """ops->match, or the name compare when there is none (group.c:41-43)."""
        return 1 if buf == self.bdf else 0

    # ops->match_token_uuid (7.2): whether the driver has one, and the check itself.
    has_token_check = False

    def match_token_uuid(self, k: ModelKernel, uuid: bytes | None) -> None:
        raise NotImplementedError

    def bind_iommufd(self, k: ModelKernel, ictx: IommufdCtx) -> int:
        raise NotImplementedError

    def unbind_iommufd(self, k: ModelKernel) -> None:
        raise NotImplementedError

    def attach_ioas(self, k: ModelKernel, pt_id: int) -> int:
        raise NotImplementedError

    def detach_ioas(self, k: ModelKernel) -> None:
        raise NotImplementedError

    def pm_runtime_get(self, k: ModelKernel) -> None:
        """vfio_device_pm_runtime_get(): a driver with dev_pm_ops resumes here."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.bdf}, vfio{self.index})"


def vfio_assign_device_set(k: ModelKernel, device: VfioDevice, key: object) -> None:
    """vfio_main.c:68-120."""
    st = vfio_state(k)
    dev_set = st.device_sets.get(key)
    if dev_set is None:
        dev_set = st.device_sets[key] = VfioDeviceSet(key)
    dev_set.device_list.append(device)
    device.dev_set = dev_set


def vfio_release_device_set(k: ModelKernel, device: VfioDevice) -> None:
    dev_set = device.dev_set
    if dev_set is None:
        return
    if device in dev_set.device_list:
        dev_set.device_list.remove(device)
    if not dev_set.device_list:
        vfio_state(k).device_sets.pop(dev_set.key, None)
    device.dev_set = None


def vfio_find_device_in_devset(dev_set: VfioDeviceSet, pdev: PciDev) -> VfioDevice | None:
    return next((d for d in dev_set.device_list if d.dev is pdev), None)


def vfio_init_device(k: ModelKernel, device: VfioDevice, want: int | None = None) -> None:
    """vfio_init_device() (vfio_main.c:270-310): ida_alloc_max() gives the lowest
    free index (``want`` keeps a booted topology's cdev name)."""
    ida = vfio_state(k).device_ida
    if want is not None and want not in ida:
        index = want
    else:
        index = 0
        while index in ida:
            index += 1
    ida.add(index)
    device.index = index


def vfio_register_group_dev(k: ModelKernel, device: VfioDevice) -> None:
    """__vfio_register_dev() (vfio_main.c:312-364)."""
    from ..iommu.iommu import IOMMU_CAP_CACHE_COHERENCY, dev_iommu_ops
    from . import group as group_c

    if device.dev_set is None:
        vfio_assign_device_set(k, device, device)
    group_c.vfio_device_set_group(k, device)
    assert device.group is not None
    if not device.group.noiommu and not dev_iommu_ops(k, device).capable(device, IOMMU_CAP_CACHE_COHERENCY):
        group_c.vfio_device_remove_group(k, device)
        raise Errno(errno.EINVAL, cite(MAIN_C, 346))
    device.refcount = 1
    vfio_state(k).devices[device.bdf] = device
    # vfio_device_add() (vfio.h:359-366): the cdev appears, except for a noiommu device
    device.dev.fn.cdev = None if device.group.noiommu else device.cdev_name
    group_c.vfio_device_group_register(device)


def vfio_device_busy(device: VfioDevice) -> bool:
    """Whether vfio_unregister_group_dev() would wait: a device file holds a
    registration reference until it is closed."""
    return device.refcount > 1


def vfio_unregister_group_dev(k: ModelKernel, device: VfioDevice) -> None:
    """vfio_main.c:385-435.  With a device file open the kernel blocks here,
    calling ops->request until the user closes it; the model cannot block, so
    the drivers check ``vfio_device_busy`` first and refuse with EBUSY."""
    from . import group as group_c

    group_c.vfio_device_group_unregister(device)
    st = vfio_state(k)
    st.devices.pop(device.bdf, None)
    device.dev.fn.cdev = None
    device.refcount = 0
    group_c.vfio_device_remove_group(k, device)
    st.device_ida.discard(device.index)  # vfio_device_release()
    vfio_release_device_set(k, device)


# -- the device file ----------------------------------------------------------------------

class VfioDeviceFile(File):
    """struct vfio_device_file behind an fd: from GET_DEVICE_FD (``group`` set,
    access granted at once) or from opening /dev/vfio/devices/vfioX (``group``
    None, access granted by BIND_IOMMUFD)."""

    kind = "device"

    def __init__(self, device: VfioDevice, group: VfioGroup | None):
        self.device = device
        self.group = group
        self.access_granted = False
        self.devid = 0
        self.iommufd: IommufdCtx | None = None

    def ioctl(self, k: ModelKernel, cmd: int, arg: int) -> int:
        return vfio_device_fops_unl_ioctl(k, self, cmd, arg)

    # vfio_device_open_file() sets FMODE_PREAD | FMODE_PWRITE (group.c:286); a cdev has them.
    positional = True
    pos = 0   # f_pos: where read(2)/write(2) go

    def pread(self, k: ModelKernel, length: int, pos: int) -> bytes:
        """vfio_device_fops_read() (vfio_main.c:1317-1331)."""
        if not self.access_granted:
            raise Errno(errno.EINVAL, cite(MAIN_C, 1325))
        return self.device.read(k, length, pos)

    def pwrite(self, k: ModelKernel, data: bytes, pos: int) -> int:
        """vfio_device_fops_write() (vfio_main.c:1333-1348)."""
        if not self.access_granted:
            raise Errno(errno.EINVAL, cite(MAIN_C, 1342))
        return self.device.write(k, data, pos)

    def read(self, k: ModelKernel, length: int) -> bytes:
        data = self.pread(k, length, self.pos)
        self.pos += len(data)
        return data

    def write(self, k: ModelKernel, data: bytes) -> int:
        n = self.pwrite(k, data, self.pos)
        self.pos += n
        return n

    def mmap(self, k: ModelKernel, length: int, pgoff: int, shared: bool) -> None:
        """vfio_device_fops_mmap() (vfio_main.c:1350-1363)."""
        if not self.access_granted:
            raise Errno(errno.EINVAL, cite(MAIN_C, 1357))
        self.device.mmap(k, length, pgoff, shared)

    def release(self, k: ModelKernel) -> None:
        """vfio_device_fops_release() (vfio_main.c:635-650)."""
        from . import device_cdev, group

        if self.group is not None:
            group.vfio_df_group_close(k, self)
        else:
            device_cdev.vfio_df_unbind_iommufd(k, self)
        self.device.refcount -= 1  # vfio_device_put_registration()


def vfio_df_device_first_open(k: ModelKernel, df: VfioDeviceFile) -> None:
    """vfio_main.c:511-544."""
    from . import group, iommufd

    device = df.device
    if df.iommufd is not None:
        iommufd.vfio_df_iommufd_bind(k, df)
    else:
        group.vfio_device_group_use_iommu(k, device)
    try:
        device.open_device(k)
    except Errno:
        if df.iommufd is not None:
            iommufd.vfio_df_iommufd_unbind(k, df)
        else:
            group.vfio_device_group_unuse_iommu(k, device)
        raise


def vfio_df_device_last_close(k: ModelKernel, df: VfioDeviceFile) -> None:
    """vfio_main.c:546-560."""
    from . import group, iommufd

    device = df.device
    device.close_device(k)
    if df.iommufd is not None:
        iommufd.vfio_df_iommufd_unbind(k, df)
    else:
        group.vfio_device_group_unuse_iommu(k, device)


def vfio_df_open(k: ModelKernel, df: VfioDeviceFile) -> None:
    """vfio_main.c:562-584: only the group path may open a device twice."""
    device = df.device
    if device.open_count != 0 and df.group is None:
        raise Errno(errno.EINVAL, cite(MAIN_C, 574))
    device.open_count += 1
    if device.open_count == 1:
        try:
            vfio_df_device_first_open(k, df)
        except Errno:
            device.open_count -= 1
            raise


def vfio_df_close(k: ModelKernel, df: VfioDeviceFile) -> None:
    """vfio_main.c:586-597."""
    device = df.device
    if not device.open_count:
        return
    if device.open_count == 1:
        vfio_df_device_last_close(k, df)
    device.open_count -= 1


def vfio_device_fops_unl_ioctl(k: ModelKernel, df: VfioDeviceFile, cmd: int, arg: int) -> int:
    """vfio_main.c:1268-1315."""
    from . import device_cdev

    device = df.device
    if cmd == uv.VFIO_DEVICE_BIND_IOMMUFD:
        return device_cdev.vfio_df_ioctl_bind_iommufd(k, df, arg)
    if not df.access_granted:
        raise Errno(errno.EINVAL, cite(MAIN_C, 1281))
    device.pm_runtime_get(k)
    if "VFIO_DEVICE_CDEV" in k.facts.config and df.group is None:
        if cmd == uv.VFIO_DEVICE_ATTACH_IOMMUFD_PT:
            return device_cdev.vfio_df_ioctl_attach_pt(k, df, arg)
        if cmd == uv.VFIO_DEVICE_DETACH_IOMMUFD_PT:
            return device_cdev.vfio_df_ioctl_detach_pt(k, df, arg)
    if cmd == uv.VFIO_DEVICE_FEATURE:
        return vfio_ioctl_device_feature(k, device, arg)
    return device.ioctl(k, df, cmd, arg)


# -- VFIO_DEVICE_FEATURE ---------------------------------------------------------------

def vfio_check_feature(flags: int, argsz: int, supported_ops: int, minsz: int) -> int:
    """include/linux/vfio.h:249-263: 1 to do the GET/SET, 0 for a PROBE."""
    if (flags & (uv.VFIO_DEVICE_FEATURE_GET | uv.VFIO_DEVICE_FEATURE_SET)) & ~supported_ops:
        raise Errno(errno.EINVAL, cite(VFIO_H, 254))
    if flags & uv.VFIO_DEVICE_FEATURE_PROBE:
        return 0
    if not flags & (uv.VFIO_DEVICE_FEATURE_GET | uv.VFIO_DEVICE_FEATURE_SET):
        raise Errno(errno.EINVAL, cite(VFIO_H, 259))
    if argsz < minsz:
        raise Errno(errno.EINVAL, cite(VFIO_H, 261))
    return 1


# Features vfio_main.c serves itself; vfio-pci has no mig_ops or log_ops.
_CORE_FEATURES = {
    uv.VFIO_DEVICE_FEATURE_MIGRATION: f"{MAIN_C}:981",
    uv.VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE: f"{MAIN_C}:905",
    uv.VFIO_DEVICE_FEATURE_DMA_LOGGING_START: f"{MAIN_C}:1071",
    uv.VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP: f"{MAIN_C}:1146",
    uv.VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT: f"{MAIN_C}:1179",
    uv.VFIO_DEVICE_FEATURE_MIG_DATA_SIZE: f"{MAIN_C}:953",
}


def vfio_ioctl_device_feature(k: ModelKernel, device: VfioDevice, arg: int) -> int:
    """vfio_main.c:1210-1266."""
    minsz = offsetofend(uv.vfio_device_feature, "flags")
    feature = get_struct(k, uv.vfio_device_feature, arg, minsz, cite(MAIN_C, 1217))
    if feature.argsz < minsz:
        raise Errno(errno.EINVAL, cite(MAIN_C, 1220))
    known = (uv.VFIO_DEVICE_FEATURE_MASK | uv.VFIO_DEVICE_FEATURE_SET | uv.VFIO_DEVICE_FEATURE_GET
             | uv.VFIO_DEVICE_FEATURE_PROBE)
    if feature.flags & ~known:
        raise Errno(errno.EINVAL, cite(MAIN_C, 1226))
    if (not feature.flags & uv.VFIO_DEVICE_FEATURE_PROBE and feature.flags & uv.VFIO_DEVICE_FEATURE_SET
            and feature.flags & uv.VFIO_DEVICE_FEATURE_GET):
        raise Errno(errno.EINVAL, cite(MAIN_C, 1232))
    which = feature.flags & uv.VFIO_DEVICE_FEATURE_MASK
    data = arg + minsz
    argsz = feature.argsz - minsz
    if which in _CORE_FEATURES:
        # Each handler starts with `if (!device->mig_ops / ->log_ops) return -ENOTTY;`
        raise Errno(errno.ENOTTY, _CORE_FEATURES[which])
    return device.device_feature(k, feature.flags, data, argsz)


# -- SET_IRQS ------------------------------------------------------------------------------

def vfio_set_irqs_validate_and_prepare(hdr: uv.vfio_irq_set, num_irqs: int, max_irq_type: int) -> int:
    """vfio_main.c:1535-1581: the size of the data that follows the header."""
    minsz = offsetofend(uv.vfio_irq_set, "count")
    known = uv.VFIO_IRQ_SET_DATA_TYPE_MASK | uv.VFIO_IRQ_SET_ACTION_TYPE_MASK
    if (hdr.argsz < minsz or hdr.index >= max_irq_type or hdr.count >= U32_MAX - hdr.start
            or hdr.flags & ~known):
        raise Errno(errno.EINVAL, cite(MAIN_C, 1547))
    if hdr.start >= num_irqs or hdr.start + hdr.count > num_irqs:
        raise Errno(errno.EINVAL, cite(MAIN_C, 1553))
    data_type = hdr.flags & uv.VFIO_IRQ_SET_DATA_TYPE_MASK
    if data_type == uv.VFIO_IRQ_SET_DATA_NONE:
        size = 0
    elif data_type == uv.VFIO_IRQ_SET_DATA_BOOL:
        size = 1
    elif data_type == uv.VFIO_IRQ_SET_DATA_EVENTFD:
        size = 4
    else:
        raise Errno(errno.EINVAL, cite(MAIN_C, 1566))
    if size and hdr.argsz - minsz < hdr.count * size:
        raise Errno(errno.EINVAL, cite(MAIN_C, 1571))
    return hdr.count * size


def install_cdev_nodes(k: ModelKernel) -> None:
    """device_cdev.c:220-230: /dev/vfio/devices/vfioN for each registered device."""
    from . import device_cdev

    def exists(k: ModelKernel, m: Any) -> bool:
        return any(d.index == int(m["n"]) and d.group is not None and not d.group.noiommu
                   for d in vfio_state(k).devices.values())

    k.register_node(r"/dev/vfio/devices/vfio(?P<n>0|[1-9][0-9]*)", device_cdev.vfio_device_fops_cdev_open, exists)
