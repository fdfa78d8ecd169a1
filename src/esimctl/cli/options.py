"""Option aliases shared by the commands, listed in each signature so they work after it."""

from __future__ import annotations

from typing import Annotated

import typer

from esimctl.cli import complete

JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print the result as JSON (docs/json.md) on stdout.")
]
JsonlOpt = Annotated[
    bool, typer.Option("--jsonl", help="Print one JSON record per line (for large lists).")
]
AccountOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--account",
        "-a",
        help="Only this account (repeatable).",
        autocompletion=complete.accounts,
    ),
]
YesOpt = Annotated[
    bool, typer.Option("--yes", "-y", help="Do not ask: consent given (for scripts and cron).")
]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Show what would happen; buy nothing.")]
RefreshOpt = Annotated[
    bool, typer.Option("--refresh", help="Ask the providers now; bypass the cache.")
]
WideOpt = Annotated[
    bool,
    typer.Option(
        "--wide", help="The full table, every column, even on a narrow terminal or in a pipe."
    ),
]
