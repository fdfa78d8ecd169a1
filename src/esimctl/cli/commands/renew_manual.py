"""``esimctl renew`` for a seller without an API: open their page, record what was bought.

The top-up is bought on the seller's page (Alipay, WeChat Pay, PayPal, a card); esimctl
records it in the ledger as a *pending* order, with the eSIM as it was, until the user
confirms it or a later reading shows the data (``esimctl esim reading|confirm``).

What was bought comes from ``--plan`` (a saved seller plan) and the flags, which win; what
is still missing is asked on a terminal, and without one it is an error naming the flags.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TypeVar

from esimctl import parsing
from esimctl.env import Env
from esimctl.errors import Aborted, InvalidInput
from esimctl.models import Esim, Money, Plan
from esimctl.output import human
from esimctl.output.human import describe, esc
from esimctl.providers.base import Provider
from esimctl.providers.manual import ManualProvider, topup_detail
from esimctl.purchasing.pipeline import dry_run_order, new_reference
from esimctl.serialize import order_json

from .common import Result, confirm
from .renew_common import RenewOptions, check_price, pick_plan
from .values import data_size, days, name_of, plan_name, price

T = TypeVar("T")

#: Wrong answers to one question before giving up (nothing is recorded then).
TRIES = 3


@dataclass(frozen=True)
class Bought:
    """What the user bought on the seller's page, as far as known."""

    plan_id: str | None = None
    name: str | None = None
    data_bytes: int | None = None
    days: int | None = None
    price: Money | None = None
    number: str | None = None

    def missing(self) -> list[str]:
        known = (("--data", self.data_bytes), ("--days", self.days), ("--price", self.price))
        return [flag for flag, value in known if value is None]

    def with_plan(self, plan: Plan) -> Bought:
        return replace(
            self,
            plan_id=plan.id,
            name=self.name or plan.name,
            data_bytes=plan.data_bytes if self.data_bytes is None else self.data_bytes,
            days=plan.validity_days if self.days is None else self.days,
            price=plan.price if self.price is None else self.price,
        )


def _from_flags(opts: RenewOptions, base: int) -> Bought:
    number = opts.order_number.strip() if opts.order_number is not None else None
    if number == "":
        raise InvalidInput("invalid --order '': give the seller's order number")
    return Bought(
        data_bytes=data_size(opts.data, base) if opts.data is not None else None,
        days=days(opts.days) if opts.days is not None else None,
        price=price(opts.price) if opts.price is not None else None,
        number=number,
    )


def _ask(env: Env, question: str, parse: Callable[[str], T], *, optional: bool = False) -> T | None:
    """Ask until the answer parses; Enter means none where ``optional``; EOF stops."""
    for _ in range(TRIES):
        env.stderr.write(f"{question}: ")
        env.stderr.flush()
        line = env.stdin.readline()
        if not line:
            raise Aborted("nothing recorded: no answer")
        answer = line.strip()
        if not answer:
            if optional:
                return None
            env.stderr.write("  an answer is needed (Ctrl-C to stop)\n")
            continue
        try:
            return parse(answer)
        except InvalidInput as exc:
            env.stderr.write(f"  {exc.message}\n")
    raise InvalidInput(f"no valid answer to '{question}': nothing recorded")


def _ask_missing(env: Env, bought: Bought, plans: list[Plan], base: int) -> Bought:
    if plans and bought.plan_id is None and bought.missing():
        env.stderr.write("the seller's plans:\n")
        for p in plans:
            env.stderr.write(f"  {p.id}  {p.name}  {human.money(p.price)}\n")
        chosen = _ask(
            env,
            "plan you bought (Enter to type its figures)",
            lambda text: pick_plan(plans, text),
            optional=True,
        )
        if chosen is not None:
            bought = bought.with_plan(chosen)
    if bought.data_bytes is None:
        bought = replace(bought, data_bytes=_ask(env, "data bought (e.g. 3GB)", _size(base)))
    if bought.days is None:
        bought = replace(bought, days=_ask(env, "days it adds (0 if none)", days))
    if bought.price is None:
        bought = replace(bought, price=_ask(env, "price paid (e.g. 58CNY)", price))
    if bought.number is None:
        bought = replace(
            bought, number=_ask(env, "seller's order number (Enter if none)", str, optional=True)
        )
    return bought


def _size(base: int) -> Callable[[str], int]:
    return lambda text: data_size(text, base)


def _has_display(env: Env) -> bool:
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(env.environ.get("DISPLAY") or env.environ.get("WAYLAND_DISPLAY"))


def open_page(env: Env, url: str) -> bool:
    """Open the seller's page in a browser, where there is a display; True if it opened."""
    if not _has_display(env):
        return False  # text browsers would take over the terminal the questions need
    import webbrowser

    try:
        return webbrowser.open(url, new=2)
    except webbrowser.Error:
        return False


def _as_plan(esim: Esim, provider: ManualProvider, bought: Bought) -> Plan:
    return Plan(
        id=bought.plan_id or "manual",
        account=provider.account,
        provider=provider.id,
        name=bought.name or plan_name(bought.data_bytes or 0, bought.days, esim.unit_base, None),
        kind="topup",
        data_bytes=bought.data_bytes,
        unlimited=False,
        validity_days=bought.days,
        price=bought.price,
        stacking="stacks",
        unit_base=esim.unit_base,
    )


def run_manual_renew(opts: RenewOptions, env: Env, provider: Provider, esim: Esim) -> Result:
    if not isinstance(provider, ManualProvider):
        raise provider._unsupported("manual renewals")
    settings = provider.settings
    cap = parsing.money(opts.max_price) if opts.max_price else None
    plans = provider.seller_plans(esim)
    bought = _from_flags(opts, esim.unit_base)
    if opts.plan:
        bought = bought.with_plan(pick_plan(plans, opts.plan))
    if bought.price is not None:
        check_price(_as_plan(esim, provider, bought), cap)
    missing = bought.missing()
    if missing and not env.can_prompt:
        raise InvalidInput(
            f"no terminal to ask what was bought: pass {', '.join(missing)} (or --plan ID)"
        )
    url = settings.renew_url
    # Asking means buying now: open the page. All flags given means it was bought already.
    ask = env.can_prompt and not opts.dry_run and (bool(missing) or bought.number is None)
    if url is None:
        page = (
            f"no renewal page recorded for {provider.account}: set renew_url in "
            f"[accounts.{provider.account}] of {env.paths.config_file}"
        )
    elif ask and not opts.no_browser and open_page(env, url):
        page = f"opened the seller's renewal page: {url}"
    else:
        page = f"the seller's renewal page: {url}"
    notes = [] if ask else [page]
    if ask:
        env.stderr.write(f"{page}\nbuy the top-up there, then say what you bought:\n")
        env.stderr.flush()
        bought = _ask_missing(env, bought, plans, esim.unit_base)
    plan = _as_plan(esim, provider, bought)
    check_price(plan, cap)
    if bought.data_bytes == 0 and bought.days == 0:
        raise InvalidInput("a top-up adds data, days, or both: nothing recorded")
    if bought.number is not None:
        _check_duplicate(env, opts, esim, bought.number)
    if opts.dry_run:
        order = replace(
            dry_run_order(env, esim, plan, order_id=bought.number or "dry-run"),
            plan_id=bought.plan_id,
        )
        return Result(
            command="renew",
            data={"order": order_json(order), "applied": False, "renew_url": url},
            lines=[
                f"dry run: would record {esc(plan.name)} for {human.money(plan.price)} on "
                f"{esc(describe(esim))}; nothing recorded"
            ],
            notes=notes,
        )
    assert bought.data_bytes is not None and bought.days is not None
    row = env.orders.record_bought_by_hand(
        account=provider.account,
        provider=provider.id,
        iccid=esim.iccid,
        plan_id=bought.plan_id,
        plan=plan.name,
        price=plan.price,
        source="local",
        reference=new_reference(),
        provider_order_id=bought.number,
        detail=topup_detail(
            data_bytes=bought.data_bytes,
            days=bought.days,
            stacking=settings.stacking,
            before=esim,
        ),
    )
    order = row.to_order()
    name = name_of(esim)
    support = settings.support or settings.seller or "the seller"
    lines = [
        f"[green]✓[/] recorded {esc(plan.name)} for {human.money(plan.price)} on "
        f"{esc(describe(esim))}" + (f" (order {esc(bought.number)})" if bought.number else ""),
        "[yellow]! pending[/]: activation usually takes minutes. Once the seller's app shows "
        "the new data, record it:",
        f"  esimctl esim reading {esc(name)} SIZE-LEFT   (or: esimctl esim confirm {esc(name)})",
        f"  not active after 30 minutes? contact {esc(support)}"
        + (" with the order number" if bought.number else ""),
    ]
    return Result(
        command="renew",
        data={"order": order_json(order), "applied": False, "renew_url": url},
        lines=lines,
        notes=notes,
    )


def _check_duplicate(env: Env, opts: RenewOptions, esim: Esim, number: str) -> None:
    """The same seller order number twice on one eSIM: ask, or refuse without --yes."""
    same = [
        r
        for r in env.orders.kept(account=esim.account, iccid=esim.iccid)
        if r.provider_order_id == number
    ]
    if not same:
        return
    first = same[-1]
    confirm(
        env,
        f"Order {number} is recorded already on {describe(esim)} "
        f"({human.local_time(first.created_at)}, {first.to_order().state.value}). "
        "Record a second top-up with the same number?",
        yes=opts.yes,
        what=f"record order {number} a second time",
    )
