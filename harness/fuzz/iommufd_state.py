"""What the iommufd machine's rule families share: the names bound so far, by what they stand
for, and the helpers that draw an object, a buffer or an fd (harness/fuzz/iommufd_rules.py)."""

from __future__ import annotations

from .machine import PAGE, Fields, SequenceMachine, ints, one_of

LENGTH_BAD = one_of(0, 1, PAGE + 1, PAGE // 2, (1 << 64) - 1, 1 << 40)
OFFSET_BAD = one_of(0x800, 0x10000000)   # not page aligned; far past the buffer


class IommufdState(SequenceMachine):
    """Each list holds names (each a handle pair); ``owner`` maps an object to the iommufd it
    belongs to (ids are per context) and an IOVA to its IOAS."""

    mock_domains: bool = True    # the target has IOMMU_TEST_OP_MOCK_DOMAIN (and the other test ops)

    def __init__(self) -> None:
        super().__init__()
        self.fds: list[str] = []
        self.ioases: list[str] = []
        self.hwpts: list[str] = []             # paging HWPTs: a mock domain's or IOMMU_HWPT_ALLOC's
        self.parents: list[str] = []           # ... allocated with IOMMU_HWPT_ALLOC_NEST_PARENT
        self.dirty_hwpts: list[str] = []       # ... allocated with IOMMU_HWPT_ALLOC_DIRTY_TRACKING
        self.nested: list[str] = []
        self.devices: list[tuple[str, str]] = []   # (selftest object, iommufd_device) of a mock device
        self.accesses: list[str] = []          # access fds (IOMMU_TEST_OP_CREATE_ACCESS)
        self.pins: list[tuple[str, str]] = []  # (access_pages id, its access)
        self.iovas: list[str] = []
        self.owner: dict[str, str] = {}
        self.ioas_of: dict[str, str] = {}      # a paging HWPT's IOAS, an access's
        self.source: dict[str, tuple[str, int]] = {}   # an IOVA's (buffer, offset): the pages under it
        self.buf_size: dict[str, int] = {}

    def fd_of(self, f: Fields, obj: str) -> str:
        """The iommufd ``obj`` belongs to, or (the "fd" field gone bad) any other one."""
        return str(f.get("fd", self.owner.get(obj, self.fds[0]), one_of(*self.fds)))

    def buffer(self, f: Fields) -> tuple[str, int, int]:
        """(buffer, offset, length) of user memory inside one mapping, one of them maybe bad."""
        buf = f.c.pick(list(self.buf_size))
        size = self.buf_size[buf]
        offset = f.get("user_va", one_of(*(o for o in (0, PAGE) if o < size)), OFFSET_BAD)
        room = max((size - offset) // PAGE, 1) if offset < size else 1
        length = f.get("length", ints(1, room, PAGE), LENGTH_BAD)
        return buf, offset, length

    def _mock_domain(self, fd: str, ioas: str) -> None:
        n, stdev, idev = self.name("hwpt"), self.name("stdev"), self.name("idev")
        self.do({"ioctl": "IOMMU_TEST_CMD", "fd": fd, "args": {"op": "IOMMU_TEST_OP_MOCK_DOMAIN", "id": f"${ioas}"},
                 "save": {n: "mock_domain.out_hwpt_id", stdev: "mock_domain.out_stdev_id",
                          idev: "mock_domain.out_idev_id"}})
        self.hwpts.append(n)
        self.devices.append((stdev, idev))
        for name in (n, stdev, idev):
            self.owner[name] = fd
        self.ioas_of[n] = ioas
