"""Kernel series as an input (harness/kernel/series.py): the table, how a series' source is fetched
and found, the one cache root, and which kernel a run uses when none is named.

The fetch runs for real: apt-get and dpkg-deb against a local file: repository holding a small
``linux-source-7.2`` package (offline), and against Debian's own archive (skipped offline unless
$VFIO_CONFORMANCE_REQUIRE_NETWORK=1, which CI sets).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import tarfile
import urllib.parse
from pathlib import Path

import pytest
from kernel_source import unavailable

from harness import cli
from harness.cache_root import CACHE_ENV
from harness.exitcodes import USAGE_ERROR
from harness.kernel import build, kconfig, source
from harness.kernel import cache as kcache
from harness.kernel import series as ks
from harness.kernel.image import image_version
from harness.kernel.under_test import kernel_image
from harness.vm import find_kernel

NETWORK_ENV = "VFIO_CONFORMANCE_REQUIRE_NETWORK"
S612 = ks.get_series("6.12")
S72 = ks.get_series("7.2")


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    r = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(r))
    for s in ks.SERIES.values():
        monkeypatch.delenv(s.kernel_env, raising=False)
        monkeypatch.delenv(s.ksrc_env, raising=False)
    return r


# --------------------------------------------------------------------------------------------------
# The table


def test_series_table() -> None:
    assert ks.DEFAULT_SERIES == "6.12" and ks.get_series() is S612 and ks.get_series(None) is S612
    assert (S612.package, S612.obtain) == ("linux-source-6.12", ks.INSTALL)
    assert (S72.package, S72.suite, S72.obtain) == ("linux-source-7.2", "unstable", ks.DOWNLOAD)
    for s in ks.SERIES.values():
        assert s.package == f"linux-source-{s.name}"
    assert S612.tarball() == Path("/usr/src/linux-source-6.12.tar.xz")
    assert (S612.kernel_env, S612.ksrc_env) == ("VFIO_CONFORMANCE_KERNEL", "VFIO_CONFORMANCE_KSRC")
    assert (S72.kernel_env, S72.ksrc_env) == ("VFIO_CONFORMANCE_KERNEL_7_2", "VFIO_CONFORMANCE_KSRC_7_2")
    with pytest.raises(ValueError, match=r"unknown kernel series '5\.10'"):
        ks.get_series("5.10")
    with pytest.raises(build.KernelBuildError, match=r"known: 6\.12, 7\.2"):
        source.get_series("5.10")


def test_cli_offers_exactly_the_table() -> None:
    p = cli.parser()
    for argv in (["kernel", "build"], ["vm"], ["fuzz"], ["faults"]):
        for name in ks.SERIES:
            assert p.parse_args([*argv, "--series", name]).series == name
        assert p.parse_args(argv).series is None


@pytest.mark.parametrize("argv", [["vm", "--kernel", "x", "--series", "7.2"],
                                  ["kernel", "build", "--source", "x", "--series", "7.2"],
                                  ["vm", "--series", "5.10"]])
def test_cli_rejects_two_choices_of_kernel_or_an_unknown_series(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as e:
        cli.parser().parse_args(argv)
    assert e.value.code == USAGE_ERROR


# --------------------------------------------------------------------------------------------------
# The fetch: command lines


def test_fetch_command_lines(root: Path) -> None:
    assert ks.sources_line("unstable") == ("deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
                                           "http://deb.debian.org/debian unstable main")
    apt = S72.apt_dir()
    assert apt == root / "apt" / "unstable"
    opts = ["-o", f"Dir::Etc::sourcelist={apt}/sources.list", "-o", "Dir::Etc::sourceparts=-",
            "-o", f"Dir::State::Lists={apt}/lists", "-o", f"Dir::Cache={apt}/cache"]
    assert ks.update_command(apt) == ["apt-get", "-q", *opts, "update"]
    assert ks.download_command(apt, "linux-source-7.2") == ["apt-get", "-q", *opts, "download", "linux-source-7.2"]
    assert ks.unpack_command(Path("/d/p.deb"), Path("/x")) == ["dpkg-deb", "-x", "/d/p.deb", "/x"]
    assert S72.tarball() == root / "deb" / "linux-source-7.2" / "usr" / "src" / "linux-source-7.2.tar.xz"
    assert S72.src_dir() == root / "src" / "linux-source-7.2"


# --------------------------------------------------------------------------------------------------
# The fetch, for real, from a local repository

needs_apt = pytest.mark.skipif(any(shutil.which(t) is None for t in ("apt-get", "dpkg-deb", "xz")),
                               reason="needs apt-get, dpkg-deb and xz (Debian)")

HEADERS = {f: f"/* {f} of the fake 7.2 */\n" for f in source.UAPI_HEADERS}


def fake_tree(top: Path, version: str) -> None:
    major, minor, sub = version.split(".")
    top.mkdir(parents=True)
    (top / "Makefile").write_text(f"VERSION = {major}\nPATCHLEVEL = {minor}\nSUBLEVEL = {sub}\nEXTRAVERSION =\n")
    (top / "Kconfig").write_text("")
    for f, text in HEADERS.items():
        (top / f).parent.mkdir(parents=True, exist_ok=True)
        (top / f).write_text(text)


def local_repository(tmp_path: Path, version: str) -> Path:
    """A Debian repository (dists/unstable/main, unsigned) with linux-source-7.2 at ``version``-1."""
    pkg = tmp_path / "pkg"
    fake_tree(tmp_path / "tree" / S72.package, version)
    (pkg / "usr/src").mkdir(parents=True)
    with tarfile.open(pkg / f"usr/src/{S72.package}.tar.xz", "w:xz") as t:
        t.add(tmp_path / "tree" / S72.package, arcname=S72.package)
    (pkg / "DEBIAN").mkdir()
    (pkg / "DEBIAN/control").write_text(f"Package: {S72.package}\nVersion: {version}-1\nArchitecture: all\n"
                                        "Maintainer: test <test@example.org>\nDescription: fake source\n")
    repo = tmp_path / "repo"
    deb = repo / "pool" / f"{S72.package}_{version}-1_all.deb"
    deb.parent.mkdir(parents=True)
    subprocess.run(["dpkg-deb", "-b", str(pkg), str(deb)], check=True, capture_output=True)
    data = deb.read_bytes()
    packages = (f"Package: {S72.package}\nVersion: {version}-1\nArchitecture: all\n"
                f"Filename: pool/{deb.name}\nSize: {len(data)}\nSHA256: {hashlib.sha256(data).hexdigest()}\n"
                "Description: fake source\n\n").encode()
    dists = repo / "dists" / "unstable"
    (dists / "main/binary-amd64").mkdir(parents=True)
    (dists / "main/binary-amd64/Packages").write_bytes(packages)
    (dists / "Release").write_text(
        "Suite: unstable\nCodename: unstable\nDate: Thu, 03 Dec 2026 00:00:00 UTC\nComponents: main\n"
        f"Architectures: amd64\nSHA256:\n {hashlib.sha256(packages).hexdigest()} {len(packages)} "
        "main/binary-amd64/Packages\n")
    return repo


@needs_apt
def test_a_downloaded_series_is_fetched_unpacked_and_extracted_once(
        root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = local_repository(tmp_path, "7.2.99")
    monkeypatch.setattr(ks, "sources_line", lambda suite: f"deb [trusted=yes] file:{repo} {suite} main")
    apt_lists = sorted(Path("/var/lib/apt/lists").glob("*"))
    assert source.debian_version("7.2") is None and kcache.cached_kernel(series="7.2") is None   # nothing fetched
    src = source.debian_source("7.2")
    assert src == root / "src" / S72.package and source.tree_version(src) == "7.2.99"
    assert (src / ".tarball").is_file() and source.debian_version("7.2") == "7.2.99"
    assert ks.deb_version(S72) == "7.2.99-1"
    assert S72.tarball().is_file() and (root / "apt/unstable/lists/partial").is_dir()
    assert (root / "apt/unstable/sources.list").read_text() == f"deb [trusted=yes] file:{repo} unstable main\n"
    assert not [p for p in (root / "deb").iterdir() if p.name.startswith(".")], "no temporary left behind"
    assert sorted(Path("/var/lib/apt/lists").glob("*")) == apt_lists, "the machine's apt lists are untouched"
    # the headers another test compiles against
    assert source.find_source(series="7.2") == src
    assert (src / source.UAPI_HEADERS[0]).read_text() == HEADERS[source.UAPI_HEADERS[0]]
    # a second call: stamp and tarball match, no apt-get, no tar
    real = subprocess.run

    def refuse(*a: object, **k: object) -> None:
        raise AssertionError(f"unexpected subprocess {a}")
    monkeypatch.setattr(subprocess, "run", refuse)
    assert source.debian_source("7.2") == src
    monkeypatch.setattr(subprocess, "run", real)


@needs_apt
def test_a_tree_extracted_by_hand_is_replaced_by_the_tarballs(root: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    repo = local_repository(tmp_path, "7.2.13")
    ks.download(S72, line=f"deb [trusted=yes] file:{repo} unstable main")
    by_hand = S72.src_dir()
    fake_tree(by_hand, "7.2.13")
    (by_hand / "EDITED").write_text("not in the tarball")
    # no stamp: the version comes from the downloaded package, and the tree is not trusted as a build source
    assert source.debian_version("7.2") == "7.2.13"
    src = source.debian_source("7.2")
    assert src == by_hand and not (src / "EDITED").exists() and (src / ".tarball").is_file()
    assert not [p for p in src.parent.iterdir() if p.name.startswith(".old-") or p.name.startswith(".extract-")]


@needs_apt
def test_a_failed_download_says_what_failed(root: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ks.FetchError, match=r"apt-get .* update failed \(100\)"):
        ks.download(S72, line=f"deb [trusted=yes] file:{tmp_path / 'empty'} unstable main")
    assert not S72.deb_root().exists()


def test_find_source_takes_the_series_own_variable(root: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    tree612, tree72 = tmp_path / "t612", tmp_path / "t72"
    fake_tree(tree612, "6.12.118")
    fake_tree(tree72, "7.2.13")
    monkeypatch.setenv(S612.ksrc_env, str(tree612))
    assert source.find_source() == tree612
    assert source.find_source(series="7.2") is None          # $VFIO_CONFORMANCE_KSRC is 6.12's only
    monkeypatch.setenv(S72.ksrc_env, str(tree72))
    assert source.find_source(source.UAPI_HEADERS, series="7.2") == tree72
    with pytest.raises(FileNotFoundError, match=r"VFIO_CONFORMANCE_KSRC_7_2=.* has no nope\.c"):
        source.find_source(["nope.c"], series="7.2")


def test_find_source_uses_the_cache_extracted_tree(root: Path) -> None:
    fake_tree(S72.src_dir(), "7.2.13")          # extracted by the build, or by hand
    assert source.find_source(series="7.2") == S72.src_dir()
    assert source.find_source(["Makefile", "missing.c"], series="7.2") is None   # no tarball to extract from


def test_find_source_on_the_real_7_2_tree() -> None:
    """The 7.2 headers, as the layout test reads them: from `kernel build --series 7.2`'s extraction
    (CI builds it before pytest) or $VFIO_CONFORMANCE_KSRC_7_2."""
    root = source.find_source(source.UAPI_HEADERS, series="7.2")
    if root is None:
        unavailable("no Linux 7.2 source: run `vfio-conformance kernel build --series 7.2` or set "
                    f"${S72.ksrc_env}")
    assert root is not None
    assert source.tree_version(root).startswith("7.2.") if (root / "Makefile").is_file() else True
    assert "VFIO_DEVICE_ATTACH_PASID" in (root / "include/uapi/linux/vfio.h").read_text()   # 7.2 only


# --------------------------------------------------------------------------------------------------
# The fetch, for real, from Debian


def _online(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    try:
        socket.create_connection((host, 80), timeout=5).close()
        return True
    except OSError:
        return False


@needs_apt
def test_debian_unstable_has_the_7_2_source(root: Path) -> None:
    """apt-get update and download --print-uris with the cache's own sources and lists, for real: the
    signature checks against Debian's keyring and the package resolves (about 11 MB of lists)."""
    if not _online(ks.DEBIAN_MIRROR):
        if os.environ.get(NETWORK_ENV) == "1":
            pytest.fail(f"the Debian archive is unreachable ({NETWORK_ENV}=1)")
        pytest.skip("offline: the Debian archive is unreachable")
    if not ks.DEBIAN_KEYRING.is_file():
        unavailable(f"no {ks.DEBIAN_KEYRING} (debian-archive-keyring)")
    apt = S72.apt_dir()
    (apt / "lists/partial").mkdir(parents=True)
    (apt / "cache").mkdir()
    (apt / "sources.list").write_text(ks.sources_line(S72.suite) + "\n")
    r = subprocess.run(ks.update_command(apt), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not [w for w in r.stderr.splitlines() if "NO_PUBKEY" in w or "not signed" in w], r.stderr
    cmd = ks.download_command(apt, S72.package)
    r = subprocess.run([*cmd[:-2], "--print-uris", *cmd[-2:]], capture_output=True, text=True, timeout=120,
                       cwd=root)
    assert r.returncode == 0, r.stdout + r.stderr
    uri, name, size = r.stdout.split()[:3]
    assert uri.strip("'").startswith(ks.DEBIAN_MIRROR + "/pool/main/l/linux/")
    assert name.startswith(f"{S72.package}_7.2.") and name.endswith("_all.deb") and int(size) > 100_000_000


# --------------------------------------------------------------------------------------------------
# Which kernel a run uses


def put_kernel(root: Path, key: str, version: str, coverage: bool = False) -> Path:
    d = root / "kernels" / key
    d.mkdir(parents=True)
    (d / "bzImage").write_bytes(b"image " + key.encode())
    (d / "build.json").write_text(json.dumps({"kernelversion": version, "coverage": coverage}))
    return d / "bzImage"


def downloaded(root: Path, version: str) -> None:
    """What a 7.2 download leaves (the version is read from the .deb's name)."""
    S72.tarball().parent.mkdir(parents=True)
    S72.tarball().write_bytes(b"")
    (S72.deb_root() / ks.DEB_STAMP).write_text(f"{S72.package}_{version}-1_all.deb\n")


def test_the_default_run_never_boots_another_series(root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    v612 = source.debian_version("6.12")
    if v612 is None:
        pytest.skip("linux-source-6.12 is not installed (its version keys the 6.12 kernel)")
    frag = kconfig.fragment_bytes()
    downloaded(root, "7.2.13")
    k72 = put_kernel(root, kcache.compute_keys("7.2.13", frag).cache, "7.2.13")
    put_kernel(root, f"7.2.13-{kcache.compute_keys('7.2.13', frag).build}-tree-state", "7.2.13")   # a --source build
    put_kernel(root, kcache.compute_keys(v612, kconfig.fragment_bytes(coverage=True)).cache, v612, coverage=True)
    # only 7.2 (and 6.12's gcov build) are there: no default kernel, whatever their mtimes
    assert find_kernel() is None and build.select_kernel(build=False) == (
        None, "series 6.12: the cached build of linux-source-6.12")
    assert find_kernel("7.2") == k72
    k612 = put_kernel(root, kcache.compute_keys(v612, frag).cache, v612)
    os.utime(k612, (1, 1))                                            # the oldest image in the cache
    assert find_kernel() == k612 and find_kernel("6.12") == k612 and find_kernel("7.2") == k72
    assert kcache.cached_kernel(coverage=True) != k612
    # each series' variable, and only its own
    mine = tmp_path / "bzImage"
    mine.write_bytes(b"mine")
    monkeypatch.setenv(S612.kernel_env, str(mine))
    assert find_kernel() == mine and find_kernel("7.2") == k72
    monkeypatch.setenv(S72.kernel_env, str(mine))
    assert find_kernel("7.2") == mine
    monkeypatch.setenv(S72.kernel_env, str(tmp_path / "missing"))
    assert find_kernel("7.2") is None
    with pytest.raises(build.KernelBuildError, match=r"VFIO_CONFORMANCE_KERNEL_7_2=.* is not a file"):
        build.ensure_kernel(series="7.2")
    monkeypatch.delenv(S612.kernel_env)
    monkeypatch.delenv(S72.kernel_env)
    # the CLI says which kernel and why
    assert kernel_image(None) == k612
    assert capsys.readouterr().err == (f"vfio-conformance: kernel under test: {k612} (Linux {v612}; "
                                       "series 6.12: the cached build of linux-source-6.12)\n")
    assert kernel_image(None, series="7.2") == k72
    assert "(Linux 7.2.13; series 7.2: the cached build of linux-source-7.2)" in capsys.readouterr().err
    assert kernel_image(str(mine)) == mine
    assert capsys.readouterr().err == f"vfio-conformance: kernel under test: {mine} (version unknown; --kernel)\n"
    assert cli.main(["kernel", "build", "--print-path", "--series", "7.2"]) == 0
    assert capsys.readouterr().out == f"{k72}\n"


def test_image_version_reads_the_setup_header(tmp_path: Path) -> None:
    image = bytearray(0x1000)
    image[0x202:0x206] = b"HdrS"
    image[0x20E:0x210] = (0x300).to_bytes(2, "little")
    image[0x500:0x530] = b"7.2.13 (root@ci) #1 SMP PREEMPT\0".ljust(0x30, b"\0")
    (tmp_path / "bzImage").write_bytes(bytes(image))
    assert image_version(tmp_path / "bzImage") == "7.2.13"
    (tmp_path / "other").write_bytes(b"not a kernel")
    assert image_version(tmp_path / "other") is None
