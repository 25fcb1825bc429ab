"""The VFIO machine: containers (both personalities), groups, device fds, cdevs bound to an
iommufd, type1 DMA maps, every argsz-sized VFIO ioctl at its argsz boundaries and with raw
bytes, and sysfs moves of the non-viable group's kernel-driver sibling (harness/fuzz/machine.py).

It needs a target with a vIOMMU and vfio-pci functions for two topology roles (``dev``: an
isolated function, ``g``: a function whose group has one kernel-driver sibling), bound once
per backend as a case's ``requires.topology`` binds them.  Left out on purpose: the
vfio-pci function itself is never unbound (its remove waits for every open device fd:
the target would hang), VFIO_DEVICE_PCI_HOT_RESET is not sent (a real bus reset per
example), and SR-IOV (sriov_numvfs writes take seconds under TCG) is the corpus's.
"""

from __future__ import annotations

from typing import Any

from .. import uapi
from ..uapi.vfio import VFIO_PCI_NUM_IRQS, VFIO_PCI_NUM_REGIONS
from .machine import (
    HUGE,
    PAGE,
    U64_MAX,
    Choices,
    MachineKind,
    hex_,
    ints,
    one_of,
    precondition,
    register,
    rule,
    user_va,
)
from .vfio_config_rules import ConfigRules
from .vfio_irq_rules import IrqRules
from .vfio_region_rules import RegionRules

ROLES = {"dev": "isolated", "g": "nonviable"}
CONTAINER_NODES = {"legacy": "/dev/vfio/vfio", "compat": "/dev/iommu"}

# The ioctls the argsz rules sweep, by the kind of fd that takes them.  Left out:
# VFIO_DEVICE_PCI_HOT_RESET (see above), the sPAPR/EEH ones (no such IOMMU here).
_SWEPT = {
    "group": ("VFIO_GROUP_GET_STATUS",),
    "device": ("VFIO_DEVICE_GET_INFO", "VFIO_DEVICE_GET_REGION_INFO", "VFIO_DEVICE_GET_IRQ_INFO",
               "VFIO_DEVICE_SET_IRQS", "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO", "VFIO_DEVICE_QUERY_GFX_PLANE",
               "VFIO_DEVICE_IOEVENTFD", "VFIO_DEVICE_FEATURE"),
    "cdev": ("VFIO_DEVICE_BIND_IOMMUFD", "VFIO_DEVICE_ATTACH_IOMMUFD_PT", "VFIO_DEVICE_DETACH_IOMMUFD_PT"),
    "container": ("VFIO_IOMMU_GET_INFO", "VFIO_IOMMU_MAP_DMA", "VFIO_IOMMU_UNMAP_DMA", "VFIO_IOMMU_DIRTY_PAGES"),
}
EXTENSIONS = ("VFIO_TYPE1_IOMMU", "VFIO_SPAPR_TCE_IOMMU", "VFIO_TYPE1v2_IOMMU", "VFIO_DMA_CC_IOMMU", "VFIO_EEH",
              "VFIO_TYPE1_NESTING_IOMMU", "VFIO_SPAPR_TCE_v2_IOMMU", "VFIO_NOIOMMU_IOMMU", "VFIO_UNMAP_ALL",
              "VFIO_UPDATE_VADDR", "0", "11", "U32_MAX")

PAGES = ints(0x100, 0x4000, PAGE)
IOVA_BAD = one_of(lambda c: PAGES(c) + c.pick((1, 0x800, PAGE - 1)),
                  0, U64_MAX - PAGE + 1, U64_MAX, 1 << 63, 0xFEE00000)
SIZE_BAD = one_of(0, 1, PAGE + 1, U64_MAX & ~(PAGE - 1), 1 << 40)
MAP_FLAGS_OK = one_of("VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE", "VFIO_DMA_MAP_FLAG_READ")
MAP_FLAGS_BAD = one_of("0", "VFIO_DMA_MAP_FLAG_WRITE", "VFIO_DMA_MAP_FLAG_VADDR", "VFIO_DMA_MAP_FLAG_READ | (1 << 8)")


class VfioMachine(ConfigRules, RegionRules, IrqRules):
    # -- helpers -------------------------------------------------------------
    def swept_kinds(self) -> list[str]:
        return [k for k in _SWEPT if self.fds_of(k)]

    def role(self, c: Choices) -> str:
        return c.pick(sorted(ROLES))

    def _mmap(self, pages: int) -> None:
        n = self.name("buf")
        self.do({"mmap": pages * PAGE, "align": HUGE, "as": n})
        self.buf_size[n] = pages * PAGE

    @rule
    def mmap(self, c: Choices) -> None:
        self._mmap(c.between(1, 8))

    # -- containers and groups ---------------------------------------------
    def setup(self, c: Choices) -> None:
        """Where a sequence starts, so deep states are a few rules away: a container of either
        personality and a user buffer; ``attached``: the isolated group set to it with a type1v2
        IOMMU (the vfio-container-attached fixture); ``device``: its device fd too; ``cdev``:
        instead, the isolated function's cdev bound to an iommufd and attached to an IOAS;
        ``bus``: as ``device``, but of the non-viable group's function (which a bus reset can
        reach: GET_PCI_HOT_RESET_INFO answers) after its kernel-driver sibling's unbind."""
        personality = c.pick(sorted(CONTAINER_NODES))
        start = c.pick(("container", "attached", "device", "cdev", "bus"))
        self._open_container(personality)
        self._mmap(4)
        if start in ("attached", "device", "bus"):
            role = "g" if start == "bus" else "dev"
            if start == "bus":
                self._move_sibling("unbind")
            group, container = self.name("group"), next(iter(self.containers))
            self.do({"open": f"/dev/vfio/${{{role}.group}}", "as": group})
            self.groups[group] = role
            self.do({"ioctl": "VFIO_GROUP_SET_CONTAINER", "fd": group, "int": f"${container}"})
            self.do({"ioctl": "VFIO_SET_IOMMU", "fd": container, "value": "VFIO_TYPE1v2_IOMMU"})
            if start != "attached":
                self._get_device_fd(group, f"${{{role}.bdf}}", role)
        elif start == "cdev":
            cdev, iommufd, ioas = self.name("cdev"), self.name("iommufd"), self.name("ioas")
            self.do({"open": "${dev.cdev}", "as": cdev})
            self.do({"open": "/dev/iommu", "as": iommufd})
            self.do({"ioctl": "VFIO_DEVICE_BIND_IOMMUFD", "fd": cdev, "args": {"iommufd": f"${iommufd}"}})
            self.do({"ioctl": "IOMMU_IOAS_ALLOC", "fd": iommufd, "save": {ioas: "out_ioas_id"}})
            self.do({"ioctl": "VFIO_DEVICE_ATTACH_IOMMUFD_PT", "fd": cdev, "args": {"pt_id": f"${ioas}"}})
            self.cdevs[cdev] = "dev"
            self.iommufds.append(iommufd)
            self.ioases.append(ioas)

    def _open_container(self, personality: str) -> None:
        n = self.name("container")
        if self.do({"open": CONTAINER_NODES[personality], "as": n}):
            self.containers[n] = personality

    @precondition(lambda self: len(self.containers) < 2)
    @rule
    def open_container(self, c: Choices) -> None:
        self._open_container(c.pick(sorted(CONTAINER_NODES)))

    @precondition(lambda self: len(self.groups) < 3)
    @rule
    def open_group(self, c: Choices) -> None:
        self._open_node(c, "group", "/dev/vfio/", self.groups)

    def _open_node(self, c: Choices, attr: str, prefix: str, table: dict[str, str]) -> None:
        """Open a role's group (``${dev.group}``) or cdev (``${dev.cdev}``)."""
        n, role = self.name(attr), self.role(c)
        if self.do({"open": f"{prefix}${{{role}.{attr}}}", "as": n}):     # a group opens once: EBUSY
            table[n] = role

    @precondition(lambda self: self.groups)
    @rule
    def group_get_status(self, c: Choices) -> None:
        self.do({"ioctl": "VFIO_GROUP_GET_STATUS", "fd": c.pick(list(self.groups))})

    @precondition(lambda self: self.groups and self.containers)
    @rule
    def group_set_container(self, c: Choices) -> None:
        f = self.fields(c, ["container"])
        group = c.pick(list(self.groups))
        container = f.get("container", one_of(*(f"${n}" for n in self.containers)),
                          one_of(*(f"${n}" for n in self.any_fd() if n not in self.containers), "-1", "999"))
        self.do({"ioctl": "VFIO_GROUP_SET_CONTAINER", "fd": group, "int": container})

    @precondition(lambda self: self.groups)
    @rule
    def group_unset_container(self, c: Choices) -> None:
        self.do({"ioctl": "VFIO_GROUP_UNSET_CONTAINER", "fd": c.pick(list(self.groups))})

    @precondition(lambda self: self.groups)
    @rule
    def group_get_device_fd(self, c: Choices) -> None:
        group = c.pick(list(self.groups))
        role = self.groups[group]
        f = self.fields(c, ["name"])
        other = next(r for r in ROLES if r != role)
        self._get_device_fd(group, f.get("name", f"${{{role}.bdf}}", one_of(f"${{{other}.bdf}}", "0000:00:00.0", "x")),
                            role)

    def _get_device_fd(self, group: str, name: str, role: str) -> None:
        """A device fd of ``group``'s function ``role``, kept only if the call gave one (a wrong
        name, a group without an IOMMU or not viable refuse it)."""
        n = self.name("device")
        if self.do({"ioctl": "VFIO_GROUP_GET_DEVICE_FD", "fd": group, "string": name, "as": n}):
            self.devices[n] = role

    # -- the container's IOMMU ----------------------------------------------
    @precondition(lambda self: self.containers)
    @rule
    def set_iommu(self, c: Choices) -> None:
        f = self.fields(c, ["type"])
        kind = f.get("type", one_of("VFIO_TYPE1v2_IOMMU", "VFIO_TYPE1_IOMMU"),
                     one_of("0", "VFIO_SPAPR_TCE_IOMMU", "VFIO_NOIOMMU_IOMMU", "VFIO_UNMAP_ALL", "99"))
        self.do({"ioctl": "VFIO_SET_IOMMU", "fd": c.pick(list(self.containers)), "value": kind})

    @precondition(lambda self: self.containers)
    @rule
    def check_extension(self, c: Choices) -> None:
        """VFIO_CHECK_EXTENSION of an extension, or (one time in fourteen) VFIO_GET_API_VERSION."""
        extension = c.pick((*EXTENSIONS, "api_version"))
        container = c.pick(list(self.containers))
        if extension == "api_version":
            self.do({"ioctl": "VFIO_GET_API_VERSION", "fd": container})
        else:
            self.do({"ioctl": "VFIO_CHECK_EXTENSION", "fd": container, "value": extension})

    @precondition(lambda self: self.containers)
    @rule
    def iommu_get_info(self, c: Choices) -> None:
        """minsz, sizeof (0 stands for it: argsz as the struct has it) or room for every capability."""
        argsz = c.pick((16, 0, 4096))
        raw: dict[str, Any] = {"ioctl": "VFIO_IOMMU_GET_INFO", "fd": c.pick(list(self.containers))}
        if argsz:
            raw["args"] = {"argsz": argsz}
            if argsz > uapi.ioctl("VFIO_IOMMU_GET_INFO").sizeof:
                raw["buffer"] = {"length": argsz}
        self.do(raw)

    @precondition(lambda self: self.containers and self.buf_size)
    @rule
    def map_dma(self, c: Choices) -> None:
        f = self.fields(c, ["flags", "vaddr", "iova", "iova", "size"])
        container = c.pick(list(self.containers))
        buf = c.pick(list(self.buf_size))
        room = self.buf_size[buf] // PAGE
        size = f.get("size", ints(1, room, PAGE), SIZE_BAD)
        iova = f.get("iova", PAGES, IOVA_BAD)
        offset = f.get("vaddr", 0, one_of(0x800, 0x10000000))
        self.do({"ioctl": "VFIO_IOMMU_MAP_DMA", "fd": container,
                 "args": {"flags": f.get("flags", MAP_FLAGS_OK, MAP_FLAGS_BAD), "vaddr": user_va(buf, offset),
                          "iova": hex_(iova), "size": hex_(size)}})
        self.maps.append((container, hex_(iova), size))

    @precondition(lambda self: self.maps)
    @rule
    def unmap_dma(self, c: Choices) -> None:
        """Of an earlier map: the whole of it, or its first half-size (a hole type1v2 refuses)."""
        part = c.pick((1, 2))
        container, iova, size = c.pick(self.maps)
        f = self.fields(c, ["iova", "size", "flags"])
        self.do({"ioctl": "VFIO_IOMMU_UNMAP_DMA", "fd": container,
                 "args": {"iova": f.get("iova", iova, lambda c: hex_(IOVA_BAD(c))),
                          "size": hex_(f.get("size", max(size // part, PAGE), SIZE_BAD)),
                          "flags": f.get("flags", 0, one_of("VFIO_DMA_UNMAP_FLAG_VADDR", "1 << 7"))}})

    @precondition(lambda self: self.containers)
    @rule
    def unmap_all(self, c: Choices) -> None:
        self.do({"ioctl": "VFIO_IOMMU_UNMAP_DMA", "fd": c.pick(list(self.containers)),
                 "args": {"flags": "VFIO_DMA_UNMAP_FLAG_ALL", "iova": 0, "size": 0}})

    # -- device fds, from a group or a cdev -----------------------------------
    @precondition(lambda self: self.devices or self.cdevs)
    @rule
    def device_get_info(self, c: Choices) -> None:
        self.do({"ioctl": "VFIO_DEVICE_GET_INFO", "fd": c.pick(self.fds_of("device"))})

    @precondition(lambda self: self.devices or self.cdevs)
    @rule
    def device_get_region_info(self, c: Choices) -> None:
        caps = c.coin()
        f = self.fields(c, ["index"])
        index = f.get("index", ints(0, VFIO_PCI_NUM_REGIONS - 1), one_of(VFIO_PCI_NUM_REGIONS, 100, (1 << 32) - 1))
        raw: dict[str, Any] = {"ioctl": "VFIO_DEVICE_GET_REGION_INFO", "fd": c.pick(self.fds_of("device")),
                               "args": {"index": index}}
        if caps:
            raw["args"]["argsz"] = 1024
            raw["buffer"] = {"length": 1024}
        self.do(raw)

    @precondition(lambda self: self.devices or self.cdevs)
    @rule
    def device_get_irq_info(self, c: Choices) -> None:
        f = self.fields(c, ["index"])
        index = f.get("index", ints(0, VFIO_PCI_NUM_IRQS - 1), one_of(VFIO_PCI_NUM_IRQS, (1 << 32) - 1))
        self.do({"ioctl": "VFIO_DEVICE_GET_IRQ_INFO", "fd": c.pick(self.fds_of("device")),
                 "args": {"index": index}})

    @precondition(lambda self: self.devices or self.cdevs)
    @rule
    def device_reset(self, c: Choices) -> None:
        self.do({"ioctl": "VFIO_DEVICE_RESET", "fd": c.pick(self.fds_of("device"))})

    @precondition(lambda self: len(self.cdevs) < 2)
    @rule
    def open_cdev(self, c: Choices) -> None:
        self._open_node(c, "cdev", "", self.cdevs)

    @precondition(lambda self: len(self.iommufds) < 2)
    @rule
    def open_iommufd(self, c: Choices) -> None:
        n = self.name("iommufd")
        if self.do({"open": "/dev/iommu", "as": n}):
            self.iommufds.append(n)

    @precondition(lambda self: self.iommufds or "compat" in self.containers.values())
    @rule
    def ioas_alloc(self, c: Choices) -> None:
        n = self.name("ioas")
        fd = c.pick(self.iommufds + [c for c, p in self.containers.items() if p == "compat"])
        if self.do({"ioctl": "IOMMU_IOAS_ALLOC", "fd": fd, "save": {n: "out_ioas_id"}}):
            self.ioases.append(n)

    @precondition(lambda self: self.cdevs and (self.iommufds or self.containers))
    @rule
    def bind_iommufd(self, c: Choices) -> None:
        """To an iommufd (a compat container is one too), or to the wrong kind of fd."""
        f = self.fields(c, ["iommufd", "flags"])
        ictxs = self.iommufds + [c for c, p in self.containers.items() if p == "compat"]
        iommufd = f.get("iommufd", one_of(*([f"${i}" for i in ictxs] or ["-1"])),
                        one_of(*(f"${n}" for n in self.any_fd() if n not in ictxs), "-1"))
        self.do({"ioctl": "VFIO_DEVICE_BIND_IOMMUFD", "fd": c.pick(list(self.cdevs)),
                 "args": {"iommufd": iommufd, "flags": f.get("flags", 0, 1)}})

    @precondition(lambda self: self.cdevs and self.ioases)
    @rule
    def attach_pt(self, c: Choices) -> None:
        f = self.fields(c, ["pt_id", "flags"])
        ioas = c.pick(self.ioases)
        self.do({"ioctl": "VFIO_DEVICE_ATTACH_IOMMUFD_PT", "fd": c.pick(list(self.cdevs)),
                 # the invalid flag is one no series defines (bit 0 is 7.2's VFIO_DEVICE_ATTACH_PASID)
                 "args": {"pt_id": f.obj("pt_id", ioas), "flags": f.get("flags", 0, 1 << 1)}})

    @precondition(lambda self: self.cdevs)
    @rule
    def detach_pt(self, c: Choices) -> None:
        self.do({"ioctl": "VFIO_DEVICE_DETACH_IOMMUFD_PT", "fd": c.pick(list(self.cdevs))})

    # -- argsz and raw bytes ---------------------------------------------------
    @precondition(lambda self: self.swept_kinds())
    @rule
    def argsz_boundary(self, c: Choices) -> None:
        """A VFIO ioctl its fd takes, all fields zero but argsz, which sits at a boundary of
        the struct: below minsz, minsz, the whole struct, a zero or non-zero tail, or a
        size past the buffer (whose end is a guard page)."""
        kind = c.pick(self.swept_kinds())
        io = uapi.ioctl(c.pick(_SWEPT[kind]))
        assert io.min_size is not None
        argsz, tail = c.pick((
            (0, ""), (io.min_size - 1, ""), (io.min_size, ""), (io.sizeof, ""), (io.sizeof + 8, "00" * 8),
            (io.sizeof + 8, "00" * 7 + "01"), (io.sizeof + 64, ""), (U64_MAX >> 32, "")))
        raw: dict[str, Any] = {"ioctl": io.name, "fd": c.pick(self.fds_of(kind)), "args": {"argsz": argsz}}
        if tail:
            raw["tail"] = {"hex": tail}
        self.do(raw)

    @precondition(lambda self: self.swept_kinds())
    @rule
    def raw_bytes(self, c: Choices) -> None:
        """A swept ioctl's number with random argument bytes behind an argsz at a boundary."""
        kind = c.pick(self.swept_kinds())
        io = uapi.ioctl(c.pick(_SWEPT[kind]))
        assert io.min_size is not None
        body = c.blob(io.sizeof + 8)
        argsz = c.pick((len(body) + 4, io.min_size, io.sizeof))
        self.do({"raw_ioctl": hex(io.number), "fd": c.pick(self.fds_of(kind)),
                 "hex": (argsz.to_bytes(4, "little") + body).hex()})

    # -- sysfs moves and close --------------------------------------------------
    @rule
    def move_sibling(self, c: Choices) -> None:
        """Unbind the non-viable group's kernel-driver sibling (the group becomes viable), or
        bind it back (the group's claim on DMA ownership decides: vfio_group holds it)."""
        self._move_sibling("bind" if c.coin() else "unbind")

    def _move_sibling(self, action: str) -> None:
        self.do({"sysfs_write": f"/sys/bus/pci/drivers/${{g.sibling_driver}}/{action}", "value": "${g.sibling}"})

    @precondition(lambda self: self.any_fd())
    @rule
    def close(self, c: Choices) -> None:
        n = c.pick(self.any_fd())
        for table in (self.containers, self.groups, self.devices, self.cdevs):
            table.pop(n, None)
        for names in (self.iommufds, self.eventfds):
            if n in names:
                names.remove(n)
        self.maps = [m for m in self.maps if m[0] != n]
        self.do({"close": n})


register(MachineKind("vfio", lambda mock_domains: VfioMachine, profile="viommu", roles=ROLES))
