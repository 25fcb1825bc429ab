"""What a kernel image is: its build.json beside a cached one, its version."""

from __future__ import annotations

import json
from pathlib import Path


def build_info(image: Path) -> dict[str, object] | None:
    """The build.json the cache wrote beside a cached kernel's bzImage, or None."""
    try:
        info = json.loads((image.parent / "build.json").read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def image_version(image: Path) -> str | None:
    """The kernel version of a bzImage: build.json's ``kernelversion`` beside a cached one, else the
    release at the start of the version string its x86 setup header points to (boot protocol
    >= 2.00: "HdrS" at 0x202, the string's offset - 0x200 at 0x20e), else None."""
    info = build_info(image)
    if info is not None and info.get("kernelversion"):
        return str(info["kernelversion"])
    try:
        with open(image, "rb") as f:
            head = f.read(0x10000)
    except OSError:
        return None
    if len(head) < 0x210 or head[0x202:0x206] != b"HdrS":
        return None
    start = int.from_bytes(head[0x20E:0x210], "little") + 0x200
    text = head[start:start + 256].split(b"\0", 1)[0].decode("ascii", "replace")
    return text.split(" ", 1)[0] or None


def describe_kernel(image: Path, how: str) -> str:
    """One line for the log: the image, its version and how it was chosen."""
    version = image_version(image)
    what = f"Linux {version}" if version else "version unknown"
    info = build_info(image) or {}
    if info.get("coverage"):
        what += ", gcov"
    if info.get("sanitizers"):
        what += ", sanitizers"
    return f"{image} ({what}; {how})"
