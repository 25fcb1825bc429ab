"""Dependencies point one way (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

HARNESS = Path(__file__).resolve().parent.parent / "harness"


def imports_of(package: str) -> dict[str, set[str]]:
    """module path -> absolute harness modules it imports."""
    out: dict[str, set[str]] = {}
    for path in (HARNESS / package).rglob("*.py"):
        rel = path.relative_to(HARNESS.parent).with_suffix("")
        parts = list(rel.parts)
        here = parts[:-1]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here[: len(here) - (node.level - 1)]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                found.add(mod)
                found.update(f"{mod}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
        out["/".join(parts)] = {m for m in found if m.startswith("harness")}
    return out


def offenders(package: str, forbidden: tuple[str, ...]) -> list[str]:
    return [f"{mod} imports {m}" for mod, ms in imports_of(package).items() for m in ms
            if any(m == f or m.startswith(f + ".") for f in forbidden)]


def test_uapi_imports_nothing_of_ours() -> None:
    bad = [f"{mod} imports {m}" for mod, ms in imports_of("uapi").items() for m in ms
           if not m.startswith("harness.uapi")]
    assert not bad


def test_model_never_imports_a_kernel_backend_or_the_runner() -> None:
    assert not offenders("model", ("harness.backends.kernel", "harness.runner", "harness.report", "harness.cases"))


def test_backends_never_import_the_model() -> None:
    assert not offenders("backends", ("harness.model", "harness.runner", "harness.report", "harness.cases"))


def test_backends_never_reach_up_into_the_kernel_builder_or_the_vm() -> None:
    # harness.kernel sits above the backends (its gcov reader imports the kernel backend); what a
    # backend needs of the cache is the root rule, harness/cache_root.py.
    assert not offenders("backends", ("harness.kernel", "harness.vm", "harness.fuzz", "harness.cli"))


def test_the_cache_root_rule_imports_nothing_of_ours() -> None:
    tree = ast.parse((HARNESS / "cache_root.py").read_text())
    mods = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    mods |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not [m for m in mods if m.startswith("harness")]
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level]


def test_runner_and_cases_do_not_reach_up() -> None:
    assert not offenders("runner", ("harness.report", "harness.cli"))
    assert not offenders("cases", ("harness.runner", "harness.model", "harness.backends", "harness.report"))


def test_fuzz_and_coverage_sit_above_the_runner() -> None:
    for low in ("uapi", "model", "backends", "cases", "runner"):
        assert not offenders(low, ("harness.fuzz", "harness.coverage")), low
    assert not offenders("fuzz", ("harness.report", "harness.cli", "harness.coverage"))
    assert not offenders("coverage", ("harness.report", "harness.cli", "harness.fuzz", "harness.model"))


def test_the_check_sees_imports() -> None:
    # Guard against a checker that silently finds nothing.
    assert "harness.backends.base" in imports_of("model")["harness/model/backend"]
    assert "harness.model.errors" in imports_of("model")["harness/model/backend"]
