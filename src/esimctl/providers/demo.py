"""The built-in demo provider: a seller that lives in a JSON file in the demo profile.

It needs no account, network or keyring. Its eSIMs are laid out relative to the moment
the profile was made (one low on data and expiring within two days, one unlimited, one
not yet activated, ...), and it sells what a traveller to Japan sees: short-term,
long-term and mixed data+days plans in more than one currency. A top-up stacks: its data
adds to what remains and the end date extends. The state is rebuilt after a day so the
demo always shows the same situations.

Tbilisi is on a day pass (1 GB a day, then 1 Mbps), sold per day: ``renew Tbilisi --plan
ge-day-1gb --days 3`` buys three days at three times the price.

Two eSIMs are in use: Tokyo at 450 MB a day (it runs out before it expires) and Bangkok
at 250 MB a day (it outlasts its expiry). Their figures fall hour by hour, and a new demo
profile starts with three days of such readings in its ledger (``seed_history``), so the
forecast and the chart of ``show`` have something to stand on from the first command.

``ESIMCTL_DEMO_APPLY_DELAY`` (seconds, default 0) delays when a bought top-up shows on
the eSIM, to see *pending* at work.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

from esimctl.config import Config
from esimctl.errors import InvalidInput, NotFound
from esimctl.models import (
    Activation,
    AfterAllowance,
    DailyAllowance,
    Esim,
    EsimState,
    Money,
    NewEsim,
    Order,
    OrderState,
    Package,
    Plan,
    split_days,
)
from esimctl.paths import atomic_write
from esimctl.providers.base import Capability, Provider
from esimctl.serialize import iso, parse_iso

GB = 1024**3
MB = 1024**2
STATE_VERSION = 2  # 2: the sixth eSIM, Tbilisi, on a day pass
REBUILD_AFTER = timedelta(hours=24)
#: What the demo's travellers use a day (bytes), by ICCID.
USE_PER_DAY = {"8981100000000000018": 450 * MB, "8966000000000000042": 250 * MB}
#: How far back a new demo profile's readings go, and how often they were taken.
HISTORY = timedelta(days=3)
HISTORY_EVERY = timedelta(hours=3)

# (id, name, data GB or None for unlimited, days, amount, currency, countries, kind)
CATALOGUE: list[tuple[str, str, float | None, int, str, str, tuple[str, ...], str]] = [
    ("jp-1gb-3d", "Japan 1 GB · 3 days", 1, 3, "4.50", "USD", ("JP",), "topup"),
    ("jp-3gb-7d", "Japan 3 GB · 7 days", 3, 7, "9.00", "USD", ("JP",), "topup"),
    ("jp-daily-1gb", "Japan 1 GB/day · 5 days", 5, 5, "1480", "JPY", ("JP",), "topup"),
    ("jp-10gb-30d", "Japan 10 GB · 30 days", 10, 30, "22.00", "USD", ("JP",), "topup"),
    ("jp-20gb-30d", "Japan 20 GB · 30 days", 20, 30, "34.00", "USD", ("JP",), "topup"),
    ("jp-50gb-90d", "Japan 50 GB · 90 days", 50, 90, "59.00", "USD", ("JP",), "topup"),
    ("jp-unl-5d", "Japan Unlimited · 5 days", None, 5, "19.00", "USD", ("JP",), "topup"),
    ("jp-new-5gb-15d", "Japan 5 GB · 15 days (new eSIM)", 5, 15, "12.00", "USD", ("JP",), "new"),
    (
        "eu-5gb-15d",
        "Europe 5 GB · 15 days",
        5,
        15,
        "11.00",
        "EUR",
        ("FR", "DE", "IT", "ES"),
        "topup",
    ),
    (
        "eu-unl-10d",
        "Europe Unlimited · 10 days",
        None,
        10,
        "29.00",
        "EUR",
        ("FR", "DE", "IT", "ES"),
        "topup",
    ),
    ("us-3gb-7d", "USA 3 GB · 7 days", 3, 7, "8.00", "USD", ("US",), "topup"),
    ("us-10gb-30d", "USA 10 GB · 30 days", 10, 30, "20.00", "USD", ("US",), "topup"),
    ("th-5gb-8d", "Thailand 5 GB · 8 days", 5, 8, "199", "CNY", ("TH",), "topup"),
    ("th-15gb-30d", "Thailand 15 GB · 30 days", 15, 30, "359", "CNY", ("TH",), "topup"),
]


#: Day passes, priced per day and bought for a number of days: (id, name, GB a day, what
#: follows the day's allowance, the speed then, amount a day, currency, countries).
DAY_PASSES: list[tuple[str, str, float, str, str | None, str, str, tuple[str, ...]]] = [
    (
        "ge-day-1gb",
        "Georgia 1 GB/day, then 1 Mbps",
        1,
        "reduced_speed",
        "1 Mbps",
        "1.20",
        "USD",
        ("GE",),
    ),
    ("ge-day-3gb", "Georgia 3 GB/day, then cut off", 3, "cut_off", None, "2.50", "USD", ("GE",)),
]


def demo_config(path: Path) -> Config:
    """The demo profile's config: one demo account, whatever else the file holds."""
    cfg = Config.load(path)
    cfg.raw.setdefault("accounts", {}).setdefault("demo", {"provider": "demo"})
    return cfg


def _initial_state(now: datetime) -> dict[str, Any]:
    def esim(
        iccid: str,
        label: str,
        plan: str,
        countries: list[str],
        state: str,
        total: float | None,
        remaining: float | None,
        expires: timedelta | None,
    ) -> dict[str, Any]:
        return {
            "iccid": iccid,
            "label": label,
            "plan": plan,
            "countries": countries,
            "state": state,
            "total": None if total is None else int(total * GB),
            "remaining": None if remaining is None else int(remaining * GB),
            "expires_at": iso(now + expires) if expires is not None else None,
            "packages": [],
        }

    return {
        "version": STATE_VERSION,
        "created_at": iso(now),
        "esims": [
            esim(
                "8981100000000000018",
                "Tokyo",
                "Japan 3 GB · 7 days",
                ["JP"],
                "active",
                3,
                0.3,
                timedelta(days=1, hours=20),
            ),
            esim(
                "8944500000000000026",
                "Europe",
                "Europe Unlimited · 10 days",
                ["FR", "DE", "IT", "ES"],
                "active",
                None,
                None,
                timedelta(days=6, hours=3),
            ),
            esim(
                "8901200000000000034",
                "USA",
                "USA 5 GB · 30 days",
                ["US"],
                "not_active",
                5,
                5,
                timedelta(days=180),
            ),
            esim(
                "8966000000000000042",
                "Bangkok",
                "Thailand 15 GB · 30 days",
                ["TH"],
                "active",
                15,
                6.2,
                timedelta(days=18, hours=5),
            ),
            esim(
                "8982000000000000059",
                "Seoul",
                "Korea 2 GB · 5 days",
                ["KR"],
                "expired",
                2,
                0.4,
                timedelta(days=-3),
            ),
            {
                # A day pass in use for days, well past its daily gigabyte: never "depleted".
                **esim(
                    "8999500000000000067",
                    "Tbilisi",
                    "Georgia 1 GB/day · 12 days",
                    ["GE"],
                    "active",
                    None,
                    None,
                    timedelta(days=8, hours=3),
                ),
                "daily": GB,
                "after": "reduced_speed",
                "speed": "1 Mbps",
                "activated_at": iso(now - timedelta(days=3, hours=21)),
            },
        ],
        "orders": [
            {
                "id": "DEMO-1001",
                "iccid": "8981100000000000018",
                "plan_id": "jp-3gb-7d",
                "plan": "Japan 3 GB · 7 days",
                "amount": "9.00",
                "currency": "USD",
                "created_at": iso(now - timedelta(days=5, hours=4)),
                "reference": None,
                "apply_at": iso(now - timedelta(days=5, hours=4)),
            },
            {
                "id": "DEMO-1000",
                "iccid": "8966000000000000042",
                "plan_id": "th-15gb-30d",
                "plan": "Thailand 15 GB · 30 days",
                "amount": "359",
                "currency": "CNY",
                "created_at": iso(now - timedelta(days=11, hours=19)),
                "reference": None,
                "apply_at": iso(now - timedelta(days=11, hours=19)),
            },
        ],
    }


class DemoProvider(Provider):
    id: ClassVar[str] = "demo"
    display_name: ClassVar[str] = "Demo"
    # Cached like a seller's figures (its own change by the hour), so a repeated `--demo
    # status` answers from the cache as fast as a real account's; a purchase drops it.
    usage_ttl: ClassVar[timedelta] = timedelta(minutes=5)
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.LIST_ESIMS,
            Capability.TOPUPS,
            Capability.CATALOGUE,
            Capability.BUY_TOPUP,
            Capability.BUY_ESIM,
            Capability.FIND_ORDER,
            Capability.ORDERS,
            Capability.BALANCE,
        }
    )

    @property
    def _file(self) -> Path:
        return self.ctx.state_dir / "demo-state.json"

    def _load(self) -> dict[str, Any]:
        now = self.ctx.clock()
        try:
            state: dict[str, Any] = json.loads(self._file.read_text(encoding="utf-8"))
            created = parse_iso(state.get("created_at"))
            if state.get("version") == STATE_VERSION and created and now - created < REBUILD_AFTER:
                return self._apply_due(state, now)
        except (OSError, ValueError):
            pass
        state = _initial_state(now)
        self._save(state)
        return state

    def _save(self, state: dict[str, Any]) -> None:
        atomic_write(self._file, json.dumps(state, indent=1).encode("utf-8"))

    def _apply_due(self, state: dict[str, Any], now: datetime) -> dict[str, Any]:
        """Apply bought top-ups whose delay has passed: data stacks, the end date extends."""
        changed = False
        for order in state["orders"]:
            if order.get("applied", True):
                continue
            apply_at = parse_iso(order["apply_at"])
            if apply_at is None or apply_at > now:
                continue
            sim = next(s for s in state["esims"] if s["iccid"] == order["iccid"])
            alive = self._esim(sim, apply_at).state in (EsimState.ACTIVE, EsimState.NOT_ACTIVE)
            data, days = order["data"], order["days"]
            if order.get("daily") is not None:  # a day pass: its shape, for its days
                sim["total"] = sim["remaining"] = None
                sim["daily"], sim["after"] = order["daily"], order["after"]
                sim["speed"] = order.get("speed")
                if not alive:
                    sim["activated_at"] = iso(now)
            elif data is None or (sim["total"] is None and alive):
                sim["total"] = sim["remaining"] = None  # unlimited stays unlimited
            elif sim["total"] is None or not alive:
                sim["total"] = sim["remaining"] = data
            else:  # stacks: the old remaining data stays usable
                sim["total"] += data
                sim["remaining"] += data
            current = parse_iso(sim["expires_at"])
            start = current if alive and current and current > now else now
            sim["expires_at"] = iso(start + timedelta(days=days))
            sim["plan"] = order["plan"]
            if sim["state"] in ("expired", "depleted"):
                sim["state"] = "active"
            sim["packages"].append({"name": order["plan"], "applied_at": iso(apply_at)})
            order["applied"] = True
            changed = True
        if changed:
            self._save(state)
        return state

    # -- reading ---------------------------------------------------------------------------

    def _esim(self, s: dict[str, Any], now: datetime, since: datetime | None = None) -> Esim:
        return esim_of(s, now, self.account, since)

    async def list_esims(self) -> list[Esim]:
        now = self.ctx.clock()
        state = self._load()
        since = parse_iso(state.get("created_at"))
        return [self._esim(s, now, since) for s in state["esims"]]

    def _plan(
        self, row: tuple[str, str, float | None, int, str, str, tuple[str, ...], str]
    ) -> Plan:
        pid, name, data, days, amount, cur, countries, kind = row
        return Plan(
            id=pid,
            account=self.account,
            provider=self.id,
            name=name,
            kind=kind,
            data_bytes=None if data is None else int(data * GB),
            unlimited=data is None,
            validity_days=days,
            price=Money(Decimal(amount), cur),
            countries=countries,
            stacking="stacks" if kind == "topup" else None,
        )

    def _day_pass(
        self, row: tuple[str, str, float, str, str | None, str, str, tuple[str, ...]]
    ) -> Plan:
        pid, name, gb, after, speed, amount, cur, countries = row
        return Plan(
            id=pid,
            account=self.account,
            provider=self.id,
            name=name,
            kind="topup",
            data_bytes=None,
            unlimited=after == AfterAllowance.REDUCED_SPEED,
            validity_days=1,
            price=Money(Decimal(amount), cur),
            countries=countries,
            stacking="stacks",
            per_day=True,
            daily=DailyAllowance(int(gb * GB), AfterAllowance(after), speed),
        )

    async def topups(self, esim: Esim) -> list[Plan]:
        countries = set(esim.ref.get("countries", "").split(","))
        plans = [self._plan(r) for r in CATALOGUE if r[7] == "topup" and countries & set(r[6])]
        return plans + [self._day_pass(r) for r in DAY_PASSES if countries & set(r[7])]

    async def catalogue(self, country: str) -> list[Plan]:
        plans = [self._plan(r) for r in CATALOGUE if country.upper() in r[6]]
        return plans + [self._day_pass(r) for r in DAY_PASSES if country.upper() in r[7]]

    def _order(self, o: dict[str, Any]) -> Order:
        created = parse_iso(o["created_at"])
        assert created is not None
        return Order(
            id=o["id"],
            account=self.account,
            provider=self.id,
            iccid=o["iccid"],
            plan_id=o["plan_id"],
            plan=o["plan"],
            price=Money(Decimal(o["amount"]), o["currency"]),
            created_at=created,
            state=OrderState.COMPLETED if o.get("applied", True) else OrderState.PENDING,
            source="provider",
            reference=o.get("reference"),
            extra={"kind": "new"} if o.get("kind") == "new" else {},
        )

    async def orders(self) -> list[Order]:
        return [self._order(o) for o in self._load()["orders"]]

    async def balance(self) -> Money | None:
        return Money(Decimal("250.00"), "USD")

    async def check(self) -> str:
        return f"demo account with {len(self._load()['esims'])} eSIMs"

    # -- buying ------------------------------------------------------------------------------

    async def buy_topup(self, esim: Esim, plan: Plan, reference: str) -> Order:
        state = self._load()
        now = self.ctx.clock()
        base, days = split_days(plan.id)
        day_pass = next((r for r in DAY_PASSES if r[0] == base), None)
        row: tuple[str, str, float | None, int, str, str, tuple[str, ...], str] | None
        if day_pass is not None:
            if days is None:
                raise InvalidInput(f"{base} is a day pass: say for how many days")
            _, name, gb, after, speed, amount, cur, countries = day_pass
            per_day = (name, int(gb * GB), after, speed)
            row = (
                plan.id,
                f"{name} · {days} day{'s' if days != 1 else ''}",
                None,
                days,
                str(Decimal(amount) * days),
                cur,
                countries,
                "topup",
            )
        else:
            per_day = None
            row = next((r for r in CATALOGUE if r[0] == plan.id and r[7] == "topup"), None)
        if row is None:
            raise InvalidInput(f"the demo sells no top-up {plan.id!r}")
        if not any(s["iccid"] == esim.iccid for s in state["esims"]):
            raise NotFound(f"eSIM {esim.iccid} not found")
        existing = next((o for o in state["orders"] if o.get("reference") == reference), None)
        if existing is not None:  # the same intent sent twice is one order
            return self._order(existing)
        delay = float(os.environ.get("ESIMCTL_DEMO_APPLY_DELAY", "0") or 0)
        order = {
            "id": f"DEMO-{uuid.uuid4().hex[:8].upper()}",
            "iccid": esim.iccid,
            "plan_id": plan.id,
            "plan": row[1],
            "amount": row[4],
            "currency": row[5],
            "created_at": iso(now),
            "reference": reference,
            "apply_at": iso(now + timedelta(seconds=delay)),
            "applied": False,
            "data": None if row[2] is None else int(row[2] * GB),
            "days": row[3],
        }
        if per_day is not None:
            order["daily"], order["after"], order["speed"] = per_day[1:]
        state["orders"].insert(0, order)
        self._save(state)
        self._apply_due(state, now)
        return self._order(order)

    async def find_order(
        self, reference: str, *, iccid: str | None, since: datetime
    ) -> Order | None:
        for o in self._load()["orders"]:
            if o.get("reference") == reference:
                return self._order(o)
        return None

    # -- new eSIMs --------------------------------------------------------------------------

    async def buy_esim(self, plan: Plan, reference: str) -> NewEsim:
        state = self._load()
        now = self.ctx.clock()
        row = next((r for r in CATALOGUE if r[0] == plan.id and r[7] == "new"), None)
        if row is None:
            raise InvalidInput(f"the demo sells no new eSIM {plan.id!r}")
        existing = next((o for o in state["orders"] if o.get("reference") == reference), None)
        if existing is not None:  # the same intent sent twice is one order
            return self._new(existing, state)
        iccid = f"898110000000{len(state['esims']) + 1000:07d}"
        order = {
            "id": f"DEMO-{uuid.uuid4().hex[:8].upper()}",
            "iccid": iccid,
            "plan_id": plan.id,
            "plan": row[1],
            "amount": row[4],
            "currency": row[5],
            "created_at": iso(now),
            "reference": reference,
            "apply_at": iso(now),
            "applied": True,
            "kind": "new",
            "lpa": f"LPA:1$smdp.demo.invalid${uuid.uuid4().hex[:16].upper()}",
        }
        total = None if row[2] is None else int(row[2] * GB)
        state["esims"].append(
            {
                "iccid": iccid,
                "label": None,
                "plan": row[1],
                "countries": list(row[6]),
                "state": "not_active",
                "total": total,
                "remaining": total,
                # Not installed yet: the date by which it must be (sellers give 180 days).
                "expires_at": iso(now + timedelta(days=180)),
                "packages": [],
            }
        )
        state["orders"].insert(0, order)
        self._save(state)
        return self._new(order, state)

    def _new(self, order: dict[str, Any], state: dict[str, Any]) -> NewEsim:
        return NewEsim(
            self._order(order),
            iccid=order["iccid"],
            activation=Activation(
                order["lpa"],
                apple_url="https://esimsetup.apple.com/esim_qrcode_provisioning?carddata="
                + order["lpa"],
                notes="Settings › Mobile Data › Add eSIM › Use QR Code; turn on Data Roaming "
                "for this line when you land.",
            ),
        )

    async def find_esim_order(self, reference: str, *, since: datetime) -> NewEsim | None:
        state = self._load()
        for o in state["orders"]:
            if o.get("reference") == reference and o.get("kind") == "new":
                return self._new(o, state)
        return None

    async def activation(self, iccid: str) -> Activation | None:
        state = self._load()
        for o in state["orders"]:
            if o.get("iccid") == iccid and o.get("kind") == "new":
                return self._new(o, state).activation
        return None


def esim_of(s: dict[str, Any], now: datetime, account: str, since: datetime | None = None) -> Esim:
    """The eSIM ``s`` at ``now``; ``since``: when the state was made (use since then
    is taken off the data left, a whole hour at a time)."""
    daily = _daily_of(s, now)
    # A day pass that slows down never runs out; one that cuts off has no total either.
    unlimited = s["total"] is None and (daily is None or daily.after != AfterAllowance.CUT_OFF)
    remaining = s["remaining"]
    if since is not None and remaining is not None and s["state"] == "active":
        hours = max(int((now - since).total_seconds() // 3600), 0)
        remaining = max(remaining - USE_PER_DAY.get(s["iccid"], 0) * hours // 24, 0)
    state = EsimState(s["state"])
    expires = parse_iso(s["expires_at"])
    if state == EsimState.ACTIVE and expires is not None and expires <= now:
        state = EsimState.EXPIRED
    if state == EsimState.ACTIVE and remaining is not None and remaining <= 0:
        state = EsimState.DEPLETED
    pkgs = [
        Package(name=p["name"], state="active", data_total_bytes=None, data_remaining_bytes=None)
        for p in s["packages"]
    ]
    return Esim(
        account=account,
        provider=DemoProvider.id,
        iccid=s["iccid"],
        state=state,
        plan=s["plan"],
        label=s["label"],
        data_total_bytes=s["total"],
        data_remaining_bytes=remaining,
        unlimited=unlimited,
        expires_at=expires,
        as_of=now,
        packages=tuple(pkgs),
        unit_base=1024,
        ref={"countries": ",".join(s["countries"])},
        daily=daily,
    )


def _daily_of(s: dict[str, Any], now: datetime) -> DailyAllowance | None:
    """A day pass's allowance; it resets every 24 hours from the pass's activation."""
    if s.get("daily") is None:
        return None
    resets = None
    activated = parse_iso(s.get("activated_at"))
    expires = parse_iso(s["expires_at"])
    if activated is not None:
        elapsed = max((now - activated) // timedelta(days=1) + 1, 1)
        resets = activated + timedelta(days=elapsed)
        if expires is not None and resets >= expires:
            resets = None
    return DailyAllowance(int(s["daily"]), AfterAllowance(s["after"]), s.get("speed"), resets)


def seed_history(ledger: Any, now: datetime, account: str = "demo") -> None:
    """A new demo profile's past: readings every ``HISTORY_EVERY`` over ``HISTORY`` of the
    eSIMs in use, as if esimctl had been asked all along (called once, by ``Env.ledger``,
    on a demo ledger without any snapshot)."""
    state = _initial_state(now)
    t = now - HISTORY
    while t < now:
        esims = []
        for s in state["esims"]:
            use = USE_PER_DAY.get(s["iccid"])
            if not use:
                continue
            earlier = dict(s)
            back = int(use * (now - t).total_seconds() / 86_400)
            earlier["remaining"] = min(s["remaining"] + back, s["total"])
            esims.append(esim_of(earlier, t, account))
        ledger.add_snapshots(esims, at=t)
        t += HISTORY_EVERY
