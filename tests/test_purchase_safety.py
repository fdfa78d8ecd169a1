"""Regressions of the purchase path found in review: each one bought twice, or wrongly.

Against the Airalo fake (tests/test_provider_airalo.py's fixtures) and the demo.
"""

from __future__ import annotations

from typing import Any

import pytest

from fakes.airalo import FakeAiralo
from fakes.base import Reply
from test_provider_airalo import fake, run, setup  # noqa: F401 - fixtures

PLAN = "elan-7days-1gb-topup"


def _replace_topup_handler(fake: FakeAiralo, handler: Any) -> None:
    for i, (method, rx, _) in enumerate(fake.routes):
        if method == "POST" and rx.pattern.endswith("topups$"):
            fake.routes[i] = (method, rx, handler)


def test_5xx_after_the_provider_committed_is_never_bought_again(fake, setup, run):
    iccid = fake.add_sim("elan-7days-1gb", remaining_mb=100).iccid
    committed = fake.buy_topup

    def commit_then_502(req):
        committed(req)
        return Reply(502, {"message": "Bad Gateway"})

    _replace_topup_handler(fake, commit_then_502)
    fake.arm("GET", "/v2/orders", lambda: fake.fail_next(503, times=3))  # lookup down too
    args = ("renew", iccid, "--plan", PLAN, "--yes", "--json", "--timeout", "0m")
    r = run(*args)
    assert r.exit_code == 75 and r.json["errors"][0]["code"] == "outcome_unknown", r
    states = [o["state"] for o in run("history", "--local", "--json").json["data"]["orders"]]
    assert states == ["pending"]  # the intent, outcome unknown: never "failed"
    fake.routes.clear()
    fake.register()
    retry = run(*args)
    assert retry.exit_code == 0, retry
    assert len(fake.topup_orders()) == 1


def test_a_retry_while_the_first_purchase_is_in_flight_buys_nothing(fake, setup, run):
    setup(retries=0, timeout=0.5)
    iccid = fake.add_sim("elan-7days-1gb", remaining_mb=100).iccid
    fake.arm("POST", "/v2/orders/topups", lambda: fake.hang_next(1, seconds=1.5))
    args = ("renew", iccid, "--plan", PLAN, "--yes", "--json", "--timeout", "0m")
    first = run(*args)
    assert first.exit_code == 75 and first.json["errors"][0]["code"] == "outcome_unknown"
    again = run(*args)  # "retry later", at once: the first request has not landed yet
    assert again.exit_code == 75, again
    assert len(fake.requests_to("POST", "/v2/orders/topups")) == 1


def test_a_retry_after_another_run_resolved_the_order_does_not_buy_again(fake, setup, run):
    setup(retries=0, timeout=0.5)
    a = fake.add_sim("elan-7days-1gb", remaining_mb=100).iccid
    b = fake.add_sim("elan-7days-1gb", remaining_mb=100).iccid
    fake.arm("POST", "/v2/orders/topups", fake.commit_then_drop_next)
    fake.arm("GET", "/v2/orders", lambda: fake.fail_next(503))
    args = ("renew", a, "--plan", PLAN, "--yes", "--json", "--timeout", "0m")
    assert run(*args).exit_code == 75
    # Another renewal on the same account reconciles A's order on the way.
    assert run("renew", b, "--plan", PLAN, "--yes", "--timeout", "0m").exit_code == 0
    retry = run(*args)
    assert retry.exit_code == 0, retry
    mine = [o for o in fake.topup_orders() if a in o["description"]]
    assert len(mine) == 1


def test_the_same_topup_still_pending_needs_again(cli):
    env = {"ESIMCTL_DEMO_APPLY_DELAY": "3600"}
    args = ("--demo", "renew", "Tokyo", "--plan", "jp-1gb-3d", "--yes", "--timeout", "0m")
    assert cli(*args, env=env).exit_code == 0
    second = cli(*args, env=env)
    assert second.exit_code == 5 and "--again" in second.stderr
    assert cli(*args, "--again", env=env).exit_code == 0
    orders = cli("--demo", "history", "--local", "--json").json["data"]["orders"]
    assert len(orders) == 2


def test_ctrl_c_while_waiting_still_reports_the_purchase(cli, monkeypatch):
    from esimctl.purchasing import pipeline

    async def interrupted(*args: Any, **kw: Any) -> bool:
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "verify", interrupted)
    r = cli("--demo", "renew", "Tokyo", "--plan", "jp-1gb-3d", "--yes", "--json")
    assert r.exit_code == 130
    assert r.json["data"]["order"]["state"] in ("pending", "completed")
    assert r.json["errors"][0]["code"] == "interrupted"
    assert "interrupted while waiting" in r.stderr


def test_manual_renew_respects_the_monthly_budget(cli, home):
    profile = home / "cache" / "demo-profile"
    profile.mkdir(parents=True)
    (profile / "config.toml").write_text('[renewal]\nmonthly_budget = "10 USD"\n')
    args = ("--demo", "renew", "Tokyo", "--yes", "--timeout", "0m", "--again")
    assert cli(*args, "--plan", "jp-3gb-7d").exit_code == 0
    over = cli(*args, "--plan", "jp-3gb-7d")
    assert over.exit_code == 5 and "monthly_budget" in over.stderr
    assert len(cli("--demo", "history", "--local", "--json").json["data"]["orders"]) == 1


@pytest.mark.parametrize(
    "args",
    [
        ("renew", "Tokyo", "--plan", "jp-1gb-3d", "--yes", "--timeout", "99999999999d"),
        ("history", "--since", "99999999999w"),
        ("renew", "Tokyo", "--plan", "jp-1gb-3d", "--yes", "--wait", "nan"),
        ("renew", "Tokyo", "--plan", "jp-1gb-3d", "--yes", "--wait", "-1"),
    ],
)
def test_absurd_numbers_are_bad_input(cli, args):
    r = cli("--demo", *args, "--json")
    assert r.exit_code == 2, r
    assert r.json["status"] == "error" and len(r.stderr.strip().splitlines()) == 1
    assert cli("--demo", "history", "--local", "--json").json["data"]["orders"] == []


def test_unexpected_errors_still_write_the_envelope(cli, monkeypatch):
    from esimctl.cli.commands import status

    def boom(*a: Any, **kw: Any) -> Any:
        raise RuntimeError("kaboom")

    monkeypatch.setattr(status, "fetch_esims", boom)
    r = cli("--demo", "status", "--json")
    assert r.exit_code == 1
    assert r.json["status"] == "error" and "RuntimeError" in r.json["errors"][0]["message"]
    assert "Traceback" not in r.stderr


def test_auto_does_not_call_a_topup_applied_before_it_shows(fake, configure, run):
    iccid = fake.add_sim("elan-7days-1gb", remaining_mb=100).iccid
    base = f'[accounts.trip]\nprovider = "airalo"\nbase_url = "{fake.url}"\nretries = 1\n'
    configure(base)
    first = run("renew", iccid, "--plan", PLAN, "--yes", "--json")
    assert first.json["data"]["applied"] is True  # an earlier top-up of the same plan
    taken = fake.buy_topup

    def taken_not_applied(req):
        reply = taken(req)
        fake.sims[iccid].history.pop()  # Airalo took the order, shows nothing yet
        return reply

    _replace_topup_handler(fake, taken_not_applied)
    configure(
        base + f'[renewal]\nmax_per_day = 5\n[renewal.esims."{iccid}"]\n'
        f'expires_within = "3650d"\nplan = "{PLAN}"\n'
    )
    auto = run("renew", "--auto", "--yes", "--timeout", "0m", "--json")
    assert auto.exit_code == 0, auto
    assert auto.json["data"]["orders"][-1]["applied"] is False
