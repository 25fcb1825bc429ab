"""The iommufd machine's access rules: an iommufd_access (IOMMU_TEST_OP_CREATE_ACCESS, with or
without pin ops) pins pages (ACCESS_PAGES, DESTROY_ACCESS_PAGES), copies through the IOAS
(ACCESS_RW) and moves to another IOAS (ACCESS_REPLACE_IOAS) (harness/fuzz/iommufd_rules.py)."""

from __future__ import annotations

from .iommufd_state import IommufdState
from .machine import PAGE, U64_MAX, Choices, hex_, ints, one_of, precondition, rule, user_va

ACCESS_FLAGS_OK = one_of("0", "MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES")
PIN_FLAGS_OK = one_of("0", "MOCK_FLAGS_ACCESS_WRITE")
RW_FLAGS_OK = one_of("0", "MOCK_ACCESS_RW_WRITE", "MOCK_ACCESS_RW_SLOW_PATH",
                     "MOCK_ACCESS_RW_WRITE | MOCK_ACCESS_RW_SLOW_PATH")
FLAGS_BAD = one_of("1 << 3", "1 << 30")
LENGTH_BAD = one_of(0, 1 << 25, U64_MAX)   # 0; past the 16 MiB a test op takes (ENOMEM)
IOVA_BAD = one_of("0", "U64_MAX", hex_(1 << 63))


class AccessRules(IommufdState):
    @precondition(lambda self: self.mock_domains and self.ioases)
    @rule
    def create_access(self, c: Choices) -> None:
        ioas = c.pick(self.ioases)
        f = self.fields(c, ["fd", "id", "flags"])
        n = self.name("access")
        self.do({"ioctl": "IOMMU_TEST_CMD", "fd": self.fd_of(f, ioas),
                 "args": {"op": "IOMMU_TEST_OP_CREATE_ACCESS", "id": f.obj("id", ioas),
                          "create_access": {"flags": f.get("flags", ACCESS_FLAGS_OK, FLAGS_BAD)}},
                 "save": {n: "create_access.out_access_fd"}})
        self.accesses.append(n)
        self.owner[n], self.ioas_of[n] = self.owner[ioas], ioas

    def _at(self, c: Choices, access: str) -> tuple[str, str]:
        """An IOVA a map of the access's IOAS returned (else of any) and the user address of the
        pages under it (0: unknown)."""
        iova = c.pick([i for i in self.iovas if self.owner[i] == self.ioas_of[access]] or self.iovas)
        buf, offset = self.source.get(iova, ("", 0))
        return iova, user_va(buf, offset) if buf else "0"

    @precondition(lambda self: self.accesses and self.iovas)
    @rule
    def access_pages(self, c: Choices) -> None:
        access = c.pick(self.accesses)
        iova, uptr = self._at(c, access)
        f = self.fields(c, ["id", "iova", "length", "uptr", "flags"])
        n = self.name("pages")
        # uptr: the pages under the IOVA are compared with those under it (EBADE); 0 skips that.
        other = user_va(c.pick(list(self.buf_size)), PAGE) if self.buf_size else "0x1000"
        self.do({"ioctl": "IOMMU_TEST_CMD", "fd": self.owner[access],
                 "args": {"op": "IOMMU_TEST_OP_ACCESS_PAGES", "id": f.obj("id", access),
                          "access_pages": {"iova": f.get("iova", f"${iova}", IOVA_BAD),
                                           "length": hex_(f.get("length", ints(1, 2, PAGE), LENGTH_BAD)),
                                           "uptr": f.get("uptr", one_of(uptr, "0"), other),
                                           "flags": f.get("flags", PIN_FLAGS_OK, FLAGS_BAD)}},
                 "save": {n: "access_pages.out_access_pages_id"}})
        self.pins.append((n, access))

    @precondition(lambda self: self.pins)
    @rule
    def destroy_access_pages(self, c: Choices) -> None:
        pages, access = c.pick(self.pins)
        f = self.fields(c, ["id", "access_pages_id"])
        self.do({"ioctl": "IOMMU_TEST_CMD", "fd": self.owner[access],
                 "args": {"op": "IOMMU_TEST_OP_DESTROY_ACCESS_PAGES", "id": f.obj("id", access),
                          "destroy_access_pages": {"access_pages_id": f.obj("access_pages_id", pages)}}})

    @precondition(lambda self: self.accesses and self.iovas and self.buf_size)
    @rule
    def access_rw(self, c: Choices) -> None:
        access = c.pick(self.accesses)
        iova, _uptr = self._at(c, access)
        buf = c.pick(list(self.buf_size))
        offset = c.between(0, 0x1ff) * 8     # up to a page and a bit in: the copy may cross a page
        f = self.fields(c, ["id", "iova", "length", "uptr", "flags"])
        self.do({"ioctl": "IOMMU_TEST_CMD", "fd": self.owner[access],
                 "args": {"op": "IOMMU_TEST_OP_ACCESS_RW", "id": f.obj("id", access),
                          "access_rw": {"iova": f.get("iova", f"${iova} + {offset:#x}", IOVA_BAD),
                                        "length": f.get("length", ints(1, 64, 8), LENGTH_BAD),
                                        "uptr": f.get("uptr", user_va(buf, 0), "0"),
                                        "flags": f.get("flags", RW_FLAGS_OK, FLAGS_BAD)}}})

    @precondition(lambda self: self.accesses and self.ioases)
    @rule
    def access_replace_ioas(self, c: Choices) -> None:
        access = c.pick(self.accesses)
        ioas = c.pick(self.ioases)
        f = self.fields(c, ["id", "ioas_id"])
        self.do({"ioctl": "IOMMU_TEST_CMD", "fd": self.owner[access],
                 "args": {"op": "IOMMU_TEST_OP_ACCESS_REPLACE_IOAS", "id": f.obj("id", access),
                          "access_replace_ioas": {"ioas_id": f.obj("ioas_id", ioas)}}})
        if f.bad is None:
            self.ioas_of[access] = ioas

    @precondition(lambda self: self.accesses)
    @rule
    def close_access(self, c: Choices) -> None:
        """Close an access fd: the access is destroyed, unpinning what it pinned (its name dangles)."""
        access = c.pick(self.accesses)
        self.accesses.remove(access)
        self.pins = [p for p in self.pins if p[1] != access]
        self.do({"close": access})

    @precondition(lambda self: self.buf_size)
    @rule
    def read_mem(self, c: Choices) -> None:
        """A buffer read back: what ACCESS_RW or a map's users wrote there."""
        buf = c.pick(list(self.buf_size))
        offset = c.pick((0, PAGE)) if self.buf_size[buf] > PAGE else 0
        self.do({"read_mem": {"at": user_va(buf, offset), "length": 16}})
