"""Inline SVG trend charts: readable without JavaScript, zoomable with the site's script.

The data sit in an inner <svg> whose x unit is one run (viewBox `x0 0 span height`), so the
site's script zooms by changing that viewBox alone; strokes do not scale, and points are
zero-length round-capped paths so they stay round. Every point carries a <title> (the
browser's own tooltip) with its run, git sha, value and interval. Labels outside the inner
<svg> that follow the x axis carry `data-i` (their run index) for the script to move.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT = 760, 250
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 26, 46
MAX_X_LABELS = 8


@dataclass(frozen=True)
class Point:
    """One run's value (None: no ok record) with its 95% interval, and the hover text."""

    i: int
    y: float | None
    low: float | None = None
    high: float | None = None
    tip: str = ""
    flagged: bool = False  # drawn in orange: e.g. a timing flagged unstable


@dataclass(frozen=True)
class Mark:
    """A change point: a new level starts at run index `i`."""

    i: int
    label: str


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About n round tick values covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo] if math.isfinite(lo) else []
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    return [round(first + k * step, 10) for k in range(int((hi - first) / step + 1e-9) + 1)]


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def _bounds(points: Sequence[Point]) -> tuple[float, float]:
    values = [v for p in points for v in (p.y, p.low, p.high)
              if v is not None and math.isfinite(v)]
    if not values:
        return 0.0, 1.0
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.08 or abs(hi) * 0.02 or 1.0
    return lo - pad, hi + pad


def _path(points: Sequence[Point], ypix: object) -> str:
    """The line through consecutive points; a gap where a run has no value."""
    parts, pen_down = [], False
    for p in points:
        if p.y is None:
            pen_down = False
            continue
        parts.append(f"{'L' if pen_down else 'M'}{p.i} {ypix(p.y):.2f}")  # type: ignore[operator]
        pen_down = True
    return " ".join(parts)


def chart(points: Sequence[Point], *, n_runs: int, x_labels: Sequence[str], y_label: str,
          marks: Sequence[Mark] = (), levels: Sequence[tuple[int, int, float]] = (),
          title: str = "") -> str:
    """An SVG line chart over run indices 0..n_runs-1 with intervals and change points.

    levels: (first index, last index, value) of each segment between change points.
    """
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    lo, hi = _bounds(points)

    def ypix(v: float) -> float:
        return plot_h * (hi - v) / (hi - lo)

    def xpix(i: float) -> float:
        return LEFT + plot_w * (i + 0.5) / max(n_runs, 1)

    inner = [f"<rect x='-0.5' y='0' width='{max(n_runs, 1)}' height='{plot_h}' class='bg'/>"]
    for first, last, value in levels:
        inner.append(f"<path class='level' d='M{first - 0.4} {ypix(value):.2f} "
                     f"H{last + 0.4}'/>")
    for mark in marks:
        inner.append(f"<path class='cp' d='M{mark.i - 0.5} 0 V{plot_h}'/>")
    inner.append(f"<path class='line' d='{_path(points, ypix)}'/>")
    for p in points:
        if p.y is None:
            continue
        if p.low is not None and p.high is not None:
            inner.append(f"<path class='ci' d='M{p.i} {ypix(p.low):.2f} V{ypix(p.high):.2f}'/>")
        inner.append(f"<path class='pt{' u' if p.flagged else ''}' d='M{p.i} {ypix(p.y):.2f} h0'>"
                     f"<title>{escape(p.tip)}</title></path>")

    outer = [f"<text class='title' x='{LEFT}' y='16'>{escape(title)}</text>"]
    for tick in nice_ticks(lo, hi):
        y = TOP + ypix(tick)
        outer.append(f"<path class='grid' d='M{LEFT} {y:.2f} H{LEFT + plot_w}'/>"
                     f"<text class='yt' x='{LEFT - 6}' y='{y + 4:.2f}'>{_fmt(tick)}</text>")
    step = max(1, math.ceil(n_runs / MAX_X_LABELS))
    for i in range(0, n_runs, step):
        label = x_labels[i] if i < len(x_labels) else str(i)
        outer.append(f"<text class='xt' data-i='{i}' x='{xpix(i):.2f}' y='{TOP + plot_h + 16}'>"
                     f"{escape(label)}</text>")
    for mark in marks:
        outer.append(f"<text class='cpl' data-i='{mark.i - 0.5}' x='{xpix(mark.i - 0.5):.2f}' "
                     f"y='{TOP - 4}'>{escape(mark.label)}</text>")
    outer.append(f"<text class='yl' transform='translate(14 {TOP + plot_h / 2}) rotate(-90)'>"
                 f"{escape(y_label)}</text>")
    outer.append(f"<text class='xl' x='{LEFT + plot_w / 2}' y='{HEIGHT - 6}'>run (oldest to "
                 f"newest)<tspan class='zh'>{' · drag to zoom, double-click to reset' if n_runs > 2 else ''}</tspan>"
                 f"</text>")
    return (f"<svg class='trend' viewBox='0 0 {WIDTH} {HEIGHT}' role='img' "
            f"aria-label='{escape(title)}' data-n='{n_runs}' data-left='{LEFT}' "
            f"data-width='{plot_w}'>"
            + "".join(outer) +
            f"<svg class='plot' x='{LEFT}' y='{TOP}' width='{plot_w}' height='{plot_h}' "
            f"viewBox='-0.5 0 {max(n_runs, 1)} {plot_h}' preserveAspectRatio='none'>"
            + "".join(inner) + "</svg></svg>")
