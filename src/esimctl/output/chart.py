"""A chart of data left over time, drawn with block characters: readings as solid columns,
the forecast as a dotted line down to zero, the expiry and "now" marked on the time axis.

No plotting library: the chart is a few rows of text that fit any width from 40 columns,
read the same in every terminal font, and are tested as text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from esimctl.forecast import Forecast, Reading
from esimctl.output import human

_EIGHTHS = " ▁▂▃▄▅▆▇█"


@dataclass(frozen=True)
class Span:
    start: datetime
    end: datetime


def span_of(
    readings: Sequence[Reading], now: datetime, f: Forecast | None, expires_at: datetime | None
) -> Span:
    """From the first reading to the expiry or the run-out (the earlier), at least a day
    past now and at most two weeks past it."""
    start = min((r.at for r in readings), default=now - timedelta(days=1))
    ends = [t for t in (expires_at, f.runs_out_at if f else None) if t is not None and t > now]
    end = min(ends) if ends else now + timedelta(days=1)
    end = min(max(end, now + timedelta(days=1)), now + timedelta(days=14))
    return Span(start, end)


def _left_at(readings: Sequence[Reading], t: datetime) -> int | None:
    """The figure as last told at ``t`` (a reading holds until the next one)."""
    value = None
    for r in readings:
        if r.at > t:
            break
        value = r.remaining
    return value


def draw(
    readings: Sequence[Reading],
    *,
    now: datetime,
    forecast: Forecast | None,
    expires_at: datetime | None,
    width: int,
    base: int = 1024,
    height: int = 6,
) -> list[str]:
    """The chart's lines (Rich markup), ``width`` columns wide at most."""
    readings = sorted(readings, key=lambda r: r.at)
    if not readings:
        return []
    top = max(r.remaining for r in readings) or 1
    label_w = max(len(human.size(top, base)), 4) + 2
    cols = max(width - label_w - 1, 20)
    span = span_of(readings, now, forecast, expires_at)
    step = (span.end - span.start) / cols
    last = readings[-1]
    heights: list[tuple[float, bool]] = []
    for c in range(cols):
        t = span.start + step * (c + 0.5)
        if t <= last.at:
            value = _left_at(readings, t)
            heights.append(((value or 0) / top, False))
        elif forecast is not None and forecast.rate_bytes_per_day > 0:
            days = (t - last.at).total_seconds() / 86_400
            left = max(last.remaining - forecast.rate_bytes_per_day * days, 0.0)
            heights.append((left / top, True))
        else:
            heights.append((last.remaining / top, True))

    def column_of(t: datetime | None) -> int | None:
        if t is None or not span.start <= t <= span.end:
            return None
        return min(int((t - span.start) / step), cols - 1)

    expiry_col = column_of(expires_at)
    now_col = column_of(now)
    lines: list[str] = []
    for row in range(height, 0, -1):
        label = human.size(top, base) if row == height else ("0" if row == 1 else "")
        cells = []
        for c, (h, ahead) in enumerate(heights):
            level = h * height - (row - 1)  # how much of this row the value fills
            if ahead:
                # The forecast is a dotted line: a dot in the row its value falls in.
                on_line = 0.0 < level <= 1.0 or (row == 1 and level <= 0.0)
                ch = "[dim]·[/]" if on_line else " "
            else:
                ch = _EIGHTHS[round(max(min(level, 1.0), 0.0) * 8)]
            if c == expiry_col and ch == " ":
                ch = "[red]│[/]"
            cells.append(ch)
        lines.append(f"{label:>{label_w - 2}} ┤" + "".join(cells))
    axis = [" "] * cols
    marks = [(now_col, "▲"), (expiry_col, "▲")]
    for col, ch in marks:
        if col is not None:
            axis[col] = ch
    lines.append(" " * (label_w - 1) + "└" + "".join(axis))
    lines.append(" " * label_w + _time_labels(span, cols, now, now_col, expiry_col, expires_at))
    return lines


def _time_labels(
    span: Span,
    cols: int,
    now: datetime,
    now_col: int | None,
    expiry_col: int | None,
    expires_at: datetime | None,
) -> str:
    """``Nov 26`` at the left, ``now`` and ``expires Dec 01`` under their marks, where
    they fit without overlapping."""
    row = [" "] * cols

    def put(col: int, text: str) -> bool:
        col = max(min(col, cols - len(text)), 0)
        if any(ch != " " for ch in row[max(col - 1, 0) : col + len(text) + 1]):
            return False
        row[col : col + len(text)] = list(text)
        return True

    put(0, span.start.astimezone().strftime("%b %d"))
    if now_col is not None:
        put(now_col - 1, "now")
    if expiry_col is not None and expires_at is not None:
        put(expiry_col - 5, "expires " + expires_at.astimezone().strftime("%b %d"))
    elif not put(cols - 6, span.end.astimezone().strftime("%b %d")):
        pass
    return "".join(row).rstrip()
