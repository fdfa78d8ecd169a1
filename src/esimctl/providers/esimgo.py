"""eSIM Go API v2.5 (``esimgo``): eSIMs, their bundles, the catalogue, orders and balance.

What makes eSIM Go different from the other providers, and how this module handles it:

* One ``X-API-Key`` per organisation. A bad key answers **403** ``{"message": "Forbidden"}``,
  but 403 also means "this ICCID is not yours"; for a call about one ICCID a 403 is told
  apart with one cheap ``GET /organisation`` (if that works, the key is fine).
* Figures are per *assignment* (a bundle applied to an eSIM), in **decimal** bytes
  (a 1 GB bundle is 1,000,000,000). One bundle is ``active``; later ones wait ``queued``
  behind it; a fresh purchase is ``processing`` for up to ~10 minutes. An eSIM's figures
  are the sum of its active and queued bundles; each bundle is also listed as a package so
  the user sees what is left now and what waits behind it.
* There is no top-up catalogue: a top-up is any catalogue bundle that covers the
  countries of the eSIM's current bundle and that ``GET /esims/{iccid}/compatible/{bundle}``
  accepts. It is bought with ``POST /orders`` (``type: transaction``, ``assign: true``,
  ``iccids``, ``allowReassign: false`` so the bundle never lands on a new ICCID).
* Orders carry **no client reference** and no idempotency key. Before sending, the
  purchase is journalled in the account's state directory (ICCID, bundle, time); after a
  lost answer ``find_order`` looks for an order of that bundle on that ICCID created since
  the intent, that no other journalled purchase has claimed.
* The catalogue and the order list come as a bare array or wrapped in an object depending
  on the API version; both are accepted. Pagination has no totals: pages are read until a
  short page.
* Rate limit: 10 tokens per second per IP, each endpoint costing an undocumented number of
  tokens. Requests share one token bucket per run; the cost an endpoint reports in
  ``X-Ratelimit-Cost`` is learnt and charged, and an empty ``X-Ratelimit-Remaining`` pauses
  the bucket until ``X-Ratelimit-Reset``. 429 and 503 are retried after ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import json
import re
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
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
from esimctl.providers.kit.http import ApiClient, Throttle, retry_after, shape_of

T = TypeVar("T")
R = TypeVar("R")

DEFAULT_BASE_URL = "https://api.esim-go.com/v2.5"
#: eSIM Go counts decimal units: the catalogue's MB are 10**6 bytes.
MB = 1_000_000
#: The documented default: 10 tokens per second per IP address.
RATE_PER_SECOND = 10
ESIMS_PER_PAGE = 100  # one of 10, 25, 50, 100
CATALOGUE_PER_PAGE = 100
ORDERS_PER_PAGE = 100
ASSIGNMENTS_LIMIT = 200  # the documented maximum of GET /esims/{iccid}/bundles
MAX_PAGES = 200
#: How far before our purchase intent an order may be dated and still be ours (clock skew).
ORDER_CLOCK_MARGIN = timedelta(minutes=2)
#: Journal entries older than this are dropped.
JOURNAL_KEEP = timedelta(days=60)
#: Beyond 10**±MAX_EXPONENT a figure is no figure at all (and would only slow arithmetic).
MAX_EXPONENT = 1000

#: Bundle states whose data counts in the eSIM's figures.
LIVE_STATES = ("active", "queued")
#: States of an assignment that did reach the eSIM (a top-up in one of them has applied).
APPLIED_STATES = ("queued", "active", "depleted", "expired", "lapsed")
USED_STATES = ("depleted", "expired", "revoked", "lapsed")
#: Every documented ``bundleState``; any other makes the eSIM's state unknown.
BUNDLE_STATES = frozenset({"processing", "queued", "active", *USED_STATES})
#: The eSIM's own ``state`` (v2.5) under which its bundles say what state it is in.
#: ``deactivated`` is recycled; ``suspended`` and anything new are unknown.
PLAIN_ESIM_STATES = frozenset({"", "active"})

_ICCID_PATH = re.compile(r"/esims/(\d{10,22})(?:/|$)")
_DAYS_IN_TEXT = re.compile(r"(\d+)\s*days?\b", re.IGNORECASE)
_DAYS_IN_NAME = re.compile(r"_(\d+)D_", re.IGNORECASE)
_FRACTION = re.compile(r"(\.\d{6})\d+")
_UNLIMITED_NAME = re.compile(r"_UL[EP]?_", re.IGNORECASE)


# -- parsing -------------------------------------------------------------------------------


def parse_time(value: Any) -> datetime | None:
    """RFC 3339 with 0 to 9 fractional digits, ``Z`` or an offset, or epoch (ms or s)."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)) or (isinstance(value, str) and value.strip().isdigit()):
        try:
            number = float(value)
            if not number > 0:  # also NaN
                return None
            if number > 1e11:  # epoch milliseconds (firstInstalledDateTime in v2.5)
                number /= 1000
            return datetime.fromtimestamp(number, UTC)
        except (OverflowError, ValueError, OSError):  # beyond any date: not a time
            return None
    if not isinstance(value, str):
        return None
    text = _FRACTION.sub(r"\1", value.strip())
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:  # the API speaks UTC
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def parse_money(value: Any) -> Decimal | None:
    """A decimal in major units: ``4.21``, ``"95.79"`` (never through a binary float).
    None for anything that is no finite number (NaN, infinities, text)."""
    if value is None or isinstance(value, bool) or value == "":
        return None
    if not isinstance(value, (int, float, str, Decimal)):
        return None
    try:
        # repr() of a float is the shortest text that reads back the same: 4.21 -> "4.21".
        d = Decimal(repr(value) if isinstance(value, float) else str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    if not d.is_finite() or abs(d.adjusted()) > MAX_EXPONENT:
        return None
    return d


def _int(value: Any) -> int | None:
    """A whole number as given (1e30 stays 10**30, -5 stays -5: the plausibility checks
    judge figures); None for what is no whole number (NaN, 1.5, text)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    d = parse_money(value)
    if d is None or d != d.to_integral_value():
        return None
    return int(d)


def _scaled(value: Any, factor: int) -> int | None:
    """``value`` units of ``factor`` bytes (a catalogue's MB may be fractional: 1.5 MB is
    1,500,000 bytes); None unless that is a whole number of bytes."""
    d = parse_money(value)
    if d is None:
        return None
    n = d * factor
    return int(n) if n == n.to_integral_value() else None


def unwrap(body: Any, *keys: str) -> list[dict[str, Any]]:
    """A list of records whether it comes bare, wrapped under one of ``keys``, or alone."""
    if isinstance(body, list):
        return [x for x in body if isinstance(x, dict)]
    if isinstance(body, dict):
        for key in keys:
            inner = body.get(key)
            if isinstance(inner, list):
                return [x for x in inner if isinstance(x, dict)]
        return []
    return []


def _countries(raw: Any) -> tuple[str, ...]:
    out: list[str] = []
    for c in raw or ():
        iso = c.get("iso") if isinstance(c, dict) else c
        if isinstance(iso, str) and iso.strip():
            out.append(iso.strip().upper())
    return tuple(dict.fromkeys(out))


def _days_of(name: str | None, description: str | None) -> int | None:
    """The validity of a bundle from its description ("…, 7 Days, …") or name (``_7D_``)."""
    for rx, text in ((_DAYS_IN_TEXT, description), (_DAYS_IN_NAME, name)):
        m = rx.search(text or "")
        if m:
            return int(m.group(1))
    return None


_UNIT_BYTES = {"BYTES": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}


def _data_allowance(allowances: Any) -> dict[str, Any] | None:
    for al in allowances or ():
        if isinstance(al, dict) and str(al.get("type", "DATA")).upper() == "DATA":
            return al
    return None


@dataclass(frozen=True)
class Assignment:
    """One bundle applied to an eSIM, as ``GET /esims/{iccid}/bundles`` reports it."""

    name: str
    description: str | None
    id: str | None
    reference: str | None
    state: str
    initial: int | None
    remaining: int | None
    unlimited: bool
    assigned_at: datetime | None
    start: datetime | None
    end: datetime | None

    @property
    def label(self) -> str:
        return self.description or self.name


def _assignment(name: str, description: str | None, a: dict[str, Any]) -> Assignment:
    data = _data_allowance(a.get("allowances"))
    initial = _int(a.get("initialQuantity"))
    remaining = _int(a.get("remainingQuantity"))
    if (initial is None or remaining is None) and data is not None:
        # Allowances say MB in the list schema and BYTES in the single-assignment schema.
        factor = _UNIT_BYTES.get(str(data.get("unit", "MB")).upper(), MB)
        if initial is None:
            initial = _scaled(data.get("initialAmount"), factor)
        if remaining is None:
            remaining = _scaled(data.get("remainingAmount"), factor)
    unlimited = bool(a.get("unlimited")) or bool(data and data.get("unlimited"))
    return Assignment(
        name=name,
        description=description,
        id=None if a.get("id") is None else str(a.get("id")),
        reference=a.get("assignmentReference") or None,
        state=str(a.get("bundleState") or "unknown").strip().lower(),
        initial=initial,
        # As given, even negative: a figure that cannot be true is refused by the
        # plausibility checks, never turned into "0 left" (which would trigger renewals).
        remaining=remaining,
        unlimited=unlimited,
        assigned_at=parse_time(a.get("assignmentDateTime")),
        start=parse_time(a.get("startTime")),
        end=parse_time(a.get("endTime")),
    )


def parse_assignments(body: Any, bundle_name: str | None = None) -> list[Assignment]:
    """``{"bundles": [{name, description, assignments: [...]}]}`` (or one bundle's
    ``{"assignments": [...]}``) flattened into assignments."""
    out: list[Assignment] = []
    bundles = unwrap(body, "bundles")
    if not bundles and isinstance(body, dict) and "assignments" in body:
        bundles = [{"name": bundle_name or body.get("name"), **body}]
    for b in bundles:
        name = str(b.get("name") or bundle_name or "")
        desc = b.get("description") or None
        for a in b.get("assignments") or ():
            if isinstance(a, dict):
                out.append(_assignment(name, desc, a))
    return out


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
    iccid = str(summary.get("iccid") or "")
    actives = sorted((a for a in assignments if a.state == "active"), key=_sort_key)
    queued = sorted((a for a in assignments if a.state == "queued"), key=_sort_key)
    processing = sorted((a for a in assignments if a.state == "processing"), key=_sort_key)
    used = sorted(
        (a for a in assignments if a.state in USED_STATES),
        key=lambda a: a.end or _sort_key(a),
        reverse=True,
    )
    # A bundle state eSIM Go does not document says nothing we can read: never "expired".
    odd = [a for a in assignments if a.state not in BUNDLE_STATES]
    live = actives + queued

    unlimited = False
    total: int | None = None
    remaining: int | None = None
    expires: datetime | None = None
    plan: str | None = None
    current: Assignment | None = None
    if live:
        current = live[0]
        unlimited = any(a.unlimited for a in live)
        if not unlimited and all(a.initial is not None and a.remaining is not None for a in live):
            total = sum(a.initial or 0 for a in live)
            remaining = sum(a.remaining or 0 for a in live)
        if actives:
            # The eSIM runs until the active bundle ends, then each queued one in turn runs
            # for its own validity: the end of the chain, if data lasts.
            ends = [a.end for a in actives if a.end is not None]
            expires = max(ends) if ends else None
            for q in queued:
                days = _days_of(q.name, q.description)
                if expires is None or days is None:
                    expires = None  # the chain's end is not known: say so, never guess
                    break
                try:
                    expires += timedelta(days=days)
                except OverflowError:  # a validity beyond any calendar
                    expires = None
                    break
    elif used:
        current = used[0]
        unlimited = current.unlimited
        if not unlimited:
            total, remaining = current.initial, current.remaining
        expires = current.end
    elif processing:
        current = processing[0]
    elif odd:
        current = max(odd, key=_sort_key)  # named, with no figures: its state is unknown
    if current is not None:
        plan = current.label
        waiting = len(queued) - (1 if current in queued else 0)
        if waiting:
            # The table has one plan cell: say that more waits behind the current bundle.
            plan += f" (+{waiting} queued)"

    esim_state = str(summary.get("state") or "").strip().lower()
    if esim_state == "deactivated":
        state = EsimState.RECYCLED
    elif esim_state not in PLAIN_ESIM_STATES or (odd and not live):
        # Suspended, or a state eSIM Go does not document (of the eSIM, or of its bundles
        # when none is active or queued): unknown, never expired or active.
        state = EsimState.UNKNOWN
    elif actives:
        state = EsimState.ACTIVE
    elif queued:
        state = EsimState.NOT_ACTIVE  # waits for first use
    elif used:
        last = used[0]
        if last.state == "depleted" and (last.end is None or last.end > now):
            state = EsimState.DEPLETED
        else:
            state = EsimState.EXPIRED
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
    ref = {
        "bundle": current.name if current is not None else "",
        "assignments": json.dumps(
            [
                [
                    a.name,
                    a.state,
                    a.reference or "",
                    a.assigned_at.isoformat() if a.assigned_at else "",
                ]
                for a in assignments
            ],
            separators=(",", ":"),
        ),
    }
    if esim_state:
        ref["esim_state"] = esim_state
    label = summary.get("customerRef")
    return Esim(
        account=account,
        provider=provider,
        iccid=iccid,
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


def plan_from(
    bundle: dict[str, Any], *, currency: str, account: str, provider: str, kind: str
) -> Plan | None:
    """A catalogue bundle as a plan; None for a bundle without data (voice/SMS only)."""
    name = bundle.get("name")
    if not isinstance(name, str) or not name:
        return None
    data = _data_allowance(bundle.get("allowances"))
    amount = parse_money(bundle.get("dataAmount"))  # MB, possibly fractional
    unlimited = bool(bundle.get("unlimited")) or bool(data and data.get("unlimited"))
    # Unlimited bundles carry dataAmount 0 or -1 depending on the source, and their names
    # say UL (Lite), ULE (Essential) or ULP (Plus).
    if amount == -1 or (not amount and _UNLIMITED_NAME.search(name)):
        unlimited = True
    data_bytes: int | None = None
    if not unlimited:
        allowance = parse_money(data.get("amount")) if data is not None else None
        if amount is not None and amount > 0:
            data_bytes = _scaled(amount, MB)
        elif data is not None and allowance is not None and allowance > 0:
            factor = _UNIT_BYTES.get(str(data.get("unit", "MB")).upper(), MB)
            data_bytes = _scaled(allowance, factor)
        else:
            return None
    price = parse_money(bundle.get("price"))
    description = bundle.get("description")
    return Plan(
        id=name,
        account=account,
        provider=provider,
        name=description if isinstance(description, str) and description else name,
        kind=kind,
        data_bytes=data_bytes,
        unlimited=unlimited,
        validity_days=_int(bundle.get("duration")) or _days_of(name, description),
        price=None if price is None else Money(price, currency),
        countries=_countries(bundle.get("countries")),
        stacking="queues" if kind == "topup" else None,
        unit_base=1000,
    )


def order_records(body: Any) -> list[dict[str, Any]]:
    """The order list bare (v2.5 spec), wrapped in ``orders``, or a single order (v2.4)."""
    if (
        isinstance(body, dict)
        and "orders" not in body
        and ("orderReference" in body or "order" in body)
    ):
        return [body]
    return unwrap(body, "orders", "Orders")


def strict_records(body: Any, *keys: str) -> list[dict[str, Any]] | None:
    """Like ``unwrap``, but None (not an empty list) for an answer of no documented
    shape: ``{}``, ``null``, ``{"esims": null}`` or a list of non-objects say nothing
    about what the account holds."""
    rows: Any = None
    if isinstance(body, list):
        rows = body
    elif isinstance(body, dict):
        rows = next((body[k] for k in keys if isinstance(body.get(k), list)), None)
    if not isinstance(rows, list) or not all(isinstance(x, dict) for x in rows):
        return None
    return rows


def strict_order_records(body: Any, *, complete: bool = False) -> list[dict[str, Any]] | None:
    """``order_records`` for an answer that must be understood: None unless it is a bare
    list, an ``orders`` list or one order; with ``complete``, also unless every order has
    its reference, a readable date and its lines (what a lookup decides on)."""
    if (
        isinstance(body, dict)
        and "orders" not in body
        and ("orderReference" in body or "order" in body)
    ):
        rows: list[dict[str, Any]] | None = [body]
    else:
        rows = strict_records(body, "orders", "Orders")
    if rows is None or not complete:
        return rows
    for r in rows:
        created = parse_time(r.get("createdDate")) or parse_time(r.get("createDate"))
        lines = r.get("order", r.get("Order"))
        if not r.get("orderReference") or created is None or not isinstance(lines, list):
            return None
    return rows


_NOT_ESIM_ITEMS = {"topup", "autotopup", "apitopup"}  # money into the organisation balance


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
    created = parse_time(raw.get("createdDate")) or parse_time(raw.get("createDate"))
    if not ref or created is None:
        return []
    currency = raw.get("currency") or default_currency
    lines = [x for x in raw.get("order") or raw.get("Order") or () if isinstance(x, dict)]
    lines = [x for x in lines if str(x.get("type", "bundle")).lower() not in _NOT_ESIM_ITEMS]
    state = order_state(raw.get("status"))
    out: list[Order] = []
    for i, line in enumerate(lines):
        iccids = [str(x) for x in line.get("iccids") or ()]
        if not iccids:
            iccids = [
                str(e["iccid"])
                for e in line.get("esims") or ()
                if isinstance(e, dict) and e.get("iccid")
            ]
        amount = parse_money(line.get("subTotal"))
        if amount is None and len(lines) == 1:
            amount = parse_money(raw.get("total"))
        out.append(
            Order(
                id=ref if len(lines) == 1 else f"{ref}:{i + 1}",
                account=account,
                provider=provider,
                iccid=iccids[0] if len(iccids) == 1 else None,
                plan_id=line.get("item"),
                plan=line.get("item"),
                price=Money(amount, str(currency)) if amount is not None and currency else None,
                created_at=created,
                state=state,
                source="provider",
                extra={"order_reference": ref, "iccids": iccids, "type": line.get("type")},
            )
        )
    return out


# -- errors --------------------------------------------------------------------------------


class ServerFailure(TemporaryFailure):
    """HTTP 5xx from eSIM Go (a purchase that got one may or may not have happened)."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _message(body: Any) -> str:
    if isinstance(body, dict):
        for key in ("message", "Message", "status", "error"):
            value = body.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip()[:200]
    return ""


def _reset_seconds(resp: httpx.Response) -> float | None:
    raw = resp.headers.get("X-Ratelimit-Reset")
    if not raw:
        return None
    when = parse_time(raw)
    if when is None:
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


# -- the provider --------------------------------------------------------------------------

_THROTTLES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[float, Throttle]] = (
    weakref.WeakKeyDictionary()
)


def _shared_throttle(rate: float) -> Throttle:
    """One bucket per run and rate: eSIM Go limits per IP address, not per account."""
    buckets = _THROTTLES.setdefault(asyncio.get_running_loop(), {})
    if rate not in buckets:
        buckets[rate] = Throttle(rate, 1.0, burst=max(1, int(rate)))
    return buckets[rate]


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
    #: eSIM Go documents no usage cache; 5 minutes keeps repeated `status` runs off the
    #: 10 requests/s limit (one request per eSIM) while figures stay current.
    usage_ttl: ClassVar[timedelta] = timedelta(minutes=5)
    catalogue_ttl: ClassVar[timedelta] = timedelta(hours=6)
    #: A purchase not in the order list this long after its intent was never made. Orders
    #: are listed at once; the margin covers a request that reached eSIM Go after we gave
    #: up on it (a hang), so a late commit is found rather than bought again.
    order_lookup_lag: ClassVar[timedelta] = timedelta(minutes=5)
    homepage: ClassVar[str | None] = "https://sso.esim-go.com/login"

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        cls._options(options, default_timeout=20.0)

    @staticmethod
    def _options(options: Mapping[str, Any], *, default_timeout: float) -> tuple[float, int, float]:
        """``timeout`` (seconds per request), ``retries`` (of a read) and ``rate_limit``
        (requests per second: the documented 10, unless eSIM Go raised the account's)."""
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
        #: Tokens each endpoint family costs, as learnt from ``X-Ratelimit-Cost``.
        self._costs: dict[str, int] = {}

    # -- plumbing ---------------------------------------------------------------------------

    @property
    def api(self) -> ApiClient:
        if self._api is None:
            key = (self.ctx.secrets.get("API_KEY") or "").strip()
            if not key:
                raise CredentialsError(
                    f"no API key for account {self.account!r}: run 'esimctl account add "
                    f"{self.account} --provider esimgo' or set {env_var(self.account, 'API_KEY')}",
                    account=self.account,
                    provider=self.id,
                )
            self._api = ApiClient(
                base_url=self.base_url,
                provider=self.id,
                account=self.account,
                timeout=self._timeout,
                headers={"X-API-Key": key},
                throttle=_shared_throttle(self._rate),
                error_mapper=self._map_error,
                retries=self._retries,
                extra=self.ctx.extra,
                secrets=self.ctx.secrets.values(),  # masked in its errors
            )
            self._api.client.event_hooks["response"].append(self._on_response)
        return self._api

    async def aclose(self) -> None:
        if self._api is not None:
            await self._api.aclose()
            self._api = None

    @staticmethod
    def _kind(path: str) -> str:
        """The endpoint family a path belongs to, for learnt token costs."""
        path = re.sub(r"^/v\d+(?:\.\d+)?", "", path)
        parts = [p for p in path.split("/") if p]
        if not parts:
            return ""
        if parts[0] == "esims" and len(parts) >= 3:
            return f"esims/*/{parts[2]}"
        if parts[0] == "esims" and len(parts) == 2:
            return "esims/*"
        return parts[0]

    async def _on_response(self, resp: httpx.Response) -> None:
        throttle = self.api.throttle
        cost = _int(resp.headers.get("X-Ratelimit-Cost"))
        if cost is not None and 1 <= cost <= max(self._rate, 1):
            self._costs[self._kind(resp.request.url.path)] = cost
        remaining = _int(resp.headers.get("X-Ratelimit-Remaining"))
        if throttle is not None and remaining is not None and remaining <= 0:
            wait = _reset_seconds(resp)
            throttle.pause(min(wait if wait is not None else 1.0, 2.0) or 0.1)

    async def _get(self, path: str, **kwargs: Any) -> Any:
        return await self._call("GET", path, **kwargs)

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        api = self.api
        extra = self._costs.get(self._kind(path), 1) - 1
        if api.throttle is not None:
            for _ in range(extra):
                await api.throttle.acquire()
        return await api.request(method, path, **kwargs)

    def _map_error(self, resp: httpx.Response, body: Any) -> EsimctlError | None:
        """eSIM Go's ``{"message": ...}`` errors; the HTTP status decides, the text refines."""
        status = resp.status_code
        if status < 400:
            return None
        msg = self.api.scrub(_message(body))  # the account's scrubber (http.Scrubber)
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
        if (
            status in (400, 404)
            and (iccid or about_esim)
            and any(
                w in low
                for w in ("not found", "not exist", "permission", "invalid iccid", "no esim")
            )
        ):
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

    def _unreadable(self, what: str, body: Any) -> TemporaryFailure:
        return TemporaryFailure(
            f"eSIM Go answered {what} with {shape_of(body)}, not what it documents; nothing "
            "is read from it (retry later)",
            account=self.account,
            provider=self.id,
        )

    def _strict(
        self, what: str, read: Callable[[Any], list[dict[str, Any]] | None]
    ) -> Callable[[Any], list[dict[str, Any]]]:
        """A page reader for ``_pages`` that raises on an answer of no documented shape."""

        def records(body: Any) -> list[dict[str, Any]]:
            rows = read(body)
            if rows is None:
                raise self._unreadable(what, body)
            return rows

        return records

    async def _key_works(self) -> bool:
        try:
            await self._organisation(fresh=True)
        except AuthRejected:
            return False
        return True

    async def _about_iccid(self, iccid: str, call: Callable[[], Awaitable[T]]) -> T:
        """A 403 about one ICCID means "not yours" when the key itself still works."""
        try:
            return await call()
        except AuthRejected:
            if await self._key_works():
                raise NotFound(
                    f"eSIM {iccid} is not on eSIM Go account {self.account!r}",
                    account=self.account,
                    provider=self.id,
                ) from None
            raise

    async def _pages(
        self,
        path: str,
        params: dict[str, Any],
        *,
        page_size: int,
        size_param: str,
        records: Callable[[Any], list[dict[str, Any]]],
    ) -> list[dict[str, Any]]:
        """Every page of a list without totals: read until a short page, or one that only
        repeats what came before (a server that ignores ``page``)."""
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        for page in range(1, MAX_PAGES + 1):
            body = await self._get(
                path, params={**params, "page": str(page), size_param: page_size}
            )
            rows = records(body)
            fresh = 0
            for r in rows:
                key = json.dumps(r, sort_keys=True, default=str)
                if key not in seen:
                    seen.add(key)
                    out.append(r)
                    fresh += 1
            if len(rows) < page_size or not fresh:
                break
        return out

    @staticmethod
    async def _each(items: Iterable[T], fn: Callable[[T], Awaitable[R]], limit: int = 8) -> list[R]:
        """``fn`` over ``items``, at most ``limit`` in flight; the first error stops the rest."""
        todo = list(items)
        results: list[R | None] = [None] * len(todo)
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(len(todo)):
            queue.put_nowait(i)
        failure: list[BaseException] = []

        async def worker() -> None:
            while not failure:
                try:
                    i = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                try:
                    results[i] = await fn(todo[i])
                except BaseException as exc:
                    failure.append(exc)
                    return

        await asyncio.gather(*(worker() for _ in range(min(limit, len(todo)) or 1)))
        if failure:
            raise failure[0]
        return [r for r in results if r is not None]

    # -- organisation -----------------------------------------------------------------------

    async def _organisation(self, *, fresh: bool = False) -> dict[str, Any]:
        if self._org is None or fresh:
            body = await self._get("/organisation")
            if isinstance(body, dict) and isinstance(body.get("organisations"), list):
                orgs = [o for o in body["organisations"] if isinstance(o, dict)]
                body = orgs[0] if orgs else {}
            # Only what we need is kept: the answer also carries the API key itself.
            org = body if isinstance(body, dict) else {}
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
        org = await self._organisation()
        amount = parse_money(org.get("balance"))
        return None if amount is None else Money(amount, await self._currency())

    # -- eSIMs ------------------------------------------------------------------------------

    async def _assignments(self, iccid: str) -> list[Assignment]:
        body = await self._get(
            f"/esims/{iccid}/bundles",
            params={"includeUsed": "true", "limit": ASSIGNMENTS_LIMIT},
        )
        if strict_records(body, "bundles") is None and not (
            isinstance(body, dict) and isinstance(body.get("assignments"), list)
        ):
            # Not "no bundles": an answer we cannot read says nothing about the eSIM.
            raise self._unreadable(f"the bundles of eSIM {iccid}", body)
        return parse_assignments(body)

    async def list_esims(self) -> list[Esim]:
        summaries = await self._pages(
            "/esims",
            {},
            page_size=ESIMS_PER_PAGE,
            size_param="perPage",
            records=self._strict("the eSIM list", lambda body: strict_records(body, "esims")),
        )
        summaries = [s for s in summaries if s.get("iccid")]
        summaries = list({str(s["iccid"]): s for s in summaries}.values())

        async def one(summary: dict[str, Any]) -> Esim | None:
            iccid = str(summary["iccid"])
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
            except TemporaryFailure as exc:
                if not exc.message.startswith("eSIM Go answered"):
                    raise
                # One eSIM's unreadable answer is an error for that eSIM, not the account.
                self.rejected.append(
                    ProviderError(
                        f"eSIM {iccid}: {exc.message}; not shown and never renewed on it",
                        account=self.account,
                        provider=self.id,
                        code="unreadable_answer",
                        iccid=iccid,
                    )
                )
                return None
            return esim_from(
                summary, assignments, account=self.account, provider=self.id, now=self.ctx.clock()
            )

        return [e for e in await self._each(summaries, one) if e is not None]

    async def get_esim(self, iccid: str) -> Esim:
        async def fetch() -> Esim:
            detail = await self._get(f"/esims/{iccid}")
            if not isinstance(detail, dict):
                raise self._unreadable(f"eSIM {iccid}", detail)
            summary = {**detail, "iccid": detail.get("iccid") or iccid}
            assignments = await self._assignments(iccid)
            return esim_from(
                summary, assignments, account=self.account, provider=self.id, now=self.ctx.clock()
            )

        return await self._about_iccid(iccid, fetch)

    # -- catalogue and top-ups --------------------------------------------------------------

    async def _catalogue(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        return await self._pages(
            "/catalogue",
            params,
            page_size=CATALOGUE_PER_PAGE,
            size_param="perPage",
            records=self._strict("the catalogue", lambda body: strict_records(body, "bundles")),
        )

    async def catalogue(self, country: str) -> list[Plan]:
        cc = country.strip().upper()
        currency = await self._currency()
        plans = []
        for b in await self._catalogue({"countries": cc}):
            p = plan_from(b, currency=currency, account=self.account, provider=self.id, kind="new")
            if p is not None and (not p.countries or cc in p.countries):
                plans.append(p)
        return plans

    async def _bundle(self, name: str) -> dict[str, Any] | None:
        try:
            body = await self._get(f"/catalogue/bundle/{quote(name, safe='')}")
        except (NotFound, InvalidInput, ProviderError):
            return None
        if isinstance(body, dict) and isinstance(body.get("bundles"), list):
            found = [b for b in body["bundles"] if isinstance(b, dict)]
            return found[0] if found else None
        return body if isinstance(body, dict) else None

    async def _compatible(self, iccid: str, bundle: str) -> bool:
        body = await self._get(f"/esims/{iccid}/compatible/{quote(bundle, safe='')}")
        if isinstance(body, dict):
            value = body.get("compatible", body.get("Compatible"))
            if isinstance(value, str):
                return value.strip().lower() == "true"
            return bool(value)
        return bool(body is True)

    async def topups(self, esim: Esim) -> list[Plan]:
        name = esim.ref.get("bundle") or ""
        if not name:
            fresh = await self.get_esim(esim.iccid)
            name = fresh.ref.get("bundle") or ""
        if not name:
            return []  # no bundle ever: nothing says which country the eSIM is for
        current = await self._bundle(name)
        covers = _countries(current.get("countries")) if current else ()
        if not covers:
            parts = name.split("_")
            covers = tuple(p.upper() for p in parts[3:4] if len(p) == 2 and p.isalpha())
        if not covers:
            return []
        profile = (current or {}).get("profileName")
        currency = await self._currency()
        candidates: list[tuple[Plan, dict[str, Any]]] = []
        for b in await self._catalogue({"countries": ",".join(covers)}):
            p = plan_from(
                b, currency=currency, account=self.account, provider=self.id, kind="topup"
            )
            if p is None or not set(covers) <= set(p.countries):
                continue
            # A different network profile is never compatible: skip the check for it.
            if profile and b.get("profileName") and b.get("profileName") != profile:
                continue
            candidates.append((p, b))

        async def check(c: tuple[Plan, dict[str, Any]]) -> Plan | None:
            try:
                ok = await self._compatible(esim.iccid, c[0].id)
            except (InvalidInput, ProviderError):
                return None
            return c[0] if ok else None

        checked = await self._about_iccid(
            esim.iccid, lambda: self._each(candidates, check, limit=4)
        )
        return [p for p in checked if p is not None]

    # -- orders -----------------------------------------------------------------------------

    async def _order_records(
        self, since: datetime | None = None, *, complete: bool = False
    ) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"includeIccids": "true"}
        if since is not None:
            params["createdAt"] = "gte:" + since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        return await self._pages(
            "/orders",
            params,
            page_size=ORDERS_PER_PAGE,
            size_param="limit",
            records=self._strict(
                "the order list", lambda body: strict_order_records(body, complete=complete)
            ),
        )

    async def orders(self) -> list[Order]:
        currency: str | None = None
        records = await self._order_records()
        if any(not r.get("currency") for r in records):
            currency = await self._currency()
        out: list[Order] = []
        for r in records:
            out.extend(
                orders_from(r, account=self.account, provider=self.id, default_currency=currency)
            )
        out.sort(key=lambda o: o.created_at, reverse=True)
        return out

    # -- the purchase journal ---------------------------------------------------------------

    def _journal_put(self, reference: str, **fields: Any) -> None:
        self.ctx.journal.record(reference, **fields)

    def _claimed(self, reference: str) -> set[str]:
        """Provider order ids that other purchases of ours already account for."""
        return self.ctx.journal.claimed_order_ids(except_reference=reference)

    def _intent(self, reference: str) -> dict[str, Any]:
        return self.ctx.journal.entry(reference)

    # -- buying -----------------------------------------------------------------------------

    def _line(self, esim: Esim, plan: Plan) -> dict[str, Any]:
        # allowReassign false: an incompatible bundle is refused rather than put on a new ICCID.
        return {
            "type": "bundle",
            "item": plan.id,
            "quantity": 1,
            "iccids": [esim.iccid],
            "allowReassign": False,
        }

    async def _validate(self, esim: Esim, plan: Plan, line: dict[str, Any]) -> Money:
        """Price the order with ``type: validate`` (documented: it runs every check and
        returns the total without charging, so it is retried like a read; a failure here
        means nothing was bought). Refused unless the total is a real price no higher
        than the listed one the user agreed to."""
        what = f"{plan.id!r} for eSIM {esim.iccid}"
        if plan.price is None:
            raise LimitRefused(
                f"refused: eSIM Go lists no price for {what}, and esimctl does not buy at an "
                "unknown price; nothing was bought",
                account=self.account,
                provider=self.id,
            )
        quote_ = await self._call(
            "POST", "/orders", json={"type": "validate", "assign": True, "order": [line]}
        )
        if not isinstance(quote_, dict):
            raise self._unreadable("the price check (validate)", quote_)
        if quote_.get("valid") is False:
            raise InvalidInput(
                f"eSIM Go will not sell {what}: {_message(quote_) or 'the order did not validate'}",
                account=self.account,
                provider=self.id,
            )
        total = parse_money(quote_.get("total"))
        if total is None:
            raise self._unreadable("the price check (validate)", quote_)
        currency = quote_.get("currency") or plan.price.currency
        if currency != plan.price.currency:
            raise LimitRefused(
                f"refused: eSIM Go prices {what} in {currency}, not in the {plan.price.currency} "
                "shown; nothing was bought",
                account=self.account,
                provider=self.id,
            )
        if total <= 0:
            raise LimitRefused(
                f"refused: eSIM Go's price check for {what} says {total} {currency}, which is "
                "no real price; nothing was bought",
                account=self.account,
                provider=self.id,
            )
        if total > plan.price.amount:
            raise LimitRefused(
                f"refused: eSIM Go now asks {Money(total, currency)} for {plan.id}, more "
                f"than the {plan.price} shown; nothing was bought, check 'esimctl plans'",
                account=self.account,
                provider=self.id,
            )
        return Money(total, currency)

    async def buy_topup(self, esim: Esim, plan: Plan, reference: str) -> Order:
        async def compatible() -> bool:
            return await self._compatible(esim.iccid, plan.id)

        if not await self._about_iccid(esim.iccid, compatible):
            raise InvalidInput(
                f"eSIM Go bundle {plan.id!r} cannot be applied to eSIM {esim.iccid} (another "
                f"network profile); see 'esimctl plans {esim.iccid}'",
                account=self.account,
                provider=self.id,
            )
        line = self._line(esim, plan)
        await self._validate(esim, plan, line)
        sent_at = self.ctx.clock()
        self._journal_put(reference, iccid=esim.iccid, plan_id=plan.id, sent_at=sent_at.isoformat())
        try:
            body = await self._call(
                "POST",
                "/orders",
                json={"type": "transaction", "assign": True, "order": [line]},
                idempotent=False,
            )
        except ServerFailure as exc:
            raise OutcomeUnknown(
                f"eSIM Go answered the purchase with an error ({exc.message}); whether it "
                "went through is checked before anything is bought again",
                account=self.account,
                provider=self.id,
            ) from None
        records = order_records(body)
        raw = records[0] if records else {}
        orders = orders_from(
            raw,
            account=self.account,
            provider=self.id,
            default_currency=plan.price.currency if plan.price else None,
        )
        if not orders:
            raise OutcomeUnknown(
                "eSIM Go accepted the purchase but its answer has no order reference; it is "
                "checked before anything is bought again",
                account=self.account,
                provider=self.id,
            )
        order = orders[0]
        self._journal_put(reference, order=order.id)
        # The price the answer says was charged, as reported (None when it gives none or
        # no finite number): the ledger keeps the listed price beside it.
        price = order.price
        return Order(
            id=order.id,
            account=self.account,
            provider=self.id,
            iccid=esim.iccid,
            plan_id=plan.id,
            plan=plan.name,
            price=price,
            created_at=order.created_at,
            state=order.state,
            source="provider",
            reference=reference,
            extra={**order.extra, "status_message": raw.get("statusMessage")},
        )

    async def find_order(
        self, reference: str, *, iccid: str | None, since: datetime
    ) -> Order | None:
        """The order our purchase ``reference`` made, or None when a well-formed order
        list shows none. An answer that cannot be understood (``{}``, ``null``, an order
        without its reference or date) is never evidence that nothing happened: it
        raises, and the purchase stays unresolved until a readable answer decides."""
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
        intent = self._intent(reference)
        plan_id = intent.get("plan_id")
        iccid = iccid or intent.get("iccid")
        known = intent.get("order")
        # The journal knows when the request left, to the second; the caller's ``since``
        # is only a bound. An order dated before the request cannot be ours.
        sent = parse_time(intent.get("sent_at"))
        start = (sent if sent is not None and sent > since else since) - ORDER_CLOCK_MARGIN
        claimed = self._claimed(reference)
        currency = None
        records = await self._order_records(start, complete=True)
        if any(not r.get("currency") for r in records):
            currency = await self._currency()
        rows = [
            o
            for r in records
            for o in orders_from(
                r, account=self.account, provider=self.id, default_currency=currency
            )
        ]
        candidates = [o for o in rows if known and o.extra.get("order_reference") == known]
        if not candidates:
            for o in rows:
                ref = str(o.extra.get("order_reference") or o.id)
                if ref in claimed or o.id in claimed or o.created_at < start:
                    continue
                if plan_id and o.plan_id != plan_id:
                    continue
                iccids = o.extra.get("iccids") or []
                if iccid and iccids and iccid not in iccids:
                    continue
                candidates.append(o)
        if not candidates:
            return None
        found = min(candidates, key=lambda o: o.created_at)
        self._journal_put(reference, order=str(found.extra.get("order_reference") or found.id))
        return Order(
            id=found.id,
            account=found.account,
            provider=found.provider,
            iccid=iccid or found.iccid,
            plan_id=found.plan_id,
            plan=found.plan,
            price=found.price,
            created_at=found.created_at,
            state=found.state,
            source="provider",
            reference=reference,
            extra=found.extra,
        )

    def is_applied(self, before: Esim | None, after: Esim, order: Order) -> bool:
        """Applied once the bundle bought by ``order`` left *processing* on the eSIM."""
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
        # No assignment names the order: a bundle of that name assigned since the order.
        since = order.created_at - ORDER_CLOCK_MARGIN
        for r in rows:
            if len(r) < 4 or r[0] != order.plan_id or r[1] not in APPLIED_STATES:
                continue
            assigned = parse_time(r[3])
            if assigned is not None and assigned >= since:
                return True
        return False
