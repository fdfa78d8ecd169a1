"""eSIM Go API v2.5: the client against a stateful fake on 127.0.0.1, through the CLI,
plus the parsers fed the documentation's own examples (odd ones included)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from esimctl.config import AccountConfig
from esimctl.errors import (
    AuthRejected,
    InsufficientBalance,
    InvalidInput,
    NotFound,
    OutcomeUnknown,
)
from esimctl.models import EsimState, Money, OrderState
from esimctl.providers.base import ProviderContext
from esimctl.providers.esimgo import EsimGoProvider
from esimctl.providers.esimgo.answers import (
    MB,
    esim_from,
    order_records,
    orders_from,
    parse_assignments,
    parse_time,
    plan_from,
    unwrap,
)
from fakes.esimgo import DEFAULT_KEY, GB, FakeEsimGo

ENV = {"ESIMCTL_TRIP_API_KEY": DEFAULT_KEY}


@pytest.fixture
def fake() -> Iterator[FakeEsimGo]:
    with FakeEsimGo() as f:
        yield f


@pytest.fixture
def trip(fake: FakeEsimGo, configure: Any) -> FakeEsimGo:
    """Account ``trip`` on the fake; short timeout and one retry keep fault tests fast, and
    a raised rate limit (as eSIM Go grants on request) on both sides keeps the file fast."""
    fake.token_limit = 1000
    configure(
        f"""
        [accounts.trip]
        provider = "esimgo"
        base_url = "{fake.url}"
        timeout = 1
        retries = 1
        rate_limit = 1000
        """
    )
    return fake


def run(cli: Any, *args: str, env: dict[str, str] | None = None, tty: bool = False) -> Any:
    return cli(*args, env={**ENV, **(env or {})}, tty=tty)


def status(cli: Any) -> dict[str, dict[str, Any]]:
    r = run(cli, "status", "--refresh", "--json")
    assert r.exit_code in (0, 3), r
    return {e["iccid"]: e for e in r.json["data"]["esims"]}


# -- parsers fed the documented examples --------------------------------------------------------

DOC_BUNDLES = {
    "bundles": [
        {
            "name": "esim_1GB_7D_GB_V2",
            "description": "eSIM, 1GB, 7 Days, United Kingdom, V2",
            "assignments": [
                {
                    "id": "215009266",
                    "assignmentReference": "3a6e2e40-c674-45e9-b289-b35027bf72a9-0",
                    "callTypeGroup": "data",
                    "initialQuantity": 1000000000,
                    "remainingQuantity": 750000000,
                    "assignmentDateTime": "2025-06-14T09:12:38.34523Z",
                    "startTime": "2025-06-15T07:01:02Z",
                    "endTime": "2025-06-22T07:01:02Z",
                    "bundleState": "active",
                    "unlimited": False,
                    "allowances": [
                        {
                            "type": "DATA",
                            "service": "STANDARD",
                            "description": "Data",
                            "initialAmount": 1000,
                            "remainingAmount": 750,
                            "unit": "MB",
                            "unlimited": False,
                        }
                    ],
                }
            ],
        }
    ]
}

DOC_CATALOGUE_ITEM = {
    "name": "esim_3GB_30D_PT_V2",
    "description": "eSIM, 3GB, 30 Days, Portugal, V2",
    "groups": ["Standard Fixed"],
    "countries": [{"name": "Portugal", "region": "Europe", "iso": "PT"}],
    "dataAmount": 3000,
    "duration": 30,
    "speed": ["4G", "5G"],
    "autostart": True,
    "unlimited": False,
    "roamingEnabled": [],
    "price": 4.21,
    "billingType": "FixedCost",
    "profileName": "Profile 1",
    "allowances": [
        {
            "type": "DATA",
            "service": "STANDARD",
            "description": "Data",
            "amount": 3000,
            "unit": "MB",
            "unlimited": False,
        }
    ],
}

DOC_TRANSACTION = {
    "order": [
        {
            "type": "bundle",
            "item": "esim_3GB_30D_PT_V2",
            "quantity": 1,
            "subTotal": 4.21,
            "pricePerUnit": 4.21,
            "AllowReassign": False,
            "iccids": ["8944538532008160222"],
            "esims": [
                {
                    "iccid": "8944538532008160222",
                    "matchingId": "JQ-1A2B3C-4D5E6F7G",
                    "smdpAddress": "rsp.esim-go.example",
                }
            ],
        }
    ],
    "total": 4.21,
    "currency": "USD",
    "status": "completed",
    "statusMessage": "Order completed: 1 eSIM assigned",
    "orderReference": "b1f0c6de-5a7e-4d0b-9a0c-2f8e1c3d4b5a",
    "createdDate": "2025-06-20T09:15:42.153875019Z",
    "assigned": True,
    "sourceIP": "203.0.113.10",
    "runningBalance": "95.79",
}

NOW = datetime(2025, 6, 18, 12, 0, tzinfo=UTC)


def test_documented_assignment_reads_in_decimal_bytes() -> None:
    [a] = parse_assignments(DOC_BUNDLES)
    assert (a.initial, a.remaining, a.state) == (1_000_000_000, 750_000_000, "active")
    assert a.assigned_at == datetime(2025, 6, 14, 9, 12, 38, 345230, tzinfo=UTC)
    assert a.end == datetime(2025, 6, 22, 7, 1, 2, tzinfo=UTC)
    e = esim_from(
        {"iccid": "8944538532008160222", "customerRef": "trip-lisbon-2025"},
        [a],
        account="trip",
        provider="esimgo",
        now=NOW,
    )
    assert e.state == EsimState.ACTIVE and e.unit_base == 1000
    assert (e.data_total_bytes, e.data_remaining_bytes, e.data_used_bytes) == (
        10**9,
        75 * 10**7,
        25 * 10**7,
    )
    assert e.label == "trip-lisbon-2025"
    assert e.plan == "eSIM, 1GB, 7 Days, United Kingdom, V2"


def test_allowance_units_mb_and_bytes_give_the_same_figures() -> None:
    """v2.5 says MB in the list schema and BYTES in the single-assignment one."""
    base = json.loads(json.dumps(DOC_BUNDLES["bundles"][0]["assignments"][0]))
    del base["initialQuantity"], base["remainingQuantity"]
    as_mb = parse_assignments({"assignments": [base]}, "esim_1GB_7D_GB_V2")
    base["allowances"][0].update(initialAmount=10**9, remainingAmount=75 * 10**7, unit="BYTES")
    as_bytes = parse_assignments({"assignments": [base]}, "esim_1GB_7D_GB_V2")
    assert (as_mb[0].initial, as_mb[0].remaining) == (10**9, 75 * 10**7)
    assert (as_bytes[0].initial, as_bytes[0].remaining) == (10**9, 75 * 10**7)
    assert as_mb[0].name == "esim_1GB_7D_GB_V2"


def test_times_with_any_fraction_and_epoch_milliseconds() -> None:
    assert parse_time("2025-03-28T14:47:26.153875019Z") == datetime(
        2025, 3, 28, 14, 47, 26, 153875, tzinfo=UTC
    )
    assert parse_time("2025-06-15T07:01:02Z") == datetime(2025, 6, 15, 7, 1, 2, tzinfo=UTC)
    assert parse_time(1718357657123) == datetime(2024, 6, 14, 9, 34, 17, 123000, tzinfo=UTC)
    assert parse_time("1718357657123") == parse_time(1718357657123)
    assert parse_time("") is None and parse_time(None) is None and parse_time("soon") is None


def test_money_is_decimal_never_float() -> None:
    def price(value: Any) -> Money | None:
        raw = {**DOC_CATALOGUE_ITEM, "price": value}
        p = plan_from(raw, currency="USD", account="t", provider="esimgo", kind="new")
        assert p is not None
        return p.price

    assert price(4.21) == Money(Decimal("4.21"), "USD")
    assert price(2.28) == Money(Decimal("2.28"), "USD") and price(None) is None
    [o] = orders_from(
        {**DOC_TRANSACTION, "total": "95.79", "order": [{"type": "bundle", "item": "b"}]},
        account="t",
        provider="esimgo",
        default_currency=None,
    )
    assert o.price == Money(Decimal("95.79"), "USD")


def test_catalogue_bundle_as_a_plan() -> None:
    p = plan_from(
        DOC_CATALOGUE_ITEM, currency="USD", account="trip", provider="esimgo", kind="topup"
    )
    assert p is not None
    assert p.id == "esim_3GB_30D_PT_V2" and p.name == "eSIM, 3GB, 30 Days, Portugal, V2"
    assert p.data_bytes == 3 * 10**9 and p.validity_days == 30 and p.unit_base == 1000
    assert p.price == Money(Decimal("4.21"), "USD") and p.countries == ("PT",)
    assert p.stacking == "queues"


@pytest.mark.parametrize("amount", [0, -1])
def test_unlimited_bundle_either_reading(amount: int) -> None:
    raw = {
        **DOC_CATALOGUE_ITEM,
        "name": "esim_ULE_7D_PT_V2",
        "dataAmount": amount,
        "unlimited": True,
    }
    p = plan_from(raw, currency="EUR", account="t", provider="esimgo", kind="new")
    assert p is not None and p.unlimited and p.data_bytes is None
    # -1 alone (no flag) also means unlimited
    raw = {**raw, "unlimited": False, "allowances": [], "dataAmount": -1}
    p = plan_from(raw, currency="EUR", account="t", provider="esimgo", kind="new")
    assert p is not None and p.unlimited


def test_voice_only_bundle_is_no_data_plan() -> None:
    raw = {**DOC_CATALOGUE_ITEM, "name": "esim_V100_30D_PT_V2", "dataAmount": 0, "allowances": []}
    assert plan_from(raw, currency="USD", account="t", provider="esimgo", kind="new") is None


def test_catalogue_and_orders_bare_wrapped_or_single() -> None:
    assert unwrap([DOC_CATALOGUE_ITEM], "bundles") == unwrap(
        {"bundles": [DOC_CATALOGUE_ITEM]}, "bundles"
    )
    assert order_records([DOC_TRANSACTION]) == [DOC_TRANSACTION]
    assert order_records({"orders": [DOC_TRANSACTION]}) == [DOC_TRANSACTION]
    assert order_records(DOC_TRANSACTION) == [DOC_TRANSACTION]
    assert order_records({}) == [] and order_records(None) == []


@pytest.mark.parametrize("field", ["createdDate", "createDate"])
def test_documented_order_either_date_field(field: str) -> None:
    raw = dict(DOC_TRANSACTION)
    raw[field] = raw.pop("createdDate")
    [o] = orders_from(raw, account="trip", provider="esimgo", default_currency=None)
    assert o.id == "b1f0c6de-5a7e-4d0b-9a0c-2f8e1c3d4b5a"
    assert o.iccid == "8944538532008160222" and o.plan_id == "esim_3GB_30D_PT_V2"
    assert o.price == Money(Decimal("4.21"), "USD") and o.state == OrderState.COMPLETED
    assert o.created_at == datetime(2025, 6, 20, 9, 15, 42, 153875, tzinfo=UTC)


def test_balance_topups_are_not_esim_orders() -> None:
    raw = {**DOC_TRANSACTION, "order": [{"type": "topup", "item": "balance", "subTotal": 50}]}
    assert orders_from(raw, account="t", provider="esimgo", default_currency="USD") == []


def test_queued_bundle_adds_to_what_is_left_and_extends_the_end() -> None:
    active = dict(DOC_BUNDLES["bundles"][0])
    queued = {
        "name": "esim_3GB_30D_PT_V2",
        "description": "eSIM, 3GB, 30 Days, Portugal, V2",
        "assignments": [
            {
                "id": "215009300",
                "initialQuantity": 3 * 10**9,
                "remainingQuantity": 3 * 10**9,
                "assignmentDateTime": "2025-06-16T10:00:00Z",
                "bundleState": "queued",
                "unlimited": False,
            }
        ],
    }
    e = esim_from(
        {"iccid": "1" * 19},
        parse_assignments({"bundles": [active, queued]}),
        account="t",
        provider="esimgo",
        now=NOW,
    )
    assert e.state == EsimState.ACTIVE
    assert (e.data_total_bytes, e.data_remaining_bytes) == (4 * 10**9, 3_750_000_000)
    assert e.expires_at == datetime(2025, 7, 22, 7, 1, 2, tzinfo=UTC)  # 22 June + 30 days
    assert [(p.state, p.data_remaining_bytes) for p in e.packages] == [
        ("active", 750_000_000),
        ("queued", 3 * 10**9),
    ]
    assert e.plan == "eSIM, 1GB, 7 Days, United Kingdom, V2 (+1 queued)"


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        (["depleted"], EsimState.DEPLETED),
        (["expired"], EsimState.EXPIRED),
        (["lapsed"], EsimState.EXPIRED),
        (["queued"], EsimState.NOT_ACTIVE),
        (["processing"], EsimState.NOT_ACTIVE),
        ([], EsimState.NOT_ACTIVE),
    ],
)
def test_states_from_bundles(states: list[str], expected: EsimState) -> None:
    rows = [
        {
            "id": str(i),
            "bundleState": s,
            "initialQuantity": 10**9,
            "remainingQuantity": 0 if s == "depleted" else 10**9,
            "assignmentDateTime": "2025-06-10T00:00:00Z",
            "endTime": "2025-06-17T00:00:00Z" if s == "expired" else "2025-06-30T00:00:00Z",
        }
        for i, s in enumerate(states)
    ]
    body = {"bundles": [{"name": "esim_1GB_7D_PT_V2", "assignments": rows}]} if rows else {}
    e = esim_from(
        {"iccid": "1" * 19}, parse_assignments(body), account="t", provider="esimgo", now=NOW
    )
    assert e.state == expected


def test_deactivated_esim_is_recycled() -> None:
    e = esim_from(
        {"iccid": "1" * 19, "state": "deactivated"},
        parse_assignments(DOC_BUNDLES),
        account="t",
        provider="esimgo",
        now=NOW,
    )
    assert e.state == EsimState.RECYCLED


def test_unlimited_bundle_never_shows_zero_left() -> None:
    body = {
        "bundles": [
            {
                "name": "esim_ULE_7D_PT_V2",
                "assignments": [
                    {"bundleState": "active", "initialQuantity": 0, "remainingQuantity": 0,
                     "unlimited": True, "endTime": "2025-06-20T00:00:00Z"}
                ],
            }
        ]
    }  # fmt: skip
    e = esim_from(
        {"iccid": "1" * 19}, parse_assignments(body), account="t", provider="esimgo", now=NOW
    )
    assert e.unlimited and e.data_remaining_bytes is None and e.data_total_bytes is None


# -- through the CLI, against the fake ----------------------------------------------------------


def no_secret(*results: Any) -> None:
    for r in results:
        assert DEFAULT_KEY not in r.stdout and DEFAULT_KEY not in r.stderr, r


def test_status_figures_as_the_provider_counts_them(cli: Any, trip: FakeEsimGo) -> None:
    a = trip.add_esim(bundle="esim_3GB_30D_PT_V2", used=1 * GB, customer_ref="lisbon")
    b = trip.add_esim(bundle="esim_ULE_7D_PT_V2", used=5 * GB)
    c = trip.add_esim(bundle="esim_1GB_7D_PT_V2", state="depleted")
    d = trip.add_esim(bundle="esim_1GB_7D_PT_V2", state="queued")
    r = run(cli, "status", "--json")
    assert r.exit_code == 0, r
    doc = r.json
    assert doc["status"] == "success" and doc["command"] == "status"
    esims = {e["iccid"]: e for e in doc["data"]["esims"]}
    e = esims[a]
    assert e["provider"] == "esimgo" and e["account"] == "trip" and e["label"] == "lisbon"
    assert (e["data_total_bytes"], e["data_remaining_bytes"], e["data_used_bytes"]) == (
        3_000_000_000,
        2_000_000_000,
        1_000_000_000,
    )
    assert e["state"] == "active" and e["plan"] == "eSIM, 3GB, 30 Days, Portugal, V2"
    assert e["expires_at"] is not None and e["as_of"] is not None
    assert esims[b]["unlimited"] is True and esims[b]["data_remaining_bytes"] is None
    assert esims[c]["state"] == "depleted" and "depleted" in esims[c]["attention"]
    assert esims[d]["state"] == "not_active"
    no_secret(r)


def test_status_table_reads_like_the_providers_app(cli: Any, trip: FakeEsimGo) -> None:
    trip.add_esim(bundle="esim_3GB_30D_PT_V2", used=1 * GB)
    r = run(cli, "status", tty=True)
    assert r.exit_code == 0, r
    assert "2 GB / 3 GB" in r.stdout  # decimal: 2,000,000,000 bytes is "2 GB", not 1.86


def test_status_shows_what_is_left_now_and_what_is_queued(cli: Any, trip: FakeEsimGo) -> None:
    iccid = trip.add_esim(bundle="esim_1GB_7D_PT_V2", used=800 * MB, queued=("esim_3GB_30D_PT_V2",))
    e = status(cli)[iccid]
    assert e["data_remaining_bytes"] == 200 * MB + 3 * GB
    assert [(p["state"], p["data_remaining_bytes"]) for p in e["packages"]] == [
        ("active", 200 * MB),
        ("queued", 3 * GB),
    ]
    assert e["plan"].endswith("(+1 queued)")
    # the queued bundle's 30 days run after the active one ends
    active_end = datetime.fromisoformat(e["packages"][0]["expires_at"].replace("Z", "+00:00"))
    assert e["expires_at"] == (active_end + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    # using up the active bundle starts the queued one: the next answer shows it
    trip.use(iccid, 300 * MB)
    e = status(cli)[iccid]
    assert [(p["state"], p["data_remaining_bytes"]) for p in e["packages"]] == [
        ("active", 3 * GB - 100 * MB)
    ]
    assert e["state"] == "active"


def test_many_esims_are_all_listed_across_pages(cli: Any, trip: FakeEsimGo) -> None:
    iccids = trip.seed(105)  # more than one page of 100
    got = status(cli)
    assert set(got) == set(iccids)
    pages = [q for q in trip.requests if q.path == "/esims"]
    assert [q.arg("page") for q in pages] == ["1", "2"] and pages[0].arg("perPage") == "100"


def test_usage_is_cached_until_refresh(cli: Any, trip: FakeEsimGo) -> None:
    trip.add_esim()
    assert run(cli, "status", "--json").exit_code == 0
    n = trip.stats["requests"]
    assert run(cli, "status", "--json").exit_code == 0
    assert trip.stats["requests"] == n
    assert run(cli, "status", "--refresh", "--json").exit_code == 0
    assert trip.stats["requests"] > n


@pytest.mark.parametrize("how", ["wrong_key", "switch"])
def test_rejected_key_exits_4_and_never_shows_it(cli: Any, trip: FakeEsimGo, how: str) -> None:
    trip.add_esim()
    env = {"ESIMCTL_TRIP_API_KEY": "not-the-key-9d8c"} if how == "wrong_key" else {}
    trip.bad_credentials = how == "switch"
    r = run(cli, "status", "--json", env=env)
    assert r.exit_code == 4, r
    assert r.json["errors"][0]["code"] == "auth_rejected"
    assert "not-the-key-9d8c" not in r.stdout + r.stderr
    no_secret(r)
    assert trip.requests[-1].headers["x-api-key"] in ("not-the-key-9d8c", DEFAULT_KEY)


def test_missing_key_exits_4(cli: Any, trip: FakeEsimGo) -> None:
    r = cli("status", "--json")
    assert r.exit_code == 4, r
    assert "ESIMCTL_TRIP_API_KEY" in r.stderr


def test_account_test_and_add(cli: Any, fake: FakeEsimGo, configure: Any) -> None:
    configure("")
    r = cli(
        "account", "add", "trip", "--provider", "esimgo", "--base-url", fake.url,
        "--secrets-stdin", input=f"API_KEY={DEFAULT_KEY}\n",
    )  # fmt: skip
    assert r.exit_code == 0, r
    t = cli("account", "test", "trip")
    assert t.exit_code == 0, t
    assert "100.00 USD" in t.stdout + t.stderr and "Trip Desk Ltd" in t.stdout + t.stderr
    no_secret(r, t)  # GET /organisation answers with the key itself: it is never shown
    fake.bad_credentials = True
    assert cli("account", "test", "trip").exit_code == 4


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        ("429", 0),
        ("503", 0),
        ("500_once", 0),
        ("malformed", 0),
        ("truncated", 0),
        ("500_always", 75),
        ("429_always", 75),
    ],
)
def test_read_faults(cli: Any, trip: FakeEsimGo, fault: str, code: int) -> None:
    trip.add_esim()
    if fault == "429":
        trip.fail_next(429, body={"message": "Rate limit exceeded"}, headers={"Retry-After": "0"})
    elif fault == "503":
        trip.fail_next(503, body={"message": "Processing"}, headers={"Retry-After": "0"})
    elif fault == "500_once":
        trip.fail_next(500, body={"message": "Internal error"})
    elif fault == "malformed":
        trip.malformed_next()
    elif fault == "truncated":
        trip.truncated_next()
    elif fault == "500_always":
        trip.fail_next(500, times=5, body={"message": "Internal error"})
    elif fault == "429_always":
        trip.fail_next(429, times=5, body={"message": "Rate limit exceeded"},
                       headers={"Retry-After": "0"})  # fmt: skip
    r = run(cli, "status", "--json")
    assert r.exit_code == code, r
    if code == 0:
        assert len(r.json["data"]["esims"]) == 1
    else:
        assert r.json["status"] == "error"
        assert r.json["errors"][0]["code"] in ("unavailable", "rate_limited")


def test_hang_is_cut_by_the_timeout_and_retried(cli: Any, fake: FakeEsimGo, configure: Any) -> None:
    configure(f'[accounts.trip]\nprovider = "esimgo"\nbase_url = "{fake.url}"\ntimeout = 0.3\n')
    fake.add_esim()
    fake.hang_next(seconds=0.8)
    r = run(cli, "status", "--json")
    assert r.exit_code == 0, r
    assert len(r.json["data"]["esims"]) == 1
    assert [q.path for q in fake.requests[:2]] == ["/esims", "/esims"]  # cut off, then retried


def test_one_account_failing_gives_partial(cli: Any, configure: Any) -> None:
    with FakeEsimGo() as good, FakeEsimGo(api_key="other-key-77") as bad:
        good.add_esim()
        bad.add_esim()
        bad.bad_credentials = True
        configure(
            f'[accounts.trip]\nprovider = "esimgo"\nbase_url = "{good.url}"\n'
            f'[accounts.work]\nprovider = "esimgo"\nbase_url = "{bad.url}"\n'
        )
        r = run(cli, "status", "--json", env={"ESIMCTL_WORK_API_KEY": "other-key-77"})
    assert r.exit_code == 3, r
    assert r.json["status"] == "partial"
    assert [e["account"] for e in r.json["data"]["esims"]] == ["trip"]
    assert r.json["errors"][0]["account"] == "work"


def test_rate_limit_is_respected_when_enforced(cli: Any, trip: FakeEsimGo, configure: Any) -> None:
    """At the documented 10 tokens/s, enforced with 429s: every eSIM arrives, pacing holds."""
    configure(f'[accounts.trip]\nprovider = "esimgo"\nbase_url = "{trip.url}"\n')
    trip.token_limit = 10
    iccids = trip.seed(20)
    trip.enforce_tokens = True
    assert set(status(cli)) == set(iccids)
    # The client paces itself (and stops when X-Ratelimit-Remaining hits 0): over three
    # windows at most its opening burst overshoots; unpaced, 8 requests in flight would not.
    assert trip.stats["429"] <= 2
    assert all("x-api-key" in q.headers for q in trip.requests)


# -- plans -----------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["wrapped", "bare"])
def test_topups_are_compatible_catalogue_bundles(cli: Any, trip: FakeEsimGo, shape: str) -> None:
    trip.catalogue_shape = shape
    iccid = trip.add_esim(bundle="esim_1GB_7D_PT_V2")
    r = run(cli, "plans", iccid, "--json")
    assert r.exit_code == 0, r
    plans = {p["id"]: p for p in r.json["data"]["plans"]}
    # PT bundles of the same profile, and the regional one covering PT
    assert set(plans) == {
        "esim_1GB_7D_PT_V2",
        "esim_3GB_30D_PT_V2",
        "esim_5GB_30D_PT_V2",
        "esim_ULE_7D_PT_V2",
        "esim_10GB_30D_EU_V2",
    }
    p = plans["esim_3GB_30D_PT_V2"]
    assert p["kind"] == "topup" and p["stacking"] == "queues"
    assert p["price"] == {"amount": "4.21", "currency": "USD"}
    assert p["data_bytes"] == 3 * GB and p["validity_days"] == 30 and p["countries"] == ["PT"]
    u = plans["esim_ULE_7D_PT_V2"]
    assert u["unlimited"] is True and u["data_bytes"] is None
    checked = {q.path.rsplit("/", 1)[-1] for q in trip.requests if "/compatible/" in q.path}
    assert "esim_2GB_15D_PT_ALT" not in checked  # another profile: filtered before asking
    assert "esim_3GB_30D_PT_V2" in checked


def test_incompatible_bundle_is_not_offered(cli: Any, trip: FakeEsimGo) -> None:
    iccid = trip.add_esim(bundle="esim_1GB_7D_PT_V2")
    trip.catalogue["esim_5GB_30D_PT_V2"]["profileName"] = None  # only the check can tell
    trip.esims[iccid]["profileName"] = "Profile 1"
    original = trip._compatible
    trip._compatible = lambda i, n: n != "esim_5GB_30D_PT_V2" and original(i, n)  # type: ignore[method-assign]
    ids = {p["id"] for p in run(cli, "plans", iccid, "--json").json["data"]["plans"]}
    assert "esim_5GB_30D_PT_V2" not in ids and "esim_3GB_30D_PT_V2" in ids


@pytest.mark.parametrize("amount", [0, -1])
def test_plans_for_a_country(cli: Any, trip: FakeEsimGo, amount: int) -> None:
    trip.unlimited_data_amount = amount
    trip.currency = "EUR"
    r = run(cli, "plans", "--country", "pt", "--json")
    assert r.exit_code == 0, r
    plans = {p["id"]: p for p in r.json["data"]["plans"]}
    assert "esim_V100_30D_PT_V2" not in plans  # voice only
    assert "esim_3GB_30D_ES_V2" not in plans and "esim_2GB_15D_PT_ALT" in plans
    assert {p["kind"] for p in plans.values()} == {"new"}
    assert plans["esim_ULE_7D_PT_V2"]["unlimited"] is True
    assert plans["esim_3GB_30D_PT_V2"]["price"] == {"amount": "4.21", "currency": "EUR"}
    assert trip.requests[-1].arg("countries") == "PT"


# -- renew -----------------------------------------------------------------------------------


def transactions(fake: FakeEsimGo) -> list[dict[str, Any]]:
    out = []
    for q in fake.requests:
        if q.method == "POST" and q.path == "/orders" and q.json().get("type") == "transaction":
            out.append(q.json())
    return out


def test_renew_buys_once_without_reassigning_and_waits_for_it(cli: Any, trip: FakeEsimGo) -> None:
    iccid = trip.add_esim(bundle="esim_1GB_7D_PT_V2", used=600 * MB)
    r = run(cli, "renew", iccid[-6:], "--plan", "esim_3GB_30D_PT_V2", "--yes", "--json")
    assert r.exit_code == 0, r
    assert r.json["data"]["applied"] is True
    order = r.json["data"]["order"]
    assert order["price"] == {"amount": "4.21", "currency": "USD"}
    assert order["id"] == trip.orders[0]["orderReference"] and order["iccid"] == iccid
    [body] = transactions(trip)
    assert body["assign"] is True
    assert body["order"] == [
        {
            "type": "bundle",
            "item": "esim_3GB_30D_PT_V2",
            "quantity": 1,
            "iccids": [iccid],
            "allowReassign": False,
        }
    ]
    assert trip.reassigned == [] and trip.balance == Decimal("95.79")
    e = status(cli)[iccid]
    assert e["data_remaining_bytes"] == 400 * MB + 3 * GB
    assert [p["state"] for p in e["packages"]] == ["active", "queued"]
    no_secret(r)


def test_renew_tty_table_and_history(cli: Any, trip: FakeEsimGo) -> None:
    iccid = trip.add_esim(bundle="esim_1GB_7D_PT_V2")
    r = run(cli, "renew", iccid, "--plan", "esim_1GB_7D_PT_V2", "--yes", tty=True)
    assert r.exit_code == 0, r
    assert "applied" in r.stdout
    h = run(cli, "history", "--json")
    assert h.exit_code == 0, h
    [o] = h.json["data"]["orders"]
    assert o["plan_id"] == "esim_1GB_7D_PT_V2" and o["iccid"] == iccid
    assert o["state"] == "completed" and o["price"] == {"amount": "1.79", "currency": "USD"}


def test_renew_pending_while_the_bundle_is_processing(cli: Any, trip: FakeEsimGo) -> None:
    iccid = trip.add_esim(bundle="esim_1GB_7D_PT_V2")
    trip.hold_processing = True
    r = run(cli, "renew", iccid, "--plan", "esim_3GB_30D_PT_V2", "--yes", "--timeout", "0m",
            "--json")  # fmt: skip
    assert r.exit_code == 0, r
    assert r.json["data"]["applied"] is False
    e = status(cli)[iccid]
    assert "processing" in [p["state"] for p in e["packages"]]
    assert "topup_pending" in e["attention"]
    trip.release_processing()
    e = status(cli)[iccid]
    assert "topup_pending" not in e["attention"]
    assert [p["state"] for p in e["packages"]] == ["active", "queued"]


def test_renew_dry_run_buys_nothing(cli: Any, trip: FakeEsimGo) -> None:
    iccid = trip.add_esim()
    r = run(cli, "renew", iccid, "--plan", "esim_3GB_30D_PT_V2", "--dry-run", "--json")
    assert r.exit_code == 0, r
    assert r.json["data"]["order"]["state"] == "dry_run"
    assert transactions(trip) == [] and trip.orders == []


def test_renew_max_price_refuses(cli: Any, trip: FakeEsimGo) -> None:
    iccid = trip.add_esim()
    r = run(cli, "renew", iccid, "--plan", "esim_3GB_30D_PT_V2", "--yes", "--max-price", "4USD")
    assert r.exit_code == 5, r
    assert trip.orders == []
    r = run(cli, "renew", iccid, "--plan", "esim_3GB_30D_PT_V2", "--yes", "--max-price", "4.21USD")
    assert r.exit_code == 0, r


def test_renew_without_yes_and_no_terminal_exits_2(cli: Any, trip: FakeEsimGo) -> None:
    iccid = trip.add_esim()
    assert run(cli, "renew", iccid, "--plan", "esim_3GB_30D_PT_V2").exit_code == 2
    assert trip.orders == []


@pytest.mark.parametrize(
    "plan", ["esim_99GB_1D_PT_V2", "esim_2GB_15D_PT_ALT", "esim_3GB_30D_ES_V2"]
)
def test_renew_unknown_or_incompatible_plan_exits_2(cli: Any, trip: FakeEsimGo, plan: str) -> None:
    iccid = trip.add_esim()
    r = run(cli, "renew", iccid, "--plan", plan, "--yes")
    assert r.exit_code == 2, r
    assert trip.orders == [] and transactions(trip) == []


def test_renew_insufficient_balance(cli: Any, trip: FakeEsimGo) -> None:
    iccid = trip.add_esim()
    trip.balance = Decimal("3.00")
    r = run(cli, "renew", iccid, "--plan", "esim_3GB_30D_PT_V2", "--yes", "--json")
    assert r.exit_code == 1, r
    assert r.json["errors"][0]["code"] == "insufficient_balance"
    assert "balance" in r.stderr and len(r.stderr.strip().splitlines()) <= 2
    assert trip.orders == [] and trip.balance == Decimal("3.00")


def test_price_rise_since_the_plan_was_shown_is_refused(cli: Any, trip: FakeEsimGo) -> None:
    iccid = trip.add_esim()

    def dearer(q: Any) -> bool:  # the validate step sees the new price
        if q.method == "POST" and q.path == "/orders" and q.json().get("type") == "validate":
            trip.catalogue["esim_3GB_30D_PT_V2"]["price"] = 9.99
        return False

    trip.fail_when(dearer, 500)
    r = run(cli, "renew", iccid, "--plan", "esim_3GB_30D_PT_V2", "--yes")
    assert r.exit_code == 5, r
    assert trip.orders == []


def test_purchase_answer_lost_is_found_not_bought_again(cli: Any, trip: FakeEsimGo) -> None:
    iccid = trip.add_esim(bundle="esim_1GB_7D_PT_V2")
    trip.drop_transaction_next()
    r = run(cli, "renew", iccid, "--plan", "esim_3GB_30D_PT_V2", "--yes", "--json")
    assert r.exit_code == 0, r  # the order is found by ICCID, bundle and time
    assert r.json["data"]["order"]["id"] == trip.orders[0]["orderReference"]
    assert len(trip.orders) == 1 and len(transactions(trip)) == 1
    h = run(cli, "history", "--json")
    assert [o["id"] for o in h.json["data"]["orders"]] == [trip.orders[0]["orderReference"]]


def test_purchase_answer_lost_and_lookup_down_then_second_run(cli: Any, trip: FakeEsimGo) -> None:
    iccid = trip.add_esim(bundle="esim_1GB_7D_PT_V2")
    trip.drop_transaction_next()
    for _ in range(2):  # the immediate lookup fails too (one retry configured)
        trip.fail_when(lambda q: q.method == "GET" and q.path == "/orders", 500)
    r = run(cli, "renew", iccid, "--plan", "esim_3GB_30D_PT_V2", "--yes", "--json")
    assert r.exit_code == 75, r
    assert len(trip.orders) == 1
    r2 = run(cli, "renew", iccid, "--plan", "esim_3GB_30D_PT_V2", "--yes", "--json")
    assert len(trip.orders) == 1, r2
    assert len(transactions(trip)) == 1


def test_purchase_5xx_is_an_unknown_outcome_never_retried(cli: Any, trip: FakeEsimGo) -> None:
    iccid = trip.add_esim()
    trip.fail_transaction_next(500)
    r = run(cli, "renew", iccid, "--plan", "esim_3GB_30D_PT_V2", "--yes", "--json")
    assert r.exit_code == 75, r
    assert len(transactions(trip)) == 1 and trip.orders == []


def test_purchase_rate_limited_is_not_retried(cli: Any, trip: FakeEsimGo) -> None:
    iccid = trip.add_esim()
    trip.fail_when(_transaction, 429, {"message": "Rate limit exceeded"}, {"Retry-After": "0"})
    r = run(cli, "renew", iccid, "--plan", "esim_3GB_30D_PT_V2", "--yes", "--json")
    assert r.exit_code == 75, r
    assert len(transactions(trip)) == 1 and trip.orders == []


def _transaction(q: Any) -> bool:
    return q.method == "POST" and q.path == "/orders" and q.json().get("type") == "transaction"


def test_renew_rejected_key_exits_4(cli: Any, trip: FakeEsimGo) -> None:
    iccid = trip.add_esim()
    assert run(cli, "status").exit_code == 0
    trip.bad_credentials = True
    r = run(cli, "renew", iccid, "--plan", "esim_3GB_30D_PT_V2", "--yes")
    assert r.exit_code == 4, r
    assert trip.orders == []


# -- history ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "field"),
    [("bare", "createdDate"), ("wrapped", "createdDate"), ("single", "createDate")],
)
def test_history_reads_every_order_shape(
    cli: Any, trip: FakeEsimGo, shape: str, field: str
) -> None:
    iccid = trip.add_esim(bundle="esim_1GB_7D_PT_V2")
    assert run(cli, "renew", iccid, "--plan", "esim_1GB_7D_PT_V2", "--yes").exit_code == 0
    trip.orders_shape, trip.order_date_field = shape, field
    h = run(cli, "history", "--json")
    assert h.exit_code == 0, h
    [o] = h.json["data"]["orders"]
    assert o["id"] == trip.orders[0]["orderReference"]
    assert o["price"] == {"amount": "1.79", "currency": "USD"}


def test_history_lists_provider_orders_not_made_here(cli: Any, trip: FakeEsimGo) -> None:
    iccid = trip.add_esim(bundle="esim_1GB_7D_PT_V2")
    # two orders placed elsewhere (the portal), one of them two bundles in one order
    for lines in (
        [{"type": "bundle", "item": "esim_1GB_7D_PT_V2", "quantity": 1, "iccids": [iccid]}],
        [
            {"type": "bundle", "item": "esim_1GB_7D_PT_V2", "quantity": 1, "iccids": [iccid]},
            {"type": "bundle", "item": "esim_3GB_30D_PT_V2", "quantity": 1, "iccids": [iccid]},
        ],
    ):
        resp = httpx.post(
            trip.url + "/orders",
            json={"type": "transaction", "assign": True, "order": lines},
            headers={"X-API-Key": DEFAULT_KEY},
        )
        assert resp.status_code == 200
    h = run(cli, "history", "--json")
    assert h.exit_code == 0, h
    orders = h.json["data"]["orders"]
    assert len(orders) == 3 and all(o["source"] == "provider" for o in orders)
    assert sorted(o["plan_id"] for o in orders) == [
        "esim_1GB_7D_PT_V2",
        "esim_1GB_7D_PT_V2",
        "esim_3GB_30D_PT_V2",
    ]


# -- the client directly: where the docs disagree ------------------------------------------------


def _provider(fake: FakeEsimGo, tmp_path: Path, key: str = DEFAULT_KEY) -> EsimGoProvider:
    fake.token_limit = 1000
    ctx = ProviderContext(
        account=AccountConfig("trip", "esimgo", fake.url, {"retries": 0, "rate_limit": 1000}),
        secrets={"API_KEY": key},
        clock=lambda: datetime.now(UTC),
        state_dir=tmp_path,
        timeout=2.0,
    )
    return EsimGoProvider(ctx)


@pytest.mark.parametrize("unknown_status", [400, 403])
def test_unknown_iccid_is_not_found_either_way(
    fake: FakeEsimGo, tmp_path: Path, unknown_status: int
) -> None:
    fake.unknown_iccid_status = unknown_status

    async def go() -> None:
        async with _provider(fake, tmp_path) as p:
            with pytest.raises(NotFound):
                await p.get_esim("8944000000000000000")
        async with _provider(fake, tmp_path, key="wrong") as p:
            with pytest.raises(AuthRejected):
                await p.get_esim("8944000000000000000")

    asyncio.run(go())


@pytest.mark.parametrize("variant", ["epoch_ms", "iso"])
def test_detail_and_organisation_variants(fake: FakeEsimGo, tmp_path: Path, variant: str) -> None:
    fake.first_installed = variant
    fake.organisation_shape = "wrapped" if variant == "iso" else "flat"
    fake.allowance_unit = "BYTES" if variant == "iso" else "MB"
    iccid = fake.add_esim(used=500 * MB)

    async def go() -> None:
        async with _provider(fake, tmp_path) as p:
            e = await p.get_esim(iccid)
            assert e.data_remaining_bytes == 2_500_000_000
            assert await p.balance() == Money(Decimal("100.00"), "USD")

    asyncio.run(go())


def test_find_order_takes_only_its_own_order(fake: FakeEsimGo, tmp_path: Path) -> None:
    """No client reference on eSIM Go: ICCID, bundle, time and what others claimed decide."""
    iccid = fake.add_esim(bundle="esim_1GB_7D_PT_V2")

    async def go() -> None:
        async with _provider(fake, tmp_path) as p:
            [e] = await p.list_esims()
            plans = {x.id: x for x in await p.topups(e)}
            first = await p.buy_topup(e, plans["esim_1GB_7D_PT_V2"], "ref-one")
            start = datetime.now(UTC)
            p.ctx.journal.record("ref-two", iccid=iccid, plan_id="esim_1GB_7D_PT_V2",
                           sent_at=start.isoformat())  # fmt: skip
            # nothing was bought for ref-two: the earlier order is ref-one's
            assert (
                await p.find_order("ref-two", iccid=iccid, since=start - timedelta(hours=1)) is None
            )
            fake.drop_transaction_next()
            with pytest.raises(OutcomeUnknown):
                await p.buy_topup(e, plans["esim_1GB_7D_PT_V2"], "ref-three")
            found = await p.find_order("ref-three", iccid=iccid, since=start - timedelta(hours=1))
            assert found is not None and found.id != first.id
            assert found.id == fake.orders[-1]["orderReference"] and found.reference == "ref-three"
            # another bundle on the same eSIM is not ours either
            p.ctx.journal.record("ref-four", iccid=iccid, plan_id="esim_5GB_30D_PT_V2",
                           sent_at=start.isoformat())  # fmt: skip
            assert await p.find_order("ref-four", iccid=iccid, since=start) is None

    asyncio.run(go())


def test_is_applied_without_order_reference_on_assignments(
    fake: FakeEsimGo, tmp_path: Path
) -> None:
    """Where assignments do not carry the order reference, the bundle name and time decide."""
    fake.assignment_refs = "opaque"
    iccid = fake.add_esim(bundle="esim_1GB_7D_PT_V2")

    async def go() -> None:
        async with _provider(fake, tmp_path) as p:
            before = await p.get_esim(iccid)
            [plan] = [x for x in await p.topups(before) if x.id == "esim_1GB_7D_PT_V2"]
            fake.hold_processing = True
            order = await p.buy_topup(before, plan, "ref-x")
            during = await p.get_esim(iccid)
            assert not p.is_applied(before, during, order)
            fake.release_processing()
            after = await p.get_esim(iccid)
            assert p.is_applied(before, after, order)
            assert not p.is_applied(None, before, order)  # the older 1 GB bundle is not it

    asyncio.run(go())


def test_mapped_errors(fake: FakeEsimGo, tmp_path: Path) -> None:
    iccid = fake.add_esim()

    async def go() -> None:
        async with _provider(fake, tmp_path) as p:
            [e] = await p.list_esims()
            plans = {x.id: x for x in await p.topups(e)}
            fake.balance = Decimal("1")
            with pytest.raises(InsufficientBalance):
                await p.buy_topup(e, plans["esim_3GB_30D_PT_V2"], "r1")
            with pytest.raises(InvalidInput):
                await p._call("GET", f"/esims/{iccid}/compatible/esim_nope")

    asyncio.run(go())


def test_account_list_and_remove(cli: Any, fake: FakeEsimGo, configure: Any) -> None:
    configure("")
    add = cli(
        "account", "add", "trip", "--provider", "esimgo", "--base-url", fake.url,
        "--secrets-stdin", input=f"API_KEY={DEFAULT_KEY}\n",
    )  # fmt: skip
    assert add.exit_code == 0, add
    listed = cli("account", "list", "--json")
    assert listed.exit_code == 0, listed
    assert "esimgo" in listed.stdout
    gone = cli("account", "remove", "trip", "--yes")
    assert gone.exit_code == 0, gone
    assert cli("account", "test", "trip").exit_code == 2
    no_secret(add, listed, gone)


def test_status_check_flags_low_data_and_expiry(cli: Any, trip: FakeEsimGo) -> None:
    trip.add_esim(bundle="esim_1GB_7D_PT_V2", used=950 * MB, started=timedelta(days=6))
    r = run(cli, "status", "--check", "--json")
    assert r.exit_code == 8, r
    [e] = r.json["data"]["esims"]
    assert {"low_data", "expiring_soon"} <= set(e["attention"])
    # a queued bundle behind it means neither: the data and the days go on
    trip.add_esim(
        "8944538532008199999",
        bundle="esim_1GB_7D_PT_V2",
        used=950 * MB,
        started=timedelta(days=6),
        queued=("esim_5GB_30D_PT_V2",),
    )
    e = status(cli)["8944538532008199999"]
    assert e["attention"] == []


def test_bad_account_options_are_refused(cli: Any, fake: FakeEsimGo, configure: Any) -> None:
    configure("")
    r = cli(
        "account", "add", "trip", "--provider", "esimgo", "--set", "rate_limit=fast",
        "--secrets-stdin", input=f"API_KEY={DEFAULT_KEY}\n",
    )  # fmt: skip
    assert r.exit_code == 2, r
    assert "rate_limit" in r.stderr
    configure(f'[accounts.trip]\nprovider = "esimgo"\nbase_url = "{fake.url}"\ntimeout = -1\n')
    r = run(cli, "status", "--json")
    assert r.exit_code == 2, r
    assert "timeout" in r.json["errors"][0]["message"]
