"""The provider journal kept in the ledger: ``ctx.journal`` of every provider esimctl opens.

A provider whose API has no idempotency key (eSIM Go) or whose key must be sent again
after a lost answer (eSIM Access's ``transactionId``) remembers, per purchase, what it
sent: to find the order again after a crash, and to send the same key on a retry. Its
entries live in the ledger's ``provider_journal`` table, beside the orders, committed
before ``record`` returns. The journal also answers the two questions about esimctl's
own orders that providers ask (which eSIMs have a top-up not settled yet; which provider
order ids esimctl already accounts for), without handing a provider the ledger itself.

Before this journal, eSIM Access and eSIM Go kept JSON files in the account's state dir
(``esimaccess-topups.json``, ``esimgo-purchases.json``); ``carry_over`` moves them in the
first time the account is opened and renames each file ``*.migrated``.
"""

from __future__ import annotations

import contextlib
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from esimctl.ledger import Ledger
from esimctl.providers.base import OpenOrder, ProviderJournal
from esimctl.purchasing.book import OrderBook
from esimctl.serialize import parse_iso

#: Entries older than this are not returned: a lost answer is looked up within days.
KEEP = timedelta(days=60)
#: The JSON journals of esimctl before the provider journal (see ``carry_over``).
OLD_FILES = ("esimaccess-topups.json", "esimgo-purchases.json")


class LedgerJournal(ProviderJournal):
    """One account's journal, in the ledger."""

    def __init__(self, ledger: Ledger, account: str) -> None:
        super().__init__()
        self._ledger = ledger
        self._book = OrderBook(ledger, ledger.clock)
        self.account = account

    def record(self, reference: str, **fields: Any) -> dict[str, Any]:
        return self._ledger.journal_merge(self.account, reference, fields)

    def entries(self) -> dict[str, dict[str, Any]]:
        since = self._ledger.clock() - KEEP
        return self._ledger.journal_entries(self.account, since=since)

    def entry(self, reference: str) -> dict[str, Any]:
        out = dict(self.entries().get(reference) or {})
        for row in self._book.kept(account=self.account):
            if row.reference == reference:
                out.setdefault("iccid", row.iccid)
                out.setdefault("plan_id", row.plan_id)
                break
        return out

    def open_orders(self) -> list[OpenOrder]:
        return [
            OpenOrder(r.reference, r.iccid, r.plan_id, r.provider_order_id, r.created_at)
            for r in self._book.open(account=self.account)
        ]

    def claimed_order_ids(self, except_reference: str | None = None) -> set[str]:
        ids = {
            str(v["order"])
            for k, v in self.entries().items()
            if k != except_reference and isinstance(v, dict) and v.get("order")
        }
        for row in self._book.kept(account=self.account):
            if row.reference != except_reference and row.provider_order_id:
                ids.add(row.provider_order_id)
        return ids


def carry_over(ledger: Ledger, account: str, state_dir: Path) -> None:
    """Move the JSON journals of an older esimctl into the ledger, once.

    An entry already in the ledger keeps its fields (the ledger is newer); the file is
    renamed ``*.migrated`` after its entries are committed, so a crash in between only
    merges the same entries again. An unreadable file is left where it is."""
    for name in OLD_FILES:
        path = state_dir / name
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict):
            continue
        known = ledger.journal_entries(account)
        for reference, fields in data.items():
            if not isinstance(fields, dict):
                continue
            merged = {**fields, **known.get(str(reference), {})}
            try:
                sent = parse_iso(str(fields.get("sent_at") or ""))
            except ValueError:
                sent = None
            ledger.journal_merge(account, str(reference), merged, created_at=sent)
        # Another esimctl may have carried it over at the same moment: then it is done.
        with contextlib.suppress(FileNotFoundError):
            path.replace(path.with_name(name + ".migrated"))
