"""A stateful fake of the Celitech API v1 and its OAuth2 token endpoint on one server.

Celitech keeps eSIMs as purchases: the first purchase creates the eSIM, each top-up is
one more purchase on the same ICCID with its own validity window and remaining data.
The fake keeps that state: a top-up adds a purchase, which the next purchase list and
consumption answers show; ``use()`` spends data as a phone would. A new eSIM
(``POST /v1/purchases/v2``) is a first purchase on a new ICCID, not started and its profile
``RELEASED`` (not installed) until the phone installs it (``install()``).

Routes (paths and field names as documented, see ``docs/providers/celitech.md``)::

    POST /oauth2/token                          form body or HTTP Basic client credentials
    GET  /v1/destinations
    GET  /v1/packages?destination=&afterCursor=&limit=        (limit 1..160)
    GET  /v1/purchases?iccid=&referenceId=&afterDate=&...      (limit 1..100, cursor)
    GET  /v1/purchases/{purchaseId}/consumption
    GET  /v1/esim?iccid=
    POST /v1/purchases/topup
    POST /v1/purchases/v2                       a new eSIM: {destination, dataLimitInGB,
                                                duration | startDate+endDate, quantity,
                                                referenceId} -> [{purchase, profile}]

Switches beyond the base ones (latency, fail_next, hang_next, malformed_next,
truncated_next, commit_then_drop_next, rate_limit, bad_credentials):

* ``auth_style``: ``"both"`` (default), ``"post"`` or ``"basic"``: which documented way of
  sending the client credentials the auth host accepts;
* ``gb_bytes``: 2**30 (default) or 10**9, how many bytes Celitech's GB holds;
  ``send_gb_fields``: also send ``dataLimitInGB``/``dataUsageRemainingInGB``;
* ``epoch_ms``: epoch fields in milliseconds instead of seconds; ``send_iso_dates``:
  send the ISO date strings at all; ``iso_offset``: ``"+00:00"``, ``"+0000"`` or ``"Z"``;
* ``send_topup_flag``: send ``isTopUpAllowed`` (older API versions did not);
* ``cursor_on_last_page``: the last page still carries a cursor, then an empty page comes;
* ``topup_start``: ``"now"`` (a top-up's window starts at once) or ``"after"`` (it starts
  when the last package ends);
* ``visible_after_reads``: a new top-up shows in purchase lists only after that many lists;
* ``insufficient_status``: 400 (default) or 402 for "not enough balance";
* ``send_retry_after``: add ``Retry-After`` to the 429 answer (API Gateway sends none);
* ``target_next(method, path, kind)``: a base fault (``drop``, ``hang``, ``malformed``,
  ``truncated`` or an HTTP status) for the next request to that path only;
  ``target_next("POST", NEW_ESIM, "drop")`` is a new eSIM bought whose answer is lost;
* ``new_esim_shape``: how ``POST /v1/purchases/v2`` answers: ``"array"`` (default, the
  current SDK: ``[{purchase, profile}]``, ``profile.activationCode`` a QR image in base64,
  ``manualActivationCode`` the LPA string, ``iosActivationLink``), ``"object"`` (one
  ``{purchase, profile}``), ``"lpa_in_activation_code"`` (the 2025-03 model: only
  ``activationCode``, the LPA string), ``"matching_id"`` (``manualActivationCode`` the bare
  matching id beside ``smdpAddress``) or ``"no_profile"`` (only the purchase);
  ``new_esim_requests``: every body sent; ``sold``: the ICCIDs sold, in order.

Switches for what a provider may send that esimctl must refuse to believe:

* ``malformed_lookup_next(times=1, body={})``: the next ``times`` purchase lists filtered by
  ``referenceId`` (the order lookup, and the read-back of a new purchase's price) answer 200
  with ``body`` (``None`` sends ``null``;
  a new call replaces what is still pending, ``times=0`` clears); unfiltered lists are not hit;
* ``malformed_list_next(times=1, body={}, page=None)``: the next ``times`` purchase lists
  without ``referenceId`` (the eSIM list; only page ``page`` when given, 1 = the first)
  answer 200 with ``body``;
* ``set_usage(iccid, **fields)``: figures and states of the eSIM's latest purchase as given:
  ``remaining=`` (consumption ``dataUsageRemainingInBytes``), ``total=`` (the purchase's
  ``package.dataLimitInBytes``), each sent without its GB twin; ``status=`` (the
  consumption status) and ``profile_status=`` (``GET /v1/esim`` status), e.g.
  ``"SUSPENDED"``; ``set_usage(iccid)`` alone clears the figures;
* ``price_override = {plan: "-1.40"}``: the listed price, in currency units, of a package
  (``plan`` is the fake's package id, ``pkg_fra_1gb_0_30``, or the plan id a user types,
  ``fr-1gb-30d``), sent as ``priceInCents``: a JSON number where it is one, else a string
  (``"1e308"`` is 1e310 cents, beyond any float); new purchases of it record that price
  and are charged it (where it is a finite number);
* ``charge_override = "12.00"``: a top-up or a new eSIM is charged this (currency units) and
  the purchase list records it as the purchase's ``package.priceInCents``; the purchase
  answer itself carries no price, as documented. A price that rose between listing and
  buying, ``"-50"``, ``"0"``.
"""

from __future__ import annotations

import base64
import json
import math
import secrets
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from .base import FakeApi, Reply, Request, _Fault

GIB = 1024**3
DAY = 86400.0
NEW_ESIM = "/v1/purchases/v2"
SMDP = "consumer.rsp.example.net"

CLIENT_ID = "ct-client-7f3c"
CLIENT_SECRET = "ct-secret-2a9d41e8"

SIZES_GB = (0.5, 1, 2, 3, 5, 8, 20, 50)
DURATIONS = (1, 2, 7, 14, 30, 90)
UNLIMITED_DURATIONS = (1, 2, 7, 14, 30)

# ISO3 -> (ISO2, name, supported countries)
DESTINATIONS: dict[str, tuple[str, str, list[str]]] = {
    "FRA": ("FR", "France", ["FR"]),
    "JPN": ("JP", "Japan", ["JP"]),
    "USA": ("US", "United States", ["US"]),
    "DEU": ("DE", "Germany", ["DE"]),
    "EUR": ("EU", "Europe", ["FR", "DE", "IT", "ES"]),
}

# price in cents per GB in the two documented brackets: 0-30 days and 0-90 days
_PRICE_30 = {0.5: 300, 1: 500, 2: 900, 3: 1200, 5: 1800, 8: 2600, 20: 4900, 50: 9900}
_PRICE_90 = {gb: cents * 3 // 2 for gb, cents in _PRICE_30.items()}


def _iccid(n: int) -> str:
    return f"89103000000{n:08d}"


_UNSET: Any = object()


def finite(value: Any) -> Decimal | None:
    try:
        d = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return d if d.is_finite() else None


def cents_wire(text: str) -> Any:
    """A price in currency units as ``priceInCents`` travels: a JSON number where it is
    one, else a string."""
    d = finite(text)
    if d is None:
        return text
    cents = d * 100
    if cents == cents.to_integral_value() and abs(cents) < 2**53:
        return int(cents)
    f = float(cents)
    return f if math.isfinite(f) else str(cents)


class FakeCelitech(FakeApi):
    def __init__(self, *, client_id: str = CLIENT_ID, client_secret: str = CLIENT_SECRET) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.clock: Callable[[], float] = time.time
        self.token_ttl = 3600
        self.auth_style = "both"
        self.gb_bytes = GIB
        self.send_gb_fields = True
        self.epoch_ms = False
        self.send_iso_dates = True
        self.iso_offset = "+00:00"
        self.send_topup_flag = True
        self.cursor_on_last_page = False
        self.topup_start = "now"
        self.visible_after_reads = 0
        self.insufficient_status = 400
        self.send_retry_after = False
        self.balance_cents = 1_000_000
        self.tokens: dict[str, float] = {}
        self.token_requests: list[str] = []  # "post" or "basic", per accepted request
        self.topup_requests: list[dict[str, Any]] = []
        self.new_esim_requests: list[dict[str, Any]] = []
        self.new_esim_shape = "array"
        self.sold: list[str] = []
        self.esims: dict[str, dict[str, Any]] = {}
        self.purchases: list[dict[str, Any]] = []
        # indexes, so that benchmarks seeding a thousand eSIMs stay linear
        self._by_id: dict[str, dict[str, Any]] = {}
        self._by_iccid: dict[str, list[dict[str, Any]]] = {}
        self.packages: list[dict[str, Any]] = []
        self._targets: list[list[Any]] = []  # [method, path, fault, waiting for]
        self.price_override: dict[str, str] = {}
        self.charge_override: str | None = None
        self._lookup_bodies: list[Any] = []
        self._list_bodies: list[tuple[int | None, Any]] = []
        self._serial = 0
        super().__init__()
        self._default_packages()

    # -- routes -------------------------------------------------------------------------------

    def register(self) -> None:
        self.route("POST", "/oauth2/token", self.token)
        self.route("GET", "/v1/destinations", self.authed(self.list_destinations))
        self.route("GET", "/v1/packages", self.authed(self.list_packages))
        self.route("GET", "/v1/purchases", self.authed(self.list_purchases))
        self.route("GET", "/v1/purchases/{pid}/consumption", self.authed(self.consumption))
        self.route("GET", "/v1/esim", self.authed(self.get_esim))
        self.route("POST", "/v1/purchases/topup", self.authed(self.topup))
        self.route("POST", NEW_ESIM, self.authed(self.new_esim))

    def not_found(self, req: Request) -> Reply:
        # What API Gateway answers for a route it does not know.
        return Reply(403, {"message": "Missing Authentication Token"})

    def rate_limited_reply(self, retry_after: float) -> Reply:
        headers = {"x-amzn-ErrorType": "TooManyRequestsException"}
        if self.send_retry_after:
            headers["Retry-After"] = f"{retry_after:.0f}"
        return Reply(429, {"message": "Too Many Requests"}, headers)

    # -- seeding ------------------------------------------------------------------------------

    def _default_packages(self) -> None:
        for iso3 in DESTINATIONS:
            for gb in SIZES_GB:
                self.add_package(iso3, gb, 0, 30, _PRICE_30[gb])
                self.add_package(iso3, gb, 0, 90, _PRICE_90[gb])
            if iso3 == "EUR":  # Region-3 sells unlimited, durations only
                self.add_package(iso3, -1, 0, 30, 3900)

    def add_package(
        self, destination: str, gb: float, min_days: int, max_days: int, cents: int
    ) -> dict[str, Any]:
        iso2 = DESTINATIONS.get(destination, (destination[:2], destination, []))[0]
        pkg = {
            "id": f"pkg_{destination.lower()}_{gb}gb_{min_days}_{max_days}",
            "destination": destination,
            "destinationISO2": iso2,
            "gb": gb,
            "minDays": min_days,
            "maxDays": max_days,
            "priceInCents": cents,
        }
        self.packages.append(pkg)
        return pkg

    def add_esim(
        self,
        iccid: str | None = None,
        *,
        destination: str = "FRA",
        gb: float = 3,
        days: int = 30,
        used_gb: float = 0.0,
        age_days: float = 1.0,
        started: bool = True,
        ended: bool = False,
        status: str = "ENABLED",
        topup_allowed: bool | None = None,
        reference: str | None = None,
    ) -> str:
        """An eSIM with its first purchase; figures in the provider's GB."""
        with self.lock:
            self._serial += 1
            iccid = iccid or _iccid(self._serial)
            now = self.clock()
            created = now - age_days * DAY
            if ended:
                start: float | None = now - (days + 2) * DAY
                end: float | None = now - 2 * DAY
                created = min(created, start)
            elif started:
                start, end = created, created + days * DAY
            else:
                start = end = None
            self.esims[iccid] = {
                "status": status,
                "destination": destination,
                "topup_allowed": topup_allowed,
            }
            self._purchase(
                iccid, destination, gb, days, created, start, end, "First Purchase", reference
            )
            if used_gb:
                self.purchases[-1]["used"] = int(used_gb * self.gb_bytes)
            return iccid

    def add_topup(
        self,
        iccid: str,
        *,
        gb: float = 1,
        days: int = 7,
        age_days: float = 0.5,
        used_gb: float = 0.0,
        started: bool = True,
    ) -> dict[str, Any]:
        with self.lock:
            now = self.clock()
            created = now - age_days * DAY
            start, end = (created, created + days * DAY) if started else (None, None)
            dest = self.esims[iccid]["destination"]
            p = self._purchase(iccid, dest, gb, days, created, start, end, "Top-up Purchase", None)
            p["used"] = int(used_gb * self.gb_bytes)
            return p

    def seed(self, n: int, *, destination: str = "FRA") -> list[str]:
        """N eSIMs in a deterministic mix: fresh, half used, low, not started, ended, topped up."""
        out = []
        for i in range(n):
            kind = i % 6
            if kind == 0:
                iccid = self.add_esim(destination=destination, gb=3, used_gb=0.2)
            elif kind == 1:
                iccid = self.add_esim(destination=destination, gb=5, used_gb=2.5, age_days=10)
            elif kind == 2:
                iccid = self.add_esim(
                    destination=destination, gb=1, used_gb=0.9, days=7, age_days=6
                )
            elif kind == 3:
                iccid = self.add_esim(
                    destination=destination, gb=2, started=False, status="RELEASED"
                )
            elif kind == 4:
                iccid = self.add_esim(destination=destination, gb=1, ended=True)
            else:
                iccid = self.add_esim(destination=destination, gb=1, used_gb=1, days=7, age_days=3)
                self.add_topup(iccid, gb=3, days=30)
            out.append(iccid)
        return out

    def _purchase(
        self,
        iccid: str,
        destination: str,
        gb: float,
        days: int,
        created: float,
        start: float | None,
        end: float | None,
        kind: str,
        reference: str | None,
    ) -> dict[str, Any]:
        p = {
            "id": str(uuid.uuid4()),
            "iccid": iccid,
            "destination": destination,
            "gb": gb,
            "bytes": -1 if gb == -1 else int(gb * self.gb_bytes),
            "days": days,
            "created": created,
            "start": start,
            "end": end,
            "used": 0,
            "priceInCents": self._price(destination, gb, days),
            "purchaseType": kind,
            "source": "API",
            "referenceId": reference,
            "hidden_reads": 0,
        }
        self.purchases.append(p)
        self._by_id[p["id"]] = p
        self._by_iccid.setdefault(iccid, []).append(p)
        return p

    def _package_for(self, destination: str, gb: float, days: int) -> dict[str, Any] | None:
        for pkg in self.packages:
            if (
                pkg["destination"] == destination
                and pkg["gb"] == gb
                and pkg["minDays"] <= days <= pkg["maxDays"]
            ):
                return pkg
        return None

    def _price(self, destination: str, gb: float, days: int) -> Any:
        pkg = self._package_for(destination, gb, days)
        return self._listed_cents(pkg) if pkg else 0

    # -- state changes a phone or a clock would make ------------------------------------------

    def use(self, iccid: str, gb: float) -> None:
        """Spend data on the eSIM: from the running package that ends first."""
        left = int(gb * self.gb_bytes)
        now = self.clock()
        with self.lock:
            running = sorted(
                (p for p in self.orders_for(iccid) if self._running(p, now)),
                key=lambda p: p["end"] or float("inf"),
            )
            for p in running:
                if p["bytes"] == -1:
                    return
                take = min(left, p["bytes"] - p["used"])
                p["used"] += take
                left -= take

    def install(self, iccid: str) -> None:
        """The phone installs a new eSIM: its profile is enabled and its package starts."""
        with self.lock:
            self.esims[iccid]["status"] = "ENABLED"
            now = self.clock()
            for p in self.orders_for(iccid):
                if p["start"] is None:
                    p["start"], p["end"] = now, now + p["days"] * DAY

    def expire_tokens(self) -> None:
        with self.lock:
            self.tokens.clear()

    def malformed_lookup_next(self, times: int = 1, body: Any = _UNSET) -> None:
        """The next ``times`` lists filtered by referenceId answer 200 with ``body``."""
        with self.lock:
            self._lookup_bodies = [{} if body is _UNSET else body] * times

    def malformed_list_next(
        self, times: int = 1, body: Any = _UNSET, *, page: int | None = None
    ) -> None:
        """The next ``times`` unfiltered purchase lists (page ``page`` only, when given)
        answer 200 with ``body``."""
        with self.lock:
            self._list_bodies = [(page, {} if body is _UNSET else body)] * times

    def set_usage(self, iccid: str, **fields: Any) -> None:
        """Figures (``remaining``, ``total``) and states (``status``, ``profile_status``)
        of ``iccid`` as given; no fields: as computed again."""
        with self.lock:
            p = self.orders_for(iccid)[-1]
            if not fields:
                p.pop("override", None)
                return
            if "profile_status" in fields:
                self.esims[iccid]["status"] = fields.pop("profile_status")
            if fields:
                p["override"] = dict(fields)

    def plan_id_of(self, pkg: dict[str, Any]) -> str:
        """The plan id a user types for a package: the longest accepted duration in its
        bracket, as esimctl picks it."""
        allowed = UNLIMITED_DURATIONS if pkg["gb"] == -1 else DURATIONS
        days = max(d for d in allowed if pkg["minDays"] <= d <= pkg["maxDays"])
        size = "unl" if pkg["gb"] == -1 else f"{pkg['gb']:g}gb"
        return f"{pkg['destinationISO2'].lower()}-{size}-{days}d"

    def _listed_cents(self, pkg: dict[str, Any]) -> Any:
        text = self.price_override.get(pkg["id"])
        if text is None:
            text = self.price_override.get(self.plan_id_of(pkg))
        return pkg["priceInCents"] if text is None else cents_wire(text)

    @staticmethod
    def _raw(body: Any) -> Reply:
        return Reply(200, raw=json.dumps(body).encode())

    def target_next(
        self,
        method: str,
        path: str,
        kind: str,
        *,
        status: int = 500,
        seconds: float = 5.0,
        body: Any = None,
        after: tuple[str, str] | None = None,
    ) -> None:
        """A base fault for the next request to ``method path`` only (not for others).

        With ``after=(method, path)`` the fault waits until a request to that has been
        seen, e.g. a failing order lookup right after a purchase.
        """
        fault = _Fault(kind, status, body, seconds=seconds)
        waits = (after[0].upper(), after[1]) if after else None
        with self.lock:
            self._targets.append([method.upper(), path, fault, waits])

    def orders_for(self, iccid: str) -> list[dict[str, Any]]:
        return list(self._by_iccid.get(iccid, []))

    def _handle(self, h: Any) -> None:
        key = (h.command, h.path.split("?", 1)[0])
        with self.lock:
            hit = next((t for t in self._targets if t[3] is None and (t[0], t[1]) == key), None)
            if hit is not None:
                self._targets.remove(hit)
            for t in self._targets:
                if t[3] == key:
                    t[3] = None  # armed from the next request on
        if hit is None:
            return super()._handle(h)
        # The base takes the first queued fault for this request; holding the (re-entrant)
        # lock until it is answered keeps any concurrent request from taking it instead.
        with self.lock:
            self._faults.appendleft(hit[2])
            return super()._handle(h)

    # -- wire formats -------------------------------------------------------------------------

    def _iso(self, t: float | None) -> str | None:
        if t is None:
            return None
        text = datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")
        if self.iso_offset != "+00:00":
            text = text.replace("+00:00", self.iso_offset)
        return text

    def _epoch(self, t: float | None) -> float | int | None:
        if t is None:
            return None
        return int(t * 1000) if self.epoch_ms else int(t)

    def _dates(self, out: dict[str, Any], name: str, epoch_name: str, t: float | None) -> None:
        if self.send_iso_dates:
            out[name] = self._iso(t)
        out[epoch_name] = self._epoch(t)

    def _gb_number(self, gb: float) -> float | int:
        return int(gb) if float(gb).is_integer() else gb

    def _purchase_json(self, p: dict[str, Any]) -> dict[str, Any]:
        iso2, name, _ = DESTINATIONS.get(p["destination"], ("", p["destination"], []))
        pkg = self._package_for(p["destination"], p["gb"], p["days"])
        package: dict[str, Any] = {
            "id": pkg["id"] if pkg else "pkg_unknown",
            "dataLimitInBytes": p["bytes"],
            "destination": p["destination"],
            "destinationISO2": iso2,
            "destinationName": name,
            "priceInCents": p["priceInCents"],
        }
        if self.send_gb_fields:
            package["dataLimitInGB"] = self._gb_number(p["gb"])
        override = p.get("override", {})
        if "total" in override:  # set_usage: as given, without the GB twin
            package["dataLimitInBytes"] = override["total"]
            package.pop("dataLimitInGB", None)
        out: dict[str, Any] = {"id": p["id"]}
        self._dates(out, "startDate", "startTime", p["start"])
        self._dates(out, "endDate", "endTime", p["end"])
        out["duration"] = p["days"]
        self._dates(out, "createdDate", "createdAt", p["created"])
        out |= {
            "package": package,
            "esim": {"iccid": p["iccid"]},
            "source": p["source"],
            "purchaseType": p["purchaseType"],
        }
        if p["referenceId"] is not None:
            out["referenceId"] = p["referenceId"]
        return out

    @staticmethod
    def _running(p: dict[str, Any], now: float) -> bool:
        return p["start"] is not None and p["start"] <= now and (p["end"] is None or now < p["end"])

    def _page(self, req: Request, items: list[dict[str, Any]], key: str, max_limit: int) -> Reply:
        try:
            limit = int(float(req.arg("limit", "20") or 20))
        except ValueError:
            limit = 0
        if not 0 < limit <= max_limit:
            return Reply(
                400,
                {"message": f"limit must be greater than 0 and less than or equal to {max_limit}"},
            )
        cursor = req.arg("afterCursor")
        offset = 0
        if cursor:
            try:
                offset = int(base64.urlsafe_b64decode(cursor.encode()).decode().split(":")[1])
            except (ValueError, IndexError):
                return Reply(400, {"message": "afterCursor is invalid"})
        page = items[offset : offset + limit]
        end = offset + len(page)
        more = end < len(items) or (self.cursor_on_last_page and bool(page))
        nxt = base64.urlsafe_b64encode(f"offset:{end}".encode()).decode() if more else None
        return Reply(200, {key: page, "afterCursor": nxt})

    # -- auth ---------------------------------------------------------------------------------

    def token(self, req: Request) -> Reply:
        form = req.form()
        if form.get("grant_type") != "client_credentials":
            return Reply(400, {"error": "unsupported_grant_type"})
        auth = req.header("authorization") or ""
        if auth.lower().startswith("basic "):
            style = "basic"
            try:
                cid, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
            except ValueError:
                return Reply(401, {"error": "invalid_client"})
        elif "client_id" in form:
            style, cid, secret = "post", form.get("client_id", ""), form.get("client_secret", "")
        else:
            return Reply(400, {"error": "invalid_client"})
        status = 401 if style == "basic" else 400
        if self.auth_style not in ("both", style):
            return Reply(status, {"error": "invalid_client"})
        if self.bad_credentials or cid != self.client_id or secret != self.client_secret:
            return Reply(status, {"error": "invalid_client"})
        token = secrets.token_urlsafe(24)
        self.tokens[token] = self.clock() + self.token_ttl
        self.token_requests.append(style)
        return Reply(
            200, {"access_token": token, "expires_in": self.token_ttl, "token_type": "Bearer"}
        )

    def authed(self, handler: Callable[[Request], Reply]) -> Callable[[Request], Reply]:
        def check(req: Request) -> Reply:
            auth = req.header("authorization") or ""
            token = auth[7:] if auth.startswith("Bearer ") else ""
            expires = self.tokens.get(token)
            if self.bad_credentials or expires is None or expires <= self.clock():
                return Reply(401, {"message": "Unauthorized"})
            return handler(req)

        return check

    # -- handlers -----------------------------------------------------------------------------

    def list_destinations(self, req: Request) -> Reply:
        rows = [
            {"name": name, "destination": iso3, "destinationISO2": iso2, "supportedCountries": sc}
            for iso3, (iso2, name, sc) in DESTINATIONS.items()
        ]
        return Reply(200, {"destinations": rows})

    def list_packages(self, req: Request) -> Reply:
        dest = (req.arg("destination") or "").upper()
        rows = []
        for pkg in self.packages:
            if dest and dest not in (pkg["destination"], pkg["destinationISO2"]):
                continue
            row = {
                "id": pkg["id"],
                "destination": pkg["destination"],
                "destinationISO2": pkg["destinationISO2"],
                "dataLimitInBytes": -1 if pkg["gb"] == -1 else int(pkg["gb"] * self.gb_bytes),
                "minDays": pkg["minDays"],
                "maxDays": pkg["maxDays"],
                "priceInCents": self._listed_cents(pkg),
            }
            if self.send_gb_fields:
                row["dataLimitInGB"] = self._gb_number(pkg["gb"])
            rows.append(row)
        return self._page(req, rows, "packages", 160)

    def list_purchases(self, req: Request) -> Reply:
        if req.arg("referenceId"):
            if self._lookup_bodies:
                return self._raw(self._lookup_bodies.pop(0))
        elif self._list_bodies:
            try:
                limit = int(float(req.arg("limit", "20") or 20))
                cursor = req.arg("afterCursor")
                offset = (
                    int(base64.urlsafe_b64decode(cursor.encode()).decode().split(":")[1])
                    if cursor
                    else 0
                )
                page_no: int | None = offset // max(1, limit) + 1
            except (ValueError, IndexError):
                page_no = None
            for i, (page, body) in enumerate(self._list_bodies):
                if page is None or page == page_no:
                    del self._list_bodies[i]
                    return self._raw(body)

        def day(name: str) -> float | None:
            v = req.arg(name)
            return datetime.fromisoformat(v).replace(tzinfo=UTC).timestamp() if v else None

        try:
            after, before = day("afterDate"), day("beforeDate")
        except ValueError:
            return Reply(400, {"message": "afterDate and beforeDate use the format yyyy-MM-dd"})
        wanted = {k: req.arg(k) for k in ("iccid", "referenceId") if req.arg(k)}
        pid = req.arg("purchaseId")
        rows = []
        for p in sorted(self.purchases, key=lambda p: p["created"], reverse=True):
            if p["hidden_reads"] > 0:
                continue
            if any(p[k] != v for k, v in wanted.items()) or (pid and p["id"] != pid):
                continue
            if after is not None and p["created"] < after:
                continue
            if before is not None and p["created"] >= before + DAY:
                continue
            rows.append(self._purchase_json(p))
        if not req.arg("afterCursor"):  # a new listing, not the next page of one
            for p in self.purchases:
                p["hidden_reads"] = max(0, p["hidden_reads"] - 1)
        return self._page(req, rows, "purchases", 100)

    def consumption(self, req: Request) -> Reply:
        p = self._by_id.get(req.params["pid"])
        if p is None:
            return Reply(400, {"message": "Purchase not found"})
        now = self.clock()
        status = "ACTIVE" if self._running(p, now) else "NOT_ACTIVE"
        if p["bytes"] == -1:
            body: dict[str, Any] = {"dataUsageRemainingInBytes": -1, "status": status}
            if self.send_gb_fields:
                body["dataUsageRemainingInGB"] = -1
            return Reply(200, body)
        left = max(0, p["bytes"] - p["used"])
        body = {"dataUsageRemainingInBytes": left, "status": status}
        if self.send_gb_fields:
            body["dataUsageRemainingInGB"] = round(left / self.gb_bytes, 2)
        override = p.get("override", {})
        if "remaining" in override:  # set_usage: as given, without the GB twin
            body["dataUsageRemainingInBytes"] = override["remaining"]
            body.pop("dataUsageRemainingInGB", None)
        if "status" in override:
            body["status"] = override["status"]
        return Reply(200, body)

    def _topup_allowed(self, esim: dict[str, Any]) -> bool:
        if esim["topup_allowed"] is not None:
            return bool(esim["topup_allowed"])
        return esim["status"] in ("ENABLED", "INSTALLED")

    def get_esim(self, req: Request) -> Reply:
        iccid = req.arg("iccid") or ""
        esim = self.esims.get(iccid)
        if esim is None:
            return Reply(400, {"message": "eSIM not found"})
        now = self.clock()
        running = any(self._running(p, now) for p in self.orders_for(iccid))
        body: dict[str, Any] = {
            "iccid": iccid,
            "smdpAddress": "consumer.rsp.example.net",
            "activationCode": base64.b64encode(b"\x89PNG fake qr " * 80).decode(),
            "manualActivationCode": esim.get("lpa") or f"LPA:1${SMDP}${iccid[-8:]}",
            "status": esim["status"],
            "connectivityStatus": "ACTIVE" if running else "NOT_ACTIVE",
        }
        if self.send_topup_flag:
            body["isTopUpAllowed"] = self._topup_allowed(esim)
        return Reply(200, {"esim": body})

    def topup(self, req: Request) -> Reply:
        try:
            body = req.json()
        except ValueError:
            return Reply(400, {"message": "Invalid request body"})
        if not isinstance(body, dict):
            return Reply(400, {"message": "Invalid request body"})
        self.topup_requests.append(body)
        iccid = str(body.get("iccid") or "")
        esim = self.esims.get(iccid)
        if esim is None:
            return Reply(400, {"message": "eSIM not found"})
        if not self._topup_allowed(esim):
            return Reply(400, {"message": "Top-up is not allowed for this eSIM"})
        gb = body.get("dataLimitInGB")
        duration = body.get("duration")
        has_dates = "startDate" in body or "endDate" in body
        if gb not in SIZES_GB and gb != -1:
            return Reply(
                400, {"message": "dataLimitInGB must be one of 0.5, 1, 2, 3, 5, 8, 20, 50"}
            )
        if (duration is None) == (not has_dates):
            return Reply(400, {"message": "Provide either duration or both startDate and endDate"})
        if has_dates:
            return Reply(400, {"message": "this fake supports duration-based top-ups only"})
        allowed = UNLIMITED_DURATIONS if gb == -1 else DURATIONS
        if duration not in allowed:
            return Reply(
                400, {"message": f"duration must be one of {', '.join(map(str, allowed))}"}
            )
        pkg = self._package_for(esim["destination"], gb, int(duration))
        if pkg is None:
            return Reply(400, {"message": "No package matches the requested size and duration"})
        listed = self._listed_cents(pkg)
        recorded = listed if self.charge_override is None else cents_wire(self.charge_override)
        amount = finite(recorded)
        if amount is None:  # a claim that is not a number: the listed price is taken
            amount = finite(listed) if finite(listed) is not None else Decimal(pkg["priceInCents"])
        if amount > self.balance_cents:
            return Reply(
                self.insufficient_status,
                {"message": "Insufficient balance to complete the purchase"},
            )
        left = self.balance_cents - amount
        self.balance_cents = int(left) if left == left.to_integral_value() else left
        now = self.clock()
        start = now
        if self.topup_start == "after":
            ends = [p["end"] for p in self.orders_for(iccid) if p["end"] and p["end"] > now]
            start = max(ends, default=now)
        p = self._purchase(
            iccid,
            esim["destination"],
            gb,
            int(duration),
            now,
            start,
            start + int(duration) * DAY,
            "Top-up Purchase",
            body.get("referenceId"),
        )
        p["hidden_reads"] = self.visible_after_reads
        p["priceInCents"] = recorded
        purchase: dict[str, Any] = {"id": p["id"], "packageId": pkg["id"]}
        self._dates(purchase, "startDate", "startTime", p["start"])
        self._dates(purchase, "endDate", "endTime", p["end"])
        purchase["duration"] = p["days"]
        self._dates(purchase, "createdDate", "createdAt", p["created"])
        return Reply(200, {"purchase": purchase, "profile": {"iccid": iccid}})

    def new_esim(self, req: Request) -> Reply:
        """``POST /v1/purchases/v2``: new eSIMs of a package, each a first purchase on a new
        ICCID, charged from the balance at the package's price (or ``charge_override``)."""
        try:
            body = req.json()
        except ValueError:
            return Reply(400, {"message": "Invalid request body"})
        if not isinstance(body, dict):
            return Reply(400, {"message": "Invalid request body"})
        self.new_esim_requests.append(body)
        wanted = str(body.get("destination") or "").upper()
        iso3 = next((k for k, (iso2, _, _) in DESTINATIONS.items() if wanted in (k, iso2)), None)
        if iso3 is None:
            return Reply(400, {"message": f"destination {wanted or '(none)'} is not supported"})
        gb, duration = body.get("dataLimitInGB"), body.get("duration")
        quantity = body.get("quantity")
        if gb not in SIZES_GB and not (gb == -1 and iso3 == "EUR"):
            return Reply(
                400, {"message": "dataLimitInGB must be one of 0.5, 1, 2, 3, 5, 8, 20, 50"}
            )
        if not isinstance(quantity, int) or not 1 <= quantity <= 5:
            return Reply(400, {"message": "quantity must be between 1 and 5"})
        if "startDate" in body or "endDate" in body:
            return Reply(400, {"message": "this fake supports duration-based purchases only"})
        allowed = UNLIMITED_DURATIONS if gb == -1 else DURATIONS
        if duration not in allowed:
            return Reply(
                400, {"message": f"duration must be one of {', '.join(map(str, allowed))}"}
            )
        pkg = self._package_for(iso3, gb, int(duration))
        if pkg is None:
            return Reply(400, {"message": "No package matches the requested size and duration"})
        listed = self._listed_cents(pkg)
        recorded = listed if self.charge_override is None else cents_wire(self.charge_override)
        amount = finite(recorded)
        if amount is None:
            amount = finite(listed) if finite(listed) is not None else Decimal(pkg["priceInCents"])
        if amount * quantity > self.balance_cents:
            return Reply(
                self.insufficient_status,
                {"message": "Insufficient balance to complete the purchase"},
            )
        left = self.balance_cents - amount * quantity
        self.balance_cents = int(left) if left == left.to_integral_value() else left
        now = self.clock()
        out = []
        for _ in range(quantity):
            self._serial += 1
            iccid = _iccid(10_000_000 + self._serial)
            lpa = f"LPA:1${SMDP}${secrets.token_hex(8).upper()}"
            self.esims[iccid] = {
                "status": "RELEASED",
                "destination": iso3,
                "topup_allowed": None,
                "lpa": lpa,
            }
            p = self._purchase(
                iccid, iso3, gb, int(duration), now, None, None, "First Purchase",
                body.get("referenceId"),
            )  # fmt: skip
            p["hidden_reads"] = self.visible_after_reads
            p["priceInCents"] = recorded
            self.sold.append(iccid)
            purchase: dict[str, Any] = {"id": p["id"], "packageId": pkg["id"]}
            self._dates(purchase, "createdDate", "createdAt", now)
            out.append({"purchase": purchase, "profile": self._new_profile(iccid, lpa)})
        if self.new_esim_shape == "object":
            return Reply(200, out[0])
        return Reply(200, out)

    def _new_profile(self, iccid: str, lpa: str) -> dict[str, Any] | None:
        shape = self.new_esim_shape
        if shape == "no_profile":
            return None
        qr_image = base64.b64encode(b"\x89PNG fake qr " * 80).decode()
        if shape == "lpa_in_activation_code":
            return {"iccid": iccid, "activationCode": lpa}
        if shape == "matching_id":
            return {
                "iccid": iccid,
                "activationCode": qr_image,
                "manualActivationCode": lpa.rsplit("$", 1)[1],
                "smdpAddress": SMDP,
            }
        return {
            "iccid": iccid,
            "activationCode": qr_image,
            "manualActivationCode": lpa,
            "iosActivationLink": "https://esimsetup.apple.com/esim_qrcode_provisioning?carddata="
            + lpa,
            "androidActivationLink": "https://esimsetup.android.com/esim_qrcode_provisioning"
            "?carddata=" + lpa,
        }
