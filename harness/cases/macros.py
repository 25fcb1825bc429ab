"""Named step macros (cases/macros/NAME.yaml): the iommufd_utils.h idiom of one helper per call,
used as ``- NAME: {param: value, ...}`` for the call that succeeds and with ``expect: ERRNO`` for
the one that fails (docs/case-format.md, "Macros")."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .case import CaseError
from .params import placeholders, substitute
from .yamlsrc import LList, LMap, line_of

MACROS_DIR = "macros"
MACRO_KEYS = {"params", "optional", "steps", "notes"}
# Keys of a call that go to the macro's last step (its call), not to its parameters.
CALL_KEYS = ("as", "expect", "save", "note")
MAX_DEPTH = 8
MAX_STEPS = 1024        # steps one call may expand to
NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass
class Macro:
    name: str
    path: Path
    required: tuple[str, ...]
    optional: dict[str, Any]
    steps: LList
    line: int = 1


@dataclass
class Expanded:
    """A step to check: its mapping, the file it is written in, and, for a macro's step, the
    call it came from (file, line, "steps[2] -> ioas_map") so an error names the call too."""

    raw: Any
    path: Path
    line: int
    where: str
    call: tuple[Path, int, str] | None = None
    chain: tuple[str, ...] = field(default_factory=tuple)


class Macros:
    """The macros of one cases folder, read when first called."""

    def __init__(self, root: Path, read: Callable[[Path], Any], step_kinds: Collection[str]):
        self.dir = root / MACROS_DIR
        self._read = read
        self.step_kinds = tuple(step_kinds)
        self._macros: dict[str, Macro] = {}

    def known(self) -> list[str]:
        if not self.dir.is_dir():
            return []
        return sorted(p.stem for p in self.dir.glob("*.yaml") if NAME.match(p.stem))

    def call_name(self, raw: Any) -> str | None:
        """The macro a step calls, or None (a step of a kind, or no mapping: the loader checks it)."""
        if not isinstance(raw, LMap) or any(k in self.step_kinds for k in raw):
            return None
        names = [k for k in raw if k not in CALL_KEYS]
        return names[0] if len(names) == 1 and isinstance(names[0], str) else None

    def get(self, name: str) -> Macro | str:
        """The macro, or why there is none; a malformed macro file raises its own CaseError."""
        if name not in self._macros:
            mpath = self.dir / f"{name}.yaml"
            if not NAME.match(name) or not mpath.is_file():
                return (f"a step has exactly one of {', '.join(self.step_kinds)}, or calls a macro; {name!r} is "
                        f"neither (macros in cases/{MACROS_DIR}/: {', '.join(self.known()) or 'none'})")
            self._macros[name] = self._load(name, mpath)
        return self._macros[name]

    def _load(self, name: str, path: Path) -> Macro:
        doc = self._read(path)
        if not isinstance(doc, LMap) or "steps" not in doc:
            raise CaseError(path, 1, "", "a macro has steps: (and params:, optional:)")
        for k in doc:
            if k not in MACRO_KEYS:
                raise CaseError(path, line_of(doc, k), str(k),
                                f"unknown key in a macro (allowed: {sorted(MACRO_KEYS)})")
        required = doc.get("params", LList())
        if not isinstance(required, list) or not all(isinstance(p, str) and NAME.match(p) for p in required):
            raise CaseError(path, line_of(doc, "params"), "params", "a list of parameter names ([a-z0-9_]+)")
        optional = doc.get("optional", LMap())
        if not isinstance(optional, LMap) or not all(isinstance(p, str) and NAME.match(p) for p in optional):
            raise CaseError(path, line_of(doc, "optional"), "optional", "a mapping name: default value")
        both = set(required) & set(optional)
        if both:
            raise CaseError(path, line_of(doc, "optional"), "optional", f"{sorted(both)[0]!r} is also in params:")
        steps = doc["steps"]
        if not isinstance(steps, LList) or not steps:
            raise CaseError(path, line_of(doc, "steps"), "steps", "a non-empty list of steps")
        declared = set(required) | set(optional)
        for pname, holder in placeholders(steps).items():
            if pname not in declared:
                raise CaseError(path, line_of(holder), "steps", f"${{{pname}}} is no parameter of macro {name!r} "
                                f"(params: {', '.join(sorted(declared)) or 'none'})")
        for pname in declared:
            if pname not in placeholders(steps):
                raise CaseError(path, line_of(doc, "params" if pname in required else "optional"),
                                "params", f"parameter {pname!r} is never used in steps:")
        return Macro(name, path, tuple(required), dict(optional), steps, doc.line)

    def expand(self, steps: LList, path: Path, where: str) -> list[Expanded]:
        """``steps`` with every macro call replaced by the macro's steps."""
        out: list[Expanded] = []
        for i, raw in enumerate(steps):
            self._expand_one(raw, path, line_of(steps, i), f"{where}[{i}]", None, (), out)
        return out

    def _expand_one(self, raw: Any, path: Path, line: int, where: str,
                    call: tuple[Path, int, str] | None, chain: tuple[str, ...], out: list[Expanded]) -> None:
        name = self.call_name(raw)
        if name is None:
            if len(out) >= MAX_STEPS:
                raise CaseError(*(call or (path, line, where)), f"the macros expand to more than {MAX_STEPS} steps")
            out.append(Expanded(raw, path, line, where, call, chain))
            return
        site = call or (path, line_of(raw, name), where)

        def err(node: Any, key: Any, msg: str) -> CaseError:
            # Named at the outermost call (the case's line), with where the macro stands.
            inner = f" (in {' -> '.join(chain)}, {path}:{line_of(node, key)})" if call else ""
            return CaseError(site[0], site[1], site[2], msg + inner)

        if name in chain:
            raise err(raw, name, f"macro {name!r} calls itself ({' -> '.join((*chain, name))})")
        if len(chain) >= MAX_DEPTH:
            raise err(raw, name, f"macros nest deeper than {MAX_DEPTH} ({' -> '.join((*chain, name))})")
        try:
            macro = self.get(name)
        except CaseError as e:
            raise err(raw, name, f"macro {name!r}: {e}") from None
        if isinstance(macro, str):
            raise err(raw, name, macro)
        args = raw[name]
        if args is None:
            args = LMap()
        if not isinstance(args, LMap):
            raise err(raw, name, f"macro {name!r} takes a mapping of its parameters (params: "
                                 f"{', '.join(macro.required + tuple(macro.optional)) or 'none'})")
        passed = {k: v for k, v in args.items() if k not in CALL_KEYS}
        forwarded = {k: v for k, v in args.items() if k in CALL_KEYS}
        for k in CALL_KEYS:
            if k in raw and k in args:
                raise err(args, k, f"{k}: is given twice (beside the call and among its parameters)")
            if k in raw:
                forwarded[k] = raw[k]
        declared = set(macro.required) | set(macro.optional)
        for k in passed:
            if k not in declared:
                raise err(args, k, f"macro {name!r} has no parameter {k!r} (params: {', '.join(sorted(declared))})")
        missing = [p for p in macro.required if p not in passed]
        if missing:
            raise err(raw, name, f"macro {name!r} needs {', '.join(missing)}")
        body = substitute(macro.steps, {**macro.optional, **passed})
        if forwarded:
            last = body[-1]
            if not isinstance(last, LMap):
                raise err(raw, name, f"macro {name!r}'s last step is no mapping")
            merged = LMap({**last, **forwarded})
            merged.line, merged.lines = last.line, {**last.lines, **{k: last.line for k in forwarded}}
            body[-1] = merged
        inner_call = site
        inner_chain = (*chain, name)
        for j, step in enumerate(body):
            self._expand_one(step, macro.path, line_of(body, j), f"{name}.steps[{j}]", inner_call, inner_chain, out)
