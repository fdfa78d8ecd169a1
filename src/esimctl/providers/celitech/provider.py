"""Celitech API v1, as docs/providers/celitech.md describes it: endpoints, OAuth2 client
credentials, the client-side rate limit, cursor lists, the top-up and its lookup.

No "list eSIMs" resource: the eSIM list is ``GET /v1/purchases`` grouped by ICCID, an eSIM's
figures add up the consumption of its purchases that have not ended, and ``GET /v1/esim``
gives its profile status and whether a top-up is allowed. A new eSIM is one
``POST /v1/purchases/v2``, found again by its ``referenceId`` like a top-up. Where
Celitech's docs are silent or disagree, both readings are accepted (the doc's last table).
What the answers mean is read in ``answers``.
"""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta
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
    LimitRefused,
    NotFound,
    OutcomeUnknown,
    ProviderError,
)
from esimctl.models import Activation, Esim, Money, NewEsim, Order, OrderState, Plan
from esimctl.providers.base import Capability, Provider, ProviderContext
from esimctl.providers.kit.concurrency import bounded_map
from esimctl.providers.kit.http import ApiClient, ErrorMapper, Throttle
from esimctl.providers.kit.oauth import FetchedToken, TokenSource, token_key
from esimctl.providers.kit.paging import cursor_pages
from esimctl.providers.kit.values import as_dict, as_list, records, to_str

from .answers import (
    BALANCE_MESSAGE,
    NOT_FOUND_MESSAGE,
    Consumption,
    Profile,
    Purchase,
    activation_from,
    build_esim,
    error_message,
    gb_wire,
    new_purchase,
    order_from_purchase,
    parse_consumption,
    parse_date,
    parse_new_plan_id,
    parse_plan_id,
    parse_profile,
    parse_purchase,
    plans_from_packages,
    upper_code,
)

PRODUCTION_HOST = "api.celitech.net"
PRODUCTION_API = f"https://{PRODUCTION_HOST}"
PRODUCTION_TOKEN_URL = "https://auth.celitech.net/oauth2/token"
TOKEN_PATH = "/oauth2/token"
TOPUP_PATH = "/v1/purchases/topup"
NEW_ESIM_PATH = "/v1/purchases/v2"
#: How the token request carries the client credentials: in the form body, or HTTP Basic.
AUTH_STYLES = ("post", "basic")
PURCHASES_PAGE = 100  # the documented maximum of ``limit`` on /purchases
PACKAGES_PAGE = 160  # the documented maximum of ``limit`` on /packages
MAX_PAGES = 10_000
#: Celitech documents no rate limit; a polite default (option ``requests_per_second``).
DEFAULT_RPS = 50.0

E = TypeVar("E", bound=EsimctlError)


class _TokenRefused(AuthRejected):
    """The API refused our bearer token (401): get a new one once, then give up."""


class CelitechProvider(Provider):
    id: ClassVar[str] = "celitech"
    display_name: ClassVar[str] = "Celitech"
    secret_fields: ClassVar[tuple[str, ...]] = ("CLIENT_ID", "CLIENT_SECRET")
    default_base_url: ClassVar[str | None] = PRODUCTION_API
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        map(
            Capability,
            ("list_esims", "topups", "catalogue", "buy_topup", "buy_esim", "find_order", "orders"),
        )
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
        opts = self.options  # parsed by config_schema: a bad value is a ConfigError here
        self.timeout: float = opts.get("timeout", ctx.timeout)
        self.retries: int = opts.get("retries", 4)
        self.rps: float = opts.get("requests_per_second", DEFAULT_RPS)
        self.currency: str = opts.get("currency", "USD")
        self._auth_style: str = opts.get("auth_style", "post")
        # The key esimctl has always filed its token under: a cached token stays valid.
        key = token_key(ctx.secrets.get("CLIENT_ID", ""), self.token_url, length=24)
        self._tokens = TokenSource(ctx, self._fetch_token, key=key, margin=timedelta(seconds=60))

    def _error(self, cls: type[E], message: str, **kw: Any) -> E:
        return cls(message, account=self.account, provider=self.id, **kw)

    # -- addresses and clients --------------------------------------------------------------

    @property
    def api_root(self) -> str:
        return self.base_url.removesuffix("/v1")  # the SDKs' base URL ends in /v1

    @property
    def token_url(self) -> str:
        explicit = self.options.get("auth_url")
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
        if resp.status_code == 403 and error_message(body) == "Missing Authentication Token":
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
        status, msg, path = resp.status_code, error_message(body), resp.request.url.path
        if status < 400:
            return None
        if status == 401:
            return _TokenRefused(f"Celitech refused the access token ({msg or 'HTTP 401'})")
        if status == 402 or (
            status in (400, 403, 409, 422) and msg and BALANCE_MESSAGE.search(msg)
        ):
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
        if status == 404 or (msg and NOT_FOUND_MESSAGE.search(msg)):
            return NotFound(f"Celitech: {msg or 'not found'} ({path})")
        if resp.request.method == "POST" and path.endswith(TOPUP_PATH):
            return InvalidInput(f"Celitech refused the top-up: {msg or f'HTTP {status}'}")
        if resp.request.method == "POST" and path.endswith(NEW_ESIM_PATH):
            return InvalidInput(f"Celitech refused the new eSIM: {msg or f'HTTP {status}'}")
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
            iso2, name = upper_code(d.get("destinationISO2")), to_str(d.get("name"))
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
            "dataLimitInGB": gb_wire(gb),
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
        return await self._bought(pid, purchase, iccid, plan, reference, extra)

    async def _bought(
        self,
        pid: str,
        purchase: dict[str, Any],
        iccid: str | None,
        plan: Plan,
        reference: str,
        extra: dict[str, Any],
    ) -> Order:
        """The order of a purchase Celitech answered (a top-up or a new eSIM), with what it
        charged (read back: the answer carries no price)."""
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
        self, purchase_id: str, reference: str, iccid: str | None, listed: Money | None
    ) -> Money | None:
        """A purchase answer carries no price: the purchase list's, as given (a price that
        rose since listing reaches the caps); the listed one where it does not show yet."""
        try:
            rows = await self._purchases(
                referenceId=reference, **({"iccid": iccid} if iccid else {})
            )
        except EsimctlError:
            return listed
        return next((p.price for p in rows if p.id == purchase_id), listed)

    async def _by_reference(
        self, reference: str, *, iccid: str | None, since: datetime
    ) -> Purchase | None:
        """The purchase sent with ``reference`` (``GET /v1/purchases?referenceId=``)."""
        # The match is checked here too, in case a server ignores the referenceId filter;
        # afterDate starts a day early: its time zone is not documented.
        after = (since.astimezone(UTC) - timedelta(days=1)).date().isoformat()
        params = {"referenceId": reference, "afterDate": after} | (
            {"iccid": iccid} if iccid else {}
        )
        try:
            found = await self._purchases(**params)
        except ProviderError as exc:
            if exc.code != "unreadable_answer":
                raise
            raise self.lookup_unresolved(
                "answered the order lookup with something esimctl cannot read",
                code="lookup_unreadable",
            ) from None
        return next(
            (p for p in found if p.reference == reference and (iccid is None or p.iccid == iccid)),
            None,
        )

    async def find_order(
        self, reference: str, *, iccid: str | None, since: datetime
    ) -> Order | None:
        p = await self._by_reference(reference, iccid=iccid, since=since)
        if p is None:
            return None
        return order_from_purchase(p, account=self.account, provider=self.id, now=self.ctx.clock())

    # -- new eSIMs --------------------------------------------------------------------------

    async def _listed_now(self, plan: Plan) -> Plan | None:
        """``plan`` as ``/v1/packages`` lists it now (its destination's packages read again,
        as ``catalogue`` reads them); None when it is no longer sold."""
        destination, _, _ = parse_new_plan_id(plan.id)
        rows = await self._pages("/v1/packages", "packages", PACKAGES_PAGE, destination=destination)
        plans = plans_from_packages(
            rows,
            account=self.account,
            provider=self.id,
            kind="new",
            currency=self.currency,
            names={},
        )
        return next((p for p in plans if p.id == plan.id), None)

    async def validate_esim(self, plan: Plan) -> Money | None:
        """Celitech has no order check: the price its package list asks now."""
        now = await self._listed_now(plan)
        if now is None:
            raise self._error(
                InvalidInput, f"Celitech no longer sells {plan.id!r}: check 'esimctl plans'"
            )
        return now.price

    async def _check_price(self, plan: Plan) -> None:
        """A purchase carries no price: the package list, read again just before, must ask
        no more than the price shown (the catalogue may come from esimctl's cache)."""
        shown, asked, tail = plan.price, None, ""
        country = plan.countries[0] if plan.countries else "CC"
        where = f"'esimctl plans --country {country} --refresh'"
        if shown is not None:
            listed = await self._listed_now(plan)
            if listed is None:
                raise self._error(
                    InvalidInput,
                    f"Celitech no longer sells {plan.id!r}; nothing was bought: check {where}",
                )
            asked = listed.price
        if shown is None:
            why = f"Celitech plan {plan.id} has no listed price, and esimctl does not buy at an "
            why += "unknown price"
        elif asked is None or asked.currency != shown.currency:
            why = f"Celitech no longer lists {plan.id} at a price esimctl can compare with the "
            why += f"{shown} shown"
        elif asked.amount > shown.amount:
            why = f"Celitech now asks {asked} for {plan.id}, more than the {shown} shown"
            tail = f", check {where}"
        else:
            return
        raise self._error(LimitRefused, f"refused: {why}; nothing was bought{tail}")

    async def buy_esim(self, plan: Plan, reference: str) -> NewEsim:
        """One ``POST /v1/purchases/v2`` (quantity 1, our reference as ``referenceId``):
        synchronous, the answer names the eSIM and how to install it."""
        if plan.kind != "new":
            raise self._error(InvalidInput, f"{plan.id!r} is a top-up, not a new eSIM")
        destination, gb, days = parse_new_plan_id(plan.id)
        await self._check_price(plan)
        body = {
            "destination": destination,
            "dataLimitInGB": gb_wire(gb),
            "duration": days,
            "quantity": 1,
            "referenceId": reference,
        }
        answer = await self._call("POST", NEW_ESIM_PATH, json=body, idempotent=False)
        purchase, profile = new_purchase(answer)
        if (pid := to_str(purchase.get("id"))) is None:
            raise self._error(
                OutcomeUnknown,
                "Celitech answered the new eSIM without a purchase id; its outcome will be "
                "checked before anything is bought again",
            )
        iccid = to_str(profile.get("iccid"))
        extra = {"package_id": to_str(purchase.get("packageId")), "kind": "new"}
        order = await self._bought(pid, purchase, iccid, plan, reference, extra)
        # Without an ICCID (an answer cut short of its profile), the purchase list gives it.
        return NewEsim(order, iccid=iccid, activation=activation_from(profile) if iccid else None)

    async def find_esim_order(self, reference: str, *, since: datetime) -> NewEsim | None:
        p = await self._by_reference(reference, iccid=None, since=since)
        if p is None:
            return None
        order = order_from_purchase(p, account=self.account, provider=self.id, now=self.ctx.clock())
        return NewEsim(order, iccid=p.iccid)

    async def activation(self, iccid: str) -> Activation | None:
        """``GET /v1/esim``: ``manualActivationCode`` (the QR image beside it is not used:
        esimctl draws the code itself)."""
        body = await self._call("GET", "/v1/esim", params={"iccid": iccid})
        return activation_from(as_dict(body).get("esim"))

    def is_applied(self, before: Esim | None, after: Esim, order: Order) -> bool:
        """A top-up is applied once its purchase is one of the eSIM's packages."""
        ids = after.ref.get("purchase_ids")
        if ids is not None and order.id:
            return order.id in ids.split(",")
        return super().is_applied(before, after, order)
