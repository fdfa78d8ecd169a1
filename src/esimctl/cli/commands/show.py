"""``esimctl show ESIM``: one eSIM in detail — its packages, a chart of data left over time
with the forecast, its orders, the renewal rule that applies and what ``renew --auto``
would do now, and for a seller without an API where to renew and whom to ask.

On a terminal the chart is drawn (``output.chart``); in a pipe the readings are plain
lines of numbers; ``--json`` gives all of it as data. Nothing here asks a provider more
than ``status`` would: figures come from the cache while fresh.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from esimctl import forecast as fc
from esimctl import rules
from esimctl.env import Env
from esimctl.models import Esim, EsimState
from esimctl.output import human
from esimctl.output.human import describe, esc
from esimctl.purchasing import book
from esimctl.rules import RENEWABLE, Rule
from esimctl.serialize import esim_json, iso, order_json
from esimctl.service import attention_for, forecast_of, resolve_esim

from .common import Result

#: Lines a chart takes, axis and labels included.
CHART_ROWS = 6


@dataclass(frozen=True)
class ShowOptions:
    esim: str
    accounts: tuple[str, ...] = ()


def readings_of(env: Env, e: Esim) -> list[fc.Reading]:
    """What the chart and the pipe show: the readings of the forecast window, and now."""
    now = env.now()
    told = env.ledger.readings(e.account, e.iccid, since=now - fc.WINDOW)
    out = [fc.Reading(at, left, total) for at, left, total in told]
    if e.data_remaining_bytes is not None and not e.unlimited:
        out.append(fc.Reading(e.as_of or now, e.data_remaining_bytes, e.data_total_bytes))
    return sorted(out, key=lambda r: r.at)


def renewal_now(env: Env, e: Esim, f: fc.Forecast | None, now: datetime) -> dict[str, Any]:
    """The rule that applies to ``e`` and what ``renew --auto`` would do with it now (from
    the figures in hand: the plan itself is chosen when it runs)."""
    ruleset = rules.load(env.config)
    assigned, _ = ruleset.assign([e])
    rule: Rule = assigned[(e.account, e.iccid)]
    if not rule.complete:
        why = "renewal off (enabled = false)" if not rule.enabled else "no renewal rule"
        return {"rule": None, "action": "none", "reason": why}
    out: dict[str, Any] = {"rule": rule.name, "buys": rule.describe_buy()}
    fired = rule.fired(e, now, f)
    outside = rule.outside_window(now)
    if env.orders.open(account=e.account, iccid=e.iccid):
        out.update(action="pending", reason="a top-up is pending: nothing is bought meanwhile")
    elif outside:
        out.update(action="skip", reason=f"outside the trip window: {outside}")
    elif e.state not in RENEWABLE:
        out.update(action="none", reason=f"the eSIM is {e.state.value.replace('_', ' ')}")
    elif fired is None:
        reason = "no trigger holds"
        if rule.no_forecast(f):
            reason += f"; {rule.no_forecast(f)}"
        out.update(action="none", reason=reason)
    else:
        out.update(
            action="would_buy",
            trigger=fired[0],
            reason=f"{fired[1]}: renew --auto would buy {rule.describe_buy()}",
        )
    return out


def run_show(opts: ShowOptions, env: Env) -> Result:
    e = resolve_esim(env, opts.esim, opts.accounts)
    now = env.now()
    f = forecast_of(env, e)
    pending = env.orders.open_since([e]).get((e.account, e.iccid))
    reasons = attention_for(e, env.config.attention(), now, pending_since=pending, forecast=f)
    readings = readings_of(env, e)
    orders = env.orders.kept(account=e.account, iccid=e.iccid)
    renewal = renewal_now(env, e, f, now)
    options = env.config.account(e.account).options
    seller = {
        k: options.get(k) for k in ("seller", "renew_url", "support") if options.get(k)
    } or None
    data = {
        "esim": esim_json(e, reasons, f.to_json() if f else None),
        "readings": [
            {"at": iso(r.at), "data_remaining_bytes": r.remaining, "data_total_bytes": r.total}
            for r in readings
        ],
        "orders": [order_json(r.to_order()) for r in orders],
        "renewal": renewal,
        "seller": seller,
    }
    lines = _head(e, f, now)
    if readings and not e.unlimited and e.state != EsimState.NOT_ACTIVE:
        lines.append("")
        if env.stdout_tty:
            from esimctl.output import chart

            width = min(env.out.width, 100)
            lines.extend(
                chart.draw(
                    readings,
                    now=now,
                    forecast=f,
                    expires_at=e.expires_at,
                    width=width,
                    base=e.unit_base,
                    height=CHART_ROWS,
                )
            )
        else:
            lines.append("readings (as of, data left in bytes):")
            lines.extend(f"  {iso(r.at)} {r.remaining}" for r in readings)
    lines.extend(_packages(e, now))
    lines.extend(_orders(orders, now))
    lines.append("")
    lines.append(f"[bold]renewal[/]: {esc(_renewal_words(renewal))}")
    if seller:
        lines.append("")
        lines.append("[bold]seller[/]: " + esc(" · ".join(str(v) for v in seller.values())))
    return Result(command="show", data=data, lines=lines)


def _head(e: Esim, f: fc.Forecast | None, now: datetime) -> list[str]:
    state = e.state.value.replace("_", " ")
    lines = [
        f"[bold]{esc(describe(e))}[/] · {esc(e.account)} ({esc(e.provider)})",
        f"{esc(e.plan or 'plan unknown')} · {state}",
    ]
    daily = human.allowance(e, now)
    if daily is not None:
        data = esc(daily)
    elif e.unlimited:
        data = "unlimited data"
    else:
        data = (
            f"{human.size(e.data_remaining_bytes, e.unit_base)} left of "
            f"{human.size(e.data_total_bytes, e.unit_base)}"
        )
    end = (
        f"expires {human.until(e.expires_at, now)} ({human.short_local_time(e.expires_at, now)})"
        if e.expires_at
        else "no expiry known"
    )
    as_of = f"as of {human.ago(e.as_of, now)}" if e.as_of else ""
    lines.append(" · ".join(x for x in (data, end, as_of) if x))
    if e.fair_usage:
        lines.append(f"fair use: {esc(e.fair_usage)}")
    lines.append(_forecast_words(e, f, now))
    return lines


def _forecast_words(e: Esim, f: fc.Forecast | None, now: datetime) -> str:
    if e.daily is not None:
        return "no forecast: a day pass's allowance comes back every day"
    if e.unlimited:
        return "no forecast: unlimited data never runs out"
    if e.state != EsimState.ACTIVE:
        return f"no forecast: the eSIM is {e.state.value.replace('_', ' ')}"
    if f is None:
        return "no forecast yet: it needs readings an hour or more apart (status records them)"
    base = e.unit_base
    basis = f"forecast on {f.basis_hours:.0f} h of readings"
    if f.runs_out_at is None:
        text = f"no use seen ({basis})"
    else:
        pace = f"{human.size(round(f.rate_bytes_per_day), base)} a day"
        if f.runs_out_before_expiry is False:
            spare = human.size(f.left_at_expiry_bytes or 0, base)
            text = f"at {pace} it outlasts the expiry with {spare} to spare ({basis})"
        else:
            when = (
                f"{human.until(f.runs_out_at, now)} ({human.short_local_time(f.runs_out_at, now)})"
            )
            text = f"[yellow]at {pace} it runs out {when}[/] ({basis})"
    if f.daily_budget_bytes is not None and e.expires_at is not None:
        text += (
            f"; use up to {human.size(f.daily_budget_bytes, base)} a day to last until "
            f"{e.expires_at.astimezone().strftime('%b %d')}"
        )
    return text


def _packages(e: Esim, now: datetime) -> list[str]:
    if not e.packages:
        return []
    lines = ["", "[bold]packages[/]"]
    for p in e.packages:
        figures = (
            "unlimited"
            if p.unlimited
            else f"{human.size(p.data_remaining_bytes, e.unit_base)} / "
            f"{human.size(p.data_total_bytes, e.unit_base)}"
            if p.data_total_bytes is not None
            else ""
        )
        end = f"ends {human.short_local_time(p.expires_at, now)}" if p.expires_at else ""
        parts = [esc(p.name or "package"), p.state, figures, end]
        lines.append("  " + " · ".join(x for x in parts if x))
    return lines


def _orders(rows: list[Any], now: datetime) -> list[str]:
    if not rows:
        return ["", "[bold]orders[/]: none recorded by esimctl"]
    lines = ["", "[bold]orders[/]"]
    for r in rows[:10]:
        o = r.to_order()
        state = "applied" if book.is_served(r) else o.state.value
        lines.append(
            f"  {human.short_local_time(o.created_at, now)} · {esc(o.plan or '?')} · "
            f"{human.money(o.price)} · {state} · order {esc(o.id)}"
        )
    if len(rows) > 10:
        lines.append(f"  … {len(rows) - 10} more: esimctl history --local")
    return lines


def _renewal_words(r: dict[str, Any]) -> str:
    if r["rule"] is None:
        return str(r["reason"])
    return f"rule [{r['rule']}] buys {r['buys']}; now: {r['reason']}"
