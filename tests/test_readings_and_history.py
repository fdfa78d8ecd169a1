"""Issue 10, items 5 and 6, through the CLI: readings are checked; history outlives accounts.

Unlikely values (a reading above the total or older than the latest, an end date in the past,
an activation in the future) are asked about on a terminal and refused in a pipe unless
``--force``; a wrong total is corrected with ``esim edit --total`` or ``esim reading --total``.
Orders of a removed account stay in ``history``, marked ``account_removed``.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

# The manual seller's test clock and helpers, shared with its own tests.
from test_manual import GB, ICCID, ICCID2, T0, at, iso, ok


def refused(r, *words: str):
    """Exit 2, one line on stderr naming the problem and --force."""
    assert r.exit_code == 2, r
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r
    for w in (*words, "--force"):
        assert w in lines[0], r
    return r


def add_account(cli, name: str = "jp-card"):
    ok(cli("account", "add", name, "--provider", "manual", env=at()))


def add_esim(cli, *args: str, account: str = "jp-card", iccid: str = ICCID, label="Tokyo"):
    return cli(
        "esim", "add", account, "--iccid", iccid, "--label", label, *args, env=at(), input="y\n"
    )


@pytest.fixture
def tokyo(cli):
    """An 11 GB package, 30 days, activated two days before T0."""
    add_account(cli)
    activated = iso(T0 - timedelta(days=2))
    ok(add_esim(cli, "--data", "11GB", "--days", "30", "--activated", activated, "--price", "8USD"))
    return cli


def esim(cli, minutes: float = 0) -> dict:
    r = ok(cli("status", "--json", env=at(minutes)))
    assert r.json["errors"] == []
    [e] = r.json["data"]["esims"]
    return e


def figures(cli, minutes: float = 0) -> tuple[int, int]:
    e = esim(cli, minutes)
    return e["data_total_bytes"], e["data_remaining_bytes"]


def reading(cli, minutes: float, *args: str, **kw):
    return cli("esim", "reading", "Tokyo", *args, env=at(minutes), **kw)


# -- a reading above the total ---------------------------------------------------------------


def test_a_reading_above_the_total_is_refused_in_a_pipe(tokyo):
    refused(reading(tokyo, 5, "99GB"), "99 GB left is more than the total of 11 GB")
    assert figures(tokyo, 6) == (11 * GB, 11 * GB)
    assert esim(tokyo, 6)["as_of"] == iso(T0)  # nothing recorded


def test_a_reading_above_the_total_asks_on_a_terminal(tokyo):
    r = reading(tokyo, 5, "99GB", tty=True, input="n\n")
    assert r.exit_code == 1, r
    assert "99 GB left is more than the total of 11 GB" in r.stderr and "[y/N]" in r.stderr
    assert figures(tokyo, 6) == (11 * GB, 11 * GB)
    ok(reading(tokyo, 7, "99GB", tty=True, input="y\n"))
    assert figures(tokyo, 8) == (99 * GB, 99 * GB)


def test_a_forced_reading_never_raises_the_total_for_good(tokyo):
    # The issue: 99 GB typed for 9.9 GB set the total to 99 GB for good.
    r = ok(reading(tokyo, 5, "99GB", "--force"))
    assert "esimctl esim edit Tokyo --total" in r.stdout
    assert figures(tokyo, 6) == (99 * GB, 99 * GB)  # never data left above the total
    ok(reading(tokyo, 10, "9.9GB"))
    assert figures(tokyo, 11) == (11 * GB, int(9.9 * GB))


def test_a_reading_that_shows_a_pending_top_up_is_not_above_the_total(tokyo):
    ok(reading(tokyo, 0, "0.5GB"))
    ok(tokyo("renew", "Tokyo", "--data", "3GB", "--days", "0", "--price", "5USD", env=at(10)))
    # 12 GB is above the package's 11 GB, but it shows the pending top-up: 14 GB in all.
    r = ok(reading(tokyo, 20, "12GB", "--json"))
    assert r.json["data"]["warnings"] == []
    assert len(r.json["data"]["applied"]) == 1
    assert figures(tokyo, 21) == (14 * GB, 12 * GB)
    refused(reading(tokyo, 30, "15GB"), "more than the total of 14 GB")


# -- correcting the total --------------------------------------------------------------------


def test_esim_edit_total_corrects_a_wrong_package(cli):
    add_account(cli)
    ok(add_esim(cli, "--data", "99GB", "--days", "30", "--activated", iso(T0)))
    ok(reading(cli, 5, "9GB"))
    assert figures(cli, 6) == (99 * GB, 9 * GB)
    r = ok(cli("esim", "edit", "Tokyo", "--total", "11GB", "--json", env=at(10)))
    assert r.json["data"]["esim"]["data_total_bytes"] == 11 * GB
    assert figures(cli, 11) == (11 * GB, 9 * GB)
    # It lasts: the next reading keeps the corrected total.
    ok(reading(cli, 20, "8GB"))
    assert figures(cli, 21) == (11 * GB, 8 * GB)


def test_esim_edit_total_is_the_total_with_the_top_ups_applied(tokyo):
    ok(tokyo("renew", "Tokyo", "--data", "3GB", "--days", "0", "--price", "5USD", env=at(1)))
    ok(tokyo("esim", "confirm", "Tokyo", env=at(2)))
    assert figures(tokyo, 3)[0] == 14 * GB
    ok(tokyo("esim", "edit", "Tokyo", "--total", "13GB", env=at(4)))
    assert figures(tokyo, 5) == (13 * GB, 13 * GB)
    r = tokyo("esim", "edit", "Tokyo", "--total", "2GB", env=at(6))
    assert r.exit_code == 2 and "the top-ups applied add 3 GB" in r.stderr, r


def test_esim_edit_total_below_the_latest_reading_is_refused(tokyo):
    ok(reading(tokyo, 5, "5GB"))
    r = tokyo("esim", "edit", "Tokyo", "--total", "4GB", "--force", env=at(6))
    assert r.exit_code == 2, r
    assert "shows 5 GB left" in r.stderr and "esim reading Tokyo SIZE --total 4GB" in r.stderr
    assert figures(tokyo, 7) == (11 * GB, 5 * GB)
    r = tokyo("esim", "edit", "Tokyo", env=at(6))
    assert r.exit_code == 2 and "nothing to change" in r.stderr


def test_reading_total_corrects_the_total_with_the_reading(tokyo):
    r = ok(reading(tokyo, 5, "20GB", "--total", "25GB", "--json"))
    assert r.json["data"]["reading"]["total_bytes"] == 25 * GB
    assert figures(tokyo, 6) == (25 * GB, 20 * GB)
    ok(reading(tokyo, 10, "19GB"))
    assert figures(tokyo, 11) == (25 * GB, 19 * GB)
    r = reading(tokyo, 20, "26GB", "--total", "25GB", "--force")
    assert r.exit_code == 2 and "more than --total 25 GB" in r.stderr, r


def test_reading_total_with_a_top_up_it_shows_keeps_the_top_up_on_top(tokyo):
    ok(reading(tokyo, 0, "0.5GB"))
    ok(tokyo("renew", "Tokyo", "--data", "3GB", "--days", "0", "--price", "5USD", env=at(10)))
    r = ok(reading(tokyo, 20, "3.2GB", "--total", "6GB", "--json"))
    assert len(r.json["data"]["applied"]) == 1
    assert figures(tokyo, 21) == (6 * GB, int(3.2 * GB))


# -- a reading older than the latest -----------------------------------------------------------


def test_a_reading_older_than_the_latest_is_named_not_ignored(tokyo):
    ok(reading(tokyo, 30, "8GB"))
    earlier = ("7GB", "--at", iso(T0 + timedelta(minutes=10)))
    refused(reading(tokyo, 40, *earlier), "before the latest reading")
    r = reading(tokyo, 40, *earlier, tty=True, input="\n")
    assert r.exit_code == 1 and "before the latest reading" in r.stderr, r
    r = ok(reading(tokyo, 40, *earlier, "--force", "--json"))
    assert "before the latest reading" in r.json["data"]["warnings"][0]
    e = esim(tokyo, 41)
    assert (e["data_remaining_bytes"], e["as_of"]) == (8 * GB, iso(T0 + timedelta(minutes=30)))
    r = ok(reading(tokyo, 42, *earlier, "--force"))
    assert "figures stay the latest reading's" in r.stdout


# -- dates -------------------------------------------------------------------------------------


def test_an_end_date_in_the_past_is_refused_in_a_pipe_and_asked_on_a_terminal(tokyo):
    past = "2020-11-27"  # six years before the test clock
    refused(reading(tokyo, 5, "5GB", "--until", past), "the end date 2020-11-27", "in the past")
    assert esim(tokyo, 6)["as_of"] == iso(T0)
    ok(reading(tokyo, 7, "5GB", "--until", past, tty=True, input="y\n"))
    assert esim(tokyo, 8)["state"] == "expired"


def test_esim_add_with_an_end_in_the_past_needs_force(cli):
    add_account(cli)
    args = ("esim", "add", "jp-card", "--iccid", ICCID, "--data", "3GB", "--until", "2020-01-31")
    refused(cli(*args, env=at()), "in the past")
    # --days from an activation long ago ends in the past too.
    days = ("esim", "add", "jp-card", "--iccid", ICCID, "--data", "3GB", "--days", "7")
    refused(cli(*days, "--activated", "2026-01-01", env=at()), "in the past")
    assert ok(cli("status", "--json", env=at())).json["data"]["esims"] == []
    ok(cli(*args, "--force", env=at()))
    assert esim(cli)["state"] == "expired"


def test_an_activation_date_in_the_future_is_asked_about(cli):
    add_account(cli)
    args = ("esim", "add", "jp-card", "--iccid", ICCID, "--data", "3GB", "--days", "7")
    future = ("--activated", "2026-12-25")
    refused(cli(*args, *future, env=at()), "the activation date", "in the future")
    r = cli(*args, *future, env=at(), tty=True, input="no\n")
    assert r.exit_code == 1 and "in the future" in r.stderr and "[y/N]" in r.stderr, r
    assert ok(cli("status", "--json", env=at())).json["data"]["esims"] == []
    ok(cli(*args, *future, env=at(), tty=True, input="y\n"))
    assert esim(cli)["state"] == "not_active"


def test_esim_edit_activated_is_checked_and_takes_effect(tokyo):
    refused(tokyo("esim", "edit", "Tokyo", "--activated", "2027-01-01", env=at()), "in the future")
    ok(tokyo("esim", "edit", "Tokyo", "--activated", iso(T0 - timedelta(days=10)), env=at()))
    assert esim(tokyo)["expires_at"] == iso(T0 + timedelta(days=20))


def test_several_problems_are_named_in_one_line(tokyo):
    r = refused(reading(tokyo, 5, "50GB", "--until", "2020-01-01"), "more than the total")
    assert "in the past" in r.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("500TB",), "more than any eSIM holds"),
        (("1GB", "--until", "3000-01-01"), "invalid date"),
        (("1GB", "--at", "1900-01-01"), "invalid date"),
        (("1GB", "--total", "0"), "invalid total"),
    ],
)
def test_values_no_seller_means_are_invalid_even_with_force(tokyo, args, says):
    r = reading(tokyo, 5, *args, "--force")
    assert r.exit_code == 2 and says in r.stderr, r
    assert esim(tokyo, 6)["as_of"] == iso(T0)


def test_force_is_in_the_help(cli):
    for cmd in ("reading", "add", "edit"):
        r = ok(cli("esim", cmd, "--help"))
        assert "--force" in r.stdout, cmd
    assert "above the total" in " ".join(ok(cli("esim", "reading", "--help")).stdout.split())
    assert "--total" in ok(cli("esim", "edit", "--help")).stdout


# -- history outlives accounts -----------------------------------------------------------------


@pytest.fixture
def two_accounts(tokyo):
    """jp-card (Tokyo, one 8 USD order) and kr-card (Seoul, one 9 USD order), at T0."""
    add_account(tokyo, "kr-card")
    seoul = ("--data", "5GB", "--days", "7", "--price", "9USD", "--order", "K-1")
    ok(add_esim(tokyo, *seoul, account="kr-card", iccid=ICCID2, label="Seoul"))
    return tokyo


def history(cli, *args: str):
    return cli("history", "--local", *args, env=at(60))


def test_account_remove_keeps_its_orders_in_history(two_accounts):
    cli = two_accounts
    r = ok(cli("account", "remove", "jp-card", "--yes", "--json", env=at(30)))
    assert r.json["data"]["orders_kept"] == 1
    r = ok(cli("account", "remove", "kr-card", "--yes", env=at(31)))
    assert "its 1 order(s) stay in the history: esimctl history --account kr-card" in r.stdout
    h = ok(history(cli, "--json")).json["data"]
    assert [(o["account"], o["account_removed"]) for o in h["orders"]] == [
        ("kr-card", True),
        ("jp-card", True),
    ]
    assert h["totals"] == [{"amount": "17.00", "currency": "USD"}]


def test_history_marks_orders_of_a_removed_account(two_accounts):
    cli = two_accounts
    ok(cli("account", "remove", "jp-card", "--yes", env=at(30)))
    h = ok(history(cli, "--json")).json["data"]["orders"]
    assert {o["account"]: o["account_removed"] for o in h} == {"jp-card": True, "kr-card": False}
    jsonl = ok(history(cli, "--jsonl")).stdout.splitlines()
    assert len(jsonl) == 2 and all('"account_removed"' in line for line in jsonl)
    table = re.sub(
        r"\x1b\[[0-9;]*m", "", ok(cli("history", "--local", tty=True, env=at(60))).stdout
    )
    assert "jp-card (removed)" in table and "kr-card (removed)" not in table
    assert "from removed account(s) jp-card" in table
    # A pipe keeps its columns: the account's name alone.
    rows = [line.split("\t") for line in ok(history(cli)).stdout.splitlines()]
    assert sorted(row[1] for row in rows) == ["jp-card", "kr-card"]
    assert all(len(row) == 9 for row in rows)  # the eight of before, and the label last


def test_history_account_finds_a_removed_account(two_accounts):
    cli = two_accounts
    ok(cli("account", "remove", "jp-card", "--yes", env=at(30)))
    h = ok(history(cli, "--account", "jp-card", "--json")).json["data"]["orders"]
    assert [(o["account"], o["account_removed"]) for o in h] == [("jp-card", True)]
    # Without --local too: a removed account has no provider to ask.
    h = ok(cli("history", "--account", "jp-card", "--json", env=at(60))).json["data"]["orders"]
    assert len(h) == 1
    assert ok(history(cli, "3444", "--json")).json["data"]["orders"][0]["account"] == "jp-card"
    r = history(cli, "--account", "ghost")
    assert r.exit_code == 2 and "unknown account 'ghost'" in r.stderr, r


def test_a_re_added_account_is_not_marked_removed(two_accounts):
    cli = two_accounts
    ok(cli("account", "remove", "jp-card", "--yes", env=at(30)))
    add_account(cli, "jp-card")
    h = ok(history(cli, "--account", "jp-card", "--json")).json["data"]["orders"]
    assert [o["account_removed"] for o in h] == [False]
