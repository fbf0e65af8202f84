"""Numbers as the report shows them: few digits, units a reader does not have to convert.

The raw values stay in metrics.json (and in each table cell's `data-value`); these strings are
for people, so they round to what is meaningful (a PSNR to 0.01 dB, a time to 3 digits).
"""
from __future__ import annotations

import math


def number(value: float | int | None, digits: int = 3) -> str:
    """`digits` significant digits, thousands separated, no exponent for everyday magnitudes;
    integers are shown exactly. None / NaN show as an en dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "\u2013"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) < 1e15):
        return f"{int(value):,}"
    if math.isinf(value):
        return "\u221e" if value > 0 else "-\u221e"
    if value != 0 and not 1e-4 <= abs(value) < 1e15:
        return f"{value:.{max(digits - 1, 0)}e}"
    decimals = max(digits - 1 - math.floor(math.log10(abs(value))), 0) if value else digits - 1
    return f"{value:,.{decimals}f}"


def fixed(value: float | None, decimals: int, unit: str = "") -> str:
    """A fixed number of decimals (PSNR in dB, SSIM): columns of them line up."""
    if value is None or math.isnan(value):
        return "\u2013"
    return f"{value:,.{decimals}f}" + (f" {unit}" if unit else "")


def percent(share: float | None, decimals: int = 1) -> str:
    """A share in [0, 1] as a percentage."""
    return "\u2013" if share is None else f"{100 * share:.{decimals}f} %"


def size(n_bytes: int | None) -> str:
    """Bytes in binary units: 999 B, 97.7 KiB, 1.20 MiB (3 significant digits)."""
    if n_bytes is None:
        return "\u2013"
    if n_bytes < 1024:
        return f"{n_bytes} B"
    value, unit = float(n_bytes), "B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024:
            break
    return f"{number(value)} {unit}".replace(",", "")


def duration(seconds: float | None) -> str:
    """0.31 s, 14.9 s, 2 min 05 s, 1 h 02 min: hundredths to hours, at most two units."""
    if seconds is None or math.isnan(seconds):
        return "\u2013"
    if seconds < 1:
        return f"{seconds:.2f} s" if seconds >= 0.005 else "< 0.01 s"
    if seconds < 60:
        return f"{number(seconds)} s"
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s"


def tick(value: float, step: float) -> str:
    """An axis label: as many decimals as the tick step needs (0, 2.5, 5.0 for a 2.5 step), so
    the labels of one axis line up and none says more than the axis resolves."""
    decimals = next((d for d in range(7) if abs(round(step, d) - step) <= 1e-9 * abs(step)), 6)
    return f"{value:,.{decimals}f}"


def log_tick(value: float) -> str:
    """A decade on a log axis: 0.001, 0.1, 10, 1e+06."""
    return f"{value:g}"
