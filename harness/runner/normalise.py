"""What may legitimately differ between two targets running the same case, declared as rules.

Object ids, file descriptors, user addresses and automatically allocated IOVAs
are chosen by the target.  Each rule gives such values a role; within one trace
every value of a role is renamed by order of first appearance (``id#1``,
``fd#2``), so two traces agree when they use their values the same way.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Any

from .. import uapi
from .trace import StepRecord, Trace


@dataclass(frozen=True)
class Rule:
    role: str
    field: re.Pattern[str]      # the flattened field path (request or output)
    ioctl: str = "*"            # ioctl name, or * for any; "step:KIND" for non-ioctl steps
    # Only when this flag bit is clear in the request's `flags` (auto IOVA).
    unless_flag: str = ""
    reason: str = ""
    # False: the field only refers to values of this role that a chosen field
    # introduced earlier (an UNMAP of an automatic IOVA); any other value in it is
    # the case's own literal and is compared as is.
    chosen: bool = True
    # Only when this flag bit is set in the request's `flags`.
    if_flag: str = ""
    # The field is a hex string of little-endian elements of this struct format
    # ("i": s32), each a value of the role (an array of fds after the struct).
    elements: str = ""
    # Only when the request's `op` is one of these (IOMMU_TEST_CMD's operations).
    if_op: tuple[str, ...] = ()


def _r(role: str, field: str, ioctl: str = "*", unless_flag: str = "", reason: str = "",
       chosen: bool = True, if_flag: str = "", elements: str = "", if_op: tuple[str, ...] = ()) -> Rule:
    return Rule(role, re.compile(field + r"\Z"), ioctl, unless_flag, reason, chosen, if_flag, elements, if_op)


RULES: tuple[Rule, ...] = (
    _r("fd", r"id", ioctl="IOMMU_TEST_CMD", reason="the access test ops name the access by its fd",
       if_op=("IOMMU_TEST_OP_ACCESS_PAGES", "IOMMU_TEST_OP_ACCESS_RW", "IOMMU_TEST_OP_DESTROY_ACCESS_PAGES",
              "IOMMU_TEST_OP_ACCESS_REPLACE_IOAS")),
    _r("id", r"(.*\.)?(id|out_[a-z_]*id|[a-z_]*_id|out_devid)", reason="object ids are allocated by the kernel"),
    _r("fd", r"(.*\.)?(iommufd|out_[a-z_]*_fd|fd|int)", reason="file descriptor numbers"),
    _r("fd", r"ret", ioctl="step:open"), _r("fd", r"ret", ioctl="step:eventfd"), _r("fd", r"ret", ioctl="step:memfd"),
    *(_r("fd", r"fd", ioctl=f"step:{k}")
      for k in ("close", "read", "write", "pread", "pwrite", "raw_ioctl", "mmap", "write_mem")),
    _r("fd", r"ret", ioctl="VFIO_GROUP_GET_DEVICE_FD"),
    _r("fd", r"data", ioctl="VFIO_DEVICE_SET_IRQS", if_flag="VFIO_IRQ_SET_DATA_EVENTFD", elements="i",
       reason="the eventfds of a DATA_EVENTFD array"),
    _r("fd", r"data", ioctl="VFIO_DEVICE_PCI_HOT_RESET", elements="i", reason="the group fds of group_fds[]"),
    _r("addr", r"ret", ioctl="step:mmap", reason="user virtual addresses"),
    _r("addr", r"addr", ioctl="step:munmap"), _r("addr", r"addr", ioctl="step:mprotect"),
    _r("addr", r"addr", ioctl="step:read_mem"),
    _r("addr", r"addr", ioctl="step:write_mem"),
    _r("addr", r"pointer", ioctl="step:raw_ioctl", reason="a raw argument pointing into a case mapping"),
    _r("addr", r"(.*\.)?(user_va|vaddr|uptr|data_uptr|[a-z_]*_ptr|allowed_iovas|data|addr|pointer)"),
    _r("iova", r"iova", ioctl="IOMMU_IOAS_MAP", unless_flag="IOMMU_IOAS_MAP_FIXED_IOVA",
       reason="automatic IOVAs are the kernel's choice"),
    _r("iova", r"dst_iova", ioctl="IOMMU_IOAS_COPY", unless_flag="IOMMU_IOAS_MAP_FIXED_IOVA"),
    _r("iova", r"(.*\.)?(iova|src_iova|dst_iova)", chosen=False,
       reason="an IOVA a case saved from an automatic allocation"),
)
# Fields that look like ids but are values of an enum or an index.
NOT_IDS = re.compile(r"(.*\.)?(option_id|iotlb_id|data_type|out_data_type|dmabuf_id)\Z")


_RULES_FOR: dict[str, list[Rule]] = {}


def _rules_for(step: StepRecord) -> list[Rule]:
    key = step.label if step.kind == "ioctl" else f"step:{step.kind}"
    rules = _RULES_FOR.get(key)
    if rules is None:
        ioctl = step.kind == "ioctl"
        rules = _RULES_FOR[key] = [r for r in RULES if r.ioctl in ("*", key) and (r.ioctl != "*" or ioctl)]
    return rules


def rule_of(step: StepRecord, path: str) -> Rule | None:
    if NOT_IDS.match(path):
        return None
    for r in _rules_for(step):
        if r.field.match(path):
            flags = int(step.request.get("flags", 0))
            if r.unless_flag and flags & uapi.CONSTANTS[r.unless_flag]:
                continue
            if r.if_flag and not flags & uapi.CONSTANTS[r.if_flag]:
                continue
            if r.if_op and step.request.get("op") not in {uapi.CONSTANTS[o] for o in r.if_op}:
                continue
            return r
    return None


def role_of(step: StepRecord, path: str) -> str | None:
    r = rule_of(step, path)
    return r.role if r else None


class _Renamer:
    def __init__(self) -> None:
        self.seen: dict[tuple[str, Any], str] = {}
        self.count: dict[str, int] = {}

    def __call__(self, role: str, value: Any, introduce: bool = True) -> Any:
        if not isinstance(value, int) or value in (0, -1):
            return value  # 0 / -1 mean "none" everywhere in this uAPI; keep them visible
        key = (role, value)
        if key not in self.seen:
            if not introduce:
                return value
            self.count[role] = self.count.get(role, 0) + 1
            self.seen[key] = f"{role}#{self.count[role]}"
        return self.seen[key]


class Normaliser:
    """One trace's steps as comparable dicts, a step at a time (names carry over between steps)."""

    def __init__(self) -> None:
        self.rename = _Renamer()

    def step(self, s: StepRecord) -> dict[str, Any]:
        rename = self.rename
        req = {k: _norm(s, k, v, rename) for k, v in s.request.items()}
        res = {k: _norm(s, k, v, rename) for k, v in s.out.items()}
        ret = _norm(s, "ret", s.ret, rename) if s.errno is None else s.ret
        return {"step": s.label, "request": req, "errno": s.errno, "ret": ret, "out": res}


def normalise(trace: Trace) -> list[dict[str, Any]]:
    """The trace as comparable dicts, one per step."""
    n = Normaliser()
    return [n.step(s) for s in trace.steps]


def _norm(step: StepRecord, path: str, value: Any, rename: _Renamer) -> Any:
    rule = rule_of(step, path.split("[")[0] if "[" in path else path)
    if rule is None:
        return value
    if rule.elements and isinstance(value, str):
        fmt = "<" + rule.elements
        raw = bytes.fromhex(value)
        raw = raw[:len(raw) - len(raw) % struct.calcsize(fmt)]
        return [rename(rule.role, v, rule.chosen) for (v,) in struct.iter_unpack(fmt, raw)]
    return rename(rule.role, value, rule.chosen)
