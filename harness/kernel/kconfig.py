"""The kernel's configuration: the fragment merged over ``x86_64_defconfig``, and its verification.

The fragment ``config/vfio-conformance.config`` is merged over the defconfig
(``scripts/kconfig/merge_config.sh -m``, then ``make olddefconfig``: harness/kernel/make.py);
then every ``CONFIG_`` line of it is checked against the resulting ``.config``, since Kconfig
drops unmet requests silently.  A request that did not stick fails the build, with the
dependencies, selects or missing prompt that explain it (read from the tree's Kconfig files).
``--coverage`` adds the gcov options to the fragment's bytes, so it is another cache key;
``--sanitizers`` adds ``config/sanitizers.config`` (KASAN, UBSAN, lockdep, debug objects) the same way.
"""

from __future__ import annotations

import glob
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .errors import KernelBuildError

FRAGMENT = Path(__file__).resolve().parent / "config" / "vfio-conformance.config"
ARCH = "x86"
DEFCONFIG = "arch/x86/configs/x86_64_defconfig"

# --coverage: gcov for the code under test only (the directories are chosen on make's command
# line: make.COVERAGE_MAKE_VARS).
COVERAGE_FRAGMENT = b"\n# --coverage\nCONFIG_GCOV_KERNEL=y\nCONFIG_GCOV_PROFILE_ALL=n\n"
# --sanitizers: appended after the fragment (and the coverage options), so it is its own cache key.
SANITIZERS_FRAGMENT = FRAGMENT.parent / "sanitizers.config"


class KernelConfigError(KernelBuildError):
    """The fragment's requests did not all survive Kconfig."""


def fragment_bytes(fragment: Path | None = None, coverage: bool = False, sanitizers: bool = False) -> bytes:
    """The exact bytes merged over the defconfig: the fragment file, plus the coverage options, plus
    the sanitizer options."""
    data = Path(fragment or FRAGMENT).read_bytes()
    if coverage:
        data += COVERAGE_FRAGMENT
    if sanitizers:
        data += SANITIZERS_FRAGMENT.read_bytes()
    return data


def parse_config(text: str) -> dict[str, str]:
    """``CONFIG_X=v`` and ``# CONFIG_X is not set`` (as "n") lines of a .config or fragment."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        m = re.match(r"(CONFIG_[A-Za-z0-9_]+)=(.*)$", line)
        if m:
            out[m.group(1)] = m.group(2)
            continue
        m = re.match(r"# (CONFIG_[A-Za-z0-9_]+) is not set$", line)
        if m:
            out[m.group(1)] = "n"
    return out


def _satisfied(want: str, got: str | None) -> bool:
    if want == "n":
        return got in (None, "n")
    if want == "m":          # with MODULES=n, Kconfig turns m into y
        return got in ("m", "y")
    return got == want


@dataclass
class KEntry:
    """One ``config``/``menuconfig`` definition, as far as explaining a dropped request needs."""
    name: str
    where: str
    prompt: bool = False
    prompt_if: str | None = None
    depends: list[str] = field(default_factory=list)   # own ``depends on`` and enclosing if/menu/choice


@dataclass
class Kconfig:
    entries: dict[str, list[KEntry]] = field(default_factory=dict)
    selects: dict[str, list[tuple[str, str | None]]] = field(default_factory=dict)   # target -> (by, if)


_KEYWORDS = ("config", "menuconfig", "choice", "endchoice", "menu", "endmenu", "if", "endif", "comment",
             "source", "osource", "rsource", "orsource", "mainmenu")


def parse_kconfig(srctree: Path, arch: str = ARCH) -> Kconfig:
    """Follow ``source`` from ``srctree/Kconfig``, recording entries, their dependencies and selects.

    A deliberately small reader: no macro expansion beyond $(SRCARCH)/$(HEADER_ARCH), no defaults.
    """
    kc = Kconfig()
    seen: set[Path] = set()

    def read(path: Path, conds: list[str]) -> None:
        if path in seen or not path.is_file():
            return
        seen.add(path)
        lines = path.read_text(errors="replace").splitlines()
        stack: list[tuple[str, list[str]]] = []       # (kind, conditions it adds)
        current: KEntry | None = None
        block: list[str] | None = None                # the menu/choice whose depends lines follow
        i = 0

        def enclosing() -> list[str]:
            return conds + [c for _, cs in stack for c in cs]

        while i < len(lines):
            raw = lines[i]
            lineno = i + 1
            i += 1
            while raw.endswith("\\") and i < len(lines):
                raw = raw[:-1] + " " + lines[i].strip()
                i += 1
            s = raw.split("#", 1)[0].strip() if '"' not in raw else raw.strip()
            if not s or s.startswith("#"):
                continue
            word, _, rest = s.partition(" ")
            rest = rest.strip()
            if word in ("help", "---help---"):
                indent = None
                while i < len(lines):
                    nxt = lines[i]
                    if nxt.strip():
                        ind = len(nxt.expandtabs()) - len(nxt.expandtabs().lstrip())
                        base = len(raw.expandtabs()) - len(raw.expandtabs().lstrip())
                        if indent is None:
                            if ind <= base:
                                break
                            indent = ind
                        elif ind < indent:
                            break
                    i += 1
                continue
            if word in _KEYWORDS:
                current = None
                block = None
            if word in ("config", "menuconfig"):
                current = KEntry(rest, f"{path.relative_to(srctree)}:{lineno}", depends=list(enclosing()))
                kc.entries.setdefault(rest, []).append(current)
            elif word in ("menu", "choice"):
                block = []
                stack.append((word, block))
            elif word == "if":
                stack.append(("if", [rest]))
            elif word in ("endif", "endmenu", "endchoice"):
                if stack:
                    stack.pop()
            elif word in ("source", "osource", "rsource", "orsource"):
                m = re.match(r'"([^"]*)"', rest)
                if m:
                    name = m.group(1).replace("$(SRCARCH)", arch).replace("$(HEADER_ARCH)", arch)
                    if "$(" not in name:
                        rel = path.parent if word in ("rsource", "orsource") else srctree
                        for p in sorted(glob.glob(str(rel / name))):
                            read(Path(p), enclosing())
            elif word == "depends" and rest.startswith("on "):
                expr = rest[3:].strip()
                if current is not None:
                    current.depends.append(expr)
                elif block is not None:
                    block.append(expr)
            elif word in ("select",) and current is not None:
                target, _, cond = rest.partition(" if ")
                kc.selects.setdefault(target.strip(), []).append((current.name, cond.strip() or None))
            elif current is not None and word in ("bool", "tristate", "string", "int", "hex", "prompt"):
                m = re.match(r'"(?:[^"\\]|\\.)*"\s*(?:if\s+(.*))?$', rest)
                if m:
                    current.prompt = True
                    current.prompt_if = m.group(1)

    read(srctree / "Kconfig", [])
    return kc


def _annotate(expr: str, config: dict[str, str]) -> str:
    """``A && !B`` -> ``A [=y] && !B [=n]``, values from the built .config."""
    def val(m: re.Match[str]) -> str:
        sym = m.group(0)
        if sym in ("y", "n", "m") or sym.isdigit():
            return sym
        return f"{sym} [={config.get('CONFIG_' + sym, 'n')}]"
    parts = re.split(r'("[^"]*")', expr)
    return "".join(p if p.startswith('"') else re.sub(r"\b[A-Za-z0-9_]+\b", val, p) for p in parts)


def _why(sym: str, want: str, got: str | None, kc: Kconfig, config: dict[str, str]) -> str:
    name = sym.removeprefix("CONFIG_")
    defs = kc.entries.get(name)
    if not defs:
        return "not a Kconfig symbol of this tree"
    reasons: list[str] = []
    if want == "n":
        by = [f"{s} [={config.get('CONFIG_' + s, 'n')}]" + (f" if {_annotate(c, config)}" if c else "")
              for s, c in kc.selects.get(name, []) if config.get("CONFIG_" + s, "n") != "n"]
        if by:
            reasons.append("selected by " + ", ".join(by))
    for d in defs:
        if not d.prompt:
            reasons.append(f"no prompt ({d.where}): only defaults and selects set it")
        elif d.prompt_if:
            reasons.append(f"prompt only if {_annotate(d.prompt_if, config)} ({d.where})")
        if want != "n" and d.depends:
            reasons.append(f"depends on {' && '.join(_annotate(e, config) for e in d.depends)} ({d.where})")
    return "; ".join(reasons) or "no reason found in Kconfig"


@dataclass
class Verification:
    failures: list[str]        # one line per request that did not stick, with the reason
    unknown: list[str]         # =n requests of symbols this tree does not define (harmless, but stale)

    @property
    def ok(self) -> bool:
        return not self.failures


def verify_config(fragment_text: str, config_text: str, srctree: Path | None = None) -> Verification:
    """Check each CONFIG_ request of the fragment against a resolved .config.

    ``=y``/``=m``/values must be there; ``=n`` must be unset or ``n``.  With ``srctree``, failures
    carry the Kconfig reason (dependencies with their values, selects, prompt-less symbols) and
    ``=n`` requests of symbols the tree does not define are listed in ``unknown``.
    """
    wanted = parse_config(fragment_text)
    config = parse_config(config_text)
    bad = [(s, w, config.get(s)) for s, w in wanted.items() if not _satisfied(w, config.get(s))]
    kc = parse_kconfig(srctree) if srctree is not None else None
    failures = []
    for sym, want, got in bad:
        line = f"{sym}={want} requested, got {'not set' if got in (None, 'n') else got}"
        if kc is not None:
            line += f": {_why(sym, want, got, kc, config)}"
        failures.append(line)
    unknown = []
    if kc is not None:
        unknown = [s for s, w in wanted.items() if w == "n" and s.removeprefix("CONFIG_") not in kc.entries]
    return Verification(failures, unknown)


def check_config(fragment: bytes, builddir: Path, srctree: Path | None) -> None:
    v = verify_config(fragment.decode(), (builddir / ".config").read_text(), srctree)
    for s in v.unknown:
        print(f"[kernel] note: the fragment's {s}=n names no symbol of this tree (no effect)", file=sys.stderr)
    if not v.ok:
        raise KernelConfigError(
            f"{len(v.failures)} request(s) of the config fragment did not survive Kconfig "
            f"({builddir / '.config'}):\n" + "\n".join("  " + f for f in v.failures))

