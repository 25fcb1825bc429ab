"""The fuzzer's CI profile, for each state machine (iommufd, vfio), on the backends chosen.

``--backend model`` (the default): the model alone, so a model crash or harness error is
found and shrunk; with ``--vm-kernel`` (``vfio-conformance vm``): the kernel in the guest
the machine needs (mock, vIOMMU) against the model, diffed step by step.  A finding fails
the test and leaves its regression case under the report folder.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.fuzz import MACHINE_PROFILES, PROFILES, fuzz
from harness.fuzz import targets as t


@pytest.mark.parametrize("machine", sorted(MACHINE_PROFILES))
def test_fuzz_ci_profile(request: pytest.FixtureRequest, tmp_path: Path, machine: str) -> None:
    cfg = request.config
    if cfg.getoption("--cases") != "**/*.yaml":
        pytest.skip("a --cases subset was asked for: the fuzzer is not one of them")
    kernel = cfg.getoption("--vm-kernel")
    if kernel:
        target = t.vm_target(Path(kernel), MACHINE_PROFILES[machine], accel=cfg.getoption("--accel"))
    elif cfg.getoption("--backend") == "model":
        target = t.model_target()
    else:
        pytest.skip("fuzzing this host's kernel is `vfio-conformance fuzz --backend both`, not part of a run")
    out = Path(cfg.getoption("--report-dir") or tmp_path) / "regressions"
    try:
        report = fuzz(target.lockstep, PROFILES["ci"], out_dir=out, kernel=target.kernel,
                      mock_domains=target.mock_domains, after_step=target.after_step, progress=lambda _: None,
                      machine_kind=machine)
    finally:
        target.close()
    assert report.sequences > 0
    if report.findings:
        f = report.findings[0]
        pytest.fail(f"{report.line()}\ndivergence after {len(f.steps)} steps (seed {f.seed}): {f.summary}\n"
                    f"regression case: {f.case}", pytrace=False)
