"""KCOV in the guest: the kernel PCs the calling thread ran, for the fuzzer's coverage guidance.

One ``Kcov`` per backend: ``enable`` opens /sys/kernel/debug/kcov, sizes and maps its buffer
and enables PC tracing for the calling thread (the agent's, which issues every ioctl) for
the agent's life (the kernel disables it when the thread exits);
``collect`` returns the distinct PCs traced since the last collect (sorted, as little-endian
u64, zlib-compressed: one small reply per sequence) and starts the next count.  Standard
library only (on the agent's import path in the guest).
"""

from __future__ import annotations

import array
import ctypes
import fcntl
import mmap
import os
import zlib
from collections.abc import Iterable

from ..uapi.kcov import KCOV_ENABLE, KCOV_INIT_TRACE, KCOV_PATH, KCOV_TRACE_PC

WORDS = 1 << 19      # entries of the trace buffer (4 MiB): a sequence's PCs, duplicates included

# libc's mmap: Python's refuses a mapping past the size fstat() gives, and debugfs says 0.
_libc = ctypes.CDLL(None, use_errno=True)
_mmap = _libc.mmap
_mmap.restype = ctypes.c_void_p
_mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_munmap = _libc.munmap
_munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
MAP_FAILED = ctypes.c_void_p(-1).value


class Kcov:
    def __init__(self, path: str = KCOV_PATH, words: int = WORDS):
        self.path, self.words = path, words
        self.fd: int | None = None
        self.area: int | None = None    # the mapped buffer's address: word 0 counts, then the PCs

    def enable(self) -> str:
        """"" once the calling thread is traced (again: a no-op), else why not."""
        if self.area is not None:
            return ""
        try:
            fd = os.open(self.path, os.O_RDWR)
        except OSError as e:
            return f"{self.path}: {e.strerror} (CONFIG_KCOV, debugfs mounted?)"
        try:
            fcntl.ioctl(fd, KCOV_INIT_TRACE, self.words)
            area = _mmap(None, self.words * 8, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, fd, 0)
            if area in (None, MAP_FAILED):
                raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
        except OSError as e:
            os.close(fd)
            return f"{self.path}: {e.strerror}"
        try:
            fcntl.ioctl(fd, KCOV_ENABLE, KCOV_TRACE_PC)
        except OSError as e:
            _munmap(area, self.words * 8)
            os.close(fd)
            return f"{self.path}: KCOV_ENABLE: {e.strerror}"
        self.fd, self.area = fd, area
        self._restart()
        return ""

    def _restart(self) -> None:
        assert self.area is not None
        ctypes.c_uint64.from_address(self.area).value = 0

    def collect(self) -> bytes:
        """The distinct PCs since the last collect (b"" when not enabled)."""
        if self.area is None:
            return b""
        n = min(ctypes.c_uint64.from_address(self.area).value, self.words - 1)
        pcs = array.array("Q", ctypes.string_at(self.area + 8, 8 * n))
        self._restart()
        return encode(pcs)


def encode(pcs: Iterable[int]) -> bytes:
    """The distinct ``pcs``, sorted, as ``collect`` sends them."""
    return zlib.compress(array.array("Q", sorted(set(pcs))).tobytes(), 1)


def decode(blob: bytes) -> list[int]:
    """``collect``'s bytes as the PCs."""
    return array.array("Q", zlib.decompress(blob)).tolist() if blob else []
