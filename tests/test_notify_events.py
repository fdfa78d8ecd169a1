"""Notifications from the commands cron runs (issue 13): the right events, once each across
repeated runs, cleared and sent again as conditions change, and a target that fails or
hangs never changes what a run did or its exit code. The target here is a ``command``
target (a program getting each event as JSON on stdin); Apprise targets are tested in
test_notify_targets.py."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from fakes.airalo import CLIENT_ID, CLIENT_SECRET, FakeAiralo

T0 = datetime.now(UTC).replace(microsecond=0)
CREDS = {"ESIMCTL_TRIP_CLIENT_ID": CLIENT_ID, "ESIMCTL_TRIP_CLIENT_SECRET": CLIENT_SECRET}
Cli = Callable[..., Any]

HOOK = """
import json, sys, time
from pathlib import Path

out, flags = Path(sys.argv[1]), Path(sys.argv[2])
if (flags / "hang").exists():
    time.sleep(30)
if (flags / "fail").exists():
    sys.exit(3)
event = json.loads(sys.stdin.read())
with out.open("a", encoding="utf-8") as fh:
    fh.write(json.dumps(event) + "\\n")
"""


class Hook:
    def __init__(self, tmp: Path) -> None:
        self.script = tmp / "hook.py"
        self.script.write_text(textwrap.dedent(HOOK), encoding="utf-8")
        self.out = tmp / "received.jsonl"
        self.flags = tmp / "flags"
        self.flags.mkdir()

    def toml(self, **notify: str) -> str:
        cmd = json.dumps([sys.executable, str(self.script), str(self.out), str(self.flags)])
        head = "".join(f'{k} = "{v}"\n' for k, v in notify.items())
        return f"[notify]\n{head}[notify.targets.hook]\ncommand = {cmd}\n"

    def take(self) -> list[dict[str, Any]]:
        """The events received since the last take."""
        if not self.out.exists():
            return []
        events = [json.loads(ln) for ln in self.out.read_text(encoding="utf-8").splitlines()]
        self.out.unlink()
        return events

    def set(self, flag: str, on: bool = True) -> None:
        path = self.flags / flag
        if on:
            path.touch()
        else:
            path.unlink(missing_ok=True)


@pytest.fixture
def hook(tmp_path: Path) -> Hook:
    return Hook(tmp_path)


def kinds(events: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    return sorted((e["event"], e["label"]) for e in events)


def at(hours: float, **extra: str) -> dict[str, str]:
    return {**CREDS, "ESIMCTL_TEST_NOW": (T0 + timedelta(hours=hours)).isoformat(), **extra}


# -- status --notify on the demo ---------------------------------------------------------------


def demo_config(home: Path, text: str) -> None:
    profile = home / "cache" / "demo-profile"
    profile.mkdir(parents=True, exist_ok=True)
    (profile / "config.toml").write_text(text, encoding="utf-8")


def test_status_notify_sends_each_condition_once(cli: Cli, home: Path, hook: Hook) -> None:
    demo_config(home, hook.toml(renotify="12h"))
    r = cli("--demo", "status", "--notify", "--json", env=at(0))
    assert r.exit_code == 0, r
    got = hook.take()
    assert kinds(got) == [
        ("expiring_soon", "Tokyo"),
        ("low_data", "Tokyo"),
        ("runs_out_soon", "Tokyo"),
    ]
    low = next(e for e in got if e["event"] == "low_data")
    assert low["account"] == "demo" and low["iccid"] == "8981100000000000018"
    assert "307 MB left of 3 GB" in low["message"] and "esimctl plans Tokyo" in low["action"]
    assert low["figures"]["data_remaining_bytes"] == int(0.3 * 1024**3)
    sent = r.json["data"]["notifications"]["sent"]
    assert sorted(s["event"] for s in sent) == ["expiring_soon", "low_data", "runs_out_soon"]

    # Cron every 15 minutes: nothing new is news.
    for minutes in (15, 30, 45):
        cli("--demo", "status", "--notify", env=at(minutes / 60))
        assert hook.take() == []
    # Without --notify nothing is sent at all.
    cli("--demo", "status", env=at(13))
    assert hook.take() == []
    # A condition that still holds after renotify (12 h) is sent again.
    cli("--demo", "status", "--notify", env=at(13))
    assert {e["event"] for e in hook.take()} >= {"low_data"}


def test_a_target_that_fails_changes_nothing_and_is_retried(
    cli: Cli, home: Path, hook: Hook
) -> None:
    demo_config(home, hook.toml())
    hook.set("fail")
    r = cli("--demo", "status", "--notify", "--check", "--json", env=at(0))
    assert r.exit_code == 8, r  # what --check says, as without notifications
    failed = r.json["data"]["notifications"]["failed"]
    assert failed and failed[0]["target"] == "hook" and "exited 3" in failed[0]["reason"]
    assert "notification to hook failed" in r.stderr and "Traceback" not in r.stderr
    assert hook.take() == []
    hook.set("fail", on=False)
    cli("--demo", "status", "--notify", env=at(0.25))
    assert len(hook.take()) == 3  # what failed is sent on the next run


def test_a_target_that_hangs_costs_its_timeout_only(cli: Cli, home: Path, hook: Hook) -> None:
    demo_config(home, hook.toml(timeout="1s"))
    hook.set("hang")
    r = cli("--demo", "status", "--notify", "--json", env=at(0))
    assert r.exit_code == 0, r
    (failed,) = r.json["data"]["notifications"]["failed"]  # one try per target per run
    assert "did not answer" in failed["reason"]


# -- renew --auto and an account on the Airalo fake --------------------------------------------


@pytest.fixture
def fake() -> Iterator[FakeAiralo]:
    with FakeAiralo() as f:
        assert isinstance(f, FakeAiralo)
        yield f


RULE = '[renewal.esims.Lisbon]\ndata_below = "500MB"\nplan = "elan-7days-1gb-topup"\n'


def trip(configure: Callable[[str], Path], fake: FakeAiralo, hook: Hook, extra: str = "") -> str:
    iccid = fake.add_sim("elan-30days-3gb", remaining_mb=2000).iccid
    configure(
        f'[accounts.trip]\nprovider = "airalo"\nbase_url = "{fake.url}"\nretries = 1\n'
        f'[esims."{iccid}"]\nlabel = "Lisbon"\n' + extra + hook.toml()
    )
    return iccid


def test_renew_auto_tells_what_it_bought_once(
    cli: Cli, configure: Callable[[str], Path], fake: FakeAiralo, hook: Hook
) -> None:
    iccid = trip(configure, fake, hook, RULE)
    r = cli("renew", "--auto", "--yes", "--json", env=at(0))
    assert r.exit_code == 0, r
    assert hook.take() == []  # nothing to tell: 2000 MB left, no rule fired

    fake.set_usage(iccid, remaining=300)
    r = cli("renew", "--auto", "--yes", "--json", env=at(1))
    assert r.exit_code == 0, r
    got = hook.take()
    bought = [e for e in got if e["event"] == "topup_bought"]
    assert len(bought) == 1 and bought[0]["order"]["plan_id"] == "elan-7days-1gb-topup"
    assert "bought" in bought[0]["message"] and bought[0]["label"] == "Lisbon"
    assert "notifications" in r.json["data"]
    # The next run says nothing of it again.
    fake.set_usage(iccid)
    cli("renew", "--auto", "--yes", env=at(1.25))
    assert [e["event"] for e in hook.take() if e["event"] == "topup_bought"] == []
    assert len(fake.topup_orders()) == 1


def test_no_notify_skips_and_a_refusal_is_sent_until_it_clears(
    cli: Cli, configure: Callable[[str], Path], fake: FakeAiralo, hook: Hook
) -> None:
    iccid = trip(configure, fake, hook, RULE + 'max_price = "1 USD"\n')
    fake.set_usage(iccid, remaining=300)
    r = cli("renew", "--auto", "--yes", "--no-notify", "--json", env=at(0))
    assert r.exit_code == 5, r
    assert hook.take() == [] and "notifications" not in r.json["data"]
    r = cli("renew", "--auto", "--yes", "--json", env=at(0.25))
    assert r.exit_code == 5, r  # notifications never change the exit code
    refused = [e for e in hook.take() if e["event"] == "limit_refused"]
    assert len(refused) == 1 and "max_price" in refused[0]["message"]
    cli("renew", "--auto", "--yes", env=at(0.5))
    assert [e for e in hook.take() if e["event"] == "limit_refused"] == []


def test_low_data_clears_and_comes_back_as_news(
    cli: Cli, configure: Callable[[str], Path], fake: FakeAiralo, hook: Hook
) -> None:
    iccid = trip(configure, fake, hook)
    fake.set_usage(iccid, remaining=300)
    cli("status", "--notify", "--refresh", env=at(0))
    assert ("low_data", "Lisbon") in kinds(hook.take())
    fake.set_usage(iccid, remaining=2500)  # topped up elsewhere: the condition clears
    cli("status", "--notify", "--refresh", env=at(1))
    assert hook.take() == []
    fake.set_usage(iccid, remaining=200)
    cli("status", "--notify", "--refresh", env=at(2))
    assert ("low_data", "Lisbon") in kinds(hook.take())  # news again, well within renotify


def test_an_account_failing_for_long_is_news_and_rejected_credentials_at_once(
    cli: Cli, configure: Callable[[str], Path], fake: FakeAiralo, hook: Hook
) -> None:
    trip(configure, fake, hook)
    fake.stop()  # the provider is down
    r = cli("status", "--notify", "--refresh", "--json", env=at(0))
    assert r.exit_code == 75, r
    assert hook.take() == []  # a failure of minutes is not news
    cli("status", "--notify", "--refresh", env=at(1))
    assert hook.take() == []
    cli("status", "--notify", "--refresh", env=at(2.5))  # past account_failing_after (2 h)
    got = hook.take()
    assert [e["event"] for e in got] == ["account_failing"]
    assert got[0]["account"] == "trip" and "esimctl account test trip" in got[0]["action"]
    cli("status", "--notify", "--refresh", env=at(2.75))
    assert hook.take() == []  # once


def test_rejected_credentials_are_news_at_once(
    cli: Cli, configure: Callable[[str], Path], fake: FakeAiralo, hook: Hook
) -> None:
    trip(configure, fake, hook)
    r = cli(
        "status",
        "--notify",
        "--refresh",
        env=at(0, ESIMCTL_TRIP_CLIENT_SECRET="wrong-secret-0123456789"),
    )
    assert r.exit_code == 4, r
    (got,) = hook.take()
    assert got["event"] == "credentials_rejected" and "--replace" in got["action"]
    assert "wrong-secret" not in json.dumps(got)
