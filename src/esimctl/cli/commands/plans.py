"""``esimctl plans``: what can be bought for one eSIM, or for a country."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from esimctl import parsing
from esimctl.env import Env
from esimctl.errors import InvalidInput
from esimctl.models import MAX_DAY_PASS_DAYS, AfterAllowance, Esim, Money, Plan
from esimctl.output import human
from esimctl.output.emit import Column, Table
from esimctl.providers.base import Capability, Provider
from esimctl.serialize import plan_json
from esimctl.service import (
    Fanout,
    fan_out,
    fetch_catalogues,
    remember_topups,
    resolve_esim,
    select_accounts,
)

from .common import Result

SORTS = ("price", "price-per-gb", "data", "validity")


@dataclass(frozen=True)
class PlansOptions:
    esim: str | None = None
    country: str | None = None
    accounts: tuple[str, ...] = ()
    sort: str = "price"
    min_days: int | None = None
    min_data: str | None = None
    #: Ask the providers now instead of using catalogues cached within their catalogue_ttl.
    refresh: bool = False


def price_per_gb(p: Plan) -> Decimal | None:
    if p.price is None or not p.data_bytes or p.unlimited:
        return None
    gb = Decimal(p.data_bytes) / Decimal(p.unit_base**3)
    return (p.price.amount / gb).quantize(Decimal("0.01"))


def data_words(p: Plan) -> str:
    """What a plan gives: ``3 GB``, ``unlimited (fair use)``, ``1 GB/day → 1 Mbps`` (then
    slower), ``1 GB/day → off`` (no data until the next day)."""
    d = p.daily
    if d is not None:
        text = f"{human.size(d.bytes, p.unit_base)}/day" if d.bytes else "daily"
        if d.after == AfterAllowance.REDUCED_SPEED:
            return f"{text} → {d.speed or 'slower'}"
        if d.after == AfterAllowance.CUT_OFF:
            return f"{text} → off"
        return text
    if p.unlimited:
        return "unlimited (fair use)" if p.fair_usage else "unlimited"
    return human.size(p.data_bytes, p.unit_base)


_BIG = Decimal("1e30")


def esim_currency(env: Env, esim: Esim) -> str | None:
    """The currency the eSIM's top-ups were paid in (its latest order with a price)."""
    for row in env.ledger.orders(account=esim.account, iccid=esim.iccid):
        if row.price is not None:
            return row.price.currency
    return None


def _in_common(amount: Decimal, currency: str, rates: Mapping[str, Money]) -> Decimal | None:
    """``amount`` of ``currency`` in the one currency of ``[rates]``; None if no rate says."""
    if currency in rates:
        return amount * rates[currency].amount
    if any(r.currency == currency for r in rates.values()):
        return amount  # the common currency itself
    return None


def comparable(plans: Sequence[Plan], rates: Mapping[str, Money]) -> bool:
    """Can the prices of ``plans`` be compared: one currency, or a rate for each?"""
    currencies = {p.price.currency for p in plans if p.price is not None}
    if len(currencies) <= 1:
        return True
    return all(_in_common(Decimal(1), c, rates) is not None for c in currencies)


def sort_plans(
    plans: Sequence[Plan],
    sort: str,
    *,
    rates: Mapping[str, Money] | None = None,
    first: str | None = None,
) -> list[Plan]:
    """``plans`` in the order of ``--sort``. Prices are compared across currencies only
    through the ``[rates]`` of config: with a rate for every currency shown, by value;
    otherwise grouped by currency (``first``, the eSIM's own, first — by default the one most
    plans are priced in; then by code) and by amount within each. A plan without a price
    (or without a price per GB) comes last."""
    if sort == "data":
        return sorted(plans, key=lambda p: -(10**18) if p.unlimited else -(p.data_bytes or 0))
    if sort == "validity":
        return sorted(plans, key=lambda p: -(p.validity_days or 0))
    rates = rates or {}
    by_value = comparable(plans, rates)
    if first is None:
        # No currency paid before: the one most of these plans are priced in.
        counts = Counter(p.price.currency for p in plans if p.price is not None)
        first = min(counts, key=lambda c: (-counts[c], c)) if counts else None

    def key(p: Plan) -> tuple[int, str, Decimal]:
        if p.price is None:
            return (3, "~", _BIG)
        cur = p.price.currency
        amount = p.price.amount if sort == "price" else price_per_gb(p)
        if by_value:
            if amount is None:
                return (1, "", _BIG)
            value = _in_common(amount, cur, rates)
            return (0, "", amount if value is None else value)
        return (0 if cur == first else 1, cur, _BIG if amount is None else amount)

    return sorted(plans, key=key)


def run_plans(opts: PlansOptions, env: Env) -> Result:
    if opts.sort not in SORTS:
        raise InvalidInput(f"invalid --sort {opts.sort!r}: use one of {', '.join(SORTS)}")
    if bool(opts.esim) == bool(opts.country):
        raise InvalidInput("name an eSIM, or pass --country CC (one of the two)")
    min_data = parsing.size(opts.min_data) if opts.min_data else None
    if opts.min_days is not None and opts.min_days < 0:
        raise InvalidInput(f"invalid --min-days {opts.min_days}: use 0 or more")
    result: Fanout[list[Plan]]
    notes: list[str] = []
    first: str | None = None
    if opts.esim:
        esim = resolve_esim(env, opts.esim, opts.accounts)
        first = esim_currency(env, esim)
        account = env.config.account(esim.account)

        async def topups(p: Provider) -> list[Plan]:
            if Capability.TOPUPS not in p.capabilities:
                raise p._unsupported("top-ups for an eSIM")
            plans = await p.topups(esim)
            notes.extend(getattr(p, "rejected_plans", ()))  # a price no one could charge
            return plans

        result = fan_out(env, [account], topups)
        for fetched in result.results.values():
            remember_topups(env, esim, fetched)
        title = f"top-ups for {esim.label or esim.iccid}"
    else:
        country = (opts.country or "").strip().upper()
        if len(country) != 2 or not country.isalpha():
            raise InvalidInput(f"invalid country {opts.country!r}: use a 2-letter code like JP")

        found = fetch_catalogues(
            env, select_accounts(env, opts.accounts), country, refresh=opts.refresh
        )
        result = found.plans
        if found.cached_at:
            ago = human.ago(min(found.cached_at.values()), env.now())
            notes.append(
                f"prices from the catalogue fetched {'just now' if ago == 'now' else ago}; "
                "'--refresh' asks the providers again"
            )
        title = f"plans for {country}"
    plans = [p for lst in result.results.values() for p in lst]
    if opts.min_days is not None:
        # A day pass is bought for as many days as wanted (up to MAX_DAY_PASS_DAYS).
        plans = [
            p
            for p in plans
            if (MAX_DAY_PASS_DAYS if p.per_day else (p.validity_days or 0)) >= opts.min_days
        ]
    if min_data is not None:
        plans = [p for p in plans if p.unlimited or (p.data_bytes or 0) >= min_data]
    rates = env.config.rates()
    plans = sort_plans(plans, opts.sort, rates=rates, first=first)
    if opts.sort.startswith("price") and not comparable(plans, rates):
        shown = sorted({p.price.currency for p in plans if p.price is not None})
        notes.append(
            f"prices in {', '.join(shown)} are sorted within each currency: esimctl compares "
            "currencies only with exchange rates you give ([rates] in config.toml)"
        )
    records = [plan_json(p) for p in plans]
    table = Table(
        [
            Column("ID", style="bold", stack="title"),
            Column("NAME", no_wrap=False, min_width=14, stack="line", key=""),
            Column("DATA", justify="right", stack="flow"),
            Column("DAYS", justify="right", stack="flow", stacked="{} d"),
            Column("PRICE", justify="right", stack="badge"),
            Column("PER GB", justify="right", stack="flow", stacked="{}/GB"),
            Column("PER DAY", justify="right", stack="flow", stacked="{}/day"),
            # The same for every plan (top-ups of one eSIM): a footnote, not a column.
            Column("KIND", stack="flow", uniform_note="[dim]all of these: {}[/]"),
            Column("ACCOUNT", hide_if_uniform=True),
        ],
        # What gives way first on a narrow terminal (docs/commands/plans.md): one line per
        # plan, with its price per GB, at 80 columns.
        give_way=[("PER DAY", "drop"), ("NAME", "flex"), ("KIND", "drop"), ("ACCOUNT", "drop")],
    )
    for p in plans:
        ppg = price_per_gb(p)
        per_day = (
            (p.price.amount / p.validity_days).quantize(Decimal("0.01"))
            if p.price and p.validity_days
            else None
        )
        kind = (
            p.kind
            if p.kind == "new"
            else (
                {"stacks": "adds to current", "queues": "queues after current"}.get(
                    p.stacking or "", "top-up"
                )
            )
        )
        table.add(
            p.id,
            p.name,
            data_words(p),
            f"1–{MAX_DAY_PASS_DAYS}" if p.per_day else str(p.validity_days or "?"),
            f"{human.money(p.price)}/day" if p.per_day else human.money(p.price),
            f"{ppg} {p.price.currency}" if ppg is not None and p.price else "—",
            f"{per_day} {p.price.currency}" if per_day is not None and p.price else "—",
            ("[yellow]new eSIM[/]", "new") if p.kind == "new" else (kind, p.stacking or "topup"),
            p.account,
        )
    passes = [p for p in plans if p.per_day]
    if passes:
        notes.append(
            f"day passes ({', '.join(p.id for p in passes[:3])}{', …' if len(passes) > 3 else ''})"
            f" are priced per day: 'esimctl renew ESIM --plan {passes[0].id} --days N' buys "
            "N days for N × the price"
        )
    return Result(
        command="plans",
        data={"plans": records},
        table=table,
        errors=list(result.errors),
        exit_code=result.exit_code,
        records=records,
        empty=f"no {title}",
        notes=notes,
    )
