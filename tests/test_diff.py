"""Trace diffs: target-chosen values are renamed by declared rules, real differences are not."""

from __future__ import annotations

from harness.runner.diff import diff
from harness.runner.normalise import role_of
from harness.runner.trace import StepRecord, Trace

FIXED = 1  # IOMMU_IOAS_MAP_FIXED_IOVA


def trace(backend: str, fd: int, ioas: int, va: int, iova: int, flags: int = 0, errno: str | None = None) -> Trace:
    t = Trace("c", backend)
    t.steps = [
        StepRecord(0, 1, "open", "open /dev/iommu", request={"path": "/dev/iommu"}, ret=fd),
        StepRecord(1, 2, "ioctl", "IOMMU_IOAS_ALLOC", request={"fd": fd, "size": 12}, out={"out_ioas_id": ioas}),
        StepRecord(2, 3, "mmap", "mmap", request={"length": 4096}, ret=va),
        StepRecord(3, 4, "ioctl", "IOMMU_IOAS_MAP", errno=errno,
                   request={"fd": fd, "ioas_id": ioas, "user_va": va, "flags": flags | 4, "iova": 0},
                   out={"ioas_id": ioas, "user_va": va, "iova": iova, "flags": flags | 4}),
    ]
    return t


def test_ids_fds_addresses_and_auto_iovas_are_renamed() -> None:
    d = diff(trace("kernel", 5, 2, 0x7F12_3400_0000, 0x10_0000),
             trace("model", 3, 1, 0x7F00_0000_0000, 0x20_0000))
    assert d.first is None, d.summary()


def test_a_fixed_iova_is_compared_as_is() -> None:
    d = diff(trace("kernel", 3, 1, 0x7F00_0000_0000, 0x10_0000, flags=FIXED),
             trace("model", 3, 1, 0x7F00_0000_0000, 0x20_0000, flags=FIXED))
    assert d.first is not None
    assert (d.first.step, d.first.what) == (3, "out.iova")


def test_errno_divergence_is_reported_first_and_outputs_skipped() -> None:
    d = diff(trace("kernel", 3, 1, 0x7F00_0000_0000, 0, errno="EINVAL"),
             trace("model", 3, 1, 0x7F00_0000_0000, 0, errno="EEXIST"))
    assert [x.what for x in d.divergences] == ["errno"]
    assert "EINVAL" in d.summary() and "EEXIST" in d.summary()


def test_renaming_keeps_identity() -> None:
    # The same object used twice must be the same object on the other side too.
    k = trace("kernel", 3, 1, 0x7F00_0000_0000, 0)
    m = trace("model", 3, 1, 0x7F00_0000_0000, 0)
    m.steps[3].request["ioas_id"] = 7  # the model maps into a different IOAS than it allocated
    d = diff(k, m)
    assert d.first is not None and d.first.what == "request.ioas_id"


def test_length_mismatch() -> None:
    k = trace("kernel", 3, 1, 0x7F00_0000_0000, 0)
    m = trace("model", 3, 1, 0x7F00_0000_0000, 0)
    m.steps.pop()
    assert diff(k, m).first.what == "length"  # type: ignore[union-attr]


def test_enum_fields_are_not_ids() -> None:
    s = StepRecord(0, 1, "ioctl", "IOMMU_OPTION")
    assert role_of(s, "option_id") is None
    assert role_of(s, "object_id") == "id"
    assert role_of(StepRecord(0, 1, "ioctl", "IOMMU_HWPT_ALLOC"), "data_type") is None


def test_a_saved_automatic_iova_is_followed_into_later_requests() -> None:
    def with_unmap(backend: str, iova: int) -> Trace:
        t = trace(backend, 3, 1, 0x7F00_0000_0000, iova)
        t.steps.append(StepRecord(4, 5, "ioctl", "IOMMU_IOAS_UNMAP", request={"ioas_id": 1, "iova": iova}))
        return t

    assert diff(with_unmap("kernel", 0x1000), with_unmap("model", 0x2000)).first is None
    # A literal IOVA no allocation produced is the case's own, and compared as is.
    k, m = with_unmap("kernel", 0x1000), with_unmap("model", 0x1000)
    m.steps[4].request["iova"] = 0x5000
    assert diff(k, m).first.what == "request.iova"  # type: ignore[union-attr]


def _irq_trace(backend: str, efd: int, data_fd: int, flags: int) -> Trace:
    t = Trace("c", backend)
    t.steps = [
        StepRecord(0, 1, "eventfd", "eventfd", request={"initval": 0}, ret=efd),
        StepRecord(1, 2, "ioctl", "VFIO_DEVICE_SET_IRQS",
                   request={"flags": flags, "count": 1, "data": data_fd.to_bytes(4, "little", signed=True).hex()}),
    ]
    return t


def test_eventfds_in_a_set_irqs_data_array_are_renamed() -> None:
    eventfd_trigger = (1 << 2) | (1 << 5)  # VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER
    assert diff(_irq_trace("kernel", 7, 7, eventfd_trigger), _irq_trace("model", 6, 6, eventfd_trigger)).first is None
    # The model passing some other fd than the eventfd it made is a real difference.
    d = diff(_irq_trace("kernel", 7, 7, eventfd_trigger), _irq_trace("model", 6, 5, eventfd_trigger))
    assert d.first is not None and d.first.what == "request.data"


def test_set_irqs_bool_data_is_compared_as_is() -> None:
    bool_trigger = (1 << 1) | (1 << 5)  # VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_ACTION_TRIGGER
    d = diff(_irq_trace("kernel", 7, 7, bool_trigger), _irq_trace("model", 6, 6, bool_trigger))
    assert d.first is not None and d.first.what == "request.data"


def test_pointer_fields_named_ptr_are_addresses() -> None:
    """7.2's VFIO_DEVICE_BIND_IOMMUFD.token_uuid_ptr points at the VF token in user memory."""
    bind = StepRecord(2, 3, "ioctl", "VFIO_DEVICE_BIND_IOMMUFD", request={"flags": 1, "token_uuid_ptr": 0x7F00_0000})
    assert role_of(bind, "request.token_uuid_ptr") == "addr"
    assert role_of(bind, "request.flags") is None


def test_every_out_fd_field_is_a_file_descriptor() -> None:
    """out_fault_fd (6.12), out_veventq_fd (7.2): fds the kernel installed."""
    for ioctl, name in (("IOMMU_FAULT_QUEUE_ALLOC", "out_fault_fd"), ("IOMMU_VEVENTQ_ALLOC", "out_veventq_fd")):
        step = StepRecord(0, 1, "ioctl", ioctl, out={name: 4})
        assert role_of(step, f"out.{name}") == "fd", name


def _write_fd_trace(backend: str, fd: int, written: int) -> Trace:
    t = Trace("c", backend)
    t.steps = [
        StepRecord(0, 1, "open", "open /dev/iommu", request={"path": "/dev/iommu"}, ret=fd),
        StepRecord(1, 2, "write_mem", "write_mem", request={"addr": 0x7F00_0000_0000, "fd": written}),
    ]
    return t


def test_an_fd_number_written_to_memory_is_renamed() -> None:
    assert diff(_write_fd_trace("kernel", 9, 9), _write_fd_trace("model", 3, 3)).first is None
    d = diff(_write_fd_trace("kernel", 9, 9), _write_fd_trace("model", 3, 4))
    assert d.first is not None and d.first.what == "request.fd"
