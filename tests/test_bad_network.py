"""On a bad network (issue 10): failures that retrying cannot fix are reported at once with
their cause in plain words, one command has a deadline, and what is known is still shown.

The broken account is an Airalo account on the fake; the account that answers is a manual
one (no network needed). Its figures are cached first, then its address is broken: a host
that does not resolve (``.invalid``), a port that refuses, a server that accepts and never
answers.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from fakes.airalo import CLIENT_ID, CLIENT_SECRET, FakeAiralo

CREDS = {"ESIMCTL_TRIP_CLIENT_ID": CLIENT_ID, "ESIMCTL_TRIP_CLIENT_SECRET": CLIENT_SECRET}
MANUAL_ICCID = "8981100022223333444"


@pytest.fixture
def fake() -> Iterator[FakeAiralo]:
    with FakeAiralo() as f:
        yield f


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A server that accepts connections (the kernel's backlog) and never answers."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    try:
        yield srv.getsockname()[1]
    finally:
        srv.close()


@pytest.fixture
def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now: connections are refused
    return int(port)


def config(url: str, extra: str = "") -> str:
    return f"""
[accounts.trip]
provider = "airalo"
base_url = "{url}"
retries = 4

[accounts.jp]
provider = "manual"

[network]
deadline = "3s"
{extra}
"""


@pytest.fixture
def cached(cli, configure, fake) -> Any:
    """Both accounts answered once (figures cached); returns a function to break trip."""
    fake.add_sim("elan-30days-3gb", remaining_mb=2310)
    configure(config(fake.url))
    r = cli(
        "esim",
        "add",
        "jp",
        *("--iccid", MANUAL_ICCID, "--label", "Tokyo", "--data", "3GB", "--days", "7"),
        env=CREDS,
    )
    assert r.exit_code == 0, r
    first = cli("status", "--json", env=CREDS)
    assert first.exit_code == 0, first
    assert len(first.json["data"]["esims"]) == 2

    def broken(url: str) -> Any:
        configure(config(url))
        return cli("status", "--refresh", "--json", env=CREDS)

    return broken


def _providers(r: Any) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for e in r.json["data"]["esims"]:
        out.setdefault(e["provider"], []).append(e["attention"])
    return out


def test_a_host_that_does_not_resolve_is_named_at_once(cached, fake):
    r = cached("https://partners-api.example.invalid")
    assert r.exit_code == 3, r
    (err,) = r.json["errors"]
    assert err["message"].startswith("no network: cannot resolve partners-api.example.invalid")
    assert err["code"] == "unavailable"
    # What is known is still shown: the cached Airalo row, marked stale; the manual row fresh.
    rows = _providers(r)
    assert "stale" in rows["airalo"][0]
    assert "stale" not in rows["manual"][0]


def test_a_refused_connection_is_named_and_not_retried(cached, closed_port):
    r = cached(f"http://127.0.0.1:{closed_port}")
    assert r.exit_code == 3, r
    (err,) = r.json["errors"]
    assert f"connection refused by 127.0.0.1:{closed_port}" in err["message"]
    assert "stale" in _providers(r)["airalo"][0]


def test_a_host_that_never_answers_costs_the_deadline_and_no_more(cached, silent_port):
    r = cached(f"http://127.0.0.1:{silent_port}")
    assert r.exit_code == 3, r
    (err,) = r.json["errors"]
    assert "no answer from airalo within 3 s" in err["message"]
    assert "[network] deadline" in err["message"]
    assert "stale" in _providers(r)["airalo"][0]


def test_nothing_reachable_at_all_is_retry_later_with_the_cache(cli, configure, fake):
    fake.add_sim("elan-30days-3gb", remaining_mb=2310)
    configure(f'[accounts.trip]\nprovider = "airalo"\nbase_url = "{fake.url}"\n')
    assert cli("status", env=CREDS).exit_code == 0
    configure('[accounts.trip]\nprovider = "airalo"\nbase_url = "https://api.example.invalid"\n')
    r = cli("status", "--refresh", "--json", env=CREDS)
    assert r.exit_code == 75, r
    (row,) = r.json["data"]["esims"]
    assert "stale" in row["attention"]
    assert "no network" in r.json["errors"][0]["message"]


def test_the_table_names_the_cause_in_words(cached, closed_port, cli, configure):
    configure(config(f"http://127.0.0.1:{closed_port}"))
    r = cli("status", "--refresh", env=CREDS)
    assert r.exit_code == 3, r
    assert "error: trip: connection refused by 127.0.0.1" in r.stderr
    assert "ConnectError" not in r.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("plans", "--country", "JP"),
        ("history",),
        ("account", "test", "trip"),
    ],
)
def test_every_network_command_names_the_cause(cli, configure, closed_port, args):
    configure(config(f"http://127.0.0.1:{closed_port}"))
    r = cli(*args, env=CREDS)
    assert r.exit_code in (3, 75), r
    assert "connection refused by 127.0.0.1" in r.stderr, r
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("value", ["0s", "2h", "soon", "5"])
def test_a_bad_deadline_is_a_config_error(cli, configure, value):
    configure(f'[network]\ndeadline = "{value}"\n')
    r = cli("status")
    assert r.exit_code == 2, r
    assert "[network]" in r.stderr and "deadline" in r.stderr
