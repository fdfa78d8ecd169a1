"""What the three ways of renewing share (by hand through an API, ``--auto``, a seller
without an API): the options, naming a plan, the limits of a purchase by hand. Below
``renew``, ``renew_auto`` and ``renew_manual``, which import it and not each other."""

from __future__ import annotations

from dataclasses import dataclass

from esimctl import rules
from esimctl.env import Env
from esimctl.errors import InvalidInput
from esimctl.models import Money, Plan
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
