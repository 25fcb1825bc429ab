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
        self.region_size: dict[tuple[str, int], str] = {}   # (device fd, region index) -> saved size

    def fds_of(self, kind: str) -> list[str]:
        return {"group": list(self.groups), "device": list(self.devices) + list(self.cdevs),
                "cdev": list(self.cdevs), "container": list(self.containers)}[kind]

    def any_fd(self) -> list[str]:
        return list(self.containers) + self.iommufds + list(self.groups) + list(self.devices) + list(self.cdevs)

    def has_device(self) -> bool:
        return bool(self.devices or self.cdevs)
