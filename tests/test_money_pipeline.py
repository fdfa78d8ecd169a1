"""The money guard of the one purchase pipeline (``purchase.buy_once``), through real
``python -m esimctl`` processes against the shop seller on a real socket (a plugin), and
in-process against the demo seller:

* limits are checked inside the renewal lock, so runs started together (a manual renew
  and cron's ``renew --auto``, or two manual renews) never overspend a budget or buy twice;
* the same top-up repeated within the duplicate window needs ``--again`` in a pipe and a
  confirmation naming the earlier order on a terminal;
* prices: an implausible listed price is not offered; what counts against a limit is the
  larger of the listed and the charged price; a charge above a cap is reported loudly
  (exit 5) and ``renew --auto`` buys nothing more for that eSIM until it is accepted;
* an implausible usage figure is an error for that eSIM (exit 3), never a row or a trigger.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest

from fakes.shop import GB, FakeShop
from launcher import ESIMCTL
from test_crash_safety import _environ, _shop_env, esimctl, ledger_rows

SHOP_SIM = "8999000000000000012"
OTHER_SIM = "8999000000000000020"
PLAN = "s-1gb-3d"  # 4.00 USD


@pytest.fixture
def shop(home: Path):
    fake = FakeShop()
    fake.seed(SHOP_SIM, "Lisbon", total=3 * GB, remaining=GB // 5, days_left=4)
    with fake:
        yield fake


def write_config(home: Path, shop: FakeShop, extra: str = "") -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(
        f"""
[accounts.shop]
provider = "testshop"
base_url = "{shop.url}"
{extra}
""",
        encoding="utf-8",
    )


def run(home: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return esimctl(home, *args, env=_shop_env(tmp_path))


def start(home: Path, tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*ESIMCTL, *args],
        env=_environ(home, _shop_env(tmp_path)),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def settle(*procs: subprocess.Popen[str]) -> list[tuple[int, str, str]]:
    outs = [p.communicate(timeout=120) for p in procs]
    return [(p.returncode, o, e) for p, (o, e) in zip(procs, outs, strict=True)]


# -- 1. races: limits are checked inside the lock ----------------------------------------------

BUDGET_RULES = """
[renewal]
monthly_budget = "12 USD"

[renewal.esims.Lisbon]
data_below = "10GB"
plan = "s-1gb-3d"
"""


def test_manual_renew_and_auto_started_together_never_overspend(home, tmp_path, shop):
    """A budget of 12 USD holds the 11 USD top-up or the 4 USD one, not both: whichever
    run takes the lock second is refused by the budget, counted in the lock (before, the
    manual renew counted before it took the lock, and both bought)."""
    write_config(home, shop, BUDGET_RULES)
    assert run(home, tmp_path, "status").returncode == 0  # the ledger exists before the race
    manual = start(
        home,
        tmp_path,
        *("renew", "Lisbon", "--plan", "s-5gb-7d", "--yes", "--wait", "60", "--timeout", "0m"),
    )
    auto = start(home, tmp_path, "renew", "--auto", "--yes", "--wait", "60", "--timeout", "0m")
    results = settle(manual, auto)
    assert len(shop.orders) == 1, results
    assert sorted(code for code, _, _ in results) == [0, 5], results
    refused = next(err for code, _, err in results if code == 5)
    assert "monthly_budget of [renewal] (12.00 USD)" in refused, refused
    assert sum(float(p) for p in shop.charged()) <= 12.0


def test_two_manual_renews_started_together_buy_once(home, tmp_path, shop):
    write_config(home, shop)
    assert run(home, tmp_path, "status").returncode == 0
    args = ("renew", "Lisbon", "--plan", PLAN, "--yes", "--wait", "60", "--timeout", "0m")
    results = settle(start(home, tmp_path, *args), start(home, tmp_path, *args))
    assert len(shop.orders) == 1, results
    assert sorted(code for code, _, _ in results) == [0, 5], results
    refused = next(err for code, _, err in results if code == 5)
    assert "--again" in refused and shop.orders[0]["id"] in refused


# -- 3. the same top-up twice in a row -----------------------------------------------------------


def test_the_same_topup_twice_in_a_pipe_needs_again(home, tmp_path, shop):
    write_config(home, shop)
    args = ("renew", "Lisbon", "--plan", PLAN, "--yes", "--timeout", "0m")
    first = run(home, tmp_path, *args)
    assert first.returncode == 0, first
    assert len(shop.orders) == 1
    # Applied at once (completed), which the pending-only check of old let through.
    second = run(home, tmp_path, *args)
    assert second.returncode == 5, second
    assert shop.orders[0]["id"] in second.stderr and "--again" in second.stderr
    assert len(shop.orders) == 1
    third = run(home, tmp_path, *args, "--again")
    assert third.returncode == 0, third
    assert len(shop.orders) == 2


def _tokyo_order(cli) -> str:
    r = cli("--demo", "renew", "Tokyo", "--plan", "jp-1gb-3d", "--yes", "--json")
    assert r.exit_code == 0, r
    return str(r.json["data"]["order"]["id"])


def test_on_a_terminal_the_repeat_is_asked_naming_the_earlier_order(cli):
    first = _tokyo_order(cli)
    no = cli("--demo", "renew", "Tokyo", "--plan", "jp-1gb-3d", tty=True, input="n\n")
    assert no.exit_code == 1, no
    assert first in no.stderr and "Buy it again?" in no.stderr
    assert "nothing bought" in no.stderr
    yes = cli("--demo", "renew", "Tokyo", "--plan", "jp-1gb-3d", tty=True, input="y\ny\n")
    assert yes.exit_code == 0, yes
    assert "bought" in yes.stdout
    orders = cli("--demo", "history", "--local", "--json").json["data"]["orders"]
    assert len(orders) == 2


def test_the_window_ends(cli):
    _tokyo_order(cli)
    later = {"ESIMCTL_TEST_NOW": "2099-01-01T00:00:00Z"}
    # Sixteen minutes on, the same command is a new purchase (exit 0 or a limit, never the
    # duplicate refusal).
    r = cli("--demo", "renew", "Tokyo", "--plan", "jp-1gb-3d", "--yes", env=later)
    assert "--again" not in r.stderr, r


def test_a_different_plan_is_not_a_repeat(cli):
    _tokyo_order(cli)
    r = cli("--demo", "renew", "Tokyo", "--plan", "jp-3gb-7d", "--yes")
    assert r.exit_code == 0, r


# -- 4. prices ---------------------------------------------------------------------------------


@pytest.mark.parametrize("price", ["-1.40", "0", "1e-18", "1e308", "NaN", "Infinity"])
def test_a_plan_with_an_implausible_price_is_not_offered(home, tmp_path, shop, price):
    write_config(home, shop)
    shop.prices[PLAN] = price
    plans = run(home, tmp_path, "plans", "Lisbon", "--json")
    assert plans.returncode == 0, plans
    ids = [p["id"] for p in json.loads(plans.stdout)["data"]["plans"]]
    assert PLAN not in ids and "s-5gb-7d" in ids
    r = run(home, tmp_path, "renew", "Lisbon", "--plan", PLAN, "--yes", "--max-price", "5USD")
    assert r.returncode == 2, r
    assert "Traceback" not in r.stderr and "unexpected" not in r.stderr
    assert shop.orders == []


def test_a_charge_above_max_price_is_reported_loudly(home, tmp_path, shop):
    """The list says 4.00; the seller charges 12.00 (a rise between listing and buying)."""
    write_config(home, shop)
    shop.charge = "12.00"
    r = run(home, tmp_path, "renew", "Lisbon", "--plan", PLAN, "--yes", "--max-price", "10USD")
    assert r.returncode == 5, r
    assert "12.00 USD" in r.stderr and "--max-price (10.00 USD)" in r.stderr
    assert "charged beyond your limit" in r.stderr
    (row,) = ledger_rows(home / "data" / "ledger.sqlite3")
    assert (row["amount"], row["currency"]) == ("12.00", "USD")
    j = run(home, tmp_path, "history", "--local", "--json")
    (order,) = json.loads(j.stdout)["data"]["orders"]
    assert order["price"] == {"amount": "12.00", "currency": "USD"}
    assert order["charged_price"] == {"amount": "12.00", "currency": "USD"}
    assert "above --max-price" in order["over_limit"]


def test_auto_stops_buying_after_a_charge_above_a_cap_until_accepted(home, tmp_path, shop):
    write_config(
        home,
        shop,
        """
[renewal.esims.Lisbon]
data_below = "10GB"
plan = "s-1gb-3d"
max_price = "5 USD"
max_per_day = 5
""",
    )
    shop.charge = "9.00"
    auto = ("renew", "--auto", "--yes", "--timeout", "0m")
    first = run(home, tmp_path, *auto)
    assert first.returncode == 5, first
    assert "9.00 USD" in first.stderr and "max_price" in first.stderr
    assert "bought" in first.stdout and "9.00 USD" in first.stdout  # what was charged
    order_id = shop.orders[0]["id"]
    assert f"--accept-charge {order_id}" in first.stderr
    shop.charge = None
    second = run(home, tmp_path, *auto)
    assert second.returncode == 5, second
    assert len(shop.orders) == 1
    assert f"--accept-charge {order_id}" in second.stderr
    accepted = run(home, tmp_path, "renew", "--accept-charge", order_id)
    assert accepted.returncode == 0, accepted
    third = run(home, tmp_path, *auto)
    assert third.returncode == 0, third
    assert len(shop.orders) == 2


@pytest.mark.parametrize("charge", ["-50", "0", "NaN"])
def test_a_charge_that_cannot_be_right_counts_at_the_listed_price(home, tmp_path, shop, charge):
    """A 5 USD budget allows one 4 USD top-up whatever the seller claims it charged."""
    write_config(home, shop, '[renewal]\nmonthly_budget = "5 USD"\n')
    shop.charge = charge
    first = run(home, tmp_path, "renew", "Lisbon", "--plan", PLAN, "--yes", "--timeout", "0m")
    assert first.returncode == 0, first
    assert "cannot be right" in first.stdout
    (row,) = ledger_rows(home / "data" / "ledger.sqlite3")
    assert (row["amount"], row["currency"]) == ("4.00", "USD")
    second = run(
        home, tmp_path, "renew", "Lisbon", "--plan", PLAN, "--yes", "--again", "--timeout", "0m"
    )
    assert second.returncode == 5, second
    assert "monthly_budget" in second.stderr
    assert len(shop.orders) == 1


# -- 5. figures --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "figures",
    [
        {"remaining": 10**30},
        {"remaining": -5},
        {"remaining": 99 * GB},  # above the 3 GB total
        {"total": 10**30, "remaining": 10**29},
    ],
)
def test_an_implausible_figure_is_an_error_for_that_esim(home, tmp_path, shop, figures):
    shop.seed(OTHER_SIM, "Porto", total=3 * GB, remaining=2 * GB, days_left=4)
    write_config(
        home,
        shop,
        """
[renewal.esims.Lisbon]
data_below = "100GB"
plan = "s-1gb-3d"
""",
    )
    shop.set_figures(SHOP_SIM, **figures)
    r = run(home, tmp_path, "status", "--json")
    assert r.returncode == 3, r
    doc = json.loads(r.stdout)
    assert [e["iccid"] for e in doc["data"]["esims"]] == [OTHER_SIM]
    (err,) = doc["errors"]
    assert SHOP_SIM in err["message"] and err["code"] == "implausible_figures"
    assert "Traceback" not in r.stderr
    auto = run(home, tmp_path, "renew", "--auto", "--yes", "--timeout", "0m")
    assert auto.returncode == 3, auto
    assert shop.orders == []
    with sqlite3.connect(home / "data" / "ledger.sqlite3") as db:
        assert db.execute("SELECT COUNT(*) FROM orders").fetchone()[0] == 0


@pytest.mark.parametrize("cap", ["1000000000000000000000000000000USD", "99999999999999 JPY"])
def test_an_absurd_cap_is_bad_input(cli, cap):
    r = cli("--demo", "renew", "Tokyo", "--plan", "jp-1gb-3d", "--yes", "--max-price", cap)
    assert r.exit_code == 2, r
    assert "more than any plan costs" in r.stderr and "Traceback" not in r.stderr


# -- the second reading: what it found, pinned ----------------------------------------------------

TWO_RULES = """
[renewal.esims.Lisbon]
data_below = "10GB"
plan = "s-1gb-3d"

[renewal.esims.Porto]
data_below = "10GB"
plan = "s-1gb-3d"
"""


def _posts(fake: FakeShop) -> int:
    return sum(1 for r in fake.requests if r.method == "POST" and r.path == "/orders")


def test_auto_interrupted_while_a_purchase_is_refused_stops_there(home, tmp_path, shop):
    """SIGTERM while the seller holds the first purchase, which it then refuses: the run
    stops (exit 130), it does not go on to buy for the next eSIM."""
    import signal
    import time

    shop.seed(OTHER_SIM, "Porto", total=3 * GB, remaining=GB // 5, days_left=4)
    write_config(home, shop, TWO_RULES)
    shop.hold_then_refuse = 2.0
    proc = start(home, tmp_path, "renew", "--auto", "--yes", "--json", "--timeout", "0m")
    deadline = time.monotonic() + 30
    while _posts(shop) == 0:
        assert time.monotonic() < deadline, "the purchase never arrived"
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    ((code, out, err),) = settle(proc)
    assert code == 130, (code, out, err)
    assert _posts(shop) == 1 and shop.orders == []
    assert "nothing was bought" in err
    actions = {d["label"]: d["action"] for d in json.loads(out)["data"]["decisions"]}
    assert "candidate" not in actions.values()


def test_an_order_found_by_reconciling_is_reported_once(home, tmp_path, shop):
    write_config(home, shop, BUDGET_RULES.replace('"12 USD"', '"100 USD"'))
    shop.drop_purchase_answers = 1
    shop.lookup_fails = 2  # the lookup right after the lost answer fails too (and its retry)
    lost = run(home, tmp_path, "renew", "Lisbon", "--plan", PLAN, "--yes", "--timeout", "0m")
    assert lost.returncode == 75, lost
    first = run(home, tmp_path, "renew", "--auto", "--yes", "--timeout", "0m", "--json")
    events = [o["event"] for o in json.loads(first.stdout)["data"]["orders"]]
    assert "bought" not in events and len(shop.orders) == 1, first
    second = run(home, tmp_path, "renew", "--auto", "--yes", "--timeout", "0m", "--json")
    doc = json.loads(second.stdout)
    assert [o for o in doc["data"]["orders"] if o["event"] == "bought"] == [], second
    assert len(shop.orders) == 1


def test_a_charge_learnt_from_the_lookup_counts_and_is_flagged(home, tmp_path, shop):
    write_config(home, shop)
    shop.charge = "40.00"
    shop.drop_purchase_answers = 1  # the answer is lost; the order is found right after
    r = run(home, tmp_path, "renew", "Lisbon", "--plan", PLAN, "--yes", "--max-price", "5USD")
    assert r.returncode == 5, r
    assert "40.00 USD" in r.stderr and "--max-price (5.00 USD)" in r.stderr
    (row,) = ledger_rows(home / "data" / "ledger.sqlite3")
    assert (row["amount"], row["currency"]) == ("40.00", "USD")


def test_a_charge_in_a_currency_the_budget_lacks_is_flagged(home, tmp_path, shop):
    write_config(home, shop, '[renewal]\nmonthly_budget = "10 USD"\n')
    shop.charge, shop.charge_currency = "50.00", "EUR"
    r = run(home, tmp_path, "renew", "Lisbon", "--plan", PLAN, "--yes", "--timeout", "0m")
    assert r.returncode == 5, r
    assert "50.00 EUR" in r.stderr and "no amount in EUR" in r.stderr


def test_sigterm_stops_a_renew_started_with_sigint_ignored(home, tmp_path, shop):
    """A job started with & by a non-interactive shell ignores SIGINT: SIGTERM, which a
    purchase turns into SIGINT, must still stop it."""
    import signal
    import time

    write_config(home, shop)
    shop.hang_topups = 4.0
    proc = subprocess.Popen(
        [*ESIMCTL, "renew", "Lisbon", "--plan", PLAN, "--yes"],
        env=_environ(home, _shop_env(tmp_path)),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    deadline = time.monotonic() + 30
    while not any(r.path.endswith("/topups") for r in shop.requests):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    ((code, _, err),) = settle(proc)
    assert code == 130, (code, err)
    assert shop.orders == []
