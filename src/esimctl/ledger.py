"""The ledger: a SQLite file of every order made or recorded, usage snapshots and caches.

It evolves through named migrations recorded in ``_migrations`` (so an old ledger upgrades
in place), runs in WAL mode with full fsync so a kill at any moment loses nothing that was
committed, and never stores a secret.

Order rows are the purchase journal: a row is written in state ``intent`` *before* a
purchase request is sent, and updated with the outcome after. An ``intent`` row that is
still there at the next run is a purchase whose outcome is unknown; it is reconciled
with the provider before anything else is bought.

A ledger esimctl cannot trust is refused before anything is written to it, each with a
one-line error naming the file: one that is not SQLite, truncated or damaged
(``LedgerCorrupt``, exit 1: move it aside), one written by a newer esimctl
(``LedgerTooNew``, exit 1: upgrade), one another process holds locked beyond
``BUSY_TIMEOUT`` (``LedgerBusy``, exit 75: retry later). A full disk is ``LedgerFull``.
Every sqlite3 error leaving this module is one of these ``LedgerError``s.

A ledger in a home esimctl cannot write (a read-only file system, a directory that is not
the user's) is opened read-only, so what is recorded can still be read: with
``mode=ro`` where SQLite allows it (a WAL ledger needs its ``-shm`` present for that),
else ``immutable=1`` when no ``-wal`` holds changes the main file lacks; a home without a
ledger reads as an empty one. Then cache and snapshot writes are skipped (``skipped``
counts them, ``on_skip`` is told), and every other write, orders above all, raises
``LedgerReadOnly`` naming the directory (exit 1) before anything is written or sent.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from esimctl.errors import EsimctlError, TemporaryFailure
from esimctl.models import Esim, Money, Order, OrderState
from esimctl.paths import NotWritable, private_file, unwritable
from esimctl.serialize import esim_to_cache, iso, parse_iso

#: Journal states beyond SPEC's order states: ``intent`` is written before the request.
INTENT = "intent"

#: Seconds to wait for another process's write to the ledger before giving up (exit 75).
#: Writes are short transactions: a ledger held longer than this is held by something else.
BUSY_TIMEOUT = 10.0

_SQLITE_MAGIC = b"SQLite format 3\x00"


# -- errors -------------------------------------------------------------------------------------


class LedgerError(EsimctlError, sqlite3.Error):
    """The ledger cannot be used. Also a ``sqlite3.Error``, for code that catches those."""

    code = "ledger_error"


class LedgerCorrupt(LedgerError):
    """Not SQLite, truncated, damaged, or not an esimctl ledger: move it aside (exit 1)."""

    code = "ledger_corrupt"


class LedgerTooNew(LedgerError):
    """Written by a newer esimctl: refused, untouched, until esimctl is upgraded (exit 1)."""

    code = "ledger_too_new"


class LedgerFull(LedgerError):
    """The disk (or the file system's quota) is full: nothing more could be written."""

    code = "ledger_full"


class LedgerBusy(TemporaryFailure, LedgerError):
    """Another process held the ledger locked longer than ``BUSY_TIMEOUT`` (exit 75)."""

    code = "ledger_busy"


class LedgerReadOnly(LedgerError, NotWritable):
    """The ledger's home cannot be written: it is read, never written (exit 1).

    Also a ``paths.NotWritable`` (and so an ``OSError``): one code for a home esimctl
    cannot write, whichever file it was about to write."""

    code = "home_not_writable"


_LEDGER = "its ledger"


def corrupt(path: Path, why: str) -> LedgerCorrupt:
    return LedgerCorrupt(
        f"the ledger {path} cannot be read ({why}): move it aside, e.g. "
        f"'mv {path} {path}.broken', and esimctl starts a new one",
        hint="the orders recorded in it will then be missing from 'esimctl history' "
        "(a provider's own order list still shows its orders)",
    )


def ledger_error(exc: sqlite3.Error, path: Path) -> LedgerError:
    """The ``LedgerError`` for an sqlite3 error on ``path``: one line, no traceback."""
    if isinstance(exc, LedgerError):
        return exc
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    text = str(exc) or type(exc).__name__
    low = text.lower()
    if primary in (5, 6) or "database is locked" in low or "is busy" in low:
        return LedgerBusy(
            f"the ledger {path} is locked by another process (another esimctl writing to "
            "it?); retry later"
        )
    if primary == 13 or "disk is full" in low:
        return LedgerFull(
            f"cannot write the ledger {path}: the disk is full; free some space and run again"
        )
    if primary in (11, 26) or "malformed" in low or "not a database" in low:
        return corrupt(path, text)
    if primary == 8 or "readonly database" in low:  # SQLITE_READONLY: a file not ours to write
        blocked = unwritable(path.parent, what=_LEDGER) or unwritable(path, what=_LEDGER)
        where, why = (blocked.where, blocked.why) if blocked else (path, "read-only")
        return LedgerReadOnly(where, why=why, what=_LEDGER)
    return LedgerError(f"cannot use the ledger {path}: {text}")


#: Errors of the caller's SQL, not of the ledger: left for the caller (a constraint it may
#: catch, a bug to see); ``cli/app.py`` still reports one that escapes in one line.
_CALLERS_OWN = (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError)


def _mapping(exc: BaseException, path: Path) -> LedgerError | None:
    """The ``LedgerError`` to raise instead of ``exc``, if any."""
    if not isinstance(exc, sqlite3.Error) or isinstance(exc, (LedgerError, *_CALLERS_OWN)):
        return None
    return ledger_error(exc, path)


_P = ParamSpec("_P")
_T = TypeVar("_T")


def _mapped(fn: Callable[Concatenate[Ledger, _P], _T]) -> Callable[Concatenate[Ledger, _P], _T]:
    """sqlite3 errors of a ledger method become ``LedgerError``s."""

    def wrapper(self: Ledger, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return fn(self, *args, **kwargs)
        except sqlite3.Error as exc:
            mapped = _mapping(exc, self.path)
            if mapped is None:
                raise
            raise mapped from exc

    functools.update_wrapper(wrapper, fn)
    return wrapper


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


def _m003_provider_journal(db: sqlite3.Connection) -> None:
    # What a provider records about the requests it sent (purchasing/journal.py): one entry
    # per account and purchase reference, JSON fields merged in place. Before this, eSIM
    # Access and eSIM Go kept these in JSON files in their state dir; the journal carries
    # them over the first time each account is opened.
    _script(
        db,
        """
        CREATE TABLE provider_journal (
            account TEXT NOT NULL,
            reference TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            data TEXT NOT NULL,
            PRIMARY KEY (account, reference)
        );
        """,
    )


def _m004_notify(db: sqlite3.Connection) -> None:
    # Notifications (notify/state.py): conditions seen, since when; what was sent to whom.
    _script(
        db,
        """
        CREATE TABLE notify_conditions (
            key TEXT PRIMARY KEY,
            subject TEXT NOT NULL,
            first_seen TEXT NOT NULL,
            last_seen TEXT NOT NULL
        );
        CREATE INDEX notify_conditions_subject ON notify_conditions(subject);
        CREATE TABLE notify_sent (
            key TEXT NOT NULL,
            target TEXT NOT NULL,
            sent_at TEXT NOT NULL,
            PRIMARY KEY (key, target)
        );
        """,
    )


MIGRATIONS: list[tuple[str, Callable[[sqlite3.Connection], None]]] = [
    ("m001_initial", _m001_initial),
    ("m002_manual", _m002_manual),
    ("m003_provider_journal", _m003_provider_journal),
    ("m004_notify", _m004_notify),
]


def schema_version() -> int:
    """``PRAGMA user_version`` of a ledger this esimctl has migrated: its migration count."""
    return len(MIGRATIONS)


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
    def __init__(
        self,
        path: Path,
        *,
        clock: Callable[[], datetime] | None = None,
        busy_timeout: float = BUSY_TIMEOUT,
        on_skip: Callable[[LedgerReadOnly], None] | None = None,
    ) -> None:
        self.path = path
        self.clock = clock or (lambda: datetime.now(UTC))
        #: Why the ledger is open read-only (its home cannot be written); None when it is not.
        self.read_only: LedgerReadOnly | None = None
        #: Cache and snapshot writes skipped because the ledger is read-only.
        self.skipped = 0
        #: Told of the first skipped write (for a note: what was fetched is not kept).
        self.on_skip = on_skip
        _check_header(path)  # before sqlite opens it: a foreign file is never touched
        # Its directory takes the -wal and -shm files: both must be writable.
        blocked = unwritable(path.parent, what=_LEDGER) or unwritable(path, what=_LEDGER)
        if blocked is None:
            try:
                # 0600 before sqlite creates it (its -wal and -shm follow)
                private_file(path, what=_LEDGER)
                _tighten(path)
            except NotWritable as exc:
                blocked = exc
            except OSError as exc:
                raise LedgerError(f"cannot use the ledger {path}: {exc.strerror or exc}") from exc
        if blocked is not None:
            self.db = self._open_read_only(blocked, busy_timeout)
            return
        try:
            self.db = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise ledger_error(exc, path) from exc
        try:
            self.db.row_factory = sqlite3.Row
            self.db.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
            self.db.execute("PRAGMA synchronous=FULL")
            self._check_version()  # reads only: a newer ledger is refused untouched
            mode = self.db.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() != "wal":
                self.db.execute("PRAGMA journal_mode=WAL")
            self.migrate()
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                self.db.close()
            if (mapped := _mapping(exc, path)) is not None:
                raise mapped from exc
            raise

    def _open_read_only(self, blocked: NotWritable, busy_timeout: float) -> sqlite3.Connection:
        """The ledger opened for reading only, in a home esimctl cannot write."""
        path = self.path

        def refusal(detail: str = "") -> LedgerReadOnly:
            return LedgerReadOnly(blocked.where, why=blocked.why, what=_LEDGER, detail=detail)

        if not path.exists() or path.stat().st_size == 0:
            # Nothing recorded yet: an empty ledger in memory, so reads find nothing.
            self.db = sqlite3.connect(":memory:", isolation_level=None)
            self.db.row_factory = sqlite3.Row
            self.migrate()
            self.read_only = refusal()
            return self.db
        uri = path.absolute().as_uri()
        db = None
        try:
            try:
                # Reads the -wal too, through its -shm; SQLite cannot make a -shm here.
                db = self._connect_ro(f"{uri}?mode=ro", busy_timeout)
            except sqlite3.OperationalError as exc:
                # No -shm, none to be made: SQLITE_CANTOPEN on a read-only file system,
                # SQLITE_READONLY_DIRECTORY in a directory that is not ours to write.
                code = getattr(exc, "sqlite_errorcode", None)
                if not isinstance(code, int) or code & 0xFF not in (
                    sqlite3.SQLITE_CANTOPEN,
                    sqlite3.SQLITE_READONLY,
                ):
                    raise
                wal = path.with_name(path.name + "-wal")
                if wal.exists() and wal.stat().st_size > 0:
                    # immutable=1 would read the main file without the changes in the -wal.
                    raise refusal(
                        f"its latest changes are in {wal.name}, which SQLite reads only "
                        "where it can write"
                    ) from None
                # No -wal: the main file holds everything (and esimctl cannot change it).
                db = self._connect_ro(f"{uri}?immutable=1", busy_timeout)
            self.db = db
            self._check_version()  # a newer esimctl's ledger is refused as ever
            applied = self._applied() or set()
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            if version != schema_version() or any(n not in applied for n, _ in MIGRATIONS):
                raise refusal("to upgrade it")
        except BaseException as exc:
            if db is not None:
                with contextlib.suppress(sqlite3.Error):
                    db.close()
            if (mapped := _mapping(exc, path)) is not None:
                raise mapped from exc
            raise
        self.read_only = refusal()
        return db

    @staticmethod
    def _connect_ro(uri: str, busy_timeout: float) -> sqlite3.Connection:
        db = sqlite3.connect(uri, uri=True, timeout=busy_timeout, isolation_level=None)
        try:
            db.row_factory = sqlite3.Row
            db.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
            db.execute("PRAGMA user_version").fetchone()  # opens the file (and -wal) now
        except BaseException:
            db.close()
            raise
        return db

    def close(self) -> None:
        self.db.close()

    def _skip(self) -> bool:
        """True (and counted) when a cache or snapshot write is to be skipped: read-only."""
        if self.read_only is None:
            return False
        self.skipped += 1
        if self.skipped == 1 and self.on_skip is not None:
            self.on_skip(self.read_only)
        return True

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; an sqlite3 error in it becomes a ``LedgerError``.

        In a read-only ledger it raises ``LedgerReadOnly`` before anything is written."""
        if (ro := self.read_only) is not None:
            raise LedgerReadOnly(ro.where, why=ro.why, what=ro.what)
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise ledger_error(exc, self.path) from exc
        try:
            yield self.db
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):  # sqlite may have rolled back already
                self.db.execute("ROLLBACK")
            if (mapped := _mapping(exc, self.path)) is not None:
                raise mapped from exc
            raise
        try:
            self.db.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                self.db.execute("ROLLBACK")
            raise ledger_error(exc, self.path) from exc

    def _applied(self) -> set[str] | None:
        """Names in ``_migrations``; None where there is no such table."""
        has = self.db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_migrations'"
        ).fetchone()
        if has is None:
            return None
        return {str(r[0]) for r in self.db.execute("SELECT name FROM _migrations")}

    def _check_version(self) -> None:
        """Refuse a ledger of a newer esimctl, or a database that is no ledger at all."""
        theirs = int(self.db.execute("PRAGMA user_version").fetchone()[0])
        applied = self._applied()
        if applied is None:
            tables = self.db.execute(
                "SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
            ).fetchone()[0]
            if tables or theirs:
                raise corrupt(self.path, "an SQLite database, but not an esimctl ledger")
            return
        unknown = sorted(applied - {name for name, _ in MIGRATIONS})
        if theirs > schema_version() or unknown:
            what = f"migration {unknown[0]}" if unknown else f"schema version {theirs}"
            raise LedgerTooNew(
                f"the ledger {self.path} was written by a newer esimctl ({what}; this one "
                f"knows up to {schema_version()}); upgrade esimctl to use it",
                hint="nothing was written to it; 'pip install -U esimctl' (or your package "
                "manager) gets the newer version",
            )

    def migrate(self) -> list[str]:
        applied = self._applied() or set()
        version = int(self.db.execute("PRAGMA user_version").fetchone()[0])
        if version == schema_version() and all(name in applied for name, _ in MIGRATIONS):
            return []  # nothing to do: no write lock taken
        with self.tx() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT)"
            )
            self._check_version()  # again under the lock: another esimctl may have migrated
            done = {r[0] for r in db.execute("SELECT name FROM _migrations")}
            out = []
            for name, fn in MIGRATIONS:
                if name in done:
                    continue
                fn(db)
                db.execute("INSERT INTO _migrations VALUES (?, ?)", (name, iso(self.clock())))
                out.append(name)
            db.execute(f"PRAGMA user_version = {schema_version()}")
        return out

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

    @_mapped
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
        iccid: str | None = None,
    ) -> LedgerOrder:
        sets = ["updated_at = ?"]
        args: list[Any] = [iso(self.clock())]
        if iccid is not None:  # a new eSIM's, once the seller has allocated it
            sets.append("iccid = ?")
            args.append(iccid)
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

    @_mapped
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

    def add_snapshots(self, esims: list[Esim], *, at: datetime | None = None) -> None:
        """Record fetched figures (fetched now, or ``at``); skipped (see ``skipped``) in a
        read-only ledger."""
        if self._skip():
            return
        now = iso(at or self.clock())
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

    @_mapped
    def has_snapshots(self) -> bool:
        return self.db.execute("SELECT 1 FROM usage_snapshots LIMIT 1").fetchone() is not None

    @_mapped
    def readings(
        self, account: str, iccid: str, *, since: datetime
    ) -> list[tuple[datetime, int, int | None]]:
        """The figures told of one eSIM since ``since``: (as of, data left, total), oldest
        first; a fetch without an *as of* counts at its own time."""
        rows = self.db.execute(
            "SELECT COALESCE(as_of, fetched_at) AS at, data_remaining_bytes, data_total_bytes "
            "FROM usage_snapshots WHERE account = ? AND iccid = ? AND fetched_at >= ? "
            "AND data_remaining_bytes IS NOT NULL AND unlimited = 0 ORDER BY id",
            (account, iccid, iso(since)),
        )
        out = []
        for r in rows:
            at = parse_iso(r["at"])
            if at is not None:
                out.append((at, int(r["data_remaining_bytes"]), r["data_total_bytes"]))
        return out

    @_mapped
    def latest_snapshots(self) -> list[dict[str, Any]]:
        """The last figures seen for every eSIM (for naming eSIMs without the network)."""
        rows = self.db.execute(
            "SELECT payload FROM usage_snapshots WHERE id IN "
            "(SELECT MAX(id) FROM usage_snapshots GROUP BY account, iccid)"
        )
        return [json.loads(r["payload"]) for r in rows]

    @_mapped
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
        """Cache ``payload``; skipped (see ``skipped``) in a read-only ledger."""
        if self._skip():
            return
        with self.tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO cache (key, account, fetched_at, payload) VALUES (?,?,?,?)",
                (key, account, iso(self.clock()), json.dumps(payload)),
            )

    def cache_drop(self, account: str) -> None:
        with self.tx() as db:
            db.execute("DELETE FROM cache WHERE account = ?", (account,))

    # -- the provider journal (purchasing/journal.py) --------------------------------------------

    def journal_merge(
        self,
        account: str,
        reference: str,
        fields: dict[str, Any],
        *,
        created_at: datetime | None = None,
    ) -> dict[str, Any]:
        """Merge ``fields`` into the entry of ``reference``; committed when this returns."""
        now = iso(self.clock())
        with self.tx() as db:
            r = db.execute(
                "SELECT data FROM provider_journal WHERE account = ? AND reference = ?",
                (account, reference),
            ).fetchone()
            data = json.loads(r["data"]) if r is not None else {}
            data.update(fields)
            if r is None:
                db.execute(
                    "INSERT INTO provider_journal (account, reference, created_at, updated_at, "
                    "data) VALUES (?,?,?,?,?)",
                    (
                        account,
                        reference,
                        iso(created_at) if created_at else now,
                        now,
                        json.dumps(data),
                    ),
                )
            else:
                db.execute(
                    "UPDATE provider_journal SET data = ?, updated_at = ? "
                    "WHERE account = ? AND reference = ?",
                    (json.dumps(data), now, account, reference),
                )
        return data

    @_mapped
    def journal_entries(self, account: str, *, since: datetime | None = None) -> dict[str, Any]:
        """This account's entries (reference -> fields), newest first."""
        rows = self.db.execute(
            "SELECT reference, data FROM provider_journal WHERE account = ? AND created_at >= ? "
            "ORDER BY created_at DESC, rowid DESC",
            (account, iso(since) if since else ""),
        )
        return {r["reference"]: json.loads(r["data"]) for r in rows}


def _check_header(path: Path) -> None:
    """A file that is not SQLite, or shorter than its own header says, is refused unread."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(100)
            size = os.fstat(fh.fileno()).st_size
    except (FileNotFoundError, IsADirectoryError):
        return  # a new ledger; or sqlite says what is wrong with the path
    except OSError as exc:
        raise LedgerError(f"cannot read the ledger {path}: {exc.strerror or exc}") from exc
    if size == 0:
        return  # an empty file is an empty SQLite database (esimctl creates it so)
    if not head.startswith(_SQLITE_MAGIC):
        raise corrupt(path, "not an SQLite database")
    if len(head) < 100:
        raise corrupt(path, f"truncated to {size} bytes")
    page_size = int.from_bytes(head[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512 or page_size & (page_size - 1):
        raise corrupt(path, "its header is damaged")
    pages = int.from_bytes(head[28:32], "big")
    counted = head[92:96] == head[24:28]  # the page count is valid (SQLite 3.7.0+)
    wal = path.with_name(path.name + "-wal")
    # With a non-empty WAL the file may lag behind its header (a checkpoint cut short):
    # SQLite finishes it from the WAL.
    if wal.exists() and wal.stat().st_size > 0:
        return
    if size < page_size or (counted and size < pages * page_size):
        raise corrupt(path, f"truncated: {size} bytes where its header says {pages * page_size}")


def _tighten(path: Path) -> None:
    """A ledger (and its -wal, -shm) made 0644 by an older esimctl becomes 0600."""
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(OSError):
            st = p.stat()
            if st.st_mode & 0o077 and st.st_uid == os.getuid():
                os.chmod(p, 0o600)
