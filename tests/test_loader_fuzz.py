"""Fuzzing the loader (issue 10, item 7): hostile YAML text and hostile case structures load
as cases or as one CaseError naming the file (and line), never as another exception, and in
bounded memory."""

from __future__ import annotations

import resource
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.cases.case import Case, CaseError
from harness.cases.loader import TOP_KEYS, Loader
from harness.cases.steps import STEP_KEYS, STEP_KINDS
from harness.cases.yamlsrc import MAX_DEPTH

GOOD: dict[str, Any] = {
    "id": "ioas-fuzzed",
    "area": "ioas",
    "purpose": "A good case the fuzzer spoils.",
    "verified_on": [],
    "requires": {"mock_domains": False, "kernel": ">=6.12"},
    "steps": [
        {"open": "/dev/iommu", "as": "iommufd"},
        {"ioctl": "IOMMU_IOAS_ALLOC", "fd": "iommufd", "save": {"ioas": "out_ioas_id"}},
        {"mmap": "0x4000", "as": "buf"},
        {"ioctl": "IOMMU_IOAS_MAP", "fd": "iommufd",
         "args": {"flags": ["IOMMU_IOAS_MAP_READABLE"], "ioas_id": "$ioas", "user_va": "$buf", "length": 0x4000},
         "expect": {"out": {"iova": {"aligned": "PAGE_SIZE"}}}},
        {"ioctl": "IOMMU_IOAS_ALLOC", "fd": "iommufd", "buffer": {"length": 8, "fill": 0xff}, "expect": "EINVAL"},
        {"map_fixed": {"ioas": "$ioas", "buf": "$buf", "iova": "0x100000"}, "expect": "EEXIST"},
    ],
    "cleanup": [{"close": "iommufd"}],
    "known_differences": [{"reason": "r", "kernels": ["6.12"], "field": "errno"}],
}

EXPRESSIONS = st.lists(st.sampled_from([
    "1", "0", "-1", "U64_MAX", "PAGE_SIZE", "$ioas", "$buf", "$nope", "sizeof(iommu_ioas_map)",
    "minsz(IOMMU_IOAS_MAP)", "offsetof(iommu_ioas_map, iova)", "'a'", "(", ")", "<<", ">>", "+", "-", "*",
    "//", "%", "**", "~", "|", "&", "^", "1 << 40", "1 << 200", "2**64", "9" * 50, "0x" + "f" * 40,
    "__import__('os')", "lambda: 1", "[1]", "{}", "x.y", "${nope}", "\\0", "\n",
]), max_size=12).map(" ".join)

SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-(1 << 300), max_value=1 << 300),
    st.floats(allow_nan=True), st.text(max_size=40), EXPRESSIONS,
    st.sampled_from(["ok", "any", "EINVAL", "EWHATEVER", "iommufd", "$iommufd", "../../x", "/etc/passwd",
                     "fixtures", "u32", "hex", "no", "yes", "~", "IOMMU_IOAS_MAP", "map_fixed", "both", "ctx",
                     "${node}", "${ioas}", *STEP_KINDS, *TOP_KEYS]),
)
KEYS = st.one_of(st.text(max_size=12), st.integers(), st.sampled_from(sorted(
    TOP_KEYS | set(STEP_KINDS) | set().union(*STEP_KEYS.values()) | {"as", "expect", "save", "note", "errno",
                                                                     "out", "ret", "by_kernel", "length", "extends",
                                                                     "params", "optional", "map_fixed", "ioas", "buf",
                                                                     "iova", "one", "two"})))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.dictionaries(KEYS, inner, max_size=5)), max_leaves=30)


@contextmanager
def bounded_memory() -> Iterator[None]:
    limit = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, limit[1]))  # a bomb fails here, it does not swap
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, limit)


def load(text: str | bytes) -> list[Case] | CaseError:
    """The file's cases, or its one CaseError; any other exception fails the test."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "cases"
        (root / "ioas").mkdir(parents=True)
        (root / "fixtures").mkdir()
        (root / "fixtures" / "iommufd.yaml").write_text(
            "requires: {}\nsteps:\n  - open: /dev/iommu\n    as: iommufd\n")
        # The new keys: a fixture with variants, one extending it, and a macro the cases may call.
        (root / "fixtures" / "both.yaml").write_text(
            "variants:\n  one: {node: /dev/iommu, requires: {nodes: [/dev/iommu]}}\n  two: {node: /dev/iommu}\n")
        (root / "fixtures" / "ctx.yaml").write_text("extends: both\nsteps:\n  - open: ${node}\n    as: iommufd\n")
        (root / "macros").mkdir()
        (root / "macros" / "map_fixed.yaml").write_text(
            "params: [ioas, buf, iova]\noptional: {length: 0x1000}\nsteps:\n  - ioctl: IOMMU_IOAS_MAP\n"
            "    fd: iommufd\n    args: {flags: [IOMMU_IOAS_MAP_FIXED_IOVA, IOMMU_IOAS_MAP_READABLE],"
            " ioas_id: '${ioas}', user_va: '${buf}', length: '${length}', iova: '${iova}'}\n")
        path = root / "ioas" / "fuzzed.yaml"
        path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
        with bounded_memory():
            try:
                return Loader(root).load_file(path)
            except CaseError as e:
                assert e.path == str(path), e   # a fixture's error is named from the case too
                assert one_line(e) and str(e).startswith(f"{path}:"), str(e)
                return e


def one_line(e: CaseError) -> bool:
    return len(str(e).splitlines()) == 1


def assign(doc: Any, path: list[int], value: Any) -> Any:
    """``doc`` with the node ``path`` picks (by index among a mapping's keys or a list's items) set to ``value``."""
    if not path or not isinstance(doc, (dict, list)) or not doc:
        return value
    if isinstance(doc, dict):
        key = list(doc)[path[0] % len(doc)]
        return {**doc, key: assign(doc[key], path[1:], value)}
    i = path[0] % len(doc)
    return [*doc[:i], assign(doc[i], path[1:], value), *doc[i + 1:]]


# Enough to find what the loader missed when this was written (six bugs); each example writes a file.
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_the_good_case_loads() -> None:
    got = load(yaml.safe_dump(GOOD))
    assert isinstance(got, list) and [c.id for c in got] == ["ioas-fuzzed"]


@SETTINGS
@given(st.text(max_size=400))
def test_any_text(text: str) -> None:
    load(text)


@SETTINGS
@given(st.binary(max_size=400))
def test_any_bytes(data: bytes) -> None:
    load(data)


@SETTINGS
@given(st.data())
def test_the_good_case_with_text_spliced_in(data: st.DataObject) -> None:
    good = yaml.safe_dump(GOOD, sort_keys=False)
    at = data.draw(st.integers(0, len(good)))
    cut = data.draw(st.integers(0, 20))
    piece = data.draw(st.one_of(st.text(max_size=30), st.sampled_from([
        "&a", "*a", "!!python/object:os.system", "!!binary AAAA", "{", "[", "]", "}", ": ", "- ", "\t", "---\n",
        "? [a]\n: b\n", "<<: *a", "\x00", "\ufeff", "[" * 100, "%YAML 1.1\n", "!!set {a}", "!!timestamp 2001-01-01",
    ])))
    load(good[:at] + piece + good[at + cut:])


@SETTINGS
@given(st.lists(st.integers(0, 50), max_size=6), VALUES)
def test_the_good_case_with_one_node_replaced(path: list[int], value: Any) -> None:
    got = load(yaml.safe_dump(assign(GOOD, path, value)))
    assert isinstance(got, list) or one_line(got)


@SETTINGS
@given(st.dictionaries(KEYS, VALUES, max_size=8))
def test_random_documents(doc: dict[Any, Any]) -> None:
    load(yaml.safe_dump({**{k: GOOD[k] for k in ("id", "area", "purpose", "verified_on")}, **doc}))


@SETTINGS
@given(st.lists(st.dictionaries(KEYS, VALUES, min_size=1, max_size=4), min_size=1, max_size=4))
def test_random_steps(steps: list[dict[Any, Any]]) -> None:
    load(yaml.safe_dump({**GOOD, "steps": GOOD["steps"][:2] + steps}))


@settings(SETTINGS, max_examples=20)
@given(st.integers(1, 3000), st.sampled_from(["flow-list", "flow-map", "block-map", "block-list"]))
def test_deep_nesting(depth: int, form: str) -> None:
    nested = {
        "flow-list": lambda: "[" * depth + "1" + "]" * depth,
        "flow-map": lambda: "{a: " * depth + "1" + "}" * depth,
        "block-map": lambda: "\n" + "".join(" " * (i + 1) + "a:\n" for i in range(depth)) + " " * (depth + 1) + "1",
        "block-list": lambda: "\n" + "".join(" " * (i + 1) + "-\n" for i in range(depth)) + " " * (depth + 1) + "1",
    }[form]()
    got = load(yaml.safe_dump(GOOD) + "notes: " + nested + "\n")
    if depth > MAX_DEPTH:
        assert isinstance(got, CaseError) and ("nested deeper than" in str(got) or "larger than" in str(got)), got
