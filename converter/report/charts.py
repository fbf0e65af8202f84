"""Line charts as inline SVG, written by hand: no plotting dependency, and the page stays one
self-contained file that prints and zooms sharply.

Each chart's plot area carries its data range (`data-x0 data-x1 data-y0 data-y1`, and
`data-log-y`), so a reader (or a test) can map any point back to the value it shows.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from .fmt import log_tick, tick

MARGIN = {"left": 58, "right": 16, "top": 30, "bottom": 42}


@dataclass
class Series:
    name: str
    xs: Sequence[float]
    ys: Sequence[float]
    color: str
    markers: bool = False  # also draw each point (sparse series, e.g. held-out PSNR)


def nice_step(span: float, count: int) -> float:
    """The 1-2-2.5-5 x 10^k step that splits `span` into about `count` intervals."""
    raw = span / max(count, 1)
    if raw <= 0 or not math.isfinite(raw):
        return 1.0
    power = 10.0 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw * (1 - 1e-9))


def nice_range(lo: float, hi: float, count: int = 5) -> tuple[float, float, list[float]]:
    """Axis bounds widened to whole steps around [lo, hi] and the ticks between them."""
    if hi <= lo:  # one value: a unit-wide (or 10 %) range around it
        pad = abs(lo) * 0.1 or 0.5
        lo, hi = lo - pad, hi + pad
    step = nice_step(hi - lo, count)
    start, stop = math.floor(lo / step + 1e-9) * step, math.ceil(hi / step - 1e-9) * step
    n = int(round((stop - start) / step))
    return start, stop, [round(start + i * step, 12) for i in range(n + 1)]


def log_range(lo: float, hi: float) -> tuple[float, float, list[float]]:
    """Bounds at whole decades around [lo, hi] (both > 0) and a tick per decade."""
    a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    if b == a:
        b += 1
    return 10.0 ** a, 10.0 ** b, [10.0 ** k for k in range(a, b + 1)]


def thin(xs: Sequence[float], ys: Sequence[float], max_points: int) -> tuple[list[float], list[float]]:
    """At most `max_points` points, evenly spaced by index, first and last kept: a polyline of
    tens of thousands of training steps adds megabytes and no visible detail."""
    n = len(xs)
    if n <= max_points:
        return list(xs), list(ys)
    keep = sorted({round(i * (n - 1) / (max_points - 1)) for i in range(max_points)})
    return [xs[i] for i in keep], [ys[i] for i in keep]


def line_chart(series: Sequence[Series], *, title: str, x_label: str, y_label: str, log_y: bool = False,
               width: int = 500, height: int = 250, max_points: int = 600) -> str:
    """An SVG line chart of `series` (points with non-finite values, or <= 0 on a log axis, are
    left out). Raises ValueError when no series has a point to draw."""
    cleaned = [_clean(s, log_y, max_points) for s in series]
    cleaned = [s for s in cleaned if s.xs]
    if not cleaned:
        raise ValueError(f"chart {title!r}: no data to draw")
    x0, x1, xticks = nice_range(min(min(s.xs) for s in cleaned), max(max(s.xs) for s in cleaned))
    ylo, yhi = min(min(s.ys) for s in cleaned), max(max(s.ys) for s in cleaned)
    y0, y1, yticks = log_range(ylo, yhi) if log_y else nice_range(ylo, yhi)
    plot = _Plot(width, height, x0, x1, y0, y1, log_y)
    parts = [f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}" role="img" aria-label="{escape(title)}">',
             f"<title>{escape(title)}</title>",
             f'<text class="chart-title" x="{MARGIN["left"]}" y="18">{escape(title)}</text>',
             plot.axes(xticks, yticks, x_label, y_label)]
    for s in cleaned:
        parts.append(plot.series(s))
    parts.append(_legend(cleaned, width))
    parts.append("</svg>")
    return "\n".join(parts)


def _clean(s: Series, log_y: bool, max_points: int) -> Series:
    pts = [(float(x), float(y)) for x, y in zip(s.xs, s.ys)
           if x is not None and y is not None and math.isfinite(x) and math.isfinite(y) and (y > 0 or not log_y)]
    xs, ys = thin([p[0] for p in pts], [p[1] for p in pts], max_points)
    return Series(s.name, xs, ys, s.color, s.markers)


@dataclass
class _Plot:
    width: int
    height: int
    x0: float
    x1: float
    y0: float
    y1: float
    log_y: bool

    def px(self, x: float) -> float:
        left, right = MARGIN["left"], self.width - MARGIN["right"]
        return left + (x - self.x0) / (self.x1 - self.x0) * (right - left)

    def py(self, y: float) -> float:
        top, bottom = MARGIN["top"], self.height - MARGIN["bottom"]
        if self.log_y:
            t = (math.log10(y) - math.log10(self.y0)) / (math.log10(self.y1) - math.log10(self.y0))
        else:
            t = (y - self.y0) / (self.y1 - self.y0)
        return bottom - t * (bottom - top)

    def label(self, values: list[float], value: float, log: bool = False) -> str:
        return log_tick(value) if log else tick(value, values[1] - values[0] if len(values) > 1 else 1.0)

    def axes(self, xticks: list[float], yticks: list[float], x_label: str, y_label: str) -> str:
        left, right = MARGIN["left"], self.width - MARGIN["right"]
        top, bottom = MARGIN["top"], self.height - MARGIN["bottom"]
        out = [f'<g class="plot" data-x0="{self.x0!r}" data-x1="{self.x1!r}" data-y0="{self.y0!r}" '
               f'data-y1="{self.y1!r}" data-log-y="{str(self.log_y).lower()}" data-left="{left}" '
               f'data-right="{right}" data-top="{top}" data-bottom="{bottom}">',
               f'<rect x="{left}" y="{top}" width="{right - left}" height="{bottom - top}" class="frame"/>']
        for t in xticks:
            x = self.px(t)
            out.append(f'<line class="grid" x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{bottom}"/>'
                       f'<text class="tick x" x="{x:.1f}" y="{bottom + 16}">{self.label(xticks, t)}</text>')
        for t in yticks:
            y = self.py(t)
            out.append(f'<line class="grid" x1="{left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}"/>'
                       f'<text class="tick y" x="{left - 6}" y="{y + 4:.1f}">{self.label(yticks, t, self.log_y)}</text>')
        out.append(f'<text class="axis-label" x="{(left + right) / 2:.0f}" y="{self.height - 6}">{escape(x_label)}</text>'
                   f'<text class="axis-label" transform="translate(14 {(top + bottom) / 2:.0f}) rotate(-90)">'
                   f"{escape(y_label)}</text></g>")
        return "".join(out)

    def series(self, s: Series) -> str:
        coords = [(self.px(x), self.py(y)) for x, y in zip(s.xs, s.ys)]
        points = " ".join(f"{x:.2f},{y:.2f}" for x, y in coords)
        out = [f'<g class="series" data-series="{escape(s.name)}">']
        if len(coords) > 1:
            out.append(f'<polyline points="{points}" fill="none" stroke="{s.color}" stroke-width="1.5"/>')
        if s.markers or len(coords) == 1:
            out += [f'<circle cx="{x:.2f}" cy="{y:.2f}" r="3" fill="{s.color}"/>' for x, y in coords]
        out.append("</g>")
        return "".join(out)


def _legend(series: Sequence[Series], width: int) -> str:
    out, x = ['<g class="legend">'], width - MARGIN["right"]
    for s in reversed(series):
        x -= 14 + 7 * len(s.name)
        out.append(f'<rect x="{x}" y="9" width="10" height="10" fill="{s.color}"/>'
                   f'<text x="{x + 14}" y="18">{escape(s.name)}</text>')
    out.append("</g>")
    return "".join(out)
