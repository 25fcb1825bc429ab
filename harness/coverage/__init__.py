"""The coverage matrix of the corpus, per kernel series (`vfio-conformance coverage`)."""

from __future__ import annotations

from pathlib import Path

from .. import uapi
from ..cases.case import Case
from ..kernel.source import find_source
from .kernel_errnos import SOURCES, KernelIndex, sources
from .matrix import Matrix, build, view_of

__all__ = ["SOURCES", "Matrix", "build", "build_for", "sources"]


def build_for(cases: list[Case], series: str | uapi.SeriesABI = uapi.DEFAULT_SERIES,
              ksrc: Path | None = None) -> Matrix:
    """The matrix of ``series`` (a name or its ``uapi.for_series`` view), with the errnos its
    handlers name when a source tree of that series is found (``ksrc``, else ``find_source``)."""
    view = view_of(series)
    files = sources(view.series)
    root = ksrc if ksrc is not None else find_source(files, series=view.series)
    index = KernelIndex.load(root, files) if root is not None else None
    return build(cases, view, index, str(root) if root is not None else None)
