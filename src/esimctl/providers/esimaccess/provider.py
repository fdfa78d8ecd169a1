"""eSIM Access open API v1 (api.esimaccess.com, the RedteaGO platform): the requests.

What the API does and which reading of its self-contradicting docs esimctl takes is in
``docs/providers/esimaccess.md``. This module holds the requests: endpoints, signing,
throttle, paging, the top-up and its lookup after a lost answer; what the answers mean is
``answers.py``. Throttling, retries, secrets, paging and reading values are the provider
kit's (``providers/kit``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Generator, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import httpx

from esimctl.errors import (
    CredentialsError,
    EsimctlError,
    InvalidInput,
    LimitRefused,
    NotFound,
    NotSent,
    OutcomeUnknown,
    ProviderError,
    RateLimited,
    TemporaryFailure,
)
from esimctl.models import Activation, Esim, EsimState, Money, NewEsim, Order, Plan
from esimctl.providers.base import Capability, Provider, ProviderContext
from esimctl.providers.esimaccess.answers import (
    ALLOCATING_CODE,
    CURRENCY,
    MISSING_PARAMETER_CODES,
    PROVIDER_ID,
    ApiRefused,
    DuplicateTransaction,
    Usage,
    api_time,
    carries,
    envelope_error,
    esim_state,
    is_envelope,
    is_success,
    map_error,
    new_esim_order,
    newest_per_iccid,
    package_list,
    parse_activation,
    parse_esim,
    parse_money,
    parse_orders,
    parse_plans,
    parse_usage,
    refusal_code,
    split_plan_id,
    to_units,
    topup_order,
    transaction_id,
)
from esimctl.providers.kit.concurrency import bounded_map
from esimctl.providers.kit.http import ApiClient, Throttle, retry_after, shape_of
from esimctl.providers.kit.paging import counted_pages
from esimctl.providers.kit.values import parse_time, records, to_int

API = "/api/v1/open"
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
#: How long a transactionId whose answer was lost is sent again for the same top-up.
REUSE_WITHIN = timedelta(days=1)


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
        if len(keys) < 2 or refusal_code(response.content) != "101003":
            return
        # A 101003 means nothing was done: sending again is safe, even for a purchase.
        self.sign(request, keys[1])
        response = yield request
        if refusal_code(response.content) != "101003" and keys[0] == first:
            keys.reverse()
            self.remember("access_code" if keys[0] == self.access_code else "secret_key")


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
            Capability.BUY_ESIM,
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
        #: True: always ask /esim/usage/query; False: never; None: up to USAGE_AUTO_MAX eSIMs.
        self.usage_times: bool | None = self.options.get("usage_times")
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
            timeout=self.options.get("timeout", ctx.timeout),
            headers={"Content-Type": "application/json"},
            # No burst: a sliding window that bursts can put more than 8 in one second.
            throttle=Throttle(self.options.get("rate_limit", RATE_PER_SECOND), 1.0, burst=1),
            error_mapper=self._map_error,
            retries=self.options.get("retries", 4),
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
            if code == ALLOCATING_CODE and resp.request.url.path.endswith("/esim/query"):
                return None  # a new eSIM still allocated: _order_rows reads it, not retried
            err = map_error(code, self._api.scrub(msg)[:200], account=self.account)
            if resp.status_code >= 500 and not isinstance(err, TemporaryFailure):
                return TemporaryFailure(f"eSIM Access is unavailable (HTTP {resp.status_code})")
            return err
        if resp.status_code >= 400:
            return None  # the kit's mapping: 401/403 credentials, 5xx temporary, ...
        if not is_envelope(body):
            return TemporaryFailure("eSIM Access sent an answer without its usual envelope")
        return None

    async def _send(
        self, endpoint: str, payload: Mapping[str, Any], *, idempotent: bool = True
    ) -> Any:
        """POST one signed request (signed over these exact bytes); the whole answer."""
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        return await self._api.request(
            "POST", API + endpoint, content=body, auth=self._signer, idempotent=idempotent
        )

    async def _call(
        self, endpoint: str, payload: Mapping[str, Any], *, idempotent: bool = True
    ) -> Any:
        """POST one signed request; ``obj`` of the answer."""
        answer = await self._send(endpoint, payload, idempotent=idempotent)
        if isinstance(answer, Mapping) and not is_success(answer):
            # Only a 200010 of /esim/query passes the error mapper: a list is no order.
            raise TemporaryFailure(
                f"eSIM Access could not answer now [{envelope_error(answer)[0]}]",
                account=self.account,
                provider=self.id,
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
            payload["startTime"] = api_time(LIST_SINCE)
            payload["endTime"] = api_time(self.ctx.clock() + timedelta(days=1))
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

    async def _send_purchase(
        self, path: str, payload: dict[str, Any], reference: str, doing: str
    ) -> Any:
        """One purchase request (a top-up or a new eSIM), never resent, its journal entry
        marked by the outcome: ``refused`` (never sent, or a definite refusal), ``unknown``
        (it may have gone through: ``OutcomeUnknown``, looked up before anything is bought
        again) or ``done``. ``DuplicateTransaction`` is the caller's: the transactionId was
        used, so the purchase was made."""
        try:
            obj = await self._call(path, payload, idempotent=False)
        except DuplicateTransaction:
            raise
        except (NotSent, RateLimited):
            self._mark(reference, "refused")  # never sent, or refused before anything was done
            raise
        except TemporaryFailure as exc:
            self._mark(reference, "unknown")
            if isinstance(exc, OutcomeUnknown):
                raise
            raise OutcomeUnknown(
                f"eSIM Access failed while {doing} ({exc.message}); the outcome will be "
                "checked before anything is bought again",
                account=self.account,
                provider=self.id,
            ) from None
        except EsimctlError:
            self._mark(reference, "refused")  # a definite refusal: nothing was bought
            raise
        self._mark(reference, "done")
        return obj

    async def buy_topup(self, esim: Esim, plan: Plan, reference: str) -> Order:
        if plan.kind != "topup":
            raise InvalidInput(
                f"{plan.id} is a plan for a new eSIM; esimctl buys top-ups for an existing one",
                account=self.account,
                provider=self.id,
            )
        code, days = split_plan_id(plan.id)
        if plan.per_day and days is None:
            raise InvalidInput(
                f"{plan.id} is a day pass: say for how many days (renew --days N)",
                account=self.account,
                provider=self.id,
            )
        # Fresh figures first: they are what a lost answer is later compared with.
        before = await self._raw_esim(esim.iccid, esim.ref.get("esimTranNo"))
        tran_no = str(before.get("esimTranNo") or "")
        # ``amount`` (the agreed price, checked by eSIM Access) only for a USD package that
        # is no day pass; otherwise the listing is read again just before.
        send_amount = plan.price is not None and plan.price.currency == CURRENCY and days is None
        if not send_amount:
            await self._check_listed_price(
                plan, lambda: self._topup_plans(esim.iccid, tran_no, code), "top-up"
            )
        now = self.ctx.clock()
        tx = transaction_id(reference)
        for earlier, rec in self._journal().items():
            # The same top-up asked for again after a lost answer: the same transactionId.
            if (
                # "sent": a run killed while its request was in flight; it may have left.
                rec.get("state") in ("unknown", "sent")
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
            packages=len(package_list(before)),
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
            obj = await self._send_purchase("/esim/topup", payload, reference, "buying")
        except DuplicateTransaction:
            found = await self.find_order(reference, iccid=esim.iccid, since=now)
            self._mark(reference, "done")
            return found or self._order_from(reference, tx, esim.iccid, plan, {}, price=price)
        answer = obj if isinstance(obj, Mapping) else {}
        return self._order_from(reference, tx, esim.iccid, plan, answer, price=price)

    async def _check_listed_price(
        self, plan: Plan, listing: Callable[[], Awaitable[list[Plan]]], kind: str
    ) -> None:
        """Without ``amount``: the listing read again must ask no more than was agreed to."""
        what, shown, asked, tail = f"eSIM Access {kind} {plan.id}", plan.price, None, ""
        if shown is not None:
            code, days = split_plan_id(plan.id)
            plans = await listing()
            listed = next((p for p in plans if p.id in (plan.id, code)), None)
            if listed is not None and days is not None and listed.per_day:
                listed = listed.for_days(days)  # the day's price, times the days bought
            asked = listed.price if listed is not None and listed.id == plan.id else None
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
        return topup_order(
            reference,
            tx,
            iccid,
            plan,
            obj,
            account=self.account,
            created_at=created_at or self.ctx.clock(),
            price=price,
            pkg=pkg,
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
        pkgs = package_list(raw)
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

    # -- new eSIMs: /esim/order answers with an orderNo; the profile (ICCID and ``ac``) is
    # allocated asynchronously and read from /esim/query by that orderNo -----------------

    async def _new_plans(self, code: str) -> list[Plan]:
        payload = {"locationCode": "", "type": "BASE", "packageCode": code}
        return self._plans(await self._call("/package/list", payload), "new")

    async def validate_esim(self, plan: Plan) -> Money | None:
        """eSIM Access has no dry-run order: the package's price as listed now."""
        code, days = split_plan_id(plan.id)
        listed = next((p for p in await self._new_plans(code) if p.id == code), None)
        if listed is None:
            raise InvalidInput(
                f"eSIM Access no longer sells {code}; nothing was bought",
                account=self.account,
                provider=self.id,
            )
        if days is not None and listed.per_day:
            listed = listed.for_days(days)
        return listed.price

    async def buy_esim(self, plan: Plan, reference: str) -> NewEsim:
        if plan.kind != "new":
            raise InvalidInput(
                f"{plan.id} is a top-up; 'esimctl renew ESIM --plan {plan.id}' buys it",
                account=self.account,
                provider=self.id,
            )
        code, days = split_plan_id(plan.id)
        if plan.per_day and days is None:
            raise InvalidInput(
                f"{plan.id} is a day pass, sold by the day: esimctl buys it only for a "
                f"number of days (its id with ':Nd', like {plan.id}:7d)",
                account=self.account,
                provider=self.id,
            )
        # ``amount`` and the package ``price`` (checked by eSIM Access) for a USD package
        # that is no day pass, as the top-up does; otherwise the listing is read again.
        send_amount = plan.price is not None and plan.price.currency == CURRENCY and days is None
        if not send_amount:
            await self._check_listed_price(plan, lambda: self._new_plans(code), "package")
        now = self.ctx.clock()
        tx = transaction_id(reference)
        for earlier, rec in self._journal().items():
            # The same new eSIM asked for again after a lost answer: the same transactionId,
            # which eSIM Access takes for the same request.
            if (
                rec.get("kind") == "new"
                # "sent": a run killed while its request was in flight; it may have left.
                and rec.get("state") in ("unknown", "sent")
                and rec.get("packageCode") == code
                and rec.get("periodNum") == days
                and now - (parse_time(rec.get("sent_at")) or now - REUSE_WITHIN) < REUSE_WITHIN
            ):
                tx = str(rec["tx"])
                self.ctx.journal.record(earlier, state="resent")
                break
        item: dict[str, Any] = {"packageCode": code, "count": 1}
        payload: dict[str, Any] = {"transactionId": tx, "packageInfoList": [item]}
        units: int | None = None
        if send_amount and plan.price is not None:
            units = int(to_units(plan.price))
            item["price"] = units
            payload["amount"] = units  # a number here: the order docs type it Long
        if days is not None:
            item["periodNum"] = days
        self.ctx.journal.record(
            reference,
            kind="new",
            tx=tx,
            packageCode=code,
            periodNum=days,
            plan=plan.name,
            amount=units,
            sent_at=now.isoformat(),
            state="sent",
        )
        # The answer carries no price: only ``amount`` confirms the listed one was charged.
        price = plan.price if units is not None else None
        try:
            obj = await self._send_purchase("/esim/order", payload, reference, "ordering")
        except DuplicateTransaction:
            # The transactionId was used: that order was made. Its eSIM, when it shows.
            self._mark(reference, "done")
            try:
                found = await self.find_esim_order(reference, since=now - REUSE_WITHIN)
            except EsimctlError:
                found = None
            return found or NewEsim(
                new_esim_order(
                    reference,
                    tx,
                    None,
                    account=self.account,
                    plan_id=plan.id,
                    plan=plan.name,
                    price=price,
                    created_at=now,
                )
            )
        except LimitRefused:
            # 200005/200006: the package's price is no longer the one sent (marked refused).
            country = plan.countries[0] if len(plan.countries) == 1 else "CC"
            raise LimitRefused(
                f"refused: the price of {plan.id} changed at eSIM Access since it was listed "
                f"at {plan.price}; nothing was bought. List the plans again ('esimctl plans "
                f"--country {country} --refresh') to see the new price",
                account=self.account,
                provider=self.id,
            ) from None
        order_no = str(obj.get("orderNo") or "").strip() if isinstance(obj, Mapping) else ""
        if not order_no:
            self._mark(reference, "unknown")
            raise OutcomeUnknown(
                "eSIM Access accepted the order without saying its orderNo; it is looked up "
                "by its transactionId before anything is bought again",
                account=self.account,
                provider=self.id,
            )
        self.ctx.journal.record(reference, order=order_no, state="done")
        order = new_esim_order(
            reference,
            tx,
            order_no,
            account=self.account,
            plan_id=plan.id,
            plan=plan.name,
            price=price,
            created_at=now,
        )
        return NewEsim(order)  # the profile is allocated later: find_esim_order tells it

    async def _order_rows(self, order_no: str) -> list[dict[str, Any]] | None:
        """The eSIMs of one order; None while eSIM Access still allocates them (200010)."""
        payload = {
            "orderNo": order_no,
            "iccid": "",
            "esimTranNo": "",
            "pager": {"pageNum": 1, "pageSize": PAGE_SIZE},  # an order holds at most 30
        }
        answer = await self._send("/esim/query", payload)
        if isinstance(answer, Mapping) and not is_success(answer):
            return None  # only 200010 passes the error mapper
        obj = answer.get("obj") if isinstance(answer, Mapping) else None
        if not isinstance(obj, Mapping):
            raise self._unreadable("/esim/query", obj)
        if obj.get("esimList") is None:
            pager = obj.get("pager")
            if isinstance(pager, Mapping) and to_int(pager.get("total")) == 0:
                return []
        rows = records(obj.get("esimList"))
        if rows is None:
            raise self._unreadable("/esim/query", obj)
        return rows

    async def find_esim_order(self, reference: str, *, since: datetime) -> NewEsim | None:
        """None only when eSIM Access clearly has no order with our transactionId; an
        answer that cannot be understood raises, and the order stays unresolved."""
        try:
            return await self._find_esim_order(reference, since=since)
        except CredentialsError:
            raise
        except EsimctlError as exc:
            raise self.lookup_unresolved(
                f"could not say whether the new eSIM order {reference} went through ({exc.message})"
            ) from None

    async def _find_esim_order(self, reference: str, *, since: datetime) -> NewEsim | None:
        record = self.ctx.journal.entry(reference)
        tx = str(record.get("tx") or transaction_id(reference))
        order_no = str(record.get("order") or "")
        rows: list[dict[str, Any]] = []
        known = bool(order_no)  # an orderNo eSIM Access gave, and has not denied
        if order_no:
            try:
                found = await self._order_rows(order_no)
            except NotFound:  # 310272: no such orderNo; our transactionId decides below
                found, known = [], False
            if found is None:  # being allocated
                return self._new_esim(reference, tx, order_no, record, [])
            rows = found
        if not rows:
            # The answer to the order was lost (no orderNo), or the orderNo is unknown:
            # the eSIMs created since the request, by our transactionId.
            listed = await self._query(
                startTime=api_time(since - timedelta(minutes=5)),
                endTime=api_time(self.ctx.clock() + timedelta(days=1)),
            )
            rows = [r for r in listed if carries(r, tx)]
        if not rows:
            if known:  # eSIM Access gave this orderNo, and lists no eSIM of it yet
                return self._new_esim(reference, tx, order_no, record, [])
            return None
        return self._new_esim(reference, tx, order_no, record, rows)

    def _new_esim(
        self,
        reference: str,
        tx: str,
        order_no: str,
        record: Mapping[str, Any],
        rows: list[dict[str, Any]],
    ) -> NewEsim:
        """The order (and its eSIM, once allocated) from the journal and the query's rows."""
        allocated = [r for r in newest_per_iccid(rows) if str(r.get("iccid") or "").strip()]
        row: Mapping[str, Any] = allocated[0] if allocated else (rows[0] if rows else {})
        iccid = str(row.get("iccid") or "").strip() or None
        pkgs = package_list(row)
        first = pkgs[0] if pkgs else {}
        plan_id = str(record.get("plan_id") or "") or None
        if plan_id is None:
            code = str(record.get("packageCode") or first.get("packageCode") or "")
            days = record.get("periodNum")
            plan_id = (f"{code}:{days}d" if days else code) or None
        amount = record.get("amount")
        price = parse_money(amount) if amount not in (None, "") else None
        created = (
            parse_time(record.get("sent_at"))
            or parse_time(first.get("createTime"))
            or self.ctx.clock()
        )
        order = new_esim_order(
            reference,
            tx,
            order_no or str(row.get("orderNo") or "") or None,
            account=self.account,
            plan_id=plan_id,
            plan=str(record.get("plan") or first.get("packageName") or "") or None,
            price=price,
            created_at=created,
            iccid=iccid,
        )
        self._mark(reference, "done")
        return NewEsim(order, iccid=iccid, activation=parse_activation(row) if iccid else None)

    async def activation(self, iccid: str) -> Activation | None:
        """``ac`` of the eSIM's current allocation (ICCIDs are reused: the newest)."""
        try:
            raw = await self._raw_esim(iccid)
        except NotFound:
            return None
        return parse_activation(raw)
