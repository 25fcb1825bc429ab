"""One step of a case, parsed and checked (docs/case-format.md#steps): its kind, the ioctl
argument built from uAPI struct fields, pointers, data, expectations.  The loader calls it for
every step of a case, a fixture or a macro; ``parse_steps`` serves steps given as plain data (the
fuzzer's regression cases)."""

from __future__ import annotations

import ctypes
import errno as _errno
import functools
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .. import uapi
from ..uapi import abi
from ..uapi.kernel_version import VersionError, check_range
from .case import (
    DATA_TYPES,
    MAX_TRANSFER,
    U64_MAX,
    ArrayValue,
    CaseError,
    Expectation,
    Matcher,
    Step,
    int_range,
)
from .expr import Expr, ExprError, current_abi, fits, parse, template_vars, using_abi
from .yamlsrc import LMap, from_data, line_of

STEP_KINDS = (
    "open", "close", "ioctl", "raw_ioctl", "mmap", "munmap", "mprotect", "write_mem", "read_mem", "eventfd",
    "memfd", "read", "write", "pread", "pwrite", "sysfs_read", "sysfs_write",
)
STEP_KEYS = {
    "open": set(), "close": set(), "mmap": {"align", "fd", "offset", "private"}, "eventfd": set(),
    "memfd": {"name"}, "pread": {"offset", "length", "mask"}, "pwrite": {"offset", "hex"},
    "munmap": {"offset", "length"}, "mprotect": {"offset", "length", "prot"}, "write_mem": set(), "read_mem": set(),
    "read": {"length"}, "write": {"hex"}, "sysfs_read": set(), "sysfs_write": {"value"},
    "ioctl": {"fd", "args", "data", "tail", "buffer", "value", "int", "string", "pointer"},
    "raw_ioctl": {"fd", "hex", "pointer"},
}
COMMON_STEP_KEYS = {"as", "expect", "save", "note"}
# A case id, a variant, fixture or macro name; an `as:` name with _ for -.
NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")
# Steps given as data are checked against every series' uAPI.
EVERY_SERIES = uapi.every_series()
MATCH_OPS = {"has", "lacks", "ne", "ge", "gt", "le", "lt", "aligned", "any"}


class FileContext:
    """Where we are in a file, for error messages."""

    def __init__(self, path: Path):
        self.path = path

    def err(self, node: Any, key: Any, where: str, msg: str) -> CaseError:
        return CaseError(self.path, line_of(node, key), where, msg)


def _value(ctx: FileContext, node: Any, key: Any, where: str, v: Any) -> Any:
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


def _in_range(ctx: FileContext, node: Any, key: Any, where: str, v: Any, lo: int, hi: int, what: str) -> Any:
    """``v`` (parsed) if its value, where known at load, lies in [lo, hi]; else the error naming ``what``."""
    value = _constant(v)
    if value is not None and not lo <= value <= hi:
        raise ctx.err(node, key, where, f"{value:#x} is outside {what} ({lo:#x} to {hi:#x})"
                      if abs(value) > 9 else f"{value} is outside {what} ({lo:#x} to {hi:#x})")
    return v


@functools.cache
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


def _field_value(ctx: FileContext, node: Any, key: Any, where: str, v: Any, ctype: Any) -> Any:
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


def _args(ctx: FileContext, node: LMap, where: str, cls: type, pointers: Iterable[str] = ()) -> dict[str, Any]:
    """The fields of struct ``cls`` a case gives; ``pointers`` are the dotted paths of its user
    pointer fields (which take a pointer mapping, or a plain address)."""
    pointers = frozenset(pointers)
    fields = _struct_fields(cls)
    out: dict[str, Any] = {}
    for k, v in node.items():
        w = f"{where}.{k}"
        if k not in fields:
            raise ctx.err(node, k, w, f"struct {cls.__name__} has no field {k!r} "
                                      f"(fields: {', '.join(fields)})")
        ctype = fields[k]
        if k in pointers and isinstance(v, dict):
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
            sub = [p[len(k) + 1:] for p in pointers if p.startswith(k + ".")]
            out[k] = _args(ctx, v, w, ctype, sub)  # type: ignore[arg-type]
        else:
            out[k] = _field_value(ctx, node, k, w, v, ctype)
    return out


def _pointer(ctx: FileContext, node: LMap, key: str, where: str, v: Any) -> dict[str, Any]:
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
            items = [_args(ctx, it, f"{where}.items[{i}]", current_abi().STRUCTS[name])
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


def _hex(ctx: FileContext, node: Any, key: Any, where: str, v: Any) -> bytes:
    try:
        return bytes.fromhex(str(v).replace(" ", ""))
    except ValueError:
        raise ctx.err(node, key, where, f"not hex bytes: {v!r}") from None




def _data(ctx: FileContext, node: LMap, key: str, where: str, typed: tuple[str, type] | None = None) -> dict[str, Any]:
    """A ``data:``/``tail:`` spec: ``{u8..u64: [..]}``, ``{hex: ..}``, or for an ioctl that
    declares the struct a flag makes it read (``flag_data``), that struct's fields:
    ``{"struct": NAME, "fields": {..}}``."""
    v = node[key]
    if typed is not None and isinstance(v, LMap) and not set(v) & {*DATA_TYPES, "hex"}:
        cls = typed[1]
        return {"struct": cls.__name__, "fields": _args(ctx, v, where, cls, abi.pointer_fields(cls))}
    if not isinstance(v, dict) or len(v) != 1:
        raise ctx.err(node, key, where, "give one of {u8|u16|u32|s32|u64: [...]} or {hex: ...}"
                      + (f", or the fields of struct {typed[1].__name__}" if typed else ""))
    (kind, items), = v.items()
    if kind == "hex":
        return {"hex": _hex(ctx, v, kind, where, items)}
    if kind not in DATA_TYPES or not isinstance(items, list):
        raise ctx.err(v, kind, where, f"unknown element type {kind!r} (u8, u16, u32, s32, u64, hex)")
    lo, hi = int_range(*DATA_TYPES[kind])
    return {kind: [_in_range(ctx, items, i, f"{where}[{i}]", _value(ctx, items, i, f"{where}[{i}]", x), lo, hi,
                             f"a {kind}") for i, x in enumerate(items)]}


def _matcher(ctx: FileContext, node: Any, key: Any, where: str, v: Any) -> list[Matcher]:
    """A plain value, or a mapping of one or more of MATCH_OPS that must all hold."""
    if isinstance(v, dict):
        unknown = [op for op in v if op not in MATCH_OPS]
        if not v or unknown:
            raise ctx.err(node, key, where, f"a matcher takes {sorted(MATCH_OPS)}, got {unknown or 'nothing'}")
        return [Matcher("any") if op == "any" else Matcher(op, _value(ctx, v, op, f"{where}.{op}", arg))
                for op, arg in v.items()]
    return [Matcher("eq", _value(ctx, node, key, where, v))]


def _errno_name(ctx: FileContext, node: Any, key: Any, where: str, v: Any) -> str:
    if not isinstance(v, str) or not v.startswith("E") or not hasattr(_errno, v):
        raise ctx.err(node, key, where, f"not an errno name: {v!r}")
    return v


def _expect(ctx: FileContext, step: LMap, where: str) -> Expectation:
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


def _by_kernel(ctx: FileContext, v: dict[str, Any], where: str) -> Expectation:
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


@functools.lru_cache(maxsize=512)
def _field_paths(struct: type) -> frozenset[str]:
    return frozenset(p for p, *_ in abi.walk_fields(struct))


def _check_out_paths(ctx: FileContext, step: LMap, where: str, io: abi.Ioctl, paths: Iterable[str], key: str) -> None:
    if io.struct is None:
        return
    valid = _field_paths(io.struct) | set(io.pointers)
    if io.flag_data is not None:
        valid |= {f"data.{p}" for p in _field_paths(io.flag_data[1])}
    for p in paths:
        head = re.split(r"\[", p)[0]
        if head not in valid and head.split(".")[0] not in valid:
            raise ctx.err(step, key, f"{where}.{key}",
                          f"{io.name} has no output field {p!r}")


def parse_step(ctx: FileContext, raw: Any, idx: int, where: str, bound: set[str], line: int = 0) -> Step:
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
            spec["args"] = _args(ctx, raw["args"], f"{where}.args", io.struct, io.pointers)  # type: ignore[arg-type]
        for k in ("data", "tail"):
            if k in raw:
                spec[k] = _data(ctx, raw, k, f"{where}.{k}", io.flag_data if k == "data" else None)
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
    elif kind in ("pread", "pwrite"):
        spec[kind] = need_bound(target, kind)
        if "offset" not in raw:
            raise ctx.err(raw, kind, where, f"a {kind} step needs offset: (the file offset, e.g. region index << 40)")
        spec["offset"] = _in_range(ctx, raw, "offset", f"{where}.offset",
                                   _value(ctx, raw, "offset", f"{where}.offset", raw["offset"]), 0, U64_MAX,
                                   "a file offset (a loff_t; 1 << 63 and above are negative)")
        if kind == "pread":
            spec["length"] = _in_range(ctx, raw, "length", f"{where}.length",
                                       _value(ctx, raw, "length", f"{where}.length", raw.get("length", 4)),
                                       0, MAX_TRANSFER, "the harness's buffer sizes")
            if "mask" in raw:
                spec["mask"] = _value(ctx, raw, "mask", f"{where}.mask", raw["mask"])
        else:
            spec["hex"] = _hex(ctx, raw, "hex", f"{where}.hex", raw.get("hex", ""))
    elif kind in ("munmap", "mprotect"):
        spec[kind] = need_bound(target, kind)
        for key in ("offset", "length"):
            if key in raw:
                spec[key] = _in_range(ctx, raw, key, f"{where}.{key}",
                                      _value(ctx, raw, key, f"{where}.{key}", raw[key]), 0, U64_MAX, "a size_t")
        if kind == "mprotect":
            if "prot" not in raw:
                raise ctx.err(raw, kind, where, "mprotect needs prot: (PROT_NONE, PROT_READ, [PROT_READ, PROT_WRITE])")
            spec["prot"] = _in_range(ctx, raw, "prot", f"{where}.prot",
                                     _value(ctx, raw, "prot", f"{where}.prot", raw["prot"]), 0, U64_MAX,
                                     "an unsigned long (mprotect's prot)")
    elif kind in ("mmap", "eventfd"):
        spec[kind] = _value(ctx, raw, kind, f"{where}.{kind}", target if target is not None else 0)
        if kind == "mmap":
            _in_range(ctx, raw, kind, f"{where}.mmap", spec[kind], 0, U64_MAX, "a size_t (an mmap length)")
        else:
            _in_range(ctx, raw, kind, f"{where}.eventfd", spec[kind], 0, (1 << 32) - 1,
                      "eventfd's initval (an unsigned int)")
        if kind == "mmap" and "fd" in raw:
            if "align" in raw:
                raise ctx.err(raw, "align", f"{where}.align", "align: is for anonymous mappings, not with fd:")
            spec["fd"] = need_bound(raw["fd"], "fd")
            spec["offset"] = _in_range(ctx, raw, "offset", f"{where}.offset",
                                       _value(ctx, raw, "offset", f"{where}.offset", raw.get("offset", 0)),
                                       0, U64_MAX, "an off_t (an mmap offset)")
            if not isinstance(raw.get("private", False), bool):
                raise ctx.err(raw, "private", f"{where}.private", "private: true maps MAP_PRIVATE")
            spec["private"] = bool(raw.get("private", False))
        elif kind == "mmap" and ("offset" in raw or "private" in raw):
            raise ctx.err(raw, kind, where, "offset: and private: map a file: give fd: too")
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
        if kind == "write_mem" and "fd" in target:
            # An fd's number (a little-endian s32) for a struct argument in case memory: the
            # number differs between backends, so it cannot be literal hex.
            if "hex" in target:
                raise ctx.err(raw, kind, f"{where}.{kind}", "write_mem takes hex: or fd:, not both")
            spec["fd"] = _value(ctx, target, "fd", f"{where}.{kind}.fd", target["fd"])
        elif kind == "write_mem":
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
        if not isinstance(raw["as"], str) or not NAME.match(raw["as"].replace("_", "-")):
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


def parse_steps(raws: list[dict[str, Any]], bound: set[str], origin: str = "<generated>") -> list[Step]:
    """Steps given as plain data (as a case file's ``steps:`` would hold them), checked
    like a case file's; ``bound`` (the names earlier steps bound) grows as they bind."""
    ctx = FileContext(Path(origin))
    with using_abi(EVERY_SERIES):
        return [parse_step(ctx, from_data(raw), i, f"steps[{i}]", bound) for i, raw in enumerate(raws)]
