"""A stateful fake of the Airalo Partner API v2 on 127.0.0.1, built from its documentation.

What it keeps: a catalogue of operators and packages, eSIMs (each with its package history),
orders and the partner balance. A top-up adds a package to the eSIM's history, takes the
price from the balance and records an order, so the next usage, history, order list and
balance answers change. Bodies follow the documented shapes, odd ones included: the
``{"data", "meta"}`` envelope, ``per_page`` as a string, ``meta.message`` ``"api.succes"``,
string prices in order lists and numbers elsewhere, naive ``Y-m-d H:i:s`` times, an object
keyed by index instead of a list from page 2 of ``/v2/packages``, three error shapes and
``{"message": "Too Many Attempts."}`` with ``Retry-After`` on 429.

Switches beyond the base ones (``latency``, ``fail_next``, ``hang_next``, ...):

* ``bad_credentials``: the token endpoint answers 401 and issued tokens stop working;
* ``expire_tokens()``: issued tokens answer 401 (the client must fetch a new one);
* ``topup_mode``: ``"stack"`` (a top-up is active at once beside the current package, as
  the documented history shows) or ``"queue"`` (it waits, ``NOT_ACTIVE``, until the
  current package ends); the docs do not say which Airalo does;
* ``usage_cache_seconds``: serve the same usage answer for that long (Airalo caches 20 min);
* ``pricing_model``: ``"net_pricing"`` or ``"discount_pricing"`` (with ``discount_percentage``);
* ``sandbox_unlimited_quirk``: unlimited packages report ``is_unlimited: false``;
* ``token_limit_per_minute``: the documented 3 a minute on ``POST /v2/token``.

Switches for what a provider may send that esimctl must refuse to believe:

* ``malformed_lookup_next(times=1, body={})``: the next ``times`` order lookups (``GET
  /v2/orders`` with a ``filter[...]``, as ``find_order`` sends; a plain history listing is
  not hit) answer 200 with ``body`` (``None`` sends ``null``;
  a new call replaces what is still pending, ``times=0`` clears);
* ``malformed_list_next(times=1, body={}, page=None)``: the next ``times`` eSIM lists
  (``GET /v2/sims``; only page ``page`` when given) answer 200 with ``body``;
* ``set_usage(iccid, **fields)``: the usage answer of that eSIM carries these values as
  given (``remaining=1e30``, ``total=-5``, ``remaining="512.5"``, ``status="SUSPENDED"``,
  ``is_unlimited=...``, ``expired_at=...``); ``set_usage(iccid)`` alone clears them;
* ``price_override = {package_id: "-1.40"}``: the listed price of a package (``net_price``
  under net pricing, the retail ``price`` under discount pricing) becomes that text, sent as
  a JSON number where it is one (``"1e308"``) and as the text otherwise (``"NaN"``); a top-up
  charges it (where it is a finite number);
* ``charge_override = "12.00"``: a top-up's answer claims this charge (``net_price``, or
  ``unit_paid_price``/``total_amount_paid`` under discount pricing) and the fake charges it:
  ``order["_claimed"]`` holds the text, ``order["_charged"]`` and the balance the amount
  (the listed price where the claim is not a finite number). A price that rose between
  listing and buying (``"12.00"``), a ``"-50"`` or ``"0"`` claim.

New eSIMs: ``POST /v2/orders`` (form, multipart or JSON; ``package_id``, ``quantity``,
``type=sim``, ``description``) sells the catalogue's ``sim`` packages. It takes the price from
the balance (``code 11`` when short), records the order and adds each eSIM, not yet installed
(``NOT_ACTIVE``), to ``/v2/sims`` with its own matching id; the answer carries ``sims[]``
(``iccid``, ``lpa``, ``matching_id``, ``qrcode``, ``direct_apple_installation_url``) and the
installation notes as HTML, as documented. ``charge_override`` applies to it too (a price that
rose between listing and buying), and the base ``commit_then_drop_next`` (through ``arm("POST",
"/v2/orders", ...)``) loses its answer after the eSIM is made. Switches for what the docs show:

* ``apple_url_mismatch``: the direct-install link carries another profile's code (the
  documented Sandbox examples pair ``LPA:1$lpa.airalo.com$TEST`` with ``...$Y7MRQ886FCDJD4RH``);
* ``order_net_price``: False leaves ``net_price`` out of the order answer (the first
  documented example has none);
* ``sim_orders()``: the orders of new eSIMs.

Seed with ``seed(n)`` (many eSIMs, fast) or ``add_sim(...)`` (one, as you need it).
"""

from __future__ import annotations

import itertools
import json
import math
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from email.parser import BytesParser
from email.policy import default as email_policy
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlencode

from .base import FakeApi, Reply, Request

CLIENT_ID = "fake-airalo-client-id"
CLIENT_SECRET = "fake-airalo-client-secret-0123456789"

NOT_FOUND = {"data": [], "meta": {"message": "messages.resource_not_found"}}
AUTH_FAILED = {
    "data": [],
    "meta": {
        "message": "Authentication failed. This could be due to an expired token, please "
        "generate a new token. If the issue persists, verify your client_id and client_secret "
        "are correct."
    },
}
INVALID = "the parameter is invalid"
APPLE = "https://esimsetup.apple.com/esim_qrcode_provisioning?carddata="
#: The installation notes of a new eSIM's order, shaped like the documented ones.
MANUAL_HTML = (
    "<p><br></p><p><b>eSIM name:</b> {op}<br></p><p><br></p><p><b>Coverage: </b>{country}</p>"
    "<p><b>To manually activate the eSIM on your eSIM capable device:</b></p><ol>"
    "<li>Settings &gt; Cellular/Mobile &gt; Add Cellular/Mobile Plan.</li>"
    "<li>Manually enter the SM-DP+ Address and activation code.</li>"
    "<li>Confirm eSIM plan details.</li><li>Label the eSIM.</li></ol>"
    "<p><b>To access Data:</b></p><ol><li>Enable data roaming.</li></ol><p><br></p>"
)
QRCODE_HTML = (
    "<p><br></p><p><b>eSIM name:</b> {op}<br></p><p><br></p><p><b>Coverage: </b>{country}</p>"
    "<p><b>To activate the eSIM by scanning the QR code on your eSIM capable device you need "
    "to print or display this QR code on other device:</b></p><ol>"
    "<li>Settings &gt; Cellular/Mobile &gt; Add Cellular/Mobile Plan.</li>"
    "<li>Scan QR code.</li><li>Confirm eSIM plan details.</li><li>Label the eSIM.</li></ol>"
    "<p><b>To access Data:</b></p><ol><li>Enable data roaming.</li></ol><p><br></p>"
)


def fmt(dt: datetime | None) -> str | None:
    """Airalo's naive ``Y-m-d H:i:s`` (the zone is UTC)."""
    return None if dt is None else dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def iso_offset(dt: datetime | None) -> str | None:
    """The package history's ISO 8601 with ``+00:00``."""
    return None if dt is None else dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def num(d: Decimal) -> int | float:
    """Numbers as Airalo writes them in JSON: ``10`` or ``4.5``."""
    return int(d) if d == d.to_integral_value() else float(d)


def finite(text: str | None) -> Decimal | None:
    """An override's amount, where it is a finite number."""
    try:
        d = Decimal(str(text).strip())
    except ArithmeticError:
        return None
    return d if d.is_finite() else None


def wire(text: str) -> Any:
    """An override as it travels: a JSON number where it is one, else the text itself."""
    try:
        f = float(text)
    except ValueError:
        return text
    return f if math.isfinite(f) else text


_UNSET: Any = object()


@dataclass
class Pkg:
    id: str
    type: str  # "sim" | "topup"
    amount: int  # MB; 0 for unlimited
    day: int
    price: Decimal  # recommended retail, USD
    net_price: Decimal  # what the partner pays, USD
    unlimited: bool = False
    #: ``fair_usage_policy`` of the catalogue (``/v2/packages`` only, as documented).
    fair_usage: str | None = None

    @property
    def data(self) -> str:
        if self.unlimited:
            return "Unlimited"
        return f"{self.amount // 1024} GB" if self.amount % 1024 == 0 else f"{self.amount} MB"

    @property
    def title(self) -> str:
        return f"{self.data} - {self.day} Days"


@dataclass
class Operator:
    slug: str
    title: str
    country_code: str
    country_title: str
    rechargeable: bool
    packages: list[Pkg]
    topups: list[Pkg]


@dataclass
class History:
    id: int
    package: Pkg
    status: str  # ACTIVE | NOT_ACTIVE | FINISHED | EXPIRED
    remaining: int  # MB
    activated_at: datetime | None = None
    expired_at: datetime | None = None
    finished_at: datetime | None = None


@dataclass
class Sim:
    id: int
    iccid: str
    created_at: datetime
    operator: Operator
    package: Pkg
    order: dict[str, Any]
    history: list[History] = field(default_factory=list)
    recycled: bool = False
    recycled_at: datetime | None = None
    #: The activation code's parts (Sandbox's mock eSIMs all say ``TEST``).
    smdp: str = "lpa.airalo.com"
    matching_id: str = "TEST"

    @property
    def qrcode(self) -> str:
        return f"LPA:1${self.smdp}${self.matching_id}"


def default_catalogue() -> list[Operator]:
    d = Decimal
    return [
        Operator(
            "elan",
            "Élan",
            "FR",
            "France",
            True,
            [
                Pkg("elan-7days-1gb", "sim", 1024, 7, d("4.50"), d("1.40")),
                Pkg("elan-30days-3gb", "sim", 3072, 30, d("11.00"), d("5.50")),
                Pkg(
                    "elan-unlimited-10days",
                    "sim",
                    0,
                    10,
                    d("24.00"),
                    d("12.00"),
                    True,
                    "Speed reduced to 1 Mbps after 2 GB per day",
                ),
            ],
            [
                Pkg("elan-7days-1gb-topup", "topup", 1024, 7, d("4.50"), d("3.60")),
                Pkg("elan-30days-3gb-topup", "topup", 3072, 30, d("9.50"), d("4.20")),
                Pkg("elan-15days-5gb-topup", "topup", 5120, 15, d("14.00"), d("11.20")),
            ],
        ),
        Operator(
            "moshi-moshi",
            "Moshi Moshi",
            "JP",
            "Japan",
            True,
            [
                Pkg("moshi-moshi-7days-1gb", "sim", 1024, 7, d("4.50"), d("2.00")),
                Pkg("moshi-moshi-15days-3gb", "sim", 3072, 15, d("9.50"), d("4.75")),
                Pkg("moshi-moshi-30days-10gb", "sim", 10240, 30, d("26.00"), d("13.00")),
            ],
            [
                Pkg("moshi-moshi-7days-1gb-topup", "topup", 1024, 7, d("4.50"), d("3.60")),
                Pkg(
                    "moshi-moshi-unlimited-5days-topup", "topup", 0, 5, d("17.00"), d("13.60"), True
                ),
            ],
        ),
        Operator(
            "kallur-digital",
            "Kallur Digital",
            "FO",
            "Faroe Islands",
            False,
            [Pkg("kallur-digital-7days-1gb", "sim", 1024, 7, d("9.50"), d("7.60"))],
            [],
        ),
    ]


class FakeAiralo(FakeApi):
    """``with FakeAiralo() as fake: fake.add_sim(...); fake.url``."""

    def __init__(
        self,
        *,
        client_id: str = CLIENT_ID,
        client_secret: str = CLIENT_SECRET,
        balance: Decimal | str = "250.00",
        expires_in: int = 86400,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.balance = Decimal(balance)
        self.expires_in = expires_in
        self.catalogue = default_catalogue()
        self.sims: dict[str, Sim] = {}
        self.orders: list[dict[str, Any]] = []
        self.tokens: dict[str, float] = {}  # token -> monotonic expiry
        self.token_requests = 0
        self.topup_mode = "stack"
        self.usage_cache_seconds = 0.0
        self.pricing_model = "net_pricing"
        self.discount_percentage = 20
        self.sandbox_unlimited_quirk = False
        self.token_limit_per_minute: int | None = 3
        self._token_hits: deque[float] = deque()
        self._usage_cache: dict[str, tuple[float, dict[str, Any]]] = {}
        self._armed: list[tuple[str, str, Callable[[], None]]] = []
        self.price_override: dict[str, str] = {}
        self.charge_override: str | None = None
        self.apple_url_mismatch = False
        self.order_net_price = True
        self.usage_override: dict[str, dict[str, Any]] = {}
        self._lookup_bodies: list[Any] = []
        self._list_bodies: list[tuple[int | None, Any]] = []
        self._ids = itertools.count(30001)
        self._sim_ids = itertools.count(48001)
        self._history_ids = itertools.count(7001)
        self._iccids = itertools.count(1)
        super().__init__()

    # -- seeding --------------------------------------------------------------------------

    def now(self) -> datetime:
        return datetime.now(UTC).replace(microsecond=0)

    def operator(self, slug: str) -> Operator:
        return next(o for o in self.catalogue if o.slug == slug)

    def package(self, package_id: str) -> Pkg:
        for op in self.catalogue:
            for p in (*op.packages, *op.topups):
                if p.id == package_id:
                    return p
        raise KeyError(package_id)

    def add_sim(
        self,
        package_id: str = "elan-30days-3gb",
        *,
        iccid: str | None = None,
        status: str = "ACTIVE",
        remaining_mb: int | None = None,
        expires_in: timedelta = timedelta(days=20),
        recycled: bool = False,
        description: str | None = None,
        created_ago: timedelta = timedelta(days=3),
    ) -> Sim:
        """One eSIM bought with package ``package_id`` (and its order)."""
        now = self.now()
        pkg = self.package(package_id)
        op = next(o for o in self.catalogue if pkg in o.packages)
        iccid = iccid or f"8944465400{next(self._iccids):09d}"
        created = now - created_ago
        order = self._new_order(pkg, op, "sim", description, created, sims=[iccid])
        sim = Sim(next(self._sim_ids), iccid, created, op, pkg, order)
        entry = History(next(self._history_ids), pkg, status, pkg.amount)
        if status in ("ACTIVE", "FINISHED", "EXPIRED"):
            entry.activated_at = now - min(created_ago, timedelta(days=pkg.day))
            entry.expired_at = now + expires_in
            entry.remaining = pkg.amount if remaining_mb is None else remaining_mb
        if status == "FINISHED":
            entry.remaining = 0
            entry.finished_at = now
        if status == "EXPIRED":
            entry.expired_at = now - abs(expires_in)
        sim.history.append(entry)
        if recycled:
            sim.recycled, sim.recycled_at = True, now - timedelta(days=1)
        self.sims[iccid] = sim
        return sim

    def seed(self, n: int, package_id: str = "elan-30days-3gb", **kw: Any) -> list[str]:
        """``n`` active eSIMs with varied remaining data: for lists and benchmarks."""
        pkg = self.package(package_id)
        out = []
        for i in range(n):
            remaining = pkg.amount - (i * 97) % max(pkg.amount, 1) if pkg.amount else 0
            out.append(self.add_sim(package_id, remaining_mb=remaining, **kw).iccid)
        return out

    def arm(self, method: str, path_suffix: str, switch: Callable[[], None]) -> None:
        """Apply a base switch (``self.commit_then_drop_next``, ``lambda: self.fail_next(503)``,
        ...) when the next ``method`` request to a path ending in ``path_suffix`` arrives, so
        the fault hits that request and not whichever comes first."""
        with self.lock:
            self._armed.append((method.upper(), path_suffix, switch))

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        path = h.path.split("?", 1)[0]
        with self.lock:
            for i, (method, suffix, switch) in enumerate(self._armed):
                if h.command == method and path.endswith(suffix):
                    del self._armed[i]
                    switch()  # queues the fault this very request pops first
                    break
        super()._handle(h)

    def expire_tokens(self) -> None:
        self.tokens.clear()

    def malformed_lookup_next(self, times: int = 1, body: Any = _UNSET) -> None:
        """The next ``times`` order lookups answer 200 with ``body`` (default ``{}``)."""
        with self.lock:
            self._lookup_bodies = [{} if body is _UNSET else body] * times

    def malformed_list_next(
        self, times: int = 1, body: Any = _UNSET, *, page: int | None = None
    ) -> None:
        """The next ``times`` eSIM lists (page ``page`` only, when given) answer 200 with
        ``body`` (default ``{}``)."""
        with self.lock:
            self._list_bodies = [(page, {} if body is _UNSET else body)] * times

    def set_usage(self, iccid: str, **fields: Any) -> None:
        """Usage answers of ``iccid`` carry ``fields`` as given; no fields: as computed."""
        with self.lock:
            if fields:
                self.usage_override[iccid] = dict(fields)
            else:
                self.usage_override.pop(iccid, None)
            self._usage_cache.pop(iccid, None)

    @staticmethod
    def _raw(body: Any) -> Reply:
        return Reply(200, raw=json.dumps(body).encode())

    def topup_orders(self) -> list[dict[str, Any]]:
        return [o for o in self.orders if o["type"] == "topup"]

    def sim_orders(self) -> list[dict[str, Any]]:
        """Orders of new eSIMs placed through ``POST /v2/orders`` (not the seeded ones)."""
        return [o for o in self.orders if o["type"] == "sim" and o.get("_placed")]

    def requests_to(self, method: str, path_suffix: str) -> list[Request]:
        return [r for r in self.requests if r.method == method and r.path.endswith(path_suffix)]

    # -- routes ---------------------------------------------------------------------------

    def register(self) -> None:
        self.route("POST", "/v2/token", self.token)
        self.route("GET", "/v2/sims", self.list_sims)
        self.route("GET", "/v2/sims/{iccid}", self.get_sim)
        self.route("GET", "/v2/sims/{iccid}/usage", self.usage)
        self.route("GET", "/v2/sims/{iccid}/packages", self.history)
        self.route("GET", "/v2/sims/{iccid}/topups", self.topups)
        self.route("POST", "/v2/orders/topups", self.buy_topup)
        self.route("POST", "/v2/orders", self.buy_sim)
        self.route("GET", "/v2/orders", self.list_orders)
        self.route("GET", "/v2/orders/{order_id}", self.get_order)
        self.route("GET", "/v2/packages", self.packages)
        self.route("GET", "/v2/balance", self.get_balance)

    def not_found(self, req: Request) -> Reply:
        return Reply(404, NOT_FOUND)

    def rate_limited_reply(self, retry_after: float) -> Reply:
        return Reply(
            429,
            {"message": "Too Many Attempts."},
            {
                "Retry-After": f"{retry_after:.0f}",
                "X-RateLimit-Limit": "10",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(int(time.time() + retry_after)),
            },
        )

    # -- helpers --------------------------------------------------------------------------

    @staticmethod
    def fields(req: Request) -> dict[str, str]:
        """Form, multipart or JSON: the docs say form/multipart, Airalo's SDK sends JSON."""
        ctype = req.header("content-type") or ""
        if "application/json" in ctype:
            body = req.json()
            return {str(k): str(v) for k, v in (body or {}).items()}
        if "multipart/form-data" in ctype:
            msg = BytesParser(policy=email_policy).parsebytes(
                b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + req.body
            )
            out = {}
            for part in msg.iter_parts():
                name = part.get_param("name", header="content-disposition")
                if name:
                    out[str(name)] = str(part.get_content()).strip("\r\n")
            return out
        return req.form()

    def _authorized(self, req: Request) -> Reply | None:
        auth = req.header("authorization") or ""
        token = auth[7:] if auth.startswith("Bearer ") else ""
        expiry = self.tokens.get(token)
        if self.bad_credentials or expiry is None or expiry < time.monotonic():
            return Reply(401, AUTH_FAILED)
        return None

    def _paginate(
        self, req: Request, items: list[Any], path: str, default_limit: int = 25
    ) -> dict[str, Any] | Reply:
        errors = {}
        limit_s, page_s = req.arg("limit"), req.arg("page")
        if limit_s is not None and not limit_s.isdigit():
            errors["limit"] = "The limit must be an integer."
        if page_s is not None and not page_s.isdigit():
            errors["page"] = "The page must be an integer."
        if errors:
            return Reply(422, {"data": errors, "meta": {"message": INVALID}})
        limit = max(1, int(limit_s or default_limit))
        page = max(1, int(page_s or 1))
        total = len(items)
        last = max(1, -(-total // limit))
        chunk = items[(page - 1) * limit : page * limit]
        base = self.url + path
        query = {k: v[0] for k, v in req.query.items() if k not in ("page",)}

        def link(p: int) -> str:
            return base + "?" + urlencode({**query, "limit": str(limit), "page": str(p)})

        start = (page - 1) * limit
        return {
            "data": chunk,
            "links": {
                "first": link(1),
                "last": link(last),
                "prev": link(page - 1) if page > 1 else None,
                "next": link(page + 1) if page < last else None,
            },
            "meta": {
                "message": "success",
                "current_page": page,
                "from": start + 1 if chunk else None,
                "last_page": last,
                "path": base,
                "per_page": str(limit),  # a string, as documented
                "to": start + len(chunk) if chunk else None,
                "total": total,
            },
        }

    def _price_fields(self, p: Pkg) -> dict[str, Any]:
        override = self.price_override.get(p.id)
        discount = self.pricing_model == "discount_pricing"
        retail = wire(override) if override is not None and discount else num(p.price)
        net: Any = None
        if not discount:
            net = wire(override) if override is not None else num(p.net_price)
        prices: dict[str, Any] = {"recommended_retail_price": {"USD": retail}}
        if net is not None:
            prices["net_price"] = {"USD": net}
        return {"price": retail, "net_price": net, "prices": prices}

    def _charge(self, p: Pkg) -> Decimal:
        """What a top-up of ``p`` takes from the balance: its listed price."""
        listed = finite(self.price_override.get(p.id))
        if self.pricing_model == "discount_pricing":
            off = Decimal(100 - self.discount_percentage) / 100
            charged = (listed if listed is not None else p.price) * off
            try:
                return charged.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
            except ArithmeticError:
                return charged
        return listed if listed is not None else p.net_price

    def _pricing(self) -> dict[str, Any]:
        return {
            "model": self.pricing_model,
            "discount_percentage": self.discount_percentage
            if self.pricing_model == "discount_pricing"
            else 0,
        }

    def _package_json(self, p: Pkg) -> dict[str, Any]:
        return {
            "id": p.id,
            "type": p.type,
            **self._price_fields(p),
            "amount": 0 if p.unlimited else p.amount,
            "day": p.day,
            "is_unlimited": p.unlimited,
            "title": p.title,
            "data": p.data,
            "short_info": "This eSIM doesn't come with a phone number.",
            "voice": None,
            "text": None,
        }

    def _new_order(
        self,
        pkg: Pkg,
        op: Operator,
        kind: str,
        description: str | None,
        created: datetime,
        sims: list[str],
        charged: Decimal | None = None,
    ) -> dict[str, Any]:
        oid = next(self._ids)
        order = {
            "id": oid,
            "created_at": fmt(created),
            "code": f"{created:%Y%m%d}-{oid:06d}",
            "description": description,
            "type": kind,
            "package_id": pkg.id,
            "quantity": 1,
            "package": f"{op.title}-{pkg.title}",
            "esim_type": "Prepaid",
            "validity": str(pkg.day),  # a string in order lists
            "price": str(self._price_fields(pkg)["price"])  # a string in order lists
            if pkg.id in self.price_override
            else f"{pkg.price:.2f}",
            "data": pkg.data,
            "currency": "USD",
            "manual_installation": MANUAL_HTML.format(op=op.title, country=op.country_title)
            if kind == "sim"
            else "",
            "qrcode_installation": QRCODE_HTML.format(op=op.title, country=op.country_title)
            if kind == "sim"
            else "",
            "installation_guides": {
                "en": "https://www.airalo.com/help/getting-started-with-airalo"
            },
            "_sims": sims,
            "_charged": str(charged if charged is not None else self._charge(pkg)),
            "_claimed": None,  # what the purchase answer claimed, where overridden
            "status": {"name": "Completed", "slug": "completed"},
        }
        self.orders.insert(0, order)
        return order

    def _order_json(self, o: dict[str, Any], include: str) -> dict[str, Any]:
        out = {k: v for k, v in o.items() if not k.startswith("_") and k != "status"}
        # Top-up orders list no sims: the link to the eSIM is lost (documented example).
        out["sims"] = (
            [self._order_sim_json(self.sims[i]) for i in o["_sims"] if i in self.sims]
            if o["type"] == "sim"
            else []
        )
        if "status" in include:
            out["status"] = o["status"]
        return out

    def _apple_url(self, sim: Sim) -> str:
        code = "LPA:1$wbg.prod.ondemandconnectivity.com$Y7MRQ886FCDJD4RH"
        return APPLE + (code if self.apple_url_mismatch else sim.qrcode)

    def _order_sim_json(self, sim: Sim) -> dict[str, Any]:
        """An eSIM as an order (its answer, the order list) shows it."""
        return {
            "id": sim.id,
            "created_at": fmt(sim.created_at),
            "iccid": sim.iccid,
            "lpa": sim.smdp,
            "imsis": None,
            "matching_id": sim.matching_id,
            "qrcode": sim.qrcode,
            "qrcode_url": f"https://partners-api.airalo.com/qr?id={sim.id}",
            "direct_apple_installation_url": self._apple_url(sim),
            "airalo_code": None,
            "apn_type": "automatic",
            "apn_value": None,
            "is_roaming": True,
            "confirmation_code": None,
        }

    def _sim_json(self, sim: Sim, include: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": sim.id,
            "created_at": fmt(sim.created_at),
            "iccid": sim.iccid,
            "lpa": sim.smdp,
            "imsis": None,
            "matching_id": sim.matching_id,
            "qrcode": sim.qrcode,
            "qrcode_url": "https://partners-api.airalo.com/qr?id=1",
            "direct_apple_installation_url": self._apple_url(sim),
            "voucher_code": None,
            "airalo_code": None,
            "apn_type": "automatic",
            "apn_value": None,
            "is_roaming": True,
            "confirmation_code": None,
            "order": None,
            "brand_settings_name": None,
            "recycled": sim.recycled,
            "recycled_at": fmt(sim.recycled_at),
        }
        if "order" in include:
            o = self._order_json(sim.order, "status")
            o.pop("sims", None)
            out["simable"] = o
        return out

    def _refresh_states(self, sim: Sim) -> None:
        """Packages end by time; queued ones start when nothing else runs."""
        now = self.now()
        for h in sim.history:
            if h.status == "ACTIVE" and h.expired_at is not None and h.expired_at <= now:
                h.status = "EXPIRED"
        if not any(h.status == "ACTIVE" for h in sim.history):
            queued = [
                h for h in sim.history if h.status == "NOT_ACTIVE" and h.package.type == "topup"
            ]
            if queued and any(h.activated_at for h in sim.history):
                self._activate(queued[0], now)

    @staticmethod
    def _activate(h: History, now: datetime) -> None:
        h.status = "ACTIVE"
        h.activated_at = now
        h.expired_at = now + timedelta(days=h.package.day)
        h.remaining = h.package.amount

    def _usage_json(self, sim: Sim) -> dict[str, Any]:
        if sim.recycled:
            return {
                "remaining": 0,
                "total": 0,
                "expired_at": None,
                "is_unlimited": None,
                "status": "RECYCLED",
                "remaining_voice": 0,
                "remaining_text": 0,
                "total_voice": 0,
                "total_text": 0,
            }
        self._refresh_states(sim)
        active = [h for h in sim.history if h.status == "ACTIVE"]
        if active:
            unlimited = any(h.package.unlimited for h in active)
            total = sum(h.package.amount for h in active if not h.package.unlimited)
            remaining = sum(h.remaining for h in active if not h.package.unlimited)
            expired_at = max(h.expired_at for h in active if h.expired_at)
            status = "ACTIVE" if unlimited or remaining > 0 else "FINISHED"
        elif all(h.status == "NOT_ACTIVE" for h in sim.history):
            first = sim.history[0]
            unlimited = first.package.unlimited
            total = remaining = 0 if unlimited else first.package.amount
            expired_at, status = None, "NOT_ACTIVE"
        else:
            last = sim.history[-1]
            unlimited = last.package.unlimited
            total, remaining = (0 if unlimited else last.package.amount), 0
            expired_at = last.expired_at
            status = "FINISHED" if last.status == "FINISHED" else "EXPIRED"
        if unlimited:
            total = remaining = 0  # "remaining, total ... default to 0 ... should be ignored"
        return {
            "remaining": remaining,
            "total": total,
            "expired_at": fmt(expired_at),
            "is_unlimited": unlimited and not self.sandbox_unlimited_quirk,
            "status": status,
            "remaining_voice": 0,
            "remaining_text": 0,
            "total_voice": 0,
            "total_text": 0,
        }

    # -- handlers -------------------------------------------------------------------------

    def token(self, req: Request) -> Reply:
        self.token_requests += 1
        if self.token_limit_per_minute:
            now = time.monotonic()
            while self._token_hits and now - self._token_hits[0] >= 60:
                self._token_hits.popleft()
            if len(self._token_hits) >= self.token_limit_per_minute:
                return self.rate_limited_reply(60 - (now - self._token_hits[0]))
            self._token_hits.append(now)
        f = self.fields(req)
        missing = {
            k: f"The {k.replace('_', ' ')} field is required."
            for k in ("client_id", "client_secret", "grant_type")
            if not f.get(k)
        }
        if missing:
            return Reply(422, {"data": missing, "meta": {"message": INVALID}})
        if f["client_id"] != self.client_id:
            return Reply(
                422,
                {
                    "data": {"client_id": "The selected client id is invalid."},
                    "meta": {"message": INVALID},
                },
            )
        if self.bad_credentials or f["client_secret"] != self.client_secret:
            return Reply(401, {"data": [], "meta": {"message": "Client authentication failed"}})
        token = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9." + secrets.token_urlsafe(24)
        self.tokens[token] = time.monotonic() + self.expires_in
        return Reply(
            200,
            {
                "data": {
                    "token_type": "Bearer",
                    "expires_in": self.expires_in,
                    "access_token": token,
                },
                "meta": {"message": "success"},
            },
        )

    def list_sims(self, req: Request) -> Reply:
        if (denied := self._authorized(req)) is not None:
            return denied
        page_no = int(req.arg("page") or 1) if (req.arg("page") or "1").isdigit() else None
        for i, (page, body) in enumerate(self._list_bodies):
            if page is None or page == page_no:
                del self._list_bodies[i]
                return self._raw(body)
        include = req.arg("include", "") or ""
        wanted = req.arg("filter[iccid]")
        sims = sorted(self.sims.values(), key=lambda s: s.id, reverse=True)
        if wanted:
            sims = [s for s in sims if wanted in s.iccid]
        page = self._paginate(req, [self._sim_json(s, include) for s in sims], "/v2/sims")
        return page if isinstance(page, Reply) else Reply(200, page)

    def _sim_or_404(self, req: Request) -> Sim | Reply:
        if (denied := self._authorized(req)) is not None:
            return denied
        sim = self.sims.get(req.params["iccid"])
        return sim if sim is not None else Reply(404, NOT_FOUND)

    def get_sim(self, req: Request) -> Reply:
        sim = self._sim_or_404(req)
        if isinstance(sim, Reply):
            return sim
        data = self._sim_json(sim, req.arg("include", "") or "")
        return Reply(200, {"data": data, "meta": {"message": "succes"}})  # sic

    def usage(self, req: Request) -> Reply:
        sim = self._sim_or_404(req)
        if isinstance(sim, Reply):
            return sim
        hit = self._usage_cache.get(sim.iccid)
        if hit is not None and time.monotonic() - hit[0] < self.usage_cache_seconds:
            data = hit[1]
        else:
            data = self._usage_json(sim)
            self._usage_cache[sim.iccid] = (time.monotonic(), data)
        data = data | self.usage_override.get(sim.iccid, {})  # set_usage: figures as given
        return Reply(200, {"data": data, "meta": {"message": "api.succes"}})  # sic

    def history(self, req: Request) -> Reply:
        sim = self._sim_or_404(req)
        if isinstance(sim, Reply):
            return sim
        self._refresh_states(sim)
        rows = []
        for h in reversed(sim.history):
            pkg = self._package_json(h.package)
            pkg.pop("prices", None)
            for k in ("voice", "text"):
                pkg.pop(k, None)
            pkg["short_info"] = None
            rows.append(
                {
                    "id": h.id,
                    "status": h.status,
                    "remaining": 0 if h.package.unlimited else h.remaining,
                    "activated_at": iso_offset(h.activated_at),
                    "expired_at": iso_offset(h.expired_at),
                    "finished_at": iso_offset(h.finished_at),
                    "package": pkg,
                }
            )
        return Reply(200, {"pricing": self._pricing(), "data": rows})

    def topups(self, req: Request) -> Reply:
        sim = self._sim_or_404(req)
        if isinstance(sim, Reply):
            return sim
        if sim.recycled:
            return Reply(422, self._recycled(sim))
        if not sim.operator.rechargeable:
            return Reply(200, {"data": []})
        # The documented success example has no "meta".
        return Reply(
            200,
            {
                "pricing": self._pricing(),
                "data": [self._package_json(p) for p in sim.operator.topups],
            },
        )

    @staticmethod
    def _recycled(sim: Sim) -> dict[str, Any]:
        return {
            "code": 73,
            "reason": f"The eSIM with iccid {sim.iccid} has been recycled. It can no longer "
            "be used or topped up.",
        }

    def buy_topup(self, req: Request) -> Reply:
        if (denied := self._authorized(req)) is not None:
            return denied
        f = self.fields(req)
        missing = {
            k: f"The {k.replace('_', ' ')} field is required."
            for k in ("iccid", "package_id")
            if not f.get(k)
        }
        if missing:
            return Reply(422, {"data": missing, "meta": {"message": INVALID}})
        sim = self.sims.get(f["iccid"])
        if sim is None:
            return Reply(
                422,
                {"data": {"iccid": "The selected iccid is invalid."}, "meta": {"message": INVALID}},
            )
        if sim.recycled:
            return Reply(422, self._recycled(sim))
        pkg = next((p for p in sim.operator.topups if p.id == f["package_id"]), None)
        if pkg is None or not sim.operator.rechargeable:
            return Reply(
                422, {"data": {"package_id": "invalid topup package"}, "meta": {"message": INVALID}}
            )
        charge = self._charge(pkg)
        claimed = self.charge_override
        real = finite(claimed) if claimed is not None else None
        if real is not None:
            charge = real
        if charge > self.balance:
            return Reply(
                422,
                {
                    "code": 11,
                    "reason": f"Insufficient Airalo Credit: available "
                    f"{self.balance:.2f} USD, required {charge:.2f} USD",
                },
            )
        self.balance -= charge
        now = self.now()
        description = f.get("description") or f"Topup ({sim.iccid})"
        order = self._new_order(pkg, sim.operator, "topup", description, now, [sim.iccid], charge)
        order["_claimed"] = claimed
        self._refresh_states(sim)
        entry = History(next(self._history_ids), pkg, "NOT_ACTIVE", pkg.amount)
        running = any(h.status == "ACTIVE" for h in sim.history)
        started = any(h.activated_at for h in sim.history)
        if started and (self.topup_mode == "stack" or not running):
            self._activate(entry, now)
        sim.history.append(entry)
        data = {k: v for k, v in order.items() if not k.startswith("_") and k != "status"}
        data.update(
            {
                "validity": pkg.day,
                "price": self._price_fields(pkg)["price"],
                "pricing_model": self.pricing_model,
                "text": None,
                "voice": None,
                "package": f"{sim.operator.title}-{pkg.title}",
            }
        )
        paid = wire(claimed) if claimed is not None else num(charge)
        if self.pricing_model == "discount_pricing":
            retail = finite(str(self._price_fields(pkg)["price"]))
            data.update(
                {
                    "net_price": None,
                    "discount_percentage": self.discount_percentage,
                    "discount_amount": num(retail - charge) if retail is not None else None,
                    "unit_paid_price": paid,
                    "total_amount_paid": paid,
                }
            )
        else:
            data["net_price"] = paid
        return Reply(200, {"data": data, "meta": {"message": "success"}})

    def buy_sim(self, req: Request) -> Reply:
        """``POST /v2/orders``: new eSIMs of a catalogue ``sim`` package, synchronously."""
        if (denied := self._authorized(req)) is not None:
            return denied
        f = self.fields(req)
        missing = {
            k: f"The {k.replace('_', ' ')} field is required."
            for k in ("quantity", "package_id")
            if not f.get(k)
        }
        if missing:
            return Reply(422, {"data": missing, "meta": {"message": INVALID}})
        if f.get("type", "sim") not in ("", "sim"):
            invalid = {"type": "The selected type is invalid."}
            return Reply(422, {"data": invalid, "meta": {"message": INVALID}})
        qty = int(f["quantity"]) if f["quantity"].isdigit() else 0
        if not 1 <= qty <= 50:
            text = "The quantity may not be greater than 50." if qty else "Invalid quantity."
            return Reply(422, {"data": {"quantity": text}, "meta": {"message": INVALID}})
        op = next(
            (o for o in self.catalogue if any(p.id == f["package_id"] for p in o.packages)), None
        )
        if op is None:
            return Reply(
                422,
                {
                    "data": {"package_id": "The selected package is invalid."},
                    "meta": {"message": INVALID},
                },
            )
        pkg = self.package(f["package_id"])
        unit = self._charge(pkg)
        claimed = self.charge_override
        real = finite(claimed) if claimed is not None else None
        if real is not None:
            unit = real
        charge = unit * qty
        if charge > self.balance:
            return Reply(
                422,
                {
                    "code": 11,
                    "reason": f"Insufficient Airalo Credit: available "
                    f"{self.balance:.2f} USD, required {charge:.2f} USD",
                },
            )
        self.balance -= charge
        now = self.now()
        iccids = [f"8944465400{next(self._iccids):09d}" for _ in range(qty)]
        order = self._new_order(pkg, op, "sim", f.get("description") or None, now, iccids, charge)
        order["_claimed"], order["_placed"], order["quantity"] = claimed, True, qty
        for iccid in iccids:
            sim = Sim(next(self._sim_ids), iccid, now, op, pkg, order)
            sim.smdp = "rsp-3088.idemia.io"
            sim.matching_id = "-".join(secrets.token_hex(3).upper()[:5] for _ in range(4))
            sim.history.append(History(next(self._history_ids), pkg, "NOT_ACTIVE", pkg.amount))
            self.sims[iccid] = sim
        data = {k: v for k, v in order.items() if not k.startswith("_") and k != "status"}
        data.update(
            {
                "quantity": str(qty),  # a string in the first documented example
                "validity": pkg.day,  # a number here, a string in order lists
                "price": self._price_fields(pkg)["price"],
                "pricing_model": self.pricing_model,
                "text": None,
                "voice": None,
                "brand_settings_name": None,
                "sims": [self._order_sim_json(self.sims[i]) for i in iccids],
            }
        )
        paid = wire(claimed) if claimed is not None else num(unit)
        if self.pricing_model == "discount_pricing":
            retail = finite(str(self._price_fields(pkg)["price"]))
            data.update(
                {
                    "discount_percentage": self.discount_percentage,
                    "discount_amount": num(retail - unit) if retail is not None else None,
                    "unit_paid_price": paid,
                    "total_amount_paid": num(charge) if claimed is None else paid,
                }
            )
        elif self.order_net_price:
            data["net_price"] = paid
        return Reply(200, {"data": data, "meta": {"message": "success"}})

    def list_orders(self, req: Request) -> Reply:
        if (denied := self._authorized(req)) is not None:
            return denied
        if self._lookup_bodies and any(k.startswith("filter[") for k in req.query):
            return self._raw(self._lookup_bodies.pop(0))
        include = req.arg("include", "") or ""
        orders = list(self.orders)
        if (desc := req.arg("filter[description]")) is not None:
            orders = [o for o in orders if desc.lower() in (o["description"] or "").lower()]
        if (iccid := req.arg("filter[iccid]")) is not None:
            orders = [
                o for o in orders if o["type"] == "sim" and any(iccid in i for i in o["_sims"])
            ]
        if (code := req.arg("filter[code]")) is not None:
            orders = [o for o in orders if code in o["code"]]
        if (st := req.arg("filter[order_status]")) is not None:
            orders = [o for o in orders if o["status"]["slug"] == st]
        if (rng := req.arg("filter[created_at]")) is not None:
            try:
                lo, hi = (x.strip() for x in rng.split(" - "))
            except ValueError:
                return Reply(
                    422,
                    {
                        "data": {"created_at": "The created at is not a valid range."},
                        "meta": {"message": INVALID},
                    },
                )
            orders = [o for o in orders if lo <= o["created_at"][:10] <= hi]
        items = [self._order_json(o, include) for o in orders]
        page = self._paginate(req, items, "/v2/orders")
        return page if isinstance(page, Reply) else Reply(200, page)

    def get_order(self, req: Request) -> Reply:
        if (denied := self._authorized(req)) is not None:
            return denied
        o = next((o for o in self.orders if str(o["id"]) == req.params["order_id"]), None)
        if o is None:
            return Reply(404, NOT_FOUND)
        data = self._order_json(o, req.arg("include", "") or "")
        return Reply(200, {"data": data, "meta": {"message": "success"}})

    def packages(self, req: Request) -> Reply:
        if (denied := self._authorized(req)) is not None:
            return denied
        cc = (req.arg("filter[country]") or "").upper()
        kind = req.arg("filter[type]")
        with_topups = "topup" in (req.arg("include") or "")
        dests = []
        for op in self.catalogue:
            if cc and op.country_code != cc:
                continue
            if kind and kind != "local":
                continue
            pkgs = op.packages + (op.topups if with_topups else [])
            listed = [
                self._package_json(p)
                | {
                    "is_fair_usage_policy": p.fair_usage is not None,
                    "fair_usage_policy": p.fair_usage,
                }
                for p in pkgs
            ]
            dests.append(
                {
                    "slug": op.country_title.lower().replace(" ", "-"),
                    "country_code": op.country_code,
                    "title": op.country_title,
                    "image": {"width": 132, "height": 99, "url": "https://cdn.example/x.png"},
                    "operators": [
                        {
                            "id": abs(hash(op.slug)) % 1000,
                            "title": op.title,
                            "type": "local",
                            "plan_type": "data",
                            "is_roaming": False,
                            "rechargeability": op.rechargeable,
                            "install_window_days": 180,
                            "topup_grace_window_days": 30,
                            "countries": [
                                {"country_code": op.country_code, "title": op.country_title}
                            ],
                            "packages": listed,
                        }
                    ],
                }
            )
        page = self._paginate(req, dests, "/v2/packages", default_limit=1000)
        if isinstance(page, Reply):
            return page
        if page["meta"]["current_page"] >= 2:
            # Documented quirk: from page 2 on, "data" is an object keyed by index.
            start = (page["meta"]["from"] or 1) - 1
            page["data"] = {str(start + i): d for i, d in enumerate(page["data"])}
        return Reply(200, {"pricing": self._pricing(), **page})

    def get_balance(self, req: Request) -> Reply:
        if (denied := self._authorized(req)) is not None:
            return denied
        return Reply(
            200,
            {
                "data": {
                    "balances": {
                        "name": "balance",
                        "availableBalance": {"amount": num(self.balance), "currency": "USD"},
                    }
                },
                "meta": {"message": "success"},
            },
        )
