"""Shell completion: the values a Tab offers, from what esimctl already knows.

Typer answers the shell's request itself (``_ESIMCTL_COMPLETE=complete_bash`` with the
shell's ``COMP_WORDS`` and ``COMP_CWORD``, or ``_TYPER_COMPLETE_ARGS`` for zsh and fish; the
scripts of ``esimctl completion SHELL`` set them): commands and options come from the command
tree, and the values of arguments and options from the functions here — account names from
config, eSIM labels and ICCID suffixes from the cached eSIM lists and the last figures in the
ledger, plan ids from the top-ups last fetched, the seller plans saved and earlier orders.

Nothing here asks a provider, reads the keyring or imports the HTTP stack, creates a ledger
that does not exist, or fails: what cannot be read is not offered.

No ``from __future__ import annotations``: Typer reads these signatures on every run.
"""

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from esimctl.env import Env

Item = tuple[str, str]


def _env(ctx: typer.Context) -> "Env | None":
    """The run's ``Env``, in the demo's profile for ``esimctl --demo ... <Tab>``."""
    from esimctl.cli import context

    try:
        env = context.current().env
    except AssertionError:  # not run through cli.app.run
        return None
    if ctx.find_root().params.get("demo") and "paths" not in env.__dict__:
        env.demo = True
    return env


def _quietly(fn: Callable[["Env"], list[Item]], ctx: typer.Context) -> list[Item]:
    env = _env(ctx)
    if env is None:
        return []
    try:
        return fn(env)
    except Exception:  # a config or ledger that cannot be read offers nothing
        return []


def _has_ledger(env: "Env") -> bool:
    return env.paths.ledger_file.exists()


# -- accounts -----------------------------------------------------------------------------------


def accounts(ctx: typer.Context, incomplete: str) -> list[Item]:
    """Every account of config, with its provider."""
    return _quietly(lambda env: [(a.name, a.provider) for a in env.config.accounts()], ctx)


def manual_accounts(ctx: typer.Context, incomplete: str) -> list[Item]:
    """The accounts of sellers without an API (``esim add``, ``esim plan ...``)."""

    def found(env: "Env") -> list[Item]:
        return [(a.name, "manual seller") for a in env.config.accounts() if a.provider == "manual"]

    return _quietly(found, ctx)


def notify_targets(ctx: typer.Context, incomplete: str) -> list[Item]:
    """The notification targets of config."""
    return _quietly(lambda env: [(t.name, "target") for t in env.config.notify().targets], ctx)


# -- eSIMs --------------------------------------------------------------------------------------


def known_esims(env: "Env") -> list[tuple[str, str | None, str]]:
    """``(iccid, label, account)`` of every eSIM known without the network: each account's
    cached list, or the last figures the ledger kept of it; labels of config first."""
    if not _has_ledger(env):
        return []
    from esimctl.service import read_cached_esims

    config = env.config
    names = {a.name for a in config.accounts()}
    seen: dict[tuple[str, str], str | None] = {}
    cached: set[str] = set()
    for acc in config.accounts():
        hit = read_cached_esims(env, acc)
        if hit is not None:
            cached.add(acc.name)
            for e in hit.esims:
                seen[(e.account, e.iccid)] = e.label
    for row in env.ledger.latest_snapshots():
        account, iccid = row.get("account"), row.get("iccid")
        if account in names and account not in cached and isinstance(iccid, str):
            seen.setdefault((account, iccid), row.get("label"))
    return [
        (iccid, config.label_for(iccid) or label, account)
        for (account, iccid), label in sorted(seen.items())
    ]


def _suffixes(iccids: Iterable[str]) -> dict[str, str]:
    """The shortest suffix of at least 4 digits that names each ICCID alone."""
    every = sorted(set(iccids))
    out = {}
    for iccid in every:
        n = 4
        while n < len(iccid) and any(o != iccid and o.endswith(iccid[-n:]) for o in every):
            n += 1
        out[iccid] = iccid[-n:]
    return out


def _named(name: str, known: list[tuple[str, str | None, str]]) -> list[tuple[str, str]]:
    """``(account, iccid)`` of the eSIMs ``name`` may mean (as ``service.match_esim``)."""
    n = name.strip()
    exact = [(a, i) for i, _, a in known if i == n]
    if exact:
        return exact
    by_label = [(a, i) for i, label, a in known if label and label.lower() == n.lower()]
    if by_label:
        return by_label
    if n.isdigit() and len(n) >= 4:
        return [(a, i) for i, _, a in known if i.endswith(n)]
    return []


def esims(ctx: typer.Context, incomplete: str) -> list[Item]:
    """Labels and ICCID suffixes of the eSIMs known (the full ICCID once its start is typed)."""

    def found(env: "Env") -> list[Item]:
        known = known_esims(env)
        given = set(ctx.params.get("esims") or ())
        suffix = _suffixes(i for i, _, _ in known)
        items: dict[str, str] = {}
        for iccid, label, account in known:
            if label and label not in given:
                items.setdefault(label, f"…{suffix[iccid]} · {account}")
            if suffix[iccid] not in given and iccid not in given:
                items.setdefault(suffix[iccid], f"{label} · {account}" if label else account)
        if incomplete.isdigit() and not any(v.startswith(incomplete) for v in items):
            for iccid, label, account in known:
                items.setdefault(iccid, f"{label} · {account}" if label else account)
        return list(items.items())

    return _quietly(found, ctx)


# -- plans --------------------------------------------------------------------------------------


def plan_ids(ctx: typer.Context, incomplete: str) -> list[Item]:
    """Plan ids for ``renew ESIM --plan``: the top-ups last fetched for that eSIM (``plans
    ESIM``), the seller's plans saved for a manual account, and plans bought for it before."""

    def found(env: "Env") -> list[Item]:
        if not _has_ledger(env):
            return []
        from esimctl.output import human
        from esimctl.service import remembered_topups

        known = known_esims(env)
        name = ctx.params.get("esim")
        targets = _named(name, known) if name else []
        if not targets:
            targets = [(a, i) for i, _, a in known]
        providers = {a.name: a.provider for a in env.config.accounts()}
        items: dict[str, str] = {}
        for account, iccid in targets:
            for p in remembered_topups(env, account, iccid):
                items.setdefault(p.id, f"{p.name} · {human.money(p.price)}")
        for account in sorted({a for a, _ in targets if providers.get(a) == "manual"}):
            for plan_id, about in _seller_plans(env, account):
                items.setdefault(plan_id, about)
        for account, iccid in targets:
            for row in env.ledger.orders(account=account, iccid=iccid):
                if row.plan_id:
                    items.setdefault(row.plan_id, f"{row.plan or row.plan_id} · bought before")
        return list(items.items())

    return _quietly(found, ctx)


def _seller_plans(env: "Env", account: str) -> list[Item]:
    from esimctl.providers.manual import ManualStore

    return [(p.id, f"{p.name} · {p.price}") for p in ManualStore(env.ledger).plans(account)]


def seller_plan_ids(ctx: typer.Context, incomplete: str) -> list[Item]:
    """The seller plans saved on the account named before (``esim plan remove ACCOUNT``)."""

    def found(env: "Env") -> list[Item]:
        account = ctx.params.get("account")
        if not account or not _has_ledger(env):
            return []
        return _seller_plans(env, str(account))

    return _quietly(found, ctx)


# -- fixed choices ------------------------------------------------------------------------------


def choices(*values: str) -> Callable[[str], list[str]]:
    """A completion of fixed words (``--sort``, ``--color``, shells)."""

    def complete(incomplete: str) -> list[str]:
        return list(values)

    return complete


def providers(incomplete: str) -> list[str]:
    """Provider ids for ``account add --provider``: the built-ins and installed plugins."""
    from esimctl.providers import registry

    try:
        return registry.provider_ids()
    except Exception:  # unreadable package metadata: the built-ins still are
        return sorted(registry.BUILTINS)
