"""What several commands share: opening providers, fanning out over accounts, caching
eSIM lists, resolving an eSIM name, and deciding what needs attention.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from esimctl.config import AccountConfig, AttentionConfig
from esimctl.env import Env
from esimctl.errors import (
    EsimctlError,
    ExitCode,
    InvalidInput,
    NotFound,
    ProviderError,
    TemporaryFailure,
    run_outcome,
)
from esimctl.models import Attention, Esim, EsimState, Plan

if TYPE_CHECKING:
    from esimctl.forecast import Forecast
from esimctl.providers import registry
from esimctl.providers.base import Capability, Provider, ProviderContext, SecretCache
from esimctl.serialize import esim_from_cache, esim_to_cache, plan_from_cache, plan_to_cache

T = TypeVar("T")


def open_provider(env: Env, account: AccountConfig) -> Provider:
    cls = registry.load(account.provider)
    store = str(account.options.get("credential_store", "keyring"))
    secrets = env.credentials.resolve(account.name, account.provider, cls.secret_fields, store)
    token_cache = SecretCache()
    if cls.secret_fields:
        token_cache = token_cache_for(env, account.name, store)
    state_dir = env.paths.ensure(env.paths.state_dir / "accounts" / account.name)
    from esimctl.purchasing.journal import LedgerJournal, carry_over

    if not env.ledger.read_only:
        carry_over(env.ledger, account.name, state_dir)
    ctx = ProviderContext(
        account=account,
        secrets=secrets,
        clock=env.clock,
        state_dir=state_dir,
        journal=LedgerJournal(env.ledger, account.name),
        token_cache=token_cache,
        transport=env.hooks.transport,
        hand_records=_hand_records(env) if account.provider == "manual" else None,
    )
    return cls(ctx)


def _hand_records(env: Env) -> Any:
    from esimctl.providers.manual import HandRecords, ManualStore

    return HandRecords(ManualStore(env.ledger), env.orders)


def token_cache_for(env: Env, account: str, store: str) -> SecretCache:
    """Where an account's access token lives between runs: its credential store, or, when
    that cannot keep it (no keyring under cron, the null backend), a 0600 file in the
    state dir. Without either, every run would spend a token call of a rate-limited
    endpoint (Airalo allows 3 a minute)."""
    from esimctl.credentials import FileStore

    target = env.credentials.store_for(store)
    fallback = FileStore(env.paths.state_dir / "tokens")
    key = f"{account}#token"

    def load() -> dict[str, str] | None:
        try:
            kept = target.get(key)
        except Exception:  # an unreadable store only costs a new token
            kept = None
        return kept or fallback.get(key)

    def save(value: dict[str, str]) -> None:
        try:
            target.set(key, value)
            if target.get(key) == value:
                fallback.delete(key)
                return
        except Exception:  # fall back to the file below
            pass
        fallback.set(key, value)

    return SecretCache(load, save)


class Session:
    """One command run's event loop and providers (``env.session``).

    Every phase of a command (``renew --auto``: reconcile, fetch, buy, verify) runs on the
    same loop, through the same provider instances, each opened once when first asked for
    and closed when the run ends (``close``, called by ``cli.app.run``): throttles, access
    tokens and keep-alive connections are shared by every phase, and the keyring is read
    once per account."""

    def __init__(self, env: Env) -> None:
        import asyncio
        import contextlib

        self.env = env
        self._runner = asyncio.Runner()
        self._providers: dict[str, Provider] = {}
        self._stack = contextlib.AsyncExitStack()
        self._started = False

    def run(self, coro: Awaitable[T]) -> T:
        """Run ``coro`` to completion on the run's loop (Ctrl-C: ``KeyboardInterrupt``).

        Whatever ends it early (Ctrl-C, an error) also ends every task it left behind, as
        ``asyncio.run`` would: a second Ctrl-C stops a shielded purchase request at once
        (its intent is reconciled next run), and nothing runs on during ``close``."""
        self._started = True
        try:
            return self._runner.run(coro)  # type: ignore[arg-type]
        except BaseException:
            self._cancel_leftovers()
            raise

    def _cancel_leftovers(self) -> None:
        import asyncio

        if not self._started:
            return
        loop = self._runner.get_loop()
        tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for t in tasks:
            t.cancel()
        if tasks:
            import contextlib

            # A further Ctrl-C while the tasks unwind: stop unwinding, go on closing.
            with contextlib.suppress(BaseException):
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))

    async def provider(self, account: AccountConfig) -> Provider:
        """The account's provider, opened on first use; errors name the account."""
        found = self._providers.get(account.name)
        if found is not None:
            return found
        try:
            provider = open_provider(self.env, account)
            await self._stack.enter_async_context(provider)
        except EsimctlError as exc:
            raise exc.for_account(account.name, account.provider) from None
        self._providers[account.name] = provider
        return provider

    def close(self) -> None:
        """Close every provider's connections, then the loop. Safe to call twice."""
        try:
            self._cancel_leftovers()
            if self._providers:
                self._runner.run(self._stack.aclose())
        except (Exception, KeyboardInterrupt):  # closing sockets must not hide the result
            pass
        finally:
            self._providers.clear()
            self._runner.close()


@dataclass
class Fanout(Generic[T]):
    results: dict[str, T]
    errors: list[EsimctlError]
    #: Accounts whose results are the last ones cached, shown because the provider failed
    #: now: their error is in ``errors`` too, and they do not count as having answered.
    stale: set[str] = field(default_factory=set)

    @property
    def exit_code(self) -> ExitCode:
        return self.outcome[0]

    @property
    def outcome(self) -> tuple[ExitCode, str]:
        """Exit code and JSON status, by the one rule (``errors.run_outcome``)."""
        return run_outcome(self.errors, answered=set(self.results) - self.stale)


def select_accounts(env: Env, names: Sequence[str] | None) -> list[AccountConfig]:
    accounts = env.config.accounts()
    if names:
        return [env.config.account(n) for n in names]
    return accounts


async def _one(env: Env, account: AccountConfig, fn: Callable[[Provider], Awaitable[T]]) -> T:
    provider = await env.session.provider(account)
    try:
        return await fn(provider)
    except EsimctlError as exc:
        raise exc.for_account(account.name, account.provider) from None


def fan_out(
    env: Env,
    accounts: Sequence[AccountConfig],
    fn: Callable[[Provider], Awaitable[T]],
) -> Fanout[T]:
    """``fan_out_async`` on the run's event loop (``env.session``)."""
    if not accounts:
        return Fanout({}, [])
    return env.session.run(fan_out_async(env, accounts, fn))


async def fan_out_async(
    env: Env,
    accounts: Sequence[AccountConfig],
    fn: Callable[[Provider], Awaitable[T]],
) -> Fanout[T]:
    """Run ``fn`` against every account concurrently; one failure never hides the others.

    The whole fan-out has one deadline (``[network] deadline``, 30 s by default): an account
    still silent then is an error of its own ("no answer within 30 s") and the others'
    results are used. On a terminal, a wait longer than 0.3 s shows a spinner on stderr
    naming the accounts still being waited for.
    """
    if not accounts:
        return Fanout({}, [])
    import asyncio  # here, not at the top: commands answered from the cache never need it

    deadline = env.config.network().deadline

    async def main() -> list[T | BaseException]:
        loop = asyncio.get_running_loop()
        tasks = {asyncio.ensure_future(_one(env, a, fn)): a for a in accounts}
        start = loop.time()
        end = start + deadline.total_seconds()
        pending = set(tasks)
        spinner: Any = None
        try:
            while pending and loop.time() < end:
                step = min(end - loop.time(), 0.3 if spinner is None else 0.25)
                _, pending = await asyncio.wait(pending, timeout=max(step, 0.0))
                if not pending:
                    break
                if spinner is None and env.show_progress and loop.time() - start >= 0.3:
                    spinner = env.err.status("")
                    spinner.start()
                if spinner is not None:
                    spinner.update(_waiting_for([tasks[t] for t in pending]))
        finally:
            if spinner is not None:
                spinner.stop()
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        out: list[T | BaseException] = []
        for t, acc in tasks.items():
            if t in pending:
                out.append(past_deadline(acc.provider, deadline, acc.name, acc.provider))
            elif t.cancelled():
                out.append(asyncio.CancelledError())
            else:
                exc = t.exception()
                out.append(exc if exc is not None else t.result())
        return out

    outcomes = await main()
    results: dict[str, T] = {}
    errors: list[EsimctlError] = []
    for acc, out in zip(accounts, outcomes, strict=True):
        if isinstance(out, EsimctlError):
            errors.append(out)
        elif isinstance(out, BaseException):
            if isinstance(out, (KeyboardInterrupt, SystemExit, asyncio.CancelledError)):
                raise out
            errors.append(
                ProviderError(
                    f"{acc.provider} account {acc.name!r} failed: {type(out).__name__}",
                    account=acc.name,
                    provider=acc.provider,
                )
            )
            if env.debug:
                raise out
        else:
            results[acc.name] = out
    return Fanout(results, errors)


def _waiting_for(accounts: Sequence[AccountConfig]) -> str:
    names = ", ".join(f"{a.name} ({a.provider})" for a in accounts[:4])
    more = f" and {len(accounts) - 4} more" if len(accounts) > 4 else ""
    return f"waiting for {names}{more}…"


def past_deadline(
    who: str, deadline: timedelta, account: str, provider: str, *, then: str = ""
) -> TemporaryFailure:
    """A provider still silent when the command's deadline (``[network] deadline``) came."""
    secs = deadline.total_seconds()
    within = f"{secs:g} s" if secs < 120 else f"{secs / 60:g} min"
    return TemporaryFailure(
        f"no answer from {who} within {within} "
        f"(the command's deadline: [network] deadline in config){then}",
        account=account,
        provider=provider,
    )


# -- eSIM lists with a cache ---------------------------------------------------------------
#
# One row per account in the ledger's ``cache`` table: the eSIM list as last fetched, when,
# and how long it stays fresh (the provider's ``usage_ttl`` at the time). Keeping the TTL in
# the row lets a fresh cache be read without importing the provider's module (and httpx).


def _cache_key(account: str) -> str:
    return f"esims:{account}"


@dataclass(frozen=True)
class CachedEsims:
    fetched_at: datetime
    #: None for rows written before the TTL was kept in them: the provider class decides.
    ttl: timedelta | None
    esims: list[Esim]

    def fresh(self, now: datetime, ttl: timedelta) -> bool:
        return ttl > timedelta(0) and now - self.fetched_at <= ttl


def read_cached_esims(env: Env, account: AccountConfig) -> CachedEsims | None:
    hit = env.ledger.cache_get(_cache_key(account.name))
    if hit is None:
        return None
    fetched, payload = hit
    ttl: timedelta | None = None
    rows: Any = payload
    if isinstance(payload, dict):
        ttl = timedelta(seconds=float(payload.get("ttl_seconds", 0)))
        rows = payload.get("esims")
    if not isinstance(rows, list):
        return None
    try:
        return CachedEsims(fetched, ttl, [esim_from_cache(d) for d in rows])
    except (KeyError, TypeError, ValueError):
        return None  # an unreadable row only costs a fetch


def cached_esims(env: Env, account: AccountConfig, ttl: timedelta) -> list[Esim] | None:
    """The cached eSIMs of ``account`` if fetched within ``ttl``, else None."""
    hit = read_cached_esims(env, account)
    return hit.esims if hit is not None and hit.fresh(env.now(), ttl) else None


def store_esims(
    env: Env, account: AccountConfig, esims: list[Esim], ttl: timedelta | None = None
) -> None:
    if ttl is None:
        ttl = registry.load(account.provider).usage_ttl
    payload = {"ttl_seconds": ttl.total_seconds(), "esims": [esim_to_cache(e) for e in esims]}
    env.ledger.cache_put(_cache_key(account.name), account.name, payload)
    env.ledger.add_snapshots(esims)


def _allocating(env: Env, account: str) -> bool:
    """A new eSIM of ``account`` bought and not allocated yet (eSIM Access allocates after
    the order): the account is asked, not its cache, until the eSIM (and its label) shows."""
    # Asked for a day at most: a seller that never allocates (a cancelled order) must not
    # cost every later status a request; the order stays pending, for 'history' to show.
    since = env.now() - timedelta(days=1)
    return any(not r.iccid and r.created_at >= since for r in env.orders.awaiting(account=account))


def fetch_esims(
    env: Env,
    accounts: Sequence[AccountConfig],
    *,
    refresh: bool = False,
    allow_stale: bool = False,
) -> Fanout[list[Esim]]:
    """eSIMs of every account: from the cache while fresh, else from the provider.

    With ``allow_stale``, an account whose provider fails now is shown with the last list
    cached for it, however old, and named in ``Fanout.stale`` (its error is kept): for
    ``status``, which marks those figures stale. Commands that act on figures (renewals)
    never ask for it.
    """
    now = env.now()
    cached: dict[str, list[Esim]] = {}
    old: dict[str, list[Esim]] = {}
    todo: list[AccountConfig] = []
    for acc in accounts:
        hit = None if refresh and not allow_stale else read_cached_esims(env, acc)
        if hit is not None and not refresh:
            ttl = hit.ttl if hit.ttl is not None else registry.load(acc.provider).usage_ttl
            if hit.fresh(now, ttl) and not _allocating(env, acc.name):
                cached[acc.name] = hit.esims
                continue
        todo.append(acc)
        if hit is not None:
            old[acc.name] = hit.esims

    rejected: dict[str, list[EsimctlError]] = {}

    async def fetch(p: Provider) -> list[Esim]:
        if Capability.LIST_ESIMS not in p.capabilities:
            return []
        if Capability.BUY_ESIM in p.capabilities and _allocating(env, p.account):
            from esimctl.purchasing.pipeline import allocate

            with contextlib.suppress(EsimctlError, sqlite3.Error, OSError):
                await allocate(env, p)  # a failed look is no verdict: the next run asks again
        esims = await p.list_esims()
        # getattr: a plugin written before plausibility checks may not call super().__init__.
        refused = getattr(p, "rejected", None)
        if refused:
            rejected[p.account] = list(refused)
        from esimctl.purchasing.pipeline import settle_all

        settle_all(env, p, esims)
        return esims

    out = fan_out(env, todo, fetch)
    for name, esims in out.results.items():
        if name in rejected:
            # Not cached (and the old list dropped): the next run asks again, and names
            # the eSIM again, instead of showing its older figures as if nothing happened.
            env.ledger.cache_drop(name)
            env.ledger.add_snapshots(esims)
            out.errors.extend(rejected[name])
        else:
            store_esims(env, env.config.account(name), esims)
    stale: dict[str, list[Esim]] = {}
    if allow_stale:
        failed = {e.account for e in out.errors} - set(out.results)
        stale = {name: esims for name, esims in old.items() if name in failed}
    labelled = {
        name: [with_label(env, e) for e in esims]
        for name, esims in {**cached, **stale, **out.results}.items()
    }
    ordered = {a.name: labelled[a.name] for a in accounts if a.name in labelled}
    return Fanout(ordered, out.errors, set(stale))


# -- catalogues with a cache -----------------------------------------------------------------


@dataclass
class Catalogues:
    """Plans sold for one country, per account, and since when each list is known."""

    plans: Fanout[list[Plan]]
    #: Account -> when its list was fetched, for lists that came from the cache.
    cached_at: dict[str, datetime]


def fetch_catalogues(
    env: Env, accounts: Sequence[AccountConfig], country: str, *, refresh: bool = False
) -> Catalogues:
    """Plans sold for ``country`` by every account, cached for the provider's
    ``catalogue_ttl``. Never stale: a price shown must be one the provider still asks."""
    now = env.now()
    cached: dict[str, list[Plan]] = {}
    cached_at: dict[str, datetime] = {}
    todo: list[AccountConfig] = []
    for acc in accounts:
        hit = None if refresh else env.ledger.cache_get(f"catalogue:{acc.name}:{country}")
        if hit is not None:
            fetched, payload = hit
            try:
                ttl = timedelta(seconds=float(payload["ttl_seconds"]))
                plans = [plan_from_cache(d) for d in payload["plans"]]
            except (KeyError, TypeError, ValueError):
                plans = None
            if plans is not None and timedelta(0) < ttl and now - fetched <= ttl:
                cached[acc.name], cached_at[acc.name] = plans, fetched
                continue
        todo.append(acc)

    async def catalogue(p: Provider) -> list[Plan]:
        if Capability.CATALOGUE not in p.capabilities:
            return []
        return await p.catalogue(country)

    out = fan_out(env, todo, catalogue)
    for name, plans in out.results.items():
        acc = env.config.account(name)
        ttl = registry.load(acc.provider).catalogue_ttl
        payload = {"ttl_seconds": ttl.total_seconds(), "plans": [plan_to_cache(p) for p in plans]}
        env.ledger.cache_put(f"catalogue:{name}:{country}", name, payload)
    merged = {**cached, **out.results}
    ordered = {a.name: merged[a.name] for a in accounts if a.name in merged}
    return Catalogues(Fanout(ordered, out.errors), cached_at)


# -- top-ups last seen, for shell completion ---------------------------------------------------


def _topups_key(account: str, iccid: str) -> str:
    return f"topups:{account}:{iccid}"


def remember_topups(env: Env, esim: Esim, plans: Sequence[Plan]) -> None:
    """Keep the top-ups just fetched for ``esim``, so that shell completion offers their
    ids (``renew ESIM --plan``) without asking the provider. Never read to buy: a purchase
    fetches the plans again. A ledger that cannot keep them costs only the completion."""
    import contextlib
    import sqlite3

    payload = {"plans": [plan_to_cache(p) for p in plans]}
    with contextlib.suppress(EsimctlError, sqlite3.Error):
        env.ledger.cache_put(_topups_key(esim.account, esim.iccid), esim.account, payload)


def remembered_topups(env: Env, account: str, iccid: str) -> list[Plan]:
    """The top-ups last fetched for one eSIM (``remember_topups``); [] if none are kept."""
    hit = env.ledger.cache_get(_topups_key(account, iccid))
    if hit is None or not isinstance(hit[1], dict):
        return []
    try:
        return [plan_from_cache(d) for d in hit[1].get("plans", [])]
    except (KeyError, TypeError, ValueError):
        return []


def with_label(env: Env, e: Esim) -> Esim:
    label = env.config.label_for(e.iccid)
    return replace(e, label=label) if label else e


# -- naming an eSIM --------------------------------------------------------------------------


def match_esim(name: str, esims: Sequence[Esim]) -> Esim:
    """Full ICCID, a unique ICCID suffix of at least 4 digits, or a label."""
    n = name.strip()
    exact = [e for e in esims if e.iccid == n]
    if exact:
        return exact[0]
    by_label = [e for e in esims if e.label and e.label.lower() == n.lower()]
    if len(by_label) == 1:
        return by_label[0]
    if n.isdigit():
        if len(n) < 4:
            raise InvalidInput(f"eSIM {name!r}: give at least 4 digits of the ICCID")
        by_suffix = [e for e in esims if e.iccid.endswith(n)]
        if len(by_suffix) == 1:
            return by_suffix[0]
        if len(by_suffix) > 1:
            raise InvalidInput(
                f"eSIM {name!r} is ambiguous: matches {', '.join(e.iccid for e in by_suffix)}"
            )
    if len(by_label) > 1:
        raise InvalidInput(f"label {name!r} is ambiguous: give the ICCID")
    known = ", ".join(e.label or e.iccid[-6:] for e in esims) or "none"
    raise NotFound(f"no eSIM named {name!r} (eSIMs: {known})")


def resolve_esim(env: Env, name: str, accounts: tuple[str, ...] = ()) -> Esim:
    """Find an eSIM by name, from the cache while fresh, fetching if needed."""
    chosen = select_accounts(env, accounts)
    fetched = fetch_esims(env, chosen)
    esims = [e for lst in fetched.results.values() for e in lst]
    try:
        return match_esim(name, esims)
    except InvalidInput:
        if fetched.errors:
            raise fetched.errors[0] from None
        raise


# -- attention -------------------------------------------------------------------------------


def forecast_of(env: Env, e: Esim) -> Forecast | None:
    """When ``e`` runs out at the pace of its recent use (``esimctl.forecast``): from the
    readings in the ledger and the figures in hand. None for an eSIM that cannot run out
    or has too little history."""
    from esimctl import forecast

    if not forecast.forecastable(e) or e.data_remaining_bytes is None:
        return None
    now = env.now()
    told = env.ledger.readings(e.account, e.iccid, since=now - forecast.WINDOW)
    readings = [forecast.Reading(at, left, total) for at, left, total in told]
    readings.append(forecast.Reading(e.as_of or now, e.data_remaining_bytes, e.data_total_bytes))
    return forecast.forecast(readings, now=now, expires_at=e.expires_at)


def attention_for(
    e: Esim,
    cfg: AttentionConfig,
    now: datetime,
    *,
    pending_since: datetime | None = None,
    stale: bool = False,
    forecast: Forecast | None = None,
) -> list[str]:
    """Why ``e`` needs attention; ``stale``: its figures are old ones, kept because the
    provider could not be asked now; ``forecast``: when it runs out at its pace."""
    reasons: list[str] = []
    # A day pass or an unlimited plan: no data figure of it can run low or run out (its
    # expiry still counts).
    no_data_figure = e.never_runs_out
    if e.state == EsimState.EXPIRED:
        reasons.append(Attention.EXPIRED)
    elif e.state == EsimState.DEPLETED and not (
        no_data_figure and (e.expires_at is None or e.expires_at > now)
    ):
        reasons.append(Attention.DEPLETED)
    if e.state in (EsimState.ACTIVE, EsimState.NOT_ACTIVE) and not no_data_figure:
        rem, tot = e.data_remaining_bytes, e.data_total_bytes
        if rem is not None and e.state == EsimState.ACTIVE:
            low_abs = rem < cfg.low_data_bytes
            low_pct = bool(tot) and rem * 100 < cfg.low_data_percent * (tot or 0)
            if low_abs or low_pct:
                reasons.append(Attention.LOW_DATA)
    if (
        e.state == EsimState.ACTIVE
        and e.expires_at is not None
        and now <= e.expires_at <= now + cfg.expiring_within
    ):
        reasons.append(Attention.EXPIRING_SOON)
    if pending_since is not None:
        if now - pending_since >= cfg.pending_overdue:
            reasons.append(Attention.TOPUP_OVERDUE)
        else:
            reasons.append(Attention.TOPUP_PENDING)
    if (
        forecast is not None
        and not no_data_figure
        and forecast.runs_out_at is not None
        and forecast.runs_out_before_expiry is not False
        and forecast.runs_out_at - now <= cfg.runs_out_within
    ):
        reasons.append(Attention.RUNS_OUT_SOON)
    if stale:
        reasons.append(Attention.STALE)
    return [str(r) for r in reasons]
