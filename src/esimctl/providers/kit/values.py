"""Reading the values an API sends, whatever type they arrive as.

Documented types are not the types that arrive: numbers come as strings, times as ISO
text in several dialects or as epoch numbers, objects as ``null``. Each reader here takes
anything and returns the value or None (or an empty container); none of them raises, and
none guesses: junk, NaN, infinities and booleans posing as numbers are None, while a
negative or absurd figure is kept as given, for ``esimctl.validate`` to refuse by name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

#: Epoch numbers at or above this are milliseconds, below it seconds. 1e11 seconds is the
#: year 5138 and 1e11 ms is March 1973: no time an API sends is ambiguous across it.
EPOCH_MS_THRESHOLD = 1e11
#: Beyond 10**±MAX_EXPONENT a figure is no figure at all (no JSON number goes past
#: 1e308, and such exponents would only slow arithmetic down). Zero passes in any form.
MAX_EXPONENT = 1000

#: A number as text, as ``float()`` reads it (``_`` between digits included).
_DIGITS = r"\d(?:_?\d)*"
_NUMBER = re.compile(rf"[+-]?(?:{_DIGITS}(?:\.(?:{_DIGITS})?)?|\.{_DIGITS})(?:[eE][+-]?{_DIGITS})?")
#: More than the 6 fractional digits ``datetime`` keeps (RFC 3339 allows 9): cut to 6.
_FRACTION = re.compile(r"(\.\d{6})\d+")
#: ``2024-01-02 03:04:05 UTC``, ``...GMT``, ``...Z``: a zone written as a word or letter.
_UTC_SUFFIX = re.compile(r"\s*(?:Z|UTC|GMT)$", re.IGNORECASE)


# -- times ------------------------------------------------------------------------------------


def parse_time(value: Any, *, formats: Iterable[str] = ()) -> datetime | None:
    """An aware UTC datetime from what an API sends as a time, or None; never raises.

    * ISO 8601 / RFC 3339: ``T`` or a space between date and time, ``Z``/``z``, ``UTC``
      or ``GMT`` at the end, offsets with or without a colon (``+02:00``, ``+0200``,
      ``+02``), 0 to 9 fractional digits (cut to microseconds), a bare date (midnight);
      a time without a zone is UTC.
    * Epoch numbers, as numbers or numeric strings (``1750060931``, ``"1750060931000"``,
      ``"1.75e9"``): milliseconds at or above ``EPOCH_MS_THRESHOLD``, seconds below. Zero,
      negative, NaN and out-of-range numbers are None (no API means 1970 by them).
    * ``formats``: ``strptime`` patterns tried when ISO fails, for an API's own dialect
      (a result without ``%z`` is UTC).

    A string of digits only is an epoch number, never an ISO "basic" date (``20250616``).
    Booleans, objects and everything else are None.
    """
    try:
        if value is None or isinstance(value, bool):
            return None
        if isinstance(value, int | float | Decimal):
            return _epoch(float(value))
        if not isinstance(value, str):
            return None
        text = value.strip()
        if not text:
            return None
        if _NUMBER.fullmatch(text):
            return _epoch(float(text))
        return _iso(text) or _formatted(text, formats)
    except (ValueError, OverflowError, OSError, TypeError, ArithmeticError):
        return None


def _epoch(number: float) -> datetime | None:
    if not number > 0:  # zero, negative, NaN
        return None
    if number >= EPOCH_MS_THRESHOLD:
        number /= 1000
    return datetime.fromtimestamp(number, UTC)


def _iso(text: str) -> datetime | None:
    text = _FRACTION.sub(r"\1", _UTC_SUFFIX.sub("+00:00", text))
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return _utc(parsed)


def _formatted(text: str, formats: Iterable[str]) -> datetime | None:
    for fmt in formats:
        try:
            return _utc(datetime.strptime(text, fmt))
        except ValueError:
            continue
    return None


def _utc(dt: datetime) -> datetime:
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


# -- numbers ----------------------------------------------------------------------------------


def to_decimal(value: Any, *, max_exponent: int = MAX_EXPONENT) -> Decimal | None:
    """``4.5``, ``"9.50"``, ``10``, ``Decimal`` → a finite Decimal as given; else None.

    Floats go through their shortest text (``4.21`` is ``Decimal("4.21")``, never the
    binary expansion). None, booleans, objects, text that is no number, NaN, infinities
    and exponents beyond ``max_exponent`` are None. Negative and absurd figures are kept.
    """
    if value is None or isinstance(value, bool):
        return None
    if not isinstance(value, int | float | str | Decimal):
        return None
    try:
        d = Decimal(repr(value) if isinstance(value, float) else str(value).strip())
    except (InvalidOperation, ValueError, TypeError):  # ValueError: an int too long for str
        return None
    if not d.is_finite() or (d and abs(d.adjusted()) > max_exponent):
        return None
    return d


def to_int(value: Any, *, exact: bool = True, max_exponent: int = MAX_EXPONENT) -> int | None:
    """``7``, ``"7"``, ``7.0``, ``"25"`` → 7; an int is returned as given, however large.

    ``exact`` (the default): what is no whole number (``1.5``, ``"7.5"``) is None, never
    rounded into one. ``exact=False`` truncates toward zero (``7.9`` → 7). Everything
    ``to_decimal`` refuses is None.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    d = to_decimal(value, max_exponent=max_exponent)
    if d is None:
        return None
    if exact and d != d.to_integral_value():
        return None
    return int(d)


def to_bool(value: Any) -> bool | None:
    """A boolean, or the strings ``"true"``/``"false"`` (any case); anything else None."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("true", "false"):
            return text == "true"
    return None


# -- text and containers ----------------------------------------------------------------------


def to_str(value: Any) -> str | None:
    """A value as stripped text; None for None, objects, lists and blank text."""
    if value is None or isinstance(value, dict | list):
        return None
    text = str(value).strip()
    return text or None


def as_dict(value: Any) -> dict[str, Any]:
    """An object as a dict (the same one when it is a dict); anything else an empty one."""
    if isinstance(value, dict):
        return value
    if isinstance(value, Mapping):
        return dict(value)
    return {}


def as_list(value: Any) -> list[Any]:
    """A list as given (a tuple as a list); anything else an empty list. Lenient: for
    answers where nothing depends on "none". Where an empty list would mean "there are
    none", use ``records``."""
    if isinstance(value, list):
        return value
    if isinstance(value, tuple):
        return list(value)
    return []


def records(value: Any) -> list[dict[str, Any]] | None:
    """A list of objects, or None when ``value`` is anything else (``null``, ``{}``, a
    list holding a non-object): such an answer says nothing, least of all "there are
    none". An empty list is an empty list."""
    if not isinstance(value, list) or not all(isinstance(x, dict) for x in value):
        return None
    return value
