"""Two small chart kinds as inline SVG: lines over snapshots and bars (a histogram).

Hand-written on purpose (the README says why): the report needs only these two, and SVG text
is self-contained, needs no script, and renders the same offline in any browser.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

PALETTE = ("#2f6db5", "#d1495b", "#edae49", "#00798c", "#6a4c93", "#66a182", "#8d6a9f", "#3d405b")
LEFT, RIGHT, TOP, BOTTOM = 64, 14, 26, 38


def compact(value: float) -> str:
    """1234567 -> 1.23M: axis labels and tooltips (tables show exact values)."""
    size = abs(value)
    for divisor, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if size >= divisor:
            return f"{value / divisor:.3g}{suffix}"
    if value == int(value):
        return str(int(value))
    return f"{value:.3g}"


def nice_ticks(low: float, high: float, count: int = 4) -> list[float]:
    """Round tick values covering ``[low, high]`` (steps of 1, 2 or 5 times a power of ten)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return [0.0]
    if high == low:
        pad = abs(high) * 0.1 or 1.0
        low, high = low - pad, high + pad
    raw = (high - low) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.floor(low / step) * step
    ticks = []
    value = first
    while value < high + step * 0.999:
        ticks.append(round(value, 12))
        value += step
    return ticks


def _open(width: int, height: int, label: str) -> list[str]:
    return [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{escape(label)}">',
        f"<title>{escape(label)}</title>",
    ]


def _x_labels(labels: Sequence[str], xs: Sequence[float], height: int, width: int) -> list[str]:
    every = max(1, math.ceil(len(labels) / max(1, (width - LEFT - RIGHT) // 78)))
    out = []
    for i, (label, x) in enumerate(zip(labels, xs, strict=True)):
        if i % every == 0:
            # the last label ends at its point: centred, a date would run off the chart
            anchor = "end" if i == len(labels) - 1 and i > 0 else "middle"
            out.append(f'<text x="{x:.1f}" y="{height - BOTTOM + 16}" text-anchor="{anchor}" class="tick">'
                       f"{escape(label)}</text>")
    return out


def _y_axis(ticks: list[float], scale_y, width: int) -> list[str]:
    out = []
    for tick in ticks:
        y = scale_y(tick)
        out.append(f'<line x1="{LEFT}" x2="{width - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{compact(tick)}</text>')
    return out


def _legend(names: Sequence[str], width: int) -> list[str]:
    out, x = [], LEFT
    for i, name in enumerate(names):
        color = PALETTE[i % len(PALETTE)]
        out.append(f'<rect x="{x}" y="6" width="10" height="10" fill="{color}"/>')
        out.append(f'<text x="{x + 14}" y="15" class="legend">{escape(name)}</text>')
        x += 24 + 7 * len(name)
        if x > width - 60:
            break
    return out


def line_chart(x_labels: Sequence[str], series: Sequence[tuple[str, Sequence[float | None]]], *, label: str,
               width: int = 520, height: int = 200, zero: bool = False) -> str:
    """One line per series over the x labels (snapshot dates); None leaves a gap."""
    values = [v for _, points in series for v in points if v is not None]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    if zero:
        low, high = min(low, 0.0), max(high, 0.0)
    ticks = nice_ticks(low, high)
    bottom, top = min(ticks[0], low), max(ticks[-1], high)
    plot_h, plot_w = height - TOP - BOTTOM, width - LEFT - RIGHT

    def scale_y(v: float) -> float:
        return TOP + plot_h - (v - bottom) / ((top - bottom) or 1) * plot_h

    n = len(x_labels)
    xs = [LEFT + plot_w / 2] if n == 1 else [LEFT + i * plot_w / (n - 1) for i in range(n)]
    out = _open(width, height, label) + _y_axis(ticks, scale_y, width) + _x_labels(x_labels, xs, height, width)
    for index, (name, points) in enumerate(series):
        color = PALETTE[index % len(PALETTE)]
        run: list[str] = []
        for x, v in zip(xs, points, strict=True):
            if v is None:
                out.extend(_polyline(run, color))
                run = []
                continue
            y = scale_y(v)
            run.append(f"{x:.1f},{y:.1f}")
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}">'
                       f"<title>{escape(name)}: {compact(v)}</title></circle>")
        out.extend(_polyline(run, color))
    if len(series) > 1:
        out.extend(_legend([name for name, _ in series], width))
    out.append("</svg>")
    return "".join(out)


def _polyline(points: list[str], color: str) -> list[str]:
    if len(points) < 2:
        return []
    return [f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{" ".join(points)}"/>']


def bar_chart(labels: Sequence[str], counts: Sequence[int], *, label: str, width: int = 520,
              height: int = 200, tick_every: int = 1) -> str:
    """Vertical bars (a histogram): ``labels[i]`` under bar i where ``i % tick_every == 0``."""
    ticks = nice_ticks(0, max(counts, default=1) or 1)
    top_value = ticks[-1] or 1
    plot_h, plot_w = height - TOP - BOTTOM, width - LEFT - RIGHT

    def scale_y(v: float) -> float:
        return TOP + plot_h - v / top_value * plot_h

    step = plot_w / max(1, len(counts))
    out = _open(width, height, label) + _y_axis(ticks, scale_y, width)
    for i, (name, count) in enumerate(zip(labels, counts, strict=True)):
        x = LEFT + i * step
        y = scale_y(count)
        out.append(f'<rect x="{x + 0.5:.1f}" y="{y:.1f}" width="{max(step - 1, 1):.1f}" '
                   f'height="{TOP + plot_h - y:.1f}" fill="{PALETTE[0]}">'
                   f"<title>{escape(name)}: {count:,}</title></rect>")
        if i % tick_every == 0:
            out.append(f'<text x="{x + step / 2:.1f}" y="{height - BOTTOM + 16}" text-anchor="middle" '
                       f'class="tick">{escape(name)}</text>')
    out.append("</svg>")
    return "".join(out)
