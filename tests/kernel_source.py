"""For tests that read the Linux 6.12 sources: skip without them, but fail in CI."""

from __future__ import annotations

import os

import pytest

# CI sets it: there missing sources are a broken install, not a reason to skip.
REQUIRE_ENV = "VFIO_CONFORMANCE_REQUIRE_HEADERS"


def unavailable(reason: str) -> None:
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1)")
    pytest.skip(reason)
