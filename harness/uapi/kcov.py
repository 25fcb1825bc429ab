"""KCOV, the kernel's per-thread coverage (include/uapi/linux/kcov.h, Documentation/dev-tools/kcov.rst).

The fuzzer's coverage guidance (harness/fuzz/kcov.py) reads it through the agent: the
guest's thread that issues the ioctls traces the kernel PCs it runs (KCOV_TRACE_PC).
"""

from __future__ import annotations

from .abi import _IO, _IOC, _IOC_READ

KCOV_PATH = "/sys/kernel/debug/kcov"
# include/uapi/linux/kcov.h: _IOR('c', 1, unsigned long), _IO('c', 100).  (KCOV_DISABLE,
# _IO('c', 101), is not needed: the agent's thread stays traced until it exits.)
KCOV_INIT_TRACE = _IOC(_IOC_READ, ord("c"), 1, 8)
KCOV_ENABLE = _IO("c", 100)
KCOV_TRACE_PC = 0
