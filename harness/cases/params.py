"""``${param}`` substitution: a variant's or a macro's parameters put into a case's nodes."""

from __future__ import annotations

import re
from typing import Any

from .yamlsrc import LList, LMap

_WHOLE = re.compile(r"\$\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}")
_PART = re.compile(r"\$\{\s*([^}.\s]+)\s*\}")


def substitute(node: Any, params: dict[str, Any]) -> Any:
    """Replace ``${param}`` in every string; keep line info.  A string that is one whole
    ``${param}`` becomes the parameter's value (a list, a mapping, a number)."""
    if isinstance(node, LMap):
        out = LMap({k: substitute(v, params) for k, v in node.items()})
        out.line, out.lines = node.line, node.lines
        return out
    if isinstance(node, LList):
        lst = LList([substitute(v, params) for v in node])
        lst.line, lst.lines = node.line, node.lines
        return lst
    if isinstance(node, str):
        whole = _WHOLE.fullmatch(node)
        if whole and whole.group(1) in params:
            return params[whole.group(1)]

        def sub(m: re.Match[str]) -> str:
            name = m.group(1).strip()
            return str(params[name]) if name in params else m.group(0)

        return _PART.sub(sub, node)
    return node


def placeholders(node: Any) -> dict[str, Any]:
    """Every ``${name}`` (no dotted role attribute) in ``node``'s strings -> the node holding it."""
    found: dict[str, Any] = {}

    def walk(n: Any, holder: Any) -> None:
        if isinstance(n, dict):
            for _k, v in n.items():
                walk(v, n)
        elif isinstance(n, list):
            for v in n:
                walk(v, n)
        elif isinstance(n, str):
            for m in _PART.finditer(n):
                found.setdefault(m.group(1).strip(), holder)
    walk(node, node)
    return found
