"""The coverage matrix of one kernel series: for every ioctl of that series' vfio.h and
iommufd.h (and each VFIO_DEVICE_FEATURE feature and IOMMU_TEST_CMD op), how many cases
exercise each kind of check, read from the case files themselves.

Every uAPI lookup (ioctls, constants, struct layouts, sizes, flag bits) is the series' own
(``uapi.for_series(series)``), and a case counts only where it applies to the series: its
``requires.kernel`` range holds for the series and the series has every name the case uses
(what the runner checks before it runs a case, ``runner.topology``).  A step whose expectation
is per kernel (``expect.by_kernel``) counts with the one that holds for the series.

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
- and, per errno, the cases expecting it, beside the errnos the series' handler's
  code names (``kernel_errnos``).
"""

from __future__ import annotations

import ctypes
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import uapi
from ..cases.case import DATA_TYPES, Case, Expectation, Step
from ..cases.expr import Expr, using_abi
from ..runner.engine import HarnessError, evaluate, pack_data
from ..runner.topology import kernel_unmet
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
       for n in ("MIGRATION", "MIG_DEVICE_STATE", "MIG_DATA_SIZE", "MIG_PRECOPY_INFOv2")},
    **{f"VFIO_DEVICE_FEATURE({n})": "happy path needs device dirty tracking (mlx5, pds)"
       for n in ("DMA_LOGGING_START", "DMA_LOGGING_STOP", "DMA_LOGGING_REPORT")},
    "VFIO_DEVICE_FEATURE(BUS_MASTER)": "vfio-cdx only (ARM CDX bus)",
}

# Ioctls whose handler has no failure path at all: no negative case can exist.
NO_ERROR_PATH = {
    "VFIO_GET_API_VERSION": "returns VFIO_API_VERSION unconditionally (container.c:339-341, vfio_compat.c:524-525)",
}

# The functions the sub-rows dispatch to (vfio_main.c vfio_ioctl_device_feature,
# vfio_pci_core.c vfio_pci_core_ioctl_feature, selftest.c iommufd_test), by name, so the same
# table serves every series; a row whose function a series' tree lacks is not scanned there.
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
    # 7.2 (vfio_main.c:1288-1290, vfio_pci_core.c:1629-1630, selftest.c:2121-2176)
    "VFIO_DEVICE_FEATURE(MIG_PRECOPY_INFOv2)": "vfio_ioctl_device_feature_migration_precopy_info_v2",
    "VFIO_DEVICE_FEATURE(DMA_BUF)": "vfio_pci_core_feature_dma_buf",
    "IOMMU_TEST_CMD(DEV_CHECK_CACHE)": "iommufd_test_dev_check_cache",
    "IOMMU_TEST_CMD(TRIGGER_VEVENT)": "iommufd_test_trigger_vevent",
    "IOMMU_TEST_CMD(PASID_ATTACH)": "iommufd_test_pasid_attach",
    "IOMMU_TEST_CMD(PASID_REPLACE)": "iommufd_test_pasid_replace",
    "IOMMU_TEST_CMD(PASID_DETACH)": "iommufd_test_pasid_detach",
    "IOMMU_TEST_CMD(PASID_CHECK_HWPT)": "iommufd_test_pasid_check_hwpt",
    "IOMMU_TEST_CMD(DMABUF_GET)": "iommufd_test_dmabuf_get",
    "IOMMU_TEST_CMD(DMABUF_REVOKE)": "iommufd_test_dmabuf_revoke",
}

_FEATURE_NON_FEATURES = {"VFIO_DEVICE_FEATURE_GET", "VFIO_DEVICE_FEATURE_SET", "VFIO_DEVICE_FEATURE_PROBE",
                         "VFIO_DEVICE_FEATURE_MASK", "VFIO_DEVICE_FEATURE_CLEAR_MASTER",
                         "VFIO_DEVICE_FEATURE_SET_MASTER", "VFIO_DEVICE_FEATURE"}
_RESERVED = re.compile(r"(^|\.)_*(reserved|rsvd|pad)\w*$")
# Object-id fields -> the kinds of object they take (None: any object, IOMMU_DESTROY).
_ID_KINDS: dict[str, frozenset[str] | None] = {
    "ioas_id": frozenset({"ioas"}), "src_ioas_id": frozenset({"ioas"}), "dst_ioas_id": frozenset({"ioas"}),
    "hwpt_id": frozenset({"hwpt"}), "pt_id": frozenset({"ioas", "hwpt", "viommu"}), "dev_id": frozenset({"device"}),
    "fault_id": frozenset({"fault"}), "object_id": frozenset({"ioas"}), "id": None,
    "iommufd": frozenset({"fd"}), "viommu_id": frozenset({"viommu"}),
}
# Where one ioctl's field takes other kinds (7.2: hw_pagetable.c iommufd_hwpt_invalidate
# takes a nested HWPT or a vIOMMU).
_ID_KINDS_OF = {("IOMMU_HWPT_INVALIDATE", "hwpt_id"): frozenset({"hwpt", "viommu"})}
# Output fields that hand out an object id -> the object's kind.
_OUT_KINDS = {"out_ioas_id": "ioas", "out_hwpt_id": "hwpt", "out_dev_id": "device", "out_idev_id": "device",
              "out_stdev_id": "stdev", "out_fault_id": "fault", "out_access_fd": "fd", "out_viommu_id": "viommu",
              "out_vdevice_id": "vdevice", "out_veventq_id": "veventq", "out_veventq_fd": "fd",
              "out_hw_queue_id": "hw_queue"}


def view_of(series: str | uapi.SeriesABI) -> uapi.SeriesABI:
    """The uAPI of ``series`` ("6.12", "7.2.13", or a view already); one series, not every_series()."""
    view = series if isinstance(series, uapi.SeriesABI) else uapi.for_series(series)
    if view.series not in uapi.SERIES:
        raise ValueError(f"the coverage matrix is per kernel series ({', '.join(uapi.SERIES)}), not {view.series!r}")
    return view


def _features(view: uapi.SeriesABI) -> list[str]:
    """The series' VFIO_DEVICE_FEATURE_* feature numbers' names, by value."""
    return sorted((n for n in view.CONSTANTS if n.startswith("VFIO_DEVICE_FEATURE_")
                   and n not in _FEATURE_NON_FEATURES), key=lambda n: view.CONSTANTS[n])


def _test_ops(view: uapi.SeriesABI) -> list[str]:
    return sorted((n for n in view.CONSTANTS if n.startswith("IOMMU_TEST_OP_")), key=lambda n: view.CONSTANTS[n])


def _feature_row(constant: str) -> str:
    return f"VFIO_DEVICE_FEATURE({constant.removeprefix('VFIO_DEVICE_FEATURE_')})"


def _test_op_row(constant: str) -> str:
    return f"IOMMU_TEST_CMD({constant.removeprefix('IOMMU_TEST_OP_')})"


def row_names(view: uapi.SeriesABI) -> list[str]:
    rows: list[str] = []
    for name in view.IOCTLS:
        rows.append(name)
        if name == "VFIO_DEVICE_FEATURE":
            rows += [_feature_row(n) for n in _features(view)]
        if name == "IOMMU_TEST_CMD":
            rows += [_test_op_row(n) for n in _test_ops(view)]
    return rows


def applies(case: Case, series: str) -> bool:
    """Whether ``case`` runs on a kernel of ``series``: its kernel range and the names it uses
    (the runner's own test, less what depends on the machine)."""
    return kernel_unmet(case, series) is None


@dataclass
class Row:
    name: str
    ioctl: str                                   # the ioctl the row belongs to
    cells: dict[str, set[str]] = field(default_factory=lambda: {c: set() for c in COLUMNS})
    errnos: dict[str, set[str]] = field(default_factory=dict)      # errno -> case test ids expecting it
    kernel_errnos: dict[str, str] | None = None  # errno -> first line of the series' tree naming it; None: not scanned
    not_applicable: str = ""
    no_error_path: str = ""
    applicable_columns: tuple[str, ...] = COLUMNS

    @property
    def negative(self) -> int:
        return len(set().union(*self.errnos.values())) if self.errnos else 0

    def count(self, column: str) -> int | None:
        return len(self.cells[column]) if column in self.applicable_columns else None


def _known_flag_bits(view: uapi.SeriesABI, io: uapi.Ioctl, field_name: str) -> int | None:
    prefix = io.flag_fields.get(field_name)
    if prefix is None:
        return 0  # a flags field with no named bits: every set bit is unknown
    # Single bits and masks: a prefix also names enum values (IOMMU_HWPT_DATA_SELFTEST = 0xdead).
    bits = 0
    for n, v in view.CONSTANTS.items():
        if n.startswith(prefix) and n not in view.IOCTLS and v > 0 and (v & (v - 1) == 0 or n.endswith("_MASK")):
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
    if "struct" in spec:  # the struct a flag makes the handler read (Ioctl.flag_data)
        return ctypes.sizeof(uapi.STRUCTS[spec["struct"]]), False
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


def classify(view: uapi.SeriesABI, io: uapi.Ioctl, step: Step, prov: _Provenance,
             expect: Expectation | None = None) -> set[str]:
    """The columns ``step`` (an ioctl ``io`` of ``view``) checks, with ``expect`` (default: the
    step's own) the expectation that holds on the series."""
    spec = step.spec
    args: Mapping[str, Any] = spec.get("args", {}) if isinstance(spec.get("args"), Mapping) else {}
    cols: set[str] = set()
    if (expect or step.expect).errno is None:
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
            known = _known_flag_bits(view, io, "flags")
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
            wanted = _ID_KINDS_OF.get((io.name, leaf), _ID_KINDS[leaf])
            kind = prov.kind_of(v)
            if kind == "literal" and not (leaf == "object_id" and _value(v) == 0):  # 0: the whole context
                cols.add("bad id")
            elif kind not in (None, "value") and wanted is not None and kind not in wanted:
                cols.add("wrong type")
    return cols


def sub_row(view: uapi.SeriesABI, io: uapi.Ioctl, step: Step) -> str | None:
    args = step.spec.get("args", {})
    if not isinstance(args, Mapping):
        return None
    if io.name == "VFIO_DEVICE_FEATURE" and "flags" in args:
        value = _value(args["flags"])
        if value is None:
            return None
        feature = value & view.constant("VFIO_DEVICE_FEATURE_MASK")
        names = [n for n in _features(view) if view.CONSTANTS[n] == feature]
        return _feature_row(names[0]) if names else None
    if io.name == "IOMMU_TEST_CMD" and "op" in args:
        value = _value(args["op"])
        names = [n for n in _test_ops(view) if view.CONSTANTS[n] == value]
        return _test_op_row(names[0]) if names else None
    return None


@dataclass
class Matrix:
    rows: dict[str, Row]
    cases: int                       # the cases that apply to the series
    kernel_source: str | None        # where the errno scan read the series' tree from, or None
    series: str = uapi.DEFAULT_SERIES
    ioctls: int = 0                  # the series' ioctls (rows less the sub-command rows)
    skipped: int = 0                 # cases given that do not apply to the series

    def applicable(self) -> list[Row]:
        return [r for r in self.rows.values() if not r.not_applicable]


def build(cases: Iterable[Case], series: str | uapi.SeriesABI = uapi.DEFAULT_SERIES,
          index: KernelIndex | None = None, source: str | None = None) -> Matrix:
    """The matrix of ``series`` (a series name or its ``uapi.for_series`` view) over the cases
    that apply to it, with ``index`` (that series' source) for the handlers' errnos."""
    view = view_of(series)
    rows: dict[str, Row] = {}
    for name in row_names(view):
        parent = name.split("(", 1)[0]
        io = view.ioctl(parent)
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
    n = skipped = 0
    with using_abi(view):            # sizeof()/minsz()/constants in expressions: the series'
        for case in cases:
            if not applies(case, view.series):
                skipped += 1
                continue
            n += 1
            _count(view, case, rows)
    return Matrix(rows, n, source, view.series, len(view.IOCTLS), skipped)


def _count(view: uapi.SeriesABI, case: Case, rows: dict[str, Row]) -> None:
    prov = _Provenance()
    for step in case.steps:
        expect = step.expect.for_kernel(view.series)
        if step.kind == "ioctl" and not step.from_fixture and expect is not None:
            io = view.ioctl(step.spec["ioctl"])
            targets = [io.name] + [s for s in [sub_row(view, io, step)] if s]
            cols = classify(view, io, step, prov, expect)
            for t in targets:
                row = rows[t]
                for c in cols:
                    if c in row.cells:
                        row.cells[c].add(case.test_id)
                if expect.errno:
                    row.errnos.setdefault(expect.errno, set()).add(case.test_id)
        prov.learn(step)
