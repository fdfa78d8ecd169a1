"""``esimctl account add|list|test|remove``: accounts in config, secrets in the keyring."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from esimctl import parsing
from esimctl.config import AccountConfig
from esimctl.credentials import KeyringUnavailable, env_var
from esimctl.env import Env
from esimctl.errors import CredentialsError, InvalidInput
from esimctl.output.emit import Column, Table
from esimctl.output.human import esc
from esimctl.providers import registry

from .common import Result, ask, ask_secret, confirm

STORES = ("keyring", "file")


@dataclass(frozen=True)
class AddOptions:
    name: str
    provider: str
    base_url: str | None = None
    secrets_stdin: bool = False
    store: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    replace: bool = False


def _read_stdin_secrets(env: Env, fields: tuple[str, ...]) -> dict[str, str]:
    """``FIELD=value`` lines, or bare values in the order of the fields."""
    lines = [ln.strip() for ln in env.stdin.read().splitlines() if ln.strip()]
    named = dict(ln.split("=", 1) for ln in lines if "=" in ln and ln.split("=", 1)[0] in fields)
    if named:
        return {k.strip(): v.strip() for k, v in named.items()}
    return dict(zip(fields, lines, strict=False))


def run_add(opts: AddOptions, env: Env) -> Result:
    name = parsing.account_name(opts.name)
    cls = registry.load(opts.provider)
    config = env.config
    existing = next((a for a in config.accounts() if a.name == name), None)
    if existing is not None and not opts.replace:
        raise InvalidInput(
            f"account {name!r} exists already; pass --replace to store new settings and secrets"
        )
    # --replace changes what is given and keeps the rest (base_url, store, options).
    kept = existing if existing is not None and existing.provider == opts.provider else None
    options = dict(kept.options) if kept else {}
    options.update(opts.options)
    cls.check_options(options)
    store = opts.store or str(options.get("credential_store", "keyring"))
    if store not in STORES:
        raise InvalidInput(f"invalid --store {store!r}: use keyring or file")
    options.pop("credential_store", None)
    if store != "keyring":
        options["credential_store"] = store
    base_url = opts.base_url or (kept.base_url if kept else None)
    acc = AccountConfig(name, opts.provider, base_url, options)
    config.set_account(acc)  # validates before anything is written
    fields = cls.secret_fields
    secrets: dict[str, str] = {}
    if fields:
        if opts.secrets_stdin:
            secrets = _read_stdin_secrets(env, fields)
        elif env.can_prompt:
            for f in fields:
                secrets[f] = ask_secret(env, f"{cls.display_name} {f.lower().replace('_', ' ')}: ")
        else:
            raise InvalidInput(
                "no terminal to ask for the secrets: pass --secrets-stdin and write "
                + " and ".join(f"{f}=..." for f in fields)
                + " lines on stdin"
            )
        missing = [f for f in fields if not secrets.get(f)]
        if missing:
            raise InvalidInput(f"missing {', '.join(missing)} for a {opts.provider} account")
        target = env.credentials.store_for(store)
        try:
            target.set(name, secrets)
            # A keyring that accepts and forgets (the null backend) must not pass for one.
            if target.get(name) != secrets:
                raise KeyringUnavailable(f"{target.where(name)} did not keep them")
        except KeyringUnavailable as exc:
            raise CredentialsError(
                f"cannot store secrets in the keyring ({exc}): use --store file, or set "
                + " and ".join(env_var(name, f) for f in fields),
                account=name,
                provider=opts.provider,
            ) from None
    config.save()
    where = env.credentials.store_for(store).where(name) if fields else "no secrets needed"
    return Result(
        command="account add",
        data={
            "account": {
                "name": name,
                "provider": opts.provider,
                "base_url": opts.base_url,
                "secrets": where,
            }
        },
        lines=[
            f"[green]✓[/] account {name!r} ({cls.display_name}) saved; secrets: {where}",
            f"  check it with: esimctl account test {name}",
        ],
    )


def run_list(env: Env) -> Result:
    rows = []
    table = Table(
        [
            Column("NAME", style="bold", stack="title"),
            Column("PROVIDER", stack="badge"),
            Column("BASE URL"),
            Column("SECRETS", no_wrap=False, breaks="; "),
        ],
        # On a narrow terminal: the secrets' sources, then the base URL, on lines of their own.
        give_way=[("SECRETS", "line"), ("BASE URL", "line")],
    )
    for acc in env.config.accounts():
        try:
            fields = registry.load(acc.provider).secret_fields
        except InvalidInput:
            fields = ()
        store = str(acc.options.get("credential_store", "keyring"))
        sources = env.credentials.sources(acc.name, fields, store) if fields else []
        rows.append(
            {
                "name": acc.name,
                "provider": acc.provider,
                "base_url": acc.base_url,
                "secrets": [{"field": s.field, "source": s.source} for s in sources],
            }
        )
        where = "; ".join(f"{s.field}: {s.source}" for s in sources) or "none needed"
        table.add(acc.name, acc.provider, acc.base_url or "default", where)
    return Result(
        command="account list",
        data={"accounts": rows},
        table=table,
        records=rows,
        empty="no accounts yet: esimctl account add NAME --provider P",
    )


def run_test(name: str, env: Env) -> Result:
    acc = env.config.account(name)

    async def check() -> str:
        provider = await env.session.provider(acc)
        return await provider.check()

    try:
        detail = env.session.run(check())
    except Exception as exc:
        from esimctl.errors import EsimctlError

        if isinstance(exc, EsimctlError):
            raise exc.for_account(acc.name, acc.provider) from None
        raise
    return Result(
        command="account test",
        data={"account": acc.name, "provider": acc.provider, "ok": True, "detail": detail},
        lines=[f"[green]✓[/] {acc.name} ({acc.provider}): credentials work; {esc(detail)}"],
    )


def run_remove(name: str, env: Env, *, yes: bool) -> Result:
    acc = env.config.account(name)
    confirm(env, f"Remove account {name!r} and its stored secrets?", yes=yes, what="remove")
    store = env.credentials.store_for(str(acc.options.get("credential_store", "keyring")))
    removed = False
    for key in (name, f"{name}#token"):
        with contextlib.suppress(KeyringUnavailable):
            removed = store.delete(key) or removed
    from esimctl.credentials import FileStore

    FileStore(env.paths.state_dir / "tokens").delete(f"{name}#token")
    env.config.remove_account(name)
    env.config.save()
    # Only the cached figures go: the account's orders stay in the ledger, and 'history'
    # keeps listing them (marked from a removed account; --account NAME still finds them).
    env.ledger.cache_drop(name)
    kept = len(env.orders.kept(account=name))
    where = (
        f"its {kept} order(s) stay in the history: esimctl history --account {name}"
        if kept
        else "it has no orders in the ledger"
    )
    return Result(
        command="account remove",
        data={"account": name, "secrets_removed": removed, "orders_kept": kept},
        lines=[
            f"[green]✓[/] account {name!r} removed"
            + ("" if removed else " (no stored secrets found)")
            + f"; {where}"
        ],
    )


def parse_set(values: list[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for v in values or []:
        if "=" not in v:
            raise InvalidInput(f"invalid --set {v!r}: use KEY=VALUE")
        k, _, val = v.partition("=")
        out[k.strip()] = val.strip()
    return out


__all__ = ["AddOptions", "ask", "parse_set", "run_add", "run_list", "run_remove", "run_test"]
