"""Celitech API v1: OAuth2 client credentials, eSIMs derived from purchases.

Celitech has no "list eSIMs" resource. Every purchase (the first one and each top-up)
names its eSIM, so the eSIM list is the purchase list grouped by ICCID; the figures of
one eSIM come from the consumption of each purchase that has not ended, and its profile
status (and whether a top-up is allowed) from ``GET /v1/esim``.

Where Celitech's documentation is silent or contradicts itself this module takes the
reading that cannot mislead a user and accepts both (see ``docs/providers/celitech.md``):

* the token request carries the client credentials in the form body (SDK, API-credentials
  page) and falls back to HTTP Basic (authentication page) when the auth host refuses;
* sizes come as bytes and/or GB: the unit (GB of 2**30 or of 10**9 bytes) is read from the
  pair, or from the byte count alone when only that is sent;
* dates come as ISO 8601 and/or epoch numbers, the epoch in seconds or milliseconds;
* a cursor page ends on a null cursor *or* an empty page;
* ``isTopUpAllowed`` decides whether a top-up is possible; without it, the older rule
  (profile ``ENABLED``/``INSTALLED``) does;
* a purchase answered with 5xx may have been committed (API Gateway answers 504 while the
  backend still works), so it is reported as an unknown outcome, never as "not bought";
* an answer of a shape esimctl does not know is never read as "nothing": a purchase list
  that is not a list (or holds rows without an id) is an error for the account, an order
  lookup that cannot be read leaves the order unresolved, a profile or consumption status
  the docs do not list makes the eSIM ``unknown``, and figures are kept as given (negative
  or absurd ones are refused by the validator in ``esimctl.validate``, by name);
* the top-up answer carries no price: what was charged is read back from the purchase
  list (``package.priceInCents`` of our purchase) where it shows at once, else the listed
  price stands.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

import httpx

from esimctl.errors import (
    AuthRejected,
    ConfigError,
    EsimctlError,
    InsufficientBalance,
    InvalidInput,
    NotFound,
    OutcomeUnknown,
    ProviderError,
    TemporaryFailure,
)
from esimctl.models import Esim, EsimState, Money, Order, OrderState, Package, Plan
from esimctl.providers.base import Capability, Provider, ProviderContext
from esimctl.providers.kit.http import ApiClient, Throttle

PRODUCTION_HOST = "api.celitech.net"
PRODUCTION_API = f"https://{PRODUCTION_HOST}"
PRODUCTION_TOKEN_URL = "https://auth.celitech.net/oauth2/token"
TOKEN_PATH = "/oauth2/token"
TOPUP_PATH = "/v1/purchases/topup"

#: Top-up durations in days the API accepts (limited packages; 90 has its own pricing).
LIMITED_DURATIONS = (1, 2, 7, 14, 30, 90)
#: Unlimited packages (Region-3 only) accept these durations.
UNLIMITED_DURATIONS = (1, 2, 7, 14, 30)
PURCHASES_PAGE = 100  # the documented maximum of ``limit`` on /purchases
PACKAGES_PAGE = 160  # the documented maximum of ``limit`` on /packages
MAX_PAGES = 10_000  # a server that never ends its cursor chain must not loop forever
#: Renew the access token this long before it expires.
TOKEN_MARGIN = 60.0
#: Celitech documents no rate limit; this is a polite default (option ``requests_per_second``).
DEFAULT_RPS = 50.0

GIB = 1024**3
GB = 1000**3
_EPOCH_MS = 1e12  # epoch numbers above this are milliseconds
#: No JSON number reaches beyond 1e308; a text figure beyond this is junk, not a number
#: (1E+310 cents is kept: 1e308 USD, for the validator to refuse by name).
_MAX_EXPONENT = 400
#: Bytes beyond any float are not kept as a number; the validator names anything above 100 TB.
_MAX_BYTES = 10**307
#: The statuses Celitech documents; any other one says nothing esimctl can rely on.
PROFILE_STATES = frozenset({"RELEASED", "DOWNLOADED", "INSTALLED", "ENABLED", "DELETED", "ERROR"})
CONSUMPTION_STATES = frozenset({"ACTIVE", "NOT_ACTIVE"})

# "credits" but not "credentials": a refused key must not read as an empty wallet.
_BALANCE = re.compile(r"\bbalance\b|insufficient|\bfunds?\b|\bcredits?\b", re.IGNORECASE)
_NOT_FOUND = re.compile(r"not found|does not exist|unknown (iccid|esim|purchase)", re.IGNORECASE)
_PLAN_ID = re.compile(r"^(?:(?P<dest>[a-z0-9]+)-)?(?P<size>unl|\d+(?:\.\d+)?gb)-(?P<days>\d+)d$")


# -- parsing: pure functions, fed the documented examples in the tests ------------------------


def parse_time(iso_value: Any, epoch_value: Any = None) -> datetime | None:
    """An aware UTC datetime from Celitech's ISO string, else from its epoch twin.

    The ISO form is documented as ``yyyy-MM-ddThh:mm:ssZZ`` (offset with or without a
    colon, or ``Z``); a bare date means midnight UTC; a naive time is taken as UTC. The
    epoch unit is not documented: values above 1e12 are milliseconds, others seconds.
    """
    if isinstance(iso_value, str) and iso_value.strip():
        text = iso_value.strip()
        try:
            if len(text) == 10:
                d = date.fromisoformat(text)
                return datetime(d.year, d.month, d.day, tzinfo=UTC)
            dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            dt = None
        if dt is not None:
            return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).astimezone(UTC)
    return parse_epoch(epoch_value)


def parse_epoch(value: Any) -> datetime | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if number <= 0:
        return None
    if number > _EPOCH_MS:
        number /= 1000.0
    try:
        return datetime.fromtimestamp(number, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _decimal(value: Any) -> Decimal | None:
    """A finite Decimal as given (negative and absurd included); junk, NaN, infinities
    and exponents beyond any JSON number are None."""
    if value is None or isinstance(value, (bool, dict, list)):
        return None
    try:
        d = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    if not d.is_finite() or (d and abs(d.adjusted()) > _MAX_EXPONENT):
        return None
    return d


@dataclass(frozen=True)
class Size:
    """A package size: bytes as Celitech counts them, or unlimited."""

    bytes: int | None
    unlimited: bool = False
    base: int = 1024

    @property
    def gb(self) -> Decimal | None:
        """The size in the provider's GB (the number ``dataLimitInGB`` carries)."""
        if self.bytes is None:
            return None
        return Decimal(self.bytes) / Decimal(self.base**3)


def _unit_of(n_bytes: int, n_gb: Decimal | None) -> int:
    """1024 when Celitech's GB is 2**30 bytes, 1000 when it is 10**9."""
    if n_gb is not None and n_gb > 0:
        ratio = Decimal(n_bytes) / n_gb
        return 1000 if abs(ratio - GB) < abs(ratio - GIB) else 1024
    # Only bytes: sizes are multiples of half a GB, which tells the unit apart.
    if n_bytes % (GIB // 2) == 0:
        return 1024
    if n_bytes % (GB // 2) == 0:
        return 1000
    return 1024


def _whole(d: Decimal) -> int | None:
    """Bytes as a Python int; None beyond any float (such a figure cannot even be shown)."""
    n = int(d)
    return n if abs(n) <= _MAX_BYTES else None


def parse_size(in_bytes: Any, in_gb: Any = None) -> Size:
    """``dataLimitInBytes`` and/or ``dataLimitInGB``; -1 in either means unlimited.

    Any other figure is kept as given, negative or absurd (the validator refuses those
    by name); the bytes win over the GB twin, which is only read when bytes are absent.
    """
    b, g = _decimal(in_bytes), _decimal(in_gb)
    if b == -1 or g == -1:
        return Size(None, unlimited=True)
    if b is not None:
        n = _whole(b)
        return Size(n, base=_unit_of(n, g)) if n is not None else Size(None)
    if g is not None:
        return Size(_whole(g * GIB), base=1024)
    return Size(None)


def parse_remaining(in_bytes: Any, in_gb: Any, base: int) -> tuple[int | None, bool]:
    """(remaining bytes, unlimited) from a consumption answer; -1 means unlimited.
    Other figures are kept as given, never clamped to 0 (which would read "depleted")."""
    b, g = _decimal(in_bytes), _decimal(in_gb)
    if b == -1 or g == -1:
        return None, True
    if b is not None:
        return _whole(b), False
    if g is not None:
        return _whole(g * base**3), False
    return None, False


def money_from_cents(cents: Any, currency: str = "USD") -> Money | None:
    """A price in cents as given: zero and negative ones too, for the validator to refuse
    (a plan without a price would slip past it); junk and non-finite numbers are None."""
    d = _decimal(cents)
    if d is None:
        return None
    return Money(d / 100, currency)


def gb_label(size: Size) -> str:
    """``0.5``, ``1``, ``20``: the size in the provider's GB, as its app shows it."""
    gb = size.gb
    if gb is None:
        return "?"
    text = format(gb.quantize(Decimal("0.01")).normalize(), "f")
    return text


def _days_label(days: int | None) -> str:
    if days is None:
        return ""
    return f" · {days} day" + ("" if days == 1 else "s")


def package_name(destination: str | None, size: Size, days: int | None) -> str:
    where = destination or "Celitech"
    amount = "Unlimited" if size.unlimited else f"{gb_label(size)} GB"
    return f"{where} {amount}{_days_label(days)}"


def plan_id_for(destination: str | None, size: Size, days: int | None) -> str:
    """``fr-3gb-30d``: what a person types after ``--plan``; it carries what a top-up sends."""
    amount = "unl" if size.unlimited else f"{gb_label(size)}gb"
    head = re.sub(r"[^a-z0-9]", "", (destination or "").lower())
    return "-".join(x for x in (head, amount, f"{days or 0}d") if x)


def parse_plan_id(plan_id: str) -> tuple[Decimal, int]:
    """(dataLimitInGB, duration in days) from a plan id; -1 GB means unlimited."""
    m = _PLAN_ID.match(plan_id.strip().lower())
    if not m or int(m.group("days")) <= 0:
        raise InvalidInput(
            f"unknown Celitech plan {plan_id!r}: "
            "use an id from 'esimctl plans ESIM', like fr-3gb-30d"
        )
    size = m.group("size")
    gb = Decimal(-1) if size == "unl" else Decimal(size[:-2])
    return gb, int(m.group("days"))


def pick_duration(min_days: Any, max_days: Any, unlimited: bool) -> int | None:
    """The longest duration the API accepts inside a package's price bracket.

    A price covers every duration from ``minDays`` to ``maxDays``; a top-up names one of
    the accepted durations, and the longest one costs the same as the shortest.
    """
    lo, hi = _decimal(min_days), _decimal(max_days)
    allowed = UNLIMITED_DURATIONS if unlimited else LIMITED_DURATIONS
    fits = [d for d in allowed if (lo is None or d >= lo) and (hi is None or d <= hi)]
    return max(fits) if fits else None


@dataclass(frozen=True)
class Purchase:
    """One row of ``GET /v1/purchases``: a first purchase or a top-up of one eSIM."""

    id: str
    iccid: str | None
    created: datetime | None
    start: datetime | None
    end: datetime | None
    days: int | None
    size: Size
    package_id: str | None
    destination: str | None  # ISO3 (or whatever the API calls the destination)
    destination_iso2: str | None
    destination_name: str | None
    price: Money | None
    reference: str | None
    purchase_type: str | None
    source: str | None

    @property
    def name(self) -> str:
        return package_name(self.destination_name or self.destination, self.size, self.days)

    @property
    def plan_id(self) -> str:
        return plan_id_for(self.destination_iso2 or self.destination, self.size, self.days)


def _str(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    text = str(value).strip()
    return text or None


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int | None:
    d = _decimal(value)
    return None if d is None else int(d)


def parse_purchase(d: dict[str, Any], currency: str = "USD") -> Purchase | None:
    """A purchase row; None for a row without an id (nothing can be done with it)."""
    pid = _str(d.get("id"))
    if pid is None:
        return None
    pkg, esim = _obj(d.get("package")), _obj(d.get("esim"))
    start = parse_time(d.get("startDate"), d.get("startTime"))
    end = parse_time(d.get("endDate"), d.get("endTime"))
    days = _int(d.get("duration"))
    if days is None and start is not None and end is not None and end > start:
        days = max(1, round((end - start).total_seconds() / 86400))
    return Purchase(
        id=pid,
        iccid=_str(esim.get("iccid")),
        created=parse_time(d.get("createdDate"), d.get("createdAt")),
        start=start,
        end=end,
        days=days,
        size=parse_size(pkg.get("dataLimitInBytes"), pkg.get("dataLimitInGB")),
        package_id=_str(pkg.get("id")),
        destination=_str(pkg.get("destination")),
        destination_iso2=_str(pkg.get("destinationISO2")),
        destination_name=_str(pkg.get("destinationName")),
        price=money_from_cents(pkg.get("priceInCents"), currency),
        reference=_str(d.get("referenceId")),
        purchase_type=_str(d.get("purchaseType")),
        source=_str(d.get("source")),
    )


@dataclass(frozen=True)
class Consumption:
    remaining: int | None
    unlimited: bool
    status: str | None  # ACTIVE | NOT_ACTIVE


def parse_consumption(d: Any, base: int) -> Consumption:
    if not isinstance(d, dict):
        return Consumption(None, False, None)
    remaining, unlimited = parse_remaining(
        d.get("dataUsageRemainingInBytes"), d.get("dataUsageRemainingInGB"), base
    )
    status = _str(d.get("status"))
    return Consumption(remaining, unlimited, status.upper() if status else None)


@dataclass(frozen=True)
class Profile:
    iccid: str | None
    status: str | None  # RELEASED, DOWNLOADED, INSTALLED, ENABLED, DELETED, ERROR
    connectivity: str | None  # ACTIVE | NOT_ACTIVE
    topup_flag: bool | None

    @property
    def topup_allowed(self) -> bool:
        """``isTopUpAllowed`` when sent; else the 2025 rule (``ENABLED``/``INSTALLED``)."""
        if self.topup_flag is not None:
            return self.topup_flag
        return self.status in ("ENABLED", "INSTALLED")


def parse_profile(body: Any) -> Profile:
    d = body.get("esim") if isinstance(body, dict) else None
    if not isinstance(d, dict):
        raise ProviderError("Celitech sent an eSIM answer without 'esim'")
    flag = d.get("isTopUpAllowed")
    status = _str(d.get("status"))
    conn = _str(d.get("connectivityStatus"))
    return Profile(
        iccid=_str(d.get("iccid")),
        status=status.upper() if status else None,
        connectivity=conn.upper() if conn else None,
        topup_flag=flag if isinstance(flag, bool) else None,
    )


def _package_state(p: Purchase, c: Consumption | None, now: datetime) -> str:
    if c is not None and not (c.unlimited or p.size.unlimited) and c.remaining == 0:
        return "depleted"
    if c is not None and c.status is not None and c.status not in CONSUMPTION_STATES:
        return "unknown"
    if c is not None and c.status == "ACTIVE":
        return "active"
    if p.start is not None and p.start > now:
        return "queued"
    if c is None:
        return "unknown"
    return "not_active"


def build_esim(
    *,
    account: str,
    provider: str,
    iccid: str,
    purchases: list[Purchase],
    consumptions: dict[str, Consumption],
    profile: Profile | None,
    now: datetime,
) -> Esim:
    """One eSIM from its purchases: the packages that have not ended add up.

    Each purchase is a package with its own window (``startDate``..``endDate``) and its
    own remaining data; a top-up is one more package. What is left now is the sum over the
    packages that have not ended, and the eSIM lasts until the last of them ends.
    """
    ordered = sorted(purchases, key=lambda p: (p.created or p.start or now, p.id))
    latest = ordered[-1]
    live = [p for p in ordered if p.end is None or p.end > now]
    ref = {
        "purchase_ids": ",".join(p.id for p in ordered),
        "destination": latest.destination or latest.destination_iso2 or "",
        "destination_name": latest.destination_name or "",
    }
    if latest.destination_iso2:
        ref["countries"] = latest.destination_iso2
    if profile is not None:
        ref["profile_status"] = profile.status or ""
        ref["topup_allowed"] = "true" if profile.topup_allowed else "false"
    common: dict[str, Any] = {
        "account": account,
        "provider": provider,
        "iccid": iccid,
        "as_of": now,
        "unit_base": latest.size.base,
        "ref": ref,
    }
    if not live:
        # Every package has ended: the data that was left cannot be used any more.
        return Esim(
            state=EsimState.EXPIRED,
            plan=latest.name,
            data_total_bytes=None if latest.size.unlimited else latest.size.bytes,
            data_remaining_bytes=None,
            unlimited=latest.size.unlimited,
            expires_at=max((p.end for p in ordered if p.end), default=None),
            **common,
        )
    packages: list[Package] = []
    states: list[str] = []
    unlimited = False
    total: int | None = 0
    remaining: int | None = 0
    for p in live:
        c = consumptions.get(p.id)
        p_unlimited = p.size.unlimited or (c is not None and c.unlimited)
        unlimited = unlimited or p_unlimited
        rem = None if c is None or p_unlimited else c.remaining
        total = None if total is None or p.size.bytes is None else total + p.size.bytes
        remaining = None if remaining is None or rem is None else remaining + rem
        state = _package_state(p, c, now)
        states.append(state)
        packages.append(
            Package(
                name=p.name,
                state=state,
                data_total_bytes=None if p_unlimited else p.size.bytes,
                data_remaining_bytes=rem,
                unlimited=p_unlimited,
                expires_at=p.end,
            )
        )
    current = next((p for p, s in zip(live, states, strict=True) if s == "active"), live[-1])
    started = any(s in ("active", "depleted") for s in states) or any(
        p.start is not None and p.start <= now for p in live
    )
    # A status the docs do not list (SUSPENDED, ...) says nothing: never "active".
    odd = (
        profile is not None and profile.status is not None and profile.status not in PROFILE_STATES
    ) or any(
        c is not None and c.status is not None and c.status not in CONSUMPTION_STATES
        for c in (consumptions.get(p.id) for p in live)
    )
    if profile is not None and profile.status == "DELETED":
        state = EsimState.RECYCLED
    elif (profile is not None and profile.status == "ERROR") or odd:
        state = EsimState.UNKNOWN
    elif not started:
        state = EsimState.NOT_ACTIVE
    elif unlimited or remaining is None or remaining > 0:
        state = EsimState.ACTIVE
    else:
        state = EsimState.DEPLETED
    return Esim(
        state=state,
        plan=current.name,
        data_total_bytes=None if unlimited else total,
        data_remaining_bytes=None if unlimited else remaining,
        unlimited=unlimited,
        expires_at=max((p.end for p in live if p.end), default=None),
        packages=tuple(packages),
        **common,
    )


def plans_from_packages(
    rows: list[dict[str, Any]],
    *,
    account: str,
    provider: str,
    kind: str,
    currency: str,
    names: dict[str, str],
    countries: tuple[str, ...] = (),
) -> list[Plan]:
    """Plans from ``GET /v1/packages`` rows: one per price bracket, at its longest duration."""
    best: dict[str, Plan] = {}
    for row in rows:
        size = parse_size(row.get("dataLimitInBytes"), row.get("dataLimitInGB"))
        if size.bytes is None and not size.unlimited:
            continue
        days = pick_duration(row.get("minDays"), row.get("maxDays"), size.unlimited)
        if days is None:
            continue  # no duration the API accepts falls inside this bracket
        iso2 = _str(row.get("destinationISO2"))
        iso3 = _str(row.get("destination"))
        code = iso2 or iso3
        name = names.get(iso3 or "") or names.get(iso2 or "") or code
        plan = Plan(
            id=plan_id_for(code, size, days),
            account=account,
            provider=provider,
            name=package_name(name, size, days),
            kind=kind,
            data_bytes=size.bytes,
            unlimited=size.unlimited,
            validity_days=days,
            price=money_from_cents(row.get("priceInCents"), currency),
            countries=countries or tuple(c for c in (iso2,) if c),
            # Celitech does not say whether a top-up adds to or follows the current package.
            stacking=None,
            unit_base=size.base,
        )
        old = best.get(plan.id)
        if old is None or (plan.price and old.price and plan.price.amount < old.price.amount):
            best[plan.id] = plan
    return sorted(best.values(), key=lambda p: (p.price.amount if p.price else Decimal(0), p.id))


def order_from_purchase(p: Purchase, *, account: str, provider: str, now: datetime) -> Order:
    return Order(
        id=p.id,
        account=account,
        provider=provider,
        iccid=p.iccid,
        plan_id=p.plan_id,
        plan=p.name,
        price=p.price,
        created_at=p.created or p.start or now,
        # The purchase list holds successful purchases only.
        state=OrderState.COMPLETED,
        source="provider",
        reference=p.reference,
        extra={k: v for k, v in (("purchase_type", p.purchase_type), ("channel", p.source)) if v},
    )


def _message(body: Any) -> str | None:
    if not isinstance(body, dict):
        return None
    for key in ("message", "error_description", "error", "Message"):
        value = body.get(key)
        if isinstance(value, str) and value.strip():
            return re.sub(r"\s+", " ", value).strip()[:200]
    return None


class _TokenRefused(AuthRejected):
    """The API refused our bearer token (401): get a new one once, then give up."""


# -- the provider ------------------------------------------------------------------------------


class CelitechProvider(Provider):
    """Celitech API v1 (``api.celitech.net``) with OAuth2 from ``auth.celitech.net``."""

    id: ClassVar[str] = "celitech"
    display_name: ClassVar[str] = "Celitech"
    secret_fields: ClassVar[tuple[str, ...]] = ("CLIENT_ID", "CLIENT_SECRET")
    default_base_url: ClassVar[str | None] = PRODUCTION_API
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.LIST_ESIMS,
            Capability.TOPUPS,
            Capability.CATALOGUE,
            Capability.BUY_TOPUP,
            Capability.FIND_ORDER,
            Capability.ORDERS,
        }
    )
    unit_base: ClassVar[int] = 1024
    # Celitech documents no cache; it suggests polling consumption about hourly.
    usage_ttl: ClassVar[timedelta] = timedelta(minutes=15)
    homepage: ClassVar[str | None] = "https://www.celitech.com"
    #: A top-up answered with 5xx or never answered may show in the purchase list late
    #: (API Gateway gives up after 29 s while the backend goes on): until this much time
    #: has passed, "not listed" is not yet taken as "not bought".
    order_lookup_lag: ClassVar[timedelta] = timedelta(minutes=2)

    def __init__(self, ctx: ProviderContext) -> None:
        super().__init__(ctx)
        opts = ctx.account.options
        self.timeout = self._number_option("timeout", ctx.timeout)
        self.retries = int(self._number_option("retries", 4))
        self.rps = self._number_option("requests_per_second", DEFAULT_RPS)
        currency = str(opts.get("currency", "USD")).strip().upper()
        if not re.fullmatch(r"[A-Z]{3}", currency):
            raise ConfigError(f"[accounts.{self.account}]: currency must be a code like USD")
        self.currency = currency
        self._api: ApiClient | None = None
        self._auth: ApiClient | None = None
        self._token: str | None = None
        self._token_expires = 0.0
        self._auth_style = str(opts.get("auth_style", "post"))
        if self._auth_style not in ("post", "basic"):
            raise ConfigError(f"[accounts.{self.account}]: auth_style must be 'post' or 'basic'")
        self._token_lock: asyncio.Lock | None = None  # made in the running event loop

    def _number_option(self, key: str, default: float) -> float:
        raw = self.ctx.account.options.get(key, default)
        try:
            value = float(raw)
        except (TypeError, ValueError):
            value = -1.0
        if value < 0 or (key != "retries" and value == 0):
            raise ConfigError(f"[accounts.{self.account}]: {key} must be a positive number")
        return value

    # -- addresses --------------------------------------------------------------------------

    @property
    def api_root(self) -> str:
        """The API host; paths carry ``/v1`` (the SDKs' base URL ends in ``/v1``: accept it)."""
        url = self.base_url
        return url[: -len("/v1")] if url.endswith("/v1") else url

    @property
    def token_url(self) -> str:
        explicit = self.ctx.account.options.get("auth_url")
        if explicit:
            url = str(explicit).rstrip("/")
            return url if url.endswith(TOKEN_PATH) else url + TOKEN_PATH
        if self.ctx.account.base_url and urlsplit(self.api_root).netloc != PRODUCTION_HOST:
            # One local server (a proxy or a test fake) stands in for both hosts.
            return self.api_root + TOKEN_PATH
        return PRODUCTION_TOKEN_URL

    def _api_client(self) -> ApiClient:
        if self._api is None:
            self._api = ApiClient(
                base_url=self.api_root,
                provider=self.id,
                account=self.account,
                timeout=self.timeout,
                throttle=Throttle(self.rps, 1.0, burst=max(1, int(self.rps))),
                error_mapper=self._map_api_error,
                retries=self.retries,
                extra=self.ctx.extra,
                secrets=self.ctx.secrets.values(),  # masked in its errors
            )
        return self._api

    def _auth_client(self) -> ApiClient:
        if self._auth is None:
            parts = urlsplit(self.token_url)
            self._auth = ApiClient(
                base_url=f"{parts.scheme}://{parts.netloc}",
                provider=self.id,
                account=self.account,
                timeout=self.timeout,
                error_mapper=self._map_token_error,
                retries=self.retries,
                extra=self.ctx.extra,
                secrets=self.ctx.secrets.values(),  # masked in its errors
            )
        return self._auth

    async def aclose(self) -> None:
        for client in (self._api, self._auth):
            if client is not None:
                await client.aclose()
        self._api = self._auth = None
        self._token_lock = None

    # -- errors -----------------------------------------------------------------------------

    def _rejected(self, why: str) -> AuthRejected:
        return AuthRejected(
            f"Celitech rejected the client credentials of account {self.account!r} ({why}); "
            f"run 'esimctl account add {self.account} --provider celitech --replace' "
            "to store new ones",
            account=self.account,
            provider=self.id,
        )

    def _unreadable(self, path: str) -> ProviderError:
        return ProviderError(
            f"Celitech answered {path} for account {self.account!r} with something esimctl "
            "cannot read (not the documented list); nothing is assumed from it",
            account=self.account,
            provider=self.id,
            code="unreadable_answer",
        )

    def _no_such_path(self, resp: httpx.Response, body: Any) -> EsimctlError | None:
        # API Gateway's answer for a path it does not know: a wrong base_url, not bad keys.
        if resp.status_code == 403 and _message(body) == "Missing Authentication Token":
            return ConfigError(
                f"Celitech has no {resp.request.url.path} at {resp.request.url.host}: "
                f"check base_url of account {self.account!r}"
            )
        return None

    def _map_token_error(self, resp: httpx.Response, body: Any) -> EsimctlError | None:
        if (wrong := self._no_such_path(resp, body)) is not None:
            return wrong
        if resp.status_code in (400, 401, 403):
            code = body.get("error") if isinstance(body, dict) else None
            why = str(code) if isinstance(code, str) and code else f"HTTP {resp.status_code}"
            why = self._auth_client().scrub(why)  # before cutting: no credential half-shown
            return self._rejected(re.sub(r"[^A-Za-z0-9_ .-]", "", why)[:60])
        return None

    def _map_api_error(self, resp: httpx.Response, body: Any) -> EsimctlError | None:
        status = resp.status_code
        if status < 400:
            return None
        msg = _message(body)
        path = resp.request.url.path
        purchase = resp.request.method == "POST" and path.endswith(TOPUP_PATH)
        if status == 401:
            return _TokenRefused(f"Celitech refused the access token ({msg or 'HTTP 401'})")
        if status == 402 or (status in (400, 403, 409, 422) and msg and _BALANCE.search(msg)):
            return InsufficientBalance(
                f"Celitech: not enough balance for this purchase ({msg or 'HTTP 402'}); "
                "add funds in the Celitech dashboard"
            )
        if (wrong := self._no_such_path(resp, body)) is not None:
            return wrong
        if status == 403:
            return self._rejected(f"HTTP 403{': ' + msg if msg else ''}")
        if status == 429:
            return None  # the shared handling honours Retry-After and backs off
        if status >= 500:
            if purchase:
                return OutcomeUnknown(
                    f"Celitech answered HTTP {status} to the top-up, which may still have been "
                    "made; its outcome will be checked before anything is bought again"
                )
            return None
        if status == 404 or (msg and _NOT_FOUND.search(msg)):
            return NotFound(f"Celitech: {msg or 'not found'} ({path})")
        if purchase:
            return InvalidInput(f"Celitech refused the top-up: {msg or f'HTTP {status}'}")
        return ProviderError(f"Celitech refused the request to {path}: {msg or f'HTTP {status}'}")

    # -- auth -------------------------------------------------------------------------------

    def _token_key(self) -> str:
        """Which credentials and auth host a cached token belongs to (no secret in it)."""
        seed = f"{self.ctx.secrets.get('CLIENT_ID', '')}\n{self.token_url}".encode()
        return hashlib.sha256(seed).hexdigest()[:24]

    async def _access_token(self, *, renew: bool = False) -> str:
        if self._token_lock is None:
            self._token_lock = asyncio.Lock()
        async with self._token_lock:
            now = time.time()
            if not renew and self._token and self._token_expires - TOKEN_MARGIN > now:
                return self._token
            key = self._token_key()
            if not renew:
                cached = self.ctx.token_cache.get() or {}
                try:
                    expires = float(cached.get("expires_at", "0"))
                except ValueError:
                    expires = 0.0
                if (
                    cached.get("key") == key
                    and cached.get("access_token")
                    and expires - TOKEN_MARGIN > now
                ):
                    self._token, self._token_expires = cached["access_token"], expires
                    self._auth_style = cached.get("auth_style", self._auth_style)
                    return self._token
            token, expires = await self._request_token()
            self._token, self._token_expires = token, expires
            self.ctx.token_cache.set(
                {
                    "key": key,
                    "access_token": token,
                    "expires_at": f"{expires:.0f}",
                    "auth_style": self._auth_style,
                }
            )
            return token

    async def _request_token(self) -> tuple[str, float]:
        client_id = self.ctx.secrets.get("CLIENT_ID", "")
        secret = self.ctx.secrets.get("CLIENT_SECRET", "")
        path = urlsplit(self.token_url).path or TOKEN_PATH
        styles = [self._auth_style, *(s for s in ("post", "basic") if s != self._auth_style)]
        last: EsimctlError = self._rejected("no answer")
        for style in styles:
            form = {"grant_type": "client_credentials"}
            headers = {"Content-Type": "application/x-www-form-urlencoded"}
            if style == "basic":
                pair = f"{client_id}:{secret}".encode()
                headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
            else:
                form |= {"client_id": client_id, "client_secret": secret}
            try:
                body = await self._auth_client().request("POST", path, data=form, headers=headers)
            except AuthRejected as exc:
                last = exc  # the other documented way of sending the credentials may work
                continue
            except httpx.HTTPError as exc:
                raise TemporaryFailure(
                    f"cannot reach the Celitech auth host: {type(exc).__name__}",
                    account=self.account,
                    provider=self.id,
                ) from None
            token = body.get("access_token") if isinstance(body, dict) else None
            if not isinstance(token, str) or not token:
                if isinstance(body, dict) and body.get("error"):
                    why = self._auth_client().scrub(str(body["error"]))
                    last = self._rejected(re.sub(r"[^A-Za-z0-9_]", "", why)[:60])
                    continue
                raise ProviderError(
                    "the Celitech auth host answered without an access token",
                    account=self.account,
                    provider=self.id,
                )
            lifetime = _decimal(body.get("expires_in"))
            seconds = float(lifetime) if lifetime is not None and lifetime > 0 else 3600.0
            self._auth_style = style
            return token, time.time() + seconds
        raise last

    async def _call(self, method: str, path: str, *, idempotent: bool = True, **kw: Any) -> Any:
        """One API request with a bearer token; a refused token is renewed once."""
        for attempt in range(2):
            token = await self._access_token(renew=attempt > 0)
            headers = {"Authorization": f"Bearer {token}"}
            try:
                return await self._api_client().request(
                    method, path, idempotent=idempotent, headers=headers, **kw
                )
            except _TokenRefused:
                # A 401 is answered before the request reaches the backend: even a
                # purchase is safe to send again with a new token.
                if attempt:
                    raise self._rejected("a new access token was refused too") from None
            except httpx.HTTPError as exc:
                if not idempotent:
                    raise OutcomeUnknown(
                        f"the top-up request to Celitech failed in transit ({type(exc).__name__}); "
                        "its outcome will be checked before anything is bought again",
                        account=self.account,
                        provider=self.id,
                    ) from None
                raise TemporaryFailure(
                    f"Celitech did not answer ({type(exc).__name__})",
                    account=self.account,
                    provider=self.id,
                ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _pages(
        self, path: str, key: str, params: dict[str, Any], limit: int
    ) -> list[dict[str, Any]]:
        """Every item of a cursor-paginated list (``afterCursor`` in and out)."""
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            query = {**params, "limit": limit}
            if cursor:
                query["afterCursor"] = cursor
            body = await self._call("GET", path, params=query)
            page = body.get(key) if isinstance(body, dict) else None
            # ``{}``, ``null``, ``{key: null}``, ``{key: {}}`` or rows that are not objects
            # say nothing, least of all "there are none": an empty list is ``{key: []}``.
            if not isinstance(page, list) or not all(isinstance(x, dict) for x in page):
                raise self._unreadable(path)
            items.extend(page)
            nxt = body.get("afterCursor")
            # The last page has a null cursor; a server that sends one anyway ends on an
            # empty page. A cursor seen before would loop forever.
            if not isinstance(nxt, str) or not nxt or not page or nxt in seen:
                break
            seen.add(nxt)
            cursor = nxt
        return items

    # -- reading ----------------------------------------------------------------------------

    async def check(self) -> str:
        await self._access_token(renew=True)
        await self._call("GET", "/v1/purchases", params={"limit": 1})
        host = urlsplit(self.token_url).netloc
        return f"client credentials accepted by {host}; purchases readable"

    async def _purchases(self, **params: Any) -> list[Purchase]:
        rows = await self._pages("/v1/purchases", "purchases", params, PURCHASES_PAGE)
        out = [parse_purchase(r, self.currency) for r in rows]
        if any(p is None for p in out):  # a purchase without an id: not one to leave out
            raise self._unreadable("/v1/purchases")
        return [p for p in out if p is not None]

    async def _profile(self, iccid: str) -> Profile:
        return parse_profile(await self._call("GET", "/v1/esim", params={"iccid": iccid}))

    async def _profile_or_none(self, iccid: str) -> Profile | None:
        try:
            return await self._profile(iccid)
        except (ProviderError, InvalidInput):
            return None  # the figures still stand; only the profile status is unknown

    async def _consumption(self, p: Purchase) -> Consumption | None:
        try:
            body = await self._call("GET", f"/v1/purchases/{quote(p.id, safe='')}/consumption")
        except (ProviderError, InvalidInput):
            return None  # one unreadable package must not hide the eSIM: its figure is unknown
        return parse_consumption(body, p.size.base)

    async def _esim(self, iccid: str, purchases: list[Purchase]) -> Esim:
        now = self.ctx.clock()
        live = [p for p in purchases if p.end is None or p.end > now]
        profile: Profile | None = None
        consumptions: dict[str, Consumption] = {}
        if live:  # an eSIM whose packages have all ended needs no more calls
            profile, found = await asyncio.gather(
                self._profile_or_none(iccid),
                asyncio.gather(*(self._consumption(p) for p in live)),
            )
            consumptions = {p.id: c for p, c in zip(live, found, strict=True) if c is not None}
        return build_esim(
            account=self.account,
            provider=self.id,
            iccid=iccid,
            purchases=purchases,
            consumptions=consumptions,
            profile=profile,
            now=now,
        )

    async def list_esims(self) -> list[Esim]:
        by_iccid: dict[str, list[Purchase]] = {}
        for p in await self._purchases():
            if p.iccid:
                by_iccid.setdefault(p.iccid, []).append(p)
        esims = await asyncio.gather(*(self._esim(i, ps) for i, ps in by_iccid.items()))
        return sorted(esims, key=lambda e: e.iccid)

    async def get_esim(self, iccid: str) -> Esim:
        mine = [p for p in await self._purchases(iccid=iccid) if p.iccid == iccid]
        if not mine:
            raise NotFound(
                f"eSIM {iccid} not found in Celitech account {self.account!r}",
                account=self.account,
                provider=self.id,
            )
        return await self._esim(iccid, mine)

    async def _destination_of(self, esim: Esim) -> tuple[str, str]:
        dest = esim.ref.get("destination")
        name = esim.ref.get("destination_name", "")
        if not dest:
            mine = [p for p in await self._purchases(iccid=esim.iccid) if p.iccid == esim.iccid]
            if not mine:
                raise NotFound(
                    f"eSIM {esim.iccid} not found", account=self.account, provider=self.id
                )
            latest = max(mine, key=lambda p: p.created or datetime.min.replace(tzinfo=UTC))
            dest = latest.destination or latest.destination_iso2 or ""
            name = latest.destination_name or ""
        return dest, name

    async def _require_topup_allowed(self, iccid: str) -> Profile:
        profile = await self._profile(iccid)
        if not profile.topup_allowed:
            raise ProviderError(
                f"Celitech does not allow a top-up on eSIM {iccid} now "
                f"(eSIM status {profile.status or 'unknown'})",
                account=self.account,
                provider=self.id,
                code="topup_not_allowed",
            )
        return profile

    async def topups(self, esim: Esim) -> list[Plan]:
        # A top-up keeps the destination of the eSIM's first purchase.
        dest, name = await self._destination_of(esim)
        await self._require_topup_allowed(esim.iccid)
        rows = await self._pages("/v1/packages", "packages", {"destination": dest}, PACKAGES_PAGE)
        return plans_from_packages(
            rows,
            account=self.account,
            provider=self.id,
            kind="topup",
            currency=self.currency,
            names={dest: name} if name else {},
        )

    async def catalogue(self, country: str) -> list[Plan]:
        cc = country.strip().upper()
        body = await self._call("GET", "/v1/destinations")
        rows = body.get("destinations") if isinstance(body, dict) else None
        dests = [d for d in rows or [] if isinstance(d, dict)]
        own = next((d for d in dests if str(d.get("destinationISO2", "")).upper() == cc), None)
        # supportedCountries holds country names per the docs, codes in practice: match both.
        aliases = {cc}
        if own is not None:
            aliases |= {str(own.get(k, "")).upper() for k in ("destination", "name")} - {""}
        matching = [
            d
            for d in dests
            if str(d.get("destinationISO2", "")).upper() == cc
            or aliases & {str(c).upper() for c in d.get("supportedCountries") or []}
        ]
        plans: list[Plan] = []
        if not matching:
            matching = [{"destination": cc, "destinationISO2": cc}]
        for d in matching:
            code = str(d.get("destination") or d.get("destinationISO2"))
            found = await self._pages(
                "/v1/packages", "packages", {"destination": code}, PACKAGES_PAGE
            )
            iso2 = _str(d.get("destinationISO2"))
            name = _str(d.get("name"))
            plans += plans_from_packages(
                found,
                account=self.account,
                provider=self.id,
                kind="new",
                currency=self.currency,
                names={code: name} if name else {},
                countries=(cc,) if iso2 is None or iso2.upper() == cc else (cc, iso2.upper()),
            )
        return plans

    async def orders(self) -> list[Order]:
        now = self.ctx.clock()
        out = [
            order_from_purchase(p, account=self.account, provider=self.id, now=now)
            for p in await self._purchases()
        ]
        return sorted(out, key=lambda o: o.created_at, reverse=True)

    # -- buying -----------------------------------------------------------------------------

    async def buy_topup(self, esim: Esim, plan: Plan, reference: str) -> Order:
        if plan.kind != "topup":
            raise InvalidInput(
                f"{plan.id!r} is a plan for a new eSIM, not a top-up",
                account=self.account,
                provider=self.id,
            )
        gb, days = parse_plan_id(plan.id)
        profile = await self._require_topup_allowed(esim.iccid)
        body = {
            "iccid": esim.iccid,
            "dataLimitInGB": int(gb) if gb == gb.to_integral_value() else float(gb),
            "duration": days,
            "referenceId": reference,
        }
        answer = await self._call("POST", TOPUP_PATH, json=body, idempotent=False)
        purchase = answer.get("purchase") if isinstance(answer, dict) else None
        pid = _str(purchase.get("id")) if isinstance(purchase, dict) else None
        if pid is None or not isinstance(purchase, dict):
            raise OutcomeUnknown(
                "Celitech answered the top-up without a purchase id; its outcome will be "
                "checked before anything is bought again",
                account=self.account,
                provider=self.id,
            )
        prof = _obj(answer.get("profile"))
        extra = {
            k: v
            for k, v in (
                ("starts_at", parse_time(purchase.get("startDate"), purchase.get("startTime"))),
                ("ends_at", parse_time(purchase.get("endDate"), purchase.get("endTime"))),
                ("package_id", _str(purchase.get("packageId"))),
            )
            if v is not None
        }
        iccid = _str(prof.get("iccid")) or profile.iccid or esim.iccid
        return Order(
            id=pid,
            account=self.account,
            provider=self.id,
            iccid=iccid,
            plan_id=plan.id,
            plan=plan.name,
            price=await self._charged(pid, reference, iccid, plan.price),
            created_at=parse_time(purchase.get("createdDate"), purchase.get("createdAt"))
            or self.ctx.clock(),
            state=OrderState.COMPLETED,
            source="provider",
            reference=reference,
            extra=extra,
        )

    async def _charged(
        self, purchase_id: str, reference: str, iccid: str, listed: Money | None
    ) -> Money | None:
        """What the purchase list records for our new purchase (``package.priceInCents``),
        as given: the top-up answer carries no price, and a price that rose between
        listing and buying must reach the caps. The listed price where the purchase does
        not show yet or the read fails: the purchase is made either way."""
        try:
            rows = await self._purchases(referenceId=reference, iccid=iccid)
        except EsimctlError:
            return listed
        for p in rows:
            if p.id == purchase_id:
                return p.price  # None when the list's price is not a number
        return listed

    async def find_order(
        self, reference: str, *, iccid: str | None, since: datetime
    ) -> Order | None:
        # The referenceId filter is documented; the match is checked here too in case a
        # server ignores it. afterDate starts a day early: its time zone is not documented.
        params: dict[str, Any] = {
            "referenceId": reference,
            "afterDate": (since.astimezone(UTC) - timedelta(days=1)).date().isoformat(),
        }
        if iccid:
            params["iccid"] = iccid
        now = self.ctx.clock()
        try:
            found = await self._purchases(**params)
        except ProviderError as exc:
            if exc.code != "unreadable_answer":
                raise
            # An answer that cannot be understood is never evidence that nothing happened.
            raise self.lookup_unresolved(
                "answered the order lookup with something esimctl cannot read",
                code="lookup_unreadable",
            ) from None
        for p in found:
            if p.reference == reference and (iccid is None or p.iccid == iccid):
                return order_from_purchase(p, account=self.account, provider=self.id, now=now)
        return None

    def is_applied(self, before: Esim | None, after: Esim, order: Order) -> bool:
        """A top-up is applied once its purchase is one of the eSIM's packages."""
        ids = after.ref.get("purchase_ids")
        if ids is not None and order.id:
            return order.id in ids.split(",")
        return super().is_applied(before, after, order)
