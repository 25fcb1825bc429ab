"""The coverage matrix: for every ioctl of vfio.h and iommufd.h (and each
VFIO_DEVICE_FEATURE feature and IOMMU_TEST_CMD op), how many cases exercise
each kind of check, read from the case files themselves.

Each ioctl step of a case (not its fixture's) is classified from what it sends
and expects:

- ``happy``: success expected;
- ``size<min`` / ``size=min``: the size field (``size`` or ``argsz``) below / equal to
  the ioctl's minimum size (harness.uapi ``min_size``);
- ``tail=0`` / ``tail!=0``: the size field above sizeof(struct), the bytes past the
  struct zero / not all zero;
- ``flags``: bits in ``flags`` that no constant of the ioctl's flag prefix names;
- ``reserved``: a ``__reserved``-style field set non-zero;
- ``bad id``: an object-id field given as a number rather than an id a step saved;
- ``wrong type``: an object-id field given an id a step saved from another kind of object;
- and, per errno, the cases expecting it, beside the errnos the 6.12 handler's
  code names (``kernel_errnos``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import uapi
from ..cases.expr import Expr
from ..cases.model import DATA_TYPES, Case, Step
from ..runner.engine import HarnessError, evaluate, pack_data
from .kernel_errnos import KernelIndex, handler_errnos

COLUMNS = ("happy", "size<min", "size=min", "tail=0", "tail!=0", "flags", "reserved", "bad id", "wrong type")

# Where the happy path cannot run on x86 or on the VM's devices: shown instead of a gap.
NOT_APPLICABLE = {
    **{n: "sPAPR TCE IOMMU: ppc64 only" for n in (
        "VFIO_IOMMU_ENABLE", "VFIO_IOMMU_DISABLE", "VFIO_IOMMU_SPAPR_TCE_GET_INFO", "VFIO_EEH_PE_OP",
        "VFIO_IOMMU_SPAPR_REGISTER_MEMORY", "VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY", "VFIO_IOMMU_SPAPR_TCE_CREATE",
        "VFIO_IOMMU_SPAPR_TCE_REMOVE")},
    "VFIO_DEVICE_QUERY_GFX_PLANE": "Intel GVT-g vGPU (i915 kvmgt): no such device in the VM",
    "VFIO_DEVICE_GET_GFX_DMABUF": "Intel GVT-g vGPU (i915 kvmgt): no such device in the VM",
    "VFIO_MIG_GET_PRECOPY_INFO": "a migration data fd: needs a variant driver with migration (mlx5, hisi_acc, pds)",
    **{f"VFIO_DEVICE_FEATURE({n})": "happy path needs a variant driver with migration (mlx5, hisi_acc, pds)"
       for n in ("MIGRATION", "MIG_DEVICE_STATE", "MIG_DATA_SIZE")},
    **{f"VFIO_DEVICE_FEATURE({n})": "happy path needs device dirty tracking (mlx5, pds)"
       for n in ("DMA_LOGGING_START", "DMA_LOGGING_STOP", "DMA_LOGGING_REPORT")},
    "VFIO_DEVICE_FEATURE(BUS_MASTER)": "vfio-cdx only (ARM CDX bus)",
}

# Ioctls whose handler has no failure path at all: no negative case can exist.
NO_ERROR_PATH = {
    "VFIO_GET_API_VERSION": "returns VFIO_API_VERSION unconditionally (container.c:339-341, vfio_compat.c:524-525)",
}

# The 6.12 functions the sub-rows dispatch to (vfio_main.c vfio_ioctl_device_feature,
# vfio_pci_core.c vfio_pci_core_ioctl_feature, selftest.c iommufd_test).
SUB_HANDLERS = {
    "VFIO_DEVICE_FEATURE(MIGRATION)": "vfio_ioctl_device_feature_migration",
    "VFIO_DEVICE_FEATURE(MIG_DEVICE_STATE)": "vfio_ioctl_device_feature_mig_device_state",
    "VFIO_DEVICE_FEATURE(DMA_LOGGING_START)": "vfio_ioctl_device_feature_logging_start",
    "VFIO_DEVICE_FEATURE(DMA_LOGGING_STOP)": "vfio_ioctl_device_feature_logging_stop",
    "VFIO_DEVICE_FEATURE(DMA_LOGGING_REPORT)": "vfio_ioctl_device_feature_logging_report",
    "VFIO_DEVICE_FEATURE(MIG_DATA_SIZE)": "vfio_ioctl_device_feature_migration_data_size",
    "VFIO_DEVICE_FEATURE(LOW_POWER_ENTRY)": "vfio_pci_core_pm_entry",
    "VFIO_DEVICE_FEATURE(LOW_POWER_ENTRY_WITH_WAKEUP)": "vfio_pci_core_pm_entry_with_wakeup",
    "VFIO_DEVICE_FEATURE(LOW_POWER_EXIT)": "vfio_pci_core_pm_exit",
    "VFIO_DEVICE_FEATURE(PCI_VF_TOKEN)": "vfio_pci_core_feature_token",
    "IOMMU_TEST_CMD(ADD_RESERVED)": "iommufd_test_add_reserved",
    "IOMMU_TEST_CMD(MOCK_DOMAIN)": "iommufd_test_mock_domain",
    "IOMMU_TEST_CMD(MOCK_DOMAIN_FLAGS)": "iommufd_test_mock_domain",
    "IOMMU_TEST_CMD(MOCK_DOMAIN_REPLACE)": "iommufd_test_mock_domain_replace",
    "IOMMU_TEST_CMD(MD_CHECK_MAP)": "iommufd_test_md_check_pa",
    "IOMMU_TEST_CMD(MD_CHECK_REFS)": "iommufd_test_md_check_refs",
    "IOMMU_TEST_CMD(MD_CHECK_IOTLB)": "iommufd_test_md_check_iotlb",
    "IOMMU_TEST_CMD(CREATE_ACCESS)": "iommufd_test_create_access",
    "IOMMU_TEST_CMD(ACCESS_REPLACE_IOAS)": "iommufd_test_access_replace_ioas",
    "IOMMU_TEST_CMD(ACCESS_PAGES)": "iommufd_test_access_pages",
    "IOMMU_TEST_CMD(ACCESS_RW)": "iommufd_test_access_rw",
    "IOMMU_TEST_CMD(DESTROY_ACCESS_PAGES)": "iommufd_test_access_item_destroy",
    "IOMMU_TEST_CMD(DIRTY)": "iommufd_test_dirty",
    "IOMMU_TEST_CMD(TRIGGER_IOPF)": "iommufd_test_trigger_iopf",
}

_FEATURE_NON_FEATURES = {"VFIO_DEVICE_FEATURE_GET", "VFIO_DEVICE_FEATURE_SET", "VFIO_DEVICE_FEATURE_PROBE",
                         "VFIO_DEVICE_FEATURE_MASK", "VFIO_DEVICE_FEATURE_CLEAR_MASTER",
                         "VFIO_DEVICE_FEATURE_SET_MASTER", "VFIO_DEVICE_FEATURE"}
_RESERVED = re.compile(r"(^|\.)_*(reserved|rsvd|pad)\w*$")
# Object-id fields -> the kinds of object they take (None: any object, IOMMU_DESTROY).
_ID_KINDS: dict[str, frozenset[str] | None] = {
    "ioas_id": frozenset({"ioas"}), "src_ioas_id": frozenset({"ioas"}), "dst_ioas_id": frozenset({"ioas"}),
    "hwpt_id": frozenset({"hwpt"}), "pt_id": frozenset({"ioas", "hwpt"}), "dev_id": frozenset({"device"}),
    "fault_id": frozenset({"fault"}), "object_id": frozenset({"ioas"}), "id": None,
    "iommufd": frozenset({"fd"}),
}
# Output fields that hand out an object id -> the object's kind.
_OUT_KINDS = {"out_ioas_id": "ioas", "out_hwpt_id": "hwpt", "out_dev_id": "device", "out_idev_id": "device",
              "out_stdev_id": "stdev", "out_fault_id": "fault", "out_access_fd": "fd"}


def feature_rows() -> list[str]:
    names = sorted((n for n in uapi.CONSTANTS if n.startswith("VFIO_DEVICE_FEATURE_")
                    and n not in _FEATURE_NON_FEATURES), key=lambda n: uapi.CONSTANTS[n])
    return [f"VFIO_DEVICE_FEATURE({n.removeprefix('VFIO_DEVICE_FEATURE_')})" for n in names]


def test_op_rows() -> list[str]:
    names = sorted((n for n in uapi.CONSTANTS if n.startswith("IOMMU_TEST_OP_")), key=lambda n: uapi.CONSTANTS[n])
    return [f"IOMMU_TEST_CMD({n.removeprefix('IOMMU_TEST_OP_')})" for n in names]


def row_names() -> list[str]:
    rows: list[str] = []
    for name in uapi.IOCTLS:
        rows.append(name)
        if name == "VFIO_DEVICE_FEATURE":
            rows += feature_rows()
        if name == "IOMMU_TEST_CMD":
            rows += test_op_rows()
    return rows


@dataclass
class Row:
    name: str
    ioctl: str                                   # the ioctl the row belongs to
    cells: dict[str, set[str]] = field(default_factory=lambda: {c: set() for c in COLUMNS})
    errnos: dict[str, set[str]] = field(default_factory=dict)      # errno -> case test ids expecting it
    kernel_errnos: dict[str, str] | None = None  # errno -> first 6.12 line naming it; None: not scanned
    not_applicable: str = ""
    no_error_path: str = ""
    applicable_columns: tuple[str, ...] = COLUMNS

    @property
    def negative(self) -> int:
        return len(set().union(*self.errnos.values())) if self.errnos else 0

    def count(self, column: str) -> int | None:
        return len(self.cells[column]) if column in self.applicable_columns else None


def _known_flag_bits(io: uapi.Ioctl, field_name: str) -> int | None:
    prefix = io.flag_fields.get(field_name)
    if prefix is None:
        return 0  # a flags field with no named bits: every set bit is unknown
    # Single bits and masks: a prefix also names enum values (IOMMU_HWPT_DATA_SELFTEST = 0xdead).
    bits = 0
    for n, v in uapi.CONSTANTS.items():
        if n.startswith(prefix) and n not in uapi.IOCTLS and v > 0 and (v & (v - 1) == 0 or n.endswith("_MASK")):
            bits |= v
    return bits


def applicable_columns(io: uapi.Ioctl) -> tuple[str, ...]:
    if io.struct is None or io.size_field is None:
        return ("happy", "bad id", "wrong type")
    names = [p for p, *_ in uapi.abi.walk_fields(io.struct)]
    cols = ["happy", "size<min", "size=min", "tail=0", "tail!=0"]
    if "flags" in names:
        cols.append("flags")
    if any(_RESERVED.search(p) for p in names):
        cols.append("reserved")
    if any(p.rsplit(".", 1)[-1] in _ID_KINDS for p in names):
        cols += ["bad id", "wrong type"]
    return tuple(cols)


def _value(v: Any) -> int | None:
    try:
        out = evaluate(v, {})
    except HarnessError:
        return None
    return out if isinstance(out, int) else None


def _packed_len(spec: Mapping[str, Any] | None) -> tuple[int, bool]:
    """(length, all zero) of a data/tail spec; values that need a run count as non-zero."""
    if not spec:
        return 0, True
    try:
        packed = pack_data(spec, {})
    except HarnessError:
        (kind, items), = spec.items()
        return DATA_TYPES[kind][0] * len(items), False
    return len(packed), not any(packed)


def _flat_args(args: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for k, v in args.items():
        if isinstance(v, Mapping) and not ({"array", "bytes", "hex"} & set(v)):
            yield from _flat_args(v, f"{prefix}{k}.")
        else:
            yield prefix + k, v


class _Provenance:
    """What kind of object each saved name holds, from the steps that saved it."""

    def __init__(self) -> None:
        self.kinds: dict[str, str] = {}

    def learn(self, step: Step) -> None:
        if step.bind and step.kind in ("open", "eventfd"):
            self.kinds[step.bind] = "fd"
        for name, path in step.save.items():
            self.kinds[name] = _OUT_KINDS.get(path.rsplit(".", 1)[-1], "value")

    def kind_of(self, v: Any) -> str | None:
        """The kind of a plain ``$name`` value; "literal" for a number; None otherwise."""
        if isinstance(v, int):
            return "literal"
        if isinstance(v, Expr):
            if not v.variables:
                return "literal"
            if re.fullmatch(r"\$[A-Za-z_]\w*", v.text.strip()):
                return self.kinds.get(next(iter(v.variables)), "value")
            if any(self.kinds.get(n) not in (None, "value") for n in v.variables):
                return "literal"  # arithmetic on an id ($ioas + 1000): an id nobody handed out
        return None


def classify(io: uapi.Ioctl, step: Step, prov: _Provenance) -> set[str]:
    spec = step.spec
    args: Mapping[str, Any] = spec.get("args", {}) if isinstance(spec.get("args"), Mapping) else {}
    cols: set[str] = set()
    if step.expect.errno is None:
        cols.add("happy")
    if io.struct is not None and io.size_field and io.min_size is not None:
        data_len, _ = _packed_len(spec.get("data"))
        tail_len, tail_zero = _packed_len(spec.get("tail"))
        size = _value(args[io.size_field]) if io.size_field in args else io.sizeof + data_len + tail_len
        if size is not None:
            if size < io.min_size:
                cols.add("size<min")
            if size == io.min_size:
                cols.add("size=min")
            if size > io.sizeof + data_len:
                cols.add("tail=0" if tail_zero else "tail!=0")
    flat = dict(_flat_args(args))
    for name, v in flat.items():
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "flags" and io.struct is not None:
            value = _value(v)
            known = _known_flag_bits(io, "flags")
            if io.name == "VFIO_DEVICE_FEATURE":
                known = (known or 0) | 0xFFFF
            if value is not None and known is not None and value & ~known:
                cols.add("flags")
        if _RESERVED.search(name):
            value = _value(v) if not isinstance(v, list) else None
            items = v if isinstance(v, list) else [v]
            if value or any(_value(x) for x in items):
                cols.add("reserved")
        if leaf in _ID_KINDS and not name.startswith("out_"):
            wanted = _ID_KINDS[leaf]
            kind = prov.kind_of(v)
            if kind == "literal" and not (leaf == "object_id" and _value(v) == 0):  # 0: the whole context
                cols.add("bad id")
            elif kind not in (None, "value") and wanted is not None and kind not in wanted:
                cols.add("wrong type")
    return cols


def sub_row(io: uapi.Ioctl, step: Step) -> str | None:
    args = step.spec.get("args", {})
    if not isinstance(args, Mapping):
        return None
    if io.name == "VFIO_DEVICE_FEATURE" and "flags" in args:
        value = _value(args["flags"])
        if value is None:
            return None
        feature = value & uapi.constant("VFIO_DEVICE_FEATURE_MASK")
        names = [n for n in uapi.CONSTANTS if n.startswith("VFIO_DEVICE_FEATURE_")
                 and n not in _FEATURE_NON_FEATURES and uapi.CONSTANTS[n] == feature]
        return f"VFIO_DEVICE_FEATURE({names[0].removeprefix('VFIO_DEVICE_FEATURE_')})" if names else None
    if io.name == "IOMMU_TEST_CMD" and "op" in args:
        value = _value(args["op"])
        names = [n for n in uapi.CONSTANTS if n.startswith("IOMMU_TEST_OP_") and uapi.CONSTANTS[n] == value]
        return f"IOMMU_TEST_CMD({names[0].removeprefix('IOMMU_TEST_OP_')})" if names else None
    return None


@dataclass
class Matrix:
    rows: dict[str, Row]
    cases: int
    kernel_source: str | None        # where the errno scan read 6.12 from, or None

    def applicable(self) -> list[Row]:
        return [r for r in self.rows.values() if not r.not_applicable]


def build(cases: Iterable[Case], index: KernelIndex | None = None, source: str | None = None) -> Matrix:
    rows: dict[str, Row] = {}
    for name in row_names():
        parent = name.split("(", 1)[0]
        io = uapi.ioctl(parent)
        row = Row(name, parent, not_applicable=NOT_APPLICABLE.get(name, ""), no_error_path=NO_ERROR_PATH.get(name, ""))
        row.applicable_columns = applicable_columns(io)
        if row.no_error_path:
            row.kernel_errnos = {}
        elif index is not None:
            if name in SUB_HANDLERS:
                fn = index.by_name.get(SUB_HANDLERS[name])
                row.kernel_errnos = index.errnos(fn) if fn is not None else None
            else:
                row.kernel_errnos = handler_errnos(index, io.handler, io.fd_kinds)
        rows[name] = row
    n = 0
    for case in cases:
        n += 1
        prov = _Provenance()
        for step in case.steps:
            if step.kind == "ioctl" and not step.from_fixture:
                io = uapi.ioctl(step.spec["ioctl"])
                targets = [io.name] + [s for s in [sub_row(io, step)] if s]
                cols = classify(io, step, prov)
                for t in targets:
                    row = rows[t]
                    for c in cols:
                        if c in row.cells:
                            row.cells[c].add(case.test_id)
                    if step.expect.errno:
                        row.errnos.setdefault(step.expect.errno, set()).add(case.test_id)
            prov.learn(step)
    return Matrix(rows, n, source)
