"""examplemobile: an esimctl provider plugin written from docs/providers/plugins.md alone.

It is what a stranger would write for a seller called ExampleMobile, using only what that
page documents: the class attributes, the methods of the capabilities it declares, the
models it returns and the errors it raises. ExampleMobile's API is simulated by ``seller``
(a JSON file named by the account option ``seller_file``); it takes a client reference on
purchases and looks purchases up by it, so the plugin needs no ``ctx.journal``.

Registered in the tests through a ``*.dist-info/entry_points.txt`` of its own, as
``examplemobile = example_plugin:ExampleMobileProvider`` (see tests/test_plugin_api.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

from esimctl.errors import (
    AuthRejected,
    ConfigError,
    InsufficientBalance,
    InvalidInput,
    NotFound,
    OutcomeUnknown,
    ProviderError,
    TemporaryFailure,
)
from esimctl.models import Esim, EsimState, Money, Order, OrderState, Plan
from esimctl.providers.base import Capability, Provider

from . import seller

MB = 1000**2  # ExampleMobile counts decimal megabytes
STATES = {
    "fresh": EsimState.NOT_ACTIVE,
    "live": EsimState.ACTIVE,
    "empty": EsimState.DEPLETED,
    "ended": EsimState.EXPIRED,
}


class ExampleMobileProvider(Provider):
    id: ClassVar[str] = "examplemobile"
    display_name: ClassVar[str] = "ExampleMobile"
    api_version: ClassVar[int] = 1
    secret_fields: ClassVar[tuple[str, ...]] = ("API_KEY",)
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.LIST_ESIMS,
            Capability.TOPUPS,
            Capability.BUY_TOPUP,
            Capability.FIND_ORDER,
            Capability.ORDERS,
            Capability.BALANCE,
        }
    )
    unit_base: ClassVar[int] = 1000
    usage_ttl: ClassVar[timedelta] = timedelta(minutes=1)
    homepage: ClassVar[str | None] = "https://examplemobile.example"
    order_lookup_lag: ClassVar[timedelta] = timedelta(minutes=1)

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        value = options.get("seller_file")
        if not isinstance(value, str) or not value.strip():
            raise InvalidInput("examplemobile needs the option seller_file: --set seller_file=PATH")

    # -- talking to the seller ---------------------------------------------------------------

    def _seller_file(self) -> Path:
        value = self.ctx.account.options.get("seller_file")
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"account {self.account!r} has no seller_file option")
        return Path(value)

    def _call(self, method: str, route: str, **body: Any) -> dict[str, Any]:
        try:
            return seller.call(
                self._seller_file(), method, route, self.ctx.secrets["API_KEY"], **body
            )
        except seller.SellerError as exc:
            if exc.status in (401, 403):
                raise AuthRejected("ExampleMobile rejected the API key") from None
            if exc.status == 404:
                raise NotFound(f"ExampleMobile: {exc}") from None
            if exc.status == 402:
                raise InsufficientBalance(f"ExampleMobile: {exc}") from None
            if exc.status >= 500:
                raise TemporaryFailure(f"ExampleMobile is unavailable ({exc})") from None
            raise ProviderError(f"ExampleMobile answered {exc.status}: {exc}") from None

    @staticmethod
    def _list(body: dict[str, Any], key: str) -> list[dict[str, Any]]:
        rows = body.get(key) if isinstance(body, dict) else None
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise ProviderError(f"ExampleMobile sent a {key} list esimctl cannot read")
        return rows

    # -- normalising ---------------------------------------------------------------------------

    @staticmethod
    def _when(epoch: Any) -> datetime | None:
        return datetime.fromtimestamp(int(epoch), UTC) if epoch is not None else None

    def _esim(self, s: dict[str, Any]) -> Esim:
        total = int(s["allowance_mb"]) * MB
        left = max(int(s["allowance_mb"]) - int(s["used_mb"]), 0) * MB
        return Esim(
            account=self.account,
            provider=self.id,
            iccid=str(s["iccid"]),
            state=STATES.get(str(s.get("status")), EsimState.UNKNOWN),
            plan=s.get("bundle"),
            label=s.get("nickname"),
            data_total_bytes=total,
            data_remaining_bytes=left,
            expires_at=self._when(s.get("valid_until")),
            as_of=self.ctx.clock(),
            unit_base=1000,
            ref={"countries": ",".join(s.get("countries", []))},
        )

    def _plan(self, b: dict[str, Any]) -> Plan:
        return Plan(
            id=str(b["code"]),
            account=self.account,
            provider=self.id,
            name=str(b["title"]),
            kind="topup",
            data_bytes=int(b["mb"]) * MB,
            unlimited=False,
            validity_days=int(b["days"]),
            price=Money(Decimal(int(b["cents"])) / 100, str(b["currency"]).upper()),
            countries=tuple(b.get("countries", ())),
            stacking="stacks",
            unit_base=1000,
        )

    def _order(self, p: dict[str, Any]) -> Order:
        made = self._when(p["made_at"])
        assert made is not None
        return Order(
            id=str(p["purchase_id"]),
            account=self.account,
            provider=self.id,
            iccid=p.get("iccid"),
            plan_id=p.get("bundle"),
            plan=p.get("title"),
            price=Money(Decimal(int(p["cents"])) / 100, str(p["currency"]).upper()),
            created_at=made,
            state=OrderState.COMPLETED if p.get("status") == "delivered" else OrderState.PENDING,
            source="provider",
            reference=p.get("client_ref"),
        )

    # -- reading -------------------------------------------------------------------------------

    async def check(self) -> str:
        sims = self._list(self._call("GET", "/sims"), "sims")
        return f"{len(sims)} eSIM(s)"

    async def list_esims(self) -> list[Esim]:
        return [self._esim(s) for s in self._list(self._call("GET", "/sims"), "sims")]

    async def topups(self, esim: Esim) -> list[Plan]:
        body = self._call("GET", "/bundles", iccid=esim.iccid)
        return [self._plan(b) for b in self._list(body, "bundles")]

    async def orders(self) -> list[Order]:
        return [self._order(p) for p in self._list(self._call("GET", "/purchases"), "purchases")]

    async def balance(self) -> Money | None:
        body = self._call("GET", "/wallet")
        return Money(Decimal(int(body["cents"])) / 100, str(body["currency"]).upper())

    # -- buying --------------------------------------------------------------------------------

    async def buy_topup(self, esim: Esim, plan: Plan, reference: str) -> Order:
        try:  # one request, carrying esimctl's reference; never retried
            body = self._call(
                "POST", "/purchases", iccid=esim.iccid, bundle=plan.id, client_ref=reference
            )
        except TemporaryFailure as exc:  # a 5xx: the purchase may have gone through
            raise OutcomeUnknown(
                f"ExampleMobile did not confirm the purchase ({exc.message})"
            ) from None
        return self._order(body)

    async def find_order(
        self, reference: str, *, iccid: str | None, since: datetime
    ) -> Order | None:
        try:
            body = self._call("GET", "/purchases", client_ref=reference)
        except TemporaryFailure:
            raise self.lookup_unresolved("order lookup failed") from None
        try:
            rows = self._list(body, "purchases")
        except ProviderError:
            raise self.lookup_unresolved(
                "order lookup sent an answer esimctl cannot read"
            ) from None
        found = [p for p in rows if p.get("client_ref") == reference]
        return self._order(found[0]) if found else None
