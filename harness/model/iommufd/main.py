"""drivers/iommu/iommufd/main.c: the iommufd context (an open /dev/iommu),
its object table, the ioctl dispatch with the ucmd size procedure, and
IOMMU_DESTROY / IOMMU_OPTION."""

from __future__ import annotations

import contextlib
import ctypes
import errno
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ...uapi import iommufd as u
from ...uapi.abi import Ioctl, ioc_nr
from ..errors import ENOIOCTLCMD, Errno, cite
from ..kernel import File
from . import device as device_c
from . import eventq as eventq_c
from . import fault as fault_c
from . import hw_pagetable as hwpt_c
from . import ioas as ioas_c
from . import selftest as selftest_c
from . import vfio_compat as vfio_compat_c
from . import viommu as viommu_c
from .private import (
    IOMMUFD_OBJ_ANY,
    IOPT_PAGES_ACCOUNT_MM,
    IOPT_PAGES_ACCOUNT_NONE,
    MAIN_C,
    REMOVE_WAIT_SHORTTERM,
    IommufdObject,
    Ucmd,
)

if TYPE_CHECKING:
    from ..iommu.iommu import IommuGroup
    from ..kernel import ModelKernel
    from .device import IommufdDevice, IommufdGroup
    from .ioas import IommufdIoas

IOMMUFD_CMD_BASE = u.IOMMUFD_CMD_BASE
# xa_limit_31b (main.c:55-56)
_ID_LIMIT = (1 << 31) - 1

Handler = Callable[[Ucmd[Any]], int | None]


class IommufdCtx(File):
    """struct iommufd_ctx (iommufd_private.h:22-32), the private data of an
    open /dev/iommu (or of /dev/vfio/vfio with CONFIG_IOMMUFD_VFIO_CONTAINER)."""

    kind = "iommufd"

    def __init__(self, vfio_container: bool = False):
        # iommufd_fops_open() (main.c:254-278)
        self.objects: dict[int, IommufdObject] = {}
        self.groups: dict[int, IommufdGroup] = {}
        self.account_mode = IOPT_PAGES_ACCOUNT_MM if vfio_container else IOPT_PAGES_ACCOUNT_NONE
        self.no_iommu_mode = False
        self.vfio_ioas: IommufdIoas | None = None

    # -- the object table --------------------------------------------------------
    def object_alloc(self, obj: IommufdObject) -> None:
        """_iommufd_object_alloc() (main.c:33-63): the lowest free id from 1,
        reserved but not visible until finalize."""
        id_ = 1
        while id_ in self.objects:
            id_ += 1
        if id_ > _ID_LIMIT:
            raise Errno(errno.EBUSY, cite(MAIN_C, 55))
        obj.id = id_
        self.objects[id_] = obj

    def finalize(self, obj: IommufdObject) -> None:
        """iommufd_object_finalize() (main.c:74-82)."""
        obj.finalized = True

    def object_abort(self, obj: IommufdObject) -> None:
        """iommufd_object_abort() (main.c:85-92)."""
        self.objects.pop(obj.id, None)

    def object_abort_and_destroy(self, k: ModelKernel, obj: IommufdObject) -> None:
        """main.c:98-126."""
        obj.abort(k)
        self.object_abort(obj)

    @contextlib.contextmanager
    def abort_on_error(self, k: ModelKernel, obj: IommufdObject) -> Iterator[None]:
        """The handlers' ``out_abort:`` label: an error between iommufd_object_alloc() and
        iommufd_object_finalize() aborts and destroys the object, then goes on up."""
        try:
            yield
        except BaseException:
            self.object_abort_and_destroy(k, obj)
            raise

    def get_object(self, id_: int, type_: int) -> IommufdObject:
        """iommufd_get_object() (main.c:128-143)."""
        obj = self.objects.get(id_)
        if obj is None or not obj.finalized or (type_ != IOMMUFD_OBJ_ANY and obj.type != type_) or obj.users <= 0:
            raise Errno(errno.ENOENT, cite(MAIN_C, 140))
        return obj

    def object_remove(self, k: ModelKernel, to_destroy: IommufdObject | None, id_: int, flags: int) -> None:
        """iommufd_object_remove() (main.c:166-245): only the table may hold
        a reference, else EBUSY."""
        obj = self.objects.get(id_)
        if to_destroy is not None:
            to_destroy.users -= 1
            if obj is not to_destroy:
                raise Errno(errno.ENOENT, cite(MAIN_C, 204))
        elif obj is None or not obj.finalized:
            raise Errno(errno.ENOENT, cite(MAIN_C, 208))
        assert obj is not None
        victim: IommufdObject = obj
        if victim.users != 1:
            raise Errno(errno.EBUSY, cite(MAIN_C, 213))
        victim.users = 0
        del self.objects[id_]
        if self.vfio_ioas is victim:
            self.vfio_ioas = None
        victim.destroy(k)

    def object_destroy_user(self, k: ModelKernel, obj: IommufdObject) -> None:
        """iommufd_object_destroy_user() (iommufd_private.h:196-209): on
        failure the object waits for close (WARN_ON)."""
        with contextlib.suppress(Errno):
            self.object_remove(k, obj, obj.id, REMOVE_WAIT_SHORTTERM)

    # -- file operations ---------------------------------------------------------
    def ioctl(self, k: ModelKernel, cmd: int, arg: int) -> int:
        """iommufd_fops_ioctl() (main.c:413-447)."""
        nr = ioc_nr(cmd)
        table = _ioctl_ops(k)
        if nr < IOMMUFD_CMD_BASE or nr - IOMMUFD_CMD_BASE >= len(table):
            return vfio_compat_c.iommufd_vfio_ioctl(k, self, cmd, arg)
        try:
            user_size = k.mm.get_user_u32(arg)
        except Errno:
            raise Errno(errno.EFAULT, cite(MAIN_C, 430)) from None
        op = table[nr - IOMMUFD_CMD_BASE]
        if op is None or op[0].number != cmd:
            raise Errno(ENOIOCTLCMD, cite(MAIN_C, 436))
        ioctl, handler = op
        assert ioctl.min_size is not None and ioctl.struct is not None
        if user_size < ioctl.min_size:
            raise Errno(errno.EINVAL, cite(MAIN_C, 438))
        raw = k.mm.copy_struct_from_user(ioctl.sizeof, arg, user_size)
        struct_cls: type[ctypes.Structure] = ioctl.struct
        ucmd: Ucmd[Any] = Ucmd(k, self, arg, user_size, struct_cls.from_buffer_copy(raw))
        return handler(ucmd) or 0

    def release(self, k: ModelKernel) -> None:
        """iommufd_fops_release() (main.c:280-313): destroy the leaves (users
        == 1) in id order until nothing is left."""
        while self.objects:
            destroyed = 0
            for id_ in sorted(self.objects):
                obj = self.objects.get(id_)
                if obj is None or obj.users != 1:
                    continue
                destroyed += 1
                obj.users = 0
                del self.objects[id_]
                obj.destroy(k)
            if not destroyed:
                break

    # -- the API the VFIO side calls -----------------------------------------------
    def device_bind(self, k: ModelKernel, dev: Any) -> IommufdDevice:
        """iommufd_device_bind() (device.c:162-236)."""
        return device_c.iommufd_device_bind(k, self, dev)

    def vfio_compat_ioas_create(self) -> None:
        """iommufd_vfio_compat_ioas_create() (vfio_compat.c:80-120)."""
        vfio_compat_c.iommufd_vfio_compat_ioas_create(self)

    def vfio_compat_ioas_get_id(self) -> int:
        """iommufd_vfio_compat_ioas_get_id() (vfio_compat.c:36-46)."""
        return vfio_compat_c.get_compat_ioas(self).id

    def vfio_compat_set_no_iommu(self) -> None:
        """iommufd_vfio_compat_set_no_iommu() (vfio_compat.c:55-68)."""
        vfio_compat_c.iommufd_vfio_compat_set_no_iommu(self)

    def has_group(self, group: IommuGroup) -> bool:
        """iommufd_ctx_has_group() (device.c:248-267)."""
        return device_c.iommufd_ctx_has_group(self, group)


def ctx_from_file(f: File) -> IommufdCtx | None:
    """iommufd_ctx_from_file() (main.c:476-486): None where the kernel
    returns ERR_PTR(-EBADFD).  The caller takes its own reference with
    ``k.get_file(ctx)`` if it keeps the context."""
    return f if isinstance(f, IommufdCtx) else None


def iommufd_destroy(ucmd: Ucmd[u.iommu_destroy]) -> None:
    """main.c:247-252."""
    ucmd.ictx.object_remove(ucmd.k, None, ucmd.cmd.id, 0)


def iommufd_option(ucmd: Ucmd[u.iommu_option]) -> None:
    """main.c:315-339."""
    cmd = ucmd.cmd
    if getattr(cmd, "__reserved"):
        raise Errno(errno.EOPNOTSUPP, cite(MAIN_C, 321))
    if cmd.option_id == u.IOMMU_OPTION_RLIMIT_MODE:
        ioas_c.iommufd_option_rlimit_mode(cmd, ucmd.ictx)
    elif cmd.option_id == u.IOMMU_OPTION_HUGE_PAGES:
        ioas_c.iommufd_ioas_option(ucmd)
    else:
        raise Errno(errno.EOPNOTSUPP, cite(MAIN_C, 331))
    off = u.iommu_option.offsetof("val64")
    try:
        ucmd.k.mm.write(ucmd.ubuffer + off, bytes(ctypes.c_uint64(cmd.val64)))
    except Errno:
        raise Errno(errno.EFAULT, cite(MAIN_C, 337)) from None


_HANDLERS: dict[str, Handler] = {
    "IOMMU_DESTROY": iommufd_destroy,
    "IOMMU_FAULT_QUEUE_ALLOC": fault_c.iommufd_fault_alloc,
    "IOMMU_GET_HW_INFO": device_c.iommufd_get_hw_info,
    "IOMMU_HW_QUEUE_ALLOC": viommu_c.iommufd_hw_queue_alloc_ioctl,   # 7.2
    "IOMMU_HWPT_ALLOC": hwpt_c.iommufd_hwpt_alloc,
    "IOMMU_HWPT_GET_DIRTY_BITMAP": hwpt_c.iommufd_hwpt_get_dirty_bitmap,
    "IOMMU_HWPT_INVALIDATE": hwpt_c.iommufd_hwpt_invalidate,
    "IOMMU_HWPT_SET_DIRTY_TRACKING": hwpt_c.iommufd_hwpt_set_dirty_tracking,
    "IOMMU_IOAS_ALLOC": ioas_c.iommufd_ioas_alloc_ioctl,
    "IOMMU_IOAS_ALLOW_IOVAS": ioas_c.iommufd_ioas_allow_iovas,
    "IOMMU_IOAS_CHANGE_PROCESS": ioas_c.iommufd_ioas_change_process,   # 7.2
    "IOMMU_IOAS_COPY": ioas_c.iommufd_ioas_copy,
    "IOMMU_IOAS_IOVA_RANGES": ioas_c.iommufd_ioas_iova_ranges,
    "IOMMU_IOAS_MAP": ioas_c.iommufd_ioas_map,
    "IOMMU_IOAS_MAP_FILE": ioas_c.iommufd_ioas_map_file,   # 7.2
    "IOMMU_IOAS_UNMAP": ioas_c.iommufd_ioas_unmap,
    "IOMMU_OPTION": iommufd_option,
    "IOMMU_VDEVICE_ALLOC": viommu_c.iommufd_vdevice_alloc_ioctl,   # 7.2
    "IOMMU_VEVENTQ_ALLOC": eventq_c.iommufd_veventq_alloc,   # 7.2
    "IOMMU_VFIO_IOAS": vfio_compat_c.iommufd_vfio_ioas,
    "IOMMU_VIOMMU_ALLOC": viommu_c.iommufd_viommu_alloc_ioctl,   # 7.2
}

OpTable = list[tuple[Ioctl, Handler] | None]
_TABLES: dict[tuple[bool, str], OpTable] = {}


def _ioctl_ops(k: ModelKernel) -> OpTable:
    """iommufd_ioctl_ops[] (main.c:378-411): indexed by nr - 0x80, with
    IOMMU_TEST_CMD at 0xa0 only under CONFIG_IOMMUFD_TEST; each entry's struct and minimum
    size are those of the kernel's series (the ioctls 7.2 added are not modelled yet: their
    numbers fall in the table's gaps, ENOTTY)."""
    test = "IOMMUFD_TEST" in k.facts.config
    table = _TABLES.get((test, k.abi.series))
    if table is None:
        # A handler of an ioctl the series lacks (7.2's) is not in its table.
        ops: list[tuple[Ioctl, Handler]] = [(k.abi.IOCTLS[name], fn) for name, fn in _HANDLERS.items()
                                            if name in k.abi.IOCTLS]
        if test:
            ops.append((k.abi.IOCTLS["IOMMU_TEST_CMD"], selftest_c.iommufd_test))
        size = max(op.nr for op, _ in ops) - IOMMUFD_CMD_BASE + 1
        table = [None] * size
        for op, fn in ops:
            table[op.nr - IOMMUFD_CMD_BASE] = (op, fn)
        _TABLES[test, k.abi.series] = table
    return table
