"""Percentiles and ratios (no numpy: the bench needs only the driver's own dependencies)."""

from __future__ import annotations

import math
from collections.abc import Sequence

PERCENTILES = (50, 95, 99)


def percentile(samples: Sequence[float], p: float) -> float:
    """The p-th percentile, interpolating linearly between the two closest ranks."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = p / 100 * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(samples: Sequence[float], digits: int = 3) -> dict[str, float]:
    """{"p50": .., "p95": .., "p99": ..} of the samples."""
    return {f"p{p}": round(percentile(samples, p), digits) for p in PERCENTILES}


def ratio(ours: float | None, theirs: float | None) -> float | None:
    """ours / theirs, or None where either is missing or theirs is 0."""
    if ours is None or theirs is None or theirs == 0 or math.isnan(ours) or math.isnan(theirs):
        return None
    return ours / theirs
