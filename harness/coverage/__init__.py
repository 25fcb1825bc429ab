"""The coverage matrix of the corpus (`vfio-conformance coverage`)."""

from __future__ import annotations

from pathlib import Path

from ..cases.model import Case
from ..kernel.source import find_source
from .kernel_errnos import SOURCES, KernelIndex
from .matrix import Matrix, build

__all__ = ["Matrix", "build", "build_for"]


def build_for(cases: list[Case], ksrc: Path | None = None) -> Matrix:
    """The matrix of ``cases``, with the errnos of the 6.12 handlers when a source tree is found."""
    root = ksrc if ksrc is not None else find_source(SOURCES)
    index = KernelIndex.load(root) if root is not None else None
    return build(cases, index, str(root) if root is not None else None)
