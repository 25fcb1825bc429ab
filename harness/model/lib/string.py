"""lib/string.c: sysfs_streq()."""

from __future__ import annotations


def sysfs_strip(buf: str) -> str:
    """The string sysfs_streq() compares: up to one trailing newline dropped (lib/string.c)."""
    return buf[:-1] if buf.endswith("\n") else buf
