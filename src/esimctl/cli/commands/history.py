"""``esimctl history``: every order, from the providers and the local ledger, newest first.

History outlives accounts: the ledger's orders of an account no longer in config (``account
remove``) are listed too, marked ``account_removed``, and ``--account`` finds them by name.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal

from esimctl import parsing
from esimctl.config import AccountConfig
from esimctl.env import Env
from esimctl.errors import InvalidInput, NotFound
from esimctl.ledger import LedgerOrder
from esimctl.models import Money, Order, OrderState
from esimctl.output import human
from esimctl.output.emit import Column, Table
from esimctl.output.human import esc
from esimctl.providers.base import Capability, Provider
from esimctl.serialize import esim_from_cache, iso, order_json
from esimctl.service import fan_out, match_esim, select_accounts, with_label

from .common import Result


@dataclass(frozen=True)
class HistoryOptions:
    esim: str | None = None
    accounts: tuple[str, ...] = ()
    since: str | None = None
    limit: int | None = None
    local_only: bool = False


def _esim_filter(env: Env, name: str, orders: list[Order]) -> str:
    """An eSIM name for history: ICCID, suffix or label, known from orders or the cache."""
    esims = [esim_from_cache(d) for d in env.ledger.latest_snapshots()]
    if esims:
        try:
            return match_esim(name, [with_label(env, e) for e in esims]).iccid
        except InvalidInput:
            pass
    n = name.strip()
    iccids = {o.iccid for o in orders if o.iccid}
    if n in iccids:
        return n
    if n.isdigit() and len(n) >= 4:
        hits = [i for i in iccids if i.endswith(n)]
        if len(hits) == 1:
            return hits[0]
    raise InvalidInput(f"no eSIM named {name!r} in the history")


def _accounts(
    env: Env, names: tuple[str, ...], rows: list[LedgerOrder]
) -> tuple[list[AccountConfig], set[str]]:
    """The configured accounts to ask, and the removed accounts whose ledger orders to show.

    A name that is neither configured nor in the ledger is an unknown account, as elsewhere.
    """
    configured = {a.name for a in env.config.accounts()}
    in_ledger = {r.account for r in rows}
    if not names:
        return select_accounts(env, None), in_ledger - configured
    removed = set()
    for n in names:
        if n not in configured and n in in_ledger:
            removed.add(n)
        elif n not in configured:
            try:
                env.config.account(n)  # the usual error, naming the accounts there are
            except NotFound as exc:
                raise NotFound(f"{exc.message}; no orders of it in the ledger") from None
    return [env.config.account(n) for n in names if n in configured], removed


def merge(local: list[Order], remote: list[Order]) -> list[Order]:
    """One row per order: a local journal row and the provider's record of it are one."""
    by_id = {(o.account, o.id): o for o in remote}
    by_ref = {(o.account, o.reference): o for o in remote if o.reference}
    out: list[Order] = []
    seen: set[tuple[str, str]] = set()
    for o in local:
        twin = by_id.get((o.account, o.id)) or by_ref.get((o.account, o.reference or ""))
        if twin is not None:
            seen.add((twin.account, twin.id))
            if twin.state == OrderState.COMPLETED and o.state == OrderState.PENDING:
                o = Order(**{**o.__dict__, "state": OrderState.COMPLETED})
        out.append(o)
    out.extend(o for o in remote if (o.account, o.id) not in seen)
    out.sort(key=lambda o: o.created_at, reverse=True)
    return out


def totals(orders: list[Order]) -> list[dict[str, str]]:
    sums: dict[str, Decimal] = defaultdict(Decimal)
    for o in orders:
        if o.price and o.state in (OrderState.COMPLETED, OrderState.PENDING):
            sums[o.price.currency] += o.price.amount
    return [Money(v, k).to_json() for k, v in sorted(sums.items())]


def run_history(opts: HistoryOptions, env: Env) -> Result:
    if opts.limit is not None and opts.limit < 0:
        raise InvalidInput("--limit must be 0 (all) or more")
    since = parsing.when(opts.since, now=env.now()) if opts.since else None
    rows = env.orders.kept()
    accounts, removed = _accounts(env, opts.accounts, rows)
    names = {a.name for a in accounts} | removed
    local = [
        r.to_order()
        for r in rows
        if r.account in names and (since is None or r.created_at >= since)
    ]

    async def remote(p: Provider) -> list[Order]:
        if Capability.ORDERS not in p.capabilities or opts.local_only:
            return []
        return await p.orders()

    fetched = fan_out(env, accounts, remote)
    provider_orders = [o for lst in fetched.results.values() for o in lst]
    if since:
        provider_orders = [o for o in provider_orders if o.created_at >= since]
    orders = merge(local, provider_orders)
    if opts.esim:
        iccid = _esim_filter(env, opts.esim, orders)
        orders = [o for o in orders if o.iccid == iccid]
    if opts.limit:
        orders = orders[: opts.limit]
    records = [{**order_json(o), "account_removed": o.account in removed} for o in orders]
    sums = totals(orders)
    table = Table(
        [
            Column("DATE"),
            Column("ACCOUNT", hide_if_uniform=True, optional=3),
            Column("ICCID"),
            Column("PLAN", no_wrap=False, min_width=12),
            Column("PRICE", justify="right"),
            Column("STATE"),
            Column("ORDER", optional=1),
            Column("SOURCE", optional=2),
        ]
    )
    colours = {"completed": "green", "pending": "yellow", "failed": "red"}
    for o in orders:
        gone = o.account in removed
        table.add(
            (human.local_time(o.created_at), _iso(o)),
            (f"{esc(o.account)} [dim](removed)[/]", o.account) if gone else o.account,
            o.iccid or "—",
            o.plan or o.plan_id or "—",
            human.money(o.price),
            (f"[{colours.get(o.state.value, 'dim')}]{o.state.value}[/]", o.state.value),
            o.id,
            o.source,
        )
    if sums and env.stdout_tty:
        table.footer.append("total: " + ", ".join(f"{t['amount']} {t['currency']}" for t in sums))
    shown_removed = sorted({o.account for o in orders if o.account in removed})
    if shown_removed and env.stdout_tty:
        table.footer.append(
            f"[dim]from removed account(s) {esc(', '.join(shown_removed))}: kept in the ledger[/]"
        )
    return Result(
        command="history",
        data={"orders": records, "totals": sums},
        table=table,
        errors=list(fetched.errors),
        exit_code=fetched.exit_code,
        records=records,
        empty="no orders yet",
    )


def _iso(o: Order) -> str:
    return iso(o.created_at) or ""
