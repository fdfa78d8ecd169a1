"""``esimctl buy``: a new eSIM for the next trip, bought with the same safety as a top-up
(``purchasing.pipeline.buy_once``: reconciled, journalled first, within the limits, with
consent), then shown ready to install and tracked from the first minute.

The plan is one of ``esimctl plans --country CC`` of kind ``new``; on a terminal without
a plan, ``buy --country CC`` offers them, sorted as ``plans`` sorts them.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from esimctl import parsing
from esimctl.env import Env
from esimctl.errors import (
    EsimctlError,
    Interrupted,
    InvalidInput,
    LimitRefused,
    Unsupported,
    run_outcome,
)
from esimctl.models import Money, Plan
from esimctl.output import human
from esimctl.output.human import esc
from esimctl.providers.base import Capability, Provider
from esimctl.purchasing import pipeline
from esimctl.purchasing.limits import check_limits
from esimctl.serialize import order_json
from esimctl.service import fetch_catalogues, select_accounts

from .common import Result, ask, confirm
from .install import activation_json, install_lines
from .renew_common import ensure_writable, limits_for
from .values import check_label_free


@dataclass(frozen=True)
class BuyOptions:
    plan: str | None = None
    country: str | None = None
    accounts: tuple[str, ...] = ()
    label: str | None = None
    yes: bool = False
    dry_run: bool = False
    max_price: str | None = None
    again: bool = False
    timeout: str = "5m"
    wait: float = 0.0
    reveal: bool = False


def new_plans(env: Env, opts: BuyOptions) -> list[Plan]:
    """Plans for a new eSIM in ``--country``, from the accounts that can buy them."""
    if not opts.country:
        raise InvalidInput(
            "name the country: esimctl buy --country JP (and --plan PLAN from "
            "'esimctl plans --country JP')"
        )
    country = opts.country.strip().upper()
    if not (len(country) == 2 and country.isalpha()):
        raise InvalidInput(f"invalid country {opts.country!r}: use a 2-letter code like JP")
    accounts = select_accounts(env, opts.accounts)
    found = fetch_catalogues(env, accounts, country)
    if found.plans.errors and not found.plans.results:
        raise found.plans.errors[0]
    return [p for plans in found.plans.results.values() for p in plans if p.kind == "new"]


def pick(env: Env, plans: list[Plan], wanted: str | None) -> Plan:
    from .plans import sort_plans

    if wanted:
        hits = [p for p in plans if p.id == wanted]
        if len(hits) > 1:
            raise InvalidInput(
                f"plan {wanted!r} is sold by {', '.join(p.account for p in hits)}: "
                "choose with --account"
            )
        if hits:
            return hits[0]
        ids = ", ".join(p.id for p in plans[:10]) or "none"
        raise InvalidInput(f"no new eSIM {wanted!r} here (plans: {ids})")
    if not plans:
        raise InvalidInput("no plan for a new eSIM is sold for that country")
    if not env.can_prompt:
        raise InvalidInput(
            "name the plan: esimctl buy --country CC --plan PLAN ('esimctl plans --country CC')"
        )
    offered = sort_plans(plans, "price")[:20]
    for i, p in enumerate(offered, 1):
        data = "unlimited" if p.unlimited else human.size(p.data_bytes, p.unit_base)
        env.err.print(
            f"{i:>3}. {esc(p.name)} · {data} · {p.validity_days or '?'} d · "
            f"{human.money(p.price)} · {esc(p.account)}",
            highlight=False,
        )
    answer = ask(env, f"Which one (1-{len(offered)})? ").strip()
    if not answer.isdigit() or not 1 <= int(answer) <= len(offered):
        raise InvalidInput(f"no plan {answer!r}: give a number from 1 to {len(offered)}")
    return offered[int(answer) - 1]


def run_buy(opts: BuyOptions, env: Env) -> Result:
    if not opts.dry_run:
        ensure_writable(env)
    label = (opts.label or "").strip() or None
    if label:
        check_label_free(env, label)
    cap = parsing.money(opts.max_price) if opts.max_price else None
    timeout = parsing.duration(opts.timeout) if opts.timeout else timedelta(0)
    plan = pick(env, new_plans(env, opts), opts.plan)
    provider = env.session.run(env.session.provider(env.config.account(plan.account)))
    if Capability.BUY_ESIM not in provider.capabilities:
        raise Unsupported(
            f"{provider.display_name} new eSIMs cannot be bought through esimctl",
            account=provider.account,
            provider=provider.id,
        )
    progress = pipeline.Progress()
    try:
        with pipeline.sigterm_as_interrupt():
            return env.session.run(_buy(opts, env, provider, plan, cap, label, timeout, progress))
    except KeyboardInterrupt:
        return _interrupted(env, progress)
    except EsimctlError as exc:
        raise exc.for_account(provider.account, provider.id) from None


async def _buy(
    opts: BuyOptions,
    env: Env,
    provider: Provider,
    plan: Plan,
    cap: Money | None,
    label: str | None,
    timeout: timedelta,
    progress: pipeline.Progress,
) -> Result:
    purchase = pipeline.Purchase(None, plan, limits_for(env, cap), label=label, again=opts.again)
    what = (
        f"a new eSIM: {plan.name} for {human.money(plan.price)} from {provider.display_name} "
        f"({provider.account})"
    )
    if opts.dry_run:
        check_limits(env.orders, purchase.limits, None, plan)
        checked = await provider.validate_esim(plan)
        if checked is not None and plan.price is not None and checked != plan.price:
            note = f"; {provider.display_name} would charge {checked}"
        elif checked is not None:
            note = f"; {provider.display_name} checked the order"
        else:
            note = ""
        order = pipeline.dry_run_order_new(env, plan)
        return Result(
            command="buy",
            data={"order": order_json(order), "esim": None},
            lines=[f"dry run: would buy {esc(what)}{esc(note)}; nothing bought"],
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
        return _interrupted(env, progress)
    row = bought.row
    problems: list[EsimctlError] = []
    if bought.over_limit is not None:
        problems.append(
            LimitRefused(
                f"charged beyond your limit: {bought.over_limit}. The order was placed; check it "
                "with the seller",
                code="charged_over_limit",
            )
        )
    new = progress.new
    if row.iccid is None:
        # The seller allocates the profile after the order (eSIM Access): wait for it.
        try:
            row = await _allocated(env, provider, row, timeout)
        except (asyncio.CancelledError, KeyboardInterrupt):
            problems.append(
                Interrupted(
                    f"interrupted while the seller allocates the eSIM (order "
                    f"{row.to_order().id}): it is bought; 'esimctl status' shows it once "
                    "allocated"
                )
            )
    activation = new.activation if new is not None else None
    if activation is None and row.iccid:
        try:
            activation = await provider.activation(row.iccid)
        except EsimctlError:
            activation = None  # bought all the same: 'esimctl install' asks again later
    lines = [
        (
            f"[green]✓[/] the earlier purchase of {esc(plan.name)} went through (order "
            f"{esc(row.to_order().id)}): not bought again"
        )
        if bought.earlier
        else (
            f"[green]✓[/] bought {esc(plan.name)} for {human.money(row.price)} "
            f"(order {esc(row.to_order().id)})"
        )
    ]
    if row.iccid is None:
        lines.append(
            "[yellow]! allocating[/]: the seller has not given the eSIM yet; "
            "'esimctl status' shows it when it does, then 'esimctl install ESIM'"
        )
    else:
        name = label or row.iccid
        lines.append(f"eSIM {esc(row.iccid)}" + (f" ({esc(label)})" if label else ""))
        if activation is not None and (env.stdout_tty or opts.reveal):
            lines.extend(install_lines(env, activation, None, env.now()))
        lines.append(f"install it any time: esimctl install {esc(name)}")
    data: dict[str, Any] = {
        "order": order_json(row.to_order()),
        "esim": {"iccid": row.iccid, "label": label},
    }
    if opts.reveal and activation is not None and row.iccid:
        data["activation"] = activation_json(activation, None, row.iccid)
    result = Result(command="buy", data=data, lines=lines)
    if problems:
        # Both reported: a charge beyond a limit is news even when Ctrl-C came after it.
        result.errors.extend(problems)
        result.exit_code, result.status = run_outcome(problems, achieved=True)
    return result


async def _allocated(env: Env, provider: Provider, row: Any, timeout: timedelta) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout.total_seconds()
    delay = 2.0
    status = (
        env.err.status("waiting for the seller to allocate the eSIM…")
        if env.show_progress
        else None
    )
    if status is not None:
        status.start()
    try:
        while True:
            # A failed look is no verdict: the eSIM is bought; keep waiting for it.
            with contextlib.suppress(EsimctlError):
                await pipeline.allocate(env, provider)
            row = env.orders.get(row.id)
            if row.iccid or loop.time() >= deadline:
                return row
            await asyncio.sleep(min(delay, max(deadline - loop.time(), 0.0)))
            delay = min(delay * 2, 30.0)
    finally:
        if status is not None:
            status.stop()


def _interrupted(env: Env, progress: pipeline.Progress) -> Result:
    message, row = pipeline.interrupted_message(progress, env)
    data = {"order": order_json(row.to_order()) if row is not None else None, "esim": None}
    return Result(
        command="buy",
        data=data,
        errors=[Interrupted(message)],
        exit_code=Interrupted.exit_code,
        lines=[],
    )
