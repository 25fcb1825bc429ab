"""Differential fuzzing: generated iommufd sequences on kernel and model in lockstep."""

from __future__ import annotations

from .lockstep import Lockstep
from .machine import Divergence, make_machine
from .run import PROFILES, FuzzReport, fuzz

__all__ = ["PROFILES", "Divergence", "FuzzReport", "Lockstep", "fuzz", "make_machine"]
