"""`esimctl renew --auto` against the demo: rules, limits, trip window, pending then applied.

The demo profile's config (``$ESIMCTL_HOME/cache/demo-profile/config.toml``) holds the
rules; the demo seller's state file says what was really bought.
"""

from __future__ import annotations

import json
import textwrap
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from esimctl.lock import RenewLock

TOKYO = "8981100000000000018"
AUTO = ("--demo", "renew", "--auto")
PENDING_FOREVER = {"ESIMCTL_DEMO_APPLY_DELAY": "3600"}

TOKYO_RULE = """
[renewal.esims.Tokyo]
data_below = "500MB"
plan = "jp-1gb-3d"
"""


@pytest.fixture
def profile(home: Path) -> Path:
    p = home / "cache" / "demo-profile"
    p.mkdir(parents=True)
    return p


@pytest.fixture
def rules(profile: Path):
    def write(text: str) -> Path:
        path = profile / "config.toml"
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


def _state_file(profile: Path) -> Path:
    return profile / "state" / "accounts" / "demo" / "demo-state.json"


def purchases(profile: Path) -> list[dict]:
    """What the demo seller holds from esimctl (its seeded history has no reference)."""
    f = _state_file(profile)
    if not f.exists():
        return []
    return [o for o in json.loads(f.read_text())["orders"] if o.get("reference")]


def seller_applies_now(profile: Path) -> None:
    """The seller finishes the pending top-ups: their apply time moves to the past."""
    f = _state_file(profile)
    state = json.loads(f.read_text())
    for o in state["orders"]:
        if not o.get("applied", True):
            o["apply_at"] = "2000-01-01T00:00:00Z"
    f.write_text(json.dumps(state))


def local_orders(cli) -> list[dict]:
    return cli("--demo", "history", "--local", "--json").json["data"]["orders"]


def decision(doc: dict, label: str) -> dict:
    return next(d for d in doc["data"]["decisions"] if d["label"] == label)


# -- what it buys and says ---------------------------------------------------------------------


def test_dry_run_says_what_it_would_buy_and_why(cli, rules, profile):
    rules(TOKYO_RULE)
    r = cli(*AUTO, "--dry-run")
    assert r.exit_code == 0, r
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("would buy"))
    for part in (
        "Japan 1 GB · 3 days",
        "jp-1gb-3d",
        "4.50 USD",
        "Tokyo",
        "data left 307 MB < 500 MB",
        "[renewal.esims.Tokyo]",
    ):
        assert part in line
    assert "dry run: nothing bought" in r.stdout
    assert purchases(profile) == [] and local_orders(cli) == []

    doc = cli(*AUTO, "--dry-run", "--json").json
    tokyo = decision(doc, "Tokyo")
    assert tokyo["action"] == "would_buy" and tokyo["trigger"] == "data_below"
    assert tokyo["rule"] == "renewal.esims.Tokyo" and tokyo["iccid"] == TOKYO
    assert tokyo["plan"] == {
        "id": "jp-1gb-3d",
        "name": "Japan 1 GB · 3 days",
        "price": {"amount": "4.50", "currency": "USD"},
    }
    assert tokyo["need"].startswith(f"demo/{TOKYO}/renewal.esims.Tokyo/")
    assert decision(doc, "Europe")["action"] == "none"
    (order,) = doc["data"]["orders"]
    assert order["state"] == "dry_run" and order["event"] == "dry_run"
    assert purchases(profile) == []


def test_buys_once_then_has_nothing_to_do(cli, rules, profile):
    rules(TOKYO_RULE)
    r = cli(*AUTO, "--yes", "--json")
    assert r.exit_code == 0, r
    doc = r.json
    assert doc["command"] == "renew" and doc["status"] == "success"
    (order,) = doc["data"]["orders"]
    assert order["event"] == "bought" and order["applied"] is True
    assert order["state"] == "completed" and order["plan_id"] == "jp-1gb-3d"
    assert decision(doc, "Tokyo")["action"] == "bought"
    assert decision(doc, "Tokyo")["order_id"] == order["id"]
    assert len(purchases(profile)) == 1

    again = cli(*AUTO, "--yes")
    assert again.exit_code == 0, again
    assert "nothing to renew (6 eSIM(s) checked)" in again.stdout  # the demo's six
    assert len(purchases(profile)) == 1 and len(local_orders(cli)) == 1


@pytest.mark.parametrize(
    "quiet",
    [
        ("renew", "--auto", "--yes", "-q"),
        ("renew", "--auto", "--yes", "--quiet"),
        ("-q", "renew", "--auto", "--yes"),
    ],
)
def test_quiet_prints_nothing_on_success(cli, rules, profile, quiet):
    rules(TOKYO_RULE)
    r = cli("--demo", *quiet)
    assert (r.exit_code, r.stdout, r.stderr) == (0, "", "")
    assert len(purchases(profile)) == 1


def test_quiet_still_prints_errors(cli, rules, profile):
    rules(TOKYO_RULE + 'max_price = "1 USD"\n')
    r = cli(*AUTO, "--yes", "-q")
    assert r.exit_code == 5 and r.stdout == ""
    assert "max_price" in r.stderr


def test_without_terminal_it_needs_yes(cli, rules, profile):
    rules(TOKYO_RULE)
    r = cli(*AUTO)
    assert r.exit_code == 2 and "--yes" in r.stderr
    assert purchases(profile) == []


def test_on_a_terminal_it_asks(cli, rules, profile):
    rules(TOKYO_RULE)
    r = cli(*AUTO, tty=True, input="n\n", env={"NO_COLOR": "1"})
    assert r.exit_code == 0, r
    assert "Buy Japan 1 GB · 3 days for 4.50 USD on Tokyo" in r.stderr
    assert "data left 307 MB < 500 MB" in r.stderr
    assert "not bought" in r.stdout and purchases(profile) == []
    r = cli(*AUTO, tty=True, input="y\n", env={"NO_COLOR": "1"})
    assert r.exit_code == 0, r
    assert "bought Japan 1 GB · 3 days" in r.stdout and len(purchases(profile)) == 1


def test_no_rules_is_nothing_to_do(cli, profile):
    r = cli(*AUTO, "--yes")
    assert r.exit_code == 0
    assert "no renewal rules" in r.stdout
    assert purchases(profile) == []


def test_auto_takes_neither_esim_nor_plan(cli, rules):
    rules(TOKYO_RULE)
    assert cli("--demo", "renew", "Tokyo", "--auto", "--yes").exit_code == 2
    r = cli(*AUTO, "--plan", "jp-1gb-3d", "--yes")
    assert r.exit_code == 2 and "--plan" in r.stderr


# -- limits --------------------------------------------------------------------------------------


def test_budget_exhausted_exits_5_and_buys_nothing(cli, rules, profile):
    rules(
        '[renewal]\nmonthly_budget = ["10 USD", "5000 JPY"]\nmax_per_day = 3\n'
        + TOKYO_RULE.replace("500MB", "5GB")
    )
    # 9 USD spent by hand this month; the rule's 4.50 USD would make it 13.50.
    assert cli("--demo", "renew", "Tokyo", "--plan", "jp-3gb-7d", "--yes").exit_code == 0
    r = cli(*AUTO, "--yes", "--json")
    assert r.exit_code == 5, r
    assert r.json["status"] == "error"
    (err,) = r.json["errors"]
    assert err["code"] == "limit_refused"
    assert "monthly_budget of [renewal] (10.00 USD)" in err["message"]
    assert "9.00 USD spent this month" in err["message"]
    assert decision(r.json, "Tokyo")["action"] == "refused"
    assert len(purchases(profile)) == 1 and len(local_orders(cli)) == 1


def test_budget_without_the_plans_currency_refuses(cli, rules, profile):
    rules(TOKYO_RULE + 'monthly_budget = "5000 JPY"\n')
    r = cli(*AUTO, "--yes")
    assert r.exit_code == 5
    assert "monthly_budget of [renewal.esims.Tokyo] has no amount in USD" in r.stderr
    assert purchases(profile) == []


def test_esim_budget_counts_that_esim_only(cli, rules, profile):
    rules(TOKYO_RULE + 'monthly_budget = "5 USD"\n')
    # 199 CNY on another eSIM is not Tokyo's budget.
    assert cli("--demo", "renew", "Bangkok", "--plan", "th-5gb-8d", "--yes").exit_code == 0
    r = cli(*AUTO, "--yes")
    assert r.exit_code == 0, r
    assert len(purchases(profile)) == 2


@pytest.mark.parametrize(
    ("extra_rule", "args", "named"),
    [
        ('max_price = "4 USD"\n', (), "max_price of [renewal.esims.Tokyo]"),
        ("", ("--max-price", "4USD"), "--max-price"),
        ('max_price = "500 JPY"\n', (), "max_price of [renewal.esims.Tokyo] is in JPY"),
    ],
)
def test_max_price_refuses(cli, rules, profile, extra_rule, args, named):
    rules(TOKYO_RULE + extra_rule)
    r = cli(*AUTO, "--yes", *args)
    assert r.exit_code == 5, r
    assert named in r.stderr
    assert purchases(profile) == []


def test_max_per_day_and_a_new_need(cli, rules, profile):
    # 10 GB is more than one 1 GB top-up brings: the rule fires again after it is applied.
    rules(TOKYO_RULE.replace("500MB", "10GB"))
    first = cli(*AUTO, "--yes", "--json")
    assert first.exit_code == 0, first
    second = cli(*AUTO, "--yes", "--json")
    assert second.exit_code == 5, second
    assert "max_per_day of [renewal.esims.Tokyo] is 1" in second.json["errors"][0]["message"]
    assert "renewed 1 time(s) in the last 24 h" in second.json["errors"][0]["message"]
    assert len(purchases(profile)) == 1
    # The applied top-up changed the package: a new need, bought once max_per_day allows it.
    assert decision(second.json, "Tokyo")["need"] != decision(first.json, "Tokyo")["need"]
    rules(TOKYO_RULE.replace("500MB", "10GB") + "max_per_day = 2\n")
    assert cli(*AUTO, "--yes").exit_code == 0
    assert len(purchases(profile)) == 2


# -- the trip window, eSIM states, what to buy -------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end", "why"),
    [(-10, -1, "the trip ended"), (1, 10, "the trip starts")],
)
def test_outside_the_trip_window_nothing_is_bought(cli, rules, profile, start, end, why):
    today = date.today()
    rules(
        TOKYO_RULE + f"trip_start = {today + timedelta(days=start)}\n"
        f"trip_end = {today + timedelta(days=end)}\n"
    )
    r = cli(*AUTO, "--yes", "--json")
    assert r.exit_code == 0, r
    tokyo = decision(r.json, "Tokyo")
    assert tokyo["action"] == "skip" and why in tokyo["reason"]
    assert tokyo["trigger"] == "data_below"  # it would have fired
    assert r.json["data"]["orders"] == [] and purchases(profile) == []


def test_inside_the_trip_window_it_buys(cli, rules, profile):
    today = date.today()
    rules(TOKYO_RULE + f"trip_start = {today}\ntrip_end = {today}\n")
    assert cli(*AUTO, "--yes").exit_code == 0
    assert len(purchases(profile)) == 1


def test_expired_esim_is_left_to_the_user(cli, rules, profile):
    rules('[renewal.esims.Seoul]\nexpires_within = "2d"\nplan = "kr-1gb"\n')
    r = cli(*AUTO, "--yes", "--json")
    assert r.exit_code == 0, r
    seoul = decision(r.json, "Seoul")
    assert seoul["action"] == "skip" and "expired" in seoul["reason"]
    assert purchases(profile) == []


def test_cheapest_plan_giving_at_least(cli, rules):
    rules(
        '[renewal.esims.Tokyo]\nexpires_within = "2d"\nmin_data = "3GB"\nmin_days = 7\n'
        'currency = "USD"\n'
    )
    r = cli(*AUTO, "--dry-run", "--json")
    assert r.exit_code == 0, r
    tokyo = decision(r.json, "Tokyo")
    assert tokyo["trigger"] == "expires_within" and tokyo["plan"]["id"] == "jp-3gb-7d"
    assert tokyo["figure"].startswith("expires in 1 d")


def test_cheapest_plan_across_currencies_asks_for_one(cli, rules, profile):
    rules('[renewal.esims.Tokyo]\ndata_below = "10%"\nmin_data = "1GB"\n')
    r = cli(*AUTO, "--yes")
    assert r.exit_code == 2, r
    assert 'add currency = "JPY"' in r.stderr and "USD" in r.stderr
    assert purchases(profile) == []


def test_no_plan_fits_is_refused(cli, rules):
    # An unlimited plan gives at least any amount of data; none lasts a year.
    rules('[renewal.esims.Tokyo]\ndata_below = "10%"\nmin_data = "100GB"\nmin_days = 365\n')
    r = cli(*AUTO, "--yes")
    assert r.exit_code == 5, r
    assert "no top-up for Tokyo" in r.stderr and "at least 100GB and 365 days" in r.stderr


def test_default_rule_covers_every_esim_and_enabled_false_opts_out(cli, rules, profile):
    rules(
        """
        [renewal]
        expires_within = "7d"
        min_data = "1GB"
        currency = "USD"

        [renewal.esims.Europe]
        enabled = false
        """
    )
    r = cli(*AUTO, "--yes", "--json")
    assert r.exit_code == 0, r
    assert decision(r.json, "Tokyo")["action"] == "bought"
    assert decision(r.json, "Tokyo")["rule"] == "renewal"
    assert decision(r.json, "Tokyo")["plan"]["id"] == "jp-1gb-3d"
    europe = decision(r.json, "Europe")
    assert europe["action"] == "none" and "enabled = false" in europe["reason"]
    assert [p["iccid"] for p in purchases(profile)] == [TOKYO]


def test_a_table_naming_no_esim_is_a_config_error(cli, rules, profile):
    # A typo in a label must not silently switch a renewal off (the cron line is quiet).
    rules(TOKYO_RULE + '\n[renewal.esims.Lisbon]\ndata_below = "1GB"\nplan = "x"\n')
    r = cli(*AUTO, "--yes")
    assert r.exit_code == 2, r
    assert "[renewal.esims.Lisbon]" in r.stderr and "no eSIM named 'Lisbon'" in r.stderr
    assert purchases(profile) == []


# -- pending, then applied -----------------------------------------------------------------------


def test_pending_then_applied_across_runs(cli, rules, profile):
    rules(TOKYO_RULE)
    first = cli(*AUTO, "--yes", "--timeout", "0m", "--json", env=PENDING_FOREVER)
    assert first.exit_code == 0, first
    (order,) = first.json["data"]["orders"]
    assert order["event"] == "bought" and order["applied"] is False and order["state"] == "pending"
    status = cli("--demo", "status", "Tokyo", "--json").json["data"]["esims"][0]
    assert "topup_pending" in status["attention"]

    second = cli(*AUTO, "--yes", "--timeout", "0m", env={**PENDING_FOREVER, "NO_COLOR": "1"})
    assert second.exit_code == 0, second
    assert "pending" in second.stdout and "not bought again" in second.stdout
    assert len(purchases(profile)) == 1

    seller_applies_now(profile)
    third = cli(*AUTO, "--yes", "--timeout", "0m", "--json")
    assert third.exit_code == 0, third
    (seen,) = third.json["data"]["orders"]
    assert seen["id"] == order["id"] and seen["event"] == "applied" and seen["applied"] is True
    assert seen["state"] == "completed"
    assert decision(third.json, "Tokyo")["action"] == "none"  # 1.3 GB left now
    status = cli("--demo", "status", "Tokyo", "--json").json["data"]["esims"][0]
    assert "topup_pending" not in status["attention"]
    assert len(purchases(profile)) == 1


def test_applied_is_reported_in_words(cli, rules, profile):
    rules(TOKYO_RULE)
    cli(*AUTO, "--yes", "--timeout", "0m", env=PENDING_FOREVER)
    seller_applies_now(profile)
    r = cli(*AUTO, "--yes", env={"NO_COLOR": "1"})
    assert r.exit_code == 0
    assert "✓ applied: Japan 1 GB · 3 days on Tokyo" in r.stdout


# -- the lock ----------------------------------------------------------------------------------


def test_lock_held_exits_75_at_once_or_after_wait(cli, rules, profile):
    rules(TOKYO_RULE)
    with RenewLock(profile / "state" / "renew.lock"):
        r = cli(*AUTO, "--yes", "--json")
        assert r.exit_code == 75, r
        assert r.json["errors"][0]["code"] == "lock_held"
        assert "another esimctl renewal is running" in r.stderr and "pid" in r.stderr
        assert cli(*AUTO, "--yes", "--wait", "0.2").exit_code == 75
        assert cli("--demo", "renew", "Tokyo", "--plan", "jp-1gb-3d", "--yes").exit_code == 75
        # a dry run buys nothing and needs no lock
        assert cli(*AUTO, "--dry-run").exit_code == 0
    assert purchases(profile) == []
    assert cli(*AUTO, "--yes").exit_code == 0
    assert len(purchases(profile)) == 1


# -- bad rules -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[renewal.esims.Tokyo]\ndata_below = "lots"\nplan = "p"\n', "data_below: invalid size"),
        ('[renewal.esims.Tokyo]\ndata_below = "120%"\nplan = "p"\n', "invalid percentage"),
        ('[renewal.esims.Tokyo]\nbellow = "1GB"\nplan = "p"\n', "unknown key 'bellow'"),
        ('[renewal.esims.Tokyo]\ndata_below = "1GB"\n', "needs a trigger"),
        ('[renewal.esims.Tokyo]\ndata_below = "1GB"\nplan = "p"\nmin_days = 3\n', "not both"),
        ('[renewal.esims.Tokyo]\nexpires_within = "soon"\nplan = "p"\n', "invalid duration"),
        ('[renewal.esims.Tokyo]\ndata_below = "1GB"\nplan = "p"\nmax_per_day = 0\n', "max_per_day"),
        (
            '[renewal.esims.Tokyo]\ndata_below = "1GB"\nplan = "p"\nmax_price = "cheap"\n',
            "invalid price",
        ),
        (
            '[renewal.esims.Tokyo]\ndata_below = "1GB"\nplan = "p"\n'
            "trip_start = 2026-12-10\ntrip_end = 2026-12-01\n",
            "trip_end is not after trip_start",
        ),
        (
            '[renewal.esims.Tokyo]\ndata_below = "1GB"\nplan = "p"\ntrip_end = "someday"\n',
            "invalid date",
        ),
        ('[renewal]\nmonthly_budget = ["10 USD", "20 USD"]\n', "two budgets in USD"),
        ('[renewal]\ncurrency = "JPY"\nmax_price = "5 USD"\n', "max_price is in USD"),
        ("[renewal]\nesims = 3\n", "[renewal.esims] must hold one table per eSIM"),
        ('[renewal.esims.Tokyo]\ndata_below = 500\nplan = "p"\n', "expected a size"),
    ],
)
def test_bad_rules_exit_2_with_one_line_naming_file_and_table(cli, rules, profile, text, message):
    path = rules(text)
    for args in (("--yes",), ("--dry-run",)):
        r = cli(*AUTO, *args)
        assert r.exit_code == 2, r
        lines = r.stderr.splitlines()
        assert len([ln for ln in lines if ln.startswith("error:")]) == 1
        assert message in r.stderr and str(path) in r.stderr
        assert "[renewal" in r.stderr
    assert purchases(profile) == []


def test_two_tables_for_one_esim_is_a_config_error(cli, rules, profile):
    rules(TOKYO_RULE + f'\n[renewal.esims."{TOKYO}"]\ndata_below = "1GB"\nplan = "jp-1gb-3d"\n')
    r = cli(*AUTO, "--yes")
    assert r.exit_code == 2
    assert "both name eSIM" in r.stderr
    assert purchases(profile) == []


def test_a_need_already_served_is_not_bought_again(cli, rules, profile):
    """A seller that queues a top-up behind the current package leaves the figures as they
    were once it is applied: the need is the same, and it was served."""
    from esimctl.ledger import Ledger
    from esimctl.models import Money

    rules(TOKYO_RULE)
    need = decision(cli(*AUTO, "--dry-run", "--json").json, "Tokyo")["need"]
    ledger = Ledger(profile / "data" / "ledger.sqlite3")
    ledger.add_order(
        account="demo",
        provider="demo",
        iccid=TOKYO,
        plan_id="jp-1gb-3d",
        plan="Japan 1 GB · 3 days",
        price=Money(Decimal("4.50"), "USD"),
        state="completed",
        need=need,
    )
    ledger.close()
    r = cli(*AUTO, "--yes", "--json")
    assert r.exit_code == 0, r
    tokyo = decision(r.json, "Tokyo")
    assert tokyo["action"] == "skip" and "already bought for this need" in tokyo["reason"]
    assert purchases(profile) == []


def test_one_account_failing_is_partial_and_the_others_are_served(cli, rules, profile):
    rules(TOKYO_RULE + '\n[accounts.broken]\nprovider = "esimgo"\n')
    r = cli(*AUTO, "--yes", "--json")
    assert r.exit_code == 3, r
    assert r.json["status"] == "partial"
    assert [e["account"] for e in r.json["errors"]] == ["broken"]
    assert decision(r.json, "Tokyo")["action"] == "bought"
    assert len(purchases(profile)) == 1
