"""Coverage guidance on the real kernel in QEMU: KCOV is read through the agent, an ioctl
reaches kernel code a bare round trip does not, and each sequence's new PCs go to
hypothesis.target inside the fuzzer's test.

Needs a test kernel and QEMU (like tests/test_vm_boot.py; CI sets VFIO_CONFORMANCE_KERNEL,
and then a missing kernel fails instead of skipping)."""

from __future__ import annotations

import hypothesis
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from vm_kernel import KERNEL, VM_MARKS

from harness.backends.kcov import decode
from harness.fuzz import PROFILES, fuzz
from harness.fuzz.kcov import LABEL, KcovGuide
from harness.fuzz.targets import vm_target
from harness.uapi import iommufd

pytestmark = VM_MARKS


def test_kcov_is_read_through_the_agent_and_guides_the_fuzzer() -> None:
    assert KERNEL is not None
    target = vm_target(KERNEL)
    try:
        kernel = target.lockstep.backends[0]
        assert kernel.kcov_enable() == ""
        assert kernel.kcov_enable() == ""       # again: a no-op
        kernel.ping()
        round_trip = set(decode(kernel.kcov_collect()))
        fd = kernel.open("/dev/iommu")
        assert fd.ok, fd
        alloc = kernel.ioctl(fd.ret, iommufd.IOMMU_IOAS_ALLOC, bytes(iommufd.iommu_ioas_alloc(size=12)))
        assert alloc.ok, alloc
        with_ioctl = set(decode(kernel.kcov_collect()))
        # The open and the ioctl ran kernel code that the agent's own reads and writes do not.
        assert with_ioctl - round_trip, (len(with_ioctl), len(round_trip))
        kernel.reset()

        guide = KcovGuide(kernel)
        assert guide.start() == ""
        seen: list[int] = []

        @settings(max_examples=3, database=None, phases=[Phase.generate], deadline=None)
        @given(st.integers())
        def one_sequence(_: int) -> None:
            fd = kernel.open("/dev/iommu")
            kernel.close(fd.ret)
            seen.append(guide.after_sequence())
            # after_sequence gave this example its target under LABEL: a second one is refused.
            with pytest.raises(InvalidArgument, match="would overwrite"):
                hypothesis.target(0.0, label=LABEL)

        one_sequence()
        assert len(seen) == 3 and seen[0] > 0, seen
        assert guide.log.sequences == 3 and len(guide.log.seen) >= sum(seen)

        report = fuzz(target.lockstep, PROFILES["ci"], seed=0, rounds=1, examples=10, kernel=target.kernel,
                      mock_domains=target.mock_domains, after_step=target.after_step, progress=lambda _: None,
                      kcov=guide)
        assert report.kcov is guide.log and guide.log.sequences == 3 + report.sequences
        assert guide.log.rows[-1][2] == len(guide.log.seen) > 0
        assert "distinct kernel PCs" in report.line()
    finally:
        target.close()
