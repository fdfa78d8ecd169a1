"""The Airalo provider: Partner API v2 endpoints, the token, the documented rate limits,
pages, the purchase of a top-up or a new eSIM and the lookup of an order whose answer was
lost.

What the answers mean is ``answers``; HTTP, the token cache, pages and the reading of
values are the provider kit's (``esimctl.providers.kit``).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import httpx

from esimctl.errors import (
    AuthRejected,
    EsimctlError,
    NotFound,
    OutcomeUnknown,
    ProviderError,
    TemporaryFailure,
)
from esimctl.models import Activation, Esim, Money, NewEsim, Order, Plan
from esimctl.providers.base import Capability, Provider, ProviderContext
from esimctl.providers.kit.concurrency import bounded_map
from esimctl.providers.kit.http import ApiClient, KeyedThrottle, Throttle
from esimctl.providers.kit.oauth import FetchedToken, TokenSource, token_key
from esimctl.providers.kit.paging import numbered_pages
from esimctl.providers.kit.values import as_dict

from . import answers
from .answers import (
    PROVIDER_ID,
    balance_from,
    business_error,
    catalogue_plans,
    charge_in,
    esim_from,
    has_next_page,
    history_in,
    is_failed,
    is_ours,
    new_esim_from,
    new_order_error,
    order_from,
    orders_readable,
    read_page,
    to_int,
    topup_plans,
    total_of,
    validation_error,
)

#: The token page says 24 h, its example a year: never kept longer than 24 h.
TOKEN_MAX_AGE = timedelta(hours=24)
TOKEN_MARGIN = timedelta(minutes=5)
MAX_PAGES = 500


# -- the provider --------------------------------------------------------------------------


class AiraloProvider(Provider):
    """Airalo Partner API v2 with the account's own client id and secret."""

    id: ClassVar[str] = PROVIDER_ID
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
            Capability.BUY_ESIM,
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

    def __init__(self, ctx: ProviderContext) -> None:
        super().__init__(ctx)
        #: Seconds per request, and retries of a read (never of a purchase).
        self.timeout: float = self.options.get("timeout", ctx.timeout)
        self._retries: int = self.options.get("retries", 4)

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
        bodies: list[dict[str, Any]] | None = None,
    ) -> list[dict[str, Any]]:
        """Every record of a list; ``bodies`` collects each page's answer (for what a page
        says beside its records, like the catalogue's ``pricing``)."""

        async def fetch(page: int) -> tuple[list[dict[str, Any]], bool]:
            query = {**(params or {}), "limit": str(self.PAGE_SIZE), "page": str(page)}
            body = await self._call("GET", path, params=query, throttles=throttles)
            if bodies is not None:
                bodies.append(as_dict(body))
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
        # The order of a new eSIM (``POST /v2/orders``), not a top-up: its own wording.
        new_esim = resp.request.method == "POST" and path.endswith("/v2/orders")
        acc = self.account
        fix = f"run 'esimctl account add {acc} --provider airalo --replace' to store new ones"
        # Business failures: {"code": n, "reason": "..."} (some documented with status 200).
        if "code" in b and "reason" in b and "data" not in b:
            reason = self.api.scrub(str(b.get("reason") or ""))
            return business_error(to_int(b.get("code")), reason, new_esim=new_esim)
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
            fields = {str(k): self.api.scrub(str(v)) for k, v in as_dict(data).items()}
            return new_order_error(fields) if new_esim else validation_error(fields)
        return None

    # -- reading -----------------------------------------------------------------------------

    async def check(self) -> str:
        body = await self._call("GET", "/v2/sims", params={"limit": "1", "page": "1"})
        first = read_page(body)
        if first is None:
            raise self._unreadable("/v2/sims")
        total = total_of(body)
        text = f"{total if total is not None else len(first)} eSIM(s)"
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
        plans = topup_plans(body, account=self.account)
        if plans is None:  # "sells no top-ups" is {"data": []}, not this
            raise self._unreadable(f"/v2/sims/{esim.iccid}/topups")
        return plans

    async def catalogue(self, country: str) -> list[Plan]:
        cc = country.upper()
        bodies: list[dict[str, Any]] = []
        destinations = await self._pages(
            "/v2/packages", {"filter[country]": cc}, throttles=(self._packages,), bodies=bodies
        )
        pricing = next((as_dict(b["pricing"]) for b in bodies if b.get("pricing")), None)
        return catalogue_plans(destinations, cc, account=self.account, pricing=pricing)

    async def orders(self) -> list[Order]:
        items = await self._pages("/v2/orders", {"include": "sims,status"})
        now = self.ctx.clock()
        return [order_from(i, account=self.account, now=now) for i in items]

    async def balance(self) -> Money | None:
        return balance_from(await self._call("GET", "/v2/balance"))

    # -- buying ------------------------------------------------------------------------------

    description_for = staticmethod(answers.description_for)

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
        order = order_from(data, account=self.account, now=self.ctx.clock(), iccid=esim.iccid)
        return replace(order, reference=reference, price=charge_in(data))

    async def _find(
        self, reference: str, iccid: str | None, since: datetime
    ) -> dict[str, Any] | None:
        """The order of ours carrying ``reference`` in its description, as Airalo lists it;
        None when a readable list has none."""
        now = self.ctx.clock()

        async def lookup(params: Mapping[str, str]) -> dict[str, Any] | None:
            # An answer esimctl cannot read leaves the order unresolved, never "not made".
            try:
                items = await self._pages("/v2/orders", {"include": "sims,status", **params})
            except ProviderError as exc:
                if exc.code == "unreadable_answer":
                    raise self._lookup_unreadable() from None
                raise
            if not orders_readable(items):
                raise self._lookup_unreadable()
            return next((i for i in items if is_ours(i, reference, iccid)), None)

        found = await lookup({"filter[description]": reference})
        if found is not None:
            return found
        # The description filter is a LIKE search; should it miss, read the order list
        # since the day before the purchase (the naive times' zone is not documented).
        first = (since - timedelta(days=1)).astimezone(UTC)
        window = f"{first:%Y-%m-%d} - {(now + timedelta(days=1)).astimezone(UTC):%Y-%m-%d}"
        return await lookup({"filter[created_at]": window})

    async def find_order(
        self, reference: str, *, iccid: str | None, since: datetime
    ) -> Order | None:
        found = await self._find(reference, iccid, since)
        return order_from(found, account=self.account, now=self.ctx.clock()) if found else None

    # -- new eSIMs ---------------------------------------------------------------------------

    async def buy_esim(self, plan: Plan, reference: str) -> NewEsim:
        """One ``POST /v2/orders`` (multipart, as documented) for one eSIM of ``plan``, our
        reference in ``description``; synchronous: the answer carries the eSIM."""
        fields = {
            "package_id": plan.id,
            "quantity": "1",
            "type": "sim",
            "description": self.description_for(reference),
        }
        body = await self._call(
            "POST",
            "/v2/orders",
            idempotent=False,
            files={k: (None, v) for k, v in fields.items()},
        )
        data = as_dict(as_dict(body).get("data"))
        if not data.get("id") and not data.get("code"):
            raise OutcomeUnknown(
                "Airalo answered the order without an order; its outcome will be checked "
                "before anything is bought again",
                account=self.account,
                provider=self.id,
            )
        return new_esim_from(data, account=self.account, now=self.ctx.clock(), reference=reference)

    async def find_esim_order(self, reference: str, *, since: datetime) -> NewEsim | None:
        found = await self._find(reference, None, since)
        if found is None:
            return None
        if is_failed(found) and not found.get("sims"):
            return None  # Airalo says it failed: no eSIM came of it
        return new_esim_from(found, account=self.account, now=self.ctx.clock())

    async def activation(self, iccid: str) -> Activation | None:
        """``GET /v2/sims/{iccid}`` with its order: the code (``qrcode``, or ``lpa`` and
        ``matching_id``), Apple's link, the order's installation notes."""
        body = await self._call("GET", f"/v2/sims/{iccid}", params={"include": "order"})
        sim = as_dict(as_dict(body).get("data"))
        return answers.activation_from(sim, as_dict(sim.get("simable")))

    def is_applied(self, before: Esim | None, after: Esim, order: Order) -> bool:
        """Applied once the package history lists the bought package anew (usage figures
        are cached 20 minutes: they cannot tell); figures only without a history. A new
        eSIM is served once Airalo lists it."""
        if order.extra.get("kind") == "new":
            return order.iccid is not None and after.iccid == order.iccid
        after_h = history_in(after)
        if after_h is None:
            if before is None:
                return False
            grew = (after.data_total_bytes or 0) > (before.data_total_bytes or 0)
            extended = bool(
                before.expires_at and after.expires_at and after.expires_at > before.expires_at
            )
            return grew or extended
        ours = [h for h in after_h if order.plan_id is None or h[1] == order.plan_id]
        before_h = history_in(before)
        if before_h is not None:
            seen = {h[0] for h in before_h}
            return any(h[0] not in seen for h in ours)
        return any(h[2] in ("ACTIVE", "NOT_ACTIVE") for h in ours)
