"""Differential fuzzing: generated iommufd and VFIO sequences on kernel and model in lockstep."""

from __future__ import annotations

from .lockstep import Lockstep
from .machine import Divergence, make_machine
from .run import MACHINE_PROFILES, PROFILES, FuzzReport, fuzz

__all__ = ["MACHINE_PROFILES", "PROFILES", "Divergence", "FuzzReport", "Lockstep", "fuzz", "make_machine"]
