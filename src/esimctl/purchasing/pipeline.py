"""One purchase, from intent to applied: the pipeline every purchase takes.

``buy_once`` is the pipeline, run by the caller inside the renewal lock:

1. ``reconcile``: intents left by an earlier run (crash, kill, timeout) are looked up with
   the provider by our own reference before anything else is bought;
2. a retried intent found: the same command after "outcome unknown" gets the order the
   earlier run placed, not a second one;
3. the duplicate check (the same plan on the same eSIM within 15 minutes, or while one is
   open) and the limits (``limits.check_limits``), counted from the order book *inside*
   the lock;
4. consent (a prompt, or ``--yes``), when the caller has not asked already;
5. fresh figures, then ``buy``: the intent is journalled and committed *before* the
   request; the answer is recorded (pending), or the refusal (failed);
6. the charged price checked against the limits after the fact: a charge beyond a cap or a
   budget is marked on the order (``detail.over_limit``), reported loudly (exit 5), and
   ``renew --auto`` buys nothing more for that eSIM until the user accepts it
   (``esimctl renew --accept-charge ORDER``).

``verify`` runs after the lock is released: by then the order is in the book as pending,
and a concurrent run treats a pending eSIM as served.

The test launcher may set ``env.hooks.kill_at`` to make the process SIGKILL itself at a
step of ``buy`` (``before_request``: the intent is committed, nothing sent;
``after_answer``: the provider answered, its outcome not yet recorded; ``after_record``:
the outcome recorded, nothing verified). esimctl itself never sets it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from esimctl.env import Env
from esimctl.errors import (
    Aborted,
    AuthRejected,
    EsimctlError,
    InvalidInput,
    LimitRefused,
    NotFound,
    OutcomeUnknown,
    TemporaryFailure,
)
from esimctl.ledger import LedgerError, LedgerOrder
from esimctl.models import Esim, Money, NewEsim, Order, OrderState, Plan
from esimctl.output.human import describe
from esimctl.providers.base import Capability, Provider
from esimctl.purchasing import book as orders
from esimctl.purchasing.limits import Limits, check_limits, counted_price, over_limit
from esimctl.serialize import esim_from_cache, esim_to_cache

#: How far back an order lookup searches before an intent's own time.
LOOKUP_SLACK = timedelta(hours=1)
#: The same top-up on the same eSIM within this window is taken for a repeated command:
#: it needs ``--again`` in a pipe, or a confirmation naming the earlier order on a terminal.
DUPLICATE_WINDOW = timedelta(minutes=15)


def checkpoint(env: Env, step: str) -> None:
    """Test hook: die here, as a SIGKILL would, when the test launcher names ``step``."""
    if env.hooks.kill_at == step:
        os.kill(os.getpid(), signal.SIGKILL)


def unreported_found(
    env: Env, account: str, iccid: str | None, plan_id: str, need: str | None = None
) -> LedgerOrder | None:
    """An order of this eSIM (``iccid``; None: a new eSIM) and plan that reconciliation
    found at the provider after its answer was lost, and that no command has shown the user
    yet: a retry of the same intent."""
    now = env.now()
    rows = env.orders.spent(account=account, iccid=iccid, since=now - RETRY_REPORT_WINDOW)
    for row in rows:
        if (iccid is None) != is_new(row):
            continue  # a top-up is never the answer to buying an eSIM, nor the reverse
        if row.plan_id != plan_id or orders.is_unresolved(row):
            continue
        if need is not None and row.need != need:
            continue
        if _found_unreported(row, now):
            return row
    return None


#: An order found by reconciliation is reported to a retry of the same command within this
#: time; later, it is history, not the answer to a new command.
RETRY_REPORT_WINDOW = timedelta(days=1)


def found_by_reconciling(row: LedgerOrder) -> bool:
    """An order whose answer was lost and that a lookup found at the provider."""
    return str(row.detail.get("reconciled", "")).startswith("found")


def _found_unreported(row: LedgerOrder, now: datetime | None = None) -> bool:
    """An order no command has shown the user yet, that a retry of the same purchase gets
    instead of a second one: one a lookup found after its answer was lost, or (``now``
    given) one the pipeline recorded just before its run was killed — only while it is
    still pending and within ``DUPLICATE_WINDOW``: later it is history, and a new
    purchase of the same plan is a new intent."""
    if row.detail.get("reported"):
        return False
    if found_by_reconciling(row):
        return True
    return (
        now is not None
        and "charged" in row.detail
        and orders.is_awaiting(row)
        and now - row.created_at < DUPLICATE_WINDOW
    )


def new_reference() -> str:
    return "esimctl-" + uuid.uuid4().hex[:20]


async def reconcile(env: Env, provider: Provider) -> list[LedgerOrder]:
    """Resolve this account's intents whose outcome is unknown; return what changed."""
    changed = []
    for row in env.orders.unresolved(account=provider.account):
        if Capability.FIND_ORDER not in provider.capabilities or not row.reference:
            continue
        since = row.created_at - LOOKUP_SLACK
        how = "found at the provider by reference"
        if is_new(row):
            new = await provider.find_esim_order(row.reference, since=since)
            if new is not None:
                changed.append(_record_found(env, row, new.order, how, iccid=new.iccid))
                continue
            found = None
        else:
            found = await provider.find_order(row.reference, iccid=row.iccid, since=since)
        if found is not None:
            changed.append(_record_found(env, row, found, how))
        elif env.now() - row.created_at >= provider.order_lookup_lag:
            changed.append(
                env.orders.record_refused(
                    row, {"reconciled": "not found at the provider: the purchase was not made"}
                )
            )
    return changed


def _record_found(
    env: Env, row: LedgerOrder, found: Order, how: str, *, iccid: str | None = None
) -> LedgerOrder:
    """An order found at the provider after its answer was lost: pending, with what it
    counts (the larger of listed and charged) and what the provider says it charged."""
    counted, note = counted_price(row.price, found.price)
    detail: dict[str, object] = {"reconciled": how, "charged": _charged_json(found.price)}
    if note:
        detail["price_note"] = note
    taken = env.orders.record_taken(
        row, provider_order_id=found.id, price=counted, detail=detail, iccid=iccid
    )
    if iccid:
        label_new_esim(env, taken)
    return taken


def is_new(row: LedgerOrder) -> bool:
    """An order for a new eSIM (``esimctl buy``), not a top-up."""
    return row.detail.get("kind") == "new"


def label_new_esim(env: Env, row: LedgerOrder) -> None:
    """The label given at purchase (``buy --label Tokyo``), written to config once the
    seller has allocated the eSIM: to config as it is on disk now (not the copy this run
    read), and only if the eSIM has no label yet and no other eSIM took that one since.
    Best effort: a config that cannot be written costs the label, never the purchase."""
    from esimctl.config import Config

    label = str(row.detail.get("label") or "")
    if not label or not row.iccid:
        return
    try:
        cfg = Config.load(env.config.path)
        taken = {
            str(t.get("label", "")).lower()
            for i, t in cfg.raw.get("esims", {}).items()
            if isinstance(t, dict) and i != row.iccid
        }
        if cfg.label_for(row.iccid) or label.lower() in taken:
            return
        cfg.raw.setdefault("esims", {})[row.iccid] = {"label": label}
        cfg.save()
        env.config.raw.setdefault("esims", {})[row.iccid] = {"label": label}
    except (EsimctlError, OSError):
        return


async def allocate(env: Env, provider: Provider) -> list[LedgerOrder]:
    """New-eSIM orders the seller took but had not allocated yet (eSIM Access allocates
    profiles asynchronously): their eSIM, once the seller tells it."""
    done = []
    for row in env.orders.awaiting(account=provider.account):
        if not is_new(row) or row.iccid or not row.reference:
            continue
        new = await provider.find_esim_order(row.reference, since=row.created_at - LOOKUP_SLACK)
        if new is not None and new.iccid:
            row = env.orders.record_taken(row, iccid=new.iccid)
            label_new_esim(env, row)
            done.append(row)
    return done


def _unresolved_for(env: Env, account: str, esim: Esim | None, plan: Plan) -> LedgerOrder | None:
    """An intent of the same kind whose outcome is still unknown: for a top-up, any on
    that eSIM; for a new eSIM, one of the same plan on the account."""
    if esim is not None:
        rows = env.orders.unresolved(account=account, iccid=esim.iccid)
    else:
        rows = [
            r for r in env.orders.unresolved(account=account) if is_new(r) and r.plan_id == plan.id
        ]
    return rows[0] if rows else None


def _journal(env: Env, what: str, **fields: Any) -> LedgerOrder:
    """The intent, committed before the request; if it cannot be written, nothing is sent."""
    try:
        return env.orders.journal_intent(**fields)
    except (EsimctlError, sqlite3.Error, OSError) as exc:
        why = exc.message if isinstance(exc, EsimctlError) else str(exc)
        raise EsimctlError(
            f"nothing bought: the purchase of {what} could not be journalled first ({why})",
            code="ledger_unwritable",
        ) from None


async def buy(
    env: Env,
    provider: Provider,
    esim: Esim | None,
    plan: Plan,
    *,
    need: str | None = None,
    label: str | None = None,
    progress: Progress | None = None,
) -> LedgerOrder:
    """Journal the intent, send one purchase, record the outcome. Never sends twice.

    ``esim``: the eSIM a top-up is for; None buys a new eSIM (``label``: its name to be).
    Ctrl-C while the request is in flight does not drop its answer: the request finishes
    (bounded by its own timeout), its outcome is recorded, and then the interruption goes
    on. A second Ctrl-C stops at once; the intent in the ledger is reconciled next run."""
    progress = progress if progress is not None else Progress()
    waiting = _unresolved_for(env, provider.account, esim, plan)
    if waiting is not None:
        what = f"eSIM {esim.iccid}" if esim is not None else f"a new eSIM of {plan.name}"
        raise TemporaryFailure(
            f"an earlier purchase for {what} ({waiting.plan}) has an unknown outcome "
            "and the provider does not show it yet; nothing was bought, retry later",
            account=provider.account,
            provider=provider.id,
        )
    # A cancellation already pending (Ctrl-C during synchronous work) lands here, before
    # anything is journalled or sent, rather than at the shielded request below.
    await asyncio.sleep(0)
    reference = new_reference()
    intent: dict[str, Any]
    if esim is not None:
        what, intent = f"{plan.name} on {describe(esim)}", {"before": esim_to_cache(esim)}
    else:
        what, intent = f"a new eSIM of {plan.name}", {"kind": "new", "label": label}
    row = _journal(
        env,
        what,
        account=provider.account,
        provider=provider.id,
        iccid=esim.iccid if esim is not None else None,
        plan_id=plan.id,
        plan=plan.name,
        price=plan.price,
        reference=reference,
        need=need,
        detail=intent,
    )
    progress.row = row
    checkpoint(env, "before_request")
    progress.sent = True
    interrupted = False

    async def send() -> Order:
        if esim is not None:
            return await provider.buy_topup(esim, plan, reference)
        progress.new = await provider.buy_esim(plan, reference)
        return progress.new.order

    request = asyncio.ensure_future(send())
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
            since = row.created_at - LOOKUP_SLACK
            iccid = None
            try:
                if esim is None:
                    progress.new = await provider.find_esim_order(reference, since=since)
                    found = progress.new.order if progress.new is not None else None
                    iccid = progress.new.iccid if progress.new is not None else None
                else:
                    found = await provider.find_order(reference, iccid=esim.iccid, since=since)
            except EsimctlError:
                found = None
            if found is not None:
                progress.row = _record_found(
                    env, row, found, "found right after the answer", iccid=iccid
                )
                return progress.row
        if interrupted:
            raise asyncio.CancelledError from exc
        raise
    except LedgerError as exc:
        # The provider's journal (ctx.journal) could not be written while it was buying:
        # the request may have gone out. Never "failed": the intent stays unresolved and
        # the next run looks it up before anything is bought again.
        if interrupted:
            raise asyncio.CancelledError from exc
        raise OutcomeUnknown(
            f"the purchase of {what} may have gone through, but the "
            f"ledger could not record it ({exc.message}); the next run looks it up with "
            f"{provider.display_name} before anything is bought again",
            account=provider.account,
            provider=provider.id,
        ) from None
    except EsimctlError as exc:
        progress.row = env.orders.record_refused(row, {"error": exc.code, "message": exc.message})
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
    allocated = progress.new.iccid if esim is None and progress.new is not None else None
    try:
        row = env.orders.record_taken(
            row, provider_order_id=order.id, price=counted, detail=detail, iccid=allocated
        )
    except (EsimctlError, sqlite3.Error, OSError) as exc:
        why = exc.message if isinstance(exc, EsimctlError) else str(exc)
        raise OutcomeUnknown(
            f"the purchase of {what} may have gone through (order "
            f"{order.id}), but the ledger could not record it ({why}); free the space, and "
            "the next run reconciles it with the provider before anything is bought again",
            account=provider.account,
            provider=provider.id,
        ) from None
    checkpoint(env, "after_record")
    progress.row = row
    if allocated:
        label_new_esim(env, row)
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
    #: A new eSIM's answer: its ICCID (once allocated) and how to install it.
    new: NewEsim | None = None


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
    row = env.orders.get(progress.row.id)
    order = row.to_order()
    where = f"on {row.iccid}" if row.iccid else ""
    if orders.is_void(row):
        return f"interrupted: nothing was bought ({row.detail.get('message', 'refused')})", None
    if orders.is_unresolved(row):
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


@dataclass(frozen=True)
class Purchase:
    """One intent to buy: what, for which eSIM (None: a new eSIM), within which limits."""

    esim: Esim | None
    plan: Plan
    limits: Limits
    #: A new eSIM's name to be (``buy --label Tokyo``).
    label: str | None = None
    #: What ``renew --auto`` buys for (one purchase per need); None for a command by hand.
    need: str | None = None
    #: ``--again``: buy although the same plan was just bought on this eSIM.
    again: bool = False
    #: Apply the duplicate window (``renew --auto`` has its own rule: one per need).
    duplicates: bool = True
    #: Earlier orders the user has already agreed to buy again.
    accepted: frozenset[str] = frozenset()

    @property
    def what(self) -> str:
        if self.esim is None:
            return f"a new eSIM of {self.plan.name}"
        return f"{self.plan.name} on {describe(self.esim)}"


@dataclass
class Bought:
    """What ``buy_once`` did: the order, and whether it was bought now or found."""

    row: LedgerOrder
    #: The order of an earlier run whose answer was lost, found now: not bought again.
    earlier: bool = False
    #: The charge broke a cap or a budget (reported loudly, exit 5).
    over_limit: str | None = None

    @property
    def order_id(self) -> str:
        return self.row.to_order().id


def recent_duplicates(env: Env, p: Purchase) -> list[LedgerOrder]:
    """Orders of the same plan on the same eSIM (or new eSIMs of the same plan on the same
    account) that a repeated command would repeat: still open (any age), or paid within
    ``DUPLICATE_WINDOW``."""
    since = env.now() - DUPLICATE_WINDOW
    out = []
    iccid = p.esim.iccid if p.esim is not None else None
    for row in env.orders.spent(account=p.plan.account, iccid=iccid):
        if row.plan_id != p.plan.id or (p.esim is None) != is_new(row):
            continue
        if orders.is_unresolved(row) or _found_unreported(row, env.now()):
            continue  # the same intent, not a new one: buy_once reconciles and reports it
        if not orders.is_served(row) or row.created_at >= since:
            out.append(row)
    return out


def check_duplicate(env: Env, p: Purchase) -> Purchase:
    """Refuse (exit 5) to buy what was just bought, unless ``--again``, or a confirmation
    on a terminal that names the earlier order. Returns the purchase with the duplicates
    the user accepted, so a second check in the lock asks only about new ones."""
    if not p.duplicates:
        return p
    rows = [r for r in recent_duplicates(env, p) if r.id not in p.accepted]
    accepted = replace(p, accepted=p.accepted | {r.id for r in rows})
    if p.again or not rows:
        return accepted
    row = rows[0]
    state = "applied" if orders.is_served(row) else "still pending"
    where = f"on {describe(p.esim)}" if p.esim is not None else "as a new eSIM"
    earlier = (
        f"{p.plan.name} was bought {_ago(row.created_at, env.now())} {where} "
        f"(order {row.to_order().id}, {state})"
    )
    if env.can_prompt:
        env.stderr.write(f"{earlier}. Buy it again? [y/N] ")
        env.stderr.flush()
        if env.stdin.readline().strip().lower() not in ("y", "yes"):
            raise Aborted("nothing bought: not confirmed")
        return accepted
    raise LimitRefused(
        f"refused: {earlier}; pass --again to buy another "
        f"(the same purchase within {int(DUPLICATE_WINDOW.total_seconds() // 60)} min, or "
        "while one is pending, is taken for a repeated command)"
    )


def precheck(env: Env, p: Purchase) -> Purchase:
    """The checks of ``buy_once`` that need no provider and no lock: run before asking the
    user, so nobody is asked about what would be refused. ``buy_once`` runs them again in
    the lock, where another run cannot change the answer meanwhile."""
    p = check_duplicate(env, p)
    check_limits(env.orders, p.limits, p.esim, p.plan)
    return p


def _ago(when: datetime, now: datetime) -> str:
    from esimctl.output import human

    text = human.ago(when, now)
    return "just now" if text == "now" else text


def unaccepted_charge(env: Env, esim: Esim) -> LedgerOrder | None:
    """An order on ``esim`` charged beyond a limit that the user has not accepted yet."""
    for row in env.orders.spent(account=esim.account, iccid=esim.iccid):
        if row.detail.get("over_limit") and not row.detail.get("accepted_at"):
            return row
    return None


def accept_charge(env: Env, order_id: str) -> LedgerOrder:
    """``renew --accept-charge ORDER``: the user has seen a charge beyond a limit."""
    row = env.orders.find(order_id)
    if row is None:
        raise NotFound(
            f"no order {order_id!r} in the ledger ('esimctl history --local' lists them)"
        )
    if not row.detail.get("over_limit"):
        raise InvalidInput(f"order {order_id} was not charged beyond a limit")
    return env.orders.note(row, accepted_at=env.now().isoformat())


async def buy_once(
    env: Env,
    provider: Provider,
    p: Purchase,
    *,
    consent: Callable[[Purchase], None] | None = None,
    progress: Progress | None = None,
) -> Bought:
    """The pipeline of every purchase (see the module docstring). The caller holds the
    renewal lock; everything that decides whether money may be spent is checked here,
    inside the lock, against the order book as it is now. ``consent`` asks the user (it
    raises ``Aborted`` for no); None when the caller asked before taking the lock."""
    await reconcile(env, provider)
    # A retry after "outcome unknown" is the same intent: if the earlier request went
    # through after all, report that order instead of buying a second one.
    found = unreported_found(
        env, provider.account, p.esim.iccid if p.esim is not None else None, p.plan.id, p.need
    )
    if found is not None:
        if is_new(found):
            label_new_esim(env, found)  # the run that placed it may have died before
        return Bought(env.orders.note_quietly(found, reported=True), earlier=True)
    p = precheck(env, p)
    if consent is not None:
        consent(p)
    before = None
    if p.esim is not None:
        # Fresh figures as "before": what a list gave may lack what is_applied compares.
        before = await provider.get_esim(p.esim.iccid)
        if before.label is None and p.esim.label:
            before = replace(before, label=p.esim.label)
    progress = progress if progress is not None else Progress()
    try:
        row = await buy(
            env, provider, before, p.plan, need=p.need, label=p.label, progress=progress
        )
    except asyncio.CancelledError:
        # Interrupted after the order was recorded: a charge beyond a limit is still marked.
        done = progress.row
        if done is not None and orders.is_spent(done) and not orders.is_unresolved(done):
            _mark_over_limit(env, p, done)
        raise
    row, problem = _mark_over_limit(env, p, row)
    return Bought(row, over_limit=problem)


async def buy_asked(
    env: Env,
    provider: Provider,
    p: Purchase,
    *,
    ask: Callable[[], None],
    wait: float = 0.0,
    progress: Progress | None = None,
) -> Bought:
    """A purchase by hand (``renew ESIM``, ``buy``): the checks that need no lock first, so
    nobody is asked about what would be refused; then ``ask`` (the prompt, or ``--yes``;
    it raises to decline); then ``buy_once`` in the renewal lock, which checks again where
    another run cannot change the answer meanwhile. The account's cached figures are
    dropped: they no longer show what was bought."""
    from esimctl.lock import RenewLock

    p = precheck(env, p)
    ask()
    with RenewLock(env.paths.lock_file, wait=wait):
        bought = await buy_once(env, provider, p, progress=progress)
        env.ledger.cache_drop(provider.account)
    return bought


def _mark_over_limit(env: Env, p: Purchase, row: LedgerOrder) -> tuple[LedgerOrder, str | None]:
    problem = over_limit(env.orders, p.limits, p.esim, row)
    # Reported to the user by this command: a retry no longer takes it for its own answer.
    fields: dict[str, object] = {"reported": True}
    if problem is not None:
        fields["over_limit"] = problem
    # A ledger that fails here does not hide the news: the caller reports it all the same.
    return env.orders.note_quietly(row, **fields), problem


def dry_run_order(env: Env, esim: Esim, plan: Plan, *, order_id: str = "dry-run") -> Order:
    """The order a dry run reports: what would be bought, with state ``dry_run``."""
    return Order(
        id=order_id,
        account=esim.account,
        provider=esim.provider,
        iccid=esim.iccid,
        plan_id=plan.id,
        plan=plan.name,
        price=plan.price,
        created_at=env.now(),
        state=OrderState.DRY_RUN,
        source="local",
    )


def dry_run_order_new(env: Env, plan: Plan) -> Order:
    """The order a dry run of ``buy`` reports: a new eSIM of ``plan``, state ``dry_run``."""
    return Order(
        id="dry-run",
        account=plan.account,
        provider=plan.provider,
        iccid=None,
        plan_id=plan.id,
        plan=plan.name,
        price=plan.price,
        created_at=env.now(),
        state=OrderState.DRY_RUN,
        source="local",
        extra={"kind": "new"},
    )


# -- after the purchase: applied or pending ----------------------------------------------------


def before_of(row: LedgerOrder) -> Esim | None:
    raw = row.detail.get("before")
    return esim_from_cache(raw) if isinstance(raw, dict) else None


def settle(env: Env, provider: Provider, row: LedgerOrder, current: Esim) -> bool:
    """Mark ``row`` applied if ``current`` shows its package. No network."""
    if not orders.is_awaiting(row):
        return orders.is_served(row)
    if provider.is_applied(before_of(row), current, row.to_order()):
        env.orders.record_applied(row, env.now())
        return True
    return False


def settle_all(env: Env, provider: Provider, esims: list[Esim]) -> None:
    """Mark this account's pending top-ups applied where fresh figures show them."""
    by_iccid = {e.iccid: e for e in esims}
    for row in env.orders.awaiting(account=provider.account):
        current = by_iccid.get(row.iccid or "")
        if current is not None:
            settle(env, provider, row, current)


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
        if current is not None and settle(env, provider, row, current):
            return True
        remaining = deadline - loop.time()
        if remaining <= 0:
            return False
        if on_wait is not None:
            on_wait(remaining)
        await asyncio.sleep(min(delay, remaining))
        delay = min(delay * 2, 60.0)
