"""``esimctl plans``: what can be bought for one eSIM, or for a country."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from esimctl import parsing
from esimctl.env import Env
from esimctl.errors import InvalidInput
from esimctl.models import Plan
from esimctl.output import human
from esimctl.output.emit import Column, Table
from esimctl.providers.base import Capability, Provider
from esimctl.serialize import plan_json
from esimctl.service import (
    Fanout,
    fan_out,
    fetch_catalogues,
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


def _sort_key(sort: str):  # type: ignore[no-untyped-def]
    big = Decimal("1e30")

    def key(p: Plan) -> tuple[object, ...]:
        cur = p.price.currency if p.price else "~"
        if sort == "price":
            return (cur, p.price.amount if p.price else big)
        if sort == "price-per-gb":
            return (cur, price_per_gb(p) or big)
        if sort == "data":
            return (-(p.data_bytes or 0) if not p.unlimited else -(10**18),)
        return (-(p.validity_days or 0),)

    return key


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
    if opts.esim:
        esim = resolve_esim(env, opts.esim, opts.accounts)
        account = env.config.account(esim.account)

        async def topups(p: Provider) -> list[Plan]:
            if Capability.TOPUPS not in p.capabilities:
                raise p._unsupported("top-ups for an eSIM")
            plans = await p.topups(esim)
            notes.extend(getattr(p, "rejected_plans", ()))  # a price no one could charge
            return plans

        result = fan_out(env, [account], topups)
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
        plans = [p for p in plans if (p.validity_days or 0) >= opts.min_days]
    if min_data is not None:
        plans = [p for p in plans if p.unlimited or (p.data_bytes or 0) >= min_data]
    plans.sort(key=_sort_key(opts.sort))
    records = [plan_json(p) for p in plans]
    table = Table(
        [
            Column("ID", style="bold"),
            Column("NAME", no_wrap=False, min_width=12),
            Column("DATA", justify="right"),
            Column("DAYS", justify="right"),
            Column("PRICE", justify="right"),
            Column("PER GB", justify="right"),
            Column("PER DAY", justify="right", optional=2),
            Column("KIND", no_wrap=False, min_width=8, optional=1),
            Column("ACCOUNT", hide_if_uniform=True, optional=3),
        ]
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
            "unlimited" if p.unlimited else human.size(p.data_bytes, p.unit_base),
            str(p.validity_days or "?"),
            human.money(p.price),
            f"{ppg} {p.price.currency}" if ppg is not None and p.price else "—",
            f"{per_day} {p.price.currency}" if per_day is not None and p.price else "—",
            ("[yellow]new eSIM[/]", "new") if p.kind == "new" else (kind, p.stacking or "topup"),
            p.account,
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
