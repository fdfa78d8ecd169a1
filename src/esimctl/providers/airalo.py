"""Airalo Partner API v2: eSIMs, usage, top-ups, catalogue, orders and balance.

Only what is Airalo's lives here: endpoints, field names, error shapes and quirks, as
``docs/providers/airalo.md`` describes them; HTTP, the token, pages and the reading of
values are the provider kit's (``esimctl.providers.kit``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from functools import partial
from typing import Any, ClassVar

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
from esimctl.providers.kit import units, values
from esimctl.providers.kit.concurrency import bounded_map
from esimctl.providers.kit.http import ApiClient, KeyedThrottle, Throttle
from esimctl.providers.kit.oauth import FetchedToken, TokenSource, token_key
from esimctl.providers.kit.paging import numbered_pages
from esimctl.providers.kit.values import as_dict, as_list, parse_time, records

CURRENCY = "USD"  # "currency: always USD" (attribute descriptions)
#: The token page says 24 h, its example a year: never kept longer than 24 h.
TOKEN_MAX_AGE = timedelta(hours=24)
TOKEN_MARGIN = timedelta(minutes=5)
MAX_PAGES = 500
#: Our purchases carry ``<reference> (<iccid>)`` in ``description``, the reference starting
#: with "esimctl" (added in front when the caller's does not).
_OUR_DESCRIPTION = re.compile(r"^(?:esimctl )?(\S+)(?: \((\d{16,22})\))?$")
#: Airalo's default top-up description is ``Topup (<iccid>)``.
_ICCID_IN_TEXT = re.compile(r"\((\d{16,22})\)")

#: No JSON number reaches beyond 1e308: text beyond 1e±400 is junk, not a size or a price
#: (1e308 itself is kept, for the validator to refuse by name).
_MAX_EXPONENT = 400
to_decimal = partial(values.to_decimal, max_exponent=_MAX_EXPONENT)
to_int = partial(values.to_int, max_exponent=_MAX_EXPONENT)
#: Figures are MB of 1024 (``3072``, ``0.5``, ``"512.5"``), as whole bytes.
to_bytes = partial(units.to_bytes, max_exponent=_MAX_EXPONENT)


def usd(value: Any, currency: Any = None) -> Money | None:
    """A price as given (a number or text), in ``currency`` or USD."""
    return units.to_money(value, str(currency or CURRENCY), max_exponent=_MAX_EXPONENT)


_USAGE_STATES = {
    "NOT_ACTIVE": EsimState.NOT_ACTIVE,
    "ACTIVE": EsimState.ACTIVE,
    "FINISHED": EsimState.DEPLETED,
    "EXPIRED": EsimState.EXPIRED,
    "RECYCLED": EsimState.RECYCLED,
    "UNKNOWN": EsimState.UNKNOWN,
}
_PACKAGE_STATES = {
    "ACTIVE": "active",
    "NOT_ACTIVE": "queued",
    "FINISHED": "depleted",
    "EXPIRED": "expired",
}  # any other status of a package is "unknown"
_ORDER_STATES = {
    "completed": OrderState.COMPLETED,
    "partially_refunded": OrderState.COMPLETED,
    "failed": OrderState.FAILED,
    "refunded": OrderState.FAILED,
}  # any other status is not a verdict: pending, never completed nor failed


# -- pages ---------------------------------------------------------------------------------


def read_page(body: Any) -> list[dict[str, Any]] | None:
    """The records of one page: ``data`` as a list of objects, or as an object keyed by
    index (``/v2/packages`` from page 2 on); None for any other shape."""
    data = as_dict(body).get("data")
    if isinstance(data, dict):
        if not data or any(to_int(k) is None for k in data):
            return None
        data = [data[k] for k in sorted(data, key=lambda k: to_int(k) or 0)]
    return records(data)


def has_next_page(body: Any, page: int) -> bool:
    links = as_dict(as_dict(body).get("links"))
    if "next" in links:
        return bool(links.get("next"))
    last = to_int(as_dict(as_dict(body).get("meta")).get("last_page"))
    return last is not None and page < last


# -- records -------------------------------------------------------------------------------


def _says_unlimited(*texts: Any) -> bool:
    return any(isinstance(t, str) and "unlimited" in t.lower() for t in texts)


def plan_price(pkg: Mapping[str, Any], pricing: Mapping[str, Any] | None = None) -> Money | None:
    """What the partner balance is charged: ``net_price``, or under discount pricing the
    retail ``price`` less ``discount_percentage``."""
    given = pkg.get("net_price")
    if given is None:
        given = as_dict(as_dict(pkg.get("prices")).get("net_price")).get(CURRENCY)
    if given is not None:
        return usd(given)  # a net price that is no number is no price, never the retail one
    retail = to_decimal(pkg.get("price"))
    if retail is None:
        return None
    p = as_dict(pricing)
    discount = to_decimal(p.get("discount_percentage"))
    if p.get("model") == "discount_pricing" and discount:
        retail = retail * (100 - discount) / 100
        # Too large to have cents: kept as given, the validator refuses it by name.
        with contextlib.suppress(ArithmeticError):
            retail = retail.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return Money(retail, CURRENCY)


def plan_from(
    pkg: Mapping[str, Any],
    *,
    account: str,
    pricing: Mapping[str, Any] | None = None,
    kind: str | None = None,
    name: str | None = None,
    countries: tuple[str, ...] = (),
) -> Plan:
    """One package of ``/v2/sims/{iccid}/topups`` or ``/v2/packages`` as a Plan."""
    unlimited = pkg.get("is_unlimited") is True or _says_unlimited(pkg.get("data"))
    amount = to_bytes(pkg.get("amount"))
    title = str(pkg.get("title") or pkg.get("data") or pkg.get("id"))
    return Plan(
        id=str(pkg.get("id")),
        account=account,
        provider=AiraloProvider.id,
        name=name or title,
        kind=kind or ("topup" if pkg.get("type") == "topup" else "new"),
        data_bytes=None if unlimited or not amount else amount,
        unlimited=unlimited,
        validity_days=to_int(pkg.get("day")),
        price=plan_price(pkg, pricing),
        countries=countries,
        stacking=None,  # Airalo does not say whether a top-up adds or queues
        unit_base=1024,
    )


def reference_in(description: Any) -> tuple[str | None, str | None]:
    """Our reference and the ICCID in an order's description, where we wrote them."""
    if not isinstance(description, str):
        return None, None
    text = description.strip()
    m = _OUR_DESCRIPTION.match(text) if text.startswith("esimctl") else None
    if m:
        return m.group(1), m.group(2)
    found = _ICCID_IN_TEXT.search(description)
    return None, found.group(1) if found else None


def order_from(
    item: Mapping[str, Any],
    *,
    account: str,
    now: datetime,
    iccid: str | None = None,
    price: Money | None = None,
) -> Order:
    """One order of ``/v2/orders`` or the ``data`` of a ``/v2/orders/topups`` answer."""
    reference, described_iccid = reference_in(item.get("description"))
    sims = item.get("sims")
    sim_iccid = None
    if isinstance(sims, list) and sims and isinstance(sims[0], dict):
        sim_iccid = sims[0].get("iccid")
    status = as_dict(item.get("status")).get("slug") or item.get("status")
    state = OrderState.COMPLETED
    if status:  # none: the list holds only processed orders, and a 200 top-up is done
        state = _ORDER_STATES.get(str(status).lower(), OrderState.PENDING)
    return Order(
        id=str(item.get("code") or item.get("id")),
        account=account,
        provider=AiraloProvider.id,
        iccid=iccid or (str(sim_iccid) if sim_iccid else None) or described_iccid,
        plan_id=str(item["package_id"]) if item.get("package_id") else None,
        plan=str(item["package"]) if item.get("package") else None,
        price=price if price is not None else usd(item.get("price"), item.get("currency")),
        created_at=parse_time(item.get("created_at")) or now,
        state=state,
        source="provider",
        reference=reference,
        extra={
            "order_id": item.get("id"),
            "type": item.get("type"),
            "description": item.get("description"),
            "retail_price": str(item["price"]) if item.get("price") is not None else None,
            "status": status,
        },
    )


def packages_from(history: Iterable[Mapping[str, Any]]) -> tuple[Package, ...]:
    out = []
    for h in history:
        pkg = as_dict(h.get("package"))
        unlimited = pkg.get("is_unlimited") is True or _says_unlimited(pkg.get("data"))
        out.append(
            Package(
                name=str(pkg.get("title") or pkg.get("data") or pkg.get("id") or "") or None,
                state=_PACKAGE_STATES.get(str(h.get("status")).upper(), "unknown"),
                data_total_bytes=None if unlimited else to_bytes(pkg.get("amount")) or None,
                data_remaining_bytes=None if unlimited else to_bytes(h.get("remaining")),
                unlimited=unlimited,
                expires_at=parse_time(h.get("expired_at")),
            )
        )
    return tuple(out)


def esim_from(
    sim: Mapping[str, Any],
    usage: Mapping[str, Any] | None,
    *,
    account: str,
    now: datetime,
    history: list[dict[str, Any]] | None = None,
) -> Esim:
    """An entry of ``/v2/sims`` plus its ``/usage`` (and package history, if read)."""
    simable = as_dict(sim.get("simable"))
    u = as_dict(usage)
    status = str(u.get("status") or "").upper()
    recycled = sim.get("recycled") is True or status == "RECYCLED"
    if recycled:
        state = EsimState.RECYCLED
    elif usage is None:
        state = EsimState.UNKNOWN
    else:
        state = _USAGE_STATES.get(status, EsimState.UNKNOWN)

    # Figures as given (fractional, negative, absurd): the validator refuses by name.
    total, remaining = to_bytes(u.get("total")), to_bytes(u.get("remaining"))
    package_unlimited = _says_unlimited(simable.get("data"), simable.get("package_id"))
    packages = packages_from(history or [])
    unlimited = (
        u.get("is_unlimited") is True
        # Sandbox may say is_unlimited false with 0/0: the package bought says what it is.
        or (not total and not remaining and package_unlimited and not recycled)
        or any(p.unlimited and p.state == "active" for p in packages)
    )
    total_b = remaining_b = None
    if not unlimited and not recycled and total:
        # 0/0 is "unknown", never "0 left"; a missing remaining is unknown, never 0.
        total_b, remaining_b = total, remaining
    expires = parse_time(u.get("expired_at"))
    if state == EsimState.ACTIVE:
        if expires is not None and expires <= now:
            state = EsimState.EXPIRED
        elif remaining_b == 0 and total_b:
            state = EsimState.DEPLETED

    ref = {"sim_id": str(sim.get("id", "")), "package_id": str(simable.get("package_id") or "")}
    if history is not None:
        ref["history"] = json.dumps(
            [
                [str(h.get("id")), str(as_dict(h.get("package")).get("id")), str(h.get("status"))]
                for h in history
            ]
        )
    return Esim(
        account=account,
        provider=AiraloProvider.id,
        iccid=str(sim.get("iccid")),
        state=state,
        plan=str(simable["package"]) if simable.get("package") else None,
        data_total_bytes=total_b,
        data_remaining_bytes=remaining_b,
        unlimited=unlimited,
        expires_at=expires,
        as_of=now,
        packages=packages,
        unit_base=1024,
        ref={k: v for k, v in ref.items() if v},
    )


def _history_ref(e: Esim | None) -> list[tuple[str, str, str]] | None:
    if e is None or "history" not in e.ref:
        return None
    try:
        rows = json.loads(e.ref["history"])
        return [(str(a), str(b), str(c)) for a, b, c in rows]
    except (ValueError, TypeError):
        return None


# -- the provider --------------------------------------------------------------------------


class AiraloProvider(Provider):
    """Airalo Partner API v2 with the account's own client id and secret."""

    id: ClassVar[str] = "airalo"
    display_name: ClassVar[str] = "Airalo"
    secret_fields: ClassVar[tuple[str, ...]] = ("CLIENT_ID", "CLIENT_SECRET")
    default_base_url: ClassVar[str | None] = "https://partners-api.airalo.com"
    homepage: ClassVar[str | None] = "https://partners.airalo.com"
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
    usage_ttl: ClassVar[timedelta] = timedelta(minutes=20)  # Airalo's own usage cache
    catalogue_ttl: ClassVar[timedelta] = timedelta(hours=1)  # Airalo's recommended sync
    #: A purchase may land up to the longest request timeout (600 s) after it was sent.
    order_lookup_lag: ClassVar[timedelta] = timedelta(minutes=11)

    # Documented limits (requests, per seconds). Benchmarks against a local fake may patch
    # these on the class; against Airalo they are the contract.
    TOKEN_LIMIT: ClassVar[tuple[float, float]] = (3, 60.0)
    USAGE_PER_ICCID: ClassVar[tuple[float, float]] = (10, 60.0)
    USAGE_PER_COMPANY: ClassVar[tuple[float, float]] = (5, 1.0)
    HISTORY_PER_ICCID: ClassVar[tuple[float, float]] = (10, 60.0)
    TOPUPS_PER_ICCID: ClassVar[tuple[float, float]] = (10, 60.0)
    PACKAGES_LIMIT: ClassVar[tuple[float, float]] = (40, 60.0)
    GENERAL_LIMIT: ClassVar[tuple[float, float]] = (5, 1.0)
    PAGE_SIZE: ClassVar[int] = 100
    #: eSIMs whose usage is read at once (each call still waits for its throttles).
    CONCURRENCY: ClassVar[int] = 5

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        cls._options(options, default_timeout=20.0)

    @staticmethod
    def _options(options: Mapping[str, Any], *, default_timeout: float) -> tuple[float, int]:
        """``timeout`` (seconds per request) and ``retries`` (of a read), from config."""
        try:
            timeout = float(options.get("timeout", default_timeout))
            retries = int(options.get("retries", 4))
        except (TypeError, ValueError):
            timeout, retries = -1.0, -1
        if not 0 < timeout <= 600 or not 0 <= retries <= 10:
            given = ", ".join(f"{k}={options[k]!r}" for k in ("timeout", "retries") if k in options)
            raise ConfigError(
                f"invalid Airalo account option ({given}): timeout is seconds, more than 0 and "
                "at most 600; retries is a whole number from 0 to 10"
            )
        return timeout, retries

    def __init__(self, ctx: ProviderContext) -> None:
        super().__init__(ctx)
        self.timeout, self._retries = self._options(
            ctx.account.options, default_timeout=ctx.timeout
        )

        self._token_throttle = Throttle(*self.TOKEN_LIMIT)
        self._usage_company = Throttle(*self.USAGE_PER_COMPANY)
        self._usage_iccid = KeyedThrottle(*self.USAGE_PER_ICCID)
        self._history_iccid = KeyedThrottle(*self.HISTORY_PER_ICCID)
        self._topups_iccid = KeyedThrottle(*self.TOPUPS_PER_ICCID)
        self._packages = Throttle(*self.PACKAGES_LIMIT)
        #: One bucket per endpoint shape (ICCIDs and ids folded), as sandbox counts them.
        self._general = KeyedThrottle(*self.GENERAL_LIMIT)
        self._api: ApiClient | None = None
        # The key of the token records written before the kit: the same host and client id.
        self._tokens = TokenSource(
            ctx,
            self._fetch_token,
            key=token_key(self.api_root, ctx.secrets.get("CLIENT_ID", "")),
            margin=TOKEN_MARGIN,
            default_lifetime=TOKEN_MAX_AGE,
            max_lifetime=TOKEN_MAX_AGE,
        )

    # -- plumbing ----------------------------------------------------------------------------

    @property
    def api_root(self) -> str:
        """The host; a configured ``.../v2`` (as Airalo's SDKs write it) is accepted too."""
        url = self.base_url
        return url[: -len("/v2")] if url.endswith("/v2") else url

    @property
    def api(self) -> ApiClient:
        if self._api is None:
            self._api = ApiClient(
                base_url=self.api_root,
                provider=self.id,
                account=self.account,
                timeout=self.timeout,
                error_mapper=self._map_error,
                retries=self._retries,
                extra=self.ctx.extra,
                secrets=self.ctx.secrets.values(),
                transport=self.ctx.transport,
            )
        return self._api

    async def aclose(self) -> None:
        if self._api is not None:
            await self._api.aclose()
            self._api = None

    async def _fetch_token(self) -> FetchedToken:
        body = await self.api.request(
            "POST",
            "/v2/token",
            data={
                "client_id": self.ctx.secrets.get("CLIENT_ID", ""),
                "client_secret": self.ctx.secrets.get("CLIENT_SECRET", ""),
                "grant_type": "client_credentials",
            },
            throttles=(self._token_throttle,),
        )
        data = as_dict(as_dict(body).get("data"))
        token = data.get("access_token")
        if not isinstance(token, str) or not token:
            raise AuthRejected(
                f"Airalo sent no access token for account {self.account!r}",
                account=self.account,
                provider=self.id,
            )
        return FetchedToken(token, data.get("expires_in"))

    async def _call(
        self,
        method: str,
        path: str,
        *,
        idempotent: bool = True,
        throttles: tuple[Throttle, ...] = (),
        **kwargs: Any,
    ) -> Any:
        """A request with the bearer token; one new token and one resend after a 401
        (refused before anything happened: resending even a purchase cannot buy twice)."""
        general = self._general[re.sub(r"/\d+(?=/|$)", "/{id}", path)]

        async def send(headers: dict[str, str]) -> Any:
            return await self.api.request(
                method,
                path,
                idempotent=idempotent,
                throttles=(general, *throttles),
                headers=headers,
                **kwargs,
            )

        try:
            return await self._tokens.with_bearer(
                send, retry_if=lambda e: e.code == "token_rejected"
            )
        except AuthRejected as exc:
            if exc.code == "token_rejected":  # a new token refused too: the credentials
                exc.code = "auth_rejected"
            raise

    async def _pages(
        self,
        path: str,
        params: Mapping[str, str] | None = None,
        *,
        throttles: tuple[Throttle, ...] = (),
    ) -> list[dict[str, Any]]:
        async def fetch(page: int) -> tuple[list[dict[str, Any]], bool]:
            query = {**(params or {}), "limit": str(self.PAGE_SIZE), "page": str(page)}
            body = await self._call("GET", path, params=query, throttles=throttles)
            items = read_page(body)
            if items is None:  # not "no records": an answer that says nothing
                raise self._unreadable(path)
            return items, has_next_page(body, page)

        return await numbered_pages(fetch, max_pages=MAX_PAGES)

    # -- errors ------------------------------------------------------------------------------

    def _unreadable(self, path: str) -> ProviderError:
        return ProviderError(
            f"Airalo answered {path} for account {self.account!r} with something esimctl "
            "cannot read (not the documented list); nothing is assumed from it",
            account=self.account,
            provider=self.id,
            code="unreadable_answer",
        )

    def _lookup_unreadable(self) -> TemporaryFailure:
        return self.lookup_unresolved(
            "answered the order lookup with something esimctl cannot read",
            code="lookup_unreadable",
        )

    def _map_error(self, resp: httpx.Response, body: Any) -> EsimctlError | None:
        status = resp.status_code
        if status == 429 or status >= 500:
            return None  # the kit's mapping: RateLimited with Retry-After, TemporaryFailure
        b = as_dict(body)
        path = resp.request.url.path
        acc = self.account
        fix = f"run 'esimctl account add {acc} --provider airalo --replace' to store new ones"
        # Business failures: {"code": n, "reason": "..."} (some documented with status 200).
        if "code" in b and "reason" in b and "data" not in b:
            return self._business(to_int(b.get("code")), str(b.get("reason") or ""))
        data = b.get("data")
        message = str(as_dict(b.get("meta")).get("message") or "")
        if path.endswith("/v2/token"):
            if status >= 400 or (isinstance(data, dict) and data and "access_token" not in data):
                return AuthRejected(
                    f"Airalo rejected the client id or secret of account {acc!r} "
                    f"(HTTP {status}); {fix}"
                )
            return None
        if status == 401:
            return AuthRejected(
                f"Airalo rejected the access token of account {acc!r} (HTTP 401); {fix}",
                code="token_rejected",
            )
        if status == 403:
            return AuthRejected(
                f"Airalo refused account {acc!r} (HTTP 403): if the company uses an IP "
                "allow-list, add this machine's address in the Airalo Partner dashboard"
            )
        if status == 404 or (status < 300 and message == "messages.resource_not_found"):
            what = "eSIM" if "/sims/" in path else "record"
            return NotFound(f"Airalo has no such {what} for account {acc!r} ({path})")
        if status == 422 or (status < 300 and message == "the parameter is invalid"):
            return self._validation(as_dict(data))
        return None

    def _business(self, code: int | None, reason: str) -> EsimctlError:
        reason = self.api.scrub(reason).strip().rstrip(".")
        text = f"Airalo: {reason} (code {code})" if reason else f"Airalo refused (code {code})"
        if code == 11:
            detail = re.sub(r"^insufficient airalo credit\W*", "", reason, flags=re.IGNORECASE)
            return InsufficientBalance(
                "not enough Airalo credit for this top-up" + (f": {detail}" if detail else ""),
                hint="add credit in the Airalo Partner dashboard, then run the command again",
            )
        if code == 89:
            return AuthRejected(
                f"{text}: add this machine's IP address to the allow-list in the Airalo "
                "Partner dashboard"
            )
        if code in (13, 33, 53):  # maintenance, stock, unexpected: try later
            return TemporaryFailure(text)
        if code == 34:
            return InvalidInput(f"{text}: pick another plan ('esimctl plans ESIM')")
        if code == 73:
            return ProviderError(
                f"{text}: the eSIM can no longer be used or topped up", code="esim_recycled"
            )
        return ProviderError(text)

    def _validation(self, fields: Mapping[str, Any]) -> EsimctlError:
        items = {str(k): self.api.scrub(str(v)) for k, v in fields.items()}
        pkg = items.get("package_id", "")
        if "exceed_limit" in pkg:
            return ProviderError("Airalo refused the top-up: the purchase limit for it is reached")
        if pkg:
            return InvalidInput(
                f"Airalo does not sell this plan for this eSIM ({pkg}); "
                "'esimctl plans ESIM' lists the ones it does"
            )
        if "iccid" in items:
            return InvalidInput(f"Airalo refused the ICCID: {items['iccid']}")
        detail = "; ".join(f"{k}: {v}" for k, v in items.items()) or "invalid parameters"
        return ProviderError(f"Airalo refused the request: {detail}")

    # -- reading -----------------------------------------------------------------------------

    async def check(self) -> str:
        body = await self._call("GET", "/v2/sims", params={"limit": "1", "page": "1"})
        first = read_page(body)
        if first is None:
            raise self._unreadable("/v2/sims")
        total = to_int(as_dict(as_dict(body).get("meta")).get("total"))
        text = f"{total if total is not None and total >= 0 else len(first)} eSIM(s)"
        try:
            bal = await self.balance()
        except (NotFound, ProviderError):
            bal = None
        return f"{text}; balance {bal}" if bal is not None else text

    async def _usage(self, iccid: str) -> dict[str, Any]:
        body = await self._call(
            "GET",
            f"/v2/sims/{iccid}/usage",
            throttles=(self._usage_company, self._usage_iccid[iccid]),
        )
        return as_dict(as_dict(body).get("data"))

    async def _history(self, iccid: str) -> list[dict[str, Any]] | None:
        """The package history; None when unreadable (then figures alone must tell)."""
        body = await self._call(
            "GET", f"/v2/sims/{iccid}/packages", throttles=(self._history_iccid[iccid],)
        )
        return read_page(body)

    async def list_esims(self) -> list[Esim]:
        sims = await self._pages("/v2/sims", {"include": "order,order.status"})
        if any(not isinstance(s.get("iccid"), str) or not s["iccid"].strip() for s in sims):
            # An entry without an ICCID is not an eSIM esimctl can show or leave out.
            raise self._unreadable("/v2/sims")
        now = self.ctx.clock()
        # Usage lags up to 20 minutes behind a top-up: where one of ours is not yet seen
        # applied, the package history is read too.
        awaiting = {o.iccid for o in self.ctx.journal.open_orders() if o.iccid}

        async def one(sim: dict[str, Any]) -> Esim:
            iccid = sim["iccid"]
            usage: dict[str, Any] | None = None
            history: list[dict[str, Any]] | None = None
            if sim.get("recycled") is not True:  # a recycled eSIM has no figures to ask for
                try:
                    usage = await self._usage(iccid)
                    if iccid in awaiting:
                        history = await self._history(iccid)
                except NotFound:
                    usage = None
            return esim_from(sim, usage, account=self.account, now=now, history=history)

        return await bounded_map(sims, one, limit=self.CONCURRENCY)

    async def get_esim(self, iccid: str) -> Esim:
        sim_body, usage, history = await asyncio.gather(
            self._call("GET", f"/v2/sims/{iccid}", params={"include": "order,order.status"}),
            self._usage(iccid),
            self._history(iccid),
        )
        sim = as_dict(as_dict(sim_body).get("data")) or {"iccid": iccid}
        return esim_from(sim, usage, account=self.account, now=self.ctx.clock(), history=history)

    async def topups(self, esim: Esim) -> list[Plan]:
        body = await self._call(
            "GET", f"/v2/sims/{esim.iccid}/topups", throttles=(self._topups_iccid[esim.iccid],)
        )
        items = read_page(body)
        if items is None:  # "sells no top-ups" is {"data": []}, not this
            raise self._unreadable(f"/v2/sims/{esim.iccid}/topups")
        pricing = as_dict(as_dict(body).get("pricing"))
        return [
            plan_from(p, account=self.account, pricing=pricing, kind="topup")
            for p in items
            if p.get("id")
        ]

    async def catalogue(self, country: str) -> list[Plan]:
        cc = country.upper()
        destinations = await self._pages(
            "/v2/packages", {"filter[country]": cc}, throttles=(self._packages,)
        )
        plans: list[Plan] = []
        for dest in destinations:
            # Local entries name their country; regional/global ones leave it empty.
            dest_cc = str(dest.get("country_code") or "").upper()
            for op in as_list(dest.get("operators")):
                if not isinstance(op, dict):
                    continue
                codes = tuple(
                    str(c.get("country_code")).upper()
                    for c in as_list(op.get("countries"))
                    if isinstance(c, dict) and c.get("country_code")
                ) or ((dest_cc,) if dest_cc else (cc,))
                for pkg in as_list(op.get("packages")):
                    if not isinstance(pkg, dict) or not pkg.get("id"):
                        continue
                    title = str(pkg.get("title") or pkg.get("data") or pkg["id"])
                    name = f"{op['title']}-{title}" if op.get("title") else title
                    plans.append(plan_from(pkg, account=self.account, name=name, countries=codes))
        return plans

    async def orders(self) -> list[Order]:
        items = await self._pages("/v2/orders", {"include": "sims,status"})
        now = self.ctx.clock()
        return [order_from(i, account=self.account, now=now) for i in items]

    async def balance(self) -> Money | None:
        body = await self._call("GET", "/v2/balance")
        balances = as_dict(as_dict(body).get("data")).get("balances")
        if isinstance(balances, list):
            balances = balances[0] if balances else {}
        avail = as_dict(as_dict(balances).get("availableBalance"))
        return usd(avail.get("amount"), avail.get("currency"))

    # -- buying ------------------------------------------------------------------------------

    @staticmethod
    def description_for(reference: str, iccid: str) -> str:
        """Our reference, and the ICCID that top-up orders otherwise lose (``sims: []``)."""
        prefix = "" if reference.startswith("esimctl") else "esimctl "
        return f"{prefix}{reference} ({iccid})"

    async def buy_topup(self, esim: Esim, plan: Plan, reference: str) -> Order:
        fields = {
            "package_id": plan.id,
            "iccid": esim.iccid,
            "description": self.description_for(reference, esim.iccid),
        }
        # Multipart as documented: ``files`` without file names sends plain form fields.
        body = await self._call(
            "POST",
            "/v2/orders/topups",
            idempotent=False,
            files={k: (None, v) for k, v in fields.items()},
        )
        data = as_dict(as_dict(body).get("data"))
        if not data.get("id") and not data.get("code"):
            raise OutcomeUnknown(
                "Airalo answered the top-up without an order; its outcome will be checked "
                "before anything is bought again",
                account=self.account,
                provider=self.id,
            )
        # The charge the answer reports, as given (the purchase pipeline checks it); one
        # that is no number is no price, never the retail price instead.
        keys = ("total_amount_paid", "unit_paid_price", "net_price")
        paid = [data[k] for k in keys if data.get(k) is not None]
        pricing = {
            "model": data.get("pricing_model"),
            "discount_percentage": data.get("discount_percentage"),
        }
        price = usd(paid[0]) if paid else plan_price(data, pricing)
        order = order_from(data, account=self.account, now=self.ctx.clock(), iccid=esim.iccid)
        return replace(order, reference=reference, price=price)

    async def find_order(
        self, reference: str, *, iccid: str | None, since: datetime
    ) -> Order | None:
        now = self.ctx.clock()

        def mine(item: Mapping[str, Any]) -> bool:
            ref, described = reference_in(item.get("description"))
            return ref == reference and (iccid is None or described in (None, iccid))

        async def lookup(params: Mapping[str, str]) -> Order | None:
            # An answer esimctl cannot read leaves the order unresolved, never "not made".
            try:
                items = await self._pages("/v2/orders", {"include": "sims,status", **params})
            except ProviderError as exc:
                if exc.code == "unreadable_answer":
                    raise self._lookup_unreadable() from None
                raise
            if any("description" not in i or not (i.get("id") or i.get("code")) for i in items):
                raise self._lookup_unreadable()
            found = next((i for i in items if mine(i)), None)
            return order_from(found, account=self.account, now=now) if found else None

        found = await lookup({"filter[description]": reference})
        if found is not None:
            return found
        # The description filter is a LIKE search; should it miss, read the order list
        # since the day before the purchase (the naive times' zone is not documented).
        first = (since - timedelta(days=1)).astimezone(UTC)
        window = f"{first:%Y-%m-%d} - {(now + timedelta(days=1)).astimezone(UTC):%Y-%m-%d}"
        return await lookup({"filter[created_at]": window})

    def is_applied(self, before: Esim | None, after: Esim, order: Order) -> bool:
        """Applied once the package history lists the bought package anew (usage figures
        are cached 20 minutes: they cannot tell); figures only without a history."""
        after_h = _history_ref(after)
        if after_h is None:
            if before is None:
                return False
            grew = (after.data_total_bytes or 0) > (before.data_total_bytes or 0)
            extended = bool(
                before.expires_at and after.expires_at and after.expires_at > before.expires_at
            )
            return grew or extended
        ours = [h for h in after_h if order.plan_id is None or h[1] == order.plan_id]
        before_h = _history_ref(before)
        if before_h is not None:
            seen = {h[0] for h in before_h}
            return any(h[0] not in seen for h in ours)
        return any(h[2] in ("ACTIVE", "NOT_ACTIVE") for h in ours)
