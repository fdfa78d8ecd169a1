"""``esimctl notify add|list|remove|test``: targets in config, their Apprise URLs as secrets."""

from __future__ import annotations

import contextlib
import shlex
from dataclasses import dataclass
from typing import Any

from esimctl import config_schema
from esimctl.config import notify_target_name
from esimctl.credentials import KeyringUnavailable
from esimctl.env import Env
from esimctl.errors import CredentialsError, EsimctlError, ExitCode, InvalidInput, NotFound
from esimctl.notify.events import Event
from esimctl.notify.targets import (
    UNKNOWN_URL,
    URL_FIELD,
    Target,
    apprise_knows,
    deliver,
    load_targets,
    scheme_of,
    secret_user,
    url_env_var,
)
from esimctl.output.emit import Column, Table
from esimctl.output.human import esc

from .common import Result, ask_secret, confirm

STORES = ("keyring", "file")
NO_TARGETS = "no notification targets yet: esimctl notify add NAME URL"


@dataclass(frozen=True)
class AddOptions:
    name: str
    url: str | None = None
    url_stdin: bool = False
    command: str | None = None
    events: str | None = None
    store: str | None = None


def _events(value: str | None) -> list[str] | None:
    if value is None:
        return None
    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names:
        raise InvalidInput("--events needs event names, e.g. low_data,topup_bought")
    return list(config_schema.NOTIFY_TARGET["events"].parse(names))


def _command(value: str) -> list[str]:
    try:
        argv = shlex.split(value)
    except ValueError as exc:
        raise InvalidInput(f"invalid --command: {exc}") from None
    if not argv:
        raise InvalidInput("--command needs a program, e.g. --command '/usr/local/bin/hook -v'")
    return argv


def _url(opts: AddOptions, env: Env) -> str:
    if opts.url is not None and opts.url_stdin:
        raise InvalidInput("give the URL once: as an argument or with --url-stdin")
    if opts.url is not None:
        url = opts.url
    elif opts.url_stdin:
        url = next((ln for ln in env.stdin.read().splitlines() if ln.strip()), "")
    elif env.can_prompt:
        url = ask_secret(env, "Apprise URL (not shown): ")
    else:
        raise InvalidInput(
            "no terminal to ask for the URL: pass --url-stdin and write the URL on stdin"
        )
    url = url.strip()
    if not url:
        raise InvalidInput("no URL given")
    if not apprise_knows(url):
        scheme = scheme_of(url)
        shown = f" ({scheme}://…)" if scheme else ""
        raise InvalidInput(
            f"refusing the URL{shown}: {UNKNOWN_URL}; the services and their forms are at "
            "https://appriseit.com/services/"
        )
    return url


def run_add(opts: AddOptions, env: Env) -> Result:
    name = notify_target_name(opts.name)
    if opts.command is not None and (opts.url is not None or opts.url_stdin):
        raise InvalidInput("a target has a URL or a --command, not both")
    events = _events(opts.events)
    store = opts.store or "keyring"
    if store not in STORES:
        raise InvalidInput(f"invalid --store {store!r}: use keyring or file")
    config = env.config
    existing = next((t for t in config.notify().targets if t.name == name), None)
    table: dict[str, Any] = {}
    if existing is not None:
        if existing.events is not None:
            table["events"] = list(existing.events)
        if existing.command is not None:
            table["command"] = list(existing.command)
        if (existing.command is None) != (opts.command is None):
            kind = "runs a command" if existing.command else "sends to an Apprise URL"
            raise InvalidInput(
                f"target {name!r} {kind}; to change that, run 'esimctl notify remove {name}' first"
            )
    if events is not None:
        table["events"] = events
    if opts.command is not None:
        if opts.store is not None:
            raise InvalidInput("--store is for a URL: a command target has no secret")
        table["command"] = _command(opts.command)
        config.set_notify_target(name, table)
        config.save()
        return _added(name, table, store=None, where=None)
    url = _url(opts, env)
    config.set_notify_target(name, table)  # validates before anything is written
    user = secret_user(name)
    target = env.credentials.store_for(store)
    try:
        target.set(user, {URL_FIELD: url})
        # A keyring that accepts and forgets (the null backend) must not pass for one.
        if target.get(user) != {URL_FIELD: url}:
            raise KeyringUnavailable(f"{target.where(user)} did not keep it")
    except KeyringUnavailable as exc:
        raise CredentialsError(
            f"cannot store the URL in the keyring ({exc}): use --store file, or set "
            f"{url_env_var(name)}"
        ) from None
    if store == "keyring":
        # The file store is read first: an older URL there must not shadow this one.
        env.credentials.store_for("file").delete(user)
    config.save()
    return _added(name, table, store=store, where=target.where(user))


def _added(name: str, table: dict[str, Any], *, store: str | None, where: str | None) -> Result:
    events = table.get("events")
    sends = ", ".join(events) if events else "every event"
    what = f"URL: {where}" if where else f"runs {table['command'][0]!r}"
    return Result(
        command="notify add",
        data={
            "target": {
                "name": name,
                "kind": "apprise" if store else "command",
                "events": events,
                "command": table.get("command"),
                "url_from": store,
            }
        },
        lines=[
            f"[green]✓[/] notify target {name!r} saved ({esc(sends)}); {esc(what)}",
            f"  check it with: esimctl notify test {name}",
        ],
    )


def _record(t: Target) -> dict[str, Any]:
    return {
        "name": t.name,
        "kind": t.kind,
        "events": list(t.events) if t.events is not None else None,
        "command": list(t.command) if t.command else None,
        "url_from": t.url_from,
        "env_var": None if t.command else url_env_var(t.name),
    }


def _where(t: Target) -> str:
    if t.command:
        return f"runs {t.command[0]}"
    if t.url_from == "env":
        return f"env {t.url_detail}"
    if t.url_from == "missing":
        return f"missing: esimctl notify add {t.name} URL"
    if t.url_from == "unavailable":
        return f"unavailable ({t.url_detail})"
    return str(t.url_from)


def run_list(env: Env) -> Result:
    table = Table(
        [
            Column("NAME", style="bold", stack="title"),
            Column("KIND", stack="badge"),
            Column("URL FROM", no_wrap=False, key="url from"),
            Column("EVENTS", no_wrap=False, breaks=", "),
        ],
        # On a narrow terminal: the events, then where the URL is read from, on lines of
        # their own.
        give_way=[("EVENTS", "line"), ("URL FROM", "line")],
    )
    rows = []
    for t in load_targets(env):
        rows.append(_record(t))
        table.add(t.name, t.kind, _where(t), ", ".join(t.events) if t.events else "all")
    return Result(
        command="notify list",
        data={"targets": rows},
        table=table,
        records=rows,
        empty=NO_TARGETS,
    )


def run_remove(name: str, env: Env, *, yes: bool) -> Result:
    config = env.config
    target = next((t for t in config.notify().targets if t.name == name), None)
    if target is None:
        known = ", ".join(t.name for t in config.notify().targets) or "none yet"
        raise NotFound(f"unknown notify target {name!r} (targets: {known})")
    confirm(env, f"Remove notify target {name!r} and its stored URL?", yes=yes, what="remove")
    removed = False
    if target.command is None:
        for store in ("file", "keyring"):
            with contextlib.suppress(KeyringUnavailable):
                removed = env.credentials.store_for(store).delete(secret_user(name)) or removed
    config.remove_notify_target(name)
    config.save()
    note = "" if removed or target.command else " (no stored URL found)"
    return Result(
        command="notify remove",
        data={"target": name, "url_removed": removed},
        lines=[f"[green]✓[/] notify target {name!r} removed{note}"],
    )


def test_event(env: Env, target: str) -> Event:
    """What ``notify test`` sends: an event of kind ``test`` (every target gets it)."""
    return Event(
        kind="test",
        key="test",
        title="esimctl: test notification",
        message=f"This is a test of the notify target {target!r} of esimctl.",
        action="Nothing to do: it works.",
        at=env.now(),
        standing=False,
    )


def run_test(name: str | None, env: Env) -> Result:
    targets = load_targets(env)
    if not targets:
        raise NotFound(NO_TARGETS)
    if name is not None:
        chosen = [t for t in targets if t.name == name]
        if not chosen:
            known = ", ".join(t.name for t in targets)
            raise NotFound(f"unknown notify target {name!r} (targets: {known})")
        targets = chosen
    timeout = env.config.notify().timeout.total_seconds()
    results, lines, errors = [], [], []
    for t in targets:
        event = test_event(env, t.name)
        reason = deliver(
            t,
            event.to_json(),
            event.title,
            f"{event.message}\n{event.action}",
            timeout=timeout,
        )
        results.append(
            {"target": t.name, "kind": t.kind, "delivered": reason is None, "reason": reason}
        )
        if reason is None:
            lines.append(f"[green]✓[/] {t.name}: delivered")
        else:
            errors.append(EsimctlError(f"{t.name}: {reason}"))
    return Result(
        command="notify test",
        data={"results": results},
        lines=lines,
        errors=errors,
        exit_code=ExitCode.FAILURE if errors else ExitCode.OK,
    )


__all__ = ["AddOptions", "run_add", "run_list", "run_remove", "run_test"]
