"""Kernel releases and version ranges (harness/uapi/kernel_version.py)."""

from __future__ import annotations

import pytest

from harness.uapi.kernel_version import VersionError, at_least, check_range, in_range, parse, series


@pytest.mark.parametrize(("release", "want"), [
    ("6.12.118", (6, 12, 118)), ("7.2.13", (7, 2, 13)), ("7.2.0-rc1", (7, 2, 0)), ("7.2", (7, 2, 0)),
    ("6.12.118-vfioconf+", (6, 12, 118)), ("7", (7, 0, 0)),
])
def test_parse(release: str, want: tuple[int, int, int]) -> None:
    assert parse(release) == want


def test_parse_refuses_what_is_no_release() -> None:
    with pytest.raises(VersionError):
        parse("linux")


@pytest.mark.parametrize(("release", "rng", "want"), [
    ("6.12.118", "6.12", True), ("6.12.0-rc1", "6.12", True), ("6.1.5", "6.12", False), ("6.120.1", "6.12", False),
    ("6.12.118", "<7.2", True), ("7.2.0-rc1", "<7.2", False), ("7.2.13", ">=7.2", True), ("7.1.9", ">=7.2", False),
    ("6.18.0", ">=6.13,<7.0", True), ("7.0.0", ">=6.13,<7.0", False), ("6.12.118", "6.12.118", True),
    ("6.12.117", "6.12.118", False), ("7.2.13", ">7.2", True), ("7.2.0", ">7.2", False), ("7.2.0", "<=7.2", True),
])
def test_in_range(release: str, rng: str, want: bool) -> None:
    assert in_range(release, rng) is want


@pytest.mark.parametrize("bad", ["", "7.x", "=>7.2", ">=", "7.2.1.4", ">=7.2,,<8"])
def test_check_range_refuses(bad: str) -> None:
    with pytest.raises(VersionError):
        check_range(bad)


def test_series_and_at_least() -> None:
    assert series("7.2.13") == "7.2" and series("6.12.0-rc1") == "6.12"
    assert at_least("7.2.0-rc1", "7.2") and not at_least("6.12.118", "7.2") and at_least("10.0", "7.2")
