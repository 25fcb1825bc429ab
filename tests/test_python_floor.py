"""One Python floor: the ``requires-python`` users install on is the version ruff and mypy
check the code for (a 3.11-only call would pass the linters and break an install on 3.10)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

tomllib = pytest.importorskip("tomllib")  # 3.11+: on the floor itself (3.10) this check skips

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def floors(pyproject: dict[str, Any]) -> dict[str, str]:
    """The lowest Python each setting names, as "3.N"."""
    requires = re.fullmatch(r">=\s*(3\.\d+)", pyproject["project"]["requires-python"].strip())
    target = re.fullmatch(r"py3(\d+)", pyproject["tool"]["ruff"]["target-version"])
    return {
        "requires-python": requires.group(1) if requires else "unparsed",
        "ruff target-version": f"3.{target.group(1)}" if target else "unparsed",
        "mypy python_version": str(pyproject["tool"]["mypy"]["python_version"]),
    }


def test_requires_python_ruff_and_mypy_name_one_floor() -> None:
    found = floors(tomllib.loads(PYPROJECT.read_text()))
    assert len(set(found.values())) == 1, found
    assert "unparsed" not in found.values(), found


def test_a_disagreement_is_seen() -> None:
    pyproject = {"project": {"requires-python": ">=3.10"}, "tool": {"ruff": {"target-version": "py310"},
                                                                   "mypy": {"python_version": "3.11"}}}
    assert floors(pyproject) == {"requires-python": "3.10", "ruff target-version": "3.10",
                                 "mypy python_version": "3.11"}
