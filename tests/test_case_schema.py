"""The published JSON Schemas (docs/*.schema.json, issue 11 item 3) are the loader's tables
rendered, and every file of the corpus validates against its schema."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harness.cases import case_schema, loader, macros, steps

jsonschema = pytest.importorskip("jsonschema")
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", sorted(case_schema.SCHEMAS))
def test_the_committed_schema_is_the_generated_one(name: str) -> None:
    assert (ROOT / "docs" / name).read_text() == case_schema.render(name), \
        "regenerate: python3 -m harness.cases.case_schema docs"


def test_every_key_the_loader_accepts_is_in_the_schemas() -> None:
    case, fixture, macro = (case_schema.SCHEMAS[n]() for n in ("case.schema.json", "fixture.schema.json",
                                                              "macro.schema.json"))
    assert set(case["properties"]) == loader.TOP_KEYS
    assert set(fixture["properties"]) == loader._FIXTURE_KEYS
    assert set(macro["properties"]) == macros.MACRO_KEYS
    kinds = {next(iter(s["required"])): set(s["properties"]) for s in case["$defs"]["step"]["oneOf"] if "required" in s}
    assert kinds == {k: steps.STEP_KEYS[k] | steps.COMMON_STEP_KEYS | {k} for k in steps.STEP_KINDS}


def _validator(name: str) -> object:
    return jsonschema.Draft202012Validator(case_schema.SCHEMAS[name]())


def test_every_corpus_file_validates() -> None:
    checks = {"fixtures": "fixture.schema.json", "macros": "macro.schema.json"}
    bad = []
    for path in sorted((ROOT / "cases").glob("*/*.yaml")):
        v = _validator(checks.get(path.parent.name, "case.schema.json"))
        errors = [e.message for e in v.iter_errors(yaml.safe_load(path.read_text()))]  # type: ignore[attr-defined]
        if errors:
            bad.append(f"{path}: {errors[0]}")
    assert not bad, "\n".join(bad[:10])


def test_the_schema_refuses_what_the_loader_refuses() -> None:
    v = _validator("case.schema.json")
    good = {"id": "ioas-x", "area": "ioas", "purpose": "p", "verified_on": [],
            "steps": [{"open": "/dev/iommu", "as": "iommufd"}, {"ioas_map": {"ioas": 1}, "expect": "EINVAL"}]}
    assert not list(v.iter_errors(good))  # type: ignore[attr-defined]
    for spoil in ({"frobnicate": 1}, {"steps": [{"open": "/dev/iommu", "fd": "x"}]},
                  {"steps": [{"open": "/dev/iommu", "mmap": 1}]}, {"variants": {"A B": {}}}):
        assert list(v.iter_errors({**good, **spoil})), spoil  # type: ignore[attr-defined]
