"""Accounts, credentials and config: secrets in the keyring, never in output or config."""

import json
import os
import stat

import pytest

SECRET = "s3cr3t-value-never-shown"


def _add_airalo(cli, name="trip", extra=()):
    return cli(
        "account",
        "add",
        name,
        "--provider",
        "airalo",
        "--secrets-stdin",
        *extra,
        input=f"CLIENT_ID=id-123\nCLIENT_SECRET={SECRET}\n",
    )


def test_add_stores_secrets_in_the_keyring_not_config(cli, home, memory_keyring):
    r = _add_airalo(cli)
    assert r.exit_code == 0, r
    stored = json.loads(memory_keyring.store[("esimctl", "trip")])
    assert stored == {"CLIENT_ID": "id-123", "CLIENT_SECRET": SECRET}
    text = (home / "config.toml").read_text()
    assert 'provider = "airalo"' in text and SECRET not in text and "id-123" not in text
    assert SECRET not in r.stdout + r.stderr


def test_add_reads_bare_values_in_field_order(cli, memory_keyring):
    r = cli("account", "add", "go", "--provider", "esimgo", "--secrets-stdin", input="key-1\n")
    assert r.exit_code == 0, r
    assert json.loads(memory_keyring.store[("esimctl", "go")]) == {"API_KEY": "key-1"}


def test_add_prompts_on_a_terminal(cli, memory_keyring):
    r = cli("account", "add", "go", "--provider", "esimgo", tty=True, input="key-2\n")
    assert r.exit_code == 0, r
    assert json.loads(memory_keyring.store[("esimctl", "go")]) == {"API_KEY": "key-2"}
    assert "key-2" not in r.stdout + r.stderr


def test_add_without_terminal_or_stdin_flag_exits_2(cli, home):
    r = cli("account", "add", "go", "--provider", "esimgo")
    assert r.exit_code == 2 and "--secrets-stdin" in r.stderr
    assert not (home / "config.toml").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["account", "add", "bad name", "--provider", "airalo"], "invalid account name"),
        (["account", "add", "x", "--provider", "nokia"], "unknown provider 'nokia'"),
        (["account", "add", "x", "--provider", "airalo", "--base-url", "ftp://x"], "base_url"),
        (["account", "add", "x", "--provider", "airalo", "--store", "floppy"], "invalid --store"),
        (["account", "test", "ghost"], "unknown account 'ghost'"),
        (["account", "remove", "ghost", "--yes"], "unknown account 'ghost'"),
    ],
)
def test_account_bad_input(cli, home, args, message):
    r = cli(*args, input="a\nb\n")
    assert r.exit_code == 2, r
    assert message in r.stderr
    assert not (home / "config.toml").exists()


def test_add_twice_needs_replace(cli):
    assert _add_airalo(cli).exit_code == 0
    r = _add_airalo(cli)
    assert r.exit_code == 2 and "--replace" in r.stderr
    assert _add_airalo(cli, extra=["--replace"]).exit_code == 0


def test_missing_secret_field_is_refused_and_nothing_written(cli, home, memory_keyring):
    r = cli(
        "account",
        "add",
        "trip",
        "--provider",
        "airalo",
        "--secrets-stdin",
        input="CLIENT_ID=only\n",
    )
    assert r.exit_code == 2 and "CLIENT_SECRET" in r.stderr
    assert memory_keyring.store == {}
    assert not (home / "config.toml").exists()


def test_list_shows_where_secrets_live_never_the_secret(cli):
    _add_airalo(cli)
    r = cli("account", "list", "--json", env={"ESIMCTL_TRIP_CLIENT_ID": "from-env"})
    assert r.exit_code == 0
    acc = r.json["data"]["accounts"][0]
    sources = {s["field"]: s["source"] for s in acc["secrets"]}
    assert sources["CLIENT_ID"] == "env ESIMCTL_TRIP_CLIENT_ID"
    assert sources["CLIENT_SECRET"].startswith("keyring")
    assert SECRET not in r.stdout and "from-env" not in r.stdout
    table = cli("account", "list", tty=True, env={"NO_COLOR": "1"})
    assert "trip" in table.stdout and SECRET not in table.stdout


def test_missing_credentials_exit_4_naming_both_fixes(cli, configure):
    configure('[accounts.trip]\nprovider = "airalo"\nbase_url = "http://127.0.0.1:9"\n')
    r = cli("status")
    assert r.exit_code == 4, r
    line = r.stderr.strip().splitlines()[0]
    assert "esimctl account add trip --provider airalo" in line
    assert "ESIMCTL_TRIP_CLIENT_ID" in line and "ESIMCTL_TRIP_CLIENT_SECRET" in line
    r = cli("status", "--json")
    assert r.json["status"] == "error" and r.json["errors"][0]["code"] == "credentials_missing"
    assert r.json["errors"][0]["account"] == "trip"


def test_env_var_names_follow_the_spec(cli, configure):
    from esimctl.credentials import env_var

    assert env_var("trip", "CLIENT_ID") == "ESIMCTL_TRIP_CLIENT_ID"
    assert env_var("jp-card.2", "API_KEY") == "ESIMCTL_JP_CARD_2_API_KEY"


def test_file_store_is_0600_and_opt_in(cli, home):
    r = cli(
        "account",
        "add",
        "srv",
        "--provider",
        "esimgo",
        "--store",
        "file",
        "--secrets-stdin",
        input="API_KEY=k\n",
    )
    assert r.exit_code == 0, r
    path = home / "data" / "credentials" / "srv.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert 'credential_store = "file"' in (home / "config.toml").read_text()
    os.chmod(path, 0o644)
    r = cli("account", "test", "srv")
    assert r.exit_code == 4 and "chmod 600" in r.stderr


def test_remove_deletes_secrets_and_config_entry(cli, home, memory_keyring):
    _add_airalo(cli)
    r = cli("account", "remove", "trip")
    assert r.exit_code == 2  # no terminal and no --yes
    r = cli("account", "remove", "trip", "--yes")
    assert r.exit_code == 0, r
    assert memory_keyring.store == {}
    assert "trip" not in (home / "config.toml").read_text()


def test_keyring_that_hangs_is_bounded(cli, configure):
    import keyring

    class Hanging(keyring.backend.KeyringBackend):
        priority = 1  # type: ignore[assignment]

        def get_password(self, service, username):
            import time

            time.sleep(2)

        def set_password(self, *a):
            raise NotImplementedError

        def delete_password(self, *a):
            raise NotImplementedError

    keyring.set_keyring(Hanging())
    configure('[accounts.go]\nprovider = "esimgo"\n')
    r = cli("status", env={"ESIMCTL_TEST_KEYRING_TIMEOUT": "0.2"})
    assert r.exit_code == 4
    assert "did not answer" in r.stderr and "ESIMCTL_GO_API_KEY" in r.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[accounts.trip\nprovider = 1", "line 1"),
        ('[accounts.trip]\nbase_url = "http://x"\n', "needs provider"),
        ('[accounts."bad name"]\nprovider = "airalo"\n', "invalid account name"),
        ('[accounts.trip]\nprovider = "airalo"\nclient_secret = "x"\n', "looks like a secret"),
        ('[attention]\nlow_data = "lots"\n', "invalid size"),
    ],
)
def test_bad_config_is_one_line_naming_the_file(cli, configure, text, message):
    path = configure(text)
    r = cli("status")
    assert r.exit_code == 2, r
    assert str(path) in r.stderr and message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_unknown_account_lists_valid_ones(cli, configure):
    configure('[accounts.trip]\nprovider = "demo"\n[accounts.home]\nprovider = "demo"\n')
    r = cli("status", "--account", "work")
    assert r.exit_code == 2 and "home, trip" in r.stderr


def test_version_and_help(cli):
    from esimctl import __version__

    assert cli("--version").stdout.strip() == f"esimctl {__version__}"
    r = cli("--help")
    assert r.exit_code == 0 and "Examples" in r.stdout
    assert cli().exit_code == 0  # bare esimctl shows help
