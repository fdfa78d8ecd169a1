"""The limits of a purchase: price caps, a count per day, monthly budgets. One
implementation, checked before consent and again inside the renewal lock.

What counts against a limit is the larger of the listed and the charged price
(``counted_price``); a charged price that cannot be a price (zero, negative, not a
number) counts as the listed one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from esimctl import validate
from esimctl.errors import LimitRefused
from esimctl.ledger import LedgerOrder
from esimctl.models import Esim, Money, Plan
from esimctl.output.human import describe
from esimctl.purchasing.book import OrderBook


def month_start(now: datetime) -> datetime:
    """The first moment of this calendar month, in the machine's local time."""
    local = now.astimezone()
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def check_price(
    price: Money | None, cap: Money | None, *, where: str = "--max-price", what: str
) -> None:
    """One price cap (``--max-price``, a rule's ``max_price``): exit 5 beyond it, or when
    the price is unknown or in another currency (prices are never converted)."""
    if cap is None:
        return
    if price is None:
        raise LimitRefused(f"refused: the price of {what} is unknown and {where} is set")
    if price.currency != cap.currency:
        raise LimitRefused(f"refused: {what} costs {price}, {where} is in {cap.currency}")
    if price.amount > cap.amount:
        raise LimitRefused(f"refused: {what} costs {price}, above {where} ({cap})")


@dataclass(frozen=True)
class Budget:
    """A monthly budget: one amount per currency, over every purchase or one eSIM's."""

    amounts: tuple[Money, ...]
    where: str  # "[renewal]", "[renewal.esims.Tokyo]"
    per_esim: bool = False


@dataclass(frozen=True)
class Limits:
    """Every limit one purchase is held to, checked in one place (``check_limits``)."""

    caps: tuple[tuple[Money, str], ...] = ()
    budgets: tuple[Budget, ...] = ()
    max_per_day: tuple[int, str] | None = None
    #: Buy only plans with a known price (every purchase through an API does).
    require_price: bool = False


#: A purchase this run has planned but not made (``--dry-run``): (account, iccid, price).
Planned = tuple[str, str, Money]


def _spent(
    book: OrderBook,
    currency: str,
    since: datetime,
    scope: Esim | None,
    planned: Sequence[Planned],
) -> Decimal:
    total = book.spent_amount(
        currency,
        since=since,
        account=scope.account if scope else None,
        iccid=scope.iccid if scope else None,
    )
    for account, iccid, price in planned:
        in_scope = scope is None or (scope.account, scope.iccid) == (account, iccid)
        if in_scope and price.currency == currency:
            total += price.amount
    return total


def check_limits(
    book: OrderBook,
    limits: Limits,
    esim: Esim | None,
    plan: Plan,
    *,
    planned: Sequence[Planned] = (),
) -> None:
    """Raise ``LimitRefused`` (exit 5) if buying ``plan`` for ``esim`` breaks a limit,
    counting what the ledger holds as paid or possibly paid, and ``planned``. ``esim``
    None: a new eSIM (no per-eSIM limit applies to it)."""
    price = plan.price
    what = f"{plan.name} for {describe(esim)}" if esim is not None else f"a new eSIM of {plan.name}"
    problem = validate.price_problem(price) if price is not None else None
    if problem:
        raise LimitRefused(f"refused: {what}: {problem}")
    if plan.per_day and plan.days is None:
        # Its price is one day's: what the purchase would cost is not known yet.
        raise LimitRefused(
            f"refused: {what} is a day pass priced per day; name the number of days "
            "(price × days is what counts against every limit)"
        )
    if price is None and limits.require_price:
        raise LimitRefused(
            f"refused: the price of {what} is unknown; esimctl buys only what has a price"
        )
    for cap, where in limits.caps:
        check_price(price, cap, where=where, what=what)
    now = book.clock()
    if limits.max_per_day is not None and esim is not None:
        most, where = limits.max_per_day
        renewals = book.spent(since=now - timedelta(days=1), account=esim.account, iccid=esim.iccid)
        # Buying the eSIM itself (esimctl buy) is not a renewal of it.
        day = [r for r in renewals if r.detail.get("kind") != "new"]
        count = len(day) + sum(1 for a, i, _ in planned if (a, i) == (esim.account, esim.iccid))
        if count >= most:
            raise LimitRefused(
                f"refused: {describe(esim)} was renewed {count} time(s) in the last 24 h; "
                f"{where} is {most}"
            )
    month = month_start(now)
    for budget in limits.budgets:
        if not budget.amounts:
            continue
        if price is None:
            raise LimitRefused(
                f"refused: the price of {what} is unknown and a monthly_budget is set "
                f"in {budget.where}"
            )
        amount = next((b for b in budget.amounts if b.currency == price.currency), None)
        if amount is None:
            raise LimitRefused(
                f"refused: {what} costs {price}; the monthly_budget of {budget.where} has no "
                f"amount in {price.currency}"
            )
        if budget.per_esim and esim is None:
            continue
        so_far = _spent(book, price.currency, month, esim if budget.per_esim else None, planned)
        if so_far + price.amount > amount.amount:
            raise LimitRefused(
                f"refused: {what} costs {price}, beyond the monthly_budget of {budget.where} "
                f"({amount}): {Money(so_far, price.currency)} spent this month"
            )


def over_limit(book: OrderBook, limits: Limits, esim: Esim | None, row: LedgerOrder) -> str | None:
    """After a purchase: does what it counts (``row.price``) break a cap or a budget?"""
    price = row.price
    if price is None:
        return None
    what = f"{row.plan} for {describe(esim)}" if esim is not None else f"a new eSIM of {row.plan}"
    for cap, where in limits.caps:
        if price.currency != cap.currency or price.amount > cap.amount:
            return f"{what} was charged {price}, above {where} ({cap})"
    month = month_start(book.clock())
    for budget in limits.budgets:
        if not budget.amounts:
            continue
        amount = next((b for b in budget.amounts if b.currency == price.currency), None)
        if amount is None:
            return (
                f"{what} was charged {price}; the monthly_budget of {budget.where} has no "
                f"amount in {price.currency}"
            )
        if budget.per_esim and esim is None:
            continue
        so_far = _spent(book, price.currency, month, esim if budget.per_esim else None, ())
        if so_far > amount.amount:
            return (
                f"{what} was charged {price}: {Money(so_far, price.currency)} spent this "
                f"month, beyond the monthly_budget of {budget.where} ({amount})"
            )
    return None


def counted_price(listed: Money | None, charged: Money | None) -> tuple[Money | None, str | None]:
    """What a purchase counts against the limits, and a note when the provider's charged
    price could not be taken at its word. The larger of listed and charged counts."""
    # Zero, negative, not a number: no charge at all can be read from it. A positive charge
    # beyond belief is still counted: the larger figure is the safe one.
    bad = charged is not None and (not charged.amount.is_finite() or charged.amount <= 0)
    if charged is None or bad:
        note = (
            f"the provider reported a charge of {charged.amount} {charged.currency}, which "
            f"cannot be right; counted at the listed {listed}"
            if charged is not None
            else None
        )
        return listed, note
    if listed is None:
        return charged, None
    if charged.currency != listed.currency:
        return charged, f"charged in {charged.currency}, listed at {listed}"
    if charged.amount > listed.amount:
        return charged, f"charged {charged}, more than the listed {listed}"
    if charged.amount < listed.amount:
        return listed, f"charged {charged}, less than the listed {listed}; counted at {listed}"
    return charged, None
