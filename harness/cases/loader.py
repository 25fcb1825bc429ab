"""Load and validate case files (docs/case-format.md): the file, its keys, requirements, variants,
fixtures and macros; each step is parsed by steps.py.

Everything that can be checked without a target is checked here, so a
malformed case fails at load time with file, line and field, and never
half-way through a run.
"""

from __future__ import annotations

import itertools
import re
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from ..backends.roles import ROLES
from ..uapi.kernel_version import VersionError, check_range
from .case import (
    Case,
    CaseError,
    KnownDifference,
    Requirements,
    Step,
)
from .expr import using_abi
from .macros import MACROS_DIR, Expanded, Macros
from .params import substitute as _substitute
from .steps import EVERY_SERIES, NAME, STEP_KINDS, FileContext, parse_step
from .yamlsrc import LList, LMap, line_of
from .yamlsrc import load as load_yaml

TOP_KEYS = {
    "id", "area", "purpose", "source", "verified_on", "requires", "fixture", "steps",
    "cleanup", "variants", "matrix", "known_differences", "notes",
}
REQUIRED_TOP = ("id", "area", "purpose", "verified_on", "steps")
_FIXTURES_DIR = "fixtures"
_FIXTURE_KEYS = {"requires", "steps", "notes", "variants", "extends"}
# How many fixtures one `extends` chain may hold.
MAX_EXTENDS = 8
# Bounds on one case file: its size, and how many cases its variants or matrix may make.
MAX_FILE_BYTES = 1 << 20
MAX_VARIANTS = 256


def _requires(ctx: FileContext, doc: LMap) -> Requirements:
    r = Requirements()
    raw = doc.get("requires")
    if raw is None:
        return r
    if not isinstance(raw, LMap):
        raise ctx.err(doc, "requires", "requires", "requires is a mapping")
    for k, v in raw.items():
        w = f"requires.{k}"
        if k in ("config", "nodes"):
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise ctx.err(raw, k, w, "a list of names")
            setattr(r, k, list(v))
        elif k == "container":
            if v not in ("legacy", "iommufd"):
                raise ctx.err(raw, k, w, "legacy or iommufd")
            r.container = v
        elif k == "mock_domains":
            if not isinstance(v, bool):
                raise ctx.err(raw, k, w, "true or false")
            r.mock_domains = v
        elif k == "kernel":
            try:
                check_range(v)
            except VersionError as e:
                raise ctx.err(raw, k, w, str(e)) from None
            r.kernel = v
        elif k == "topology":
            if not isinstance(v, LMap):
                raise ctx.err(raw, k, w, "a mapping role-name: role")
            for name, role in v.items():
                if not isinstance(role, str) or role not in ROLES:
                    raise ctx.err(v, name, f"{w}.{name}", f"unknown role {role!r} (roles: {sorted(ROLES)})")
            r.topology = dict(v)
        else:
            raise ctx.err(raw, k, w, "unknown requirement (config, nodes, container, mock_domains, kernel, topology)")
    return r


def _known_differences(ctx: FileContext, doc: LMap, step_lines: set[int]) -> list[KnownDifference]:
    raw = doc.get("known_differences")
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ctx.err(doc, "known_differences", "known_differences", "a list of {reason, kernels, step, field}")
    out = []
    for i, item in enumerate(raw):
        w = f"known_differences[{i}]"
        if not isinstance(item, LMap) or set(item) - {"reason", "kernels", "step", "field"}:
            raise ctx.err(raw, i, w, "takes reason:, kernels:, and optionally step: (a step's line) and field:")
        if not isinstance(item.get("reason"), str) or not item["reason"].strip():
            raise ctx.err(item, "reason", f"{w}.reason", "say why the kernel differs from the contract")
        kernels = item.get("kernels")
        if not isinstance(kernels, list) or not kernels:
            raise ctx.err(item, "kernels", f"{w}.kernels", "list the kernel versions it applies to, e.g. [\"6.12\"]")
        for k in kernels:
            try:
                check_range(str(k))
            except VersionError as err:
                raise ctx.err(item, "kernels", f"{w}.kernels", str(err)) from None
        line = item.get("step", 0)
        if not isinstance(line, int) or isinstance(line, bool):
            raise ctx.err(item, "step", f"{w}.step", "the line number of a step")
        if line and line not in step_lines:
            raise ctx.err(item, "step", f"{w}.step", f"no step starts at line {line}")
        out.append(KnownDifference(item["reason"].strip(), tuple(str(k) for k in kernels), line,
                                   str(item.get("field", ""))))
    return out


def _merge(a: Requirements, b: Requirements) -> Requirements:
    return Requirements(
        config=sorted(set(a.config) | set(b.config)),
        nodes=list(dict.fromkeys(a.nodes + b.nodes)),
        container=b.container or a.container,
        mock_domains=b.mock_domains if b.mock_domains is not None else a.mock_domains,
        kernel=",".join(x for x in (a.kernel, b.kernel) if x),
        topology={**a.topology, **b.topology},
    )


def _variants(ctx: FileContext, doc: LMap) -> list[tuple[str | None, dict[str, Any]]]:
    if "variants" in doc and "matrix" in doc:
        raise ctx.err(doc, "matrix", "matrix", "use variants or matrix, not both")
    if "variants" in doc:
        v = doc["variants"]
        if not isinstance(v, LMap) or not v:
            raise ctx.err(doc, "variants", "variants", "variants is a mapping name: {param: value}")
        if len(v) > MAX_VARIANTS:
            raise ctx.err(doc, "variants", "variants", f"{len(v)} variants (at most {MAX_VARIANTS})")
        out: list[tuple[str | None, dict[str, Any]]] = []
        for name, params in v.items():
            if not isinstance(params, LMap) or not NAME.match(str(name)):
                raise ctx.err(v, name, f"variants.{name}", "a variant is name: {param: value, ...}")
            out.append((str(name), dict(params)))
        return out
    if "matrix" in doc:
        m = doc["matrix"]
        if not isinstance(m, LMap) or not all(isinstance(x, list) and x for x in m.values()):
            raise ctx.err(doc, "matrix", "matrix", "matrix is a mapping param: [values]")
        keys = list(m)
        total = 1
        for k in keys:
            total *= len(m[k])
        if total > MAX_VARIANTS:
            raise ctx.err(doc, "matrix", "matrix", f"expands to {total} variants (at most {MAX_VARIANTS})")
        expanded: list[tuple[str | None, dict[str, Any]]] = []
        for combo in itertools.product(*(m[k] for k in keys)):
            name = "-".join(_variant_name(c) for c in combo)
            expanded.append((name, dict(zip(keys, combo, strict=True))))
        return expanded
    return [(None, {})]


def _variant_name(v: Any) -> str:
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) > 9:
        return f"{v:#x}"
    return str(v).lower().replace("_", "-")


Variant = tuple[str | None, dict[str, Any]]


def _combine(ctx: FileContext, doc: LMap, key: str, outer: list[Variant],
             inner: list[Variant]) -> list[tuple[Variant, str | None]]:
    """The variants of a case (or fixture) ``inner`` over those of its fixture ``outer``, each with
    the outer variant it came from.  Inner variants named like outer ones refine them (their
    parameters win) and must name every one; otherwise every pair runs, named ``outer-inner``."""
    if inner == [(None, {})]:
        return [(o, o[0]) for o in outer]
    if outer == [(None, {})]:
        return [(i, None) for i in inner]
    onames = [o for o, _ in outer]
    shared = [n for n, _ in inner if n in onames]
    if shared:
        if len(shared) != len(inner) or len(inner) != len(outer):
            rest = [n for n, _ in inner if n not in onames] or [n for n in onames if n not in shared]
            raise ctx.err(doc, key, key, f"the fixture's variants are {', '.join(map(str, onames))}: name every one "
                                         f"to refine them, or none for every pair ({rest[0]!r} breaks the rule)")
        mine = dict(inner)
        return [((o, {**params, **mine[o]}), o) for o, params in outer]
    if len(outer) * len(inner) > MAX_VARIANTS:
        raise ctx.err(doc, key, key, f"{len(outer)} fixture variants x {len(inner)} make more than {MAX_VARIANTS}")
    return [((f"{o}-{i}", {**op, **ip}), o) for o, op in outer for i, ip in inner]


class _Fixture:
    """A fixture with its `extends` chain resolved: requirements and variants merged, and the
    steps of each file in the chain, base first."""

    def __init__(self, requires: Requirements, steps: list[tuple[LList, Path]],
                 variants: list[Variant], variant_requires: dict[str | None, Requirements]):
        self.requires, self.steps, self.variants = requires, steps, variants
        self.variant_requires = variant_requires


class Loader:
    def __init__(self, root: Path):
        self.root = root
        self._fixtures: dict[str, _Fixture] = {}
        self.macros = Macros(root, _read, STEP_KINDS)

    def _fixture(self, ctx: FileContext, doc: LMap, key: str = "fixture",
                 chain: tuple[str, ...] = ()) -> _Fixture | None:
        name = doc.get(key)
        if name is None:
            return None
        if not isinstance(name, str) or not NAME.match(name):
            raise ctx.err(doc, key, key, "names a file of cases/fixtures/ without .yaml ([a-z0-9-]+)")
        if name in chain:
            raise ctx.err(doc, key, key, f"fixture {name!r} extends itself ({' -> '.join((*chain, name))})")
        if len(chain) >= MAX_EXTENDS:
            raise ctx.err(doc, key, key, f"extends chains at most {MAX_EXTENDS} fixtures ({' -> '.join(chain)} -> ...)")
        if name not in self._fixtures:
            path = self.root / _FIXTURES_DIR / f"{name}.yaml"
            if not path.is_file():
                raise ctx.err(doc, key, key, f"no fixture {name!r} ({path})")
            try:
                self._fixtures[name] = self._read_fixture(path, (*chain, name))
            except CaseError as e:   # named from the case too: it is the case that cannot run
                raise ctx.err(doc, key, key, str(e)) from None
        return self._fixtures[name]

    def _read_fixture(self, path: Path, chain: tuple[str, ...]) -> _Fixture:
        fdoc = _read(path)
        fctx = FileContext(path)
        if not isinstance(fdoc, LMap) or not {"steps", "extends", "variants"} & set(fdoc):
            raise CaseError(path, 1, "", "a fixture has requires: and steps: (or extends:, variants:)")
        for k in fdoc:
            if k not in _FIXTURE_KEYS:
                raise fctx.err(fdoc, k, k, "a fixture names no fixture of its own (extends: NAME builds on one)"
                               if k == "fixture" else f"unknown key in a fixture (allowed: {sorted(_FIXTURE_KEYS)})")
        steps = fdoc.get("steps", LList())
        if not isinstance(steps, LList):
            raise fctx.err(fdoc, "steps", "steps", "a list of steps")
        base = self._fixture(fctx, fdoc, "extends", chain)
        req = _requires(fctx, fdoc)
        own = _variants(fctx, fdoc) if "variants" in fdoc else [(None, {})]
        variant_requires: dict[str | None, Requirements] = {}
        for vname, params in own:
            if "requires" in params:
                holder = LMap({"requires": params["requires"]})
                holder.line, holder.lines = fdoc.line, {"requires": line_of(fdoc["variants"], vname)}
                variant_requires[vname] = _requires(fctx, holder)
        if base is None:
            return _Fixture(req, [(steps, path)], own, variant_requires)
        combined = _combine(fctx, fdoc, "variants", base.variants, own)
        for (vname, _), origin in combined:
            here = variant_requires.get(vname)
            there = base.variant_requires.get(origin)
            if here and there:
                variant_requires[vname] = _merge(there, here)
            elif there:
                variant_requires[vname] = there
        return _Fixture(_merge(base.requires, req), [*base.steps, (steps, path)], [v for v, _ in combined],
                        variant_requires)

    def _steps(self, ctx: FileContext, raws: LList, path: Path, where: str, bound: set[str], first: int,
               from_fixture: bool, at: tuple[LMap, str] | None = None) -> list[Step]:
        """``raws`` checked, macro calls expanded; ``at`` (a node and key of the case) names a
        fixture's error from the case, as the case is what cannot run."""
        out: list[Step] = []
        try:
            expanded = self.macros.expand(raws, path, where)
            for x in expanded:
                out.append(self._one(x, first + len(out), bound))
        except CaseError as e:
            if at is None:
                raise
            raise ctx.err(at[0], at[1], at[1], str(e)) from None
        for s in out:
            s.from_fixture = from_fixture
        return out

    @staticmethod
    def _one(x: Expanded, index: int, bound: set[str]) -> Step:
        if x.call is None:
            return parse_step(FileContext(x.path), x.raw, index, x.where, bound, x.line)
        try:
            step = parse_step(FileContext(x.path), x.raw, index, x.where, bound, x.line)
        except CaseError as e:    # named at the call, with the macro's own file and line
            raise CaseError(x.call[0], x.call[1], x.call[2],
                            f"in {' -> '.join(x.chain)} ({e.path}:{e.line}: {e.where}): {e.message}") from None
        step.line = x.call[1]
        return step

    def load_file(self, path: Path) -> list[Case]:
        """The cases of one file; its names are checked against every series' uAPI (a case may
        name what only some kernels have: it is skipped, with the reason, where they lack it)."""
        with using_abi(EVERY_SERIES):
            return self._load_file(path)

    def _load_file(self, path: Path) -> list[Case]:
        doc = _read(path)
        ctx = FileContext(path)
        if not isinstance(doc, LMap):
            raise CaseError(path, 1, "", "a case file is a mapping")
        for k in doc:
            if k not in TOP_KEYS:
                raise ctx.err(doc, k, k, f"unknown key (allowed: {sorted(TOP_KEYS)})")
        for k in REQUIRED_TOP:
            if k not in doc:
                raise ctx.err(doc, None, k, "missing (required: " + ", ".join(REQUIRED_TOP) + ")")
        if not isinstance(doc["id"], str) or not NAME.match(doc["id"]):
            raise ctx.err(doc, "id", "id", "lower-case letters, digits and dashes")
        rel_area = path.parent.name
        if doc["area"] != rel_area:
            raise ctx.err(doc, "area", "area", f"is {doc['area']!r} but the file is in folder {rel_area!r}")
        if not isinstance(doc["verified_on"], list):
            raise ctx.err(doc, "verified_on", "verified_on", "a list of kernel versions ([] = model only)")
        own = _variants(ctx, doc)
        if "${requires}" not in str(doc.get("requires", "")):
            for vname, params in own:
                if "requires" in params:
                    raise ctx.err(doc["variants"], vname, f"variants.{vname}.requires",
                                  "a case's variant gives requirements through the case's `requires: ${requires}`, "
                                  "which this case does not have: they would be ignored")
        # A fixture named outright lends its variants; one picked per variant (`fixture: ${p}`) has none.
        static = doc.get("fixture")
        fixed = self._fixture(ctx, doc) if not (isinstance(static, str) and "${" in static) else None
        key = "matrix" if "matrix" in doc else "variants"
        plan = _combine(ctx, doc, key, fixed.variants, own) if fixed is not None else [(v, None) for v in own]
        cases = []
        for (vname, params), origin in plan:
            d = _substitute(doc, params)
            fixture = fixed if fixed is not None else self._fixture(ctx, d)
            if fixed is None and fixture is not None and fixture.variants != [(None, {})]:
                raise ctx.err(d, "fixture", "fixture", "a fixture picked per variant has no variants of its own")
            req = _requires(ctx, d)
            if fixture is not None:
                extra = fixture.variant_requires.get(origin)
                req = _merge(_merge(fixture.requires, extra) if extra else fixture.requires, req)
            bound: set[str] = set(req.topology)
            steps: list[Step] = []
            if fixture is not None:
                for fsteps, fpath in fixture.steps:
                    steps += self._steps(ctx, _substitute(fsteps, params), fpath, "fixture.steps", bound, len(steps),
                                         True, (d, "fixture"))
            if not isinstance(d["steps"], LList) or not d["steps"]:
                raise ctx.err(d, "steps", "steps", "a non-empty list of steps")
            steps += self._steps(ctx, d["steps"], path, "steps", bound, len(steps), False)
            raw_cleanup = d.get("cleanup") or LList()
            if not isinstance(raw_cleanup, LList):
                raise ctx.err(d, "cleanup", "cleanup", "a list of steps")
            cleanup = self._steps(ctx, raw_cleanup, path, "cleanup", bound, 0, False)
            _check_role_attributes(path, req.topology, [*steps, *cleanup])
            kd = _known_differences(ctx, d, {s.line for s in steps})
            cases.append(Case(
                id=d["id"], area=d["area"], purpose=" ".join(str(d["purpose"]).split()), path=path,
                line=d.line, source=str(d.get("source", "")), verified_on=[str(x) for x in d["verified_on"]],
                requires=req, steps=steps, cleanup=cleanup, variant=vname, params=params,
                known_differences=kd,
            ))
        return cases

    def load_all(self, pattern: str = "**/*.yaml") -> tuple[list[Case], list[CaseError]]:
        cases: list[Case] = []
        errors: list[CaseError] = []
        seen: dict[str, Path] = {}
        patterns = [pattern]
        if not pattern.endswith((".yaml", ".yml")):
            # A folder or folder glob ("ioas", "size/**") means the case files below it; a
            # name glob without the extension ("ownership/cdev-bind*") the files it names.
            base = pattern.rstrip("/")
            patterns = [base + "/*.yaml"] if base.endswith("**") else [base + "/**/*.yaml", base + ".yaml"]
        for path in sorted({p for pat in patterns for p in self.root.glob(pat)}):
            if path.relative_to(self.root).parts[:1] in ((_FIXTURES_DIR,), (MACROS_DIR,)):
                continue
            try:
                loaded = self.load_file(path)
            except CaseError as e:
                errors.append(e)
                continue
            except Exception as e:  # one bad file never stops the run: it is reported like any other
                errors.append(CaseError(path, 0, "", f"cannot be loaded: {type(e).__name__}: {e}"[:500]))
                continue
            for c in loaded:
                if c.test_id in seen and seen[c.test_id] != path:
                    errors.append(CaseError(path, c.line, "id", f"duplicate id {c.id!r} (also in {seen[c.test_id]})"))
                    continue
                seen[c.test_id] = path
                cases.append(c)
        return cases, errors


# `$dev.attr` in an expression, `${dev.attr}` in a template.
_ROLE_ATTRIBUTE = re.compile(r"\$\{?\s*\$?([a-z_][a-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_]*)")


def _texts(spec: Any) -> Iterator[str]:
    if isinstance(spec, dict):
        for v in spec.values():
            yield from _texts(v)
    elif isinstance(spec, list):
        for v in spec:
            yield from _texts(v)
    elif isinstance(spec, str):
        yield spec
    elif hasattr(spec, "text"):   # a parsed expression
        yield spec.text


def _check_role_attributes(path: Path, topology: dict[str, str], steps: list[Step]) -> None:
    """Every ``$role.attr`` a step reads is an attribute its role offers (backends/roles.py): a
    misspelt one fails here, not on a target half-way through a run."""
    for step in steps:
        for text in _texts(step.spec):
            for name, attr in _ROLE_ATTRIBUTE.findall(text):
                if name in topology and attr not in ROLES[topology[name]].attributes:
                    offers = ", ".join(ROLES[topology[name]].attributes)
                    raise CaseError(path, step.line, f"steps[{step.index}]",
                                    f"${name}.{attr}: role {topology[name]} offers {offers}")


def _read(path: Path) -> Any:
    """A case file's YAML: only a regular file of at most MAX_FILE_BYTES of UTF-8 is read (a FIFO
    would block, a link to /dev/zero never end)."""
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            raise CaseError(path, 0, "", "not a regular file")
        if st.st_size > MAX_FILE_BYTES:
            raise CaseError(path, 0, "", f"larger than {MAX_FILE_BYTES} bytes")
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise CaseError(path, 0, "", f"larger than {MAX_FILE_BYTES} bytes")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            line = data[:e.start].count(b"\n") + 1
            raise CaseError(path, line, "", f"not UTF-8 text (byte {e.start}: {data[e.start]:#04x})") from None
        try:
            return load_yaml(text)
        except yaml.reader.ReaderError as e:   # a character YAML does not take (a control character)
            line = text[:e.position].count("\n") + 1
            raise CaseError(path, line, "", f"YAML: {e.reason} ({e.character!r})") from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = (mark.line + 1) if mark else 0
        raise CaseError(path, line, "", _one_line(f"YAML: {e.problem or e.context}")) from None
    except yaml.YAMLError as e:
        raise CaseError(path, 0, "", _one_line(f"YAML: {e}")) from None
    except OSError as e:
        raise CaseError(path, 0, "", f"cannot read: {e.strerror}") from None


def _one_line(text: str) -> str:
    return " ".join(text.split())


def load_for_command(cases_dir: Path, pattern: str, command: str) -> list[Case]:
    """The cases a subcommand runs: each malformed file said on stderr (the others still load),
    and, when nothing matched, that too (the caller then exits NO_MATCH)."""
    cases, errors = Loader(cases_dir).load_all(pattern)
    for err in errors:
        print(err, file=sys.stderr)
    if not cases:
        print(f"{command}: no case matched --cases {pattern!r} under {cases_dir}", file=sys.stderr)
    return cases
