"""``esimctl status``: every eSIM of every account in one table."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from esimctl.env import Env
from esimctl.errors import ExitCode, InvalidInput
from esimctl.models import Attention, Esim, EsimState
from esimctl.output import human
from esimctl.output.emit import Cell, Column, Table
from esimctl.output.human import esc
from esimctl.serialize import esim_json
from esimctl.service import attention_for, fetch_esims, forecast_of, match_esim, select_accounts

from .common import Result

if TYPE_CHECKING:
    from esimctl.forecast import Forecast


@dataclass(frozen=True)
class StatusOptions:
    esims: tuple[str, ...] = ()
    accounts: tuple[str, ...] = ()
    refresh: bool = False
    check: bool = False
    #: Send what needs attention to the notification targets (docs/notifications.md).
    notify: bool = False


#: What ``--check`` reports (exit 8): what the user can still act on. An expired eSIM is
#: shown as such but does not keep a cron check failing forever.
CHECKED = frozenset(
    {"low_data", "runs_out_soon", "expiring_soon", "topup_pending", "topup_overdue", "depleted"}
)


def run_status(opts: StatusOptions, env: Env) -> Result:
    accounts = select_accounts(env, opts.accounts)
    # A provider that fails now: its last figures are shown, marked stale (never as fresh).
    fetched = fetch_esims(env, accounts, refresh=opts.refresh, allow_stale=True)
    esims = [e for lst in fetched.results.values() for e in lst]
    if opts.esims:
        wanted = []
        for name in opts.esims:
            try:
                e = match_esim(name, esims)
            except InvalidInput:
                if fetched.errors:  # the eSIM may be on the account that failed
                    raise fetched.errors[0] from None
                raise
            if e not in wanted:
                wanted.append(e)
        esims = wanted
    now = env.now()
    cfg = env.config.attention()
    pending = env.orders.open_since(esims)
    forecasts = {(e.account, e.iccid): forecast_of(env, e) for e in esims}
    rows: list[tuple[Esim, list[str]]] = [
        (
            e,
            attention_for(
                e,
                cfg,
                now,
                pending_since=pending.get((e.account, e.iccid)),
                stale=e.account in fetched.stale,
                forecast=forecasts[(e.account, e.iccid)],
            ),
        )
        for e in esims
    ]
    exit_code = fetched.exit_code
    if opts.check and exit_code == ExitCode.OK and any(CHECKED & set(r) for _, r in rows):
        exit_code = ExitCode.ATTENTION
    records = [
        esim_json(e, reasons, _forecast_json(forecasts[(e.account, e.iccid)]))
        for e, reasons in rows
    ]
    result = Result(
        command="status",
        data={"esims": records},
        table=_table(rows, now, pending=pending, forecasts=forecasts),
        errors=list(fetched.errors),
        exit_code=exit_code,
        records=records,
        needs_you=[
            needs_you_line(e, reasons, now, pending.get((e.account, e.iccid)))
            for e, reasons in rows
            if CHECKED & set(reasons)
        ],
    )
    if not accounts:
        result.notes.append(
            "no accounts yet: run 'esimctl account add NAME --provider PROVIDER', "
            "or try 'esimctl --demo status'"
        )
        result.empty = "no eSIMs"
    result.notes.extend(
        overdue_note(env, e, cfg.pending_overdue)
        for e, reasons in rows
        if Attention.TOPUP_OVERDUE in reasons
    )
    if opts.notify:
        from esimctl.notify.run import notify

        report = notify(
            env,
            # Stale figures are old news: neither sent again nor taken as cleared.
            rows=[
                (e, reasons, forecasts[(e.account, e.iccid)])
                for e, reasons in rows
                if e.account not in fetched.stale
            ],
            pending=pending,
            errors=fetched.errors,
            accounts=[a.name for a in accounts],
        )
        result.data["notifications"] = report.to_json()
        result.notes.extend(report.notes())
    return result


def _forecast_json(f: Forecast | None) -> dict[str, Any] | None:
    return None if f is None else f.to_json()


def overdue_note(env: Env, e: Esim, after: timedelta) -> str:
    """Whom to contact about an overdue top-up (the account's ``support``), with which order."""
    rows = env.orders.open(account=e.account, iccid=e.iccid)
    numbers = ", ".join(r.to_order().id for r in rows)
    support = env.config.account(e.account).options.get("support")
    who = f"contact the seller ({support})" if support else "contact the seller"
    return (
        f"{e.label or e.iccid}: a top-up has been pending for over {human.relative(after)}: "
        f"{who} with order {numbers}"
    )


_STATE_STYLE = {
    EsimState.ACTIVE: ("green", "✓"),
    EsimState.NOT_ACTIVE: ("cyan", "○"),
    EsimState.DEPLETED: ("red", "!"),
    EsimState.EXPIRED: ("red", "✗"),
    EsimState.RECYCLED: ("dim", "✗"),
    EsimState.UNKNOWN: ("yellow", "?"),
}

_REASON_TEXT = {
    "low_data": "low data",
    "expiring_soon": "expiring soon",
    "topup_pending": "top-up pending",
    "topup_overdue": "top-up pending > 30 m",
    "depleted": "no data left",
    "expired": "expired",
    "stale": "figures stale",
    "runs_out_soon": "runs out soon",
}


def reason_words(reasons: list[str], now: datetime, pending: datetime | None) -> list[str]:
    """Attention as words; a pending top-up says since when (and never suggests a renewal:
    buying again while one is pending is how people pay twice)."""
    words = []
    for r in reasons:
        word = _REASON_TEXT.get(r, r)
        if r in ("topup_pending", "topup_overdue") and pending is not None:
            since = now - pending
            word = (
                f"top-up pending for {human.relative(since)}"
                if since >= timedelta(minutes=1)
                else "top-up pending (just bought)"
            )
            if r == "topup_overdue":
                word += ": ask the seller"
        words.append(word)
    return words


def needs_you_line(e: Esim, reasons: list[str], now: datetime, pending: datetime | None) -> str:
    """One line for ``-q``: which eSIM, why, and its figures."""
    figures = []
    if not e.unlimited and e.data_remaining_bytes is not None:
        figures.append(
            f"{human.size(e.data_remaining_bytes, e.unit_base)} / "
            f"{human.size(e.data_total_bytes, e.unit_base)} left"
        )
    if e.expires_at is not None:
        figures.append(f"ends {human.until(e.expires_at, now)}")
    name = e.label or e.iccid
    words = ", ".join(reason_words(reasons, now, pending))
    tail = f" ({'; '.join(figures)})" if figures else ""
    return f"{esc(name)}: {esc(words)}{tail}"


def _data_cells(e: Esim, now: datetime) -> tuple[str, str]:
    words = human.allowance(e, now)
    if words is not None:  # a day pass: the day's figure, never a package total
        assert e.daily is not None
        return f"[green]{esc(words)}[/]", f"{e.daily.bytes or ''}/day"
    if e.unlimited:
        fair = " · fair use" if e.fair_usage else ""
        return f"[green]∞ unlimited{fair}[/]", "unlimited"
    rem, tot = e.data_remaining_bytes, e.data_total_bytes
    if rem is None:
        return "?", ""
    text = f"{human.size(rem, e.unit_base)} / {human.size(tot, e.unit_base)}"
    if tot:
        frac = rem / tot
        colour = "red" if frac < 0.1 else "yellow" if frac < 0.25 else "green"
        return f"[{colour}]{human.bar(frac)}[/] {text}", f"{rem}/{tot}"
    return text, f"{rem}/"


def _table(
    rows: list[tuple[Esim, list[str]]],
    now: datetime,
    *,
    pending: dict[tuple[str, str], datetime],
    forecasts: dict[tuple[str, str], Forecast | None],
) -> Table:
    states = {e.state for e, _ in rows}
    legend = " · ".join(
        f"[{colour}]{mark}[/] {state.value.replace('_', ' ')}"
        for state, (colour, mark) in _STATE_STYLE.items()
        if state in states
    )
    t = Table(
        [
            Column("LABEL", style="bold", stack="title", short_note=f"[dim]{legend}[/]"),
            Column("ACCOUNT", hide_if_uniform=True),
            Column("ICCID", stack="hide"),
            Column("PLAN", no_wrap=False, min_width=12, stack="line", key=""),
            Column("DATA LEFT"),
            Column("EXPIRES"),
            Column("RUNS OUT"),
            Column("STATE", stack="badge"),
            Column("AS OF", stack="hide"),
            Column("ATTENTION", no_wrap=False, stack="line", key="", breaks=", "),
        ],
        # What gives way first on a narrow terminal (docs/commands/status.md).
        give_way=[
            ("ICCID", "drop"),
            ("AS OF", "drop"),  # a stale figure still says so in ATTENTION
            ("ATTENTION", "line"),  # on a line of its own under the eSIM
            ("DATA LEFT", "short"),  # the bar before the figures
            ("EXPIRES", "short"),  # the absolute date before the relative one
            ("ACCOUNT", "drop"),
            ("PLAN", "flex"),  # a long plan name shortened with an ellipsis
            (("STATE", "drop"), ("LABEL", "short")),  # the state as a mark before the label
            ("RUNS OUT", "drop"),
        ],
        stack_order=[
            "LABEL",
            "STATE",
            "PLAN",
            "DATA LEFT",
            "EXPIRES",
            "RUNS OUT",
            "ACCOUNT",
            "ATTENTION",
        ],
    )
    for e, reasons in rows:
        colour, mark = _STATE_STYLE[e.state]
        state_word = e.state.value.replace("_", " ")
        data_rich, data_plain = _data_cells(e, now)
        if e.expires_at is not None and e.state == EsimState.NOT_ACTIVE:
            # Not installed yet: the date is a deadline to install it by, not an expiry.
            exp_short = f"install by {e.expires_at.astimezone():%Y-%m-%d}"
            exp_rich = f"{exp_short} [dim]{human.until(e.expires_at, now)}[/]"
        elif e.expires_at is not None:
            exp_short = human.until(e.expires_at, now)
            exp_rich = f"{exp_short} [dim]{human.short_local_time(e.expires_at, now)}[/]"
        else:
            exp_rich = exp_short = "—"
        attention_words = reason_words(reasons, now, pending.get((e.account, e.iccid)))
        f = forecasts.get((e.account, e.iccid))
        runs_out = human.runs_out(f, now, e.unit_base)
        runs_rich = f"[yellow]{runs_out}[/]" if f and f.runs_out_before_expiry else runs_out
        label = esc(e.label or "—")
        t.add(
            Cell(label, e.label or "—", short=f"[{colour}]{mark}[/] {label}"),
            e.account,
            ("…" + e.iccid[-6:], e.iccid),
            e.plan or "—",
            Cell(data_rich, data_plain, short=_without_bar(data_rich)),
            Cell(exp_rich, _iso(e.expires_at), short=exp_short),
            (runs_rich, _iso(f.runs_out_at) if f else ""),
            (f"[{colour}]{mark} {state_word}[/]", e.state.value),
            (_as_of(e, now, stale=Attention.STALE in reasons), _iso(e.as_of)),
            (
                f"[yellow]! {esc(', '.join(attention_words))}[/]" if reasons else "",
                ",".join(reasons),
            ),
        )
    return t


def _without_bar(data_rich: str) -> str:
    """DATA LEFT in short: the figures without the bar, the first of several parts (a day
    pass's ``1 GB/day``, without ``then 1 Mbps · 5 d left``)."""
    return re.sub(r"\[[a-z ]+\][█░]+\[/\] ?", "", data_rich).split(" · ", 1)[0]


def _as_of(e: Esim, now: datetime, *, stale: bool) -> str:
    when = human.ago(e.as_of, now) if e.as_of else "—"
    return f"[yellow]{when} (stale)[/]" if stale else when


def _iso(dt: datetime | None) -> str:
    from esimctl.serialize import iso

    return iso(dt) or ""
