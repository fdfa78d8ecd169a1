"""The domain model every provider returns, already normalised.

Bytes are integers as the provider counts them, times are aware UTC datetimes, money is a
Decimal with an ISO 4217 code. Nothing provider-specific appears here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import ROUND_HALF_UP, Context, Decimal
from enum import StrEnum
from typing import Any


class EsimState(StrEnum):
    NOT_ACTIVE = "not_active"
    ACTIVE = "active"
    DEPLETED = "depleted"
    EXPIRED = "expired"
    RECYCLED = "recycled"
    UNKNOWN = "unknown"


class OrderState(StrEnum):
    COMPLETED = "completed"
    PENDING = "pending"
    FAILED = "failed"
    DRY_RUN = "dry_run"


class Attention(StrEnum):
    LOW_DATA = "low_data"
    EXPIRING_SOON = "expiring_soon"
    TOPUP_PENDING = "topup_pending"
    TOPUP_OVERDUE = "topup_overdue"
    DEPLETED = "depleted"
    EXPIRED = "expired"
    STALE = "stale"
    RUNS_OUT_SOON = "runs_out_soon"


@dataclass(frozen=True, order=True)
class Money:
    amount: Decimal
    currency: str

    def to_json(self) -> dict[str, str]:
        return {"amount": format_decimal(self.amount, self.currency), "currency": self.currency}

    def __str__(self) -> str:
        return f"{format_decimal(self.amount, self.currency)} {self.currency}"


#: ISO 4217 currencies without minor units (1480 JPY, not 1480.00 JPY).
ZERO_DECIMAL = frozenset({"JPY", "KRW", "VND", "CLP", "ISK", "UGX", "XOF", "XAF", "PYG", "IDR"})


def format_decimal(d: Decimal, currency: str | None = None) -> str:
    """The amount in the currency's minor units (4.50 USD, 1480 JPY), for display and JSON.

    Rounded half up (4.505 → 4.51): a price is never shown lower than it is by rounding
    half to even. Only the text is rounded; amounts are stored and compared as given.
    """
    if not d.is_finite():
        return str(d)
    unit = Decimal("1") if currency in ZERO_DECIMAL else Decimal("0.01")
    # Enough digits for any finite amount: quantize never raises InvalidOperation.
    ctx = Context(prec=max(28, d.adjusted() + 4), rounding=ROUND_HALF_UP)
    q = d.quantize(unit, context=ctx)
    if q.is_zero():
        q = abs(q)  # "-0.00" reads as a refund of nothing
    return format(q, "f")


class AfterAllowance(StrEnum):
    """What a daily allowance leaves once the day's data is used, until it resets."""

    #: Data goes on, slower (``DailyAllowance.speed`` says how slow, where known).
    REDUCED_SPEED = "reduced_speed"
    #: No data at all until the allowance resets.
    CUT_OFF = "cut_off"


@dataclass(frozen=True)
class DailyAllowance:
    """A plan's shape when it is no package total: full-speed data each day (a day pass,
    a fair-usage plan that names a daily amount), and what happens once it is used."""

    #: Full-speed data a day; None where the seller names no amount.
    bytes: int | None
    after: AfterAllowance | None = None
    #: The speed after the allowance (``1 Mbps``), as the seller says it; None if unsaid.
    speed: str | None = None
    #: When the day's allowance comes back next, where known (eSIMs only).
    resets_at: datetime | None = None


#: The most days of a day pass esimctl buys in one purchase.
MAX_DAY_PASS_DAYS = 365
_DAYS_SUFFIX = re.compile(r"(.+):(\d{1,3})d")


def split_days(plan_id: str) -> tuple[str, int | None]:
    """``TOPUP_JP01:7d`` → (``TOPUP_JP01``, 7): a day pass and its days; else (id, None)."""
    m = _DAYS_SUFFIX.fullmatch(plan_id)
    return (m.group(1), int(m.group(2))) if m else (plan_id, None)


@dataclass(frozen=True)
class Package:
    """One package (bundle) on an eSIM: the active one or one queued behind it."""

    name: str | None
    state: str  # "active", "queued", "processing", "depleted", "expired", ...
    data_total_bytes: int | None
    data_remaining_bytes: int | None
    unlimited: bool = False
    expires_at: datetime | None = None


@dataclass(frozen=True)
class Esim:
    """One eSIM with its latest usage figures, as one provider account sees it."""

    account: str
    provider: str
    iccid: str
    state: EsimState
    plan: str | None = None
    label: str | None = None
    data_total_bytes: int | None = None
    data_remaining_bytes: int | None = None
    unlimited: bool = False
    expires_at: datetime | None = None
    as_of: datetime | None = None
    packages: tuple[Package, ...] = ()
    #: 1024 where the provider counts MB/GB of 1024 bytes (Airalo, eSIM Access), 1000 otherwise.
    unit_base: int = 1024
    #: Provider-specific identifiers a client needs later (never secrets).
    ref: dict[str, str] = field(default_factory=dict)
    #: A day pass (or a fair-usage plan naming a daily amount): the day's allowance. Its
    #: figures are then per day, never the package's: ``data_*_bytes`` stay None.
    daily: DailyAllowance | None = None
    #: The seller's fair-usage note, as given (``Speed reduced to 1 Mbps after 2 GB/day``).
    fair_usage: str | None = None

    @property
    def data_used_bytes(self) -> int | None:
        if self.data_total_bytes is None or self.data_remaining_bytes is None:
            return None
        return max(self.data_total_bytes - self.data_remaining_bytes, 0)

    @property
    def shape(self) -> str:
        """``daily`` (a day's allowance), ``unlimited``, or ``total`` (a package of data)."""
        return "daily" if self.daily is not None else "unlimited" if self.unlimited else "total"

    @property
    def never_runs_out(self) -> bool:
        """No data figure of it can run out: a day pass, an unlimited or fair-usage plan.
        Data-based rules and attention (low data, depleted, a forecast) never apply."""
        return self.unlimited or self.daily is not None


def truthful_state(e: Esim, now: datetime) -> Esim:
    """A day pass or an unlimited plan is never ``depleted`` while it has days left: the
    day's allowance comes back (or goes on slower), so the phone still has data. Used up
    with no days left, it is expired."""
    if e.state != EsimState.DEPLETED or not e.never_runs_out:
        return e
    if e.expires_at is not None and e.expires_at <= now:
        return replace(e, state=EsimState.EXPIRED)
    return replace(e, state=EsimState.ACTIVE)


@dataclass(frozen=True)
class Plan:
    id: str
    account: str
    provider: str
    name: str
    kind: str  # "topup" | "new"
    data_bytes: int | None
    unlimited: bool
    validity_days: int | None
    price: Money | None
    countries: tuple[str, ...] = ()
    #: "stacks" (adds to the current package), "queues" (starts after it), or None if unknown.
    stacking: str | None = None
    unit_base: int = 1024
    #: A day pass: price, validity and data are per day, and it is bought for a number of
    #: days (``for_days``): N days cost N times the price.
    per_day: bool = False
    #: The days a day pass is bought for (``for_days``); None for one not resolved yet.
    days: int | None = None
    daily: DailyAllowance | None = None
    fair_usage: str | None = None

    def for_days(self, days: int) -> Plan:
        """This day pass bought for ``days`` days: id ``ID:Nd``, price and validity times
        ``days`` (what every limit counts). A plan that is no day pass is returned as is."""
        if not self.per_day:
            return self
        if self.days is not None:
            raise ValueError(f"{self.id} is already bought for {self.days} days")
        if not 1 <= days <= MAX_DAY_PASS_DAYS:
            raise ValueError(f"days {days} out of 1..{MAX_DAY_PASS_DAYS}")
        price = self.price
        return replace(
            self,
            id=f"{self.id}:{days}d",
            name=f"{self.name} · {days} day{'s' if days != 1 else ''}",
            validity_days=days,
            price=None if price is None else Money(price.amount * days, price.currency),
            days=days,
        )


@dataclass(frozen=True)
class Order:
    id: str
    account: str
    provider: str
    iccid: str | None
    plan_id: str | None
    plan: str | None
    price: Money | None
    created_at: datetime
    state: OrderState
    source: str  # "provider" | "local"
    reference: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Activation:
    """How to put an eSIM on a phone. Secret-like: whoever holds it can install the eSIM,
    so it is shown only when asked (``esimctl install``), never logged, cached or put in
    ``status``'s JSON."""

    #: The activation code: ``LPA:1$<SM-DP+ address>$<matching id>``.
    lpa: str
    #: Apple's direct-install link, where the seller gives one.
    apple_url: str | None = None
    #: The seller's installation notes, as plain text.
    notes: str | None = None

    @property
    def smdp(self) -> str | None:
        parts = self.lpa.split("$")
        return parts[1] if len(parts) >= 3 and parts[0].upper() == "LPA:1" else None

    @property
    def matching_id(self) -> str | None:
        parts = self.lpa.split("$")
        return parts[2] if len(parts) >= 3 and parts[0].upper() == "LPA:1" else None

    def __repr__(self) -> str:  # never in a traceback or a log line
        return "Activation(…)"


@dataclass(frozen=True)
class NewEsim:
    """What a seller answered to an order for a new eSIM."""

    order: Order
    #: None while the seller has not allocated the profile yet (eSIM Access).
    iccid: str | None = None
    activation: Activation | None = field(default=None, repr=False)
