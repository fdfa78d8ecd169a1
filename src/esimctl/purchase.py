"""Buying safely: journal, reconcile, buy once, verify applied.

Every purchase, manual or automatic, goes through here:

1. ``reconcile``: intents left by an earlier run (crash, kill, timeout) are looked up
   with the provider by our own reference before anything else is bought.
2. ``buy``: an ``intent`` row with a fresh reference is committed to the ledger *before*
   the request; the outcome (pending, failed) is written after. An eSIM whose earlier
   intent is still unresolved is not bought for again.
3. ``verify``: poll the eSIM (backoff, bounded by a timeout) until the provider shows the
   package; the order becomes ``completed`` (applied) or stays ``pending``.

``buy_once`` is the one pipeline every purchase takes inside the renewal lock:
reconcile → a retried intent found → the duplicate check → the limits (price caps, per
day, monthly budgets, all counted from the ledger *inside* the lock) → fresh figures →
journal and buy → the charged price checked against the limits after the fact.

What counts against a limit is the larger of the listed and the charged price; a
charged price that cannot be a price (zero, negative, not a number) counts as the listed
one. A charge above a cap or budget is recorded on the order (``detail.over_limit``):
the caller reports it loudly (exit 5) and ``renew --auto`` buys nothing more for that
eSIM until the user accepts it (``esimctl renew --accept-charge ORDER``).

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
import contextlib
import os
import signal
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from esimctl import validate
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
#: The same top-up on the same eSIM within this window is taken for a repeated command:
#: it needs ``--again`` in a pipe, or a confirmation naming the earlier order on a terminal.
DUPLICATE_WINDOW = timedelta(minutes=15)


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
    env: Env,
    currency: str,
    since: datetime,
    scope: Esim | None,
    planned: Sequence[Planned],
) -> Decimal:
    total = spent(
        env,
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
    env: Env,
    limits: Limits,
    esim: Esim,
    plan: Plan,
    *,
    planned: Sequence[Planned] = (),
) -> None:
    """Raise ``LimitRefused`` (exit 5) if buying ``plan`` for ``esim`` breaks a limit,
    counting what the ledger holds as paid or possibly paid, and ``planned``."""
    price = plan.price
    what = f"{plan.name} for {describe(esim)}"
    problem = validate.price_problem(price) if price is not None else None
    if problem:
        raise LimitRefused(f"refused: {what}: {problem}")
    if price is None and limits.require_price:
        raise LimitRefused(
            f"refused: the price of {what} is unknown; esimctl buys only what has a price"
        )
    for cap, where in limits.caps:
        check_price(price, cap, where=where, what=what)
    now = env.now()
    if limits.max_per_day is not None:
        most, where = limits.max_per_day
        day = committed(env, since=now - timedelta(days=1), account=esim.account, iccid=esim.iccid)
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
        so_far = _spent(env, price.currency, month, esim if budget.per_esim else None, planned)
        if so_far + price.amount > amount.amount:
            raise LimitRefused(
                f"refused: {what} costs {price}, beyond the monthly_budget of {budget.where} "
                f"({amount}): {Money(so_far, price.currency)} spent this month"
            )


def over_limit(env: Env, limits: Limits, esim: Esim, row: LedgerOrder) -> str | None:
    """After a purchase: does what it counts (``row.price``) break a cap or a budget?"""
    price = row.price
    if price is None:
        return None
    what = f"{row.plan} for {describe(esim)}"
    for cap, where in limits.caps:
        if price.currency != cap.currency or price.amount > cap.amount:
            return f"{what} was charged {price}, above {where} ({cap})"
    month = month_start(env.now())
    for budget in limits.budgets:
        if not budget.amounts:
            continue
        amount = next((b for b in budget.amounts if b.currency == price.currency), None)
        if amount is None:
            return (
                f"{what} was charged {price}; the monthly_budget of {budget.where} has no "
                f"amount in {price.currency}"
            )
        so_far = _spent(env, price.currency, month, esim if budget.per_esim else None, ())
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


def describe(esim: Esim) -> str:
    return f"{esim.label} ({esim.iccid})" if esim.label else esim.iccid


def unreported_found(env: Env, account: str, iccid: str, plan_id: str) -> LedgerOrder | None:
    """An order of this eSIM and plan that reconciliation found at the provider after its
    answer was lost, and that no renew has shown the user yet: a retry of the same intent."""
    for row in env.ledger.orders(
        account=account,
        iccid=iccid,
        states=(OrderState.PENDING.value, OrderState.COMPLETED.value),
        since=env.now() - RETRY_REPORT_WINDOW,
    ):
        if row.plan_id == plan_id and _found_unreported(row):
            return row
    return None


#: An order found by reconciliation is reported to a retry of the same command within this
#: time; later, it is history, not the answer to a new command.
RETRY_REPORT_WINDOW = timedelta(days=1)


def found_by_reconciling(row: LedgerOrder) -> bool:
    """An order whose answer was lost and that a lookup found at the provider."""
    return str(row.detail.get("reconciled", "")).startswith("found")


def _found_unreported(row: LedgerOrder) -> bool:
    return found_by_reconciling(row) and not row.detail.get("reported")


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
            changed.append(_record_found(env, row, found, "found at the provider by reference"))
        elif env.now() - row.created_at >= provider.order_lookup_lag:
            changed.append(
                env.ledger.update_order(
                    row.id,
                    state=OrderState.FAILED.value,
                    detail={"reconciled": "not found at the provider: the purchase was not made"},
                )
            )
    return changed


def _record_found(env: Env, row: LedgerOrder, found: Order, how: str) -> LedgerOrder:
    """An order found at the provider after its answer was lost: pending, with what it
    counts (the larger of listed and charged) and what the provider says it charged."""
    counted, note = counted_price(row.price, found.price)
    detail: dict[str, object] = {"reconciled": how, "charged": _charged_json(found.price)}
    if note:
        detail["price_note"] = note
    return env.ledger.update_order(
        row.id,
        state=OrderState.PENDING.value,
        provider_order_id=found.id,
        price=counted,
        detail=detail,
    )


def unresolved_intent(env: Env, account: str, iccid: str) -> LedgerOrder | None:
    rows = env.ledger.orders(account=account, iccid=iccid, states=(INTENT,))
    return rows[0] if rows else None


def _journal(env: Env, what: str, **fields: Any) -> LedgerOrder:
    """The intent, committed before the request; if it cannot be written, nothing is sent."""
    try:
        return env.ledger.add_order(**fields)
    except (EsimctlError, sqlite3.Error, OSError) as exc:
        why = exc.message if isinstance(exc, EsimctlError) else str(exc)
        raise EsimctlError(
            f"nothing bought: the purchase of {what} could not be journalled first ({why})",
            code="ledger_unwritable",
        ) from None


async def buy(
    env: Env,
    provider: Provider,
    esim: Esim,
    plan: Plan,
    *,
    need: str | None = None,
    progress: Progress | None = None,
) -> LedgerOrder:
    """Journal the intent, send one purchase, record the outcome. Never sends twice.

    Ctrl-C while the request is in flight does not drop its answer: the request finishes
    (bounded by its own timeout), its outcome is recorded, and then the interruption goes
    on. A second Ctrl-C stops at once; the intent in the ledger is reconciled next run."""
    progress = progress if progress is not None else Progress()
    waiting = unresolved_intent(env, provider.account, esim.iccid)
    if waiting is not None:
        raise TemporaryFailure(
            f"an earlier purchase for eSIM {esim.iccid} ({waiting.plan}) has an unknown outcome "
            "and the provider does not show it yet; nothing was bought, retry later",
            account=provider.account,
            provider=provider.id,
        )
    # A cancellation already pending (Ctrl-C during synchronous work) lands here, before
    # anything is journalled or sent, rather than at the shielded request below.
    await asyncio.sleep(0)
    reference = new_reference()
    row = _journal(
        env,
        f"{plan.name} on {describe(esim)}",
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
    progress.row = row
    checkpoint(env, "before_request")
    progress.sent = True
    interrupted = False
    request = asyncio.ensure_future(provider.buy_topup(esim, plan, reference))
    try:
        try:
            order = await asyncio.shield(request)
        except asyncio.CancelledError:
            if request.cancelled():
                raise
            interrupted = True
            order = await request
    except OutcomeUnknown as exc:
        # Look once right away: many providers show the order at once.
        if Capability.FIND_ORDER in provider.capabilities and not interrupted:
            try:
                found = await provider.find_order(
                    reference, iccid=esim.iccid, since=row.created_at - LOOKUP_SLACK
                )
            except EsimctlError:
                found = None
            if found is not None:
                progress.row = _record_found(env, row, found, "found right after the answer")
                return progress.row
        if interrupted:
            raise asyncio.CancelledError from exc
        raise
    except EsimctlError as exc:
        progress.row = env.ledger.update_order(
            row.id,
            state=OrderState.FAILED.value,
            detail={"error": exc.code, "message": exc.message},
        )
        if interrupted:
            raise asyncio.CancelledError from exc
        raise
    checkpoint(env, "after_answer")
    counted, note = counted_price(plan.price, order.price)
    detail: dict[str, object] = {
        "listed": plan.price.to_json() if plan.price else None,
        "charged": _charged_json(order.price),
    }
    if note:
        detail["price_note"] = note
    try:
        row = env.ledger.update_order(
            row.id,
            state=OrderState.PENDING.value,
            provider_order_id=order.id,
            price=counted,
            detail=detail,
        )
    except (EsimctlError, sqlite3.Error, OSError) as exc:
        why = exc.message if isinstance(exc, EsimctlError) else str(exc)
        raise OutcomeUnknown(
            f"the purchase of {plan.name} on {describe(esim)} may have gone through (order "
            f"{order.id}), but the ledger could not record it ({why}); free the space, and "
            "the next run reconciles it with the provider before anything is bought again",
            account=provider.account,
            provider=provider.id,
        ) from None
    checkpoint(env, "after_record")
    progress.row = row
    if interrupted:
        raise asyncio.CancelledError
    return row


def _charged_json(price: Money | None) -> dict[str, str] | None:
    # As the provider said it, unrounded: the record of what it claimed.
    return None if price is None else {"amount": str(price.amount), "currency": price.currency}


# -- the one pipeline --------------------------------------------------------------------------


@dataclass
class Progress:
    """How far one purchase got, for whoever reports an interruption (Ctrl-C, SIGTERM):
    before the request nothing was bought; after it, the order is reported as placed."""

    row: LedgerOrder | None = None
    #: The purchase request has left (its outcome may be unknown).
    sent: bool = False


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (a shutdown, ``timeout``, systemd) is handled as Ctrl-C: asyncio cancels
    the purchase cleanly and the command reports what was bought, instead of dying."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    # A job started in the background by a non-interactive shell inherits SIGINT ignored:
    # then neither Python nor asyncio would act on the SIGINT that SIGTERM becomes.
    int_before = signal.getsignal(signal.SIGINT)
    if int_before is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    previous = signal.signal(signal.SIGTERM, lambda *_: os.kill(os.getpid(), signal.SIGINT))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        if int_before is signal.SIG_IGN:
            signal.signal(signal.SIGINT, signal.SIG_IGN)


def interrupted_message(progress: Progress, env: Env) -> tuple[str, LedgerOrder | None]:
    """What an interruption left: nothing bought, or the order as placed."""
    if progress.row is None or not progress.sent:
        return "interrupted: nothing was bought", None
    row = env.ledger.order(progress.row.id)
    order = row.to_order()
    where = f"on {row.iccid}" if row.iccid else ""
    if row.state == OrderState.FAILED.value:
        return f"interrupted: nothing was bought ({row.detail.get('message', 'refused')})", None
    if row.state == INTENT:
        return (
            f"interrupted after the purchase of {row.plan} {where} was sent (reference "
            f"{row.reference}, {row.price}): it may have gone through; the next run looks it "
            "up before anything is bought again, and 'esimctl status' shows it when it applies",
            row,
        )
    return (
        f"interrupted: {row.plan} {where} was bought (order {order.id}, {row.price}) and is "
        "pending; 'esimctl status' shows it when the provider applies it",
        row,
    )


@dataclass
class Bought:
    """What ``buy_once`` did: the order, and whether it was bought now or found."""

    row: LedgerOrder
    #: The order of an earlier run whose answer was lost, found now: not bought again.
    earlier: bool = False
    #: The charge broke a cap or a budget (reported loudly, exit 5).
    over_limit: str | None = None


def recent_duplicates(env: Env, esim: Esim, plan: Plan) -> list[LedgerOrder]:
    """Orders of the same plan on the same eSIM that a repeated command would repeat:
    still open (any age), or paid within ``DUPLICATE_WINDOW``."""
    since = env.now() - DUPLICATE_WINDOW
    out = []
    for row in env.ledger.orders(account=esim.account, iccid=esim.iccid, states=COMMITTED):
        if row.plan_id != plan.id:
            continue
        if row.state == INTENT or _found_unreported(row):
            continue  # the same intent, not a new one: buy_once reconciles and reports it
        if row.state != OrderState.COMPLETED.value or row.created_at >= since:
            out.append(row)
    return out


def check_duplicate(
    env: Env,
    esim: Esim,
    plan: Plan,
    *,
    again: bool,
    accepted: frozenset[str] = frozenset(),
) -> frozenset[str]:
    """Refuse (exit 5) to buy what was just bought, unless ``--again``, or a confirmation
    on a terminal that names the earlier order. Returns the ids of the duplicates the user
    accepted, so a second check in the lock asks only about new ones."""
    rows = [r for r in recent_duplicates(env, esim, plan) if r.id not in accepted]
    if again or not rows:
        return accepted | {r.id for r in rows}
    row = rows[0]
    state = "still pending" if row.state != OrderState.COMPLETED.value else "applied"
    earlier = (
        f"{plan.name} was bought {_ago(row.created_at, env.now())} on {describe(esim)} "
        f"(order {row.to_order().id}, {state})"
    )
    if env.can_prompt:
        from esimctl.errors import Aborted

        env.stderr.write(f"{earlier}. Buy it again? [y/N] ")
        env.stderr.flush()
        if env.stdin.readline().strip().lower() not in ("y", "yes"):
            raise Aborted("nothing bought: not confirmed")
        return accepted | {r.id for r in rows}
    raise LimitRefused(
        f"refused: {earlier}; pass --again to buy another "
        f"(the same top-up within {int(DUPLICATE_WINDOW.total_seconds() // 60)} min, or "
        "while one is pending, is taken for a repeated command)"
    )


def _ago(when: datetime, now: datetime) -> str:
    from esimctl.output import human

    text = human.ago(when, now)
    return "just now" if text == "now" else text


def unaccepted_charge(env: Env, esim: Esim) -> LedgerOrder | None:
    """An order on ``esim`` charged beyond a limit that the user has not accepted yet."""
    for row in env.ledger.orders(account=esim.account, iccid=esim.iccid, states=COMMITTED):
        if row.detail.get("over_limit") and not row.detail.get("accepted_at"):
            return row
    return None


def accept_charge(env: Env, order_id: str) -> LedgerOrder:
    """``renew --accept-charge ORDER``: the user has seen a charge beyond a limit."""
    from esimctl.errors import NotFound

    for row in env.ledger.orders():
        if order_id in (row.id, row.provider_order_id):
            if not row.detail.get("over_limit"):
                from esimctl.errors import InvalidInput

                raise InvalidInput(f"order {order_id} was not charged beyond a limit")
            return env.ledger.update_order(row.id, detail={"accepted_at": env.now().isoformat()})
    raise NotFound(f"no order {order_id!r} in the ledger ('esimctl history --local' lists them)")


async def buy_once(
    env: Env,
    provider: Provider,
    esim: Esim,
    plan: Plan,
    *,
    limits: Limits,
    need: str | None = None,
    again: bool = False,
    accepted: frozenset[str] = frozenset(),
    duplicates: bool = True,
    progress: Progress | None = None,
) -> Bought:
    """The pipeline of every purchase. The caller holds the renewal lock and has the
    user's consent; everything that decides whether money may be spent is checked here,
    inside the lock, against the ledger as it is now.

    ``duplicates``: apply the duplicate window (``renew --auto`` has its own rule: one
    purchase per need, and ``max_per_day``).
    """
    await reconcile(env, provider)
    # A retry after "outcome unknown" is the same intent: if the earlier request went
    # through after all, report that order instead of buying a second one.
    found = unreported_found(env, provider.account, esim.iccid, plan.id)
    if found is not None:
        with contextlib.suppress(EsimctlError, sqlite3.Error):
            found = env.ledger.update_order(found.id, detail={"reported": True})
        return Bought(found, earlier=True)
    if duplicates:
        check_duplicate(env, esim, plan, again=again, accepted=accepted)
    check_limits(env, limits, esim, plan)
    # Fresh figures as "before": what a list gave may lack what is_applied compares.
    before = await provider.get_esim(esim.iccid)
    if before.label is None and esim.label:
        from dataclasses import replace

        before = replace(before, label=esim.label)
    progress = progress if progress is not None else Progress()
    try:
        row = await buy(env, provider, before, plan, need=need, progress=progress)
    except asyncio.CancelledError:
        # Interrupted after the order was recorded: a charge beyond a limit is still marked.
        done = progress.row
        if done is not None and done.state in (OrderState.PENDING.value, "completed"):
            _mark_over_limit(env, limits, esim, done)
        raise
    row, problem = _mark_over_limit(env, limits, esim, row)
    return Bought(row, over_limit=problem)


def _mark_over_limit(
    env: Env, limits: Limits, esim: Esim, row: LedgerOrder
) -> tuple[LedgerOrder, str | None]:
    problem = over_limit(env, limits, esim, row)
    # Reported to the user by this command: a retry no longer takes it for its own answer.
    fields: dict[str, object] = {"reported": True}
    if problem is not None:
        fields["over_limit"] = problem
    # A ledger that fails here does not hide the news: the caller reports it all the same.
    with contextlib.suppress(EsimctlError, sqlite3.Error):
        row = env.ledger.update_order(row.id, detail=fields)
    return row, problem


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
