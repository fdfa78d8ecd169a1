"""Buying safely: journal, reconcile, buy once, verify applied.

Every purchase, manual or automatic, goes through here:

1. ``reconcile``: intents left by an earlier run (crash, kill, timeout) are looked up
   with the provider by our own reference before anything else is bought.
2. ``buy``: an ``intent`` row with a fresh reference is committed to the ledger *before*
   the request; the outcome (pending, failed) is written after. An eSIM whose earlier
   intent is still unresolved is not bought for again.
3. ``verify``: poll the eSIM (backoff, bounded by a timeout) until the provider shows the
   package; the order becomes ``completed`` (applied) or stays ``pending``.

The caller holds the renewal lock around ``reconcile`` and ``buy``. ``verify`` may run
after the lock is released: by then the order is in the ledger as ``pending``, and a
concurrent run treats a pending eSIM as served.

Test hook: ``ESIMCTL_TEST_KILL_AT=STEP`` makes the process SIGKILL itself at that step of
``buy`` (``before_request``: the intent is committed, nothing sent; ``after_answer``: the
provider answered, its outcome not yet recorded; ``after_record``: the outcome recorded,
nothing verified). The crash-safety tests use it; unset, it does nothing.
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal

from esimctl.env import Env
from esimctl.errors import (
    AuthRejected,
    EsimctlError,
    LimitRefused,
    OutcomeUnknown,
    TemporaryFailure,
)
from esimctl.ledger import INTENT, LedgerOrder
from esimctl.models import Esim, Money, Order, OrderState, Plan
from esimctl.providers.base import Capability, Provider
from esimctl.serialize import esim_from_cache, esim_to_cache

#: How far back an order lookup searches before an intent's own time.
LOOKUP_SLACK = timedelta(hours=1)
#: Ledger states of an order that is, or may be, paid for: what budgets and caps count.
COMMITTED = (OrderState.COMPLETED.value, OrderState.PENDING.value, INTENT)
#: The test hook's variable (see the module docstring).
KILL_AT_VAR = "ESIMCTL_TEST_KILL_AT"


def checkpoint(env: Env, step: str) -> None:
    """Test hook: die here, as a SIGKILL would, when ``ESIMCTL_TEST_KILL_AT`` names ``step``."""
    if env.environ.get(KILL_AT_VAR) == step:
        os.kill(os.getpid(), signal.SIGKILL)


def committed(
    env: Env, *, since: datetime, account: str | None = None, iccid: str | None = None
) -> list[LedgerOrder]:
    """Orders journalled since ``since`` that are, or may be, paid for."""
    return env.ledger.orders(account=account, iccid=iccid, states=COMMITTED, since=since)


def month_start(now: datetime) -> datetime:
    """The first moment of this calendar month, in the machine's local time."""
    local = now.astimezone()
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def spent(
    env: Env,
    currency: str,
    *,
    since: datetime,
    account: str | None = None,
    iccid: str | None = None,
) -> Decimal:
    """What the ledger's committed orders since ``since`` cost in ``currency``."""
    rows = committed(env, since=since, account=account, iccid=iccid)
    return sum(
        (r.price.amount for r in rows if r.price and r.price.currency == currency), Decimal(0)
    )


def check_month_budget(
    env: Env, budgets: tuple[Money, ...], price: Money | None, what: str
) -> None:
    """``[renewal] monthly_budget`` caps every purchase, manual ones too: exit 5 beyond it."""
    if not budgets:
        return
    if price is None:
        raise LimitRefused(f"refused: the price of {what} is unknown and a monthly_budget is set")
    budget = next((b for b in budgets if b.currency == price.currency), None)
    if budget is None:
        raise LimitRefused(
            f"refused: {what} costs {price}; the monthly_budget of [renewal] has no amount "
            f"in {price.currency}"
        )
    so_far = spent(env, price.currency, since=month_start(env.now()))
    if so_far + price.amount > budget.amount:
        raise LimitRefused(
            f"refused: {what} costs {price}, beyond the monthly_budget of [renewal] ({budget}): "
            f"{Money(so_far, price.currency)} spent this month"
        )


def unreported_found(env: Env, account: str, iccid: str, plan_id: str) -> LedgerOrder | None:
    """An order of this eSIM and plan that reconciliation found at the provider after its
    answer was lost, and that no renew has shown the user yet: a retry of the same intent."""
    for row in env.ledger.orders(
        account=account,
        iccid=iccid,
        states=(OrderState.PENDING.value, OrderState.COMPLETED.value),
    ):
        found = str(row.detail.get("reconciled", "")).startswith("found")
        if row.plan_id == plan_id and found and not row.detail.get("reported"):
            return row
    return None


def new_reference() -> str:
    return "esimctl-" + uuid.uuid4().hex[:20]


async def reconcile(env: Env, provider: Provider) -> list[LedgerOrder]:
    """Resolve this account's intents whose outcome is unknown; return what changed."""
    changed = []
    for row in env.ledger.orders(account=provider.account, states=(INTENT,)):
        if Capability.FIND_ORDER not in provider.capabilities or not row.reference:
            continue
        found = await provider.find_order(
            row.reference, iccid=row.iccid, since=row.created_at - LOOKUP_SLACK
        )
        if found is not None:
            changed.append(
                env.ledger.update_order(
                    row.id,
                    state=OrderState.PENDING.value,
                    provider_order_id=found.id,
                    detail={"reconciled": "found at the provider by reference"},
                )
            )
        elif env.now() - row.created_at >= provider.order_lookup_lag:
            changed.append(
                env.ledger.update_order(
                    row.id,
                    state=OrderState.FAILED.value,
                    detail={"reconciled": "not found at the provider: the purchase was not made"},
                )
            )
    return changed


def unresolved_intent(env: Env, account: str, iccid: str) -> LedgerOrder | None:
    rows = env.ledger.orders(account=account, iccid=iccid, states=(INTENT,))
    return rows[0] if rows else None


async def buy(
    env: Env, provider: Provider, esim: Esim, plan: Plan, *, need: str | None = None
) -> LedgerOrder:
    """Journal the intent, send one purchase, record the outcome. Never sends twice."""
    waiting = unresolved_intent(env, provider.account, esim.iccid)
    if waiting is not None:
        raise TemporaryFailure(
            f"an earlier purchase for eSIM {esim.iccid} ({waiting.plan}) has an unknown outcome "
            "and the provider does not show it yet; nothing was bought, retry later",
            account=provider.account,
            provider=provider.id,
        )
    reference = new_reference()
    row = env.ledger.add_order(
        account=provider.account,
        provider=provider.id,
        iccid=esim.iccid,
        plan_id=plan.id,
        plan=plan.name,
        price=plan.price,
        state=INTENT,
        reference=reference,
        need=need,
        detail={"before": esim_to_cache(esim)},
    )
    checkpoint(env, "before_request")
    try:
        order = await provider.buy_topup(esim, plan, reference)
    except OutcomeUnknown:
        # Look once right away: many providers show the order at once.
        if Capability.FIND_ORDER in provider.capabilities:
            try:
                found = await provider.find_order(
                    reference, iccid=esim.iccid, since=row.created_at - LOOKUP_SLACK
                )
            except EsimctlError:
                found = None
            if found is not None:
                return env.ledger.update_order(
                    row.id, state=OrderState.PENDING.value, provider_order_id=found.id
                )
        raise
    except EsimctlError as exc:
        env.ledger.update_order(
            row.id,
            state=OrderState.FAILED.value,
            detail={"error": exc.code, "message": exc.message},
        )
        raise
    checkpoint(env, "after_answer")
    # What the provider says it charged wins over the listed price (budgets count it).
    row = env.ledger.update_order(
        row.id, state=OrderState.PENDING.value, provider_order_id=order.id, price=order.price
    )
    checkpoint(env, "after_record")
    return row


def before_of(row: LedgerOrder) -> Esim | None:
    raw = row.detail.get("before")
    return esim_from_cache(raw) if isinstance(raw, dict) else None


def settle(
    env: Env,
    provider_is_applied: Callable[[Esim | None, Esim, Order], bool],
    row: LedgerOrder,
    current: Esim,
) -> bool:
    """Mark ``row`` completed if ``current`` shows its package. No network."""
    if row.state != OrderState.PENDING.value:
        return row.state == OrderState.COMPLETED.value
    if provider_is_applied(before_of(row), current, row.to_order()):
        env.ledger.update_order(row.id, state=OrderState.COMPLETED.value, applied_at=env.now())
        return True
    return False


async def verify(
    env: Env,
    provider: Provider,
    row: LedgerOrder,
    *,
    timeout: timedelta,
    on_wait: Callable[[float], None] | None = None,
) -> bool:
    """Poll until the provider shows the package, or ``timeout`` passes. True if applied."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout.total_seconds()
    delay = 2.0
    while True:
        try:
            current = await provider.get_esim(row.iccid or "")
        except AuthRejected:
            raise
        except EsimctlError:
            current = None  # a temporary failure while polling is not a verdict
        if current is not None and settle(env, provider.is_applied, row, current):
            return True
        remaining = deadline - loop.time()
        if remaining <= 0:
            return False
        if on_wait is not None:
            on_wait(remaining)
        await asyncio.sleep(min(delay, remaining))
        delay = min(delay * 2, 60.0)
