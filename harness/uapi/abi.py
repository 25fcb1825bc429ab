"""Building blocks for declaring the uAPI once: C scalar types, struct base
class, ioctl number encoding and the registries every other layer reads.

Nothing here imports anything else of ours.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

# C scalar types as the uAPI headers spell them.  __aligned_u64 is a u64 with
# 8-byte alignment, which is what ctypes gives c_uint64 on every 64-bit ABI.
u8 = ctypes.c_uint8
u16 = ctypes.c_uint16
u32 = ctypes.c_uint32
u64 = ctypes.c_uint64
s32 = ctypes.c_int32
s64 = ctypes.c_int64
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


def ioc_type(cmd: int) -> int:
    return (cmd >> _IOC_TYPESHIFT) & ((1 << _IOC_TYPEBITS) - 1)


class Struct(ctypes.Structure):
    """A uAPI struct.  Subclasses declare ``_fields_`` with the C field names.

    ``_trailing_`` names a flexible array member (``data[]``) that follows the
    fixed part, as ``(name, element ctype)``; it is not part of ``sizeof``.
    """

    _trailing_: ClassVar[tuple[str, Any] | None] = None

    @classmethod
    def c_name(cls) -> str:
        return cls.__name__

    @classmethod
    def field_names(cls) -> list[str]:
        return [f[0] for f in cls._fields_]

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
    @classmethod
    def field_names(cls) -> list[str]:
        return [f[0] for f in cls._fields_]

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
    # Where the handler is (kernel 6.12 file:line), for reports.
    handler: str = ""

    @property
    def nr(self) -> int:
        return ioc_nr(self.number)

    @property
    def sizeof(self) -> int:
        return ctypes.sizeof(self.struct) if self.struct is not None else 0


IOCTLS: dict[str, Ioctl] = {}
CONSTANTS: dict[str, int] = {}
STRUCTS: dict[str, type] = {}


def register_ioctl(ioctl: Ioctl) -> Ioctl:
    if ioctl.name in IOCTLS:
        raise ValueError(f"ioctl {ioctl.name} declared twice")
    IOCTLS[ioctl.name] = ioctl
    CONSTANTS[ioctl.name] = ioctl.number
    return ioctl


def register_structs(*classes: type) -> None:
    for cls in classes:
        name = cls.__name__
        if name in STRUCTS and STRUCTS[name] is not cls:
            raise ValueError(f"struct {name} declared twice")
        STRUCTS[name] = cls


def register_constants(namespace: Mapping[str, Any], *prefixes: str) -> None:
    """Export every int in ``namespace`` whose name starts with one of ``prefixes``."""
    for name, value in namespace.items():
        if isinstance(value, int) and not isinstance(value, bool) and name.startswith(prefixes):
            if name in CONSTANTS and CONSTANTS[name] != value:
                raise ValueError(f"constant {name} declared twice with different values")
            CONSTANTS[name] = value
