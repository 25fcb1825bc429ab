"""Differential fuzzing: generated iommufd and VFIO sequences on kernel and model in lockstep."""

from __future__ import annotations

# Importing the machines' modules registers them (machine.MACHINES).
from . import iommufd_rules, vfio_rules  # noqa: F401
from .lockstep import Lockstep
from .machine import MACHINES, Divergence, MachineKind, UnknownMachine, find_machine, make_machine
from .run import PROFILES, FuzzReport, fuzz

# Each machine, and the guest profile whose kernel it needs (harness/vm).
MACHINE_PROFILES = {kind: m.profile for kind, m in MACHINES.items()}

__all__ = ["MACHINES", "MACHINE_PROFILES", "PROFILES", "Divergence", "FuzzReport", "Lockstep", "MachineKind",
           "UnknownMachine", "find_machine", "fuzz", "make_machine"]
