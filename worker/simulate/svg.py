"""A learning-curve plot as a standalone SVG, written by hand (no plotting dependency).

Score against labels, one line per arm (mean over seeds) with a +/- 1 std band, the ceiling
as a dashed line and 95 % / 98 % of it as dotted lines.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from xml.sax.saxutils import escape

from worker.simulate.summary import MeanCurve

WIDTH, HEIGHT = 760, 460
LEFT, RIGHT, TOP, BOTTOM = 64, 230, 36, 52
PALETTE = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#ff7f0e",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#7f7f7f",
    "#bcbd22",
)


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high] (1, 2 or 5 times a power of ten apart)."""
    if high <= low:
        high = low + 1.0
    raw = (high - low) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    start = math.ceil(low / step) * step
    ticks = []
    value = start
    while value <= high + 1e-9:
        ticks.append(round(value, 10))
        value += step
    return ticks


Scale = Callable[[float], float]


def _fmt(value: float) -> str:
    return f"{value:.1f}"


def learning_curve_svg(
    title: str,
    curves: dict[str, MeanCurve],
    *,
    metric: str = "macro-F1",
    ceiling: float | None = None,
    ceiling_label: str = "ceiling",
    x_label: str = "labels",
) -> str:
    """SVG text for ``curves`` (arm name -> mean curve)."""
    if not curves:
        raise ValueError("nothing to plot: no curves")
    xs = [float(x) for c in curves.values() for x in c.labels]
    ys = [float(y) for c in curves.values() for y in (c.mean - c.std)] + [
        float(y) for c in curves.values() for y in (c.mean + c.std)
    ]
    if ceiling is not None:
        ys.append(ceiling)
    x_low, x_high = min(xs), max(xs)
    if x_high == x_low:
        x_high = x_low + 1.0
    y_low, y_high = max(0.0, min(ys) - 0.02), min(1.0, max(ys) + 0.02)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(x: float) -> float:
        return LEFT + (x - x_low) / (x_high - x_low) * plot_w

    def py(y: float) -> float:
        return TOP + (1.0 - (y - y_low) / (y_high - y_low)) * plot_h

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{LEFT}" y="22" font-size="14" font-weight="bold">{escape(title)}</text>',
    ]
    out += _axes(px, py, x_low, x_high, y_low, y_high, metric, x_label)
    if ceiling is not None:
        out += _ceiling_lines(px, py, x_low, x_high, y_low, ceiling, ceiling_label)
    for i, (name, curve) in enumerate(curves.items()):
        out += _series(px, py, curve, PALETTE[i % len(PALETTE)])
        ly = TOP + 14 + i * 18
        colour = PALETTE[i % len(PALETTE)]
        out.append(
            f'<line x1="{WIDTH - RIGHT + 14}" y1="{ly - 4}" x2="{WIDTH - RIGHT + 34}" '
            f'y2="{ly - 4}" stroke="{colour}" stroke-width="2.5"/>'
        )
        out.append(
            f'<text x="{WIDTH - RIGHT + 40}" y="{ly}">{escape(name)} (n={curve.seeds})</text>'
        )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _axes(
    px: Scale,
    py: Scale,
    x_low: float,
    x_high: float,
    y_low: float,
    y_high: float,
    metric: str,
    x_label: str = "labels",
) -> list[str]:
    out = []
    bottom, right = py(y_low), px(x_high)
    out.append(
        f'<line x1="{LEFT}" y1="{_fmt(bottom)}" x2="{_fmt(right)}" y2="{_fmt(bottom)}" '
        'stroke="black"/>'
    )
    out.append(f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{_fmt(bottom)}" stroke="black"/>')
    for x in nice_ticks(x_low, x_high, 6):
        if x_low <= x <= x_high:
            out.append(
                f'<line x1="{_fmt(px(x))}" y1="{_fmt(bottom)}" x2="{_fmt(px(x))}" '
                f'y2="{_fmt(bottom + 5)}" stroke="black"/>'
            )
            out.append(
                f'<text x="{_fmt(px(x))}" y="{_fmt(bottom + 18)}" '
                f'text-anchor="middle">{int(x)}</text>'
            )
    for y in nice_ticks(y_low, y_high, 6):
        if y_low <= y <= y_high:
            out.append(
                f'<line x1="{LEFT - 5}" y1="{_fmt(py(y))}" x2="{_fmt(right)}" '
                f'y2="{_fmt(py(y))}" stroke="#e5e5e5"/>'
            )
            out.append(
                f'<text x="{LEFT - 8}" y="{_fmt(py(y) + 4)}" text-anchor="end">{y:.2f}</text>'
            )
    out.append(
        f'<text x="{_fmt((LEFT + right) / 2)}" y="{HEIGHT - 12}" '
        f'text-anchor="middle">{escape(x_label)}</text>'
    )
    out.append(
        f'<text x="16" y="{_fmt((TOP + bottom) / 2)}" text-anchor="middle" '
        f'transform="rotate(-90 16 {_fmt((TOP + bottom) / 2)})">{escape(metric)}</text>'
    )
    return out


def _ceiling_lines(
    px: Scale, py: Scale, x_low: float, x_high: float, y_low: float, ceiling: float, label: str
) -> list[str]:
    out = []
    for share, dash in ((1.0, "6 4"), (0.98, "2 3"), (0.95, "2 3")):
        y = share * ceiling
        if y < y_low:
            continue
        out.append(
            f'<line x1="{_fmt(px(x_low))}" y1="{_fmt(py(y))}" x2="{_fmt(px(x_high))}" '
            f'y2="{_fmt(py(y))}" stroke="#444" stroke-dasharray="{dash}"/>'
        )
        text = f"{label} {ceiling:.3f}" if share == 1.0 else f"{share:.0%} of ceiling"
        # Labels sit inside the plot at the left, where learning curves are still low, so they
        # collide neither with the curves' ends nor with the legend.
        out.append(
            f'<text x="{_fmt(px(x_low) + 4)}" y="{_fmt(py(y) - 2)}" fill="#444" '
            f'font-size="9">{escape(text)}</text>'
        )
    return out


def _series(px: Scale, py: Scale, curve: MeanCurve, colour: str) -> list[str]:
    xs = [float(x) for x in curve.labels]
    upper = [py(float(m + s)) for m, s in zip(curve.mean, curve.std, strict=True)]
    lower = [py(float(m - s)) for m, s in zip(curve.mean, curve.std, strict=True)]
    out = []
    if len(xs) > 1 and float(curve.std.max()) > 0:
        band = [f"{_fmt(px(x))},{_fmt(y)}" for x, y in zip(xs, upper, strict=True)]
        band += [
            f"{_fmt(px(x))},{_fmt(y)}" for x, y in zip(reversed(xs), reversed(lower), strict=True)
        ]
        out.append(f'<polygon points="{" ".join(band)}" fill="{colour}" fill-opacity="0.15"/>')
    line = " ".join(
        f"{_fmt(px(x))},{_fmt(py(float(m)))}" for x, m in zip(xs, curve.mean, strict=True)
    )
    if len(xs) > 1:
        out.append(f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="2"/>')
    for x, m in zip(xs, curve.mean, strict=True):
        out.append(
            f'<circle cx="{_fmt(px(x))}" cy="{_fmt(py(float(m)))}" r="2.5" fill="{colour}"/>'
        )
    return out
