"""``esimctl renew``: buy a top-up once, safely, and confirm that it was applied."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

from esimctl import parsing, purchase, rules
from esimctl.env import Env
from esimctl.errors import EsimctlError, Interrupted, InvalidInput, LimitRefused
from esimctl.ledger import LedgerOrder
from esimctl.lock import RenewLock
from esimctl.models import Esim, Money, Order, OrderState, Plan
from esimctl.output import human
from esimctl.providers.base import Capability, Provider
from esimctl.serialize import order_json
from esimctl.service import open_provider

from .common import Result, confirm
from .plans import resolve_esim


@dataclass(frozen=True)
class RenewOptions:
    esim: str | None = None
    plan: str | None = None
    yes: bool = False
    dry_run: bool = False
    max_price: str | None = None
    timeout: str = "30m"
    wait: float = 0.0
    auto: bool = False
    accounts: tuple[str, ...] = ()
    # manual sellers (no API): what the user bought on the seller's page
    no_browser: bool = False
    data: str | None = None
    days: int | None = None
    price: str | None = None
    order_number: str | None = None
    again: bool = False


def pick_plan(plans: list[Plan], wanted: str) -> Plan:
    exact = [p for p in plans if p.id == wanted]
    if exact:
        return exact[0]
    by_name = [p for p in plans if p.name.lower() == wanted.lower()]
    if len(by_name) == 1:
        return by_name[0]
    ids = ", ".join(p.id for p in plans[:12]) + (" …" if len(plans) > 12 else "")
    raise InvalidInput(
        f"unknown plan {wanted!r} for this eSIM (plans: {ids or 'none'}); "
        "'esimctl plans ESIM' lists them"
    )


def check_price(
    plan: Plan, cap: Money | None, *, where: str = "--max-price", what: str | None = None
) -> None:
    """A price cap (``--max-price``, a rule's ``max_price``): exit 5 beyond it, or when the
    plan's price is unknown or in another currency (prices are never converted)."""
    if cap is None:
        return
    what = what or repr(plan.name)
    if plan.price is None:
        raise LimitRefused(f"refused: the price of {what} is unknown and {where} is set")
    if plan.price.currency != cap.currency:
        raise LimitRefused(f"refused: {what} costs {plan.price}, {where} is in {cap.currency}")
    if plan.price.amount > cap.amount:
        raise LimitRefused(f"refused: {what} costs {plan.price}, above {where} ({cap})")


def dry_run_order(
    env: Env, provider: Provider, esim: Esim, plan: Plan, *, order_id: str = "dry-run"
) -> Order:
    """The order a dry run reports: what would be bought, with state ``dry_run``."""
    return Order(
        id=order_id,
        account=provider.account,
        provider=provider.id,
        iccid=esim.iccid,
        plan_id=plan.id,
        plan=plan.name,
        price=plan.price,
        created_at=env.now(),
        state=OrderState.DRY_RUN,
        source="local",
    )


def describe(esim: Esim) -> str:
    return f"{esim.label} ({esim.iccid})" if esim.label else esim.iccid


def run_renew(opts: RenewOptions, env: Env) -> Result:
    if opts.auto:
        from .renew_auto import run_auto

        return run_auto(opts, env)
    if not opts.esim:
        raise InvalidInput("name the eSIM to renew: esimctl renew ESIM --plan PLAN (or --auto)")
    cap = parsing.money(opts.max_price) if opts.max_price else None
    timeout = parsing.duration(opts.timeout) if opts.timeout else timedelta(0)
    esim = resolve_esim(env, opts.esim, opts.accounts)
    provider = open_provider(env, env.config.account(esim.account))
    if Capability.MANUAL in provider.capabilities:
        from .renew_manual import run_manual_renew

        return run_manual_renew(opts, env, provider, esim)
    if not opts.plan:
        raise InvalidInput(
            f"name the plan: esimctl renew {opts.esim} --plan PLAN "
            f"('esimctl plans {opts.esim}' lists them)"
        )
    try:
        return asyncio.run(_renew(opts, env, provider, esim, cap, timeout))
    except EsimctlError as exc:
        raise exc.for_account(provider.account, provider.id) from None


async def _renew(
    opts: RenewOptions,
    env: Env,
    provider: Provider,
    esim: Esim,
    cap: Money | None,
    timeout: timedelta,
) -> Result:
    async with provider:
        plans = await provider.topups(esim)
        plan = pick_plan(plans, opts.plan or "")
        check_price(plan, cap)
        if opts.dry_run:
            order = dry_run_order(env, provider, esim, plan)
            return Result(
                command="renew",
                data={"order": order_json(order), "applied": False},
                lines=[
                    f"dry run: would buy {plan.name} for {human.money(plan.price)} "
                    f"on {describe(esim)}; nothing bought"
                ],
            )
        purchase.check_month_budget(
            env,
            rules.load(env.config).monthly_budget,
            plan.price,
            f"{plan.name} for {describe(esim)}",
        )
        confirm(
            env, f"Buy {plan.name} for {human.money(plan.price)} on {describe(esim)}?", yes=opts.yes
        )
        with RenewLock(env.paths.lock_file, wait=opts.wait):
            await purchase.reconcile(env, provider)
            # A retry after "outcome unknown" is the same intent: if the earlier request
            # went through after all (found now, or by another run since), report that
            # order instead of buying a second one.
            earlier = purchase.unreported_found(env, provider.account, esim.iccid, plan.id)
            if earlier is None:
                refuse_duplicate(env, esim, plan, again=opts.again)
                before = await provider.get_esim(esim.iccid)
                row = await purchase.buy(env, provider, before, plan)
            else:
                row = earlier
            row = env.ledger.update_order(row.id, detail={"reported": True})
            env.ledger.cache_drop(provider.account)
        # The order is in the ledger as pending: waiting needs no lock, and whatever
        # stops the wait (Ctrl-C, an error) still reports what was bought.
        problem: EsimctlError | None = None
        try:
            applied = await _verify(env, provider, row, timeout)
        except KeyboardInterrupt:
            applied = False
            problem = Interrupted(
                "interrupted while waiting: the top-up was bought and is pending; "
                "'esimctl status' keeps checking it"
            )
        except EsimctlError as exc:
            applied = False
            problem = exc.for_account(provider.account, provider.id)
        row = env.ledger.order(row.id)
    result = renew_result(env, row, applied, esim, earlier=earlier is not None)
    if problem is not None:
        result.errors.append(problem)
        result.exit_code = problem.exit_code
    return result


def refuse_duplicate(env: Env, esim: Esim, plan: Plan, *, again: bool) -> None:
    """The same top-up still pending on the same eSIM is most likely the same intent."""
    if again:
        return
    for row in env.ledger.orders(
        account=esim.account, iccid=esim.iccid, states=(OrderState.PENDING.value,)
    ):
        if row.plan_id == plan.id:
            raise LimitRefused(
                f"refused: {plan.name} bought {human.ago(row.created_at, env.now())} on "
                f"{describe(esim)} is still pending (order {row.to_order().id}); wait for it "
                "('esimctl status'), or pass --again to buy another"
            )


async def _verify(env: Env, provider: Provider, row: LedgerOrder, timeout: timedelta) -> bool:
    if not env.show_progress:
        return await purchase.verify(env, provider, row, timeout=timeout)
    with env.err.status("waiting for the provider to show the top-up…") as status:

        def tick(remaining: float) -> None:
            status.update(
                "waiting for the provider to show the top-up… "
                f"(giving up in {human.relative(timedelta(seconds=remaining))})"
            )

        return await purchase.verify(env, provider, row, timeout=timeout, on_wait=tick)


def renew_result(
    env: Env, row: LedgerOrder, applied: bool, esim: Esim, *, earlier: bool = False
) -> Result:
    order = row.to_order()
    if earlier:
        lines = [
            f"[green]✓[/] the earlier purchase of {row.plan} on {describe(esim)} went through "
            f"(order {order.id}): not bought again"
        ]
    else:
        lines = [
            f"[green]✓[/] bought {row.plan} for {human.money(row.price)} on {describe(esim)} "
            f"(order {order.id})"
        ]
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
