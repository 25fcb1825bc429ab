"""harness.uapi against each declared series' own tree (6.12 and 7.2): a C program generated
from ``uapi.for_series(series)`` prints every struct size and field offset, ioctl number and
constant as gcc sees them in that series' headers; every name declared absent from the series
must fail to compile against them; minimum sizes are checked against that series' main.c
IOCTL_OP table and VFIO handlers' minsz; the headers are parsed for anything left undeclared
or declared absent.

Without a series' sources the tests that need them skip, unless
VFIO_CONFORMANCE_REQUIRE_HEADERS=1 (CI), when they fail.
"""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kernel_source import unavailable

from harness import uapi
from harness.kernel import source
from harness.kernel.series import get_series
from harness.uapi import abi, iommufd, iommufd_test, vfio

MODULES = (iommufd, vfio, iommufd_test)
IOMMUFD_MAIN = "drivers/iommu/iommufd/main.c"
SELFTEST = "drivers/iommu/iommufd/selftest.c"


def needed(series: str) -> tuple[str, ...]:
    handlers = sorted({io.handler.split(":")[0] for io in uapi.for_series(series).IOCTLS.values() if io.handler})
    return tuple(dict.fromkeys((*source.UAPI_HEADERS, IOMMUFD_MAIN, SELFTEST, *handlers)))

pytestmark = pytest.mark.kernel   # the kernel's uAPI headers and sources, compiled


@pytest.fixture(scope="module", params=uapi.SERIES)
def series(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def view(series: str) -> uapi.SeriesABI:
    return uapi.for_series(series)


@pytest.fixture(scope="module")
def ksrc(series: str) -> Path:
    root = source.find_source(needed(series), series=series)
    if root is None:
        where = (f"install linux-source-{series}" if series == uapi.DEFAULT_SERIES
                 else f"run `vfio-conformance kernel build --series {series}`")
        unavailable(f"no Linux {series} source with its uAPI headers and {len(needed(series)) - 3} handler files: "
                    f"set ${get_series(series).ksrc_env} or {where}")
    assert root is not None
    return root


# ---------------------------------------------------------------------------------------
# The C program


def _signed(ctype: Any) -> int:
    return int(ctype(-1).value == -1)


def _scalar(ctype: Any) -> Any:
    return ctype._type_ if isinstance(ctype, type) and issubclass(ctype, ctypes.Array) else ctype


def _c_lvalue(struct: str, path: str) -> str:
    return f"((struct {struct} *)0)->{path}"


def _ioctl_ops(root: Path) -> list[tuple[str, str, str, str]]:
    """(ioctl, handler function, struct, last member) of every IOCTL_OP() in main.c."""
    text = (root / IOMMUFD_MAIN).read_text()
    return re.findall(r"IOCTL_OP\(\s*(\w+),\s*(\w+),\s*struct\s+(\w+),\s*(\w+)\s*\)", text)


def _function_macros() -> dict[str, Any]:
    return {n: f for m in MODULES for n, f in vars(m).items()
            if n.isupper() and not n.startswith("_") and callable(f) and getattr(f, "__module__", None) == m.__name__}


def _string_constants() -> dict[str, str]:
    return {n: v for m in MODULES for n, v in vars(m).items() if n.isupper() and isinstance(v, str)
            and not n.startswith(("_", "FD_", "ARG_"))}


_PRELUDE = [
    "#define __user",
    # 7.2's vfio.h uses __counted_by from <linux/stddef.h>, which older libc headers lack.
    "#ifndef __counted_by",
    "#define __counted_by(m)",
    "#endif",
]


def _program(view: uapi.SeriesABI, ops: list[tuple[str, str, str, str]]) -> str:
    out = [
        *_PRELUDE,
        "#include <stddef.h>",
        "#include <stdio.h>",
        "#include <linux/mman.h>",   # harness/uapi/mman.py: PROT_* of asm-generic/mman-common.h
        "#include <linux/vfio.h>",
        "#include <linux/iommufd.h>",
        '#include "iommufd_test.h"',
        "#define SIGNED(x) _Generic((x), signed char: 1, short: 1, int: 1, long: 1, long long: 1, default: 0)",
        "#define INT(key, x) printf(\"%s %lld %zu\\n\", key, (long long)(x), sizeof(x))",
        "int main(void)",
        "{",
    ]
    for name, cls in view.STRUCTS.items():
        out.append(f'\tprintf("sizeof {name} %zu\\n", sizeof(struct {name}));')
        for path, _off, _size, ctype in uapi.fields(cls):
            lv = _c_lvalue(name, path)
            elem = f"{lv}[0]" if _scalar(ctype) is not ctype else lv
            out.append(f'\tprintf("field {name}.{path} %zu %zu %zu %d\\n", offsetof(struct {name}, {path}), '
                       f"sizeof({lv}), sizeof({elem}), SIGNED({elem}));")
        trailing = getattr(cls, "_trailing_", None)
        if trailing:
            t = trailing[0]
            out.append(f'\tprintf("trailing {name}.{t} %zu %zu\\n", offsetof(struct {name}, {t}), '
                       f"sizeof({_c_lvalue(name, t)}[0]));")
    for ioctl_name in view.IOCTLS:
        out.append(f'\tprintf("ioctl {ioctl_name} %lu\\n", (unsigned long){ioctl_name});')
    for const in view.CONSTANTS:
        out.append(f'\tINT("const {const}", {const});')
    for const in _string_constants():
        out.append(f'\tprintf("string {const} %s\\n", {const});')
    for macro in _function_macros():
        out.extend(f'\tINT("macro {macro}({arg})", {macro}({arg}));' for arg in range(16))
    for _ioctl, _fn, struct, last in ops:
        out.append(f'\tprintf("offsetofend {struct}.{last} %zu\\n", '
                   f"offsetof(struct {struct}, {last}) + sizeof({_c_lvalue(struct, last)}));")
    out += ["\treturn 0;", "}", ""]
    return "\n".join(out)


def _gcc() -> str:
    gcc = shutil.which("gcc")
    if gcc is None:
        unavailable("gcc is not installed")
    assert gcc is not None
    return gcc


@pytest.fixture(scope="module")
def staged(ksrc: Path, series: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with the series' three headers under include/."""
    d = tmp_path_factory.mktemp(f"uapi-layout-{series}")
    # Only the three headers come from the tree: a full tree's include/uapi/linux/types.h
    # is not usable from user space, so <linux/types.h> and <linux/ioctl.h> are the system's.
    for header in source.UAPI_HEADERS:
        dest = d / "include" / ("linux" if "/uapi/" in header else "") / Path(header).name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ksrc / header, dest)
    return d


@pytest.fixture(scope="module")
def c_values(ksrc: Path, staged: Path, view: uapi.SeriesABI) -> dict[str, list[str]]:
    """key -> the values the C program printed for it."""
    gcc = _gcc()
    d = staged
    (d / "layout.c").write_text(_program(view, _ioctl_ops(ksrc)))
    cmd = [gcc, "-std=gnu11", "-Wall", f"-I{d / 'include'}", "-o", str(d / "layout"), str(d / "layout.c")]
    cc = subprocess.run(cmd, capture_output=True, text=True)
    errors = [line for line in cc.stderr.splitlines() if "error" in line]
    assert cc.returncode == 0, f"{' '.join(cmd)}: {len(errors)} error(s):\n" + "\n".join(errors[:40])
    run = subprocess.run([str(d / "layout")], capture_output=True, text=True, check=True)
    values: dict[str, list[str]] = {}
    for line in run.stdout.splitlines():
        kind, key, *rest = line.split(" ")
        values[f"{kind} {key}"] = rest
    return values


def _report(mismatches: list[str]) -> None:
    assert not mismatches, f"{len(mismatches)} problem(s):\n" + "\n".join(mismatches)


# ---------------------------------------------------------------------------------------
# Layout, numbers and values


def test_struct_layout_matches_c(c_values: dict[str, list[str]], view: uapi.SeriesABI) -> None:
    bad = []
    for name, cls in view.STRUCTS.items():
        (c_size,) = c_values[f"sizeof {name}"]
        if int(c_size) != ctypes.sizeof(cls):
            bad.append(f"sizeof(struct {name}): C {c_size}, Python {ctypes.sizeof(cls)}")
        for path, off, size, ctype in uapi.fields(cls):
            c_off, c_sz, c_elem, c_signed = map(int, c_values[f"field {name}.{path}"])
            py = (off, size, ctypes.sizeof(_scalar(ctype)), _signed(_scalar(ctype)))
            if (c_off, c_sz, c_elem, c_signed) != py:
                bad.append(f"struct {name}.{path}: C (offset, size, element size, signed) = "
                           f"{(c_off, c_sz, c_elem, c_signed)}, Python {py}")
        trailing = getattr(cls, "_trailing_", None)
        if trailing:
            t, elem = trailing
            c_off, c_elem = map(int, c_values[f"trailing {name}.{t}"])
            if (c_off, c_elem) != (ctypes.sizeof(cls), ctypes.sizeof(elem)):
                bad.append(f"struct {name}.{t}[]: C at {c_off} of {c_elem}-byte elements, "
                           f"Python at sizeof {ctypes.sizeof(cls)} of {ctypes.sizeof(elem)}-byte elements")
    _report(bad)


def test_ioctl_numbers_match_c(c_values: dict[str, list[str]], view: uapi.SeriesABI) -> None:
    _report([f"{name}: C {int(c_values[f'ioctl {name}'][0]):#x}, Python {io.number:#x}"
             for name, io in view.IOCTLS.items() if int(c_values[f"ioctl {name}"][0]) != io.number])


def test_constants_match_c(c_values: dict[str, list[str]], view: uapi.SeriesABI) -> None:
    bad = []
    for name, value in view.CONSTANTS.items():
        c_value, c_size = map(int, c_values[f"const {name}"])
        # Compare at the width of the C expression: (1 << 31) is an int in C.
        if (value - c_value) % (1 << 8 * c_size) or not -(1 << 8 * c_size - 1) <= value < 1 << 8 * c_size:
            bad.append(f"{name}: C {c_value} ({c_size} bytes), Python {value}")
    for name, text in _string_constants().items():
        if c_values[f"string {name}"] != [text]:
            bad.append(f"{name}: C {c_values[f'string {name}']}, Python {text!r}")
    for name, fn in _function_macros().items():
        for arg in range(16):
            c_value, c_size = map(int, c_values[f"macro {name}({arg})"])
            if (fn(arg) - c_value) % (1 << 8 * c_size):
                bad.append(f"{name}({arg}): C {c_value}, Python {fn(arg)}")
    _report(bad)


# ---------------------------------------------------------------------------------------
# Minimum sizes and handler citations


def _cited(root: Path, handler: str, span: int = 1) -> list[str]:
    path, line = handler.rsplit(":", 1)
    lines = (root / path).read_text().splitlines()
    return lines[int(line) - 1:int(line) - 1 + span]


def test_iommufd_min_size_is_ioctl_op_last_member(ksrc: Path, c_values: dict[str, list[str]],
                                                  view: uapi.SeriesABI) -> None:
    ops = _ioctl_ops(ksrc)
    bad = []
    declared = {n for n, io in view.IOCTLS.items() if uapi.FD_IOMMUFD in io.fd_kinds}
    if {op[0] for op in ops} != declared:
        bad.append(f"main.c IOCTL_OP table {sorted(op[0] for op in ops)} != declared {sorted(declared)}")
    for name, fn, struct, last in ops:
        io = view.IOCTLS.get(name)
        if io is None:
            continue
        (c_min,) = c_values[f"offsetofend {struct}.{last}"]
        if io.struct is None or io.struct.__name__ != struct:
            bad.append(f"{name}: IOCTL_OP takes struct {struct}, declared {io.struct}")
        if io.min_size != int(c_min):
            bad.append(f"{name}: offsetofend(struct {struct}, {last}) = {c_min}, min_size {io.min_size}")
        # IOCTL_OP's .size is sizeof(struct) (main.c:369-377): the copy the handler sees.
        if io.sizeof != int(c_values[f"sizeof {struct}"][0]):
            bad.append(f"{name}: sizeof(struct {struct}) = {c_values[f'sizeof {struct}'][0]}, sizeof {io.sizeof}")
        if io.size_field != "size":
            bad.append(f"{name}: size_field {io.size_field!r}, iommufd reads a leading u32 size")
        if not re.search(rf"\b{fn}\(", _cited(ksrc, io.handler)[0]):
            bad.append(f"{name}: {io.handler} is not where {fn}() starts")
    _report(bad)


_OFFSETOFEND = re.compile(r"offsetofend\(\s*struct\s+(\w+),\s*([\w.]+)\s*\)")
_FUNCTION_START = re.compile(r"^(?:static\s+)?(?:\w+\s+)*\**(\w+)\(")


def test_vfio_min_size_is_handler_minsz(ksrc: Path, view: uapi.SeriesABI) -> None:
    """The first offsetofend() after each VFIO handler citation is its minsz, and it is min_size;
    a flag's larger size (flag_min_sizes) is an offsetofend() further on in the handler."""
    bad = []
    for name, io in view.IOCTLS.items():
        if uapi.FD_IOMMUFD in io.fd_kinds:
            continue
        first = _cited(ksrc, io.handler)[0]
        if name not in first and not _FUNCTION_START.match(first):
            bad.append(f"{name}: {io.handler} is neither a function nor a case for it: {first.strip()!r}")
        if io.min_size is None:
            if io.struct is not None or io.arg == uapi.ARG_STRUCT:
                bad.append(f"{name}: a struct ioctl without min_size")
            continue
        assert io.struct is not None
        m = _OFFSETOFEND.search("\n".join(_cited(ksrc, io.handler, 40)))
        if m is None:
            bad.append(f"{name}: no offsetofend() within 40 lines of {io.handler}")
            continue
        ends = {path: off + size for path, off, size, _ in uapi.fields(io.struct)}
        if m[1] != io.struct.__name__ or ends.get(m[2]) != io.min_size:
            bad.append(f"{name}: {io.handler} has minsz offsetofend(struct {m[1]}, {m[2]}), "
                       f"declared min_size {io.min_size} of struct {io.struct.__name__}")
        body = "\n".join(_cited(ksrc, io.handler, 40))
        for flag, size in io.flag_min_sizes.items():
            later = {ends.get(x[2]) for x in _OFFSETOFEND.finditer(body) if x[1] == io.struct.__name__}
            if flag not in body or size not in later:
                bad.append(f"{name}: {io.handler} has no {flag} with an offsetofend() of {size} bytes")
    _report(bad)


def _function_body(text: str, name: str) -> str:
    m = re.search(rf"^(?:static\s+)?\w[^;\n]*\b{name}\([^;]*?\)\s*\{{(.*?)^\}}", text, re.M | re.S)
    assert m is not None, f"no function {name}()"
    return m[1]


def test_test_op_member_follows_selftest_dispatch(ksrc: Path, view: uapi.SeriesABI) -> None:
    """Each op's case in iommufd_test() (or the function it hands cmd to) uses cmd-><member>."""
    text = (ksrc / SELFTEST).read_text()
    parts = re.split(r"((?:\s*case\s+IOMMU_TEST_OP_\w+:)+)", _function_body(text, "iommufd_test"))
    seen, bad = set(), []
    for labels, code in zip(parts[1::2], parts[2::2], strict=True):
        used = set(re.findall(r"cmd->(\w+)\.", code))
        callee = re.search(r"return\s+(\w+)\(", code)
        if callee:
            used |= set(re.findall(r"cmd->(\w+)\.", _function_body(text, callee[1])))
        for op in re.findall(r"IOMMU_TEST_OP_\w+", labels):
            seen.add(op)
            member = iommufd_test.TEST_OP_MEMBER.get(view.constant(op)) if op in view.CONSTANTS else None
            if member not in used:
                bad.append(f"{op}: TEST_OP_MEMBER says {member!r}, selftest.c uses {sorted(used)}")
    declared = {n for n, v in vars(iommufd_test).items() if n.startswith("IOMMU_TEST_OP_")
                and v in iommufd_test.TEST_OP_MEMBER and n in view.CONSTANTS}
    if seen != declared:
        bad.append(f"iommufd_test() handles {sorted(seen)}, TEST_OP_MEMBER has {sorted(declared)}")
    _report(bad)


# ---------------------------------------------------------------------------------------
# Nothing in the headers left out


def _strip_comments(text: str) -> str:
    return re.sub(r"/\*.*?\*/|//[^\n]*", "", text, flags=re.S)


def _header_names(text: str) -> Iterator[tuple[str, str]]:
    text = _strip_comments(text)
    for m in re.finditer(r"^\s*#\s*define\s+(\w+)", text, re.M):
        if not m[1].startswith("_"):
            yield "macro", m[1]
    for block in re.findall(r"\benum\b[^{;]*\{(.*?)\}", text, re.S):
        for item in block.split(","):
            if item.strip():
                yield "enumerator", re.match(r"\s*(\w+)", item)[1]  # type: ignore[index]
    for m in re.finditer(r"\bstruct\s+(\w+)\s*\{", text):
        yield "struct", m[1]


def test_headers_fully_declared(ksrc: Path, view: uapi.SeriesABI) -> None:
    """Every name of the series' headers is declared, and declared as existing in the series."""
    bad = []
    every = uapi.every_series()
    for header in source.UAPI_HEADERS:
        for kind, name in _header_names((ksrc / header).read_text()):
            if kind == "struct":
                found = name in every.STRUCTS
            else:
                found = name in every.CONSTANTS or any(hasattr(m, name) for m in MODULES)
            if not found:
                bad.append(f"{header}: {kind} {name} is not declared")
            elif (name in every.STRUCTS or name in every.CONSTANTS) and not view.available(name):
                bad.append(f"{header}: {kind} {name} is declared absent from {view.series} ({uapi.span(name)})")
    _report(bad)


def _absent(view: uapi.SeriesABI) -> list[tuple[str, str]]:
    """(name, C expression that compiles only where the name exists) of each declaration
    marked absent from the series."""
    out = []
    for name in sorted(uapi.abi.SPANS):
        if view.available(name):
            continue
        if name in uapi.every_series().STRUCTS:
            out.append((name, f"sizeof(struct {name})"))
        elif "." in name:
            struct, member = name.split(".", 1)
            out.append((name, f"sizeof({_c_lvalue(struct, member)})"))
        else:
            out.append((name, f"(long long)({name})"))
    return out


def test_absent_declarations_are_absent_from_headers(staged: Path, view: uapi.SeriesABI) -> None:
    """What the uAPI says a series lacks, its headers lack: each name, alone on its line of a C
    file, must be an error there (an undeclared identifier, an incomplete struct, no such member)."""
    absent = _absent(view)
    if not absent:
        return
    lines = [*_PRELUDE, "#include <stddef.h>", "#include <linux/vfio.h>", "#include <linux/iommufd.h>",
             '#include "iommufd_test.h"']
    first = len(lines) + 1
    lines += [f"long long probe_{i}(void) {{ return {expr}; }}" for i, (_, expr) in enumerate(absent)]
    (staged / "absent.c").write_text("\n".join(lines) + "\n")
    cc = subprocess.run([_gcc(), "-std=gnu11", "-fsyntax-only", f"-I{staged / 'include'}", str(staged / "absent.c")],
                        capture_output=True, text=True)
    failed = {int(m[1]) for m in re.finditer(r"absent\.c:(\d+):\d+: error", cc.stderr)}
    _report([f"{name} is declared absent from {view.series} ({uapi.span(name)}) but its headers have it"
             for i, (name, _) in enumerate(absent) if first + i not in failed])


# ---------------------------------------------------------------------------------------
# Self-consistency, no headers needed


def test_struct_names_unique() -> None:
    defined = Counter(obj.__name__ for m in MODULES for obj in vars(m).values()
                      if isinstance(obj, type) and issubclass(obj, abi.Struct) and obj.__module__ == m.__name__)
    assert not [n for n, k in defined.items() if k > 1]
    assert all(defined[n] == 1 and cls.__name__ == n for n, cls in uapi.STRUCTS.items())


def test_min_size_within_struct() -> None:
    bad = []
    for name, io in uapi.IOCTLS.items():
        if io.struct is None:
            continue
        if io.min_size is None or not 0 < io.min_size <= io.sizeof:
            bad.append(f"{name}: min_size {io.min_size}, sizeof {io.sizeof}")
        if io.size_field is None or io.struct.offsetof(io.size_field) != 0:  # type: ignore[attr-defined]
            bad.append(f"{name}: size_field {io.size_field!r} is not the leading u32")
    _report(bad)


def test_encode_decode_use_c_names() -> None:
    cmd = uapi.struct("iommu_test_cmd")
    raw = uapi.encode(cmd, {"size": 72, "op": iommufd_test.IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS,
                            "mock_domain_flags": {"dev_flags": iommufd_test.MOCK_FLAGS_DEVICE_NO_DIRTY}})
    assert len(raw) == 72 and raw[28:32] == b"\x01\0\0\0"
    out = uapi.decode(cmd, raw[:40])
    assert out["mock_domain_flags"]["dev_flags"] == 1 and out["last"] == 0 and "_u" not in out
    info = uapi.struct("iommu_hw_info")
    assert uapi.decode(info, uapi.encode(info, {"__reserved": b"\x01\x02"}))["__reserved"] == [1, 2, 0]
    with pytest.raises(KeyError, match=r"struct iommu_test_cmd\.mock_domain has no field 'dev_flags'"):
        uapi.encode(cmd, {"mock_domain": {"dev_flags": 1}})
    with pytest.raises(ValueError, match="does not fit a u8"):
        uapi.encode(info, {"__reserved": [256]})
    with pytest.raises(ValueError, match="does not fit a s32"):
        uapi.encode(uapi.struct("vfio_device_bind_iommufd"), {"iommufd": 1 << 31})
    with pytest.raises(KeyError, match="did you mean IOMMU_IOAS_MAP"):
        uapi.ioctl("IOMMU_IOAS_MAPP")


def test_ioctls_for_tells_reused_numbers_apart() -> None:
    n = uapi.constant("VFIO_IOMMU_MAP_DMA")
    assert [io.name for io in uapi.ioctls_for(uapi.FD_CONTAINER, n)] == ["VFIO_IOMMU_MAP_DMA"]
    assert [io.name for io in uapi.ioctls_for(uapi.FD_DEVICE, n)] == ["VFIO_DEVICE_PCI_HOT_RESET"]
    assert [io.name for io in uapi.ioctls_for(uapi.FD_MIGRATION, uapi.constant("VFIO_EEH_PE_OP"))] == [
        "VFIO_MIG_GET_PRECOPY_INFO"]
