"""Inline SVG charts for the incident report: pure functions from numbers to SVG markup.

No JavaScript, no external files: every chart is one ``<svg>`` element with a ``data-plot``
attribute naming what it shows, so a browser (or a test) can find them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from driftscope_llm.services.textsafety import html_text as escape  # controls too (issue 19)

__all__ = ["bar_chart", "line_chart", "rolling_mean", "scatter_chart"]

W, H = 720, 240
PAD_L, PAD_R, PAD_T, PAD_B = 56, 16, 24, 36
SERIES_COLOUR = "#d62728"
REFERENCE_COLOUR = "#1f77b4"
CHANGE_COLOUR = "#2ca02c"


def rolling_mean(values: Sequence[float], width: int) -> list[float]:
    """Trailing mean over up to ``width`` values (shorter at the start)."""
    out: list[float] = []
    total = 0.0
    for i, v in enumerate(values):
        total += v
        if i >= width:
            total -= values[i - width]
        out.append(total / min(i + 1, width))
    return out


def _scale(lo: float, hi: float, a: float, b: float) -> tuple[float, float]:
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    k = (b - a) / (hi - lo)
    return k, a - k * lo


def _fmt(v: float) -> str:
    return f"{v:.3g}"


def _axes(lo: float, hi: float, y: tuple[float, float], n_x: int, x_label: str) -> list[str]:
    ky, by = y
    parts = [f'<rect x="{PAD_L}" y="{PAD_T}" width="{W - PAD_L - PAD_R}" '
             f'height="{H - PAD_T - PAD_B}" fill="#fafafa" stroke="#ccc"/>']
    for frac in (0.0, 0.5, 1.0):
        v = lo + frac * (hi - lo)
        py = ky * v + by
        parts.append(f'<text x="{PAD_L - 6}" y="{py + 4:.1f}" text-anchor="end" '
                     f'font-size="11">{_fmt(v)}</text>')
    parts.append(f'<text x="{(W + PAD_L) / 2}" y="{H - 8}" text-anchor="middle" '
                 f'font-size="11">{escape(x_label)} (0–{n_x - 1})</text>')
    return parts


def line_chart(values: Sequence[float], *, title: str, reference: float | None,
               reference_band: tuple[float, float] | None = None,
               markers: Sequence[tuple[int, str]] = (), x_label: str = "event",
               plot_id: str = "series") -> str:
    """A line of ``values`` over event index, the reference level as a dashed line (with an
    optional band), and vertical markers ``(index, label)`` such as the change point."""
    n = len(values)
    if n < 2:
        return (f'<svg data-plot="{escape(plot_id)}" width="{W}" height="40" '
                f'xmlns="http://www.w3.org/2000/svg"><text x="8" y="24">{escape(title)}: '
                "too few values to plot</text></svg>")
    pool = list(values) + [v for v in (reference,) if v is not None]
    if reference_band is not None:
        pool += list(reference_band)
    lo, hi = min(pool), max(pool)
    kx, bx = _scale(0, n - 1, PAD_L, W - PAD_R)
    ky, by = _scale(lo, hi, H - PAD_B, PAD_T)
    parts = [f'<svg data-plot="{escape(plot_id)}" width="{W}" height="{H}" '
             f'viewBox="0 0 {W} {H}" xmlns="http://www.w3.org/2000/svg" role="img">',
             f"<title>{escape(title)}</title>", *_axes(lo, hi, (ky, by), n, x_label)]
    if reference_band is not None:
        y0, y1 = ky * reference_band[1] + by, ky * reference_band[0] + by
        parts.append(f'<rect x="{PAD_L}" y="{y0:.1f}" width="{W - PAD_L - PAD_R}" '
                     f'height="{max(y1 - y0, 0.5):.1f}" fill="{REFERENCE_COLOUR}" '
                     'fill-opacity="0.12"/>')
    if reference is not None:
        ry = ky * reference + by
        parts.append(f'<line class="reference" x1="{PAD_L}" x2="{W - PAD_R}" y1="{ry:.1f}" '
                     f'y2="{ry:.1f}" stroke="{REFERENCE_COLOUR}" stroke-width="2" '
                     'stroke-dasharray="6 4"/>')
    pts = " ".join(f"{kx * i + bx:.1f},{ky * v + by:.1f}" for i, v in enumerate(values))
    parts.append(f'<polyline class="series" points="{pts}" fill="none" '
                 f'stroke="{SERIES_COLOUR}" stroke-width="2.5"/>')
    for idx, label in markers:
        if 0 <= idx < n:
            mx = kx * idx + bx
            parts.append(f'<line class="marker" x1="{mx:.1f}" x2="{mx:.1f}" y1="{PAD_T}" '
                         f'y2="{H - PAD_B}" stroke="{CHANGE_COLOUR}" stroke-width="2"/>'
                         f'<text x="{mx + 4:.1f}" y="{PAD_T + 12}" font-size="11" '
                         f'fill="{CHANGE_COLOUR}">{escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def scatter_chart(groups: Sequence[tuple[str, str, Sequence[tuple[float, float]]]], *,
                  title: str, plot_id: str = "embedding") -> str:
    """Points of several groups ``(label, colour, [(x, y), ...])`` on shared axes, with a legend."""
    xs = [p[0] for _, _, pts in groups for p in pts]
    ys = [p[1] for _, _, pts in groups for p in pts]
    if not xs:
        return ""
    size = 360
    kx, bx = _scale(min(xs), max(xs), 20, size - 20)
    ky, by = _scale(min(ys), max(ys), size - 20, 40)
    parts = [f'<svg data-plot="{escape(plot_id)}" width="{size}" height="{size}" '
             f'viewBox="0 0 {size} {size}" xmlns="http://www.w3.org/2000/svg" role="img">',
             f"<title>{escape(title)}</title>",
             f'<rect x="0" y="0" width="{size}" height="{size}" fill="#fafafa" stroke="#ccc"/>']
    for g, (label, colour, pts) in enumerate(groups):
        parts.append(f'<g class="points" fill="{colour}" fill-opacity="0.6">')
        parts.extend(f'<circle cx="{kx * x + bx:.1f}" cy="{ky * y + by:.1f}" r="3"/>'
                     for x, y in pts)
        parts.append("</g>")
        parts.append(f'<circle cx="{16 + 150 * g}" cy="16" r="5" fill="{colour}"/>'
                     f'<text x="{26 + 150 * g}" y="20" font-size="12">{escape(label)} '
                     f"({len(pts)})</text>")
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(bars: Sequence[tuple[str, float, str]], *, title: str,
              plot_id: str = "bars") -> str:
    """Horizontal bars ``(label, value, colour)``; values may be negative."""
    if not bars:
        return ""
    row, width, left = 28, 520, 170
    lo = min(0.0, *(v for _, v, _ in bars))
    hi = max(0.0, *(v for _, v, _ in bars))
    k, b = _scale(lo, hi, left, width - 60)
    height = row * len(bars) + 20
    parts = [f'<svg data-plot="{escape(plot_id)}" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg" role="img">',
             f"<title>{escape(title)}</title>"]
    zero = k * 0.0 + b
    for i, (label, value, colour) in enumerate(bars):
        y = 10 + i * row
        x0, x1 = sorted((zero, k * value + b))
        parts.append(f'<text x="{left - 8}" y="{y + 15}" text-anchor="end" font-size="12">'
                     f"{escape(label)}</text>"
                     f'<rect class="bar" x="{x0:.1f}" y="{y}" width="{max(x1 - x0, 1):.1f}" '
                     f'height="20" fill="{colour}"/>'
                     f'<text x="{x1 + 4:.1f}" y="{y + 15}" font-size="12">'
                     f"{_fmt(value) if math.isfinite(value) else 'n/a'}</text>")
    parts.append("</svg>")
    return "".join(parts)
