"""Load and validate case files (docs/case-format.md).

Everything that can be checked without a target is checked here, so a
malformed case fails at load time with file, line and field, and never
half-way through a run.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import itertools
import re
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from .. import uapi
from ..backends.roles import ROLES
from ..uapi import abi
from ..uapi.kernel_version import VersionError, check_range
from .case import (
    DATA_TYPES,
    MAX_TRANSFER,
    U64_MAX,
    ArrayValue,
    Case,
    CaseError,
    Expectation,
    KnownDifference,
    Matcher,
    Requirements,
    Step,
    int_range,
)
from .expr import Expr, ExprError, current_abi, fits, parse, template_vars, using_abi
from .macros import MACROS_DIR, Expanded, Macros
from .params import substitute as _substitute
from .yamlsrc import LList, LMap, from_data, line_of
from .yamlsrc import load as load_yaml

STEP_KINDS = (
    "open", "close", "ioctl", "raw_ioctl", "mmap", "munmap", "write_mem", "read_mem", "eventfd",
    "memfd", "read", "write", "sysfs_read", "sysfs_write",
)
STEP_KEYS = {
    "open": set(), "close": set(), "mmap": {"align"}, "eventfd": set(), "memfd": {"name"},
    "munmap": {"length"}, "write_mem": set(), "read_mem": set(),
    "read": {"length"}, "write": {"hex"}, "sysfs_read": set(), "sysfs_write": {"value"},
    "ioctl": {"fd", "args", "data", "tail", "buffer", "value", "int", "string", "pointer"},
    "raw_ioctl": {"fd", "hex", "pointer"},
}
COMMON_STEP_KEYS = {"as", "expect", "save", "note"}
TOP_KEYS = {
    "id", "area", "purpose", "source", "verified_on", "requires", "fixture", "steps",
    "cleanup", "variants", "matrix", "known_differences", "notes",
}
REQUIRED_TOP = ("id", "area", "purpose", "verified_on", "steps")
MATCH_OPS = {"has", "lacks", "ne", "ge", "gt", "le", "lt", "aligned", "any"}
_ID = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_FIXTURES_DIR = "fixtures"
_FIXTURE_KEYS = {"requires", "steps", "notes", "variants", "extends"}
# How many fixtures one `extends` chain may hold.
MAX_EXTENDS = 8
# Bounds on one case file: its size, and how many cases its variants or matrix may make.
MAX_FILE_BYTES = 1 << 20
MAX_VARIANTS = 256
_EVERY = uapi.every_series()


class _Ctx:
    """Where we are in a file, for error messages."""

    def __init__(self, path: Path):
        self.path = path

    def err(self, node: Any, key: Any, where: str, msg: str) -> CaseError:
        return CaseError(self.path, line_of(node, key), where, msg)


def _value(ctx: _Ctx, node: Any, key: Any, where: str, v: Any) -> Any:
    """Validate one value expression (or list of them); return its parsed form."""
    if isinstance(v, bool):
        raise ctx.err(node, key, where, "booleans are not values; use 0 or 1")
    if isinstance(v, int):
        try:
            return fits(v)
        except ExprError as e:
            raise ctx.err(node, key, where, str(e)) from None
    if isinstance(v, str):
        try:
            return parse(v)
        except ExprError as e:
            raise ctx.err(node, key, where, str(e)) from None
    if isinstance(v, list):
        return [_value(ctx, v, i, f"{where}[{i}]", x) for i, x in enumerate(v)]
    raise ctx.err(node, key, where, f"expected a number, expression or list, got {type(v).__name__}")


def _constant(v: Any) -> int | None:
    """The value of a parsed value that reads no ``$variable`` (None: known only at run time)."""
    if isinstance(v, list):
        parts = [_constant(x) for x in v]
        if any(p is None or p < 0 for p in parts):
            return None if any(p is None for p in parts) else min(parts)  # type: ignore[type-var]
        acc = 0
        for p in parts:
            acc |= p  # type: ignore[operator]
        return acc
    if isinstance(v, Expr) and not v.variables:
        out = v.eval({})
        return out if isinstance(out, int) else None
    return v if isinstance(v, int) else None


def _in_range(ctx: _Ctx, node: Any, key: Any, where: str, v: Any, lo: int, hi: int, what: str) -> Any:
    """``v`` (parsed) if its value, where known at load, lies in [lo, hi]; else the error naming ``what``."""
    value = _constant(v)
    if value is not None and not lo <= value <= hi:
        raise ctx.err(node, key, where, f"{value:#x} is outside {what} ({lo:#x} to {hi:#x})"
                      if abs(value) > 9 else f"{value} is outside {what} ({lo:#x} to {hi:#x})")
    return v


def _ctype_range(ctype: Any) -> tuple[int, int, str] | None:
    """The values a scalar ctypes field holds, and its C name (None: not an integer)."""
    code = getattr(ctype, "_type_", None)
    if not isinstance(ctype, type) or not issubclass(ctype, ctypes._SimpleCData) or not isinstance(code, str) \
            or code not in "bBhHiIlLqQ":
        return None
    width = ctypes.sizeof(ctype)
    signed = code in "bhilq"
    lo, hi = int_range(width, signed)
    return lo, hi, f"{'__s' if signed else '__u'}{width * 8}"


def _field_value(ctx: _Ctx, node: Any, key: Any, where: str, v: Any, ctype: Any) -> Any:
    """A scalar field's value: a constant must fit the field; a negative one in an unsigned
    field is refused, not masked (-1 is no shorthand for all ones: write U32_MAX, U64_MAX)."""
    parsed = _value(ctx, node, key, where, v)
    r = _ctype_range(ctype)
    return _in_range(ctx, node, key, where, parsed, r[0], r[1], f"a {r[2]} field") if r else parsed


def _struct_fields(cls: type) -> dict[str, Any]:
    """Field name -> ctype, with an anonymous union's members under their own names."""
    out: dict[str, Any] = {}
    for name, ctype, *_ in cls._fields_:  # type: ignore[attr-defined]
        if name in getattr(cls, "_anonymous_", ()):
            out.update(_struct_fields(ctype))
        else:
            out[name] = ctype
    return out


def _args(ctx: _Ctx, node: LMap, where: str, cls: type, io: abi.Ioctl | None) -> dict[str, Any]:
    fields = _struct_fields(cls)
    out: dict[str, Any] = {}
    for k, v in node.items():
        w = f"{where}.{k}"
        if k not in fields:
            raise ctx.err(node, k, w, f"struct {cls.__name__} has no field {k!r} "
                                      f"(fields: {', '.join(fields)})")
        ctype = fields[k]
        if io is not None and k in io.pointers and isinstance(v, dict):
            out[k] = _pointer(ctx, node, k, w, v)
        elif isinstance(ctype, type) and issubclass(ctype, ctypes.Array):
            length = int(getattr(ctype, "_length_", 0))
            if not isinstance(v, list) or len(v) > length:
                raise ctx.err(node, k, w, f"{k} is an array of {length}: give a list of at most that many")
            out[k] = ArrayValue([_field_value(ctx, v, i, f"{w}[{i}]", x, getattr(ctype, "_type_", None))
                                 for i, x in enumerate(v)])
        elif isinstance(ctype, type) and issubclass(ctype, (abi.Struct, abi.Union)):
            if not isinstance(v, dict):
                raise ctx.err(node, k, w, f"{k} is a struct {ctype.__name__}: give a mapping of its fields")
            out[k] = _args(ctx, v, w, ctype, None)  # type: ignore[arg-type]
        else:
            out[k] = _field_value(ctx, node, k, w, v, ctype)
    return out


def _pointer(ctx: _Ctx, node: LMap, key: str, where: str, v: Any) -> dict[str, Any]:
    kinds = {"array", "bytes", "hex"} & set(v)
    if len(kinds) != 1:
        raise ctx.err(node, key, where, "a pointer field takes one of {array: STRUCT, items|count}, "
                                        "{bytes: N}, {hex: ...}")
    if "array" in v:
        name = v["array"]
        if not isinstance(name, str) or name not in current_abi().STRUCTS:
            raise ctx.err(v, "array", f"{where}.array", f"unknown struct {name!r}")
        unknown = set(v) - {"array", "items", "count"}
        if unknown or ("items" in v) == ("count" in v):
            raise ctx.err(v, "array", where, "array takes exactly one of items: [...] or count: N")
        if "items" in v:
            items = [_args(ctx, it, f"{where}.items[{i}]", current_abi().STRUCTS[name], None)
                     for i, it in enumerate(v["items"])]
            return {"array": name, "items": items}
        size = ctypes.sizeof(current_abi().STRUCTS[name])
        count = _value(ctx, v, "count", f"{where}.count", v["count"])
        return {"array": name, "count": _in_range(ctx, v, "count", f"{where}.count", count, 0, MAX_TRANSFER // size,
                                                  f"the counts of {size}-byte {name} in the harness's buffer sizes")}
    if "bytes" in v:
        n = _value(ctx, v, "bytes", f"{where}.bytes", v["bytes"])
        return {"bytes": _in_range(ctx, v, "bytes", f"{where}.bytes", n, 0, MAX_TRANSFER,
                                   "the harness's buffer sizes")}
    return {"hex": _hex(ctx, v, "hex", f"{where}.hex", v["hex"])}


def _hex(ctx: _Ctx, node: Any, key: Any, where: str, v: Any) -> bytes:
    try:
        return bytes.fromhex(str(v).replace(" ", ""))
    except ValueError:
        raise ctx.err(node, key, where, f"not hex bytes: {v!r}") from None




def _data(ctx: _Ctx, node: LMap, key: str, where: str) -> dict[str, Any]:
    v = node[key]
    if not isinstance(v, dict) or len(v) != 1:
        raise ctx.err(node, key, where, "give one of {u8|u16|u32|s32|u64: [...]} or {hex: ...}")
    (kind, items), = v.items()
    if kind == "hex":
        return {"hex": _hex(ctx, v, kind, where, items)}
    if kind not in DATA_TYPES or not isinstance(items, list):
        raise ctx.err(v, kind, where, f"unknown element type {kind!r} (u8, u16, u32, s32, u64, hex)")
    lo, hi = int_range(*DATA_TYPES[kind])
    return {kind: [_in_range(ctx, items, i, f"{where}[{i}]", _value(ctx, items, i, f"{where}[{i}]", x), lo, hi,
                             f"a {kind}") for i, x in enumerate(items)]}


def _matcher(ctx: _Ctx, node: Any, key: Any, where: str, v: Any) -> list[Matcher]:
    """A plain value, or a mapping of one or more of MATCH_OPS that must all hold."""
    if isinstance(v, dict):
        unknown = [op for op in v if op not in MATCH_OPS]
        if not v or unknown:
            raise ctx.err(node, key, where, f"a matcher takes {sorted(MATCH_OPS)}, got {unknown or 'nothing'}")
        return [Matcher("any") if op == "any" else Matcher(op, _value(ctx, v, op, f"{where}.{op}", arg))
                for op, arg in v.items()]
    return [Matcher("eq", _value(ctx, node, key, where, v))]


def _errno_name(ctx: _Ctx, node: Any, key: Any, where: str, v: Any) -> str:
    if not isinstance(v, str) or not v.startswith("E") or not hasattr(_errno, v):
        raise ctx.err(node, key, where, f"not an errno name: {v!r}")
    return v


def _expect(ctx: _Ctx, step: LMap, where: str) -> Expectation:
    if "expect" not in step:
        return Expectation()
    v = step["expect"]
    w = f"{where}.expect"
    if v == "ok":
        return Expectation()
    if v == "any":
        return Expectation(anything=True)
    if isinstance(v, str):
        return Expectation(errno=_errno_name(ctx, step, "expect", w, v))
    if not isinstance(v, dict):
        raise ctx.err(step, "expect", w, "expect is ok, any, an errno name, or a mapping")
    if "by_kernel" in v:
        return _by_kernel(ctx, v, w)
    unknown = set(v) - {"errno", "ok", "ret", "out", "untouched_past_size", "text", "data"}
    if unknown:
        first = sorted(unknown, key=repr)[0]   # keys may mix types: {"": .., 0: ..}
        raise ctx.err(v, first, w, f"unknown expectation {first!r}")
    e = Expectation()
    if "errno" in v:
        e.errno = _errno_name(ctx, v, "errno", f"{w}.errno", v["errno"])
    if "ret" in v:
        e.ret = _matcher(ctx, v, "ret", f"{w}.ret", v["ret"])
    if "out" in v:
        if not isinstance(v["out"], dict):
            raise ctx.err(v, "out", f"{w}.out", "out is a mapping of field: value")
        e.out = {str(k): _matcher(ctx, v["out"], k, f"{w}.out.{k}", x) for k, x in v["out"].items()}
    e.untouched_past_size = bool(v.get("untouched_past_size", False))
    if "text" in v:
        e.text = str(v["text"])
    if "data" in v:
        e.data = _hex(ctx, v, "data", f"{w}.data", v["data"]).hex()
    return e


def _by_kernel(ctx: _Ctx, v: dict[str, Any], where: str) -> Expectation:
    """``{by_kernel: {RANGE: expectation, ...}}``: one expectation per kernel range."""
    table = v["by_kernel"]
    w = f"{where}.by_kernel"
    if len(v) != 1:
        raise ctx.err(v, "by_kernel", where, "by_kernel stands alone: put every expectation under its range")
    if not isinstance(table, LMap) or not table:
        raise ctx.err(v, "by_kernel", w, "by_kernel is a mapping RANGE: expectation (e.g. \"<7.2\": EINVAL)")
    out = Expectation()
    for rng, exp in table.items():
        try:
            check_range(str(rng))
        except VersionError as err:
            raise ctx.err(table, rng, f"{w}.{rng}", str(err)) from None
        holder = LMap({"expect": exp})
        holder.line, holder.lines = table.line, {"expect": line_of(table, rng)}
        one = _expect(ctx, holder, f"{w}.{rng}")
        if one.by_kernel:
            raise ctx.err(table, rng, f"{w}.{rng}", "by_kernel does not nest")
        out.by_kernel.append((str(rng), one))
    return out


def _check_out_paths(ctx: _Ctx, step: LMap, where: str, io: abi.Ioctl, paths: Iterable[str], key: str) -> None:
    if io.struct is None:
        return
    valid = {p for p, *_ in abi.walk_fields(io.struct)} | set(io.pointers)
    for p in paths:
        head = re.split(r"\[", p)[0]
        if head not in valid and head.split(".")[0] not in valid:
            raise ctx.err(step, key, f"{where}.{key}",
                          f"{io.name} has no output field {p!r}")


def _step(ctx: _Ctx, raw: Any, idx: int, where: str, bound: set[str], line: int = 0) -> Step:
    """One step; ``line`` is where it stands, for a step that is no mapping (and knows no line)."""
    if not isinstance(raw, LMap):
        raise CaseError(ctx.path, line_of(raw) or line, where, "a step is a mapping")
    kinds = [k for k in raw if k in STEP_KINDS]
    if len(kinds) != 1:
        raise ctx.err(raw, None, where, f"a step has exactly one of {', '.join(STEP_KINDS)}; got {list(raw)}")
    kind = kinds[0]
    allowed = STEP_KEYS[kind] | COMMON_STEP_KEYS | {kind}
    for k in raw:
        if k not in allowed:
            raise ctx.err(raw, k, f"{where}.{k}", f"unknown key for a {kind} step (allowed: {sorted(allowed)})")
    spec: dict[str, Any] = {}
    target = raw[kind]

    def need_bound(name: Any, key: str) -> str:
        if not isinstance(name, str) or name.lstrip("$") not in bound:
            raise ctx.err(raw, key, f"{where}.{key}", f"{name!r} is not bound by an earlier step's `as`")
        return name.lstrip("$")

    if kind == "ioctl":
        if not isinstance(target, str) or target not in current_abi().IOCTLS:
            raise ctx.err(raw, kind, f"{where}.ioctl", f"unknown ioctl {target!r}")
        io = current_abi().IOCTLS[target]
        spec["ioctl"] = target
        if "fd" not in raw:
            raise ctx.err(raw, kind, where, "an ioctl step needs fd: NAME")
        spec["fd"] = need_bound(raw["fd"], "fd")
        arg_keys = {"args", "data", "tail", "buffer", "value", "int", "string", "pointer"} & set(raw)
        if "pointer" in raw and len(arg_keys) > 1:
            raise ctx.err(raw, "pointer", f"{where}.pointer",
                          "pointer: replaces the argument; nothing else goes with it")
        wants = {abi.ARG_STRUCT: {"args", "data", "tail", "buffer"}, abi.ARG_VALUE: {"value"},
                 abi.ARG_INT_PTR: {"int"}, abi.ARG_STRING: {"string"}, abi.ARG_U32_PTR: {"value"},
                 abi.ARG_NONE: set()}[io.arg] | {"pointer"}
        for k in arg_keys - wants:
            raise ctx.err(raw, k, f"{where}.{k}", f"{target} takes its argument as {io.arg}; {k}: does not apply")
        if "args" in raw:
            if not isinstance(raw["args"], LMap):
                raise ctx.err(raw, "args", f"{where}.args", "args is a mapping of struct fields")
            spec["args"] = _args(ctx, raw["args"], f"{where}.args", io.struct, io)  # type: ignore[arg-type]
        for k in ("data", "tail"):
            if k in raw:
                spec[k] = _data(ctx, raw, k, f"{where}.{k}")
        if "buffer" in raw:
            b = raw["buffer"]
            if not isinstance(b, LMap) or set(b) - {"length", "fill"}:
                raise ctx.err(raw, "buffer", f"{where}.buffer", "buffer takes length: and fill:")
            spec["buffer"] = {k: _value(ctx, b, k, f"{where}.buffer.{k}", x) for k, x in b.items()}
            if "length" in b:
                _in_range(ctx, b, "length", f"{where}.buffer.length", spec["buffer"]["length"], 0, MAX_TRANSFER,
                          "the harness's buffer sizes")
        for k in ("value", "pointer"):
            if k in raw:
                spec[k] = _value(ctx, raw, k, f"{where}.{k}", raw[k])
        if "int" in raw:
            spec["int"] = _value(ctx, raw, "int", f"{where}.int", raw["int"])
        if "string" in raw:
            spec["string"] = str(raw["string"])
    elif kind == "raw_ioctl":
        spec["raw_ioctl"] = _value(ctx, raw, kind, f"{where}.raw_ioctl", target)
        if "fd" not in raw:
            raise ctx.err(raw, kind, where, "a raw_ioctl step needs fd: NAME")
        spec["fd"] = need_bound(raw["fd"], "fd")
        if ("hex" in raw) == ("pointer" in raw):
            raise ctx.err(raw, kind, where, "a raw_ioctl step takes hex: (a buffer) or pointer: (a number)")
        if "hex" in raw:
            spec["hex"] = _hex(ctx, raw, "hex", f"{where}.hex", raw["hex"])
        else:
            spec["pointer"] = _value(ctx, raw, "pointer", f"{where}.pointer", raw["pointer"])
    elif kind in ("close", "read", "write"):
        spec[kind] = need_bound(target, kind)
        if kind == "read":
            spec["length"] = _value(ctx, raw, "length", f"{where}.length", raw.get("length", 8))
        if kind == "write":
            spec["hex"] = _hex(ctx, raw, "hex", f"{where}.hex", raw.get("hex", ""))
    elif kind == "munmap":
        spec[kind] = need_bound(target, kind)
        if "length" in raw:
            spec["length"] = _value(ctx, raw, "length", f"{where}.length", raw["length"])
    elif kind in ("mmap", "eventfd"):
        spec[kind] = _value(ctx, raw, kind, f"{where}.{kind}", target if target is not None else 0)
        if kind == "mmap":
            _in_range(ctx, raw, kind, f"{where}.mmap", spec[kind], 0, U64_MAX, "a size_t (an mmap length)")
        else:
            _in_range(ctx, raw, kind, f"{where}.eventfd", spec[kind], 0, (1 << 32) - 1,
                      "eventfd's initval (an unsigned int)")
        if "align" in raw:
            align = raw["align"]
            if not isinstance(align, int) or not 4096 <= align <= 1 << 30 or align & (align - 1):
                raise ctx.err(raw, "align", f"{where}.align", "align is a power of two from 4096 to 1 GiB")
            spec["align"] = align
    elif kind == "memfd":
        if target is None:
            raise ctx.err(raw, kind, f"{where}.memfd", "memfd takes the file's size (memfd: 0x4000)")
        spec[kind] = _value(ctx, raw, kind, f"{where}.memfd", target)
        if "name" in raw:
            name = raw["name"]
            if not isinstance(name, str) or "\0" in name or len(name.encode()) > 249:
                raise ctx.err(raw, "name", f"{where}.name",
                              "name is a string of at most 249 bytes without NUL (memfd_create's limit)")
            spec["name"] = name
    elif kind in ("open", "sysfs_read", "sysfs_write"):
        if not isinstance(target, str):
            raise ctx.err(raw, kind, f"{where}.{kind}", "give a path")
        spec[kind] = target
        if kind == "sysfs_write":
            if "value" not in raw:
                raise ctx.err(raw, kind, where, "sysfs_write needs value:")
            spec["value"] = str(raw["value"])
    elif kind in ("write_mem", "read_mem"):
        if not isinstance(target, LMap) or "at" not in target:
            raise ctx.err(raw, kind, f"{where}.{kind}", f"{kind} takes {{at: EXPR, ...}}")
        spec["at"] = _value(ctx, target, "at", f"{where}.{kind}.at", target["at"])
        if kind == "write_mem":
            spec["hex"] = _hex(ctx, target, "hex", f"{where}.{kind}.hex", target.get("hex", ""))
        else:
            spec["length"] = _in_range(
                ctx, target, "length", f"{where}.{kind}.length",
                _value(ctx, target, "length", f"{where}.{kind}.length", target.get("length", 8)),
                0, MAX_TRANSFER, "the harness's buffer sizes")
    for name in _referenced_vars(spec):
        if name not in bound:
            raise ctx.err(raw, kind, where, f"${name} is not bound by an earlier step or role")
    step = Step(index=idx, kind=kind, line=raw.line, spec=spec, note=str(raw.get("note", "")))
    if kind == "ioctl":
        struct = current_abi().IOCTLS[target].struct
        step.uses = frozenset({target} | {f"{struct.__name__}.{f}" for f in spec.get("args", {})} if struct
                              else {target})
    step.expect = _expect(ctx, raw, where)
    if step.kind == "ioctl":
        for e in [step.expect] + [e for _, e in step.expect.by_kernel]:
            _check_out_paths(ctx, raw, where, current_abi().IOCTLS[spec["ioctl"]], e.out, "expect")
    if "save" in raw:
        if not isinstance(raw["save"], LMap):
            raise ctx.err(raw, "save", f"{where}.save", "save is a mapping name: output field")
        step.save = {str(k): str(v) for k, v in raw["save"].items()}
        if step.kind == "ioctl":
            _check_out_paths(ctx, raw, where, current_abi().IOCTLS[spec["ioctl"]], step.save.values(), "save")
        bound.update(step.save)
    if "as" in raw:
        if not isinstance(raw["as"], str) or not _ID.match(raw["as"].replace("_", "-")):
            raise ctx.err(raw, "as", f"{where}.as", "as: takes a name")
        step.bind = raw["as"]
        bound.add(step.bind)
    return step


def _referenced_vars(spec: Any) -> set[str]:
    out: set[str] = set()
    if isinstance(spec, dict):
        for v in spec.values():
            out |= _referenced_vars(v)
    elif isinstance(spec, list):
        for v in spec:
            out |= _referenced_vars(v)
    elif hasattr(spec, "variables"):
        out |= set(spec.variables)
    elif isinstance(spec, str):
        out |= template_vars(spec)
    return out


def _requires(ctx: _Ctx, doc: LMap) -> Requirements:
    r = Requirements()
    raw = doc.get("requires")
    if raw is None:
        return r
    if not isinstance(raw, LMap):
        raise ctx.err(doc, "requires", "requires", "requires is a mapping")
    for k, v in raw.items():
        w = f"requires.{k}"
        if k in ("config", "nodes"):
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise ctx.err(raw, k, w, "a list of names")
            setattr(r, k, list(v))
        elif k == "container":
            if v not in ("legacy", "iommufd"):
                raise ctx.err(raw, k, w, "legacy or iommufd")
            r.container = v
        elif k == "mock_domains":
            if not isinstance(v, bool):
                raise ctx.err(raw, k, w, "true or false")
            r.mock_domains = v
        elif k == "kernel":
            try:
                check_range(v)
            except VersionError as e:
                raise ctx.err(raw, k, w, str(e)) from None
            r.kernel = v
        elif k == "topology":
            if not isinstance(v, LMap):
                raise ctx.err(raw, k, w, "a mapping role-name: role")
            for name, role in v.items():
                if not isinstance(role, str) or role not in ROLES:
                    raise ctx.err(v, name, f"{w}.{name}", f"unknown role {role!r} (roles: {sorted(ROLES)})")
            r.topology = dict(v)
        else:
            raise ctx.err(raw, k, w, "unknown requirement (config, nodes, container, mock_domains, kernel, topology)")
    return r


def _known_differences(ctx: _Ctx, doc: LMap, step_lines: set[int]) -> list[KnownDifference]:
    raw = doc.get("known_differences")
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ctx.err(doc, "known_differences", "known_differences", "a list of {reason, kernels, step, field}")
    out = []
    for i, item in enumerate(raw):
        w = f"known_differences[{i}]"
        if not isinstance(item, LMap) or set(item) - {"reason", "kernels", "step", "field"}:
            raise ctx.err(raw, i, w, "takes reason:, kernels:, and optionally step: (a step's line) and field:")
        if not isinstance(item.get("reason"), str) or not item["reason"].strip():
            raise ctx.err(item, "reason", f"{w}.reason", "say why the kernel differs from the contract")
        kernels = item.get("kernels")
        if not isinstance(kernels, list) or not kernels:
            raise ctx.err(item, "kernels", f"{w}.kernels", "list the kernel versions it applies to, e.g. [\"6.12\"]")
        for k in kernels:
            try:
                check_range(str(k))
            except VersionError as err:
                raise ctx.err(item, "kernels", f"{w}.kernels", str(err)) from None
        line = item.get("step", 0)
        if not isinstance(line, int) or isinstance(line, bool):
            raise ctx.err(item, "step", f"{w}.step", "the line number of a step")
        if line and line not in step_lines:
            raise ctx.err(item, "step", f"{w}.step", f"no step starts at line {line}")
        out.append(KnownDifference(item["reason"].strip(), tuple(str(k) for k in kernels), line,
                                   str(item.get("field", ""))))
    return out


def _merge(a: Requirements, b: Requirements) -> Requirements:
    return Requirements(
        config=sorted(set(a.config) | set(b.config)),
        nodes=list(dict.fromkeys(a.nodes + b.nodes)),
        container=b.container or a.container,
        mock_domains=b.mock_domains if b.mock_domains is not None else a.mock_domains,
        kernel=",".join(x for x in (a.kernel, b.kernel) if x),
        topology={**a.topology, **b.topology},
    )


def _variants(ctx: _Ctx, doc: LMap) -> list[tuple[str | None, dict[str, Any]]]:
    if "variants" in doc and "matrix" in doc:
        raise ctx.err(doc, "matrix", "matrix", "use variants or matrix, not both")
    if "variants" in doc:
        v = doc["variants"]
        if not isinstance(v, LMap) or not v:
            raise ctx.err(doc, "variants", "variants", "variants is a mapping name: {param: value}")
        if len(v) > MAX_VARIANTS:
            raise ctx.err(doc, "variants", "variants", f"{len(v)} variants (at most {MAX_VARIANTS})")
        out: list[tuple[str | None, dict[str, Any]]] = []
        for name, params in v.items():
            if not isinstance(params, LMap) or not _ID.match(str(name)):
                raise ctx.err(v, name, f"variants.{name}", "a variant is name: {param: value, ...}")
            out.append((str(name), dict(params)))
        return out
    if "matrix" in doc:
        m = doc["matrix"]
        if not isinstance(m, LMap) or not all(isinstance(x, list) and x for x in m.values()):
            raise ctx.err(doc, "matrix", "matrix", "matrix is a mapping param: [values]")
        keys = list(m)
        total = 1
        for k in keys:
            total *= len(m[k])
        if total > MAX_VARIANTS:
            raise ctx.err(doc, "matrix", "matrix", f"expands to {total} variants (at most {MAX_VARIANTS})")
        expanded: list[tuple[str | None, dict[str, Any]]] = []
        for combo in itertools.product(*(m[k] for k in keys)):
            name = "-".join(_variant_name(c) for c in combo)
            expanded.append((name, dict(zip(keys, combo, strict=True))))
        return expanded
    return [(None, {})]


def _variant_name(v: Any) -> str:
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) > 9:
        return f"{v:#x}"
    return str(v).lower().replace("_", "-")


Variant = tuple[str | None, dict[str, Any]]


def _combine(ctx: _Ctx, doc: LMap, key: str, outer: list[Variant],
             inner: list[Variant]) -> list[tuple[Variant, str | None]]:
    """The variants of a case (or fixture) ``inner`` over those of its fixture ``outer``, each with
    the outer variant it came from.  Inner variants named like outer ones refine them (their
    parameters win) and must name every one; otherwise every pair runs, named ``outer-inner``."""
    if inner == [(None, {})]:
        return [(o, o[0]) for o in outer]
    if outer == [(None, {})]:
        return [(i, None) for i in inner]
    onames = [o for o, _ in outer]
    shared = [n for n, _ in inner if n in onames]
    if shared:
        if len(shared) != len(inner) or len(inner) != len(outer):
            rest = [n for n, _ in inner if n not in onames] or [n for n in onames if n not in shared]
            raise ctx.err(doc, key, key, f"the fixture's variants are {', '.join(map(str, onames))}: name every one "
                                         f"to refine them, or none for every pair ({rest[0]!r} breaks the rule)")
        mine = dict(inner)
        return [((o, {**params, **mine[o]}), o) for o, params in outer]
    if len(outer) * len(inner) > MAX_VARIANTS:
        raise ctx.err(doc, key, key, f"{len(outer)} fixture variants x {len(inner)} make more than {MAX_VARIANTS}")
    return [((f"{o}-{i}", {**op, **ip}), o) for o, op in outer for i, ip in inner]


class _Fixture:
    """A fixture with its `extends` chain resolved: requirements and variants merged, and the
    steps of each file in the chain, base first."""

    def __init__(self, requires: Requirements, steps: list[tuple[LList, Path]],
                 variants: list[Variant], variant_requires: dict[str | None, Requirements]):
        self.requires, self.steps, self.variants = requires, steps, variants
        self.variant_requires = variant_requires


class Loader:
    def __init__(self, root: Path):
        self.root = root
        self._fixtures: dict[str, _Fixture] = {}
        self.macros = Macros(root, _read, STEP_KINDS)

    def _fixture(self, ctx: _Ctx, doc: LMap, key: str = "fixture", chain: tuple[str, ...] = ()) -> _Fixture | None:
        name = doc.get(key)
        if name is None:
            return None
        if not isinstance(name, str) or not _ID.match(name):
            raise ctx.err(doc, key, key, "names a file of cases/fixtures/ without .yaml ([a-z0-9-]+)")
        if name in chain:
            raise ctx.err(doc, key, key, f"fixture {name!r} extends itself ({' -> '.join((*chain, name))})")
        if len(chain) >= MAX_EXTENDS:
            raise ctx.err(doc, key, key, f"extends chains at most {MAX_EXTENDS} fixtures ({' -> '.join(chain)} -> ...)")
        if name not in self._fixtures:
            path = self.root / _FIXTURES_DIR / f"{name}.yaml"
            if not path.is_file():
                raise ctx.err(doc, key, key, f"no fixture {name!r} ({path})")
            try:
                self._fixtures[name] = self._read_fixture(path, (*chain, name))
            except CaseError as e:   # named from the case too: it is the case that cannot run
                raise ctx.err(doc, key, key, str(e)) from None
        return self._fixtures[name]

    def _read_fixture(self, path: Path, chain: tuple[str, ...]) -> _Fixture:
        fdoc = _read(path)
        fctx = _Ctx(path)
        if not isinstance(fdoc, LMap) or not {"steps", "extends", "variants"} & set(fdoc):
            raise CaseError(path, 1, "", "a fixture has requires: and steps: (or extends:, variants:)")
        for k in fdoc:
            if k not in _FIXTURE_KEYS:
                raise fctx.err(fdoc, k, k, "a fixture names no fixture of its own (extends: NAME builds on one)"
                               if k == "fixture" else f"unknown key in a fixture (allowed: {sorted(_FIXTURE_KEYS)})")
        steps = fdoc.get("steps", LList())
        if not isinstance(steps, LList):
            raise fctx.err(fdoc, "steps", "steps", "a list of steps")
        base = self._fixture(fctx, fdoc, "extends", chain)
        req = _requires(fctx, fdoc)
        own = _variants(fctx, fdoc) if "variants" in fdoc else [(None, {})]
        variant_requires: dict[str | None, Requirements] = {}
        for vname, params in own:
            if "requires" in params:
                holder = LMap({"requires": params["requires"]})
                holder.line, holder.lines = fdoc.line, {"requires": line_of(fdoc["variants"], vname)}
                variant_requires[vname] = _requires(fctx, holder)
        if base is None:
            return _Fixture(req, [(steps, path)], own, variant_requires)
        combined = _combine(fctx, fdoc, "variants", base.variants, own)
        for (vname, _), origin in combined:
            here = variant_requires.get(vname)
            there = base.variant_requires.get(origin)
            if here and there:
                variant_requires[vname] = _merge(there, here)
            elif there:
                variant_requires[vname] = there
        return _Fixture(_merge(base.requires, req), [*base.steps, (steps, path)], [v for v, _ in combined],
                        variant_requires)

    def _steps(self, ctx: _Ctx, raws: LList, path: Path, where: str, bound: set[str], first: int,
               from_fixture: bool, at: tuple[LMap, str] | None = None) -> list[Step]:
        """``raws`` checked, macro calls expanded; ``at`` (a node and key of the case) names a
        fixture's error from the case, as the case is what cannot run."""
        out: list[Step] = []
        try:
            expanded = self.macros.expand(raws, path, where)
            for x in expanded:
                out.append(self._one(x, first + len(out), bound))
        except CaseError as e:
            if at is None:
                raise
            raise ctx.err(at[0], at[1], at[1], str(e)) from None
        for s in out:
            s.from_fixture = from_fixture
        return out

    @staticmethod
    def _one(x: Expanded, index: int, bound: set[str]) -> Step:
        if x.call is None:
            return _step(_Ctx(x.path), x.raw, index, x.where, bound, x.line)
        try:
            step = _step(_Ctx(x.path), x.raw, index, x.where, bound, x.line)
        except CaseError as e:    # named at the call, with the macro's own file and line
            raise CaseError(x.call[0], x.call[1], x.call[2],
                            f"in {' -> '.join(x.chain)} ({e.path}:{e.line}: {e.where}): {e.message}") from None
        step.line = x.call[1]
        return step

    def load_file(self, path: Path) -> list[Case]:
        """The cases of one file; its names are checked against every series' uAPI (a case may
        name what only some kernels have: it is skipped, with the reason, where they lack it)."""
        with using_abi(_EVERY):
            return self._load_file(path)

    def _load_file(self, path: Path) -> list[Case]:
        doc = _read(path)
        ctx = _Ctx(path)
        if not isinstance(doc, LMap):
            raise CaseError(path, 1, "", "a case file is a mapping")
        for k in doc:
            if k not in TOP_KEYS:
                raise ctx.err(doc, k, k, f"unknown key (allowed: {sorted(TOP_KEYS)})")
        for k in REQUIRED_TOP:
            if k not in doc:
                raise ctx.err(doc, None, k, "missing (required: " + ", ".join(REQUIRED_TOP) + ")")
        if not isinstance(doc["id"], str) or not _ID.match(doc["id"]):
            raise ctx.err(doc, "id", "id", "lower-case letters, digits and dashes")
        rel_area = path.parent.name
        if doc["area"] != rel_area:
            raise ctx.err(doc, "area", "area", f"is {doc['area']!r} but the file is in folder {rel_area!r}")
        if not isinstance(doc["verified_on"], list):
            raise ctx.err(doc, "verified_on", "verified_on", "a list of kernel versions ([] = model only)")
        own = _variants(ctx, doc)
        # A fixture named outright lends its variants; one picked per variant (`fixture: ${p}`) has none.
        static = doc.get("fixture")
        fixed = self._fixture(ctx, doc) if not (isinstance(static, str) and "${" in static) else None
        key = "matrix" if "matrix" in doc else "variants"
        plan = _combine(ctx, doc, key, fixed.variants, own) if fixed is not None else [(v, None) for v in own]
        cases = []
        for (vname, params), origin in plan:
            d = _substitute(doc, params)
            fixture = fixed if fixed is not None else self._fixture(ctx, d)
            if fixed is None and fixture is not None and fixture.variants != [(None, {})]:
                raise ctx.err(d, "fixture", "fixture", "a fixture picked per variant has no variants of its own")
            req = _requires(ctx, d)
            if fixture is not None:
                extra = fixture.variant_requires.get(origin)
                req = _merge(_merge(fixture.requires, extra) if extra else fixture.requires, req)
            bound: set[str] = set(req.topology)
            steps: list[Step] = []
            if fixture is not None:
                for fsteps, fpath in fixture.steps:
                    steps += self._steps(ctx, _substitute(fsteps, params), fpath, "fixture.steps", bound, len(steps),
                                         True, (d, "fixture"))
            if not isinstance(d["steps"], LList) or not d["steps"]:
                raise ctx.err(d, "steps", "steps", "a non-empty list of steps")
            steps += self._steps(ctx, d["steps"], path, "steps", bound, len(steps), False)
            raw_cleanup = d.get("cleanup") or LList()
            if not isinstance(raw_cleanup, LList):
                raise ctx.err(d, "cleanup", "cleanup", "a list of steps")
            cleanup = self._steps(ctx, raw_cleanup, path, "cleanup", bound, 0, False)
            kd = _known_differences(ctx, d, {s.line for s in steps})
            cases.append(Case(
                id=d["id"], area=d["area"], purpose=" ".join(str(d["purpose"]).split()), path=path,
                line=d.line, source=str(d.get("source", "")), verified_on=[str(x) for x in d["verified_on"]],
                requires=req, steps=steps, cleanup=cleanup, variant=vname, params=params,
                known_differences=kd,
            ))
        return cases

    def load_all(self, pattern: str = "**/*.yaml") -> tuple[list[Case], list[CaseError]]:
        cases: list[Case] = []
        errors: list[CaseError] = []
        seen: dict[str, Path] = {}
        patterns = [pattern]
        if not pattern.endswith((".yaml", ".yml")):
            # A folder or folder glob ("ioas", "size/**") means the case files below it; a
            # name glob without the extension ("ownership/cdev-bind*") the files it names.
            base = pattern.rstrip("/")
            patterns = [base + "/*.yaml"] if base.endswith("**") else [base + "/**/*.yaml", base + ".yaml"]
        for path in sorted({p for pat in patterns for p in self.root.glob(pat)}):
            if path.relative_to(self.root).parts[:1] in ((_FIXTURES_DIR,), (MACROS_DIR,)):
                continue
            try:
                loaded = self.load_file(path)
            except CaseError as e:
                errors.append(e)
                continue
            except Exception as e:  # one bad file never stops the run: it is reported like any other
                errors.append(CaseError(path, 0, "", f"cannot be loaded: {type(e).__name__}: {e}"[:500]))
                continue
            for c in loaded:
                if c.test_id in seen and seen[c.test_id] != path:
                    errors.append(CaseError(path, c.line, "id", f"duplicate id {c.id!r} (also in {seen[c.test_id]})"))
                    continue
                seen[c.test_id] = path
                cases.append(c)
        return cases, errors


def parse_steps(raws: list[dict[str, Any]], bound: set[str], origin: str = "<generated>") -> list[Step]:
    """Steps given as plain data (as a case file's ``steps:`` would hold them), checked
    like a case file's; ``bound`` (the names earlier steps bound) grows as they bind."""
    ctx = _Ctx(Path(origin))
    with using_abi(_EVERY):
        return [_step(ctx, from_data(raw), i, f"steps[{i}]", bound) for i, raw in enumerate(raws)]


def _read(path: Path) -> Any:
    """A case file's YAML: only a regular file of at most MAX_FILE_BYTES of UTF-8 is read (a FIFO
    would block, a link to /dev/zero never end)."""
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            raise CaseError(path, 0, "", "not a regular file")
        if st.st_size > MAX_FILE_BYTES:
            raise CaseError(path, 0, "", f"larger than {MAX_FILE_BYTES} bytes")
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise CaseError(path, 0, "", f"larger than {MAX_FILE_BYTES} bytes")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            line = data[:e.start].count(b"\n") + 1
            raise CaseError(path, line, "", f"not UTF-8 text (byte {e.start}: {data[e.start]:#04x})") from None
        try:
            return load_yaml(text)
        except yaml.reader.ReaderError as e:   # a character YAML does not take (a control character)
            line = text[:e.position].count("\n") + 1
            raise CaseError(path, line, "", f"YAML: {e.reason} ({e.character!r})") from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = (mark.line + 1) if mark else 0
        raise CaseError(path, line, "", _one_line(f"YAML: {e.problem or e.context}")) from None
    except yaml.YAMLError as e:
        raise CaseError(path, 0, "", _one_line(f"YAML: {e}")) from None
    except OSError as e:
        raise CaseError(path, 0, "", f"cannot read: {e.strerror}") from None


def _one_line(text: str) -> str:
    return " ".join(text.split())
