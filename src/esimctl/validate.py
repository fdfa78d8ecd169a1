"""What esimctl refuses to believe: plausibility checks at the provider boundary.

Every figure a provider gives passes here before it reaches a table, the cache, a renewal
rule or a limit (``Provider.__init_subclass__`` applies the checks to every provider,
built-in or plugin). An implausible figure is an error for that eSIM or that plan, named,
never a number in the table and never a trigger for a purchase:

* data figures: negative, beyond ``MAX_BYTES``, or remaining above the total;
* prices: not finite, zero or negative, below the currency's minor unit, or beyond
  ``MAX_PRICE``: such a plan is not offered.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from esimctl.models import ZERO_DECIMAL, Esim, Money, Plan

#: More data than any eSIM package holds (100 TB): a figure beyond it is a provider's bug.
MAX_BYTES = 100 * 10**12
#: Remaining may exceed the total by this much (MB rounding of providers counting in MB).
REMAINING_SLACK = 1024**2
#: The highest price esimctl believes, in major units: far above any travel plan.
MAX_PRICE = Decimal(100_000)
#: The same for currencies without minor units, whose amounts run larger (KRW, IDR, VND).
MAX_PRICE_ZERO_DECIMAL = Decimal(100_000_000)
#: Expiry dates outside these years are not dates a provider means.
YEARS = (2000, 2200)


def minor_unit(currency: str) -> Decimal:
    return Decimal(1) if currency in ZERO_DECIMAL else Decimal("0.01")


def price_problem(price: Money) -> str | None:
    """Why ``price`` cannot be a real price, or None when it can."""
    amount = price.amount
    if not isinstance(amount, Decimal) or not amount.is_finite():
        return f"price {amount!r} is not a number"
    if amount <= 0:
        return f"price {amount} {price.currency} is not positive"
    if amount < minor_unit(price.currency):
        return f"price {amount} {price.currency} is below the smallest coin"
    top = MAX_PRICE_ZERO_DECIMAL if price.currency in ZERO_DECIMAL else MAX_PRICE
    if amount > top:
        return f"price {amount:.4E} {price.currency} is beyond any travel plan"
    return None


def _bytes_problem(what: str, value: int | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        return f"{what} {value!r} is not a number of bytes"
    if value < 0:
        return f"{what} {value} is negative"
    if value > MAX_BYTES:
        return f"{what} {_magnitude(value)} bytes is more than any eSIM holds"
    return None


def _magnitude(value: int) -> str:
    """``1e+30`` for a huge int, without float conversion (which overflows past 1e308)."""
    digits = str(value)
    return f"{digits[0]}e+{len(digits) - 1}" if len(digits) > 6 else digits


def _time_problem(what: str, value: datetime | None) -> str | None:
    if value is not None and not YEARS[0] <= value.year <= YEARS[1]:
        return f"{what} {value.date().isoformat()} is not a real date"
    return None


def esim_problem(e: Esim) -> str | None:
    """Why ``e``'s figures cannot be true, or None when they can."""
    checks = [
        _bytes_problem("data total", e.data_total_bytes),
        _bytes_problem("data left", e.data_remaining_bytes),
        _time_problem("expiry", e.expires_at),
        _bytes_problem("daily allowance", e.daily.bytes if e.daily else None),
    ]
    for p in e.packages:
        checks.append(_bytes_problem("a package's total", p.data_total_bytes))
        checks.append(_bytes_problem("a package's data left", p.data_remaining_bytes))
        checks.append(_time_problem("a package's expiry", p.expires_at))
    for problem in checks:
        if problem:
            return problem
    rem, tot = e.data_remaining_bytes, e.data_total_bytes
    if not e.unlimited and rem is not None and tot is not None and rem > tot + REMAINING_SLACK:
        return f"data left ({rem} bytes) is more than the package holds ({tot} bytes)"
    return None


def plan_problem(plan: Plan) -> str | None:
    """Why ``plan`` cannot be offered, or None when it can."""
    if plan.price is not None:
        problem = price_problem(plan.price)
        if problem:
            return problem
    if plan.data_bytes is not None and not plan.unlimited:
        problem = _bytes_problem("data", plan.data_bytes)
        if problem:
            return problem
    if plan.daily is not None:
        problem = _bytes_problem("daily allowance", plan.daily.bytes)
        if problem:
            return problem
    if plan.validity_days is not None and not 0 < plan.validity_days <= 3660:
        return f"validity of {plan.validity_days} days"
    return None
