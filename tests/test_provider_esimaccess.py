"""eSIM Access open API v1: the parsers fed the documented examples, then every command
through the CLI against the stateful fake in ``tests/fakes/esimaccess.py``."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from esimctl.config import AccountConfig
from esimctl.errors import (
    AuthRejected,
    ExitCode,
    InsufficientBalance,
    InvalidInput,
    LimitRefused,
    NotSent,
    OutcomeUnknown,
    ProviderError,
    RateLimited,
    TemporaryFailure,
)
from esimctl.models import EsimState, Money, Order, OrderState
from esimctl.providers.base import ProviderContext
from esimctl.providers.esimaccess import EsimAccessProvider
from esimctl.providers.esimaccess import answers as ea
from esimctl.providers.esimaccess.provider import USAGE_AUTO_MAX, signature
from fakes.esimaccess import ACCESS_CODE, API, GB, SECRET_KEY, FakeEsimAccess, fmt

SPAIN = "8943108170001234567"  # 3 GB plan in use, 1.2 GB used
JAPAN_NEW = "8943108170001234568"  # not installed yet
JAPAN_UNL = "8943108170001234569"  # unlimited daily plan in use
CREDS = {"ESIMCTL_TRIP_ACCESS_CODE": ACCESS_CODE, "ESIMCTL_TRIP_SECRET_KEY": SECRET_KEY}
#: Tests lift the client's own 8/s throttle (one test keeps it) and keep retries short.
FAST = {"rate_limit": 1000, "retries": 0, "timeout": 2}

# -- documented examples (reference note §1.5, official Postman collection) ----------------

DOC_ESIM = json.loads(
    """{"esimTranNo": "25061412340017", "orderNo": "B25061412340015",
   "transactionId": "pem-7f3c2a9e-0001", "imsi": "232104070123456",
   "iccid": "8943108170001234567", "msisdn": "436789040123456", "smsStatus": 1,
   "ac": "LPA:1$rsp-eu.redteamobile.com$0A1B2C3D4E5F60718293A4B5C6D7E8F9",
   "qrCodeUrl": "https://p.qrsim.net/3c9d1f0e2b7a4c55a0d1e6f7a8b9c0d1.png",
   "shortUrl": "https://p.qrsim.net/3c9d1f0e2b7a4c55a0d1e6f7a8b9c0d1",
   "smdpStatus": "ENABLED", "eid": "89049032007108882600137544319616",
   "activeType": 2, "dataType": 1,
   "activateTime": "2025-06-16T08:02:11+0000", "installationTime": "2025-06-15T19:44:03+0000",
   "expiredTime": "2025-07-16T08:02:11+0000",
   "totalVolume": 5368709120, "totalDuration": 30, "durationUnit": "DAY",
   "orderUsage": 1288490188, "esimStatus": "IN_USE",
   "pin": "", "puk": "", "apn": "drei.at",
   "ipExport": "NL/FR", "supportTopUpType": 2, "fupPolicy": "",
   "packageList": [{"packageName": "Spain 5GB 30Days", "packageCode": "CKH003", "slug": "ES_5_30",
                    "duration": 30, "volume": 5368709120, "locationCode": "ES",
                    "createTime": "2025-06-14T12:34:17+0000"}]}"""
)
# The official "Query All Allocated Profiles" example: cancelled, never activated, and its
# expiredTime is creation + 180 days (the install deadline).
DOC_QUERY_ANSWER = json.loads(
    """{"success": true, "errorCode": "0", "errorMsg": null, "obj": {"esimList": [{
    "esimTranNo": "23120118156818", "orderNo": "B23120118131854",
    "transactionId": "test344343433", "imsi": "232104070077567", "iccid": "8943108170000775671",
    "smsStatus": 1, "msisdn": "436789040077567",
    "ac": "LPA:1$rsp-eu.redteamobile.com$43DE23C67EE747BCAD6B63E8B67B261F",
    "qrCodeUrl": "https://p.qrsim.net/0fa4f29eb25b4d6c84ff4b8422a1da54.png",
    "shortUrl": "https://p.qrsim.net/0fa4f29eb25b4d6c84ff4b8422a1da54",
    "smdpStatus": "RELEASED", "eid": "", "activeType": 1, "dataType": 1, "activateTime": null,
    "expiredTime": "2024-05-29T18:34:17+0000", "totalVolume": 5368709120, "totalDuration": 30,
    "durationUnit": "DAY", "orderUsage": 0, "esimStatus": "CANCEL", "pin": "", "puk": "",
    "apn": "drei.at", "packageList": [{"packageName": "Spain 5GB 30Days", "packageCode": "CKH003",
    "slug": "ES_5_30", "duration": 30, "volume": 5368709120, "locationCode": "ES",
    "createTime": "2023-12-01T18:34:17+0000"}]}],
    "pager": {"pageSize": 20, "pageNum": 1, "total": 1}}}"""
)
DOC_USAGE = json.loads(
    """{"success": true, "errorCode": "0", "errorMsg": null, "obj": {"esimUsageList": [
    {"esimTranNo": "25031120490003", "dataUsage": 1453344832, "totalData": 5368709120,
     "lastUpdateTime": "2025-03-19T18:00:00+0000"}]}}"""
)
DOC_PACKAGE_SI = json.loads(
    """{"packageCode": "CKH139", "name": "Slovenia 5GB 30Days", "price": 112500,
    "currencyCode": "USD", "volume": 5368709120, "unusedValidTime": 180, "duration": 30,
    "durationUnit": "DAY", "location": "SI", "description": "Slovenia 5GB 30Days",
    "activeType": 1, "favorite": false, "retailPrice": 112500, "speed": "3G/4G",
    "locationNetworkList": [{"locationName": "Slovenia",
    "locationLogo": "https://static.redteago.com/img/logos/SloveniaFlag.png",
    "operatorList": []}]}"""
)
DOC_PACKAGE_ES = json.loads(
    """{"packageCode": "CKH002", "slug": "ES_3_30", "name": "Spain 3GB 30Days",
   "price": 18000, "retailPrice": 36000, "currencyCode": "USD",
   "volume": 3221225472, "duration": 30, "durationUnit": "DAY", "unusedValidTime": 180,
   "location": "ES", "locationCode": "ES", "description": "Spain 3GB 30Days",
   "activeType": 2, "dataType": 1, "smsStatus": 0, "favorite": false,
   "speed": "3G/4G/5G", "ipExport": "NL/FR", "supportTopUpType": 2, "fupPolicy": ""}"""
)
DOC_TOPUP_ANSWER = json.loads(
    """{"errorCode": null, "errorMsg": null, "success": true,
    "obj": {"transactionId": "your_transaction_id_here", "iccid": "89852245280001354019",
    "expiredTime": "2023-09-07T17:01:37+0000", "totalVolume": 7516192768,
    "totalDuration": 49, "orderUsage": 6841270782}}"""
)


# -- parsers ---------------------------------------------------------------------------------


def test_signature_matches_the_official_test_vector():
    sig = signature(
        "1111", "1628670421", "4ce9d9cdac9e4e17b3a2c66c358c1ce2", "11111", b'{"imsi":"326543826"}'
    )
    assert sig == "7eb765e27df5373dea2dbc8c41a7d9557743e46c8054750f3d851b3fd01d0835"


def test_documented_esim_in_use():
    now = datetime(2025, 6, 20, 12, tzinfo=UTC)
    e = ea.parse_esim(DOC_ESIM, account="trip", fetched_at=now)
    assert e is not None
    assert e.iccid == "8943108170001234567" and e.state == EsimState.ACTIVE
    assert e.plan == "Spain 5GB 30Days"
    assert e.data_total_bytes == 5 * GB and e.unit_base == 1024
    assert e.data_used_bytes == 1288490188
    assert e.data_remaining_bytes == 5 * GB - 1288490188
    assert e.expires_at == datetime(2025, 7, 16, 8, 2, 11, tzinfo=UTC)
    assert e.ref["esimTranNo"] == "25061412340017" and e.ref["expiry"] == "plan_end"
    assert e.as_of is None  # orderUsage alone says nothing of when it was measured


def test_documented_query_answer_cancelled_before_activation():
    row = DOC_QUERY_ANSWER["obj"]["esimList"][0]
    e = ea.parse_esim(row, account="trip", fetched_at=datetime(2024, 1, 1, tzinfo=UTC))
    assert e is not None and e.state == EsimState.RECYCLED
    # Never activated: expiredTime is the install deadline, 180 days after creation.
    assert e.ref["expiry"] == "install_by"
    assert e.expires_at == datetime(2024, 5, 29, 18, 34, 17, tzinfo=UTC)
    assert ea.is_success(DOC_QUERY_ANSWER)
    orders = ea.parse_orders(row, account="trip")
    assert [(o.id, o.state, o.plan_id) for o in orders] == [
        ("B23120118131854", OrderState.FAILED, "CKH003")  # cancelled profiles are refunded
    ]


def test_activated_esim_still_showing_the_install_deadline_gets_its_plan_end():
    row = {**DOC_ESIM, "expiredTime": "2025-12-11T12:34:17+0000"}  # creation + 180 days
    e = ea.parse_esim(row, account="trip", fetched_at=datetime(2025, 6, 20, tzinfo=UTC))
    assert e is not None
    assert e.expires_at == datetime(2025, 7, 16, 8, 2, 11, tzinfo=UTC)  # activation + 30 d


@pytest.mark.parametrize(
    ("status", "smdp", "state"),
    [
        ("GOT_RESOURCE", "RELEASED", EsimState.NOT_ACTIVE),
        ("IN_USE", "ENABLED", EsimState.ACTIVE),
        ("USED_UP", "DISABLED", EsimState.DEPLETED),
        ("UNUSED_EXPIRED", "RELEASED", EsimState.EXPIRED),
        ("USED_EXPIRED", "ENABLED", EsimState.EXPIRED),
        ("REVOKE", "DELETED", EsimState.RECYCLED),  # query docs' spelling
        ("REVOKED", "DELETED", EsimState.RECYCLED),  # webhook docs' spelling
        ("SUSPENDED", "ENABLED", EsimState.UNKNOWN),
        ("SOMETHING_NEW", "ENABLED", EsimState.UNKNOWN),
    ],
)
def test_states(status, smdp, state):
    assert ea.esim_state(status, smdp) == state


def test_usage_both_documented_shapes():
    documented = ea.parse_usage(DOC_USAGE["obj"])
    bare = ea.parse_usage(DOC_USAGE["obj"]["esimUsageList"])  # EA-REF shows obj as a list
    assert documented == bare
    u = documented["25031120490003"]
    assert (u.used, u.total) == (1453344832, 5368709120)
    assert u.as_of == datetime(2025, 3, 19, 18, tzinfo=UTC)


def test_usage_figures_and_time_go_into_the_esim():
    usage = ea.Usage(used=2 * GB, total=5 * GB, as_of=datetime(2025, 6, 20, 14, tzinfo=UTC))
    e = ea.parse_esim(
        DOC_ESIM, account="trip", usage=usage, fetched_at=datetime(2025, 6, 20, 15, tzinfo=UTC)
    )
    assert e is not None
    assert e.data_used_bytes == 2 * GB and e.as_of == datetime(2025, 6, 20, 14, tzinfo=UTC)


def test_documented_packages_and_odd_ones():
    (si,) = ea.parse_plans(DOC_PACKAGE_SI, account="trip", kind="new")
    assert si.id == "CKH139" and si.price == Money(Decimal("11.25"), "USD")
    assert si.data_bytes == 5 * GB and si.validity_days == 30 and si.countries == ("SI",)
    (es,) = ea.parse_plans(DOC_PACKAGE_ES, account="trip", kind="topup")
    assert es.price is not None and es.price.to_json() == {"amount": "1.80", "currency": "USD"}
    assert es.stacking == "stacks" and es.unit_base == 1024
    # odd: a price as a string, no currency, a volume as a string
    odd = {**DOC_PACKAGE_ES, "price": "18000", "currencyCode": None, "volume": "3221225472"}
    (o,) = ea.parse_plans(odd, account="trip", kind="new")
    assert o.price == Money(Decimal("1.8"), "USD") and o.data_bytes == 3 * GB
    # multi-country plans list every country
    multi = {**DOC_PACKAGE_ES, "location": "MX,US,CA", "locationCode": "NA-3"}
    assert ea.parse_plans(multi, account="trip", kind="new")[0].countries == ("MX", "US", "CA")
    # a daily-unlimited day pass: unlimited, priced per day, bought for N days (issue 18)
    unl = {
        **DOC_PACKAGE_ES,
        "packageCode": "JPU01",
        "dataType": 4,
        "supportTopUpType": 3,
        "duration": 1,
        "price": 39000,
    }
    (day,) = ea.parse_plans(unl, account="trip", kind="topup")
    assert day.id == "JPU01" and day.per_day and day.days is None
    assert day.unlimited and day.data_bytes is None and day.price == Money(Decimal("3.9"), "USD")
    week = day.for_days(7)
    assert week.id == "JPU01:7d" and week.days == 7 and week.validity_days == 7
    assert week.price == Money(Decimal("27.3"), "USD")
    assert ea.split_plan_id("JPU01:7d") == ("JPU01", 7)
    assert ea.split_plan_id("TOPUP_CKH002") == ("TOPUP_CKH002", None)


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("2025-06-16T08:02:11+0000", datetime(2025, 6, 16, 8, 2, 11, tzinfo=UTC)),
        ("2025-06-16T08:02:11Z", datetime(2025, 6, 16, 8, 2, 11, tzinfo=UTC)),
        ("2025-06-16T10:02:11+02:00", datetime(2025, 6, 16, 8, 2, 11, tzinfo=UTC)),
        ("2025-06-16 08:02:11", datetime(2025, 6, 16, 8, 2, 11, tzinfo=UTC)),  # naive = UTC
        (1750060931000, datetime(2025, 6, 16, 8, 2, 11, tzinfo=UTC)),  # epoch ms
        ("1750060931", datetime(2025, 6, 16, 8, 2, 11, tzinfo=UTC)),  # epoch s as text
        (None, None),
        ("", None),
        ("not a time", None),
    ],
)
def test_times(raw, want):
    assert ea.parse_time(raw) == want


def test_envelope_readings():
    assert ea.is_success({"success": True, "errorCode": None})
    assert ea.is_success({"success": "true", "errorCode": "0"})  # EA-REF: a string
    assert not ea.is_success({"success": "false", "errorCode": "101003"})
    assert not ea.is_success({"success": False})
    assert ea.envelope_error({"errorCode": "200007", "errorMsg": "Insufficient"}) == (
        "200007",
        "Insufficient",
    )
    # the docs' tables name the field errorMessage
    assert ea.envelope_error({"errorCode": 101003, "errorMessage": "mismatch"}) == (
        "101003",
        "mismatch",
    )


@pytest.mark.parametrize(
    ("code", "kind", "exit_code"),
    [
        ("101003", AuthRejected, ExitCode.CREDENTIALS),
        ("000101", AuthRejected, ExitCode.CREDENTIALS),
        ("200007", InsufficientBalance, ExitCode.FAILURE),
        ("310241", InvalidInput, ExitCode.USAGE),
        ("200002", InvalidInput, ExitCode.USAGE),
        ("900001", RateLimited, ExitCode.TEMPORARY),
        ("000001", TemporaryFailure, ExitCode.TEMPORARY),
        ("200005", LimitRefused, ExitCode.REFUSED),  # the price changed: nothing bought
        ("200006", LimitRefused, ExitCode.REFUSED),
        ("123456", ProviderError, ExitCode.FAILURE),
    ],
)
def test_error_codes(code, kind, exit_code):
    err = ea.map_error(code, "text", account="trip")
    assert isinstance(err, kind) and err.exit_code == exit_code
    assert "\n" not in err.message


def test_transaction_ids_fit_fifty_characters():
    assert ea.transaction_id("esimctl-0123456789abcdef0123") == "esimctl-0123456789abcdef0123"
    long = "x" * 80
    assert len(ea.transaction_id(long)) == 50
    assert ea.transaction_id(long) == ea.transaction_id(long)
    assert ea.transaction_id(long) != ea.transaction_id("x" * 81)


def test_orders_include_topups_from_the_package_list():
    row = {
        **DOC_ESIM,
        "packageList": [
            *DOC_ESIM["packageList"],
            {
                "packageName": "Spain 1GB 7Days",
                "packageCode": "TOPUP_CKH491",
                "duration": 7,
                "volume": GB,
                "locationCode": "ES",
                "createTime": "2025-06-20T09:15:42+0000",
                "esimTranNo": "25062009150042",
                "transactionId": "esimctl-abc",
            },
        ],
    }
    orders = ea.parse_orders(row, account="trip")
    assert [(o.id, o.plan_id, o.reference) for o in orders] == [
        ("B25061412340015", "CKH003", "pem-7f3c2a9e-0001"),
        ("25062009150042", "TOPUP_CKH491", "esimctl-abc"),
    ]
    assert all(o.price is None and o.source == "provider" for o in orders)


# -- the fake and the CLI --------------------------------------------------------------------


def config_for(fake: FakeEsimAccess, name: str = "trip", **opts: Any) -> str:
    options = {**FAST, **opts}
    lines = [f"[accounts.{name}]", 'provider = "esimaccess"', f'base_url = "{fake.url}"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in options.items() if v is not None]
    return "\n".join(lines) + "\n"


@pytest.fixture
def fake() -> Iterator[FakeEsimAccess]:
    f = FakeEsimAccess()
    f.start()
    f.add_esim(iccid=SPAIN, package="CKH002", used=int(1.2 * GB))
    f.add_esim(iccid=JAPAN_NEW, package="JC016", status="GOT_RESOURCE")
    f.add_esim(iccid=JAPAN_UNL, package="JPU01", used=7 * GB, expires_in=timedelta(days=3))
    yield f
    f.stop()


@pytest.fixture
def ea_cli(cli, configure, fake) -> Callable[..., Any]:
    configure(config_for(fake))

    def run(*args: str, **kw: Any) -> Any:
        return cli(*args, env={**CREDS, **kw.pop("env", {})}, **kw)

    return run


def _esims(r) -> dict[str, dict[str, Any]]:
    assert r.exit_code == 0, r
    return {e["iccid"]: e for e in r.json["data"]["esims"]}


def test_status_shows_the_providers_figures(ea_cli, fake):
    rows = _esims(ea_cli("status", "--json"))
    es = rows[SPAIN]
    spain = fake.esim(SPAIN)
    assert (es["account"], es["provider"], es["state"]) == ("trip", "esimaccess", "active")
    assert es["plan"] == "Spain 3GB 30Days"
    assert es["data_total_bytes"] == 3 * GB
    assert es["data_used_bytes"] == int(1.2 * GB)
    assert es["data_remaining_bytes"] == 3 * GB - int(1.2 * GB)
    assert es["expires_at"] == spain["expiredTime"].replace("+0000", "Z")
    # "as of" is when eSIM Access settled the usage, not when we asked
    assert es["as_of"] == fmt(fake.last_update[spain["esimTranNo"]]).replace("+0000", "Z")
    unl = rows[JAPAN_UNL]
    assert unl["unlimited"] is True and unl["state"] == "active"
    assert unl["data_remaining_bytes"] is None and unl["data_total_bytes"] is None
    new = rows[JAPAN_NEW]
    assert new["state"] == "not_active" and new["data_used_bytes"] == 0
    # before activation the expiry is the install deadline, 180 days after purchase
    assert new["expires_at"] == fake.esim(JAPAN_NEW)["expiredTime"].replace("+0000", "Z")


def test_status_table_reads_like_the_providers_app(ea_cli):
    r = ea_cli("status", tty=True, env={"NO_COLOR": "1"})
    assert r.exit_code == 0, r
    spain = next(ln for ln in r.stdout.splitlines() if SPAIN[-6:] in ln)
    assert "/ 3 GB" in spain  # a 3 GB plan reads 3 GB, not 3.2 GB
    unl = next(ln for ln in r.stdout.splitlines() if JAPAN_UNL[-6:] in ln)
    assert "unlimited" in unl and "0 B" not in unl


def test_every_request_is_a_signed_post(ea_cli, fake):
    assert ea_cli("status", "--json").exit_code == 0
    assert fake.requests
    ids = set()
    for req in fake.requests:
        assert req.method == "POST" and req.path.startswith(API)
        assert req.header("Content-Type") == "application/json"
        ts, rid = req.header("RT-Timestamp"), req.header("RT-RequestID")
        assert req.header("RT-AccessCode") == ACCESS_CODE
        assert abs(int(ts) - time.time() * 1000) < 60_000  # milliseconds
        want = hmac.new(
            SECRET_KEY.encode(), (ts + rid + ACCESS_CODE).encode() + req.body, hashlib.sha256
        ).hexdigest()
        assert req.header("RT-Signature") == want
        ids.add(rid)
    assert len(ids) == len(fake.requests)


def test_a_server_keyed_with_the_access_code_is_handled_too(ea_cli, fake):
    fake.sign_key = "access_code"  # the agent notes' reading of the docs
    assert ea_cli("status", "--json").exit_code == 0
    statuses = [r for r in fake.requests if r.path.endswith("/esim/query")]
    # one refused attempt, then the client keeps the key that worked, also for next runs
    assert len(statuses) == 2
    assert ea_cli("status", "--json", "--refresh").exit_code == 0
    assert len([r for r in fake.requests if r.path.endswith("/esim/query")]) == 3
    fake.sign_key = "secret"  # and back
    assert ea_cli("status", "--json", "--refresh").exit_code == 0
    assert len([r for r in fake.requests if r.path.endswith("/esim/query")]) == 5


def test_a_server_that_wants_a_filter_to_list(ea_cli, fake):
    fake.require_filter = True
    rows = _esims(ea_cli("status", "--json"))
    assert set(rows) == {SPAIN, JAPAN_NEW, JAPAN_UNL}
    assert any(b"startTime" in r.body for r in fake.requests)


def test_every_page_is_fetched(cli, configure, fake):
    fake.seed(1100)
    configure(config_for(fake, usage_times=False))
    rows = _esims(cli("status", "--json", env=CREDS))
    assert len(rows) == 1103
    pages = [json.loads(r.body)["pager"]["pageNum"] for r in fake.requests]
    assert pages == [1, 2, 3]


def test_usage_is_asked_for_ten_esims_at_a_time(ea_cli, fake):
    fake.seed(23)
    assert ea_cli("status", "--json").exit_code == 0
    batches = [
        json.loads(r.body)["esimTranNoList"]
        for r in fake.requests
        if r.path.endswith("/esim/usage/query")
    ]
    assert batches and all(len(b) <= 10 for b in batches)
    in_use = {t for t, e in fake.esims.items() if e["esimStatus"] == "IN_USE"}
    assert {t for b in batches for t in b} == in_use


def test_usage_times_for_many_esims_only_when_asked(cli, configure, fake):
    fake.seed(USAGE_AUTO_MAX + 1)

    def usage_calls() -> int:
        return sum(1 for r in fake.requests if r.path.endswith("/esim/usage/query"))

    configure(config_for(fake))
    rows = _esims(cli("status", "--json", env=CREDS))
    assert usage_calls() == 0 and rows[SPAIN]["as_of"] is None
    assert rows[SPAIN]["data_used_bytes"] == int(1.2 * GB)  # figures of /esim/query
    configure(config_for(fake, usage_times=True))
    rows = _esims(cli("status", "--json", "--refresh", env=CREDS))
    assert usage_calls() == 21 and rows[SPAIN]["as_of"] is not None


def test_the_other_documented_shapes(ea_cli, fake):
    fake.usage_bare_list = True
    fake.success_as_string = True
    fake.error_field = "errorMessage"
    rows = _esims(ea_cli("status", "--json"))
    assert rows[SPAIN]["as_of"] is not None and rows[SPAIN]["data_total_bytes"] == 3 * GB
    fake.bad_credentials = True
    r = ea_cli("status", "--json", "--refresh")
    assert r.exit_code == 4 and "signature mismatch" in r.json["errors"][0]["message"]


def test_a_reused_iccid_shows_its_current_allocation(ea_cli, fake):
    old = datetime.now(UTC) - timedelta(days=400)
    fake.add_esim(
        iccid="8943108170009999999",
        package="CKH003",
        status="USED_EXPIRED",
        created=old,
        expires_in=timedelta(days=-300),
    )
    fake.add_esim(iccid="8943108170009999999", package="CKH002", used=GB)
    rows = _esims(ea_cli("status", "--json"))
    row = rows["8943108170009999999"]
    assert row["state"] == "active" and row["plan"] == "Spain 3GB 30Days"
    assert sum(1 for i in rows if i == "8943108170009999999") == 1


def test_a_new_usage_figure_shows_on_refresh(ea_cli, fake):
    before = _esims(ea_cli("status", "--json"))[SPAIN]
    fake.use_data(SPAIN, GB)
    cached = _esims(ea_cli("status", "--json"))[SPAIN]
    assert cached == before  # usage settles every 2-3 h: the cache holds that long
    after = _esims(ea_cli("status", "--json", "--refresh"))[SPAIN]
    assert after["data_used_bytes"] == before["data_used_bytes"] + GB
    assert after["as_of"] > before["as_of"]


def test_plans_for_an_esim_are_its_topups(ea_cli, fake):
    r = ea_cli("plans", SPAIN, "--json")
    assert r.exit_code == 0, r
    plans = {p["id"]: p for p in r.json["data"]["plans"]}
    assert set(plans) == {"TOPUP_CKH491", "TOPUP_CKH002"}
    p = plans["TOPUP_CKH491"]
    assert p["price"] == {"amount": "0.70", "currency": "USD"}
    assert (p["data_bytes"], p["validity_days"], p["kind"]) == (GB, 7, "topup")
    assert p["countries"] == ["ES"] and p["stacking"] == "stacks"
    asked = json.loads(next(r.body for r in fake.requests if r.path.endswith("/package/list")))
    assert asked["type"] == "TOPUP" and asked["iccid"] == SPAIN
    assert asked["esimTranNo"] == fake.esim(SPAIN)["esimTranNo"]


def test_day_passes_are_sold_per_day(ea_cli):
    plans = {p["id"]: p for p in ea_cli("plans", JAPAN_UNL, "--json").json["data"]["plans"]}
    day = plans["TOPUP_JPD01"]  # one plan priced per day, bought for N days (issue 18)
    assert day["price"] == {"amount": "1.50", "currency": "USD"}
    assert day["per_day"] is True and day["validity_days"] == 1 and day["days"] is None


def test_plans_for_a_country(ea_cli):
    r = ea_cli("plans", "--country", "es", "--json")
    assert r.exit_code == 0, r
    plans = {p["id"]: p for p in r.json["data"]["plans"]}
    assert set(plans) == {"CKH002", "CKH003", "EU42_10"}  # the regional plan covers Spain
    assert all(p["kind"] == "new" for p in plans.values())
    jp = {p["id"]: p for p in ea_cli("plans", "--country", "JP", "--json").json["data"]["plans"]}
    assert jp["JPU01"]["unlimited"] is True and jp["JPU01"]["data_bytes"] is None
    assert jp["JPU01"]["per_day"] is True


def test_renew_buys_once_and_status_shows_it(ea_cli, fake):
    before = _esims(ea_cli("status", "--json"))[SPAIN]
    r = ea_cli("renew", SPAIN, "--plan", "TOPUP_CKH491", "--yes", "--json")
    assert r.exit_code == 0, r
    assert r.json["data"]["applied"] is True
    order = r.json["data"]["order"]
    assert order["price"] == {"amount": "0.70", "currency": "USD"}
    assert order["plan_id"] == "TOPUP_CKH491" and order["state"] == "completed"
    (topup,) = fake.topups
    assert topup["transactionId"].startswith("esimctl-")
    assert topup["amount"] == "7000"  # the agreed price, checked by eSIM Access
    assert topup["esimTranNo"] == fake.esim(SPAIN)["esimTranNo"]
    assert fake.balance == 500_000 - 7000
    after = _esims(ea_cli("status", "--json"))[SPAIN]
    assert after["data_total_bytes"] == before["data_total_bytes"] + GB  # stacks
    assert after["data_remaining_bytes"] == before["data_remaining_bytes"] + GB
    end = datetime.fromisoformat(after["expires_at"]) - datetime.fromisoformat(before["expires_at"])
    assert end == timedelta(days=7)


def test_renew_dry_run_buys_nothing(ea_cli, fake):
    r = ea_cli("renew", SPAIN, "--plan", "TOPUP_CKH002", "--dry-run", "--json")
    assert r.exit_code == 0, r
    assert r.json["data"]["order"]["state"] == "dry_run"
    assert fake.topups == [] and fake.balance == 500_000


def test_renew_refuses_above_max_price(ea_cli, fake):
    r = ea_cli("renew", SPAIN, "--plan", "TOPUP_CKH002", "--yes", "--max-price", "1.50USD")
    assert r.exit_code == 5, r
    assert fake.topups == []
    assert (
        ea_cli(
            "renew", SPAIN, "--plan", "TOPUP_CKH002", "--yes", "--max-price", "1.80USD"
        ).exit_code
        == 0
    )


def test_renew_unknown_plan_is_invalid_input(ea_cli, fake):
    r = ea_cli("renew", SPAIN, "--plan", "TOPUP_JC016", "--yes")  # Japan's top-up
    assert r.exit_code == 2, r
    assert fake.topups == []


def test_renew_a_day_pass_sends_its_length(ea_cli, fake):
    r = ea_cli("renew", JAPAN_UNL, "--plan", "TOPUP_JPD01:7d", "--yes", "--json")
    assert r.exit_code == 0, r
    (topup,) = fake.topups
    assert topup["periodNum"] == 7 and topup["amount"] is None
    assert fake.balance == 500_000 - 7 * 15000


def test_insufficient_balance_is_one_clear_line(ea_cli, fake):
    fake.balance = 100
    r = ea_cli("renew", SPAIN, "--plan", "TOPUP_CKH002", "--yes")
    assert r.exit_code == 1, r
    first = r.stderr.strip().splitlines()[0]
    assert "balance too low" in first and "Traceback" not in r.stderr
    assert fake.topups == []


def test_an_expired_esim_cannot_be_topped_up(ea_cli, fake):
    fake.add_esim(
        iccid="8943108170001230000",
        package="CKH002",
        status="USED_EXPIRED",
        expires_in=timedelta(days=-2),
    )
    r = ea_cli("renew", "1230000", "--plan", "TOPUP_CKH491", "--yes")
    assert r.exit_code == 2, r
    assert "cannot be topped up" in r.stderr and fake.topups == []


def test_history_shows_each_purchase_once(ea_cli, fake):
    assert ea_cli("renew", SPAIN, "--plan", "TOPUP_CKH491", "--yes").exit_code == 0
    r = ea_cli("history", "--json")
    assert r.exit_code == 0, r
    orders = r.json["data"]["orders"]
    topups = [o for o in orders if o["plan_id"] == "TOPUP_CKH491"]
    assert len(topups) == 1 and topups[0]["price"] == {"amount": "0.70", "currency": "USD"}
    esims = {o["iccid"] for o in orders if o["source"] == "provider"}
    assert esims == {SPAIN, JAPAN_NEW, JAPAN_UNL}
    assert orders == sorted(orders, key=lambda o: o["created_at"], reverse=True)


def test_account_test_and_add(cli, configure, fake, home: Path):
    configure("")
    r = cli(
        "account",
        "add",
        "trip",
        "--provider",
        "esimaccess",
        "--base-url",
        fake.url,
        "--secrets-stdin",
        input=f"ACCESS_CODE={ACCESS_CODE}\nSECRET_KEY={SECRET_KEY}\n",
    )
    assert r.exit_code == 0, r
    text = (home / "config.toml").read_text()
    assert ACCESS_CODE not in text and SECRET_KEY not in text
    r = cli("account", "test", "trip", "--json")
    assert r.exit_code == 0, r
    assert "50.00 USD" in r.json["data"]["detail"]
    fake.bad_credentials = True
    r = cli("account", "test", "trip")
    assert r.exit_code == 4, r
    assert ACCESS_CODE not in r.stderr + r.stdout and SECRET_KEY not in r.stderr + r.stdout


def test_missing_credentials_name_both_fixes(cli, configure, fake):
    configure(config_for(fake))
    r = cli("status")
    assert r.exit_code == 4
    assert "ESIMCTL_TRIP_ACCESS_CODE" in r.stderr and "esimctl account add trip" in r.stderr


@pytest.mark.parametrize(
    ("switch", "code"),
    [
        (lambda f: setattr(f, "bad_credentials", True), 4),
        (lambda f: f.rate_limited_next(5), 75),
        (lambda f: f.busy_next(5), 75),
        (lambda f: f.fail_next(503, 5), 75),
        (lambda f: f.malformed_next(5), 75),
        (lambda f: f.truncated_next(5), 75),
        (lambda f: f.hang_next(1, seconds=1.0), 75),
    ],
    ids=["bad_credentials", "429", "busy", "5xx", "malformed", "truncated", "timeout"],
)
def test_fault_switches_exit_as_spec_says(cli, configure, fake, switch, code):
    configure(config_for(fake, timeout=0.3))
    switch(fake)
    r = cli("status", "--json", env=CREDS)
    assert r.exit_code == code, r
    assert r.json["status"] == "error"
    assert r.json["errors"][0]["provider"] == "esimaccess"
    assert "Traceback" not in r.stderr


def test_reads_are_retried(cli, configure, fake):
    configure(config_for(fake, retries=2))
    fake.busy_next(1)  # HTTP 200 with 900001: backs off
    fake.rate_limited_next(1, retry_after=0)  # HTTP 429: waits as long as Retry-After says
    rows = _esims(cli("status", "--json", env=CREDS))
    assert SPAIN in rows and fake.stats["429"] == 0  # 429s of rate_limit() only
    assert sum(1 for r in fake.requests if r.path.endswith("/esim/query")) == 3


def test_one_failing_account_leaves_the_others(cli, configure, fake):
    other = FakeEsimAccess()
    other.start()
    try:
        other.bad_credentials = True
        configure(config_for(fake) + config_for(other, name="work"))
        env = {**CREDS, "ESIMCTL_WORK_ACCESS_CODE": "x-code", "ESIMCTL_WORK_SECRET_KEY": "x-key"}
        r = cli("status", "--json", env=env)
        assert r.exit_code == 3, r
        assert r.json["status"] == "partial"
        assert {e["iccid"] for e in r.json["data"]["esims"]} == {SPAIN, JAPAN_NEW, JAPAN_UNL}
        assert [e["account"] for e in r.json["errors"]] == ["work"]
    finally:
        other.stop()


def test_the_client_keeps_the_documented_rate(cli, configure, fake):
    fake.seed(100)  # 1 list + 11 usage calls: more than 8 in a second unless throttled
    fake.rate_limit(per_second=8)
    configure(config_for(fake, rate_limit=None, retries=0))
    r = cli("status", "--json", env=CREDS)
    assert r.exit_code == 0, r
    assert fake.stats["429"] == 0 and fake.stats["requests"] >= 12


# -- purchases whose answer never arrives ------------------------------------------------------


def test_a_lost_answer_is_found_by_its_transaction_id(ea_cli, fake):
    fake.fault_on("/esim/topup", "drop")
    r = ea_cli("renew", SPAIN, "--plan", "TOPUP_CKH491", "--yes", "--json")
    assert r.exit_code == 0, r
    assert r.json["data"]["applied"] is True
    assert len(fake.topups) == 1
    orders = ea_cli("history", "--json").json["data"]["orders"]
    assert len([o for o in orders if o["plan_id"] == "TOPUP_CKH491"]) == 1


def test_a_lost_answer_where_topups_are_not_listed(ea_cli, fake):
    fake.topups_listed = False  # the other reading: the package list shows no top-ups
    fake.fault_on("/esim/topup", "drop")
    r = ea_cli("renew", SPAIN, "--plan", "TOPUP_CKH491", "--yes", "--json")
    assert r.exit_code == 0, r
    assert len(fake.topups) == 1


def _wait_for(cond: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not cond():
        assert time.monotonic() < deadline, "the fake never committed the purchase"
        time.sleep(0.02)


def test_a_purchase_committed_after_the_timeout_is_not_bought_twice(cli, configure, fake):
    configure(config_for(fake, timeout=0.4))
    fake.fault_on("/esim/topup", "hang", seconds=1.0)
    args = ("renew", SPAIN, "--plan", "TOPUP_CKH491", "--yes")
    first = cli(*args, env=CREDS)
    assert first.exit_code == 75, first  # outcome unknown: nothing is assumed
    _wait_for(lambda: len(fake.topups) == 1)  # ... but eSIM Access did it after all
    second = cli(*args, env=CREDS)  # the user asks again: the first is found, not re-bought
    assert second.exit_code == 0, second
    assert "went through" in second.stdout
    assert len(fake.topups) == 1
    orders = cli("history", "--json", env=CREDS).json["data"]["orders"]
    bought = [o for o in orders if o["plan_id"] == "TOPUP_CKH491" and o["state"] != "failed"]
    assert len(bought) == 1


def test_a_retry_after_an_unknown_outcome_sends_the_same_transaction_id(
    cli, configure, fake, monkeypatch
):
    # No lookup lag: the next run decides at once that the first attempt was not made.
    monkeypatch.setattr(EsimAccessProvider, "order_lookup_lag", timedelta(0))
    configure(config_for(fake))
    fake.fault_on("/esim/topup", "status", status=502)  # the gateway failed: outcome unknown
    args = ("renew", SPAIN, "--plan", "TOPUP_CKH491", "--yes")
    assert cli(*args, env=CREDS).exit_code == 75
    assert fake.topups == []
    assert cli(*args, env=CREDS).exit_code == 0
    sent = [
        json.loads(r.body)["transactionId"] for r in fake.requests if r.path.endswith("/esim/topup")
    ]
    assert len(sent) == 2 and sent[0] == sent[1]
    assert len(fake.topups) == 1


# -- the provider on its own -------------------------------------------------------------------


def _provider(
    fake: FakeEsimAccess | None,
    tmp_path: Path,
    transport: httpx.AsyncBaseTransport | None = None,
) -> EsimAccessProvider:
    ctx = ProviderContext(
        account=AccountConfig("trip", "esimaccess", fake.url if fake else LOCAL, dict(FAST)),
        secrets={"ACCESS_CODE": ACCESS_CODE, "SECRET_KEY": SECRET_KEY},
        clock=lambda: datetime.now(UTC),
        state_dir=tmp_path,
        transport=transport,
    )
    return EsimAccessProvider(ctx)


LOCAL = "http://127.0.0.1:9"  # never reached: a MockTransport answers


def _answer(obj: Any) -> httpx.Response:
    return httpx.Response(200, json={"success": True, "errorCode": "0", "obj": obj})


class RefusedTopups(httpx.AsyncHTTPTransport):
    """The network, except that a top-up never gets a connection."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/esim/topup"):
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        return await super().handle_async_request(request)


def test_a_purchase_that_never_left_is_refused_not_unknown(fake, tmp_path):
    async def main() -> dict[str, Any]:
        async with _provider(fake, tmp_path, RefusedTopups()) as p:
            esim = await p.get_esim(SPAIN)
            plan = next(x for x in await p.topups(esim) if x.id == "TOPUP_CKH491")
            with pytest.raises(NotSent) as caught:
                await p.buy_topup(esim, plan, "esimctl-offline")
            assert not isinstance(caught.value, OutcomeUnknown)
            return p.ctx.journal.entry("esimctl-offline")

    entry = asyncio.run(main())
    assert entry["state"] == "refused"  # nothing was sent: nothing to look up later
    assert fake.topups == []


def test_listing_stops_at_a_page_the_server_repeats(tmp_path):
    row = {**DOC_ESIM, "esimStatus": "GOT_RESOURCE", "activateTime": None}
    pages: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        pages.append(json.loads(request.content)["pager"]["pageNum"])
        return _answer({"esimList": [row], "pager": {"total": 1000}})  # ignores pageNum

    async def main() -> list[Any]:
        async with _provider(None, tmp_path, httpx.MockTransport(handler)) as p:
            return await p.list_esims()

    assert [e.iccid for e in asyncio.run(main())] == [row["iccid"]]
    assert pages == [1, 2]


def test_usage_is_asked_with_at_most_eight_calls_in_flight(tmp_path):
    rows = [{**DOC_ESIM, "iccid": f"89431081700{n:08d}", "esimTranNo": f"T{n}"} for n in range(100)]
    batches: list[list[str]] = []
    flight = {"now": 0, "peak": 0}

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/esim/query"):
            return _answer({"esimList": rows, "pager": {"total": len(rows)}})
        batches.append(json.loads(request.content)["esimTranNoList"])
        flight["now"] += 1
        flight["peak"] = max(flight["peak"], flight["now"])
        await asyncio.sleep(0.05)
        flight["now"] -= 1
        return _answer({"esimUsageList": []})

    async def main() -> None:
        async with _provider(None, tmp_path, httpx.MockTransport(handler)) as p:
            await p.list_esims()

    asyncio.run(main())
    assert len(batches) == 10 and all(len(b) == 10 for b in batches)
    assert 2 <= flight["peak"] <= 8


def test_a_duplicate_transaction_id_means_the_purchase_happened(fake, tmp_path):
    fake.duplicate_mode = "error"

    async def main() -> tuple[Order, Order]:
        async with _provider(fake, tmp_path) as p:
            esim = await p.get_esim(SPAIN)
            plan = next(x for x in await p.topups(esim) if x.id == "TOPUP_CKH491")
            first = await p.buy_topup(esim, plan, "esimctl-same-reference")
            again = await p.buy_topup(esim, plan, "esimctl-same-reference")  # 310402
            return first, again

    first, again = asyncio.run(main())
    assert len(fake.topups) == 1
    assert again.state == OrderState.COMPLETED and again.id == first.id


def test_is_applied_reads_the_topup_answer(fake, tmp_path):
    p = _provider(fake, tmp_path)
    try:
        before = ea.parse_esim(DOC_ESIM, account="trip")
        assert before is not None
        obj = DOC_TOPUP_ANSWER["obj"]
        order = p._order_from("esimctl-x", "esimctl-x", before.iccid, None, obj)
        assert order.extra["total_volume"] == 7516192768
        grown = ea.parse_esim({**DOC_ESIM, "totalVolume": 7516192768}, account="trip")
        assert grown is not None and p.is_applied(before, grown, order)
        assert not p.is_applied(before, before, order)
    finally:
        asyncio.run(p.aclose())


def test_find_order_says_none_when_nothing_was_bought(fake, tmp_path):
    async def main() -> Order | None:
        async with _provider(fake, tmp_path) as p:
            return await p.find_order("esimctl-never-sent", iccid=SPAIN, since=datetime.now(UTC))

    assert asyncio.run(main()) is None
