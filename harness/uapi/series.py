"""The uAPI as one kernel series has it: which names exist, struct layouts and sizes.

Every series is declared at once (``abi.DECLARED_*``): a struct in the layout of the oldest
series that has it, with the members a later series appends in ``_appended_``; ``abi.SPANS``
says which series lack a name and ``abi.VALUES`` which constants changed value.  This module
answers per series:

- ``available(name, version)``: does the ioctl, constant, struct or "struct.member" exist on
  a kernel of ``version`` ("6.12.118", "7.2.0-rc1", "7.2");
- ``for_series(version)``: a ``SeriesABI`` with that series' ioctls, constants and structs,
  where a struct that grew is a class of that series' layout (the declared class plus the
  appended members, built here), so ``ctypes.sizeof``, ``encode`` and ``decode`` give that
  kernel's sizes, and an ioctl's ``sizeof``, ``handler`` and ``pointers`` are that series';
- ``every_series()``: every name of any series, each struct in its newest layout (what a
  case file may name, whatever kernels it runs on);
- ``sizeof(name, version)``: a struct's (or an ioctl's struct's) size on that kernel.

A release maps to the series of its major.minor; a release newer than the newest declared
series is read as the newest (mainline and -next patches), one between two declared series
or older than the oldest is an error: its uAPI is not declared.
"""

from __future__ import annotations

import ctypes
import dataclasses
from collections.abc import Mapping
from functools import cache
from typing import Any

from . import abi
from .kernel_version import parse

_Aggregate = (ctypes.Structure, ctypes.Union)


def series_of(version: str) -> str:
    """The declared series whose uAPI a kernel release (or series) has: its own series, else the
    newest declared series older than it (6.18 has at least 6.12's uAPI; what it added is not
    declared).  A release older than every declared series has none."""
    v = parse(version)[:2]
    older = [s for s in abi.SERIES if parse(s)[:2] <= v]
    if not older:
        raise ValueError(f"kernel {version}: older than every declared uAPI series ({', '.join(abi.SERIES)})")
    return max(older, key=lambda s: parse(s))


def span(name: str) -> abi.Span:
    """The series ``name`` exists in (``Span()``: all of them)."""
    return abi.SPANS.get(name, abi.Span())


def available(name: str, version: str) -> bool:
    """Whether the ioctl, constant, struct or "struct.member" ``name`` exists on ``version``.

    ``name`` must be declared (a KeyError says when it is not)."""
    if not _declared(name):
        raise KeyError(f"{name!r} is not a declared ioctl, constant, struct or struct member")
    return series_of(version) in span(name)


def _declared(name: str) -> bool:
    if name in abi.DECLARED_CONSTANTS or name in abi.DECLARED_STRUCTS:
        return True
    struct, _, member = name.partition(".")
    return struct in abi.DECLARED_STRUCTS and member in _members(every_series().STRUCTS[struct])


def _members(cls: type) -> list[str]:
    """Member names as C spells them (anonymous unions flattened)."""
    out: list[str] = []
    for f in cls._fields_:  # type: ignore[attr-defined]
        if f[0] in getattr(cls, "_anonymous_", ()):
            out += _members(f[1])
        else:
            out.append(f[0])
    return out


def _extend(cls: type, series: str, memo: dict[type, type]) -> type:
    """``cls`` in ``series``' layout: its members (each in that layout) and those appended up
    to ``series``; ``cls`` itself when that is what it declares."""
    if cls in memo:
        return memo[cls]
    upto = abi.SERIES[: abi.SERIES.index(series) + 1]
    appended = [f for s in upto for f in getattr(cls, "_appended_", {}).get(s, [])]
    fields, changed = [], bool(appended)
    for f in [*cls._fields_, *appended]:  # type: ignore[attr-defined]
        ctype = f[1]
        if isinstance(ctype, type) and issubclass(ctype, _Aggregate):
            sub = _extend(ctype, series, memo)
            changed |= sub is not ctype
            f = (f[0], sub, *f[2:])
        fields.append(f)
    out = cls
    if changed:
        ns: dict[str, Any] = {"_fields_": fields, "__module__": cls.__module__, "__qualname__": cls.__qualname__,
                              "__doc__": f"{cls.__name__} as Linux {series} declares it.", "_appended_": {}}
        for attr in ("_anonymous_", "_trailing_", "_pointers_"):
            if attr in vars(cls):
                ns[attr] = vars(cls)[attr]
        out = type(cls.__name__, (cls.__mro__[1],), ns)
    memo[cls] = out
    return out


@dataclasses.dataclass(frozen=True)
class SeriesABI:
    """The uAPI of one kernel series, in the registries' shapes."""

    series: str
    IOCTLS: Mapping[str, abi.Ioctl]
    STRUCTS: Mapping[str, type]
    CONSTANTS: Mapping[str, int]

    def available(self, name: str) -> bool:
        if self.series == "all":
            return _declared(name)
        return available(name, self.series)

    def ioctl(self, name: str) -> abi.Ioctl:
        return self.IOCTLS[name]

    def struct(self, name: str) -> type:
        return self.STRUCTS[name]

    def constant(self, name: str) -> int:
        return self.CONSTANTS[name]

    def sizeof(self, name: str) -> int:
        """sizeof(struct ``name``), or of the struct ioctl ``name`` takes, in this series."""
        if name in self.STRUCTS:
            return ctypes.sizeof(self.STRUCTS[name])
        return self.IOCTLS[name].sizeof


def for_kernel(release: str) -> SeriesABI:
    """The uAPI a harness drives (or a model mirrors) a kernel of ``release`` with: its series',
    and the oldest declared one for a release older than all of them (the best guess)."""
    try:
        return for_series(release)
    except ValueError:
        return _for_series(abi.DEFAULT_SERIES)


def for_series(version: str) -> SeriesABI:
    """The uAPI of the series ``version`` belongs to (see ``series_of``)."""
    return _for_series(series_of(version))


@cache
def _for_series(series: str) -> SeriesABI:
    memo: dict[type, type] = {}
    structs = {n: _extend(cls, series, memo) for n, cls in abi.DECLARED_STRUCTS.items() if series in span(n)}
    constants = {n: abi.VALUES.get(n, {}).get(series, v)
                 for n, v in abi.DECLARED_CONSTANTS.items() if series in span(n)}
    ioctls = {n: _ioctl(io, series, structs, constants)
              for n, io in abi.DECLARED_IOCTLS.items() if series in span(n)}
    return SeriesABI(series, ioctls, structs, constants)


def _ioctl(io: abi.Ioctl, series: str, structs: Mapping[str, type], constants: Mapping[str, int]) -> abi.Ioctl:
    """``io`` as ``series`` has it (``io`` itself where nothing differs)."""
    owner = io.struct.__name__ if io.struct is not None else ""
    changes = {
        "struct": structs[owner] if io.struct is not None else None,
        "handler": io.handler_in(series),
        "pointers": {p: f for p, f in io.pointers.items() if series in span(f"{owner}.{p.split('.')[0]}")},
        "flag_min_sizes": {f: n for f, n in io.flag_min_sizes.items() if f in constants},
        "flag_data": (io.flag_data[0], structs[io.flag_data[1].__name__]) if io.flag_data else None,
    }
    if all(getattr(io, k) == v for k, v in changes.items()):
        return io
    return dataclasses.replace(io, **changes)  # type: ignore[arg-type]


@cache
@cache
def every_series() -> SeriesABI:
    """Every name of every series, each struct in its newest layout and each constant with its
    newest value (``series`` is "all"; ``available`` answers whether any series has it)."""
    views = [_for_series(s) for s in reversed(abi.SERIES)]
    merged: list[dict[str, Any]] = [{}, {}, {}]
    for v in views:
        for table, src in zip(merged, (v.IOCTLS, v.STRUCTS, v.CONSTANTS), strict=True):
            for n, x in src.items():
                table.setdefault(n, x)
    return SeriesABI("all", *merged)


def sizeof(name: str, version: str) -> int:
    """sizeof(struct ``name``) (or of the struct ioctl ``name`` takes) on a kernel of ``version``."""
    return for_series(version).sizeof(name)
