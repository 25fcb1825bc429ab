"""What the VFIO machine's rule families share (harness/fuzz/vfio_rules.py): the names bound,
by what they stand for; a device fd, cdev or group remembers its topology role."""

from __future__ import annotations

from .machine import SequenceMachine

_SWEPT_KINDS = ("group", "device", "cdev", "container")


class VfioState(SequenceMachine):
    def __init__(self) -> None:
        super().__init__()
        self.containers: dict[str, str] = {}     # name -> personality
        self.iommufds: list[str] = []
        self.groups: dict[str, str] = {}
        self.devices: dict[str, str] = {}
        self.cdevs: dict[str, str] = {}
        self.ioases: list[str] = []
        self.maps: list[tuple[str, str, int]] = []   # (container, iova, size)
        self.buf_size: dict[str, int] = {}
        self.eventfds: list[str] = []
        # (ioctl, role, index) -> the name an info ioctl's field was saved as (saved_info)
        self.info: dict[tuple[str, str, int], str] = {}

    def fds_of(self, kind: str) -> list[str]:
        return {"group": list(self.groups), "device": list(self.devices) + list(self.cdevs),
                "cdev": list(self.cdevs), "container": list(self.containers)}[kind]

    def any_fd(self) -> list[str]:
        return (list(self.containers) + self.iommufds + list(self.groups) + list(self.devices) + list(self.cdevs)
                + self.eventfds)

    def has_device(self) -> bool:
        return bool(self.devices or self.cdevs)

    def saved_info(self, device: str, ioctl: str, index: int, field: str) -> str:
        """The name of ``field`` of the info ``ioctl`` (VFIO_DEVICE_GET_REGION_INFO's size,
        GET_IRQ_INFO's count) for ``index``: the ioctl saves it the first time (per role and
        index: a function's regions and interrupts do not change)."""
        role = {**self.devices, **self.cdevs}[device]
        key = (ioctl, role, index)
        if key not in self.info:
            n = self.name(field)
            self.do({"ioctl": ioctl, "fd": device, "args": {"index": index}, "save": {n: field}})
            self.info[key] = n
        return self.info[key]
