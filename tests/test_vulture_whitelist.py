"""tests/vulture_whitelist.py lists only names the code still defines: an entry outliving its
definition would keep the dead-code check quiet about whatever takes the name next."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WHITELIST = ROOT / "tests" / "vulture_whitelist.py"


def listed(path: Path) -> list[str]:
    """The ``_.name`` entries of a whitelist module."""
    return [node.attr for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "_"]


def defined(name: str, sources: list[str]) -> bool:
    """A def, class, assignment, annotated field, parameter or attribute assignment of ``name``."""
    n = re.escape(name)
    pattern = re.compile(rf"^\s*(?:def|class)\s+{n}\b|^\s*{n}\s*(?::|=(?!=))|\.{n}\s*=(?!=)"
                         rf"|\bdef \w+\([^)]*\b{n}\s*[:,)=]", re.M)
    return any(pattern.search(text) for text in sources)


def test_every_whitelisted_name_is_still_defined() -> None:
    sources = [p.read_text() for p in sorted((ROOT / "harness").rglob("*.py"))]
    names = listed(WHITELIST)
    assert names, "no entries read: the parser is wrong"
    stale = [n for n in names if not defined(n, sources)]
    assert not stale, f"drop these from {WHITELIST.name}: {stale}"


def test_the_check_tells_a_stale_entry() -> None:
    sources = ["class A:\n    def close_all(self, nvec: int):\n        self.masked = False\n        local = 2\n",
               "@dataclass\nclass G:\n    commit: str = ''\n", "X = 1\nif y == 2: pass\n"]
    assert all(defined(n, sources) for n in ("close_all", "masked", "nvec", "local", "commit", "X", "A"))
    assert not any(defined(n, sources) for n in ("close", "y", "G2", "dataclass", "pass"))
