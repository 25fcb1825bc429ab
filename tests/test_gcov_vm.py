"""Kernel line coverage read out of a guest running the gcov test kernel: the counters are
zeroed, a group is opened and asked for its status through the agent, and the lines of
vfio_group_ioctl_get_status() are then among the lines hit.

Needs the coverage kernel (`vfio-conformance kernel build --coverage`) and QEMU; CI builds it
and sets VFIO_CONFORMANCE_COVERAGE_KERNEL, and then a missing kernel fails instead of skipping."""

from __future__ import annotations

import struct
from pathlib import Path

from coverage_kernel import KERNEL, MARKS

from harness import uapi
from harness.fuzz.targets import vm_target
from harness.kernel import gcov

pytestmark = MARKS


def _function_lines(source: Path, name: str) -> range:
    text = source.read_text().splitlines()
    start = next(i for i, line in enumerate(text, 1) if line.startswith("static int " + name + "("))
    end = next(i for i, line in enumerate(text[start:], start + 1) if line == "}")
    return range(start, end + 1)


def test_a_get_status_shows_in_the_lines_hit_and_a_reset_zeroes_them() -> None:
    assert KERNEL is not None
    build, source, dirs = gcov.coverage_build(KERNEL)
    assert "drivers/vfio" in dirs
    target = vm_target(KERNEL, "viommu")
    agent = target.lockstep.backends[0]
    try:
        group = next(f.iommu_group for f in sorted(agent.topology().functions.values(), key=lambda f: f.bdf)
                     if f.driver == "vfio-pci" and f.iommu_group is not None)
        agent.gcov_collect(reset=True)
        before = gcov.line_coverage(build, source, agent.gcov_collect())
        fd = agent.open(f"/dev/vfio/{group}")
        assert fd.ok, fd
        io = uapi.ioctl("VFIO_GROUP_GET_STATUS")
        res = agent.ioctl(fd.ret, io.number, struct.pack("<II", io.sizeof, 0))
        assert res.ok, res
        agent.close(fd.ret)
        after = gcov.line_coverage(build, source, agent.gcov_collect())
    finally:
        target.close()
    body = set(_function_lines(source / "drivers/vfio/group.c", "vfio_group_ioctl_get_status"))
    assert "drivers/vfio/group.c" in after and "drivers/iommu/iommufd/main.c" in after
    assert not (before["drivers/vfio/group.c"].hit & body)          # zeroed: nothing of it had run
    hit = after["drivers/vfio/group.c"].hit & body
    assert len(hit) >= 5, sorted(hit)                                 # the copy in, the flags, the copy out
