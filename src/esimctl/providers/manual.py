"""The ``manual`` provider: sellers without an API (a Japan travel card from a marketplace).

The traveller is the API. They record the eSIM and its package (``esimctl esim add``), what
the seller's app shows (``esim reading``), the seller's plans (``esim plan add``) and what they
bought on the seller's page (``renew``: a ledger order that stays pending until it shows).
Everything lives in the ledger: the tables of migration ``m002_manual`` (every query on them
is in ``ManualStore``) and the ordinary orders table.

Figures are derived, never stored twice: an eSIM's figures are the fold, in time order, of its
package, its readings and its top-ups (``fold``). A top-up takes effect when the user confirms
it, or at the first reading taken after it was bought that shows more data than the eSIM had.
Its data stacks on what remains; its days move the end date by the account's ``stacking`` rule.

The total is the package's data plus the data of every top-up applied: a reading never changes
it. A reading above it (recorded with ``--force``) shows as the total only while it is the
latest reading, so that data left is never above the total; a wrong total is corrected on the
package (``esim edit --total``, ``esim reading --total``: ``package_for_total``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar

from esimctl.errors import ConfigError, InvalidInput
from esimctl.ledger import Ledger, LedgerOrder
from esimctl.models import Esim, EsimState, Money, Order, Package, Plan
from esimctl.providers.base import Capability, Provider, ProviderContext
from esimctl.purchasing.book import OrderBook
from esimctl.serialize import esim_to_cache, iso, parse_iso

#: How a top-up's days move the end date: from the current end, or from the purchase.
STACKING = ("extend", "restart")


@dataclass(frozen=True)
class ManualSettings:
    """A manual seller's account options: no secrets, only what a person needs to renew."""

    seller: str | None = None
    renew_url: str | None = None
    support: str | None = None
    stacking: str = "extend"
    unit_base: int = 1024

    @classmethod
    def parse(cls, options: Mapping[str, Any]) -> ManualSettings:
        def text(key: str) -> str | None:
            value = options.get(key)
            if value is None:
                return None
            if not isinstance(value, str) or not value.strip():
                raise InvalidInput(f"invalid {key} {value!r}: give some text")
            return value.strip()

        url = text("renew_url")
        if url is not None and not url.startswith(("https://", "http://")):
            raise InvalidInput(
                f"invalid renewal page {url!r}: give the address, starting with https://"
            )
        stacking = (text("stacking") or "extend").lower()
        if stacking not in STACKING:
            raise InvalidInput(
                f"invalid stacking {stacking!r}: use extend (a top-up's days extend the current "
                "end date) or restart (they count from the top-up)"
            )
        raw_base = options.get("unit_base", 1024)
        if str(raw_base).strip() not in ("1000", "1024"):
            raise InvalidInput(
                f"invalid unit_base {raw_base!r}: use 1024 (1 GB = 1024 MB, the default) or 1000"
            )
        return cls(text("seller"), url, text("support"), stacking, int(str(raw_base).strip()))


@dataclass(frozen=True)
class ManualEsim:
    """An eSIM recorded by hand and the package it came with."""

    iccid: str
    account: str
    label: str | None
    countries: tuple[str, ...]
    plan: str | None
    data_bytes: int
    days: int | None
    expires_at: datetime | None
    activated_at: datetime | None
    recorded_at: datetime

    @property
    def first_end(self) -> datetime | None:
        """The package's end: as given, or ``days`` after activation (unknown before it)."""
        if self.expires_at is not None:
            return self.expires_at
        if self.days is not None and self.activated_at is not None:
            return self.activated_at + timedelta(days=self.days)
        return None


@dataclass(frozen=True)
class Reading:
    """What the seller's app showed at ``taken_at``: data left, and the end date if shown."""

    iccid: str
    remaining_bytes: int
    expires_at: datetime | None
    taken_at: datetime


@dataclass(frozen=True)
class SellerPlan:
    account: str
    id: str
    name: str
    data_bytes: int
    days: int
    price: Money


def _row_esim(r: sqlite3.Row) -> ManualEsim:
    recorded = parse_iso(r["recorded_at"])
    assert recorded is not None
    return ManualEsim(
        iccid=r["iccid"],
        account=r["account"],
        label=r["label"],
        countries=tuple(c for c in r["countries"].split(",") if c),
        plan=r["plan"],
        data_bytes=r["data_bytes"],
        days=r["days"],
        expires_at=parse_iso(r["expires_at"]),
        activated_at=parse_iso(r["activated_at"]),
        recorded_at=recorded,
    )


@dataclass(frozen=True)
class HandRecords:
    """What a seller without an API is folded from (``ctx.hand_records``): the manual
    tables of the ledger, and the order book for the top-ups bought by hand."""

    store: ManualStore
    orders: OrderBook


class ManualStore:
    """Every query on the manual tables of the ledger."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def add_esim(self, e: ManualEsim) -> None:
        with self.ledger.tx() as db:
            db.execute(
                "INSERT INTO manual_esims (iccid, account, label, countries, plan, data_bytes, "
                "days, expires_at, activated_at, recorded_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    e.iccid,
                    e.account,
                    e.label,
                    ",".join(e.countries),
                    e.plan,
                    e.data_bytes,
                    e.days,
                    iso(e.expires_at),
                    iso(e.activated_at),
                    iso(e.recorded_at),
                ),
            )

    def esim(self, iccid: str) -> ManualEsim | None:
        r = self.ledger.db.execute(
            "SELECT * FROM manual_esims WHERE iccid = ?", (iccid,)
        ).fetchone()
        return _row_esim(r) if r is not None else None

    def esims(self, account: str) -> list[ManualEsim]:
        rows = self.ledger.db.execute(
            "SELECT * FROM manual_esims WHERE account = ? ORDER BY recorded_at, iccid", (account,)
        )
        return [_row_esim(r) for r in rows]

    def update_esim(
        self,
        iccid: str,
        *,
        data_bytes: int | None = None,
        activated_at: datetime | None = None,
    ) -> None:
        """Correct the recorded package: its data (the total's base) or its activation."""
        sets: list[str] = []
        args: list[Any] = []
        if data_bytes is not None:
            sets.append("data_bytes = ?")
            args.append(data_bytes)
        if activated_at is not None:
            sets.append("activated_at = ?")
            args.append(iso(activated_at))
        if not sets:
            return
        with self.ledger.tx() as db:
            db.execute(f"UPDATE manual_esims SET {', '.join(sets)} WHERE iccid = ?", (*args, iccid))

    def remove_esim(self, iccid: str) -> None:
        """The eSIM and its readings; its orders stay in the ledger, like any account's."""
        with self.ledger.tx() as db:
            db.execute("DELETE FROM manual_readings WHERE iccid = ?", (iccid,))
            db.execute("DELETE FROM manual_esims WHERE iccid = ?", (iccid,))

    def add_reading(
        self, r: Reading, *, recorded_at: datetime, package_bytes: int | None = None
    ) -> None:
        """Record ``r``; with ``package_bytes``, correct the package's data in the same step."""
        with self.ledger.tx() as db:
            if package_bytes is not None:
                db.execute(
                    "UPDATE manual_esims SET data_bytes = ? WHERE iccid = ?",
                    (package_bytes, r.iccid),
                )
            db.execute(
                "INSERT INTO manual_readings (iccid, remaining_bytes, expires_at, taken_at, "
                "recorded_at) VALUES (?,?,?,?,?)",
                (r.iccid, r.remaining_bytes, iso(r.expires_at), iso(r.taken_at), iso(recorded_at)),
            )

    def readings(self, account: str) -> dict[str, list[Reading]]:
        """Readings of the account's eSIMs by ICCID, oldest first."""
        rows = self.ledger.db.execute(
            "SELECT r.* FROM manual_readings r JOIN manual_esims e ON e.iccid = r.iccid "
            "WHERE e.account = ? ORDER BY r.taken_at, r.id",
            (account,),
        )
        out: dict[str, list[Reading]] = {}
        for r in rows:
            taken = parse_iso(r["taken_at"])
            assert taken is not None
            out.setdefault(r["iccid"], []).append(
                Reading(r["iccid"], r["remaining_bytes"], parse_iso(r["expires_at"]), taken)
            )
        return out

    def add_plan(self, p: SellerPlan) -> None:
        with self.ledger.tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO manual_plans (account, id, name, data_bytes, days, "
                "amount, currency) VALUES (?,?,?,?,?,?,?)",
                (
                    p.account,
                    p.id,
                    p.name,
                    p.data_bytes,
                    p.days,
                    str(p.price.amount),
                    p.price.currency,
                ),
            )

    def remove_plan(self, account: str, plan_id: str) -> bool:
        with self.ledger.tx() as db:
            cur = db.execute(
                "DELETE FROM manual_plans WHERE account = ? AND id = ?", (account, plan_id)
            )
        return cur.rowcount > 0

    def plans(self, account: str) -> list[SellerPlan]:
        rows = self.ledger.db.execute(
            "SELECT * FROM manual_plans WHERE account = ? ORDER BY id", (account,)
        )
        return [
            SellerPlan(
                r["account"],
                r["id"],
                r["name"],
                r["data_bytes"],
                r["days"],
                Money(Decimal(r["amount"]), r["currency"]),
            )
            for r in rows
        ]


# -- top-ups: ledger orders with what they bought in ``detail`` ------------------------------


def topup_detail(*, data_bytes: int, days: int, stacking: str, before: Esim) -> dict[str, Any]:
    """The ``detail`` of a top-up order: what it adds, by which rule, and the eSIM before it."""
    return {
        "kind": "topup",
        "data_bytes": data_bytes,
        "days": days,
        "stacking": stacking,
        "before": esim_to_cache(before),
    }


def confirmed_detail(when: datetime) -> dict[str, Any]:
    """The user said the top-up is there (``esim confirm``): it takes effect at ``when``."""
    return {"confirmed_at": iso(when)}


def is_topup(row: LedgerOrder) -> bool:
    return row.detail.get("kind") == "topup"


@dataclass(frozen=True)
class TopUp:
    reference: str
    plan: str | None
    data_bytes: int
    days: int
    stacking: str
    created_at: datetime
    confirmed_at: datetime | None

    @classmethod
    def of(cls, row: LedgerOrder) -> TopUp | None:
        """The top-up of a live order row (``OrderBook.live``); None for any other row."""
        if not is_topup(row) or not row.reference:
            return None
        d = row.detail
        return cls(
            reference=row.reference,
            plan=row.plan,
            data_bytes=int(d.get("data_bytes", 0)),
            days=int(d.get("days", 0)),
            stacking=str(d.get("stacking", "extend")),
            created_at=row.created_at,
            confirmed_at=parse_iso(d.get("confirmed_at")),
        )


# -- the fold ----------------------------------------------------------------------------------


@dataclass
class Figures:
    #: The package's data plus the top-ups applied: never raised by a reading.
    total: int
    remaining: int
    expires_at: datetime | None
    as_of: datetime
    plan: str | None
    measured: bool = False
    applied: list[TopUp] = field(default_factory=list)
    waiting: list[TopUp] = field(default_factory=list)
    #: Readings that showed more data left than the total at their time (forced ones),
    #: each with that total.
    over: list[tuple[Reading, int]] = field(default_factory=list)
    #: The newest reading, if any.
    latest: Reading | None = None

    @property
    def shown_total(self) -> int:
        """The total as shown: lifted to the data left while a reading above it is the
        latest (it was recorded with ``--force``), so data left is never above the total."""
        return max(self.total, self.remaining)


def _moved_end(end: datetime | None, t: TopUp) -> datetime | None:
    if not t.days:
        return end
    if t.stacking == "restart":
        # Counts from the purchase; a top-up never shortens what was there.
        new = t.created_at + timedelta(days=t.days)
        return new if end is None else max(end, new)
    if end is None:
        return None  # extending an end nobody knows yet: still unknown
    return max(end, t.created_at) + timedelta(days=t.days)


def _apply(f: Figures, t: TopUp) -> None:
    f.total += t.data_bytes
    f.remaining += t.data_bytes
    f.expires_at = _moved_end(f.expires_at, t)
    f.plan = t.plan or f.plan
    f.applied.append(t)


def _shows(r: Reading, f: Figures, t: TopUp) -> bool:
    """Does reading ``r`` show top-up ``t``? Data only ever goes down unless a top-up adds it."""
    if t.data_bytes:
        return r.remaining_bytes > f.remaining
    return r.expires_at is not None and f.expires_at is not None and r.expires_at > f.expires_at


def fold(esim: ManualEsim, readings: Sequence[Reading], topups: Sequence[TopUp]) -> Figures:
    """The eSIM's figures now: its package, then readings and top-ups in time order.

    Without a reading the package is taken as unused, as of when it was recorded. A reading
    replaces the data left (and the end date, where it gives one). A confirmed top-up takes
    effect when confirmed; an unconfirmed one at the first reading taken after its purchase
    that shows more data than the eSIM had (oldest top-up first), else it keeps waiting.
    """
    f = Figures(
        total=esim.data_bytes,
        remaining=esim.data_bytes,
        expires_at=esim.first_end,
        as_of=esim.recorded_at,
        plan=esim.plan,
    )
    waiting = sorted((t for t in topups if t.confirmed_at is None), key=lambda t: t.created_at)
    events: list[tuple[datetime, int, TopUp | Reading]] = [
        (t.confirmed_at, 0, t) for t in topups if t.confirmed_at is not None
    ]
    events += [(r.taken_at, 1, r) for r in readings]
    # A top-up confirmed at the moment of a reading is in that reading.
    events.sort(key=lambda ev: (ev[0], ev[1]))
    for when, _, ev in events:
        if isinstance(ev, TopUp):
            _apply(f, ev)
            continue
        while waiting and waiting[0].created_at <= when and _shows(ev, f, waiting[0]):
            _apply(f, waiting.pop(0))
        f.remaining = ev.remaining_bytes
        if ev.remaining_bytes > f.total:
            f.over.append((ev, f.total))
        if ev.expires_at is not None:
            f.expires_at = ev.expires_at
        f.as_of = when
        f.measured = True
        f.latest = ev
    f.waiting = waiting
    return f


def package_for_total(
    esim: ManualEsim,
    readings: Sequence[Reading],
    topups: Sequence[TopUp],
    total: int,
    *,
    base: int = 1024,
) -> int:
    """The package data that makes the eSIM's total ``total`` now (top-ups applied included).

    Which top-ups a reading shows can depend on the package (a reading compares with the data
    left before it), so the answer is found by trying: at most a few rounds.
    """
    from esimctl.output.human import size

    data = esim.data_bytes
    for _ in range(4):
        f = fold(replace(esim, data_bytes=data), readings, topups)
        if f.total == total:
            return data
        added = f.total - data
        data = total - added
        if data <= 0:
            raise InvalidInput(
                f"invalid total {size(total, base)}: the top-ups applied add {size(added, base)} "
                "on their own; give the total the seller's app shows (package and top-ups)"
            )
    raise InvalidInput(
        f"cannot make the total {size(total, base)} agree with the readings and top-ups "
        "recorded: record a reading with --total as the seller's app shows it"
    )


def _state(e: ManualEsim, f: Figures, now: datetime) -> EsimState:
    if f.expires_at is not None and f.expires_at <= now:
        return EsimState.EXPIRED
    if not f.measured and (e.activated_at is None or e.activated_at > now):
        return EsimState.NOT_ACTIVE
    if f.remaining <= 0:
        return EsimState.DEPLETED
    return EsimState.ACTIVE


# -- the provider ------------------------------------------------------------------------------


class ManualProvider(Provider):
    """A seller without an API: figures come from what the user recorded in the ledger."""

    id: ClassVar[str] = "manual"
    display_name: ClassVar[str] = "Manual seller"
    secret_fields: ClassVar[tuple[str, ...]] = ()
    # Not ORDERS: a manual seller's orders are the ledger's own rows, which history reads.
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.LIST_ESIMS, Capability.TOPUPS, Capability.MANUAL}
    )

    def __init__(self, ctx: ProviderContext) -> None:
        super().__init__(ctx)
        try:
            self.settings = ManualSettings.parse(ctx.account.options)
        except InvalidInput as exc:
            raise ConfigError(
                f"account {ctx.account.name!r}: {exc.message}",
                account=ctx.account.name,
                provider=self.id,
            ) from None

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        ManualSettings.parse(options)

    @property
    def records(self) -> HandRecords:
        assert self.ctx.hand_records is not None, "service.open_provider passes them"
        return self.ctx.hand_records

    @property
    def store(self) -> ManualStore:
        return self.records.store

    def _topups(self) -> dict[str, list[TopUp]]:
        topups: dict[str, list[TopUp]] = {}
        for row in self.records.orders.live(account=self.account):
            t = TopUp.of(row)
            if t is not None and row.iccid:
                topups.setdefault(row.iccid, []).append(t)
        return topups

    def inputs(self, iccid: str) -> tuple[ManualEsim, list[Reading], list[TopUp]]:
        """What the figures of one eSIM are folded from: to check a change before it is made."""
        e = self.store.esim(iccid)
        if e is None or e.account != self.account:
            raise InvalidInput(f"eSIM {iccid} is not recorded on {self.account}")
        readings = self.store.readings(self.account).get(iccid, [])
        return e, readings, self._topups().get(iccid, [])

    def esims(self) -> list[Esim]:
        """Every eSIM of this account with its figures now (no network, so not async)."""
        store = self.store
        readings = store.readings(self.account)
        topups = self._topups()
        now = self.ctx.clock()
        out = []
        for e in store.esims(self.account):
            f = fold(e, readings.get(e.iccid, []), topups.get(e.iccid, []))
            packages = [Package(e.plan, "active", e.data_bytes, None)]
            packages += [Package(t.plan, "active", t.data_bytes, None) for t in f.applied]
            packages += [Package(t.plan, "processing", t.data_bytes, None) for t in f.waiting]
            out.append(
                Esim(
                    account=self.account,
                    provider=self.id,
                    iccid=e.iccid,
                    state=_state(e, f, now),
                    plan=f.plan,
                    label=e.label,
                    data_total_bytes=f.shown_total,
                    data_remaining_bytes=f.remaining,
                    expires_at=f.expires_at,
                    as_of=f.as_of,
                    packages=tuple(packages),
                    unit_base=self.settings.unit_base,
                    ref={
                        "countries": ",".join(e.countries),
                        "applied": ",".join(t.reference for t in f.applied),
                    },
                )
            )
        return out

    async def list_esims(self) -> list[Esim]:
        return self.esims()

    def plan(self, p: SellerPlan, countries: tuple[str, ...] = ()) -> Plan:
        return Plan(
            id=p.id,
            account=self.account,
            provider=self.id,
            name=p.name,
            kind="topup",
            data_bytes=p.data_bytes,
            unlimited=False,
            validity_days=p.days,
            price=p.price,
            countries=countries,
            stacking="stacks",
            unit_base=self.settings.unit_base,
        )

    def seller_plans(self, esim: Esim) -> list[Plan]:
        """The seller's plans saved on this account, each a top-up for ``esim``."""
        countries = tuple(c for c in esim.ref.get("countries", "").split(",") if c)
        return [self.plan(p, countries) for p in self.store.plans(self.account)]

    async def topups(self, esim: Esim) -> list[Plan]:
        return self.seller_plans(esim)

    async def check(self) -> str:
        n = len(self.store.esims(self.account))
        page = self.settings.renew_url or "none recorded"
        return f"{n} eSIM(s) recorded by hand; renewal page: {page}"

    def is_applied(self, before: Esim | None, after: Esim, order: Order) -> bool:
        """Applied when the fold behind ``after`` counts it: confirmed, or shown by a reading.

        The fold compares each reading with the figures just before it, which ``before`` (the
        eSIM when the order was recorded) cannot do once other top-ups came in between.
        """
        applied = after.ref.get("applied", "").split(",")
        return order.reference is not None and order.reference in applied
