"""Dependencies point one way (docs/architecture.md): every import of ours, by every
module under harness/ (function-level imports included), follows ALLOWED."""

from __future__ import annotations

import ast
from pathlib import Path

HARNESS = Path(__file__).resolve().parent.parent / "harness"

_LOW = {"uapi", "backends", "model", "cases", "agent", "kernel", "vm", "runner"}
_ALL_PACKAGES = _LOW | {"fuzz", "coverage", "report", "mutate", "cache_root", "resources", "exitcodes",
                            "durations"}

# Each package (or top-level module) under harness/ -> what of ours it may import: a
# package or top-level module ("runner"), or one module of a package ("backends.base").
# Imports inside a package are always allowed.
ALLOWED: dict[str, set[str]] = {
    "uapi": set(),                                  # the uAPI declarations import nothing of ours
    # Where the cache lives (the kernel cache, the restore state file, the fuzz database): a leaf.
    "cache_root": set(),
    # Where the corpus and the suite are, in a checkout or an install: a leaf.
    "resources": set(),
    # The exit codes, one meaning each, of every command and of the pytest session: a leaf.
    "exitcodes": set(),
    # Durations on the command line (fuzz --duration, mutate --budget): a leaf.
    "durations": set(),
    # Cases name uAPI fields, never the Python objects of the model or a backend.  Role
    # names are part of the case language: the loader checks them against the registry
    # (backends.roles, which imports only backends.base).
    "cases": {"uapi", "backends.roles"},
    "backends": {"uapi", "cache_root"},             # never the model, never the agent
    # backends.base: the interface it implements; backends.guest_layout: the VM's PCI layout
    # (and the role registry it names), which the model's boot topology is made of.  Never
    # the kernel backend.
    "model": {"uapi", "backends.base", "backends.guest_layout"},
    # The agent serves a KernelBackend; its client implements Backend.
    "agent": {"backends"},
    # gcov.py: where the kernel backend finds the counters (GCOV_ROOT).
    "kernel": {"backends.kernel", "cache_root"},
    "vm": {"uapi", "backends", "model", "agent", "kernel", "exitcodes"},   # exitcodes: python3 -m harness.vm
    "runner": {"uapi", "backends", "model", "agent", "cases", "kernel", "vm", "exitcodes"},
    "fuzz": {"uapi", "backends", "model", "cases", "kernel", "runner", "cache_root"},
    "coverage": {"uapi", "cases", "kernel", "runner"},   # checks are read from the cases, not the model
    "report": {"uapi", "backends", "cases", "runner"},
    # Mutation testing: the handler scan (coverage), the kernel build plumbing, cases run in VMs
    # (runner), JUnit and KTAP (report).
    "mutate": {"uapi", "cases", "kernel", "vm", "runner", "coverage", "report", "cache_root"},
    "pytest_plugin": _ALL_PACKAGES,
    "cli": _ALL_PACKAGES | {"cli_compare", "cli_mutate"},
    "cli_compare": _ALL_PACKAGES,
    "cli_mutate": _ALL_PACKAGES,
    "__main__": {"cli"},
    "__init__": set(),
}


def unit_of(path: Path, root: Path) -> str:
    """The package (or top-level module) a file under ``root`` belongs to."""
    rel = path.relative_to(root)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def imports(path: Path, root: Path) -> list[tuple[int, str]]:
    """(line, absolute module or module.name) of every import in ``path``, at any depth."""
    here = [root.name, *path.relative_to(root).parent.parts]
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out += [(node.lineno, f"{mod}.{a.name}") for a in node.names]
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
    return out


def violations(root: Path, allowed: dict[str, set[str]]) -> list[str]:
    """``file:line: unit imports module`` for every import of ours ``allowed`` does not list."""
    top = root.name
    bad = []
    for path in sorted(root.rglob("*.py")):
        unit = unit_of(path, root)
        if unit not in allowed:
            bad.append(f"{path}: {unit} is not in the table")
            continue
        for line, mod in imports(path, root):
            parts = mod.split(".")
            if parts[0] != top or len(parts) < 2 or parts[1] == unit:
                continue
            target = ".".join(parts[1:])
            if not any(target == a or target.startswith(a + ".") for a in allowed[unit]):
                may = ", ".join(sorted(allowed[unit])) or "nothing"
                bad.append(f"{path}:{line}: {unit} imports {mod} (allowed: {may})")
    return bad


def test_every_import_follows_the_table() -> None:
    assert not violations(HARNESS, ALLOWED), "\n".join(violations(HARNESS, ALLOWED))


def test_the_table_names_every_package_and_only_what_exists() -> None:
    units = {unit_of(p, HARNESS) for p in HARNESS.rglob("*.py")}
    assert units == set(ALLOWED)
    for unit, targets in ALLOWED.items():
        for t in targets:
            head, _, rest = t.partition(".")
            assert head in units, (unit, t)
            assert not rest or (HARNESS / head / (rest.replace(".", "/") + ".py")).exists(), (unit, t)


def test_the_check_sees_imports_at_any_depth(tmp_path: Path) -> None:
    # Guard against a checker that silently finds nothing.
    root = tmp_path / "harness"
    (root / "model").mkdir(parents=True)
    (root / "backends").mkdir()
    (root / "model" / "ok.py").write_text("from ..backends.base import Backend\nfrom . import ok\n")
    (root / "model" / "bad.py").write_text(
        "import os\n\n\ndef f():\n    from ..backends import kernel\n    import harness.runner.x\n")
    (root / "backends" / "b.py").write_text("from harness.model.ok import x\n")
    table = {"model": {"backends.base"}, "backends": set()}
    assert violations(root, table) == [
        f"{root}/backends/b.py:1: backends imports harness.model.ok.x (allowed: nothing)",
        f"{root}/model/bad.py:5: model imports harness.backends.kernel (allowed: backends.base)",
        f"{root}/model/bad.py:6: model imports harness.runner.x (allowed: backends.base)",
    ]
    (root / "runner.py").write_text("")
    assert violations(root, table)[-1] == f"{root}/runner.py: runner is not in the table"
    assert "harness.backends.base.MEMFD_NAME" in {m for _, m in imports(HARNESS / "backends" / "ops.py", HARNESS)}
