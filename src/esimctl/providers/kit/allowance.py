"""Reading a plan's shape from the words sellers use for it: the speed after a daily
allowance (``FUP1Mbps``, ``384 Kbps``) and a daily amount (``2 GB per day``, ``1GB/Day``).

Only what the text says plainly is read; anything else is None (unknown), never a guess.
``fair_usage_terms`` puts both together as a ``DailyAllowance``.
"""

from __future__ import annotations

import re

from esimctl.models import AfterAllowance, DailyAllowance

_SPEED = re.compile(r"(\d+(?:\.\d+)?)\s*([kmg])\s*(?:bps|bit/s|b/s)\b", re.IGNORECASE)
_DAILY = re.compile(
    r"(\d+(?:\.\d+)?)\s*(gb|mb)\s*(?:/\s*day|per\s+day|a\s+day|each\s+day|daily)\b",
    re.IGNORECASE,
)
#: A speed beyond this is no throttle anyone names (and no real figure either).
_MAX_KBPS = 10_000_000


def speed_in(text: object) -> str | None:
    """The speed a text names, as ``1 Mbps`` / ``384 Kbps``; None when it names none."""
    if not isinstance(text, str):
        return None
    m = _SPEED.search(text)
    if m is None:
        return None
    number, unit = m.group(1), m.group(2).upper()
    value = float(number)
    kbps = value * {"K": 1, "M": 1000, "G": 1_000_000}[unit]
    if value <= 0 or kbps > _MAX_KBPS:
        return None
    shown = number.rstrip("0").rstrip(".") if "." in number else number
    return f"{shown} {unit}bps"


def daily_in(text: object, base: int = 1024) -> int | None:
    """The daily amount a text names (``2 GB per day``), in bytes of ``base``; else None."""
    if not isinstance(text, str):
        return None
    m = _DAILY.search(text)
    if m is None:
        return None
    value = float(m.group(1))
    power = 3 if m.group(2).lower() == "gb" else 2
    n = int(value * base**power)
    return n if n > 0 else None


_CUT = re.compile(r"\b(cut|block|blocked|suspend|suspended|stop|stops|no (?:more )?data)\b", re.I)


def fair_usage_terms(text: object, base: int = 1024) -> DailyAllowance | None:
    """The daily allowance a fair-usage text states (``Speed reduced to 1 Mbps after 2 GB
    per day``): its amount, then a reduced speed (a speed named) or a cut-off (``blocked``,
    ``no data``); None when it names no daily amount."""
    amount = daily_in(text, base)
    if amount is None or not isinstance(text, str):
        return None
    speed = speed_in(text)
    if speed is not None:
        return DailyAllowance(amount, AfterAllowance.REDUCED_SPEED, speed)
    return DailyAllowance(amount, AfterAllowance.CUT_OFF if _CUT.search(text) else None)
