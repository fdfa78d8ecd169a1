"""Celitech API v1, as docs/providers/celitech.md describes it.

No "list eSIMs" resource: the eSIM list is ``GET /v1/purchases`` grouped by ICCID, an eSIM's
figures add up the consumption of its purchases that have not ended, and ``GET /v1/esim``
gives its profile status and whether a top-up is allowed. Where Celitech's docs are silent or
disagree, both readings are accepted (the doc's last table).
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cached_property
from typing import Any, ClassVar, TypeVar
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
)
from esimctl.models import Esim, EsimState, Money, Order, OrderState, Package, Plan
from esimctl.providers.base import Capability, Provider, ProviderContext
from esimctl.providers.kit.concurrency import bounded_map
from esimctl.providers.kit.http import ApiClient, ErrorMapper, Throttle
from esimctl.providers.kit.oauth import FetchedToken, TokenSource, token_key
from esimctl.providers.kit.paging import cursor_pages
from esimctl.providers.kit.units import to_bytes, to_money
from esimctl.providers.kit.values import as_dict, as_list, parse_time, records, to_decimal, to_str

PRODUCTION_HOST = "api.celitech.net"
PRODUCTION_API = f"https://{PRODUCTION_HOST}"
PRODUCTION_TOKEN_URL = "https://auth.celitech.net/oauth2/token"
TOKEN_PATH = "/oauth2/token"
TOPUP_PATH = "/v1/purchases/topup"
#: How the token request carries the client credentials: in the form body, or HTTP Basic.
AUTH_STYLES = ("post", "basic")
#: Top-up durations in days the API accepts (limited packages; 90 has its own pricing).
LIMITED_DURATIONS = (1, 2, 7, 14, 30, 90)
#: Unlimited packages (Region-3 only) accept these durations.
UNLIMITED_DURATIONS = (1, 2, 7, 14, 30)
PURCHASES_PAGE = 100  # the documented maximum of ``limit`` on /purchases
PACKAGES_PAGE = 160  # the documented maximum of ``limit`` on /packages
MAX_PAGES = 10_000
#: Celitech documents no rate limit; a polite default (option ``requests_per_second``).
DEFAULT_RPS = 50.0
GIB, GB = 1024**3, 1000**3
#: Text figures beyond 1e400 are junk (1E+310 cents is kept, for the validator to refuse).
MAX_EXPONENT = 400
#: The statuses Celitech documents; any other one says nothing esimctl can rely on.
PROFILE_STATES = frozenset({"RELEASED", "DOWNLOADED", "INSTALLED", "ENABLED", "DELETED", "ERROR"})
CONSUMPTION_STATES = frozenset({"ACTIVE", "NOT_ACTIVE"})

# "credits" but not "credentials": a refused key must not read as an empty wallet.
_BALANCE = re.compile(r"\bbalance\b|insufficient|\bfunds?\b|\bcredits?\b", re.IGNORECASE)
_NOT_FOUND = re.compile(r"not found|does not exist|unknown (iccid|esim|purchase)", re.IGNORECASE)
_PLAN_ID = re.compile(r"^(?:(?P<dest>[a-z0-9]+)-)?(?P<size>unl|\d+(?:\.\d+)?gb)-(?P<days>\d+)d$")

E = TypeVar("E", bound=EsimctlError)


# -- fields: pure functions, fed the documented examples in the tests -------------------------


def parse_date(iso: Any, epoch: Any = None) -> datetime | None:
    """Every date comes twice, ``startDate`` (ISO) and ``startTime`` (epoch): ISO wins."""
    return parse_time(iso) or parse_time(epoch)


def _num(value: Any) -> Decimal | None:
    return to_decimal(value, max_exponent=MAX_EXPONENT)


def _upper(value: Any) -> str | None:
    text = to_str(value)
    return text.upper() if text else None


def money_from_cents(cents: Any, currency: str = "USD") -> Money | None:
    return to_money(cents, currency, scale=100, max_exponent=MAX_EXPONENT)


@dataclass(frozen=True)
class Size:
    """A package size: bytes as Celitech counts them, or unlimited."""

    bytes: int | None
    unlimited: bool = False
    base: int = 1024

    @property
    def gb(self) -> Decimal | None:  # what ``dataLimitInGB`` carries
        return None if self.bytes is None else Decimal(self.bytes) / Decimal(self.base**3)


def _unit_of(n_bytes: int, n_gb: Decimal | None) -> int:
    """1024 when Celitech's GB is 2**30 bytes, 1000 when it is 10**9."""
    if n_gb is not None and n_gb > 0:
        ratio = Decimal(n_bytes) / n_gb
        return 1000 if abs(ratio - GB) < abs(ratio - GIB) else 1024
    # Only bytes: sizes are multiples of half a GB, which tells the unit apart.
    return 1000 if n_bytes % (GIB // 2) != 0 and n_bytes % (GB // 2) == 0 else 1024


def parse_size(in_bytes: Any, in_gb: Any = None, base: int | None = None) -> Size:
    """``...InBytes`` (wins) and/or ``...InGB`` (of ``base``; when not given, the unit is
    read from the pair); -1 in either is unlimited."""
    b, g = _num(in_bytes), _num(in_gb)
    if -1 in (b, g):
        return Size(None, unlimited=True)
    if b is None:
        return Size(to_bytes(g, "GB", base=base or 1024, rounding="down"), base=base or 1024)
    n = to_bytes(b, "B", rounding="down")
    return Size(None) if n is None else Size(n, base=base or _unit_of(n, g))


def gb_label(size: Size) -> str:
    """``0.5``, ``1``, ``20``: the size in the provider's GB, as its app shows it."""
    gb = size.gb
    return "?" if gb is None else format(gb.quantize(Decimal("0.01")).normalize(), "f")


def package_name(destination: str | None, size: Size, days: int | None) -> str:
    amount = "Unlimited" if size.unlimited else f"{gb_label(size)} GB"
    span = "" if days is None else f" · {days} day" + ("" if days == 1 else "s")
    return f"{destination or 'Celitech'} {amount}{span}"


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
    return (Decimal(-1) if size == "unl" else Decimal(size[:-2])), int(m.group("days"))


def pick_duration(min_days: Any, max_days: Any, unlimited: bool) -> int | None:
    """The longest accepted duration in a package's ``minDays``..``maxDays`` price bracket
    (every duration in it costs the same)."""
    lo, hi = _num(min_days), _num(max_days)
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


def parse_purchase(d: dict[str, Any], currency: str = "USD") -> Purchase | None:
    """A purchase row; None for a row without an id (nothing can be done with it)."""
    pid, pkg, duration = to_str(d.get("id")), as_dict(d.get("package")), _num(d.get("duration"))
    if pid is None:
        return None
    start = parse_date(d.get("startDate"), d.get("startTime"))
    end = parse_date(d.get("endDate"), d.get("endTime"))
    days = None if duration is None else int(duration)
    if days is None and start is not None and end is not None and end > start:
        days = max(1, round((end - start).total_seconds() / 86400))
    return Purchase(
        id=pid,
        iccid=to_str(as_dict(d.get("esim")).get("iccid")),
        created=parse_date(d.get("createdDate"), d.get("createdAt")),
        start=start,
        end=end,
        days=days,
        size=parse_size(pkg.get("dataLimitInBytes"), pkg.get("dataLimitInGB")),
        destination=to_str(pkg.get("destination")),
        destination_iso2=to_str(pkg.get("destinationISO2")),
        destination_name=to_str(pkg.get("destinationName")),
        price=money_from_cents(pkg.get("priceInCents"), currency),
        reference=to_str(d.get("referenceId")),
        purchase_type=to_str(d.get("purchaseType")),
        source=to_str(d.get("source")),
    )


@dataclass(frozen=True)
class Consumption:
    remaining: int | None
    unlimited: bool
    status: str | None  # ACTIVE | NOT_ACTIVE


def parse_consumption(d: Any, base: int) -> Consumption:
    """``/purchases/{id}/consumption``; remaining data is kept as given, never clamped to 0."""
    d = as_dict(d)
    left = parse_size(d.get("dataUsageRemainingInBytes"), d.get("dataUsageRemainingInGB"), base)
    return Consumption(left.bytes, left.unlimited, _upper(d.get("status")))


@dataclass(frozen=True)
class Profile:
    iccid: str | None
    status: str | None  # RELEASED, DOWNLOADED, INSTALLED, ENABLED, DELETED, ERROR
    connectivity: str | None  # ACTIVE | NOT_ACTIVE
    topup_flag: bool | None

    @property
    def topup_allowed(self) -> bool:
        """``isTopUpAllowed`` when sent; else the 2025 rule (``ENABLED``/``INSTALLED``)."""
        flag = self.topup_flag
        return flag if flag is not None else self.status in ("ENABLED", "INSTALLED")


def parse_profile(body: Any) -> Profile:
    d = as_dict(body).get("esim")
    if not isinstance(d, dict):
        raise ProviderError("Celitech sent an eSIM answer without 'esim'")
    flag = d.get("isTopUpAllowed")
    status, conn = _upper(d.get("status")), _upper(d.get("connectivityStatus"))
    return Profile(to_str(d.get("iccid")), status, conn, flag if isinstance(flag, bool) else None)


# -- an eSIM from its purchases ---------------------------------------------------------------


def _package_state(p: Purchase, c: Consumption | None, now: datetime) -> str:
    if c is not None and not (c.unlimited or p.size.unlimited) and c.remaining == 0:
        return "depleted"
    if c is not None and c.status is not None and c.status not in CONSUMPTION_STATES:
        return "unknown"
    if c is not None and c.status == "ACTIVE":
        return "active"
    if p.start is not None and p.start > now:
        return "queued"
    return "unknown" if c is None else "not_active"


def _sum(figures: list[int | None]) -> int | None:
    return None if None in figures else sum(f for f in figures if f is not None)


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
    """One eSIM: each purchase is a package; the packages that have not ended add up."""
    ordered = sorted(purchases, key=lambda p: (p.created or p.start or now, p.id))
    latest = ordered[-1]
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
    common: dict[str, Any] = {"account": account, "provider": provider, "iccid": iccid}
    common |= {"as_of": now, "ref": ref, "unit_base": latest.size.base}
    live = [p for p in ordered if p.end is None or p.end > now]
    if not live:  # every package has ended: the data that was left cannot be used any more
        return Esim(
            **common,
            state=EsimState.EXPIRED,
            plan=latest.name,
            data_total_bytes=None if latest.size.unlimited else latest.size.bytes,
            unlimited=latest.size.unlimited,
            expires_at=max((p.end for p in ordered if p.end), default=None),
        )
    packages: list[Package] = []
    for p in live:
        c = consumptions.get(p.id)
        unl = p.size.unlimited or (c is not None and c.unlimited)
        packages.append(
            Package(
                name=p.name,
                state=_package_state(p, c, now),
                data_total_bytes=None if unl else p.size.bytes,
                data_remaining_bytes=None if c is None or unl else c.remaining,
                unlimited=unl,
                expires_at=p.end,
            )
        )
    states = [k.state for k in packages]
    unlimited = any(k.unlimited for k in packages)
    remaining = _sum([k.data_remaining_bytes for k in packages])
    current = next((p for p, s in zip(live, states, strict=True) if s == "active"), live[-1])
    started = any(s in ("active", "depleted") for s in states) or any(
        p.start is not None and p.start <= now for p in live
    )
    # A status the docs do not list (SUSPENDED, ...) says nothing: never "active".
    odd = (profile is not None and profile.status not in (None, *PROFILE_STATES)) or any(
        c is not None and c.status not in (None, *CONSUMPTION_STATES)
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
        **common,
        state=state,
        plan=current.name,
        data_total_bytes=None if unlimited else _sum([p.size.bytes for p in live]),
        data_remaining_bytes=None if unlimited else remaining,
        unlimited=unlimited,
        expires_at=max((p.end for p in live if p.end), default=None),
        packages=tuple(packages),
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
        days = pick_duration(row.get("minDays"), row.get("maxDays"), size.unlimited)
        if (size.bytes is None and not size.unlimited) or days is None:
            continue
        iso2, iso3 = to_str(row.get("destinationISO2")), to_str(row.get("destination"))
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
            stacking=None,  # not documented
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
        state=OrderState.COMPLETED,  # the purchase list holds successful purchases only
        source="provider",
        reference=p.reference,
        extra={k: v for k, v in (("purchase_type", p.purchase_type), ("channel", p.source)) if v},
    )


def _message(body: Any) -> str | None:
    for key in ("message", "error_description", "error", "Message"):
        value = as_dict(body).get(key)
        if isinstance(value, str) and value.strip():
            return re.sub(r"\s+", " ", value).strip()[:200]
    return None


class _TokenRefused(AuthRejected):
    """The API refused our bearer token (401): get a new one once, then give up."""


# -- the provider ------------------------------------------------------------------------------


class CelitechProvider(Provider):
    id: ClassVar[str] = "celitech"
    display_name: ClassVar[str] = "Celitech"
    secret_fields: ClassVar[tuple[str, ...]] = ("CLIENT_ID", "CLIENT_SECRET")
    default_base_url: ClassVar[str | None] = PRODUCTION_API
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        map(Capability, ("list_esims", "topups", "catalogue", "buy_topup", "find_order", "orders"))
    )
    unit_base: ClassVar[int] = 1024
    # Celitech documents no cache; it suggests polling consumption about hourly.
    usage_ttl: ClassVar[timedelta] = timedelta(minutes=15)
    homepage: ClassVar[str | None] = "https://www.celitech.com"
    #: API Gateway gives up on a top-up after 29 s while the backend goes on: until this
    #: much time has passed, "not listed" is not yet taken as "not bought".
    order_lookup_lag: ClassVar[timedelta] = timedelta(minutes=2)

    def __init__(self, ctx: ProviderContext) -> None:
        super().__init__(ctx)
        opts = ctx.account.options
        self.timeout = self._number_option("timeout", ctx.timeout)
        self.retries = int(self._number_option("retries", 4))
        self.rps = self._number_option("requests_per_second", DEFAULT_RPS)
        self.currency = str(opts.get("currency", "USD")).strip().upper()
        if not re.fullmatch(r"[A-Z]{3}", self.currency):
            raise ConfigError(f"[accounts.{self.account}]: currency must be a code like USD")
        self._auth_style = str(opts.get("auth_style", "post"))
        if self._auth_style not in AUTH_STYLES:
            raise ConfigError(f"[accounts.{self.account}]: auth_style must be 'post' or 'basic'")
        # The key esimctl has always filed its token under: a cached token stays valid.
        key = token_key(ctx.secrets.get("CLIENT_ID", ""), self.token_url, length=24)
        self._tokens = TokenSource(ctx, self._fetch_token, key=key, margin=timedelta(seconds=60))

    def _number_option(self, key: str, default: float) -> float:
        try:
            value = float(self.ctx.account.options.get(key, default))
        except (TypeError, ValueError):
            value = -1.0
        if value < 0 or (key != "retries" and value == 0):
            raise ConfigError(f"[accounts.{self.account}]: {key} must be a positive number")
        return value

    def _error(self, cls: type[E], message: str, **kw: Any) -> E:
        return cls(message, account=self.account, provider=self.id, **kw)

    # -- addresses and clients --------------------------------------------------------------

    @property
    def api_root(self) -> str:
        return self.base_url.removesuffix("/v1")  # the SDKs' base URL ends in /v1

    @property
    def token_url(self) -> str:
        explicit = self.ctx.account.options.get("auth_url")
        if explicit:
            url = str(explicit).rstrip("/")
            return url if url.endswith(TOKEN_PATH) else url + TOKEN_PATH
        if self.ctx.account.base_url and urlsplit(self.api_root).netloc != PRODUCTION_HOST:
            return self.api_root + TOKEN_PATH  # one local server stands in for both hosts
        return PRODUCTION_TOKEN_URL

    def _client(self, base_url: str, mapper: ErrorMapper, throttle: Throttle | None) -> ApiClient:
        return ApiClient(
            base_url=base_url,
            provider=self.id,
            account=self.account,
            timeout=self.timeout,
            throttle=throttle,
            error_mapper=mapper,
            retries=self.retries,
            extra=self.ctx.extra,
            secrets=self.ctx.secrets.values(),
            transport=self.ctx.transport,
        )

    @cached_property
    def _api(self) -> ApiClient:
        throttle = Throttle(self.rps, 1.0, burst=max(1, int(self.rps)))
        return self._client(self.api_root, self._map_api_error, throttle)

    @cached_property
    def _auth(self) -> ApiClient:
        parts = urlsplit(self.token_url)
        return self._client(f"{parts.scheme}://{parts.netloc}", self._map_token_error, None)

    async def aclose(self) -> None:
        for name in ("_api", "_auth"):
            client = self.__dict__.pop(name, None)
            if client is not None:
                await client.aclose()

    # -- errors -----------------------------------------------------------------------------

    def _rejected(self, why: str) -> AuthRejected:
        return self._error(
            AuthRejected,
            f"Celitech rejected the client credentials of account {self.account!r} ({why}); "
            f"run 'esimctl account add {self.account} --provider celitech --replace' "
            "to store new ones",
        )

    def _unreadable(self, path: str) -> ProviderError:
        return self._error(
            ProviderError,
            f"Celitech answered {path} for account {self.account!r} with something esimctl "
            "cannot read (not the documented list); nothing is assumed from it",
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
            code = as_dict(body).get("error")
            why = str(code) if isinstance(code, str) and code else f"HTTP {resp.status_code}"
            why = self._auth.scrub(why)  # before cutting: no credential half-shown
            return self._rejected(re.sub(r"[^A-Za-z0-9_ .-]", "", why)[:60])
        return None

    def _map_api_error(self, resp: httpx.Response, body: Any) -> EsimctlError | None:
        status, msg, path = resp.status_code, _message(body), resp.request.url.path
        if status < 400:
            return None
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
        if status == 429 or status >= 500:
            return None  # ApiClient's: backoff and Retry-After; a purchase's outcome unknown
        if status == 404 or (msg and _NOT_FOUND.search(msg)):
            return NotFound(f"Celitech: {msg or 'not found'} ({path})")
        if resp.request.method == "POST" and path.endswith(TOPUP_PATH):
            return InvalidInput(f"Celitech refused the top-up: {msg or f'HTTP {status}'}")
        return ProviderError(f"Celitech refused the request to {path}: {msg or f'HTTP {status}'}")

    # -- auth and requests ------------------------------------------------------------------

    async def _fetch_token(self) -> FetchedToken:
        """The configured style first (else the one that worked last), then the other."""
        client_id = self.ctx.secrets.get("CLIENT_ID", "")
        secret = self.ctx.secrets.get("CLIENT_SECRET", "")
        first = self._tokens.extra.get("auth_style", self._auth_style)
        path = urlsplit(self.token_url).path or TOKEN_PATH
        last: EsimctlError = self._rejected("no answer")
        for style in sorted(AUTH_STYLES, key=lambda s: s != first):
            form = {"grant_type": "client_credentials"}
            headers = {"Content-Type": "application/x-www-form-urlencoded"}
            if style == "basic":
                pair = base64.b64encode(f"{client_id}:{secret}".encode()).decode("ascii")
                headers["Authorization"] = f"Basic {pair}"
            else:
                form |= {"client_id": client_id, "client_secret": secret}
            try:
                answer = as_dict(await self._auth.request("POST", path, data=form, headers=headers))
            except AuthRejected as exc:
                last = exc  # the other documented way of sending the credentials may work
                continue
            token = answer.get("access_token")
            if isinstance(token, str) and token:
                return FetchedToken(token, answer.get("expires_in"), {"auth_style": style})
            if not answer.get("error"):
                raise self._error(
                    ProviderError, "the Celitech auth host answered without an access token"
                )
            why = self._auth.scrub(str(answer["error"]))
            last = self._rejected(re.sub(r"[^A-Za-z0-9_]", "", why)[:60])
        raise last

    async def _call(self, method: str, path: str, *, idempotent: bool = True, **kw: Any) -> Any:
        """One API request with a bearer token. A 401 is answered before the request
        reaches the backend: even a top-up is sent again, once, with a new token."""

        async def send(headers: dict[str, str]) -> Any:
            return await self._api.request(
                method, path, idempotent=idempotent, headers=headers, **kw
            )

        try:
            return await self._tokens.with_bearer(
                send, retry_if=lambda e: isinstance(e, _TokenRefused)
            )
        except _TokenRefused:
            raise self._rejected("a new access token was refused too") from None

    async def _pages(self, path: str, key: str, limit: int, **params: Any) -> list[dict[str, Any]]:
        """A cursor list (``afterCursor`` in and out): ``{key: [...]}`` or an error."""

        async def page(cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
            query = {**params, "limit": limit} | ({"afterCursor": cursor} if cursor else {})
            body = as_dict(await self._call("GET", path, params=query))
            rows = records(body.get(key))
            if rows is None:  # {}, null, {key: null}: never "there are none"
                raise self._unreadable(path)
            nxt = body.get("afterCursor")
            return rows, nxt if isinstance(nxt, str) else None

        return await cursor_pages(page, max_pages=MAX_PAGES)

    # -- reading ----------------------------------------------------------------------------

    async def check(self) -> str:
        await self._tokens.token(fresh=True)
        await self._call("GET", "/v1/purchases", params={"limit": 1})
        host = urlsplit(self.token_url).netloc
        return f"client credentials accepted by {host}; purchases readable"

    async def _purchases(self, **params: Any) -> list[Purchase]:
        rows = await self._pages("/v1/purchases", "purchases", PURCHASES_PAGE, **params)
        out = [parse_purchase(r, self.currency) for r in rows]
        if any(p is None for p in out):  # a purchase without an id: not one to leave out
            raise self._unreadable("/v1/purchases")
        return [p for p in out if p is not None]

    async def _mine(self, iccid: str) -> list[Purchase]:
        if mine := [p for p in await self._purchases(iccid=iccid) if p.iccid == iccid]:
            return mine
        raise self._error(NotFound, f"eSIM {iccid} not found in Celitech account {self.account!r}")

    async def _profile(self, iccid: str) -> Profile:
        return parse_profile(await self._call("GET", "/v1/esim", params={"iccid": iccid}))

    async def _esims(self, groups: dict[str, list[Purchase]]) -> list[Esim]:
        """Each eSIM with a package that has not ended: its profile and the consumption of
        each such package, every request of every eSIM in one bounded queue."""
        now = self.ctx.clock()
        profiles: dict[str, Profile] = {}
        used: dict[str, dict[str, Consumption]] = {iccid: {} for iccid in groups}

        async def read(iccid: str, p: Purchase | None) -> None:
            try:
                if p is None:
                    profiles[iccid] = await self._profile(iccid)
                else:
                    path = f"/v1/purchases/{quote(p.id, safe='')}/consumption"
                    used[iccid][p.id] = parse_consumption(
                        await self._call("GET", path), p.size.base
                    )
            except (ProviderError, InvalidInput):
                pass  # one that cannot be read costs only that figure, never the eSIM

        calls: list[tuple[str, Purchase | None]] = []
        for iccid, ps in groups.items():
            if live := [p for p in ps if p.end is None or p.end > now]:
                calls += [(iccid, None), *((iccid, p) for p in live)]
        await bounded_map(calls, lambda call: read(*call))
        return [
            build_esim(
                account=self.account,
                provider=self.id,
                iccid=iccid,
                purchases=ps,
                consumptions=used[iccid],
                profile=profiles.get(iccid),
                now=now,
            )
            for iccid, ps in groups.items()
        ]

    async def list_esims(self) -> list[Esim]:
        groups: dict[str, list[Purchase]] = {}
        for p in await self._purchases():
            if p.iccid:
                groups.setdefault(p.iccid, []).append(p)
        return sorted(await self._esims(groups), key=lambda e: e.iccid)

    async def get_esim(self, iccid: str) -> Esim:
        [esim] = await self._esims({iccid: await self._mine(iccid)})
        return esim

    async def _require_topup_allowed(self, iccid: str) -> Profile:
        profile = await self._profile(iccid)
        if not profile.topup_allowed:
            raise self._error(
                ProviderError,
                f"Celitech does not allow a top-up on eSIM {iccid} now "
                f"(eSIM status {profile.status or 'unknown'})",
                code="topup_not_allowed",
            )
        return profile

    async def topups(self, esim: Esim) -> list[Plan]:
        # A top-up keeps the destination of the eSIM's latest purchase.
        dest, name = esim.ref.get("destination", ""), esim.ref.get("destination_name", "")
        if not dest:
            mine = await self._mine(esim.iccid)
            latest = max(mine, key=lambda p: p.created or datetime.min.replace(tzinfo=UTC))
            dest = latest.destination or latest.destination_iso2 or ""
            name = latest.destination_name or ""
        await self._require_topup_allowed(esim.iccid)
        rows = await self._pages("/v1/packages", "packages", PACKAGES_PAGE, destination=dest)
        return plans_from_packages(
            rows,
            account=self.account,
            provider=self.id,
            kind="topup",
            currency=self.currency,
            names={dest: name} if name else {},
        )

    async def catalogue(self, country: str) -> list[Plan]:
        """Every destination that covers ``country``: its own, and regions listing it in
        ``supportedCountries`` (names per the docs, codes in practice: both match)."""
        cc = country.strip().upper()
        body = as_dict(await self._call("GET", "/v1/destinations"))
        dests = [d for d in as_list(body.get("destinations")) if isinstance(d, dict)]
        mine = [d for d in dests if str(d.get("destinationISO2", "")).upper() == cc]
        own = mine[0] if mine else {}
        aliases = {cc} | {str(own.get(k, "")).upper() for k in ("destination", "name")} - {""}
        matching = [
            d
            for d in dests
            if d in mine or aliases & {str(c).upper() for c in as_list(d.get("supportedCountries"))}
        ] or [{"destination": cc, "destinationISO2": cc}]
        plans: list[Plan] = []
        for d in matching:
            code = str(d.get("destination") or d.get("destinationISO2"))
            rows = await self._pages("/v1/packages", "packages", PACKAGES_PAGE, destination=code)
            iso2, name = _upper(d.get("destinationISO2")), to_str(d.get("name"))
            plans += plans_from_packages(
                rows,
                account=self.account,
                provider=self.id,
                kind="new",
                currency=self.currency,
                names={code: name} if name else {},
                countries=(cc,) if iso2 in (None, cc) else (cc, iso2),
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
            raise self._error(InvalidInput, f"{plan.id!r} is a plan for a new eSIM, not a top-up")
        gb, days = parse_plan_id(plan.id)
        profile = await self._require_topup_allowed(esim.iccid)
        body = {
            "iccid": esim.iccid,
            "dataLimitInGB": int(gb) if gb == gb.to_integral_value() else float(gb),
            "duration": days,
            "referenceId": reference,
        }
        answer = as_dict(await self._call("POST", TOPUP_PATH, json=body, idempotent=False))
        purchase = as_dict(answer.get("purchase"))
        if (pid := to_str(purchase.get("id"))) is None:
            raise self._error(
                OutcomeUnknown,
                "Celitech answered the top-up without a purchase id; its outcome will be "
                "checked before anything is bought again",
            )
        extra = {
            "starts_at": parse_date(purchase.get("startDate"), purchase.get("startTime")),
            "ends_at": parse_date(purchase.get("endDate"), purchase.get("endTime")),
            "package_id": to_str(purchase.get("packageId")),
        }
        iccid = to_str(as_dict(answer.get("profile")).get("iccid")) or profile.iccid or esim.iccid
        return Order(
            id=pid,
            account=self.account,
            provider=self.id,
            iccid=iccid,
            plan_id=plan.id,
            plan=plan.name,
            price=await self._charged(pid, reference, iccid, plan.price),
            created_at=parse_date(purchase.get("createdDate"), purchase.get("createdAt"))
            or self.ctx.clock(),
            state=OrderState.COMPLETED,
            source="provider",
            reference=reference,
            extra={k: v for k, v in extra.items() if v is not None},
        )

    async def _charged(
        self, purchase_id: str, reference: str, iccid: str, listed: Money | None
    ) -> Money | None:
        """The top-up answer carries no price: the purchase list's, as given (a price that
        rose since listing reaches the caps); the listed one where it does not show yet."""
        try:
            rows = await self._purchases(referenceId=reference, iccid=iccid)
        except EsimctlError:
            return listed
        return next((p.price for p in rows if p.id == purchase_id), listed)

    async def find_order(
        self, reference: str, *, iccid: str | None, since: datetime
    ) -> Order | None:
        # The match is checked here too, in case a server ignores the referenceId filter;
        # afterDate starts a day early: its time zone is not documented.
        after = (since.astimezone(UTC) - timedelta(days=1)).date().isoformat()
        params = {"referenceId": reference, "afterDate": after} | (
            {"iccid": iccid} if iccid else {}
        )
        now = self.ctx.clock()
        try:
            found = await self._purchases(**params)
        except ProviderError as exc:
            if exc.code != "unreadable_answer":
                raise
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
