"""`vfio-conformance vm --coverage --per-case` on the gcov test kernel, two cases, one in each
guest: the lcov tracefile reads back, genhtml's index is there, the handler of
VFIO_GROUP_GET_STATUS (viability-container-set-flags asks for the group's status) and of
IOMMU_TEST_CMD (mock-domain-flags-pasid) have lines counted, the lines by case say which case
reached them, in which guest, and a tracefile given to --merge (as fuzz --vm --coverage writes)
adds its lines.

Needs the coverage kernel and QEMU, like tests/test_gcov_vm.py (CI sets
VFIO_CONFORMANCE_COVERAGE_KERNEL; then a missing kernel fails instead of skipping)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from coverage_kernel import KERNEL, MARKS

from harness.coverage.kernel_lines import BY_CASE_FORMAT
from harness.kernel import gcov, lcov

pytestmark = MARKS

# mock-domain-flags-pasid (mock guest) and viability-container-set-flags (viommu guest)
CASES = "[mv]*/[cd]o[nm]*-[fs]*-[fp]*.yaml"
ROOT = Path(__file__).resolve().parent.parent


def test_vm_coverage_per_case_in_both_guests(tmp_path: Path) -> None:
    assert KERNEL is not None
    _build, source, _dirs = gcov.coverage_build(KERNEL)
    # Another run's lines: the first line of vfio_ext_cap_len(), which neither case reaches.
    config_c = source / "drivers/vfio/pci/vfio_pci_config.c"
    ext_cap_len = next(i for i, line in enumerate(config_c.read_text().splitlines(), 1)
                       if line.startswith("static int vfio_ext_cap_len("))
    other = tmp_path / "fuzz.info"
    other.write_text(f"TN:fuzz\nSF:{config_c}\nDA:{ext_cap_len},3\nend_of_record\n")
    done = subprocess.run([sys.executable, "-m", "harness", "vm", "--kernel", str(KERNEL), "--coverage", "--per-case",
                           "--merge", str(other), "--cases", CASES, "--report", str(tmp_path), "-q"], cwd=ROOT,
                          capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert "coverage: drivers/vfio: " in done.stdout

    cov = lcov.read_info((tmp_path / "kernel-coverage.info").read_text(), source)
    assert {"drivers/vfio/group.c", "drivers/iommu/iommufd/selftest.c", "drivers/vfio/pci/vfio_pci_core.c"} <= set(cov)
    assert (tmp_path / "kernel-coverage" / "index.html").is_file()
    assert (tmp_path / "kernel-coverage" / "drivers/vfio/group.c.gcov.html").is_file()
    assert cov["drivers/vfio/pci/vfio_pci_config.c"].counts[ext_cap_len] == 3       # merged

    report = json.loads((tmp_path / "kernel-coverage.json").read_text())
    status = report["handlers"]["VFIO_GROUP_GET_STATUS"]
    assert status["function"] == "vfio_group_ioctl_get_status" and status["hit"] >= 5, status
    body = range(status["start"], status["end"] + 1)
    assert {ln for ln in cov["drivers/vfio/group.c"].hit if ln in body}     # the tracefile counts them too
    test_cmd = report["handlers"]["IOMMU_TEST_CMD"]
    assert test_cmd["function"] == "iommufd_test" and test_cmd["hit"] > 0, test_cmd

    by_case = json.loads((tmp_path / "kernel-lines-by-case.json").read_text())
    assert by_case["format"] == BY_CASE_FORMAT and by_case["release"].startswith("6.12") and not by_case["lost"]
    cases = by_case["cases"]
    assert set(cases) == {"mock-domain-flags-pasid", "viability-container-set-flags"}
    flags = cases["viability-container-set-flags"]
    assert flags["guest"] == "viommu" and flags["status"] == "pass"
    assert set(flags["lines"]["drivers/vfio/group.c"]) & set(body)
    assert "drivers/iommu/iommufd/selftest.c" not in flags["lines"]       # the mock driver: other cases'
    pasid = cases["mock-domain-flags-pasid"]
    assert pasid["guest"] == "mock" and pasid["status"] == "pass"
    assert pasid["lines"]["drivers/iommu/iommufd/selftest.c"]
    assert not set(pasid["lines"].get("drivers/vfio/group.c", [])) & set(body)
    assert all(ext_cap_len not in c["lines"].get("drivers/vfio/pci/vfio_pci_config.c", []) for c in cases.values())
    # Every line with a counter, run or not, and the function spans: what mutate needs for a line
    # the compiler left without code.
    executable = set(by_case["executable"]["drivers/vfio/group.c"])
    assert set(flags["lines"]["drivers/vfio/group.c"]) < executable
    spans = by_case["functions"]["drivers/vfio/group.c"]
    assert spans["vfio_group_ioctl_get_status"] == [status["start"], status["end"]]
