"""An install that is not the checkout runs the bundled corpus from any folder (harness/resources.py).

The sdist is built from a copy of the checkout (PEP 517's build_sdist, no network) and must
carry cases/, conformance/ and conftest.py; the wheel is built from that sdist, as pip does,
and installed into a fresh venv that takes the dependencies from this machine's site-packages.
`vfio-conformance run` then runs from a folder outside the checkout whose own pytest.ini and
conftest.py would break a suite that picked them up.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import site
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.cases.loader import Loader

ROOT = Path(__file__).resolve().parent.parent
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", ".tox", "build", "dist", "*.egg-info", "__pycache__",
                                    "reports", ".mypy_cache", ".ruff_cache", ".hypothesis")
pytestmark = pytest.mark.slow


def run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


def corpus_files() -> set[str]:
    return {str(p.relative_to(ROOT)) for d in ("cases", "conformance") for p in (ROOT / d).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}


@pytest.fixture(scope="module")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("sdist")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=NOT_SOURCE)
    out = tmp / "dist"
    out.mkdir()
    built = run([sys.executable, "-c", "import sys; from setuptools import build_meta; "
                 "print(build_meta.build_sdist(sys.argv[1]))", str(out)], cwd=src)
    assert built.returncode == 0, built.stderr
    return out / built.stdout.strip().splitlines()[-1]


def test_the_sdist_carries_the_corpus_and_the_suite(sdist: Path) -> None:
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    assert corpus_files() <= names, sorted(corpus_files() - names)[:10]
    assert {"conftest.py", "setup.py", "MANIFEST.in", "harness/resources.py", "harness/vm/guest-init.sh"} <= names


def _wheel_build_offline() -> list[str]:
    """pip's options that build with this machine's setuptools when it can make a wheel
    (setuptools' own bdist_wheel, else the wheel package); else pip's isolated build."""
    own = importlib.util.find_spec("setuptools.command.bdist_wheel") is not None
    return ["--no-build-isolation"] if own or importlib.util.find_spec("wheel") else []


@pytest.fixture(scope="module")
def installed(sdist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with the wheel built from the sdist installed: its bin folder."""
    tmp = tmp_path_factory.mktemp("install")
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp, filter="data")
    (src,) = [p for p in tmp.iterdir() if p.is_dir()]
    wheels = tmp / "wheels"
    built = run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *_wheel_build_offline(), "-w",
                 str(wheels), str(src)], cwd=tmp)
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = wheels.glob("*.whl")
    venv = tmp / "venv"
    made = run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], cwd=tmp)
    assert made.returncode == 0, made.stderr
    if sys.prefix != sys.base_prefix:
        # Run from a venv (README's .venv): the new one's "system" site-packages are the base
        # interpreter's, so let it see this venv's too, after its own (a path list, not
        # site.addsitedir: this venv's editable install of the checkout stays out).
        purelib = run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                      cwd=tmp).stdout.strip()
        (Path(purelib) / "outer-venv.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    pip = run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], cwd=tmp)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    return venv / "bin"


def test_the_installed_package_is_not_the_checkout(installed: Path, tmp_path: Path) -> None:
    where = run([str(installed / "python"), "-c", "import harness.resources as r; print(r.project_root())"],
                cwd=tmp_path)
    assert where.returncode == 0, where.stderr
    root = Path(where.stdout.strip())
    assert root.is_relative_to(installed.parent) and root.name == "_data", root
    assert (root / "cases" / "fixtures").is_dir() and (root / "conformance" / "test_cases.py").is_file()


def test_the_installed_command_runs_the_whole_corpus_from_elsewhere(installed: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # What a user's folder may hold: neither may reach the bundled suite.
    (elsewhere / "pytest.ini").write_text("[pytest]\naddopts = --no-such-option\n")
    (elsewhere / "conftest.py").write_text("raise SystemExit('the current folder\\'s conftest.py was imported')\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = run([str(installed / "vfio-conformance"), "run", "--report", str(elsewhere / "r")], cwd=elsewhere,
               env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    tests = ET.parse(elsewhere / "r" / "results.xml").getroot().iter("testcase")
    ids = {re.sub(r"^test_case\[(.*)\]$", r"\1", t.get("name", "")) for t in tests}
    cases, errors = Loader(ROOT / "cases").load_all("**/*.yaml")
    assert not errors
    assert ids == {c.test_id for c in cases}
    ktap = re.findall(r"^  (?:not )?ok \d+ (\S+)", (elsewhere / "r" / "results.ktap").read_text(), re.M)
    assert sorted(ktap) == sorted(ids)
