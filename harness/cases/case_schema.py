"""JSON Schema (draft 2020-12) of case, fixture and macro files, built from the loader's own
key tables so it cannot drift from them; ``python3 -m harness.cases.case_schema DIR`` writes
docs/case.schema.json, docs/fixture.schema.json and docs/macro.schema.json.  The schema checks
the shape (keys, nesting); values, names and bounds are the loader's (`vfio-conformance validate`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from . import loader, steps
from .macros import CALL_KEYS, MACRO_KEYS
from .macros import NAME as MACRO_NAME

DRAFT = "https://json-schema.org/draft/2020-12/schema"
BASE = "https://vfio-conformance.invalid/schema/"
_VALUE: dict[str, Any] = {"description": "a number, an expression, or a list of them (OR-ed)",
                          "type": ["integer", "string", "array"]}
_ANY: dict[str, Any] = {}
# A value a variant's parameter fills in (`requires: ${requires}`).
_PARAM: dict[str, Any] = {"type": "string", "pattern": r"^\$\{.*\}$"}


def _step_kind(kind: str) -> dict[str, Any]:
    keys = sorted(steps.STEP_KEYS[kind] | steps.COMMON_STEP_KEYS | {kind})
    return {"type": "object", "required": [kind], "properties": {k: _ANY for k in keys},
            "additionalProperties": False}


def _defs() -> dict[str, Any]:
    call = {
        "description": "a macro of cases/macros/: NAME: {param: value, ...}; expect:, save:, as:, note: "
                       "(beside it or among the parameters) go to its last step",
        "type": "object", "minProperties": 1,
        "propertyNames": {"anyOf": [{"enum": list(CALL_KEYS)}, {"pattern": MACRO_NAME.pattern}]},
        "not": {"anyOf": [{"required": [k]} for k in steps.STEP_KINDS]},
    }
    return {
        "value": _VALUE,
        "step": {"oneOf": [_step_kind(k) for k in steps.STEP_KINDS] + [{"$ref": "#/$defs/call"}]},
        "call": call,
        "steps": {"type": "array", "items": {"$ref": "#/$defs/step"}},
        "param": _PARAM,
        "requires": {"type": "object", "additionalProperties": False, "properties": {
            k: {"anyOf": [v, _PARAM]} for k, v in {
            "config": {"type": "array", "items": {"type": "string"}},
            "nodes": {"type": "array", "items": {"type": "string"}},
            "container": {"enum": ["legacy", "iommufd"]},
            "mock_domains": {"type": "boolean"},
            "kernel": {"type": "string"},
            "topology": {"type": "object", "additionalProperties": {"type": "string"}}}.items()}},
        "variants": {"type": "object", "maxProperties": loader.MAX_VARIANTS,
                     "propertyNames": {"pattern": steps.NAME.pattern},
                     "additionalProperties": {"type": "object"}},
        "name": {"type": "string", "pattern": steps.NAME.pattern},
    }


def _requires_or_param() -> dict[str, Any]:
    return {"anyOf": [{"$ref": "#/$defs/requires"}, {"$ref": "#/$defs/param"}]}


def case_schema() -> dict[str, Any]:
    props: dict[str, Any] = {k: _ANY for k in sorted(loader.TOP_KEYS)}
    props.update({
        "id": {"$ref": "#/$defs/name"}, "area": {"type": "string"}, "purpose": {"type": "string"},
        "source": {"type": "string"}, "verified_on": {"type": "array", "items": {"type": "string"}},
        "requires": _requires_or_param(), "fixture": {"type": "string"},
        "steps": {"$ref": "#/$defs/steps", "minItems": 1}, "cleanup": {"$ref": "#/$defs/steps"},
        "variants": {"$ref": "#/$defs/variants"},
        "matrix": {"type": "object", "additionalProperties": {"type": "array", "minItems": 1}},
        "known_differences": {"type": "array", "items": {
            "type": "object", "required": ["reason", "kernels"], "additionalProperties": False,
            "properties": {"reason": {"type": "string"}, "kernels": {"type": "array", "minItems": 1},
                           "step": {"type": "integer"}, "field": {"type": "string"}}}},
        "notes": {"type": "string"},
    })
    return {"$schema": DRAFT, "$id": BASE + "case.schema.json", "title": "vfio-conformance case",
            "description": "one case file under cases/<area>/ (docs/case-format.md)", "type": "object",
            "required": list(loader.REQUIRED_TOP), "properties": props, "additionalProperties": False,
            "not": {"required": ["variants", "matrix"]}, "$defs": _defs()}


def fixture_schema() -> dict[str, Any]:
    props: dict[str, Any] = {k: _ANY for k in sorted(loader._FIXTURE_KEYS)}
    props.update({"requires": _requires_or_param(), "steps": {"$ref": "#/$defs/steps"},
                  "variants": {"$ref": "#/$defs/variants"}, "extends": {"$ref": "#/$defs/name"},
                  "notes": {"type": "string"}})
    return {"$schema": DRAFT, "$id": BASE + "fixture.schema.json", "title": "vfio-conformance fixture",
            "description": "cases/fixtures/NAME.yaml (docs/case-format.md, Fixtures)", "type": "object",
            "properties": props, "additionalProperties": False,
            "anyOf": [{"required": [k]} for k in ("steps", "extends", "variants")], "$defs": _defs()}


def macro_schema() -> dict[str, Any]:
    props: dict[str, Any] = {k: _ANY for k in sorted(MACRO_KEYS)}
    props.update({"params": {"type": "array", "items": {"type": "string", "pattern": MACRO_NAME.pattern}},
                  "optional": {"type": "object", "propertyNames": {"pattern": MACRO_NAME.pattern}},
                  "steps": {"$ref": "#/$defs/steps", "minItems": 1}, "notes": {"type": "string"}})
    return {"$schema": DRAFT, "$id": BASE + "macro.schema.json", "title": "vfio-conformance step macro",
            "description": "cases/macros/NAME.yaml (docs/case-format.md, Macros)", "type": "object",
            "required": ["steps"], "properties": props, "additionalProperties": False, "$defs": _defs()}


SCHEMAS = {"case.schema.json": case_schema, "fixture.schema.json": fixture_schema, "macro.schema.json": macro_schema}


def render(name: str) -> str:
    return json.dumps(SCHEMAS[name](), indent=1) + "\n"


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs")
    for name in SCHEMAS:
        (out / name).write_text(render(name))
