"""lib/kstrtox.c: parsing integers and booleans from user strings."""

from __future__ import annotations

import errno

from ..errors import Errno, cite


def kstrtoull(buf: str) -> int:
    """kstrtoull(s, 0) (lib/kstrtox.c:132-137, 120-127, 98-109): an optional '+',
    base from the prefix (0x hex, 0 octal), one optional trailing newline."""
    s = buf[1:] if buf.startswith("+") else buf
    base = 10
    if s.startswith("0"):
        base = 16 if s[1:2].lower() == "x" and s[2:3] and s[2] in "0123456789abcdefABCDEF" else 8
        if base == 16:
            s = s[2:]
    digits = ""
    for c in s:
        v = int(c, 16) if c in "0123456789abcdefABCDEF" else 99
        if v >= base:
            break
        digits += c
    if not digits:
        raise Errno(errno.EINVAL, cite("lib/kstrtox.c", 104))
    rest = s[len(digits):]
    if rest.startswith("\n"):
        rest = rest[1:]
    if rest:
        raise Errno(errno.EINVAL, cite("lib/kstrtox.c", 109))
    value = int(digits, base)
    if value >= 1 << 64:
        raise Errno(errno.ERANGE, cite("lib/kstrtox.c", 102))
    return value


def kstrtouint(buf: str) -> int:
    """kstrtouint(s, 0) (lib/kstrtox.c:228-240)."""
    value = kstrtoull(buf)
    if value > 0xFFFF_FFFF:
        raise Errno(errno.ERANGE, cite("lib/kstrtox.c", 237))
    return value


def kstrtou16(buf: str) -> int:
    """kstrtou16(s, 0) (lib/kstrtox.c:275-287)."""
    value = kstrtoull(buf)
    if value > 0xFFFF:
        raise Errno(errno.ERANGE, cite("lib/kstrtox.c", 284))
    return value


def kstrtobool(buf: str) -> bool:
    """lib/kstrtox.c:348-388."""
    c = buf[:1]
    if c in ("y", "Y", "t", "T", "1"):
        return True
    if c in ("n", "N", "f", "F", "0"):
        return False
    if c in ("o", "O"):
        if buf[1:2] in ("n", "N"):
            return True
        if buf[1:2] in ("f", "F"):
            return False
    raise Errno(errno.EINVAL, cite("lib/kstrtox.c", 387))
