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


def requirements(steps: list[dict[str, Any]], mock_domains: bool, roles: dict[str, str]) -> dict[str, Any]:
    """What the steps need of a target: the config, device nodes and topology roles they use."""
    text = json.dumps(steps)
    config, nodes = [], []
    if "/dev/iommu" in text or '"IOMMU_' in text:
        config.append("IOMMUFD")
        nodes.append("/dev/iommu")
    if '"VFIO_' in text or "/dev/vfio" in text or any(f"${{{r}." in text for r in roles):
        config.append("VFIO")
    requires: dict[str, Any] = {"config": config}
    if nodes:
        requires["nodes"] = nodes
    if any(s.get("open") == "/dev/vfio/vfio" for s in steps):
        requires["container"] = "legacy"
    used = {name: role for name, role in roles.items() if f"${{{name}." in text}
    if used:
        requires["topology"] = used
    if any(s.get("ioctl") == "IOMMU_TEST_CMD" for s in steps):
        config.append("IOMMUFD_TEST")
        requires["mock_domains"] = mock_domains
    return requires


def write_regression(out_dir: Path, steps: list[dict[str, Any]], summary: str, seed: str,
                     database: str | None, kernel: str, mock_domains: bool,
                     roles: dict[str, str] | None = None) -> Path:
    """Write the case; returns its path.  The same steps always give the same file."""
    case_id = regression_id(steps)
    requires = requirements(steps, mock_domains, roles or {})
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
