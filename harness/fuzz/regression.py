"""A divergence the fuzzer found, written as a case file under cases/regressions/.

The case holds the shrunk steps with ``expect: any``: run on the model alone it
passes (it asserts nothing), run with ``--backend both`` (or in the VM) it fails
with the divergence until the model, or the kernel, is fixed.  Then someone
writes the expectations from the kernel source and moves it to its area.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml


def regression_id(steps: list[dict[str, Any]]) -> str:
    digest = hashlib.sha256(json.dumps(steps, sort_keys=True).encode()).hexdigest()[:10]
    return f"regressions-fuzz-{digest}"


def write_regression(out_dir: Path, steps: list[dict[str, Any]], summary: str, seed: str,
                     database: str | None, kernel: str, mock_domains: bool) -> Path:
    """Write the case; returns its path.  The same steps always give the same file."""
    case_id = regression_id(steps)
    requires: dict[str, Any] = {"config": ["IOMMUFD"], "nodes": ["/dev/iommu"]}
    if any(s.get("ioctl") == "IOMMU_TEST_CMD" for s in steps):
        requires["config"].append("IOMMUFD_TEST")
        requires["mock_domains"] = mock_domains
    doc = {
        "id": case_id,
        "area": "regressions",
        "purpose": f"Found by `vfio-conformance fuzz` on {kernel}: {summary}.",
        "verified_on": [],
        "notes": (f"Shrunk by Hypothesis (seed {seed}; example database {database or 'none'}). The steps "
                  "expect nothing: the case fails while kernel and model disagree. Once the cause is "
                  "understood, write the expectations from the kernel source and move the case to its area."),
        "requires": requires,
        "steps": steps,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{case_id.removeprefix('regressions-')}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False, width=100))
    return path
