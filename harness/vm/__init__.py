"""The test VM: QEMU command lines, guest-init, boot and console scanning (docs/vm.md)."""

from __future__ import annotations

from ..backends.guest_layout import AGENT_PORT, PROFILES, GuestFunction, Profile
from .console import Splat
from .vm import AgentStartError, BootError, Vm, VmError, find_kernel

__all__ = ["AGENT_PORT", "PROFILES", "AgentStartError", "BootError", "GuestFunction", "Profile", "Splat", "Vm",
           "VmError", "find_kernel"]
