"""What every command module shares: the Result it returns, and how it is written out."""

from __future__ import annotations

import getpass
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from esimctl.env import Env
from esimctl.errors import Aborted, ConsentRequired, EsimctlError, ExitCode
from esimctl.output.emit import Table, write_json, write_jsonl, write_table


@dataclass
class Result:
    command: str
    data: dict[str, Any]
    table: Table | None = None
    errors: list[EsimctlError] = field(default_factory=list)
    exit_code: ExitCode = ExitCode.OK
    #: The JSON envelope's ``status``; None: taken from the exit code and errors.
    status: str | None = None
    #: Records for --jsonl (history, plans, status).
    records: list[dict[str, Any]] | None = None
    #: Lines for stderr on a human rendering ("bought ...", hints).
    notes: list[str] = field(default_factory=list)
    empty: str = "nothing to show"
    #: Human lines for stdout instead of a table (Rich markup allowed).
    lines: list[str] = field(default_factory=list)
    #: What ``-q`` prints (Rich markup allowed): only what needs the user, one line each —
    #: an eSIM needing attention, a renewal left to them, a limit that refused, an order
    #: overdue. Nothing at all when nothing does (docs/cron.md).
    needs_you: list[str] = field(default_factory=list)


def finish(env: Env, result: Result, *, json: bool = False, jsonl: bool = False) -> int:
    if json:
        write_json(env, result.command, result.data, result.errors, result.exit_code, result.status)
    elif jsonl:
        write_jsonl(env, result.records or [])
    elif env.quiet:
        for line in result.needs_you:
            env.out.print(line, highlight=False)
    elif result.table is not None:
        write_table(env, result.table, empty="" if result.errors else result.empty)
    else:
        for line in result.lines:
            env.out.print(line, highlight=False)
    for err in result.errors:
        where = f"{err.account}: " if err.account and err.account not in err.message else ""
        env.stderr.write(f"error: {where}{one_line(err.message)}\n")
    if not env.quiet:
        for note in result.notes:
            env.err.print(note, markup=False, highlight=False)
    return int(result.exit_code)


def one_line(text: str) -> str:
    """Errors are one line: a provider's or library's multi-line text is folded."""
    return " ".join(text.split())


def confirm(env: Env, question: str, *, yes: bool, what: str = "buy") -> None:
    """Consent: ``--yes``, or a y/N prompt on a terminal; otherwise exit 2."""
    if yes:
        return
    if not env.can_prompt:
        raise ConsentRequired(
            f"refusing to {what} without consent: pass --yes (no prompt is possible here)"
        )
    env.stderr.write(f"{question} [y/N] ")
    env.stderr.flush()
    answer = env.stdin.readline()
    if answer.strip().lower() not in ("y", "yes"):
        raise Aborted("nothing done: not confirmed")


def ask_secret(env: Env, prompt: str) -> str:
    """Read a secret without echo on a terminal (tests feed ``env.stdin``)."""
    if env.stdin is sys.stdin and env.stdin_tty:
        return getpass.getpass(prompt, stream=env.stderr)
    env.stderr.write(prompt)
    env.stderr.flush()
    return env.stdin.readline().rstrip("\n")


def ask(env: Env, prompt: str) -> str:
    env.stderr.write(prompt)
    env.stderr.flush()
    return env.stdin.readline().rstrip("\n")


def join(values: Sequence[str]) -> str:
    return ", ".join(values)
