"""The domain model every provider returns, already normalised.

Bytes are integers as the provider counts them, times are aware UTC datetimes, money is a
Decimal with an ISO 4217 code. Nothing provider-specific appears here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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

    @property
    def data_used_bytes(self) -> int | None:
        if self.data_total_bytes is None or self.data_remaining_bytes is None:
            return None
        return max(self.data_total_bytes - self.data_remaining_bytes, 0)


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
