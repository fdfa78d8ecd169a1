"""How figures read for a person: sizes in the provider's own units, times, bars."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from esimctl.models import AfterAllowance, Esim, Money

if TYPE_CHECKING:
    from esimctl.forecast import Forecast


def size(n: int | None, base: int = 1024) -> str:
    """``3 GB`` for 3×1024³ on a binary provider, as the provider's own app shows it."""
    if n is None:
        return "?"
    units = ["B", "KB", "MB", "GB", "TB"]
    value = float(n)
    i = 0
    while value >= base and i < len(units) - 1:
        value /= base
        i += 1
    if i == 0:
        return f"{n} B"
    if value < 10:
        text = f"{value:.2f}".rstrip("0").rstrip(".")
    elif value < 100:
        text = f"{value:.1f}".rstrip("0").rstrip(".")
    else:
        text = f"{value:.0f}"
    return f"{text} {units[i]}"


def relative(delta: timedelta) -> str:
    """``2 d 4 h``, ``5 h 10 m``, ``12 m``: two units at most."""
    secs = int(abs(delta.total_seconds()))
    d, rem = divmod(secs, 86400)
    h, rem = divmod(rem, 3600)
    m = rem // 60
    if d >= 10:
        return f"{d} d"
    if d:
        return f"{d} d {h} h" if h else f"{d} d"
    if h:
        return f"{h} h {m} m" if m else f"{h} h"
    return f"{m} m" if m else "now"


def until(when: datetime, now: datetime) -> str:
    delta = when - now
    if delta.total_seconds() >= 0:
        return f"in {relative(delta)}"
    return f"{relative(delta)} ago"


def ago(when: datetime, now: datetime) -> str:
    delta = now - when
    if delta.total_seconds() < 60:
        return "now"
    return f"{relative(delta)} ago"


def local_time(when: datetime) -> str:
    return when.astimezone().strftime("%Y-%m-%d %H:%M")


def short_local_time(when: datetime, now: datetime) -> str:
    """``Nov 29 20:36`` this year, ``2027-05-27`` otherwise."""
    local = when.astimezone()
    if local.year == now.astimezone().year:
        return local.strftime("%b %d %H:%M")
    return local.strftime("%Y-%m-%d")


def runs_out(f: Forecast | None, now: datetime, base: int = 1024) -> str:
    """What a forecast says, in a few words: ``~Tue 14:00`` (runs out then), ``1.2 GB
    spare`` (left when the package expires), ``no use seen``; ``—`` without a forecast."""
    if f is None:
        return "—"
    if f.runs_out_at is None:
        return "no use seen"
    if f.runs_out_before_expiry is False:
        left = f.left_at_expiry_bytes
        return f"{size(left, base)} spare" if left else "lasts"
    local = f.runs_out_at.astimezone()
    if f.runs_out_at - now < timedelta(days=6):
        return "~" + local.strftime("%a %H:%M")
    return "~" + short_local_time(f.runs_out_at, now)


def bar(fraction: float, width: int = 8) -> str:
    fraction = min(max(fraction, 0.0), 1.0)
    filled = round(fraction * width)
    return "█" * filled + "░" * (width - filled)


def money(m: Money | None) -> str:
    return "?" if m is None else str(m)


def esc(text: object) -> str:
    """Provider and user text as text: ``[eSIM]`` in a plan name is not Rich markup.

    The one escape of esimctl: every provider's or user's string that reaches Rich markup
    (a table cell, a result line) goes through it."""
    s = str(text)
    # Rich's escape changes only "[..." and a trailing backslash; skipping it otherwise
    # keeps Rich unimported for --json and pipes (a tenth of status's start-up).
    if "[" not in s and not s.endswith("\\"):
        return s
    from rich.markup import escape

    return escape(s)


def describe(e: Esim) -> str:
    """An eSIM as named in a sentence: ``Tokyo (8981…)``, or its ICCID alone."""
    return f"{e.label} ({e.iccid})" if e.label else e.iccid


def days_left(e: Esim, now: datetime) -> str | None:
    """``5 d left``, ``14 h left``: the time an eSIM in use has left; None otherwise."""
    if e.expires_at is None or e.state.value != "active" or e.expires_at <= now:
        return None
    left = e.expires_at - now
    return f"{left.days} d left" if left.days >= 1 else f"{relative(left)} left"


def allowance(e: Esim, now: datetime, *, sep: str = " · ") -> str | None:
    """A day pass's figure as the phone lives it: ``1 GB/day → 1 Mbps · 5 d left`` (then
    slower), ``1 GB/day → off till 14:00 · 5 d left`` (no data until the allowance
    resets); None for any other plan. The part before ``sep`` is the plan's shape, whole."""
    d = e.daily
    if d is None:
        return None
    head = f"{size(d.bytes, e.unit_base)}/day" if d.bytes else "a daily allowance"
    if d.after == AfterAllowance.REDUCED_SPEED:
        head += f" → {d.speed}" if d.speed else " → slower"
    elif d.after == AfterAllowance.CUT_OFF:
        till = d.resets_at.astimezone().strftime("%H:%M") if d.resets_at else None
        head += f" → off till {till}" if till else " → off till the next day"
    left = days_left(e, now)
    return sep.join([head, left]) if left else head
