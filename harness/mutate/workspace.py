"""The mutation workspace: where mutants are built, one after another, incrementally.

Under the cache root (harness/cache_root.py), per test-kernel build key::

    mutate/<build key>/src/      a hard-link copy (cp -al) of the extracted source tree
    mutate/<build key>/build/    a copy of the test kernel's build directory, paths rewritten
    mutate/<build key>/.lock     held for a whole run: one series of mutants at a time
    mutate/<build key>/mutated   the files a mutant (or a schemata layer) replaced, while replaced

A mutant replaces one file of ``src/`` by a real file (a new inode: the shared tree is never
written); its object is compiled first (``make <file>.o``, a few seconds) and compared with the
original's, and only a mutant whose object code differs goes on to ``make bzImage`` (the link,
about 20 s in all).  Restoring links the
original back and deletes the mutant's object, so the next build recompiles it from the original
(the original's mtime is older than the mutant's object).  The cached build directory of the test
kernel is only read, under its build lock, while it is copied.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..cache_root import cache_root
from ..kernel import cache, make
from ..kernel.errors import KernelBuildError
from ..kernel.kconfig import fragment_bytes
from ..kernel.lock import locked
from ..kernel.source import debian_source, get_series
from .operators import Mutant
from .schemata import Layer, numbers_at, render

READY = ".ready"
MUTATED = "mutated"


@dataclass(frozen=True)
class LayerBuild:
    image: Path | None         # None: no kernel could be built
    layer: Layer               # the mutants in the image
    dropped: set[int]          # the mutants taken out: to build one by one
    seconds: float
    log_tail: str
    cached: bool = False       # built by an earlier run


@dataclass(frozen=True)
class BuildResult:
    ok: bool
    seconds: float
    log_tail: str = ""


def finished_build(series: str | None = None) -> tuple[Path, Path, str]:
    """(source tree, finished build directory, build key) of the series' test kernel."""
    s = get_series(series)
    keys = cache.keys_for(None, fragment_bytes(None, False), s)
    if keys is None:
        raise KernelBuildError(f"no {s.package} tarball: run `vfio-conformance kernel build --series {s.name}` first")
    builddir = cache.build_dir(keys)
    if make.log_status(builddir / "build.log") != "exit 0" or not (builddir / make.IMAGE).is_file():
        raise KernelBuildError(f"no finished build in {builddir}: run `vfio-conformance kernel build "
                               f"--series {s.name}` first")
    return debian_source(s, fetch=False), builddir, keys.build


def _rewrite_paths(build: Path, old_new: list[tuple[str, str]]) -> None:
    """Replace the original tree's and build directory's paths in the copy's text files (the
    saved commands of .cmd files, the generated Makefile), so make sees unchanged commands."""
    args = ["grep", "-rlIZ", "--exclude-dir=source"]
    for old, _ in old_new:
        args += ["-e", old]
    r = subprocess.run([*args, str(build)], capture_output=True)
    for name in filter(None, r.stdout.split(b"\0")):
        p = Path(os.fsdecode(name))
        text = p.read_bytes()
        for old, new in old_new:
            text = text.replace(old.encode(), new.encode())
        p.write_bytes(text)


class Workspace:
    def __init__(self, source: Path, builddir: Path, key: str, root: Path | None = None):
        self.original_src, self.original_build, self.key = Path(source), Path(builddir), key
        self.root = Path(root) if root else cache_root() / "mutate" / key
        self.src, self.build = self.root / "src", self.root / "build"
        self.log = self.root / "mutant-build.log"

    @property
    def image(self) -> Path:
        return self.build / make.IMAGE

    @contextlib.contextmanager
    def session(self) -> Iterator[Workspace]:
        """Lock the workspace (creating it on first use), put back a file an interrupted run left
        mutated, and put back the last mutant's file at the end."""
        self.root.mkdir(parents=True, exist_ok=True)
        with locked(self.root / ".lock", f"another mutation run in {self.root}"):
            if not (self.root / READY).is_file():
                self._create()
            self.restore()
            try:
                yield self
            finally:
                self.restore()

    def _create(self) -> None:
        print(f"[mutate] creating the workspace {self.root} (a hard-link copy of {self.original_src} and a "
              f"copy of {self.original_build})", file=sys.stderr)
        for d in (self.src, self.build):
            if d.exists():
                shutil.rmtree(d)
        subprocess.run(["cp", "-al", str(self.original_src), str(self.src)], check=True)
        with locked(self.original_build.parent / f"{self.original_build.name}.lock",
                    f"a build in {self.original_build}"):
            subprocess.run(["cp", "-a", str(self.original_build), str(self.build)], check=True)
        _rewrite_paths(self.build, [(str(self.original_src), str(self.src)),
                                    (str(self.original_build), str(self.build))])
        link = self.build / "source"
        if link.is_symlink():
            link.unlink()
            link.symlink_to(self.src)
        (self.root / READY).write_text(f"{self.original_src}\n{self.original_build}\n")

    def original_text(self, rel: str) -> str:
        return (self.original_src / rel).read_text()

    def apply(self, mutant: Mutant) -> None:
        """Replace the mutant's file by a real file holding the mutant (a fresh mtime: make rebuilds it)."""
        self.apply_texts({mutant.file: mutant.apply(self.original_text(mutant.file))})

    def apply_texts(self, texts: dict[str, str]) -> None:
        """Replace each file of ``texts`` (relative path -> its new text) by a real file holding it."""
        self.restore()
        (self.root / MUTATED).write_text("".join(f"{rel}\n" for rel in texts))
        for rel, text in texts.items():
            target = self.src / rel
            tmp = target.with_name(f".{target.name}.mutant")
            tmp.write_text(text)
            os.replace(tmp, target)

    def restore(self) -> None:
        """Link the mutated files' originals back and drop their objects (rebuilt from the originals next time)."""
        marker = self.root / MUTATED
        try:
            rels = marker.read_text().split()
        except FileNotFoundError:
            return
        for rel in rels:
            target = self.src / rel
            tmp = target.with_name(f".{target.name}.orig")
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            os.link(self.original_src / rel, tmp)
            os.replace(tmp, target)
            with contextlib.suppress(FileNotFoundError):
                (self.build / rel).with_suffix(".o").unlink()
        marker.unlink()

    @staticmethod
    def object_name(rel: str) -> str:
        return str(Path(rel).with_suffix(".o"))

    def object_sha(self, rel: str, original: bool = False) -> str:
        """The sha256 of ``rel``'s object file, as the mutant's build made it or (``original``) as
        the test kernel's build did; "" when there is none."""
        path = (self.original_build if original else self.build) / self.object_name(rel)
        try:
            return hashlib.sha256(path.read_bytes()).hexdigest()
        except FileNotFoundError:
            return ""

    def make(self, jobs: int = 2, target: str | list[str] = "bzImage", append: bool = False) -> BuildResult:
        """``make TARGET...`` in the workspace (nice 10; several targets: ``-k``, every error in
        one go), its output in mutant-build.log (``append``: after the output of the mutant's
        object build)."""
        targets = [target] if isinstance(target, str) else list(target)
        cmd = ["nice", "-n", "10", "make", "-C", str(self.src), f"O={self.build}", f"-j{jobs}"]
        cmd += ["-k", *targets] if len(targets) > 1 else targets
        start = time.monotonic()
        with open(self.log, "a" if append else "w") as log, open(os.devnull, "w") as quiet:
            rc = make.run_logged(cmd, log, cwd=self.build, label="mutant make", err=quiet)
        seconds = time.monotonic() - start
        tail = "" if rc == 0 else make.tail(self.log.read_text(errors="replace"), 15)
        return BuildResult(rc == 0, seconds, tail)

    def errors(self) -> dict[str, set[int]]:
        """The lines the last build's compiler errors name, per source file (relative)."""
        out: dict[str, set[int]] = {}
        pattern = re.compile(rf"^{re.escape(str(self.src))}/(\S+?\.c):(\d+):\d+: error:", re.M)
        for m in pattern.finditer(self.log.read_text(errors="replace")):
            out.setdefault(m.group(1), set()).add(int(m.group(2)))
        return out

    def unlinked(self, files: list[str]) -> set[str]:
        """Those of ``files`` whose object the last build's link errors name."""
        log = self.log.read_text(errors="replace")
        return {f for f in files if f"{self.object_name(f)}: in function" in log}

    def build_layer(self, layer: Layer, texts: dict[str, str], jobs: int = 2,
                    attempts: int = 5) -> LayerBuild:
        """Build a schemata kernel of ``layer`` (texts: file -> original source): its image,
        copied out of the build directory, and the layer as built.  The mutants whose switch a
        compiler or link error names are taken out and the build tried again; the files are put
        back before returning, whatever happened.  A layer built before (the same files made)
        is not built again."""
        dropped: set[int] = set()
        seconds = 0.0
        image = self.root / "schemata" / f"{layer.key(texts)}.bzImage"
        made = image.with_suffix(".json")
        if image.is_file() and made.is_file():
            dropped = set(json.loads(made.read_text())["dropped"])
            return LayerBuild(image, layer.without(dropped), dropped, 0.0, "", cached=True)
        try:
            for _ in range(attempts):
                files = layer.files()
                if not files:
                    break
                self.apply_texts({f: render(f, texts[f], layer)[0] for f in files})
                built = self.make(jobs, [self.object_name(f) for f in files])
                seconds += built.seconds
                if built.ok:
                    built = self.make(jobs, append=True)
                    seconds += built.seconds
                    if built.ok:
                        image.parent.mkdir(exist_ok=True)
                        shutil.copyfile(self.image, image)
                        made.write_text(json.dumps({"dropped": sorted(dropped)}))
                        return LayerBuild(image, layer, dropped, seconds, "")
                    bad = {n for f in self.unlinked(files) for n in layer.numbers_in(f)}
                else:
                    errors = self.errors()
                    bad = set().union(*(numbers_at(layer, f, texts[f], lines) for f, lines in errors.items()))
                    bad = bad or {n for f in errors for n in layer.numbers_in(f)}
                if not bad:
                    break
                dropped |= bad
                layer = layer.without(bad)
            return LayerBuild(None, layer, dropped | set(layer.numbers()), seconds, make.tail(
                self.log.read_text(errors="replace"), 15))
        finally:
            self.restore()
