"""The API the VFIO side calls (iommufd_device_bind/attach/replace/detach/
unbind, the compat IOAS helpers), with a device behind the emulated Intel
IOMMU described by IommuHw (drivers/iommu/iommufd/device.c,
drivers/iommu/intel/iommu.c)."""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass, field

import pytest
from test_iommufd_util import PAGE_SIZE, Rig

from harness.backends.base import IommuHw
from harness.model.errors import Errno
from harness.model.iommu.iommu import IommuGroup
from harness.model.iommufd import IommufdCtx, ctx_from_file
from harness.model.kernel import File
from harness.model.topologies import DEFAULT_CONFIG
from harness.uapi import iommufd as u
from harness.uapi import iommufd_test as st

HW = IommuHw()  # QEMU 7.2 intel-iommu: aw-bits 39, MSI window reserved
MSI = (0xFEE0_0000, 0xFEEF_FFFF)
U64_MAX = (1 << 64) - 1


@dataclass
class Dev:
    iommu_group: IommuGroup | None
    bdf: str = "0000:00:02.0"
    hw: IommuHw = HW
    hw_info_data: dict[str, int] = field(default_factory=dict)


def ctx(r: Rig) -> IommufdCtx:
    c = r.k.fget(r.fd)
    assert isinstance(c, IommufdCtx)
    return c


def iova_ranges(r: Rig, ioas: int) -> tuple[list[tuple[int, int]], int]:
    out = r.mmap(PAGE_SIZE)
    res = r.io("IOMMU_IOAS_IOVA_RANGES", ioas_id=ioas, num_iovas=8, allowed_iovas=out)
    vals = struct.unpack("<16Q", r.k.mm.read(out, 128))
    return [(vals[2 * i], vals[2 * i + 1]) for i in range(res.s.num_iovas)], res.s.out_iova_alignment


def test_ctx_from_file() -> None:
    r = Rig()
    assert ctx_from_file(r.k.fget(r.fd)) is ctx(r)
    assert ctx_from_file(File()) is None


def test_bind_claims_dma_ownership_and_holds_the_context() -> None:
    r = Rig()
    group = IommuGroup(id=1, members=["0000:00:02.0"])
    c = ctx(r)
    idev = c.device_bind(r.k, Dev(group))
    assert idev.id == 1
    assert group.owner is c and group.owner_cnt == 1  # iommu.c:3244-3271
    # a second device of the group in the same context shares the ownership
    idev2 = c.device_bind(r.k, Dev(group, bdf="0000:00:02.1"))
    assert group.owner_cnt == 2 and idev2.id == 2
    # another context is refused (iommu.c:3257-3259)
    other = Rig()
    with pytest.raises(Errno) as e:
        ctx(other).device_bind(r.k, Dev(group))
    assert e.value.code == errno.EPERM
    # the device object holds the iommufd file (device.c:210-211): closing the fd keeps it
    r.k.close(r.fd)
    assert c.objects
    idev.unbind(r.k)
    assert group.owner_cnt == 1
    idev2.unbind(r.k)
    assert group.owner_cnt == 0 and group.owner is None
    assert not c.objects


def test_bind_errors() -> None:
    r = Rig()
    with pytest.raises(Errno) as e:
        ctx(r).device_bind(r.k, Dev(None))
    assert e.value.code == errno.ENODEV and e.value.where.endswith("device.c:72")
    # without interrupt remapping MSIs are not isolated (device.c:186-191)
    r2 = Rig(config=DEFAULT_CONFIG - {"IRQ_REMAP"})
    group = IommuGroup(id=1)
    with pytest.raises(Errno) as e:
        ctx(r2).device_bind(r2.k, Dev(group))
    assert e.value.code == errno.EPERM and group.owner_cnt == 0
    # a group some kernel driver uses (owner_cnt without owner) refuses the claim
    busy = IommuGroup(id=2)
    busy.device_use_default_domain()
    with pytest.raises(Errno) as e:
        ctx(r).device_bind(r.k, Dev(busy))
    assert e.value.code == errno.EPERM and not ctx(r).objects


def test_destroy_of_a_bound_device_is_busy() -> None:
    r = Rig()
    idev = ctx(r).device_bind(r.k, Dev(IommuGroup(id=1)))
    assert r.destroy(idev.id).errno == errno.EBUSY  # users 2: the driver's ref (device.c:216)


def test_attach_to_an_ioas_reserves_the_msi_window_and_the_aperture() -> None:
    r = Rig()
    ioas = r.ioas()
    group = IommuGroup(id=1)
    idev = ctx(r).device_bind(r.k, Dev(group))
    hwpt = idev.attach(r.k, ioas)
    assert hwpt == 3  # ioas 1, device 2, the automatic HWPT 3
    # iopt_table_enforce_dev_resv_regions() (io_pagetable.c:1397-1446) and the
    # aperture end 2^39-1 (io_pagetable.c:1086-1091); 4K from the domain's pgsizes
    assert iova_ranges(r, ioas) == ([(0, MSI[0] - 1), (MSI[1] + 1, (1 << 39) - 1)], PAGE_SIZE)
    buf = r.mmap(PAGE_SIZE)
    assert r.map(ioas, buf, PAGE_SIZE, iova=MSI[0]).errno == errno.EINVAL
    assert r.map(ioas, buf, PAGE_SIZE, iova=1 << 39).errno == errno.EINVAL
    assert r.destroy(hwpt).errno == errno.EBUSY
    idev.detach(r.k)
    # the automatic domain died with its last device; the ranges are back
    assert r.destroy(hwpt).errno == errno.ENOENT
    assert iova_ranges(r, ioas) == ([(0, U64_MAX)], 1)
    idev.unbind(r.k)


def test_attach_fails_when_an_area_sits_in_the_msi_window() -> None:
    r = Rig()
    ioas = r.ioas()
    buf = r.mmap(PAGE_SIZE)
    assert r.map(ioas, buf, PAGE_SIZE, iova=MSI[0]).ok
    idev = ctx(r).device_bind(r.k, Dev(IommuGroup(id=1)))
    with pytest.raises(Errno) as e:
        idev.attach(r.k, ioas)
    assert e.value.code == errno.EADDRINUSE and e.value.where.endswith("io_pagetable.c:812")
    assert iova_ranges(r, ioas) == ([(0, U64_MAX)], 1)
    assert r.unmap(ioas, 0, U64_MAX).ok
    assert idev.attach(r.k, ioas) == 3  # the aborted HWPT's id is free again


def test_attach_errors() -> None:
    r = Rig()
    ioas = r.ioas()
    idev = ctx(r).device_bind(r.k, Dev(IommuGroup(id=1)))
    with pytest.raises(Errno) as e:
        idev.attach(r.k, 99)
    assert e.value.code == errno.ENOENT
    with pytest.raises(Errno) as e:
        idev.attach(r.k, idev.id)
    assert e.value.code == errno.EINVAL and e.value.where.endswith("device.c:786")
    hwpt = idev.attach(r.k, ioas)
    other = r.io("IOMMU_HWPT_ALLOC", dev_id=idev.id, pt_id=ioas).s.out_hwpt_id
    with pytest.raises(Errno) as e:
        idev.attach(r.k, other)  # already on another HWPT (device.c:489-491)
    assert e.value.code == errno.EINVAL
    assert idev.replace(r.k, other) == other
    assert r.destroy(hwpt).errno == errno.ENOENT  # replaced away from the automatic HWPT
    assert idev.replace(r.k, ioas) == hwpt
    idev.detach(r.k)
    with pytest.raises(Errno) as e:
        idev.replace(r.k, ioas)  # not attached (device.c:612-614)
    assert e.value.code == errno.EINVAL


def test_get_hw_info_of_an_intel_device() -> None:
    # intel_iommu_hw_info() (intel/iommu.c:4430-4446): flags ERRATA_772415_SPR17
    r = Rig()
    dev = Dev(IommuGroup(id=1), hw_info_data={"cap_reg": 0x12008C22260286, "ecap_reg": 0xF00F5E})
    idev = ctx(r).device_bind(r.k, dev)
    out = r.mmap(PAGE_SIZE)
    res = r.io("IOMMU_GET_HW_INFO", dev_id=idev.id, data_len=32, data_uptr=out)
    assert res.ok and res.s.out_data_type == u.IOMMU_HW_INFO_TYPE_INTEL_VTD and res.s.data_len == 24
    assert struct.unpack("<IIQQQ", r.k.mm.read(out, 32)) == (1, 0, 0x12008C22260286, 0xF00F5E, 0)
    assert res.s.out_capabilities == 0
    dirty = Dev(IommuGroup(id=2), bdf="0000:00:03.0", hw=IommuHw(dirty_tracking=True))
    idev2 = ctx(r).device_bind(r.k, dirty)
    assert r.io("IOMMU_GET_HW_INFO", dev_id=idev2.id).s.out_capabilities == u.IOMMU_HW_CAP_DIRTY_TRACKING


def test_hwpt_alloc_for_an_intel_device() -> None:
    r = Rig()
    ioas = r.ioas()
    idev = ctx(r).device_bind(r.k, Dev(IommuGroup(id=1)))
    # no nesting in QEMU 7.2's VT-d (intel/iommu.c:3619-3620)
    res = r.io("IOMMU_HWPT_ALLOC", dev_id=idev.id, pt_id=ioas, flags=u.IOMMU_HWPT_ALLOC_NEST_PARENT)
    assert res.where.endswith("intel/iommu.c:3620")
    res = r.io("IOMMU_HWPT_ALLOC", dev_id=idev.id, pt_id=ioas, flags=u.IOMMU_HWPT_ALLOC_DIRTY_TRACKING)
    assert res.where.endswith("hw_pagetable.c:125")
    hwpt = r.io("IOMMU_HWPT_ALLOC", dev_id=idev.id, pt_id=ioas).s.out_hwpt_id
    # nested on a parent that is not a nest parent (hw_pagetable.c:232-234)
    data = r.buffer(bytes(8))
    res = r.io("IOMMU_HWPT_ALLOC", dev_id=idev.id, pt_id=hwpt, data_type=u.IOMMU_HWPT_DATA_VTD_S1, data_len=8,
               data_uptr=data)
    assert res.where.endswith("hw_pagetable.c:234")
    assert idev.attach(r.k, hwpt) == hwpt
    # its domain has no dirty ops
    assert r.io("IOMMU_HWPT_SET_DIRTY_TRACKING", hwpt_id=hwpt, flags=1).errno == errno.EOPNOTSUPP


def test_a_mock_device_skips_an_incompatible_automatic_domain() -> None:
    # device.c:705-716: EINVAL from the attach means "try the next domain";
    # a mock device cannot use the Intel domain (iommu.c:2190-2191)
    r = Rig()
    ioas = r.ioas()
    idev = ctx(r).device_bind(r.k, Dev(IommuGroup(id=1)))
    intel_hwpt = idev.attach(r.k, ioas)
    _, mock_hwpt, _ = r.mock_domain(ioas)
    assert mock_hwpt != intel_hwpt
    res = r.test(st.IOMMU_TEST_OP_MOCK_DOMAIN, intel_hwpt)
    assert res.where.endswith("drivers/iommu/iommu.c:2191")


def test_vfio_compat_ioas_helpers() -> None:
    r = Rig()
    c = ctx(r)
    with pytest.raises(Errno) as e:
        c.vfio_compat_ioas_get_id()
    assert e.value.code == errno.ENODEV
    c.vfio_compat_ioas_create()
    assert c.vfio_compat_ioas_get_id() == 1
    c.vfio_compat_ioas_create()  # already there: the new id is given back
    assert c.vfio_compat_ioas_get_id() == 1 and r.ioas() == 2
    with pytest.raises(Errno) as e:
        c.vfio_compat_set_no_iommu()  # vfio_compat.c:59-66
    assert e.value.code == errno.EINVAL
    r2 = Rig()
    c2 = ctx(r2)
    c2.vfio_compat_set_no_iommu()
    with pytest.raises(Errno) as e:
        c2.vfio_compat_ioas_create()
    assert e.value.code == errno.EINVAL
    assert r2.ioas() == 1


def test_has_group() -> None:
    r = Rig()
    group = IommuGroup(id=1)
    assert not ctx(r).has_group(group)
    idev = ctx(r).device_bind(r.k, Dev(group))
    assert ctx(r).has_group(group)
    idev.unbind(r.k)
    assert not ctx(r).has_group(group)
