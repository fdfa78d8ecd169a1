"""A stateful fake of the eSIM Access open API v1 on 127.0.0.1.

Built from the documented requests and answers (see docs/providers/esimaccess.md):
every endpoint is ``POST /api/v1/open/...`` with a JSON body and answers HTTP 200 with the
envelope ``{success, errorCode, errorMsg, obj}``; requests are signed with HMAC-SHA256 over
``RT-Timestamp + RT-RequestID + RT-AccessCode + body``. State: eSIMs (with their package
lists), the account balance, top-ups and orders. A top-up stacks at once (data and days
add up) and shows in the next ``/esim/query`` and ``/esim/usage/query``.

Switches beyond the base ones (``tests/fakes/base.py``):

* ``bad_credentials``: every request gets ``101003`` (signature mismatch);
* ``require_signature`` (default True): without ``RT-Signature`` → ``000101``; a timestamp
  more than 5 minutes off → ``101001``. False is the lenient reading (AccessCode alone);
* ``sign_key``: ``"secret"`` (the official test vector) or ``"access_code"`` (the agent
  notes' reading) — which key the fake checks signatures with;
* ``require_filter``: ``/esim/query`` without orderNo/iccid/esimTranNo/startTime → ``000105``;
* ``usage_bare_list``: ``/esim/usage/query`` answers ``obj`` as a bare list (EA-REF);
* ``success_as_string`` / ``error_field``: ``"true"`` instead of ``true``; ``errorMessage``
  instead of ``errorMsg``;
* ``topups_listed`` / ``package_tx_ids``: whether top-ups appear in ``packageList`` and
  whether its items carry ``esimTranNo``/``transactionId`` (both undocumented);
* ``duplicate_mode``: a reused transactionId replays the first answer (``"replay"``) or is
  refused with ``310402`` (``"error"``);
* ``busy_next(n)``: HTTP 200 with ``900001``; ``rate_limited_next(n)``: HTTP 429;
* ``fault_on(endpoint, kind, ...)``: a base fault (``drop``, ``hang``, ``status``,
  ``malformed``, ``truncated``) for the next request to one endpoint only, e.g. the
  purchase. Meant for a request the client sends alone (a purchase is).

Money-guard switches (issue 16: answers that cannot be understood, prices that move, figures
that cannot be true):

* ``malformed_lookup_next(times=1, body=None, *, after_topup=False)``: the next ``times``
  *lookups* (``/esim/query`` filtered by ``iccid``, ``esimTranNo`` or ``orderNo``, as an
  order lookup and the pre-purchase read are) answer HTTP 200 with ``body`` (default
  ``{"success": true, "errorCode": "0", "errorMsg": null, "obj": null}``). With
  ``after_topup`` they start only once a ``/esim/topup`` request has been served, so the
  read before the purchase is left alone. Sets the count (0 stops it).
* ``malformed_list_next(times=1, body=None)``: the same for the next unfiltered
  ``/esim/query`` (the account's list); default body ``obj: {}``.
* ``override(iccid, **fields)``: raw fields merged into that eSIM's ``/esim/query`` record
  as served (``totalVolume=1e30``, ``orderUsage=-5 * GB``, ``totalVolume=1.5``,
  ``esimStatus="SUSPENDED"``, ``expiredTime=1e30``); ``orderUsage``/``totalVolume`` are
  served by ``/esim/usage/query`` too (as ``dataUsage``/``totalData``). The stored state
  is untouched.
* ``price_override = {package_code: "…"}``: the package's price in major units (``"-1.40"``,
  ``"1e-18"``, ``"1e308"``), listed by ``/package/list`` (×10,000: an integer when whole,
  else a string) and asked by the top-up.
* ``charge_override = "…"``: what the fake asks and charges at purchase time, unseen in the
  listing (a raise ``"2.00"`` between listing and buying, ``"-50"``, ``"0"``). A top-up
  carrying ``amount`` is checked against it like against any current price: a different
  ``amount`` is refused with ``200005`` and nothing is charged. The top-up answer carries no
  price (as documented); what was charged is in ``topups[i]["price"]`` (1/10,000 USD).

New eSIMs (``/esim/order``, issue 15): the order is paid at once and answers ``orderNo``;
its profiles are allocated asynchronously, as documented. Until then ``/esim/query`` by that
``orderNo`` answers ``200010`` and the account's list does not show them; once allocated
each is an eSIM in ``GOT_RESOURCE``/``RELEASED`` (not installed) carrying the order's
``transactionId`` and ``ac``. A reused ``transactionId`` replays the order (or ``310402``,
with ``duplicate_mode = "error"``); an unknown ``orderNo`` is ``310272``. Switches:

* ``allocation_delay`` (seconds, default 0: allocated by the first query after the order);
* ``hold_allocation``: allocate nothing until ``allocate_now()``;
* ``balance`` too low → ``200007``; ``charge_override`` / ``price_override`` move the price:
  a package ``price`` that differs → ``200005``, an ``amount`` that differs → ``200006``;
* ``fault_on("/esim/order", "drop")``: the order is made, its answer lost.

``orders`` (transactionId → ``orderNo``, ``price`` charged, ``allocated``) records them.

``seed(n)`` adds N eSIMs in use (benchmarks seed 40-1000); ``add_esim`` adds one in any
state; ``use_data`` consumes data (usage settles with a later ``lastUpdateTime``).
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import itertools
import time
from collections import deque
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from .base import FakeApi, Reply, Request, _Fault

API = "/api/v1/open"
GB = 1024**3
MB = 1024**2
ACCESS_CODE = "ea-access-0123456789"
SECRET_KEY = "ea-secret-abcdefghij"
TIMESTAMP_WINDOW_MS = 5 * 60 * 1000


def fmt(dt: datetime | None) -> str | None:
    """The API's time format: ``2025-06-16T08:02:11+0000``."""
    return None if dt is None else dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


def parse(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(UTC)


def _pkg(
    code: str,
    name: str,
    gb: float,
    days: int,
    price: int,
    location: str,
    location_code: str | None = None,
    *,
    data_type: int = 1,
    top_up_type: int = 2,
    fup: str | None = None,
) -> dict[str, Any]:
    first = location.split(",")[0]
    return {
        "packageCode": code,
        "slug": code.lower(),
        "name": name,
        "price": price,
        "retailPrice": price * 2,
        "currencyCode": "USD",
        "volume": int(gb * GB),
        "smsStatus": 0,
        "dataType": data_type,
        "unusedValidTime": 180,
        "duration": days,
        "durationUnit": "DAY",
        "location": location,
        "locationCode": location_code or location,
        "description": name,
        "activeType": 2,
        "favorite": False,
        "speed": "3G/4G/5G",
        "ipExport": "NL/FR",
        "supportTopUpType": top_up_type,
        "fupPolicy": fup if fup is not None else "384 Kbps" if data_type in (2, 4) else "",
        "locationNetworkList": [
            {
                "locationName": first,
                "locationLogo": f"/img/flags/{first.lower()}.png",
                "locationCode": first,
                "operatorList": [{"operatorName": "Vodafone", "networkType": "4G"}],
            }
        ],
    }


EU = "ES,FR,DE,IT,PT"
BASE_PACKAGES = [
    _pkg("CKH002", "Spain 3GB 30Days", 3, 30, 18000, "ES"),
    _pkg("CKH003", "Spain 5GB 30Days", 5, 30, 27000, "ES"),
    _pkg("JC016", "Japan 1GB 7Days", 1, 7, 10000, "JP"),
    _pkg("JC017", "Japan 3GB 15Days", 3, 15, 21000, "JP"),
    _pkg("JPD01", "Japan 1GB/Day", 1, 1, 15000, "JP", data_type=2, top_up_type=3),
    _pkg("JPU01", "Japan Unlimited/Day", 2, 1, 39000, "JP", data_type=4, top_up_type=3),
    _pkg("EU42_10", "Europe (5 areas) 10GB 30Days", 10, 30, 95000, EU, "EU-5"),
    # Day passes of each dataType (issue 18): price and volume per day, bought by periodNum.
    _pkg(
        "GED01", "Georgia 1GB/Day FUP1Mbps", 1, 1, 12000, "GE", data_type=2, top_up_type=3, fup=""
    ),
    _pkg("GEC01", "Georgia 1GB/Day", 1, 1, 9000, "GE", data_type=3, top_up_type=3),
    _pkg("GEU01", "Georgia Unlimited/Day", 2, 1, 30000, "GE", data_type=4, top_up_type=3),
]
TOPUP_PACKAGES = [
    _pkg("TOPUP_CKH002", "Spain 3GB 30Days", 3, 30, 18000, "ES"),
    _pkg("TOPUP_CKH491", "Spain 1GB 7Days", 1, 7, 7000, "ES"),
    _pkg("TOPUP_JC016", "Japan 1GB 7Days", 1, 7, 10000, "JP"),
    _pkg("TOPUP_JC017", "Japan 3GB 15Days", 3, 15, 21000, "JP"),
    _pkg("TOPUP_JPD01", "Japan 1GB/Day", 1, 1, 15000, "JP", data_type=2, top_up_type=3),
    _pkg("TOPUP_EU42_5", "Europe (5 areas) 5GB 30Days", 5, 30, 52000, EU, "EU-5"),
    _pkg(
        "TOPUP_GED01",
        "Georgia 1GB/Day FUP1Mbps",
        1,
        1,
        12000,
        "GE",
        data_type=2,
        top_up_type=3,
        fup="",
    ),
    _pkg("TOPUP_GEC01", "Georgia 1GB/Day", 1, 1, 9000, "GE", data_type=3, top_up_type=3),
    _pkg("TOPUP_GE3_30", "Georgia 3GB 30Days", 3, 30, 40000, "GE"),
]

_TERMINAL = {"UNUSED_EXPIRED", "USED_EXPIRED", "CANCEL", "REVOKE", "REVOKED", "SUSPENDED"}


class FakeEsimAccess(FakeApi):
    def __init__(
        self,
        *,
        access_code: str = ACCESS_CODE,
        secret_key: str = SECRET_KEY,
        balance: int = 500_000,
    ) -> None:
        self.access_code = access_code
        self.secret_key = secret_key
        #: 1/10,000 USD; a Decimal once a fractional ``price_override`` was charged.
        self.balance: int | Decimal = balance
        self.require_signature = True
        self.sign_key = "secret"
        self.require_filter = False
        self.usage_bare_list = False
        self.success_as_string = False
        self.error_field = "errorMsg"
        self.topups_listed = True
        self.package_tx_ids = True
        self.duplicate_mode = "replay"
        self.base_packages = copy.deepcopy(BASE_PACKAGES)
        self.topup_packages = copy.deepcopy(TOPUP_PACKAGES)
        self.esims: dict[str, dict[str, Any]] = {}  # esimTranNo -> the documented record
        self.last_update: dict[str, datetime] = {}  # esimTranNo -> usage settlement time
        self.topups: list[dict[str, Any]] = []
        self.topup_answers: dict[str, dict[str, Any]] = {}  # transactionId -> answer
        self.orders: dict[str, dict[str, Any]] = {}  # transactionId -> {orderNo, ...}
        self.allocation_delay = 0.0
        self.hold_allocation = False
        self._seq = itertools.count(1)
        self._targeted: dict[str, deque[_Fault]] = {}
        # money-guard switches (see the module docstring)
        self.price_override: dict[str, str] = {}
        self.charge_override: str | None = None
        self.overrides: dict[str, dict[str, Any]] = {}
        self._malformed_lookups = 0
        self._malformed_lookup_body: Any = None
        self._lookups_after_topup = False
        self._malformed_lists = 0
        self._malformed_list_body: Any = None
        super().__init__()

    # -- seeding -----------------------------------------------------------------------------

    def _tran_no(self) -> str:
        return f"2506{next(self._seq):010d}"

    def package(self, code: str, *, topup: bool = False) -> dict[str, Any]:
        pool = self.topup_packages if topup else self.base_packages
        for p in pool:
            if code in (p["packageCode"], p["slug"]):
                return p
        raise KeyError(code)

    def add_esim(
        self,
        *,
        iccid: str | None = None,
        package: str = "CKH002",
        status: str = "IN_USE",
        used: int = 0,
        created: datetime | None = None,
        expires_in: timedelta | None = None,
        usage_as_of: datetime | None = None,
        transaction_id: str | None = None,
        order_no: str | None = None,
        days: int | None = None,
    ) -> dict[str, Any]:
        """One eSIM as ``/esim/query`` shows it. ``status`` is its ``esimStatus``; one in use
        expires ``expires_in`` from now (default: its full duration from 2 days ago).
        ``days``: the days a day pass was bought for (``periodNum``; its volume stays the
        day's, ``totalVolume`` as the issue saw it: "0 B / 1 GB" after days of use)."""
        now = datetime.now(UTC)
        pkg = self.package(package)
        tran = self._tran_no()
        iccid = iccid or f"894310817{len(self.esims) + 1:010d}"
        created = created or now - timedelta(days=3)
        days = days or int(pkg["duration"])
        activated = status not in ("GOT_RESOURCE", "UNUSED_EXPIRED", "CANCEL")
        if activated:
            end = now + expires_in if expires_in is not None else now + timedelta(days=days - 2)
            activate_time: datetime | None = end - timedelta(days=days)
            expired = end
        else:
            activate_time = None
            expired = created + timedelta(days=int(pkg["unusedValidTime"]))
            if expires_in is not None:
                expired = now + expires_in
        smdp = {"GOT_RESOURCE": "RELEASED", "CANCEL": "RELEASED"}.get(status, "ENABLED")
        record = {
            "esimTranNo": tran,
            "orderNo": order_no or f"B{tran}",
            "transactionId": transaction_id or f"seed-{tran}",
            "imsi": "232104070123456" if activated else "",
            "iccid": iccid,
            "msisdn": "",
            "smsStatus": 0,
            "ac": f"LPA:1$rsp-eu.redteamobile.com${tran}ABCDEF",
            "qrCodeUrl": f"https://p.qrsim.net/{tran}.png",
            "shortUrl": f"https://p.qrsim.net/{tran}",
            "smdpStatus": smdp,
            "eid": "89049032007108882600137544319616" if activated else "",
            "activeType": pkg["activeType"],
            "dataType": pkg["dataType"],
            "activateTime": fmt(activate_time),
            "installationTime": fmt(activate_time),
            "expiredTime": fmt(expired),
            "totalVolume": pkg["volume"],
            "totalDuration": days,
            "durationUnit": "DAY",
            "orderUsage": used,
            "esimStatus": status,
            "pin": "",
            "puk": "",
            "apn": "drei.at",
            "ipExport": "NL/FR",
            "supportTopUpType": pkg["supportTopUpType"],
            "fupPolicy": pkg["fupPolicy"],
            "packageList": [
                {
                    "packageName": pkg["name"],
                    "packageCode": pkg["packageCode"],
                    "slug": pkg["slug"],
                    "duration": days,
                    "volume": pkg["volume"],
                    "locationCode": pkg["locationCode"],
                    "createTime": fmt(created),
                }
            ],
        }
        with self.lock:
            self.esims[tran] = record
            hour = (now - timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
            self.last_update[tran] = usage_as_of or hour
        return record

    def seed(self, n: int, *, package: str = "CKH003") -> list[dict[str, Any]]:
        """N eSIMs in use, each with some data used (benchmarks seed 40-1000)."""
        vol = int(self.package(package)["volume"])
        return [
            self.add_esim(package=package, used=(i * 7919 * MB) % vol, iccid=f"8943108{i:012d}")
            for i in range(n)
        ]

    def esim(self, iccid: str) -> dict[str, Any]:
        """The current allocation of an ICCID (the newest, as ICCIDs are reused)."""
        with self.lock:
            rows = [e for e in self.esims.values() if e["iccid"] == iccid]
        if not rows:
            raise KeyError(iccid)
        return rows[-1]

    def use_data(self, iccid: str, nbytes: int) -> None:
        """Use data. On a day pass (``dataType`` 2-4) usage runs over the days, beyond the
        day's volume, and the eSIM stays ``IN_USE`` (``override`` can say ``USED_UP``)."""
        with self.lock:
            e = self.esim(iccid)
            if e["dataType"] in (2, 3, 4):
                e["orderUsage"] += nbytes
            else:
                e["orderUsage"] = min(e["orderUsage"] + nbytes, e["totalVolume"])
                if e["orderUsage"] >= e["totalVolume"]:
                    e["esimStatus"] = "USED_UP"
            self.last_update[e["esimTranNo"]] = datetime.now(UTC).replace(microsecond=0)

    # -- switches ----------------------------------------------------------------------------

    def busy_next(self, times: int = 1) -> None:
        self.fail_next(
            200, times, body=self._err("900001", "The system is busy, please try again later.")
        )

    def rate_limited_next(self, times: int = 1, retry_after: float = 0) -> None:
        for _ in range(times):
            reply = self.rate_limited_reply(retry_after)
            self.fail_next(reply.status, 1, body=reply.body, headers=reply.headers)

    def fault_on(
        self,
        endpoint: str,
        kind: str,
        times: int = 1,
        *,
        status: int = 500,
        body: Any = None,
        seconds: float = 0.0,
    ) -> None:
        """A base fault for the next ``times`` requests to ``endpoint`` (e.g. ``/esim/topup``)."""
        with self.lock:
            q = self._targeted.setdefault(API + endpoint, deque())
            for _ in range(times):
                q.append(_Fault(kind, status=status, body=body, seconds=seconds))

    def malformed_lookup_next(
        self, times: int = 1, body: Any = None, *, after_topup: bool = False
    ) -> None:
        with self.lock:
            self._malformed_lookups = times
            self._malformed_lookup_body = body if body is not None else self._ok(None)
            self._lookups_after_topup = after_topup

    def malformed_list_next(self, times: int = 1, body: Any = None) -> None:
        with self.lock:
            self._malformed_lists = times
            self._malformed_list_body = body if body is not None else self._ok({})

    def override(self, iccid: str, **fields: Any) -> None:
        with self.lock:
            self.overrides.setdefault(iccid, {}).update(fields)

    def _units(self, major: str) -> Decimal:
        return Decimal(major) * 10_000

    def price_units(self, pkg: dict[str, Any]) -> Decimal:
        """The package's current price in 1/10,000 USD (``price_override`` first)."""
        code = pkg["packageCode"]
        if code in self.price_override:
            return self._units(self.price_override[code])
        return Decimal(int(pkg["price"]))

    def _listed(self, pkg: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(pkg)
        if pkg["packageCode"] in self.price_override:
            units = self.price_units(pkg)
            out["price"] = int(units) if units == units.to_integral_value() else str(units)
        return out

    def _served(self, record: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(record)
        out.update(copy.deepcopy(self.overrides.get(record["iccid"], {})))
        return out

    def rate_limited_reply(self, retry_after: float) -> Reply:
        # Undocumented: eSIM Access publishes no 429 example. This fake answers HTTP 429
        # with its envelope and the "system busy" code, plus Retry-After.
        return Reply(
            429,
            self._err("900001", "The system is busy, please try again later."),
            {"Retry-After": f"{retry_after:.0f}"},
        )

    # -- server plumbing ---------------------------------------------------------------------

    def _handle(self, h: Any) -> None:
        path = urlsplit(h.path).path
        with self.lock:
            q = self._targeted.get(path)
            if q:
                self._faults.appendleft(q.popleft())
        super()._handle(h)

    def register(self) -> None:
        for endpoint, handler in (
            ("/balance/query", self._balance),
            ("/package/list", self._package_list),
            ("/esim/query", self._query),
            ("/esim/usage/query", self._usage),
            ("/esim/topup", self._topup),
            ("/esim/order", self._order),
            ("/esim/cancel", self._cancel),
            ("/location/list", self._locations),
        ):
            self.route("POST", API + endpoint, self._authed(handler))

    def not_found(self, req: Request) -> Reply:
        if req.path.startswith(API) and req.method != "POST":
            return Reply(
                200, self._err("000103", "This https request method (get/post ) is not supported")
            )
        return super().not_found(req)

    def _ok(self, obj: Any) -> dict[str, Any]:
        return {
            "success": "true" if self.success_as_string else True,
            "errorCode": "0",
            self.error_field: None,
            "obj": obj,
        }

    def _err(self, code: str, msg: str) -> dict[str, Any]:
        return {
            "success": "false" if self.success_as_string else False,
            "errorCode": code,
            self.error_field: msg,
            "obj": None,
        }

    def _fail(self, code: str, msg: str) -> Reply:
        return Reply(200, self._err(code, msg))

    def _authed(self, handler: Any) -> Any:
        def run(req: Request) -> Reply:
            problem = self._auth_problem(req)
            if problem is not None:
                return self._fail(*problem)
            try:
                body = req.json() if req.body.strip() else {}
            except ValueError:
                return self._fail("000104", "Request in invalid JSON format")
            if not isinstance(body, dict):
                return self._fail("000104", "Request in invalid JSON format")
            result: Reply = handler(body)
            return result

        return run

    def _auth_problem(self, req: Request) -> tuple[str, str] | None:
        code = req.header("RT-AccessCode")
        if not code:
            return ("000101", "Req Header:[RT-AccessCode] is null")
        if self.bad_credentials or code != self.access_code:
            return ("101003", "Request signature mismatch.")
        sig = req.header("RT-Signature")
        if not sig:
            return (
                ("000101", "Req Header:[RT-Signature] is null") if self.require_signature else None
            )
        ts = req.header("RT-Timestamp") or ""
        rid = req.header("RT-RequestID") or ""
        key = self.secret_key if self.sign_key == "secret" else self.access_code
        want = hmac.new(
            key.encode(), (ts + rid + code).encode() + req.body, hashlib.sha256
        ).hexdigest()
        if not hmac.compare_digest(want, sig.lower()):
            return ("101003", "Request signature mismatch.")
        if self.require_signature:
            try:
                skew = abs(int(ts) - int(time.time() * 1000))
            except ValueError:
                return ("000102", "Wrong request header format")
            if skew > TIMESTAMP_WINDOW_MS:
                return ("101001", "The timestamp of the request has expired.")
        return None

    # -- endpoints ---------------------------------------------------------------------------

    def _balance(self, body: dict[str, Any]) -> Reply:
        bal = self.balance
        return Reply(200, self._ok({"balance": int(bal) if bal == int(bal) else str(bal)}))

    def _locations(self, body: dict[str, Any]) -> Reply:
        codes = sorted({p["locationCode"] for p in self.base_packages})
        return Reply(
            200,
            self._ok(
                {
                    "locationList": [
                        {
                            "code": c,
                            "name": c,
                            "type": 2 if "-" in c else 1,
                            "subLocationList": None,
                        }
                        for c in codes
                    ]
                }
            ),
        )

    def _find(self, tran: str | None, iccid: str | None) -> dict[str, Any] | None:
        if tran:
            return self.esims.get(tran)
        if iccid:
            rows = [e for e in self.esims.values() if e["iccid"] == iccid]
            return rows[-1] if rows else None
        return None

    def _package_list(self, body: dict[str, Any]) -> Reply:
        kind = str(body.get("type") or "BASE").upper()
        loc = str(body.get("locationCode") or "").upper()
        code = str(body.get("packageCode") or body.get("slug") or "")
        pool = self.topup_packages if kind == "TOPUP" else self.base_packages
        rows = list(pool)
        if kind == "TOPUP" and (body.get("iccid") or body.get("esimTranNo")):
            e = self._find(body.get("esimTranNo") or None, body.get("iccid") or None)
            if e is None:
                return Reply(200, self._ok({"packageList": []}))
            base_loc = e["packageList"][0]["locationCode"]
            rows = [p for p in rows if p["locationCode"] == base_loc]
        if code:
            rows = [p for p in rows if code in (p["packageCode"], p["slug"])]
        if loc == "!RG":
            rows = [p for p in rows if "," in p["location"]]
        elif loc == "!GL":
            rows = [p for p in rows if p["locationCode"].startswith("GL")]
        elif loc:
            rows = [p for p in rows if p["locationCode"] == loc]
        return Reply(200, self._ok({"packageList": [self._listed(p) for p in rows]}))

    def _query(self, body: dict[str, Any]) -> Reply:
        pager = body.get("pager")
        if not isinstance(pager, dict):
            return self._fail("000105", "Request parameters (mandatory) are not contained")
        try:
            size, num = int(pager.get("pageSize")), int(pager.get("pageNum"))
        except (TypeError, ValueError):
            return self._fail("000106", "Request parameter (mandatory) is null")
        if not (5 <= size <= 500 and 1 <= num <= 10000):
            return self._fail(
                "000107", "The length of the request parameter does not meet the requirement."
            )
        self._allocate_due()
        tran, iccid, order_no = body.get("esimTranNo"), body.get("iccid"), body.get("orderNo")
        if tran or iccid or order_no:
            armed = not self._lookups_after_topup or bool(self.topup_answers)
            if self._malformed_lookups > 0 and armed:
                self._malformed_lookups -= 1
                return Reply(200, copy.deepcopy(self._malformed_lookup_body))
        elif self._malformed_lists > 0:
            self._malformed_lists -= 1
            return Reply(200, copy.deepcopy(self._malformed_list_body))
        if order_no:
            mine = next((o for o in self.orders.values() if o["orderNo"] == order_no), None)
            if mine is not None and not mine["allocated"]:
                return self._fail("200010", "Profile is being downloaded for the order.")
            if mine is None and not any(e["orderNo"] == order_no for e in self.esims.values()):
                return self._fail("310272", "The orderNo does not exist.")
        start, end = parse(body.get("startTime")), parse(body.get("endTime"))
        if self.require_filter and not (tran or iccid or order_no or start):
            return self._fail("000105", "Request parameters (mandatory) are not contained")
        rows = list(self.esims.values())
        if tran:
            rows = [e for e in rows if e["esimTranNo"] == tran]
        if iccid:
            rows = [e for e in rows if e["iccid"] == iccid]
        if order_no:
            rows = [e for e in rows if e["orderNo"] == order_no]
        if start or end:

            def created(e: dict[str, Any]) -> datetime:
                return parse(e["packageList"][0]["createTime"]) or datetime.now(UTC)

            rows = [
                e
                for e in rows
                if (start is None or created(e) >= start) and (end is None or created(e) <= end)
            ]
        page = rows[(num - 1) * size : num * size]
        return Reply(
            200,
            self._ok(
                {
                    "esimList": [self._served(e) for e in page],
                    "pager": {"pageSize": size, "pageNum": num, "total": len(rows)},
                }
            ),
        )

    def _usage(self, body: dict[str, Any]) -> Reply:
        trans = body.get("esimTranNoList")
        if not isinstance(trans, list) or not trans:
            return self._fail("000105", "Request parameters (mandatory) are not contained")
        if len(trans) > 10:
            return self._fail(
                "000107", "The length of the request parameter does not meet the requirement."
            )
        served = {t: self._served(self.esims[t]) for t in trans if t in self.esims}
        rows = [
            {
                "esimTranNo": t,
                "dataUsage": e["orderUsage"],
                "totalData": e["totalVolume"],
                "lastUpdateTime": fmt(self.last_update.get(t)),
            }
            for t, e in served.items()
        ]
        return Reply(200, self._ok(rows if self.usage_bare_list else {"esimUsageList": rows}))

    def _topup(self, body: dict[str, Any]) -> Reply:
        tx, code = str(body.get("transactionId") or ""), str(body.get("packageCode") or "")
        if not tx or not code:
            return self._fail("000105", "Request parameters (mandatory) are not contained")
        if len(tx) > 50:
            return self._fail(
                "000107", "The length of the request parameter does not meet the requirement."
            )
        if tx in self.topup_answers:
            if self.duplicate_mode == "error":
                return self._fail("310402", "Duplicate transactionId.")
            return Reply(200, self._ok(copy.deepcopy(self.topup_answers[tx])))
        e = self._find(body.get("esimTranNo") or None, body.get("iccid") or None)
        if e is None:
            return self._fail("310403", "The ICCID does not exist in the order.")
        try:
            pkg = self.package(code, topup=True)
        except KeyError:
            return self._fail("310241", f"base data plan code:[{code}] doesn`t exist.")
        if pkg["locationCode"] != e["packageList"][0]["locationCode"]:
            return self._fail("200008", "Order parameters error, please contact customer service.")
        now = datetime.now(UTC)
        expired = parse(e["expiredTime"])
        if e["esimStatus"] in _TERMINAL or (
            e["activateTime"] and expired is not None and expired <= now
        ):
            return self._fail("200002", "This operation is not allowed due to the order status.")
        periods = 1
        if pkg["supportTopUpType"] == 3:
            try:
                periods = int(body.get("periodNum") or 0)
            except (TypeError, ValueError):
                periods = 0
            if not 1 <= periods <= 365:
                return self._fail("000106", "Request parameter (mandatory) is null")
        unit = (
            self._units(self.charge_override)
            if self.charge_override is not None
            else self.price_units(pkg)
        )
        price: Decimal | int = unit * periods
        if price == int(price):
            price = int(price)
        amount = body.get("amount")
        if amount not in (None, ""):
            try:
                sent = Decimal(str(amount))
            except ArithmeticError:
                sent = None
            if sent is None or not sent.is_finite() or sent != price:
                return self._fail("200005", "Package price error. Check price.")
        if self.balance < price:
            return self._fail("200007", "Insufficient account balance")
        self.balance -= price
        days = int(pkg["duration"]) * periods
        e["totalVolume"] += int(pkg["volume"]) * periods
        e["totalDuration"] += days
        if e["activateTime"] and expired is not None:
            e["expiredTime"] = fmt(expired + timedelta(days=days))
        if e["esimStatus"] == "USED_UP":
            e["esimStatus"] = "IN_USE"
        topup_no = self._tran_no()
        if self.topups_listed:
            item: dict[str, Any] = {
                "packageName": pkg["name"],
                "packageCode": pkg["packageCode"],
                "slug": pkg["slug"],
                "duration": days,
                "volume": int(pkg["volume"]) * periods,
                "locationCode": pkg["locationCode"],
                "createTime": fmt(now),
            }
            if self.package_tx_ids:
                item.update({"esimTranNo": topup_no, "transactionId": tx})
            e["packageList"].append(item)
        answer = {
            "transactionId": tx,
            "iccid": e["iccid"],
            "topUpEsimTranNo": topup_no,
            "expiredTime": e["expiredTime"],
            "totalVolume": e["totalVolume"],
            "totalDuration": e["totalDuration"],
            "orderUsage": e["orderUsage"],
        }
        self.topup_answers[tx] = answer
        self.topups.append(
            {
                "transactionId": tx,
                "esimTranNo": e["esimTranNo"],
                "packageCode": code,
                "periodNum": periods,
                "price": price,
                "amount": amount,
            }
        )
        return Reply(200, self._ok(copy.deepcopy(answer)))

    def _order(self, body: dict[str, Any]) -> Reply:
        tx = str(body.get("transactionId") or "")
        items = body.get("packageInfoList")
        if not tx or not isinstance(items, list) or not items:
            return self._fail("000105", "Request parameters (mandatory) are not contained")
        if len(tx) > 50:
            return self._fail(
                "000107", "The length of the request parameter does not meet the requirement."
            )
        if tx in self.orders:
            if self.duplicate_mode == "error":
                return self._fail("310402", "Duplicate transactionId.")
            return Reply(
                200, self._ok({"orderNo": self.orders[tx]["orderNo"], "transactionId": tx})
            )
        wanted: list[tuple[dict[str, Any], int, int]] = []
        total = Decimal(0)
        for item in items:
            if not isinstance(item, dict):
                return self._fail("000104", "Request in invalid JSON format")
            try:
                pkg = self.package(str(item.get("packageCode") or item.get("slug") or ""))
            except KeyError:
                return self._fail("310241", "The packageCode does not exist.")
            count, periods = int(item.get("count") or 1), 1
            if pkg["dataType"] in (2, 3, 4):
                periods = int(item.get("periodNum") or 0)
                if not 1 <= periods <= 365:
                    return self._fail("000106", "Request parameter (mandatory) is null")
            unit = (
                self._units(self.charge_override)
                if self.charge_override is not None
                else self.price_units(pkg)
            )
            if item.get("price") not in (None, "") and Decimal(str(item["price"])) != unit:
                return self._fail("200005", "Package price error. Check price.")
            total += unit * count * periods
            wanted.append((pkg, count, periods))
        if body.get("amount") not in (None, "") and Decimal(str(body["amount"])) != total:
            return self._fail("200006", "Total order price amount is wrong. Check prices.")
        if self.balance < total:
            return self._fail("200007", "Insufficient account balance")
        self.balance -= int(total) if total == int(total) else total
        order_no = f"B{self._tran_no()}"
        self.orders[tx] = {
            "orderNo": order_no,
            "transactionId": tx,
            "price": int(total) if total == int(total) else total,
            "items": wanted,
            "created": datetime.now(UTC),
            "ready_at": time.monotonic() + self.allocation_delay,
            "allocated": False,
        }
        return Reply(200, self._ok({"orderNo": order_no, "transactionId": tx}))

    def allocate_now(self) -> None:
        """Allocate every order's profiles now (``hold_allocation`` and the delay aside)."""
        with self.lock:
            for order in self.orders.values():
                self._allocate(order)

    def _allocate_due(self) -> None:
        if self.hold_allocation:
            return
        now = time.monotonic()
        for order in self.orders.values():
            if not order["allocated"] and order["ready_at"] <= now:
                self._allocate(order)

    def _allocate(self, order: dict[str, Any]) -> None:
        if order["allocated"]:
            return
        order["allocated"] = True
        for pkg, count, periods in order["items"]:
            for _ in range(count):
                self.add_esim(
                    package=pkg["packageCode"],
                    status="GOT_RESOURCE",
                    created=order["created"],
                    transaction_id=order["transactionId"],
                    order_no=order["orderNo"],
                    days=periods if pkg["dataType"] in (2, 3, 4) else None,
                )

    def _cancel(self, body: dict[str, Any]) -> Reply:
        e = self._find(body.get("esimTranNo") or None, body.get("iccid") or None)
        if e is None:
            return self._fail("310403", "The ICCID does not exist in the order.")
        if e["esimStatus"] != "GOT_RESOURCE" or e["smdpStatus"] != "RELEASED":
            return self._fail("200002", "This operation is not allowed due to the order status.")
        e["esimStatus"] = "CANCEL"
        return Reply(200, self._ok({}))
