"""``kernel build --sanitizers``: the sanitizer options composed into the fragment, their own cache key,
and the merged .config that carries them (the fake tree of test_kernel_build drives the real pipeline).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from harness import cli
from harness.exitcodes import NO_MATCH
from harness.kernel import build, kconfig, make
from harness.kernel import cache as kcache
from harness.kernel.image import describe_kernel

# cache: test_kernel_build's autouse fixture (an empty kernel cache of the test's own), active here too
from tests.test_kernel_build import cache, fake_tree, needs_make  # noqa: F401

SANITIZER_REQUESTS = kconfig.parse_config(kconfig.SANITIZERS_FRAGMENT.read_text())


def test_the_sanitizer_fragment_asks_for_kasan_ubsan_lockdep_and_debug_objects() -> None:
    for sym in ("CONFIG_KASAN", "CONFIG_KASAN_GENERIC", "CONFIG_UBSAN", "CONFIG_PROVE_LOCKING", "CONFIG_DEBUG_OBJECTS"):
        assert SANITIZER_REQUESTS[sym] == "y", sym
    lines = [ln for ln in kconfig.SANITIZERS_FRAGMENT.read_text().splitlines() if ln.startswith("CONFIG_")]
    assert len(lines) == len(SANITIZER_REQUESTS)            # each symbol once
    # Nothing the test kernel's own fragment decides: the sanitizer kernel is the test kernel plus checkers.
    assert set(SANITIZER_REQUESTS).isdisjoint(kconfig.parse_config(kconfig.FRAGMENT.read_text()))


def test_sanitizers_append_to_the_fragment_and_the_coverage_options() -> None:
    plain = kconfig.fragment_bytes()
    san = kconfig.fragment_bytes(sanitizers=True)
    both = kconfig.fragment_bytes(coverage=True, sanitizers=True)
    assert san == plain + kconfig.SANITIZERS_FRAGMENT.read_bytes()
    assert both == kconfig.fragment_bytes(coverage=True) + kconfig.SANITIZERS_FRAGMENT.read_bytes()
    merged = kconfig.parse_config(both.decode())
    assert merged["CONFIG_GCOV_KERNEL"] == "y" and merged["CONFIG_KASAN"] == "y" and merged["CONFIG_IOMMUFD"] == "y"


def test_the_sanitizer_kernel_has_its_own_cache_key() -> None:
    keys = {kcache.compute_keys("6.12.118", kconfig.fragment_bytes(coverage=c, sanitizers=s)).cache
            for c in (False, True) for s in (False, True)}
    assert len(keys) == 4
    # The plain kernel's key does not move: sanitizers=False adds no byte.
    assert kconfig.fragment_bytes(sanitizers=False) == kconfig.FRAGMENT.read_bytes()


@needs_make
def test_build_with_sanitizers_merges_them_into_the_config_and_caches_apart(
        tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    tree = fake_tree(tmp_path / "linux")
    frag = tmp_path / "frag.config"
    frag.write_text("# test fragment\nCONFIG_NET_9P=y\n")
    monkeypatch.setattr(make, "ensure_prereqs", lambda: None)
    assert cli.main(["kernel", "build", "--source", str(tree), "--fragment", str(frag), "--sanitizers", "-j", "2"]) == 0
    image = Path(capsys.readouterr().out.strip())
    keys = kcache.compute_keys("6.12.0-test", kconfig.fragment_bytes(frag, sanitizers=True), tree)
    assert image == cache / "kernels" / keys.cache / "bzImage"
    config = kconfig.parse_config((image.parent / "config").read_text())
    assert {s: config.get(s) for s in SANITIZER_REQUESTS if SANITIZER_REQUESTS[s] != "n"} == \
        {s: v for s, v in SANITIZER_REQUESTS.items() if v != "n"}
    assert config["CONFIG_NET_9P"] == "y"
    info = json.loads((image.parent / "build.json").read_text())
    assert info["sanitizers"] is True and info["coverage"] is False
    assert ", sanitizers;" in describe_kernel(image, "test")
    # Found by --print-path --sanitizers only: the plain kernel of this tree is another key, not built.
    assert build.cached_kernel(tree, frag, sanitizers=True) == image
    assert cli.main(["kernel", "build", "--source", str(tree), "--fragment", str(frag), "--print-path"]) == NO_MATCH


@pytest.mark.kernel
def test_the_sanitizer_fragment_names_only_symbols_of_the_tree() -> None:
    src = os.environ.get("VFIO_CONFORMANCE_KSRC")
    if not src or not (Path(src) / "Kconfig").is_file():
        pytest.skip("no full Linux tree in $VFIO_CONFORMANCE_KSRC")
    kc = kconfig.parse_kconfig(Path(src))
    assert [s for s in SANITIZER_REQUESTS if s.removeprefix("CONFIG_") not in kc.entries] == []


def test_a_cached_sanitizer_kernel_carries_every_request_under_its_key() -> None:
    """The sanitizer kernels of this machine's cache (built by kernel build --sanitizers): the key
    compute_keys gives today, and a .config that honours every request of the shipped fragments."""
    real = Path(os.environ.get("HOME", "/root")) / ".cache" / "vfio-conformance" / "kernels"
    frag = kconfig.fragment_bytes(sanitizers=True)
    checked = []
    for info_path in sorted(real.glob("*/build.json")):
        info = json.loads(info_path.read_text())
        debian = str(info.get("source_kind", "")).startswith("debian")
        if info.get("fragment_sha256") != kcache.sha256(frag) or not debian:
            continue
        assert info["sanitizers"] is True
        assert info_path.parent.name == kcache.compute_keys(str(info["kernelversion"]), frag).cache
        assert kconfig.verify_config(frag.decode(), (info_path.parent / "config").read_text()).failures == []
        checked.append(info_path.parent.name)
    if not checked:
        pytest.skip(f"no sanitizer kernel in {real} (vfio-conformance kernel build --sanitizers)")
