"""The fixture vfio-pci-function restates hardware facts as variant parameters (cases compare
against them): they must be the model's hardware table's (harness/model/topologies.py), the one
place the guest's devices are described."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harness.model.topologies import HARDWARE, vm_topology

FIXTURE = Path(__file__).resolve().parent.parent / "cases" / "fixtures" / "vfio-pci-function.yaml"


def _sized(size: int, flags: int) -> int:
    """What a BAR reads after all ones were written (vfio_bar_fixup())."""
    return (~(size - 1) & 0xFFFFFFFF) | flags if size else 0


@pytest.mark.parametrize("name", ["e1000", "nvme"])
def test_fixture_parameters_are_the_hardware_tables(name: str) -> None:
    params = yaml.safe_load(FIXTURE.read_text())["variants"][name]
    hw = HARDWARE[name]
    fn = next(f for f in vm_topology().functions.values() if f.name == name and f.driver == "vfio-pci")
    sizes = hw["bar_sizes"]
    io, mem64 = hw.get("io_bars", ()), hw.get("bar_mem64", ())
    assert params["ids"] == fn.vendor | fn.device << 16
    assert params["cfg_size"] == (4096 if hw.get("is_pcie", True) else 256)
    assert params["bar0_size"] == sizes[0]
    assert params["bar0_sized"] == _sized(sizes[0], 1 if 0 in io else 4 if 0 in mem64 else 0)
    bar1 = 0xFFFFFFFF if 0 in mem64 else _sized(sizes[1], 1 if 1 in io else 0)
    assert params["bar1_sized"] == bar1
    assert params["rom_sized"] == _sized(hw.get("rom_size", 0), 1)
    caps = hw.get("capabilities", ())
    assert params["cap_ptr"] == (caps[0][0] if caps else 0)
