"""Hostile case files: each is one error naming file and line, never an exception that stops
the run, a hang, or memory without bound; the good cases beside them still load."""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path

import pytest

from harness.cases.loader import MAX_VARIANTS, Loader

GOOD = """\
id: ioas-good
area: ioas
purpose: A good case beside the bad ones.
verified_on: []
steps:
  - open: /dev/iommu
    as: iommufd
"""


def case(body: str, name: str = "x") -> str:
    return f"id: ioas-{name}\narea: ioas\npurpose: p\nverified_on: []\n{body}"


STEPS = "steps:\n  - open: /dev/iommu\n    as: fd\n"

HOSTILE: dict[str, bytes | str] = {
    "latin1": case(STEPS).replace("purpose: p", "purpose: caf\xe9").encode("latin-1"),
    "binary": b"\x00\x01\x02\xff\xfe" * 100,
    "list-key": case("fixture: [a, b]\n" + STEPS),
    "mapping-key": case(STEPS + "    save: {[a]: x}\n"),
    "step-not-int": case(STEPS + "known_differences:\n  - {reason: r, kernels: ['6.12'], step: abc}\n"),
    "deep": case("requires: " + "[" * 400 + "]" * 400 + "\n" + STEPS),
    "alias-bomb": "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [" + ", ".join([f"*{p}"] * 9) + "]\n" for p, c in zip("abcdefghi", "bcdefghij", strict=True)),
    "matrix-bomb": case("matrix:\n  a: [" + ", ".join(map(str, range(900))) + "]\n  b: ["
                        + ", ".join(map(str, range(900))) + "]\n" + STEPS),
    "fixture-escape": case("fixture: ../../x\n" + STEPS),
    "fixture-absolute": case("fixture: /etc/passwd\n" + STEPS),
    "mock-domains-string": case('requires: {mock_domains: "no"}\n' + STEPS),
    "not-a-mapping": "- a\n- b\n",
    "kernels-bad": case(STEPS + "known_differences:\n  - {reason: r, kernels: ['seven']}\n"),
}


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    area = tmp_path / "cases" / "ioas"
    area.mkdir(parents=True)
    (area / "good.yaml").write_text(GOOD)
    for name, body in HOSTILE.items():
        p = area / f"{name}.yaml"
        if isinstance(body, bytes):
            p.write_bytes(body)
        else:
            p.write_text(body)
    os.symlink("/dev/zero", area / "dev-zero.yaml")
    os.mkfifo(area / "fifo.yaml")
    (area / "huge.yaml").write_bytes(b"# " + b"x" * (2 << 20) + b"\n")
    return tmp_path / "cases"


def test_every_hostile_file_is_one_error_with_file_and_line(corpus: Path) -> None:
    limit = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, limit[1]))  # 4 GiB: a bomb fails, it does not swap
    try:
        start = time.monotonic()
        cases, errors = Loader(corpus).load_all()
        assert time.monotonic() - start < 30
    finally:
        resource.setrlimit(resource.RLIMIT_AS, limit)
    assert [c.id for c in cases] == ["ioas-good"]
    bad = {Path(e.path).stem: str(e) for e in errors}
    assert set(bad) == set(HOSTILE) | {"dev-zero", "fifo", "huge"}, bad
    for name, text in bad.items():
        assert text.startswith(str(corpus / "ioas" / f"{name}.yaml")), text
        assert "\n" not in text and "Traceback" not in text, text
    assert "not UTF-8" in bad["latin1"] and ":3:" in bad["latin1"]
    assert "aliases" in bad["alias-bomb"]
    assert f"at most {MAX_VARIANTS}" in bad["matrix-bomb"]
    assert "not a regular file" in bad["dev-zero"] and "not a regular file" in bad["fifo"]
    assert "larger than" in bad["huge"]
    assert "nested deeper" in bad["deep"]
    assert "fixture" in bad["fixture-escape"] and "fixture" in bad["fixture-absolute"]
    assert "true or false" in bad["mock-domains-string"]
    assert "step" in bad["step-not-int"]
