"""Typer wiring of ``esimctl esim``: eSIMs of sellers without an API, recorded by hand.

As in app.py, each command parses its flags into an options dataclass and calls a
``run_x`` of ``cli/commands/esim.py``, which knows nothing about Typer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from esimctl.cli import complete, context
from esimctl.cli.options import JsonlOpt, JsonOpt, WideOpt, YesOpt
from esimctl.env import Env

if TYPE_CHECKING:
    from esimctl.cli.commands.common import Result

esim_app = typer.Typer(
    help="eSIMs of sellers without an API (--provider manual): record the eSIM, what the "
    "seller's app shows, and the seller's plans; 'esimctl renew' records what you bought.",
    no_args_is_help=True,
)
plan_app = typer.Typer(
    help="The seller's plans, so that 'esimctl plans ESIM' compares them and "
    "'esimctl renew ESIM --plan ID' fills in what was bought.",
    no_args_is_help=True,
)
esim_app.add_typer(plan_app, name="plan")

EsimArg = Annotated[
    str,
    typer.Argument(
        help="The eSIM: its label, ICCID or last 4+ digits.", autocompletion=complete.esims
    ),
]
AccountArg = Annotated[
    str,
    typer.Argument(help="The manual seller's account.", autocompletion=complete.manual_accounts),
]
OrderOpt = Annotated[
    str | None, typer.Option("--order", help="The seller's order number (if several pending).")
]
ForceOpt = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Record it even though it looks wrong: a reading above the total or older than "
        "the latest, an end date in the past, an activation date in the future (a terminal "
        "asks instead; a script is refused, exit 2).",
    ),
]


def _finish(env: Env, result: Result, json_: bool) -> None:
    from esimctl.cli.commands.common import finish

    code = finish(env, result, json=json_)
    if code:
        raise typer.Exit(code)


@esim_app.command("add")
def add(
    account: AccountArg,
    iccid: Annotated[str, typer.Option("--iccid", help="The ICCID (18 to 22 digits).")],
    data: Annotated[str, typer.Option("--data", help="The package's data, e.g. 3GB.")],
    days: Annotated[
        int | None, typer.Option("--days", help="The package's days (from activation).")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Or its end date (YYYY-MM-DD: end of day).")
    ] = None,
    label: Annotated[
        str | None, typer.Option("--label", "-l", help="A name for it (default: the account).")
    ] = None,
    countries: Annotated[
        list[str] | None, typer.Option("--countries", "-c", help="Where it works, e.g. JP,KR.")
    ] = None,
    price: Annotated[
        str | None, typer.Option("--price", help="What it cost, e.g. 58CNY (goes to history).")
    ] = None,
    activated: Annotated[
        str | None, typer.Option("--activated", help="When it was activated (date or time).")
    ] = None,
    plan: Annotated[str | None, typer.Option("--plan", help="The package's name.")] = None,
    order: Annotated[str | None, typer.Option("--order", help="The seller's order number.")] = None,
    lpa: Annotated[
        str | None,
        typer.Option(
            "--lpa",
            help="Its activation code (LPA:1$…), kept in the keyring for 'esimctl install'.",
        ),
    ] = None,
    force: ForceOpt = False,
    json_: JsonOpt = False,
) -> None:
    """Record an eSIM bought from a seller without an API, and its current package.

    Examples: esimctl esim add jp-card --iccid 8981100022223333444 --label Tokyo -c JP
    --data 3GB --days 7 --price 58CNY --activated 2026-11-27
    """
    from esimctl.cli.commands.esim import AddEsimOptions, run_add_esim

    env = context.begin("esim add", json=json_)
    opts = AddEsimOptions(
        account=account,
        iccid=iccid,
        data=data,
        label=label,
        countries=tuple(countries or ()),
        days=days,
        until=until,
        price=price,
        activated=activated,
        plan=plan,
        order_number=order,
        force=force,
        lpa=lpa,
    )
    _finish(env, run_add_esim(opts, env), json_)


@esim_app.command("reading")
def reading(
    esim: EsimArg,
    remaining: Annotated[str, typer.Argument(help="Data left, as the seller's app shows it.")],
    at: Annotated[
        str | None, typer.Option("--at", help="When you read it (default now; or 2h, a time).")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="The end date the seller's app shows.")
    ] = None,
    total: Annotated[
        str | None,
        typer.Option("--total", help="The total the seller's app shows, if it differs: fixes it."),
    ] = None,
    force: ForceOpt = False,
    json_: JsonOpt = False,
) -> None:
    """Record what the seller's app shows: data left (and the end date); it settles top-ups.

    A reading never changes the total: one above it, or older than the latest, is asked about
    (refused in a script unless --force); --total corrects the total.

    Examples: esimctl esim reading Tokyo 1.2GB · esimctl esim reading Tokyo 4.1GB --until
    2026-12-11 --at 2026-12-04T09:30 · esimctl esim reading Tokyo 9.8GB --total 11GB
    """
    from esimctl.cli.commands.esim import ReadingOptions, run_reading

    env = context.begin("esim reading", json=json_)
    opts = ReadingOptions(esim, remaining, at, until, total, force)
    _finish(env, run_reading(opts, env), json_)


@esim_app.command("edit")
def edit(
    esim: EsimArg,
    total: Annotated[
        str | None,
        typer.Option(
            "--total", help="The right total now (package and top-ups applied), e.g. 11GB."
        ),
    ] = None,
    activated: Annotated[
        str | None, typer.Option("--activated", help="The right activation date or time.")
    ] = None,
    force: ForceOpt = False,
    json_: JsonOpt = False,
) -> None:
    """Correct an eSIM recorded by hand: its total, its activation date.

    Examples: esimctl esim edit Tokyo --total 11GB · esimctl esim edit Tokyo --activated
    2026-11-25
    """
    from esimctl.cli.commands.esim import EditOptions, run_edit

    env = context.begin("esim edit", json=json_)
    _finish(env, run_edit(EditOptions(esim, total, activated, force), env), json_)


@esim_app.command("confirm")
def confirm(esim: EsimArg, order: OrderOpt = None, json_: JsonOpt = False) -> None:
    """Say that a pending top-up is there: its data and days are added now.

    Examples: esimctl esim confirm Tokyo · esimctl esim confirm Tokyo --order 20261128-0042
    """
    from esimctl.cli.commands.esim import SettleOptions, run_confirm

    env = context.begin("esim confirm", json=json_)
    _finish(env, run_confirm(SettleOptions(esim, order), env), json_)


@esim_app.command("cancel")
def cancel(esim: EsimArg, order: OrderOpt = None, json_: JsonOpt = False) -> None:
    """Mark a pending top-up failed: the seller refunded it, or it never came.

    Examples: esimctl esim cancel Tokyo --order 20261128-0042
    """
    from esimctl.cli.commands.esim import SettleOptions, run_cancel

    env = context.begin("esim cancel", json=json_)
    _finish(env, run_cancel(SettleOptions(esim, order), env), json_)


@esim_app.command("remove")
def remove(esim: EsimArg, yes: YesOpt = False, json_: JsonOpt = False) -> None:
    """Forget an eSIM recorded by hand and its readings (its orders stay in the history).

    Examples: esimctl esim remove Tokyo --yes
    """
    from esimctl.cli.commands.esim import RemoveEsimOptions, run_remove_esim

    env = context.begin("esim remove", json=json_)
    _finish(env, run_remove_esim(RemoveEsimOptions(esim, yes), env), json_)


@plan_app.command("add")
def plan_add(
    account: AccountArg,
    plan_id: Annotated[str, typer.Argument(help="A short id, e.g. jp-3gb-7d.")],
    data: Annotated[str, typer.Option("--data", help="Data it adds, e.g. 3GB (0 if none).")],
    days: Annotated[int, typer.Option("--days", help="Days it adds (0 if none).")],
    price: Annotated[str, typer.Option("--price", help="Its price, e.g. 58CNY.")],
    name: Annotated[
        str | None, typer.Option("--name", help="Its name on the seller's page.")
    ] = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Overwrite a plan with this id.")
    ] = False,
    json_: JsonOpt = False,
) -> None:
    """Save one of the seller's plans (short-term, long-term, data+days).

    Examples: esimctl esim plan add jp-card jp-3gb-7d --name "3GB 7 days" --data 3GB --days 7
    --price 58CNY
    """
    from esimctl.cli.commands.esim import PlanAddOptions, run_plan_add

    env = context.begin("esim plan add", json=json_)
    opts = PlanAddOptions(account, plan_id, data, days, price, name, replace)
    _finish(env, run_plan_add(opts, env), json_)


@plan_app.command("list")
def plan_list(
    account: Annotated[
        str | None,
        typer.Argument(
            help="Only this manual seller's account (default: every one).",
            autocompletion=complete.manual_accounts,
        ),
    ] = None,
    json_: JsonOpt = False,
    jsonl: JsonlOpt = False,
    wide: WideOpt = False,
) -> None:
    """List the seller plans saved (what 'esimctl renew ESIM --plan ID' can name).

    Examples: esimctl esim plan list · esimctl esim plan list jp-card --json
    """
    from esimctl.cli.commands.common import finish
    from esimctl.cli.commands.esim import PlanListOptions, run_plan_list

    env = context.begin("esim plan list", json=json_, wide=wide)
    code = finish(env, run_plan_list(PlanListOptions(account), env), json=json_, jsonl=jsonl)
    if code:
        raise typer.Exit(code)


@plan_app.command("remove")
def plan_remove(
    account: AccountArg,
    plan_id: Annotated[
        str, typer.Argument(help="The plan's id.", autocompletion=complete.seller_plan_ids)
    ],
    json_: JsonOpt = False,
) -> None:
    """Remove a saved seller plan.

    Examples: esimctl esim plan remove jp-card jp-3gb-7d
    """
    from esimctl.cli.commands.esim import PlanRemoveOptions, run_plan_remove

    env = context.begin("esim plan remove", json=json_)
    _finish(env, run_plan_remove(PlanRemoveOptions(account, plan_id), env), json_)
