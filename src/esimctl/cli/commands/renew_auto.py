"""``esimctl renew --auto``: the renewal rules of config applied to every eSIM, for cron.

One run:

1. takes the renewal lock (exit 75 at once, or ``--wait``), reconciles unfinished intents
   with their providers, and fetches every eSIM fresh, which also marks pending top-ups
   that now show as applied;
2. decides per eSIM (``Decision``): its rule, the trip window, the trigger, a top-up still
   pending, the need already served; then the plan and the limits (max price, max per
   day, monthly budgets);
3. buys what is needed through ``purchasing.pipeline.buy_once`` (the intent and its need
   are journalled before the request);
4. releases the lock, then waits, bounded by ``--timeout``, until each provider shows its
   top-up: *applied* or *pending*. A pending eSIM is never bought for again; the next run
   checks it and says when it was applied.

``--dry-run`` fetches and decides, without the lock and without buying.

Every phase runs on the run's one event loop, through the same provider instances
(``env.session``): throttles, tokens and connections are shared from reconcile to verify.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from esimctl import parsing, rules
from esimctl.env import Env
from esimctl.errors import (
    Aborted,
    ConsentRequired,
    EsimctlError,
    ExitCode,
    Interrupted,
    InvalidInput,
    LimitRefused,
    TemporaryFailure,
    run_outcome,
)
from esimctl.forecast import Forecast
from esimctl.ledger import LedgerOrder
from esimctl.lock import RenewLock
from esimctl.models import Esim, Money, Plan, split_days
from esimctl.output import human
from esimctl.output.human import describe, esc
from esimctl.providers.base import Capability, Provider
from esimctl.purchasing import book, pipeline
from esimctl.purchasing.limits import Budget, Limits, Planned, check_limits
from esimctl.rules import RENEWABLE, RenewalRules, Rule
from esimctl.serialize import money_json, order_json
from esimctl.service import attention_for, fan_out, fetch_esims, forecast_of, select_accounts

from .common import Result, confirm
from .renew_common import RenewOptions, with_days

#: What a run did for one eSIM (``decisions[].action`` in JSON; docs/renewal-rules.md).
ACTIONS = (
    "none",  # no rule, or no trigger holds
    "skip",  # a rule fired but buys nothing now: outside the trip window, need already served
    "pending",  # a top-up bought earlier is not applied yet: never bought for again
    "would_buy",  # --dry-run
    "bought",
    "declined",  # answered no at the prompt
    "refused",  # a limit said no (exit 5)
    "failed",
)


@dataclass
class Decision:
    esim: Esim
    rule: Rule | None
    action: str = "none"
    reason: str = ""
    trigger: str | None = None
    figure: str | None = None
    need: str | None = None
    plan: Plan | None = None
    order: LedgerOrder | None = None
    applied: bool = False
    #: Only its user can renew it (a seller without an API): ``-q`` names it.
    by_hand: bool = False
    #: The forecast a ``runs_out_within`` rule looked at (None: no such rule, or none yet).
    forecast: Forecast | None = None

    def to_json(self) -> dict[str, Any]:
        plan = self.plan
        return {
            "account": self.esim.account,
            "provider": self.esim.provider,
            "iccid": self.esim.iccid,
            "label": self.esim.label,
            "rule": self.rule.name if self.rule else None,
            "action": self.action,
            "reason": self.reason,
            "trigger": self.trigger,
            "figure": self.figure,
            "need": self.need,
            "plan": None
            if plan is None
            else {"id": plan.id, "name": plan.name, "price": money_json(plan.price)},
            "order_id": self.order.to_order().id if self.order else None,
            "forecast": self.forecast.to_json() if self.forecast else None,
        }


def run_auto(opts: RenewOptions, env: Env) -> Result:
    if opts.esim:
        raise InvalidInput(
            f"--auto renews every eSIM by the rules; drop {opts.esim!r}, or renew it by hand "
            f"without --auto"
        )
    if opts.plan:
        raise InvalidInput("--auto takes the plan from the renewal rules; drop --plan")
    cap = parsing.money(opts.max_price) if opts.max_price else None
    timeout = parsing.duration(opts.timeout) if opts.timeout else timedelta(0)
    ruleset = rules.load(env.config)
    if not opts.dry_run and not opts.yes and not env.can_prompt:
        raise ConsentRequired(
            "refusing to renew automatically without consent: pass --yes "
            "(no prompt is possible here)"
        )
    run = AutoRun(opts, env, ruleset, cap)
    if ruleset.empty:
        return run.result(
            f"nothing to do: no renewal rules in {env.config.path} (see docs/renewal-rules.md)"
        )
    lock = nullcontext() if opts.dry_run else RenewLock(env.paths.lock_file, wait=opts.wait)
    try:
        with pipeline.sigterm_as_interrupt():
            with lock:
                run.look()
                run.act()
            if not opts.dry_run:
                run.verify(timeout)
    except KeyboardInterrupt:
        run.interrupted()
    result = run.result()
    if not opts.dry_run and opts.notify is not False:
        report = run.notify()
        if report is not None:
            result.data["notifications"] = report.to_json()
            result.notes.extend(report.notes())
    return result


@dataclass
class AutoRun:
    opts: RenewOptions
    env: Env
    rules: RenewalRules
    cap: Money | None
    decisions: list[Decision] = field(default_factory=list)
    errors: list[EsimctlError] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: Orders open (pending or intent) when the run began, as they are after reconciling.
    earlier: list[tuple[str, LedgerOrder]] = field(default_factory=list)
    answered: set[str] = field(default_factory=set)
    #: The purchase under way, for reporting an interruption (Ctrl-C, SIGTERM).
    current: tuple[Decision, pipeline.Progress] | None = None
    #: --dry-run: what this run would have spent, not yet in the ledger.
    planned: list[Planned] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.now: datetime = self.env.now()
        self.accounts = select_accounts(self.env, self.opts.accounts)

    # -- 1. look: reconcile, fetch, report what became of earlier orders ----------------------

    def look(self) -> None:
        env = self.env
        names = {a.name for a in self.accounts}
        # A new eSIM being bought (esimctl buy) is that command's news, not a top-up's.
        open_before = [
            r for r in env.orders.open() if r.account in names and not pipeline.is_new(r)
        ]
        unsure = {r.account for r in open_before if book.is_unresolved(r)}
        if unsure and not self.opts.dry_run:
            out = fan_out(
                env,
                [a for a in self.accounts if a.name in unsure],
                lambda p: pipeline.reconcile(env, p),
            )
            self.errors.extend(out.errors)
        fetched = fetch_esims(env, self.accounts, refresh=True)
        self.errors.extend(fetched.errors)
        self.answered = set(fetched.results)
        for row in open_before:
            current = env.orders.get(row.id)
            if pipeline.found_by_reconciling(current) or "charged" in current.detail:
                # Reported by this run ("applied", "pending"): not a retry's answer later.
                current = env.orders.note(current, reported=True)
            self.earlier.append((book.outcome(current), current))
        esims = [e for lst in fetched.results.values() for e in lst]
        assigned, notes = self.rules.assign(esims, complete=not fetched.errors)
        self.notes.extend(notes)
        self.decisions = [self._decide(e, assigned[(e.account, e.iccid)]) for e in esims]

    def _decide(self, e: Esim, rule: Rule) -> Decision:
        if not rule.complete:
            why = "renewal off (enabled = false)" if not rule.enabled else "no renewal rule"
            return Decision(e, None, "none", why)
        d = Decision(e, rule)
        if rule.runs_out_within is not None:
            d.forecast = forecast_of(self.env, e)
        fired = rule.fired(e, self.now, d.forecast)
        if fired is not None:
            d.trigger, d.figure = fired
        outside = rule.outside_window(self.now)
        if outside:
            d.action, d.reason = "skip", f"outside the trip window: {outside}"
            return d
        if e.state not in RENEWABLE:
            d.action = "skip" if fired else "none"
            d.reason = f"the eSIM is {e.state.value.replace('_', ' ')}: not renewed automatically"
            return d
        if fired is None:
            d.reason = "no trigger holds"
            no_forecast = rule.no_forecast(d.forecast)
            if no_forecast:
                d.reason += f"; {no_forecast}"
            return d
        open_rows = self.env.orders.open(account=e.account, iccid=e.iccid)
        if open_rows:
            row = open_rows[0]
            d.action, d.order = "pending", row
            if book.is_unresolved(row):
                d.reason = (
                    f"the outcome of an earlier purchase ({row.plan}) is not known yet; "
                    "nothing is bought until the provider shows it or not"
                )
                self.errors.append(
                    TemporaryFailure(
                        f"{describe(e)}: {d.reason}; retry later",
                        account=e.account,
                        provider=e.provider,
                    )
                )
            else:
                d.reason = (
                    f"a top-up bought {human.ago(row.created_at, self.now)} ({row.plan}) is "
                    "still pending: not bought again"
                )
            return d
        over = pipeline.unaccepted_charge(self.env, e)
        if over is not None:
            d.action, d.order = "refused", over
            d.reason = (
                f"{over.detail.get('over_limit')}; nothing more is bought for this eSIM until "
                f"you accept it: esimctl renew --accept-charge {over.to_order().id}"
            )
            self.errors.append(
                LimitRefused(f"refused: {d.reason}", account=e.account, provider=e.provider)
            )
            return d
        d.need = rules.need_key(rule, e)
        served = self.env.orders.spent(account=e.account, iccid=e.iccid, need=d.need)
        if served:
            d.action, d.order = "skip", served[0]
            d.reason = "already bought for this need; the provider's figures have not changed"
            return d
        d.action, d.reason = "candidate", f"rule [{rule.name}] fired: buy {rule.describe_buy()}"
        return d

    # -- 2. act: plan, limits, consent, purchase ----------------------------------------------

    def act(self) -> None:
        todo: dict[str, list[Decision]] = defaultdict(list)
        for d in self.decisions:
            if d.action == "candidate":
                todo[d.esim.account].append(d)
        if todo:
            self.env.session.run(self._act_all(todo))

    async def _act_all(self, todo: dict[str, list[Decision]]) -> None:
        # One account after the other: budgets are shared, so purchases are sequential.
        for account, decisions in todo.items():
            try:
                provider = await self.env.session.provider(self.env.config.account(account))
                for d in decisions:
                    await self._one(provider, d)
            except EsimctlError as exc:
                for d in decisions:
                    if d.action == "candidate":
                        self._fail(d, exc)

    async def _one(self, provider: Provider, d: Decision) -> None:
        e, rule = d.esim, d.rule
        assert rule is not None
        caps = provider.capabilities
        if Capability.BUY_TOPUP not in caps or Capability.MANUAL in caps:
            d.action = "skip"
            d.reason = (
                f"{provider.display_name} cannot be renewed automatically; renew it by hand: "
                f"esimctl renew {e.label or e.iccid}"
            )
            d.by_hand = True
            return
        try:
            plan = choose_plan(rule, await provider.topups(e), e, self.cap)
            d.plan = plan
            limits = self._limits(rule)
            if self.opts.dry_run:
                check_limits(self.env.orders, limits, e, plan, planned=self.planned)
                assert plan.price is not None
                self.planned.append((e.account, e.iccid, plan.price))
                d.action = "would_buy"
                return

            def consent(p: pipeline.Purchase) -> None:
                confirm(
                    self.env,
                    f"Buy {plan.name} for {human.money(plan.price)} on {describe(e)} "
                    f"({d.figure}, rule [{rule.name}])?",
                    yes=self.opts.yes,
                )

            progress = pipeline.Progress()
            self.current = (d, progress)
            purchase = pipeline.Purchase(e, plan, limits, need=d.need, duplicates=False)
            try:
                bought = await pipeline.buy_once(
                    self.env, provider, purchase, consent=consent, progress=progress
                )
            except Aborted:
                self.current = None
                d.action, d.reason = "declined", "not confirmed at the prompt"
                return
            except (asyncio.CancelledError, KeyboardInterrupt):
                raise  # self.current tells interrupted() how far this purchase got
            except BaseException:
                self.current = None
                raise
            self.current = None
            d.order = bought.row
            self.env.ledger.cache_drop(provider.account)
            if bought.earlier:
                # An earlier run's purchase, found now: reported as such, never as new.
                d.action = "pending"
                d.reason = (
                    f"an earlier purchase of {plan.name} went through after all (order "
                    f"{bought.order_id}): not bought again"
                )
                return
            d.action = "bought"
            if bought.over_limit is not None:
                self.errors.append(
                    LimitRefused(
                        f"charged beyond your limit: {bought.over_limit}; nothing more is "
                        "bought for this eSIM until you accept it: esimctl renew "
                        f"--accept-charge {bought.order_id}",
                        account=provider.account,
                        provider=provider.id,
                        code="charged_over_limit",
                    )
                )
        except LimitRefused as exc:
            d.action, d.reason = "refused", exc.message
            self.errors.append(exc.for_account(provider.account, provider.id))
        except EsimctlError as exc:
            self._fail(d, exc.for_account(provider.account, provider.id))

    def _fail(self, d: Decision, exc: EsimctlError) -> None:
        d.action, d.reason = "failed", exc.message
        self.errors.append(exc)

    def _limits(self, rule: Rule) -> Limits:
        caps = ((rule.max_price, f"max_price of [{rule.name}]"), (self.cap, "--max-price"))
        return Limits(
            caps=tuple((cap, where) for cap, where in caps if cap is not None),
            budgets=(
                Budget(self.rules.monthly_budget, "[renewal]"),
                Budget(rule.monthly_budget, f"[{rule.name}]", per_esim=True),
            ),
            max_per_day=(rule.max_per_day, f"max_per_day of [{rule.name}]"),
            require_price=True,
        )

    # -- 3. verify: applied or pending ----------------------------------------------------------

    def verify(self, timeout: timedelta) -> None:
        bought: dict[str, list[Decision]] = defaultdict(list)
        for d in self.decisions:
            if d.action == "bought" and d.order is not None:
                bought[d.esim.account].append(d)
        if not bought:
            return
        with self._spinner(sum(len(v) for v in bought.values())):
            self.env.session.run(self._verify_all(bought, timeout))
        for ds in bought.values():
            for d in ds:
                assert d.order is not None
                d.order = self.env.orders.get(d.order.id)
                d.applied = book.is_served(d.order)

    async def _verify_all(self, bought: dict[str, list[Decision]], timeout: timedelta) -> None:
        async def account(name: str, ds: list[Decision]) -> None:
            try:
                provider = await self.env.session.provider(self.env.config.account(name))
                await asyncio.gather(
                    *(
                        pipeline.verify(self.env, provider, d.order, timeout=timeout)
                        for d in ds
                        if d.order is not None
                    )
                )
            except EsimctlError as exc:
                # Bought, and recorded as pending: the next run checks again.
                self.notes.append(f"could not check the top-up on {name}: {exc.message}")

        await asyncio.gather(*(account(n, ds) for n, ds in bought.items()))

    @contextmanager
    def _spinner(self, n: int) -> Iterator[None]:
        if not self.env.show_progress:
            yield
            return
        with self.env.err.status(f"waiting for the provider to show {n} top-up(s)…"):
            yield

    # -- telling the user -------------------------------------------------------------------------

    def notify(self) -> Any:
        """Send this run's news (after everything was bought: a target never delays a
        purchase). Failures are reported, never an error of the run."""
        from esimctl.notify import run as notify_run

        env = self.env
        cfg = env.config.attention()
        esims = [d.esim for d in self.decisions]
        pending = env.orders.open_since(esims)
        rows = []
        for e in esims:
            f = forecast_of(env, e)
            key = (e.account, e.iccid)
            reasons = attention_for(e, cfg, self.now, pending_since=pending.get(key), forecast=f)
            rows.append((e, reasons, f))
        by_key = {(e.account, e.iccid): e for e in esims}
        events = []
        for event, row in self.earlier:
            if event == "applied":
                seen = by_key.get((row.account, row.iccid or ""))
                events.append(notify_run.order_event(env, "topup_applied", row, seen))
        for d in self.decisions:
            if d.action == "bought" and d.order is not None:
                events.append(notify_run.order_event(env, "topup_bought", d.order, d.esim))
                if d.applied:
                    events.append(notify_run.order_event(env, "topup_applied", d.order, d.esim))
            elif d.action == "refused":
                events.append(notify_run.refused_event(env, d.esim, d.reason))
        try:
            return notify_run.notify(
                env,
                rows=rows,
                pending=pending,
                errors=self.errors,
                accounts=[a.name for a in self.accounts],
                events=events,
                subjects=[f"auto:{e.account}/{e.iccid}" for e in esims],
            )
        except EsimctlError as exc:  # the ledger, say: never the run's failure
            return notify_run.Report(skipped=exc.message)

    # -- the result ----------------------------------------------------------------------------

    def interrupted(self) -> None:
        """Ctrl-C or SIGTERM: report what this run bought, the purchase under way included."""
        for d in self.decisions:
            if d.action == "candidate":
                d.action, d.reason = "skip", "not reached: the run was interrupted"
        if self.current is not None:
            d, progress = self.current
            message, row = pipeline.interrupted_message(progress, self.env)
            if row is not None and d.order is None:
                d.order, d.action = row, "bought"
            if row is not None:
                self.errors.append(Interrupted(message, account=row.account))
                return
        bought = [d for d in self.decisions if d.action == "bought"]
        self.errors.append(
            Interrupted(
                f"interrupted: {len(bought)} top-up(s) bought by this run, listed above"
                if bought
                else "interrupted: nothing was bought"
            )
        )

    def outcome(self) -> tuple[ExitCode, str]:
        """Exit code and JSON status by the one rule (``errors.run_outcome``): bought one
        and refused another is exit 5, status ``partial``."""
        bought = any(d.action == "bought" for d in self.decisions)
        return run_outcome(self.errors, answered=self.answered, achieved=bought)

    def result(self, empty: str | None = None) -> Result:
        orders: list[dict[str, Any]] = []
        for event, row in self.earlier:
            orders.append(
                {
                    **order_json(row.to_order()),
                    "event": event,
                    "applied": book.is_served(row),
                }
            )
        for d in self.decisions:
            if d.action == "bought" and d.order is not None:
                orders.append(
                    {**order_json(d.order.to_order()), "event": "bought", "applied": d.applied}
                )
            elif d.action == "would_buy" and d.plan is not None:
                orders.append(
                    {
                        **order_json(pipeline.dry_run_order(self.env, d.esim, d.plan)),
                        "event": "dry_run",
                        "applied": False,
                    }
                )
        lines = [empty] if empty else self._lines()
        exit_code, status = self.outcome()
        return Result(
            command="renew",
            data={"orders": orders, "decisions": [d.to_json() for d in self.decisions]},
            errors=list(self.errors),
            exit_code=exit_code,
            status=status,
            notes=list(self.notes),
            lines=lines,
            needs_you=self._needs_you(),
        )

    def _needs_you(self) -> list[str]:
        """``-q``: what cron must mail. Errors and refusals go to stderr anyway; these are
        the things that are no error and still need a person."""
        out: list[str] = []
        esims = {(d.esim.account, d.esim.iccid): d.esim for d in self.decisions}
        overdue = self.env.config.attention().pending_overdue
        for event, row in self.earlier:
            if event != "pending" or self.now - row.created_at < overdue:
                continue
            e = esims.get((row.account, row.iccid or ""))
            support = self.env.config.account(row.account).options.get("support")
            out.append(
                f"{esc(describe(e) if e else row.iccid or '?')}: the top-up {esc(row.plan or '?')}"
                f" (order {esc(row.to_order().id)}) is pending for "
                f"{human.relative(self.now - row.created_at)}: ask the seller"
                + (f" ({esc(str(support))})" if support else "")
            )
        for d in self.decisions:
            if d.action == "skip" and d.figure and d.by_hand:
                out.append(f"{esc(describe(d.esim))}: {esc(d.figure)}; {esc(d.reason)}")
        return out

    def _lines(self) -> list[str]:
        lines: list[str] = []
        esims = {(d.esim.account, d.esim.iccid): d.esim for d in self.decisions}
        for event, row in self.earlier:
            e = esims.get((row.account, row.iccid or ""))
            where = esc(describe(e) if e else row.iccid or "?")
            what = f"{esc(row.plan or '?')} on {where} (order {esc(row.to_order().id)})"
            if event == "applied":
                lines.append(f"[green]✓ applied[/]: {what}")
            elif event == "pending":
                lines.append(
                    f"[yellow]! pending[/]: {what}, bought "
                    f"{human.ago(row.created_at, self.now)}; not bought again"
                )
            elif event == "not_made":
                lines.append(f"✗ not made: {what}: the provider never received it")
            else:
                lines.append(f"[yellow]? unknown[/]: {what}: the provider does not show it yet")
        for d in self.decisions:
            where = esc(describe(d.esim))
            why = f"{esc(d.figure or '')} {esc(f'[{d.rule.name}]')}" if d.rule else ""
            plan = d.plan
            if d.action == "bought" and plan is not None:
                charged = d.order.price if d.order is not None else plan.price
                lines.append(
                    f"[green]✓[/] bought {esc(plan.name)} for {human.money(charged)} on "
                    f"{where}: {why}"
                )
                note = d.order.detail.get("price_note") if d.order is not None else None
                if note:
                    lines.append(f"  [yellow]![/] {esc(str(note))}")
                if d.applied:
                    lines.append("  [green]✓ applied[/]: the provider shows the new package")
                else:
                    lines.append(
                        "  [yellow]! pending[/]: the provider does not show it yet; "
                        "the next run checks again"
                    )
            elif d.action == "would_buy" and plan is not None:
                lines.append(
                    f"would buy {esc(plan.name)} ({esc(plan.id)}) for {human.money(plan.price)} "
                    f"on {where}: {why}"
                )
            elif d.action == "declined" and plan is not None:
                lines.append(f"not bought: {esc(plan.name)} on {where} (not confirmed)")
            elif d.action == "skip" and (d.figure or self.opts.dry_run):
                lines.append(f"- {where}: {esc(d.reason)}" + (f"; {why}" if d.figure else ""))
            elif d.action == "none" and self.opts.dry_run:
                lines.append(f"- {where}: {esc(d.reason)}")
        if self.opts.dry_run:
            lines.append("dry run: nothing bought")
        elif not lines and not self.errors:
            lines.append(f"nothing to renew ({len(self.decisions)} eSIM(s) checked)")
        return lines


def choose_plan(rule: Rule, plans: list[Plan], e: Esim, cap: Money | None) -> Plan:
    """The plan id of the rule (a day pass for its ``days``), or the cheapest top-up giving
    at least min_data and min_days (day passes, priced per day, only when named)."""
    topups = [p for p in plans if p.kind == "topup"]
    if rule.plan is not None:
        base, id_days = split_days(rule.plan)
        found = next((p for p in topups if p.id == rule.plan), None)
        if found is None and id_days is not None:
            found = next((p for p in topups if p.id == base and p.per_day), None)
            found = None if found is None else with_days(found, id_days, f"[{rule.name}] plan")
        if found is None:
            raise InvalidInput(
                f"[{rule.name}]: plan {rule.plan!r} is not sold for {describe(e)}; "
                f"'esimctl plans {e.label or e.iccid}' lists its top-ups"
            )
        if found.per_day and found.days is None and rule.days is None:
            raise InvalidInput(
                f"[{rule.name}]: plan {rule.plan!r} is a day pass priced per day: add "
                "days = N to the rule (N × its price is what counts against the limits)"
            )
        return with_days(found, rule.days, f"[{rule.name}] days")
    fits = [
        p
        for p in topups
        if p.price is not None
        and not p.per_day
        and (
            rule.min_data is None
            or p.unlimited
            or (p.data_bytes or 0) >= parsing.size(rule.min_data, base=p.unit_base)
        )
        and (rule.min_days is None or (p.validity_days or 0) >= rule.min_days)
    ]
    currency = (
        rule.currency
        or (rule.max_price.currency if rule.max_price else None)
        or (cap.currency if cap else None)
    )
    if currency:
        fits = [p for p in fits if p.price is not None and p.price.currency == currency]
    if not fits:
        passes = any(p.per_day for p in topups)
        raise LimitRefused(
            f"refused: no top-up for {describe(e)} gives {rule.wanted()}"
            + (f" in {currency}" if currency else "")
            + f" (rule [{rule.name}])"
            + ("; day passes are bought only by a rule naming one, with days = N" if passes else "")
        )
    currencies = sorted({p.price.currency for p in fits if p.price is not None})
    if len(currencies) > 1:
        raise InvalidInput(
            f"[{rule.name}]: the plans that fit {describe(e)} are priced in "
            f'{", ".join(currencies)}; add currency = "{currencies[0]}" to the rule to '
            "compare them"
        )
    return min(
        fits,
        key=lambda p: (
            p.price.amount if p.price else Decimal(0),
            not p.unlimited,
            -(p.data_bytes or 0),
            -(p.validity_days or 0),
            p.id,
        ),
    )
