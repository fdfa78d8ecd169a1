"""The forecast through the CLI, against the stateful Airalo fake and the demo: readings
accumulate across ``status --refresh`` runs (the test clock moves between them), ``status``
and ``show`` say when the data runs out, and ``renew --auto`` with ``runs_out_within`` buys
once, at the right moment, and never twice."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from fakes.airalo import CLIENT_ID, CLIENT_SECRET, FakeAiralo

MiB = 1024 * 1024
T0 = datetime.now(UTC).replace(microsecond=0)
CREDS = {"ESIMCTL_TRIP_CLIENT_ID": CLIENT_ID, "ESIMCTL_TRIP_CLIENT_SECRET": CLIENT_SECRET}
Cli = Callable[..., Any]


def at(hours: float) -> dict[str, str]:
    return {**CREDS, "ESIMCTL_TEST_NOW": (T0 + timedelta(hours=hours)).isoformat()}


@pytest.fixture
def fake() -> Iterator[FakeAiralo]:
    with FakeAiralo() as f:
        assert isinstance(f, FakeAiralo)
        yield f


@pytest.fixture
def trip(fake: FakeAiralo, configure: Callable[[str], Path]) -> Callable[[str], str]:
    """An Airalo account on the fake with one eSIM (2000 MB left of 3 GB); extra TOML
    appended to the config. Returns the eSIM's ICCID."""
    iccid = fake.add_sim("elan-30days-3gb", remaining_mb=2000).iccid

    def write(extra: str = "") -> str:
        configure(
            f'[accounts.trip]\nprovider = "airalo"\nbase_url = "{fake.url}"\nretries = 1\n'
            f'[esims."{iccid}"]\nlabel = "Lisbon"\n' + extra
        )
        return iccid

    return write


def lisbon(r: Any) -> dict[str, Any]:
    (e,) = [e for e in r.json["data"]["esims"] if e["label"] == "Lisbon"]
    return e


def test_readings_accumulate_and_status_says_when_it_runs_out(
    cli: Cli, fake: FakeAiralo, trip: Callable[[str], str]
) -> None:
    iccid = trip()
    first = cli("status", "--refresh", "--json", env=at(0))
    assert first.exit_code == 0, first
    assert lisbon(first)["forecast"] is None  # one reading: nothing to stand on

    fake.set_usage(iccid, remaining=1800)  # 200 MB in two hours
    second = cli("status", "--refresh", "--json", env=at(2))
    e = lisbon(second)
    f = e["forecast"]
    assert f is not None and f["basis_hours"] == pytest.approx(2)
    assert f["rate_bytes_per_day"] == pytest.approx(2400 * MiB, rel=0.01)
    runs_out = datetime.fromisoformat(f["runs_out_at"].replace("Z", "+00:00"))
    assert abs(runs_out - (T0 + timedelta(hours=2 + 18))) < timedelta(minutes=5)
    assert f["runs_out_before_expiry"] is True
    assert "runs_out_soon" in e["attention"]  # within a day, before the expiry
    assert "low_data" not in e["attention"]

    # From the cache (no --refresh) the forecast is the same: no provider was asked.
    asked = len(fake.requests)
    cached = cli("status", "--json", env=at(2.1))
    assert len(fake.requests) == asked
    assert lisbon(cached)["forecast"]["runs_out_at"] == f["runs_out_at"]

    # On a terminal: the RUNS OUT column, in the eSIM's local time.
    table = cli("status", tty=True, env={**at(2.1), "COLUMNS": "120", "NO_COLOR": "1"})
    row = next(ln for ln in table.stdout.splitlines() if ln.startswith("Lisbon"))
    assert "RUNS OUT" in table.stdout and "runs out soon" in row
    local = runs_out.astimezone().strftime("~%a %H:%M")
    assert local in row

    check = cli("status", "--check", env=at(2.1))
    assert check.exit_code == 8  # runs_out_soon is something to act on


def test_a_configured_horizon_moves_runs_out_soon(
    cli: Cli, fake: FakeAiralo, trip: Callable[[str], str]
) -> None:
    iccid = trip('[attention]\nruns_out_within = "6h"\n')
    cli("status", "--refresh", env=at(0))
    fake.set_usage(iccid, remaining=1800)
    e = lisbon(cli("status", "--refresh", "--json", env=at(2)))
    assert e["forecast"]["runs_out_at"] is not None
    assert "runs_out_soon" not in e["attention"]  # 18 h away, beyond 6 h


def test_show_draws_the_chart_at_80_and_120_columns_and_numbers_in_a_pipe(
    cli: Cli, fake: FakeAiralo, trip: Callable[[str], str]
) -> None:
    iccid = trip()
    cli("status", "--refresh", env=at(0))
    fake.set_usage(iccid, remaining=1900)
    cli("status", "--refresh", env=at(1))
    fake.set_usage(iccid, remaining=1800)
    cli("status", "--refresh", env=at(2))
    for width in (80, 120):
        r = cli("show", "Lisbon", tty=True, env={**at(2), "COLUMNS": str(width), "NO_COLOR": "1"})
        assert r.exit_code == 0, r
        lines = r.stdout.splitlines()
        assert all(len(ln) <= width for ln in lines), [ln for ln in lines if len(ln) > width]
        chart = [ln for ln in lines if "┤" in ln]
        assert len(chart) == 6  # the chart's rows
        assert any("█" in ln for ln in chart) and any("·" in ln for ln in chart)
        assert any("now" in ln for ln in lines)
        words = " ".join(r.stdout.split())  # wrapped at the terminal's width
        assert "runs out in" in words and "forecast on 2 h of readings" in words
    piped = cli("show", "Lisbon", env=at(2))
    assert "┤" not in piped.stdout
    numbers = [ln.split() for ln in piped.stdout.splitlines() if ln.startswith("  20")]
    assert [int(n[1]) for n in numbers] == [2000 * MiB, 1900 * MiB, 1800 * MiB, 1800 * MiB]
    doc = cli("show", "Lisbon", "--json", env=at(2)).json["data"]
    assert doc["esim"]["forecast"]["basis_hours"] == pytest.approx(2)
    assert [r["data_remaining_bytes"] for r in doc["readings"]][:3] == [
        2000 * MiB,
        1900 * MiB,
        1800 * MiB,
    ]
    assert doc["renewal"] == {"rule": None, "action": "none", "reason": "no renewal rule"}


RULE = '[renewal.esims.Lisbon]\nruns_out_within = "12h"\nplan = "elan-7days-1gb-topup"\n'


def test_renew_auto_buys_a_day_early_once_and_never_twice(
    cli: Cli, fake: FakeAiralo, trip: Callable[[str], str]
) -> None:
    iccid = trip(RULE)
    # No history yet: the rule has nothing to act on and says so.
    r = cli("renew", "--auto", "--yes", "--json", env=at(0))
    assert r.exit_code == 0, r
    (d,) = r.json["data"]["decisions"]
    assert d["action"] == "none" and "no forecast yet" in d["reason"]
    assert "nothing else can fire" in d["reason"]

    fake.set_usage(iccid, remaining=1800)  # 2.4 GB a day: runs out in 18 h, beyond 12 h
    r = cli("renew", "--auto", "--yes", "--json", env=at(2))
    (d,) = r.json["data"]["decisions"]
    assert d["action"] == "none" and d["forecast"]["runs_out_at"] is not None
    assert fake.topup_orders() == []

    fake.set_usage(iccid, remaining=1000)  # now 2.4+ GB a day with 1000 MB left: ~10 h
    r = cli("renew", "--auto", "--yes", "--json", env=at(10))
    assert r.exit_code == 0, r
    (d,) = r.json["data"]["decisions"]
    assert d["action"] == "bought" and d["trigger"] == "runs_out_within"
    assert "runs out in" in d["figure"] and "a day" in d["figure"] and "forecast on" in d["figure"]
    assert len(fake.topup_orders()) == 1

    # The seller's figures now include the top-up: the forecast moves out; nothing more.
    fake.set_usage(iccid)
    for hours in (10.2, 10.5):
        again = cli("renew", "--auto", "--yes", "--json", env=at(hours))
        assert again.exit_code == 0, again
        assert [d["action"] for d in again.json["data"]["decisions"]] != ["bought"]
    assert len(fake.topup_orders()) == 1


def test_the_demo_shows_a_forecast_out_of_the_box(cli: Cli) -> None:
    r = cli("--demo", "status", "--json")
    forecasts = {e["label"]: e["forecast"] for e in r.json["data"]["esims"]}
    assert forecasts["Tokyo"]["runs_out_before_expiry"] is True
    assert forecasts["Bangkok"]["runs_out_before_expiry"] is False
    assert forecasts["Bangkok"]["left_at_expiry_bytes"] > 0
    assert forecasts["Europe"] is None and forecasts["USA"] is None  # unlimited, not active
    shown = cli("--demo", "show", "Tokyo", tty=True, env={"COLUMNS": "80", "NO_COLOR": "1"})
    assert shown.exit_code == 0, shown
    assert sum("┤" in ln for ln in shown.stdout.splitlines()) == 6
    assert json.loads(cli("--demo", "show", "Tokyo", "--json").stdout)["data"]["readings"]
