"""eSIM Go API v2.5 (``esimgo``): the requests. Endpoints, the API key, the shared rate
limit, pages, the purchase and its lookup, and what each error status means; what the
answers mean is ``answers.py``. Sections as in ``docs/providers/esimgo.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import weakref
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, TypeVar
from urllib.parse import quote

import httpx

from esimctl.credentials import env_var
from esimctl.errors import (
    AuthRejected,
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
from esimctl.models import Activation, Esim, EsimState, Money, NewEsim, Order, Plan
from esimctl.providers.base import Capability, Provider, ProviderContext
from esimctl.providers.kit.concurrency import bounded_map
from esimctl.providers.kit.http import ApiClient, Throttle, retry_after, shape_of
from esimctl.providers.kit.paging import json_key, numbered_pages
from esimctl.providers.kit.units import to_money
from esimctl.providers.kit.values import parse_time, to_decimal, to_int

from .answers import (
    Assignment,
    activation_from,
    bundle_applied,
    bundle_coverage,
    bundle_from,
    compatible_from,
    error_message,
    esim_from,
    install_records,
    order_installs,
    order_records,
    orders_from,
    organisation_from,
    plan_from,
    strict_assignments,
    strict_order_records,
    strict_records,
)

T = TypeVar("T")
E = TypeVar("E", bound=EsimctlError)

DEFAULT_BASE_URL = "https://api.esim-go.com/v2.5"
DEFAULT_RETRIES = 4  # of a read
RATE_PER_SECOND = 10  # tokens per second per IP address, documented
PER_PAGE = 100  # of the eSIM list (10, 25, 50 or 100), the catalogue and the orders
ASSIGNMENTS_LIMIT = 200  # the documented maximum of GET /esims/{iccid}/bundles
MAX_PAGES = 200
#: How far before our purchase an order may be dated and still be ours (clock skew).
ORDER_CLOCK_MARGIN = timedelta(minutes=2)

_ICCID_PATH = re.compile(r"/esims/(\d{10,22})(?:/|$)")


# -- errors and rate limits ------------------------------------------------------------------


class ServerFailure(TemporaryFailure):
    """HTTP 5xx from eSIM Go, with its ``Retry-After`` (a 503 says when to come back)."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _Unreadable(TemporaryFailure):
    """An answer of no documented shape: nothing is read from it."""


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


def _lookup_start(intent: dict[str, Any], since: datetime) -> datetime:
    """Where an order lookup starts: the journal knows when the request left (an order
    dated before it is not ours), less the clock margin."""
    sent = parse_time(intent.get("sent_at"))
    return (sent if sent is not None and sent > since else since) - ORDER_CLOCK_MARGIN


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
            Capability.BUY_ESIM,
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

    def __init__(self, ctx: ProviderContext) -> None:
        super().__init__(ctx)
        # timeout: seconds per request; retries: of a read; rate_limit: requests a second.
        self._timeout: float = self.options.get("timeout", ctx.timeout)
        self._retries: int = self.options.get("retries", DEFAULT_RETRIES)
        self._rate: float = self.options.get("rate_limit", RATE_PER_SECOND)
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
        msg = self.api.scrub(error_message(body))
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
            self._org = organisation_from(await self._get("/organisation"))
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
        assignments = strict_assignments(body)
        if assignments is None:
            raise self._unreadable(f"the bundles of eSIM {iccid}", body)
        return assignments

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
        return bundle_from(body)

    async def _compatible(self, iccid: str, bundle: str) -> bool:
        return compatible_from(
            await self._get(f"/esims/{iccid}/compatible/{quote(bundle, safe='')}")
        )

    async def topups(self, esim: Esim) -> list[Plan]:
        """Catalogue bundles covering the current bundle's countries, on its network
        profile, that ``/compatible`` accepts (eSIM Go has no top-up catalogue)."""
        name = esim.ref.get("bundle") or (await self.get_esim(esim.iccid)).ref.get("bundle")
        if not name:
            return []  # no bundle ever: nothing says which country the eSIM is for
        current = await self._bundle(name)
        covers = bundle_coverage(name, current)
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

    async def _order_records(
        self, since: datetime | None = None, *, complete: bool = False
    ) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"includeIccids": "true"}
        if since is not None:
            params["createdAt"] = "gte:" + since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        return await self._pages(
            "/orders",
            params,
            "the order list",
            lambda body: strict_order_records(body, complete=complete),
            size_param="limit",
        )

    async def _order_rows(
        self, since: datetime | None = None, *, complete: bool = False
    ) -> list[Order]:
        found = await self._order_records(since, complete=complete)
        currency = await self._currency() if any(not r.get("currency") for r in found) else None
        return [o for r in found for o in self._orders(r, currency)]

    async def orders(self) -> list[Order]:
        return sorted(await self._order_rows(), key=lambda o: o.created_at, reverse=True)

    # -- buying -----------------------------------------------------------------------------

    def _refused(self, text: str) -> LimitRefused:
        return self._error(LimitRefused, f"refused: {text}")

    async def _price_check(self, what: str, line: dict[str, Any], currency: str | None) -> Money:
        """``POST /orders`` with ``type: validate``: what eSIM Go would charge for ``line``
        (charges nothing; retried like a read). Raises on an order it will not take or an
        answer without a total."""
        answer = await self._call(
            "POST", "/orders", json={"type": "validate", "assign": True, "order": [line]}
        )
        if not isinstance(answer, dict):
            raise self._unreadable("the price check (validate)", answer)
        if answer.get("valid") is False:
            why = error_message(answer) or "the order did not validate"
            raise self._error(InvalidInput, f"eSIM Go will not sell {what}: {why}")
        total = to_decimal(answer.get("total"))
        if total is None:
            raise self._unreadable("the price check (validate)", answer)
        cur = answer.get("currency")
        return Money(total, cur if isinstance(cur, str) and cur else currency or "USD")

    async def _validate(self, what: str, plan: Plan, line: dict[str, Any]) -> Money:
        """Price the order (``_price_check``); refused unless the total is a real price no
        higher than the one shown."""
        if plan.price is None:
            raise self._refused(
                f"eSIM Go lists no price for {what}, and esimctl does not buy at an unknown "
                "price; nothing was bought"
            )
        checked = await self._price_check(what, line, plan.price.currency)
        total, currency = checked.amount, checked.currency
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
                f"eSIM Go now asks {checked} for {plan.id}, more than the "
                f"{plan.price} shown; nothing was bought, check 'esimctl plans'"
            )
        return checked

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
        await self._validate(f"{plan.id!r} for eSIM {esim.iccid}", plan, line)
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
        start = _lookup_start(intent, since)
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

    # -- new eSIMs --------------------------------------------------------------------------

    @staticmethod
    def _new_line(plan: Plan) -> dict[str, Any]:
        """One bundle; sent with ``assign: true`` and no ICCIDs, eSIM Go puts it on a new
        eSIM (documented: "If assign is set to true, but no ICCIDs are provided, bundles
        are assigned to new eSIMs")."""
        return {"type": "bundle", "item": plan.id, "quantity": 1}

    async def validate_esim(self, plan: Plan) -> Money | None:
        currency = plan.price.currency if plan.price is not None else await self._currency()
        return await self._price_check(f"a new eSIM of {plan.id!r}", self._new_line(plan), currency)

    async def _install_details(self, order_reference: str) -> list[dict[str, Any]]:
        """``GET /esims/assignments?reference=…`` (JSON by the ``Accept`` header; its default
        is CSV): the order's eSIMs with their ``matchingId`` and SM-DP+ address."""
        body = await self._get(
            "/esims/assignments",
            params={"reference": order_reference, "additionalFields": "installUrl"},
        )
        found = install_records(body)
        if found is None:
            raise self._unreadable(f"the install details of order {order_reference}", body)
        return found

    def _new_esim(
        self,
        order: Order,
        installs: Sequence[dict[str, Any]],
        *,
        reference: str,
        plan: Plan | None = None,
        status_message: Any = None,
    ) -> NewEsim:
        """The order as a new eSIM: its ICCID (None while eSIM Go names none) and, where
        the records carry them, its matching id and SM-DP+ address."""
        iccids = [str(r["iccid"]) for r in installs if r.get("iccid")]
        iccid = iccids[0] if iccids else order.iccid
        activation = None
        for r in installs:
            if iccid and str(r.get("iccid") or iccid) == iccid:
                activation = activation or activation_from(r)
        extra = {**order.extra, "kind": "new"}
        if status_message is not None:
            extra["status_message"] = status_message
        order = dataclasses.replace(
            order,
            iccid=iccid,
            plan_id=plan.id if plan is not None else order.plan_id,
            plan=plan.name if plan is not None else order.plan,
            reference=reference,
            extra=extra,
        )
        return NewEsim(order, iccid=iccid, activation=activation if iccid else None)

    async def buy_esim(self, plan: Plan, reference: str) -> NewEsim:
        """Validate, journal, then one ``POST /orders`` of type ``transaction`` with
        ``assign: true`` and no ICCIDs. The eSIM and how to install it come from the
        answer's ``esims``, else from ``GET /esims/assignments`` by the order reference;
        if neither says yet, ``find_esim_order`` learns it later."""
        line = self._new_line(plan)
        await self._validate(f"a new eSIM of {plan.id!r}", plan, line)
        # No client reference on eSIM Go: the journal is what find_esim_order matches on.
        sent_at = self.ctx.clock().isoformat()
        self.ctx.journal.record(reference, kind="new", plan_id=plan.id, sent_at=sent_at)
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
        order_ref = str(order.extra.get("order_reference") or order.id)
        self.ctx.journal.record(reference, order=order_ref)
        # Bought: from here on nothing may raise, or the purchase would read as refused.
        installs = order_installs(raw)
        if not any(activation_from(r) for r in installs):
            # Not said here: the eSIM is learnt later (find_esim_order); `install` asks again.
            with contextlib.suppress(EsimctlError):
                installs = await self._install_details(order_ref) or installs
        return self._new_esim(
            order,
            installs,
            reference=reference,
            plan=plan,
            status_message=raw.get("statusMessage"),
        )

    async def find_esim_order(self, reference: str, *, since: datetime) -> NewEsim | None:
        """The new-eSIM order ``reference`` made; None only when a well-formed order list
        shows none. An answer that cannot be understood raises: the purchase stays
        unresolved."""
        try:
            return await self._find_esim_order(reference, since=since)
        except CredentialsError:
            raise
        except EsimctlError as exc:
            raise self.lookup_unresolved(
                f"could not say whether the purchase of a new eSIM {reference} went through "
                f"({exc.message})"
            ) from None

    async def _find_esim_order(self, reference: str, *, since: datetime) -> NewEsim | None:
        intent = self.ctx.journal.entry(reference)
        plan_id, known = intent.get("plan_id"), intent.get("order")
        start = _lookup_start(intent, since)
        raws = await self._order_records(start, complete=True)
        currency = await self._currency() if any(not r.get("currency") for r in raws) else None
        pairs = [(o, r) for r in raws for o in self._orders(r, currency)]
        found: tuple[Order, dict[str, Any]] | None = None
        if known:  # the answer named the order: only that one
            found = next((p for p in pairs if p[0].extra.get("order_reference") == known), None)
            if found is None:
                raise self._error(
                    TemporaryFailure,
                    f"eSIM Go does not list order {known} (named by its purchase answer) yet",
                )
        else:
            claimed = self.ctx.journal.claimed_order_ids(except_reference=reference)
            candidates = sorted(
                (
                    p
                    for p in pairs
                    if not (
                        str(p[0].extra.get("order_reference") or p[0].id) in claimed
                        or p[0].id in claimed
                        or p[0].created_at < start
                        or (plan_id and p[0].plan_id != plan_id)
                        or str(p[0].extra.get("type") or "bundle").lower() != "bundle"
                    )
                ),
                key=lambda p: p[0].created_at,
            )
            for p in candidates:
                if await self._on_new_esim(p[0], start):
                    found = p
                    break
            if found is None:
                return None
            self.ctx.journal.record(
                reference, order=str(found[0].extra.get("order_reference") or found[0].id)
            )
        order, raw = found
        iccids = set(order.extra.get("iccids") or [])
        installs = [r for r in order_installs(raw) if not iccids or r["iccid"] in iccids]
        if not installs:  # no eSIM named in the list yet: ask for the install details
            with contextlib.suppress(EsimctlError):
                installs = await self._install_details(str(order.extra.get("order_reference")))
        return self._new_esim(order, installs, reference=reference)

    async def _on_new_esim(self, order: Order, start: datetime) -> bool:
        """Whether ``order`` put its bundle on a new eSIM rather than topping one up: no
        assignment on its eSIM is known to be older than our request. (A doubt counts
        as new: taking an order for ours at worst leaves a purchase unmade; missing ours
        would buy twice.)"""
        iccids = [str(i) for i in order.extra.get("iccids") or []]
        if len(iccids) != 1:
            return not iccids  # no eSIM named yet, or several: no single new eSIM
        iccid = iccids[0]
        assignments = await self._about_iccid(iccid, lambda: self._assignments(iccid))
        return not any(a.assigned_at is not None and a.assigned_at < start for a in assignments)

    async def activation(self, iccid: str) -> Activation | None:
        """From the eSIM's details (``GET /esims/{iccid}?additionalFields=installUrl``):
        ``matchingId``, ``smdpAddress`` and ``appleInstallUrl``."""

        async def fetch() -> Activation | None:
            detail = await self._get(f"/esims/{iccid}", params={"additionalFields": "installUrl"})
            if not isinstance(detail, dict):
                raise self._unreadable(f"eSIM {iccid}", detail)
            return activation_from(detail)

        return await self._about_iccid(iccid, fetch)

    def is_applied(self, before: Esim | None, after: Esim, order: Order) -> bool:
        """Applied once the bundle ``order`` bought has left *processing* on the eSIM: the
        assignment naming the order, else a bundle of that name assigned since it."""
        return bundle_applied(
            after.ref.get("assignments"),
            order_reference=str(order.extra.get("order_reference") or order.id or ""),
            bundle=order.plan_id,
            since=order.created_at - ORDER_CLOCK_MARGIN,
        )
