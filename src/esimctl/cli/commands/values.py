"""Values a user types for what esimctl cannot ask a seller: sizes, prices, days, dates,
countries; shared by ``esim`` and the manual ``renew``, below both."""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from datetime import UTC, date, datetime, time

from esimctl import parsing
from esimctl.env import Env
from esimctl.errors import Aborted, ConsentRequired, InvalidInput
from esimctl.models import Esim, Money
from esimctl.output import human
from esimctl.validate import MAX_BYTES, YEARS

PLAN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
COUNTRY = re.compile(r"^[A-Za-z]{2}$")

# -- values typed by the user -------------------------------------------------------------------


def data_size(value: str, base: int) -> int:
    """``1.2GB``, ``500MB`` or ``0``: a unit is required, a bare ``1.2`` is surely not bytes."""
    n = parsing.size(value, base=base)
    if n > MAX_BYTES:
        raise InvalidInput(f"invalid size {value!r}: more than any eSIM holds")
    return n


def real_date(when: datetime, value: str) -> datetime:
    """A date a seller can mean (the years ``validate`` believes), else invalid input."""
    if not YEARS[0] <= when.year <= YEARS[1]:
        raise InvalidInput(f"invalid date {value!r}: not a date a seller means")
    return when


def price(value: str) -> Money:
    """``58CNY``, ``58 CNY``; ``RMB``, as Chinese sellers write it, is ISO 4217's ``CNY``."""
    m = parsing.money(value)
    return Money(m.amount, "CNY") if m.currency == "RMB" else m


def days(value: int | str, *, least: int = 0) -> int:
    try:
        n = int(str(value).strip())
    except ValueError:
        n = -1
    if n < least:
        raise InvalidInput(f"invalid number of days {value!r}: use a whole number from {least}")
    return n


def end_date(value: str) -> datetime:
    """An end date: a date alone means the end of that day, local time, as sellers mean it."""
    v = value.strip()
    try:
        d = date.fromisoformat(v) if len(v) == 10 else None
    except ValueError:
        d = None
    if d is not None:
        return real_date(datetime.combine(d, time(23, 59, 59)).astimezone().astimezone(UTC), value)
    try:
        parsing.duration(v)
    except InvalidInput:
        return real_date(parsing.when(v), value)
    raise InvalidInput(f"invalid end date {value!r}: use YYYY-MM-DD or an ISO 8601 time")


def past_time(value: str, now: datetime, what: str) -> datetime:
    """A time that has happened: a date, an ISO 8601 time, or an age like ``2h``."""
    when = real_date(parsing.when(value, now=now), value)
    if when > now:
        raise InvalidInput(f"invalid {what} {value!r}: it is in the future")
    return when


def activation(value: str, now: datetime) -> datetime:
    return real_date(parsing.when(value, now=now), value)


# -- unlikely values: asked about, refused in a pipe unless --force ---------------------------


def insist(env: Env, problems: Sequence[str], *, force: bool, what: str) -> None:
    """Go on despite ``problems`` only with the user's word.

    ``--force`` goes on; a terminal asks y/N, naming each problem; anywhere else it is a
    one-line refusal, exit 2, naming the problems and ``--force``.
    """
    if not problems or force:
        return
    text = "; ".join(problems)
    if not env.can_prompt:
        raise ConsentRequired(f"refusing to {what}: {text}; pass --force to {what} anyway")
    env.stderr.write(f"{text[0].upper()}{text[1:]}. {what[0].upper()}{what[1:]} anyway? [y/N] ")
    env.stderr.flush()
    if env.stdin.readline().strip().lower() not in ("y", "yes"):
        raise Aborted(f"nothing recorded: not confirmed ({text})")


def end_in_past(end: datetime | None, now: datetime) -> str | None:
    if end is None or end >= now:
        return None
    return f"the end date {human.local_time(end)} is in the past ({human.ago(end, now)})"


def activation_in_future(activated: datetime | None, now: datetime) -> str | None:
    if activated is None or activated <= now:
        return None
    return (
        f"the activation date {human.local_time(activated)} is in the future "
        f"({human.until(activated, now)})"
    )


def countries(values: tuple[str, ...]) -> tuple[str, ...]:
    out: list[str] = []
    for v in values:
        for c in v.split(","):
            c = c.strip()
            if not COUNTRY.match(c):
                raise InvalidInput(f"invalid country {c!r}: use 2-letter codes like JP or JP,KR")
            if c.upper() not in out:
                out.append(c.upper())
    return tuple(out)


def plan_name(data_bytes: int, n_days: int | None, base: int, until: datetime | None) -> str:
    """A name for a package or plan the seller's name is not known for: ``3 GB · 7 days``."""
    parts = [human.size(data_bytes, base)] if data_bytes else []
    if n_days:
        parts.append(f"{n_days} days")
    elif until is not None:
        parts.append(f"until {human.local_time(until)[:10]}")
    return " · ".join(parts)


def name_of(e: Esim) -> str:
    """How to name ``e`` in a command the user may copy."""
    return shlex.quote(e.label or e.iccid)


def check_label_free(env: Env, label: str) -> None:
    """A label names one eSIM: not digits (they read as an ICCID suffix), not taken."""
    if label.isdigit():
        raise InvalidInput(f"invalid label {label!r}: digits read as an ICCID; add a letter")
    from esimctl.serialize import esim_from_cache

    known = [esim_from_cache(d) for d in env.ledger.latest_snapshots()]
    labels = {(env.config.label_for(e.iccid) or e.label or "").lower(): e for e in known}
    taken = labels.get(label.lower())
    if taken is not None:
        raise InvalidInput(f"label {label!r} is taken by eSIM {taken.iccid} ({taken.account})")
