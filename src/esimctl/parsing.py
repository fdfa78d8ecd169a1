"""Validation of every value that enters from the command line or config.

Each parser raises ``InvalidInput`` with a one-line message naming the value and an
example of the accepted form, so the CLI can exit 2 before anything is written.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation

from esimctl.errors import InvalidInput
from esimctl.models import Money

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_ICCID = re.compile(r"^\d{18,22}$")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)\s*$", re.IGNORECASE)
_MONEY = re.compile(r"^\s*(\d+(?:\.\d{1,4})?)\s*([A-Za-z]{3})\s*$")
_MONEY_PREFIX = re.compile(r"^\s*([A-Za-z]{3})\s*(\d+(?:\.\d{1,4})?)\s*$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)\s*$", re.IGNORECASE)
_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")

_UNITS = {"B": 0, "K": 1, "M": 2, "G": 3, "T": 4}
#: The largest amount a price, cap or budget may name (in any currency).
MAX_AMOUNT = Decimal(10**12)


def account_name(value: str) -> str:
    if not _NAME.match(value):
        raise InvalidInput(
            f"invalid account name {value!r}: use letters, digits, '-' and '_' (at most 64)"
        )
    return value


def iccid(value: str) -> str:
    v = value.strip().replace(" ", "")
    if not _ICCID.match(v):
        raise InvalidInput(f"invalid ICCID {value!r}: an ICCID is 18 to 22 digits")
    return v


def size(value: str, *, base: int = 1024) -> int:
    """Parse ``500MB``, ``1.5GB``, ``2 GiB`` into bytes; a unit is required (``0`` aside).

    ``GB``/``MB`` follow ``base`` (1024 by default, as Airalo and eSIM Access count);
    the ``iB`` forms are always binary.
    """
    if value.strip() == "0":
        return 0  # the one size that needs no unit
    m = _SIZE.match(value)
    if not m:
        if re.fullmatch(r"\s*\d+(?:\.\d+)?\s*", value):
            raise InvalidInput(f"invalid size {value!r}: give a unit, like 1.2GB or 500MB")
        raise InvalidInput(f"invalid size {value!r}: use a number and a unit, like 500MB or 1.5GB")
    number = Decimal(m.group(1))
    unit = m.group(2).upper()
    if number > 10**6 and unit[0] in "GT":
        raise InvalidInput(f"invalid size {value!r}: more than any eSIM holds")
    step = 1024 if "I" in unit else base
    return int(number * (step ** _UNITS[unit[0]]))


def money(value: str) -> Money:
    """Parse ``15USD``, ``15 USD``, ``USD 15``, ``4.50eur``."""
    m = _MONEY.match(value)
    if m:
        amount, cur = m.group(1), m.group(2)
    else:
        m = _MONEY_PREFIX.match(value)
        if not m:
            raise InvalidInput(
                f"invalid price {value!r}: use an amount and a currency code, "
                "like 15USD or 4.50 EUR"
            )
        cur, amount = m.group(1), m.group(2)
    try:
        dec = Decimal(amount)
    except InvalidOperation as exc:  # pragma: no cover - the regex already checked
        raise InvalidInput(f"invalid price {value!r}") from exc
    if dec > MAX_AMOUNT:
        raise InvalidInput(f"invalid price {value!r}: more than any plan costs")
    return Money(dec, currency(cur))


def currency(value: str) -> str:
    v = value.strip().upper()
    if not re.fullmatch(r"[A-Z]{3}", v):
        raise InvalidInput(f"invalid currency {value!r}: use a 3-letter ISO 4217 code like USD")
    return v


def decimal_amount(value: str) -> Decimal:
    try:
        d = Decimal(value.strip())
    except InvalidOperation as exc:
        raise InvalidInput(f"invalid amount {value!r}: use a number like 12.50") from exc
    if not d.is_finite() or d < 0:
        raise InvalidInput(f"invalid amount {value!r}: use a number like 12.50")
    return d


def duration(value: str) -> timedelta:
    """Parse ``2d``, ``36h``, ``90m``, ``30s``, ``1w``."""
    m = _DURATION.match(value)
    if not m:
        raise InvalidInput(f"invalid duration {value!r}: use a number and s, m, h, d or w, like 2d")
    n = float(m.group(1))
    unit = m.group(2).lower()
    minutes = {"s": 1 / 60, "m": 1, "min": 1, "h": 60, "d": 1440, "w": 10080}[unit]
    if n * minutes > 100 * 365 * 1440:
        raise InvalidInput(f"invalid duration {value!r}: more than a hundred years")
    return timedelta(minutes=n * minutes)


def percent(value: str) -> float:
    m = _PERCENT.match(value)
    if not m or float(m.group(1)) > 100:
        raise InvalidInput(
            f"invalid percentage {value!r}: use a number from 0 to 100 and %, like 10%"
        )
    return float(m.group(1))


def when(value: str, *, now: datetime | None = None) -> datetime:
    """Parse a date (``2026-12-01``), an ISO 8601 time, or an age (``3d`` ago)."""
    v = value.strip()
    if _DURATION.match(v):
        try:
            return (now or datetime.now(UTC)) - duration(v)
        except OverflowError as exc:
            raise InvalidInput(f"invalid date {value!r}: too far back") from exc
    try:
        if len(v) == 10:
            d = date.fromisoformat(v)
            return datetime(d.year, d.month, d.day).astimezone().astimezone(UTC)
        dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidInput(
            f"invalid date {value!r}: use YYYY-MM-DD, an ISO 8601 time, or an age like 7d"
        ) from exc
    if dt.tzinfo is None:
        dt = dt.astimezone()  # a naive time the user types is their local time
    return dt.astimezone(UTC)
