"""``esimctl renew``: buy a top-up once, safely, and confirm that it was applied.

The purchase itself is ``purchasing.pipeline.buy_once``; this module decides what to buy
(the plan named), asks, and presents what happened. ``--auto`` is ``renew_auto``; a
seller without an API is ``renew_manual``.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from esimctl import parsing
from esimctl.env import Env
from esimctl.errors import EsimctlError, Interrupted, InvalidInput, LimitRefused, Unsupported
from esimctl.ledger import LedgerOrder
from esimctl.models import Esim, Money, Plan
from esimctl.output import human
from esimctl.output.human import describe, esc
from esimctl.providers.base import Capability, Provider
from esimctl.purchasing import pipeline
from esimctl.purchasing.limits import check_limits
from esimctl.serialize import order_json
from esimctl.service import past_deadline, remember_topups, resolve_esim

from .common import Result, confirm
from .renew_common import (
    RenewOptions,
    ask_days,
    ensure_writable,
    limits_for,
    per_day_price,
    pick_plan,
)


def run_renew(opts: RenewOptions, env: Env) -> Result:
    if not opts.dry_run:
        ensure_writable(env)
    if opts.accept_charge:
        return _accept_charge(opts, env)
    if opts.auto:
        from .renew_auto import run_auto

        return run_auto(opts, env)
    if not opts.esim:
        raise InvalidInput("name the eSIM to renew: esimctl renew ESIM --plan PLAN (or --auto)")
    cap = parsing.money(opts.max_price) if opts.max_price else None
    timeout = parsing.duration(opts.timeout) if opts.timeout else timedelta(0)
    esim = resolve_esim(env, opts.esim, opts.accounts)
    account = env.config.account(esim.account)
    provider = env.session.run(env.session.provider(account))
    if Capability.MANUAL in provider.capabilities:
        from .renew_manual import run_manual_renew

        return run_manual_renew(opts, env, provider, esim)
    if Capability.BUY_TOPUP not in provider.capabilities:
        raise Unsupported(
            f"{provider.display_name} top-ups cannot be bought through esimctl; renew "
            f"{describe(esim)} with the seller",
            account=provider.account,
            provider=provider.id,
        )
    if not opts.plan and not env.can_prompt:
        # On a terminal the top-ups are offered (renew_menu); a script names its plan.
        raise InvalidInput(
            f"name the plan: esimctl renew {opts.esim} --plan PLAN "
            f"('esimctl plans {opts.esim}' lists them)"
        )
    progress = pipeline.Progress()
    try:
        with pipeline.sigterm_as_interrupt():
            return env.session.run(_renew(opts, env, provider, esim, cap, timeout, progress))
    except KeyboardInterrupt:
        # A second Ctrl-C stops at once, even mid-request: still never hide money.
        return interrupted_result(env, progress)
    except EsimctlError as exc:
        raise exc.for_account(provider.account, provider.id) from None


def _plan(env: Env, esim: Esim, plans: list[Plan], wanted: str | None) -> Plan:
    """The plan named by ``--plan``, or (on a terminal, without it) the one chosen."""
    remember_topups(env, esim, plans)  # for shell completion of --plan
    if wanted:
        return pick_plan(plans, wanted)
    from .renew_menu import choose_plan

    return choose_plan(env, esim, plans)


def _accept_charge(opts: RenewOptions, env: Env) -> Result:
    if opts.esim or opts.plan or opts.auto:
        raise InvalidInput("--accept-charge ORDER takes nothing else: no eSIM, plan or --auto")
    row = pipeline.accept_charge(env, opts.accept_charge or "")
    order = row.to_order()
    return Result(
        command="renew",
        data={"order": order_json(order), "accepted": True},
        lines=[
            f"accepted: order {esc(order.id)} ({esc(row.plan or '?')}, "
            f"{human.money(row.price)}); renew --auto buys for this eSIM again"
        ],
    )


async def _renew(
    opts: RenewOptions,
    env: Env,
    provider: Provider,
    esim: Esim,
    cap: Money | None,
    timeout: timedelta,
    progress: pipeline.Progress,
) -> Result:
    deadline = env.config.network().deadline
    try:
        plans = await asyncio.wait_for(provider.topups(esim), deadline.total_seconds())
    except TimeoutError:
        raise past_deadline(
            provider.display_name, deadline, provider.account, provider.id, then="; nothing bought"
        ) from None
    # A day pass: bought for --days N (asked on a terminal); N × its price is what counts.
    plan = ask_days(env, _plan(env, esim, plans, opts.plan), opts.days, yes=opts.yes)
    what = f"{plan.name} for {human.money(plan.price)} on {describe(esim)}"
    if plan.days is not None:
        what += f" ({plan.days} days at {per_day_price(plan)})"
    purchase = pipeline.Purchase(esim, plan, limits_for(env, cap), again=opts.again)
    if opts.dry_run:
        check_limits(env.orders, purchase.limits, esim, plan)
        order = pipeline.dry_run_order(env, esim, plan)
        return Result(
            command="renew",
            data={"order": order_json(order), "applied": False},
            lines=[f"dry run: would buy {esc(what)}; nothing bought"],
        )
    try:
        bought = await pipeline.buy_asked(
            env,
            provider,
            purchase,
            ask=lambda: confirm(env, f"Buy {what}?", yes=opts.yes),
            wait=opts.wait,
            progress=progress,
        )
    except (asyncio.CancelledError, KeyboardInterrupt):
        return interrupted_result(env, progress)
    row = bought.row
    problem: EsimctlError | None = None
    if bought.over_limit is not None:
        problem = LimitRefused(
            f"charged beyond your limit: {bought.over_limit}. The order was placed; check "
            f"it with the seller, then 'esimctl renew --accept-charge {bought.order_id}' "
            "lets renew --auto buy for this eSIM again",
            code="charged_over_limit",
        )
    # The order is in the book as pending: waiting needs no lock, and whatever stops the
    # wait (Ctrl-C, an error) still reports what was bought.
    try:
        applied = await _verify(env, provider, row, timeout)
    except (asyncio.CancelledError, KeyboardInterrupt):
        applied = False
        problem = Interrupted(
            f"interrupted while waiting: {row.plan} on {describe(esim)} was bought (order "
            f"{bought.order_id}, {human.money(row.price)}) and is pending; 'esimctl "
            "status' shows it when the provider applies it"
        )
    except EsimctlError as exc:
        applied = False
        problem = problem or exc.for_account(provider.account, provider.id)
    result = renew_result(env.orders.get(row.id), applied, esim, earlier=bought.earlier)
    if problem is not None:
        result.errors.append(problem)
        result.exit_code = problem.exit_code
    return result


def interrupted_result(env: Env, progress: pipeline.Progress) -> Result:
    """Ctrl-C or SIGTERM during a purchase: never hide money. Before the request, nothing
    was bought; after it, the order as placed (in the JSON envelope too), exit 130."""
    message, row = pipeline.interrupted_message(progress, env)
    data = None if row is None else {"order": order_json(row.to_order()), "applied": False}
    return Result(
        command="renew",
        data=data or {"order": None, "applied": False},
        errors=[Interrupted(message)],
        exit_code=Interrupted.exit_code,
        lines=[],
    )


async def _verify(env: Env, provider: Provider, row: LedgerOrder, timeout: timedelta) -> bool:
    if not env.show_progress:
        return await pipeline.verify(env, provider, row, timeout=timeout)
    with env.err.status("waiting for the provider to show the top-up…") as status:

        def tick(remaining: float) -> None:
            status.update(
                "waiting for the provider to show the top-up… "
                f"(giving up in {human.relative(timedelta(seconds=remaining))})"
            )

        return await pipeline.verify(env, provider, row, timeout=timeout, on_wait=tick)


def renew_result(row: LedgerOrder, applied: bool, esim: Esim, *, earlier: bool = False) -> Result:
    order = row.to_order()
    if earlier:
        lines = [
            f"[green]✓[/] the earlier purchase of {esc(row.plan or '?')} on "
            f"{esc(describe(esim))} went through (order {esc(order.id)}): not bought again"
        ]
    else:
        lines = [
            f"[green]✓[/] bought {esc(row.plan or '?')} for {human.money(row.price)} on "
            f"{esc(describe(esim))} (order {esc(order.id)})"
        ]
        note = row.detail.get("price_note")
        if note:
            lines.append(f"[yellow]![/] {esc(str(note))}")
    if applied:
        lines.append("[green]✓ applied[/]: the provider shows the new package")
    else:
        lines.append(
            "[yellow]! pending[/]: the provider does not show it yet; "
            "'esimctl status' keeps checking and flags it"
        )
    return Result(
        command="renew",
        data={"order": order_json(order), "applied": applied},
        lines=lines,
    )
