"""Typer wiring of ``esimctl config``: where config.toml is, check it, edit it safely.

As in app.py, each command calls a ``run_x`` of ``cli/commands/config.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from esimctl.cli import context
from esimctl.cli.options import JsonOpt
from esimctl.env import Env

if TYPE_CHECKING:
    from esimctl.cli.commands.common import Result

config_app = typer.Typer(
    help="config.toml at hand: where it is, whether it is valid, and editing it safely.",
    no_args_is_help=True,
)


def _finish(env: Env, result: Result, json_: bool) -> None:
    from esimctl.cli.commands.common import finish

    code = finish(env, result, json=json_)
    if code:
        raise typer.Exit(code)


@config_app.command("path")
def path(json_: JsonOpt = False) -> None:
    """Print where config.toml is (it may not exist yet).

    Examples: esimctl config path · cat "$(esimctl config path)"
    """
    from esimctl.cli.commands.config import run_path

    env = context.begin("config path", json=json_)
    _finish(env, run_path(env), json_)


@config_app.command("check")
def check(json_: JsonOpt = False) -> None:
    """Check config.toml as every command reads it, and that each account's provider
    loads: one line "ok", or the first problem and exit 2.

    Examples: esimctl config check · esimctl config check && esimctl renew --auto --yes
    """
    from esimctl.cli.commands.config import run_check

    env = context.begin("config check", json=json_)
    _finish(env, run_check(env), json_)


@config_app.command("edit")
def edit(
    editor: Annotated[
        str | None,
        typer.Option("--editor", help="The editor to use (default: $VISUAL, then $EDITOR)."),
    ] = None,
) -> None:
    """Edit config.toml in your editor; it is saved only if it passes 'config check' (a
    terminal offers to edit again, otherwise the old file stays and your edit is kept aside).

    Examples: esimctl config edit · EDITOR=nano esimctl config edit · esimctl config edit
    --editor "code --wait"
    """
    from esimctl.cli.commands.config import EditOptions, run_edit

    env = context.begin("config edit")
    _finish(env, run_edit(EditOptions(editor), env), False)
