"""``esimctl renew ESIM`` on a terminal without ``--plan``: the top-ups, and which one.

Only the choice of plan is made here; the purchase is ``renew``'s as with ``--plan`` (the
limits, the consent prompt, ``purchasing.pipeline.buy_once``). Without a terminal ``renew``
still requires ``--plan``.
"""

from __future__ import annotations

from esimctl.env import Env
from esimctl.errors import Aborted, InvalidInput, NotFound
from esimctl.models import Esim, Plan
from esimctl.output import human
from esimctl.output.human import describe

from .plans import esim_currency, price_per_gb, sort_plans
from .renew_common import pick_plan

#: Wrong answers before giving up (nothing is bought then).
TRIES = 3


def _line(n: int, width: int, p: Plan, id_width: int, name_width: int) -> str:
    data = "unlimited" if p.unlimited else human.size(p.data_bytes, p.unit_base)
    days = f"{p.validity_days} d" if p.validity_days else "? d"
    ppg = price_per_gb(p)
    per_gb = f"{ppg} {p.price.currency}/GB" if ppg is not None and p.price else ""
    name = " ".join(p.name.split())
    return (
        f"  {n:>{width}}  {p.id:<{id_width}}  {name:<{name_width}}  {data}, {days}  ·  "
        f"{human.money(p.price)}" + (f"  ({per_gb})" if per_gb else "")
    )


def choose_plan(env: Env, esim: Esim, plans: list[Plan]) -> Plan:
    """Offer ``plans`` (as ``plans ESIM --sort price-per-gb`` orders them: cheapest per GB
    first, the eSIM's currency first) on stderr and read which: its number or its id."""
    if not plans:
        raise NotFound(f"no top-ups are sold for {describe(esim)}: nothing to renew with")
    ordered = sort_plans(
        plans, "price-per-gb", rates=env.config.rates(), first=esim_currency(env, esim)
    )
    width = len(str(len(ordered)))
    id_width = max(len(p.id) for p in ordered)
    name_width = min(40, max(len(" ".join(p.name.split())) for p in ordered))
    env.stderr.write(f"top-ups for {describe(esim)}, cheapest per GB first:\n")
    for n, p in enumerate(ordered, 1):
        env.stderr.write(_line(n, width, p, id_width, name_width) + "\n")
    for _ in range(TRIES):
        env.stderr.write(f"which one? (1-{len(ordered)} or a plan id; Enter for none) ")
        env.stderr.flush()
        line = env.stdin.readline()
        answer = line.strip()
        if not answer:
            raise Aborted("nothing bought: no plan chosen")
        if answer.isdigit() and 1 <= int(answer) <= len(ordered):
            return ordered[int(answer) - 1]
        try:
            return pick_plan(ordered, answer)
        except InvalidInput:
            env.stderr.write(f"  no plan {answer!r} here: give its number or its id\n")
    raise InvalidInput("no plan chosen: nothing bought")
