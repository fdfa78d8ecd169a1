"""The ledger: a SQLite file of every order made or recorded, usage snapshots and caches.

It evolves through named migrations recorded in ``_migrations`` (so an old ledger upgrades
in place), runs in WAL mode with full fsync so a kill at any moment loses nothing that was
committed, and never stores a secret.

Order rows are the purchase journal: a row is written in state ``intent`` *before* a
purchase request is sent, and updated with the outcome after. An ``intent`` row that is
still there at the next run is a purchase whose outcome is unknown; it is reconciled
with the provider before anything else is bought.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from esimctl.models import Esim, Money, Order, OrderState
from esimctl.serialize import esim_to_cache, iso, parse_iso

#: Journal states beyond SPEC's order states: ``intent`` is written before the request.
INTENT = "intent"


def _script(db: sqlite3.Connection, sql: str) -> None:
    # executescript() would COMMIT the migration's transaction half-way; run statements singly.
    for statement in sql.split(";"):
        if statement.strip():
            db.execute(statement)


def _m001_initial(db: sqlite3.Connection) -> None:
    _script(
        db,
        """
        CREATE TABLE orders (
            id TEXT PRIMARY KEY,
            account TEXT NOT NULL,
            provider TEXT NOT NULL,
            iccid TEXT,
            plan_id TEXT,
            plan TEXT,
            amount TEXT,
            currency TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            state TEXT NOT NULL,
            source TEXT NOT NULL DEFAULT 'local',
            reference TEXT UNIQUE,
            provider_order_id TEXT,
            need TEXT,
            applied_at TEXT,
            detail TEXT NOT NULL DEFAULT '{}'
        );
        CREATE INDEX orders_account_iccid ON orders(account, iccid);
        CREATE INDEX orders_state ON orders(state);
        CREATE TABLE usage_snapshots (
            id INTEGER PRIMARY KEY,
            account TEXT NOT NULL,
            provider TEXT NOT NULL,
            iccid TEXT NOT NULL,
            fetched_at TEXT NOT NULL,
            as_of TEXT,
            state TEXT NOT NULL,
            data_total_bytes INTEGER,
            data_remaining_bytes INTEGER,
            unlimited INTEGER NOT NULL,
            expires_at TEXT,
            payload TEXT NOT NULL
        );
        CREATE INDEX usage_iccid ON usage_snapshots(account, iccid, fetched_at);
        CREATE TABLE cache (
            key TEXT PRIMARY KEY,
            account TEXT NOT NULL,
            fetched_at TEXT NOT NULL,
            payload TEXT NOT NULL
        );
        """,
    )


def _m002_manual(db: sqlite3.Connection) -> None:
    # Sellers without an API (providers/manual.py keeps every query on these tables).
    # Figures are derived from the package, the readings and the orders, never stored twice.
    _script(
        db,
        """
        CREATE TABLE manual_esims (
            iccid TEXT PRIMARY KEY,
            account TEXT NOT NULL,
            label TEXT,
            countries TEXT NOT NULL DEFAULT '',
            plan TEXT,
            data_bytes INTEGER NOT NULL,
            days INTEGER,
            expires_at TEXT,
            activated_at TEXT,
            recorded_at TEXT NOT NULL
        );
        CREATE INDEX manual_esims_account ON manual_esims(account);
        CREATE TABLE manual_readings (
            id INTEGER PRIMARY KEY,
            iccid TEXT NOT NULL,
            remaining_bytes INTEGER NOT NULL,
            expires_at TEXT,
            taken_at TEXT NOT NULL,
            recorded_at TEXT NOT NULL
        );
        CREATE INDEX manual_readings_iccid ON manual_readings(iccid, taken_at);
        CREATE TABLE manual_plans (
            account TEXT NOT NULL,
            id TEXT NOT NULL,
            name TEXT NOT NULL,
            data_bytes INTEGER NOT NULL,
            days INTEGER NOT NULL,
            amount TEXT NOT NULL,
            currency TEXT NOT NULL,
            PRIMARY KEY (account, id)
        );
        """,
    )


MIGRATIONS: list[tuple[str, Callable[[sqlite3.Connection], None]]] = [
    ("m001_initial", _m001_initial),
    ("m002_manual", _m002_manual),
]


@dataclass(frozen=True)
class LedgerOrder:
    """An order row: SPEC's order plus the journal's own columns."""

    id: str
    account: str
    provider: str
    iccid: str | None
    plan_id: str | None
    plan: str | None
    price: Money | None
    created_at: datetime
    updated_at: datetime
    state: str
    source: str
    reference: str | None
    provider_order_id: str | None
    need: str | None
    applied_at: datetime | None
    detail: dict[str, Any]

    def to_order(self) -> Order:
        # An intent whose outcome is not known yet is shown as pending, never as nothing.
        state = OrderState.PENDING if self.state == INTENT else OrderState(self.state)
        return Order(
            id=self.provider_order_id or self.id,
            account=self.account,
            provider=self.provider,
            iccid=self.iccid,
            plan_id=self.plan_id,
            plan=self.plan,
            price=self.price,
            created_at=self.created_at,
            state=state,
            source=self.source,
            reference=self.reference,
            extra=self.detail,
        )


def _row_to_order(r: sqlite3.Row) -> LedgerOrder:
    price = Money(Decimal(r["amount"]), r["currency"]) if r["amount"] is not None else None
    created = parse_iso(r["created_at"])
    updated = parse_iso(r["updated_at"])
    assert created is not None and updated is not None
    return LedgerOrder(
        id=r["id"],
        account=r["account"],
        provider=r["provider"],
        iccid=r["iccid"],
        plan_id=r["plan_id"],
        plan=r["plan"],
        price=price,
        created_at=created,
        updated_at=updated,
        state=r["state"],
        source=r["source"],
        reference=r["reference"],
        provider_order_id=r["provider_order_id"],
        need=r["need"],
        applied_at=parse_iso(r["applied_at"]),
        detail=json.loads(r["detail"] or "{}"),
    )


class Ledger:
    def __init__(self, path: Path, *, clock: Callable[[], datetime] | None = None) -> None:
        self.path = path
        self.clock = clock or (lambda: datetime.now(UTC))
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.db = sqlite3.connect(path, timeout=30, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA busy_timeout=30000")
        self.migrate()

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def migrate(self) -> list[str]:
        with self.tx() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT)"
            )
            done = {r[0] for r in db.execute("SELECT name FROM _migrations")}
            applied = []
            for name, fn in MIGRATIONS:
                if name in done:
                    continue
                fn(db)
                db.execute("INSERT INTO _migrations VALUES (?, ?)", (name, iso(self.clock())))
                applied.append(name)
        return applied

    # -- orders (the purchase journal) -----------------------------------------------------

    def add_order(
        self,
        *,
        account: str,
        provider: str,
        iccid: str | None,
        plan_id: str | None,
        plan: str | None,
        price: Money | None,
        state: str,
        source: str = "local",
        reference: str | None = None,
        provider_order_id: str | None = None,
        need: str | None = None,
        created_at: datetime | None = None,
        detail: dict[str, Any] | None = None,
    ) -> LedgerOrder:
        now = iso(self.clock())
        oid = "L" + uuid.uuid4().hex[:15]
        with self.tx() as db:
            db.execute(
                "INSERT INTO orders (id, account, provider, iccid, plan_id, plan, amount, "
                "currency, created_at, updated_at, state, source, reference, provider_order_id, "
                "need, detail) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    oid,
                    account,
                    provider,
                    iccid,
                    plan_id,
                    plan,
                    str(price.amount) if price else None,
                    price.currency if price else None,
                    iso(created_at) if created_at else now,
                    now,
                    state,
                    source,
                    reference,
                    provider_order_id,
                    need,
                    json.dumps(detail or {}),
                ),
            )
        return self.order(oid)

    def order(self, oid: str) -> LedgerOrder:
        r = self.db.execute("SELECT * FROM orders WHERE id = ?", (oid,)).fetchone()
        if r is None:
            raise KeyError(oid)
        return _row_to_order(r)

    def update_order(
        self,
        oid: str,
        *,
        state: str | None = None,
        provider_order_id: str | None = None,
        applied_at: datetime | None = None,
        detail: dict[str, Any] | None = None,
        price: Money | None = None,
    ) -> LedgerOrder:
        sets = ["updated_at = ?"]
        args: list[Any] = [iso(self.clock())]
        if price is not None:
            sets.append("amount = ?, currency = ?")
            args.extend([str(price.amount), price.currency])
        if state is not None:
            sets.append("state = ?")
            args.append(state)
        if provider_order_id is not None:
            sets.append("provider_order_id = ?")
            args.append(provider_order_id)
        if applied_at is not None:
            sets.append("applied_at = ?")
            args.append(iso(applied_at))
        with self.tx() as db:
            if detail is not None:
                old = json.loads(
                    db.execute("SELECT detail FROM orders WHERE id = ?", (oid,)).fetchone()[0]
                )
                old.update(detail)
                sets.append("detail = ?")
                args.append(json.dumps(old))
            db.execute(f"UPDATE orders SET {', '.join(sets)} WHERE id = ?", (*args, oid))
        return self.order(oid)

    def orders(
        self,
        *,
        account: str | None = None,
        iccid: str | None = None,
        states: tuple[str, ...] | None = None,
        since: datetime | None = None,
        need: str | None = None,
    ) -> list[LedgerOrder]:
        where: list[str] = ["1=1"]
        args: list[str | None] = []
        if account:
            where.append("account = ?")
            args.append(account)
        if iccid:
            where.append("iccid = ?")
            args.append(iccid)
        if states:
            where.append(f"state IN ({','.join('?' * len(states))})")
            args.extend(states)
        if since:
            where.append("created_at >= ?")
            args.append(iso(since))
        if need is not None:
            where.append("need = ?")
            args.append(need)
        rows = self.db.execute(
            f"SELECT * FROM orders WHERE {' AND '.join(where)} "
            "ORDER BY created_at DESC, rowid DESC",
            args,
        )
        return [_row_to_order(r) for r in rows]

    # -- usage snapshots and caches ------------------------------------------------------------

    def add_snapshots(self, esims: list[Esim]) -> None:
        now = iso(self.clock())
        with self.tx() as db:
            db.executemany(
                "INSERT INTO usage_snapshots (account, provider, iccid, fetched_at, as_of, state, "
                "data_total_bytes, data_remaining_bytes, unlimited, expires_at, payload) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        e.account,
                        e.provider,
                        e.iccid,
                        now,
                        iso(e.as_of),
                        e.state.value,
                        e.data_total_bytes,
                        e.data_remaining_bytes,
                        int(e.unlimited),
                        iso(e.expires_at),
                        json.dumps(esim_to_cache(e)),
                    )
                    for e in esims
                ],
            )

    def latest_snapshots(self) -> list[dict[str, Any]]:
        """The last figures seen for every eSIM (for naming eSIMs without the network)."""
        rows = self.db.execute(
            "SELECT payload FROM usage_snapshots WHERE id IN "
            "(SELECT MAX(id) FROM usage_snapshots GROUP BY account, iccid)"
        )
        return [json.loads(r["payload"]) for r in rows]

    def cache_get(self, key: str) -> tuple[datetime, Any] | None:
        r = self.db.execute(
            "SELECT fetched_at, payload FROM cache WHERE key = ?", (key,)
        ).fetchone()
        if r is None:
            return None
        fetched = parse_iso(r["fetched_at"])
        assert fetched is not None
        return fetched, json.loads(r["payload"])

    def cache_put(self, key: str, account: str, payload: Any) -> None:
        with self.tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO cache (key, account, fetched_at, payload) VALUES (?,?,?,?)",
                (key, account, iso(self.clock()), json.dumps(payload)),
            )

    def cache_drop(self, account: str) -> None:
        with self.tx() as db:
            db.execute("DELETE FROM cache WHERE account = ?", (account,))
