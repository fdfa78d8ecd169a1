"""Airalo Partner API v2: parsers fed the documented examples, and every command through the
CLI against the stateful fake in ``fakes/airalo.py`` (real socket, real httpx transport)."""

from __future__ import annotations

import json
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
    InsufficientBalance,
    InvalidInput,
    NotFound,
    ProviderError,
    TemporaryFailure,
)
from esimctl.models import Esim, EsimState, Money, Order, OrderState
from esimctl.providers.airalo import AiraloProvider
from esimctl.providers.airalo import answers as A
from esimctl.providers.base import ProviderContext, SecretCache
from fakes.airalo import CLIENT_ID, CLIENT_SECRET, FakeAiralo, Operator, Pkg

MiB = 1024 * 1024
GiB = 1024 * MiB
NOW = datetime(2025, 6, 20, 12, 0, tzinfo=UTC)
CREDS = {"ESIMCTL_TRIP_CLIENT_ID": CLIENT_ID, "ESIMCTL_TRIP_CLIENT_SECRET": CLIENT_SECRET}


# -- documented examples (Airalo's OpenAPI fragments and reference note, trimmed) ---------

USAGE_DOC = {  # "Get Usage: 200": is_unlimited true, yet non-zero figures
    "data": {
        "remaining": 767,
        "total": 2048,
        "expired_at": "2022-01-01 00:00:00",
        "is_unlimited": True,
        "status": "ACTIVE",
        "remaining_voice": 0,
        "remaining_text": 0,
        "total_voice": 0,
        "total_text": 0,
    },
    "meta": {"message": "api.succes"},
}
USAGE_RECYCLED = {
    "data": {
        "remaining": 0,
        "total": 0,
        "expired_at": None,
        "is_unlimited": None,
        "status": "RECYCLED",
        "remaining_voice": 0,
        "remaining_text": 0,
        "total_voice": 0,
        "total_text": 0,
    },
    "meta": {"message": "api.succes"},
}
USAGE_3GB = {
    "data": {
        "remaining": 2310,
        "total": 3072,
        "expired_at": "2025-07-04 11:02:17",
        "is_unlimited": False,
        "status": "ACTIVE",
        "remaining_voice": 0,
        "remaining_text": 0,
        "total_voice": 0,
        "total_text": 0,
    },
    "meta": {"message": "api.succes"},
}
SIMS_PAGE = {
    "data": [
        {
            "id": 11047,
            "created_at": "2023-02-27 14:09:55",
            "iccid": "891000000000009125",
            "recycled": True,
            "recycled_at": "2025-05-05 10:52:39",
            "simable": {
                "id": 9666,
                "code": "20230227-009666",
                "description": "Example description to identify the order",
                "type": "sim",
                "package_id": "kallur-digital-7days-1gb",
                "package": "Kallur Digital-1 GB - 7 Days",
                "validity": "7",
                "price": "9.50",
                "data": "1 GB",
                "currency": "USD",
                "status": {"name": "Completed", "slug": "completed"},
            },
        },
        {
            "id": 10970,
            "created_at": "2023-02-24 05:34:28",
            "iccid": "891000000000009048",
            "simable": {
                "id": 9583,
                "code": "20230224-009583",
                "description": None,
                "type": "sim",
                "package_id": "mariocom-30days-3gb",
                "package": "Mariocom-3 GB - 30 Days",
                "validity": "30",
                "price": "27.00",
                "data": "3 GB",
                "currency": "USD",
            },
        },
    ],
    "links": {
        "first": "https://sandbox-partners-api.airalo.com/v1/sims?limit=5&page=1",
        "last": "https://sandbox-partners-api.airalo.com/v1/sims?limit=5&page=16",
        "prev": None,
        "next": "https://sandbox-partners-api.airalo.com/v1/sims?limit=5&page=2",
    },
    "meta": {
        "message": "success",
        "current_page": 1,
        "from": 1,
        "last_page": 16,
        "path": "https://sandbox-partners-api.airalo.com/v1/sims",
        "per_page": "5",
        "to": 5,
        "total": 77,
    },
}
TOPUPS_NET = {
    "pricing": {"model": "net_pricing", "discount_percentage": 0},
    "data": [
        {
            "id": "bonbon-mobile-30days-3gb-topup",
            "type": "topup",
            "price": 10,
            "amount": 3072,
            "day": 30,
            "is_unlimited": False,
            "title": "3 GB - 100 SMS - 100 Mins - 30 Days",
            "data": "3 GB",
            "voice": 100,
            "text": 100,
            "net_price": 8,
            "prices": {
                "net_price": {"USD": 8, "EUR": 7.36},
                "recommended_retail_price": {"USD": 10, "EUR": 9.2},
            },
        }
    ],
}
TOPUPS_DISCOUNT = {
    "pricing": {"model": "discount_pricing", "discount_percentage": 20},
    "data": [
        {
            "id": "bonbon-mobile-30days-5gb-topup",
            "type": "topup",
            "price": 14,
            "amount": 5120,
            "day": 30,
            "is_unlimited": False,
            "title": "5 GB - 30 Days",
            "data": "5 GB",
            "net_price": None,
            "prices": {"recommended_retail_price": {"USD": 14, "EUR": 12.88}},
        }
    ],
}
TOPUP_ORDER = {  # "Submit Top-up Order: 200 OK": numbers where the order list has strings
    "data": {
        "id": 111,
        "code": "20251118-000111",
        "package_id": "change-7days-1gb-topup",
        "currency": "USD",
        "quantity": 1,
        "type": "topup",
        "description": "Topup (873000000000042542)",
        "esim_type": "local",
        "validity": 7,
        "package": "Change-1 GB - 7 Days",
        "data": "1 GB",
        "price": 4.5,
        "pricing_model": "net_pricing",
        "net_price": 3.6,
        "created_at": "2025-11-18 13:37:07",
    },
    "meta": {"message": "success"},
}
ORDER_LIST_TOPUP = {  # order 9566: a top-up lists no sims
    "id": 9566,
    "created_at": "2023-02-22 14:24:03",
    "code": "20230222-009566",
    "description": "Description c i._ +++# m#+&_#n_W",
    "type": "topup",
    "package_id": "bonbon-mobile-30days-3gb-topup",
    "quantity": 1,
    "package": "Bonbon Mobile-3 GB - 30 Days",
    "esim_type": "Prepaid",
    "validity": "30",
    "price": "10.00",
    "data": "3 GB",
    "currency": "USD",
    "sims": [],
    "status": {"name": "Completed", "slug": "completed"},
}
HISTORY_DOC = {
    "pricing": {"model": "net_pricing", "discount_percentage": 0},
    "data": [
        {
            "id": 728,
            "status": "ACTIVE",
            "remaining": 2378,
            "activated_at": "2023-01-09T10:30:45+00:00",
            "expired_at": "2023-02-09T10:30:45+00:00",
            "finished_at": None,
            "package": {
                "id": "bonbon-mobile-30days-3gb-topup",
                "type": "topup",
                "price": 10,
                "net_price": 6,
                "amount": 3072,
                "day": 30,
                "is_unlimited": False,
                "title": "3 GB - 30 Days",
                "data": "3 GB",
                "short_info": None,
            },
        }
    ],
}


def _sim(data: str = "3 GB", package_id: str = "elan-30days-3gb") -> dict[str, Any]:
    return {
        "id": 1,
        "iccid": "8944465400001234567",
        "simable": {"data": data, "package_id": package_id},
    }


def _provider(secrets: dict[str, str] | None = None) -> AiraloProvider:
    ctx = ProviderContext(
        account=AccountConfig("trip", "airalo", "http://127.0.0.1:9"),
        secrets=secrets or {"CLIENT_ID": CLIENT_ID, "CLIENT_SECRET": CLIENT_SECRET},
        clock=lambda: NOW,
        state_dir=Path("."),
    )
    return AiraloProvider(ctx)


def _response(status: int, body: Any, path: str = "/v2/sims/8944465400001234567/topups"):
    return httpx.Response(status, json=body, request=httpx.Request("GET", "http://x" + path))


# -- parsers --------------------------------------------------------------------------------


def test_a_3gb_plan_reads_3gb_in_binary_bytes_and_naive_expiry_is_utc() -> None:
    e = A.esim_from(_sim(), USAGE_3GB["data"], account="trip", now=NOW)
    assert e.data_total_bytes == 3 * GiB == 3072 * MiB
    assert e.data_remaining_bytes == 2310 * MiB and e.data_used_bytes == 762 * MiB
    assert e.expires_at == datetime(2025, 7, 4, 11, 2, 17, tzinfo=UTC)
    assert e.state == EsimState.ACTIVE and not e.unlimited and e.unit_base == 1024


def test_unlimited_figures_are_ignored_whichever_reading_of_the_docs() -> None:
    # The documented example pairs is_unlimited true with 767/2048: still unlimited, no figures.
    e = A.esim_from(_sim("Unlimited"), USAGE_DOC["data"], account="trip", now=NOW)
    assert e.unlimited and e.data_total_bytes is None and e.data_remaining_bytes is None
    # The note's reading: 0/0 for unlimited; in sandbox is_unlimited may even be false.
    quirk = dict(USAGE_3GB["data"], remaining=0, total=0, is_unlimited=False)
    e = A.esim_from(_sim("Unlimited", "x-unlimited-10days"), quirk, account="trip", now=NOW)
    assert e.unlimited and e.data_remaining_bytes is None
    # 0/0 on a limited package is unknown, never "0 left".
    e = A.esim_from(_sim("3 GB"), quirk, account="trip", now=NOW)
    assert not e.unlimited and e.data_remaining_bytes is None and e.data_total_bytes is None


def test_recycled_and_other_states() -> None:
    e = A.esim_from(_sim(), USAGE_RECYCLED["data"], account="trip", now=NOW)
    assert e.state == EsimState.RECYCLED and e.expires_at is None
    assert e.data_total_bytes is None and not e.unlimited
    listed = A.esim_from(SIMS_PAGE["data"][0], None, account="trip", now=NOW)
    assert listed.state == EsimState.RECYCLED and listed.plan == "Kallur Digital-1 GB - 7 Days"
    for status, state in [
        ("NOT_ACTIVE", EsimState.NOT_ACTIVE),
        ("FINISHED", EsimState.DEPLETED),
        ("EXPIRED", EsimState.EXPIRED),
        ("UNKNOWN", EsimState.UNKNOWN),
        ("SOMETHING_NEW", EsimState.UNKNOWN),
    ]:
        u = dict(USAGE_3GB["data"], status=status)
        assert A.esim_from(_sim(), u, account="trip", now=NOW).state == state
    # ACTIVE past its expiry (usage is cached 20 min) and ACTIVE with nothing left
    late = dict(USAGE_3GB["data"], expired_at="2025-06-20 11:59:00")
    assert A.esim_from(_sim(), late, account="trip", now=NOW).state == EsimState.EXPIRED
    empty = dict(USAGE_3GB["data"], remaining=0)
    e = A.esim_from(_sim(), empty, account="trip", now=NOW)
    assert e.state == EsimState.DEPLETED and e.data_remaining_bytes == 0


def test_pages_per_page_as_a_string_and_the_index_keyed_shape() -> None:
    assert [s["iccid"] for s in A.read_page(SIMS_PAGE) or []] == [
        "891000000000009125",
        "891000000000009048",
    ]
    assert A.has_next_page(SIMS_PAGE, 1)
    assert A.to_int(SIMS_PAGE["meta"]["per_page"]) == 5
    last = {"data": [], "links": {"next": None}, "meta": {"last_page": 16}}
    assert not A.has_next_page(last, 16)
    no_links = {"data": [{}], "meta": {"current_page": 2, "last_page": "3"}}
    assert A.has_next_page(no_links, 2) and not A.has_next_page(no_links, 3)
    keyed = {"data": {"26": {"slug": "b"}, "25": {"slug": "a"}}}
    assert [d["slug"] for d in A.read_page(keyed) or []] == ["a", "b"]


def test_values_that_arrive_in_several_types() -> None:
    assert A.parse_time("2025-06-02 09:14:51") == datetime(2025, 6, 2, 9, 14, 51, tzinfo=UTC)
    assert A.parse_time("2023-01-09T10:30:45+02:00") == datetime(2023, 1, 9, 8, 30, 45, tzinfo=UTC)
    assert A.parse_time(None) is None and A.parse_time("") is None
    assert A.parse_time("not a date") is None
    assert A.to_decimal("9.50") == Decimal("9.50") and A.to_decimal(4.5) == Decimal("4.5")
    assert A.to_decimal(None) is None and A.to_decimal(True) is None
    assert A.to_decimal("n/a") is None
    assert A.to_int("7") == 7 and A.to_int(7.0) == 7 and A.to_int("7.5") is None


def test_figures_are_kept_as_given_never_rounded_clamped_or_invented() -> None:
    assert A.to_bytes(3072) == 3 * GiB and A.to_bytes("512.5") == 512 * MiB + MiB // 2
    assert A.to_bytes(0.5) == MiB // 2 and A.to_bytes(-5) == -5 * MiB
    assert A.to_bytes(1e30) == 10**30 * MiB  # absurd, exact: the validator names it
    for junk in (None, True, "lots", float("nan"), float("inf"), "1e999999", 1e308, [1]):
        assert A.to_bytes(junk) is None, junk
    half = A.esim_from(_sim(), dict(USAGE_3GB["data"], remaining=0.5), account="trip", now=NOW)
    assert half.data_remaining_bytes == MiB // 2 and half.state == EsimState.ACTIVE
    neg = A.esim_from(_sim(), dict(USAGE_3GB["data"], remaining=-5), account="trip", now=NOW)
    assert neg.data_remaining_bytes == -5 * MiB and neg.state == EsimState.ACTIVE
    more = dict(USAGE_3GB["data"], remaining=4096, total=1024)
    e = A.esim_from(_sim(), more, account="trip", now=NOW)
    assert (e.data_remaining_bytes, e.data_total_bytes) == (4 * GiB, GiB)
    missing = {k: v for k, v in USAGE_3GB["data"].items() if k != "remaining"}
    e = A.esim_from(_sim(), missing, account="trip", now=NOW)
    assert e.data_remaining_bytes is None and e.state == EsimState.ACTIVE  # never 0, "depleted"
    assert A.to_decimal("1e308") == Decimal("1e308") and A.to_decimal("NaN") is None


def test_answers_of_an_unknown_shape_are_not_empty_lists() -> None:
    assert A.read_page({"data": []}) == []
    for body in ({}, None, [], {"data": None}, {"data": {}}, {"data": [1]}, {"data": {"x": {}}}):
        assert A.read_page(body) is None, body
    assert A.read_page({"data": {"1": {"a": 1}, "0": {"a": 0}}}) == [{"a": 0}, {"a": 1}]


def test_undocumented_statuses_are_no_verdict() -> None:
    odd = dict(ORDER_LIST_TOPUP, status={"name": "On hold", "slug": "on_hold"})
    assert A.order_from(odd, account="trip", now=NOW).state == OrderState.PENDING
    h = dict(HISTORY_DOC["data"][0], status="SUSPENDED")
    assert A.packages_from([h])[0].state == "unknown"
    fractional = dict(HISTORY_DOC["data"][0], remaining="0.5")
    assert A.packages_from([fractional])[0].data_remaining_bytes == MiB // 2


def test_a_price_given_but_unreadable_is_no_price() -> None:
    pkg = dict(TOPUPS_NET["data"][0], net_price="NaN")
    assert A.plan_price(pkg, TOPUPS_NET["pricing"]) is None  # never the retail price instead
    cheap = dict(TOPUPS_NET["data"][0], net_price="-1.40")
    assert A.plan_price(cheap) == Money(Decimal("-1.40"), "USD")  # as given: refused later
    huge = dict(TOPUPS_DISCOUNT["data"][0], price=1e308)
    assert A.plan_price(huge, TOPUPS_DISCOUNT["pricing"]) is not None  # no InvalidOperation


def test_topup_plans_price_is_what_the_balance_is_charged() -> None:
    net = A.plan_from(TOPUPS_NET["data"][0], account="trip", pricing=TOPUPS_NET["pricing"])
    assert net.price == Money(Decimal("8"), "USD")
    assert net.data_bytes == 3 * GiB and net.validity_days == 30 and net.kind == "topup"
    assert net.stacking is None  # Airalo does not say whether a top-up adds or queues
    disc = A.plan_from(
        TOPUPS_DISCOUNT["data"][0], account="trip", pricing=TOPUPS_DISCOUNT["pricing"]
    )
    assert disc.price == Money(Decimal("11.20"), "USD")  # 14 less 20 %
    unl = A.plan_from(
        {
            "id": "x",
            "type": "topup",
            "amount": 0,
            "day": "5",
            "data": "Unlimited",
            "is_unlimited": False,
            "price": "17.00",
        },
        account="trip",
    )
    assert unl.unlimited and unl.data_bytes is None and unl.validity_days == 5
    assert unl.price == Money(Decimal("17.00"), "USD")


def test_orders_documented_and_ours() -> None:
    o = A.order_from(ORDER_LIST_TOPUP, account="trip", now=NOW)
    assert o.price == Money(Decimal("10.00"), "USD") and o.state == OrderState.COMPLETED
    assert o.iccid is None and o.reference is None and o.id == "20230222-009566"
    assert o.created_at == datetime(2023, 2, 22, 14, 24, 3, tzinfo=UTC)
    default = A.order_from(TOPUP_ORDER["data"], account="trip", now=NOW)
    assert default.iccid == "873000000000042542" and default.plan_id == "change-7days-1gb-topup"
    desc = AiraloProvider.description_for("esimctl-0123abcd", "8944465400001234567")
    assert A.reference_in(desc) == ("esimctl-0123abcd", "8944465400001234567")
    assert A.reference_in(AiraloProvider.description_for("r1", "8944465400001234567")) == (
        "r1",
        "8944465400001234567",
    )
    refunded = dict(ORDER_LIST_TOPUP, status={"name": "Refunded", "slug": "refunded"})
    assert A.order_from(refunded, account="trip", now=NOW).state == OrderState.FAILED


def test_error_shapes_map_to_exit_codes() -> None:
    p = _provider()
    m = p._map_error
    assert isinstance(
        m(_response(422, {"code": 11, "reason": "Insufficient Airalo Credit"}), None), ProviderError
    )
    err = m(_response(422, None), {"code": 11, "reason": "Insufficient Airalo Credit"})
    assert isinstance(err, InsufficientBalance) and "\n" not in err.message
    recycled = {"code": 73, "reason": "The eSIM with iccid 891 has been recycled."}
    # documented under status 200 as well as 422: both readings are an error
    for status in (200, 422):
        e = m(_response(status, recycled), recycled)
        assert isinstance(e, ProviderError) and e.code == "esim_recycled"
    bad_pkg = {
        "data": {"package_id": "invalid topup package"},
        "meta": {"message": "the parameter is invalid"},
    }
    assert isinstance(m(_response(422, bad_pkg), bad_pkg), InvalidInput)
    nf = {"data": [], "meta": {"message": "messages.resource_not_found"}}
    assert isinstance(m(_response(404, nf), nf), NotFound)
    assert isinstance(m(_response(200, nf), nf), NotFound)
    assert isinstance(m(_response(401, {"data": [], "meta": {"message": "x"}}), None), AuthRejected)
    ip = {"code": 89, "reason": "IP not allowed"}
    assert isinstance(m(_response(403, ip), ip), AuthRejected)
    assert isinstance(
        m(
            _response(422, {"code": 13, "reason": "maintenance"}),
            {"code": 13, "reason": "maintenance"},
        ),
        TemporaryFailure,
    )
    tok = {
        "data": {"client_id": "The selected client id is invalid."},
        "meta": {"message": "the parameter is invalid"},
    }
    for status in (422, 200):
        assert isinstance(m(_response(status, tok, "/v2/token"), tok), AuthRejected)
    assert m(_response(429, {"message": "Too Many Attempts."}), None) is None  # shared mapping
    assert m(_response(200, USAGE_3GB), USAGE_3GB) is None


def test_provider_reasons_never_carry_a_secret() -> None:
    p = _provider()
    body = {"code": 53, "reason": f"unexpected error for {CLIENT_SECRET}"}
    err = p._map_error(_response(422, body), body)
    assert err is not None and CLIENT_SECRET not in err.message


def test_limits_are_the_documented_ones() -> None:
    p = _provider()
    assert p._token_throttle.interval == pytest.approx(20.0)  # 3 a minute
    assert p._usage_iccid["1"].interval == pytest.approx(6.0)  # 10 a minute per ICCID
    assert p._usage_company.interval == pytest.approx(0.2)  # 5 a second
    assert p._packages.interval == pytest.approx(1.5)  # 40 a minute (the stricter reading)
    assert AiraloProvider.usage_ttl >= timedelta(minutes=20)
    assert p.api_root == "http://127.0.0.1:9"


def test_a_cached_token_is_reused_until_5_minutes_before_its_end_and_kept_a_day_at_most() -> None:
    """Token records written before the kit (same key: host and client id) keep working;
    requests go through ``ctx.transport``."""
    import asyncio
    import hashlib

    root = "https://partners-api.airalo.com"
    key = hashlib.sha256(f"{root}\n{CLIENT_ID}".encode()).hexdigest()[:16]
    cache = SecretCache()
    cache.set(
        {
            "access_token": "cached-token-0001",
            "expires_at": (NOW + timedelta(hours=1)).isoformat(),
            "key": key,
        }
    )
    seen: list[tuple[str, str | None]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.path, request.headers.get("authorization")))
        if request.url.path == "/v2/token":  # its own example: a year
            token = {"access_token": "new-token-0002", "expires_in": 31622400}
            return httpx.Response(200, json={"data": token, "meta": {"message": "success"}})
        balance = {"availableBalance": {"amount": 250, "currency": "USD"}}
        return httpx.Response(200, json={"data": {"balances": balance}})

    def balance_at(now: datetime) -> Money | None:
        ctx = ProviderContext(
            account=AccountConfig("trip", "airalo", root),
            secrets={"CLIENT_ID": CLIENT_ID, "CLIENT_SECRET": CLIENT_SECRET},
            clock=lambda: now,
            state_dir=Path("."),
            token_cache=cache,
            transport=httpx.MockTransport(answer),
        )

        async def go() -> Money | None:
            async with AiraloProvider(ctx) as p:
                return await p.balance()

        return asyncio.run(go())

    assert balance_at(NOW) == Money(Decimal("250"), "USD")
    assert seen == [("/v2/balance", "Bearer cached-token-0001")]
    seen.clear()
    late = NOW + timedelta(minutes=56)  # within 5 minutes of its end: a new one
    assert balance_at(late) == Money(Decimal("250"), "USD")
    assert seen == [("/v2/token", None), ("/v2/balance", "Bearer new-token-0002")]
    stored = cache.get() or {}
    assert stored["key"] == key and stored["access_token"] == "new-token-0002"
    assert datetime.fromisoformat(stored["expires_at"]) == late + timedelta(hours=24)


def test_is_applied_reads_the_package_history() -> None:
    p = _provider()
    before = A.esim_from(
        _sim(), USAGE_3GB["data"], account="trip", now=NOW, history=HISTORY_DOC["data"]
    )
    new = dict(HISTORY_DOC["data"][0], id=729, status="NOT_ACTIVE")
    after = A.esim_from(
        _sim(), USAGE_3GB["data"], account="trip", now=NOW, history=[new, *HISTORY_DOC["data"]]
    )
    order = Order(
        "o",
        "trip",
        "airalo",
        before.iccid,
        "bonbon-mobile-30days-3gb-topup",
        None,
        None,
        NOW,
        OrderState.PENDING,
        "local",
    )
    assert not p.is_applied(before, before, order)  # same usage figures: Airalo caches them
    assert p.is_applied(before, after, order)
    assert after.packages[0].state == "queued" and after.packages[1].state == "active"
    other = Order(**{**order.__dict__, "plan_id": "another-topup"})
    assert not p.is_applied(before, after, other)
    listed = A.esim_from(_sim(), USAGE_3GB["data"], account="trip", now=NOW)  # no history
    assert not p.is_applied(listed, listed, order)


# -- the CLI against the fake -----------------------------------------------------------------


@pytest.fixture
def fake() -> Iterator[FakeAiralo]:
    with FakeAiralo() as f:
        assert isinstance(f, FakeAiralo)
        yield f


Cli = Callable[..., Any]


@pytest.fixture
def setup(configure: Callable[[str], Path], fake: FakeAiralo) -> Callable[..., None]:
    """Config for account ``trip`` on the fake; extra keys are account options."""

    def write(target: FakeAiralo | None = None, **options: Any) -> None:
        opts = {"retries": 1, **options}
        lines = "".join(f"{k} = {json.dumps(v)}\n" for k, v in opts.items())
        url = (target or fake).url
        configure(f'[accounts.trip]\nprovider = "airalo"\nbase_url = "{url}"\n{lines}')

    write()
    return write


@pytest.fixture
def run(cli: Cli) -> Cli:
    def invoke(*args: str, env: dict[str, str] | None = None, **kw: Any) -> Any:
        r = cli(*args, env={**CREDS, **(env or {})}, **kw)
        assert CLIENT_SECRET not in r.stdout + r.stderr
        return r

    return invoke


def _esims(r: Any) -> dict[str, dict[str, Any]]:
    return {e["iccid"]: e for e in r.json["data"]["esims"]}


def test_status_shows_what_airalo_shows(fake: FakeAiralo, setup: Any, run: Cli) -> None:
    three = fake.add_sim("elan-30days-3gb", remaining_mb=2310).iccid
    unl = fake.add_sim("elan-unlimited-10days").iccid
    new = fake.add_sim("moshi-moshi-7days-1gb", status="NOT_ACTIVE").iccid
    old = fake.add_sim("kallur-digital-7days-1gb", recycled=True).iccid
    r = run("status", "--json")
    assert r.exit_code == 0, r
    assert r.json["status"] == "success"
    rows = _esims(r)
    assert rows[three]["data_total_bytes"] == 3 * GiB
    assert rows[three]["data_remaining_bytes"] == 2310 * MiB
    assert rows[three]["state"] == "active" and rows[three]["plan"] == "Élan-3 GB - 30 Days"
    assert rows[three]["expires_at"].endswith("Z") and rows[three]["as_of"]
    assert rows[unl]["unlimited"] is True
    assert rows[unl]["data_remaining_bytes"] is None and rows[unl]["data_total_bytes"] is None
    assert rows[new]["state"] == "not_active" and rows[new]["data_total_bytes"] == GiB
    assert rows[old]["state"] == "recycled"
    # a recycled eSIM's figures are not asked for
    assert not fake.requests_to("GET", f"/{old}/usage")
    table = run("status", tty=True)
    assert table.exit_code == 0, table
    assert "3 GB" in table.stdout and "unlimited" in table.stdout
    assert "0 B" not in table.stdout


def test_sandbox_unlimited_quirk_never_shows_zero(fake: FakeAiralo, setup: Any, run: Cli) -> None:
    fake.sandbox_unlimited_quirk = True
    iccid = fake.add_sim("elan-unlimited-10days").iccid
    row = _esims(run("status", "--json"))[iccid]
    assert row["unlimited"] is True and row["data_remaining_bytes"] is None


def test_every_page_is_read(
    fake: FakeAiralo, setup: Any, run: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(AiraloProvider, "PAGE_SIZE", 2)
    iccids = fake.seed(5)
    r = run("status", "--json")
    assert r.exit_code == 0, r
    assert set(_esims(r)) == set(iccids)
    pages = fake.requests_to("GET", "/v2/sims")
    assert [p.arg("page") for p in pages] == ["1", "2", "3"]
    assert all(p.arg("limit") == "2" for p in pages)


def test_usage_is_cached_like_airalo_caches_it(fake: FakeAiralo, setup: Any, run: Cli) -> None:
    fake.add_sim()
    assert run("status", "--json").exit_code == 0
    assert run("status", "--json").exit_code == 0
    assert len(fake.requests_to("GET", "/usage")) == 1  # within usage_ttl: from the cache
    assert run("status", "--json", "--refresh").exit_code == 0
    assert len(fake.requests_to("GET", "/usage")) == 2


def test_token_is_reused_across_runs_and_kept_as_a_secret(
    fake: FakeAiralo, setup: Any, run: Cli, home: Path, memory_keyring: Any
) -> None:
    fake.add_sim()
    for _ in range(3):
        assert run("status", "--json", "--refresh").exit_code == 0
    assert fake.token_requests == 1
    token = next(iter(fake.tokens))
    form = fake.requests_to("POST", "/v2/token")[0]
    assert form.form() == {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "grant_type": "client_credentials",
    }
    assert all(
        r.header("authorization") == f"Bearer {token}"
        for r in fake.requests
        if not r.path.endswith("/token")
    )
    stored = [v for (svc, user), v in memory_keyring.store.items() if user.startswith("trip")]
    assert any(token in v for v in stored)  # in the secret store ...
    for f in home.rglob("*"):  # ... and nowhere else
        if f.is_file():
            data = f.read_bytes()
            assert token.encode() not in data and CLIENT_SECRET.encode() not in data, f


def test_a_rejected_token_is_renewed_once(fake: FakeAiralo, setup: Any, run: Cli) -> None:
    iccid = fake.add_sim().iccid
    assert run("status", "--json").exit_code == 0
    fake.expire_tokens()
    r = run("status", "--json", "--refresh")
    assert r.exit_code == 0, r
    assert iccid in _esims(r)
    assert fake.token_requests == 2


def test_wrong_credentials_exit_4(fake: FakeAiralo, setup: Any, run: Cli) -> None:
    fake.add_sim()
    fake.bad_credentials = True
    r = run("status", "--json")
    assert r.exit_code == 4, r
    assert r.json["errors"][0]["account"] == "trip"
    r = run("status")
    assert r.exit_code == 4
    assert "esimctl account add trip --provider airalo" in r.stderr
    assert "Traceback" not in r.stderr
    # a wrong client id is a 422 on the token endpoint: still a credentials problem
    fake.bad_credentials = False
    r = run("status", env={"ESIMCTL_TRIP_CLIENT_ID": "someone-else"})
    assert r.exit_code == 4, r


def test_missing_credentials_exit_4(setup: Any, cli: Cli) -> None:
    r = cli("status")
    assert r.exit_code == 4
    assert "ESIMCTL_TRIP_CLIENT_ID" in r.stderr and "ESIMCTL_TRIP_CLIENT_SECRET" in r.stderr


def test_one_failing_account_leaves_the_others(
    fake: FakeAiralo, configure: Callable[[str], Path], run: Cli
) -> None:
    good = fake.add_sim().iccid
    with FakeAiralo() as broken:
        broken.add_sim()
        broken.bad_credentials = True
        configure(
            f'[accounts.trip]\nprovider = "airalo"\nbase_url = "{fake.url}"\n'
            f'[accounts.work]\nprovider = "airalo"\nbase_url = "{broken.url}"\n'
        )
        env = {"ESIMCTL_WORK_CLIENT_ID": CLIENT_ID, "ESIMCTL_WORK_CLIENT_SECRET": CLIENT_SECRET}
        r = run("status", "--json", env=env)
    assert r.exit_code == 3, r
    assert r.json["status"] == "partial"
    assert list(_esims(r)) == [good]
    assert [e["account"] for e in r.json["errors"]] == ["work"]


@pytest.mark.parametrize(
    "fault",
    [
        lambda f: f.fail_next(503),
        lambda f: f.fail_next(500, body={"message": "Server Error"}),
        lambda f: f.malformed_next(),
        lambda f: f.truncated_next(),
        lambda f: f.hang_next(1, seconds=1.5),
        lambda f: f.fail_next(
            429, body={"message": "Too Many Attempts."}, headers={"Retry-After": "0"}
        ),
    ],
    ids=["503", "500", "malformed", "truncated", "hang", "429"],
)
def test_reads_recover_from_one_fault(
    fake: FakeAiralo, setup: Any, run: Cli, fault: Callable[[FakeAiralo], None]
) -> None:
    setup(timeout=0.5)
    iccid = fake.add_sim(remaining_mb=2310).iccid
    fault(fake)
    r = run("status", "--json")
    assert r.exit_code == 0, r
    assert _esims(r)[iccid]["data_remaining_bytes"] == 2310 * MiB


@pytest.mark.parametrize(
    "fault",
    [
        lambda f: f.fail_next(503, times=5),
        lambda f: f.malformed_next(5),
        lambda f: f.truncated_next(5),
        lambda f: f.hang_next(5, seconds=1.0),
        lambda f: f.fail_next(
            429, times=5, body={"message": "Too Many Attempts."}, headers={"Retry-After": "600"}
        ),
    ],
    ids=["5xx", "malformed", "truncated", "hang", "429-long"],
)
def test_outages_and_rate_limits_exit_75(
    fake: FakeAiralo, setup: Any, run: Cli, fault: Callable[[FakeAiralo], None]
) -> None:
    setup(timeout=0.3, retries=0)
    fake.add_sim()
    fault(fake)
    r = run("status", "--json")
    assert r.exit_code == 75, r
    assert r.json["status"] == "error"


def test_429_with_retry_after_is_honoured(fake: FakeAiralo, setup: Any, run: Cli) -> None:
    iccid = fake.add_sim().iccid
    fake.arm(
        "GET",
        "/usage",
        lambda: fake.fail_next(
            429, body={"message": "Too Many Attempts."}, headers={"Retry-After": "1"}
        ),
    )
    r = run("status", "--json")
    assert r.exit_code == 0, r
    assert _esims(r)[iccid]["state"] == "active"
    assert len(fake.requests_to("GET", f"/{iccid}/usage")) == 2


def test_plans_for_an_esim_are_its_topups(fake: FakeAiralo, setup: Any, run: Cli) -> None:
    iccid = fake.add_sim("moshi-moshi-7days-1gb").iccid
    r = run("plans", iccid, "--json")
    assert r.exit_code == 0, r
    plans = {p["id"]: p for p in r.json["data"]["plans"]}
    assert set(plans) == {"moshi-moshi-7days-1gb-topup", "moshi-moshi-unlimited-5days-topup"}
    one = plans["moshi-moshi-7days-1gb-topup"]
    assert one["data_bytes"] == GiB and one["validity_days"] == 7 and one["kind"] == "topup"
    assert one["price"] == {"amount": "3.60", "currency": "USD"}
    unl = plans["moshi-moshi-unlimited-5days-topup"]
    assert unl["unlimited"] is True and unl["data_bytes"] is None
    fake.pricing_model = "discount_pricing"  # net_price null: retail less 20 %
    r = run("plans", iccid, "--json")
    plans = {p["id"]: p for p in r.json["data"]["plans"]}
    assert plans["moshi-moshi-7days-1gb-topup"]["price"]["amount"] == "3.60"
    assert plans["moshi-moshi-unlimited-5days-topup"]["price"]["amount"] == "13.60"


def test_plans_for_a_non_rechargeable_esim_is_empty(fake: FakeAiralo, setup: Any, run: Cli) -> None:
    iccid = fake.add_sim("kallur-digital-7days-1gb").iccid
    r = run("plans", iccid, "--json")
    assert r.exit_code == 0, r
    assert r.json["data"]["plans"] == []


def test_plans_by_country_reads_every_page(
    fake: FakeAiralo, setup: Any, run: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.catalogue.append(
        Operator(
            "bonjour",
            "Bonjour",
            "FR",
            "France",
            True,
            [Pkg("bonjour-15days-10gb", "sim", 10240, 15, Decimal("20"), Decimal("9"))],
            [],
        )
    )
    monkeypatch.setattr(AiraloProvider, "PAGE_SIZE", 1)  # page 2 answers an index-keyed object
    r = run("plans", "--country", "fr", "--json")
    assert r.exit_code == 0, r
    plans = {p["id"]: p for p in r.json["data"]["plans"]}
    assert {"elan-7days-1gb", "elan-30days-3gb", "bonjour-15days-10gb"} <= set(plans)
    assert all(p["kind"] == "new" and p["countries"] == ["FR"] for p in plans.values())
    assert plans["bonjour-15days-10gb"]["data_bytes"] == 10 * GiB
    assert plans["bonjour-15days-10gb"]["name"] == "Bonjour-10 GB - 15 Days"
    assert plans["elan-unlimited-10days"]["unlimited"] is True
    assert [r.arg("filter[country]") for r in fake.requests_to("GET", "/v2/packages")] == [
        "FR",
        "FR",
    ]


def test_renew_buys_once_and_the_next_status_shows_it(
    fake: FakeAiralo, setup: Any, run: Cli
) -> None:
    iccid = fake.add_sim("elan-7days-1gb", remaining_mb=100).iccid
    r = run("renew", iccid, "--plan", "elan-30days-3gb-topup", "--yes", "--json")
    assert r.exit_code == 0, r
    assert r.json["data"]["applied"] is True
    order = r.json["data"]["order"]
    assert order["price"] == {"amount": "4.20", "currency": "USD"}
    assert order["plan_id"] == "elan-30days-3gb-topup" and order["iccid"] == iccid
    bought = fake.topup_orders()
    assert len(bought) == 1 and fake.balance == Decimal("245.80")
    assert bought[0]["description"].startswith("esimctl") and iccid in bought[0]["description"]
    assert order["id"] == bought[0]["code"]
    # the top-up was sent as documented (multipart form) and only once
    post = fake.requests_to("POST", "/v2/orders/topups")
    assert len(post) == 1 and "multipart/form-data" in (post[0].header("content-type") or "")
    row = _esims(run("status", "--json"))[iccid]
    assert row["data_total_bytes"] == 4 * GiB  # 1 GB + 3 GB, stacked by the fake
    h = run("history", "--json")
    assert h.exit_code == 0, h
    orders = h.json["data"]["orders"]
    assert [o["state"] for o in orders if o["plan_id"] == "elan-30days-3gb-topup"] == ["completed"]


def test_renew_with_a_queued_topup_is_still_applied(fake: FakeAiralo, setup: Any, run: Cli) -> None:
    fake.topup_mode = "queue"
    fake.usage_cache_seconds = 3600  # usage does not move: only the package history does
    iccid = fake.add_sim("elan-7days-1gb", remaining_mb=100).iccid
    r = run("renew", iccid, "--plan", "elan-7days-1gb-topup", "--yes", "--json")
    assert r.exit_code == 0, r
    assert r.json["data"]["applied"] is True
    assert len(fake.topup_orders()) == 1


def test_renew_dry_run_and_limits_buy_nothing(fake: FakeAiralo, setup: Any, run: Cli) -> None:
    iccid = fake.add_sim("elan-7days-1gb").iccid
    r = run("renew", iccid, "--plan", "elan-30days-3gb-topup", "--dry-run", "--json")
    assert r.exit_code == 0, r
    assert r.json["data"]["order"]["state"] == "dry_run"
    r = run("renew", iccid, "--plan", "elan-30days-3gb-topup", "--yes", "--max-price", "4USD")
    assert r.exit_code == 5, r
    r = run("renew", iccid, "--plan", "no-such-topup", "--yes")
    assert r.exit_code == 2, r
    r = run("renew", iccid, "--plan", "elan-30days-3gb-topup")  # no --yes, no terminal
    assert r.exit_code == 2, r
    assert fake.topup_orders() == [] and fake.balance == Decimal("250.00")
    assert not fake.requests_to("POST", "/v2/orders/topups")


def test_renew_with_too_little_credit_is_one_clear_line(
    fake: FakeAiralo, setup: Any, run: Cli
) -> None:
    iccid = fake.add_sim("elan-7days-1gb").iccid
    fake.balance = Decimal("1.00")
    r = run("renew", iccid, "--plan", "elan-30days-3gb-topup", "--yes")
    assert r.exit_code == 1, r
    first = r.stderr.strip().splitlines()[0]
    assert "not enough Airalo credit" in first and "1.00 USD" in first
    assert fake.topup_orders() == []
    r = run("renew", iccid, "--plan", "elan-30days-3gb-topup", "--yes", "--json")
    assert r.json["errors"][0]["code"] == "insufficient_balance"


def test_renew_a_plan_airalo_refuses_exits_2(fake: FakeAiralo, setup: Any, run: Cli) -> None:
    iccid = fake.add_sim("elan-7days-1gb").iccid
    # listed for the eSIM, then refused at purchase time ("invalid topup package")
    fake.arm(
        "POST",
        "/v2/orders/topups",
        lambda: fake.fail_next(
            422,
            body={
                "data": {"package_id": "invalid topup package"},
                "meta": {"message": "the parameter is invalid"},
            },
        ),
    )
    r = run("renew", iccid, "--plan", "elan-30days-3gb-topup", "--yes")
    assert r.exit_code == 2, r
    assert fake.topup_orders() == []


def test_renew_survives_an_expired_token_without_buying_twice(
    fake: FakeAiralo, setup: Any, run: Cli
) -> None:
    iccid = fake.add_sim("elan-7days-1gb").iccid
    assert run("status", "--json").exit_code == 0
    fake.arm("POST", "/v2/orders/topups", fake.expire_tokens)
    r = run("renew", iccid, "--plan", "elan-7days-1gb-topup", "--yes", "--json")
    assert r.exit_code == 0, r
    assert len(fake.topup_orders()) == 1
    assert len(fake.requests_to("POST", "/v2/orders/topups")) == 2  # 401, then the one order


def test_purchase_committed_but_answer_lost_is_found_not_repeated(
    fake: FakeAiralo, setup: Any, run: Cli
) -> None:
    iccid = fake.add_sim("elan-7days-1gb").iccid
    fake.arm("POST", "/v2/orders/topups", fake.commit_then_drop_next)
    r = run("renew", iccid, "--plan", "elan-7days-1gb-topup", "--yes", "--json")
    # the order is looked up by our reference in description and found at once
    assert r.exit_code == 0, r
    assert len(fake.topup_orders()) == 1
    assert len(fake.requests_to("POST", "/v2/orders/topups")) == 1
    lookups = fake.requests_to("GET", "/v2/orders")
    assert lookups and (lookups[0].arg("filter[description]") or "").startswith("esimctl")
    h = run("history", "--json")
    mine = [o for o in h.json["data"]["orders"] if o["plan_id"] == "elan-7days-1gb-topup"]
    assert len(mine) == 1 and mine[0]["state"] in ("completed", "pending")
    assert len(fake.topup_orders()) == 1


def test_purchase_lost_and_lookup_down_is_reconciled_by_the_next_run(
    fake: FakeAiralo, setup: Any, run: Cli
) -> None:
    setup(retries=0, timeout=0.5)
    iccid = fake.add_sim("elan-7days-1gb").iccid
    fake.arm("POST", "/v2/orders/topups", fake.commit_then_drop_next)
    fake.arm("GET", "/v2/orders", lambda: fake.fail_next(503))
    r = run("renew", iccid, "--plan", "elan-7days-1gb-topup", "--yes", "--json")
    assert r.exit_code == 75, r
    assert len(fake.topup_orders()) == 1
    # the next run looks the order up before anything else, and buys nothing blindly
    r2 = run("renew", iccid, "--plan", "elan-7days-1gb-topup", "--yes", "--dry-run", "--json")
    assert r2.exit_code == 0, r2
    h = run("history", "--json")
    mine = [o for o in h.json["data"]["orders"] if o["plan_id"] == "elan-7days-1gb-topup"]
    assert len(mine) == 1, mine
    assert len(fake.topup_orders()) == 1
    assert len(fake.requests_to("POST", "/v2/orders/topups")) == 1


def test_rerunning_the_same_renew_after_a_lost_answer_buys_nothing_more(
    fake: FakeAiralo, setup: Any, run: Cli
) -> None:
    setup(retries=0, timeout=0.5)
    iccid = fake.add_sim("elan-7days-1gb").iccid
    fake.arm("POST", "/v2/orders/topups", fake.commit_then_drop_next)
    fake.arm("GET", "/v2/orders", lambda: fake.fail_next(503))
    args = ("renew", iccid, "--plan", "elan-7days-1gb-topup", "--yes", "--json")
    assert run(*args).exit_code == 75
    r = run(*args)  # cron runs the same command again
    assert r.exit_code == 0, r
    assert len(fake.topup_orders()) == 1


def test_history_lists_provider_orders(fake: FakeAiralo, setup: Any, run: Cli) -> None:
    sim = fake.add_sim("elan-7days-1gb")
    fake.add_sim("moshi-moshi-7days-1gb")
    r = run("history", "--json")
    assert r.exit_code == 0, r
    orders = r.json["data"]["orders"]
    assert len(orders) == 2 and all(o["source"] == "provider" for o in orders)
    first = next(o for o in orders if o["iccid"] == sim.iccid)
    assert first["price"] == {"amount": "4.50", "currency": "USD"}  # "4.50" string in the list
    assert first["state"] == "completed" and first["plan"] == "Élan-1 GB - 7 Days"
    assert first["id"] == sim.order["code"]


def test_account_test_reports_esims_and_balance(fake: FakeAiralo, setup: Any, run: Cli) -> None:
    fake.seed(3)
    r = run("account", "test", "trip")
    assert r.exit_code == 0, r
    assert "3 eSIM(s)" in r.stdout + r.stderr and "250.00 USD" in r.stdout + r.stderr
    fake.bad_credentials = True
    fake.expire_tokens()
    r = run("account", "test", "trip")
    assert r.exit_code == 4, r


def test_token_endpoint_limit_is_never_hit(fake: FakeAiralo, setup: Any, run: Cli) -> None:
    fake.seed(4)
    for cmd in (("status", "--json"), ("history", "--json"), ("account", "test", "trip")):
        assert run(*cmd).exit_code == 0
    assert fake.token_requests == 1 and fake.stats["429"] == 0


def test_base_url_with_v2_suffix_is_accepted(fake: FakeAiralo, configure: Any, run: Cli) -> None:
    iccid = fake.add_sim().iccid
    configure(f'[accounts.trip]\nprovider = "airalo"\nbase_url = "{fake.url}/v2/"\n')
    r = run("status", "--json")
    assert r.exit_code == 0, r
    assert iccid in _esims(r)


def test_get_esim_reads_history_for_verification(fake: FakeAiralo) -> None:
    """The provider on its own: what renew polls while it waits for the package."""
    import asyncio

    sim = fake.add_sim("elan-7days-1gb", remaining_mb=512)
    ctx = ProviderContext(
        account=AccountConfig("trip", "airalo", fake.url),
        secrets={"CLIENT_ID": CLIENT_ID, "CLIENT_SECRET": CLIENT_SECRET},
        clock=lambda: datetime.now(UTC),
        state_dir=Path("."),
    )

    async def go() -> tuple[Esim, Esim, Order]:
        async with AiraloProvider(ctx) as p:
            assert isinstance(p, AiraloProvider)
            before = await p.get_esim(sim.iccid)
            plan = next(x for x in await p.topups(before) if x.id == "elan-7days-1gb-topup")
            order = await p.buy_topup(before, plan, "esimctl-test0001")
            found = await p.find_order(
                "esimctl-test0001", iccid=sim.iccid, since=datetime.now(UTC) - timedelta(minutes=5)
            )
            assert found is not None and found.id == order.id
            assert found.reference == "esimctl-test0001" and found.iccid == sim.iccid
            assert (
                await p.find_order("esimctl-nothere", iccid=None, since=datetime.now(UTC)) is None
            )
            return before, await p.get_esim(sim.iccid), order

    before, after, order = asyncio.run(go())
    assert before.data_remaining_bytes == 512 * MiB and len(before.packages) == 1
    assert len(after.packages) == 2
    assert AiraloProvider.is_applied(AiraloProvider(ctx), before, after, order)
    assert order.price == Money(Decimal("3.60"), "USD")


def test_account_add_stores_secrets_then_everything_works_without_env(
    fake: FakeAiralo, configure: Callable[[str], Path], cli: Cli, home: Path
) -> None:
    configure("")
    iccid = fake.add_sim().iccid
    r = cli(
        "account", "add", "trip", "--provider", "airalo", "--base-url", fake.url,
        "--secrets-stdin", input=f"CLIENT_ID={CLIENT_ID}\nCLIENT_SECRET={CLIENT_SECRET}\n",
    )  # fmt: skip
    assert r.exit_code == 0, r
    assert CLIENT_SECRET not in (home / "config.toml").read_text()
    r = cli("account", "test", "trip")
    assert r.exit_code == 0, r
    r = cli("status", "--json")
    assert r.exit_code == 0, r
    assert iccid in _esims(r)
    bad = cli(
        "account", "add", "slow", "--provider", "airalo", "--set", "timeout=soon",
        "--secrets-stdin", input=f"CLIENT_ID={CLIENT_ID}\nCLIENT_SECRET={CLIENT_SECRET}\n",
    )  # fmt: skip
    assert bad.exit_code == 2, bad


def test_auto_renew_buys_once_while_airalo_still_shows_the_old_figures(
    fake: FakeAiralo, configure: Callable[[str], Path], run: Cli
) -> None:
    fake.usage_cache_seconds = 3600  # Airalo's usage cache: the low figure outlives the top-up
    fake.topup_mode = "queue"
    iccid = fake.add_sim("elan-7days-1gb", remaining_mb=100).iccid
    configure(
        f'[accounts.trip]\nprovider = "airalo"\nbase_url = "{fake.url}"\n'
        f'[renewal]\nmax_per_day = 5\n[renewal.esims."{iccid}"]\n'
        'data_below = "500MB"\nplan = "elan-7days-1gb-topup"\n'
    )
    first = run("renew", "--auto", "--yes", "--json")
    assert first.exit_code == 0, first
    assert [o["applied"] for o in first.json["data"]["orders"]] == [True]
    for _ in range(2):
        again = run("renew", "--auto", "--yes", "--json")
        assert again.exit_code == 0, again
        assert again.json["data"]["orders"] == []
    assert len(fake.topup_orders()) == 1
