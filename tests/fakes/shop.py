"""A tiny seller API ("shop") and its esimctl provider, for the crash-safety tests.

``FakeShop`` is a stateful fake on ``FakeApi`` (real socket on 127.0.0.1): a purchase
carries our reference, stacks data and extends the end date, and can be looked up by
reference. Its own switch ``hang_after_commit`` commits a purchase and then holds the
answer back, so a test can SIGKILL the client in the window between the provider
committing and the client hearing of it. ``prices`` (plan id → price text) changes what
the list says a plan costs, ``charge`` what a purchase answers and records as charged
(a price rise between listing and buying, or a nonsense figure) and ``charge_currency`` in
what, ``hold_then_refuse`` holds a purchase then refuses it (402, nothing made),
``lookup_fails`` makes the next order lookups answer 503, ``drop_purchase_answers``
commits the next purchases and never answers them, and ``set_figures``
changes an eSIM's figures to anything, however absurd; ``hang_topups`` holds the top-up
list's answer back (a slow network before anything is bought).

``ShopProvider`` is loaded by a real ``python -m esimctl`` process as a *plugin*:
``install_plugin(dir)`` writes a ``.dist-info`` with an ``esimctl.providers`` entry point,
and the test puts that directory and ``tests/`` on ``PYTHONPATH``.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

from esimctl.models import Esim, EsimState, Money, Order, OrderState, Plan
from esimctl.providers.base import Capability, Provider
from esimctl.providers.kit.http import ApiClient
from esimctl.serialize import iso, parse_iso

from .base import FakeApi, Reply, Request, _Fault

API_KEY = "shop-key-not-a-real-secret"
GB = 1024**3
PLANS = [
    {"id": "s-1gb-3d", "name": "Shop 1 GB · 3 days", "data": 1 * GB, "days": 3, "price": "4.00"},
    {"id": "s-5gb-7d", "name": "Shop 5 GB · 7 days", "data": 5 * GB, "days": 7, "price": "11.00"},
]


class FakeShop(FakeApi):
    def __init__(self) -> None:
        self.esims: dict[str, dict[str, Any]] = {}
        self.orders: list[dict[str, Any]] = []
        #: Seconds a purchase answer is held back *after* the order is committed.
        self.hang_after_commit = 0.0
        #: False: a purchase is recorded but shows on the eSIM only at ``apply_pending()``.
        self.apply_at_once = True
        #: Plan id -> the price the plan list shows (the plan's own price otherwise).
        self.prices: dict[str, str] = {}
        #: The price a purchase answers with and records as charged (None: the list price).
        self.charge: str | None = None
        #: Seconds the top-up list takes to answer (a slow network before any purchase).
        self.hang_topups = 0.0
        #: The currency a purchase is charged in.
        self.charge_currency = "USD"
        #: Seconds a purchase is held, then refused (402) without being made.
        self.hold_then_refuse = 0.0
        #: The next N order lookups answer 503.
        self.lookup_fails = 0
        #: The next N purchases are committed and their answer never sent (the socket closes).
        self.drop_purchase_answers = 0
        super().__init__()

    def seed(self, iccid: str, label: str, *, total: int, remaining: int, days_left: float) -> None:
        expires = datetime.now(UTC) + timedelta(days=days_left)
        self.esims[iccid] = {
            "iccid": iccid,
            "label": label,
            "total": total,
            "remaining": remaining,
            "expires_at": iso(expires),
        }

    def set_figures(self, iccid: str, **figures: Any) -> None:
        """``set_figures(iccid, remaining=10**30)``: whatever the provider's bug says."""
        with self.lock:
            self.esims[iccid].update(figures)

    def listed(self) -> list[dict[str, Any]]:
        return [{**p, "price": self.prices.get(str(p["id"]), p["price"])} for p in PLANS]

    def charged(self) -> list[str]:
        """What every order was charged, as recorded."""
        return [str(o["price"]) for o in self.orders]

    def register(self) -> None:
        self.route("GET", "/esims", self._list)
        self.route("GET", "/esims/{iccid}/topups", self._topups)
        self.route("POST", "/orders", self._buy)
        self.route("GET", "/orders", self._find)

    def _auth(self, req: Request) -> Reply | None:
        if self.bad_credentials or req.header("x-api-key") != API_KEY:
            return Reply(401, {"error": "unauthorized"})
        return None

    def _list(self, req: Request) -> Reply:
        return self._auth(req) or Reply(200, {"esims": list(self.esims.values())})

    def _topups(self, req: Request) -> Reply:
        if self.hang_topups:
            time.sleep(self.hang_topups)
        return self._auth(req) or Reply(200, {"plans": self.listed()})

    def _buy(self, req: Request) -> Reply:
        denied = self._auth(req)
        if denied:
            return denied
        if self.hold_then_refuse:
            time.sleep(self.hold_then_refuse)
            return Reply(402, {"error": "insufficient balance"})
        body = req.json()
        plan = next((p for p in PLANS if p["id"] == body["plan_id"]), None)
        sim = self.esims.get(body["iccid"])
        if plan is None or sim is None:
            return Reply(400, {"error": "unknown plan or eSIM"})
        order = {
            "id": "SHOP-" + uuid.uuid4().hex[:8].upper(),
            "iccid": sim["iccid"],
            "plan_id": plan["id"],
            "plan": plan["name"],
            "price": self.charge if self.charge is not None else plan["price"],
            "currency": self.charge_currency,
            "reference": body.get("reference"),
            "created_at": iso(datetime.now(UTC)),
        }
        self.orders.append(order)
        if self.apply_at_once:
            self._apply(order)
        return Reply(201, order)

    def _apply(self, order: dict[str, Any]) -> None:
        plan = next(p for p in PLANS if p["id"] == order["plan_id"])
        sim = self.esims[order["iccid"]]
        sim["total"] += plan["data"]
        sim["remaining"] += plan["data"]
        end = parse_iso(sim["expires_at"])
        assert end is not None
        sim["expires_at"] = iso(end + timedelta(days=plan["days"]))
        order["applied"] = True

    def apply_pending(self) -> None:
        with self.lock:
            for order in self.orders:
                if not order.get("applied"):
                    self._apply(order)

    def _find(self, req: Request) -> Reply:
        denied = self._auth(req)
        if denied:
            return denied
        if self.lookup_fails:
            self.lookup_fails -= 1
            return Reply(503, {"error": "try later"})
        ref = req.arg("reference")
        return Reply(200, {"orders": [o for o in self.orders if o["reference"] == ref]})

    def _handle(self, h: Any) -> None:
        with self.lock:
            purchase = h.command == "POST" and h.path.split("?")[0] == "/orders"
            if purchase and self.drop_purchase_answers:
                self.drop_purchase_answers -= 1
                self._faults.appendleft(_Fault("drop"))
        super()._handle(h)

    def _dispatch(self, req: Request) -> Reply:
        reply = super()._dispatch(req)  # the order is committed here, under the fake's lock
        if req.method == "POST" and req.path == "/orders" and self.hang_after_commit:
            time.sleep(self.hang_after_commit)
        return reply


def install_plugin(directory: Path) -> Path:
    """Declare ``ShopProvider`` under the ``esimctl.providers`` entry-point group."""
    info = directory / "esimctl_testshop-0.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: esimctl-testshop\nVersion: 0.0\n", encoding="utf-8"
    )
    (info / "entry_points.txt").write_text(
        "[esimctl.providers]\ntestshop = fakes.shop:ShopProvider\n", encoding="utf-8"
    )
    return directory


class ShopProvider(Provider):
    id: ClassVar[str] = "testshop"
    display_name: ClassVar[str] = "Test shop"
    secret_fields: ClassVar[tuple[str, ...]] = ("API_KEY",)
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.LIST_ESIMS, Capability.TOPUPS, Capability.BUY_TOPUP, Capability.FIND_ORDER}
    )

    @property
    def api(self) -> ApiClient:
        if not hasattr(self, "_api"):
            self._api = ApiClient(
                base_url=self.base_url,
                provider=self.id,
                account=self.account,
                timeout=self.ctx.timeout,
                headers={"X-Api-Key": self.ctx.secrets["API_KEY"]},
                retries=1,
            )
        return self._api

    async def aclose(self) -> None:
        if hasattr(self, "_api"):
            await self._api.aclose()

    async def list_esims(self) -> list[Esim]:
        body = await self.api.request("GET", "/esims")
        now = self.ctx.clock()
        return [
            Esim(
                account=self.account,
                provider=self.id,
                iccid=s["iccid"],
                state=EsimState.ACTIVE,
                plan="Shop plan",
                label=s["label"],
                data_total_bytes=s["total"],
                data_remaining_bytes=s["remaining"],
                expires_at=parse_iso(s["expires_at"]),
                as_of=now,
            )
            for s in body["esims"]
        ]

    async def topups(self, esim: Esim) -> list[Plan]:
        body = await self.api.request("GET", f"/esims/{esim.iccid}/topups")
        return [
            Plan(
                id=p["id"],
                account=self.account,
                provider=self.id,
                name=p["name"],
                kind="topup",
                data_bytes=p["data"],
                unlimited=False,
                validity_days=p["days"],
                price=Money(Decimal(p["price"]), "USD"),
                stacking="stacks",
            )
            for p in body["plans"]
        ]

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
            price=Money(Decimal(o["price"]), o.get("currency", "USD")),
            created_at=created,
            state=OrderState.COMPLETED,
            source="provider",
            reference=o["reference"],
        )

    async def buy_topup(self, esim: Esim, plan: Plan, reference: str) -> Order:
        body = await self.api.request(
            "POST",
            "/orders",
            idempotent=False,
            json={"iccid": esim.iccid, "plan_id": plan.id, "reference": reference},
        )
        return self._order(body)

    async def find_order(
        self, reference: str, *, iccid: str | None, since: datetime
    ) -> Order | None:
        body = await self.api.request("GET", "/orders", params={"reference": reference})
        found = body["orders"]
        return self._order(found[0]) if found else None
