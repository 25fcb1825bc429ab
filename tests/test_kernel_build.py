"""The test-kernel builder (harness/kernel: build, cache, kconfig, make, source): keys, verification, cache, CLI.

No real kernel is built: the end-to-end tests drive the real pipeline (merge_config.sh, make
olddefconfig, make bzImage, verification, cache store) against a fake tree whose scripts and
Makefile only pretend.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

from harness import cli
from harness.cache_root import CACHE_ENV
from harness.exitcodes import ENVIRONMENT, NO_MATCH
from harness.kernel import apt, build, kconfig, make, source
from harness.kernel import cache as kcache
from harness.kernel import series as ks


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(root))
    monkeypatch.delenv(ks.KERNEL_ENV, raising=False)
    return root


def no_subprocess(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*a: object, **k: object) -> None:
        raise AssertionError(f"unexpected subprocess {a}")
    monkeypatch.setattr(subprocess, "run", refuse)
    monkeypatch.setattr(subprocess, "Popen", refuse)
    monkeypatch.setattr(make, "gcc_version", lambda: "gcc (test) 0")


# --------------------------------------------------------------------------------------------------
# A fake Linux tree

KCONFIG = """\
mainmenu "Linux/$(ARCH) $(KERNELVERSION) Kernel Configuration"
source "arch/$(SRCARCH)/Kconfig"
source "fs/Kconfig"
"""

ARCH_KCONFIG = """\
config X86
\tdef_bool y

config MICROCODE
\tdef_bool y

config SCHED_MC_PRIO
\tbool "CPU core priorities"
\tselect CPU_FREQ
\tdefault y

config CPU_FREQ
\tbool "CPU frequency scaling"
\thelp
\t  Not an entry:
\t  config BOGUS_FROM_HELP
\t    still help

config VGA_CONSOLE
\tbool "VGA text console" if EXPERT || !X86
\tdefault y

config EXPERT
\tbool "expert"
"""

FS_KCONFIG = """\
menuconfig NETWORK_FILESYSTEMS
\tbool "Network File Systems"

if NETWORK_FILESYSTEMS
rsource "9p/Kconfig"
endif

config NET_9P
\ttristate "Plan 9 Resource Sharing Support (9P2000)"
"""

NINEP_KCONFIG = """\
config 9P_FS
\ttristate "Plan 9 Resource Sharing Support (9P2000)"
\tdepends on NET_9P
"""

MAKEFILE = """\
VERSION = 6
PATCHLEVEL = 12
SUBLEVEL = 0
EXTRAVERSION = -test
NAME = Baby Opossum Posse

olddefconfig:
\t@echo "  HOSTCC  scripts/kconfig/conf.o"

bzImage:
\t@echo "  CC      init/main.o"
\t@echo "  CC      drivers/vfio/group.o"
\t@if [ -e {tree}/FAIL ]; then echo "drivers/vfio/group.c:1: error: boom"; exit 2; fi
\t@mkdir -p $(O)/arch/x86/boot && printf 'kernel image' > $(O)/arch/x86/boot/bzImage
"""

# merge_config.sh -m -O DIR BASE FRAGMENT: base, then the fragment, except lines naming DROPME
# (standing in for a request Kconfig drops).
MERGE = """\
#!/bin/sh
out="$3"; base="$4"; frag="$5"
{ cat "$base"; grep -v DROPME "$frag"; } > "$out/.config"
echo "merged configuration written to $out/.config"
"""


def fake_tree(root: Path) -> Path:
    files = {
        "Makefile": MAKEFILE.replace("{tree}", str(root)),
        "Kconfig": KCONFIG,
        "arch/x86/Kconfig": ARCH_KCONFIG,
        "fs/Kconfig": FS_KCONFIG,
        "fs/9p/Kconfig": NINEP_KCONFIG,
        "arch/x86/configs/x86_64_defconfig": "CONFIG_X86=y\nCONFIG_MICROCODE=y\n",
        "scripts/kconfig/merge_config.sh": MERGE,
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return fake_tree(tmp_path / "linux")


@pytest.fixture
def fragment(tmp_path: Path) -> Path:
    p = tmp_path / "frag.config"
    p.write_text("# test fragment\nCONFIG_NET_9P=y\n# CONFIG_EXPERT is not set\n")
    return p


def put_entry(cache: Path, key: str, image: bytes = b"cached") -> Path:
    d = cache / "kernels" / key
    d.mkdir(parents=True)
    (d / "bzImage").write_bytes(image)
    (d / "build.json").write_text("{}")
    return d / "bzImage"


# --------------------------------------------------------------------------------------------------
# Keys


def test_key_is_version_and_fragment_sha() -> None:
    k = kcache.compute_keys("6.12.117", b"CONFIG_VFIO=y\n")
    sha = kcache.sha256(b"CONFIG_VFIO=y\n")
    assert k.cache == k.build == f"6.12.117-{sha[:12]}"
    assert k.fragment_sha == sha


def test_fragment_change_changes_the_key() -> None:
    a = kcache.compute_keys("6.12.117", b"CONFIG_VFIO=y\n")
    assert kcache.compute_keys("6.12.117", b"CONFIG_VFIO=y\n") == a
    assert kcache.compute_keys("6.12.117", b"CONFIG_VFIO=y\n# a comment\n").cache != a.cache
    assert kcache.compute_keys("6.12.118", b"CONFIG_VFIO=y\n").cache != a.cache
    plain = kconfig.fragment_bytes(kconfig.FRAGMENT)
    assert kcache.compute_keys("6.12.117", kconfig.fragment_bytes(coverage=True)).cache != \
        kcache.compute_keys("6.12.117", plain).cache


def test_tree_key_follows_edits_but_keeps_its_build_directory(tree: Path) -> None:
    assert source.tree_version(tree) == "6.12.0-test"
    a = kcache.compute_keys("6.12.0-test", b"x", tree)
    assert a.build.startswith(kcache.compute_keys("6.12.0-test", b"x").build + "-")
    assert kcache.compute_keys("6.12.0-test", b"x", tree) == a
    st = (tree / "fs/Kconfig").stat()
    os.utime(tree / "fs/Kconfig", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    b = kcache.compute_keys("6.12.0-test", b"x", tree)
    assert b.build == a.build and b.cache != a.cache
    (tree / ".git").mkdir()
    (tree / ".git" / "index").write_text("ignored")
    assert kcache.compute_keys("6.12.0-test", b"x", tree) == b
    (tree / "new.c").write_text("")
    os.utime(tree / "new.c", ns=(0, 0))
    assert kcache.compute_keys("6.12.0-test", b"x", tree).cache != b.cache


def test_keys_are_the_ones_existing_builds_were_stored_under(tmp_path: Path) -> None:
    """Literal keys, computed by the code before the cache moved to kernel/cache.py: a change
    here renames every cached kernel and costs a cold build (10+ minutes) on every machine."""
    assert kcache.compute_keys("6.12.118", b"CONFIG_VFIO=y\n") == kcache.Keys(
        "6.12.118", "e1cbf0e1f1347b7b9032575e8bef493583a2a1e6d96431fa0e482076bacb9b9b",
        "6.12.118-e1cbf0e1f134", "6.12.118-e1cbf0e1f134")
    tree = tmp_path / "t"
    tree.mkdir()
    (tree / "a").write_text("x\n")
    os.utime(tree / "a", (1700000000, 1700000000))
    assert kcache.tree_state(tree) == "927710ff"
    k = kcache.compute_keys("7.2.13", b"CONFIG_VFIO=y\n", tree)
    path_sha = kcache.sha256(str(tree.resolve()).encode())[:8]
    assert (k.build, k.cache) == (f"7.2.13-e1cbf0e1f134-{path_sha}", f"7.2.13-e1cbf0e1f134-{path_sha}-927710ff")


def test_the_kernels_in_this_machines_cache_keep_their_keys() -> None:
    """Each Debian-source kernel of the real cache (its build.json) built with the shipped fragment,
    plain or --coverage, is found under the key compute_keys gives for its version today."""
    real = Path(os.environ.get("HOME", "/root")) / ".cache" / "vfio-conformance" / "kernels"
    fragments = {kcache.sha256(b): b for b in (kconfig.fragment_bytes(), kconfig.fragment_bytes(coverage=True))}
    checked = []
    for info_path in sorted(real.glob("*/build.json")):
        info = json.loads(info_path.read_text())
        if not str(info.get("source_kind", "")).startswith("debian") or info.get("fragment_sha256") not in fragments:
            continue
        keys = kcache.compute_keys(str(info["kernelversion"]), fragments[str(info["fragment_sha256"])])
        assert info_path.parent.name == keys.cache == info["key"]
        checked.append(keys.cache)
    if not checked:
        pytest.skip(f"no kernel of the shipped fragment built from a Debian source in {real}")


def test_makefile_version() -> None:
    assert source.makefile_version("VERSION = 6\nPATCHLEVEL = 12\nSUBLEVEL = 117\nEXTRAVERSION =\n") == "6.12.117"
    assert source.makefile_version("VERSION = 6\nPATCHLEVEL = 13\nSUBLEVEL = 0\nEXTRAVERSION = -rc3\n") == "6.13.0-rc3"
    with pytest.raises(build.KernelBuildError):
        source.makefile_version("all:\n")


def test_not_a_tree(tmp_path: Path) -> None:
    with pytest.raises(build.KernelBuildError, match="not a Linux source tree"):
        source.tree_version(tmp_path)


# --------------------------------------------------------------------------------------------------
# Fragment verification

FRAG = """\
CONFIG_IOMMUFD=y
CONFIG_CMDLINE="console=ttyS0"
CONFIG_NR_CPUS=8
CONFIG_DRM=n
# CONFIG_SOUND is not set
CONFIG_HID=n
"""


def test_verify_accepts_a_config_that_honours_every_request() -> None:
    config = textwrap.dedent("""\
        CONFIG_IOMMUFD=y
        CONFIG_CMDLINE="console=ttyS0"
        CONFIG_NR_CPUS=8
        # CONFIG_DRM is not set
        CONFIG_SOUND=n
        """)   # HID absent: unset satisfies =n
    v = kconfig.verify_config(FRAG, config)
    assert v.ok and v.failures == [] and v.unknown == []


def test_verify_lists_every_request_that_did_not_stick() -> None:
    config = "# CONFIG_IOMMUFD is not set\nCONFIG_CMDLINE=\"\"\nCONFIG_NR_CPUS=8\nCONFIG_DRM=y\nCONFIG_HID=m\n"
    v = kconfig.verify_config(FRAG, config)
    assert not v.ok
    assert v.failures == [
        "CONFIG_IOMMUFD=y requested, got not set",
        'CONFIG_CMDLINE="console=ttyS0" requested, got ""',
        "CONFIG_DRM=n requested, got y",
        "CONFIG_HID=n requested, got m",
    ]


def test_verify_explains_drops_from_kconfig(tree: Path) -> None:
    frag = "CONFIG_9P_FS=y\nCONFIG_CPU_FREQ=n\nCONFIG_MICROCODE=n\nCONFIG_VGA_CONSOLE=n\nCONFIG_GONE=n\n" \
           "CONFIG_NEW_THING=y\n"
    config = "CONFIG_X86=y\nCONFIG_NET_9P=y\nCONFIG_SCHED_MC_PRIO=y\nCONFIG_CPU_FREQ=y\nCONFIG_MICROCODE=y\n" \
             "CONFIG_VGA_CONSOLE=y\n"
    v = kconfig.verify_config(frag, config, tree)
    why = dict(f.split(" requested, ", 1) for f in v.failures)
    assert set(why) == {"CONFIG_9P_FS=y", "CONFIG_CPU_FREQ=n", "CONFIG_MICROCODE=n", "CONFIG_VGA_CONSOLE=n",
                        "CONFIG_NEW_THING=y"}
    # the enclosing `if NETWORK_FILESYSTEMS` of the file that sources fs/9p/Kconfig counts
    assert why["CONFIG_9P_FS=y"] == ("got not set: depends on NETWORK_FILESYSTEMS [=n] && NET_9P [=y] "
                                     "(fs/9p/Kconfig:1)")
    assert why["CONFIG_CPU_FREQ=n"] == "got y: selected by SCHED_MC_PRIO [=y]"
    assert "no prompt (arch/x86/Kconfig:4)" in why["CONFIG_MICROCODE=n"]
    assert "prompt only if EXPERT [=n] || !X86 [=y]" in why["CONFIG_VGA_CONSOLE=n"]
    assert "not a Kconfig symbol of this tree" in why["CONFIG_NEW_THING=y"]
    assert v.unknown == ["CONFIG_GONE"]


def test_kconfig_reader_skips_help_text(tree: Path) -> None:
    kc = kconfig.parse_kconfig(tree)
    assert "BOGUS_FROM_HELP" not in kc.entries
    assert {"X86", "MICROCODE", "SCHED_MC_PRIO", "CPU_FREQ", "VGA_CONSOLE", "EXPERT", "NETWORK_FILESYSTEMS",
            "NET_9P", "9P_FS"} <= set(kc.entries)
    assert kc.entries["VGA_CONSOLE"][0].prompt_if == "EXPERT || !X86"


def test_shipped_fragment_requests_each_symbol_once() -> None:
    lines = [ln for ln in kconfig.FRAGMENT.read_text().splitlines() if ln.startswith("CONFIG_")]
    syms = [ln.split("=", 1)[0] for ln in lines]
    assert len(syms) == len(set(syms))
    assert kconfig.parse_config(kconfig.FRAGMENT.read_text())["CONFIG_IOMMUFD"] == "y"


@pytest.mark.kernel
def test_shipped_fragment_names_only_symbols_of_the_tree() -> None:
    src = os.environ.get("VFIO_CONFORMANCE_KSRC")
    if not src or not (Path(src) / "Kconfig").is_file():
        pytest.skip("no full Linux tree in $VFIO_CONFORMANCE_KSRC")
    kc = kconfig.parse_kconfig(Path(src))
    wanted = kconfig.parse_config(kconfig.FRAGMENT.read_text())
    assert [s for s in wanted if s.removeprefix("CONFIG_") not in kc.entries] == []


# --------------------------------------------------------------------------------------------------
# Cache


def test_cache_hit_for_a_tree_runs_nothing(tree: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = kcache.compute_keys(source.tree_version(tree), kconfig.fragment_bytes(), tree)
    image = put_entry(cache, keys.cache)
    no_subprocess(monkeypatch)
    assert build.ensure_kernel(tree) == image
    assert kcache.cached_kernel(tree) == image


def test_cache_hit_for_debian_source_runs_nothing(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(source, "debian_version", lambda series=None, tarball=None: "6.12.117")
    keys = kcache.compute_keys("6.12.117", kconfig.fragment_bytes())
    image = put_entry(cache, keys.cache)
    no_subprocess(monkeypatch)
    assert build.ensure_kernel() == image
    assert kcache.cached_kernel(coverage=True) is None


def test_kernel_env_short_circuits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    img = tmp_path / "bzImage"
    img.write_bytes(b"mine")
    monkeypatch.setenv(ks.KERNEL_ENV, str(img))
    no_subprocess(monkeypatch)
    assert build.ensure_kernel() == img
    monkeypatch.setenv(ks.KERNEL_ENV, str(tmp_path / "missing"))
    with pytest.raises(build.KernelBuildError, match="not a file"):
        build.ensure_kernel()


def finished_build_dir(cache: Path, key: str, log_end: str, config: str) -> Path:
    d = cache / "build" / key
    (d / "arch/x86/boot").mkdir(parents=True)
    (d / "arch/x86/boot/bzImage").write_bytes(b"adopted image")
    (d / ".config").write_text(config)
    (d / "build.log").write_text(
        "  CC      init/main.o\nKernel: arch/x86/boot/bzImage is ready  (#1)\n"
        "\tElapsed (wall clock) time (h:mm:ss or m:ss): 14:50.61\n"
        f"\tMaximum resident set size (kbytes): 460144\n\tExit status: 0\n{log_end}\n")
    return d


def test_a_finished_build_directory_is_adopted(cache: Path, fragment: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(source, "debian_version", lambda series=None, tarball=None: "6.12.117")
    keys = kcache.compute_keys("6.12.117", fragment.read_bytes())
    finished_build_dir(cache, keys.build, "exit 0", "CONFIG_NET_9P=y\n")
    no_subprocess(monkeypatch)
    image = build.ensure_kernel(fragment=fragment)
    assert image == cache / "kernels" / keys.cache / "bzImage"
    assert image.read_bytes() == b"adopted image"
    info = json.loads((image.parent / "build.json").read_text())
    assert info["kernelversion"] == "6.12.117" and info["fragment_sha256"] == keys.fragment_sha
    assert info["bzimage_bytes"] == len(b"adopted image")
    assert info["duration_s"] == 890.6 and info["max_rss_kb"] == 460144     # from /usr/bin/time -v
    assert (image.parent / "config").read_text() == "CONFIG_NET_9P=y\n"
    assert not list((cache / "kernels").glob(".*")), "no temporary left behind"
    assert image.parent.stat().st_mode & 0o777 == 0o755


@pytest.mark.parametrize(("log_end", "config"), [
    ("exit 2", "CONFIG_NET_9P=y\n"),                   # failed
    ("  LD  vmlinux", "CONFIG_NET_9P=y\n"),            # still running, or killed
    ("exit 0", "# CONFIG_NET_9P is not set\n"),        # built, but not with what the fragment asks
])
def test_unfinished_failed_or_wrong_build_directories_are_not_adopted(
        cache: Path, fragment: Path, monkeypatch: pytest.MonkeyPatch, log_end: str, config: str) -> None:
    keys = kcache.compute_keys("6.12.117", fragment.read_bytes())
    d = finished_build_dir(cache, keys.build, log_end, config)
    assert not kcache.adoptable(d, fragment.read_bytes())


# --------------------------------------------------------------------------------------------------
# CLI


def test_cli_print_path_exit_codes(tree: Path, cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["kernel", "build", "--print-path", "--source", str(tree)]
    assert cli.main(argv) == NO_MATCH
    out, err = capsys.readouterr()
    assert out == "" and "no cached kernel" in err
    keys = kcache.compute_keys(source.tree_version(tree), kconfig.fragment_bytes(), tree)
    image = put_entry(cache, keys.cache)
    assert cli.main(argv) == 0
    assert capsys.readouterr().out == f"{image}\n"


def test_cli_print_path_without_debian_source(monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(source, "debian_version", lambda series=None, tarball=None: None)
    assert cli.main(["kernel", "build", "--print-path"]) == NO_MATCH
    assert capsys.readouterr().out == ""


def test_cli_reports_errors_on_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["kernel", "build", "--source", str(tmp_path)]) == ENVIRONMENT
    out, err = capsys.readouterr()
    assert out == "" and "not a Linux source tree" in err


# --------------------------------------------------------------------------------------------------
# The pipeline, on a fake tree

needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="no make")


@needs_make
def test_build_end_to_end(tree: Path, fragment: Path, cache: Path, monkeypatch: pytest.MonkeyPatch,
                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(make, "ensure_prereqs", lambda: None)
    assert cli.main(["kernel", "build", "--source", str(tree), "--fragment", str(fragment), "-j", "2"]) == 0
    out = capsys.readouterr().out
    image = Path(out.strip())
    assert out == f"{image}\n" and image.read_bytes() == b"kernel image"
    keys = kcache.compute_keys("6.12.0-test", fragment.read_bytes(), tree)
    assert image == cache / "kernels" / keys.cache / "bzImage"
    info = json.loads((image.parent / "build.json").read_text())
    assert info["source"] == str(tree) and info["jobs"] == 2 and info["coverage"] is False
    assert info["duration_s"] >= 0 and info["date"] and info["gcc"]
    log = (cache / "build" / keys.build / "build.log").read_text()
    assert "merged configuration" in log and "CC      drivers/vfio/group.o" in log
    assert log.rstrip().endswith("exit 0")
    assert "CONFIG_NET_9P=y" in (image.parent / "config").read_text()
    # a second call is a hit: nothing runs
    no_subprocess(monkeypatch)
    assert build.ensure_kernel(tree, fragment=fragment) == image


@needs_make
def test_build_failure_shows_the_log_tail(tree: Path, fragment: Path, cache: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(make, "ensure_prereqs", lambda: None)
    (tree / "FAIL").write_text("")
    with pytest.raises(build.KernelBuildError, match=r"(?s)make bzImage failed \(exit 2\).*error: boom"):
        build.ensure_kernel(tree, fragment=fragment)
    keys = kcache.compute_keys("6.12.0-test", fragment.read_bytes(), tree)
    assert (cache / "build" / keys.build / "build.log").read_text().rstrip().endswith("exit 2")
    assert not (cache / "kernels" / keys.cache).exists()


@needs_make
def test_build_stops_before_make_when_a_request_is_dropped(tree: Path, tmp_path: Path, cache: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(make, "ensure_prereqs", lambda: None)
    frag = tmp_path / "f.config"
    # the merge stub drops the 9P_FS line, as Kconfig does without NETWORK_FILESYSTEMS
    frag.write_text("CONFIG_NET_9P=y\nCONFIG_9P_FS=y\n")
    (tree / "scripts/kconfig/merge_config.sh").write_text(MERGE.replace("DROPME", "9P_FS"))
    with pytest.raises(kconfig.KernelConfigError) as e:
        build.ensure_kernel(tree, fragment=frag)
    assert "CONFIG_9P_FS=y requested, got not set: depends on NETWORK_FILESYSTEMS [=n] && NET_9P [=y]" in str(e.value)
    keys = kcache.compute_keys("6.12.0-test", frag.read_bytes(), tree)
    log = (cache / "build" / keys.build / "build.log").read_text()
    assert "bzImage" not in log.split("olddefconfig", 1)[1] and log.rstrip().endswith("exit 1")


def test_run_logged_streams_and_reports_progress(tmp_path: Path) -> None:
    script = "import time\nfor f in ('a.o', 'b.o'):\n    print('  CC      ' + f, flush=True)\n    time.sleep(0.4)\n"
    log_path = tmp_path / "log"
    err = tmp_path / "err"
    with open(log_path, "w") as log, open(err, "w") as e:
        rc = make.run_logged([sys.executable, "-c", script], log, label="t", progress_every=0.3, err=e)
    assert rc == 0
    assert "  CC      a.o\n  CC      b.o\n" in log_path.read_text()
    progress = err.read_text()
    assert "[kernel] t: 0m00s elapsed, last: CC a.o" in progress


# --------------------------------------------------------------------------------------------------
# Debian's tarball


PACKAGE = source.get_series().package


def make_tarball(tmp_path: Path, sublevel: int) -> Path:
    top = tmp_path / f"t{sublevel}" / PACKAGE
    fake_tree(top)
    (top / "Makefile").write_text(f"VERSION = 6\nPATCHLEVEL = 12\nSUBLEVEL = {sublevel}\nEXTRAVERSION =\n")
    tarball = tmp_path / f"{PACKAGE}.tar.xz"
    with tarfile.open(tarball, "w:xz") as t:
        t.add(top, arcname=PACKAGE)
    return tarball


@pytest.mark.skipif(shutil.which("xz") is None, reason="no xz")
def test_debian_source_is_extracted_once_and_again_when_the_tarball_changes(
        tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tarball = make_tarball(tmp_path, 117)
    src = source.debian_source(tarball=tarball)
    assert src == cache / "src" / PACKAGE
    assert source.tree_version(src) == "6.12.117" and source.debian_version(tarball=tarball) == "6.12.117"
    assert [p.name for p in src.parent.iterdir() if p.name.startswith(".extract-")] == []
    real = subprocess.run, subprocess.Popen
    no_subprocess(monkeypatch)
    assert source.debian_source(tarball=tarball) == src                # stamp matches: no tar
    monkeypatch.setattr(subprocess, "run", real[0])
    monkeypatch.setattr(subprocess, "Popen", real[1])
    tarball = make_tarball(tmp_path, 118)
    os.utime(tarball, ns=(0, 10**18))
    assert source.tree_version(source.debian_source(tarball=tarball)) == "6.12.118"


def test_missing_tarball_without_root_says_what_to_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(apt, "_is_root", lambda: False)
    with pytest.raises(build.KernelBuildError,
                       match=re.escape("as root run: apt-get update && apt-get install -y "
                                       "--no-install-recommends linux-source-6.12")):
        source.debian_source(tarball=tmp_path / "absent.tar.xz")


def test_prereqs_are_named_by_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(make, "PREREQ_LIBS", {"libelf-dev": "/nonexistent/gelf.h"})
    assert make.missing_prereqs() == ["make", "gcc", "flex", "bison", "bc", "libelf-dev"]
    monkeypatch.setattr(apt, "_is_root", lambda: False)
    with pytest.raises(build.KernelBuildError, match="building the kernel needs bc bison flex gcc libelf-dev make"):
        make.ensure_prereqs()
