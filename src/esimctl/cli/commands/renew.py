"""``esimctl renew``: buy a top-up once, safely, and confirm that it was applied."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

from esimctl import parsing, purchase, rules
from esimctl.env import Env
from esimctl.errors import (
    EsimctlError,
    Interrupted,
    InvalidInput,
    LimitRefused,
)
from esimctl.ledger import LedgerOrder
from esimctl.lock import RenewLock
from esimctl.models import Esim, Money, Order, OrderState, Plan
from esimctl.output import human
from esimctl.output.human import esc
from esimctl.providers.base import Capability, Provider
from esimctl.serialize import order_json
from esimctl.service import open_provider, past_deadline

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
    accept_charge: str | None = None


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
    """A price cap on a plan (``purchase.check_price`` names the plan)."""
    purchase.check_price(plan.price, cap, where=where, what=what or repr(plan.name))


def limits_for(env: Env, cap: Money | None) -> purchase.Limits:
    """The limits of a purchase by hand: ``--max-price`` and ``[renewal] monthly_budget``."""
    return purchase.Limits(
        caps=((cap, "--max-price"),) if cap is not None else (),
        budgets=(purchase.Budget(rules.load(env.config).monthly_budget, "[renewal]"),),
        # A price the seller did not say (or said in a way no one can read) is never bought.
        require_price=True,
    )


def dry_run_order(env: Env, esim: Esim, plan: Plan, *, order_id: str = "dry-run") -> Order:
    """The order a dry run reports: what would be bought, with state ``dry_run``."""
    return Order(
        id=order_id,
        account=esim.account,
        provider=esim.provider,
        iccid=esim.iccid,
        plan_id=plan.id,
        plan=plan.name,
        price=plan.price,
        created_at=env.now(),
        state=OrderState.DRY_RUN,
        source="local",
    )


describe = purchase.describe


def ensure_writable(env: Env) -> None:
    """A purchase writes its journal first: a home esimctl cannot write is refused before
    anything is asked of a provider."""
    from esimctl.paths import unwritable

    for where, what in (
        (env.paths.data_dir, "its ledger (the purchase journal)"),
        (env.paths.state_dir, "its renewal lock"),
    ):
        problem = unwritable(where, what=what)
        if problem is not None:
            raise problem


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
    provider = open_provider(env, env.config.account(esim.account))
    if Capability.MANUAL in provider.capabilities:
        from .renew_manual import run_manual_renew

        return run_manual_renew(opts, env, provider, esim)
    if not opts.plan:
        raise InvalidInput(
            f"name the plan: esimctl renew {opts.esim} --plan PLAN "
            f"('esimctl plans {opts.esim}' lists them)"
        )
    progress = purchase.Progress()
    try:
        with purchase.sigterm_as_interrupt():
            return asyncio.run(_renew(opts, env, provider, esim, cap, timeout, progress))
    except KeyboardInterrupt:
        # A second Ctrl-C stops at once, even mid-request: still never hide money.
        return interrupted_result(env, progress)
    except EsimctlError as exc:
        raise exc.for_account(provider.account, provider.id) from None


def _accept_charge(opts: RenewOptions, env: Env) -> Result:
    if opts.esim or opts.plan or opts.auto:
        raise InvalidInput("--accept-charge ORDER takes nothing else: no eSIM, plan or --auto")
    row = purchase.accept_charge(env, opts.accept_charge or "")
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
    progress: purchase.Progress,
) -> Result:
    limits = limits_for(env, cap)
    async with provider:
        deadline = env.config.network().deadline
        try:
            plans = await asyncio.wait_for(provider.topups(esim), deadline.total_seconds())
        except TimeoutError:
            raise past_deadline(
                provider.display_name,
                deadline,
                provider.account,
                provider.id,
                then="; nothing bought",
            ) from None
        plan = pick_plan(plans, opts.plan or "")
        what = f"{plan.name} for {human.money(plan.price)} on {describe(esim)}"
        if opts.dry_run:
            purchase.check_limits(env, limits, esim, plan)
            order = dry_run_order(env, esim, plan)
            return Result(
                command="renew",
                data={"order": order_json(order), "applied": False},
                lines=[f"dry run: would buy {esc(what)}; nothing bought"],
            )
        # Checked before asking, so nobody is asked about what would be refused, and again
        # in the lock (buy_once), where another run cannot change the answer meanwhile.
        accepted = purchase.check_duplicate(env, esim, plan, again=opts.again)
        purchase.check_limits(env, limits, esim, plan)
        confirm(env, f"Buy {what}?", yes=opts.yes)
        try:
            with RenewLock(env.paths.lock_file, wait=opts.wait):
                bought = await purchase.buy_once(
                    env,
                    provider,
                    esim,
                    plan,
                    limits=limits,
                    again=opts.again,
                    accepted=accepted,
                    progress=progress,
                )
                row = env.ledger.update_order(bought.row.id, detail={"reported": True})
                env.ledger.cache_drop(provider.account)
        except (asyncio.CancelledError, KeyboardInterrupt):
            return interrupted_result(env, progress)
        problem: EsimctlError | None = None
        if bought.over_limit is not None:
            problem = LimitRefused(
                f"charged beyond your limit: {bought.over_limit}. The order was placed; check "
                f"it with the seller, then 'esimctl renew --accept-charge {row.to_order().id}' "
                "lets renew --auto buy for this eSIM again",
                code="charged_over_limit",
            )
        # The order is in the ledger as pending: waiting needs no lock, and whatever
        # stops the wait (Ctrl-C, an error) still reports what was bought.
        try:
            applied = await _verify(env, provider, row, timeout)
        except (asyncio.CancelledError, KeyboardInterrupt):
            applied = False
            problem = Interrupted(
                f"interrupted while waiting: {row.plan} on {describe(esim)} was bought (order "
                f"{row.to_order().id}, {human.money(row.price)}) and is pending; 'esimctl "
                "status' shows it when the provider applies it"
            )
        except EsimctlError as exc:
            applied = False
            problem = problem or exc.for_account(provider.account, provider.id)
        row = env.ledger.order(row.id)
    result = renew_result(env, row, applied, esim, earlier=bought.earlier)
    if problem is not None:
        result.errors.append(problem)
        result.exit_code = problem.exit_code
    return result


def interrupted_result(env: Env, progress: purchase.Progress) -> Result:
    """Ctrl-C or SIGTERM during a purchase: never hide money. Before the request, nothing
    was bought; after it, the order as placed (in the JSON envelope too), exit 130."""
    message, row = purchase.interrupted_message(progress, env)
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
