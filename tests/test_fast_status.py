"""Fast status (issue 7), as behaviour: what is imported without network, what the cache
answers, how stale figures are shown, and how throttles pace requests. Nothing is timed
here; speed is measured in benchmarks/ (see docs/performance.md)."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from esimctl.providers.kit.http import WINDOW_MARGIN, Throttle, acquire_all
from fakes.esimgo import DEFAULT_KEY, FakeEsimGo

ENV = {"ESIMCTL_TRIP_API_KEY": DEFAULT_KEY, "ESIMCTL_WORK_API_KEY": DEFAULT_KEY}
# Never imported by a command that needs no network: the HTTP stack and the keyring; pydantic,
# which Typer 0.29+ imports to build an adapter per option on every run (what `pip install .`
# resolves is what CI tests: docs/performance.md); and the libraries of notifications,
# calendars and QR codes, imported by those commands alone.
NETWORK_MODULES = ("httpx", "keyring", "pydantic", "apprise", "icalendar", "segno")

# A child esimctl that reports which of NETWORK_MODULES it imported, on stderr's last line.
PROBE = """
import json, sys
from esimctl.cli.app import run
code = run(sys.argv[1:])
loaded = sorted({m.split(".")[0] for m in sys.modules} & set(json.loads(NETWORK)))
sys.stdout.flush()
sys.stderr.write("\\nPROBE " + json.dumps({"code": code, "loaded": loaded}) + "\\n")
""".replace("NETWORK", repr(json.dumps(NETWORK_MODULES)))


def probe(*args: str, env: dict[str, str] | None = None) -> tuple[dict[str, Any], str]:
    """Run esimctl in a fresh interpreter; return the probe's report and stdout."""
    p = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("PROBE "), p.stderr
    return json.loads(last[len("PROBE ") :]), p.stdout


@pytest.fixture
def fake() -> Iterator[FakeEsimGo]:
    with FakeEsimGo() as f:
        f.token_limit = 1000
        yield f


def _account(name: str, url: str) -> str:
    # retries = 0: a provider that is down fails at once (the tests stop the fake).
    return (
        f'[accounts.{name}]\nprovider = "esimgo"\nbase_url = "{url}"\n'
        "retries = 0\ntimeout = 2\nrate_limit = 1000\n"
    )


@pytest.fixture
def trip(fake: FakeEsimGo, configure: Any) -> FakeEsimGo:
    configure(_account("trip", fake.url))
    return fake


def run(cli: Any, *args: str, tty: bool = False) -> Any:
    return cli(*args, env=ENV, tty=tty)


def age_cache(home: Path, account: str | None = None) -> None:
    """Make cached eSIM lists old, as if fetched in 2000."""
    db = sqlite3.connect(home / "data" / "ledger.sqlite3")
    with db:
        db.execute(
            "UPDATE cache SET fetched_at = '2000-01-01T00:00:00Z' WHERE account = ? OR ? IS NULL",
            (account, account),
        )
    db.close()


# -- commands that need no network import none of NETWORK_MODULES ---------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("--version",),
        ("--help",),
        ("status", "--help"),
        ("--demo", "status"),
        ("--demo", "status", "--json"),
    ],
)
def test_commands_without_network_import_no_http_or_keyring(args: tuple[str, ...]) -> None:
    report, out = probe(*args)
    assert report == {"code": 0, "loaded": []}
    assert out.strip()


def test_demo_status_run_again_imports_nothing_more() -> None:
    """The second ``--demo status`` answers from the cache; neither run imports any of
    NETWORK_MODULES (the first makes the demo profile)."""
    for _ in range(2):
        report, out = probe("--demo", "status", "--json")
        assert report == {"code": 0, "loaded": []}
        assert json.loads(out)["data"]["esims"]


def test_demo_status_is_cached_and_a_renew_drops_the_cache(cli: Any, home: Path) -> None:
    """The demo keeps its figures for its ``usage_ttl`` like a seller, and a purchase makes
    the next ``status`` ask again: the top-up shows at once."""
    mb = 1024**2

    def tokyo(*args: str) -> int:
        r = cli("--demo", "status", "Tokyo", "--json", *args)
        assert r.exit_code == 0, r
        return int(r.json["data"]["esims"][0]["data_remaining_bytes"])

    before = tokyo()
    state_file = home / "cache" / "demo-profile" / "state" / "accounts" / "demo" / "demo-state.json"
    state = json.loads(state_file.read_text(encoding="utf-8"))
    next(s for s in state["esims"] if s["label"] == "Tokyo")["remaining"] -= 100 * mb
    state_file.write_text(json.dumps(state), encoding="utf-8")  # the seller's figure moves
    assert tokyo() == before  # within usage_ttl: the cached figure
    bought = cli("--demo", "renew", "Tokyo", "--plan", "jp-1gb-3d", "--yes", "--json")
    assert bought.exit_code == 0, bought
    # Asked again after the purchase: the seller's figure, plus the 1 GB top-up (less at most
    # an hour of the demo's use, should an hour turn meanwhile).
    gained = tokyo() - before
    assert 1024 * mb - 100 * mb - 450 * mb // 24 <= gained <= 1024 * mb - 100 * mb
    assert tokyo("--refresh") == tokyo()


def test_status_from_a_fresh_cache_needs_no_network_and_no_keyring(
    cli: Any, trip: FakeEsimGo
) -> None:
    iccids = trip.seed(3)
    first = run(cli, "status", "--json")
    assert first.exit_code == 0, first
    trip.stop()  # nothing answers from here on
    report, out = probe("status", "--json", env=ENV)
    assert report == {"code": 0, "loaded": []}
    esims = json.loads(out)["data"]["esims"]
    assert sorted(e["iccid"] for e in esims) == sorted(iccids)
    assert esims == first.json["data"]["esims"]  # same figures, same "as of": never "fresher"


def test_the_probe_sees_httpx_when_a_command_needs_the_network(cli: Any, trip: FakeEsimGo) -> None:
    trip.seed(1)
    report, _ = probe("status", "--refresh", "--json", env=ENV)
    assert report["code"] == 0
    assert "httpx" in report["loaded"]


# -- the cache and stale figures ----------------------------------------------------------------


def test_cache_keeps_its_freshness_window_and_refresh_bypasses_it(
    cli: Any, trip: FakeEsimGo, home: Path
) -> None:
    trip.seed(2)
    assert run(cli, "status", "--json").exit_code == 0
    sent = trip.stats["requests"]
    assert run(cli, "status", "--json").exit_code == 0
    assert trip.stats["requests"] == sent  # fresh: from the cache
    age_cache(home)
    assert run(cli, "status", "--json").exit_code == 0
    assert trip.stats["requests"] > sent  # past the provider's usage_ttl: asked again
    sent = trip.stats["requests"]
    assert run(cli, "status", "--refresh", "--json").exit_code == 0
    assert trip.stats["requests"] > sent


def test_old_figures_are_shown_stale_when_the_provider_fails(
    cli: Any, trip: FakeEsimGo, home: Path
) -> None:
    iccids = trip.seed(2)
    before = {e["iccid"]: e for e in run(cli, "status", "--json").json["data"]["esims"]}
    trip.stop()
    age_cache(home)
    r = run(cli, "status", "--json")
    # Nothing answered: the provider's error decides the exit code, not "partial".
    assert r.exit_code == 75, r
    assert r.json["status"] == "error"
    assert [e["account"] for e in r.json["errors"]] == ["trip"]
    esims = {e["iccid"]: e for e in r.json["data"]["esims"]}
    assert sorted(esims) == sorted(iccids)
    for iccid, e in esims.items():
        assert "stale" in e["attention"]
        assert e["as_of"] == before[iccid]["as_of"]  # when they were measured, not now
        assert e["data_remaining_bytes"] == before[iccid]["data_remaining_bytes"]


def test_refresh_with_the_provider_down_shows_the_cached_figures_stale(
    cli: Any, trip: FakeEsimGo
) -> None:
    trip.seed(1)
    assert run(cli, "status", "--json").exit_code == 0
    trip.stop()
    r = run(cli, "status", "--refresh", "--json")
    assert r.exit_code == 75, r
    assert [e["attention"][-1] for e in r.json["data"]["esims"]] == ["stale"]


def test_stale_marks_only_the_failed_account_and_is_partial(
    cli: Any, fake: FakeEsimGo, configure: Any, home: Path
) -> None:
    with FakeEsimGo() as other:
        other.token_limit = 1000
        configure(_account("trip", fake.url) + _account("work", other.url))
        fake.seed(1)
        other.seed(1)
        assert run(cli, "status", "--json").exit_code == 0
        other.stop()
        age_cache(home)
        r = run(cli, "status", "--json")
    assert r.exit_code == 3, r
    assert r.json["status"] == "partial"
    marks = {e["account"]: "stale" in e["attention"] for e in r.json["data"]["esims"]}
    assert marks == {"trip": False, "work": True}


def test_stale_figures_say_so_in_the_table(cli: Any, trip: FakeEsimGo, home: Path) -> None:
    trip.seed(1)
    assert run(cli, "status").exit_code == 0
    trip.stop()
    age_cache(home)
    r = run(cli, "status", tty=True)
    assert r.exit_code == 75, r
    assert "(stale)" in r.stdout and "figures stale" in r.stdout
    tsv = run(cli, "status")
    assert "stale" in tsv.stdout.split("\t")[-1]


def test_a_renewal_never_acts_on_stale_figures(cli: Any, trip: FakeEsimGo, home: Path) -> None:
    iccid = trip.seed(1)[0]
    assert run(cli, "status", "--json").exit_code == 0
    trip.stop()
    age_cache(home)
    r = run(cli, "plans", iccid[-6:], "--json")
    assert r.exit_code == 75, r
    assert r.json["data"] is None or not r.json["data"].get("plans")


def test_a_fresh_cache_row_from_an_older_version_is_still_read(
    cli: Any, trip: FakeEsimGo, home: Path
) -> None:
    trip.seed(2)
    first = run(cli, "status", "--json")
    db = sqlite3.connect(home / "data" / "ledger.sqlite3")
    with db:  # the earlier format: a bare list of eSIMs, the TTL taken from the provider
        (payload,) = db.execute("SELECT payload FROM cache WHERE account = 'trip'").fetchone()
        rows = json.loads(payload)["esims"]
        db.execute("UPDATE cache SET payload = ? WHERE account = 'trip'", (json.dumps(rows),))
    db.close()
    sent = trip.stats["requests"]
    again = run(cli, "status", "--json")
    assert trip.stats["requests"] == sent
    assert again.json["data"] == first.json["data"]


# -- throttles: a sliding window, taken together ------------------------------------------------


def _schedule(t: Throttle, n: int, start: float = 1000.0) -> list[float]:
    """When ``n`` requests sent as early as allowed would go, computed without sleeping."""
    times = []
    for _ in range(n):
        at = t.earliest(start)
        t.reserve(at)
        times.append(at)
    return times


@pytest.mark.parametrize(("rate", "per", "burst"), [(5, 1.0, 5), (8, 1.0, 1), (10, 60.0, 10)])
def test_throttle_never_puts_more_than_its_limit_in_any_window(
    rate: int, per: float, burst: int
) -> None:
    times = _schedule(Throttle(rate, per, burst), 4 * rate + 3)
    for i, t in enumerate(times):
        in_window = [u for u in times[i:] if u - t < per]
        assert len(in_window) <= rate, (t, in_window)
    assert times == sorted(times)


def test_throttle_bursts_then_waits_a_whole_window_unlike_a_token_bucket() -> None:
    times = _schedule(Throttle(5, 1.0, burst=5), 10)
    assert times[:5] == [1000.0] * 5  # the documented 5 at once
    # A full bucket would send the 6th after 0.2 s: 6 in one second, a 429.
    assert times[5] == pytest.approx(1001.0 + WINDOW_MARGIN)


def test_throttle_without_burst_spaces_requests_evenly() -> None:
    times = _schedule(Throttle(8, 1.0, burst=1), 4)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(g >= 1 / 8 for g in gaps)


def test_pause_after_a_429_holds_every_later_request() -> None:
    t = Throttle(100, 1.0)
    now = time.monotonic()
    t.pause(30.0)
    assert t.earliest(now) >= now + 29.0


def test_a_request_takes_its_slot_in_every_throttle_at_once() -> None:
    """A request limited twice (per account and per ICCID) is counted by both at the moment
    it is sent, not by the first when it starts waiting for the second."""
    account, iccid = Throttle(100, 1.0), Throttle(1, 0.05)

    async def main() -> None:
        await acquire_all((account, iccid))  # fills the per-ICCID window
        await acquire_all((account, iccid))  # waits ~50 ms for it

    asyncio.run(main())
    sent_account, sent_iccid = list(account._sent), list(iccid._sent)
    assert sent_account[-1] == sent_iccid[-1]
    assert sent_account[-1] > sent_account[0]


def test_documented_limit_holds_against_a_fake_that_enforces_it(
    cli: Any, fake: FakeEsimGo, configure: Any
) -> None:
    """eSIM Go: 10 requests a second, enforced by the fake with 429s; one call per eSIM in
    parallel must not meet a single one (the window is crossed once: about a second)."""
    configure(f'[accounts.trip]\nprovider = "esimgo"\nbase_url = "{fake.url}"\n')
    fake.token_limit = 10
    iccids = fake.seed(12)
    fake.enforce_tokens = True
    r = run(cli, "status", "--refresh", "--json")
    assert r.exit_code == 0, r
    assert sorted(e["iccid"] for e in r.json["data"]["esims"]) == sorted(iccids)
    assert fake.stats["429"] == 0


# -- catalogues -----------------------------------------------------------------------------------


def test_country_catalogue_is_cached_and_refresh_asks_again(cli: Any, trip: FakeEsimGo) -> None:
    first = run(cli, "plans", "--country", "PT", "--json")
    assert first.exit_code == 0, first
    assert first.json["data"]["plans"]
    sent = trip.stats["requests"]
    again = run(cli, "plans", "--country", "PT")
    assert trip.stats["requests"] == sent  # within the provider's catalogue_ttl
    assert "catalogue fetched" in again.stderr and "--refresh" in again.stderr
    cached = run(cli, "plans", "--country", "PT", "--json")
    assert cached.json["data"] == first.json["data"]
    assert run(cli, "plans", "--country", "PT", "--refresh", "--json").exit_code == 0
    assert trip.stats["requests"] > sent


def test_catalogue_cache_is_per_country_and_expires(cli: Any, trip: FakeEsimGo, home: Path) -> None:
    assert run(cli, "plans", "--country", "PT", "--json").exit_code == 0
    sent = trip.stats["requests"]
    assert run(cli, "plans", "--country", "ES", "--json").exit_code == 0
    assert trip.stats["requests"] > sent  # another country: asked
    sent = trip.stats["requests"]
    age_cache(home)
    assert run(cli, "plans", "--country", "PT", "--json").exit_code == 0
    assert trip.stats["requests"] > sent  # past catalogue_ttl: asked again
