"""The VFIO and iommufd uAPI of Linux 6.12 and 7.2, declared once in C names.

Importing the package fills the registries from include/uapi/linux/iommufd.h,
include/uapi/linux/vfio.h and drivers/iommu/iommufd/iommufd_test.h.  Anonymous unions
are ctypes ``_anonymous_`` fields; ``members``, ``fields``, ``decode`` and ``encode``
see through them, so every name and dotted path here is the one C uses.

Series.  ``IOCTLS``, ``STRUCTS`` and ``CONSTANTS`` are the uAPI of ``DEFAULT_SERIES``
(6.12), so every caller that names no series gets exactly what it got before 7.2 was
declared, and the module-level classes (``vfio.vfio_device_bind_iommufd``) are those of
6.12.  Each declaration says in which series it exists: ``since="7.2"`` on an ``Ioctl``,
``abi.since`` / ``abi.until`` for constants and structs, ``abi.values`` for a constant whose
value changed, and ``_appended_ = {"7.2": [members]}`` on a struct (or union) that grew.
The structs that grew between 6.12 and 7.2 grew only at their end (or by a union
alternative, which changes no size), so a struct is declared once, in its oldest layout, and
a newer layout is that plus the appended members, built by ``for_series`` rather than
declared a second time: every member is declared once, the bytes of a member mean the same
on every kernel, and the C layout test checks each series' built layout against that
series' own headers.

- ``available(name, version)``: does an ioctl, constant, struct or "struct.member" exist on
  kernel ``version`` ("6.12.118", "7.2.0-rc1");
- ``for_series(version)``: that series' ``IOCTLS``/``STRUCTS``/``CONSTANTS`` with its
  layouts, so ``sizeof``, ``min_size``, ``handler`` and ``pointers`` are that kernel's;
- ``every_series()``: every name of any series, newest layouts (what a case may name);
- ``sizeof(name, version)``: a struct's (or an ioctl's struct's) size on that kernel.

Code that mirrors one kernel (the model booted as 7.2, an engine driving a 7.2 guest) asks
``for_series(release)``; ``ctypes.sizeof`` of a module-level class is the 6.12 size.
"""

from __future__ import annotations

import ctypes
import difflib
from collections.abc import Iterator, Mapping
from typing import Any

from . import abi, iommufd, iommufd_test, mman, vfio
from .abi import (
    ARG_INT_PTR,
    ARG_NONE,
    ARG_STRING,
    ARG_STRUCT,
    ARG_U32_PTR,
    ARG_VALUE,
    CONSTANTS,
    DEFAULT_SERIES,
    FD_CONTAINER,
    FD_DEVICE,
    FD_GROUP,
    FD_IOMMUFD,
    IOCTLS,
    SERIES,
    STRUCTS,
    Ioctl,
    PointerField,
    Span,
)
from .series import SeriesABI, available, every_series, for_kernel, for_series, series_of, sizeof, span
from .vfio import FD_MIGRATION

_DEFAULT = for_series(DEFAULT_SERIES)
IOCTLS.update(_DEFAULT.IOCTLS)
STRUCTS.update(_DEFAULT.STRUCTS)
CONSTANTS.update(_DEFAULT.CONSTANTS)

__all__ = [
    "ARG_INT_PTR", "ARG_NONE", "ARG_STRING", "ARG_STRUCT", "ARG_U32_PTR", "ARG_VALUE",
    "CONSTANTS", "DEFAULT_SERIES", "FD_CONTAINER", "FD_DEVICE", "FD_GROUP", "FD_IOMMUFD", "FD_MIGRATION",
    "IOCTLS", "SERIES", "STRUCTS", "Ioctl", "PointerField", "SeriesABI", "Span",
    "abi", "available", "constant", "decode", "encode", "every_series", "fields", "for_kernel", "for_series", "ioctl",
    "ioctls_for", "iommufd", "iommufd_test", "members", "mman", "series_of", "sizeof", "span", "struct", "vfio",
]

_Aggregate = (ctypes.Structure, ctypes.Union)


def _lookup(kind: str, table: Mapping[str, Any], name: str) -> Any:
    try:
        return table[name]
    except KeyError:
        near = difflib.get_close_matches(name, list(table), n=3)
        hint = f"; did you mean {', '.join(near)}?" if near else ""
        raise KeyError(f"no {kind} named {name!r}{hint}") from None


def ioctl(name: str) -> Ioctl:
    return _lookup("ioctl", IOCTLS, name)  # type: ignore[no-any-return]


def ioctls_for(fd_kind: str, number: int) -> list[Ioctl]:
    """Every ioctl that ``number`` means on an fd of ``fd_kind`` (VFIO numbers are reused)."""
    return [io for io in IOCTLS.values() if io.number == number and fd_kind in io.fd_kinds]


def constant(name: str) -> int:
    return _lookup("constant", CONSTANTS, name)  # type: ignore[no-any-return]


def struct(name: str) -> type:
    return _lookup("struct", STRUCTS, name)  # type: ignore[no-any-return]


def _is_aggregate(ctype: Any) -> bool:
    return isinstance(ctype, type) and issubclass(ctype, _Aggregate)


def members(cls: type) -> dict[str, Any]:
    """The members of ``cls`` by C name, with anonymous unions flattened, and their ctypes."""
    anonymous = set(getattr(cls, "_anonymous_", ()))
    out: dict[str, Any] = {}
    for f in cls._fields_:  # type: ignore[attr-defined]
        name, ctype = f[0], f[1]
        if name in anonymous:
            out.update(members(ctype))
        else:
            out[name] = ctype
    return out


def fields(cls: type, prefix: str = "", base: int = 0) -> Iterator[tuple[str, int, int, Any]]:
    """(C path such as ``mock_domain.out_hwpt_id``, offset, size, ctype) of every leaf field."""
    for name, ctype in members(cls).items():
        off = base + getattr(cls, name).offset
        if _is_aggregate(ctype):
            yield from fields(ctype, f"{prefix}{name}.", off)
        else:
            yield prefix + name, off, getattr(cls, name).size, ctype


def _to_python(v: Any) -> Any:
    if isinstance(v, _Aggregate):
        return {name: _to_python(getattr(v, name)) for name in members(type(v))}
    if isinstance(v, ctypes.Array):
        return [_to_python(x) for x in v]
    return v


def decode(struct_cls: type, data: bytes) -> dict[str, Any]:
    """``data`` as a struct: nested dicts and lists.  Short data is zero-extended, a tail ignored."""
    size = ctypes.sizeof(struct_cls)
    obj = struct_cls.from_buffer_copy(bytes(data[:size]).ljust(size, b"\0"))  # type: ignore[attr-defined]
    return _to_python(obj)  # type: ignore[no-any-return]


def _check_int(where: str, ctype: Any, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{where} takes an integer, not {value!r}")
    bits = 8 * ctypes.sizeof(ctype)
    signed = ctype(-1).value == -1
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if not lo <= value <= hi:
        raise ValueError(f"{where} = {value:#x} does not fit a {'s' if signed else 'u'}{bits} ({lo:#x}..{hi:#x})")
    return value


def _fill(obj: Any, values: Mapping[str, Any], where: str) -> None:
    known = members(type(obj))
    for name, value in values.items():
        if name not in known:
            raise KeyError(f"struct {where} has no field {name!r} (fields: {', '.join(known)})")
        ctype, here = known[name], f"{where}.{name}"
        if _is_aggregate(ctype):
            if not isinstance(value, Mapping):
                raise TypeError(f"{here} is a {ctype.__name__}: give a dict of its fields")
            _fill(getattr(obj, name), value, here)
        elif issubclass(ctype, ctypes.Array):
            _fill_array(getattr(obj, name), value, here)
        else:
            setattr(obj, name, _check_int(here, ctype, value))


def _fill_array(arr: Any, values: Any, where: str) -> None:
    if not isinstance(values, (list, tuple, bytes, bytearray)):
        raise TypeError(f"{where} is an array: give a list or bytes, not {values!r}")
    items = list(values)
    if len(items) > len(arr):
        raise ValueError(f"{where} holds {len(arr)} elements, got {len(items)}")
    for i, v in enumerate(items):
        if _is_aggregate(arr._type_):
            _fill(arr[i], v, f"{where}[{i}]")
        else:
            arr[i] = _check_int(f"{where}[{i}]", arr._type_, v)


def encode(struct_cls: type, fields: Mapping[str, Any]) -> bytes:
    """The bytes of ``struct_cls`` with ``fields`` set (nested dicts for nested structs and
    unions, lists or bytes for arrays); every other byte is zero."""
    obj = struct_cls()
    _fill(obj, fields, struct_cls.__name__)
    return bytes(obj)  # type: ignore[call-overload]
