"""Durations given on the command line (`fuzz --duration`, `mutate --budget`)."""

from __future__ import annotations

import argparse
import math


def parse_duration(text: str) -> float:
    """A positive, finite time: 90, 90s, 10m, 2h (nan, inf, 0 and negative ones would never end
    or never start)."""
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        seconds = float(text[:-1]) * units[text[-1]] if text[-1] in units else float(text)
    except (ValueError, IndexError):
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a positive duration such as 90s, 10m or 2h")
    return seconds
