"""One purchase per need, through real processes killed at every step of a purchase.

Each test runs ``python -m esimctl renew --auto`` in a subprocess with its own
ESIMCTL_HOME, SIGKILLs it at one step of a purchase, runs it again, and counts the orders
on the provider's side: exactly one every time. The kill points:

* ``before_request``: the intent is in the ledger, nothing was sent;
* committed, no answer yet: the provider has the order, the client has not heard
  (the fake shop holds the answer back and the test kills the client meanwhile);
* ``after_answer``: the client has the answer, the ledger does not;
* ``after_record``: the ledger has it as pending, nothing verified.

``ESIMCTL_TEST_KILL_AT`` is purchase.py's test hook (inert unless set).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from fakes.shop import API_KEY, GB, FakeShop, install_plugin
from launcher import ESIMCTL

TESTS = Path(__file__).resolve().parent
TOKYO = "8981100000000000018"
SHOP_SIM = "8999000000000000012"
PENDING_FOREVER = {"ESIMCTL_DEMO_APPLY_DELAY": "3600"}

DEMO_RULES = """
[renewal.esims.Tokyo]
data_below = "500MB"
plan = "jp-1gb-3d"
"""


def _environ(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESIMCTL_")}
    env.update(
        {"ESIMCTL_HOME": str(home), "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"}
    )
    env.update(extra or {})
    return env


def esimctl(
    home: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ESIMCTL, *args],
        env=_environ(home, env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


def ledger_rows(db: Path) -> list[dict[str, str]]:
    with sqlite3.connect(db) as con:
        con.row_factory = sqlite3.Row
        return [dict(r) for r in con.execute("SELECT * FROM orders ORDER BY created_at, rowid")]


# -- the demo provider ------------------------------------------------------------------------


@pytest.fixture
def demo(home: Path) -> Path:
    profile = home / "cache" / "demo-profile"
    profile.mkdir(parents=True)
    (profile / "config.toml").write_text(DEMO_RULES, encoding="utf-8")
    return profile


def demo_purchases(profile: Path) -> list[dict[str, str]]:
    """Orders the demo seller holds that esimctl sent (the seeded history has no reference)."""
    state = json.loads((profile / "state" / "accounts" / "demo" / "demo-state.json").read_text())
    return [o for o in state["orders"] if o.get("reference")]


@pytest.mark.parametrize("step", ["before_request", "after_answer", "after_record"])
def test_demo_killed_at_each_step_buys_exactly_once(home, demo, step):
    auto = ("--demo", "renew", "--auto", "--yes", "--timeout", "0m")
    killed = esimctl(home, *auto, env={**PENDING_FOREVER, "ESIMCTL_TEST_KILL_AT": step})
    assert killed.returncode == -signal.SIGKILL, killed
    rows = ledger_rows(demo / "data" / "ledger.sqlite3")
    assert len(rows) == 1
    assert rows[0]["state"] == ("pending" if step == "after_record" else "intent")
    assert len(demo_purchases(demo)) == (0 if step == "before_request" else 1)

    again = esimctl(home, *auto, env=PENDING_FOREVER)
    assert again.returncode == 0, again
    bought = demo_purchases(demo)
    assert len(bought) == 1
    rows = ledger_rows(demo / "data" / "ledger.sqlite3")
    live = [r for r in rows if r["state"] in ("pending", "completed", "intent")]
    assert len(live) == 1 and live[0]["state"] == "pending"
    assert live[0]["reference"] == bought[0]["reference"]
    assert live[0]["provider_order_id"] == bought[0]["id"]
    if step == "before_request":  # the lost intent is known not to have been made
        assert [r["state"] for r in rows] == ["failed", "pending"]

    # The top-up is still pending: a third run buys nothing and says so.
    third = esimctl(home, *auto, env=PENDING_FOREVER)
    assert third.returncode == 0, third
    assert "pending" in third.stdout and "not bought again" in third.stdout
    assert len(demo_purchases(demo)) == 1


def test_two_runs_started_together_buy_once(home, demo):
    args = [
        *ESIMCTL,
        "--demo",
        "renew",
        "--auto",
        "--yes",
        "--timeout",
        "0m",
    ]
    env = _environ(home, PENDING_FOREVER)
    # The first run makes the profile; the race is between the two that follow.
    esimctl(home, "--demo", "status")
    procs = [
        subprocess.Popen(
            args,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes in ([0, 0], [0, 75]), (codes, outs)
    if codes == [0, 75]:
        loser = outs[[p.returncode for p in procs].index(75)]
        assert "another esimctl renewal is running" in loser[1]
    assert len(demo_purchases(demo)) == 1


# -- a seller API on a real socket, loaded as a plugin -----------------------------------------


@pytest.fixture
def shop(home: Path, tmp_path: Path):
    fake = FakeShop()
    fake.seed(SHOP_SIM, "Lisbon", total=3 * GB, remaining=GB // 5, days_left=4)
    with fake:
        home.mkdir(parents=True, exist_ok=True)
        (home / "config.toml").write_text(
            f"""
[accounts.shop]
provider = "testshop"
base_url = "{fake.url}"

[renewal.esims.Lisbon]
data_below = "10GB"
plan = "s-1gb-3d"
""",
            encoding="utf-8",
        )
        yield fake


def _shop_env(tmp_path: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    plugins = install_plugin(tmp_path / "plugins")
    return {
        "PYTHONPATH": os.pathsep.join([str(plugins), str(TESTS)]),
        "ESIMCTL_SHOP_API_KEY": API_KEY,
        **(extra or {}),
    }


def _wait_for(condition, what: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.mark.parametrize("step", ["before_request", "committed_no_answer", "after_answer"])
def test_shop_killed_at_each_step_buys_exactly_once(home, tmp_path, shop, step):
    """The top-up stays pending and data_below = 10GB keeps holding: only the journal and
    the pending order stand between a rerun and a second purchase."""
    shop.apply_at_once = False
    auto = ("renew", "--auto", "--yes", "--timeout", "0m")
    if step == "committed_no_answer":
        shop.hang_after_commit = 60.0
        proc = subprocess.Popen(
            [*ESIMCTL, *auto],
            env=_environ(home, _shop_env(tmp_path)),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        _wait_for(lambda: len(shop.orders) == 1, "the shop to commit the order")
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        shop.hang_after_commit = 0.0
    else:
        killed = esimctl(home, *auto, env=_shop_env(tmp_path, {"ESIMCTL_TEST_KILL_AT": step}))
        assert killed.returncode == -signal.SIGKILL, killed
    assert len(shop.orders) == (0 if step == "before_request" else 1)
    assert [r["state"] for r in ledger_rows(home / "data" / "ledger.sqlite3")] == ["intent"]

    again = esimctl(home, *auto, env=_shop_env(tmp_path))
    assert again.returncode == 0, again
    assert len(shop.orders) == 1
    live = [r for r in ledger_rows(home / "data" / "ledger.sqlite3") if r["state"] != "failed"]
    assert len(live) == 1 and live[0]["state"] == "pending"
    assert live[0]["provider_order_id"] == shop.orders[0]["id"]
    assert live[0]["reference"] == shop.orders[0]["reference"]

    third = esimctl(home, *auto, env=_shop_env(tmp_path))
    assert third.returncode == 0, third
    assert "not bought again" in third.stdout
    assert len(shop.orders) == 1

    # The shop applies it: the next run says so. The rule still holds (1.2 GB < 10 GB) and
    # this is a new need, but max_per_day = 1 refuses a second purchase today.
    shop.apply_pending()
    fourth = esimctl(home, *auto, env=_shop_env(tmp_path))
    assert "applied" in fourth.stdout and shop.orders[0]["id"] in fourth.stdout
    assert fourth.returncode == 5, fourth
    assert "max_per_day" in fourth.stderr
    assert len(shop.orders) == 1


def test_shop_answer_lost_after_commit_is_found_by_reference(home, tmp_path, shop):
    shop.commit_then_drop_next()
    r = esimctl(
        home, "renew", "--auto", "--yes", "--timeout", "0m", "--json", env=_shop_env(tmp_path)
    )
    assert r.returncode == 0, r
    assert len(shop.orders) == 1
    doc = json.loads(r.stdout)
    (order,) = doc["data"]["orders"]
    assert order["event"] == "bought" and order["id"] == shop.orders[0]["id"]
    assert order["applied"] is True
