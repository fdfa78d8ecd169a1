"""What a new user ran into in exploratory testing, each pinned by a test."""

from __future__ import annotations

import os

import keyring
import pytest

from fakes.airalo import FakeAiralo
from test_provider_airalo import CREDS


def test_a_keyring_that_forgets_is_not_taken_for_one(cli, home):
    from keyring.backends.null import Keyring as NullKeyring

    keyring.set_keyring(NullKeyring())
    r = cli(
        "account",
        "add",
        "trip",
        "--provider",
        "airalo",
        "--secrets-stdin",
        input="CLIENT_ID=a\nCLIENT_SECRET=b\n",
    )
    assert r.exit_code == 4, r
    assert "--store file" in r.stderr and "ESIMCTL_TRIP_CLIENT_ID" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (home / "config.toml").exists()


def test_replace_keeps_the_settings_it_is_not_given(cli, home):
    add = ("account", "add", "trip", "--provider", "airalo", "--secrets-stdin")
    first = cli(
        *add,
        "--store",
        "file",
        "--base-url",
        "http://127.0.0.1:9",
        input="CLIENT_ID=a\nCLIENT_SECRET=b\n",
    )
    assert first.exit_code == 0, first
    again = cli(*add, "--replace", input="CLIENT_ID=c\nCLIENT_SECRET=d\n")
    assert again.exit_code == 0, again
    text = (home / "config.toml").read_text()
    assert 'base_url = "http://127.0.0.1:9"' in text and 'credential_store = "file"' in text
    assert '"CLIENT_ID": "c"' in (home / "data" / "credentials" / "trip.json").read_text()


def test_the_access_token_outlives_the_run_without_a_keyring(cli, configure):
    from keyring.backends.null import Keyring as NullKeyring

    keyring.set_keyring(NullKeyring())
    with FakeAiralo() as fake:
        assert isinstance(fake, FakeAiralo)
        fake.add_sim("elan-7days-1gb", remaining_mb=100)
        configure(f'[accounts.trip]\nprovider = "airalo"\nbase_url = "{fake.url}"\n')
        for _ in range(4):  # more than the 3 token calls a minute Airalo allows
            assert cli("status", "--refresh", env=CREDS).exit_code == 0
        assert len(fake.requests_to("POST", "/v2/token")) == 1
    tokens = os.environ["ESIMCTL_HOME"] + "/state/tokens/trip#token.json"
    assert oct(os.stat(tokens).st_mode & 0o777) == "0o600"
    assert cli("account", "remove", "trip", "--yes").exit_code == 0
    assert not os.path.exists(tokens)


def test_check_ignores_an_eSIM_that_expired_long_ago(cli):
    assert cli("--demo", "status", "Seoul", "--check").exit_code == 0
    assert cli("--demo", "status", "Tokyo", "--check").exit_code == 8


def test_naming_an_eSIM_on_a_failing_account_reports_the_failure(cli, configure):
    configure('[accounts.trip]\nprovider = "airalo"\nbase_url = "http://127.0.0.1:9"\n')
    r = cli("status", "8944465400000000002")
    assert r.exit_code == 4, r  # no credentials: the real cause, not "no eSIM named"
    assert "no eSIM named" not in r.stderr


def test_unlimited_stays_unlimited_after_a_data_topup(cli):
    assert cli("--demo", "renew", "Europe", "--plan", "eu-5gb-15d", "--yes").exit_code == 0
    europe = next(
        e for e in cli("--demo", "status", "--json").json["data"]["esims"] if e["label"] == "Europe"
    )
    assert europe["unlimited"] is True and europe["data_remaining_bytes"] is None


@pytest.mark.parametrize(("value", "ok"), [("30s", True), ("0m", True), ("20", False)])
def test_timeouts_take_seconds_too(cli, value, ok):
    r = cli("--demo", "renew", "Tokyo", "--plan", "jp-1gb-3d", "--dry-run", "--timeout", value)
    assert (r.exit_code == 0) is ok, r


def test_a_size_without_a_unit_is_refused(cli):
    r = cli("--demo", "plans", "Tokyo", "--min-data", "3")
    assert r.exit_code == 2 and "give a unit" in r.stderr


def test_a_path_that_cannot_be_written_is_one_line_naming_it(cli, home):
    home.mkdir(parents=True, exist_ok=True)
    (home / "data").write_text("a file where esimctl wants its data dir")
    r = cli(
        "account",
        "add",
        "go",
        "--provider",
        "esimgo",
        "--store",
        "file",
        "--secrets-stdin",
        input="API_KEY=k\n",
    )
    assert r.exit_code == 1, r
    assert str(home / "data") in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (home / "config.toml").exists()


def test_a_manual_esim_label_must_be_free_and_not_digits(cli):
    cli("--demo", "status")  # the demo's eSIMs are known now: Tokyo among them
    add = ("--demo", "account", "add", "jp", "--provider", "manual")
    assert cli(*add).exit_code == 0
    esim = (
        "--demo",
        "esim",
        "add",
        "jp",
        "--iccid",
        "8981000000000000446",
        "--data",
        "3GB",
        "--days",
        "7",
        "--label",
    )
    taken = cli(*esim, "Tokyo")
    assert taken.exit_code == 2 and "taken" in taken.stderr
    digits = cli(*esim, "0446")
    assert digits.exit_code == 2 and "digits" in digits.stderr
    assert cli(*esim, "Osaka").exit_code == 0


def test_two_manual_esims_cannot_share_a_label(cli):
    assert cli("account", "add", "jp", "--provider", "manual").exit_code == 0
    esim = ("esim", "add", "jp", "--data", "3GB", "--days", "7", "--label", "Osaka", "--iccid")
    assert cli(*esim, "8981000000000000446").exit_code == 0
    second = cli(*esim, "8981000000000000453")
    assert second.exit_code == 2 and "taken" in second.stderr
