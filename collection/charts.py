"""Small inline SVG charts for the collection report: bars, columns and histograms.

The data-quality report (collection/report.py) is one self-contained HTML file,
so its charts are SVG text written here rather than images or a charting
library's scripts. Every chart has a title, labelled axes and escaped text: a
label from the data (a repair label, a date) can hold any character and is
written as text, never as markup. The <svg> elements carry no xmlns: inside
HTML the parser puts them in the SVG namespace, and the report holds no URL.

  bar_chart   horizontal bars, one per named category (label frequencies);
  column_chart  vertical columns, one per category (coverage per day);
  histogram   adjacent columns over numeric bins, with optional marker lines
              (median, 95th percentile, Tukey's fences).

Why not matplotlib: it does resolve against requirements.lock without moving a
pin (it adds matplotlib 3.10, contourpy, cycler, fonttools and kiwisolver), but
these three chart kinds need none of it, its SVG draws text as glyph paths (or
leaves the font to the viewer), and it would add five packages to the lock and
the component image for a report. Here a chart is a few kilobytes of text whose
labels a test can read back.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape
from typing import Callable, Mapping, Sequence

__all__ = ["Bar", "bar_chart", "column_chart", "histogram", "nice_ticks"]

_FONT = 'font-family="system-ui, sans-serif" font-size="11"'
_BAR = "#1565c0"
_FLAGGED = "#c62828"
_AXIS = "#555"
_MARKER_COLOURS = ("#ef6c00", "#6a1b9a", "#2e7d32", "#ad1457")


@dataclass(frozen=True)
class Bar:
    """One bar: its category, its value, and whether it is flagged (drawn in red, with a note)."""

    label: str
    value: float
    flag: str = ""


def _text(value: object) -> str:
    return escape(str(value), quote=True)


def _number(value: float) -> str:
    """A tick or value label: integers without decimals, others with up to 3 significant digits."""
    if value == 0:
        return "0"
    if abs(value) >= 1e9:
        return f"{value:.3g}"
    if float(value).is_integer() or abs(value) >= 1000:
        return f"{round(value):,}" if abs(value) >= 10000 else f"{round(value)}"  # 2026, not 2,026
    return f"{value:.3g}"


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering low..high: steps of 1, 2 or 5 times a power of ten."""
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"ticks need finite bounds, got {low}..{high}")
    if high < low:
        low, high = high, low
    if high == low:
        high = low + 1
    raw = (high - low) / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.floor(low / step) * step
    ticks = []
    k = 0
    while first + k * step <= high + step * 1e-9:
        ticks.append(round(first + k * step, 12))
        k += 1
    if ticks[-1] < high:
        ticks.append(round(first + k * step, 12))
    return ticks


def _svg(width: int, height: int, title: str, body: list[str]) -> str:
    return (f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'role="img" aria-label="{_text(title)}" {_FONT}>'
            f"<title>{_text(title)}</title>"
            f'<text x="{width / 2:.1f}" y="14" text-anchor="middle" font-weight="bold">{_text(title)}</text>'
            + "".join(body) + "</svg>")


def bar_chart(bars: Sequence[Bar], *, title: str, value_label: str,
              value_format: Callable[[float], str] = _number, label_width: int = 230,
              plot_width: int = 360, row_height: int = 14) -> str:
    """Horizontal bars, one row per Bar in the given order; the value axis starts at 0."""
    top, bottom = 24, 34
    height = top + max(len(bars), 1) * row_height + bottom
    width = label_width + plot_width + 110
    maximum = max([b.value for b in bars] + [0])
    ticks = nice_ticks(0, maximum if maximum > 0 else 1, 4)
    scale = plot_width / ticks[-1]
    body = []
    for i, bar in enumerate(bars):
        y = top + i * row_height
        colour = _FLAGGED if bar.flag else _BAR
        length = max(bar.value, 0) * scale
        note = f" ({bar.flag})" if bar.flag else ""
        body.append(f'<text x="{label_width - 6}" y="{y + row_height - 3}" text-anchor="end">'
                    f"{_text(bar.label)}</text>")
        body.append(f'<rect class="bar" x="{label_width}" y="{y + 2}" width="{length:.2f}" '
                    f'height="{row_height - 4}" fill="{colour}"><title>{_text(bar.label)}: '
                    f"{_text(value_format(bar.value))}{_text(note)}</title></rect>")
        body.append(f'<text x="{label_width + length + 4:.2f}" y="{y + row_height - 3}" '
                    f'fill="{colour if bar.flag else _AXIS}">{_text(value_format(bar.value) + note)}</text>')
    axis_y = top + max(len(bars), 1) * row_height
    body.append(_line(label_width, axis_y, label_width + plot_width, axis_y))
    for tick in ticks:
        x = label_width + tick * scale
        body.append(_line(x, axis_y, x, axis_y + 4))
        body.append(f'<text x="{x:.2f}" y="{axis_y + 15}" text-anchor="middle">{_text(value_format(tick))}</text>')
    body.append(f'<text class="axis-label" x="{label_width + plot_width / 2:.1f}" y="{axis_y + 29}" '
                f'text-anchor="middle">{_text(value_label)}</text>')
    return _svg(width, height, title, body)


def column_chart(categories: Sequence[str], values: Sequence[float], *, title: str, x_label: str,
                 y_label: str, y_max: float | None = None,
                 value_format: Callable[[float], str] = _number, plot_height: int = 160,
                 column_width: float = 28) -> str:
    """Vertical columns, one per category in the given order; y from 0 to y_max (default: the data's)."""
    if len(categories) != len(values):
        raise ValueError(f"{len(categories)} categories but {len(values)} values")
    left, top, bottom = 60, 26, 70
    # At least 300 px wide, so that the title fits; wider columns for a few days.
    plot_width = max(len(values) * column_width, 300)
    column_width = plot_width / max(len(values), 1)
    width, height = round(left + plot_width + 20), top + plot_height + bottom
    maximum = y_max if y_max is not None else max(list(values) + [0])
    ticks = nice_ticks(0, maximum if maximum > 0 else 1, 4)
    scale = plot_height / ticks[-1]
    base = top + plot_height
    body = _y_axis(left, top, plot_height, ticks, scale, value_format, y_label)
    for i, (category, value) in enumerate(zip(categories, values)):
        x = left + i * column_width
        h = max(value, 0) * scale
        body.append(f'<rect class="bar" x="{x + 3:.2f}" y="{base - h:.2f}" width="{column_width - 6:.2f}" '
                    f'height="{h:.2f}" fill="{_BAR}"><title>{_text(category)}: '
                    f"{_text(value_format(value))}</title></rect>")
        cx = x + column_width / 2
        body.append(f'<text x="{cx:.1f}" y="{base + 8}" text-anchor="end" '
                    f'transform="rotate(-45 {cx:.1f} {base + 8})">{_text(category)}</text>')
    body.append(_line(left, base, left + plot_width, base))
    body.append(f'<text class="axis-label" x="{left + plot_width / 2:.1f}" y="{height - 6}" '
                f'text-anchor="middle">{_text(x_label)}</text>')
    return _svg(width, height, title, body)


def histogram(edges: Sequence[float], counts: Sequence[float], *, title: str, x_label: str,
              y_label: str = "sessions", markers: Mapping[str, float] | None = None,
              plot_width: int = 300, plot_height: int = 110) -> str:
    """Columns over the bins edges[i]..edges[i+1]; markers are labelled vertical lines at x values.
    No edges and no counts draw empty axes (a column without values)."""
    if (edges or counts) and len(edges) != len(counts) + 1:
        raise ValueError(f"{len(counts)} counts need {len(counts) + 1} bin edges, got {len(edges)}")
    left, top, bottom, right = 50, 26, 44, 20
    markers = dict(markers or {})
    width, height = left + plot_width + right, top + plot_height + bottom + 14 * len(markers)
    low, high = (edges[0], edges[-1]) if counts else (0.0, 1.0)
    span = (high - low) or 1.0

    def x_of(value: float) -> float:
        return left + (value - low) / span * plot_width

    ticks = nice_ticks(0, max(list(counts) + [0]) or 1, 3)
    scale = plot_height / ticks[-1]
    base = top + plot_height
    body = _y_axis(left, top, plot_height, ticks, scale, _number, y_label)
    for i, count in enumerate(counts):
        x0, x1 = x_of(edges[i]), x_of(edges[i + 1])
        h = count * scale
        body.append(f'<rect class="bar" x="{x0:.2f}" y="{base - h:.2f}" width="{max(x1 - x0 - 1, 0.5):.2f}" '
                    f'height="{h:.2f}" fill="{_BAR}"><title>{_text(_number(edges[i]))} to '
                    f"{_text(_number(edges[i + 1]))}: {_text(_number(count))}</title></rect>")
    body.append(_line(left, base, left + plot_width, base))
    for value in (low, high):
        body.append(f'<text x="{x_of(value):.2f}" y="{base + 13}" text-anchor="middle">{_text(_number(value))}</text>')
    body.append(f'<text class="axis-label" x="{left + plot_width / 2:.1f}" y="{base + 28}" '
                f'text-anchor="middle">{_text(x_label)}</text>')
    for k, (name, value) in enumerate(markers.items()):
        colour = _MARKER_COLOURS[k % len(_MARKER_COLOURS)]
        x = min(max(x_of(value), left), left + plot_width)
        body.append(f'<line class="marker" x1="{x:.2f}" y1="{top}" x2="{x:.2f}" y2="{base}" stroke="{colour}" '
                    f'stroke-dasharray="4 2"/>')
        body.append(f'<text x="{left}" y="{base + 42 + 14 * k}" fill="{colour}">'
                    f"{_text(name)}: {_text(_number(value))}</text>")
    return _svg(width, height, title, body)


def _line(x1: float, y1: float, x2: float, y2: float) -> str:
    return f'<line x1="{x1:.2f}" y1="{y1:.2f}" x2="{x2:.2f}" y2="{y2:.2f}" stroke="{_AXIS}"/>'


def _y_axis(left: int, top: int, plot_height: int, ticks: list[float], scale: float,
            value_format: Callable[[float], str], y_label: str) -> list[str]:
    base = top + plot_height
    body = [_line(left, top, left, base)]
    for tick in ticks:
        y = base - tick * scale
        body.append(_line(left - 4, y, left, y))
        body.append(f'<text x="{left - 6}" y="{y + 4:.2f}" text-anchor="end">{_text(value_format(tick))}</text>')
    cy = top + plot_height / 2
    body.append(f'<text class="axis-label" x="12" y="{cy:.1f}" text-anchor="middle" '
                f'transform="rotate(-90 12 {cy:.1f})">{_text(y_label)}</text>')
    return body
