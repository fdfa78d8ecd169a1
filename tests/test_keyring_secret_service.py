"""The credential round trip against a real Secret Service (gnome-keyring on D-Bus).

scripts/test.sh runs the suite inside ``dbus-run-session`` with gnome-keyring unlocked and
sets ESIMCTL_TEST_SECRET_SERVICE=1. Outside it (a laptop without gnome-keyring) these tests
skip; under CI they must run, so there a missing service is a failure, never a skip.
"""

from __future__ import annotations

import contextlib
import json
import os

import keyring
import pytest

pytestmark = pytest.mark.secret_service

SECRET = "ss-secret-9f2c"


@pytest.fixture
def secret_service():
    if os.environ.get("ESIMCTL_TEST_SECRET_SERVICE") != "1":
        if os.environ.get("CI"):
            pytest.fail("CI must run the Secret Service tests: run them through scripts/test.sh")
        pytest.skip("no Secret Service here: scripts/test.sh runs these under dbus-run-session")
    from keyring.backends.SecretService import Keyring

    kr = Keyring()
    assert kr.priority > 0  # raises or is 0 when no service answers
    keyring.set_keyring(kr)
    yield kr
    for user in ("trip", "trip#token"):
        with contextlib.suppress(keyring.errors.PasswordDeleteError):
            kr.delete_password("esimctl", user)


def test_round_trip_through_the_cli(cli, secret_service, home):
    r = cli(
        "account",
        "add",
        "trip",
        "--provider",
        "airalo",
        "--secrets-stdin",
        input=f"CLIENT_ID=cid\nCLIENT_SECRET={SECRET}\n",
    )
    assert r.exit_code == 0, r
    assert "SecretService" in r.stdout
    # Really in the Secret Service, under SPEC's service name, one entry per account.
    stored = json.loads(secret_service.get_password("esimctl", "trip"))
    assert stored == {"CLIENT_ID": "cid", "CLIENT_SECRET": SECRET}
    assert SECRET not in (home / "config.toml").read_text()

    listed = cli("account", "list", "--json").json["data"]["accounts"][0]
    assert all("SecretService" in s["source"] for s in listed["secrets"])
    assert SECRET not in json.dumps(listed)

    from esimctl.env import Env

    env = Env.for_tests(environ={"ESIMCTL_HOME": str(home)})
    assert env.credentials.resolve("trip", "airalo", ("CLIENT_ID", "CLIENT_SECRET")) == stored

    assert cli("account", "remove", "trip", "--yes").exit_code == 0
    assert secret_service.get_password("esimctl", "trip") is None


def test_environment_overrides_the_secret_service(cli, secret_service, home):
    secret_service.set_password(
        "esimctl", "trip", json.dumps({"CLIENT_ID": "kr", "CLIENT_SECRET": "kr"})
    )
    from esimctl.env import Env

    env = Env.for_tests(environ={"ESIMCTL_HOME": str(home), "ESIMCTL_TRIP_CLIENT_ID": "env"})
    got = env.credentials.resolve("trip", "airalo", ("CLIENT_ID", "CLIENT_SECRET"))
    assert got == {"CLIENT_ID": "env", "CLIENT_SECRET": "kr"}


def test_the_test_keyring_lives_in_a_throwaway_home(secret_service):
    """scripts/with-keyring.sh gives gnome-keyring its own HOME: the developer's login
    keyring under the real one is never created, opened or unlocked by the tests."""
    real = os.environ.get("ESIMCTL_TEST_REAL_HOME")
    assert real is not None, "run through scripts/with-keyring.sh"
    home = os.environ["HOME"]
    assert os.path.realpath(home) != os.path.realpath(real or "/nonexistent")
    assert os.path.isdir(os.path.join(os.environ["XDG_DATA_HOME"], "keyrings"))
    assert os.path.realpath(os.environ["XDG_DATA_HOME"]).startswith(os.path.realpath(home))
