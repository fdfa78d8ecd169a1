"""Option aliases shared by the commands, listed in each signature so they work after it."""

from __future__ import annotations

from typing import Annotated

import typer

JsonOpt = Annotated[bool, typer.Option("--json", help="Print SPEC's JSON envelope on stdout.")]
JsonlOpt = Annotated[
    bool, typer.Option("--jsonl", help="Print one JSON record per line (for large lists).")
]
AccountOpt = Annotated[
    list[str] | None,
    typer.Option("--account", "-a", help="Only this account (repeatable)."),
]
YesOpt = Annotated[
    bool, typer.Option("--yes", "-y", help="Do not ask: consent given (for scripts and cron).")
]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Show what would happen; buy nothing.")]
RefreshOpt = Annotated[
    bool, typer.Option("--refresh", help="Ask the providers now; bypass the cache.")
]
