"""tests/hostile/: hostile case files beside a few good ones (issue 10, items 1, 2 and 7).
`validate` names every bad file in one line, `run` reports every one as failed in every report
and passes the good ones, both in bounded memory (RLIMIT_AS 1 GB) and time, never a traceback.

A symlink to /dev/zero, a FIFO, a directory named like a case and a file past the size limit are
made at run time (git keeps none of them well)."""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
HOSTILE = Path(__file__).resolve().parent / "hostile"
MEMORY = 1_000_000_000  # `ulimit -v 1000000`

# What `validate` says of each file that cannot load (a part of its one line).
LOAD_ERRORS = {
    "alias-bomb": 'YAML: aliases (*name) are not allowed in case files',
    "alias-simple": 'YAML: aliases (*name) are not allowed in case files',
    "align-bad": 'steps[0].align: align is a power of two from 4096 to 1 GiB',
    "area-mismatch": "area: is 'device' but the file is in folder 'ioas'",
    "args-list": 'steps[1].args: args is a mapping of struct fields',
    "args-unknown-field": "steps[1].args.frob: struct iommu_ioas_alloc has no field 'fr",
    "as-number": 'steps[0].as: as: takes a name',
    "attribute-not-allowed": "steps[0].mmap: not allowed in an expression: 'PAGE_SIZE.real",
    "binary": 'not UTF-8 text (byte 128: 0x80)',
    "bool-key": 'YAML: a key is a name or a number, not bool',
    "bool-value": 'steps[1].args.flags: booleans are not values; use 0 or 1',
    "buffer-1g": "steps[1].buffer.length: 0x40000000 is outside the harness's ",
    "buffer-negative": "steps[1].buffer.length: -1 is outside the harness's buffer s",
    "by-kernel-bad-range": "steps[0].expect.by_kernel.<seven: not a version range: '<sev",
    "call-not-allowed": 'steps[0].mmap: unknown function __import__() in "__import__(',
    "cleanup-mapping": 'cleanup: a list of steps',
    "cleanup-scalar-step": 'cleanup[0]: a step is a mapping',
    "data-two-keys": 'steps[1].data: give one of {u8|u16|u32|s32|u64: [...]} or {h',
    "deep-300": 'YAML: nested deeper than 64 levels',
    "div-zero": 'steps[0].mmap: // by zero',
    "duplicate-key": "YAML: duplicate key 'steps'",
    "empty": 'a case file is a mapping',
    "eventfd-negative": "steps[0].eventfd: -1 is outside eventfd's initval (an unsign",
    "role-attribute-unknown": "steps[0]: $dev.gruop: role isolated offers bdf, group, cdev, name",
    "expect-mixed-keys": "steps[0].expect: unknown expectation ''",
    "expect-number": 'steps[0].expect: expect is ok, any, an errno name, or a mapp',
    "expect-out-list": 'steps[1].expect.out: out is a mapping of field: value',
    "expect-unknown-errno": "steps[0].expect: not an errno name: 'EWHATEVER'",
    "fd-unbound": "steps[1].fd: 'nobody' is not bound by an earlier step's `as`",
    "field-too-wide": 'steps[1].args.flags: 0x100000000 is outside a __u32 field (0',
    "fixture-absolute": 'fixture: names a file of cases/fixtures/ without .yaml ([a-z',
    "fixture-bad-step": "fixtures/bad-step.yaml:5: fixture.steps[1]: a step has exactly one of",
    "fixture-chained": "fixtures/chained.yaml:1: fixture: a fixture names no fixture of its own",
    "fixture-missing": "fixture: no fixture 'no-such-fixture'",
    "fixture-parent": 'fixture: names a file of cases/fixtures/ without .yaml ([a-z',
    "float-value": 'steps[0].eventfd: expected a number, expression or list, got',
    "hex-bad": "steps[1].hex: not hex bytes: 'zz'",
    "huge-hex-literal": 'steps[0].mmap: the value has 4000 bits (at most 128)',
    "huge-int-literal": 'YAML: an integer of 5000 digits',
    "id-bad-chars": 'id: lower-case letters, digits and dashes',
    "id-list": 'id: lower-case letters, digits and dashes',
    "known-diff-kernel-bad": "known_differences[0].kernels: not a version range: 'seven' (",
    "known-diff-no-reason": 'known_differences[0].reason: say why the kernel differs from',
    "known-diff-not-list": 'known_differences: a list of {reason, kernels, step, field}',
    "known-diff-step-float": 'known_differences[0].step: the line number of a step',
    "known-diff-step-string": 'known_differences[0].step: the line number of a step',
    "lambda-not-allowed": "steps[0].mmap: not allowed in an expression: '(lambda x: 1)(",
    "latin1": 'not UTF-8 text (byte 39: 0xe9)',
    "list-key-fixture": 'fixture: names a file of cases/fixtures/ without .yaml ([a-z',
    "long-expression": 'steps[0].mmap: an expression of 5999 characters (at most 102',
    "mapping-key-save": 'YAML: a key is a name or a number, not LList',
    "matcher-unknown-op": "steps[1].expect.out.out_ioas_id: a matcher takes ['aligned',",
    "matrix-huge": 'matrix: expands to 810000 variants (at most 256)',
    "matrix-not-list": 'matrix: matrix is a mapping param: [values]',
    "memfd-name-nul": 'steps[0].name: name is a string of at most 249 bytes without',
    "missing-steps": 'steps: missing (required: id, area, purpose, verified_on, st',
    "mmap-2-64": 'steps[0].mmap: 0x10000000000000000 is outside a size_t (an m',
    "mmap-negative": 'steps[0].mmap: -1 is outside a size_t (an mmap length) (0x0 ',
    "mmap-power": "steps[0].mmap: operator not allowed in '2**64'",
    "mock-domains-no": 'requires.mock_domains: true or false',
    "mod-zero": 'steps[0].mmap: % by zero',
    "mult-huge": 'steps[0].mmap: the value has 201 bits (at most 128)',
    "negative-data-u32": 'steps[1].data[0]: -1 is outside a u32 (0x0 to 0xffffffff)',
    "negative-shift": 'steps[0].mmap: negative shift count',
    "negative-unsigned-field": 'steps[1].args.flags: -1 is outside a __u32 field (0x0 to 0xf',
    "nested-parens": "steps[0].mmap: cannot parse expression '((((((((((((((((((((",
    "not-a-mapping": 'a case file is a mapping',
    "null-key": 'YAML: a key is a name or a number, not NoneType',
    "open-unbound-template": 'steps[0]: $nope is not bound by an earlier step or role',
    "pointer-bytes-1g": 'steps[1].args.allowed_iovas.bytes: 0x40000000 is outside the',
    "pointer-count-huge": 'steps[1].args.allowed_iovas.count: 0x10000000000 is outside ',
    "power-tower": "steps[0].mmap: operator not allowed in '2**2**40'",
    "read-mem-1g": "steps[1].read_mem.length: 0x40000000 is outside the harness'",
    "requires-kernel-bad": 'requires.kernel: not a version range: \'seven\' (e.g. "6.12", ',
    "requires-list": 'requires: requires is a mapping',
    "s32-field-too-small": 'steps[1].args.fd: -0x80000001 is outside a __s32 field (-0x8',
    "save-list": 'steps[1].save: save is a mapping name: output field',
    "shift-huge": 'steps[0].mmap: shift by 1099511627776 (values are at most 12',
    "sizeof-unknown": 'steps[0].mmap: no struct or ioctl named no_such_struct',
    "step-scalar": 'steps[0]: a step is a mapping',
    "steps-empty": 'steps: a non-empty list of steps',
    "steps-mapping": 'steps: a non-empty list of steps',
    "string-arith": 'steps[0].mmap: + takes numbers, got str and int',
    "string-repeat": 'steps[0].mmap: * takes numbers, got str and int',
    "tab-indent": "YAML: found character '\\t' that cannot start any token",
    "topology-bad-role": "requires.topology.dev: unknown role 'wizard' (roles: ['isola",
    "two-step-kinds": 'steps[1]: a step has exactly one of open, close, ioctl, raw_',
    "unary-chain": "steps[0].mmap: expression nested too deep: '~~~~~~~~~~~~~~~~",
    "unknown-op": "steps[1].ioctl: unknown ioctl 'IOMMU_FROBNICATE'",
    "unknown-step-kind": 'steps[1]: a step has exactly one of open, close, ioctl, raw_',
    "unknown-top-key": "frobnicate: unknown key (allowed: ['area', 'cleanup', 'fixtu",
    "utf16": 'not UTF-8 text (byte 0: 0xff)',
    "variant-bad-name": 'variants.Bad Name: a variant is name: {param: value, ...}',
    "variants-and-matrix": 'matrix: use variants or matrix, not both',
    "variants-huge": 'variants: 300 variants (at most 256)',
    "verified-on-mapping": 'verified_on: a list of kernel versions ([] = model only)',
    "yaml-syntax": "YAML: expected the node content, but found '-'",
    "macro-unknown-param": "steps[2]: macro 'map_one' has no parameter 'frob' (params: buf, ioas)",
    "macro-missing-param": "steps[1]: macro 'map_one' needs buf",
    "macro-recursion": "steps[0]: macro 'loop_a' calls itself (loop_a -> loop_b -> loop_a)",
    "macro-bad-step": "steps[1]: in bad_field (",
    "macro-undeclared-param": "steps[1]: macro 'undeclared': ",
    "macro-args-scalar": "steps[1]: macro 'map_one' takes a mapping of its parameters",
    "macro-expect-twice": "steps[2]: expect: is given twice",
    "extends-cycle": "extends: fixture 'cycle-a' extends itself (cycle-a -> cycle-b -> cycle-a)",
    "fixture-variant-partial": "variants: the fixture's variants are one, two: name every one",
    "fixture-variant-requires-bad": "variant-requires-bad.yaml:2: requires.container: legacy or iommufd",
    "dev-zero": "not a regular file",
    "fifo": "not a regular file",
    "directory": "not a regular file",
    "huge": "larger than 1048576 bytes",
}
# Files that load (their values exist only at run time) and fail when run, with the step named.
RUN_ERRORS = {
    "runtime-shift-huge": "step 3 (mmap, line 11): $ioas << 200: shift by 200 (values are at most 128 bits)",
    "runtime-negative-field": "step 3 (IOMMU_IOAS_ALLOC, line 11): flags = -0x63 does not fit in a __u32 field",
    "runtime-buffer-huge": "step 3 (IOMMU_IOAS_ALLOC, line 11): buffer length 0x40000000 is outside 0 to 0x1000000",
    "runtime-div-zero": "step 3 (mmap, line 11): 4096 // ($ioas - $ioas): // by zero",
    "runtime-mmap-past-size-t": "step 3 (mmap, line 11): mmap length 0x10000000000000000 is outside 0 to "
                                "0xffffffffffffffff",
}
GOOD = {"good-open", "good-mmap-1g", "good-mmap-u64-max", "good-memfd-1g", "good-ioas", "good-macro-pair"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hostile") / "cases"
    shutil.copytree(HOSTILE, root)
    area = root / "ioas"
    os.symlink("/dev/zero", area / "dev-zero.yaml")
    os.mkfifo(area / "fifo.yaml")
    (area / "directory.yaml").mkdir()
    (area / "huge.yaml").write_bytes(b"# " + b"x" * (2 << 20) + b"\n")
    return root


def bounded() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))


def harness(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=PROJECT, capture_output=True, text=True,
                          timeout=timeout, preexec_fn=bounded)


def test_the_folder_has_every_kind_of_hostile_file() -> None:
    committed = {p.stem for p in (HOSTILE / "ioas").glob("*.yaml")}
    assert committed == (set(LOAD_ERRORS) - {"dev-zero", "fifo", "directory", "huge"}) | set(RUN_ERRORS) | GOOD
    assert len(LOAD_ERRORS) + len(RUN_ERRORS) >= 60


def test_validate_names_every_bad_file_in_one_line(folder: Path) -> None:
    r = harness("validate", "--cases-dir", str(folder), timeout=60)
    assert r.returncode == 1
    assert "Traceback" not in r.stdout + r.stderr
    lines = r.stderr.splitlines()
    named = {}
    for line in lines:
        m = re.match(rf"{re.escape(str(folder))}/ioas/([a-z0-9-]+)\.yaml(:\d+)?: ", line)
        assert m, f"not a 'file:line: message' line: {line!r}"
        assert m[1] not in named, f"{m[1]} named twice"
        named[m[1]] = line
    assert set(named) == set(LOAD_ERRORS)
    for name, fragment in LOAD_ERRORS.items():
        assert fragment in named[name], (name, named[name])
    # A line number wherever the file has lines to point at.
    without_line = {n for n, line in named.items() if not re.match(r"\S+\.yaml:\d+: ", line)}
    assert without_line == {"dev-zero", "fifo", "directory", "huge"}
    assert r.stdout.startswith(f"{len(RUN_ERRORS) + len(GOOD)} cases (ioas {len(RUN_ERRORS) + len(GOOD)}); "
                               f"{len(LOAD_ERRORS)} malformed files")


def _token(name: str) -> str:
    """How a report names the file's case: its load error, or its case id."""
    return f"malformed:{name}.yaml" if name in LOAD_ERRORS else f"ioas-{name}"


def _mentions(text: str, token: str) -> bool:
    return re.search(rf"{re.escape(token)}(?![a-z0-9-])", text) is not None


def test_run_fails_every_bad_file_in_every_report_and_passes_the_good_ones(folder: Path, tmp_path: Path) -> None:
    report = tmp_path / "report"
    r = harness("run", "--cases-dir", str(folder), "--report", str(report), timeout=180)
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-3000:]
    assert "Traceback" not in r.stdout + r.stderr
    for name, reason in RUN_ERRORS.items():
        assert reason in r.stdout, name
    written = sorted(p for pat in ("*.xml", "*.ktap", "*.md") for p in report.glob(pat))
    assert {p.suffix for p in written} == {".xml", ".ktap", ".md"}, written
    bad = set(LOAD_ERRORS) | set(RUN_ERRORS)
    for path in written:
        text = path.read_text()
        assert "Traceback" not in text, path
        if path.suffix == ".xml":
            verdicts = {}
            for tc in ET.fromstring(text).iter("testcase"):
                for name in bad | GOOD:
                    if _mentions(tc.get("name", ""), _token(name)):
                        verdicts[name] = {child.tag for child in tc} & {"failure", "error", "skipped"}
            assert {n for n in bad if not verdicts.get(n)} == set(), path
            assert {n for n in GOOD if verdicts.get(n, {"missing"})} == set(), path
        elif path.suffix == ".ktap":
            oks = {m[2]: m[1] for m in re.finditer(r"^\s*(ok|not ok) \d+ (\S+)", text, re.M)}
            assert {n for n in bad if oks.get(_token(n)) != "not ok"} == set(), path
            assert {n for n in GOOD if oks.get(_token(n)) != "ok"} == set(), path
        else:
            rows = [line for line in text.splitlines() if line.startswith("|")]
            for name in bad:
                mine = [row for row in rows if _mentions(row, _token(name))]
                assert mine and all(re.search(r"error|fail", row, re.I) for row in mine), (path, name)
            for name in GOOD:
                mine = [row for row in rows if _mentions(row, _token(name))]
                assert mine and all(re.search(r"\| pass \|", row) for row in mine), (path, name)
