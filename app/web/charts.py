"""Geometry for the dashboard's server-drawn charts (SVG in templates, no chart library).

Drawing on the server keeps the page light, works without JavaScript and offline, and leaves no
room for injection: the template only ever receives numbers and autoescaped labels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from app.domain.dashboard import CurvePoint

WIDTH = 640
HEIGHT = 260
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 44, 16, 14, 36


@dataclass(frozen=True)
class Tick:
    value: float
    pos: float
    text: str


@dataclass(frozen=True)
class Dot:
    x: float
    y: float
    title: str


@dataclass(frozen=True)
class Series:
    name: str
    css: str
    points: str
    """``"x1,y1 x2,y2 ..."`` for an SVG polyline."""
    dots: tuple[Dot, ...]


@dataclass(frozen=True)
class LineChart:
    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    x_ticks: tuple[Tick, ...]
    y_ticks: tuple[Tick, ...]
    series: tuple[Series, ...]

    @property
    def empty(self) -> bool:
        return not any(s.dots for s in self.series)


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high] (1-2-5 steps): the first tick is at or below
    ``low`` and the last at or above ``high``, so an axis drawn from them shows every point."""
    if high <= low:
        high = low + 1
    raw = (high - low) / max(1, count)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    start = math.floor(low / step) * step
    ticks = [round(start, 10)]
    while ticks[-1] < high - step * 1e-9:
        ticks.append(round(start + len(ticks) * step, 10))
    return ticks


def learning_curve_chart(
    points: Sequence[CurvePoint], live_head: Sequence[tuple[int, float]] = ()
) -> LineChart:
    """Dev macro-F1 (solid) and accuracy (dashed) against labels used, one dot per round; the
    live head's macro-F1 (``(labels, score)`` per refit: on the dev set, or by cross-validation
    without one) as a third line; without a dev set, the adapter's macro-F1 on the slice its
    round held out as a fourth (one dot per round)."""
    right = WIDTH - PAD_RIGHT
    bottom = HEIGHT - PAD_BOTTOM
    held = [p for p in points if p.held_out_macro_f1 is not None]
    xs = [p.labels for p in points] + [x for x, _ in live_head] or [0, 100]
    x_low = 0 if min(xs) < 50 or min(xs) == max(xs) else min(xs)
    x_ticks_values = nice_ticks(x_low, max(xs), 6)
    x_lo, x_hi = x_ticks_values[0], x_ticks_values[-1]
    values = [v for p in points for v in (p.macro_f1, p.accuracy) if v is not None]
    values += [y for _, y in live_head]
    values += [p.held_out_macro_f1 for p in held if p.held_out_macro_f1 is not None]
    y_lo = max(0.0, math.floor((min(values) if values else 0.0) * 10) / 10 - 0.1)
    y_ticks_values = nice_ticks(y_lo, 1.0, 5)
    y_lo, y_hi = y_ticks_values[0], max(1.0, y_ticks_values[-1])

    def sx(x: float) -> float:
        return round(PAD_LEFT + (x - x_lo) / ((x_hi - x_lo) or 1) * (right - PAD_LEFT), 1)

    def sy(y: float) -> float:
        return round(bottom - (y - y_lo) / ((y_hi - y_lo) or 1) * (bottom - PAD_TOP), 1)

    series = []
    for name, css, attr in (("macro-F1", "f1", "macro_f1"), ("accuracy", "acc", "accuracy")):
        dots = tuple(
            Dot(sx(p.labels), sy(getattr(p, attr)),
                f"{name} {getattr(p, attr):.3f} at {p.labels} labels")
            for p in points
            if getattr(p, attr) is not None
        )
        series.append(Series(name, css, " ".join(f"{d.x},{d.y}" for d in dots), dots))
    if live_head:
        dots = tuple(Dot(sx(x), sy(y), f"live head macro-F1 {y:.3f} at {x} labels")
                     for x, y in live_head)
        series.append(Series("live head macro-F1", "live",
                             " ".join(f"{d.x},{d.y}" for d in dots), dots))
    if held:
        dots = tuple(
            Dot(sx(p.labels), sy(float(p.held_out_macro_f1 or 0.0)),
                f"adapter macro-F1 {p.held_out_macro_f1:.3f} on a held-out slice of "
                f"{p.held_out_n if p.held_out_n is not None else '?'} labels, at {p.labels} labels")
            for p in held
        )
        series.append(Series("adapter macro-F1 (held-out slice)", "held",
                             " ".join(f"{d.x},{d.y}" for d in dots), dots))
    return LineChart(
        width=WIDTH,
        height=HEIGHT,
        left=PAD_LEFT,
        right=right,
        top=PAD_TOP,
        bottom=bottom,
        x_ticks=tuple(Tick(v, sx(v), f"{v:,.0f}") for v in x_ticks_values),
        y_ticks=tuple(Tick(v, sy(v), f"{v:.1f}") for v in y_ticks_values if v <= y_hi),
        series=tuple(series),
    )


def heat_style(value: int, maximum: int, diagonal: bool) -> str:
    """Background and text colour of one confusion-matrix cell (green diagonal, red errors).

    ``maximum`` is what the value is a share of: the dashboard passes the gold row's total, so
    the colours read as "share of this label's items" whatever the class sizes."""
    if maximum <= 0 or value <= 0:
        return "background:var(--raised);color:var(--muted)"
    strength = 0.12 + 0.88 * (value / maximum)
    rgb = (4, 120, 87) if diagonal else (220, 38, 38)
    mixed = tuple(round(255 + (c - 255) * strength) for c in rgb)
    text = "#ffffff" if strength > 0.55 else "#111827"
    return f"background:rgb({mixed[0]},{mixed[1]},{mixed[2]});color:{text}"
