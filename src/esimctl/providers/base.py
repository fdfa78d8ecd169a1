"""The one interface every provider implements, built-in or plugin.

A provider class declares its id, its secret fields and what it can do; its methods
return already-normalised domain objects (``models``) and raise only ``errors`` types.
Nothing provider-specific leaks past its module.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from esimctl import validate
from esimctl.errors import NotFound, ProviderError, TemporaryFailure, Unsupported
from esimctl.models import Activation, Esim, Money, NewEsim, Order, Plan

if TYPE_CHECKING:
    import httpx

    from esimctl.config import AccountConfig
    from esimctl.providers.manual import HandRecords


#: The version of this provider interface (``Provider``, ``ProviderContext``, ``models``,
#: ``errors``) that esimctl implements. A plugin class may declare the version it was
#: written for as ``api_version: ClassVar[int]``; one without it is taken as version 1.
#: The registry refuses (``ConfigError``) a plugin declaring a version above this one.
#: Raised only for a change a plugin written for the previous version could break on.
PROVIDER_API_VERSION = 1


class Capability(StrEnum):
    LIST_ESIMS = "list_esims"
    TOPUPS = "topups"  # top-ups sold for one eSIM
    CATALOGUE = "catalogue"  # plans sold for a country
    BUY_TOPUP = "buy_topup"
    BUY_ESIM = "buy_esim"  # a new eSIM (esimctl buy); needs FIND_ORDER too
    FIND_ORDER = "find_order"  # look an order up by our own reference (reconciliation)
    ORDERS = "orders"
    BALANCE = "balance"
    MANUAL = "manual"  # no API: the user renews on the seller's page and records it


class SecretCache:
    """Keeps short-lived provider secrets (access tokens) between runs, like the credentials.

    Backed by the credential store of the account; falls back to memory for this run
    when no store is writable. Never written to config, cache tables or logs.
    """

    def __init__(
        self,
        load: Callable[[], dict[str, str] | None] | None = None,
        save: Callable[[dict[str, str]], None] | None = None,
    ) -> None:
        self._load = load
        self._save = save
        self._mem: dict[str, str] | None = None

    def get(self) -> dict[str, str] | None:
        if self._mem is None and self._load is not None:
            try:
                self._mem = self._load()
            except Exception:  # an unreadable cache only costs a new token
                self._mem = None
        return self._mem

    def set(self, value: dict[str, str]) -> None:
        self._mem = value
        if self._save is not None:
            # An unwritable cache only costs a new token next run.
            with contextlib.suppress(Exception):
                self._save(value)


@dataclass(frozen=True)
class OpenOrder:
    """One of esimctl's orders of an account not settled yet (``ProviderJournal.open_orders``)."""

    reference: str | None
    iccid: str | None
    plan_id: str | None
    provider_order_id: str | None
    created_at: datetime


class ProviderJournal:
    """What a provider records about the purchase requests it sent (``ctx.journal``).

    Entries are keyed by the purchase reference esimctl gave ``buy_topup``; ``record``
    merges JSON-able fields and has committed them when it returns. This base keeps them
    in memory (for a provider made outside esimctl, as in a plugin's own tests); esimctl
    hands every provider ``purchasing.journal.LedgerJournal``, kept in the ledger beside
    the orders, which also knows esimctl's own orders of the account.
    """

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, Any]] = {}

    def record(self, reference: str, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into the entry of ``reference``; committed on return."""
        entry = self._entries.setdefault(reference, {})
        entry.update(fields)
        return dict(entry)

    def entries(self) -> dict[str, dict[str, Any]]:
        """Every recent entry (reference -> fields), newest first."""
        return {k: dict(v) for k, v in reversed(self._entries.items())}

    def entry(self, reference: str) -> dict[str, Any]:
        """The fields recorded for ``reference``, with esimctl's own ``iccid`` and
        ``plan_id`` of that order where the provider recorded none; ``{}`` if unknown."""
        return dict(self._entries.get(reference) or {})

    def open_orders(self) -> list[OpenOrder]:
        """esimctl's orders of this account that are unresolved or pending."""
        return []

    def claimed_order_ids(self, except_reference: str | None = None) -> set[str]:
        """Provider order ids (``order`` fields, and esimctl's own orders) that purchases
        other than ``except_reference`` already account for."""
        return {
            str(v["order"])
            for k, v in self._entries.items()
            if k != except_reference and v.get("order")
        }


@dataclass
class ProviderContext:
    """What a provider instance gets from esimctl: its account, secrets and services."""

    account: AccountConfig
    secrets: Mapping[str, str]
    clock: Callable[[], datetime]
    state_dir: Path
    #: What this provider records about the purchases it sent (``purchasing.journal``).
    journal: ProviderJournal = field(default_factory=ProviderJournal)
    token_cache: SecretCache = field(default_factory=SecretCache)
    #: The HTTP transport to send through; None for the network (tests inject their own).
    transport: httpx.AsyncBaseTransport | None = None
    #: The hand-kept records of a seller without an API: only the built-in ``manual``
    #: provider reads them.
    hand_records: HandRecords | None = None
    #: Overall HTTP timeout in seconds for one request.
    timeout: float = 20.0
    #: Extra: tests and benchmarks may inject counters here; providers ignore unknown keys.
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.account.name


class Provider:
    """Base of every provider client.

    Subclasses set the class attributes and override the methods named by their
    ``capabilities``. Instances are async context managers: ``__aexit__`` closes sockets.
    """

    id: ClassVar[str]
    display_name: ClassVar[str]
    secret_fields: ClassVar[tuple[str, ...]] = ()
    default_base_url: ClassVar[str | None] = None
    capabilities: ClassVar[frozenset[Capability]] = frozenset()
    #: 1024 where the provider counts MB/GB of 1024 bytes, 1000 where it counts decimal.
    unit_base: ClassVar[int] = 1024
    #: How long usage figures stay fresh: no shorter than the provider's own cache.
    usage_ttl: ClassVar[timedelta] = timedelta(0)
    #: How long catalogue answers stay fresh.
    catalogue_ttl: ClassVar[timedelta] = timedelta(hours=6)
    #: Where a person renews by hand / signs up (shown in hints), if anywhere.
    homepage: ClassVar[str | None] = None
    #: How long an order sent may take to appear in the provider's order lookup. Until an
    #: unresolved intent is this old, "not found" means "not yet", never "not made".
    #: HTTP providers set it to at least their longest request timeout.
    order_lookup_lag: ClassVar[timedelta] = timedelta(0)

    def __init__(self, ctx: ProviderContext) -> None:
        self.ctx = ctx
        #: eSIMs left out of ``list_esims`` for implausible figures, one error each.
        self.rejected: list[ProviderError] = []
        #: Plans left out of ``topups``/``catalogue`` for an implausible price or size.
        self.rejected_plans: list[str] = []

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Every provider's readings pass the plausibility checks of ``validate``: a
        subclass's own ``list_esims``, ``get_esim``, ``topups``, ``catalogue`` and
        ``orders`` are wrapped as the class is made, so no provider (plugins included)
        can hand esimctl a figure it should not believe."""
        super().__init_subclass__(**kwargs)
        for name, guard in _GUARDS.items():
            # getattr, not the class's own dict: a method from a mixin is guarded too.
            fn = getattr(cls, name, None)
            if fn is None or fn is Provider.__dict__.get(name):
                continue  # the base's own defaults read through guarded methods
            if not getattr(fn, "_esimctl_guarded", False):
                wrapped = guard(fn)
                wrapped._esimctl_guarded = True  # type: ignore[attr-defined]
                setattr(cls, name, wrapped)

    def lookup_unresolved(self, what: str, *, code: str | None = None) -> TemporaryFailure:
        """An order lookup that could not be read: never evidence that nothing happened.
        The order stays unresolved (and counts against every limit) until a readable
        answer decides; ``what`` says what went wrong."""
        return TemporaryFailure(
            f"{self.display_name} {what}; the order stays unresolved and is looked up again "
            "before anything is bought",
            account=self.account,
            provider=self.id,
            code=code,
        )

    def implausible(self, e: Esim, problem: str) -> ProviderError:
        return ProviderError(
            f"eSIM {e.iccid}: {self.display_name} gave figures esimctl cannot believe "
            f"({problem}); not shown and never renewed on them",
            account=self.account,
            provider=self.id,
            code="implausible_figures",
            iccid=e.iccid,
        )

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        """Validate an account's provider options before they are saved; raise InvalidInput
        or ConfigError. Built-ins are checked against their schema in ``config_schema``; a
        plugin overrides this to check its own."""
        from esimctl import config_schema

        config_schema.provider_options(cls.id, options, account="NAME")

    @functools.cached_property
    def options(self) -> dict[str, Any]:
        """This account's provider options, parsed (a built-in's by its schema in
        ``config_schema.PROVIDER_OPTIONS``; a plugin's as written). Absent keys are absent:
        the provider supplies its defaults."""
        from esimctl import config_schema

        return config_schema.provider_options(
            self.id, self.ctx.account.options, account=self.account
        )

    @property
    def account(self) -> str:
        return self.ctx.account.name

    @property
    def base_url(self) -> str:
        url = self.ctx.account.base_url or self.default_base_url
        if not url:
            raise Unsupported(f"provider {self.id!r} has no base URL", account=self.account)
        return url.rstrip("/")

    async def __aenter__(self) -> Provider:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close sockets; the default has none."""

    def _unsupported(self, what: str) -> Unsupported:
        return Unsupported(
            f"{self.display_name} does not support {what}",
            account=self.account,
            provider=self.id,
        )

    # -- reading --------------------------------------------------------------------------

    async def check(self) -> str:
        """Verify the credentials with one cheap call; return a short description."""
        esims = await self.list_esims()
        return f"{len(esims)} eSIM(s)"

    async def list_esims(self) -> list[Esim]:
        raise self._unsupported("listing eSIMs")

    async def get_esim(self, iccid: str) -> Esim:
        """Fresh figures for one eSIM (used to verify a top-up); default: list and pick."""
        for e in await self.list_esims():
            if e.iccid == iccid:
                return e
        for err in _list_of(self, "rejected"):
            if iccid in err.message:
                raise err
        raise NotFound(f"eSIM {iccid} not found", account=self.account, provider=self.id)

    async def topups(self, esim: Esim) -> list[Plan]:
        raise self._unsupported("listing top-ups")

    async def catalogue(self, country: str) -> list[Plan]:
        raise self._unsupported("a catalogue by country")

    async def orders(self) -> list[Order]:
        raise self._unsupported("order history")

    async def balance(self) -> Money | None:
        return None

    # -- buying ---------------------------------------------------------------------------

    async def buy_topup(self, esim: Esim, plan: Plan, reference: str) -> Order:
        """Send one purchase request carrying our ``reference``; never retried blindly.

        Raises ``OutcomeUnknown`` when the request may have reached the provider but no
        answer came back; the caller then reconciles through ``find_order``.
        """
        raise self._unsupported("buying top-ups")

    async def find_order(
        self, reference: str, *, iccid: str | None, since: datetime
    ) -> Order | None:
        """Find the order we sent with ``reference``; None if the provider has none."""
        raise self._unsupported("looking orders up")

    async def buy_esim(self, plan: Plan, reference: str) -> NewEsim:
        """Order one new eSIM of ``plan`` (a plan of kind ``new``) carrying our
        ``reference``; never retried blindly. ``OutcomeUnknown`` when the request may have
        reached the seller but no answer came back; then ``find_esim_order`` decides.
        ``NewEsim.iccid`` is None while the seller still allocates the profile."""
        raise self._unsupported("buying new eSIMs")

    async def find_esim_order(self, reference: str, *, since: datetime) -> NewEsim | None:
        """The new-eSIM order we sent with ``reference`` (with its eSIM once allocated), or
        None if the seller has none; raise (``lookup_unresolved``) when it cannot tell."""
        raise self._unsupported("looking new-eSIM orders up")

    async def activation(self, iccid: str) -> Activation | None:
        """How to install eSIM ``iccid`` (its LPA code), asked of the seller again; None
        when the seller does not give it again."""
        return None

    async def validate_esim(self, plan: Plan) -> Money | None:
        """Check a new-eSIM order without buying (``buy --dry-run``); the price the seller
        would charge, or None where the API has no such check."""
        return None

    def is_applied(self, before: Esim | None, after: Esim, order: Order) -> bool:
        """Does ``after`` show the package bought by ``order``? Providers refine this."""
        if before is None:
            return after.state.value in ("active", "not_active")
        grew = (after.data_total_bytes or 0) > (before.data_total_bytes or 0)
        extended = (
            after.expires_at is not None
            and before.expires_at is not None
            and after.expires_at > before.expires_at
        )
        more_packages = len(after.packages) > len(before.packages)
        return grew or extended or more_packages


# -- the plausibility guards (see ``Provider.__init_subclass__``) ------------------------------

_Method = Callable[..., Awaitable[Any]]


def _list_of(provider: Provider, name: str) -> list[Any]:
    """``provider.rejected`` / ``rejected_plans``, made here for a plugin whose
    ``__init__`` does not call ``Provider.__init__``."""
    found = provider.__dict__.get(name)
    if found is None:
        found = []
        setattr(provider, name, found)
    return found


def _guard_list(fn: _Method) -> _Method:
    @functools.wraps(fn)
    async def list_esims(self: Provider, *args: Any, **kwargs: Any) -> list[Esim]:
        out: list[Esim] = []
        for e in await fn(self, *args, **kwargs):
            problem = validate.esim_problem(e)
            if problem is None:
                out.append(e)
            else:
                _list_of(self, "rejected").append(self.implausible(e, problem))
        return out

    return list_esims


def _guard_one(fn: _Method) -> _Method:
    @functools.wraps(fn)
    async def get_esim(self: Provider, *args: Any, **kwargs: Any) -> Esim:
        e: Esim = await fn(self, *args, **kwargs)
        problem = validate.esim_problem(e)
        if problem is not None:
            raise self.implausible(e, problem)
        return e

    return get_esim


def _guard_plans(fn: _Method) -> _Method:
    @functools.wraps(fn)
    async def plans(self: Provider, *args: Any, **kwargs: Any) -> list[Plan]:
        out: list[Plan] = []
        for p in await fn(self, *args, **kwargs):
            problem = validate.plan_problem(p)
            if problem is None:
                out.append(p)
            else:
                _list_of(self, "rejected_plans").append(f"plan {p.id} is not offered: {problem}")
        return out

    return plans


def _guard_orders(fn: _Method) -> _Method:
    @functools.wraps(fn)
    async def orders(self: Provider, *args: Any, **kwargs: Any) -> list[Order]:
        out: list[Order] = []
        for o in await fn(self, *args, **kwargs):
            if o.price is not None and validate.price_problem(o.price):
                o = dataclasses.replace(o, price=None)  # an unbelievable price is no price
            out.append(o)
        return out

    return orders


_GUARDS: dict[str, Callable[[_Method], _Method]] = {
    "list_esims": _guard_list,
    "get_esim": _guard_one,
    "topups": _guard_plans,
    "catalogue": _guard_plans,
    "orders": _guard_orders,
}
