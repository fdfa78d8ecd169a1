"""One config validator (issue 10, item 11): every table of config.toml is checked the same
way. Unknown keys, wrong types and out-of-range values are one line naming the file, the table
and the key, with the values accepted or the nearest valid name; exit 2; nothing is written."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ICCID = "8981100000000000018"
ATTENTION_KEYS = (
    "keys: low_data, low_data_percent, expiring_within, pending_overdue, runs_out_within"
)
TABLES = (
    'tables: [accounts.NAME], [esims."ICCID"], [attention], [network], [renewal], [notify], '
    "[calendar], [rates]"
)

Configure = Callable[[str], Path]


def refused_by(cli: Any, path: Path, *args: str) -> str:
    """Run a command (``status`` by default) on the config at ``path``: it must exit 2 with
    one error line naming the file. Returns that line without ``error: FILE: ``."""
    r = cli(*(args or ("status",)))
    assert r.exit_code == 2, r
    assert "Traceback" not in r.stderr and "unexpected" not in r.stderr, r
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r
    head = f"error: {path}: "
    assert lines[0].startswith(head), r
    return lines[0][len(head) :]


def refused(cli: Any, configure: Configure, text: str, *args: str) -> str:
    return refused_by(cli, configure(text), *args)


# -- the cases of the issue ----------------------------------------------------------------------


def test_a_misspelt_attention_key_is_named_with_the_nearest_key(cli, configure):
    said = refused(cli, configure, '[attention]\nlow_dat = "500MB"\n')
    assert said == f"[attention] unknown key 'low_dat' (did you mean low_data?); {ATTENTION_KEYS}"


def test_a_negative_low_data_percent_is_out_of_range(cli, configure):
    said = refused(cli, configure, "[attention]\nlow_data_percent = -5\n")
    assert said == "[attention] low_data_percent: expected a number from 0 to 100, like 10, got -5"


def test_low_data_percent_in_words_says_what_is_accepted(cli, configure):
    said = refused(cli, configure, '[attention]\nlow_data_percent = "ten"\n')
    assert "could not convert" not in said
    assert said == (
        '[attention] low_data_percent: expected a number from 0 to 100, like 10, got "ten"'
    )


def test_a_label_that_is_not_text_is_refused(cli, configure):
    said = refused(cli, configure, f'[esims."{ICCID}"]\nlabel = 5\n')
    assert said == (
        f'[esims."{ICCID}"] label: expected a name in quotes with a letter in it, '
        'like "Tokyo", got 5'
    )


def test_a_label_of_digits_is_refused(cli, configure):
    said = refused(cli, configure, f'[esims."{ICCID}"]\nlabel = "1234"\n')
    assert said == (
        f"[esims.\"{ICCID}\"] label: invalid label '1234': digits read as an ICCID; add a letter"
    )


def test_an_esims_table_not_named_by_an_iccid_is_refused(cli, configure):
    said = refused(cli, configure, '[esims."123"]\nlabel = "Tokyo"\n')
    assert said.startswith("[esims.\"123\"] '123' is not an ICCID (18 to 22 digits)")
    assert 'label = "..."' in said


def test_stacking_of_the_wrong_type_names_the_valid_values(cli, configure):
    said = refused(cli, configure, '[accounts.jp]\nprovider = "manual"\nstacking = 5\n')
    assert "give some text" not in said
    assert said == '[accounts.jp] stacking: expected "extend" or "restart", got 5'


# -- "did you mean" wherever a name is looked up --------------------------------------------------


def test_a_misspelt_choice_suggests_the_nearest_value(cli, configure):
    said = refused(cli, configure, '[accounts.jp]\nprovider = "manual"\nstacking = "extnd"\n')
    assert said == (
        '[accounts.jp] stacking: invalid stacking \'extnd\': use "extend" or "restart" '
        "(did you mean extend?)"
    )


def test_an_unknown_account_option_lists_that_providers_keys(cli, configure):
    said = refused(cli, configure, '[accounts.trip]\nprovider = "airalo"\ntimout = 30\n')
    assert said == (
        "[accounts.trip] unknown key 'timout' (did you mean timeout?); "
        "keys: provider, base_url, insecure_http, credential_store, timeout, retries"
    )


def test_another_providers_option_is_unknown_here(cli, configure):
    said = refused(cli, configure, '[accounts.home]\nprovider = "demo"\nseller = "Sakura"\n')
    assert said == (
        "[accounts.home] unknown key 'seller'; keys: provider, base_url, insecure_http, "
        "credential_store"
    )


def test_an_unknown_table_suggests_the_nearest_table(cli, configure):
    said = refused(cli, configure, '[netwrk]\ndeadline = "10s"\n')
    assert said == f"[netwrk] unknown table (did you mean [network]?); {TABLES}"


def test_a_key_outside_any_table_is_refused(cli, configure):
    said = refused(cli, configure, 'deadline = "10s"\n')
    assert said == f"deadline: a key outside any table; {TABLES}"


def test_renewal_keys_are_checked_by_every_command(cli, configure):
    said = refused(cli, configure, "[renewal]\nmax_per_dya = 2\n")
    assert said.startswith("[renewal] unknown key 'max_per_dya' (did you mean max_per_day?); ")
    assert "keys: data_below, expires_within, runs_out_within, plan, " in said


def test_an_odd_key_name_stays_on_one_line(cli, configure):
    said = refused(cli, configure, '[attention]\n"low\\ndata" = 1\n')
    assert (
        said == f"[attention] unknown key 'low\\ndata' (did you mean low_data?); {ATTENTION_KEYS}"
    )


@pytest.mark.parametrize("value", ['"0s"', '"2h"', '"61m"', "30"])
def test_the_network_deadline_is_from_1s_to_1h(cli, configure, value):
    said = refused(cli, configure, f"[network]\ndeadline = {value}\n")
    assert said == (
        f'[network] deadline: expected a duration from 1s to 1h in quotes, like "30s", got {value}'
    )


# -- wrong types and values, table by table -------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "said"),
    [
        (
            '[accounts.trip]\nprovider = "airalo"\nbase_url = 5\n',
            "[accounts.trip] base_url: expected an address in quotes, "
            'like "https://api.example.com", got 5',
        ),
        (
            '[accounts.trip]\nprovider = "airalo"\ninsecure_http = "maybe"\n',
            '[accounts.trip] insecure_http: expected true or false, got "maybe"',
        ),
        (
            '[accounts.trip]\nprovider = "airalo"\ncredential_store = 3\n',
            '[accounts.trip] credential_store: expected "keyring" or "file", got 3',
        ),
        (
            '[accounts.trip]\nprovider = "airalo"\ntimeout = 0\n',
            "[accounts.trip] timeout: expected a number of seconds above 0 and at most 600, got 0",
        ),
        (
            '[accounts.trip]\nprovider = "airalo"\nretries = 1.5\n',
            "[accounts.trip] retries: expected a whole number from 0 to 10, got 1.5",
        ),
        (
            '[accounts.trip]\nprovider = "airalo"\nretries = true\n',
            "[accounts.trip] retries: expected a whole number from 0 to 10, got true",
        ),
        (
            '[accounts.trip]\nprovider = "esimaccess"\nusage_times = 2\n',
            "[accounts.trip] usage_times: expected true or false, got 2",
        ),
        (
            '[accounts.trip]\nprovider = "esimgo"\nrate_limit = 0\n',
            "[accounts.trip] rate_limit: expected requests per second, above 0 and at most "
            "100000, got 0",
        ),
        (
            '[accounts.trip]\nprovider = "celitech"\nauth_style = 1\n',
            '[accounts.trip] auth_style: expected "post" or "basic", got 1',
        ),
        (
            '[accounts.trip]\nprovider = "celitech"\ncurrency = "dollars"\n',
            "[accounts.trip] currency: invalid currency 'dollars': use a 3-letter ISO 4217 code "
            "like USD",
        ),
        (
            '[accounts.jp]\nprovider = "manual"\nseller = 5\n',
            "[accounts.jp] seller: expected the seller's name in quotes, got 5",
        ),
        (
            '[accounts.jp]\nprovider = "manual"\nunit_base = 1020\n',
            "[accounts.jp] unit_base: expected 1024 or 1000, got 1020",
        ),
        (
            f'[esims."{ICCID}"]\nlabel = " "\n',
            f'[esims."{ICCID}"] label: expected a name in quotes with a letter in it, '
            'like "Tokyo", got " "',
        ),
        (
            f'[esims."{ICCID}"]\nname = "Tokyo"\n',
            f"[esims.\"{ICCID}\"] unknown key 'name'; keys: label",
        ),
        (f'[esims]\n"{ICCID}" = "Tokyo"\n', f'[esims."{ICCID}"] must be a table'),
        (
            "[attention]\nlow_data = 500\n",
            '[attention] low_data: expected a size in quotes, like "500MB", got 500',
        ),
        (
            "[attention]\nlow_data_percent = 101\n",
            "[attention] low_data_percent: expected a number from 0 to 100, like 10, got 101",
        ),
        (
            "[attention]\nexpiring_within = 2\n",
            '[attention] expiring_within: expected a duration in quotes, like "2d", got 2',
        ),
        (
            "[attention]\npending_overdue = true\n",
            '[attention] pending_overdue: expected a duration in quotes, like "30m", got true',
        ),
        ("network = 5\n", "[network] must be a table"),
        (
            "[renewal]\nplan = 5\n",
            '[renewal] plan: expected a plan id in quotes, like "jp-1gb-3d", got 5',
        ),
        (
            '[renewal]\nmin_days = "3"\n',
            '[renewal] min_days: expected a whole number of at least 1, got "3"',
        ),
        ('[renewal]\nenabled = "yes"\n', '[renewal] enabled: expected true or false, got "yes"'),
        (
            "[renewal]\nmax_price = 15\n",
            '[renewal] max_price: expected an amount in quotes, like "15 USD", got 15',
        ),
        (
            '[renewal.esims.Tokyo]\ndata_below = 500\nplan = "p"\n',
            "[renewal.esims.Tokyo] data_below: expected a size or a percentage in quotes, like "
            '"500MB" or "10%", or a list of both, got 500',
        ),
        ("[renewal.esims]\nTokyo = 5\n", "[renewal.esims.Tokyo] must be a table"),
    ],
)
def test_a_wrong_value_names_the_table_the_key_and_what_is_accepted(cli, configure, text, said):
    assert refused(cli, configure, text) == said


def test_every_documented_key_with_a_good_value_is_accepted(cli, configure):
    configure(
        f"""
        [accounts.a]
        provider = "airalo"
        base_url = "https://127.0.0.1:1"
        timeout = 20
        retries = 4
        [accounts.b]
        provider = "esimaccess"
        timeout = "20"
        retries = "0"
        rate_limit = 8
        usage_times = "false"
        insecure_http = false
        credential_store = "file"
        [accounts.c]
        provider = "esimgo"
        rate_limit = 10.5
        [accounts.d]
        provider = "celitech"
        requests_per_second = 50
        currency = "eur"
        auth_style = "basic"
        auth_url = "https://auth.example.com"
        [accounts.e]
        provider = "manual"
        seller = "Sakura"
        renew_url = "https://shop.example/renew"
        support = "wechat: sakura-help"
        stacking = "Restart"
        unit_base = "1000"
        [accounts.f]
        provider = "demo"
        [esims."{ICCID}"]
        label = "Tokyo"
        [attention]
        low_data = "1GB"
        low_data_percent = "12.5%"
        expiring_within = "3d"
        pending_overdue = "1h"
        [network]
        deadline = "1h"
        [renewal]
        monthly_budget = ["60 USD", "8000 JPY"]
        max_price = "15 USD"
        max_per_day = 2
        [renewal.esims.Tokyo]
        data_below = ["500MB", "10%"]
        expires_within = "1d"
        min_data = "1GB"
        min_days = 3
        currency = "USD"
        trip_start = 2026-12-01
        trip_end = "2026-12-14"
        """
    )
    r = cli("account", "list", "--json")
    assert r.exit_code == 0, r
    assert [a["name"] for a in r.json["data"]["accounts"]] == ["a", "b", "c", "d", "e", "f"]


def test_a_plugins_own_options_are_left_to_it_but_common_keys_are_checked(tmp_path):
    from esimctl.config import Config
    from esimctl.errors import ConfigError

    path = tmp_path / "config.toml"
    acc = Config(path, {"accounts": {"s": {"provider": "mysim", "region": "eu"}}}).account("s")
    assert acc.options == {"region": "eu"}
    with pytest.raises(ConfigError) as bad:
        Config(path, {"accounts": {"s": {"provider": "mysim", "insecure_http": "maybe"}}})
    assert bad.value.message == (
        f'{path}: [accounts.s] insecure_http: expected true or false, got "maybe"'
    )


def test_the_json_envelope_carries_the_config_error(cli, configure):
    path = configure("[attention]\nlow_data_percent = -5\n")
    r = cli("status", "--json")
    assert r.exit_code == 2, r
    assert r.json["status"] == "error"
    [err] = r.json["errors"]
    assert err["code"] == "config_invalid"
    assert err["message"] == (
        f"{path}: [attention] low_data_percent: expected a number from 0 to 100, like 10, got -5"
    )


# -- nothing is written -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("account", "add", "jp", "--provider", "manual", "--seller", "Sakura"),
        ("account", "remove", "trip"),
        ("account", "add", "trip", "--provider", "manual", "--replace", "--stacking", "extend"),
    ],
)
def test_a_bad_config_is_never_rewritten(cli, configure, args):
    text = '[accounts.trip]\nprovider = "manual"\nstacking = 5\n\n[attention]\nlow_dat = "1GB"\n'
    path = configure(text)
    before = path.read_bytes()
    said = refused_by(cli, path, *args)
    assert said == '[accounts.trip] stacking: expected "extend" or "restart", got 5'
    assert path.read_bytes() == before


def test_account_add_with_an_unknown_option_writes_nothing(cli, configure):
    path = configure('[accounts.trip]\nprovider = "manual"\n')
    before = path.read_bytes()
    said = refused_by(
        cli, path, "account", "add", "jp", "--provider", "manual", "--set", "stackng=extend"
    )
    assert said.startswith("[accounts.jp] unknown key 'stackng' (did you mean stacking?); keys: ")
    assert path.read_bytes() == before
    assert "jp" not in cli("account", "list").stdout


def test_renewal_table_names_keep_their_spelling_in_need_keys(tmp_path):
    """``Rule.name`` is part of the need key the ledger keeps: one validator for every table
    must not respell it (an ICCID stays bare, a name with a space stays quoted)."""
    from esimctl import rules
    from esimctl.config import Config

    rule = {"data_below": "1GB", "plan": "p"}
    raw = {"renewal": {"esims": {ICCID: rule, "my sim": rule, "Tokyo": rule}}}
    loaded = rules.load(Config(tmp_path / "config.toml", raw))
    assert [r.name for r in loaded.esims] == [
        f"renewal.esims.{ICCID}",
        'renewal.esims."my sim"',
        "renewal.esims.Tokyo",
    ]


def test_rates_are_checked(cli, configure):
    said = refused(cli, configure, '[rates]\nEURO = "1.08 USD"\n')
    assert said == (
        "[rates] EURO: not a currency code; name each rate by a 3-letter code, like "
        'EUR = "1.08 USD"'
    )
    said = refused(cli, configure, '[rates]\nEUR = "0 USD"\n')
    assert said.startswith("[rates] EUR: expected what one unit is worth in the common currency")
    said = refused(cli, configure, '[rates]\nEUR = "1.08 USD"\nCNY = "0.9 GBP"\n')
    assert said == "[rates] every rate must be in one common currency (found GBP, USD)"
