"""Numbers as people read them: 1.2 GB, 6.7 B, 1 m 05 s, 5e-5. Qt-free: the app and the command line share it."""

from __future__ import annotations

import math

PLAIN_RANGE = (1e-2, 1e4)  # magnitudes written as plain decimals; others in scientific notation


def format_bytes(n: float | None, digits: int = 1) -> str:
    """Decimal units (1 GB = 1000**3 bytes), as Hugging Face and disks count; whole bytes below 1 KB."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.{digits}f} {unit}"
        value /= 1000
    return f"{value:.{digits}f} TB"


def format_count(n: int | None) -> str:
    if n is None:
        return "-"
    for divisor, suffix in ((1e12, " T"), (1e9, " B"), (1e6, " M"), (1e3, " K")):
        if abs(n) >= divisor:
            return f"{n / divisor:.2f}{suffix}"
    return str(n)


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} m {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} m"


def format_scientific(value: float) -> str:
    """'5e-5', '1.5e-3', '0.05', '0': three significant digits at most, no padding zeros."""
    if value == 0 or not math.isfinite(value):
        return "0" if value == 0 else str(value)
    if PLAIN_RANGE[0] <= abs(value) < PLAIN_RANGE[1]:
        return f"{value:.3g}"
    mantissa, exponent = f"{value:.2e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"
