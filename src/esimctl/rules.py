"""Renewal rules: the ``[renewal]`` tables of ``config.toml``, parsed, validated and evaluated.

``[renewal]`` is the default for every eSIM; ``[renewal.esims.NAME]`` (NAME: a label, an
ICCID or a unique ICCID suffix) refines it for one eSIM. ``docs/renewal-rules.md`` is the
user's page; the short form::

    [renewal]
    monthly_budget = ["60 USD", "8000 JPY"]   # every automatic and manual purchase
    max_price = "15 USD"
    max_per_day = 1

    [renewal.esims.Tokyo]
    data_below = "500MB"          # or "10%", or a list of both
    expires_within = "1d"
    plan = "jp-1gb-3d"            # or: min_data = "1GB", min_days = 3
    # days = 3                    # with plan: a day pass, bought for that many days
    trip_start = 2026-12-01
    trip_end = 2026-12-14

Each key is parsed by ``SCHEMA`` through ``config_schema.check``, the one validator of
config.toml: a bad value is a one-line ``ConfigError`` naming the file, the table and the
key (exit 2). ``Config`` runs ``load`` whenever the file is read.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from esimctl import config_schema, parsing
from esimctl.config import Config
from esimctl.config_schema import Key, Mismatch
from esimctl.errors import ConfigError, InvalidInput
from esimctl.models import MAX_DAY_PASS_DAYS, Esim, EsimState, Money
from esimctl.output import human
from esimctl.serialize import iso

if TYPE_CHECKING:
    from esimctl.forecast import Forecast

#: Keys that decide when a rule fires; an eSIM table merges them key by key.
TRIGGER_KEYS = ("data_below", "runs_out_within", "expires_within")
#: Keys that decide what is bought; an eSIM table that sets one replaces the whole group.
BUY_KEYS = ("plan", "min_data", "min_days", "days")
#: Keys an eSIM table inherits from ``[renewal]`` one by one.
INHERITED = (
    *TRIGGER_KEYS,
    *BUY_KEYS,
    "currency",
    "max_price",
    "max_per_day",
    "trip_start",
    "trip_end",
    "enabled",
)
#: ``monthly_budget`` is never inherited: in ``[renewal]`` it caps everything, in an eSIM
#: table it caps that eSIM.
KEYS = (*INHERITED, "monthly_budget")

DEFAULT_MAX_PER_DAY = 1
#: eSIM states a rule may renew: an expired or not yet installed eSIM is left to the user.
RENEWABLE = (EsimState.ACTIVE, EsimState.DEPLETED)


@dataclass(frozen=True)
class Threshold:
    """``data_below``: a size (``500MB``, read in the eSIM's own units) or a percentage."""

    text: str
    percent: float | None = None

    def fired(self, e: Esim) -> str | None:
        """The figure that fired, as a person reads it, or None. Never on a day pass (its
        figure is the day's, and comes back) nor on an unlimited plan."""
        if e.never_runs_out:
            return None
        rem, tot = e.data_remaining_bytes, e.data_total_bytes
        if rem is None:
            return "no data left" if e.state == EsimState.DEPLETED else None
        left = human.size(rem, e.unit_base)
        if self.percent is None:
            limit = parsing.size(self.text, base=e.unit_base)
            return f"data left {left} < {human.size(limit, e.unit_base)}" if rem < limit else None
        if tot and rem * 100 < self.percent * tot:
            shown = math.floor(rem * 1000 / tot) / 10  # rounded down: 9.99% is not "10.0%"
            return f"data left {left} ({shown:g}%) < {self.percent:g}%"
        return None


@dataclass(frozen=True)
class Rule:
    """The effective rule of one table: its own keys over the inherited ones."""

    #: The TOML table it comes from: ``renewal`` or ``renewal.esims.Tokyo``.
    name: str
    #: The eSIM the table names (None for the default).
    target: str | None = None
    enabled: bool = True
    data_below: tuple[Threshold, ...] = ()
    expires_within: timedelta | None = None
    #: Fires when the forecast (``esimctl.forecast``) says the data runs out within this.
    runs_out_within: timedelta | None = None
    plan: str | None = None
    min_data: str | None = None
    min_days: int | None = None
    #: With ``plan``, a day pass: the number of days to buy it for (price × days counts).
    days: int | None = None
    currency: str | None = None
    max_price: Money | None = None
    max_per_day: int = DEFAULT_MAX_PER_DAY
    #: Only this table's own budget (``[renewal]``'s is ``RenewalRules.monthly_budget``).
    monthly_budget: tuple[Money, ...] = ()
    trip_start: datetime | None = None
    trip_end: datetime | None = None

    @property
    def has_trigger(self) -> bool:
        return (
            bool(self.data_below)
            or self.expires_within is not None
            or self.runs_out_within is not None
        )

    @property
    def has_buy(self) -> bool:
        return self.plan is not None or self.min_data is not None or self.min_days is not None

    @property
    def complete(self) -> bool:
        return self.enabled and self.has_trigger and self.has_buy

    def outside_window(self, now: datetime) -> str | None:
        """Why ``now`` is outside the trip window, or None when inside (or no window)."""
        if self.trip_start is not None and now < self.trip_start:
            return f"the trip starts {human.local_time(self.trip_start)}"
        if self.trip_end is not None and now >= self.trip_end:
            return f"the trip ended {human.local_time(self.trip_end)}"
        return None

    def fired(
        self, e: Esim, now: datetime, forecast: Forecast | None = None
    ) -> tuple[str, str] | None:
        """``(trigger key, figure)`` of the first trigger that holds for ``e``, or None.
        ``runs_out_within`` needs ``forecast``; without one it holds for nothing, and the
        other triggers decide (``no_forecast`` says so)."""
        for t in self.data_below:
            figure = t.fired(e)
            if figure is not None:
                return "data_below", figure
        f = forecast
        if (
            self.runs_out_within is not None
            and f is not None
            and not e.never_runs_out
            and f.runs_out_at is not None
            and f.runs_out_before_expiry is not False
            and f.runs_out_at - now <= self.runs_out_within
        ):
            return (
                "runs_out_within",
                f"runs out {human.until(f.runs_out_at, now)} at "
                f"{human.size(round(f.rate_bytes_per_day), e.unit_base)} a day "
                f"(forecast on {f.basis_hours:.0f} h of readings; within "
                f"{human.relative(self.runs_out_within)})",
            )
        if self.expires_within is not None and e.expires_at is not None:
            left = e.expires_at - now
            if left <= self.expires_within:
                within = human.relative(self.expires_within)
                verb = "expires" if left >= timedelta(0) else "expired"
                return (
                    "expires_within",
                    f"{verb} {human.until(e.expires_at, now)} (within {within})",
                )
        return None

    def no_forecast(self, forecast: Forecast | None) -> str | None:
        """What a rule with ``runs_out_within`` says when there is no forecast to act on."""
        if self.runs_out_within is None or forecast is not None:
            return None
        others = bool(self.data_below) or self.expires_within is not None
        return "no forecast yet (it needs readings over an hour or more); " + (
            "data_below and expires_within decide" if others else "nothing else can fire"
        )

    def wanted(self) -> str:
        """What the cheapest plan must give: ``at least 3GB and 7 days``."""
        parts = [self.min_data] if self.min_data is not None else []
        if self.min_days is not None:
            parts.append(f"{self.min_days} days")
        return "at least " + " and ".join(parts)

    def describe_buy(self) -> str:
        if self.plan is not None and self.days is not None:
            return f"plan {self.plan} for {self.days} day{'s' if self.days != 1 else ''}"
        if self.plan is not None:
            return f"plan {self.plan}"
        return f"the cheapest plan giving {self.wanted()}"


def need_key(rule: Rule, e: Esim) -> str:
    """One purchase per need: the account, the eSIM, the rule and the package it fired on.

    The package is named by its end date and its data total, the two figures a top-up
    changes once it is applied. While a top-up is pending the figures stay the same, so a
    second run finds the same key and buys nothing; once applied, they change, and a rule
    firing again is a new need.
    """
    total = "unlimited" if e.unlimited else str(e.data_total_bytes)
    return f"{e.account}/{e.iccid}/{rule.name}/{iso(e.expires_at) or '-'}/{total}"


@dataclass(frozen=True)
class RenewalRules:
    path: Path
    default: Rule
    esims: tuple[Rule, ...] = ()
    #: ``[renewal] monthly_budget``: one amount per currency, over every purchase.
    monthly_budget: tuple[Money, ...] = field(default_factory=tuple)

    @property
    def empty(self) -> bool:
        return not self.default.complete and not any(r.complete for r in self.esims)

    def assign(
        self, esims: Sequence[Esim], *, complete: bool = False
    ) -> tuple[dict[tuple[str, str], Rule], list[str]]:
        """The rule of each eSIM (by ``(account, iccid)``), and notes on tables naming none.

        With ``complete`` (every account answered), a table naming no eSIM is a config
        error: a typo in a label must not silently switch a renewal off.
        """
        from esimctl.service import match_esim

        own: dict[tuple[str, str], Rule] = {}
        notes: list[str] = []
        for rule in self.esims:
            assert rule.target is not None
            try:
                e = match_esim(rule.target, esims)
            except InvalidInput as exc:
                if "ambiguous" in exc.message or complete:
                    raise ConfigError(f"{self.path}: [{rule.name}] {exc.message}") from None
                notes.append(f"[{rule.name}] names no eSIM that answered: {exc.message}")
                continue
            key = (e.account, e.iccid)
            if key in own:
                raise ConfigError(
                    f"{self.path}: [{own[key].name}] and [{rule.name}] both name eSIM {e.iccid}"
                )
            own[key] = rule
        out = {(e.account, e.iccid): own.get((e.account, e.iccid), self.default) for e in esims}
        return out, notes


# -- parsing -----------------------------------------------------------------------------------


def load(config: Config) -> RenewalRules:
    """The rules of ``config``; ``ConfigError`` (exit 2) on the first bad table."""
    raw = config.raw.get("renewal", {})
    path = config.path
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: [renewal] must be a table")
    tables = raw.get("esims", {})
    if not isinstance(tables, dict):
        raise ConfigError(f"{path}: [renewal.esims] must hold one table per eSIM")
    parsed_default = _fields(raw, path, "renewal", others=("esims",))
    default = _build(parsed_default, path, "renewal", target=None, own_budget=())
    global_budget: tuple[Money, ...] = parsed_default.get("monthly_budget", ())
    rules = []
    for name, table in tables.items():
        where = f"renewal.esims.{_toml_key(name)}"
        own = _fields(table, path, where)
        merged = {k: v for k, v in parsed_default.items() if k in INHERITED}
        if any(k in own for k in BUY_KEYS):
            for k in BUY_KEYS:
                merged.pop(k, None)
        merged.update({k: v for k, v in own.items() if k != "monthly_budget"})
        rule = _build(merged, path, where, target=name, own_budget=own.get("monthly_budget", ()))
        if rule.enabled and not rule.complete:
            raise ConfigError(
                f"{path}: [{where}] needs a trigger (data_below, runs_out_within or "
                "expires_within) and what "
                "to buy (plan, or min_data/min_days), here or in [renewal]; or enabled = false"
            )
        rules.append(rule)
    return RenewalRules(path, default, tuple(rules), global_budget)


def _toml_key(name: str) -> str:
    """The table's name as ``Rule.name`` has always spelt it: it is part of ``need_key``,
    which the ledger keeps, so it must not change (quoted names are escaped: one line)."""
    if name.replace("-", "").replace("_", "").isalnum():
        return name
    return json.dumps(name, ensure_ascii=False)


def _fields(table: Any, path: Path, where: str, *, others: Iterable[str] = ()) -> dict[str, Any]:
    """Each key of one table, parsed on its own by ``SCHEMA`` (the message names this table)."""
    return config_schema.check(table, SCHEMA, path=path, where=where, others=others)


def _build(
    values: dict[str, Any],
    path: Path,
    where: str,
    *,
    target: str | None,
    own_budget: tuple[Money, ...],
) -> Rule:
    fields = {k: v for k, v in values.items() if k != "monthly_budget"}
    rule = Rule(name=where, target=target, monthly_budget=own_budget, **fields)
    if rule.plan is not None and (rule.min_data is not None or rule.min_days is not None):
        raise ConfigError(
            f"{path}: [{where}] give plan, or min_data/min_days for the cheapest plan, not both"
        )
    if rule.days is not None and rule.plan is None:
        raise ConfigError(
            f"{path}: [{where}] days goes with plan: the day pass to buy for that many days"
        )
    if rule.trip_start and rule.trip_end and rule.trip_end <= rule.trip_start:
        raise ConfigError(f"{path}: [{where}] trip_end is not after trip_start")
    if rule.currency and rule.max_price and rule.max_price.currency != rule.currency:
        raise ConfigError(
            f"{path}: [{where}] currency is {rule.currency} but max_price is in "
            f"{rule.max_price.currency}"
        )
    return rule


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Mismatch
    return value.strip()


def _texts(value: Any) -> list[str]:
    items = value if isinstance(value, list) else [value]
    return [_text(v) for v in items]


def _thresholds(value: Any) -> tuple[Threshold, ...]:
    out = []
    for text in _texts(value):
        if text.endswith("%"):
            out.append(Threshold(text, parsing.percent(text)))
        else:
            parsing.size(text)
            out.append(Threshold(text))
    return tuple(out)


def _size(value: Any) -> str:
    text = _text(value)
    parsing.size(text)
    return text


def _positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise Mismatch
    return value


def _pass_days(value: Any) -> int:
    days = _positive_int(value)
    if days > MAX_DAY_PASS_DAYS:
        raise Mismatch
    return days


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Mismatch
    return value


def _budget(value: Any) -> tuple[Money, ...]:
    amounts = [parsing.money(t) for t in _texts(value)]
    seen: set[str] = set()
    for m in amounts:
        if m.currency in seen:
            raise InvalidInput(f"two budgets in {m.currency}: give one amount per currency")
        seen.add(m.currency)
    return tuple(amounts)


def _moment(value: Any, *, end: bool) -> datetime:
    """A TOML date or date-time, or the same in a string. A bare date is local and whole:
    a start date begins at its midnight, an end date lasts until the next midnight."""
    if isinstance(value, str):
        try:
            value = (
                date.fromisoformat(value.strip())
                if len(value.strip()) == 10
                else datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            )
        except ValueError:
            raise InvalidInput(
                f"invalid date {value!r}: use 2026-12-01 or 2026-12-01T08:00:00+09:00"
            ) from None
    if not isinstance(value, date):  # a datetime is a date too
        raise InvalidInput(f"invalid date {value!r}: use 2026-12-01 or 2026-12-01T08:00:00+09:00")
    try:
        if isinstance(value, datetime):
            dt = value if value.tzinfo else value.astimezone()
            moment = dt.astimezone(UTC)
        else:
            day = value + timedelta(days=1) if end else value
            moment = datetime.combine(day, time()).astimezone().astimezone(UTC)
        moment.astimezone()  # it is shown in local time: that must exist too
    except (OverflowError, ValueError, OSError):
        raise InvalidInput(
            f"date {value} is out of range: the last one accepted is 9999-12-30"
        ) from None
    return moment


_DATE = "a date, like 2026-12-01 or 2026-12-01T08:00:00+09:00"
_WHOLE = "a whole number of at least 1"

#: ``[renewal]`` and ``[renewal.esims.NAME]``: each key, its parser and what it accepts.
SCHEMA: dict[str, Key] = {
    "data_below": Key(
        'a size or a percentage in quotes, like "500MB" or "10%", or a list of both',
        _thresholds,
    ),
    "expires_within": Key('a duration in quotes, like "1d"', lambda v: parsing.duration(_text(v))),
    "runs_out_within": Key(
        'a duration in quotes, like "24h"', lambda v: parsing.duration(_text(v))
    ),
    "plan": Key('a plan id in quotes, like "jp-1gb-3d"', _text),
    "min_data": Key('a size in quotes, like "3GB"', _size),
    "min_days": Key(_WHOLE, _positive_int),
    "days": Key(f"a whole number of days from 1 to {MAX_DAY_PASS_DAYS}", _pass_days),
    "currency": Key('a currency code in quotes, like "USD"', lambda v: parsing.currency(_text(v))),
    "max_price": Key('an amount in quotes, like "15 USD"', lambda v: parsing.money(_text(v))),
    "max_per_day": Key(_WHOLE, _positive_int),
    "trip_start": Key(_DATE, lambda v: _moment(v, end=False)),
    "trip_end": Key(_DATE, lambda v: _moment(v, end=True)),
    "enabled": Key("true or false", _bool),
    "monthly_budget": Key(
        'an amount in quotes, like "60 USD", or a list of them (one per currency)', _budget
    ),
}
