"""One cache root (harness/cache_root.py), and every reader and writer of the cache under it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from harness import cli
from harness.backends.sysfs_state import STATE_FILE_ENV, default_state_file
from harness.cache_root import CACHE_ENV, cache_root
from harness.fuzz.run import default_database_dir
from harness.kernel import cache as kcache
from harness.kernel import kconfig, source
from harness.kernel import series as ks
from harness.vm import find_kernel

HARNESS = Path(__file__).resolve().parent.parent / "harness"
S612 = ks.get_series("6.12")
S72 = ks.get_series("7.2")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in (CACHE_ENV, "XDG_CACHE_HOME", STATE_FILE_ENV):
        monkeypatch.delenv(var, raising=False)
    for s in ks.SERIES.values():
        monkeypatch.delenv(s.kernel_env, raising=False)
        monkeypatch.delenv(s.ksrc_env, raising=False)


def test_the_rule_variable_then_xdg_then_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "vfio-conformance"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "vfio-conformance"
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "mine"))
    assert cache_root() == tmp_path / "mine"          # the variable wins over XDG
    monkeypatch.setenv(CACHE_ENV, "")
    assert cache_root() == tmp_path / "xdg" / "vfio-conformance"   # empty is unset


def places() -> dict[str, Path]:
    keys = kcache.compute_keys("6.12.118", b"CONFIG_VFIO=y\n")
    return {
        "6.12 tree": S612.src_dir(), "7.2 tree": S72.src_dir(), "7.2 download": S72.deb_root(),
        "7.2 apt state": S72.apt_dir(), "7.2 tarball": S72.tarball(),
        "build directory": kcache.build_dir(keys), "build lock": kcache.build_lock(keys),
        "kernel": kcache.image_path(keys), "fuzz database": default_database_dir(),
        "restore state file": default_state_file(),
    }


@pytest.mark.parametrize("how", ["variable", "xdg", "home"])
def test_everything_the_suite_keeps_lies_under_the_root(how: str, monkeypatch: pytest.MonkeyPatch,
                                                        tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    if how == "variable":
        monkeypatch.setenv(CACHE_ENV, str(tmp_path / "mine"))
    elif how == "xdg":
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    root = cache_root()
    outside = {what: p for what, p in places().items() if not p.is_relative_to(root)}
    assert outside == {}
    assert default_state_file() == root / "restore-state.json"
    monkeypatch.setenv(STATE_FILE_ENV, str(tmp_path / "state.json"))
    assert default_state_file() == tmp_path / "state.json"


def test_no_module_computes_a_cache_root_of_its_own() -> None:
    """Only harness/cache_root.py may spell the rule's parts."""
    own = HARNESS / "cache_root.py"
    bad = []
    for path in HARNESS.rglob("*.py"):
        if path == own:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in (".cache", "XDG_CACHE_HOME", CACHE_ENV):
                bad.append(f"{path.relative_to(HARNESS)}:{node.lineno}: {node.value!r}")
    assert bad == []


def fake_7_2(root: Path) -> tuple[Path, Path]:
    """The 7.2 series as `kernel build --series 7.2` leaves it: the downloaded tarball, its tree
    (stamped with that tarball, holding the uAPI headers) and the cached kernel of its key."""
    tarball = S72.tarball()
    tarball.parent.mkdir(parents=True)
    tarball.write_bytes(b"not really xz")
    tree = S72.src_dir()
    tree.mkdir(parents=True)
    (tree / "Kconfig").write_text("")
    (tree / "Makefile").write_text("VERSION = 7\nPATCHLEVEL = 2\nSUBLEVEL = 13\nEXTRAVERSION =\n")
    for h in source.UAPI_HEADERS:
        (tree / h).parent.mkdir(parents=True, exist_ok=True)
        (tree / h).write_text("/* header */\n")
    st = tarball.stat()
    (tree / source.TARBALL_STAMP).write_text(f"{st.st_size} {st.st_mtime_ns}\n")
    key = kcache.compute_keys("7.2.13", kconfig.fragment_bytes()).cache
    image = root / "kernels" / key / "bzImage"
    image.parent.mkdir(parents=True)
    image.write_bytes(b"bzImage")
    return tree, image


def test_the_lookups_read_under_the_variables_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(root))
    tree, image = fake_7_2(root)
    assert source.find_source(series="7.2") == tree                 # the coverage matrix, the layout test
    assert source.debian_version("7.2") == "7.2.13"
    assert kcache.cached_kernel(series="7.2") == image              # the build's cache
    assert find_kernel("7.2") == image                              # the VM's choice
    assert cli.main(["kernel", "build", "--series", "7.2", "--print-path"]) == 0
    assert capsys.readouterr().out == f"{image}\n"
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "elsewhere"))      # another root: none of it is seen
    assert find_kernel("7.2") is None and source.find_source(series="7.2") is None
    assert kcache.cached_kernel(series="7.2") is None
