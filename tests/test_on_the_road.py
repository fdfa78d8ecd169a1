"""On the road (issue 10): ``-q`` prints only what needs the user, a pending top-up is never
an invitation to buy again, and provider or user text is never read as Rich markup."""

from __future__ import annotations

import pytest

from test_manual import ICCID, at, card, ok  # noqa: F401  (card is a fixture)

CARD_RULE = """
[accounts.jp-card]
provider = "manual"
seller = "Sakura Travel"
renew_url = "https://shop.example/jp/renew"
support = "wechat: sakura-help"

[esims."{iccid}"]
label = "Tokyo"

[renewal.esims.Tokyo]
data_below = "500MB"
min_data = "1GB"
"""


# -- -q: only what needs you ---------------------------------------------------------------------


def test_quiet_status_check_prints_only_the_esims_that_need_attention(cli):
    r = cli("--demo", "-q", "status", "--check")
    assert r.exit_code == 8, r
    lines = r.stdout.splitlines()
    assert len(lines) == 1, r  # Tokyo is low and expiring; Seoul's expiry is not news
    assert lines[0].startswith("Tokyo: low data, expiring soon, runs out soon (")
    assert "307 MB / 3 GB left" in lines[0]
    for calm in ("Europe", "USA", "Bangkok", "LABEL"):
        assert calm not in r.stdout


def test_quiet_status_prints_nothing_when_nothing_needs_you(cli):
    r = cli("--demo", "-q", "status", "--check", "Europe", "Bangkok")
    assert (r.exit_code, r.stdout, r.stderr) == (0, "", "")


@pytest.mark.parametrize(
    "args",
    [
        ("plans", "Tokyo"),
        ("plans", "--country", "JP"),
        ("history",),
        ("account", "list"),
        ("renew", "Tokyo", "--plan", "jp-1gb-3d", "--yes"),
    ],
)
def test_quiet_commands_print_nothing_when_all_went_well(cli, args):
    r = cli("--demo", "-q", *args)
    assert (r.exit_code, r.stdout, r.stderr) == (0, "", ""), r


def test_quiet_json_is_still_json(cli):
    r = cli("--demo", "-q", "status", "--json")
    assert r.json["data"]["esims"]


def test_quiet_auto_names_an_esim_only_its_user_can_renew(card, configure):
    cli = card
    configure(CARD_RULE.format(iccid=ICCID))
    ok(cli("esim", "reading", "Tokyo", "100MB", env=at(5)))
    r = cli("-q", "renew", "--auto", "--yes", env=at(10))
    assert r.exit_code == 0, r
    (line,) = r.stdout.splitlines()
    assert "Tokyo" in line and "100 MB" in line
    assert "renew it by hand: esimctl renew Tokyo" in line


def test_quiet_auto_names_a_top_up_overdue(card, configure):
    cli = card
    configure(CARD_RULE.format(iccid=ICCID))
    ok(
        cli(
            "renew",
            "Tokyo",
            "--no-browser",
            *("--data", "3GB", "--days", "7", "--price", "58CNY", "--order", "A-2000"),
            env=at(0),
        )
    )
    early = cli("-q", "renew", "--auto", "--yes", env=at(10))
    assert (early.exit_code, early.stdout) == (0, ""), early
    late = cli("-q", "renew", "--auto", "--yes", env=at(45))
    assert late.exit_code == 0, late
    (line,) = late.stdout.splitlines()
    assert "A-2000" in line and "pending for 45 m" in line
    assert "ask the seller (wechat: sakura-help)" in line


# -- no advice to buy twice ----------------------------------------------------------------------


def test_a_pending_top_up_says_since_when_and_never_renew(card):
    cli = card
    ok(cli("esim", "reading", "Tokyo", "100MB", env=at(5)))
    ok(
        cli(
            "renew",
            "Tokyo",
            "--no-browser",
            *("--data", "3GB", "--days", "7", "--price", "58CNY"),
            env=at(10),
        )
    )
    table = cli("status", env=at(22), tty=True)
    assert "top-up pending for 12 m" in table.stdout, table
    assert "renew" not in table.stdout.lower()
    quiet = cli("-q", "status", env=at(22))
    assert "top-up pending for 12 m" in quiet.stdout
    assert "renew" not in quiet.stdout.lower()


# -- provider text is text -----------------------------------------------------------------------

MARKUP = "[bold]Japan [eSIM] 3GB[/bold]"


def test_markup_in_user_and_provider_text_is_printed_as_it_is(cli):
    ok(
        cli(
            "account",
            "add",
            "jp",
            "--provider",
            "manual",
            "--seller",
            "[red]Sakura[/red]",
            "--support",
            "[link=x]help[/link]",
        )
    )
    ok(
        cli(
            "esim",
            "add",
            "jp",
            "--iccid",
            ICCID,
            "--label",
            "Tokyo",
            "--plan",
            MARKUP,
            "--data",
            "3GB",
            "--days",
            "7",
            "--price",
            "58CNY",
        )
    )
    status = cli("status", tty=True)
    assert MARKUP in status.stdout, status
    bought = ok(
        cli(
            "renew",
            "Tokyo",
            "--no-browser",
            *("--data", "3GB", "--days", "7", "--price", "58CNY", "--order", "[i]A-1[/i]"),
            tty=True,
        )
    )
    assert "[i]A-1[/i]" in bought.stdout and "[link=x]help[/link]" in bought.stdout, bought
    history = cli("history", tty=True)
    assert "[i]A-1[/i]" in history.stdout, history
    assert "\\[" not in status.stdout + bought.stdout + history.stdout


# -- interrupting never hides money ---------------------------------------------------------------
#
# Real processes against the shop seller on a socket: a signal at each point of a purchase.

import json  # noqa: E402
import signal  # noqa: E402
import sqlite3  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from fakes.shop import GB, FakeShop  # noqa: E402
from test_money_pipeline import PLAN, SHOP_SIM, settle, start, write_config  # noqa: E402


@pytest.fixture
def shop(home: Path):
    fake = FakeShop()
    fake.seed(SHOP_SIM, "Lisbon", total=3 * GB, remaining=GB // 5, days_left=4)
    with fake:
        write_config(home, fake)
        yield fake


def _until(condition, what: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _renew(home: Path, tmp_path: Path, timeout: str = "0m"):
    args = ("renew", "Lisbon", "--plan", PLAN, "--yes", "--json", "--timeout", timeout)
    return start(home, tmp_path, *args)


def _orders(home: Path) -> list[dict[str, str]]:
    with sqlite3.connect(home / "data" / "ledger.sqlite3") as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM orders")]


def _paths(fake: FakeShop) -> list[str]:
    return [r.path for r in fake.requests]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_before_the_request_nothing_was_bought(home, tmp_path, shop, sig):
    shop.hang_topups = 4.0  # the top-up list: before anything is sent
    proc = _renew(home, tmp_path)
    _until(lambda: any(p.endswith("/topups") for p in _paths(shop)), "the plan list request")
    proc.send_signal(sig)
    ((code, out, err),) = settle(proc)
    assert code == 130, (code, out, err)
    assert "nothing" in err and "Traceback" not in err
    assert shop.orders == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_during_the_request_reports_the_order_as_placed(home, tmp_path, shop, sig):
    """The seller commits, then holds the answer 3 s; the signal comes in between. The
    answer is still awaited and recorded: the order is reported, never hidden."""
    shop.hang_after_commit = 3.0
    proc = _renew(home, tmp_path)
    _until(lambda: len(shop.orders) == 1, "the seller to commit the order")
    proc.send_signal(sig)
    ((code, out, err),) = settle(proc)
    assert code == 130, (code, out, err)
    doc = json.loads(out)
    order = doc["data"]["order"]
    assert order["id"] == shop.orders[0]["id"]
    assert order["price"] == {"amount": "4.00", "currency": "USD"}
    assert order["iccid"] == SHOP_SIM
    assert doc["errors"][0]["code"] == "interrupted"
    assert shop.orders[0]["id"] in err and "4.00 USD" in err
    (row,) = _orders(home)
    assert row["state"] == "pending" and row["provider_order_id"] == shop.orders[0]["id"]


def test_interrupted_while_waiting_reports_the_order(home, tmp_path, shop):
    shop.apply_at_once = False
    proc = _renew(home, tmp_path, timeout="10m")
    _until(lambda: len(shop.orders) == 1, "the purchase")
    _until(lambda: _paths(shop).count("/esims") >= 3, "the first check of the top-up")
    proc.send_signal(signal.SIGINT)
    ((code, out, err),) = settle(proc)
    assert code == 130, (code, out, err)
    doc = json.loads(out)
    assert doc["data"]["order"]["id"] == shop.orders[0]["id"]
    assert doc["data"]["applied"] is False
    assert "interrupted while waiting" in err and shop.orders[0]["id"] in err
    assert "Lisbon" in err and "4.00 USD" in err


def test_auto_interrupted_during_the_request_reports_the_order(home, tmp_path, shop):
    write_config(
        home,
        shop,
        """
[renewal.esims.Lisbon]
data_below = "10GB"
plan = "s-1gb-3d"
""",
    )
    shop.hang_after_commit = 3.0
    proc = start(home, tmp_path, "renew", "--auto", "--yes", "--json", "--timeout", "0m")
    _until(lambda: len(shop.orders) == 1, "the seller to commit the order")
    proc.send_signal(signal.SIGTERM)
    ((code, out, err),) = settle(proc)
    assert code == 130, (code, out, err)
    doc = json.loads(out)
    (order,) = [o for o in doc["data"]["orders"] if o["event"] == "bought"]
    assert order["id"] == shop.orders[0]["id"]
    assert shop.orders[0]["id"] in err
