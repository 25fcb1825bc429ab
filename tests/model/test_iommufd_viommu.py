"""The 7.2 vIOMMU objects over the mock driver (viommu.c, eventq.c, selftest.c of 7.2): what the
cases (cases/mock/viommu-*, vdevice-*, veventq-*, hw-queue-*) cannot observe."""

from __future__ import annotations

import ctypes
import errno
from typing import Any

from test_iommufd_util import PAGE_SIZE, Rig

from harness import uapi
from harness.model.iommufd import viommu as viommu_c
from harness.model.iommufd.main import IommufdCtx
from harness.model.iommufd.pages import pin_count

ABI = uapi.for_series("7.2")
C = ABI.CONSTANTS


def io72(r: Rig, name: str, **fields: Any) -> Any:
    op = ABI.IOCTLS[name]
    assert op.struct is not None
    s = op.struct()
    s.size = op.sizeof
    for key, val in fields.items():
        setattr(s, key, val)
    return r.call(s, op.number)


def test_6_12_has_no_viommu_handlers() -> None:
    # the 6.12 op table is as it was: the numbers 7.2 uses are holes (ENOTTY)
    r = Rig(kernel="6.12.118")
    for name in ("IOMMU_VIOMMU_ALLOC", "IOMMU_VDEVICE_ALLOC", "IOMMU_VEVENTQ_ALLOC", "IOMMU_HW_QUEUE_ALLOC"):
        op = ABI.IOCTLS[name]
        res = r.raw_ioctl(op.number, r.buffer(bytes(ctypes.c_uint32(op.sizeof)) + bytes(op.sizeof - 4)))
        assert res.errno == errno.ENOTTY, name
    # and its IOMMU_TEST_CMD knows no TRIGGER_VEVENT
    assert r.test(C["IOMMU_TEST_OP_TRIGGER_VEVENT"]).errno == errno.EOPNOTSUPP


def test_close_tears_every_object_down() -> None:
    # iommufd_fops_release() (main.c:345-407@7.2): leaves first; the selftest object takes the
    # vDEVICE with it (a tombstone), the HW queue's access unpins its page
    r = Rig(kernel="7.2.13")
    ioas = r.ioas()
    stdev, _, idev = r.mock_domain(ioas)
    buf = r.mmap(PAGE_SIZE)
    assert r.map(ioas, buf, PAGE_SIZE, iova=C["MOCK_APERTURE_START"]).ok
    parent = io72(r, "IOMMU_HWPT_ALLOC", flags=C["IOMMU_HWPT_ALLOC_NEST_PARENT"], dev_id=idev, pt_id=ioas)
    viommu = io72(r, "IOMMU_VIOMMU_ALLOC", type=C["IOMMU_VIOMMU_TYPE_SELFTEST"], dev_id=idev,
                  hwpt_id=parent.s.out_hwpt_id).s.out_viommu_id
    assert io72(r, "IOMMU_VDEVICE_ALLOC", viommu_id=viommu, dev_id=idev, virt_id=0x99).ok
    q = io72(r, "IOMMU_VEVENTQ_ALLOC", viommu_id=viommu, type=C["IOMMU_VEVENTQ_TYPE_SELFTEST"], veventq_depth=2)
    assert q.ok
    assert io72(r, "IOMMU_HW_QUEUE_ALLOC", viommu_id=viommu, type=C["IOMMU_HW_QUEUE_TYPE_SELFTEST"],
                nesting_parent_iova=C["MOCK_APERTURE_START"], length=PAGE_SIZE).ok
    m = r.k.mm.lookup(buf)
    assert m is not None and pin_count(r.k, m, 0) == 1
    ctx = r.k.files[r.fd]
    assert isinstance(ctx, IommufdCtx)
    r.k.close(q.s.out_veventq_fd)
    r.k.close(r.fd)
    assert pin_count(r.k, m, 0) == 0
    assert all(isinstance(o, viommu_c._Tombstone) for o in ctx.objects.values())
    assert stdev not in ctx.objects
