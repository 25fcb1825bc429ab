"""The bookkeeping of a VM run's gcov counters per guest (harness/runner/kernel_lines.py): the
cases whose counts a dead guest took with it are named, each guest's own.  The guests' agents
are stand-ins answering gcov_collect with no counter files (tests/test_vm_coverage.py runs the
real ones)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.runner.kernel_lines import KernelLines


class Agent:
    def __init__(self, fails: bool = False):
        self.fails, self.resets = fails, 0

    def gcov_collect(self, reset: bool = False) -> dict[str, bytes]:
        if self.fails:
            raise OSError("the agent stopped answering")
        self.resets += reset
        return {}


@pytest.fixture
def image(tmp_path: Path) -> Path:
    (tmp_path / "bzImage").write_bytes(b"")
    (tmp_path / "build.json").write_text(json.dumps({"coverage": True, "build_dir": str(tmp_path), "source": "/s"}))
    return tmp_path / "bzImage"


def test_a_dead_guest_loses_its_own_cases_only(image: Path) -> None:
    lines = KernelLines(image)
    viommu, mock = Agent(), Agent()
    lines.booted(viommu, "6.12.118", "viommu")
    lines.ran(viommu, "a", "viommu", "pass")
    lines.booted(mock, "6.12.118", "mock")       # a second guest boots: the first one's cases stay pending
    lines.ran(mock, "b", "mock", "pass")
    lines.closing(None, "viommu")
    assert lines.lost == ["a"]
    with pytest.raises(OSError):
        lines.closing(Agent(fails=True), "mock")
    assert lines.lost == ["a", "b"]
    assert viommu.resets == 1 and lines.release == "6.12.118" and not lines.by_case


def test_per_case_reads_and_zeroes_after_each_case(image: Path) -> None:
    lines = KernelLines(image, per_case=True)
    agent = Agent()
    lines.booted(agent, "6.12.118", "viommu")
    lines.ran(agent, "a", "viommu", "skip")
    lines.ran(agent, "b", "viommu", "pass")
    lines.closing(None, "viommu")
    assert agent.resets == 3 and not lines.lost      # what a case ran was read right after it
    assert {k: (c.guest, c.status, c.lines) for k, c in lines.by_case.items()} == {
        "a": ("viommu", "skip", {}), "b": ("viommu", "pass", {})}
