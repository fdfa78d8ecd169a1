"""eSIM Access open API v1 (api.esimaccess.com, the RedteaGO platform).

What the API does and which reading of its self-contradicting docs esimctl takes is in
``docs/providers/esimaccess.md``; this module is that page in code. Throttling, retries,
secrets, paging and reading values are the provider kit's (``providers/kit``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
import uuid
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import httpx

from esimctl.errors import (
    AuthRejected,
    CredentialsError,
    EsimctlError,
    InsufficientBalance,
    InvalidInput,
    LimitRefused,
    NotFound,
    NotSent,
    OutcomeUnknown,
    ProviderError,
    RateLimited,
    TemporaryFailure,
)
from esimctl.models import Esim, EsimState, Money, Order, OrderState, Package, Plan
from esimctl.providers.base import Capability, Provider, ProviderContext
from esimctl.providers.kit.concurrency import bounded_map
from esimctl.providers.kit.http import ApiClient, Throttle, retry_after, shape_of
from esimctl.providers.kit.paging import counted_pages
from esimctl.providers.kit.units import to_money
from esimctl.providers.kit.values import parse_time, records, to_bool, to_decimal, to_int

API = "/api/v1/open"
PROVIDER_ID = "esimaccess"
CURRENCY = "USD"
#: Prices and the balance are integers in 1/10,000 of the currency.
PRICE_SCALE = 10_000
RATE_PER_SECOND = 8
#: ``pager.pageSize`` accepts 5..500.
PAGE_SIZE = 500
MAX_PAGES = 10_000
#: ``/esim/usage/query`` takes at most 10 esimTranNo per call.
USAGE_BATCH = 10
#: Usage times are asked for up to this many eSIMs in use, beyond only with ``usage_times``.
USAGE_AUTO_MAX = 200
#: The open API v1 went live in October 2022: nothing was bought before.
LIST_SINCE = datetime(2022, 10, 1, tzinfo=UTC)
#: The lengths a day pass is offered in (``periodNum``).
DAY_PASS_DAYS = (1, 7, 30)
MAX_TRANSACTION_ID = 50
#: How long a transactionId whose answer was lost is sent again for the same top-up.
REUSE_WITHIN = timedelta(days=1)
AUTH_CODES = frozenset({"000101", "000102", "101003", "401001"})
UNKNOWN_PLAN_CODES = frozenset({"310201", "310211", "310241", "310243", "310251"})
MISSING_PARAMETER_CODES = ("000105", "000106")

_UNIT_DAYS = {"DAY": 1, "MONTH": 30, "YEAR": 365}
_NOT_ACTIVE = {"CREATE", "PAYING", "PAID", "GETTING_RESOURCE", "GOT_RESOURCE"}
_CANCELLED = {"CANCEL", "CANCELED", "CANCELLED"}
_STATES: dict[str, EsimState] = {
    **{s: EsimState.NOT_ACTIVE for s in _NOT_ACTIVE},
    "IN_USE": EsimState.ACTIVE,
    "USED_UP": EsimState.DEPLETED,
    "UNUSED_EXPIRED": EsimState.EXPIRED,
    "USED_EXPIRED": EsimState.EXPIRED,
    **{s: EsimState.RECYCLED for s in (*_CANCELLED, "REVOKE", "REVOKED")},
    "SUSPENDED": EsimState.UNKNOWN,
}


# -- the envelope and its error codes ----------------------------------------------------------


def is_success(body: Any) -> bool:
    return isinstance(body, Mapping) and to_bool(body.get("success")) is True


def is_envelope(body: Any) -> bool:
    return isinstance(body, Mapping) and ("success" in body or "errorCode" in body)


def envelope_error(body: Mapping[str, Any]) -> tuple[str, str]:
    """(errorCode, message) of a failed answer."""
    code = body.get("errorCode")
    msg = body.get("errorMsg") or body.get("errorMessage") or ""
    return ("" if code is None else str(code).strip(), str(msg).strip())


class ApiRefused(ProviderError):
    """An eSIM Access error code with no more precise meaning for esimctl."""

    def __init__(self, message: str, *, api_code: str) -> None:
        super().__init__(message)
        self.api_code = api_code


class DuplicateTransaction(ProviderError):
    """``310402``: the transactionId was used before, so that purchase already happened."""

    code = "duplicate_transaction"


def map_error(code: str, message: str, *, account: str | None = None) -> EsimctlError:
    said = f" ({message})" if message else ""
    fix = (
        f"run 'esimctl account add {account} --provider {PROVIDER_ID} --replace' to store new ones"
        if account
        else "check the AccessCode and SecretKey"
    )
    if code in AUTH_CODES:
        return AuthRejected(f"eSIM Access rejected the credentials [{code}]{said}; {fix}")
    if code == "101001":
        return AuthRejected(
            f"eSIM Access says the request timestamp expired [{code}]: check this computer's clock"
        )
    if code == "101002":
        return AuthRejected(f"eSIM Access blocks requests from this IP address [{code}]{said}")
    if code == "200007":
        return InsufficientBalance(
            "eSIM Access balance too low for this purchase: add funds in the eSIM Access console"
        )
    if code in UNKNOWN_PLAN_CODES:
        return InvalidInput(f"eSIM Access has no such package [{code}]{said}")
    if code in ("200005", "200006"):
        return LimitRefused(
            f"refused: the price of this package changed at eSIM Access [{code}]; nothing "
            "was bought. List the plans again ('esimctl plans ESIM') to see the new price"
        )
    if code == "200002":
        return InvalidInput(
            f"eSIM Access refuses this for the eSIM in its current state [{code}]{said}: "
            "expired, cancelled or revoked eSIMs cannot be topped up"
        )
    if code in ("310272", "310403"):
        return NotFound(f"eSIM Access: not found [{code}]{said}")
    if code == "900001":
        return RateLimited(f"eSIM Access is busy [{code}]; retry later")
    if code in ("000001", "200010"):
        return TemporaryFailure(f"eSIM Access could not answer now [{code}]{said}")
    if code == "310402":
        return DuplicateTransaction(f"eSIM Access already has this transactionId [{code}]")
    return ApiRefused(f"eSIM Access error [{code or 'unknown'}]{said}", api_code=code)


# -- values ------------------------------------------------------------------------------------


def parse_money(value: Any, currency: Any = None) -> Money | None:
    cur = currency.strip().upper() if isinstance(currency, str) and currency.strip() else CURRENCY
    return to_money(value, cur, scale=PRICE_SCALE)


def to_units(m: Money) -> str:
    """Money as the 1/10,000 integer string ``/esim/topup`` takes as ``amount``."""
    if not m.amount.is_finite():
        raise LimitRefused(f"the listed price {m.amount} is not a number; nothing was bought")
    return str(int((m.amount * PRICE_SCALE).to_integral_value()))


def _api_time(dt: datetime) -> str:
    """The request time format of ``/esim/query``: ``2025-06-01T00:00+00:00``."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M+00:00")


def _days(duration: Any, unit: Any) -> int | None:
    n = to_int(duration)
    u = str(unit or "DAY").strip().upper()
    factor = next((f for p, f in _UNIT_DAYS.items() if u.startswith(p)), None)
    return None if n is None or factor is None else n * factor


def _countries(raw: Mapping[str, Any]) -> tuple[str, ...]:
    where = raw.get("location") or raw.get("locationCode") or ""
    codes = [c.strip().upper() for c in str(where).split(",") if c.strip()]
    if not codes:
        for loc in raw.get("locationNetworkList") or []:
            if isinstance(loc, Mapping) and loc.get("locationCode"):
                codes.append(str(loc["locationCode"]).upper())
    return tuple(dict.fromkeys(codes))


def esim_state(esim_status: Any, smdp_status: Any = None) -> EsimState:
    status = str(esim_status or "").strip().upper()
    state = _STATES.get(status, EsimState.UNKNOWN)
    if state == EsimState.UNKNOWN and not status and str(smdp_status or "").upper() == "RELEASED":
        return EsimState.NOT_ACTIVE
    return state


# -- packages (plans) --------------------------------------------------------------------------


def is_day_pass(raw: Mapping[str, Any]) -> bool:
    return to_int(raw.get("dataType")) in (2, 3, 4) or to_int(raw.get("supportTopUpType")) == 3


def parse_plans(raw: Mapping[str, Any], *, account: str, kind: str) -> list[Plan]:
    """One package of ``/package/list`` as plans (a day pass as one plan per length)."""
    code = str(raw.get("packageCode") or raw.get("slug") or "").strip()
    if not code:
        return []
    name = str(raw.get("name") or raw.get("description") or code).strip()
    # -1 is "no limit"; any other negative volume stays, for the plausibility checks.
    unlimited = to_int(raw.get("dataType")) == 4 or to_int(raw.get("volume")) == -1
    volume = None if unlimited else to_int(raw.get("volume"))
    price = parse_money(raw.get("price"), raw.get("currencyCode"))
    base = Plan(
        id=code,
        account=account,
        provider=PROVIDER_ID,
        name=name,
        kind=kind,
        data_bytes=volume,
        unlimited=unlimited,
        validity_days=_days(raw.get("duration"), raw.get("durationUnit")),
        price=price,
        countries=_countries(raw),
        stacking="stacks" if kind == "topup" else None,
        unit_base=1024,
    )
    if not is_day_pass(raw):
        return [base]
    return [
        replace(
            base,
            id=f"{code}:{n}d",
            name=f"{name} · {n} day{'s' if n > 1 else ''}",
            data_bytes=None if volume is None else volume * n,
            validity_days=n,
            price=None if price is None else Money(price.amount * n, price.currency),
        )
        for n in DAY_PASS_DAYS
    ]


def split_plan_id(plan_id: str) -> tuple[str, int | None]:
    """``TOPUP_JP01:7d`` → (``TOPUP_JP01``, 7); a plain code → (code, None)."""
    m = re.fullmatch(r"(.+):(\d{1,3})d", plan_id)
    return (m.group(1), int(m.group(2))) if m else (plan_id, None)


# -- eSIMs, their usage and their orders -------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    """One row of ``/esim/usage/query``."""

    used: int | None
    total: int | None
    as_of: datetime | None


def parse_usage(obj: Any) -> dict[str, Usage]:
    """``obj.esimUsageList``, or ``obj`` as a bare list."""
    rows = obj.get("esimUsageList") if isinstance(obj, Mapping) else obj
    return {
        str(r["esimTranNo"]): Usage(
            used=to_int(r.get("dataUsage")),
            total=to_int(r.get("totalData")),
            as_of=parse_time(r.get("lastUpdateTime")),
        )
        for r in rows or []
        if isinstance(r, Mapping) and r.get("esimTranNo")
    }


def _packages(raw: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """``packageList``, oldest first."""
    pkgs = [p for p in raw.get("packageList") or [] if isinstance(p, Mapping)]
    epoch = datetime.min.replace(tzinfo=UTC)
    return sorted(pkgs, key=lambda p: parse_time(p.get("createTime")) or epoch)


def _is_topup_package(p: Mapping[str, Any], index: int) -> bool:
    return index > 0 or str(p.get("packageCode") or "").upper().startswith("TOPUP_")


def _activated(raw: Mapping[str, Any], state: EsimState) -> bool:
    if parse_time(raw.get("activateTime")) is not None:
        return True
    return state in (EsimState.ACTIVE, EsimState.DEPLETED) or (
        str(raw.get("esimStatus") or "").upper() == "USED_EXPIRED"
    )


def parse_esim(
    raw: Mapping[str, Any],
    *,
    account: str,
    usage: Usage | None = None,
    fetched_at: datetime | None = None,
) -> Esim | None:
    """One entry of ``obj.esimList``; None while the profile has no ICCID yet."""
    iccid = str(raw.get("iccid") or "").strip()
    if not iccid:
        return None
    state = esim_state(raw.get("esimStatus"), raw.get("smdpStatus"))
    pkgs = _packages(raw)
    base = next((p for i, p in enumerate(pkgs) if not _is_topup_package(p, i)), None)
    base = base or (pkgs[0] if pkgs else None)
    plan = str(base.get("packageName") or base.get("packageCode") or "") if base else ""

    total = to_int(raw.get("totalVolume"))
    used = to_int(raw.get("orderUsage"))
    unlimited = to_int(raw.get("dataType")) == 4 or total == -1  # other negatives stay
    as_of: datetime | None = None
    if usage is not None:
        # Both figures lag: the larger one is the newer. totalVolume moves at once with a
        # top-up, so it wins over totalData.
        if usage.used is not None:
            used = max(used or 0, usage.used)
        if total is None:
            total = usage.total
        as_of = usage.as_of
    elif state == EsimState.NOT_ACTIVE:
        as_of = fetched_at  # nothing used yet: the figures are exact now
    used_unreadable = used is None and raw.get("orderUsage") not in (None, "")
    remaining = None if total is None or used_unreadable else max(total - (used or 0), 0)
    if state == EsimState.ACTIVE and not unlimited and remaining == 0 and total:
        state = EsimState.DEPLETED

    activated = _activated(raw, state)
    expires = parse_time(raw.get("expiredTime"))
    activate_time = parse_time(raw.get("activateTime"))
    days = to_int(raw.get("totalDuration"))
    if activated and activate_time is not None and days is not None:
        # Still the (later) install deadline after activation: the plan's own end instead.
        try:
            plan_end: datetime | None = activate_time + timedelta(days=days)
        except OverflowError:  # a duration beyond any calendar: no end is known from it
            plan_end = None
        if plan_end is not None and (expires is None or expires - plan_end > timedelta(days=1)):
            expires = plan_end
    now = fetched_at or datetime.now(UTC)
    if state == EsimState.ACTIVE and expires is not None and expires <= now:
        state = EsimState.EXPIRED

    packages = tuple(
        Package(
            name=str(p.get("packageName") or p.get("packageCode") or "") or None,
            state=state.value,  # top-ups pour into one pool with the base package
            data_total_bytes=None if unlimited else to_int(p.get("volume")),
            data_remaining_bytes=None,
            unlimited=unlimited,
        )
        for p in pkgs
    )
    ref = {
        "esimTranNo": str(raw.get("esimTranNo") or ""),
        "orderNo": str(raw.get("orderNo") or ""),
        "esimStatus": str(raw.get("esimStatus") or ""),
        "smdpStatus": str(raw.get("smdpStatus") or ""),
        "expiry": "plan_end" if activated else "install_by",
        "countries": ",".join(_countries(base)) if base else "",
        "packageCode": str(base.get("packageCode") or "") if base else "",
        "transactionIds": ",".join(str(p["transactionId"]) for p in pkgs if p.get("transactionId")),
    }
    return Esim(
        account=account,
        provider=PROVIDER_ID,
        iccid=iccid,
        state=state,
        plan=plan or None,
        data_total_bytes=None if unlimited else total,
        data_remaining_bytes=None if unlimited else remaining,
        unlimited=unlimited,
        expires_at=expires,
        as_of=as_of,
        packages=packages,
        unit_base=1024,
        ref={k: v for k, v in ref.items() if v},
    )


def newest_per_iccid(rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """ICCIDs are reused: the latest allocation (created last, highest esimTranNo) of each."""

    def key(r: Mapping[str, Any]) -> tuple[datetime, str]:
        pkgs = _packages(r)
        created = parse_time(pkgs[0].get("createTime")) if pkgs else None
        return (created or datetime.min.replace(tzinfo=UTC), str(r.get("esimTranNo") or ""))

    best: dict[str, Mapping[str, Any]] = {}
    for r in rows:
        iccid = str(r.get("iccid") or "")
        if iccid and (iccid not in best or key(r) >= key(best[iccid])):
            best[iccid] = r
    return list(best.values())


def parse_orders(raw: Mapping[str, Any], *, account: str) -> list[Order]:
    """The purchases one eSIM shows: the eSIM's own order, then each top-up package."""
    iccid = str(raw.get("iccid") or "") or None
    status = str(raw.get("esimStatus") or "").upper()
    if status in _CANCELLED:
        first_state = OrderState.FAILED  # cancelled profiles are refunded
    elif status in ("CREATE", "PAYING", "PAID", "GETTING_RESOURCE"):
        first_state = OrderState.PENDING
    else:
        first_state = OrderState.COMPLETED
    order_no = str(raw.get("orderNo") or "")
    fallback_time = parse_time(raw.get("installationTime")) or parse_time(raw.get("activateTime"))
    out: list[Order] = []
    for i, p in enumerate(_packages(raw)):
        created = parse_time(p.get("createTime")) or (fallback_time if i == 0 else None)
        if created is None:
            continue
        topup = _is_topup_package(p, i)
        if topup:
            oid = str(p.get("esimTranNo") or p.get("transactionId") or f"{order_no}/{i}")
            reference = str(p.get("transactionId") or "") or None
        else:
            oid = order_no or str(raw.get("esimTranNo") or f"{iccid}/0")
            reference = str(raw.get("transactionId") or "") or None
        out.append(
            Order(
                id=oid,
                account=account,
                provider=PROVIDER_ID,
                iccid=iccid,
                plan_id=str(p.get("packageCode") or p.get("slug") or "") or None,
                plan=str(p.get("packageName") or p.get("packageCode") or "") or None,
                price=None,  # the package list carries no price; the ledger has ours
                created_at=created,
                state=OrderState.COMPLETED if topup else first_state,
                source="provider",
                reference=reference,
                extra={"kind": "topup" if topup else "esim"},
            )
        )
    return out


def transaction_id(reference: str) -> str:
    """Our purchase reference as a transactionId (at most 50 characters, deterministic)."""
    ref = re.sub(r"[^A-Za-z0-9_.:-]", "-", reference)
    if len(ref) <= MAX_TRANSACTION_ID:
        return ref
    digest = hashlib.sha256(reference.encode()).hexdigest()[:16]
    return f"{ref[: MAX_TRANSACTION_ID - 17]}-{digest}"


# -- signing -----------------------------------------------------------------------------------


def signature(secret: str, timestamp: str, request_id: str, access_code: str, body: bytes) -> str:
    """HMAC-SHA256 (hex) over timestamp + request id + access code + the body bytes."""
    msg = (timestamp + request_id + access_code).encode("utf-8") + body
    return hmac.new(secret.encode("utf-8"), msg, hashlib.sha256).hexdigest()


@dataclass(eq=False)
class Signer(httpx.Auth):
    """Signs every attempt afresh; on ``101003`` tries the other HMAC key once and keeps the
    one that worked (``remember`` saves it for next runs, ``recall`` reads it back)."""

    access_code: str
    secret_key: str
    recall: Callable[[], str | None]
    remember: Callable[[str], None]
    _keys: list[str] | None = None

    requires_request_body = True
    requires_response_body = True

    @property
    def keys(self) -> list[str]:
        if self._keys is None:
            self._keys = list(
                dict.fromkeys([self.secret_key or self.access_code, self.access_code])
            )
            if self.recall() == "access_code":
                self._keys.reverse()
        return self._keys

    def sign(self, request: httpx.Request, key: str) -> None:
        ts, rid = str(int(time.time() * 1000)), str(uuid.uuid4())
        request.headers["RT-AccessCode"] = self.access_code
        request.headers["RT-Timestamp"] = ts
        request.headers["RT-RequestID"] = rid
        request.headers["RT-Signature"] = signature(key, ts, rid, self.access_code, request.content)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        keys = self.keys
        first = keys[0]
        self.sign(request, first)
        response = yield request
        if len(keys) < 2 or _answer_code(response) != "101003":
            return
        # A 101003 means nothing was done: sending again is safe, even for a purchase.
        self.sign(request, keys[1])
        response = yield request
        if _answer_code(response) != "101003" and keys[0] == first:
            keys.reverse()
            self.remember("access_code" if keys[0] == self.access_code else "secret_key")


def _answer_code(response: httpx.Response) -> str | None:
    try:
        body = json.loads(response.content)
    except ValueError:
        return None
    return envelope_error(body)[0] if is_envelope(body) and not is_success(body) else None


# -- the provider ------------------------------------------------------------------------------


class EsimAccessProvider(Provider):
    id: ClassVar[str] = PROVIDER_ID
    display_name: ClassVar[str] = "eSIM Access"
    secret_fields: ClassVar[tuple[str, ...]] = ("ACCESS_CODE", "SECRET_KEY")
    default_base_url: ClassVar[str | None] = "https://api.esimaccess.com"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.LIST_ESIMS,
            Capability.TOPUPS,
            Capability.CATALOGUE,
            Capability.BUY_TOPUP,
            Capability.FIND_ORDER,
            Capability.ORDERS,
            Capability.BALANCE,
        }
    )
    unit_base: ClassVar[int] = 1024
    #: Usage is settled every 2-3 hours: asking sooner shows the same figure.
    usage_ttl: ClassVar[timedelta] = timedelta(hours=2)
    catalogue_ttl: ClassVar[timedelta] = timedelta(hours=6)
    homepage: ClassVar[str | None] = "https://console.esimaccess.com"
    order_lookup_lag: ClassVar[timedelta] = timedelta(minutes=2)

    def __init__(self, ctx: ProviderContext) -> None:
        super().__init__(ctx)
        opts = ctx.account.options
        retries = to_int(opts.get("retries"))
        #: True: always ask /esim/usage/query; False: never; None: up to USAGE_AUTO_MAX eSIMs.
        self.usage_times = _flag(opts.get("usage_times"))
        self._signer = Signer(
            ctx.secrets.get("ACCESS_CODE", ""),
            ctx.secrets.get("SECRET_KEY", ""),
            recall=lambda: (ctx.token_cache.get() or {}).get("sign_with"),
            remember=lambda key: ctx.token_cache.set({"sign_with": key}),
        )
        self._api = ApiClient(
            base_url=self.base_url,
            provider=self.id,
            account=self.account,
            timeout=_positive(opts.get("timeout"), ctx.timeout),
            headers={"Content-Type": "application/json"},
            # No burst: a sliding window that bursts can put more than 8 in one second.
            throttle=Throttle(_positive(opts.get("rate_limit"), RATE_PER_SECOND), 1.0, burst=1),
            error_mapper=self._map_error,
            retries=4 if retries is None else max(0, retries),
            extra=ctx.extra,
            secrets=ctx.secrets.values(),
            transport=ctx.transport,
        )
        self._filter_required = False

    async def aclose(self) -> None:
        await self._api.aclose()

    # -- plumbing --------------------------------------------------------------------------

    def _map_error(self, resp: httpx.Response, body: Any) -> EsimctlError | None:
        if resp.status_code == 429:
            return RateLimited(
                "eSIM Access rate limit reached (8 requests a second); retry later",
                retry_after=retry_after(resp),
            )
        if is_envelope(body) and not is_success(body):
            code, msg = envelope_error(body)
            err = map_error(code, self._api.scrub(msg)[:200], account=self.account)
            if resp.status_code >= 500 and not isinstance(err, TemporaryFailure):
                return TemporaryFailure(f"eSIM Access is unavailable (HTTP {resp.status_code})")
            return err
        if resp.status_code >= 400:
            return None  # the kit's mapping: 401/403 credentials, 5xx temporary, ...
        if not is_envelope(body):
            return TemporaryFailure("eSIM Access sent an answer without its usual envelope")
        return None

    async def _call(
        self, endpoint: str, payload: Mapping[str, Any], *, idempotent: bool = True
    ) -> Any:
        """POST one signed request (signed over these exact bytes); ``obj`` of the answer."""
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        answer = await self._api.request(
            "POST", API + endpoint, content=body, auth=self._signer, idempotent=idempotent
        )
        return answer.get("obj") if isinstance(answer, Mapping) else None

    def _unreadable(self, endpoint: str, obj: Any) -> TemporaryFailure:
        shape = "no object (obj: null)" if obj is None else shape_of(obj)
        return TemporaryFailure(
            f"eSIM Access answered {endpoint} with {shape}, not the list it documents; "
            "nothing is read from it (retry later)",
            account=self.account,
            provider=self.id,
        )

    async def _query_page(
        self, page: int, filters: Mapping[str, Any]
    ) -> tuple[list[dict[str, Any]], int | None]:
        """One page of ``/esim/query`` and ``pager.total`` (profiles); only a list, or a
        total of 0 beside ``esimList: null``, says what the account holds."""
        payload: dict[str, Any] = {
            "orderNo": "",
            "iccid": "",
            "esimTranNo": "",
            **filters,
            "pager": {"pageNum": page, "pageSize": PAGE_SIZE},
        }
        if self._filter_required and not any(payload.get(k) for k in ("orderNo", "iccid")):
            payload["startTime"] = _api_time(LIST_SINCE)
            payload["endTime"] = _api_time(self.ctx.clock() + timedelta(days=1))
        obj = await self._call("/esim/query", payload)
        if not isinstance(obj, Mapping):
            raise self._unreadable("/esim/query", obj)
        pager = obj.get("pager")
        total = to_int(pager.get("total")) if isinstance(pager, Mapping) else None
        if obj.get("esimList") is None and total == 0:
            return [], 0
        rows = records(obj.get("esimList"))
        if rows is None:
            raise self._unreadable("/esim/query", obj)
        return rows, total

    async def _query(self, **filters: Any) -> list[dict[str, Any]]:
        async def page(n: int) -> tuple[list[dict[str, Any]], int | None]:
            try:
                return await self._query_page(n, filters)
            except ApiRefused as exc:
                # The docs that say listing needs a filter: then list by time window.
                if n > 1 or self._filter_required or filters:
                    raise
                if exc.api_code not in MISSING_PARAMETER_CODES:
                    raise
                self._filter_required = True
                return await self._query_page(n, filters)

        return await counted_pages(page, max_pages=MAX_PAGES)

    async def _usage(self, tran_nos: list[str]) -> dict[str, Usage]:
        async def one(batch: list[str]) -> dict[str, Usage]:
            return parse_usage(await self._call("/esim/usage/query", {"esimTranNoList": batch}))

        batches = [tran_nos[i : i + USAGE_BATCH] for i in range(0, len(tran_nos), USAGE_BATCH)]
        return {k: v for part in await bounded_map(batches, one) for k, v in part.items()}

    async def _esims(self, found: Iterable[Mapping[str, Any]]) -> list[Esim]:
        now = self.ctx.clock()
        rows = newest_per_iccid(found)
        usage: dict[str, Usage] = {}
        if self.usage_times is not False:
            wanted = [
                str(r["esimTranNo"])
                for r in rows
                if r.get("esimTranNo")
                and esim_state(r.get("esimStatus")) in (EsimState.ACTIVE, EsimState.DEPLETED)
            ]
            if self.usage_times is None and len(wanted) > USAGE_AUTO_MAX:
                wanted = []
            if wanted:
                try:
                    usage = await self._usage(wanted)
                except (TemporaryFailure, ProviderError):
                    usage = {}  # the list answered: show it, without "as of" times
        out = []
        for r in rows:
            u = usage.get(str(r.get("esimTranNo")))
            e = parse_esim(r, account=self.account, usage=u, fetched_at=now)
            if e is not None:
                out.append(e)
        return out

    def _plans(self, obj: Any, kind: str) -> list[Plan]:
        """The plans of a ``/package/list`` answer (``obj.packageList``, or a bare list)."""
        rows = obj.get("packageList") if isinstance(obj, Mapping) else obj
        if not isinstance(rows, list):
            raise self._unreadable("/package/list", obj)
        plans: dict[str, Plan] = {}
        for raw in rows:
            if isinstance(raw, Mapping):
                for p in parse_plans(raw, account=self.account, kind=kind):
                    plans.setdefault(p.id, p)
        return list(plans.values())

    async def _topup_plans(self, iccid: str, tran_no: str, code: str = "") -> list[Plan]:
        payload = {
            "locationCode": "",
            "type": "TOPUP",
            "packageCode": code,
            "iccid": iccid,
            "esimTranNo": tran_no,
        }
        return self._plans(await self._call("/package/list", payload), "topup")

    async def _raw_esim(self, iccid: str, tran_no: str | None = None) -> Mapping[str, Any]:
        """The current allocation of one ICCID, by esimTranNo when known."""

        def mine(rows: list[dict[str, Any]]) -> list[Mapping[str, Any]]:
            # Filter again: a server that ignores a filter answers with every eSIM.
            return [r for r in newest_per_iccid(rows) if str(r.get("iccid") or "") == iccid]

        rows = mine(await self._query(esimTranNo=tran_no)) if tran_no else []
        rows = rows or mine(await self._query(iccid=iccid))
        if not rows:
            raise NotFound(
                f"eSIM Access has no eSIM {iccid}", account=self.account, provider=self.id
            )
        return rows[0]

    # -- reading ---------------------------------------------------------------------------

    async def check(self) -> str:
        bal = await self.balance()
        return f"balance {bal}" if bal is not None else "credentials accepted"

    async def list_esims(self) -> list[Esim]:
        return await self._esims(await self._query())

    async def get_esim(self, iccid: str) -> Esim:
        esims = await self._esims([await self._raw_esim(iccid)])
        if not esims:
            raise NotFound(
                f"eSIM Access has no eSIM {iccid}", account=self.account, provider=self.id
            )
        return esims[0]

    async def topups(self, esim: Esim) -> list[Plan]:
        return await self._topup_plans(esim.iccid, esim.ref.get("esimTranNo", ""))

    async def catalogue(self, country: str) -> list[Plan]:
        cc = country.strip().upper()
        plans: dict[str, Plan] = {}
        for code in (cc, "!RG", "!GL"):
            obj = await self._call("/package/list", {"locationCode": code, "type": "BASE"})
            for p in self._plans(obj, "new"):
                if code == cc or cc in p.countries:
                    plans.setdefault(p.id, p)
        return list(plans.values())

    async def orders(self) -> list[Order]:
        out = [o for r in await self._query() for o in parse_orders(r, account=self.account)]
        return sorted(out, key=lambda o: o.created_at, reverse=True)

    async def balance(self) -> Money | None:
        obj = await self._call("/balance/query", {})
        if not isinstance(obj, Mapping):
            return None
        return parse_money(obj.get("balance"), obj.get("currencyCode"))

    # -- buying: ctx.journal keeps, per reference, the transactionId sent and the eSIM's
    # figures just before (what a lost answer is compared with) --------------------------

    def _journal(self) -> dict[str, dict[str, Any]]:
        return self.ctx.journal.entries()

    def _mark(self, reference: str, state: str) -> None:
        entry = self._journal().get(reference)
        if entry is not None and entry.get("state") != state:
            self.ctx.journal.record(reference, state=state)

    def _tx_for(self, reference: str) -> str:
        rec = self._journal().get(reference) or {}
        return str(rec.get("tx") or transaction_id(reference))

    async def buy_topup(self, esim: Esim, plan: Plan, reference: str) -> Order:
        if plan.kind != "topup":
            raise InvalidInput(
                f"{plan.id} is a plan for a new eSIM; esimctl buys top-ups for an existing one",
                account=self.account,
                provider=self.id,
            )
        code, days = split_plan_id(plan.id)
        # Fresh figures first: they are what a lost answer is later compared with.
        before = await self._raw_esim(esim.iccid, esim.ref.get("esimTranNo"))
        tran_no = str(before.get("esimTranNo") or "")
        # ``amount`` (the agreed price, checked by eSIM Access) only for a USD package that
        # is no day pass; otherwise the listing is read again just before.
        send_amount = plan.price is not None and plan.price.currency == CURRENCY and days is None
        if not send_amount:
            await self._check_listed_price(plan, code, tran_no, esim.iccid)
        now = self.ctx.clock()
        tx = transaction_id(reference)
        for earlier, rec in self._journal().items():
            # The same top-up asked for again after a lost answer: the same transactionId.
            if (
                rec.get("state") == "unknown"
                and rec.get("esimTranNo") == tran_no
                and rec.get("packageCode") == code
                and rec.get("periodNum") == days
                and now - (parse_time(rec.get("sent_at")) or now - REUSE_WITHIN) < REUSE_WITHIN
            ):
                tx = str(rec["tx"])
                self.ctx.journal.record(earlier, state="resent")
                break
        self.ctx.journal.record(
            reference,
            tx=tx,
            iccid=esim.iccid,
            esimTranNo=tran_no,
            packageCode=code,
            periodNum=days,
            totalVolume=to_int(before.get("totalVolume")),
            expiredTime=before.get("expiredTime"),
            packages=len(_packages(before)),
            sent_at=now.isoformat(),
            state="sent",
        )
        payload: dict[str, Any] = {
            "esimTranNo": tran_no,
            "iccid": "" if tran_no else esim.iccid,  # iccid is deprecated for top-ups
            "packageCode": code,
            "transactionId": tx,
        }
        if send_amount and plan.price is not None:
            payload["amount"] = to_units(plan.price)
        # The answer carries no price: only ``amount`` confirms the listed one was charged.
        price = plan.price if "amount" in payload else None
        if days is not None:
            payload["periodNum"] = days
        try:
            obj = await self._call("/esim/topup", payload, idempotent=False)
        except DuplicateTransaction:
            found = await self.find_order(reference, iccid=esim.iccid, since=now)
            self._mark(reference, "done")
            return found or self._order_from(reference, tx, esim.iccid, plan, {}, price=price)
        except (NotSent, RateLimited):
            self._mark(reference, "refused")  # never sent, or refused before anything was done
            raise
        except TemporaryFailure as exc:
            self._mark(reference, "unknown")
            if isinstance(exc, OutcomeUnknown):
                raise
            raise OutcomeUnknown(
                f"eSIM Access failed while buying ({exc.message}); the outcome will be "
                "checked before anything is bought again",
                account=self.account,
                provider=self.id,
            ) from None
        except EsimctlError:
            self._mark(reference, "refused")  # a definite refusal: nothing was bought
            raise
        self._mark(reference, "done")
        answer = obj if isinstance(obj, Mapping) else {}
        return self._order_from(reference, tx, esim.iccid, plan, answer, price=price)

    async def _check_listed_price(self, plan: Plan, code: str, tran_no: str, iccid: str) -> None:
        """Without ``amount``: the listing read again must ask no more than was agreed to."""
        what, shown, asked, tail = f"eSIM Access top-up {plan.id}", plan.price, None, ""
        if shown is not None:
            plans = await self._topup_plans(iccid, tran_no, code)
            asked = next((p.price for p in plans if p.id == plan.id), None)
        if shown is None:
            why = f"{what} has no listed price, and esimctl does not buy at an unknown price"
        elif asked is None or asked.currency != shown.currency:
            why = f"eSIM Access no longer lists {what} at a price esimctl can compare with the "
            why += f"{shown} shown"
        elif asked.amount > shown.amount:
            why = f"eSIM Access now asks {asked} for {plan.id}, more than the {shown} shown"
            tail = ", check 'esimctl plans'"
        else:
            return
        raise LimitRefused(
            f"refused: {why}; nothing was bought{tail}", account=self.account, provider=self.id
        )

    def _order_from(
        self,
        reference: str,
        tx: str,
        iccid: str,
        plan: Plan | None,
        obj: Mapping[str, Any],
        *,
        price: Money | None = None,
        created_at: datetime | None = None,
        pkg: Mapping[str, Any] | None = None,
    ) -> Order:
        extra: dict[str, Any] = {"transactionId": tx}
        total = to_int(obj.get("totalVolume"))
        if total is not None:
            extra["total_volume"] = total
        expires = parse_time(obj.get("expiredTime"))
        if expires is not None:
            extra["expires_at"] = expires.isoformat()
        pkg = pkg or {}
        return Order(
            id=str(obj.get("topUpEsimTranNo") or pkg.get("esimTranNo") or tx),
            account=self.account,
            provider=self.id,
            iccid=str(obj.get("iccid") or iccid),
            plan_id=plan.id if plan else (str(pkg.get("packageCode") or "") or None),
            plan=plan.name if plan else (str(pkg.get("packageName") or "") or None),
            price=price,
            created_at=created_at or self.ctx.clock(),
            state=OrderState.COMPLETED,
            source="provider",
            reference=reference,
            extra=extra,
        )

    async def find_order(
        self, reference: str, *, iccid: str | None, since: datetime
    ) -> Order | None:
        """None only when a well-formed answer shows no such top-up; an answer that cannot
        be understood raises, and the order stays unresolved."""
        try:
            return await self._find_order(reference, iccid=iccid, since=since)
        except (CredentialsError, NotFound):
            raise
        except EsimctlError as exc:
            raise self.lookup_unresolved(
                f"could not say whether top-up {reference} went through ({exc.message})"
            ) from None

    async def _find_order(
        self, reference: str, *, iccid: str | None, since: datetime
    ) -> Order | None:
        record = self._journal().get(reference) or {}
        tx = str(record.get("tx") or transaction_id(reference))
        iccid = iccid or record.get("iccid")
        if not iccid:
            return None
        try:
            raw = await self._raw_esim(iccid, record.get("esimTranNo") or None)
        except NotFound:
            return None  # a readable answer without the eSIM: nothing was topped up
        if not isinstance(raw.get("packageList"), list):
            raise ProviderError(f"the record of eSIM {iccid} has no package list")
        pkgs = _packages(raw)
        hit = next((p for p in pkgs if str(p.get("transactionId") or "") == tx), None)
        if hit is None and not record:
            return None
        if hit is None:
            # No transactionId in the list: the package added since, or totals grown.
            sent_at = parse_time(record.get("sent_at")) or since
            code = str(record.get("packageCode") or "")
            added = [
                p
                for p in pkgs[int(record.get("packages") or 0) :]
                if str(p.get("packageCode") or "") == code
                and (parse_time(p.get("createTime")) or sent_at) >= sent_at - timedelta(minutes=5)
            ]
            before_total = to_int(record.get("totalVolume"))
            after_total = to_int(raw.get("totalVolume"))
            before_end = parse_time(record.get("expiredTime"))
            after_end = parse_time(raw.get("expiredTime"))
            if not added and (
                (before_total is not None and after_total is None)
                or (before_end is not None and after_end is None)
            ):
                raise ProviderError(f"the record of eSIM {iccid} lacks its totals or expiry")
            grew = (
                before_total is not None and after_total is not None and after_total > before_total
            )
            extended = before_end is not None and after_end is not None and after_end > before_end
            if not (added or grew or extended):
                return None
            hit = added[0] if added else {}
        self._mark(reference, "done")
        return self._order_from(
            reference,
            tx,
            iccid,
            None,
            {"totalVolume": raw.get("totalVolume"), "expiredTime": raw.get("expiredTime")},
            created_at=parse_time(hit.get("createTime")),
            pkg=hit,
        )

    def is_applied(self, before: Esim | None, after: Esim, order: Order) -> bool:
        """The package list may carry the transactionId, the top-up answer the new total;
        otherwise the totals or the end date moved."""
        tx = str(order.extra.get("transactionId") or "")
        if not tx and order.reference:
            tx = self._tx_for(order.reference)
        if tx and tx in after.ref.get("transactionIds", "").split(","):
            return True
        total = order.extra.get("total_volume")
        if (
            isinstance(total, int)
            and after.data_total_bytes is not None
            and after.data_total_bytes >= total
        ):
            return True
        return super().is_applied(before, after, order)


def _flag(value: Any) -> bool | None:
    """A boolean option from TOML (a bool) or from ``--set`` (a string); None when unset."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip():
        return value.strip().lower() not in ("0", "false", "no", "off")
    return None


def _positive(value: Any, default: float) -> float:
    v = to_decimal(value)
    return float(v) if v is not None and v > 0 else default


__all__ = ["EsimAccessProvider", "parse_esim", "parse_plans", "parse_usage", "signature"]
