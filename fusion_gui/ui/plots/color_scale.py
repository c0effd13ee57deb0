"""The colour scale of a heatmap follows its data: the full range of colours spans the values shown."""

from __future__ import annotations

import numpy as np

EMPTY_LEVELS = (0.0, 1.0)
MIN_SPAN = 1e-12


def data_levels(values: np.ndarray, diverging: bool = False) -> tuple[float, float]:
    """(low, high) for the finite values; a diverging scale is centred on zero so its middle colour
    means "no change". Equal values get a small span around them, so they show as one colour."""
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return (-1.0, 1.0) if diverging else EMPTY_LEVELS
    if diverging:
        reach = float(np.abs(finite).max()) or 1.0
        return (-reach, reach)
    low, high = float(finite.min()), float(finite.max())
    if high - low < max(MIN_SPAN, 1e-6 * max(abs(low), abs(high))):
        pad = max(abs(high) * 0.05, MIN_SPAN)
        return (low - pad, high + pad)
    return (low, high)
