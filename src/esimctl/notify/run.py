"""What a run has to tell (events), and telling it once (``send``).

``status --notify`` and ``renew --auto`` hand their findings here at the end of the run,
after anything was bought: a target that hangs or refuses costs at most its timeout, is
reported (a note, and ``notifications.failed`` in JSON), never changes the exit code, and
is tried again next run.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from esimctl.env import Env
from esimctl.errors import CredentialsError, EsimctlError, Interrupted, LimitRefused
from esimctl.models import Attention, Esim
from esimctl.notify.events import Event
from esimctl.output import human
from esimctl.output.human import describe

if TYPE_CHECKING:
    from esimctl.forecast import Forecast
    from esimctl.ledger import LedgerOrder
    from esimctl.notify.targets import Target


def esim_subject(e: Esim) -> str:
    return f"{e.account}/{e.iccid}"


def _name(e: Esim) -> str:
    return e.label or e.iccid


def _figures(e: Esim, f: Forecast | None = None) -> dict[str, Any]:
    from esimctl.serialize import iso

    return {
        "data_remaining_bytes": None if e.unlimited else e.data_remaining_bytes,
        "data_total_bytes": None if e.unlimited else e.data_total_bytes,
        "unlimited": e.unlimited,
        "expires_at": iso(e.expires_at),
        "runs_out_at": iso(f.runs_out_at) if f is not None else None,
    }


def _left(e: Esim) -> str:
    if e.unlimited or e.data_remaining_bytes is None:
        return ""
    return (
        f"{human.size(e.data_remaining_bytes, e.unit_base)} left of "
        f"{human.size(e.data_total_bytes, e.unit_base)}"
    )


def esim_events(
    env: Env,
    rows: Iterable[tuple[Esim, list[str], Forecast | None]],
    *,
    pending: dict[tuple[str, str], datetime] | None = None,
) -> list[Event]:
    """Events of the attention reasons ``status`` found: low data, runs out soon, expiring
    soon, a top-up overdue."""
    now = env.now()
    out: list[Event] = []
    for e, reasons, f in rows:
        name = _name(e)
        base = dict(
            at=now,
            account=e.account,
            iccid=e.iccid,
            label=e.label,
            figures=_figures(e, f),
        )
        ends = (
            f"it expires {human.until(e.expires_at, now)} "
            f"({human.short_local_time(e.expires_at, now)})"
            if e.expires_at
            else ""
        )
        plans = f"see what extends it: esimctl plans {name}"
        if Attention.LOW_DATA in reasons:
            out.append(
                Event(
                    "low_data",
                    f"low_data:{esim_subject(e)}",
                    f"{name}: low data",
                    f"{describe(e)}: {_left(e)}" + (f"; {ends}" if ends else ""),
                    plans,
                    **base,  # type: ignore[arg-type]
                )
            )
        if Attention.RUNS_OUT_SOON in reasons and f is not None and f.runs_out_at is not None:
            pace = human.size(round(f.rate_bytes_per_day), e.unit_base)
            out.append(
                Event(
                    "runs_out_soon",
                    f"runs_out_soon:{esim_subject(e)}",
                    f"{name}: runs out {human.until(f.runs_out_at, now)}",
                    f"{describe(e)}: at {pace} a day the data runs out "
                    f"{human.until(f.runs_out_at, now)} "
                    f"({human.short_local_time(f.runs_out_at, now)}), before the package ends",
                    plans,
                    **base,  # type: ignore[arg-type]
                )
            )
        if Attention.EXPIRING_SOON in reasons and e.expires_at is not None:
            out.append(
                Event(
                    "expiring_soon",
                    f"expiring_soon:{esim_subject(e)}",
                    f"{name}: expires {human.until(e.expires_at, now)}",
                    f"{describe(e)}: {ends}" + (f"; {_left(e)}" if _left(e) else ""),
                    plans,
                    **base,  # type: ignore[arg-type]
                )
            )
        if Attention.TOPUP_OVERDUE in reasons:
            since = (pending or {}).get((e.account, e.iccid))
            support = env.config.account(e.account).options.get("support")
            rows_open = env.orders.open(account=e.account, iccid=e.iccid)
            numbers = ", ".join(r.to_order().id for r in rows_open) or "?"
            waited = human.relative(now - since) if since else "a while"
            out.append(
                Event(
                    "topup_overdue",
                    f"topup_overdue:{esim_subject(e)}",
                    f"{name}: top-up not applied after {waited}",
                    f"{describe(e)}: the top-up (order {numbers}) has not applied after {waited}",
                    f"ask the seller ({support}) with order {numbers}"
                    if support
                    else f"ask the seller with order {numbers}",
                    **base,  # type: ignore[arg-type]
                )
            )
    return out


def order_event(env: Env, kind: str, row: LedgerOrder, e: Esim | None) -> Event:
    """``topup_bought`` or ``topup_applied``: once per order."""
    now = env.now()
    order = row.to_order()
    where = describe(e) if e is not None else (row.iccid or "?")
    name = _name(e) if e is not None else (row.iccid or "?")
    price = human.money(row.price)
    if kind == "topup_bought":
        title = f"{name}: bought {row.plan}"
        message = f"bought {row.plan} for {price} on {where} (order {order.id})"
        action = f"nothing to do; esimctl show {name} follows it until it applies"
    else:
        title = f"{name}: top-up applied"
        message = f"{row.plan} (order {order.id}) on {where} is applied"
        action = "nothing to do"
    from esimctl.serialize import order_json

    return Event(
        kind,
        f"{kind}:{row.id}",
        title,
        message,
        action,
        now,
        account=row.account,
        iccid=row.iccid,
        label=e.label if e is not None else None,
        standing=False,
        figures=_figures(e) if e is not None else {},
        order=order_json(order),
    )


def refused_event(env: Env, e: Esim, reason: str) -> Event:
    return Event(
        "limit_refused",
        f"limit_refused:{esim_subject(e)}",
        f"{_name(e)}: renewal refused by a limit",
        f"{describe(e)}: {reason}",
        "raise the limit in config (docs/renewal-rules.md), or renew by hand: "
        f"esimctl renew {_name(e)} --plan PLAN",
        env.now(),
        account=e.account,
        iccid=e.iccid,
        label=e.label,
        figures=_figures(e),
    )


def account_events(
    env: Env, state: Any, errors: Sequence[EsimctlError], looked_at: Iterable[str]
) -> tuple[list[Event], dict[str, set[str]]]:
    """``credentials_rejected`` (at once) and ``account_failing`` (after ``[notify]
    account_failing_after``) for the accounts this run asked; with the conditions each
    account's subject holds (a failure is remembered from its first run, to know how long
    it has lasted)."""
    now = env.now()
    after = env.config.notify().account_failing_after
    failing: dict[str, EsimctlError] = {}
    for err in errors:
        if err.account and err.iccid is None and not isinstance(err, (LimitRefused, Interrupted)):
            failing.setdefault(err.account, err)
    events: list[Event] = []
    holding: dict[str, set[str]] = {}
    for account in looked_at:
        subject = f"account:{account}"
        holding[subject] = set()
        failure = failing.get(account)
        if failure is None:
            continue
        err = failure
        provider = err.provider or env.config.account(account).provider
        if isinstance(err, CredentialsError):
            key = f"credentials_rejected:{account}"
            holding[subject].add(key)
            events.append(
                Event(
                    "credentials_rejected",
                    key,
                    f"{account}: credentials rejected",
                    f"{provider} account {account!r}: {err.message}",
                    f"store new ones: esimctl account add {account} --provider {provider} "
                    "--replace",
                    now,
                    account=account,
                )
            )
            continue
        since_key = f"failing:{account}"
        holding[subject].add(since_key)
        since = state.seen(since_key, subject, now)
        if now - since >= after:
            key = f"account_failing:{account}"
            holding[subject].add(key)
            events.append(
                Event(
                    "account_failing",
                    key,
                    f"{account}: failing for {human.relative(now - since)}",
                    f"{provider} account {account!r} has failed for "
                    f"{human.relative(now - since)}: {err.message}",
                    f"check the account: esimctl account test {account}",
                    now,
                    account=account,
                )
            )
    return events, holding


@dataclass
class Report:
    """What was sent, and what could not be (retried next run)."""

    sent: list[dict[str, str]] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)
    skipped: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"sent": self.sent, "failed": self.failed, "skipped": self.skipped}

    def notes(self) -> list[str]:
        out = [
            f"note: notification to {f['target']} failed ({f['reason']}); tried again next run"
            for f in self.failed
        ]
        if self.skipped:
            out.append(f"note: no notifications sent: {self.skipped}")
        return out


def send(
    env: Env,
    events: Sequence[Event],
    *,
    subjects: dict[str, set[str]],
    targets: Sequence[Target] | None = None,
) -> Report:
    """Send what is due, each event to each target that wants it, once.

    ``subjects``: each subject this run looked at (an eSIM ``account/iccid``, an account
    ``account:NAME``, ``auto:account/iccid`` for renewal decisions) with the conditions it
    holds besides the events' own keys; conditions of those subjects that no longer hold
    are cleared, so they are news again when they come back."""
    from esimctl.notify.state import NotifyState
    from esimctl.notify.targets import deliver, load_targets

    report = Report()
    targets = load_targets(env) if targets is None else targets
    cfg = env.config.notify()
    state = NotifyState(env.ledger)
    now = env.now()
    holding = {k: set(v) for k, v in subjects.items()}
    for ev in events:
        subject = _subject_of(ev)
        if ev.standing:
            state.seen(ev.key, subject, now)
            holding.setdefault(subject, set()).add(ev.key)
    state.clear_others(holding, set().union(*holding.values()) if holding else set())
    down: set[str] = set()
    timeout = cfg.timeout.total_seconds()
    for ev in events:
        for t in targets:
            if not t.wants(ev.kind) or t.name in down:
                continue
            if not state.due(ev.key, t.name, now, renotify=cfg.renotify if ev.standing else None):
                continue
            body = f"{ev.message}\n{ev.action}"
            problem = deliver(t, ev.to_json(), ev.title, body, timeout=timeout)
            if problem is None:
                state.sent(ev.key, t.name, now)
                report.sent.append({"target": t.name, "event": ev.kind, "key": ev.key})
            else:
                down.add(t.name)  # one failure per target per run: the rest waits
                report.failed.append({"target": t.name, "event": ev.kind, "reason": problem})
    return report


def _subject_of(ev: Event) -> str:
    if ev.kind == "limit_refused":
        return f"auto:{ev.account}/{ev.iccid}"
    if ev.kind in ("credentials_rejected", "account_failing"):
        return f"account:{ev.account}"
    return f"{ev.account}/{ev.iccid}"


def notify(
    env: Env,
    *,
    rows: Sequence[tuple[Esim, list[str], Forecast | None]] = (),
    pending: dict[tuple[str, str], datetime] | None = None,
    errors: Sequence[EsimctlError] = (),
    accounts: Iterable[str] = (),
    events: Sequence[Event] = (),
    subjects: Iterable[str] = (),
) -> Report:
    """Everything a run found, told once: the attention of ``rows`` (the eSIMs it looked
    at), the ``errors`` of the ``accounts`` it asked, and its own ``events`` (orders,
    refusals) with the ``subjects`` they are about."""
    from esimctl.notify.targets import load_targets

    targets = load_targets(env)
    if not targets:
        return Report()
    if env.ledger.read_only:
        return Report(skipped="the ledger cannot be written, so what was sent cannot be kept")
    from esimctl.notify.state import NotifyState

    state = NotifyState(env.ledger)
    found = esim_events(env, rows, pending=pending)
    failing, held = account_events(env, state, errors, accounts)
    looked = {esim_subject(e): set[str]() for e, _, _ in rows}
    looked.update(held)
    looked.update({s: set() for s in subjects})
    return send(env, [*found, *failing, *events], subjects=looked, targets=targets)
