"""A stateful fake of the eSIM Go API v2.5 on 127.0.0.1, built from its documentation.

Routes (relative to the base URL, as ``https://api.esim-go.com/v2.5`` is in production):
``GET /organisation``, ``GET /esims``, ``GET /esims/{iccid}``, ``GET /esims/{iccid}/bundles``,
``GET /esims/{iccid}/bundles/{name}``, ``GET /esims/{iccid}/compatible/{bundle}``,
``GET /catalogue``, ``GET /catalogue/bundle/{name}``, ``GET /orders``, ``GET /orders/{ref}``,
``POST /orders`` (``validate`` and ``transaction``), ``GET /esims/assignments?reference=``.

What it keeps like the real service:

* ``X-API-Key`` (or ``?api_key=``); a wrong key or ``bad_credentials`` gives 403
  ``{"message": "Forbidden"}``. Errors are ``{"message": ...}``; 429 has ``Retry-After``.
* ``X-Ratelimit-Limit/-Remaining/-Reset (ISO)/-Cost`` on every answer, from a fixed
  one-second window of 10 tokens; ``enforce_tokens`` turns 429s on when it runs out.
* Bundles per eSIM: ``processing → queued → active → depleted|expired``; one active at a
  time, queued ones start in order when it ends. Decimal bytes (1 GB = 10**9).
* Orders: ``validate`` prices without charging; ``transaction`` debits the balance, records
  the order and assigns the bundle (``processing`` first). ``allowReassign`` on an
  incompatible bundle puts it on a *new* eSIM, as the real API does.
* New eSIMs (issue 15): a ``transaction`` with ``assign: true`` and no ICCIDs makes a new eSIM
  (``profileStatus: Released``, never installed, its own ``matchingId``) holding the bundle;
  it is in ``GET /esims`` at once. Its install data is in the answer's ``order[].esims``, in
  ``GET /orders?includeIccids=true``, in ``GET /esims/assignments?reference=ORDER`` (JSON
  when asked by ``Accept``, CSV otherwise; 410 for a deactivated eSIM) and in
  ``GET /esims/{iccid}`` (``appleInstallUrl`` with ``?additionalFields=installUrl``).

Variants where the documentation disagrees with itself (tests run the client on both):
``catalogue_shape`` (``"wrapped"``/``"bare"``), ``orders_shape`` (``"bare"``/``"wrapped"``/
``"single"``), ``order_date_field`` (``createdDate``/``createDate``), ``unknown_iccid_status``
(400 or 403), ``unlimited_data_amount`` (0 or -1), ``allowance_unit`` (``MB``/``BYTES``),
``first_installed`` (``"epoch_ms"``/``"iso"``), ``assignment_refs`` (``"order"``: the order
reference plus ``-0``, or ``"opaque"``), ``organisation_shape`` (``"flat"``/``"wrapped"``),
``smdp_style`` (``"bare"``: ``rsp.esim-go.example``, or ``"url"``: ``http://…``, as the
examples differ), ``assignments_shape`` (``"object"``: the documented example, one
``eSIMDetailsInstallResponse``; ``"list"``: the ``Assignments`` schema, with ``rspUrl``),
``transaction_esims`` (False: the purchase answer names no eSIM, as a real client reports).

Benchmarks: ``seed(n)`` makes N eSIMs in varied states (1000 in ~10 ms). The fake answers
as fast as the real limit allows (10 tokens a second, reported in the headers); to measure
esimctl rather than its pacing, raise both sides: ``fake.token_limit = 10_000`` and
``rate_limit = 10000`` in the account's config.

Test helpers: ``add_esim``, ``seed(n)``, ``use(iccid, bytes)``, ``advance(days=...)``,
``release_processing()``, ``add_bundle``; targeted faults that hit only the purchase
request: ``drop_transaction_next()``, ``fail_transaction_next(status)``,
``hang_transaction_next(seconds)``. New eSIMs: ``new_esims`` (the ICCIDs bought new, in
order), ``install_of(iccid)`` (its matching id and SM-DP+ address); a lost answer is
``drop_transaction_next()``, a short balance ``balance``, a price rise ``charge_override``.

Money-guard switches (issue 16: answers that cannot be understood, prices that move, figures
that cannot be true):

* ``malformed_lookup_next(times=1, body={})``: the next ``times`` ``GET /orders`` (the order
  lookup, and history) answer HTTP 200 with ``body`` (``{}``, ``{"orders": None}``, ``None``,
  an order without its reference…). Sets the count (0 stops it).
* ``malformed_list_next(times=1, body={})``: the same for ``GET /esims`` (the eSIM list).
* ``override(iccid, esim_state=None, **assignment_fields)``: ``esim_state`` replaces the
  eSIM's ``state`` in the list and detail (``"suspended"``); other fields are merged into
  every assignment of that eSIM as served (``initialQuantity=1e30``,
  ``remainingQuantity=-5 * GB``, ``bundleState="SUSPENDED"``). The stored state is untouched.
* ``price_override = {bundle: "…"}``: the bundle's price (``"-1.40"``, ``"1e-18"``,
  ``"1e308"``), listed by the catalogue (as a JSON number where one can carry it, else a
  string) and asked by ``validate`` and ``transaction``.
* ``charge_override = "…"``: what ``validate`` and ``transaction`` say at purchase time,
  unseen in the catalogue (a raise ``"12.00"``, ``"-50"``, ``"0"``, ``"NaN"``): the total,
  subTotal and pricePerUnit of both answers; the transaction records and debits it.
  ``validate_override = "…"`` replaces only the validate answer's total (a provider whose
  price check and charge disagree).
* Counting: ``validations`` holds each validate request's body (no charge, no state
  change); ``orders`` only the transactions, which charged; ``charged_orders`` is their
  number.
"""

from __future__ import annotations

import math
import uuid
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from .base import FakeApi, Reply, Request, _Fault

MB = 1_000_000
GB = 1_000_000_000
DEFAULT_KEY = "eg-test-4f1c9a7e2b"


def iso_nano(dt: datetime) -> str:
    """RFC 3339 with nanoseconds, as order ``createdDate`` values come."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "019Z"


def iso_z(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _bundle(
    name: str,
    description: str,
    data_mb: int | None,
    days: int,
    price: str,
    countries: list[tuple[str, str, str]],
    *,
    profile: str = "Profile 1",
    autostart: bool = True,
) -> dict[str, Any]:
    unlimited = data_mb is None
    return {
        "name": name,
        "description": description,
        "groups": ["Standard Unlimited Essential" if unlimited else "Standard Fixed"],
        "countries": [{"name": n, "region": r, "iso": i} for n, r, i in countries],
        "dataAmount": 0 if unlimited else data_mb,
        "duration": days,
        "speed": ["4G", "5G"],
        "autostart": autostart,
        "unlimited": unlimited,
        "roamingEnabled": [],
        "price": float(price),
        "billingType": "FixedCost",
        "profileName": profile,
        "allowances": [
            {
                "type": "DATA",
                "service": "STANDARD",
                "description": "Data",
                "amount": 0 if unlimited else data_mb,
                "unit": "MB",
                "unlimited": unlimited,
            }
        ],
    }


PT = ("Portugal", "Europe", "PT")
ES = ("Spain", "Europe", "ES")
FR = ("France", "Europe", "FR")
GB_ = ("United Kingdom", "Europe", "GB")

CATALOGUE = [
    _bundle("esim_1GB_7D_PT_V2", "eSIM, 1GB, 7 Days, Portugal, V2", 1000, 7, "1.79", [PT]),
    _bundle("esim_3GB_30D_PT_V2", "eSIM, 3GB, 30 Days, Portugal, V2", 3000, 30, "4.21", [PT]),
    _bundle("esim_5GB_30D_PT_V2", "eSIM, 5GB, 30 Days, Portugal, V2", 5000, 30, "6.50", [PT]),
    _bundle("esim_ULE_7D_PT_V2", "eSIM, Unlimited Essential, 7 Days, Portugal, V2", None, 7,
            "17.50", [PT]),
    # Another network profile: sold for Portugal, never compatible with a Profile 1 eSIM.
    _bundle("esim_2GB_15D_PT_ALT", "eSIM, 2GB, 15 Days, Portugal, Alt", 2000, 15, "2.10", [PT],
            profile="Profile 2"),
    _bundle("esim_10GB_30D_EU_V2", "eSIM, 10GB, 30 Days, Europe, V2", 10000, 30, "12.00",
            [PT, ES, FR]),
    _bundle("esim_3GB_30D_ES_V2", "eSIM, 3GB, 30 Days, Spain, V2", 3000, 30, "4.30", [ES]),
    _bundle("esim_1GB_7D_GB_V2", "eSIM, 1GB, 7 Days, United Kingdom, V2", 1000, 7, "2.28",
            [GB_]),
    # Voice only: no data, so it is no data plan.
    {
        **_bundle("esim_V100_30D_PT_V2", "eSIM, 100 mins, 30 Days, Portugal", 0, 30, "3.00",
                  [PT]),
        "allowances": [{"type": "VOICE", "service": "STANDARD", "description": "Voice",
                        "amount": 100, "unit": "MINS", "unlimited": False}],
    },
]  # fmt: skip


class _TargetedFaults(deque[_Fault]):
    """The base's fault queue, plus faults that wait for the request they are meant for.

    The base pops a fault just after recording the request, so the last recorded request
    is the one being served: a targeted fault fires on it only if its predicate matches.
    """

    def __init__(self, fake: FakeEsimGo) -> None:
        super().__init__()
        self.fake = fake
        self.targeted: list[tuple[Callable[[Request], bool], _Fault]] = []

    def __len__(self) -> int:
        return super().__len__() + len(self.targeted)

    def popleft(self) -> _Fault:
        req = self.fake.requests[-1] if self.fake.requests else None
        for i, (match, fault) in enumerate(self.targeted):
            if req is not None and match(req):
                del self.targeted[i]
                return fault
        if super().__len__():
            return super().popleft()
        return None  # type: ignore[return-value]  # the base reads None as "no fault"


def _is_transaction(req: Request) -> bool:
    if req.method != "POST" or req.path.rstrip("/") != "/orders":
        return False
    try:
        body = req.json()
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("type") == "transaction"


class FakeEsimGo(FakeApi):
    def __init__(self, *, api_key: str = DEFAULT_KEY, currency: str = "USD",
                 balance: str = "100.00") -> None:  # fmt: skip
        self.api_key = api_key
        self.currency = currency
        self.balance = Decimal(balance)
        #: The fake's clock runs with the real one, shifted by ``advance``.
        self.offset = timedelta(0)
        self.catalogue: dict[str, dict[str, Any]] = {b["name"]: dict(b) for b in CATALOGUE}
        self.esims: dict[str, dict[str, Any]] = {}
        self.assignments: list[dict[str, Any]] = []
        self._by_iccid: dict[str, list[dict[str, Any]]] = {}
        self.orders: list[dict[str, Any]] = []
        self.reassigned: list[str] = []
        # variants
        self.catalogue_shape = "wrapped"
        self.orders_shape = "bare"
        self.order_date_field = "createdDate"
        self.unknown_iccid_status = 400
        self.unlimited_data_amount = 0
        self.allowance_unit = "MB"
        self.first_installed = "epoch_ms"
        self.assignment_refs = "order"
        self.organisation_shape = "flat"
        self.smdp_style = "bare"
        self.assignments_shape = "object"
        self.transaction_esims = True
        self.new_esims: list[str] = []
        self.hold_processing = False
        self.insufficient_message = "Insufficient balance to complete order"
        # money-guard switches (see the module docstring)
        self.price_override: dict[str, str] = {}
        self.charge_override: str | None = None
        self.validate_override: str | None = None
        self.validations: list[dict[str, Any]] = []
        self.esim_overrides: dict[str, dict[str, Any]] = {}
        self.bundle_overrides: dict[str, dict[str, Any]] = {}
        self._malformed_lookups = 0
        self._malformed_lookup_body: Any = {}
        self._malformed_lists = 0
        self._malformed_list_body: Any = {}
        # rate limit: a fixed one-second window of tokens
        self.token_limit = 10
        self.costs = {"catalogue": 5, "orders": 2}
        self.enforce_tokens = False
        self._window = 0
        self._spent = 0
        self._serial = 0
        self._assignment_id = 215009000
        super().__init__()
        self._faults = _TargetedFaults(self)

    # -- targeted faults -------------------------------------------------------------------

    def drop_transaction_next(self) -> None:
        """The next purchase is committed, then its answer never arrives."""
        self._faults.targeted.append((_is_transaction, _Fault("drop")))

    def fail_transaction_next(self, status: int = 500, body: Any = None,
                              headers: dict[str, str] | None = None) -> None:  # fmt: skip
        self._faults.targeted.append(
            (_is_transaction, _Fault("status", status, body or {"message": "Internal error"},
                                     headers or {}))
        )  # fmt: skip

    def hang_transaction_next(self, seconds: float) -> None:
        self._faults.targeted.append((_is_transaction, _Fault("hang", seconds=seconds)))

    def fail_when(self, match: Callable[[Request], bool], status: int, body: Any = None,
                  headers: dict[str, str] | None = None) -> None:  # fmt: skip
        self._faults.targeted.append((match, _Fault("status", status, body, headers or {})))

    # -- money-guard switches --------------------------------------------------------------

    def malformed_lookup_next(self, times: int = 1, body: Any = None) -> None:
        with self.lock:
            self._malformed_lookups = times
            self._malformed_lookup_body = {} if body is None else body

    def malformed_list_next(self, times: int = 1, body: Any = None) -> None:
        with self.lock:
            self._malformed_lists = times
            self._malformed_list_body = {} if body is None else body

    def override(self, iccid: str, esim_state: str | None = None, **fields: Any) -> None:
        with self.lock:
            if esim_state is not None:
                self.esim_overrides.setdefault(iccid, {})["state"] = esim_state
            if fields:
                self.bundle_overrides.setdefault(iccid, {}).update(fields)

    @property
    def charged_orders(self) -> int:
        return len(self.orders)

    def price_of(self, name: str) -> Decimal:
        """The bundle's current price (``price_override`` first)."""
        if name in self.price_override:
            return Decimal(self.price_override[name])
        return Decimal(str(self.catalogue[name]["price"]))

    @staticmethod
    def _number(d: Decimal) -> Any:
        """A JSON number where a float carries it, else the decimal's text."""
        try:
            f = float(d)
        except (OverflowError, ValueError):
            return str(d)
        return f if math.isfinite(f) or not d.is_finite() else str(d)

    # -- seeding ---------------------------------------------------------------------------

    def add_bundle(self, name: str, description: str, data_mb: int | None, days: int,
                   price: str, countries: list[str], **kw: Any) -> None:  # fmt: skip
        self.catalogue[name] = _bundle(
            name, description, data_mb, days, price, [(c, "Europe", c) for c in countries], **kw
        )

    def _next_iccid(self) -> str:
        self._serial += 1
        return f"89445385320081{self._serial:05d}"

    def add_esim(
        self,
        iccid: str | None = None,
        *,
        bundle: str | None = "esim_3GB_30D_PT_V2",
        used: int = 0,
        state: str = "active",
        started: timedelta = timedelta(days=2),
        customer_ref: str | None = None,
        queued: tuple[str, ...] = (),
        profile: str = "Profile 1",
        esim_state: str = "active",
        installed: bool = True,
    ) -> str:
        """An eSIM with one bundle in ``state`` (``used`` bytes consumed) and queued ones;
        ``installed=False``: never installed yet (``profileStatus: Released``)."""
        with self.lock:
            iccid = iccid or self._next_iccid()
            code = uuid.uuid4().hex.upper()
            self.esims[iccid] = {
                "iccid": iccid,
                "customerRef": customer_ref or "",
                "msisdn": "",
                "lastAction": "Bundle Applied",
                "actionDate": iso_z(self.now - started),
                "physical": False,
                "assignedDate": iso_z(self.now - started - timedelta(hours=3)),
                "state": esim_state,
                "profileName": profile,
                "installed": self.now - started if installed else None,
                "profileStatus": "Installed" if installed else "Released",
                "matchingId": f"JQ-{code[:6]}-{code[6:14]}",
                "smdpAddress": "rsp.esim-go.example",
            }
            if bundle is not None:
                a = self._assign(iccid, bundle, reference=str(uuid.uuid4()),
                                 at=self.now - started)  # fmt: skip
                if state in ("active", "depleted", "expired"):
                    self._start(a, at=self.now - started)
                    a["remaining"] = max(a["initial"] - used, 0)
                    if state == "depleted":
                        a["remaining"] = 0
                    a["state"] = state
                    if state == "expired":
                        a["end"] = self.now - timedelta(hours=1)
                elif state in ("queued", "lapsed", "processing"):
                    a["state"] = state
            for name in queued:
                q = self._assign(iccid, name, reference=str(uuid.uuid4()), at=self.now)
                q["state"] = "queued"
            return iccid

    def seed(self, n: int, *, bundle: str = "esim_3GB_30D_PT_V2") -> list[str]:
        """N eSIMs in varied states (benchmarks seed 40 to 1000)."""
        out = []
        for i in range(n):
            kind = i % 10
            if kind == 7:
                out.append(self.add_esim(bundle=bundle, state="depleted"))
            elif kind == 8:
                out.append(self.add_esim(bundle="esim_ULE_7D_PT_V2", used=3 * GB))
            elif kind == 9:
                out.append(self.add_esim(bundle=bundle, state="queued"))
            else:
                out.append(self.add_esim(bundle=bundle, used=(i * 137 % 30) * 100 * MB))
        return out

    # -- the simulated network ---------------------------------------------------------------

    def _assign(self, iccid: str, name: str, *, reference: str, at: datetime,
                index: int = 0) -> dict[str, Any]:  # fmt: skip
        b = self.catalogue[name]
        self._assignment_id += 1
        data = 0 if b["unlimited"] else int(b["dataAmount"]) * MB
        a = {
            "id": str(self._assignment_id),
            "iccid": iccid,
            "name": name,
            "initial": data,
            "remaining": data,
            "state": "processing",
            "assigned_at": at,
            "start": None,
            "end": None,
            "reference": f"{reference}-{index}",
            "unlimited": bool(b["unlimited"]),
        }
        self.assignments.append(a)
        self._by_iccid.setdefault(iccid, []).append(a)
        return a

    def _start(self, a: dict[str, Any], *, at: datetime | None = None) -> None:
        at = at or self.now
        a["state"] = "active"
        a["start"] = at
        a["end"] = at + timedelta(days=int(self.catalogue[a["name"]]["duration"]))

    def _of(self, iccid: str) -> list[dict[str, Any]]:
        return self._by_iccid.get(iccid, [])

    def _tick(self, iccid: str) -> None:
        """Move the eSIM's bundles along their state machine as time and usage dictate."""
        mine = self._of(iccid)
        for a in mine:
            if a["state"] == "processing" and not self.hold_processing:
                a["state"] = "queued"
            if a["state"] == "active" and a["end"] is not None and a["end"] <= self.now:
                a["state"] = "expired"
        if not any(a["state"] == "active" for a in mine):
            for a in sorted(mine, key=lambda x: x["assigned_at"]):
                if a["state"] == "queued":
                    # autostart bundles begin at once once nothing runs before them
                    if self.catalogue[a["name"]].get("autostart", True) and any(
                        x["state"] in ("depleted", "expired") for x in mine
                    ):
                        self._start(a)
                    break

    def use(self, iccid: str, nbytes: int) -> None:
        """Consume data; a depleted bundle hands over to the next queued one."""
        with self.lock:
            self._tick(iccid)
            while nbytes > 0:
                active = next((a for a in self._of(iccid) if a["state"] == "active"), None)
                if active is None:
                    queued = [a for a in self._of(iccid) if a["state"] == "queued"]
                    if not queued:
                        return
                    self._start(min(queued, key=lambda x: x["assigned_at"]))
                    continue
                if active["unlimited"]:
                    return
                take = min(nbytes, active["remaining"])
                active["remaining"] -= take
                nbytes -= take
                if active["remaining"] == 0:
                    active["state"] = "depleted"
                    if nbytes == 0:
                        self._tick(iccid)

    @property
    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, **delta: float) -> None:
        with self.lock:
            self.offset += timedelta(**delta)

    def release_processing(self) -> None:
        with self.lock:
            self.hold_processing = False

    # -- plumbing ----------------------------------------------------------------------------

    def route(self, method: str, pattern: str, handler: Callable[[Request], Reply]) -> None:
        super().route(method, pattern, self._guarded(handler))

    def _cost(self, req: Request) -> int:
        first = req.path.strip("/").split("/")[0]
        return self.costs.get(first, 1)

    def _ratelimit_headers(self, cost: int) -> dict[str, str]:
        now = datetime.now(UTC)
        return {
            "X-Ratelimit-Limit": str(self.token_limit),
            "X-Ratelimit-Remaining": str(max(self.token_limit - self._spent, 0)),
            "X-Ratelimit-Reset": iso_z(now.replace(microsecond=0) + timedelta(seconds=1)),
            "X-Ratelimit-Cost": str(cost),
        }

    def _guarded(self, handler: Callable[[Request], Reply]) -> Callable[[Request], Reply]:
        def serve(req: Request) -> Reply:
            key = req.header("x-api-key") or req.arg("api_key")
            if self.bad_credentials or key != self.api_key:
                return Reply(403, {"message": "Forbidden"})
            cost = self._cost(req)
            second = int(datetime.now(UTC).timestamp())
            if second != self._window:
                self._window, self._spent = second, 0
            if self.enforce_tokens and self._spent + cost > self.token_limit:
                self.stats["429"] += 1
                return self.rate_limited_reply(1.0)
            self._spent += cost
            reply = handler(req)
            reply.headers = {**self._ratelimit_headers(cost), **reply.headers}
            return reply

        return serve

    def rate_limited_reply(self, retry_after: float) -> Reply:
        return Reply(
            429,
            {"message": "Rate limit exceeded"},
            {"Retry-After": f"{max(1, round(retry_after))}", **self._ratelimit_headers(0)},
        )

    def not_found(self, req: Request) -> Reply:
        return Reply(404, {"message": "Not Found"})

    def _unknown_iccid(self, iccid: str) -> Reply:
        if self.unknown_iccid_status == 403:
            return Reply(403, {"message": "Forbidden"})
        return Reply(400, {"message": f"ICCID {iccid} not found"})

    @staticmethod
    def _bad(message: str) -> Reply:
        return Reply(400, {"message": message})

    @staticmethod
    def _page(req: Request, size_param: str, default: int, allowed: tuple[int, ...] | None,
              rows: list[Any]) -> list[Any] | Reply:  # fmt: skip
        try:
            page = int(req.arg("page", "1") or 1)
            size = int(req.arg(size_param, str(default)) or default)
        except ValueError:
            return Reply(400, {"message": "Invalid pagination parameters"})
        if page < 1 or (allowed is not None and size not in allowed) or size < 1:
            return Reply(400, {"message": f"Invalid value for {size_param}"})
        return rows[(page - 1) * size : page * size]

    # -- routes ------------------------------------------------------------------------------

    def register(self) -> None:
        self.route("GET", "/organisation", self.get_organisation)
        self.route("GET", "/esims", self.list_esims)
        self.route("GET", "/esims/assignments", self.get_assignments)  # before {iccid}
        self.route("GET", "/esims/{iccid}", self.get_esim)
        self.route("GET", "/esims/{iccid}/bundles", self.get_bundles)
        self.route("GET", "/esims/{iccid}/bundles/{name}", self.get_bundle)
        self.route("GET", "/esims/{iccid}/compatible/{bundle}", self.compatible)
        self.route("GET", "/catalogue", self.get_catalogue)
        self.route("GET", "/catalogue/bundle/{name}", self.get_catalogue_bundle)
        self.route("GET", "/orders", self.list_orders)
        self.route("GET", "/orders/{ref}", self.get_order)
        self.route("POST", "/orders", self.post_order)

    def get_organisation(self, req: Request) -> Reply:
        org = {
            "name": "Trip Desk Ltd",
            # The real answer carries the key itself: the client must never show it.
            "apiKey": self.api_key,
            "taxLiable": "false",
            "country": "GB",
            "currency": self.currency,
            "balance": float(self.balance),
            "testCredit": 0,
            "testCreditExpiry": "",
            "groups": ["Standard Fixed", "Standard Unlimited Essential"],
            "users": [],
        }
        if self.organisation_shape == "wrapped":
            return Reply(200, {"organisations": [org]})
        return Reply(200, org)

    def _summary(self, e: dict[str, Any]) -> dict[str, Any]:
        out = {k: e[k] for k in ("iccid", "customerRef", "msisdn", "lastAction", "actionDate",
                                 "physical", "assignedDate", "state")}  # fmt: skip
        out.update(self.esim_overrides.get(e["iccid"], {}))
        return out

    def list_esims(self, req: Request) -> Reply:
        if self._malformed_lists > 0:
            self._malformed_lists -= 1
            return Reply(200, self._malformed_list_body)
        rows = sorted(self.esims.values(), key=lambda e: e["iccid"])
        page = self._page(req, "perPage", 25, (10, 25, 50, 100), rows)
        if isinstance(page, Reply):
            return page
        return Reply(200, {"esims": [self._summary(e) for e in page]})

    def get_esim(self, req: Request) -> Reply:
        iccid = req.params["iccid"]
        e = self.esims.get(iccid)
        if e is None:
            return self._unknown_iccid(iccid)
        installed = e["installed"]
        body = {
            "iccid": iccid,
            "msisdn": "",
            "pin": "0000",
            "puk": "12345678",
            **self._install_json(iccid),
            "profileStatus": e["profileStatus"],
            "customerRef": e["customerRef"],
            "brandingId": "(default)",
            "profileName": e["profileName"],
            "state": e["state"],
        }
        if installed is not None:
            body["firstInstalledDateTime"] = (
                int(installed.timestamp() * 1000)
                if self.first_installed == "epoch_ms"
                else iso_z(installed)
            )
        if "installUrl" in req.query.get("additionalFields", []):
            lpa = f"LPA:1${e['smdpAddress']}${e['matchingId']}"
            body["appleInstallUrl"] = (
                "https://esimsetup.apple.com/esim_qrcode_provisioning?carddata=" + lpa
            )
            body["androidInstallUrl"] = (
                "https://esimsetup.android.com/esim_qrcode_provisioning?carddata=" + lpa
            )
        body.update(self.esim_overrides.get(iccid, {}))
        return Reply(200, body)

    def install_of(self, iccid: str) -> tuple[str, str]:
        """The eSIM's matching id and SM-DP+ host: what its activation code is made of."""
        e = self.esims[iccid]
        return e["matchingId"], e["smdpAddress"]

    def _install_json(self, iccid: str) -> dict[str, Any]:
        e = self.esims[iccid]
        smdp = e["smdpAddress"]
        return {
            "matchingId": e["matchingId"],
            "smdpAddress": f"http://{smdp}" if self.smdp_style == "url" else smdp,
        }

    def get_assignments(self, req: Request) -> Reply:
        """``GET /esims/assignments?reference=``: the eSIMs of an order (or of an
        assignment reference), as JSON when asked by ``Accept``, else CSV."""
        ref = req.arg("reference") or ""
        if not ref:
            return self._bad("Missing required parameter: reference")
        rows: list[tuple[str, str]] = []  # (iccid, bundle)
        for o in self.orders:
            if o["orderReference"] == ref:
                rows += [(i, line["item"]) for line in o["lines"] for i in line["iccids"]]
        rows += [(a["iccid"], a["name"]) for a in self.assignments if a["reference"] == ref]
        if not rows:
            return self._bad(f"No eSIMs found for reference {ref}")
        if any(self.esims[i]["state"] == "deactivated" for i, _ in rows):
            return Reply(410, {"message": "eSIM has been deactivated"})
        if "application/json" not in (req.header("accept") or ""):
            lines = ['"ICCID","Matching ID","RSP URL","Bundle"']
            for i, b in rows:
                x = self._install_json(i)
                lines.append(f'"{i}","{x["matchingId"]}","{x["smdpAddress"]}","{b}"')
            return Reply(200, raw=("\n".join(lines) + "\n").encode(),
                         headers={"Content-Type": "text/csv"})  # fmt: skip
        if self.assignments_shape == "list":
            out = []
            for i, b in rows:
                x = self._install_json(i)
                out.append({"iccid": i, "matchingId": x["matchingId"],
                            "rspUrl": x["smdpAddress"], "bundle": b, "reference": ref})  # fmt: skip
            return Reply(200, out)
        i = rows[0][0]
        e = self.esims[i]
        body = {"iccid": i, **self._install_json(i), "profileStatus": e["profileStatus"],
                "pin": "0000", "puk": "12345678"}  # fmt: skip
        if e["installed"] is not None:
            body["firstInstalledDateTime"] = iso_z(e["installed"])
        return Reply(200, body)

    def _assignment_json(self, a: dict[str, Any]) -> dict[str, Any]:
        factor = MB if self.allowance_unit == "MB" else 1
        out: dict[str, Any] = {
            "id": a["id"],
            "assignmentReference": a["reference"],
            "callTypeGroup": "data",
            "initialQuantity": a["initial"],
            "remainingQuantity": a["remaining"],
            "assignmentDateTime": iso_nano(a["assigned_at"])[:-7] + "Z",  # 5 digits, like .34523Z
            "bundleState": a["state"],
            "unlimited": a["unlimited"],
            "allowances": [
                {
                    "type": "DATA",
                    "service": "STANDARD",
                    "description": "Data",
                    "initialAmount": a["initial"] // factor,
                    "remainingAmount": a["remaining"] // factor,
                    "unit": self.allowance_unit,
                    "unlimited": a["unlimited"],
                }
            ],
        }
        if a["start"] is not None:
            out["startTime"] = iso_z(a["start"])
        if a["end"] is not None:
            out["endTime"] = iso_z(a["end"])
        out.update(self.bundle_overrides.get(a["iccid"], {}))
        return out

    def get_bundles(self, req: Request) -> Reply:
        iccid = req.params["iccid"]
        if iccid not in self.esims:
            return self._unknown_iccid(iccid)
        self._tick(iccid)
        include_used = (req.arg("includeUsed") or "").lower() == "true"
        try:
            limit = int(req.arg("limit", "15") or 15)
        except ValueError:
            return self._bad("Invalid value for limit")
        if not 1 <= limit <= 200:
            return self._bad("limit must be between 1 and 200")
        rows = [
            a for a in sorted(self._of(iccid), key=lambda x: x["assigned_at"], reverse=True)
            if include_used or a["state"] in ("processing", "queued", "active")
        ][:limit]  # fmt: skip
        grouped: dict[str, list[dict[str, Any]]] = {}
        for a in rows:
            grouped.setdefault(a["name"], []).append(self._assignment_json(a))
        return Reply(
            200,
            {
                "bundles": [
                    {"name": n, "description": self.catalogue[n]["description"], "assignments": x}
                    for n, x in grouped.items()
                ]
            },
        )

    def get_bundle(self, req: Request) -> Reply:
        iccid, name = req.params["iccid"], req.params["name"]
        if iccid not in self.esims:
            return self._unknown_iccid(iccid)
        self._tick(iccid)
        mine = [a for a in self._of(iccid) if a["name"] == name]
        if not mine:
            return self._bad(f"Bundle {name} not assigned to eSIM {iccid}")
        latest = max(mine, key=lambda x: x["assigned_at"])
        return Reply(200, {"assignments": [self._assignment_json(latest)]})

    def _compatible(self, iccid: str, name: str) -> bool:
        e = self.esims[iccid]
        b = self.catalogue[name]
        return e["state"] != "deactivated" and b.get("profileName") == e["profileName"]

    def compatible(self, req: Request) -> Reply:
        iccid, name = req.params["iccid"], req.params["bundle"]
        if iccid not in self.esims:
            return self._unknown_iccid(iccid)
        if name not in self.catalogue:
            return self._bad(f"Bundle {name} does not exist")
        return Reply(200, {"compatible": self._compatible(iccid, name)})

    def _catalogue_json(self, b: dict[str, Any]) -> dict[str, Any]:
        out = dict(b)
        if out["unlimited"]:
            out["dataAmount"] = self.unlimited_data_amount
        if b["name"] in self.price_override:
            out["price"] = self._number(self.price_of(b["name"]))
        return out

    def get_catalogue(self, req: Request) -> Reply:
        rows = list(self.catalogue.values())
        countries = req.arg("countries")
        if countries:
            wanted = {c.strip().upper() for c in countries.split(",")}
            rows = [b for b in rows if wanted & {c["iso"] for c in b["countries"]}]
        page = self._page(req, "perPage", 50, None, rows)
        if isinstance(page, Reply):
            return page
        body = [self._catalogue_json(b) for b in page]
        if self.catalogue_shape == "wrapped":
            return Reply(200, {"bundles": body, "pageCount": 1, "rows": len(rows)})
        return Reply(200, body)

    def get_catalogue_bundle(self, req: Request) -> Reply:
        b = self.catalogue.get(req.params["name"])
        if b is None:
            return self._bad(f"Bundle {req.params['name']} does not exist")
        return Reply(200, self._catalogue_json(b))

    # -- orders ----------------------------------------------------------------------------

    def _order_json(self, o: dict[str, Any], include_iccids: bool) -> dict[str, Any]:
        lines = []
        for line in o["lines"]:
            item = {k: v for k, v in line.items() if k not in ("iccids", "esims")}
            if include_iccids:
                item["iccids"] = line["iccids"]
                item["esims"] = [{"iccid": i, **self._install_json(i)} for i in line["iccids"]]
            lines.append(item)
        return {
            "order": lines,
            "total": self._number(o["total"]),
            "currency": self.currency,
            "status": o["status"],
            "statusMessage": o["statusMessage"],
            "orderReference": o["orderReference"],
            self.order_date_field: iso_nano(o["created"]),
            "assigned": o["assigned"],
            "sourceIP": "127.0.0.1",
            "runningBalance": o["runningBalance"],
        }

    def list_orders(self, req: Request) -> Reply:
        if self._malformed_lookups > 0:
            self._malformed_lookups -= 1
            return Reply(200, self._malformed_lookup_body)
        rows = sorted(self.orders, key=lambda o: o["created"], reverse=True)
        for raw in req.query.get("createdAt", []):
            op, _, value = raw.partition(":") if ":" in raw[:4] else ("eq", "", raw)
            try:
                bound = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                return self._bad("Invalid value for parameter createdAt")
            tests: dict[str, Callable[[datetime], bool]] = {
                "gte": lambda t, b=bound: t >= b,
                "gt": lambda t, b=bound: t > b,
                "lte": lambda t, b=bound: t <= b,
                "lt": lambda t, b=bound: t < b,
                "eq": lambda t, b=bound: t == b,
            }
            if op not in tests:
                return self._bad("Invalid value for parameter createdAt")
            rows = [o for o in rows if tests[op](o["created"])]
        page = self._page(req, "limit", 10, None, rows)
        if isinstance(page, Reply):
            return page
        include = (req.arg("includeIccids") or "").lower() == "true"
        body = [self._order_json(o, include) for o in page]
        if self.orders_shape == "wrapped":
            return Reply(200, {"orders": body})
        if self.orders_shape == "single":
            # v2.4's generated client types the answer as one order object; with no order
            # there is none to give, so an empty list ({} would be an unreadable answer).
            return Reply(200, body[0] if body else [])
        return Reply(200, body)

    def get_order(self, req: Request) -> Reply:
        for o in self.orders:
            if o["orderReference"] == req.params["ref"]:
                return Reply(200, self._order_json(o, True))
        return self._bad(f"No order found with reference {req.params['ref']}")

    def post_order(self, req: Request) -> Reply:
        try:
            body = req.json()
        except ValueError:
            return self._bad("Invalid request body")
        if not isinstance(body, dict):
            return self._bad("Invalid request body")
        kind = body.get("type", "validate")
        if kind not in ("validate", "transaction"):
            return self._bad("Invalid value for type: must be one of validate, transaction")
        assign = bool(body.get("assign"))
        raw_lines = body.get("order")
        if not isinstance(raw_lines, list) or not raw_lines:
            return self._bad("Missing or invalid required field: order")
        lines = []
        for line in raw_lines:
            name = line.get("item")
            if name not in self.catalogue:
                return self._bad(f"Bundle {name} does not exist")
            iccids = [str(i) for i in line.get("iccids") or []]
            if iccids and not assign:
                return self._bad("eSIM ICCIDs can only be specified when assign is set to true")
            qty = int(line.get("quantity", len(iccids) or 1))
            if iccids and qty != len(iccids):
                return self._bad(
                    f"Quantity ({qty}) must match the number of ICCIDs provided ({len(iccids)})"
                )
            for iccid in iccids:
                if iccid not in self.esims:
                    return self._unknown_iccid(iccid)
                if self.esims[iccid]["state"] == "deactivated":
                    return self._bad(f"eSIM {iccid} has been deactivated")
                if not line.get("allowReassign") and not self._compatible(iccid, name):
                    return self._bad(
                        f"Bundle {name} is not compatible with eSIM {iccid}. "
                        "Set allowReassign to true to assign a new profile."
                    )
            lines.append((name, qty, iccids, bool(line.get("allowReassign"))))

        def unit(name: str) -> Decimal:
            if self.charge_override is not None:
                return Decimal(self.charge_override)
            return self.price_of(name)

        total = sum((unit(n) * q for n, q, _, _ in lines), Decimal(0))
        items = [
            {
                "type": "bundle",
                "item": n,
                "quantity": q,
                "subTotal": self._number(unit(n) * q),
                "pricePerUnit": self._number(unit(n)),
                "AllowReassign": r,
            }
            for n, q, _, r in lines
        ]
        if kind == "validate":
            self.validations.append(body)
            said = Decimal(self.validate_override) if self.validate_override else total
            return Reply(
                200,
                {
                    "order": items,
                    "total": self._number(said),
                    "valid": True,
                    "currency": self.currency,
                    "createdDate": iso_nano(self.now),
                    "assigned": assign,
                },
            )
        if total.is_finite():
            if total > self.balance:
                return self._bad(self.insufficient_message)
            self.balance -= total
        ref = str(uuid.uuid4())
        created = self.now
        for item, (name, qty, iccids, reassign) in zip(items, lines, strict=True):
            item["iccids"] = []
            targets = iccids or ([None] * qty if assign else [])
            for i, iccid in enumerate(targets):
                if iccid is None or (reassign and not self._compatible(iccid, name)):
                    new = self.add_esim(bundle=None, profile=self.catalogue[name]["profileName"],
                                        installed=False, started=timedelta(0))  # fmt: skip
                    if iccid is not None:
                        self.reassigned.append(new)
                    else:
                        self.new_esims.append(new)
                    iccid = new
                a_ref = ref if self.assignment_refs == "order" else str(uuid.uuid4())
                self._assign(iccid, name, reference=a_ref, at=created, index=i)
                item["iccids"].append(iccid)
        n = sum(len(i["iccids"]) for i in items)
        order = {
            "orderReference": ref,
            "created": created,
            "lines": items,
            "total": total,
            "status": "completed",
            "statusMessage": f"Order completed: {n} eSIM{'s' if n != 1 else ''} assigned",
            "assigned": assign,
            "runningBalance": f"{self.balance:.2f}",
        }
        self.orders.append(order)
        return Reply(200, self._order_json(order, self.transaction_esims))
