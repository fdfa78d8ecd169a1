"""What the three ways of renewing share (by hand through an API, ``--auto``, a seller
without an API): the options, naming a plan, the limits of a purchase by hand. Below
``renew``, ``renew_auto`` and ``renew_manual``, which import it and not each other."""

from __future__ import annotations

from dataclasses import dataclass

from esimctl import rules
from esimctl.env import Env
from esimctl.errors import InvalidInput
from esimctl.models import MAX_DAY_PASS_DAYS, Money, Plan, split_days
from esimctl.purchasing import limits as money_limits


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
    #: ``renew --auto``: tell the notification targets; None: yes when any is configured.
    notify: bool | None = None


def pick_plan(plans: list[Plan], wanted: str) -> Plan:
    """The plan named ``wanted`` (its id, or its name); ``ID:Nd`` names day pass ID bought
    for N days."""
    exact = [p for p in plans if p.id == wanted]
    if exact:
        return exact[0]
    base, days = split_days(wanted)
    day_pass = next((p for p in plans if p.id == base and p.per_day), None)
    if days is not None and day_pass is not None:
        return with_days(day_pass, days, f"plan {wanted!r}")
    by_name = [p for p in plans if p.name.lower() == wanted.lower()]
    if len(by_name) == 1:
        return by_name[0]
    ids = ", ".join(p.id for p in plans[:12]) + (" …" if len(plans) > 12 else "")
    raise InvalidInput(
        f"unknown plan {wanted!r} for this eSIM (plans: {ids or 'none'}); "
        "'esimctl plans ESIM' lists them"
    )


def with_days(plan: Plan, days: int | None, where: str = "--days") -> Plan:
    """``plan`` bought for ``days`` days: a day pass takes them (price × days is what it
    costs and what every limit counts); any other plan refuses a number of days."""
    if days is None:
        return plan
    if not plan.per_day:
        length = f"it lasts {plan.validity_days} days" if plan.validity_days else "no day pass"
        raise InvalidInput(f"{where}: {plan.id} is no day pass ({length}); drop the days")
    if plan.days is not None:
        if plan.days != days:
            raise InvalidInput(f"{where}: {plan.id} is already {plan.days} days, not {days}")
        return plan
    if not 1 <= days <= MAX_DAY_PASS_DAYS:
        raise InvalidInput(
            f"{where}: {days} days of {plan.id}: a day pass is bought for 1 to "
            f"{MAX_DAY_PASS_DAYS} days"
        )
    return plan.for_days(days)


def per_day_price(plan: Plan) -> str:
    """``1.20 USD a day``: what one day of a day pass costs (of one resolved or not)."""
    price = plan.price
    if price is None:
        return "price unknown"
    if plan.days:
        price = Money(price.amount / plan.days, price.currency)
    return f"{price} a day"


def ask_days(env: Env, plan: Plan, days: int | None, *, yes: bool = False) -> Plan:
    """A day pass named without a number of days: ``days`` (``--days``), else asked on a
    terminal (not with ``--yes``), else an error naming ``--days``. Other plans as they are
    (with ``days`` refused)."""
    if days is not None or not plan.per_day or plan.days is not None:
        return with_days(plan, days)
    if yes or not env.can_prompt:
        raise InvalidInput(
            f"{plan.id} is a day pass ({per_day_price(plan)}): say for how many days with "
            f"--days N (1-{MAX_DAY_PASS_DAYS}); N days cost N × the day's price"
        )
    for _ in range(3):
        env.stderr.write(
            f"{plan.name} is a day pass at {per_day_price(plan)}. Days to buy "
            f"(1-{MAX_DAY_PASS_DAYS}): "
        )
        env.stderr.flush()
        line = env.stdin.readline()
        if not line:
            break
        text = line.strip()
        if text.isdigit() and 1 <= int(text) <= MAX_DAY_PASS_DAYS:
            return plan.for_days(int(text))
        env.stderr.write(f"  a whole number from 1 to {MAX_DAY_PASS_DAYS}, please\n")
    raise InvalidInput(f"no number of days for day pass {plan.id}: nothing bought")


def check_price(
    plan: Plan, cap: Money | None, *, where: str = "--max-price", what: str | None = None
) -> None:
    """A price cap on a plan (``limits.check_price`` names the plan)."""
    money_limits.check_price(plan.price, cap, where=where, what=what or repr(plan.name))


def limits_for(env: Env, cap: Money | None) -> money_limits.Limits:
    """The limits of a purchase by hand: ``--max-price`` and ``[renewal] monthly_budget``."""
    return money_limits.Limits(
        caps=((cap, "--max-price"),) if cap is not None else (),
        budgets=(money_limits.Budget(rules.load(env.config).monthly_budget, "[renewal]"),),
        # A price the seller did not say (or said in a way no one can read) is never bought.
        require_price=True,
    )


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
