"""Sellers without an API (``--provider manual``), through the CLI.

Time is the test clock ``ESIMCTL_TEST_NOW``: each call says when it happens, so "pending for over
30 minutes" is tested without waiting. TZ is UTC (conftest), so a date alone is a UTC day.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

GB = 1024**3
MB = 1024**2
T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
ICCID = "8981100022223333444"
ICCID2 = "8981100022223333555"


def at(minutes: float = 0) -> dict[str, str]:
    """The environment of a call made ``minutes`` after T0."""
    return {"ESIMCTL_TEST_NOW": (T0 + timedelta(minutes=minutes)).isoformat()}


def iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def ok(r):
    assert r.exit_code == 0, r
    return r


@pytest.fixture
def card(cli):
    """Account jp-card (renewal page, support contact) and its eSIM: 3 GB, 7 days from T0-2d."""
    ok(
        cli(
            "account",
            "add",
            "jp-card",
            "--provider",
            "manual",
            "--seller",
            "Sakura Travel",
            "--renew-url",
            "https://shop.example/jp/renew",
            "--support",
            "wechat: sakura-help",
            env=at(),
        )
    )
    ok(
        cli(
            "esim",
            "add",
            "jp-card",
            "--iccid",
            ICCID,
            "--label",
            "Tokyo",
            "-c",
            "JP",
            "--data",
            "3GB",
            "--days",
            "7",
            "--price",
            "58CNY",
            "--activated",
            iso(T0 - timedelta(days=2)),
            "--order",
            "A-1000",
            env=at(),
        )
    )
    return cli


def status(cli, minutes: float = 0) -> dict:
    r = cli("status", "--json", env=at(minutes))
    assert r.exit_code == 0, r
    [e] = r.json["data"]["esims"]
    return e


def orders(cli) -> list[dict]:
    return ok(cli("history", "--json", env=at(600))).json["data"]["orders"]


def renew(cli, minutes: float, *args: str, **kw):
    return cli("renew", "Tokyo", "--no-browser", *args, env=at(minutes), **kw)


# -- the whole scenario ------------------------------------------------------------------------


def test_the_whole_routine_through_the_cli(card):
    cli = card
    e = status(cli)
    assert e["provider"] == "manual" and e["state"] == "active"
    assert e["data_total_bytes"] == 3 * GB and e["data_remaining_bytes"] == 3 * GB
    assert e["expires_at"] == iso(T0 + timedelta(days=5))
    assert e["as_of"] == iso(T0)  # no reading yet: the package as of when it was recorded

    # The seller's app says 0.3 GB left: status shows it, as of the reading, low on data.
    ok(cli("esim", "reading", "Tokyo", "0.3GB", "--at", iso(T0 + timedelta(minutes=5)), env=at(10)))
    e = status(cli, 10)
    assert e["data_remaining_bytes"] == int(0.3 * GB)
    assert e["as_of"] == iso(T0 + timedelta(minutes=5))
    assert "low_data" in e["attention"]
    assert cli("status", "--check", env=at(10)).exit_code == 8

    # Renew: 3 GB for 7 days, bought on the seller's page; pending until it shows.
    r = ok(
        renew(
            cli,
            20,
            "--data",
            "3GB",
            "--days",
            "7",
            "--price",
            "58CNY",
            "--order",
            "A-1001",
            "--json",
        )
    )
    assert r.json["data"]["applied"] is False
    assert r.json["data"]["order"]["state"] == "pending"
    assert r.json["data"]["order"]["id"] == "A-1001"
    assert r.json["data"]["renew_url"] == "https://shop.example/jp/renew"
    e = status(cli, 25)
    assert "topup_pending" in e["attention"] and "low_data" in e["attention"]
    assert e["data_remaining_bytes"] == int(0.3 * GB)  # not counted before it shows

    # A later reading shows more data than there was: the top-up is applied, and it stacks.
    r = ok(cli("esim", "reading", "Tokyo", "3.2GB", "--json", env=at(40)))
    assert [o["id"] for o in r.json["data"]["applied"]] == ["A-1001"]
    e = status(cli, 41)
    assert e["attention"] == []
    assert e["data_total_bytes"] == 6 * GB
    assert e["data_remaining_bytes"] == int(3.2 * GB)
    assert e["expires_at"] == iso(T0 + timedelta(days=12))  # extended from the old end
    assert e["as_of"] == iso(T0 + timedelta(minutes=40))

    h = ok(cli("history", "--json", env=at(60))).json["data"]
    assert [(o["id"], o["state"], o["source"]) for o in h["orders"]] == [
        ("A-1001", "completed", "local"),
        ("A-1000", "completed", "local"),
    ]
    assert h["totals"] == [{"amount": "116.00", "currency": "CNY"}]


def test_status_table_on_a_terminal_shows_the_reading_and_its_age(card):
    ok(card("esim", "reading", "Tokyo", "1.2GB", env=at(0)))
    r = ok(card("status", tty=True, env=at(125)))
    assert "Tokyo" in r.stdout and "1.2 GB / 3 GB" in r.stdout
    assert "2 h 5 m ago" in r.stdout


# -- pending, overdue, confirm, cancel -----------------------------------------------------


def test_pending_for_over_30_minutes_says_to_contact_the_seller(card):
    ok(renew(card, 0, "--data", "3GB", "--days", "7", "--price", "58CNY", "--order", "A-2"))
    r = card("status", "--json", env=at(29))
    assert r.json["data"]["esims"][0]["attention"] == ["topup_pending"]
    assert "contact" not in r.stderr
    r = card("status", "--json", env=at(31))
    assert r.json["data"]["esims"][0]["attention"] == ["topup_overdue"]
    assert "Tokyo: a top-up has been pending for over 30 m" in r.stderr
    assert "contact the seller (wechat: sakura-help) with order A-2" in r.stderr
    assert card("status", "--check", env=at(31)).exit_code == 8


def test_renew_tells_what_to_do_next(card):
    r = ok(renew(card, 0, "--data", "3GB", "--days", "7", "--price", "58CNY", "--order", "A-3"))
    assert "recorded 3 GB · 7 days for 58.00 CNY on Tokyo" in r.stdout
    assert "esimctl esim reading Tokyo" in r.stdout and "esimctl esim confirm Tokyo" in r.stdout
    assert "not active after 30 minutes? contact wechat: sakura-help" in r.stdout
    assert "https://shop.example/jp/renew" in r.stderr


def test_confirm_adds_the_top_up_to_the_last_reading(card):
    ok(card("esim", "reading", "Tokyo", "0.5GB", env=at(0)))
    ok(renew(card, 10, "--data", "3GB", "--days", "7", "--price", "58CNY", "--order", "A-4"))
    r = ok(card("esim", "confirm", "Tokyo", "--json", env=at(15)))
    assert r.json["data"]["applied"] is True
    assert r.json["data"]["order"]["state"] == "completed"
    e = status(card, 16)
    assert e["data_remaining_bytes"] == int(0.5 * GB) + 3 * GB
    assert e["data_total_bytes"] == 6 * GB
    assert e["expires_at"] == iso(T0 + timedelta(days=12))
    assert e["as_of"] == iso(T0)  # the last measurement is still the reading's
    assert e["attention"] == []
    # A later reading already includes the top-up: it is not added a second time.
    ok(card("esim", "reading", "Tokyo", "2.5GB", env=at(120)))
    e = status(card, 121)
    assert (e["data_remaining_bytes"], e["data_total_bytes"]) == (int(2.5 * GB), 6 * GB)
    assert e["expires_at"] == iso(T0 + timedelta(days=12))
    assert card("esim", "confirm", "Tokyo", env=at(122)).exit_code == 2  # nothing pending


def test_a_reading_at_the_moment_of_a_confirm_includes_the_top_up(card):
    ok(card("esim", "reading", "Tokyo", "0.5GB", env=at(0)))
    ok(renew(card, 10, "--data", "3GB", "--days", "7", "--price", "58CNY"))
    ok(card("esim", "confirm", "Tokyo", env=at(15)))
    ok(card("esim", "reading", "Tokyo", "3.4GB", env=at(15)))
    assert status(card, 16)["data_remaining_bytes"] == int(3.4 * GB)


def test_a_reading_with_less_data_leaves_the_top_up_pending(card):
    ok(card("esim", "reading", "Tokyo", "0.5GB", env=at(0)))
    ok(renew(card, 10, "--data", "3GB", "--days", "7", "--price", "58CNY"))
    r = ok(card("esim", "reading", "Tokyo", "0.4GB", "--json", env=at(20)))
    assert r.json["data"]["applied"] == []
    assert "topup_pending" in status(card, 21)["attention"]
    assert orders(card)[0]["state"] == "pending"


def test_a_reading_taken_before_the_purchase_does_not_confirm_it(card):
    ok(card("esim", "reading", "Tokyo", "0.5GB", env=at(0)))
    ok(renew(card, 30, "--data", "3GB", "--days", "7", "--price", "58CNY"))
    # Recorded late, but read at minute 20: before the top-up was bought.
    r = ok(
        card(
            "esim",
            "reading",
            "Tokyo",
            "2GB",
            "--at",
            iso(T0 + timedelta(minutes=20)),
            "--json",
            env=at(40),
        )
    )
    assert r.json["data"]["applied"] == []
    assert "topup_pending" in status(card, 41)["attention"]


def test_one_reading_applies_only_the_top_ups_it_can_show(card):
    ok(card("esim", "reading", "Tokyo", "0.3GB", env=at(0)))
    ok(renew(card, 10, "--data", "3GB", "--days", "7", "--price", "58CNY", "--order", "A-5"))
    ok(renew(card, 11, "--data", "3GB", "--days", "7", "--price", "58CNY", "--order", "A-6"))
    # 3.2 GB is more than 0.3 GB, but not more than 0.3 + 3 GB: only the older one shows.
    r = ok(card("esim", "reading", "Tokyo", "3.2GB", "--json", env=at(20)))
    assert [o["id"] for o in r.json["data"]["applied"]] == ["A-5"]
    e = status(card, 21)
    assert e["attention"] == ["topup_pending"]
    assert e["data_remaining_bytes"] == int(3.2 * GB)
    # Two would be pending to confirm without a number; one is left, so no --order needed.
    ok(card("esim", "confirm", "Tokyo", env=at(30)))
    e = status(card, 31)
    assert e["data_remaining_bytes"] == int(3.2 * GB) + 3 * GB
    assert e["data_total_bytes"] == 9 * GB
    assert e["expires_at"] == iso(T0 + timedelta(days=19))


def test_confirm_with_several_pending_needs_the_order_number(card):
    ok(renew(card, 0, "--data", "1GB", "--days", "0", "--price", "20CNY", "--order", "B-1"))
    ok(renew(card, 1, "--data", "2GB", "--days", "0", "--price", "30CNY", "--order", "B-2"))
    r = card("esim", "confirm", "Tokyo", env=at(5))
    assert r.exit_code == 2 and "B-1, B-2" in r.stderr and "--order" in r.stderr
    assert card("esim", "confirm", "Tokyo", "--order", "B-9", env=at(5)).exit_code == 2
    ok(card("esim", "confirm", "Tokyo", "--order", "B-2", env=at(5)))
    e = status(card, 6)
    assert e["data_total_bytes"] == 5 * GB  # 3 + 2: days 0 leaves the end date alone
    assert e["expires_at"] == iso(T0 + timedelta(days=5))
    assert {o["id"]: o["state"] for o in orders(card)} == {
        "B-1": "pending",
        "B-2": "completed",
        "A-1000": "completed",
    }


def test_cancel_marks_a_pending_top_up_failed(card):
    ok(renew(card, 0, "--data", "3GB", "--days", "7", "--price", "58CNY", "--order", "C-1"))
    r = ok(card("esim", "cancel", "Tokyo", "--json", env=at(45)))
    assert r.json["data"]["order"]["state"] == "failed"
    assert status(card, 46)["attention"] == []
    h = ok(card("history", "--json", env=at(50))).json["data"]
    assert h["totals"] == [{"amount": "58.00", "currency": "CNY"}]  # the package only


def test_restart_rule_counts_the_days_from_the_purchase(cli):
    ok(cli("account", "add", "b", "--provider", "manual", "--stacking", "restart", env=at()))
    ok(
        cli(
            "esim", "add", "b", "--iccid", ICCID, "--data", "1GB", "--until", "2026-11-28", env=at()
        )
    )
    assert status(cli)["expires_at"] == "2026-11-28T23:59:59Z"  # a date: the end of that day
    ok(cli("renew", "b", "--data", "1GB", "--days", "3", "--price", "500JPY", env=at(60)))
    ok(cli("esim", "confirm", "b", env=at(70)))
    assert status(cli, 71)["expires_at"] == iso(T0 + timedelta(minutes=60, days=3))


def test_a_reading_may_give_the_end_date_the_sellers_app_shows(card):
    ok(card("esim", "reading", "Tokyo", "1GB", "--until", "2026-12-10T12:00:00+09:00", env=at(5)))
    assert status(card, 6)["expires_at"] == "2026-12-10T03:00:00Z"


def test_a_forced_reading_above_the_total_lifts_it_only_while_it_is_the_latest(card):
    r = card("esim", "reading", "Tokyo", "3.5GB", env=at(5))
    assert r.exit_code == 2 and "--force" in r.stderr
    ok(card("esim", "reading", "Tokyo", "3.5GB", "--force", env=at(5)))
    e = status(card, 6)
    assert (e["data_total_bytes"], e["data_remaining_bytes"]) == (int(3.5 * GB), int(3.5 * GB))
    assert e["data_used_bytes"] == 0
    ok(card("esim", "reading", "Tokyo", "2GB", env=at(10)))
    e = status(card, 11)
    assert (e["data_total_bytes"], e["data_remaining_bytes"]) == (3 * GB, 2 * GB)


def test_a_card_not_yet_activated(cli):
    ok(cli("account", "add", "jp", "--provider", "manual", env=at()))
    ok(cli("esim", "add", "jp", "--iccid", ICCID, "--data", "5GB", "--days", "8", env=at()))
    e = status(cli)
    assert e["label"] == "jp"  # the account's first eSIM is named after it
    assert (e["state"], e["expires_at"]) == ("not_active", None)
    ok(cli("esim", "reading", "jp", "4.5GB", env=at(60)))
    assert status(cli, 61)["state"] == "active"


def test_depleted_and_expired(card):
    ok(card("esim", "reading", "Tokyo", "0", env=at(5)))
    assert status(card, 6)["state"] == "depleted"
    assert status(card, 6 * 24 * 60)["state"] == "expired"


# -- renew: asking, the browser, flags, limits ----------------------------------------------


def plan_add(cli, *args: str):
    return cli("esim", "plan", "add", "jp-card", *args, env=at())


def test_seller_plans_are_listed_with_price_per_gb_and_per_day(card):
    ok(
        plan_add(
            card,
            "jp-3gb-7d",
            "--name",
            "3GB 7 days",
            "--data",
            "3GB",
            "--days",
            "7",
            "--price",
            "58CNY",
        )
    )
    ok(plan_add(card, "jp-10gb-30d", "--data", "10GB", "--days", "30", "--price", "128CNY"))
    ok(
        plan_add(
            card,
            "jp-1gb-day",
            "--name",
            "1GB/day 5 days",
            "--data",
            "5GB",
            "--days",
            "5",
            "--price",
            "45 CNY",
        )
    )
    r = ok(card("plans", "Tokyo", "--sort", "price-per-gb", env=at()))
    rows = [line.split("\t") for line in r.stdout.splitlines()]
    assert [row[0] for row in rows] == ["jp-1gb-day", "jp-10gb-30d", "jp-3gb-7d"]
    assert rows[1][5:7] == ["12.80 CNY", "4.27 CNY"]  # per GB, per day
    p = ok(card("plans", "Tokyo", "--json", env=at())).json["data"]["plans"]
    assert p[0] == {
        "id": "jp-1gb-day",
        "account": "jp-card",
        "provider": "manual",
        "name": "1GB/day 5 days",
        "kind": "topup",
        "data_bytes": 5 * GB,
        "unlimited": False,
        "validity_days": 5,
        "price": {"amount": "45.00", "currency": "CNY"},
        "countries": ["JP"],
        "stacking": "stacks",
        # the shape of a plan (issue 18): a seller's plan is a total, never a day pass
        "per_day": False,
        "days": None,
        "daily_allowance_bytes": None,
        "after_allowance": None,
        "reduced_speed": None,
        "fair_usage": None,
    }
    assert (
        plan_add(card, "jp-3gb-7d", "--data", "1GB", "--days", "1", "--price", "1CNY").exit_code
        == 2
    )
    ok(plan_add(card, "jp-3gb-7d", "--data", "3GB", "--days", "7", "--price", "55CNY", "--replace"))
    ok(card("esim", "plan", "remove", "jp-card", "jp-10gb-30d", env=at()))
    ids = [p["id"] for p in ok(card("plans", "Tokyo", "--json")).json["data"]["plans"]]
    assert ids == ["jp-1gb-day", "jp-3gb-7d"]


def test_renew_with_a_saved_plan_and_max_price(card):
    ok(plan_add(card, "jp-3gb-7d", "--data", "3GB", "--days", "7", "--price", "58CNY"))
    r = renew(card, 0, "--plan", "jp-3gb-7d", "--max-price", "50CNY")
    assert r.exit_code == 5 and "above --max-price" in r.stderr
    assert renew(card, 0, "--plan", "nope").exit_code == 2
    r = ok(renew(card, 0, "--plan", "jp-3gb-7d", "--max-price", "60CNY", "--json"))
    o = r.json["data"]["order"]
    assert (o["plan_id"], o["price"]) == ("jp-3gb-7d", {"amount": "58.00", "currency": "CNY"})
    # A flag wins over the plan: the user paid a discounted price.
    r = ok(renew(card, 1, "--plan", "jp-3gb-7d", "--price", "52CNY", "--json"))
    assert r.json["data"]["order"]["price"]["amount"] == "52.00"


def test_renew_without_a_terminal_needs_the_flags(card):
    r = renew(card, 0, "--data", "3GB")
    assert r.exit_code == 2
    assert "--days, --price" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert [o["id"] for o in orders(card)] == ["A-1000"]


def test_renew_asks_on_a_terminal(card):
    ok(
        plan_add(
            card,
            "jp-3gb-7d",
            "--name",
            "3GB 7 days",
            "--data",
            "3GB",
            "--days",
            "7",
            "--price",
            "58CNY",
        )
    )
    r = ok(renew(card, 0, tty=True, input="jp-9\njp-3gb-7d\nA-77\n"))
    assert "unknown plan 'jp-9'" in r.stderr  # asked again
    assert "the seller's renewal page: https://shop.example/jp/renew" in r.stderr
    o = orders(card)[0]
    assert (o["id"], o["plan"], o["state"]) == ("A-77", "3GB 7 days", "pending")


def test_renew_asks_the_figures_when_no_plan_is_saved(card):
    r = ok(renew(card, 0, tty=True, input="3\n3GB\n7\n58CNY\n\n"))
    assert "give a unit" in r.stderr
    o = orders(card)[0]
    assert (o["plan"], o["price"]["amount"], o["state"]) == ("3 GB · 7 days", "58.00", "pending")
    assert o["id"].startswith("L")  # no seller order number: the ledger's own id


def test_renew_stops_when_the_answers_stop(card):
    r = renew(card, 0, tty=True, input="3GB\n")
    assert r.exit_code == 1 and "nothing recorded" in r.stderr
    assert [o["id"] for o in orders(card)] == ["A-1000"]


def test_renew_opens_the_renewal_page_where_there_is_a_browser(card, monkeypatch):
    import webbrowser

    opened: list[str] = []
    monkeypatch.setattr(webbrowser, "open", lambda url, new=0: opened.append(url) or True)
    args = ("renew", "Tokyo", "--data", "3GB", "--days", "7", "--price", "58CNY")
    ok(card(*args, tty=True, input="A-8\n", env={**at(0), "DISPLAY": ":0"}))
    assert opened == ["https://shop.example/jp/renew"]
    # --no-browser, no display, or nothing to ask (it was bought already): the URL only.
    ok(card(*args, "--no-browser", tty=True, input="A-9\n", env={**at(1), "DISPLAY": ":0"}))
    ok(card(*args, tty=True, input="A-10\n", env={**at(2), "DISPLAY": ""}))
    ok(card(*args, "--order", "A-11", tty=True, env={**at(3), "DISPLAY": ":0"}))
    assert opened == ["https://shop.example/jp/renew"]


def test_same_order_number_twice_asks_first(card):
    args = ("--data", "3GB", "--days", "7", "--price", "58CNY", "--order", "D-1")
    ok(renew(card, 0, *args))
    r = renew(card, 1, *args)
    assert r.exit_code == 2 and "--yes" in r.stderr
    r = renew(card, 1, *args, tty=True, input="n\n")
    assert r.exit_code == 1 and "recorded already" in r.stderr
    assert [o["id"] for o in orders(card)].count("D-1") == 1
    ok(renew(card, 2, *args, tty=True, input="y\n"))
    ok(renew(card, 3, *args, "--yes"))
    assert [o["id"] for o in orders(card)].count("D-1") == 3


def test_dry_run_records_nothing(card):
    r = ok(
        renew(card, 0, "--data", "3GB", "--days", "7", "--price", "58CNY", "--dry-run", "--json")
    )
    assert r.json["data"]["order"]["state"] == "dry_run"
    assert [o["id"] for o in orders(card)] == ["A-1000"]


# -- bad input: one line, exit 2, nothing recorded -----------------------------------------


@pytest.mark.parametrize(
    ("flag", "value", "says"),
    [
        ("--iccid", "8981-1234", "invalid ICCID"),
        ("--iccid", "12345678901234567", "invalid ICCID"),
        ("--data", "3", "invalid size"),
        ("--data", "3XB", "invalid size"),
        ("--data", "0GB", "invalid size"),
        ("--price", "58", "invalid price"),
        ("--price", "58YUAN", "invalid price"),
        ("--price", "58C$", "invalid price"),
        ("--activated", "2026-13-45", "invalid date"),
        ("--until", "soon", "invalid date"),
        ("--until", "7d", "invalid end date"),
        ("--countries", "Japan", "invalid country"),
        ("--days", "0", "invalid number of days"),
    ],
)
def test_esim_add_refuses_bad_input(cli, flag, value, says):
    ok(cli("account", "add", "jp", "--provider", "manual"))
    good = {"--iccid": ICCID, "--data": "3GB", "--days": "7", "--price": "58CNY"}
    if flag == "--until":
        del good["--days"]
    good[flag] = value
    r = cli("esim", "add", "jp", *[x for kv in good.items() for x in kv], env=at())
    assert r.exit_code == 2, r
    assert says in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert ok(cli("status", "--json")).json["data"]["esims"] == []
    assert orders(cli) == []


def test_esim_add_refuses_a_second_eSIM_with_the_same_iccid_and_other_accounts(
    card, configure, home
):
    r = card("esim", "add", "jp-card", "--iccid", ICCID, "--data", "1GB", "--days", "1")
    assert r.exit_code == 2 and "recorded already" in r.stderr
    r = card(
        "esim",
        "add",
        "jp-card",
        "--iccid",
        ICCID2,
        "--data",
        "1GB",
        "--days",
        "1",
        "--until",
        "2026-12-01",
    )
    assert r.exit_code == 2 and "one of them" in r.stderr
    text = (home / "config.toml").read_text() + '\n[accounts.trip]\nprovider = "airalo"\n'
    configure(text)
    r = card("esim", "add", "trip", "--iccid", ICCID2, "--data", "1GB", "--days", "1")
    assert r.exit_code == 2 and "airalo account" in r.stderr
    assert len(ok(card("status", "--json", "-a", "jp-card")).json["data"]["esims"]) == 1


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("1.2",), "invalid size"),
        (("lots",), "invalid size"),
        (("1GB", "--at", "yesterday"), "invalid date"),
        (("1GB", "--at", "2026-11-27T11:00:00Z"), "in the future"),
        (("1GB", "--until", "2026-02-30"), "invalid date"),
    ],
)
def test_reading_refuses_bad_input(card, args, says):
    r = card("esim", "reading", "Tokyo", *args, env=at(30))
    assert r.exit_code == 2, r
    assert says in r.stderr and len(r.stderr.strip().splitlines()) == 1
    e = status(card, 31)
    assert (e["data_remaining_bytes"], e["as_of"]) == (3 * GB, iso(T0))


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--data", "3", "--days", "7", "--price", "58CNY"), "invalid size"),
        (("--data", "3GB", "--days", "7", "--price", "fifty"), "invalid price"),
        (("--data", "3GB", "--days", "7", "--price", "58YUAN"), "invalid price"),
        (("--data", "3GB", "--days", "-1", "--price", "58CNY"), "invalid number of days"),
        (("--data", "0GB", "--days", "0", "--price", "58CNY"), "adds data, days, or both"),
        (("--data", "3GB", "--days", "7", "--price", "58CNY", "--order", " "), "invalid --order"),
        (("--data", "3GB", "--days", "7", "--price", "58CNY", "--max-price", "5"), "invalid price"),
    ],
)
def test_renew_refuses_bad_input(card, args, says):
    r = renew(card, 0, *args)
    assert r.exit_code == 2, r
    assert says in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert [o["id"] for o in orders(card)] == ["A-1000"]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--seller", " "), "invalid seller"),
        (("--renew-url", "shop.example/renew"), "invalid renewal page"),
        (("--stacking", "sideways"), "invalid stacking"),
        (("--set", "unit_base=1020"), "invalid unit_base"),
    ],
)
def test_account_add_refuses_bad_options(cli, home, args, says):
    r = cli("account", "add", "jp", "--provider", "manual", *args)
    assert r.exit_code == 2 and says in r.stderr
    assert not (home / "config.toml").exists()


def test_a_hand_edited_config_with_a_bad_option_is_a_config_error(configure, cli):
    configure('[accounts.jp]\nprovider = "manual"\nstacking = "sideways"\n')
    r = cli("status")
    assert r.exit_code == 2 and "invalid stacking" in r.stderr


def test_rmb_is_recorded_as_cny_and_unit_base_1000(cli):
    ok(cli("account", "add", "d", "--provider", "manual", "--set", "unit_base=1000"))
    ok(
        cli(
            "esim",
            "add",
            "d",
            "--iccid",
            ICCID,
            "--data",
            "3GB",
            "--days",
            "7",
            "--price",
            "RMB 58",
            env=at(),
        )
    )
    e = status(cli)
    assert e["data_total_bytes"] == 3 * 1000**3
    assert orders(cli)[0]["price"] == {"amount": "58.00", "currency": "CNY"}
    assert "3 GB / 3 GB" in ok(cli("status", tty=True, env=at())).stdout


# -- JSON forms, remove, account test, migration ---------------------------------------------


def test_json_of_esim_add_and_reading(cli):
    ok(cli("account", "add", "jp", "--provider", "manual"))
    r = ok(
        cli(
            "esim",
            "add",
            "jp",
            "--iccid",
            ICCID,
            "--label",
            "Osaka",
            "--data",
            "3GB",
            "--days",
            "7",
            "--activated",
            iso(T0),
            "--json",
            env=at(),
        )
    )
    doc = r.json
    assert (doc["command"], doc["status"], doc["exit_code"]) == ("esim add", "success", 0)
    assert doc["data"]["order"] is None  # no price, no order number: nothing bought to record
    e = doc["data"]["esim"]
    assert (e["label"], e["state"], e["plan"]) == ("Osaka", "active", "3 GB · 7 days")
    assert set(e) >= {"account", "provider", "iccid", "data_used_bytes", "as_of", "attention"}
    r = ok(cli("esim", "reading", "Osaka", "100MB", "--json", env=at(30)))
    d = r.json["data"]
    assert d["reading"] == {
        "remaining_bytes": 100 * MB,
        "expires_at": None,
        "taken_at": iso(T0 + timedelta(minutes=30)),
        "total_bytes": None,
    }
    assert d["warnings"] == []
    assert d["esim"]["attention"] == ["low_data"]
    r = cli("esim", "reading", "nope", "1GB", "--json")
    assert r.exit_code == 2
    assert r.json["status"] == "error" and r.json["errors"][0]["code"] == "not_found"


def test_remove_forgets_the_eSIM_but_not_its_orders(card):
    assert card("esim", "remove", "Tokyo").exit_code == 2  # no terminal, no --yes
    ok(card("esim", "remove", "Tokyo", "--yes", env=at()))
    assert ok(card("status", "--json")).json["data"]["esims"] == []
    assert [o["id"] for o in orders(card)] == ["A-1000"]
    ok(card("esim", "add", "jp-card", "--iccid", ICCID, "--data", "1GB", "--days", "1", env=at()))


def test_account_test_and_list(card):
    r = ok(card("account", "test", "jp-card"))
    assert "1 eSIM(s) recorded by hand; renewal page: https://shop.example/jp/renew" in r.stdout
    r = ok(card("account", "list", "--json"))
    assert r.json["data"]["accounts"][0]["secrets"] == []


def test_an_old_ledger_gains_the_manual_tables(cli, home, monkeypatch):
    from esimctl import ledger

    path = home / "data" / "ledger.sqlite3"
    with monkeypatch.context() as m:
        m.setattr(ledger, "MIGRATIONS", ledger.MIGRATIONS[:1])
        ledger.Ledger(path).close()
    assert _migrations(path) == ["m001_initial"]
    ok(cli("account", "add", "jp", "--provider", "manual"))
    ok(cli("esim", "add", "jp", "--iccid", ICCID, "--data", "1GB", "--days", "1"))
    assert _migrations(path) == [name for name, _ in ledger.MIGRATIONS]
    assert "m002_manual" in _migrations(path)


def _migrations(path: Path) -> list[str]:
    db = sqlite3.connect(path)
    try:
        return [r[0] for r in db.execute("SELECT name FROM _migrations ORDER BY name")]
    finally:
        db.close()
