"""Every project file a doc, a comment or a docstring names exists (a renamed module or a doc
that was never written is caught here, not by a reader)."""

from __future__ import annotations

import ast
import glob
import io
import re
import tokenize
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOP = ("harness", "cases", "tests", "docs", "conformance", "benchmarks", ".ci")
# A path under one of the project's top folders; not part of a longer path or word.
PATH = re.compile(r"(?<![\w./-])((?:" + "|".join(re.escape(t) for t in TOP) + r")/[\w./*-]*[\w*])")
# Folders a run or a build writes (fuzz regressions in a checkout, reports, the wheel's copy of the
# corpus): named before they exist.
OUTPUTS = ("cases/regressions", "reports", "harness/_data")
# A relative Markdown link: [text](target) or [text](target#anchor).
LINK = re.compile(r"\]\(([^)#\s:]+)(?:#[^)]*)?\)")
# Placeholders, not paths: cases/<area>/, cases/fixtures/NAME.yaml.
PLACEHOLDER = re.compile(r"[<>{}]|\bNAME\b")


def _docs() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "benchmarks").glob("*.md"))]


def _python() -> list[Path]:
    return sorted(p for d in ("harness", "tests", "conformance", "benchmarks") for p in (ROOT / d).rglob("*.py"))


def prose_of(source: str) -> Iterator[tuple[int, str]]:
    """The comments and docstrings of a module, with their line numbers."""
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            yield tok.start[0], tok.string
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            doc = node.body[0] if node.body else None
            if isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant) and isinstance(doc.value.value, str):
                for i, line in enumerate(doc.value.value.splitlines()):
                    yield doc.lineno + i, line


def named_paths(text: str) -> Iterator[str]:
    for m in PATH.finditer(text):
        path = m.group(1).rstrip(".")
        if not PLACEHOLDER.search(path):
            yield path


def exists(path: str) -> bool:
    """A file or folder; a glob (``cases/mock/viommu-*``) must match one."""
    if path.startswith(OUTPUTS):
        return True
    return bool(glob.glob(str(ROOT / path), recursive=True)) if "*" in path else (ROOT / path).exists()


def missing_in(lines: Iterator[tuple[int, str]], where: Path, links: bool) -> list[str]:
    out = []
    for n, line in lines:
        for path in named_paths(line):
            if not exists(path):
                out.append(f"{where.relative_to(ROOT)}:{n}: {path}")
        if links:
            for target in LINK.findall(line):
                if not PLACEHOLDER.search(target) and not (where.parent / target).exists():
                    out.append(f"{where.relative_to(ROOT)}:{n}: link {target}")
    return out


def test_docs_name_only_existing_files() -> None:
    missing = [m for d in _docs() for m in missing_in(enumerate(d.read_text().splitlines(), 1), d, links=True)]
    assert not missing, "docs name files that do not exist:\n" + "\n".join(missing)


def test_comments_name_only_existing_files() -> None:
    missing = [m for p in _python() for m in missing_in(prose_of(p.read_text()), p, links=False)]
    assert not missing, "comments and docstrings name files that do not exist:\n" + "\n".join(missing)


@pytest.mark.parametrize("text,found", [
    ("see docs/nothing-here.md", ["docs/nothing-here.md"]),
    ("harness/model/pci.py:12", ["harness/model/pci.py"]),
    ("cases/fixtures/NAME.yaml and cases/<area>/", []),
    ("xharness/a.py", []),
    ("`cases/mock/viommu-*`", ["cases/mock/viommu-*"]),
])
def test_the_path_scanner(text: str, found: list[str]) -> None:
    assert list(named_paths(text)) == found
