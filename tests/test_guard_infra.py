"""Money guard, items 6-8 (issue 16): the infrastructure under the purchases.

* plain http:// beyond this machine is refused before any connection; secrets and tokens
  a provider echoes in an error never reach the output;
* every file and directory esimctl creates is private whatever the umask;
* a ledger esimctl cannot trust (not SQLite, truncated, foreign, newer, locked, full) is a
  one-line error naming the file, with SPEC's exit code, and nothing written to it;
* far dates, deeply nested TOML and impossible ports are config errors; money is shown in
  the currency's minor units.

Host names are ``.invalid`` (RFC 2606): nothing here needs or touches the network.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sqlite3
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from esimctl.models import Money, format_decimal
from fakes.airalo import CLIENT_ID as AIRALO_ID
from fakes.airalo import CLIENT_SECRET as AIRALO_SECRET
from fakes.airalo import FakeAiralo, Pkg
from fakes.celitech import CLIENT_ID as CELITECH_ID
from fakes.celitech import CLIENT_SECRET as CELITECH_SECRET
from fakes.celitech import FakeCelitech
from launcher import ESIMCTL

Cli = Callable[..., Any]
AIRALO_ENV = {"ESIMCTL_TRIP_CLIENT_ID": AIRALO_ID, "ESIMCTL_TRIP_CLIENT_SECRET": AIRALO_SECRET}
CELITECH_ENV = {
    "ESIMCTL_TRIP_CLIENT_ID": CELITECH_ID,
    "ESIMCTL_TRIP_CLIENT_SECRET": CELITECH_SECRET,
}
GO_KEY = {"ESIMCTL_TRIP_API_KEY": "go-key-0123456789"}
REMOTE = "http://api.example.invalid"


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.lstat().st_mode)


def _digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _subprocess_env(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESIMCTL_")}
    env.update(
        {
            "ESIMCTL_HOME": str(home),
            "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
            "TZ": "UTC",
        }
    )
    env.update(extra or {})
    return env


def esimctl(
    home: Path, *args: str, env: dict[str, str] | None = None, umask: int = -1
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ESIMCTL, *args],
        env=_subprocess_env(home, env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        umask=umask,
    )


# -- 6a. plain http:// -------------------------------------------------------------------------


def test_account_add_refuses_plain_http_to_another_host(cli: Cli, home: Path) -> None:
    r = cli(
        "account", "add", "trip", "--provider", "esimgo", "--base-url", REMOTE + "/v2.5",
        "--secrets-stdin", input="API_KEY=go-key-0123456789\n",
    )  # fmt: skip
    assert r.exit_code == 2, r
    assert "refusing base_url" in r.stderr and "api.example.invalid" in r.stderr
    assert "https://" in r.stderr and "insecure_http = true" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (home / "config.toml").exists()  # nothing stored, secrets included


@pytest.mark.parametrize(
    "url",
    ["https://api.example.invalid", "http://127.0.0.1:9", "http://127.8.9.10",
     "http://localhost:9/v2", "http://[::1]:9"],
)  # fmt: skip
def test_account_add_accepts_https_and_loopback(cli: Cli, home: Path, url: str) -> None:
    r = cli(
        "account", "add", "trip", "--provider", "esimgo", "--base-url", url,
        "--secrets-stdin", input="API_KEY=go-key-0123456789\n",
    )  # fmt: skip
    assert r.exit_code == 0, r
    assert url in (home / "config.toml").read_text()


def test_account_add_refuses_a_plain_http_auth_url(cli: Cli, home: Path) -> None:
    r = cli(
        "account", "add", "trip", "--provider", "celitech", "--base-url", "https://api.example.invalid",
        "--set", "auth_url=http://auth.example.invalid", "--secrets-stdin",
        input=f"CLIENT_ID={CELITECH_ID}\nCLIENT_SECRET={CELITECH_SECRET}\n",
    )  # fmt: skip
    assert r.exit_code == 2, r
    assert "refusing auth_url" in r.stderr and "auth.example.invalid" in r.stderr
    assert not (home / "config.toml").exists()


def test_account_add_with_the_opt_in_stores_it(cli: Cli, home: Path) -> None:
    r = cli(
        "account", "add", "trip", "--provider", "esimgo", "--base-url", REMOTE,
        "--set", "insecure_http=true", "--secrets-stdin", input="API_KEY=go-key-0123456789\n",
    )  # fmt: skip
    assert r.exit_code == 0, r
    text = (home / "config.toml").read_text()
    assert REMOTE in text and "insecure_http" in text


@pytest.mark.parametrize("provider", ["esimgo", "airalo", "celitech", "esimaccess"])
def test_a_configured_plain_http_address_is_refused_at_use(
    cli: Cli, configure: Callable[[str], Path], provider: str
) -> None:
    configure(f'[accounts.trip]\nprovider = "{provider}"\nbase_url = "{REMOTE}"\nretries = 0\n')
    env = {
        "ESIMCTL_TRIP_API_KEY": "go-key-0123456789",
        "ESIMCTL_TRIP_ACCESS_CODE": "access-code-0123",
        "ESIMCTL_TRIP_SECRET_KEY": "secret-key-0123",
        **AIRALO_ENV,
    }
    started = time.monotonic()
    r = cli("status", "--json", env=env)
    assert r.exit_code == 2, r
    assert "refusing base_url" in r.stderr and "api.example.invalid" in r.stderr
    assert r.json["errors"][0]["code"] == "config_invalid"
    assert time.monotonic() - started < 5  # refused, not tried and timed out


def test_the_opt_in_is_warned_about_on_every_run(
    cli: Cli, configure: Callable[[str], Path]
) -> None:
    configure(
        f'[accounts.trip]\nprovider = "esimgo"\nbase_url = "{REMOTE}"\n'
        "insecure_http = true\nretries = 0\ntimeout = 3\n"
    )
    for _ in range(2):
        r = cli("status", env=GO_KEY)
        assert "refusing" not in r.stderr, r
        assert r.stderr.count("UNENCRYPTED") == 1, r
        assert "api.example.invalid" in r.stderr
        assert r.exit_code != 0  # the .invalid host never answers


# -- 6b. secrets and tokens echoed by a provider ---------------------------------------------


@pytest.fixture
def airalo() -> Iterator[FakeAiralo]:
    with FakeAiralo() as f:
        assert isinstance(f, FakeAiralo)
        yield f


@pytest.fixture
def celitech() -> Iterator[FakeCelitech]:
    with FakeCelitech() as f:
        assert isinstance(f, FakeCelitech)
        yield f


FRAGMENT = 8  # characters of a secret in a row that count as showing it


def _leaks(r: Any, secrets: list[str]) -> list[str]:
    """Every piece of FRAGMENT characters of a secret found in the output (a cut-off or
    reformatted echo still shows a credential)."""
    out = r.stdout + r.stderr
    found: list[str] = []
    for s in secrets:
        pieces = {s[i : i + FRAGMENT] for i in range(max(1, len(s) - FRAGMENT + 1))}
        found.extend(p for p in pieces if p in out)
    return found


def _sent_credentials(fake: Any) -> list[str]:
    """The bearer tokens and Basic credentials every request carried."""
    out = []
    for req in fake.requests:
        auth = req.header("authorization") or ""
        scheme, _, cred = auth.partition(" ")
        if scheme in ("Bearer", "Basic") and cred:
            out.append(cred)
    return out


@pytest.mark.parametrize("json", [True, False])
def test_airalo_echoing_the_bearer_token_never_shows_it(
    cli: Cli, configure: Callable[[str], Path], airalo: FakeAiralo, json: bool
) -> None:
    airalo.add_sim("elan-30days-3gb", remaining_mb=2310)
    configure(f'[accounts.trip]\nprovider = "airalo"\nbase_url = "{airalo.url}"\nretries = 0\n')
    airalo.echo_auth_next(1, status=422, path="/v2/sims")
    r = cli("status", "--refresh", *(["--json"] if json else []), env=AIRALO_ENV)
    tokens = _sent_credentials(airalo)
    assert tokens, "the fake never saw a token: the test proves nothing"
    assert r.exit_code != 0, r
    assert "Airalo" in r.stdout + r.stderr and "***" in r.stdout + r.stderr, r
    assert _leaks(r, [*tokens, AIRALO_SECRET, AIRALO_ID]) == [], r


def test_airalo_echoing_the_token_request_never_shows_the_secret(
    cli: Cli, configure: Callable[[str], Path], airalo: FakeAiralo
) -> None:
    airalo.add_sim("elan-30days-3gb")
    configure(f'[accounts.trip]\nprovider = "airalo"\nbase_url = "{airalo.url}"\nretries = 0\n')
    airalo.echo_auth_next(1, status=400, path="/v2/token")
    r = cli("status", "--json", env=AIRALO_ENV)
    assert r.exit_code != 0, r
    assert _leaks(r, [AIRALO_SECRET, AIRALO_ID]) == [], r


@pytest.mark.parametrize("path", ["/v1/purchases", "/oauth2/token"])
def test_celitech_echoing_credentials_never_shows_them(
    cli: Cli, configure: Callable[[str], Path], celitech: FakeCelitech, path: str
) -> None:
    celitech.add_esim(gb=3, used_gb=1)
    configure(
        f'[accounts.trip]\nprovider = "celitech"\nbase_url = "{celitech.url}"\n'
        "requests_per_second = 500\nretries = 0\n"
    )
    celitech.echo_auth_next(2, status=400, path=path)
    r = cli("status", "--json", env=CELITECH_ENV)
    assert any(path in q.path for q in celitech.requests)
    assert r.exit_code != 0, r
    tokens = _sent_credentials(celitech)
    assert tokens, "no credential was sent: the test proves nothing"
    if path == "/v1/purchases":
        assert "***" in r.stdout + r.stderr, r
    assert _leaks(r, [*tokens, CELITECH_SECRET, CELITECH_ID]) == [], r


def test_the_scrubber_masks_learnt_values_and_credential_shapes() -> None:
    from esimctl.providers.kit.http import Scrubber

    s = Scrubber(["client-secret-0123456789"])
    s.learn_header("Authorization", "Bearer tok-abcdefghijklmnop")
    s.learn_fields({"client_secret": "form-secret-9876", "page": "1"})
    text = s(
        "Authorization: Bearer tok-abcdefghijklmnop; token tok-abcdefghijklmnop; "
        "body client_secret=form-secret-9876&page=1; other Bearer someone.elses.token.123; "
        "key client-secret-0123456789; cut client-secret-01234"
    )
    for secret in ("tok-abcdefghijklmnop", "form-secret-9876", "someone.elses", "0123456789"):
        assert secret not in text, text
    assert "page=1" in text  # what is no secret stays
    assert s("Unauthorized: invalid token, please generate a new one") == (
        "Unauthorized: invalid token, please generate a new one"
    )


# -- 6c. private files ---------------------------------------------------------------------------


def _created(root: Path) -> list[Path]:
    return [root, *root.rglob("*")]


def _not_private(root: Path) -> list[str]:
    bad = []
    for p in _created(root):
        if p.is_symlink():
            continue
        want = 0o700 if p.is_dir() else 0o600
        if _mode(p) != want:
            bad.append(f"{p.relative_to(root.parent)} {oct(_mode(p))}")
    return bad


def test_everything_created_is_private_whatever_the_umask(tmp_path: Path) -> None:
    home = tmp_path / "deep" / "esimctl-home"  # parents made by esimctl too
    r = esimctl(home, "--demo", "status", umask=0o022)
    assert r.returncode == 0, r.stderr
    r = esimctl(home, "--demo", "renew", "--auto", "--yes", umask=0o022)
    assert r.returncode in (0, 5), r.stderr
    assert (home / "cache" / "demo-profile" / "data" / "ledger.sqlite3").exists()
    assert _not_private(tmp_path / "deep") == []


def test_private_without_main_s_umask_too(
    cli: Cli, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In-process ``run`` sets no umask: the helpers alone make everything private."""
    old = os.umask(0o022)
    try:
        assert cli("--demo", "status").exit_code == 0
        r = cli(
            "account", "add", "box", "--provider", "esimgo", "--store", "file",
            "--secrets-stdin", input="API_KEY=go-key-0123456789\n",
        )  # fmt: skip
        assert r.exit_code == 0, r
        assert cli("history", "--local").exit_code == 0
    finally:
        os.umask(old)
    assert (home / "data" / "ledger.sqlite3").exists()
    assert (home / "data" / "credentials" / "box.json").exists()
    assert _not_private(home) == []


def test_a_ledger_left_0644_by_an_older_esimctl_becomes_0600(cli: Cli, home: Path) -> None:
    assert cli("history", "--local").exit_code == 0
    ledger = home / "data" / "ledger.sqlite3"
    ledger.chmod(0o644)
    assert cli("history", "--local").exit_code == 0
    assert _mode(ledger) == 0o600


# -- 7. a ledger esimctl cannot trust ------------------------------------------------------------


@pytest.fixture
def ledger(home: Path) -> Path:
    """A real ledger, made by esimctl (in a process of its own, gone when this starts),
    with enough orders to span many pages."""
    assert esimctl(home, "history", "--local").returncode == 0
    path = home / "data" / "ledger.sqlite3"
    with sqlite3.connect(path) as con:
        for i in range(200):
            con.execute(
                "INSERT INTO orders (id, account, provider, created_at, updated_at, state, "
                "detail) VALUES (?, 'trip', 'demo', '2026-11-01T00:00:00Z', "
                "'2026-11-01T00:00:00Z', 'completed', ?)",
                (f"L{i:015d}", '{"pad": "' + "x" * 500 + '"}'),
            )
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    wal = path.with_name("ledger.sqlite3-wal")
    assert not wal.exists() or wal.stat().st_size == 0  # all in the file itself
    return path


def _one_line_error(r: Any, path: Path | None = None) -> str:
    """The error line; with ``path``: checked to name it, and returned without it (the
    test's own name is in its tmp path)."""
    lines: list[str] = r.stderr.strip().splitlines()
    assert lines and lines[0].startswith("error: "), r
    assert "unexpected" not in r.stderr and "Traceback" not in r.stderr, r
    if path is None:
        return lines[0]
    assert str(path) in lines[0], r
    return lines[0].replace(str(path), "LEDGER")


def test_a_file_that_is_not_sqlite_is_refused_untouched(cli: Cli, home: Path) -> None:
    path = home / "data" / "ledger.sqlite3"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"these are my notes, not a database\n" * 10)
    before = _digest(path)
    r = cli("history", "--local", "--json")
    assert r.exit_code == 1, r
    line = _one_line_error(r, path)
    assert "not an SQLite database" in line
    assert "move it aside" in line and "starts a new one" in line
    assert "missing from 'esimctl history'" in r.stderr  # what the user loses
    assert r.json["errors"][0]["code"] == "ledger_corrupt"
    assert _digest(path) == before
    assert not path.with_name("ledger.sqlite3-wal").exists()


def test_a_truncated_ledger_is_refused_untouched(cli: Cli, ledger: Path) -> None:
    data = ledger.read_bytes()
    ledger.write_bytes(data[: len(data) // 2])
    before = _digest(ledger)
    r = cli("history", "--local")
    assert r.exit_code == 1, r
    line = _one_line_error(r, ledger)
    assert "truncated" in line and "move it aside" in line
    assert _digest(ledger) == before


def test_a_damaged_page_is_a_ledger_error_not_unexpected(cli: Cli, ledger: Path) -> None:
    data = bytearray(ledger.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    for i in range(page * 2, page * 6):  # the first pages after the schema
        data[i] = 0xFF
    ledger.write_bytes(bytes(data))
    r = cli("history", "--local")
    assert r.exit_code == 1, r
    line = _one_line_error(r, ledger)
    assert "move it aside" in line


def test_an_sqlite_database_that_is_no_ledger_is_refused(cli: Cli, home: Path) -> None:
    path = home / "data" / "ledger.sqlite3"
    path.parent.mkdir(parents=True)
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY)")
    con.close()
    before = _digest(path)
    r = cli("history", "--local")
    assert r.exit_code == 1, r
    assert "not an esimctl ledger" in _one_line_error(r, path)
    assert _digest(path) == before


@pytest.mark.parametrize(
    "newer",
    ["INSERT INTO _migrations VALUES ('m999_from_the_future', '2030-01-01T00:00:00Z')",
     "PRAGMA user_version = 99"],
)  # fmt: skip
def test_a_ledger_of_a_newer_esimctl_is_refused_untouched(
    cli: Cli, ledger: Path, newer: str
) -> None:
    con = sqlite3.connect(ledger, isolation_level=None)
    con.execute("PRAGMA journal_mode=DELETE")  # no -wal left to hide a write in
    con.execute(newer)
    con.close()
    before = _digest(ledger)
    r = cli("status", "--json")  # status writes (caches, snapshots) when it may
    assert r.exit_code == 1, r
    line = _one_line_error(r, ledger)
    assert "newer esimctl" in line and "upgrade" in line
    assert r.json["errors"][0]["code"] == "ledger_too_new"
    assert _digest(ledger) == before
    with sqlite3.connect(ledger) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    con.close()


def test_the_ledger_records_its_schema_version(cli: Cli, ledger: Path) -> None:
    from esimctl.ledger import MIGRATIONS

    with sqlite3.connect(ledger) as con:
        assert con.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        con.execute("PRAGMA user_version = 0")  # as left by an esimctl before this one
    con.close()
    assert cli("history", "--local").exit_code == 0
    with sqlite3.connect(ledger) as con:
        assert con.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    con.close()


def test_a_ledger_locked_by_another_writer_is_retry_later(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert esimctl(home, "--demo", "status").returncode == 0
    path = home / "cache" / "demo-profile" / "data" / "ledger.sqlite3"
    holder = sqlite3.connect(path, isolation_level=None, timeout=0)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        r = esimctl(
            home, "--demo", "status", "--refresh", "--json",
            env={"ESIMCTL_TEST_LEDGER_BUSY_TIMEOUT": "0.5"},
        )  # fmt: skip
        took = time.monotonic() - started
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert r.returncode == 75, r.stderr
    assert "locked by another process" in r.stderr and str(path) in r.stderr
    assert "retry later" in r.stderr and "unexpected" not in r.stderr
    assert took < 20
    assert esimctl(home, "--demo", "status", "--refresh").returncode == 0  # released: fine


def test_the_busy_wait_is_bounded_and_set_only_by_the_test_launcher(tmp_path: Path) -> None:
    from esimctl.env import Env
    from esimctl.ledger import BUSY_TIMEOUT
    from launcher import seams

    assert BUSY_TIMEOUT <= 10
    environ = {"ESIMCTL_HOME": str(tmp_path), "ESIMCTL_TEST_LEDGER_BUSY_TIMEOUT": "0.5"}
    # esimctl itself reads no test variable: the product's own Env keeps the 10 s wait.
    assert Env.for_tests(environ=environ).hooks.ledger_busy_timeout is None
    assert Env.for_tests(environ=environ, **seams(environ)).hooks.ledger_busy_timeout == 0.5


def test_a_full_disk_is_a_ledger_full_error(tmp_path: Path) -> None:
    from esimctl.errors import EsimctlError
    from esimctl.ledger import Ledger, LedgerFull

    led = Ledger(tmp_path / "ledger.sqlite3")
    pages = led.db.execute("PRAGMA page_count").fetchone()[0]
    led.db.execute(f"PRAGMA max_page_count = {pages}")  # as if the disk were full
    with pytest.raises(LedgerFull) as info:
        led.add_order(
            account="trip", provider="demo", iccid="8981100000000000018", plan_id="p",
            plan="p", price=None, state="intent", detail={"pad": "x" * 100_000},
        )  # fmt: skip
    led.close()
    assert isinstance(info.value, EsimctlError) and info.value.exit_code == 1
    assert "disk is full" in info.value.message and str(tmp_path) in info.value.message
    assert isinstance(info.value, sqlite3.Error)  # callers catching sqlite3 errors still do


def test_a_raw_sqlite_error_anywhere_is_still_one_clear_line(
    cli: Cli, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from esimctl.ledger import Ledger

    assert cli("history", "--local").exit_code == 0

    def locked(self: Any, **kw: Any) -> Any:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(Ledger, "orders", locked)  # as a query outside ledger.py would
    r = cli("history", "--local")
    assert r.exit_code == 75, r
    assert "locked by another process" in _one_line_error(r)


# -- 8. smaller ----------------------------------------------------------------------------------

DEMO_RULES = """
[renewal.esims.Tokyo]
data_below = "500MB"
plan = "jp-1gb-3d"
{extra}
"""


@pytest.fixture
def demo_config(home: Path) -> Callable[[str], None]:
    def write(extra: str) -> None:
        profile = home / "cache" / "demo-profile"
        profile.mkdir(parents=True, exist_ok=True)
        (profile / "config.toml").write_text(DEMO_RULES.format(extra=extra), encoding="utf-8")

    return write


@pytest.mark.parametrize(
    ("key", "value"),
    [("trip_end", '"9999-12-31"'), ("trip_end", "9999-12-31"),
     ("trip_start", '"9999-12-31T23:00:00-05:00"'), ("trip_start", "0001-01-01T01:00:00+02:00")],
)  # fmt: skip
def test_a_date_beyond_the_calendar_is_a_config_error(
    cli: Cli, demo_config: Callable[[str], None], key: str, value: str
) -> None:
    demo_config(f"{key} = {value}")
    r = cli("--demo", "renew", "--auto", "--dry-run", "--yes")
    assert r.exit_code == 2, r
    line = _one_line_error(r)
    assert key in line and "out of range" in line and "9999-12-30" in line


def test_the_last_date_accepted_is_9999_12_30(cli: Cli, demo_config: Callable[[str], None]) -> None:
    demo_config('trip_end = "9999-12-30"')
    r = cli("--demo", "renew", "--auto", "--dry-run", "--yes")
    assert r.exit_code in (0, 5), r  # whatever the rules decide: no config error


@pytest.mark.parametrize("depth", [5_000, 100_000])
def test_deeply_nested_toml_is_a_config_error(
    cli: Cli, configure: Callable[[str], Path], depth: int
) -> None:
    path = configure("x = " + "[" * depth + "]" * depth + "\n")
    r = cli("status")
    assert r.exit_code == 2, r
    line = _one_line_error(r, path)
    assert "nested too deeply" in line
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("url", "problem"),
    [("http://127.0.0.1:99999", "invalid port"), ("http://127.0.0.1:0/", "invalid port"),
     ("https://api.example.invalid:/v1", "invalid port"), ("ftp://api.example.invalid", "https://"),
     ("https:///v1", "no host"), ("https://user:pw@api.example.invalid", "user name"),
     ("https://api.example .invalid", "spaces")],
)  # fmt: skip
def test_a_bad_base_url_is_one_line_at_load_and_at_add(
    cli: Cli, configure: Callable[[str], Path], url: str, problem: str
) -> None:
    path = configure(f'[accounts.trip]\nprovider = "esimgo"\nbase_url = "{url}"\n')
    r = cli("status", env=GO_KEY)
    assert r.exit_code == 2, r
    line = _one_line_error(r, path)
    assert "base_url" in line and problem in line
    path.unlink()
    r = cli(
        "account", "add", "trip", "--provider", "esimgo", "--base-url", url,
        "--secrets-stdin", input="API_KEY=go-key-0123456789\n",
    )  # fmt: skip
    assert r.exit_code == 2, r
    assert problem in _one_line_error(r)
    assert not path.exists()


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [("4.5", "USD", "4.50"), ("1.123456789012345678", "USD", "1.12"), ("4.505", "USD", "4.51"),
     ("4.504999", "EUR", "4.50"), ("1480", "JPY", "1480"), ("1480.5", "JPY", "1481"),
     ("-0.001", "USD", "0.00"), ("1e-18", "USD", "0.00"), ("-1.405", "USD", "-1.41")],
)  # fmt: skip
def test_money_is_shown_in_minor_units_rounded_half_up(
    amount: str, currency: str, shown: str
) -> None:
    m = Money(Decimal(amount), currency)
    assert m.to_json() == {"amount": shown, "currency": currency}
    assert str(m) == f"{shown} {currency}"
    assert m.amount == Decimal(amount)  # only the text is rounded


def test_an_absurd_amount_is_shown_not_crashed_on() -> None:
    assert format_decimal(Decimal("1e308"), "USD").endswith("0.00")
    assert format_decimal(Decimal("NaN"), "USD") == "NaN"


def test_an_18_decimal_price_is_shown_in_cents_through_the_cli(
    cli: Cli, configure: Callable[[str], Path], airalo: FakeAiralo
) -> None:
    precise = Decimal("4.123456789012345678")
    op = airalo.catalogue[0]
    op.topups[0] = dataclasses.replace(op.topups[0], net_price=precise)
    assert isinstance(op.topups[0], Pkg)
    iccid = airalo.add_sim(op.packages[1].id).iccid
    configure(f'[accounts.trip]\nprovider = "airalo"\nbase_url = "{airalo.url}"\nretries = 0\n')
    r = cli("plans", iccid, "--json", env=AIRALO_ENV)
    assert r.exit_code == 0, r
    prices = {p["id"]: p["price"]["amount"] for p in r.json["data"]["plans"]}
    assert prices[op.topups[0].id] == "4.12", prices
    table = cli("plans", iccid, env=AIRALO_ENV)
    assert "4.12" in table.stdout and "4.1234" not in table.stdout
