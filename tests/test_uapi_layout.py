"""harness.uapi against the 6.12 tree: a C program generated from the registries prints
every struct size and field offset, ioctl number and constant as gcc sees them in the
kernel's own headers; minimum sizes are checked against main.c's IOCTL_OP table and the
VFIO handlers' minsz; the headers are parsed for anything left undeclared.

Without the headers the tests that need them skip, unless
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
from harness.uapi import abi, iommufd, iommufd_test, vfio

MODULES = (iommufd, vfio, iommufd_test)
IOMMUFD_MAIN = "drivers/iommu/iommufd/main.c"
SELFTEST = "drivers/iommu/iommufd/selftest.c"
HANDLER_FILES = tuple(sorted({io.handler.split(":")[0] for io in uapi.IOCTLS.values() if io.handler}))
NEEDED = tuple(dict.fromkeys((*source.UAPI_HEADERS, IOMMUFD_MAIN, SELFTEST, *HANDLER_FILES)))


@pytest.fixture(scope="module")
def ksrc() -> Path:
    root = source.find_source(NEEDED)
    if root is None:
        unavailable(f"no Linux {source.VERSION} source: set ${source.ENV} or install linux-source-{source.VERSION}")
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


def _program(ops: list[tuple[str, str, str, str]]) -> str:
    out = [
        "#define __user",
        "#include <stddef.h>",
        "#include <stdio.h>",
        "#include <linux/vfio.h>",
        "#include <linux/iommufd.h>",
        '#include "iommufd_test.h"',
        "#define SIGNED(x) _Generic((x), signed char: 1, short: 1, int: 1, long: 1, long long: 1, default: 0)",
        "#define INT(key, x) printf(\"%s %lld %zu\\n\", key, (long long)(x), sizeof(x))",
        "int main(void)",
        "{",
    ]
    for name, cls in uapi.STRUCTS.items():
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
    for ioctl_name in uapi.IOCTLS:
        out.append(f'\tprintf("ioctl {ioctl_name} %lu\\n", (unsigned long){ioctl_name});')
    for const in uapi.CONSTANTS:
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


@pytest.fixture(scope="module")
def c_values(ksrc: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """key -> the values the C program printed for it."""
    gcc = shutil.which("gcc")
    if gcc is None:
        unavailable("gcc is not installed")
    assert gcc is not None
    d = tmp_path_factory.mktemp("uapi-layout")
    # Only the three headers come from the tree: a full tree's include/uapi/linux/types.h
    # is not usable from user space, so <linux/types.h> and <linux/ioctl.h> are the system's.
    for header in source.UAPI_HEADERS:
        staged = d / "include" / ("linux" if "/uapi/" in header else "") / Path(header).name
        staged.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ksrc / header, staged)
    (d / "layout.c").write_text(_program(_ioctl_ops(ksrc)))
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


def test_struct_layout_matches_c(c_values: dict[str, list[str]]) -> None:
    bad = []
    for name, cls in uapi.STRUCTS.items():
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


def test_ioctl_numbers_match_c(c_values: dict[str, list[str]]) -> None:
    _report([f"{name}: C {int(c_values[f'ioctl {name}'][0]):#x}, Python {io.number:#x}"
             for name, io in uapi.IOCTLS.items() if int(c_values[f"ioctl {name}"][0]) != io.number])


def test_constants_match_c(c_values: dict[str, list[str]]) -> None:
    bad = []
    for name, value in uapi.CONSTANTS.items():
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


def test_iommufd_min_size_is_ioctl_op_last_member(ksrc: Path, c_values: dict[str, list[str]]) -> None:
    ops = _ioctl_ops(ksrc)
    bad = []
    declared = {n for n, io in uapi.IOCTLS.items() if uapi.FD_IOMMUFD in io.fd_kinds}
    if {op[0] for op in ops} != declared:
        bad.append(f"main.c IOCTL_OP table {sorted(op[0] for op in ops)} != declared {sorted(declared)}")
    for name, fn, struct, last in ops:
        io = uapi.IOCTLS.get(name)
        if io is None:
            continue
        (c_min,) = c_values[f"offsetofend {struct}.{last}"]
        if io.struct is None or io.struct.__name__ != struct:
            bad.append(f"{name}: IOCTL_OP takes struct {struct}, declared {io.struct}")
        if io.min_size != int(c_min):
            bad.append(f"{name}: offsetofend(struct {struct}, {last}) = {c_min}, min_size {io.min_size}")
        if io.size_field != "size":
            bad.append(f"{name}: size_field {io.size_field!r}, iommufd reads a leading u32 size")
        if not re.search(rf"\b{fn}\(", _cited(ksrc, io.handler)[0]):
            bad.append(f"{name}: {io.handler} is not where {fn}() starts")
    _report(bad)


_OFFSETOFEND = re.compile(r"offsetofend\(\s*struct\s+(\w+),\s*([\w.]+)\s*\)")
_FUNCTION_START = re.compile(r"^(?:static\s+)?(?:\w+\s+)*\**(\w+)\(")


def test_vfio_min_size_is_handler_minsz(ksrc: Path) -> None:
    """The first offsetofend() after each VFIO handler citation is its minsz, and it is min_size."""
    bad = []
    for name, io in uapi.IOCTLS.items():
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
    _report(bad)


def _function_body(text: str, name: str) -> str:
    m = re.search(rf"^(?:static\s+)?\w[^;\n]*\b{name}\([^;]*?\)\s*\{{(.*?)^\}}", text, re.M | re.S)
    assert m is not None, f"no function {name}()"
    return m[1]


def test_test_op_member_follows_selftest_dispatch(ksrc: Path) -> None:
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
            member = iommufd_test.TEST_OP_MEMBER.get(uapi.constant(op))
            if member not in used:
                bad.append(f"{op}: TEST_OP_MEMBER says {member!r}, selftest.c uses {sorted(used)}")
    declared = {n for n, v in vars(iommufd_test).items() if n.startswith("IOMMU_TEST_OP_")
                and v in iommufd_test.TEST_OP_MEMBER}
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


def test_headers_fully_declared(ksrc: Path) -> None:
    bad = []
    for header in source.UAPI_HEADERS:
        for kind, name in _header_names((ksrc / header).read_text()):
            if kind == "struct":
                found = name in uapi.STRUCTS
            else:
                found = name in uapi.CONSTANTS or any(hasattr(m, name) for m in MODULES)
            if not found:
                bad.append(f"{header}: {kind} {name} is not declared")
    _report(bad)


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
