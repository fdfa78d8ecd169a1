"""`plans`, `renew` and `history` against the demo: buying changes what status shows."""

import pytest

ORDER_KEYS = {
    "id",
    "account",
    "provider",
    "iccid",
    "plan_id",
    "plan",
    "price",
    "created_at",
    "state",
    "source",
}


def _tokyo(cli):
    return next(
        e for e in cli("--demo", "status", "--json").json["data"]["esims"] if e["label"] == "Tokyo"
    )


def test_plans_for_an_esim_are_its_topups(cli):
    r = cli("--demo", "plans", "Tokyo", "--json")
    assert r.exit_code == 0, r
    plans = r.json["data"]["plans"]
    assert plans and all(p["kind"] == "topup" and "JP" in p["countries"] for p in plans)
    p = next(p for p in plans if p["id"] == "jp-3gb-7d")
    assert p["price"] == {"amount": "9.00", "currency": "USD"}
    assert p["data_bytes"] == 3 * 1024**3 and p["validity_days"] == 7
    assert {
        "id",
        "account",
        "provider",
        "name",
        "kind",
        "data_bytes",
        "unlimited",
        "validity_days",
        "price",
        "countries",
    } <= set(p)
    # more than one currency, and a zero-decimal one shown as such
    assert {"USD", "JPY"} <= {p["price"]["currency"] for p in plans}
    assert next(p for p in plans if p["price"]["currency"] == "JPY")["price"]["amount"] == "1480"


def test_plans_for_a_country_include_new_esims(cli):
    plans = cli("--demo", "plans", "--country", "jp", "--json").json["data"]["plans"]
    assert {"new", "topup"} == {p["kind"] for p in plans}


def test_plans_filters_and_sorts(cli):
    plans = cli("--demo", "plans", "Tokyo", "--min-days", "30", "--sort", "data", "--json").json[
        "data"
    ]["plans"]
    assert plans and all(p["validity_days"] >= 30 for p in plans)
    sizes = [p["data_bytes"] for p in plans]
    assert sizes == sorted(sizes, reverse=True)
    plans = cli("--demo", "plans", "Tokyo", "--min-data", "10GB", "--json").json["data"]["plans"]
    assert plans and all(p["unlimited"] or p["data_bytes"] >= 10 * 1024**3 for p in plans)
    usd = [
        p
        for p in cli("--demo", "plans", "Tokyo", "--json").json["data"]["plans"]
        if p["price"]["currency"] == "USD"
    ]
    amounts = [float(p["price"]["amount"]) for p in usd]
    assert amounts == sorted(amounts)


def test_plans_table_shows_price_per_gb_and_day(cli):
    r = cli("--demo", "plans", "Tokyo", tty=True, env={"NO_COLOR": "1"})
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("jp-10gb-30d"))
    assert "22.00 USD" in line and "2.20 USD" in line and "0.73 USD" in line
    # The same for every top-up: a footnote, not a column repeated on every row.
    assert "adds to current" not in line
    assert r.stdout.splitlines()[-1] == "all of these: adds to current"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["plans"], "name an eSIM, or pass --country"),
        (["plans", "Tokyo", "--sort", "cheapest"], "invalid --sort"),
        (["plans", "--country", "Japan"], "invalid country"),
        (["plans", "Tokyo", "--min-data", "lots"], "invalid size"),
        (["renew", "Tokyo", "--plan", "nope", "--yes"], "unknown plan 'nope'"),
        (["renew", "Tokyo", "--plan", "jp-1gb-3d", "--max-price", "cheap"], "invalid price"),
        (
            ["renew", "Tokyo", "--plan", "jp-1gb-3d", "--yes", "--timeout", "soon"],
            "invalid duration",
        ),
        (["renew", "Tokyo"], "name the plan"),
        (["status", "--bogus"], "No such option"),
    ],
)
def test_bad_input_exits_2_with_one_line(cli, args, message):
    r = cli("--demo", *args)
    assert r.exit_code == 2, r
    assert message in r.stderr
    assert "Traceback" not in r.stderr
    assert len([ln for ln in r.stderr.splitlines() if ln.startswith("error:")]) == 1


def test_renew_dry_run_buys_nothing(cli):
    before = _tokyo(cli)
    r = cli("--demo", "renew", "Tokyo", "--plan", "jp-3gb-7d", "--dry-run", "--json")
    assert r.exit_code == 0, r
    assert r.json["data"]["order"]["state"] == "dry_run"
    assert r.json["data"]["applied"] is False
    after = _tokyo(cli)
    # as_of and the forecast move with the clock; every figure stays.
    assert after == {**before, "as_of": after["as_of"], "forecast": after["forecast"]}
    assert cli("--demo", "history", "--local", "--json").json["data"]["orders"] == []


def test_renew_without_consent_and_no_terminal_exits_2(cli):
    r = cli("--demo", "renew", "Tokyo", "--plan", "jp-3gb-7d")
    assert r.exit_code == 2 and "--yes" in r.stderr
    assert cli("--demo", "history", "--local", "--json").json["data"]["orders"] == []


def test_renew_prompt_no_buys_nothing(cli):
    r = cli("--demo", "renew", "Tokyo", "--plan", "jp-3gb-7d", tty=True, input="n\n")
    assert r.exit_code == 1
    assert "Buy Japan 3 GB · 7 days for 9.00 USD" in r.stderr
    assert cli("--demo", "history", "--local", "--json").json["data"]["orders"] == []


def test_renew_prompt_yes_buys(cli):
    r = cli(
        "--demo",
        "renew",
        "Tokyo",
        "--plan",
        "jp-3gb-7d",
        tty=True,
        input="y\n",
        env={"NO_COLOR": "1"},
    )
    assert r.exit_code == 0, r
    assert "applied" in r.stdout
    assert len(cli("--demo", "history", "--local", "--json").json["data"]["orders"]) == 1


def test_max_price_refuses_with_exit_5(cli):
    r = cli("--demo", "renew", "Tokyo", "--plan", "jp-3gb-7d", "--yes", "--max-price", "5USD")
    assert r.exit_code == 5 and "--max-price" in r.stderr
    r = cli("--demo", "renew", "Tokyo", "--plan", "jp-daily-1gb", "--yes", "--max-price", "50USD")
    assert r.exit_code == 5 and "JPY" in r.stderr
    assert cli("--demo", "history", "--local", "--json").json["data"]["orders"] == []


def test_renew_stacks_and_shows_in_status_and_history(cli):
    before = _tokyo(cli)
    r = cli(
        "--demo", "renew", "0018", "--plan", "jp-3gb-7d", "--yes", "--max-price", "9USD", "--json"
    )
    assert r.exit_code == 0, r
    order = r.json["data"]["order"]
    assert r.json["data"]["applied"] is True
    assert set(order) >= ORDER_KEYS
    assert order["state"] == "completed" and order["source"] == "local"
    assert order["price"] == {"amount": "9.00", "currency": "USD"}
    after = _tokyo(cli)
    assert after["data_remaining_bytes"] == before["data_remaining_bytes"] + 3 * 1024**3
    assert after["data_total_bytes"] == before["data_total_bytes"] + 3 * 1024**3
    assert after["expires_at"] > before["expires_at"]
    assert "low_data" not in after["attention"]
    hist = cli("--demo", "history", "--json").json["data"]
    assert hist["orders"][0]["id"] == order["id"]
    assert sum(1 for o in hist["orders"] if o["id"] == order["id"]) == 1  # merged, not twice
    assert {"amount": "18.00", "currency": "USD"} in hist["totals"]


def test_pending_topup_is_flagged_then_settles(cli):
    env = {"ESIMCTL_DEMO_APPLY_DELAY": "3600"}
    r = cli(
        "--demo",
        "renew",
        "Tokyo",
        "--plan",
        "jp-1gb-3d",
        "--yes",
        "--timeout",
        "0m",
        "--json",
        env=env,
    )
    assert r.exit_code == 0, r
    assert r.json["data"]["applied"] is False
    assert r.json["data"]["order"]["state"] == "pending"
    tokyo = _tokyo(cli)
    assert "topup_pending" in tokyo["attention"]
    assert cli("--demo", "status", "--check").exit_code == 8


def test_history_filters_limit_and_jsonl(cli):
    cli("--demo", "renew", "Bangkok", "--plan", "th-5gb-8d", "--yes")
    r = cli("--demo", "history", "Bangkok", "--json")
    assert r.exit_code == 0
    orders = r.json["data"]["orders"]
    assert orders and all(o["iccid"] == "8966000000000000042" for o in orders)
    assert [o["created_at"] for o in orders] == sorted(
        (o["created_at"] for o in orders), reverse=True
    )
    assert len(cli("--demo", "history", "--limit", "1", "--json").json["data"]["orders"]) == 1
    recent = cli("--demo", "history", "--since", "1d", "--json").json["data"]["orders"]
    assert len(recent) == 1 and recent[0]["plan_id"] == "th-5gb-8d"
    lines = cli("--demo", "history", "--jsonl").stdout.splitlines()
    assert len(lines) == 3
    import json

    assert all(json.loads(ln)["schema_version"] == 1 for ln in lines)
    assert cli("--demo", "history", "--since", "last week").exit_code == 2


def test_history_table_on_a_terminal_has_totals(cli):
    cli("--demo", "renew", "Tokyo", "--plan", "jp-1gb-3d", "--yes")
    r = cli("--demo", "history", tty=True, env={"NO_COLOR": "1"})
    assert r.exit_code == 0, r
    assert "DATE" in r.stdout and "PLAN" in r.stdout and "STATE" in r.stdout
    assert "Japan 1 GB · 3 days" in r.stdout and "completed" in r.stdout
    total = next(ln for ln in r.stdout.splitlines() if ln.startswith("total:"))
    assert "13.50 USD" in total and "359.00 CNY" in total
