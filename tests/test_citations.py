"""Every errno the model raises cites a kernel line that says it.

The model fails a syscall with ``Errno(errno.X, cite(path, line[, series]))`` (harness/model/errors.py).
This test finds every such citation in harness/model by its AST, opens the cited file in the kernel
tree of its series and checks the rule:

    the errno X is named, as a word, on a line of L..M ("line") or of L-WINDOW..M+WINDOW ("window");
    or a line of L..M calls a kernel helper that returns X (HELPERS: copy_from_user() -> EFAULT, ...)
    ("helper"); or a line of L..M is a ``goto label;`` or ``return var;`` and the nearest line above it in its function
    that sets a variable to a negative errno in a block enclosing that line (by indentation) sets it to
    -X (``int ret = -EINVAL;`` ... ``if (iova & mask) goto unlock;``), or the goto's label is followed,
    before its function ends, by ``return -X;`` as its first return ("flow").

A citation reaches its errno in one of three ways, all read from the AST:

- it is the second argument of ``Errno(errno.X, ...)`` (either branch of a conditional line counts);
- it is passed to a parameter that a function of the model raises ``Errno(errno.X, param)`` with,
  directly or through another such function (``get_struct(..., where)`` -> copy_from_user -> EFAULT),
  or to a tuple parameter ``where[i]``, or is a parameter's default;
- it is a value of a module-level table the model raises ``Errno(errno.X, TABLE[key])`` with.

``Errno(errno.X, ...)`` without a citation is listed as uncited.  The few that cannot cite a kernel
line are in UNCITED, each with its reason.
"""

from __future__ import annotations

import ast
import errno
import importlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.kernel.source import find_source
from harness.model.errors import SERIES, cite
from tests.kernel_source import unavailable

MODEL = Path(__file__).resolve().parent.parent / "harness" / "model"
SERIES_TREES = (SERIES, "7.2")
WINDOW = 3

# Kernel helpers that fail with an errno the caller passes on: a cited line that calls one is the
# errno's line.
HELPERS: dict[str, tuple[str, ...]] = {
    "EFAULT": ("copy_from_user", "copy_to_user", "get_user", "put_user", "memdup_user",
               "copy_struct_from_user", "iommu_copy_struct_from_user", "strncpy_from_user",
               "pin_user_pages_remote", "pin_user_pages_fast", "get_user_pages_fast",
               "vfio_pin_pages_remote"),  # type1's wrapper of pin_user_pages_remote()
    "EBUSY": ("xa_alloc",),  # no free id in the limit
}

# Errno returns that cite no kernel line, by (model file, errno): why not.
_LOOKUP = "a path the model's sysfs or VFS lacks: the VFS's path walk says it, at no one line"
UNCITED: dict[tuple[str, str], str] = {
    ("backend.py", "EBADF"): "an fd number the harness never opened through this backend: "
                             "the harness's own bookkeeping, no kernel path",
    ("base/bus.py", "ENOENT"): _LOOKUP,
    ("kernel.py", "ENOENT"): _LOOKUP,
    ("pci/iov.py", "ENOENT"): _LOOKUP,
    ("pci/pci.py", "ENOENT"): _LOOKUP,
    ("pci/pci_sysfs.py", "ENOENT"): _LOOKUP,
    ("vfio/vfio_pci.py", "ENOENT"): _LOOKUP,
    ("kernel.py", "EACCES"): "a sysfs attribute without the show/store asked for: the mode check of "
                             "the open (fs/namei.c may_open), at no one line",
    ("kernel.py", "EBADF"): "fget() of any syscall: each syscall's own fdget line (ioctl: fs/ioctl.c:897-898)",
    ("memory.py", "EFAULT"): "the faulting user copy itself; copy_*_user() returns bytes left, and every "
                             "caller re-raises EFAULT with its own cited line",
    ("iommufd/selftest.py", "EFAULT"): "get_user_pages_fast() failing deep in mm/gup.c on an unmapped page",
    ("memfd.py", "EFBIG"): "a write past MAX_LFS_FILESIZE: generic_write_check_limits() by way of "
                           "inode_newsize_ok(), not yet pinned to a line",
    ("pci/pci.py", "ENOTTY"): "reset with no method: drivers/pci/pci.c:4971-4973 and 5355, two lines",
    ("pci/pci.py", "ENODEV"): "the model's machine without a PCI core, not a kernel path",
    ("vfio/device_cdev.py", "ENOSYS"): "attaching a PASID is not modelled (drivers/vfio/iommufd.c:185-208@7.2)",
}

# Citations that hold but not by the rule, by (model file, errno, citation): why.
MISCITED: dict[tuple[str, str, str], str] = {
    ("iommu/iommu.py", "EOPNOTSUPP", "drivers/iommu/iommufd/hw_pagetable.c:448"):
        "the model's default for a domain without cache_invalidate_user, which 6.12 calls unconditionally",
    ("vfio/pci_core.py", "EBUSY", "drivers/vfio/vfio_main.c:411"):
        "the model refuses with EBUSY where vfio_unregister_group_dev() would wait for the device's users",
}


@dataclass(frozen=True)
class Citation:
    model: str          # model file relative to harness/model
    lineno: int         # its line
    errno: str
    path: str
    first: int
    last: int
    series: str

    @property
    def where(self) -> str:
        lines = str(self.first) if self.first == self.last else f"{self.first}-{self.last}"
        return cite(self.path, lines, self.series)


@dataclass(frozen=True)
class Uncited:
    model: str
    lineno: int
    errno: str
    source: str


def _errno_name(node: ast.AST) -> str | None:
    """X of ``errno.X``."""
    if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "errno"
            and hasattr(errno, node.attr)):
        return node.attr
    if isinstance(node, ast.Name) and node.id == "ENOIOCTLCMD":  # kernel-internal (errors.py)
        return node.id
    return None


def _callee(call: ast.Call) -> str | None:
    f = call.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None


def _is_cite(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) and _callee(node) == "cite"


def _alternatives(node: ast.expr) -> Iterator[ast.expr]:
    """The expressions a conditional stands for, each branch of each ``a if c else b``."""
    if isinstance(node, ast.IfExp):
        yield from _alternatives(node.body)
        yield from _alternatives(node.orelse)
    else:
        yield node


class _Module:
    def __init__(self, path: Path) -> None:
        self.rel = path.relative_to(MODEL).as_posix()
        self.source = path.read_text()
        self.tree = ast.parse(self.source)
        name = "harness.model." + self.rel.removesuffix(".py").replace("/", ".")
        self.globals = vars(importlib.import_module(name))
        self.parents: dict[ast.AST, ast.AST] = {}
        for node in ast.walk(self.tree):
            for child in ast.iter_child_nodes(node):
                self.parents[child] = node

    def functions(self) -> Iterator[ast.FunctionDef]:
        for node in ast.walk(self.tree):
            if isinstance(node, ast.FunctionDef):
                yield node

    def errno_calls(self) -> Iterator[tuple[ast.Call, str]]:
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Call) and _callee(node) == "Errno" and node.args:
                name = _errno_name(node.args[0])
                if name:
                    yield node, name

    def evaluate(self, node: ast.expr) -> Any:
        return eval(compile(ast.Expression(node), self.rel, "eval"), self.globals)


def _modules() -> list[_Module]:
    return [_Module(p) for p in sorted(MODEL.rglob("*.py"))]


# A carrier slot: a parameter name, or (parameter, index) for a tuple parameter.
Slot = str | tuple[str, int]


def _params(fn: ast.FunctionDef) -> list[str]:
    names = [a.arg for a in fn.args.posonlyargs + fn.args.args]
    return names[1:] if names and names[0] in ("self", "cls") else names


def _carriers(mods: list[_Module]) -> tuple[dict[str, dict[Slot, set[str]]], dict[str, set[str]]]:
    """Which function parameters (and module tables) the model raises which errnos with."""
    funcs: dict[str, dict[Slot, set[str]]] = {}
    tables: dict[str, set[str]] = {}
    defs = [(m, fn) for m in mods for fn in m.functions()]
    for m, fn in defs:
        params = set(_params(fn))
        for call, name in m.errno_calls():
            if len(call.args) < 2 or not _inside(m, call, fn):
                continue
            arg = call.args[1]
            if isinstance(arg, ast.Name) and arg.id in params:
                funcs.setdefault(fn.name, {}).setdefault(arg.id, set()).add(name)
            elif (isinstance(arg, ast.Subscript) and isinstance(arg.value, ast.Name)
                  and isinstance(arg.slice, ast.Constant) and arg.value.id in params):
                funcs.setdefault(fn.name, {}).setdefault((arg.value.id, arg.slice.value), set()).add(name)
            elif isinstance(arg, ast.Subscript) and isinstance(arg.value, ast.Name):
                tables.setdefault(arg.value.id, set()).add(name)
    changed = True
    while changed:  # a parameter handed on to a carrier's slot carries what that slot does
        changed = False
        for _m, fn in defs:
            params = set(_params(fn))
            for node in ast.walk(fn):
                if not isinstance(node, ast.Call) or _callee(node) not in funcs:
                    continue
                for slot, arg in _slots(node, funcs):
                    if isinstance(arg, ast.Name) and arg.id in params:
                        have = funcs.setdefault(fn.name, {}).setdefault(arg.id, set())
                        new = funcs[_callee(node) or ""][slot] - have
                        if new:
                            have |= new
                            changed = True
    return funcs, tables


_SIGNATURES: dict[str, list[str]] = {}


def _slots(call: ast.Call, funcs: dict[str, dict[Slot, set[str]]]) -> Iterator[tuple[Slot, ast.expr]]:
    """(carrier slot, argument) of a call to a carrier."""
    name = _callee(call) or ""
    params = _SIGNATURES.get(name, [])
    carried = funcs.get(name, {})
    args = list(zip(params, call.args, strict=False)) + [(k.arg or "", k.value) for k in call.keywords]
    for param, arg in args:
        if param in carried:
            yield param, arg
        if isinstance(arg, ast.Tuple):
            for i, elt in enumerate(arg.elts):
                if (param, i) in carried:
                    yield (param, i), elt


def _inside(m: _Module, node: ast.AST, fn: ast.FunctionDef) -> bool:
    while node in m.parents:
        node = m.parents[node]
        if isinstance(node, ast.FunctionDef):
            return node is fn
    return False


def _errnos_of(m: _Module, node: ast.Call, funcs: dict[str, dict[Slot, set[str]]],
               tables: dict[str, set[str]]) -> set[str]:
    """The errnos a cite() call is the citation of (empty: none the test can tie it to)."""
    child: ast.AST = node
    parent = m.parents.get(child)
    while isinstance(parent, ast.IfExp):
        child, parent = parent, m.parents.get(parent)
    if isinstance(parent, ast.Call) and _callee(parent) == "Errno" and parent.args[1:2] == [child]:
        name = _errno_name(parent.args[0])
        return {name} if name else set()
    if isinstance(parent, ast.Tuple) and isinstance(m.parents.get(parent), ast.Call):
        call = m.parents[parent]
        assert isinstance(call, ast.Call)
        return {e for slot, arg in _slots(call, funcs) if arg is child for e in funcs[_callee(call) or ""][slot]}
    if isinstance(parent, ast.Call):
        return {e for slot, arg in _slots(parent, funcs) if arg is child for e in funcs[_callee(parent) or ""][slot]}
    if isinstance(parent, ast.arguments):
        fn = m.parents[parent]
        assert isinstance(fn, ast.FunctionDef)
        positional = parent.posonlyargs + parent.args
        for arg, default in zip(positional[len(positional) - len(parent.defaults):], parent.defaults, strict=True):
            if default is child:
                return funcs.get(fn.name, {}).get(arg.arg, set())
    if isinstance(parent, ast.Dict):
        assign = m.parents.get(parent)
        if isinstance(assign, (ast.Assign, ast.AnnAssign)):
            targets = assign.targets if isinstance(assign, ast.Assign) else [assign.target]
            return {e for t in targets if isinstance(t, ast.Name) for e in tables.get(t.id, set())}
    return set()


@dataclass
class Scan:
    citations: list[Citation]
    untied: list[str]        # cite() calls tied to no errno
    uncited: list[Uncited]


def scan() -> Scan:
    mods = _modules()
    for m in mods:
        for fn in m.functions():
            _SIGNATURES.setdefault(fn.name, _params(fn))
    funcs, tables = _carriers(mods)
    out = Scan([], [], [])
    for m in mods:
        cited: set[ast.AST] = set()
        for node in ast.walk(m.tree):
            if not _is_cite(node):
                continue
            assert isinstance(node, ast.Call)
            cited.add(node)
            errnos = _errnos_of(m, node, funcs, tables)
            if not errnos:
                out.untied.append(f"{m.rel}:{node.lineno}: {ast.get_source_segment(m.source, node)}")
            line_alts = list(_alternatives(node.args[1]))
            for line_node in line_alts:
                path = m.evaluate(node.args[0])
                line = str(m.evaluate(line_node))
                series = m.evaluate(node.args[2]) if len(node.args) > 2 else SERIES
                first, _, last = line.partition("-")
                for e in sorted(errnos):
                    out.citations.append(Citation(m.rel, node.lineno, e, path, int(first), int(last or first),
                                                  series))
        for call, name in m.errno_calls():
            where = call.args[1] if len(call.args) > 1 else None
            if where is not None and all(_is_cite(a) for a in _alternatives(where)):
                continue
            if where is not None and _carried(m, call, funcs, tables):
                continue
            out.uncited.append(Uncited(m.rel, call.lineno, name, ast.get_source_segment(m.source, call) or ""))
    return out


def _carried(m: _Module, call: ast.Call, funcs: dict[str, dict[Slot, set[str]]], tables: dict[str, set[str]]) -> bool:
    """An Errno whose citation is a parameter or table the callers fill with cite()."""
    arg = call.args[1]
    node: ast.AST = call
    while node in m.parents and not isinstance(node, ast.FunctionDef):
        node = m.parents[node]
    carried = funcs.get(node.name, {}) if isinstance(node, ast.FunctionDef) else {}
    if isinstance(arg, ast.Name):
        return arg.id in carried
    if isinstance(arg, ast.Subscript) and isinstance(arg.value, ast.Name):
        if isinstance(arg.slice, ast.Constant):
            return (arg.value.id, arg.slice.value) in carried
        return arg.value.id in tables
    return False


# --------------------------------------------------------------------------------------------------
# The rule


def verdict(c: Citation, lines: list[str]) -> str | None:
    """"line", "window" or "helper" when the citation holds (see the module's docstring), else None."""
    word = re.compile(rf"\b{c.errno}\b")
    if c.first < 1 or c.last > len(lines) or c.first > c.last:
        return None
    cited = lines[c.first - 1:c.last]
    if any(word.search(s) for s in cited):
        return "line"
    if any(word.search(s) for s in lines[max(c.first - 1 - WINDOW, 0):c.last + WINDOW]):
        return "window"
    helpers = HELPERS.get(c.errno, ())
    if any(re.search(rf"\b{h}\s*\(", s) for s in cited for h in helpers):
        return "helper"
    for n in range(c.first - 1, c.last):
        if re.search(r"\b(goto|return)\s+\w+;", lines[n]) and _flows_from(lines, n) == c.errno:
            return "flow"
        goto = re.search(r"\bgoto\s+(\w+);", lines[n])
        if goto and _label_returns(lines, n, goto.group(1)) == c.errno:
            return "flow"
    return None


def _label_returns(lines: list[str], n: int, label: str) -> str | None:
    """The errno of the first ``return`` after ``label:`` below line n (0-based) in its function."""
    start = next((i for i in range(n + 1, len(lines)) if lines[i].startswith("}") or
                  re.match(rf"^{label}:", lines[i])), None)
    if start is None or lines[start].startswith("}"):
        return None
    for s in lines[start + 1:]:
        if s.startswith("}"):
            return None
        ret = re.search(r"\breturn\b(.*);", s)
        if ret:
            m = re.fullmatch(r"\s*-(E[A-Z0-9]+)", ret.group(1))
            return m.group(1) if m else None
    return None


LABEL = re.compile(r"^\w+:\s*$")
SETS_ERRNO = re.compile(r"^(\s*)(?:[\w ]+ )?\w+ = -(E[A-Z0-9]+)[;,]")


def _indent(s: str) -> int:
    return len(s.expandtabs(8)) - len(s.expandtabs(8).lstrip())


def _flows_from(lines: list[str], n: int) -> str | None:
    """The errno that the nearest ``var = -EXXX;`` above line n (0-based) in a block enclosing it sets:
    one not indented deeper than any line between them (a deeper one is in a block closed since)."""
    depth = frontier = _indent(lines[n])
    for s in reversed(lines[:n]):
        if s.startswith("}"):
            return None
        if not s.strip() or LABEL.match(s):
            continue
        m = SETS_ERRNO.match(s)
        if m and _indent(s) <= frontier and _indent(s) < depth:
            return m.group(2)
        frontier = min(frontier, _indent(s))
    return None


def check(citations: list[Citation], trees: dict[str, Path]) -> tuple[dict[str, int], list[str]]:
    """How many citations hold by each way of the rule, and the ones that do not."""
    counts: dict[str, int] = {}
    bad: list[str] = []
    cache: dict[tuple[str, str], list[str] | None] = {}
    for c in citations:
        key = (c.series, c.path)
        if key not in cache:
            f = trees[c.series] / c.path
            cache[key] = f.read_text(errors="replace").splitlines() if f.is_file() else None
        lines = cache[key]
        if lines is None:
            bad.append(f"{c.model}:{c.lineno}: {c.errno} cites {c.where}, a file the {c.series} tree lacks")
            continue
        how = verdict(c, lines)
        if how is None and (c.model, c.errno, c.where) in MISCITED:
            how = "allowlisted"
        if how is None:
            said = " / ".join(s.strip() for s in lines[c.first - 1:c.last]) or "(past the end)"
            bad.append(f"{c.model}:{c.lineno}: {c.errno} cites {c.where}, which says: {said}")
        else:
            counts[how] = counts.get(how, 0) + 1
    return counts, bad


def _trees() -> dict[str, Path]:
    trees = {}
    for series in SERIES_TREES:
        tree = find_source(series=series)
        if tree is None:
            unavailable(f"no linux-source-{series} tree (vfio-conformance kernel build --series {series})")
        assert tree is not None
        trees[series] = tree
    return trees


# --------------------------------------------------------------------------------------------------
# Tests


@pytest.mark.kernel
def test_every_errno_the_model_raises_cites_a_line_that_says_it() -> None:
    s = scan()
    counts, bad = check(s.citations, _trees())
    assert not bad, f"{len(bad)} of {len(s.citations)} citations do not name their errno:\n" + "\n".join(bad)
    assert sum(counts.values()) == len(s.citations) > 400


def test_every_citation_is_tied_to_an_errno() -> None:
    assert not scan().untied


def test_every_errno_the_model_raises_cites_a_kernel_line() -> None:
    uncited = [u for u in scan().uncited if (u.model, u.errno) not in UNCITED]
    assert not uncited, "\n".join(f"{u.model}:{u.lineno}: {u.errno} uncited: {u.source}" for u in uncited)


@pytest.mark.kernel
def test_each_miscited_exception_still_fails_the_rule() -> None:
    s = scan()
    trees = _trees()
    held = {(c.model, c.errno, c.where) for c in s.citations
            if verdict(c, (trees[c.series] / c.path).read_text(errors="replace").splitlines()) is not None}
    listed = {(c.model, c.errno, c.where) for c in s.citations}
    assert set(MISCITED) <= listed - held


def test_each_uncited_exception_is_still_there() -> None:
    found = {(u.model, u.errno) for u in scan().uncited}
    assert set(UNCITED) <= found, set(UNCITED) - found


def test_a_citation_through_a_helper_parameter_is_tied_to_the_helper_errno() -> None:
    s = scan()
    by_where = {(c.model, c.errno, c.where) for c in s.citations}
    # get_struct(..., where) -> copy_from_user(..., where) -> Errno(errno.EFAULT, where)
    assert ("vfio/group.py", "EFAULT", "drivers/vfio/group.c:359") in by_where
    # check_map_flags(..., (where0, where1, where2)) raises EOPNOTSUPP, EOVERFLOW, EINVAL with them
    assert {("iommufd/ioas.py", e, f"drivers/iommu/iommufd/ioas.c:{n}")
            for e, n in (("EOPNOTSUPP", 212), ("EOVERFLOW", 214), ("EINVAL", 218))} <= by_where


def test_the_rule_rejects_a_line_that_does_not_say_the_errno() -> None:
    lines = ["int f(void)", "{", "\tif (x)", "\t\treturn -EINVAL;", "\tif (y)", "\t\tgoto out;", "",
             "", "", "\tif (copy_from_user(&a, p, 4))", "\t\treturn -ENOMEM;", "out:", "\treturn 0;", "}"]

    def at(e: str, first: int, last: int | None = None) -> str | None:
        return verdict(Citation("m.py", 1, e, "f.c", first, last or first, SERIES), lines)

    assert at("EINVAL", 4) == "line" and at("EINVAL", 3) == "window" and at("EINVAL", 2, 3) == "window"
    assert at("EINVAL", 10) is None                        # six lines away
    assert at("EFAULT", 10) == "helper" and at("EFAULT", 11) is None
    assert at("EBUSY", 4) is None and at("EINVAL", 99) is None
    flow = ["int g(void)", "{", "\tint ret = -EINVAL, n = 0;", "", "\tif (a) {", "\t\tret = -EBUSY;",
            "\t\tgoto out;", "\t}", "\tx = 1;", "\tif (b)", "\t\tgoto out;", "out:", "\treturn ret;", "}"]
    assert verdict(Citation("m.py", 1, "EINVAL", "f.c", 11, 11, SERIES), flow) == "flow"
    assert verdict(Citation("m.py", 1, "EBUSY", "f.c", 11, 11, SERIES), flow) is None  # the block's own
    assert verdict(Citation("m.py", 1, "EBUSY", "f.c", 6, 6, SERIES), flow) == "line"
    label = ["int h(void)", "{", "\tif (a)", "\t\tgoto error;", "\tf();", "\tg();", "\th();",
             "\treturn 0;", "error:", "\tkfree(p);", "\treturn -ENOSPC;", "}"]
    assert verdict(Citation("m.py", 1, "ENOSPC", "f.c", 4, 4, SERIES), label) == "flow"
    assert verdict(Citation("m.py", 1, "EINVAL", "f.c", 4, 4, SERIES), label) is None
