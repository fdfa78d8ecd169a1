"""Celitech API v1: the parsers fed the documented examples, then every command through
the CLI against the stateful fake (``tests/fakes/celitech.py``) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from esimctl.config import AccountConfig
from esimctl.errors import ConfigError, InvalidInput, NotSent, OutcomeUnknown
from esimctl.models import Esim, EsimState, Money, Plan
from esimctl.providers.base import ProviderContext, SecretCache
from esimctl.providers.celitech import CelitechProvider
from esimctl.providers.celitech.answers import (
    Consumption,
    Profile,
    Purchase,
    Size,
    build_esim,
    money_from_cents,
    parse_consumption,
    parse_date,
    parse_plan_id,
    parse_profile,
    parse_purchase,
    parse_size,
    plan_id_for,
    plans_from_packages,
)
from esimctl.providers.kit.concurrency import DEFAULT_CONCURRENCY
from esimctl.providers.kit.oauth import token_key
from fakes.celitech import CLIENT_ID, CLIENT_SECRET, FakeCelitech

GIB = 1024**3
ENV = {"ESIMCTL_TRIP_CLIENT_ID": CLIENT_ID, "ESIMCTL_TRIP_CLIENT_SECRET": CLIENT_SECRET}
TOPUP = "/v1/purchases/topup"

# -- the documented examples (reference note, section 2.5) ---------------------------------

PURCHASE_EXAMPLE = {
    "id": "4973fa15-6979-4daa-9cf3-672620df819c",
    "startDate": "2025-06-10T00:00:00+00:00",
    "endDate": "2025-06-17T23:59:59+00:00",
    "duration": 7,
    "createdDate": "2025-06-02T14:21:07+00:00",
    "startTime": 1749513600,
    "endTime": 1750204799,
    "createdAt": 1748874067,
    "package": {
        "id": "pkg_fra_1gb_7d",
        "dataLimitInBytes": 1073741824,
        "dataLimitInGB": 1,
        "destination": "FRA",
        "destinationISO2": "FR",
        "destinationName": "France",
        "priceInCents": 700,
    },
    "esim": {"iccid": "8910300000012345678"},
    "source": "API",
    "purchaseType": "First Purchase",
    "referenceId": "pm-esim-fr-01",
}

PACKAGES_EXAMPLE = [
    {"id": "pkg_fra_1gb_7d", "destination": "FRA", "destinationISO2": "FR",
     "dataLimitInBytes": 1073741824, "dataLimitInGB": 1, "minDays": 1, "maxDays": 7,
     "priceInCents": 700},
    {"id": "pkg_fra_5gb_30d", "destination": "FRA", "destinationISO2": "FR",
     "dataLimitInBytes": 5368709120, "dataLimitInGB": 5, "minDays": 8, "maxDays": 30,
     "priceInCents": 2200},
]  # fmt: skip

ESIM_EXAMPLE = {
    "esim": {
        "iccid": "8910300000012345678",
        "smdpAddress": "consumer.rsp.example.net",
        "activationCode": "iVBORw0KGgoAAAANSUhEUgAA" * 50,
        "manualActivationCode": "LPA:1$consumer.rsp.example.net$K3F9-2XQP-77HD",
        "status": "ENABLED",
        "connectivityStatus": "ACTIVE",
        "isTopUpAllowed": True,
    }
}


def test_the_documented_purchase_parses_into_utc_bytes_and_cents():
    p = parse_purchase(PURCHASE_EXAMPLE)
    assert p is not None
    assert p.id == "4973fa15-6979-4daa-9cf3-672620df819c"
    assert p.iccid == "8910300000012345678"
    assert p.start == datetime(2025, 6, 10, tzinfo=UTC)
    assert p.end == datetime(2025, 6, 17, 23, 59, 59, tzinfo=UTC)
    assert p.created == datetime(2025, 6, 2, 14, 21, 7, tzinfo=UTC)
    assert p.size == Size(GIB, base=1024)
    assert p.price == Money(Decimal("7"), "USD") and p.price.to_json()["amount"] == "7.00"
    assert p.reference == "pm-esim-fr-01" and p.days == 7
    assert p.name == "France 1 GB · 7 days" and p.plan_id == "fr-1gb-7d"


def test_a_purchase_without_dates_or_optional_fields_still_parses():
    p = parse_purchase(
        {"id": "x1", "startDate": None, "endDate": None, "esim": {"iccid": "8910300000012345678"},
         "package": {"dataLimitInBytes": 536870912, "destination": "JPN"}}
    )  # fmt: skip
    assert p is not None and p.start is None and p.end is None and p.days is None
    assert p.size.bytes == GIB // 2 and p.price is None and p.name == "JPN 0.5 GB"
    assert parse_purchase({"package": {}}) is None  # no id: nothing to do with it


@pytest.mark.parametrize(
    ("iso", "epoch", "expected"),
    [
        ("2025-06-10T00:00:00+00:00", None, datetime(2025, 6, 10, tzinfo=UTC)),
        ("2025-06-10T02:00:00+0200", None, datetime(2025, 6, 10, tzinfo=UTC)),  # ZZ, no colon
        ("2025-06-10T00:00:00Z", None, datetime(2025, 6, 10, tzinfo=UTC)),
        ("2025-06-10T00:00:00.250Z", None, datetime(2025, 6, 10, 0, 0, 0, 250000, tzinfo=UTC)),
        ("2025-06-10T00:00:00", None, datetime(2025, 6, 10, tzinfo=UTC)),  # naive: UTC
        ("2025-06-10", None, datetime(2025, 6, 10, tzinfo=UTC)),
        (None, 1749513600, datetime(2025, 6, 10, tzinfo=UTC)),  # epoch seconds
        (None, 1749513600000, datetime(2025, 6, 10, tzinfo=UTC)),  # epoch milliseconds
        ("not a date", 1749513600, datetime(2025, 6, 10, tzinfo=UTC)),
        ("2025-06-10T00:00:00+00:00", 1, datetime(2025, 6, 10, tzinfo=UTC)),  # ISO wins
        (None, None, None),
        ("", "junk", None),
    ],
)
def test_dates_come_in_every_documented_shape(iso, epoch, expected):
    got = parse_date(iso, epoch)
    assert got == expected
    assert got is None or got.tzinfo is not None


@pytest.mark.parametrize(
    ("in_bytes", "in_gb", "expected"),
    [
        (1073741824, 1, Size(GIB, base=1024)),  # the documented pair
        (5368709120, None, Size(5 * GIB, base=1024)),  # the SDK's cursor example, bytes only
        (3_000_000_000, 3, Size(3_000_000_000, base=1000)),  # a decimal GB
        (500_000_000, None, Size(500_000_000, base=1000)),
        (None, 0.5, Size(GIB // 2, base=1024)),  # GB only
        (-1, -1, Size(None, unlimited=True)),  # unlimited (Region-3)
        (None, -1, Size(None, unlimited=True)),
        (None, None, Size(None)),
    ],
)
def test_sizes_carry_their_unit(in_bytes, in_gb, expected):
    assert parse_size(in_bytes, in_gb) == expected


def test_consumption_documented_example_unlimited_and_gb_only():
    c = parse_consumption(
        {"dataUsageRemainingInBytes": 612368384, "dataUsageRemainingInGB": 0.57,
         "status": "ACTIVE"}, 1024
    )  # fmt: skip
    assert c == Consumption(612368384, False, "ACTIVE")
    assert parse_consumption({"dataUsageRemainingInBytes": -1, "status": "ACTIVE"}, 1024) == (
        Consumption(None, True, "ACTIVE")
    )
    assert parse_consumption({"dataUsageRemainingInGB": 1.5}, 1000).remaining == 1_500_000_000
    assert parse_consumption(None, 1024) == Consumption(None, False, None)


def test_profile_top_up_rule_follows_the_flag_else_the_older_status_rule():
    p = parse_profile(ESIM_EXAMPLE)
    assert p.status == "ENABLED" and p.connectivity == "ACTIVE" and p.topup_allowed
    no_flag = {"esim": {"iccid": "8910300000012345678", "status": "INSTALLED"}}
    assert parse_profile(no_flag).topup_allowed is True
    no_flag["esim"]["status"] = "RELEASED"
    assert parse_profile(no_flag).topup_allowed is False
    flag_wins = {"esim": {"status": "ENABLED", "isTopUpAllowed": False}}
    assert parse_profile(flag_wins).topup_allowed is False


def test_documented_packages_become_plans_at_the_longest_accepted_duration():
    rows = [
        *PACKAGES_EXAMPLE,
        # no accepted duration (1, 2, 7, 14, 30, 90) lies in 8..13: not buyable by duration
        {"destination": "FRA", "destinationISO2": "FR", "dataLimitInBytes": GIB,
         "minDays": 8, "maxDays": 13, "priceInCents": 900},
        {"destination": "EUR", "destinationISO2": "EU", "dataLimitInBytes": -1,
         "dataLimitInGB": -1, "minDays": 0, "maxDays": 90, "priceInCents": 3900},
    ]  # fmt: skip
    plans = plans_from_packages(
        rows, account="trip", provider="celitech", kind="topup", currency="USD",
        names={"FRA": "France"},
    )  # fmt: skip
    by_id = {p.id: p for p in plans}
    assert set(by_id) == {"fr-1gb-7d", "fr-5gb-30d", "eu-unl-30d"}
    one = by_id["fr-1gb-7d"]
    assert one.price == Money(Decimal("7"), "USD") and one.validity_days == 7
    assert one.data_bytes == GIB and one.name == "France 1 GB · 7 days" and one.unit_base == 1024
    assert by_id["fr-5gb-30d"].validity_days == 30 and by_id["fr-5gb-30d"].data_bytes == 5 * GIB
    unl = by_id["eu-unl-30d"]  # unlimited durations stop at 30 days
    assert unl.unlimited and unl.data_bytes is None and unl.validity_days == 30
    assert [p.id for p in plans] == ["fr-1gb-7d", "fr-5gb-30d", "eu-unl-30d"]  # by price


def test_plan_ids_carry_what_a_top_up_sends():
    assert plan_id_for("FR", Size(GIB // 2), 30) == "fr-0.5gb-30d"
    assert parse_plan_id("fr-0.5gb-30d") == (Decimal("0.5"), 30)
    assert parse_plan_id("FR-20GB-90D") == (Decimal("20"), 90)
    assert parse_plan_id("eu-unl-7d") == (Decimal(-1), 7)
    for bad in ("pkg_fra_1gb_7d", "fr-1gb", "fr-1gb-0d", ""):
        with pytest.raises(InvalidInput):
            parse_plan_id(bad)


def _purchase(pid: str, *, gb: float, start: datetime | None, days: int, created: datetime):
    return Purchase(
        id=pid, iccid="8910300000012345678", created=created, start=start,
        end=start + timedelta(days=days) if start else None, days=days,
        size=Size(int(gb * GIB)) if gb != -1 else Size(None, unlimited=True),
        destination="FRA", destination_iso2="FR", destination_name="France",
        price=None, reference=None, purchase_type=None, source=None,
    )  # fmt: skip


NOW = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


def _esim(purchases, consumptions, profile=None):
    return build_esim(
        account="trip", provider="celitech", iccid="8910300000012345678",
        purchases=purchases, consumptions=consumptions, profile=profile, now=NOW,
    )  # fmt: skip


def test_packages_that_have_not_ended_add_up_and_the_last_end_is_the_expiry():
    first = _purchase("a", gb=1, start=NOW - timedelta(days=5), days=7, created=NOW - timedelta(5))
    top = _purchase("b", gb=3, start=NOW - timedelta(hours=1), days=30, created=NOW)
    old = _purchase("z", gb=5, start=NOW - timedelta(days=90), days=30, created=NOW - timedelta(90))
    e = _esim(
        [top, first, old],
        {"a": Consumption(0, False, "ACTIVE"), "b": Consumption(2 * GIB, False, "ACTIVE")},
    )
    assert e.state == EsimState.ACTIVE
    assert e.data_total_bytes == 4 * GIB and e.data_remaining_bytes == 2 * GIB
    assert e.expires_at == top.end
    assert [p.state for p in e.packages] == ["depleted", "active"]
    assert e.ref["purchase_ids"].split(",") == ["z", "a", "b"]
    assert e.plan == "France 3 GB · 30 days"


def test_esim_states_from_purchases_consumption_and_profile():
    live = _purchase("a", gb=1, start=NOW - timedelta(days=1), days=7, created=NOW - timedelta(1))
    ended = _purchase("e", gb=1, start=NOW - timedelta(days=9), days=7, created=NOW - timedelta(9))
    waiting = _purchase("w", gb=2, start=None, days=7, created=NOW)
    unl = _purchase("u", gb=-1, start=NOW - timedelta(days=1), days=7, created=NOW)

    expired = _esim([ended], {})
    assert expired.state == EsimState.EXPIRED and expired.data_remaining_bytes is None
    assert _esim([waiting], {"w": Consumption(2 * GIB, False, "NOT_ACTIVE")}).state == (
        EsimState.NOT_ACTIVE
    )
    assert _esim([live], {"a": Consumption(0, False, "ACTIVE")}).state == EsimState.DEPLETED
    deleted = Profile("8910300000012345678", "DELETED", "NOT_ACTIVE", False)
    assert _esim([live], {"a": Consumption(GIB, False, "ACTIVE")}, deleted).state == (
        EsimState.RECYCLED
    )
    u = _esim([unl], {"u": Consumption(None, True, "ACTIVE")})
    assert u.unlimited and u.data_total_bytes is None and u.data_remaining_bytes is None
    assert u.state == EsimState.ACTIVE
    unknown = _esim([live], {})  # its consumption could not be read: never a made-up 0
    assert unknown.data_remaining_bytes is None and unknown.state == EsimState.ACTIVE


def test_undocumented_states_make_the_esim_unknown_never_active():
    live = _purchase("a", gb=1, start=NOW - timedelta(days=1), days=7, created=NOW - timedelta(1))
    fine = {"a": Consumption(GIB, False, "ACTIVE")}
    odd = Profile("8910300000012345678", "SUSPENDED", "ACTIVE", True)
    assert _esim([live], fine, odd).state == EsimState.UNKNOWN
    e = _esim([live], {"a": Consumption(GIB, False, "FOO")})
    assert e.state == EsimState.UNKNOWN and e.packages[0].state == "unknown"
    ok = Profile("8910300000012345678", "ENABLED", "ACTIVE", True)
    assert _esim([live], fine, ok).state == EsimState.ACTIVE


def test_figures_and_prices_are_kept_as_given():
    assert parse_size(-5) == Size(-5, base=1024)  # negative: refused later, by name
    assert parse_size(1e30).bytes == 10**30
    assert parse_size(float("inf")) == Size(None) and parse_size("1e999999") == Size(None)
    assert parse_consumption({"dataUsageRemainingInBytes": -5}, 1024).remaining == -5
    assert parse_consumption({"dataUsageRemainingInBytes": "NaN"}, 1024).remaining is None
    assert money_from_cents(-140) == Money(Decimal("-1.40"), "USD")
    assert money_from_cents(0) == Money(Decimal(0), "USD")
    assert money_from_cents("1E+310") == Money(Decimal("1E+308"), "USD")
    assert money_from_cents("NaN") is None and money_from_cents(None) is None


def _provider(base_url: str | None, **options: object) -> CelitechProvider:
    ctx = ProviderContext(
        account=AccountConfig("trip", "celitech", base_url, dict(options)),
        secrets={"CLIENT_ID": "id", "CLIENT_SECRET": "secret"},
        clock=lambda: NOW,
        state_dir=Path("."),
    )
    return CelitechProvider(ctx)


@pytest.mark.parametrize(
    ("base_url", "options", "api", "token"),
    [
        (None, {}, "https://api.celitech.net", "https://auth.celitech.net/oauth2/token"),
        # the SDKs' base URL ends in /v1; production keeps its separate auth host
        ("https://api.celitech.net/v1", {}, "https://api.celitech.net",
         "https://auth.celitech.net/oauth2/token"),
        # only base_url: one local server stands in for both hosts
        ("http://127.0.0.1:8080/v1/", {}, "http://127.0.0.1:8080",
         "http://127.0.0.1:8080/oauth2/token"),
        ("http://proxy.local", {"auth_url": "http://auth.local/"}, "http://proxy.local",
         "http://auth.local/oauth2/token"),
    ],
)  # fmt: skip
def test_api_and_token_addresses(base_url, options, api, token):
    p = _provider(base_url, **options)
    assert (p.api_root, p.token_url) == (api, token)


@pytest.mark.parametrize(
    "options",
    [{"timeout": "soon"}, {"timeout": 0}, {"retries": -1}, {"currency": "dollars"},
     {"auth_style": "header"}, {"requests_per_second": 0}],
)  # fmt: skip
def test_bad_account_options_are_config_errors(options):
    with pytest.raises(ConfigError):
        _provider(None, **options)


# -- through the CLI against the fake -------------------------------------------------------


@pytest.fixture
def fake() -> Iterator[FakeCelitech]:
    with FakeCelitech() as f:
        yield f  # type: ignore[misc]


@pytest.fixture
def account(fake, configure):
    """Configure account ``trip`` on the fake; extra lines go into its table."""

    def make(extra: str = "") -> dict[str, str]:
        configure(
            f'[accounts.trip]\nprovider = "celitech"\nbase_url = "{fake.url}"\n'
            "requests_per_second = 500\n" + extra
        )
        return dict(ENV)

    return make


def _by_iccid(result):
    return {e["iccid"]: e for e in result.json["data"]["esims"]}


def _topups(fake):
    return [p for p in fake.purchases if p["purchaseType"] == "Top-up Purchase"]


def _posts(fake):
    return [r for r in fake.requests if r.method == "POST" and r.path == TOPUP]


def test_status_shows_what_the_celitech_dashboard_shows(cli, fake, account):
    env = account()
    used = fake.add_esim(gb=3, used_gb=1)
    waiting = fake.add_esim(gb=2, started=False, status="RELEASED")
    gone = fake.add_esim(gb=1, ended=True)
    r = cli("status", "--json", env=env)
    assert r.exit_code == 0, r
    esims = _by_iccid(r)
    assert set(esims) == {used, waiting, gone}
    e = esims[used]
    assert e["provider"] == "celitech" and e["account"] == "trip" and e["state"] == "active"
    assert e["data_total_bytes"] == 3 * GIB and e["data_remaining_bytes"] == 2 * GIB
    assert e["data_used_bytes"] == GIB and e["plan"] == "France 3 GB · 30 days"
    end = fake.orders_for(used)[0]["end"]
    assert e["expires_at"] == datetime.fromtimestamp(end, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert esims[waiting]["state"] == "not_active" and esims[waiting]["expires_at"] is None
    assert esims[gone]["state"] == "expired" and esims[gone]["data_remaining_bytes"] is None
    table = cli("status", used[-6:], tty=True, env=env)
    assert table.exit_code == 0, table
    assert "3 GB" in table.stdout and "2 GB" in table.stdout


@pytest.mark.parametrize(
    "variant",
    [
        {"gb_bytes": 10**9},  # Celitech's GB read as 10**9 bytes, with the GB fields
        {"gb_bytes": 10**9, "send_gb_fields": False},  # ... and from the bytes alone
        {"send_gb_fields": False},
    ],
)
def test_both_readings_of_the_gb_show_the_plan_as_sold(cli, fake, account, variant):
    for k, v in variant.items():
        setattr(fake, k, v)
    iccid = fake.add_esim(gb=3, used_gb=1)
    env = account()
    e = _by_iccid(cli("status", "--json", env=env))[iccid]
    gb = variant.get("gb_bytes", GIB)
    assert e["data_total_bytes"] == 3 * gb and e["data_remaining_bytes"] == 2 * gb
    table = cli("status", "--refresh", tty=True, env=env).stdout
    assert "3 GB" in table and "2 GB" in table


@pytest.mark.parametrize(
    "variant",
    [
        {"epoch_ms": True, "send_iso_dates": False},
        {"send_iso_dates": False},
        {"iso_offset": "+0000"},
        {"iso_offset": "Z"},
    ],
)
def test_every_date_shape_gives_the_same_expiry(cli, fake, account, variant):
    iccid = fake.add_esim(gb=1, days=7, age_days=2)
    env = account()
    plain = _by_iccid(cli("status", "--json", env=env))[iccid]["expires_at"]
    for k, v in variant.items():
        setattr(fake, k, v)
    other = _by_iccid(cli("status", "--json", "--refresh", env=env))[iccid]["expires_at"]
    assert plain is not None and other == plain


@pytest.mark.parametrize("last_page_cursor", [False, True])
def test_every_purchase_page_is_fetched(cli, fake, account, last_page_cursor):
    fake.cursor_on_last_page = last_page_cursor
    ended = [fake.add_esim(gb=1, ended=True) for _ in range(230)]  # three pages of 100
    live = fake.add_esim(gb=5, used_gb=1)
    r = cli("status", "--json", env=account())
    assert r.exit_code == 0, r
    assert set(_by_iccid(r)) == {*ended, live}
    pages = [r for r in fake.requests if r.path == "/v1/purchases"]
    assert len(pages) == (4 if last_page_cursor else 3)
    assert all(p.arg("limit") == "100" for p in pages)


def test_the_access_token_is_cached_between_runs_and_renewed_when_refused(cli, fake, account):
    fake.add_esim()
    env = account()
    assert cli("status", "--json", env=env).exit_code == 0
    assert cli("status", "--json", "--refresh", env=env).exit_code == 0
    assert fake.token_requests == ["post"]  # the second run reused the cached token
    fake.expire_tokens()  # e.g. revoked, or the clocks disagree
    r = cli("status", "--json", "--refresh", env=env)
    assert r.exit_code == 0, r
    assert fake.token_requests == ["post", "post"]


@pytest.mark.parametrize("style", ["basic", "post"])
def test_either_documented_way_of_sending_client_credentials_works(cli, fake, account, style):
    fake.auth_style = style
    fake.add_esim()
    r = cli("status", "--json", env=account())
    assert r.exit_code == 0, r
    assert fake.token_requests == [style]
    token_posts = [r for r in fake.requests if r.path == "/oauth2/token"]
    assert len(token_posts) == (2 if style == "basic" else 1)  # body first, then Basic


def test_rejected_credentials_exit_4_without_showing_a_secret(cli, fake, account, home):
    fake.bad_credentials = True
    fake.add_esim()
    r = cli("status", "--json", env=account())
    assert r.exit_code == 4, r
    err = r.json["errors"][0]
    assert err["code"] == "auth_rejected" and err["account"] == "trip"
    assert "esimctl account add trip --provider celitech" in err["message"]
    assert CLIENT_SECRET not in r.stdout + r.stderr
    assert cli("status", env=account()).exit_code == 4


def test_a_wrong_base_url_says_so_instead_of_blaming_the_credentials(cli, fake, configure):
    configure(f'[accounts.trip]\nprovider = "celitech"\nbase_url = "{fake.url}/v2"\n')
    r = cli("status", "--json", env=ENV)
    assert r.exit_code == 2, r
    assert "check base_url" in r.json["errors"][0]["message"]


@pytest.mark.parametrize(
    ("message", "code"),
    [("User is not authorized to access this resource", 4), ("Invalid credentials", 4),
     ("Insufficient credits", 1)],
)  # fmt: skip
def test_a_403_is_refused_credentials_unless_it_speaks_of_money(cli, fake, account, message, code):
    fake.add_esim()
    fake.target_next("GET", "/v1/purchases", "status", status=403, body={"message": message})
    r = cli("status", "--json", env=account())
    assert r.exit_code == code, r


def test_missing_credentials_exit_4_naming_both_fixes(cli, fake, account):
    account()
    r = cli("status")
    assert r.exit_code == 4, r
    assert "ESIMCTL_TRIP_CLIENT_ID" in r.stderr and "account add trip" in r.stderr


def test_no_secret_or_token_reaches_output_config_or_ledger(cli, fake, account, home):
    iccid = fake.add_esim()
    env = account()
    outputs = [
        cli("status", "--json", env=env),
        cli("plans", iccid, "--json", env=env),
        cli("history", "--json", env=env),
        cli("account", "test", "trip", env=env),
        cli("account", "list", env=env),
    ]
    tokens = list(fake.tokens)
    assert tokens
    text = "".join(o.stdout + o.stderr for o in outputs)
    blobs = [p.read_bytes() for p in Path(home).rglob("*") if p.is_file()]
    for secret in [CLIENT_SECRET, *tokens]:
        assert secret not in text
        assert not any(secret.encode() in b for b in blobs)


@pytest.mark.parametrize("fault", ["503", "malformed", "truncated"])
def test_reads_are_retried_through_5xx_malformed_and_truncated_answers(cli, fake, account, fault):
    iccid = fake.add_esim(gb=3, used_gb=1)
    env = account()
    if fault == "503":
        fake.fail_next(503, body={"message": "Service Unavailable"})
    else:
        getattr(fake, f"{fault}_next")()
    r = cli("status", "--json", env=env)
    assert r.exit_code == 0, r
    assert _by_iccid(r)[iccid]["data_remaining_bytes"] == 2 * GIB
    # the first request (for the token) met the fault and was sent again
    assert [r.path for r in fake.requests].count("/oauth2/token") == 2


def test_one_unreadable_esim_answer_costs_only_that_figure(cli, fake, account):
    iccid = fake.add_esim(gb=3, used_gb=1)
    fake.target_next("GET", "/v1/esim", "status", status=400, body={"message": "eSIM not found"})
    pid = fake.orders_for(iccid)[0]["id"]
    path = f"/v1/purchases/{pid}/consumption"
    fake.target_next("GET", path, "status", status=400, body={"message": "Purchase not found"})
    r = cli("status", "--json", env=account())
    assert r.exit_code == 0, r
    e = _by_iccid(r)[iccid]
    assert e["data_total_bytes"] == 3 * GIB and e["data_remaining_bytes"] is None
    assert e["state"] == "active"


def test_a_provider_that_stays_down_exits_75(cli, fake, account):
    fake.add_esim()
    env = account("retries = 1\n")
    fake.fail_next(502, times=10, body={"message": "Internal server error"})
    r = cli("status", "--json", env=env)
    assert r.exit_code == 75, r
    assert r.json["errors"][0]["code"] == "unavailable"


def test_a_hanging_provider_exits_75(cli, fake, account):
    fake.add_esim()
    env = account("timeout = 0.3\nretries = 0\n")
    fake.hang_next(seconds=1.0)
    r = cli("status", "--json", env=env)
    assert r.exit_code == 75, r


def test_429_is_honoured_and_a_long_wait_exits_75(cli, fake, account):
    fake.add_esim()
    env = account()
    fake.fail_next(429, body={"message": "Too Many Requests"}, headers={"Retry-After": "0"})
    assert cli("status", "--json", env=env).exit_code == 0
    # the fake's own 429 (API Gateway's body; Retry-After only when switched on)
    fake.send_retry_after = True
    fake.rate_limit(per_minute=2)
    r = cli("status", "--json", "--refresh", env=env)
    assert r.exit_code == 75, r
    assert r.json["errors"][0]["code"] == "rate_limited"
    assert fake.stats["429"] >= 1


def test_one_failing_account_leaves_the_others_partial(cli, fake, configure):
    good = fake.add_esim()
    with FakeCelitech() as other:
        other.bad_credentials = True
        configure(
            f'[accounts.trip]\nprovider = "celitech"\nbase_url = "{fake.url}"\n'
            f'[accounts.work]\nprovider = "celitech"\nbase_url = "{other.url}"\n'
        )
        env = {
            **ENV,
            "ESIMCTL_WORK_CLIENT_ID": CLIENT_ID,
            "ESIMCTL_WORK_CLIENT_SECRET": CLIENT_SECRET,
        }
        r = cli("status", "--json", env=env)
    assert r.exit_code == 3, r
    assert r.json["status"] == "partial"
    assert set(_by_iccid(r)) == {good}
    assert [e["account"] for e in r.json["errors"]] == ["work"]


def test_plans_for_an_esim_are_top_ups_for_its_destination(cli, fake, account):
    iccid = fake.add_esim(destination="JPN", gb=1)
    r = cli("plans", iccid[-6:], "--json", env=account())
    assert r.exit_code == 0, r
    plans = {p["id"]: p for p in r.json["data"]["plans"]}
    p = plans["jp-3gb-30d"]
    assert p["kind"] == "topup" and p["provider"] == "celitech" and p["countries"] == ["JP"]
    assert p["price"] == {"amount": "12.00", "currency": "USD"}
    assert p["data_bytes"] == 3 * GIB and p["validity_days"] == 30 and not p["unlimited"]
    assert plans["jp-3gb-90d"]["price"]["amount"] == "18.00"
    assert not any(i.startswith("fr-") for i in plans)  # a top-up keeps the destination
    asked = [r.arg("destination") for r in fake.requests if r.path == "/v1/packages"]
    assert asked == ["JPN"]


def test_plans_for_an_esim_that_cannot_be_topped_up_say_why(cli, fake, account):
    iccid = fake.add_esim(status="DELETED")
    r = cli("plans", iccid, "--json", env=account())
    assert r.exit_code == 1, r
    err = r.json["errors"][0]
    assert err["code"] == "topup_not_allowed" and "DELETED" in err["message"]
    assert not any(r.path == "/v1/packages" for r in fake.requests)


def test_plans_for_a_country_include_regional_destinations(cli, fake, account):
    account()
    r = cli("plans", "--country", "fr", "--json")
    assert r.exit_code == 4  # no credentials given: exit 4 even for the catalogue
    r = cli("plans", "--country", "fr", "--json", env=account())
    assert r.exit_code == 0, r
    plans = {p["id"]: p for p in r.json["data"]["plans"]}
    assert plans["fr-1gb-30d"]["kind"] == "new" and plans["fr-1gb-30d"]["countries"] == ["FR"]
    assert "eu-5gb-30d" in plans and "FR" in plans["eu-5gb-30d"]["countries"]
    unl = plans["eu-unl-30d"]
    assert unl["unlimited"] and unl["data_bytes"] is None
    assert not any(i.startswith("jp-") for i in plans)


def test_renew_buys_once_with_our_reference_and_status_shows_it(cli, fake, account):
    iccid = fake.add_esim(gb=3, used_gb=2.5)
    env = account()
    before = _by_iccid(cli("status", "--json", env=env))[iccid]
    r = cli("renew", iccid[-6:], "--plan", "fr-1gb-30d", "--yes", "--json", env=env)
    assert r.exit_code == 0, r
    data = r.json["data"]
    assert data["applied"] is True
    order = data["order"]
    assert order["price"] == {"amount": "5.00", "currency": "USD"}
    assert order["plan_id"] == "fr-1gb-30d" and order["iccid"] == iccid
    [sent] = fake.topup_requests
    assert sent["iccid"] == iccid and sent["dataLimitInGB"] == 1 and sent["duration"] == 30
    assert sent["referenceId"].startswith("esimctl-")
    [top] = _topups(fake)
    assert order["id"] == top["id"] and fake.balance_cents == 1_000_000 - 500
    after = _by_iccid(cli("status", "--json", env=env))[iccid]  # the cache was dropped
    assert after["data_total_bytes"] == before["data_total_bytes"] + GIB
    assert after["data_remaining_bytes"] == before["data_remaining_bytes"] + GIB
    history = cli("history", "--json", env=env)
    assert history.exit_code == 0, history
    ids = [o["id"] for o in history.json["data"]["orders"]]
    assert ids.count(top["id"]) == 1


def test_a_top_up_that_starts_after_the_current_package_is_queued(cli, fake, account):
    fake.topup_start = "after"
    iccid = fake.add_esim(gb=1, used_gb=0.5, days=7)
    env = account()
    r = cli("renew", iccid, "--plan", "fr-3gb-30d", "--yes", "--json", env=env)
    assert r.exit_code == 0 and r.json["data"]["applied"] is True, r
    e = _by_iccid(cli("status", "--json", env=env))[iccid]
    assert [p["state"] for p in e["packages"]] == ["active", "queued"]
    assert e["data_remaining_bytes"] == GIB // 2 + 3 * GIB
    assert e["expires_at"] == e["packages"][1]["expires_at"]


def test_renew_dry_run_and_price_cap_buy_nothing(cli, fake, account):
    iccid = fake.add_esim()
    env = account()
    dry = cli("renew", iccid, "--plan", "fr-1gb-30d", "--dry-run", "--json", env=env)
    assert dry.exit_code == 0, dry
    assert dry.json["data"]["order"]["state"] == "dry_run"
    capped = cli("renew", iccid, "--plan", "fr-1gb-30d", "--yes", "--max-price", "4USD", env=env)
    assert capped.exit_code == 5, capped
    ok = cli("renew", iccid, "--plan", "fr-1gb-30d", "--yes", "--max-price", "5USD", env=env)
    assert ok.exit_code == 0, ok
    assert len(_posts(fake)) == 1


def test_renew_refuses_unknown_plans_and_a_missing_yes(cli, fake, account):
    iccid = fake.add_esim()
    env = account()
    assert cli("renew", iccid, "--plan", "fr-4gb-30d", "--yes", env=env).exit_code == 2
    assert cli("renew", iccid, "--plan", "fr-1gb-30d", env=env).exit_code == 2
    assert _posts(fake) == []


@pytest.mark.parametrize("status", [400, 402])
def test_insufficient_balance_is_one_clear_line(cli, fake, account, status):
    fake.insufficient_status = status
    fake.balance_cents = 100
    iccid = fake.add_esim()
    r = cli("renew", iccid, "--plan", "fr-1gb-30d", "--yes", env=account())
    assert r.exit_code == 1, r
    first = r.stderr.strip().splitlines()[0]
    assert "balance" in first and "Celitech" in first
    assert _topups(fake) == []
    rows = cli("history", "--json", env=account()).json["data"]["orders"]
    assert [o["state"] for o in rows if o["source"] == "local"] == ["failed"]


def test_a_top_up_whose_answer_never_arrives_is_found_not_bought_twice(cli, fake, account):
    iccid = fake.add_esim(gb=1, used_gb=0.9)
    env = account()
    fake.target_next("POST", TOPUP, "drop")  # committed, then the connection dies
    r = cli("renew", iccid, "--plan", "fr-3gb-30d", "--yes", "--json", env=env)
    assert r.exit_code == 0, r
    [top] = _topups(fake)
    assert r.json["data"]["order"]["id"] == top["id"]
    lookups = [r for r in fake.requests if r.path == "/v1/purchases" and r.arg("referenceId")]
    assert lookups and lookups[0].arg("referenceId") == top["referenceId"]
    # a second run sees one order, from the provider and the ledger alike
    history = cli("history", "--json", env=env).json["data"]["orders"]
    assert [o["id"] for o in history].count(top["id"]) == 1
    assert len(_topups(fake)) == 1 and len(_posts(fake)) == 1


def test_a_top_up_answered_5xx_is_never_sent_again_blindly(cli, fake, account):
    iccid = fake.add_esim(gb=1, used_gb=0.9)
    env = account()
    fake.target_next("POST", TOPUP, "status", status=504)  # API Gateway gave up
    r = cli("renew", iccid, "--plan", "fr-3gb-30d", "--yes", "--json", env=env)
    assert r.exit_code == 75, r
    assert r.json["errors"][0]["code"] == "outcome_unknown"
    again = cli("renew", iccid, "--plan", "fr-3gb-30d", "--yes", "--json", env=env)
    assert again.exit_code == 75, again  # not listed yet, not yet taken as "not bought"
    assert len(_posts(fake)) == 1 and _topups(fake) == []


def test_a_second_renew_after_an_unknown_outcome_does_not_buy_again(cli, fake, account):
    iccid = fake.add_esim(gb=1, used_gb=0.9)
    env = account("retries = 0\n")
    fake.target_next("POST", TOPUP, "drop")  # committed, the answer never arrives ...
    # ... and the lookup right after fails too: the outcome stays unknown
    fake.target_next("GET", "/v1/purchases", "status", status=503, after=("POST", TOPUP))
    r = cli("renew", iccid, "--plan", "fr-3gb-30d", "--yes", "--json", env=env)
    assert r.exit_code == 75, r
    assert len(_topups(fake)) == 1
    again = cli("renew", iccid, "--plan", "fr-3gb-30d", "--yes", "--json", env=env)
    assert again.exit_code == 0, again
    assert len(_topups(fake)) == 1 and len(_posts(fake)) == 1


def test_a_top_up_the_provider_does_not_list_yet_is_pending(cli, fake, account):
    fake.visible_after_reads = 50
    iccid = fake.add_esim()
    r = cli("renew", iccid, "--plan", "fr-1gb-30d", "--yes", "--timeout", "0m", "--json",
            env=account())  # fmt: skip
    assert r.exit_code == 0, r
    assert r.json["data"]["applied"] is False and r.json["data"]["order"]["state"] == "pending"


def test_history_lists_provider_purchases_newest_first(cli, fake, account):
    a = fake.add_esim(gb=3, age_days=10, reference="trip-2026-07")
    fake.add_topup(a, gb=1, days=7, age_days=2)
    b = fake.add_esim(destination="JPN", gb=1, age_days=5)
    r = cli("history", "--json", env=account())
    assert r.exit_code == 0, r
    orders = r.json["data"]["orders"]
    assert [(o["iccid"], o["plan"]) for o in orders] == [
        (a, "France 1 GB · 7 days"),
        (b, "Japan 1 GB · 30 days"),
        (a, "France 3 GB · 30 days"),
    ]
    assert all(o["source"] == "provider" and o["state"] == "completed" for o in orders)
    assert orders[2]["price"] == {"amount": "12.00", "currency": "USD"}
    assert orders[1]["plan_id"] == "jp-1gb-30d"


def test_account_test_checks_the_credentials(cli, fake, account):
    env = account()
    r = cli("account", "test", "trip", env=env)
    assert r.exit_code == 0, r
    assert fake.token_requests == ["post"]
    fake.bad_credentials = True
    assert cli("account", "test", "trip", env=env).exit_code == 4


def test_many_esims_list_in_one_run(cli, fake, account):
    seeded = fake.seed(60)
    r = cli("status", "--json", env=account())
    assert r.exit_code == 0, r
    esims = _by_iccid(r)
    assert set(esims) == set(seeded)
    states = {e["state"] for e in esims.values()}
    assert {"active", "not_active", "expired"} <= states
    topped = esims[seeded[5]]  # 1 GB used up, then a 3 GB top-up
    assert topped["data_total_bytes"] == 4 * GIB and topped["data_remaining_bytes"] == 3 * GIB
    assert json.dumps(r.json)  # serialisable as a whole


# -- the kit underneath: one transport, a bounded fan-out, the token users already have -------


def _mocked(handler, cache=None, **options):
    """A provider on the production addresses whose requests go to ``handler`` (ctx.transport)."""
    ctx = ProviderContext(
        account=AccountConfig("trip", "celitech", None, {"requests_per_second": 1000, **options}),
        secrets={"CLIENT_ID": "id", "CLIENT_SECRET": "secret"},
        clock=lambda: NOW,
        state_dir=Path("."),
        token_cache=cache or SecretCache(),
        transport=httpx.MockTransport(handler),
    )
    return CelitechProvider(ctx)


def _live_purchase(n: int) -> dict[str, object]:
    return {
        **PURCHASE_EXAMPLE,
        "id": f"p{n}",
        "referenceId": f"r{n}",
        "endDate": None,
        "endTime": None,
        "esim": {"iccid": f"89103000000{n:08d}"},
    }


def test_readings_of_many_esims_share_one_bounded_queue_through_ctx_transport():
    flight = {"now": 0, "max": 0}

    async def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/oauth2/token":
            return httpx.Response(200, json={"access_token": "tok", "expires_in": 3600})
        if path == "/v1/purchases":
            return httpx.Response(200, json={"purchases": [_live_purchase(n) for n in range(30)]})
        flight["now"] += 1
        flight["max"] = max(flight["max"], flight["now"])
        await asyncio.sleep(0.01)
        flight["now"] -= 1
        if path == "/v1/esim":
            return httpx.Response(200, json=ESIM_EXAMPLE)
        return httpx.Response(200, json={"dataUsageRemainingInBytes": GIB // 2, "status": "ACTIVE"})

    async def run():
        async with _mocked(handler) as p:
            return await p.list_esims()

    esims = asyncio.run(run())
    assert len(esims) == 30 and all(e.data_remaining_bytes == GIB // 2 for e in esims)
    assert 1 < flight["max"] <= DEFAULT_CONCURRENCY  # 60 readings, never more than 8 at once


def test_the_token_cache_users_already_have_is_read_and_its_auth_style_kept():
    box = {
        "v": {  # as esimctl wrote it before the kit: epoch seconds, a 24-hex key
            "key": token_key("id", "https://auth.celitech.net/oauth2/token", length=24),
            "access_token": "cached-token",
            "expires_at": f"{(NOW + timedelta(minutes=30)).timestamp():.0f}",
            "auth_style": "basic",
        }
    }
    cache = SecretCache(lambda: box.get("v"), lambda v: box.update(v=dict(v)))
    seen: list[tuple[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth2/token":
            style = "basic" if "authorization" in request.headers else "post"
            seen.append(("token", style))
            return httpx.Response(200, json={"access_token": "new-token", "expires_in": 3600})
        bearer = request.headers["authorization"].removeprefix("Bearer ")
        seen.append(("api", bearer))
        if bearer == "cached-token" and len(seen) > 1:
            return httpx.Response(401, json={"message": "Unauthorized"})
        return httpx.Response(200, json={"purchases": [], "afterCursor": None})

    async def run() -> None:
        async with _mocked(handler, cache) as p:
            assert await p.orders() == []  # the cached token, no token request
            assert await p.orders() == []  # refused: one new token, Basic first, one resend

    asyncio.run(run())
    assert seen == [
        ("api", "cached-token"),
        ("api", "cached-token"),
        ("token", "basic"),
        ("api", "new-token"),
    ]
    assert box["v"]["access_token"] == "new-token" and box["v"]["auth_style"] == "basic"


@pytest.mark.parametrize(
    ("fault", "expected"), [("connect", "unavailable"), ("read", "outcome_unknown")]
)
def test_a_top_up_lost_in_transit_is_the_clients_to_report(fault, expected):
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth2/token":
            return httpx.Response(200, json={"access_token": "tok", "expires_in": 3600})
        if request.url.path == "/v1/esim":
            return httpx.Response(200, json=ESIM_EXAMPLE)
        if fault == "connect":
            raise httpx.ConnectError("nothing left this machine", request=request)
        raise httpx.ReadError("the connection broke after sending", request=request)

    iccid = "8910300000012345678"
    esim = Esim(account="trip", provider="celitech", iccid=iccid, state=EsimState.ACTIVE)
    plan = Plan(id="fr-1gb-30d", account="trip", provider="celitech", name="France 1 GB",
                kind="topup", data_bytes=GIB, unlimited=False, validity_days=30,
                price=Money(Decimal(5), "USD"))  # fmt: skip

    async def run() -> None:
        async with _mocked(handler, retries=0) as p:
            await p.buy_topup(esim, plan, "esimctl-ref")

    with pytest.raises((NotSent, OutcomeUnknown)) as caught:
        asyncio.run(run())
    assert caught.value.code == expected
    assert isinstance(caught.value, NotSent if fault == "connect" else OutcomeUnknown)
