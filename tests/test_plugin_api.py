"""The plugin API (docs/providers/plugins.md) is enough to write a provider: the example
plugin in ``tests/plugins/example_plugin``, written from that page alone, is registered
through the entry-point group like an installed package and answers ``status``, ``plans``,
``renew`` and ``history`` like a built-in. A plugin for a newer API version, or one taking
a built-in's id, is refused in one line (exit 2), never with a traceback.

Registration is real: a ``*.dist-info`` directory with an ``entry_points.txt`` on
``sys.path``, found by ``importlib.metadata``; only the registry's cache is cleared.
"""

from __future__ import annotations

import importlib
import json
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from esimctl.errors import ConfigError, ExitCode
from esimctl.providers import registry
from esimctl.providers.base import PROVIDER_API_VERSION

PLUGINS = Path(__file__).resolve().parent / "plugins"
SIM = "8935100000000000017"
API_KEY = "em-key-0123456789"
MB = 1000**2

Install = Callable[..., Path]


@pytest.fixture
def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Install]:
    """``install(package, {"id": "module:Class"}, modules={"name": "source"})``: declare
    entry points in a distribution of their own, as ``pip install`` would."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.syspath_prepend(str(PLUGINS))
    added: list[str] = []

    def declare(
        package: str, entries: dict[str, str], modules: dict[str, str] | None = None
    ) -> Path:
        info = site / f"{package.replace('-', '_')}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {package}\nVersion: 1.0\n", encoding="utf-8"
        )
        lines = "".join(f"{k} = {v}\n" for k, v in entries.items())
        (info / "entry_points.txt").write_text(f"[{registry.GROUP}]\n{lines}", encoding="utf-8")
        for name, source in (modules or {}).items():
            (site / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
            added.append(name)
        importlib.invalidate_caches()
        registry.clear_cache()
        return site

    registry.clear_cache()
    yield declare
    registry.clear_cache()
    for name in added:
        sys.modules.pop(name, None)


@pytest.fixture
def examplemobile(install: Install, tmp_path: Path) -> Path:
    """The example plugin installed, and its seller's simulated servers; returns the
    seller's file."""
    from example_plugin import seller

    install("esimctl-examplemobile", {"examplemobile": "example_plugin:ExampleMobileProvider"})
    return seller.new_seller(tmp_path / "seller.json", API_KEY)


def _add_account(cli, seller_file: Path):
    return cli(
        "account",
        "add",
        "em",
        "--provider",
        "examplemobile",
        "--set",
        f"seller_file={seller_file}",
        "--secrets-stdin",
        input=f"API_KEY={API_KEY}\n",
    )


def _one_line_error(r) -> str:
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, r
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r
    return lines[0]


# -- the example plugin, through the CLI ---------------------------------------------------


def test_example_plugin_is_listed_and_loaded(examplemobile):
    assert "examplemobile" in registry.provider_ids()
    cls = registry.load("examplemobile")
    assert cls.__name__ == "ExampleMobileProvider" and cls.id == "examplemobile"


def test_account_add_runs_the_plugins_option_check(cli, examplemobile, memory_keyring):
    r = cli("account", "add", "em", "--provider", "examplemobile", "--secrets-stdin", input="x\n")
    assert r.exit_code == ExitCode.USAGE, r
    assert "seller_file" in _one_line_error(r)

    r = _add_account(cli, examplemobile)
    assert r.exit_code == 0, r
    assert ("esimctl", "em") in memory_keyring.store  # the secret went to the keyring
    r = cli("account", "test", "em", "--json")
    assert r.exit_code == 0, r
    assert r.json["data"]["detail"] == "1 eSIM(s)"


def test_status_plans_renew_history_through_the_plugin(cli, examplemobile, memory_keyring):
    assert _add_account(cli, examplemobile).exit_code == 0

    r = cli("status", "--json")
    assert r.exit_code == 0, r
    (esim,) = r.json["data"]["esims"]
    assert esim["account"] == "em" and esim["provider"] == "examplemobile"
    assert esim["iccid"] == SIM and esim["label"] == "Lisbon" and esim["state"] == "active"
    # ExampleMobile counts decimal MB: 3000 MB with 2550 used.
    assert esim["data_total_bytes"] == 3000 * MB
    assert esim["data_remaining_bytes"] == 450 * MB
    assert esim["data_used_bytes"] == 2550 * MB
    assert {"low_data", "expiring_soon"} <= set(esim["attention"])

    r = cli("plans", "Lisbon", "--json")
    assert r.exit_code == 0, r
    plans = {p["id"]: p for p in r.json["data"]["plans"]}
    assert set(plans) == {"em-1gb-7d", "em-3gb-30d"}
    one = plans["em-1gb-7d"]
    assert one["price"] == {"amount": "4.50", "currency": "EUR"}
    assert one["data_bytes"] == 1000 * MB and one["validity_days"] == 7
    assert one["kind"] == "topup" and one["provider"] == "examplemobile"

    r = cli("renew", "Lisbon", "--plan", "em-1gb-7d", "--yes", "--json")
    assert r.exit_code == 0, r
    assert r.json["data"]["applied"] is True
    order = r.json["data"]["order"]
    assert order["state"] == "completed"
    assert order["price"] == {"amount": "4.50", "currency": "EUR"}

    # The seller saw exactly one purchase, carrying esimctl's reference.
    sold = json.loads(examplemobile.read_text(encoding="utf-8"))
    (purchase,) = sold["purchases"]
    assert purchase["client_ref"].startswith("esimctl-")
    assert sold["wallet_cents"] == 5000 - 450
    assert order["id"] == purchase["purchase_id"]

    r = cli("history", "--local", "--json")
    assert r.exit_code == 0, r
    (row,) = r.json["data"]["orders"]
    assert row["id"] == purchase["purchase_id"]
    assert (row["account"], row["provider"], row["iccid"]) == ("em", "examplemobile", SIM)
    assert row["plan_id"] == "em-1gb-7d" and row["plan"] == "Portugal 1 GB · 7 days"
    assert row["state"] == "completed" and row["source"] == "local"
    assert row["price"] == {"amount": "4.50", "currency": "EUR"}
    assert r.json["data"]["totals"] == [{"amount": "4.50", "currency": "EUR"}]

    # The seller's own record of it (orders()) is the same row, matched by reference.
    r = cli("history", "--json")
    assert r.exit_code == 0, r
    assert [o["id"] for o in r.json["data"]["orders"]] == [purchase["purchase_id"]]

    r = cli("status", "--json")
    assert r.exit_code == 0, r
    (esim,) = r.json["data"]["esims"]
    assert esim["data_total_bytes"] == 4000 * MB
    assert esim["data_remaining_bytes"] == 1450 * MB
    assert "low_data" not in esim["attention"]


# -- the API version -------------------------------------------------------------------------

FUTURE = """
from typing import ClassVar

from example_plugin import ExampleMobileProvider


class FutureMobile(ExampleMobileProvider):
    id: ClassVar[str] = "futuremobile"
    display_name: ClassVar[str] = "FutureMobile"
    api_version: ClassVar[int] = 99
"""


def test_a_plugin_for_a_newer_api_version_is_refused(cli, install, configure):
    install(
        "esimctl-futuremobile",
        {"futuremobile": "future_mobile:FutureMobile"},
        modules={"future_mobile": FUTURE},
    )
    with pytest.raises(ConfigError) as caught:
        registry.load("futuremobile")
    message = caught.value.message
    assert "future_mobile:FutureMobile" in message and "esimctl-futuremobile" in message
    assert "99" in message and f"supports version {PROVIDER_API_VERSION}" in message

    r = cli("account", "add", "fm", "--provider", "futuremobile", "--secrets-stdin", input="")
    assert r.exit_code == ConfigError.exit_code == ExitCode.USAGE, r
    line = _one_line_error(r)
    assert "futuremobile" in line and "99" in line

    configure('[accounts.fm]\nprovider = "futuremobile"\n')
    r = cli("status")
    assert r.exit_code == ExitCode.USAGE, r
    assert "99" in _one_line_error(r)
    r = cli("status", "--json")
    assert r.exit_code == ExitCode.USAGE, r
    assert [e["code"] for e in r.json["errors"]] == ["config_invalid"]


def test_a_plugin_without_api_version_is_version_1(install):
    plain = """
    from esimctl.providers.base import Provider


    class Plain(Provider):
        id = "plainmobile"
        display_name = "Plain"
    """
    install("esimctl-plain", {"plainmobile": "plain_mobile:Plain"}, modules={"plain_mobile": plain})
    assert registry.load("plainmobile").__name__ == "Plain"


# -- a built-in's id ---------------------------------------------------------------------------

IMPOSTOR = """
from esimctl.providers.base import Capability, Provider


class Airalo(Provider):
    id = "airalo"
    display_name = "Not Airalo"
    capabilities = frozenset({Capability.LIST_ESIMS})

    async def list_esims(self):
        return []

    async def check(self):
        return "the plugin answered"
"""


def test_a_plugin_taking_a_builtin_id_is_refused_unless_allowed(
    cli, install, configure, monkeypatch
):
    install(
        "esimctl-impostor",
        {"airalo": "impostor:Airalo"},
        modules={"impostor": IMPOSTOR},
    )
    assert registry.provider_ids().count("airalo") == 1
    assert registry.load("demo").__name__ == "DemoProvider"  # other ids are untouched
    with pytest.raises(ConfigError) as caught:
        registry.load("airalo")
    assert caught.value.message.startswith(
        "plugin impostor:Airalo from package esimctl-impostor registers the id 'airalo' of a "
        "built-in provider;"
    )
    assert "ESIMCTL_ALLOW_PLUGIN_OVERRIDE=airalo" in caught.value.message

    configure('[accounts.trip]\nprovider = "airalo"\n')
    r = cli("account", "test", "trip")
    assert r.exit_code == ExitCode.USAGE, r
    line = _one_line_error(r)
    assert "esimctl-impostor" in line and "'airalo'" in line
    r = cli("status")
    assert r.exit_code == ExitCode.USAGE, r
    _one_line_error(r)

    # Another id named in the variable does not let this one through.
    r = cli("account", "test", "trip", env={registry.OVERRIDE_VAR: "esimgo"})
    assert r.exit_code == ExitCode.USAGE, r

    r = cli("account", "test", "trip", "--json", env={registry.OVERRIDE_VAR: "esimgo, airalo"})
    assert r.exit_code == 0, r
    assert r.json["data"]["detail"] == "the plugin answered"
    monkeypatch.setenv(registry.OVERRIDE_VAR, "airalo")
    assert registry.load("airalo").__name__ == "Airalo"
    assert registry.load("airalo").display_name == "Not Airalo"


def test_esimctls_own_entry_points_are_not_plugins():
    registry.clear_cache()
    assert not [p for p in registry._plugins() if p.id in registry.BUILTINS]
    for pid in registry.BUILTINS:
        assert registry.load(pid).id == pid


def test_two_packages_with_one_plugin_id_are_refused(install):
    install("esimctl-one", {"twinmobile": "example_plugin:ExampleMobileProvider"})
    install("esimctl-two", {"twinmobile": "other_twin:Twin"})
    with pytest.raises(ConfigError) as caught:
        registry.load("twinmobile")
    message = caught.value.message
    assert "esimctl-one" in message and "esimctl-two" in message and "'twinmobile'" in message


def test_a_plugin_that_cannot_be_imported_is_one_line(cli, install, configure):
    install(
        "esimctl-broken",
        {"brokenmobile": "broken_mobile:Broken"},
        modules={"broken_mobile": "raise RuntimeError('boom at import')\n"},
    )
    configure('[accounts.b]\nprovider = "brokenmobile"\n')
    r = cli("status")
    assert r.exit_code == ExitCode.USAGE, r
    line = _one_line_error(r)
    assert "esimctl-broken" in line and "RuntimeError: boom at import" in line
