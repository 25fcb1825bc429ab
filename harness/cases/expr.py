"""The small expression language of case values (docs/case-format.md#values).

Parsed once with Python's ``ast`` and evaluated over a whitelist of nodes:
integers, constant names, ``$variables``, arithmetic and bit operators, and
the uAPI table functions sizeof/minsz/offsetof/offsetofend.
"""

from __future__ import annotations

import ast
import ctypes
import errno as _errno
import mmap
import operator
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from .. import uapi


class ExprError(ValueError):
    pass


# Bounds on what one expression may compute.  No uAPI field is wider than 64 bits, so a value
# past 2**MAX_BITS means nothing to any kernel; refusing it keeps a hostile case (`1 << 1 << 40`)
# from spending the run's memory and time on one big integer.  And no case needs a long one.
MAX_BITS = 128
MAX_TEXT = 1024


def _bounded(op: Callable[[int, int], int], symbol: str) -> Callable[[Any, Any], int]:
    def apply(a: Any, b: Any) -> int:
        if not isinstance(a, int) or not isinstance(b, int):
            raise ExprError(f"{symbol} takes numbers, got {type(a).__name__} and {type(b).__name__}")
        if symbol == "<<" and b > MAX_BITS:
            raise ExprError(f"shift by {b} (values are at most {MAX_BITS} bits)")
        try:
            v = op(a, b)
        except ZeroDivisionError:
            raise ExprError(f"{symbol} by zero") from None
        except ValueError as e:   # a negative shift count
            raise ExprError(str(e)) from None
        return fits(v)
    return apply


def fits(v: int) -> int:
    if v.bit_length() > MAX_BITS:
        raise ExprError(f"the value has {v.bit_length()} bits (at most {MAX_BITS})")
    return v


_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    op: _bounded(fn, symbol) for op, fn, symbol in (
        (ast.Add, operator.add, "+"), (ast.Sub, operator.sub, "-"), (ast.Mult, operator.mul, "*"),
        (ast.FloorDiv, operator.floordiv, "//"), (ast.Mod, operator.mod, "%"), (ast.BitOr, operator.or_, "|"),
        (ast.BitAnd, operator.and_, "&"), (ast.BitXor, operator.xor, "^"), (ast.LShift, operator.lshift, "<<"),
        (ast.RShift, operator.rshift, ">>"),
    )
}


def _unary(fn: Callable[[int], int], symbol: str) -> Callable[[Any], int]:
    def apply(a: Any) -> int:
        if not isinstance(a, int):
            raise ExprError(f"unary {symbol} takes a number, got {type(a).__name__}")
        return fits(fn(a))
    return apply


_UNOPS: dict[type, Callable[[Any], Any]] = {
    ast.USub: _unary(operator.neg, "-"), ast.Invert: _unary(operator.invert, "~"), ast.UAdd: _unary(operator.pos, "+"),
}

_EVERY = uapi.every_series()

_VAR = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)((?:\.[A-Za-z_][A-Za-z0-9_]*)*)")


# The uAPI expressions see: every series' names (newest layouts) while a case file is
# checked, the target kernel's series while the engine runs a step on it (so sizeof() and
# minsz() are that kernel's), the default series otherwise.
_ABI: ContextVar[uapi.SeriesABI] = ContextVar("uapi", default=uapi.for_series(uapi.DEFAULT_SERIES))  # noqa: B039  (read-only)


def current_abi() -> uapi.SeriesABI:
    return _ABI.get()


@contextmanager
def using_abi(view: uapi.SeriesABI) -> Iterator[None]:
    """Evaluate expressions against ``view`` inside the block."""
    token = _ABI.set(view)
    try:
        yield
    finally:
        _ABI.reset(token)


def _struct_of(name: str) -> type:
    view = _ABI.get()
    if name in view.STRUCTS:
        return view.STRUCTS[name]
    if name in view.IOCTLS and view.IOCTLS[name].struct is not None:
        return view.IOCTLS[name].struct  # type: ignore[return-value]
    raise ExprError(f"no struct or ioctl named {name}" + ("" if view.series == "all" else f" on {view.series}"))


def _sizeof(name: str) -> int:
    return ctypes.sizeof(_struct_of(name))


def _minsz(name: str) -> int:
    io = _ABI.get().IOCTLS.get(name)
    if io is None or io.min_size is None:
        raise ExprError(f"{name} is not an ioctl with a minimum size")
    return io.min_size


def _offset(name: str, field: str, end: bool) -> int:
    cls = _struct_of(name)
    for path, off, size, _ in uapi.abi.walk_fields(cls):
        if path == field:
            return off + size if end else off
    raise ExprError(f"struct {cls.__name__} has no field {field}")


_FUNCS: dict[str, Callable[..., int]] = {
    "sizeof": _sizeof,
    "minsz": _minsz,
    "offsetof": lambda s, f: _offset(s, f, False),
    "offsetofend": lambda s, f: _offset(s, f, True),
}


# The page size of the machine the harness runs on; cases assume the target's is the same.
BUILTINS = {"PAGE_SIZE": mmap.PAGESIZE, "U64_MAX": (1 << 64) - 1, "U32_MAX": (1 << 32) - 1}


def constant(name: str) -> int | None:
    """A constant's value on the kernel in force; a name that kernel no longer (or not yet) has
    keeps the value it has where it exists, so a case can pass the number to any kernel."""
    view = _ABI.get()
    if name in view.CONSTANTS:
        return view.CONSTANTS[name]
    if name in _EVERY.CONSTANTS:
        return _EVERY.CONSTANTS[name]
    if name in BUILTINS:
        return BUILTINS[name]
    if name.startswith("E") and hasattr(_errno, name):
        return int(getattr(_errno, name))
    return None


@dataclass(frozen=True)
class Expr:
    """A parsed expression; ``variables`` are the ``$names`` it reads."""

    text: str
    tree: ast.Expression
    variables: frozenset[str]

    def eval(self, env: Mapping[str, Any]) -> Any:
        return _eval(self.tree.body, env, self.text)


def _rewrite_vars(text: str) -> tuple[str, set[str]]:
    names: set[str] = set()

    def sub(m: re.Match[str]) -> str:
        names.add(m.group(1))
        return f"__var__({m.group(1)!r}, {m.group(2)[1:]!r})" if m.group(2) else f"__var__({m.group(1)!r}, '')"

    return _VAR.sub(sub, text), names


# Parsed expressions by (text, the uAPI view they were checked against): the fuzzer parses
# the same few texts ("$buf3 + 0x1000") thousands of times a second.  The view is kept with
# its entry, so its id is not reused while the entry lives.
_PARSED: dict[tuple[str, int], tuple[uapi.SeriesABI, Expr]] = {}
_PARSED_MAX = 4096


def parse(text: str) -> Expr:
    """The parsed expression; ExprError if it is malformed, or if it reads no ``$variable``
    and cannot be evaluated (``1 // 0``, ``1 << 200``): such a case is refused at load."""
    view = _ABI.get()
    hit = _PARSED.get((text, id(view)))
    if hit is not None and hit[0] is view:
        return hit[1]
    expr = _parse(text)
    if len(_PARSED) >= _PARSED_MAX:
        _PARSED.clear()
    _PARSED[(text, id(view))] = (view, expr)
    return expr


def _parse(text: str) -> Expr:
    if len(text) > MAX_TEXT:
        raise ExprError(f"an expression of {len(text)} characters (at most {MAX_TEXT})")
    src, names = _rewrite_vars(text.strip())
    try:
        tree = ast.parse(src, mode="eval")
        _check(tree.body, text)
        expr = Expr(text, tree, frozenset(names))
        if not names:
            expr.eval({})
    except SyntaxError as e:
        raise ExprError(f"cannot parse expression {text[:80]!r}: {e.msg}") from None
    except (RecursionError, MemoryError):
        raise ExprError(f"expression nested too deep: {text[:80]!r}") from None
    except ValueError as e:   # an integer literal past the interpreter's digit limit
        if isinstance(e, ExprError):
            raise
        raise ExprError(f"{e} in {text[:80]!r}") from None
    return expr


def _check(node: ast.AST, text: str) -> None:
    if isinstance(node, ast.Constant):
        if not isinstance(node.value, (int, str)) or isinstance(node.value, bool):
            raise ExprError(f"unsupported literal in {text!r}")
        if isinstance(node.value, int):
            fits(node.value)
    elif isinstance(node, ast.Name):
        if constant(node.id) is None and node.id not in _ABI.get().STRUCTS:
            raise ExprError(f"unknown constant {node.id}")
    elif isinstance(node, ast.BinOp):
        if type(node.op) not in _BINOPS:
            raise ExprError(f"operator not allowed in {text!r}")
        _check(node.left, text)
        _check(node.right, text)
    elif isinstance(node, ast.UnaryOp):
        if type(node.op) not in _UNOPS:
            raise ExprError(f"operator not allowed in {text!r}")
        _check(node.operand, text)
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        if node.func.id == "__var__":
            return
        if node.func.id not in _FUNCS:
            raise ExprError(f"unknown function {node.func.id}() in {text!r}")
        for a in node.args:
            if not isinstance(a, ast.Name) and not (isinstance(a, ast.Attribute)):
                raise ExprError(f"{node.func.id}() takes names, in {text!r}")
        # Evaluate eagerly: catches unknown structs and fields at load time.
        _eval(node, {}, text)
    else:
        raise ExprError(f"not allowed in an expression: {text!r}")


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return _dotted(node.value) + "." + node.attr
    raise ExprError("expected a name")


def _eval(node: ast.AST, env: Mapping[str, Any], text: str) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        v = constant(node.id)
        if v is None:
            raise ExprError(f"unknown constant {node.id}")
        return v
    if isinstance(node, ast.BinOp):
        return _BINOPS[type(node.op)](_eval(node.left, env, text), _eval(node.right, env, text))
    if isinstance(node, ast.UnaryOp):
        return _UNOPS[type(node.op)](_eval(node.operand, env, text))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        if node.func.id == "__var__":
            name = node.args[0].value  # type: ignore[attr-defined]
            attrs = node.args[1].value  # type: ignore[attr-defined]
            return lookup(env, name, attrs)
        try:
            return _FUNCS[node.func.id](*[_dotted(a) for a in node.args])
        except TypeError:
            raise ExprError(f"wrong number of arguments in {text!r}") from None
    raise ExprError(f"cannot evaluate {text!r}")


def lookup(env: Mapping[str, Any], name: str, attrs: str) -> Any:
    if name not in env:
        raise ExprError(f"${name} is not bound at this step")
    v = env[name]
    for a in filter(None, attrs.split(".")):
        if isinstance(v, Mapping) and a in v:
            v = v[a]
        elif hasattr(v, a):
            v = getattr(v, a)
        else:
            raise ExprError(f"${name} has no attribute {a}")
    return v


_TEMPLATE = re.compile(r"\$\{([^}]*)\}")


def template_vars(text: str) -> set[str]:
    out: set[str] = set()
    for m in _TEMPLATE.finditer(text):
        inner = m.group(1).strip()
        out.add(inner.split(".")[0].lstrip("$"))
    return out


def render(text: str, env: Mapping[str, Any]) -> str:
    def sub(m: re.Match[str]) -> str:
        inner = m.group(1).strip().lstrip("$")
        name, _, attrs = inner.partition(".")
        return str(lookup(env, name, attrs))

    return _TEMPLATE.sub(sub, text)
