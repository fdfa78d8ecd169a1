"""The order book: the only code that knows the states of an order in the ledger.

Every order esimctl journals is one row of the ledger's ``orders`` table. Its state is one
of four, and only this module reads or writes them:

========== ============ ===========================================================
state      kind         meaning
========== ============ ===========================================================
intent     unresolved   journalled before the request; the outcome is not known yet
pending    open         the seller took the order; its package does not show yet
completed  served       the package shows (applied), or it was recorded as bought
failed     (closed)     never made: refused, cancelled, or not found by a lookup
========== ============ ===========================================================

*Open* orders are the unresolved and the pending ones: an eSIM with one is never bought
for again. *Spent* orders are the open and the served ones: what is, or may be, paid for,
and so what every price cap, budget and per-day count counts.

Commands ask the book ("which orders are open on this eSIM?", "what happened to this
one?") and never compare states themselves.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from esimctl.errors import EsimctlError
from esimctl.ledger import INTENT, Ledger, LedgerOrder
from esimctl.models import Esim, OrderState

_PENDING = OrderState.PENDING.value
_COMPLETED = OrderState.COMPLETED.value
_FAILED = OrderState.FAILED.value
_DRY_RUN = OrderState.DRY_RUN.value

#: States of an order that is, or may be, paid for.
SPENT = (_COMPLETED, _PENDING, INTENT)
#: States of an order not settled yet: no second purchase for its eSIM.
OPEN = (_PENDING, INTENT)


def is_unresolved(row: LedgerOrder) -> bool:
    """Sent, and its outcome not known: looked up before anything is bought again."""
    return row.state == INTENT


def is_open(row: LedgerOrder) -> bool:
    return row.state in OPEN


def is_awaiting(row: LedgerOrder) -> bool:
    """Taken by the seller, its package not showing yet."""
    return row.state == _PENDING


def is_served(row: LedgerOrder) -> bool:
    """Applied: the package shows (or the order was recorded as bought and used)."""
    return row.state == _COMPLETED


def is_spent(row: LedgerOrder) -> bool:
    return row.state in SPENT


def is_void(row: LedgerOrder) -> bool:
    """Never made (failed, cancelled, not found), or a dry run: no money, no package."""
    return row.state in (_FAILED, _DRY_RUN)


def outcome(row: LedgerOrder) -> str:
    """What became of an order, in the words of ``renew --auto``'s JSON ``event``."""
    if is_served(row):
        return "applied"
    if is_awaiting(row):
        return "pending"
    if row.state == _FAILED:
        return "not_made"
    return "unknown"


class OrderBook:
    """Reads and writes orders in the ledger by what they mean, not by their state."""

    def __init__(self, ledger: Ledger, clock: Callable[[], datetime]) -> None:
        self.ledger = ledger
        self.clock = clock

    # -- reading ---------------------------------------------------------------------------

    def get(self, oid: str) -> LedgerOrder:
        return self.ledger.order(oid)

    def kept(self, *, account: str | None = None, iccid: str | None = None) -> list[LedgerOrder]:
        """Every order kept in the ledger (dry runs are not orders), newest first."""
        rows = self.ledger.orders(account=account, iccid=iccid)
        return [r for r in rows if r.state != _DRY_RUN]

    def open(self, *, account: str | None = None, iccid: str | None = None) -> list[LedgerOrder]:
        """Unresolved and pending orders, newest first."""
        return self.ledger.orders(account=account, iccid=iccid, states=OPEN)

    def open_since(self, esims: Iterable[Esim]) -> dict[tuple[str, str], datetime]:
        """For each of ``esims`` with an open order: when the oldest one was made."""
        shown = {(e.account, e.iccid) for e in esims}
        out: dict[tuple[str, str], datetime] = {}
        for row in self.open():
            key = (row.account, row.iccid or "")
            if key in shown:
                out[key] = min(out.get(key, row.created_at), row.created_at)
        return out

    def unresolved(self, *, account: str, iccid: str | None = None) -> list[LedgerOrder]:
        return self.ledger.orders(account=account, iccid=iccid, states=(INTENT,))

    def awaiting(self, *, account: str, iccid: str | None = None) -> list[LedgerOrder]:
        """Pending orders: taken by the seller, not showing yet."""
        return self.ledger.orders(account=account, iccid=iccid, states=(_PENDING,))

    def live(self, *, account: str) -> list[LedgerOrder]:
        """Pending and served orders: what a seller without an API folds into figures."""
        return self.ledger.orders(account=account, states=(_PENDING, _COMPLETED))

    def spent(
        self,
        *,
        since: datetime | None = None,
        account: str | None = None,
        iccid: str | None = None,
        need: str | None = None,
    ) -> list[LedgerOrder]:
        """Orders that are, or may be, paid for."""
        return self.ledger.orders(
            account=account, iccid=iccid, states=SPENT, since=since, need=need
        )

    def spent_amount(
        self,
        currency: str,
        *,
        since: datetime,
        account: str | None = None,
        iccid: str | None = None,
    ) -> Decimal:
        rows = self.spent(since=since, account=account, iccid=iccid)
        return sum(
            (r.price.amount for r in rows if r.price and r.price.currency == currency),
            Decimal(0),
        )

    def find(self, order_id: str) -> LedgerOrder | None:
        """An order by esimctl's id or the seller's order number."""
        for row in self.ledger.orders():
            if order_id in (row.id, row.provider_order_id):
                return row
        return None

    # -- writing ---------------------------------------------------------------------------

    def journal_intent(self, **fields: Any) -> LedgerOrder:
        """Committed before the purchase request is sent (see ``pipeline.buy``)."""
        return self.ledger.add_order(state=INTENT, **fields)

    def record_taken(self, row: LedgerOrder, **fields: Any) -> LedgerOrder:
        """The seller took the order (or a lookup found it): pending until it shows."""
        return self.ledger.update_order(row.id, state=_PENDING, **fields)

    def record_refused(self, row: LedgerOrder, detail: dict[str, Any]) -> LedgerOrder:
        """The seller refused it, or a lookup shows it was never made."""
        return self.ledger.update_order(row.id, state=_FAILED, detail=detail)

    def record_applied(
        self, row: LedgerOrder, at: datetime, detail: dict[str, Any] | None = None
    ) -> LedgerOrder:
        return self.ledger.update_order(row.id, state=_COMPLETED, applied_at=at, detail=detail)

    def record_bought_by_hand(self, **fields: Any) -> LedgerOrder:
        """A top-up bought on a seller's page: pending until the user's reading shows it."""
        return self.ledger.add_order(state=_PENDING, **fields)

    def record_package(self, **fields: Any) -> LedgerOrder:
        """A package recorded as bought (``esim add`` with a price): served from the start."""
        return self.ledger.add_order(state=_COMPLETED, **fields)

    def note(self, row: LedgerOrder, **detail: Any) -> LedgerOrder:
        """Add facts to an order's ``detail``; its state is unchanged."""
        return self.ledger.update_order(row.id, detail=detail)

    def note_quietly(self, row: LedgerOrder, **detail: Any) -> LedgerOrder:
        """``note``, where a ledger that fails must not hide the news being reported."""
        with contextlib.suppress(EsimctlError, sqlite3.Error):
            return self.note(row, **detail)
        return row
