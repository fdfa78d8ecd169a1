"""The Typer app and ``main``: the one place where errors become exit codes.

Commands parse flags into their options dataclass and call ``run_x``; they raise
``EsimctlError``s and never call ``sys.exit``. ``run`` maps everything to the documented
exit codes (docs/exit-codes.md), writes the one-line error (and the JSON envelope under
``--json``). A shell's completion request (``_ESIMCTL_COMPLETE``) is answered by Typer in
``command.main``; the values it offers come from ``cli.complete``.

No ``from __future__ import annotations`` here: Typer reads every command's signature on
each run, and string annotations cost it an ``eval`` apiece (half of its start-up work).
"""

import sys
from typing import Annotated

import typer

from esimctl import __version__
from esimctl.cli import complete, context
from esimctl.cli.config_app import config_app
from esimctl.cli.esim_app import esim_app
from esimctl.cli.notify_app import notify_app
from esimctl.cli.options import (
    AccountOpt,
    DryRunOpt,
    JsonlOpt,
    JsonOpt,
    RefreshOpt,
    WideOpt,
    YesOpt,
)
from esimctl.env import Env
from esimctl.errors import EsimctlError, ExitCode

SHELLS = ("bash", "zsh", "fish")

HELP = """\
One table for every travel eSIM you hold: data left, expiry, top-ups, renewals.

Examples:

\b
  esimctl --demo status                  try it without an account
  esimctl account add trip --provider airalo
  esimctl status                         every eSIM, every account
  esimctl plans Tokyo                    top-ups sold for that eSIM
  esimctl renew Tokyo --plan jp-3gb-7d   buy one, confirm it was applied
  esimctl history --since 30d

\b
Exit codes: 0 ok, 1 failure, 2 bad input, 3 partial, 4 credentials, 5 refused by a
limit, 8 attention (status --check), 75 retry later, 130 interrupted.
"""

app = typer.Typer(
    name="esimctl",
    help=HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
account_app = typer.Typer(
    help="Store, list, test and remove provider accounts (secrets go to the OS keyring).",
    no_args_is_help=True,
)
app.add_typer(account_app, name="account")
app.add_typer(esim_app, name="esim")
app.add_typer(config_app, name="config")
app.add_typer(notify_app, name="notify")


VERSION_LINE = f"esimctl {__version__}\n"


def _version(ctx: typer.Context, value: bool) -> None:
    if value and not ctx.resilient_parsing:  # not while completing `esimctl --version <Tab>`
        env = context.current().env
        env.stdout.write(VERSION_LINE)
        raise typer.Exit(0)


@app.callback()
def root(
    demo: Annotated[
        bool, typer.Option("--demo", help="Use the built-in demo provider in its own profile.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing on success.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    color: Annotated[
        str,
        typer.Option(
            "--color",
            help="auto, always or never (NO_COLOR is honoured).",
            autocompletion=complete.choices("auto", "always", "never"),
        ),
    ] = "auto",
    table: Annotated[
        bool,
        typer.Option("--table", help="Tables for a person even in a pipe (also --color always)."),
    ] = False,
    tsv: Annotated[
        bool, typer.Option("--tsv", help="Tab-separated rows even on a terminal.")
    ] = False,
    wide: WideOpt = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    env = context.current().env
    env.demo = env.demo or demo
    env.quiet = env.quiet or quiet
    env.debug = env.debug or debug
    if color not in ("auto", "always", "never"):
        from esimctl.errors import InvalidInput

        raise InvalidInput(f"invalid --color {color!r}: use auto, always or never")
    env.color = color
    if table and tsv:
        from esimctl.errors import InvalidInput

        raise InvalidInput("--table and --tsv: choose one")
    env.output = "table" if table else "tsv" if tsv else "auto"
    env.wide = wide


def _done(env: Env, code: int) -> None:
    context.current().finished = True
    if code:
        raise typer.Exit(code)


@app.command()
def status(
    esims: Annotated[
        list[str] | None,
        typer.Argument(
            help="ICCIDs, ICCID suffixes (4+ digits) or labels.", autocompletion=complete.esims
        ),
    ] = None,
    refresh: RefreshOpt = False,
    check: Annotated[
        bool, typer.Option("--check", help="Exit 8 when anything needs attention.")
    ] = False,
    notify: Annotated[
        bool,
        typer.Option("--notify", help="Send what needs attention to the notification targets."),
    ] = False,
    account: AccountOpt = None,
    json_: JsonOpt = False,
    jsonl: JsonlOpt = False,
    wide: WideOpt = False,
) -> None:
    """Every eSIM of every account: data left, expiry, state, what needs attention.

    Examples: esimctl status · esimctl status Tokyo --refresh · esimctl -q status --check
    """
    from esimctl.cli.commands.common import finish
    from esimctl.cli.commands.status import StatusOptions, run_status

    env = context.begin("status", json=json_, wide=wide)
    opts = StatusOptions(tuple(esims or ()), tuple(account or ()), refresh, check, notify)
    _done(env, finish(env, run_status(opts, env), json=json_, jsonl=jsonl))


@app.command()
def show(
    esim: Annotated[
        str,
        typer.Argument(
            help="ICCID, ICCID suffix (4+ digits) or label.", autocompletion=complete.esims
        ),
    ],
    account: AccountOpt = None,
    json_: JsonOpt = False,
) -> None:
    """One eSIM in detail: packages, a chart of data left with the forecast, orders, and
    what renew --auto would do now.

    Examples: esimctl show Tokyo · esimctl show 0018 --json
    """
    from esimctl.cli.commands.common import finish
    from esimctl.cli.commands.show import ShowOptions, run_show

    env = context.begin("show", json=json_)
    opts = ShowOptions(esim, tuple(account or ()))
    _done(env, finish(env, run_show(opts, env), json=json_))


@app.command()
def buy(
    plan: Annotated[
        str | None, typer.Option("--plan", "-p", help="A new-eSIM plan id from 'plans --country'.")
    ] = None,
    country: Annotated[
        str | None, typer.Option("--country", "-c", help="Where it is for (ISO code, e.g. JP).")
    ] = None,
    label: Annotated[str | None, typer.Option("--label", help="Name it, e.g. Tokyo.")] = None,
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    max_price: Annotated[
        str | None, typer.Option("--max-price", help="Refuse anything dearer, e.g. 15USD.")
    ] = None,
    again: Annotated[
        bool, typer.Option("--again", help="Buy even if the same eSIM was just bought.")
    ] = False,
    timeout: Annotated[
        str, typer.Option("--timeout", help="How long to wait for the seller to allocate it (5m).")
    ] = "5m",
    wait: Annotated[
        float,
        typer.Option("--wait", help="Wait up to N seconds for another purchase to finish."),
    ] = 0.0,
    reveal: Annotated[
        bool, typer.Option("--reveal", help="Print the activation code in a pipe and in JSON too.")
    ] = False,
    account: AccountOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Buy a new eSIM for a trip, safely, and show it ready to install.

    Examples: esimctl buy --country JP · esimctl buy -c JP -p jp-new-5gb-15d --label Tokyo --yes
    """
    from esimctl.cli.commands.buy import BuyOptions, run_buy
    from esimctl.cli.commands.common import finish

    env = context.begin("buy", json=json_)
    opts = BuyOptions(
        plan, country, tuple(account or ()), label, yes, dry_run, max_price, again, timeout,
        wait, reveal,
    )  # fmt: skip
    _done(env, finish(env, run_buy(opts, env), json=json_))


@app.command()
def install(
    esim: Annotated[str, typer.Argument(help="ICCID, ICCID suffix (4+ digits) or label.")],
    png: Annotated[
        str | None, typer.Option("--png", help="Also write the QR code to this PNG file.")
    ] = None,
    svg: Annotated[
        str | None, typer.Option("--svg", help="Also write the QR code to this SVG file.")
    ] = None,
    account: AccountOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Show how to install an eSIM: its QR code, the activation code, the deadline.

    Examples: esimctl install Tokyo · esimctl install 0018 --png tokyo.png
    """
    from esimctl.cli.commands.common import finish
    from esimctl.cli.commands.install import InstallOptions, run_install

    env = context.begin("install", json=json_)
    opts = InstallOptions(esim, tuple(account or ()), png, svg)
    _done(env, finish(env, run_install(opts, env), json=json_))


@app.command()
def plans(
    esim: Annotated[
        str | None, typer.Argument(help="The eSIM to extend.", autocompletion=complete.esims)
    ] = None,
    country: Annotated[
        str | None, typer.Option("--country", "-c", help="Plans sold for this country (ISO code).")
    ] = None,
    sort: Annotated[
        str,
        typer.Option(
            "--sort",
            help="price, price-per-gb, data or validity.",
            autocompletion=complete.choices("price", "price-per-gb", "data", "validity"),
        ),
    ] = "price",
    min_days: Annotated[int | None, typer.Option("--min-days", help="At least N days.")] = None,
    min_data: Annotated[
        str | None, typer.Option("--min-data", help="At least this much data, e.g. 3GB.")
    ] = None,
    refresh: RefreshOpt = False,
    account: AccountOpt = None,
    json_: JsonOpt = False,
    jsonl: JsonlOpt = False,
    wide: WideOpt = False,
) -> None:
    """What can be bought: top-ups for one eSIM, or plans for a country.

    Examples: esimctl plans Tokyo · esimctl plans --country JP --sort price-per-gb --min-days 7
    """
    from esimctl.cli.commands.common import finish
    from esimctl.cli.commands.plans import PlansOptions, run_plans

    env = context.begin("plans", json=json_, wide=wide)
    opts = PlansOptions(
        esim, country, tuple(account or ()), sort, min_days, min_data, refresh=refresh
    )
    _done(env, finish(env, run_plans(opts, env), json=json_, jsonl=jsonl))


@app.command()
def renew(
    esim: Annotated[
        str | None, typer.Argument(help="The eSIM to top up.", autocompletion=complete.esims)
    ] = None,
    plan: Annotated[
        str | None,
        typer.Option(
            "--plan",
            "-p",
            help="Plan id from 'plans' (on a terminal, leave it out to choose from a list).",
            autocompletion=complete.plan_ids,
        ),
    ] = None,
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    max_price: Annotated[
        str | None, typer.Option("--max-price", help="Refuse anything dearer, e.g. 15USD.")
    ] = None,
    timeout: Annotated[
        str, typer.Option("--timeout", help="How long to wait for the top-up to show (30m).")
    ] = "30m",
    wait: Annotated[
        float,
        typer.Option("--wait", help="Wait up to N seconds for another renewal to finish."),
    ] = 0.0,
    auto: Annotated[
        bool, typer.Option("--auto", help="Apply the renewal rules of config to every eSIM.")
    ] = False,
    no_browser: Annotated[
        bool, typer.Option("--no-browser", help="Manual sellers: print the renewal URL only.")
    ] = False,
    data: Annotated[
        str | None, typer.Option("--data", help="Manual sellers: data bought, e.g. 3GB.")
    ] = None,
    days: Annotated[
        int | None,
        typer.Option(
            "--days",
            help="A day pass: days to buy (N × its price per day). Manual sellers: days bought.",
        ),
    ] = None,
    price: Annotated[
        str | None, typer.Option("--price", help="Manual sellers: price paid, e.g. 58CNY.")
    ] = None,
    order_number: Annotated[
        str | None, typer.Option("--order", help="Manual sellers: the seller's order number.")
    ] = None,
    again: Annotated[
        bool,
        typer.Option(
            "--again",
            help="Buy even if the same top-up was bought in the last 15 min or is pending.",
        ),
    ] = False,
    accept_charge: Annotated[
        str | None,
        typer.Option(
            "--accept-charge",
            metavar="ORDER",
            help="Accept an order charged beyond a limit; renew --auto buys for it again.",
        ),
    ] = None,
    notify: Annotated[
        bool | None,
        typer.Option(
            "--notify/--no-notify",
            help="--auto: tell the notification targets (the default when any is configured).",
        ),
    ] = None,
    account: AccountOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing on success.")] = False,
    json_: JsonOpt = False,
) -> None:
    """Buy a top-up, safely: price shown, consent asked, bought once, applied confirmed.

    Examples: esimctl renew Tokyo --plan jp-3gb-7d · esimctl renew 0018 -p jp-1gb-3d --yes
    --max-price 5USD · esimctl renew --auto --yes -q (from cron)
    """
    from esimctl.cli.commands.common import finish
    from esimctl.cli.commands.renew import run_renew
    from esimctl.cli.commands.renew_common import RenewOptions

    env = context.begin("renew", json=json_)
    env.quiet = env.quiet or quiet
    opts = RenewOptions(
        esim=esim,
        plan=plan,
        yes=yes,
        dry_run=dry_run,
        max_price=max_price,
        timeout=timeout,
        wait=wait,
        auto=auto,
        accounts=tuple(account or ()),
        no_browser=no_browser,
        data=data,
        days=days,
        price=price,
        order_number=order_number,
        again=again,
        accept_charge=accept_charge,
        notify=notify,
    )
    _done(env, finish(env, run_renew(opts, env), json=json_))


@app.command()
def history(
    esim: Annotated[
        str | None, typer.Argument(help="Only this eSIM.", autocompletion=complete.esims)
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="A date (2026-11-01) or an age (30d).")
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", "-n", help="At most N orders.")] = None,
    local: Annotated[
        bool, typer.Option("--local", help="Only the local ledger; ask no provider.")
    ] = False,
    account: AccountOpt = None,
    json_: JsonOpt = False,
    jsonl: JsonlOpt = False,
    wide: WideOpt = False,
) -> None:
    """Every order and top-up, from the providers and the local ledger, newest first.

    Examples: esimctl history · esimctl history Tokyo --since 30d · esimctl history --jsonl
    """
    from esimctl.cli.commands.common import finish
    from esimctl.cli.commands.history import HistoryOptions, run_history

    env = context.begin("history", json=json_, wide=wide)
    opts = HistoryOptions(esim, tuple(account or ()), since, limit, local)
    _done(env, finish(env, run_history(opts, env), json=json_, jsonl=jsonl))


@app.command()
def calendar(
    output: Annotated[
        str | None,
        typer.Option(
            "--output", "-o", metavar="FILE", help="Write this .ics file (atomically); else stdout."
        ),
    ] = None,
    account: AccountOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Expiries, install deadlines and forecast run-outs as an iCalendar file, with alarms.

    Examples: esimctl calendar -o ~/Sync/esims.ics · esimctl calendar > esims.ics
    """
    from esimctl.cli.commands.calendar import CalendarOptions, finish_calendar, run_calendar

    env = context.begin("calendar", json=json_)
    opts = CalendarOptions(output, tuple(account or ()))
    _done(env, finish_calendar(env, run_calendar(opts, env), json=json_))


@app.command()
def completion(
    shell: Annotated[
        str,
        typer.Argument(help="bash, zsh or fish.", autocompletion=complete.choices(*SHELLS)),
    ],
) -> None:
    """Print the shell completion script: commands, options, account names, eSIM labels and
    ICCID suffixes, plan ids (from what esimctl knows already: never the network).

    Examples: esimctl completion bash > ~/.local/share/bash-completion/completions/esimctl ·
    esimctl completion zsh > ~/.zfunc/_esimctl · esimctl completion fish >
    ~/.config/fish/completions/esimctl.fish
    """
    from esimctl.cli.commands.completion import CompletionOptions, run_completion

    env = context.begin("completion")
    result = run_completion(CompletionOptions(shell), env)
    env.stdout.write(result.data["script"] + "\n")
    _done(env, 0)


@account_app.command("add")
def account_add(
    name: Annotated[str, typer.Argument(help="Account name: letters, digits, '-' and '_'.")],
    provider: Annotated[
        str,
        typer.Option(
            "--provider",
            "-p",
            help="airalo, esimaccess, esimgo, celitech, manual.",
            autocompletion=complete.providers,
        ),
    ],
    base_url: Annotated[
        str | None, typer.Option("--base-url", help="Sandbox, proxy or test server address.")
    ] = None,
    secrets_stdin: Annotated[
        bool, typer.Option("--secrets-stdin", help="Read FIELD=value lines from stdin.")
    ] = False,
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            help="keyring (default) or file (0600, for servers).",
            autocompletion=complete.choices("keyring", "file"),
        ),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Provider option KEY=VALUE (repeatable)."),
    ] = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Overwrite an existing account.")
    ] = False,
    seller: Annotated[
        str | None, typer.Option("--seller", help="Manual sellers: the seller's name.")
    ] = None,
    renew_url: Annotated[
        str | None, typer.Option("--renew-url", help="Manual sellers: the page to renew on.")
    ] = None,
    support: Annotated[
        str | None,
        typer.Option("--support", help="Manual sellers: whom to contact (e-mail, WeChat ID)."),
    ] = None,
    stacking: Annotated[
        str | None,
        typer.Option(
            "--stacking",
            autocompletion=complete.choices("extend", "restart"),
            help="Manual sellers: a top-up's days extend the current end (extend, default) "
            "or count from the top-up (restart).",
        ),
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Store an account; its secrets are asked without echo and kept in the OS keyring.

    Examples: esimctl account add trip --provider airalo · printf 'API_KEY=...\\n' |
    esimctl account add go --provider esimgo --secrets-stdin · esimctl account add jp-card
    --provider manual --renew-url https://shop.example/renew --support help@shop.example
    """
    from esimctl.cli.commands.account import AddOptions, parse_set, run_add
    from esimctl.cli.commands.common import finish

    env = context.begin("account add", json=json_)
    options = parse_set(set_)
    manual = {"seller": seller, "renew_url": renew_url, "support": support, "stacking": stacking}
    options.update({k: v for k, v in manual.items() if v is not None})
    opts = AddOptions(name, provider, base_url, secrets_stdin, store, options, replace)
    _done(env, finish(env, run_add(opts, env), json=json_))


@account_app.command("list")
def account_list(json_: JsonOpt = False, wide: WideOpt = False) -> None:
    """List accounts and where each secret lives (never the secret)."""
    from esimctl.cli.commands.account import run_list
    from esimctl.cli.commands.common import finish

    env = context.begin("account list", json=json_, wide=wide)
    _done(env, finish(env, run_list(env), json=json_))


@account_app.command("test")
def account_test(
    name: Annotated[
        str, typer.Argument(help="The account to check.", autocompletion=complete.accounts)
    ],
    json_: JsonOpt = False,
) -> None:
    """Check an account's credentials with one cheap call to its provider."""
    from esimctl.cli.commands.account import run_test
    from esimctl.cli.commands.common import finish

    env = context.begin("account test", json=json_)
    _done(env, finish(env, run_test(name, env), json=json_))


@account_app.command("remove")
def account_remove(
    name: Annotated[
        str, typer.Argument(help="The account to remove.", autocompletion=complete.accounts)
    ],
    yes: YesOpt = False,
    json_: JsonOpt = False,
) -> None:
    """Remove an account and its stored secrets (its orders stay in the ledger)."""
    from esimctl.cli.commands.account import run_remove
    from esimctl.cli.commands.common import finish

    env = context.begin("account remove", json=json_)
    _done(env, finish(env, run_remove(name, env, yes=yes), json=json_))


def _report(env: Env, exc: EsimctlError) -> int:
    inv = context.current()
    if inv.json and inv.command:
        from esimctl.output.emit import write_json

        write_json(env, inv.command, None, [exc], exc.exit_code)
    from esimctl.cli.commands.common import one_line

    where = f"{exc.account}: " if exc.account and exc.account not in exc.message else ""
    env.stderr.write(f"error: {where}{one_line(exc.message)}\n")
    if exc.hint:
        env.stderr.write(f"hint: {exc.hint}\n")
    env.stderr.flush()
    return int(exc.exit_code)


def run(argv: list[str] | None = None, env: Env | None = None) -> int:
    """Run esimctl with ``argv``; return the exit code. Never raises (but with --debug)."""
    args = sys.argv[1:] if argv is None else argv
    env = env or Env()
    if args == ["--version"]:
        # Alone on the line it needs no command tree: answer before Typer builds one.
        env.stdout.write(VERSION_LINE)
        return 0
    context.start(env)
    try:
        return _run(args, env)
    finally:
        env.close()


#: Root options that take a value (the next word is not a command).
_VALUED_ROOT_OPTIONS = ("--color",)


def _app_for(args: list[str]) -> typer.Typer:
    """The app with only the command being run (and the root options): Typer reads the
    signature of every command it builds, which costs start-up for each command added.
    Without a known command (``--help``, a typo), the whole app, for its help and errors."""
    import copy

    words = iter(args)
    name = None
    for word in words:
        if word in _VALUED_ROOT_OPTIONS:
            next(words, None)
        elif not word.startswith("-"):
            name = word
            break
    if name is None:
        if any(a in ("-h", "--help") for a in args):
            return _without_subcommands(app)
        return app
    commands = [
        c
        for c in app.registered_commands
        if (c.name or (c.callback.__name__ if c.callback else "").replace("_", "-")) == name
    ]
    groups = [g for g in app.registered_groups if g.name == name]
    if not commands and not groups:
        return app
    slim = copy.copy(app)
    slim.registered_commands = commands
    slim.registered_groups = groups
    return slim


def _without_subcommands(full: typer.Typer) -> typer.Typer:
    """For ``esimctl --help``: the groups (account, esim, ...) listed by their own help,
    without building each of their subcommands, which the root help does not show."""
    import copy

    slim = copy.copy(full)
    groups = []
    for g in full.registered_groups:
        shallow = copy.copy(g)
        if g.typer_instance is not None:
            empty = copy.copy(g.typer_instance)
            empty.registered_commands = []
            empty.registered_groups = []
            shallow.typer_instance = empty
        groups.append(shallow)
    slim.registered_groups = groups
    return slim


def _run(args: list[str], env: Env) -> int:
    from typer._click.exceptions import ClickException, NoArgsIsHelpError  # vendored click

    complete = bool(env.environ.get("_ESIMCTL_COMPLETE"))
    command = typer.main.get_command(app if complete else _app_for(args))
    if env.environ.get("_ESIMCTL_COMPLETE"):
        # A shell asks what a Tab offers: Typer answers in command.main, with the shells'
        # formats registered (add_completion=False leaves them out; `esimctl completion`
        # prints the scripts instead of --install-completion).
        from typer._completion_classes import completion_init

        completion_init()
    try:
        rv = command.main(args=args, prog_name="esimctl", standalone_mode=False)
        code = int(rv) if isinstance(rv, int) else 0
        if code == ExitCode.INTERRUPTED and not context.current().finished:
            # Typer turns Ctrl-C into a silent 130: say it, in the envelope too.
            from esimctl.errors import Interrupted

            return _report(env, Interrupted("interrupted: nothing more was done"))
        return code
    except typer.Exit as exc:
        return int(exc.exit_code)
    except SystemExit as exc:
        # Typer answers a shell's completion request (_ESIMCTL_COMPLETE) and exits.
        return exc.code if isinstance(exc.code, int) else 0
    except NoArgsIsHelpError as exc:
        env.stdout.write(exc.format_message() + "\n")
        return 0
    except EsimctlError as exc:
        if env.debug:
            import traceback

            traceback.print_exc(file=env.stderr)
        return _report(env, exc)
    except ClickException as exc:
        # Usage errors: one line and a hint, exit 2.
        msg = exc.format_message()
        ctx = getattr(exc, "ctx", None)
        env.stderr.write(f"error: {msg}\n")
        if ctx is not None:
            env.stderr.write(f"hint: run '{ctx.command_path} --help'\n")
        env.stderr.flush()
        return ExitCode.USAGE if exc.exit_code == 2 else int(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        from esimctl.errors import Interrupted

        return _report(env, Interrupted("interrupted: nothing more was done"))
    except BrokenPipeError:
        return 0
    except OSError as exc:
        # A file esimctl could not read or write (permissions, a full disk): say which.
        where = f" ({exc.filename})" if exc.filename else ""
        return _report(env, EsimctlError(f"{exc.strerror or type(exc).__name__}{where}"))
    except Exception as exc:
        if env.debug:
            raise
        sqlite3 = sys.modules.get("sqlite3")
        if sqlite3 is not None and isinstance(exc, sqlite3.Error):
            # A ledger read outside ledger.py's own methods: the same one-line errors.
            from esimctl.ledger import ledger_error

            return _report(env, ledger_error(exc, env.paths.ledger_file))
        return _report(
            env,
            EsimctlError(f"unexpected {type(exc).__name__}; run again with --debug for details"),
        )


def main(env: Env | None = None) -> None:
    """The ``esimctl`` program; ``env`` is for the test launcher (tests/launcher.py)."""
    import os

    # Belt and braces: whatever esimctl (or a library) creates is private (0600 / 0700),
    # whatever the user's umask; paths.private_dir and private_file set modes themselves.
    os.umask(0o077)
    code = run(env=env)
    try:
        if sys.stdout is not None:  # `esimctl status >&-`
            sys.stdout.flush()
    except BrokenPipeError:
        # `esimctl status | head -1`: the reader left; say nothing more.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(code)
