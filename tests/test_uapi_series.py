"""The per-series view of harness.uapi, without kernel headers (test_uapi_layout.py checks
each series against its own tree): which names exist where, per-series sizes, and that an
older layout is a prefix of the newest one."""

from __future__ import annotations

import ctypes

import pytest

from harness import uapi
from harness.uapi import abi

OLD, NEW = "6.12", "7.2"


@pytest.mark.parametrize(("release", "series"), [
    ("6.12", "6.12"), ("6.12.118", "6.12"), ("6.12.0-rc1", "6.12"), ("6.12.118-vfioconf+", "6.12"),
    ("7.2", "7.2"), ("7.2.13", "7.2"), ("7.2.0-rc1", "7.2"),
    ("7.3.0-rc2", "7.2"),  # newer than the newest declared series: read as the newest
    ("6.13", "6.12"), ("6.15.2", "6.12"), ("7.1.9", "6.12"), ("6.120", "6.12"),  # between: the older one's
])
def test_series_of_release(release: str, series: str) -> None:
    assert uapi.series_of(release) == series


@pytest.mark.parametrize("release", ["6.1.0", "5.15.3", "6.11"])
def test_a_release_older_than_every_series_is_an_error(release: str) -> None:
    with pytest.raises(ValueError, match="older than every declared"):
        uapi.for_series(release)


@pytest.mark.parametrize(("name", "on_old", "on_new"), [
    ("IOMMU_IOAS_MAP", True, True),
    ("IOMMU_VIOMMU_ALLOC", False, True),
    ("IOMMU_VDEVICE_ALLOC", False, True),
    ("IOMMU_VEVENTQ_ALLOC", False, True),
    ("IOMMU_HW_QUEUE_ALLOC", False, True),
    ("IOMMU_IOAS_MAP_FILE", False, True),
    ("IOMMU_IOAS_CHANGE_PROCESS", False, True),
    ("IOMMU_HWPT_ALLOC_PASID", False, True),
    ("IOMMU_HW_INFO_FLAG_INPUT_TYPE", False, True),
    ("IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED", False, True),
    ("IOMMU_TEST_OP_PASID_ATTACH", False, True),
    ("VFIO_DEVICE_BIND_FLAG_TOKEN", False, True),
    ("VFIO_DEVICE_ATTACH_PASID", False, True),
    ("VFIO_DEVICE_FEATURE_DMA_BUF", False, True),
    ("VFIO_DEVICE_FEATURE_MIG_PRECOPY_INFOv2", False, True),
    ("VFIO_PRECOPY_INFO_REINIT", False, True),
    ("VFIO_TYPE1_NESTING_IOMMU", True, False),
    ("MOCK_FLAGS_DEVICE_HUGE_IOVA", True, False),
    ("iommu_viommu_alloc", False, True),
    ("vfio_device_bind_iommufd", True, True),
    ("vfio_device_bind_iommufd.token_uuid_ptr", False, True),
    ("vfio_device_bind_iommufd.out_devid", True, True),
    ("iommu_hw_info.in_data_type", False, True),
    ("iommu_hw_info.out_data_type", True, True),
    ("iommu_test_cmd.pasid_attach", False, True),
])
def test_available(name: str, on_old: bool, on_new: bool) -> None:
    assert uapi.available(name, "6.12.118") is on_old
    assert uapi.available(name, "7.2.0-rc1") is on_new
    if "." not in name:
        assert (name in uapi.CONSTANTS or name in uapi.STRUCTS) is on_old


def test_available_needs_a_declared_name() -> None:
    with pytest.raises(KeyError, match="not a declared"):
        uapi.available("IOMMU_NO_SUCH_THING", "7.2")
    with pytest.raises(KeyError):
        uapi.available("vfio_device_bind_iommufd.no_such_member", "7.2")


@pytest.mark.parametrize(("name", "old", "new"), [
    ("vfio_device_bind_iommufd", 16, 24),
    ("VFIO_DEVICE_ATTACH_IOMMUFD_PT", 12, 16),
    ("vfio_device_detach_iommufd_pt", 8, 12),
    ("iommu_hwpt_selftest", 4, 8),
    ("iommu_hw_info", 40, 40),
    ("iommu_test_cmd", 72, 72),
])
def test_sizeof_per_series(name: str, old: int, new: int) -> None:
    assert (uapi.sizeof(name, "6.12.118"), uapi.sizeof(name, "7.2.13")) == (old, new)


def test_values_per_series() -> None:
    assert uapi.for_series(OLD).constant("VFIO_AP_NUM_IRQS") == uapi.constant("VFIO_AP_NUM_IRQS") == 1
    assert uapi.for_series(NEW).constant("VFIO_AP_NUM_IRQS") == uapi.every_series().constant("VFIO_AP_NUM_IRQS") == 2


def test_spans_and_values_name_declarations() -> None:
    for name, span in abi.SPANS.items():
        assert uapi.available(name, span.since or OLD) in (True, False)  # raises if undeclared
        assert span.since in (None, *abi.SERIES) and span.until in (None, *abi.SERIES)
        assert any(s in span for s in abi.SERIES), f"{name} exists in no series"
    for name, by in abi.VALUES.items():
        assert abi.DECLARED_CONSTANTS[name] == by[abi.DEFAULT_SERIES]


def test_the_registries_are_the_default_series() -> None:
    """What callers naming no series get is 6.12, object for object: the declared classes and
    ioctls, nothing 7.2 adds, what 7.2 removed."""
    view = uapi.for_series(abi.DEFAULT_SERIES)
    assert (uapi.IOCTLS, uapi.STRUCTS, uapi.CONSTANTS) == (view.IOCTLS, view.STRUCTS, view.CONSTANTS)
    assert all(cls is abi.DECLARED_STRUCTS[n] for n, cls in uapi.STRUCTS.items())
    assert "IOMMU_VIOMMU_ALLOC" not in uapi.IOCTLS and "VFIO_TYPE1_NESTING_IOMMU" in uapi.CONSTANTS
    assert ctypes.sizeof(uapi.vfio.vfio_device_bind_iommufd) == 16


def test_every_series_has_every_name_in_its_newest_layout() -> None:
    every = uapi.every_series()
    assert set(every.IOCTLS) == set(abi.DECLARED_IOCTLS) and set(every.CONSTANTS) == set(abi.DECLARED_CONSTANTS)
    assert every.STRUCTS["vfio_device_bind_iommufd"] is uapi.for_series(NEW).STRUCTS["vfio_device_bind_iommufd"]
    assert every.sizeof("iommu_hwpt_selftest") == 8
    assert every.available("VFIO_TYPE1_NESTING_IOMMU") and every.available("IOMMU_HW_QUEUE_ALLOC")


@pytest.mark.parametrize("series", abi.SERIES)
def test_older_layout_is_a_prefix_of_the_newest(series: str) -> None:
    """A member present in two series sits at the same offset with the same size in both, so
    the same bytes mean the same on every kernel; what a series lacks is only at the end."""
    view = uapi.for_series(series)
    bad = []
    for name, cls in view.STRUCTS.items():
        newest = {p: (off, size) for p, off, size, _ in uapi.fields(uapi.every_series().STRUCTS[name])}
        for p, off, size, _ in uapi.fields(cls):
            if newest.get(p) != (off, size):
                bad.append(f"{series} {name}.{p}: {(off, size)}, newest {newest.get(p)}")
        kept = {p: off for p, off, *_ in uapi.fields(cls)}
        # A member the series lacks is past its end, or a union alternative of one it has.
        bad += [f"{series} {name}: lacks {p} inside its {ctypes.sizeof(cls)} bytes" for p, (off, _) in newest.items()
                if p not in kept and off < ctypes.sizeof(cls) and off not in kept.values()]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("series", abi.SERIES)
def test_ioctls_per_series(series: str) -> None:
    view = uapi.for_series(series)
    bad = []
    for name, io in view.IOCTLS.items():
        if not io.handler:
            bad.append(f"{series} {name}: no handler citation")
        if io.struct is not None:
            assert io.min_size is not None
            if not 0 < io.min_size <= io.sizeof:
                bad.append(f"{series} {name}: min_size {io.min_size}, sizeof {io.sizeof}")
            members = {p for p, *_ in uapi.fields(io.struct)}
            bad += [f"{series} {name}: pointer {p} not a member" for p in io.pointers if p not in members]
        for flag, size in io.flag_min_sizes.items():
            if flag not in view.CONSTANTS or not (io.min_size or 0) < size <= io.sizeof:
                bad.append(f"{series} {name}: flag_min_sizes {flag}={size}")
    assert not bad, "\n".join(bad)


def test_older_series_drops_what_it_lacks() -> None:
    old, new = uapi.for_series(OLD), uapi.for_series(NEW)
    assert "IOMMU_VIOMMU_ALLOC" not in old.IOCTLS and "IOMMU_VIOMMU_ALLOC" in new.IOCTLS
    assert old.ioctl("VFIO_DEVICE_BIND_IOMMUFD").pointers == {}
    assert set(new.ioctl("VFIO_DEVICE_BIND_IOMMUFD").pointers) == {"token_uuid_ptr"}
    assert old.ioctl("VFIO_DEVICE_ATTACH_IOMMUFD_PT").flag_min_sizes == {}
    assert new.ioctl("VFIO_DEVICE_ATTACH_IOMMUFD_PT").flag_min_sizes == {"VFIO_DEVICE_ATTACH_PASID": 16}
    assert old.ioctl("IOMMU_GET_HW_INFO").handler == "drivers/iommu/iommufd/device.c:1309"
    assert new.ioctl("IOMMU_GET_HW_INFO").handler == "drivers/iommu/iommufd/device.c:1545"
    assert abi.DECLARED_IOCTLS["IOMMU_VIOMMU_ALLOC"].handler == ""  # ``handler`` is the 6.12 line
    assert "in_data_type" not in uapi.members(old.struct("iommu_hw_info"))
    assert "pasid_attach" not in uapi.members(old.struct("iommu_test_cmd"))


def test_encode_decode_in_an_older_layout() -> None:
    fields = {"argsz": 16, "flags": 0, "iommufd": 3}
    old = uapi.encode(uapi.for_series(OLD).struct("vfio_device_bind_iommufd"), fields)
    new = uapi.encode(uapi.for_series(NEW).struct("vfio_device_bind_iommufd"), fields)
    assert len(old) == 16 and len(new) == 24 and new[:16] == old
    assert "token_uuid_ptr" not in uapi.decode(uapi.for_series(OLD).struct("vfio_device_bind_iommufd"), new)
    with pytest.raises(KeyError, match="no field 'token_uuid_ptr'"):
        uapi.encode(uapi.for_series(OLD).struct("vfio_device_bind_iommufd"), {"token_uuid_ptr": 1})
