"""Fixtures shared by the test modules.  ``kb``: the kernel backend on this host, for the tests
that exercise it without a VM: a backend over an empty sysfs root (no root privileges needed,
no host state touched), reset afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.backends.kernel import KernelBackend


@pytest.fixture
def kb(tmp_path: Path) -> Iterator[KernelBackend]:
    (tmp_path / "sys").mkdir()
    b = KernelBackend(root=str(tmp_path), state_file=tmp_path / "state.json")
    yield b
    b.reset()
