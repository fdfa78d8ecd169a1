"""eSIM Go API v2.5 (``esimgo``): eSIMs, their bundles, the catalogue, orders and balance.

Only what is eSIM Go's lives here (endpoints, field names, quirks); the plumbing is the
provider kit's. What each field means and why each quirk is handled the way it is:
``docs/providers/esimgo.md``, whose sections this module follows.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, TypeVar
from urllib.parse import quote

import httpx

from esimctl.credentials import env_var
from esimctl.errors import (
    AuthRejected,
    ConfigError,
    CredentialsError,
    EsimctlError,
    InsufficientBalance,
    InvalidInput,
    LimitRefused,
    NotFound,
    OutcomeUnknown,
    ProviderError,
    RateLimited,
    TemporaryFailure,
)
from esimctl.models import Esim, EsimState, Money, Order, OrderState, Package, Plan
from esimctl.providers.base import Capability, Provider, ProviderContext
from esimctl.providers.kit.concurrency import bounded_map
from esimctl.providers.kit.http import ApiClient, Throttle, retry_after, shape_of
from esimctl.providers.kit.paging import json_key, numbered_pages
from esimctl.providers.kit.units import to_bytes, to_money, unit_factor
from esimctl.providers.kit.values import as_list, parse_time, records, to_bool, to_decimal, to_int

T = TypeVar("T")
E = TypeVar("E", bound=EsimctlError)

DEFAULT_BASE_URL = "https://api.esim-go.com/v2.5"
MB = 1_000_000  # eSIM Go counts decimal units
RATE_PER_SECOND = 10  # tokens per second per IP address, documented
PER_PAGE = 100  # of the eSIM list (10, 25, 50 or 100), the catalogue and the orders
ASSIGNMENTS_LIMIT = 200  # the documented maximum of GET /esims/{iccid}/bundles
MAX_PAGES = 200
#: How far before our purchase an order may be dated and still be ours (clock skew).
ORDER_CLOCK_MARGIN = timedelta(minutes=2)

APPLIED_STATES = ("queued", "active", "depleted", "expired", "lapsed")  # reached the eSIM
USED_STATES = ("depleted", "expired", "revoked", "lapsed")
BUNDLE_STATES = frozenset({"processing", "queued", "active", *USED_STATES})  # documented
PLAIN_ESIM_STATES = frozenset({"", "active"})  # the eSIM's own states that defer to bundles

_ICCID_PATH = re.compile(r"/esims/(\d{10,22})(?:/|$)")
_DAYS_IN_TEXT = re.compile(r"(\d+)\s*days?\b", re.IGNORECASE)
_DAYS_IN_NAME = re.compile(r"_(\d+)D_", re.IGNORECASE)
_UNLIMITED_NAME = re.compile(r"_UL[EP]?_", re.IGNORECASE)
_NOT_ESIM_ITEMS = {"topup", "autotopup", "apitopup"}  # money into the organisation balance


# -- reading answers -------------------------------------------------------------------------


def _bytes(value: Any, unit: Any = "MB") -> int | None:
    """Decimal units (an unknown unit is MB), exactly: 1.5 MB is 1,500,000 bytes."""
    u = str(unit) if unit_factor(str(unit), 1000) else "MB"
    return to_bytes(value, u, base=1000, rounding="exact", max_bytes=None)


def _inner(body: Any, keys: Sequence[str]) -> Any:
    """The list wrapped under one of ``keys``, or ``body`` itself (bare or wrapped)."""
    if isinstance(body, dict):
        return next((body[k] for k in keys if isinstance(body.get(k), list)), None)
    return body


def unwrap(body: Any, *keys: str) -> list[dict[str, Any]]:
    """The records of a list, bare or wrapped under one of ``keys``; lenient."""
    return [x for x in as_list(_inner(body, keys)) if isinstance(x, dict)]


def strict_records(body: Any, *keys: str) -> list[dict[str, Any]] | None:
    """Like ``unwrap``, but None for an answer of no documented shape (``{}``, ``null``,
    ``{"esims": null}``, non-objects): it says nothing about what the account holds."""
    return records(_inner(body, keys))


def _countries(raw: Any) -> tuple[str, ...]:
    out = []
    for c in as_list(raw):
        iso = c.get("iso") if isinstance(c, dict) else c
        if isinstance(iso, str) and iso.strip():
            out.append(iso.strip().upper())
    return tuple(dict.fromkeys(out))


def _days_of(name: str | None, description: str | None) -> int | None:
    """A bundle's validity from its description ("…, 7 Days, …") or name (``_7D_``)."""
    for rx, text in ((_DAYS_IN_TEXT, description), (_DAYS_IN_NAME, name)):
        m = rx.search(text or "")
        if m:
            return int(m.group(1))
    return None


def _data_allowance(allowances: Any) -> dict[str, Any] | None:
    for al in as_list(allowances):
        if isinstance(al, dict) and str(al.get("type", "DATA")).upper() == "DATA":
            return al
    return None


# -- what the figures mean: assignments and eSIMs --------------------------------------------


@dataclass(frozen=True)
class Assignment:
    """One bundle applied to an eSIM, as ``GET /esims/{iccid}/bundles`` reports it."""

    name: str
    description: str | None
    id: str | None
    reference: str | None
    state: str
    initial: int | None
    remaining: int | None  # as given, even negative: the plausibility checks judge it
    unlimited: bool
    assigned_at: datetime | None
    start: datetime | None
    end: datetime | None

    @property
    def label(self) -> str:
        return self.description or self.name


def _assignment(name: str, description: str | None, a: dict[str, Any]) -> Assignment:
    data = _data_allowance(a.get("allowances"))
    initial, remaining = to_int(a.get("initialQuantity")), to_int(a.get("remainingQuantity"))
    if data is not None:  # MB in the list schema, BYTES in the single-assignment one
        unit = data.get("unit", "MB")
        if initial is None:
            initial = _bytes(data.get("initialAmount"), unit)
        if remaining is None:
            remaining = _bytes(data.get("remainingAmount"), unit)
    return Assignment(
        name=name,
        description=description,
        id=None if a.get("id") is None else str(a.get("id")),
        reference=a.get("assignmentReference") or None,
        state=str(a.get("bundleState") or "unknown").strip().lower(),
        initial=initial,
        remaining=remaining,
        unlimited=bool(a.get("unlimited")) or bool(data and data.get("unlimited")),
        assigned_at=parse_time(a.get("assignmentDateTime")),
        start=parse_time(a.get("startTime")),
        end=parse_time(a.get("endTime")),
    )


def parse_assignments(body: Any, bundle_name: str | None = None) -> list[Assignment]:
    """``{"bundles": [{name, description, assignments}]}`` (or one bundle's
    ``{"assignments": [...]}``) flattened into assignments."""
    bundles = unwrap(body, "bundles")
    if not bundles and isinstance(body, dict) and "assignments" in body:
        bundles = [{"name": bundle_name or body.get("name"), **body}]
    return [
        _assignment(str(b.get("name") or bundle_name or ""), b.get("description") or None, a)
        for b in bundles
        for a in as_list(b.get("assignments"))
        if isinstance(a, dict)
    ]


def _sort_key(a: Assignment) -> datetime:
    return a.assigned_at or a.start or datetime.min.replace(tzinfo=UTC)


def esim_from(
    summary: dict[str, Any],
    assignments: Sequence[Assignment],
    *,
    account: str,
    provider: str,
    now: datetime,
) -> Esim:
    """One eSIM from its list/detail record and its assignments."""

    def in_state(*states: str) -> list[Assignment]:
        return sorted((a for a in assignments if a.state in states), key=_sort_key)

    actives, queued, processing = in_state("active"), in_state("queued"), in_state("processing")
    used = sorted(in_state(*USED_STATES), key=lambda a: a.end or _sort_key(a), reverse=True)
    odd = [a for a in assignments if a.state not in BUNDLE_STATES]  # says nothing: unknown
    live = actives + queued
    total: int | None = None
    remaining: int | None = None
    expires: datetime | None = None
    current: Assignment | None = None
    unlimited = False
    if live:
        current = live[0]
        unlimited = any(a.unlimited for a in live)
        if not unlimited and all(a.initial is not None and a.remaining is not None for a in live):
            total = sum(a.initial or 0 for a in live)
            remaining = sum(a.remaining or 0 for a in live)
        if actives:  # the active bundle's end, then each queued one's own validity in turn
            ends = [a.end for a in actives if a.end is not None]
            expires = max(ends) if ends else None
            for q in queued:
                days = _days_of(q.name, q.description)
                try:
                    expires = None if expires is None or days is None else expires + timedelta(days)
                except OverflowError:  # a validity beyond any calendar
                    expires = None
    elif used:
        current = used[0]
        unlimited = current.unlimited
        if not unlimited:
            total, remaining = current.initial, current.remaining
        expires = current.end
    elif processing:
        current = processing[0]
    elif odd:
        current = max(odd, key=_sort_key)
    plan: str | None = None
    if current is not None:
        plan = current.label
        waiting = len(queued) - (1 if current in queued else 0)
        if waiting:
            plan += f" (+{waiting} queued)"

    esim_state = str(summary.get("state") or "").strip().lower()
    if esim_state == "deactivated":
        state = EsimState.RECYCLED
    elif esim_state not in PLAIN_ESIM_STATES or (odd and not live):
        state = EsimState.UNKNOWN  # suspended, or a state eSIM Go does not document
    elif actives:
        state = EsimState.ACTIVE
    elif queued:
        state = EsimState.NOT_ACTIVE  # waits for first use
    elif used:
        last = used[0]
        depleted = last.state == "depleted" and (last.end is None or last.end > now)
        state = EsimState.DEPLETED if depleted else EsimState.EXPIRED
    else:
        state = EsimState.NOT_ACTIVE  # no bundle yet, or the first is still processing
    if state == EsimState.ACTIVE and expires is not None and expires <= now:
        state = EsimState.EXPIRED

    packages = tuple(
        Package(
            name=a.label,
            state=a.state,
            data_total_bytes=None if a.unlimited else a.initial,
            data_remaining_bytes=None if a.unlimited else a.remaining,
            unlimited=a.unlimited,
            expires_at=a.end,
        )
        for a in (*actives, *queued, *processing)
    )
    rows = [
        [a.name, a.state, a.reference or "", a.assigned_at.isoformat() if a.assigned_at else ""]
        for a in assignments
    ]
    ref = {
        "bundle": current.name if current is not None else "",
        "assignments": json.dumps(rows, separators=(",", ":")),  # read by is_applied
    }
    if esim_state:
        ref["esim_state"] = esim_state
    label = summary.get("customerRef")
    return Esim(
        account=account,
        provider=provider,
        iccid=str(summary.get("iccid") or ""),
        state=state,
        plan=plan,
        label=label if isinstance(label, str) and label.strip() else None,
        data_total_bytes=None if unlimited else total,
        data_remaining_bytes=None if unlimited else remaining,
        unlimited=unlimited,
        expires_at=expires,
        as_of=now,
        packages=packages,
        unit_base=1000,
        ref=ref,
    )


# -- the catalogue ---------------------------------------------------------------------------


def plan_from(
    bundle: dict[str, Any], *, currency: str, account: str, provider: str, kind: str
) -> Plan | None:
    """A catalogue bundle as a plan; None for a bundle without data (voice/SMS only)."""
    name = bundle.get("name")
    if not isinstance(name, str) or not name:
        return None
    data = _data_allowance(bundle.get("allowances"))
    amount = to_decimal(bundle.get("dataAmount"))  # MB, possibly fractional
    unlimited = bool(bundle.get("unlimited")) or bool(data and data.get("unlimited"))
    if amount == -1 or (not amount and _UNLIMITED_NAME.search(name)):
        unlimited = True  # dataAmount 0 or -1 by source; names say UL, ULE or ULP
    data_bytes: int | None = None
    if not unlimited:
        allowance = to_decimal(data.get("amount")) if data is not None else None
        if amount is not None and amount > 0:
            data_bytes = _bytes(amount)
        elif data is not None and allowance is not None and allowance > 0:
            data_bytes = _bytes(allowance, data.get("unit", "MB"))
        else:
            return None
    description = bundle.get("description")
    return Plan(
        id=name,
        account=account,
        provider=provider,
        name=description if isinstance(description, str) and description else name,
        kind=kind,
        data_bytes=data_bytes,
        unlimited=unlimited,
        validity_days=to_int(bundle.get("duration")) or _days_of(name, description),
        price=to_money(bundle.get("price"), currency),
        countries=_countries(bundle.get("countries")),
        stacking="queues" if kind == "topup" else None,
        unit_base=1000,
    )


# -- orders ----------------------------------------------------------------------------------


def _one_order(body: Any) -> bool:
    """A single order object (the v2.4 client's answer), not a list of them."""
    return (
        isinstance(body, dict)
        and "orders" not in body
        and ("orderReference" in body or "order" in body)
    )


def _created(raw: dict[str, Any]) -> datetime | None:
    return parse_time(raw.get("createdDate")) or parse_time(raw.get("createDate"))


def order_records(body: Any) -> list[dict[str, Any]]:
    """The order list bare (v2.5), wrapped in ``orders``, or one order (v2.4); lenient."""
    return [body] if _one_order(body) else unwrap(body, "orders", "Orders")


def strict_order_records(body: Any, *, complete: bool = False) -> list[dict[str, Any]] | None:
    """``order_records`` for an answer that must be understood: None for any other shape;
    with ``complete``, also unless every order has its reference, a date and its lines."""
    rows = [body] if _one_order(body) else strict_records(body, "orders", "Orders")
    if rows is not None and complete:
        for r in rows:
            lines = r.get("order", r.get("Order"))
            if not r.get("orderReference") or _created(r) is None or not isinstance(lines, list):
                return None
    return rows


def order_state(status: Any) -> OrderState:
    s = str(status or "").strip().lower()
    if s in ("completed", "complete", "success", "successful", "done"):
        return OrderState.COMPLETED
    if s in ("failed", "failure", "cancelled", "canceled", "declined", "refunded", "error"):
        return OrderState.FAILED
    return OrderState.PENDING


def orders_from(
    raw: dict[str, Any], *, account: str, provider: str, default_currency: str | None
) -> list[Order]:
    """One order record as history rows: one per bundle line (balance top-ups left out)."""
    ref = str(raw.get("orderReference") or "")
    created = _created(raw)
    if not ref or created is None:
        return []
    currency = raw.get("currency") or default_currency
    lines = [x for x in as_list(raw.get("order") or raw.get("Order")) if isinstance(x, dict)]
    lines = [x for x in lines if str(x.get("type", "bundle")).lower() not in _NOT_ESIM_ITEMS]
    out: list[Order] = []
    for i, line in enumerate(lines):
        iccids = [str(x) for x in as_list(line.get("iccids"))] or [
            str(e["iccid"])
            for e in as_list(line.get("esims"))
            if isinstance(e, dict) and e.get("iccid")
        ]
        amount = to_decimal(line.get("subTotal"))
        if amount is None and len(lines) == 1:
            amount = to_decimal(raw.get("total"))
        out.append(
            Order(
                id=ref if len(lines) == 1 else f"{ref}:{i + 1}",
                account=account,
                provider=provider,
                iccid=iccids[0] if len(iccids) == 1 else None,
                plan_id=line.get("item"),
                plan=line.get("item"),
                price=to_money(amount, str(currency)) if currency else None,
                created_at=created,
                state=order_state(raw.get("status")),
                source="provider",
                extra={"order_reference": ref, "iccids": iccids, "type": line.get("type")},
            )
        )
    return out


# -- errors and rate limits ------------------------------------------------------------------


class ServerFailure(TemporaryFailure):
    """HTTP 5xx from eSIM Go, with its ``Retry-After`` (a 503 says when to come back)."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _Unreadable(TemporaryFailure):
    """An answer of no documented shape: nothing is read from it."""


def _message(body: Any) -> str:
    if isinstance(body, dict):
        for key in ("message", "Message", "status", "error"):
            value = body.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip()[:200]
    return ""


def _reset_seconds(resp: httpx.Response) -> float | None:
    when = parse_time(resp.headers.get("X-Ratelimit-Reset"))
    return None if when is None else max(0.0, (when - datetime.now(UTC)).total_seconds())


_THROTTLES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[float, Throttle]] = (
    weakref.WeakKeyDictionary()
)


def _shared_throttle(rate: float) -> Throttle:
    """One bucket per run and rate: eSIM Go limits per IP address, not per account."""
    buckets = _THROTTLES.setdefault(asyncio.get_running_loop(), {})
    if rate not in buckets:
        buckets[rate] = Throttle(rate, 1.0, burst=max(1, int(rate)))
    return buckets[rate]


def _kind(path: str) -> str:
    """The endpoint family of a path, for the token costs learnt per family."""
    parts = [p for p in re.sub(r"^/v\d+(?:\.\d+)?", "", path).split("/") if p]
    if parts[:1] == ["esims"] and len(parts) >= 2:
        return f"esims/*/{parts[2]}" if len(parts) >= 3 else "esims/*"
    return parts[0] if parts else ""


# -- the provider ----------------------------------------------------------------------------


class EsimGoProvider(Provider):
    id: ClassVar[str] = "esimgo"
    display_name: ClassVar[str] = "eSIM Go"
    secret_fields: ClassVar[tuple[str, ...]] = ("API_KEY",)
    default_base_url: ClassVar[str | None] = DEFAULT_BASE_URL
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
    unit_base: ClassVar[int] = 1000
    #: No documented usage cache; 5 minutes keeps repeated `status` off the rate limit.
    usage_ttl: ClassVar[timedelta] = timedelta(minutes=5)
    catalogue_ttl: ClassVar[timedelta] = timedelta(hours=6)
    #: Orders are listed at once; the margin covers a request that reached eSIM Go after
    #: we gave up on it, so a late commit is found rather than bought again.
    order_lookup_lag: ClassVar[timedelta] = timedelta(minutes=5)
    homepage: ClassVar[str | None] = "https://sso.esim-go.com/login"

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        cls._options(options, default_timeout=20.0)

    @staticmethod
    def _options(options: Mapping[str, Any], *, default_timeout: float) -> tuple[float, int, float]:
        """``timeout`` (seconds per request), ``retries`` (of a read), ``rate_limit``."""
        try:
            timeout = float(options.get("timeout", default_timeout))
            retries = int(options.get("retries", 4))
            rate = float(options.get("rate_limit", RATE_PER_SECOND))
        except (TypeError, ValueError):
            timeout, retries, rate = -1.0, -1, -1.0
        if not (0 < timeout <= 600 and 0 <= retries <= 10 and 0 < rate <= 100_000):
            given = ", ".join(
                f"{k}={options[k]!r}" for k in ("timeout", "retries", "rate_limit") if k in options
            )
            raise ConfigError(
                f"invalid eSIM Go account option ({given}): timeout is seconds, more than 0 "
                "and at most 600; retries a whole number from 0 to 10; rate_limit requests "
                "per second, more than 0"
            )
        return timeout, retries, rate

    def __init__(self, ctx: ProviderContext) -> None:
        super().__init__(ctx)
        self._timeout, self._retries, self._rate = self._options(
            ctx.account.options, default_timeout=ctx.timeout
        )
        self._api: ApiClient | None = None
        self._org: dict[str, Any] | None = None
        self._costs: dict[str, int] = {}  # tokens per endpoint family (X-Ratelimit-Cost)

    # -- credentials and requests -----------------------------------------------------------

    @property
    def api(self) -> ApiClient:
        if self._api is None:
            key = (self.ctx.secrets.get("API_KEY") or "").strip()
            if not key:
                raise self._error(
                    CredentialsError,
                    f"no API key for account {self.account!r}: run 'esimctl account add "
                    f"{self.account} --provider esimgo' or set {env_var(self.account, 'API_KEY')}",
                )
            self._api = ApiClient(
                base_url=self.base_url,
                provider=self.id,
                account=self.account,
                timeout=self._timeout,
                headers={"X-API-Key": key},  # never ?api_key=: query strings reach logs
                throttle=_shared_throttle(self._rate),
                error_mapper=self._map_error,
                retries=self._retries,
                extra=self.ctx.extra,
                secrets=self.ctx.secrets.values(),
                transport=self.ctx.transport,
            )
            self._api.client.event_hooks["response"].append(self._on_response)
        return self._api

    async def aclose(self) -> None:
        if self._api is not None:
            await self._api.aclose()
            self._api = None

    async def _on_response(self, resp: httpx.Response) -> None:
        """Learn the endpoint's cost; an empty bucket waits for ``X-Ratelimit-Reset``."""
        cost = to_int(resp.headers.get("X-Ratelimit-Cost"))
        if cost is not None and 1 <= cost <= max(self._rate, 1):
            self._costs[_kind(resp.request.url.path)] = cost
        remaining = to_int(resp.headers.get("X-Ratelimit-Remaining"))
        throttle = self.api.throttle
        if throttle is not None and remaining is not None and remaining <= 0:
            wait = _reset_seconds(resp)
            throttle.pause(min(wait if wait is not None else 1.0, 2.0) or 0.1)

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        api = self.api
        if api.throttle is not None:
            for _ in range(self._costs.get(_kind(path), 1) - 1):
                await api.throttle.acquire()
        return await api.request(method, path, **kwargs)

    async def _get(self, path: str, **kwargs: Any) -> Any:
        return await self._call("GET", path, **kwargs)

    def _map_error(self, resp: httpx.Response, body: Any) -> EsimctlError | None:
        """``{"message": ...}``: the HTTP status decides, the text only refines."""
        status = resp.status_code
        if status < 400:
            return None
        msg = self.api.scrub(_message(body))
        low = msg.lower()
        path = resp.request.url.path
        m = _ICCID_PATH.search(path)
        iccid = m.group(1) if m else None
        about_esim = "iccid" in low or "esim" in low or "sim " in low
        if status in (401, 403):
            if iccid and about_esim and "forbidden" not in low:
                return NotFound(f"eSIM {iccid} is not on eSIM Go account {self.account!r}")
            if "inventory" in low:
                return ProviderError(f"eSIM Go: {msg}")
            return AuthRejected(
                f"eSIM Go rejected the API key of account {self.account!r} (HTTP {status}); "
                f"run 'esimctl account add {self.account} --provider esimgo --replace' or set "
                f"{env_var(self.account, 'API_KEY')}"
            )
        if status == 429:
            wait = retry_after(resp)
            return RateLimited(
                "eSIM Go rate limit reached; retry later",
                retry_after=wait if wait is not None else _reset_seconds(resp),
            )
        if status >= 500:
            return ServerFailure(
                f"eSIM Go is unavailable (HTTP {status}{': ' + msg if msg else ''})",
                retry_after=retry_after(resp),
            )
        if any(w in low for w in ("insufficient", "balance", "funds", "credit")):
            return InsufficientBalance(
                f"eSIM Go: the organisation balance does not cover this order ({msg}); "
                "add funds in the eSIM Go portal"
            )
        if "compatib" in low:
            return InvalidInput(f"eSIM Go: {msg}")
        if "bundle" in low and any(
            w in low for w in ("not exist", "not found", "unknown", "invalid")
        ):
            return InvalidInput(f"eSIM Go sells no such bundle: {msg}")
        gone = ("not found", "not exist", "permission", "invalid iccid", "no esim")
        if status in (400, 404) and (iccid or about_esim) and any(w in low for w in gone):
            named = iccid or next(iter(re.findall(r"\d{18,22}", msg)), None)
            what = f"eSIM {named}" if named else "the eSIM"
            return NotFound(f"{what} is not on eSIM Go account {self.account!r}")
        if status == 410:
            return ProviderError(f"eSIM Go: the eSIM is deactivated ({msg or 'HTTP 410'})")
        if status == 404:
            return NotFound(f"eSIM Go: not found ({path})")
        return ProviderError(
            f"eSIM Go refused the request to {path} (HTTP {status}{': ' + msg if msg else ''})"
        )

    def _error(self, cls: type[E], message: str, **kwargs: Any) -> E:
        return cls(message, account=self.account, provider=self.id, **kwargs)

    def _unreadable(self, what: str, body: Any) -> _Unreadable:
        return self._error(
            _Unreadable,
            f"eSIM Go answered {what} with {shape_of(body)}, not what it documents; nothing "
            "is read from it (retry later)",
        )

    async def _about_iccid(self, iccid: str, call: Callable[[], Awaitable[T]]) -> T:
        """A 403 about one ICCID means "not yours" when the key itself still works."""
        try:
            return await call()
        except AuthRejected as refused:
            try:
                await self._organisation(fresh=True)
            except AuthRejected:
                raise refused from None  # the key itself is refused
            msg = f"eSIM {iccid} is not on eSIM Go account {self.account!r}"
            raise self._error(NotFound, msg) from None

    async def _pages(
        self,
        path: str,
        params: dict[str, Any],
        what: str,
        read: Callable[[Any], list[dict[str, Any]] | None],
        *,
        size_param: str = "perPage",
    ) -> list[dict[str, Any]]:
        """No totals: pages until a short one (or one that brings nothing new)."""

        async def fetch(page: int) -> tuple[list[dict[str, Any]], bool]:
            body = await self._get(path, params={**params, "page": str(page), size_param: PER_PAGE})
            rows = read(body)
            if rows is None:
                raise self._unreadable(what, body)
            return rows, len(rows) >= PER_PAGE

        return await numbered_pages(fetch, max_pages=MAX_PAGES, dedupe=json_key)

    # -- organisation and balance -----------------------------------------------------------

    async def _organisation(self, *, fresh: bool = False) -> dict[str, Any]:
        if self._org is None or fresh:
            body = await self._get("/organisation")
            if isinstance(body, dict) and isinstance(body.get("organisations"), list):
                orgs = unwrap(body, "organisations")
                body = orgs[0] if orgs else {}
            org = body if isinstance(body, dict) else {}
            # Only what we need: the answer also carries the API key itself.
            self._org = {k: org.get(k) for k in ("name", "currency", "balance", "testCredit")}
        return self._org

    async def _currency(self) -> str:
        cur = (await self._organisation()).get("currency")
        return cur.strip().upper() if isinstance(cur, str) and cur.strip() else "USD"

    async def check(self) -> str:
        org = await self._organisation(fresh=True)
        bal = await self.balance()
        name = org.get("name") or "organisation"
        return f"{name}: balance {bal}" if bal is not None else str(name)

    async def balance(self) -> Money | None:
        return to_money((await self._organisation()).get("balance"), await self._currency())

    # -- eSIMs ------------------------------------------------------------------------------

    async def _assignments(self, iccid: str) -> list[Assignment]:
        body = await self._get(
            f"/esims/{iccid}/bundles", params={"includeUsed": "true", "limit": ASSIGNMENTS_LIMIT}
        )
        if strict_records(body, "bundles") is None and not (
            isinstance(body, dict) and isinstance(body.get("assignments"), list)
        ):
            raise self._unreadable(f"the bundles of eSIM {iccid}", body)
        return parse_assignments(body)

    def _esim(self, summary: dict[str, Any], assignments: Sequence[Assignment]) -> Esim:
        now = self.ctx.clock()
        return esim_from(summary, assignments, account=self.account, provider=self.id, now=now)

    def _plan(self, bundle: dict[str, Any], currency: str, kind: str) -> Plan | None:
        return plan_from(
            bundle, currency=currency, account=self.account, provider=self.id, kind=kind
        )

    def _orders(self, raw: dict[str, Any], currency: str | None) -> list[Order]:
        return orders_from(raw, account=self.account, provider=self.id, default_currency=currency)

    async def list_esims(self) -> list[Esim]:
        summaries = await self._pages(
            "/esims", {}, "the eSIM list", lambda body: strict_records(body, "esims")
        )
        unique = {str(s["iccid"]): s for s in summaries if s.get("iccid")}

        async def one(iccid: str) -> Esim | None:
            try:
                assignments = await self._about_iccid(iccid, lambda: self._assignments(iccid))
            except NotFound:  # gone (or taken back) between the list and this call
                return Esim(
                    account=self.account,
                    provider=self.id,
                    iccid=iccid,
                    state=EsimState.UNKNOWN,
                    as_of=self.ctx.clock(),
                    unit_base=1000,
                )
            except _Unreadable as exc:  # an error for that eSIM, not for the account
                msg = f"eSIM {iccid}: {exc.message}; not shown and never renewed on it"
                self.rejected.append(
                    self._error(ProviderError, msg, code="unreadable_answer", iccid=iccid)
                )
                return None
            return self._esim(unique[iccid], assignments)

        return [e for e in await bounded_map(unique, one) if e is not None]

    async def get_esim(self, iccid: str) -> Esim:
        async def fetch() -> Esim:
            detail = await self._get(f"/esims/{iccid}")
            if not isinstance(detail, dict):
                raise self._unreadable(f"eSIM {iccid}", detail)
            summary = {**detail, "iccid": detail.get("iccid") or iccid}
            return self._esim(summary, await self._assignments(iccid))

        return await self._about_iccid(iccid, fetch)

    # -- catalogue and top-ups --------------------------------------------------------------

    async def _catalogue(self, countries: str) -> list[dict[str, Any]]:
        return await self._pages(
            "/catalogue",
            {"countries": countries},
            "the catalogue",
            lambda body: strict_records(body, "bundles"),
        )

    async def catalogue(self, country: str) -> list[Plan]:
        cc = country.strip().upper()
        currency = await self._currency()
        plans = []
        for b in await self._catalogue(cc):
            p = self._plan(b, currency, "new")
            if p is not None and (not p.countries or cc in p.countries):
                plans.append(p)
        return plans

    async def _bundle(self, name: str) -> dict[str, Any] | None:
        try:
            body = await self._get(f"/catalogue/bundle/{quote(name, safe='')}")
        except (NotFound, InvalidInput, ProviderError):
            return None
        if isinstance(body, dict) and isinstance(body.get("bundles"), list):
            return next(iter(unwrap(body, "bundles")), None)
        return body if isinstance(body, dict) else None

    async def _compatible(self, iccid: str, bundle: str) -> bool:
        body = await self._get(f"/esims/{iccid}/compatible/{quote(bundle, safe='')}")
        if isinstance(body, dict):
            value = body.get("compatible", body.get("Compatible"))
            return to_bool(value) is True if isinstance(value, str) else bool(value)
        return body is True

    async def topups(self, esim: Esim) -> list[Plan]:
        """Catalogue bundles covering the current bundle's countries, on its network
        profile, that ``/compatible`` accepts (eSIM Go has no top-up catalogue)."""
        name = esim.ref.get("bundle") or (await self.get_esim(esim.iccid)).ref.get("bundle")
        if not name:
            return []  # no bundle ever: nothing says which country the eSIM is for
        current = await self._bundle(name)
        covers = _countries(current.get("countries")) if current else ()
        if not covers:  # esim_1GB_7D_PT_V2: the country is in the name
            covers = tuple(p.upper() for p in name.split("_")[3:4] if len(p) == 2 and p.isalpha())
        if not covers:
            return []
        profile = (current or {}).get("profileName")
        currency = await self._currency()
        candidates: list[Plan] = []
        for b in await self._catalogue(",".join(covers)):
            p = self._plan(b, currency, "topup")
            if p is None or not set(covers) <= set(p.countries):
                continue
            if profile and b.get("profileName") and b.get("profileName") != profile:
                continue  # another network profile is never compatible: not asked
            candidates.append(p)

        async def check(p: Plan) -> Plan | None:
            try:
                return p if await self._compatible(esim.iccid, p.id) else None
            except (InvalidInput, ProviderError):
                return None

        checked = await self._about_iccid(
            esim.iccid, lambda: bounded_map(candidates, check, limit=4)
        )
        return [p for p in checked if p is not None]

    # -- orders -----------------------------------------------------------------------------

    async def _order_rows(
        self, since: datetime | None = None, *, complete: bool = False
    ) -> list[Order]:
        params: dict[str, Any] = {"includeIccids": "true"}
        if since is not None:
            params["createdAt"] = "gte:" + since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        found = await self._pages(
            "/orders",
            params,
            "the order list",
            lambda body: strict_order_records(body, complete=complete),
            size_param="limit",
        )
        currency = await self._currency() if any(not r.get("currency") for r in found) else None
        return [o for r in found for o in self._orders(r, currency)]

    async def orders(self) -> list[Order]:
        return sorted(await self._order_rows(), key=lambda o: o.created_at, reverse=True)

    # -- buying -----------------------------------------------------------------------------

    def _refused(self, text: str) -> LimitRefused:
        return self._error(LimitRefused, f"refused: {text}")

    async def _validate(self, esim: Esim, plan: Plan, line: dict[str, Any]) -> Money:
        """Price the order with ``type: validate`` (charges nothing, retried like a read);
        refused unless the total is a real price no higher than the one shown."""
        what = f"{plan.id!r} for eSIM {esim.iccid}"
        if plan.price is None:
            raise self._refused(
                f"eSIM Go lists no price for {what}, and esimctl does not buy at an unknown "
                "price; nothing was bought"
            )
        answer = await self._call(
            "POST", "/orders", json={"type": "validate", "assign": True, "order": [line]}
        )
        if not isinstance(answer, dict):
            raise self._unreadable("the price check (validate)", answer)
        if answer.get("valid") is False:
            why = _message(answer) or "the order did not validate"
            raise self._error(InvalidInput, f"eSIM Go will not sell {what}: {why}")
        total = to_decimal(answer.get("total"))
        if total is None:
            raise self._unreadable("the price check (validate)", answer)
        currency = answer.get("currency") or plan.price.currency
        if currency != plan.price.currency:
            raise self._refused(
                f"eSIM Go prices {what} in {currency}, not in the {plan.price.currency} "
                "shown; nothing was bought"
            )
        if total <= 0:
            raise self._refused(
                f"eSIM Go's price check for {what} says {total} {currency}, which is no real "
                "price; nothing was bought"
            )
        if total > plan.price.amount:
            raise self._refused(
                f"eSIM Go now asks {Money(total, currency)} for {plan.id}, more than the "
                f"{plan.price} shown; nothing was bought, check 'esimctl plans'"
            )
        return Money(total, currency)

    async def buy_topup(self, esim: Esim, plan: Plan, reference: str) -> Order:
        async def compatible() -> bool:
            return await self._compatible(esim.iccid, plan.id)

        if not await self._about_iccid(esim.iccid, compatible):
            raise self._error(
                InvalidInput,
                f"eSIM Go bundle {plan.id!r} cannot be applied to eSIM {esim.iccid} (another "
                f"network profile); see 'esimctl plans {esim.iccid}'",
            )
        # allowReassign false: an incompatible bundle is refused, never put on a new ICCID.
        line = {
            "type": "bundle",
            "item": plan.id,
            "quantity": 1,
            "iccids": [esim.iccid],
            "allowReassign": False,
        }
        await self._validate(esim, plan, line)
        # No client reference on eSIM Go: the journal is what find_order matches on.
        sent_at = self.ctx.clock().isoformat()
        self.ctx.journal.record(reference, iccid=esim.iccid, plan_id=plan.id, sent_at=sent_at)
        body = await self._call(
            "POST",
            "/orders",
            json={"type": "transaction", "assign": True, "order": [line]},
            idempotent=False,
        )
        raw = next(iter(order_records(body)), {})
        currency = plan.price.currency if plan.price else None
        orders = self._orders(raw, currency)
        if not orders:
            raise self._error(
                OutcomeUnknown,
                "eSIM Go accepted the purchase but its answer has no order reference; it is "
                "checked before anything is bought again",
            )
        order = orders[0]
        self.ctx.journal.record(reference, order=order.id)
        # The price the answer says was charged, as reported; the ledger keeps the listed one.
        return dataclasses.replace(
            order,
            iccid=esim.iccid,
            plan_id=plan.id,
            plan=plan.name,
            reference=reference,
            extra={**order.extra, "status_message": raw.get("statusMessage")},
        )

    async def find_order(
        self, reference: str, *, iccid: str | None, since: datetime
    ) -> Order | None:
        """The order ``reference`` made; None only when a well-formed order list shows
        none. An answer that cannot be understood raises: the purchase stays unresolved."""
        try:
            return await self._find_order(reference, iccid=iccid, since=since)
        except CredentialsError:
            raise
        except EsimctlError as exc:
            raise self.lookup_unresolved(
                f"could not say whether purchase {reference} went through ({exc.message})"
            ) from None

    async def _find_order(
        self, reference: str, *, iccid: str | None, since: datetime
    ) -> Order | None:
        intent = self.ctx.journal.entry(reference)
        plan_id, known = intent.get("plan_id"), intent.get("order")
        iccid = iccid or intent.get("iccid")
        # The journal knows when the request left; an order dated before it is not ours.
        sent = parse_time(intent.get("sent_at"))
        start = (sent if sent is not None and sent > since else since) - ORDER_CLOCK_MARGIN
        claimed = self.ctx.journal.claimed_order_ids(except_reference=reference)
        rows = await self._order_rows(start, complete=True)

        def ours(o: Order) -> bool:
            ref = str(o.extra.get("order_reference") or o.id)
            iccids = o.extra.get("iccids") or []
            return not (
                ref in claimed
                or o.id in claimed
                or o.created_at < start
                or (plan_id and o.plan_id != plan_id)
                or (iccid and iccids and iccid not in iccids)
            )

        candidates = [o for o in rows if known and o.extra.get("order_reference") == known]
        candidates = candidates or [o for o in rows if ours(o)]
        if not candidates:
            return None
        found = min(candidates, key=lambda o: o.created_at)
        self.ctx.journal.record(
            reference, order=str(found.extra.get("order_reference") or found.id)
        )
        return dataclasses.replace(found, iccid=iccid or found.iccid, reference=reference)

    def is_applied(self, before: Esim | None, after: Esim, order: Order) -> bool:
        """Applied once the bundle ``order`` bought has left *processing* on the eSIM: the
        assignment naming the order, else a bundle of that name assigned since it."""
        try:
            rows = json.loads(after.ref.get("assignments") or "[]")
        except ValueError:
            rows = []
        order_ref = str(order.extra.get("order_reference") or order.id or "")
        mine = [
            r for r in rows if order_ref and len(r) > 2 and r[2] and str(r[2]).startswith(order_ref)
        ]
        if mine:
            return any(r[1] in APPLIED_STATES for r in mine)
        since = order.created_at - ORDER_CLOCK_MARGIN
        for r in rows:
            if len(r) < 4 or r[0] != order.plan_id or r[1] not in APPLIED_STATES:
                continue
            assigned = parse_time(r[3])
            if assigned is not None and assigned >= since:
                return True
        return False
