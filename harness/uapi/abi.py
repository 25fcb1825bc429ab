"""Building blocks for declaring the uAPI once: C scalar types, struct base
class, ioctl number encoding, the registries every other layer reads, and the
kernel series each declaration exists in.

Nothing here imports anything else of ours.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

# The kernel series whose uAPI is declared, oldest first.  A declaration exists in every
# one of them unless SPANS says otherwise.
SERIES: tuple[str, ...] = ("6.12", "7.2")
DEFAULT_SERIES = SERIES[0]

# C scalar types as the uAPI headers spell them.  __aligned_u64 is a u64 with
# 8-byte alignment, which is what ctypes gives c_uint64 on every 64-bit ABI.
u8 = ctypes.c_uint8
u16 = ctypes.c_uint16
u32 = ctypes.c_uint32
u64 = ctypes.c_uint64
s32 = ctypes.c_int32
aligned_u64 = ctypes.c_uint64

# include/uapi/asm-generic/ioctl.h
_IOC_NRBITS, _IOC_TYPEBITS, _IOC_SIZEBITS = 8, 8, 14
_IOC_NRSHIFT = 0
_IOC_TYPESHIFT = _IOC_NRSHIFT + _IOC_NRBITS
_IOC_SIZESHIFT = _IOC_TYPESHIFT + _IOC_TYPEBITS
_IOC_DIRSHIFT = _IOC_SIZESHIFT + _IOC_SIZEBITS
_IOC_NONE, _IOC_WRITE, _IOC_READ = 0, 1, 2


def _IOC(direction: int, type_: int, nr: int, size: int) -> int:
    return (direction << _IOC_DIRSHIFT) | (type_ << _IOC_TYPESHIFT) | (nr << _IOC_NRSHIFT) | (size << _IOC_SIZESHIFT)


def _IO(type_: int | str, nr: int) -> int:
    return _IOC(_IOC_NONE, ord(type_) if isinstance(type_, str) else type_, nr, 0)


def ioc_nr(cmd: int) -> int:
    return (cmd >> _IOC_NRSHIFT) & ((1 << _IOC_NRBITS) - 1)


class Struct(ctypes.Structure):
    """A uAPI struct.  Subclasses declare ``_fields_`` with the C field names, in the layout
    of the oldest series that has the struct.

    ``_trailing_`` names a flexible array member (``data[]``) that follows the
    fixed part, as ``(name, element ctype)``; it is not part of ``sizeof``.

    ``_appended_`` maps a later series to the members it adds at the end (``_fields_``
    entries): that series' layout is ``_fields_`` plus every earlier series' appended members
    plus its own (harness.uapi.series builds it).
    """

    _trailing_: ClassVar[tuple[str, Any] | None] = None
    _appended_: ClassVar[Mapping[str, list[tuple[Any, ...]]]] = {}

    @classmethod
    def offsetof(cls, name: str) -> int:
        return int(getattr(cls, name).offset)

    @classmethod
    def offsetofend(cls, name: str) -> int:
        d = getattr(cls, name)
        return int(d.offset + d.size)

    @classmethod
    def from_buffer_prefix(cls, data: bytes) -> Struct:
        """Decode ``data`` (zero-extended when shorter than the struct)."""
        raw = bytes(data[: ctypes.sizeof(cls)]).ljust(ctypes.sizeof(cls), b"\0")
        return cls.from_buffer_copy(raw)

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)


class Union(ctypes.Union):
    """A uAPI union; ``_appended_`` as for Struct (a union alternative a later series adds)."""

    _appended_: ClassVar[Mapping[str, list[tuple[Any, ...]]]] = {}

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)


def _to_dict(obj: Any) -> dict[str, Any]:
    """Field name -> value; members of an anonymous union or struct appear
    under their own names, as C code spells them."""
    out: dict[str, Any] = {}
    anonymous = getattr(obj, "_anonymous_", ())
    for name, *_ in obj._fields_:
        value = _value(getattr(obj, name))
        if name in anonymous:
            out.update(value)
        else:
            out[name] = value
    return out


def _value(v: Any) -> Any:
    if isinstance(v, (Struct, Union)):
        return v.to_dict()
    if isinstance(v, ctypes.Array):
        return [_value(x) for x in v]
    return v


def walk_fields(cls: type, prefix: str = "", base: int = 0) -> Iterator[tuple[str, int, int, Any]]:
    """Yield (dotted name, offset, size, ctype) for every leaf field of a struct."""
    for f in cls._fields_:  # type: ignore[attr-defined]
        name, ctype = f[0], f[1]
        desc = getattr(cls, name)
        off = base + desc.offset
        full = prefix if name in getattr(cls, "_anonymous_", ()) else prefix + name
        if isinstance(ctype, type) and issubclass(ctype, (ctypes.Structure, ctypes.Union)):
            yield from walk_fields(ctype, full + "." if full != prefix else prefix, off)
        else:
            yield full, off, desc.size, ctype


# How an ioctl takes its third argument.
ARG_STRUCT = "struct"   # pointer to a struct (maybe followed by trailing data)
ARG_VALUE = "value"     # the argument itself is an integer (VFIO_CHECK_EXTENSION)
ARG_NONE = "none"       # argument ignored (VFIO_GET_API_VERSION)
ARG_STRING = "string"   # pointer to a NUL-terminated string (GET_DEVICE_FD)
ARG_INT_PTR = "int_ptr"  # pointer to an int (GROUP_SET_CONTAINER)
ARG_U32_PTR = "u32_ptr"  # pointer to a __u32

# Which file an ioctl is issued on.
FD_IOMMUFD = "iommufd"       # /dev/iommu
FD_CONTAINER = "container"   # /dev/vfio/vfio, or /dev/iommu through the compat layer
FD_GROUP = "group"           # /dev/vfio/N
FD_DEVICE = "device"         # vfio device fd (group path or /dev/vfio/devices/vfioX)


@dataclass(frozen=True)
class PointerField:
    """A u64 field that carries a user pointer to an array of ``elem`` (or bytes).

    ``count`` names the field holding the element count (or a byte length when
    ``elem`` is None); ``direction`` says whether the kernel reads ("in"),
    writes ("out") or both ("inout") the pointed-to memory.
    """

    elem: Any
    count: str | None
    direction: str = "in"


def pointer_fields(cls: type, prefix: str = "") -> dict[str, PointerField]:
    """The user pointers of struct ``cls`` by dotted path: its ``_pointers_`` and those of its
    nested structs (``bitmap.data`` of vfio_iommu_type1_dirty_bitmap_get)."""
    out = {prefix + name: f for name, f in getattr(cls, "_pointers_", {}).items()}
    for name, ctype, *_ in cls._fields_:  # type: ignore[attr-defined]
        if isinstance(ctype, type) and issubclass(ctype, Struct):
            out.update(pointer_fields(ctype, f"{prefix}{name}."))
    return out


@dataclass(frozen=True)
class Ioctl:
    name: str
    number: int
    fd_kinds: frozenset[str]
    arg: str = ARG_STRUCT
    struct: type | None = None
    # iommufd: offsetofend(<last member given to IOCTL_OP>) (main.c:369-377).
    # VFIO: the handler's minsz.  None where the ioctl takes no struct.
    min_size: int | None = None
    # "size" for iommufd, "argsz" for VFIO.
    size_field: str | None = None
    # Field name -> constant-name prefix, for symbolic flag rendering.
    flag_fields: Mapping[str, str] = field(default_factory=dict)
    pointers: Mapping[str, PointerField] = field(default_factory=dict)
    # Where the handler is in the 6.12 tree (file:line), for reports; "" for an ioctl 6.12
    # does not have.  ``handlers`` holds the other series' citations (handler_in()).
    handler: str = ""
    handlers: Mapping[str, str] = field(default_factory=dict)
    # The first series that has the ioctl, and the first that no longer has it (SPANS).
    since: str | None = None
    until: str | None = None
    # A flag that makes the handler read further: flag name -> the size argsz must then
    # reach (VFIO's ``xend``, e.g. VFIO_DEVICE_ATTACH_PASID -> offsetofend(pasid)).
    flag_min_sizes: Mapping[str, int] = field(default_factory=dict)
    # A flag that makes the handler read a struct from the data after the fixed part:
    # (flag name, that struct), e.g. VFIO_IOMMU_UNMAP_DMA's GET_DIRTY_BITMAP -> struct
    # vfio_bitmap.  Its user pointers (``pointer_fields``) are placed like the struct's own.
    flag_data: tuple[str, type] | None = None

    @property
    def nr(self) -> int:
        return ioc_nr(self.number)

    @property
    def sizeof(self) -> int:
        return ctypes.sizeof(self.struct) if self.struct is not None else 0

    def handler_in(self, series: str) -> str:
        """The handler's file:line in ``series``' tree ("" where the ioctl is not in it)."""
        return self.handler if series == DEFAULT_SERIES else self.handlers.get(series, "")


# The uAPI of DEFAULT_SERIES, which every caller that names no series gets: filled by the
# package's __init__ from the declarations below (harness.uapi.series.for_series).
IOCTLS: dict[str, Ioctl] = {}
CONSTANTS: dict[str, int] = {}
STRUCTS: dict[str, type] = {}

# Every declaration of every series (structs as declared: the oldest layout, with
# ``_appended_``).  What differs per series is in SPANS, VALUES and ``_appended_``.
DECLARED_IOCTLS: dict[str, Ioctl] = {}
DECLARED_CONSTANTS: dict[str, int] = {}
DECLARED_STRUCTS: dict[str, type] = {}


@dataclass(frozen=True)
class Span:
    """The series a declaration exists in: ``since`` <= series < ``until`` (None: unbounded)."""

    since: str | None = None
    until: str | None = None

    def __contains__(self, series: object) -> bool:
        if not isinstance(series, str):
            return False
        i = SERIES.index(series)
        return (self.since is None or i >= SERIES.index(self.since)) and (
            self.until is None or i < SERIES.index(self.until))

    def __str__(self) -> str:
        return ", ".join(p for p in (self.since and f">={self.since}", self.until and f"<{self.until}") if p) or "all"


# Names that are not in every series: ioctls and constants by name, structs by C name,
# struct members as "struct.member" (the member name as C code spells it, through
# anonymous unions: "iommu_hw_info.in_data_type"; recorded from ``_appended_``).
SPANS: dict[str, Span] = {}
# Constants whose value differs between series: name -> series -> value (the declared value
# is DEFAULT_SERIES').
VALUES: dict[str, dict[str, int]] = {}


def _span(name: str, since: str | None, until: str | None) -> None:
    for s in (since, until):
        if s is not None and s not in SERIES:
            raise ValueError(f"{name}: {s!r} is not a declared series {SERIES}")
    if name in SPANS and SPANS[name] != Span(since, until):
        raise ValueError(f"{name}: declared with two spans")
    SPANS[name] = Span(since, until)


def since(series: str, *names: str) -> None:
    """Declare ``names`` (constants, structs) new in ``series``."""
    for name in names:
        _span(name, series, None)


def until(series: str, *names: str) -> None:
    """Declare ``names`` gone from ``series`` on (present in the series before it)."""
    for name in names:
        _span(name, None, series)


def values(name: str, by_series: Mapping[str, int]) -> None:
    """Declare a constant whose value differs per series (every series named)."""
    if set(by_series) != set(SERIES):
        raise ValueError(f"{name}: values for {sorted(by_series)}, series are {SERIES}")
    VALUES[name] = dict(by_series)


def register_ioctl(ioctl: Ioctl) -> Ioctl:
    if ioctl.name in DECLARED_IOCTLS:
        raise ValueError(f"ioctl {ioctl.name} declared twice")
    if ioctl.since is not None or ioctl.until is not None:
        _span(ioctl.name, ioctl.since, ioctl.until)
    DECLARED_IOCTLS[ioctl.name] = ioctl
    DECLARED_CONSTANTS[ioctl.name] = ioctl.number
    return ioctl


def _appended_spans(owner: str, cls: type) -> None:
    """Record "owner.member" spans of the members ``cls`` (or its anonymous unions) appends."""
    for series, added in getattr(cls, "_appended_", {}).items():
        if series not in SERIES[1:]:
            raise ValueError(f"{cls.__name__}: members appended in {series!r}, not a later declared series")
        for f in added:
            _span(f"{owner}.{f[0]}", series, None)
    anonymous = getattr(cls, "_anonymous_", ())
    for f in cls._fields_:  # type: ignore[attr-defined]
        if f[0] in anonymous:
            _appended_spans(owner, f[1])


def register_structs(*classes: type) -> None:
    for cls in classes:
        name = cls.__name__
        if name in DECLARED_STRUCTS and DECLARED_STRUCTS[name] is not cls:
            raise ValueError(f"struct {name} declared twice")
        DECLARED_STRUCTS[name] = cls
        _appended_spans(name, cls)


def register_constants(namespace: Mapping[str, Any], *prefixes: str) -> None:
    """Export every int in ``namespace`` whose name starts with one of ``prefixes``."""
    for name, value in namespace.items():
        if isinstance(value, int) and not isinstance(value, bool) and name.startswith(prefixes):
            if name in DECLARED_CONSTANTS and DECLARED_CONSTANTS[name] != value:
                raise ValueError(f"constant {name} declared twice with different values")
            DECLARED_CONSTANTS[name] = value
