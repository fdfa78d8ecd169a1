"""``esimctl history``: every order, from the providers and the local ledger, newest first.

History outlives accounts: the ledger's orders of an account no longer in config (``account
remove``) are listed too, marked ``account_removed``, and ``--account`` finds them by name.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from esimctl import parsing
from esimctl.config import AccountConfig
from esimctl.env import Env
from esimctl.errors import InvalidInput, NotFound
from esimctl.ledger import LedgerOrder
from esimctl.models import Esim, Money, Order, OrderState
from esimctl.output import human
from esimctl.output.emit import Cell, Column, Table
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


def _known_esims(env: Env) -> list[Esim]:
    """The eSIMs esimctl has seen (the ledger's last figures), with their labels."""
    return [with_label(env, esim_from_cache(d)) for d in env.ledger.latest_snapshots()]


def _esim_filter(name: str, orders: list[Order], esims: list[Esim]) -> str:
    """An eSIM name for history: ICCID, suffix or label, known from orders or the cache."""
    if esims:
        try:
            return match_esim(name, esims).iccid
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
    known = _known_esims(env)
    if opts.esim:
        iccid = _esim_filter(opts.esim, orders, known)
        orders = [o for o in orders if o.iccid == iccid]
    if opts.limit:
        orders = orders[: opts.limit]
    labels = {e.iccid: e.label for e in known if e.label}
    for o in orders:  # an eSIM no longer listed keeps the label config gives it
        if o.iccid and o.iccid not in labels:
            labels[o.iccid] = env.config.label_for(o.iccid) or ""
    records = [
        {
            **order_json(o),
            "label": labels.get(o.iccid or "") or None,
            "account_removed": o.account in removed,
        }
        for o in orders
    ]
    sums = totals(orders)
    table = _table(orders, labels, removed, env.now())
    if sums:
        table.footer.append("total: " + ", ".join(f"{t['amount']} {t['currency']}" for t in sums))
    shown_removed = sorted({o.account for o in orders if o.account in removed})
    if shown_removed:
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
        empty=_nothing(opts, since),
    )


def _nothing(opts: HistoryOptions, since: datetime | None) -> str:
    """What an empty history says: "no orders yet", or which filter matched nothing."""
    where = []
    if opts.esim:
        where.append(f"for {opts.esim}")
    if opts.accounts:
        where.append(f"on {', '.join(opts.accounts)}")
    if since is not None:
        where.append(f"since {human.local_time(since)}")
    return f"no orders {' '.join(where)}" if where else "no orders yet"


def _table(orders: list[Order], labels: dict[str, str], removed: set[str], now: datetime) -> Table:
    table = Table(
        [
            Column("DATE", stack="flow"),
            Column("LABEL", style="bold", stack="title"),
            Column("ICCID", stack="flow"),
            Column("PLAN", no_wrap=False, min_width=12, stack="line", key=""),
            Column("PRICE", justify="right", stack="badge"),
            Column("STATE", stack="badge"),
            Column("ORDER", stack="flow", stacked="order {}"),
            Column("ACCOUNT", hide_if_uniform=True, stack="flow", stacked="account {}"),
            Column("SOURCE", stack="hide"),
        ],
        # What gives way first on a narrow terminal (docs/commands/history.md): the order id
        # (what the seller's support asks for) and the label stay at 80 columns.
        give_way=[
            ("SOURCE", "drop"),
            ("ICCID", "drop"),  # the label, or the ICCID's end without one, stays
            ("DATE", "short"),  # Nov 24 12:35 this year
            ("PLAN", "flex"),
            ("ACCOUNT", "drop"),
            ("PLAN", "line"),
        ],
        stack_order=["LABEL", "PRICE", "STATE", "PLAN", "DATE", "ORDER", "ACCOUNT", "ICCID"],
        # In a pipe: the fields of before, the label last.
        tsv_order=[
            "DATE",
            "ACCOUNT",
            "ICCID",
            "PLAN",
            "PRICE",
            "STATE",
            "ORDER",
            "SOURCE",
            "LABEL",
        ],
    )
    colours = {"completed": "green", "pending": "yellow", "failed": "red"}
    for o in orders:
        gone = o.account in removed
        iccid = o.iccid or ""
        label = labels.get(iccid, "")
        table.add(
            Cell(
                human.local_time(o.created_at),
                _iso(o),
                short=_short_date(o.created_at, now),
                stacked=_short_date(o.created_at, now),
            ),
            Cell(esc(label or ("…" + iccid[-6:] if iccid else "—")), label),
            ("…" + iccid[-6:], iccid) if iccid else "—",
            o.plan or o.plan_id or "—",
            human.money(o.price),
            (f"[{colours.get(o.state.value, 'dim')}]{o.state.value}[/]", o.state.value),
            o.id,
            (f"{esc(o.account)} [dim](removed)[/]", o.account) if gone else o.account,
            o.source,
        )
    return table


def _short_date(when: datetime, now: datetime) -> str:
    """``Nov 24 12:35`` this year, the full date and time otherwise."""
    if when.astimezone().year == now.astimezone().year:
        return human.short_local_time(when, now)
    return human.local_time(when)


def _iso(o: Order) -> str:
    return iso(o.created_at) or ""
