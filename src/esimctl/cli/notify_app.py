"""Typer wiring of ``esimctl notify``: where ``status --notify`` and ``renew --auto`` send
their events (docs/notifications.md).

As in app.py, each command parses its flags into an options dataclass and calls a
``run_x`` of ``cli/commands/notify.py``, which knows nothing about Typer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from esimctl.cli import complete, context
from esimctl.cli.options import JsonOpt, WideOpt, YesOpt
from esimctl.env import Env

if TYPE_CHECKING:
    from esimctl.cli.commands.common import Result

notify_app = typer.Typer(
    help="Where notifications go: Apprise URLs (kept in the OS keyring, like secrets) or a "
    "command that gets each event as JSON; 'renew --auto' and 'status --notify' send them.",
    no_args_is_help=True,
)


def _finish(env: Env, result: Result, json_: bool) -> None:
    from esimctl.cli.commands.common import finish

    code = finish(env, result, json=json_)
    if code:
        raise typer.Exit(code)


@notify_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="Target name: letters, digits, '-' and '_'.")],
    url: Annotated[
        str | None,
        typer.Argument(
            help="An Apprise URL, e.g. ntfys://ntfy.sh/my-topic. It holds a token: prefer "
            "--url-stdin (or the prompt), which keeps it out of shell history.",
            show_default=False,
        ),
    ] = None,
    url_stdin: Annotated[
        bool,
        typer.Option("--url-stdin", help="Read the URL from stdin (recommended: no history)."),
    ] = False,
    command: Annotated[
        str | None,
        typer.Option(
            "--command",
            help="Instead of a URL: run this program (split like a shell, never run by one) "
            "with each event as JSON on stdin.",
        ),
    ] = None,
    events: Annotated[
        str | None,
        typer.Option(
            "--events", help="Only these events, e.g. low_data,topup_bought (default: all)."
        ),
    ] = None,
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            help="keyring (default) or file (0600, for servers).",
            autocompletion=complete.choices("keyring", "file"),
        ),
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Add a notification target: an Apprise URL, checked (nothing is sent) and stored in the
    OS keyring, never in config; or a --command. Its [notify.targets.NAME] goes to config.

    Examples: printf '%s\\n' 'tgram://BOTTOKEN/CHATID' | esimctl notify add phone --url-stdin
    · esimctl notify add phone (asks for the URL) · esimctl notify add hook --command
    '/usr/local/bin/esim-hook -v' --events low_data,topup_bought
    """
    from esimctl.cli.commands.notify import AddOptions, run_add

    env = context.begin("notify add", json=json_)
    opts = AddOptions(name, url, url_stdin, command, events, store)
    _finish(env, run_add(opts, env), json_)


@notify_app.command("list")
def list_(json_: JsonOpt = False, wide: WideOpt = False) -> None:
    """List notification targets: kind, where each URL is read from (never the URL), events."""
    from esimctl.cli.commands.notify import run_list

    env = context.begin("notify list", json=json_, wide=wide)
    _finish(env, run_list(env), json_)


@notify_app.command("remove")
def remove(
    name: Annotated[
        str, typer.Argument(help="The target to remove.", autocompletion=complete.notify_targets)
    ],
    yes: YesOpt = False,
    json_: JsonOpt = False,
) -> None:
    """Remove a notification target from config and its stored URL from the keyring.

    Examples: esimctl notify remove phone --yes
    """
    from esimctl.cli.commands.notify import run_remove

    env = context.begin("notify remove", json=json_)
    _finish(env, run_remove(name, env, yes=yes), json_)


@notify_app.command("test")
def test(
    name: Annotated[
        str | None,
        typer.Argument(
            help="Only this target (default: every target).",
            autocompletion=complete.notify_targets,
        ),
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Send a test notification; exit 1 with one line per target that did not get it.

    Examples: esimctl notify test · esimctl notify test phone --json
    """
    from esimctl.cli.commands.notify import run_test

    env = context.begin("notify test", json=json_)
    _finish(env, run_test(name, env), json_)
