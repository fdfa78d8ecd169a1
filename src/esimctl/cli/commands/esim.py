"""``esimctl esim``: eSIMs of sellers without an API, recorded by hand.

``add`` records an eSIM and its package, ``edit`` corrects it, ``reading`` records what the
seller's app shows, ``confirm`` or ``cancel`` a pending top-up, ``remove`` an eSIM,
``plan add|remove`` the seller's plans. Every value is checked before anything is written; the
figures are the provider's fold.

A value that parses but is unlikely — a reading above the total, a reading older than the
latest, an end date in the past, an activation in the future — is named and asked about on a
terminal, refused in a pipe (exit 2) unless ``--force`` (``insist``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from esimctl import parsing
from esimctl.config import AccountConfig
from esimctl.env import Env
from esimctl.errors import InvalidInput, NotFound
from esimctl.ledger import LedgerOrder
from esimctl.models import Esim
from esimctl.output import human
from esimctl.output.human import describe, esc
from esimctl.providers.manual import (
    ManualEsim,
    ManualProvider,
    Reading,
    SellerPlan,
    confirmed_detail,
    fold,
    is_topup,
    package_for_total,
)
from esimctl.purchasing.book import is_served
from esimctl.serialize import esim_json, iso, order_json, plan_json
from esimctl.service import attention_for, fetch_esims, match_esim, open_provider

from .common import Result, confirm
from .values import (
    PLAN_ID,
    activation,
    activation_in_future,
    check_label_free,
    countries,
    data_size,
    days,
    end_date,
    end_in_past,
    insist,
    name_of,
    past_time,
    plan_name,
    price,
)

# -- accounts and eSIMs of manual sellers -------------------------------------------------------


def manual_account(env: Env, name: str) -> tuple[AccountConfig, ManualProvider]:
    acc = env.config.account(name)
    if acc.provider != ManualProvider.id:
        raise InvalidInput(
            f"account {name!r} is a {acc.provider} account: 'esimctl esim' records eSIMs of "
            "sellers without an API (esimctl account add NAME --provider manual)"
        )
    provider = open_provider(env, acc)
    assert isinstance(provider, ManualProvider)
    return acc, provider


def manual_esims(env: Env, accounts: list[AccountConfig]) -> list[Esim]:
    """Fresh figures (they are local): pending top-ups that now show are settled on the way."""
    fetched = fetch_esims(env, accounts, refresh=True)
    if fetched.errors:
        raise fetched.errors[0]
    return [e for lst in fetched.results.values() for e in lst]


def find_esim(env: Env, name: str) -> tuple[Esim, ManualProvider]:
    accounts = [a for a in env.config.accounts() if a.provider == ManualProvider.id]
    if not accounts:
        raise InvalidInput(
            "no manual seller accounts yet: esimctl account add NAME --provider manual"
        )
    esim = match_esim(name, manual_esims(env, accounts))
    return esim, manual_account(env, esim.account)[1]


def refreshed(env: Env, account: str, iccid: str) -> Esim:
    for e in manual_esims(env, [env.config.account(account)]):
        if e.iccid == iccid:
            return e
    raise NotFound(f"eSIM {iccid} is no longer recorded")


def esim_record(env: Env, e: Esim) -> dict[str, Any]:
    """SPEC's status record of ``e``, attention included."""
    pending = env.orders.open_since([e]).get((e.account, e.iccid))
    reasons = attention_for(e, env.config.attention(), env.now(), pending_since=pending)
    return esim_json(e, reasons)


def figures(e: Esim, now: datetime) -> str:
    left = f"{human.size(e.data_remaining_bytes, e.unit_base)} left of "
    left += human.size(e.data_total_bytes, e.unit_base)
    end = f"until {human.local_time(e.expires_at)}" if e.expires_at else "end date unknown"
    as_of = human.ago(e.as_of, now) if e.as_of else "?"
    return f"{left}, {end} ({e.state.value.replace('_', ' ')}, as of {as_of})"


# -- esim add ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AddEsimOptions:
    account: str
    iccid: str
    data: str
    label: str | None = None
    countries: tuple[str, ...] = ()
    days: int | None = None
    until: str | None = None
    price: str | None = None
    activated: str | None = None
    plan: str | None = None
    order_number: str | None = None
    force: bool = False
    #: Its activation code (``LPA:1$SM-DP+$matching id``): a secret, kept in the keyring.
    lpa: str | None = None


def run_add_esim(opts: AddEsimOptions, env: Env) -> Result:
    acc, provider = manual_account(env, opts.account)
    now = env.now()
    base = provider.settings.unit_base
    iccid = parsing.iccid(opts.iccid)
    data = data_size(opts.data, base)
    if data <= 0:
        raise InvalidInput(f"invalid size {opts.data!r}: a package has some data")
    if (opts.days is None) == (opts.until is None):
        raise InvalidInput("give the package's validity: --days N or --until DATE (one of them)")
    n_days = days(opts.days, least=1) if opts.days is not None else None
    until = end_date(opts.until) if opts.until else None
    activated = activation(opts.activated, now) if opts.activated else None
    paid = price(opts.price) if opts.price else None
    where = countries(opts.countries)
    number = (opts.order_number or "").strip() or None
    store = provider.store
    existing = store.esim(iccid)
    if existing is not None:
        raise InvalidInput(f"eSIM {iccid} is recorded already (account {existing.account!r})")
    label = (opts.label or "").strip() or None
    if label is None and not store.esims(acc.name):
        label = acc.name  # so that 'esimctl renew jp-card' names the card of account jp-card
    if label is not None:
        check_label_free(env, label)
        for other in env.config.accounts():
            if other.provider != "manual":
                continue
            for m in store.esims(other.name):
                if m.label and m.label.lower() == label.lower():
                    raise InvalidInput(f"label {label!r} is taken by eSIM {m.iccid} ({other.name})")
    plan = (opts.plan or "").strip() or plan_name(data, n_days, base, until)
    package = ManualEsim(iccid, acc.name, label, where, plan, data, n_days, until, activated, now)
    problems = [activation_in_future(activated, now), end_in_past(package.first_end, now)]
    insist(env, [p for p in problems if p], force=opts.force, what="record this eSIM")
    lpa = (opts.lpa or "").strip() or None
    if lpa is not None and not (lpa.upper().startswith("LPA:1$") and lpa.count("$") >= 2):
        raise InvalidInput("invalid --lpa: an activation code reads LPA:1$<SM-DP+ address>$<code>")
    store.add_esim(package)
    if lpa is not None:
        from .install import keep_lpa

        keep_lpa(env, acc.name, iccid, lpa)
    order = None
    if paid is not None or number is not None:
        bought = activated if activated is not None and activated < now else now
        order = env.orders.record_package(
            account=acc.name,
            provider=provider.id,
            iccid=iccid,
            plan_id=None,
            plan=plan,
            price=paid,
            provider_order_id=number,
            created_at=bought,
            detail={"kind": "package"},
        )
    e = refreshed(env, acc.name, iccid)
    return Result(
        command="esim add",
        data={
            "esim": esim_record(env, e),
            "order": order_json(order.to_order()) if order else None,
        },
        lines=[
            f"[green]✓[/] recorded {esc(describe(e))} on {acc.name}: {esc(plan)}",
            f"  {figures(e, now)}",
            f"  record what the seller's app shows: esimctl esim reading {esc(name_of(e))} 1.2GB",
        ],
    )


# -- esim reading -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ReadingOptions:
    esim: str
    remaining: str
    at: str | None = None
    until: str | None = None
    total: str | None = None
    force: bool = False


def _pending_topups(env: Env, e: Esim) -> list[LedgerOrder]:
    rows = env.orders.awaiting(account=e.account, iccid=e.iccid)
    return sorted((r for r in rows if is_topup(r)), key=lambda r: r.created_at)


def _total(value: str, base: int) -> int:
    total = data_size(value, base)
    if total <= 0:
        raise InvalidInput(f"invalid total {value!r}: a package has some data")
    return total


def run_reading(opts: ReadingOptions, env: Env) -> Result:
    e, provider = find_esim(env, opts.esim)
    now = env.now()
    base = e.unit_base
    remaining = data_size(opts.remaining, base)
    taken = past_time(opts.at, now, "--at") if opts.at else now
    until = end_date(opts.until) if opts.until else None
    total = _total(opts.total, base) if opts.total else None
    if total is not None and remaining > total:
        raise InvalidInput(
            f"invalid reading: {human.size(remaining, base)} left is more than --total "
            f"{human.size(total, base)}"
        )
    package, readings, topups = provider.inputs(e.iccid)
    new = Reading(e.iccid, remaining, until, taken)
    after_readings = sorted([*readings, new], key=lambda r: r.taken_at)
    data = package.data_bytes
    if total is not None:
        data = package_for_total(package, after_readings, topups, total, base=base)
    f = fold(replace(package, data_bytes=data), after_readings, topups)
    problems: list[str] = []
    over = next((t for r, t in f.over if r == new), None)
    if over is not None:
        problems.append(
            f"{human.size(remaining, base)} left is more than the total of "
            f"{human.size(over, base)} on {describe(e)}"
        )
    latest = readings[-1].taken_at if readings else None
    older = latest is not None and taken < latest
    if latest is not None and older:
        problems.append(
            f"it was read at {human.local_time(taken)}, before the latest reading "
            f"({human.local_time(latest)}): the figures stay the latest reading's"
        )
    past = end_in_past(until, now)
    if past:
        problems.append(past)
    insist(env, problems, force=opts.force, what="record this reading")
    waiting = _pending_topups(env, e)
    corrected = data if data != package.data_bytes else None
    provider.store.add_reading(new, recorded_at=now, package_bytes=corrected)
    after = refreshed(env, e.account, e.iccid)
    applied = [row for row in (env.orders.get(r.id) for r in waiting) if is_served(row)]
    record = esim_record(env, after)
    name = esc(name_of(after))
    lines = [f"[green]✓[/] {esc(describe(after))}: {figures(after, now)}"]
    if total is not None:
        lines.append(f"  total set to {human.size(total, base)}")
    if over is not None and not older:
        lines.append(
            f"[yellow]![/] the total shows {human.size(remaining, base)} while this is the "
            f"latest reading; if the package is larger: esimctl esim edit {name} --total SIZE"
        )
    if older:
        lines.append(
            "[yellow]![/] read before the latest reading: recorded, but the figures stay "
            "the latest reading's"
        )
    for row in applied:
        lines.append(
            f"[green]✓ applied[/]: {esc(row.plan or '?')} (order {esc(row.to_order().id)}): "
            "the reading shows it"
        )
    still = len(waiting) - len(applied)
    if still:
        lines.append(
            f"[yellow]! pending[/]: {still} top-up(s) not shown yet; once the seller's app "
            f"shows the data, record it again, or: esimctl esim confirm {name}"
        )
    elif record["attention"]:
        words = ", ".join(a.replace("_", " ") for a in record["attention"])
        lines.append(f"[yellow]! {words}[/]: renew early: esimctl renew {name}")
    if after.expires_at is None:
        lines.append("  end date unknown: add --until DATE as the seller's app shows it")
    return Result(
        command="esim reading",
        data={
            "esim": record,
            "reading": {
                "remaining_bytes": remaining,
                "expires_at": iso(until),
                "taken_at": iso(taken),
                "total_bytes": total,
            },
            "applied": [order_json(r.to_order()) for r in applied],
            "warnings": problems,
        },
        lines=lines,
    )


# -- esim edit --------------------------------------------------------------------------------


@dataclass(frozen=True)
class EditOptions:
    esim: str
    total: str | None = None
    activated: str | None = None
    force: bool = False


def run_edit(opts: EditOptions, env: Env) -> Result:
    """Correct what was recorded: the total (package and top-ups applied), the activation."""
    if opts.total is None and opts.activated is None:
        raise InvalidInput("nothing to change: give --total SIZE and/or --activated DATE")
    e, provider = find_esim(env, opts.esim)
    now = env.now()
    base = e.unit_base
    package, readings, topups = provider.inputs(e.iccid)
    activated = activation(opts.activated, now) if opts.activated else None
    candidate = replace(package, activated_at=activated or package.activated_at)
    total = _total(opts.total, base) if opts.total is not None else None
    if total is not None:
        data = package_for_total(candidate, readings, topups, total, base=base)
        candidate = replace(candidate, data_bytes=data)
        f = fold(candidate, readings, topups)
        if f.remaining > f.total:
            raise InvalidInput(
                f"invalid total {human.size(total, base)}: the latest reading shows "
                f"{human.size(f.remaining, base)} left; if that reading is wrong, record the "
                f"right one: esimctl esim reading {name_of(e)} SIZE --total {opts.total}"
            )
    problems: list[str] = []
    if activated is not None:
        problems += [
            p
            for p in (activation_in_future(activated, now), end_in_past(candidate.first_end, now))
            if p
        ]
    insist(env, problems, force=opts.force, what="change it")
    provider.store.update_esim(
        e.iccid,
        data_bytes=candidate.data_bytes if candidate.data_bytes != package.data_bytes else None,
        activated_at=activated,
    )
    after = refreshed(env, e.account, e.iccid)
    changed = []
    if total is not None:
        changed.append(f"total {human.size(total, base)}")
    if activated is not None:
        changed.append(f"activated {human.local_time(activated)}")
    return Result(
        command="esim edit",
        data={"esim": esim_record(env, after), "warnings": problems},
        lines=[
            f"[green]✓[/] {esc(describe(after))}: {', '.join(changed)}",
            f"  {figures(after, now)}",
        ],
    )


# -- esim confirm / cancel --------------------------------------------------------------------


@dataclass(frozen=True)
class SettleOptions:
    esim: str
    order_number: str | None = None


def _one_pending(env: Env, e: Esim, number: str | None) -> LedgerOrder:
    rows = _pending_topups(env, e)
    if number is not None:
        rows = [r for r in rows if r.provider_order_id == number.strip()]
        if not rows:
            raise NotFound(f"no pending top-up with order number {number!r} on {describe(e)}")
    if not rows:
        raise InvalidInput(f"no pending top-up on {describe(e)}")
    if len(rows) > 1:
        numbers = ", ".join(r.to_order().id for r in rows)
        raise InvalidInput(
            f"{len(rows)} top-ups are pending on {describe(e)} (orders {numbers}): "
            "name one with --order NUMBER"
        )
    return rows[0]


def run_confirm(opts: SettleOptions, env: Env) -> Result:
    e, _ = find_esim(env, opts.esim)
    now = env.now()
    row = _one_pending(env, e, opts.order_number)
    row = env.orders.record_applied(row, now, confirmed_detail(now))
    after = refreshed(env, e.account, e.iccid)
    return Result(
        command="esim confirm",
        data={
            "order": order_json(row.to_order()),
            "applied": True,
            "esim": esim_record(env, after),
        },
        lines=[
            f"[green]✓ applied[/]: {esc(row.plan or '?')} (order {esc(row.to_order().id)}) on "
            f"{esc(describe(after))}",
            f"  {figures(after, now)}",
        ],
    )


def run_cancel(opts: SettleOptions, env: Env) -> Result:
    e, _ = find_esim(env, opts.esim)
    row = _one_pending(env, e, opts.order_number)
    row = env.orders.record_refused(row, {"cancelled_at": iso(env.now())})
    return Result(
        command="esim cancel",
        data={"order": order_json(row.to_order())},
        lines=[
            f"[green]✓[/] {esc(row.plan or '?')} (order {esc(row.to_order().id)}) on "
            f"{esc(describe(e))} marked failed: "
            "it no longer counts as pending nor in the totals"
        ],
    )


# -- esim remove ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RemoveEsimOptions:
    esim: str
    yes: bool = False


def run_remove_esim(opts: RemoveEsimOptions, env: Env) -> Result:
    e, provider = find_esim(env, opts.esim)
    confirm(
        env,
        f"Remove {describe(e)} and its readings (its orders stay in the history)?",
        yes=opts.yes,
        what="remove",
    )
    provider.store.remove_esim(e.iccid)
    env.ledger.cache_drop(e.account)
    return Result(
        command="esim remove",
        data={"account": e.account, "iccid": e.iccid},
        lines=[f"[green]✓[/] {esc(describe(e))} removed; its orders stay in the history"],
    )


# -- esim plan add / remove -------------------------------------------------------------------


@dataclass(frozen=True)
class PlanAddOptions:
    account: str
    id: str
    data: str
    days: int
    price: str
    name: str | None = None
    replace: bool = False


def run_plan_add(opts: PlanAddOptions, env: Env) -> Result:
    acc, provider = manual_account(env, opts.account)
    base = provider.settings.unit_base
    if not PLAN_ID.match(opts.id):
        raise InvalidInput(
            f"invalid plan id {opts.id!r}: use letters, digits, '.', '-' and '_', like jp-3gb-7d"
        )
    data = data_size(opts.data, base)
    n_days = days(opts.days)
    if data <= 0 and n_days <= 0:
        raise InvalidInput("a plan adds data, days, or both")
    cost = price(opts.price)
    store = provider.store
    if not opts.replace and any(p.id == opts.id for p in store.plans(acc.name)):
        raise InvalidInput(f"plan {opts.id!r} exists already on {acc.name}; pass --replace")
    name = (opts.name or "").strip() or plan_name(data, n_days, base, None)
    saved = SellerPlan(acc.name, opts.id, name, data, n_days, cost)
    store.add_plan(saved)
    return Result(
        command="esim plan add",
        data={"plan": plan_json(provider.plan(saved))},
        lines=[
            f"[green]✓[/] plan {esc(opts.id)} saved on {acc.name}: {esc(name)}, {cost}",
            "  compare them with: esimctl plans ESIM; buy one with: esimctl renew ESIM "
            f"--plan {opts.id}",
        ],
    )


@dataclass(frozen=True)
class PlanRemoveOptions:
    account: str
    id: str


def run_plan_remove(opts: PlanRemoveOptions, env: Env) -> Result:
    acc, provider = manual_account(env, opts.account)
    if not provider.store.remove_plan(acc.name, opts.id):
        raise NotFound(f"no plan {opts.id!r} on {acc.name}")
    return Result(
        command="esim plan remove",
        data={"account": acc.name, "id": opts.id},
        lines=[f"[green]✓[/] plan {esc(opts.id)} removed from {acc.name}"],
    )


# -- esim plan list ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanListOptions:
    #: Only this manual seller's account; None: every one.
    account: str | None = None


def run_plan_list(opts: PlanListOptions, env: Env) -> Result:
    from esimctl.output.emit import Column, Table

    if opts.account:
        accounts = [manual_account(env, opts.account)[0]]
    else:
        accounts = [a for a in env.config.accounts() if a.provider == ManualProvider.id]
    plans = []
    for acc in accounts:
        provider = manual_account(env, acc.name)[1]
        plans += [provider.plan(p) for p in provider.store.plans(acc.name)]
    records = [plan_json(p) for p in plans]
    table = Table(
        [
            Column("ACCOUNT", hide_if_uniform=True, stack="flow", stacked="account {}"),
            Column("ID", style="bold", stack="title"),
            Column("NAME", no_wrap=False, min_width=12, stack="line", key=""),
            Column("DATA", justify="right", stack="flow"),
            Column("DAYS", justify="right", stack="flow", stacked="{} d"),
            Column("PRICE", justify="right", stack="badge"),
        ],
        # On a narrow terminal the name is shortened first, then ACCOUNT dropped.
        give_way=[("NAME", "flex"), ("ACCOUNT", "drop")],
        stack_order=["ID", "PRICE", "NAME", "DATA", "DAYS", "ACCOUNT"],
    )
    for p in plans:
        table.add(
            p.account,
            p.id,
            p.name,
            human.size(p.data_bytes, p.unit_base) if p.data_bytes else "—",
            str(p.validity_days or "—"),
            human.money(p.price),
        )
    where = f"on {opts.account}" if opts.account else "on any manual seller's account"
    return Result(
        command="esim plan list",
        data={"plans": records},
        table=table,
        records=records,
        empty=f"no seller plans saved {where}: esimctl esim plan add ACCOUNT ID ...",
    )
