"""Money guard (issue 16) for eSIM Access and eSIM Go, through the CLI against the fakes:
an answer that cannot be understood is never "nothing happened" nor "no eSIMs", unknown
states stay unknown, absurd figures are an error for that eSIM, and the expected price
goes with every purchase (eSIM Access ``amount``, eSIM Go ``type: validate``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from esimctl.config import AccountConfig
from esimctl.errors import LimitRefused, TemporaryFailure
from esimctl.models import Money
from esimctl.providers.base import ProviderContext
from esimctl.providers.esimaccess import EsimAccessProvider
from esimctl.providers.esimaccess import answers as ea
from esimctl.providers.esimgo import EsimGoProvider
from esimctl.providers.esimgo import answers as eg
from fakes.esimaccess import ACCESS_CODE, GB, SECRET_KEY, FakeEsimAccess
from fakes.esimgo import DEFAULT_KEY, FakeEsimGo
from fakes.esimgo import GB as DGB

SPAIN = "8943108170001234567"  # 3 GB plan in use
JAPAN_NEW = "8943108170001234568"  # not installed yet
JAPAN_UNL = "8943108170001234569"  # unlimited daily plan in use
EA_ENV = {"ESIMCTL_TRIP_ACCESS_CODE": ACCESS_CODE, "ESIMCTL_TRIP_SECRET_KEY": SECRET_KEY}
EG_ENV = {"ESIMCTL_TRIP_API_KEY": DEFAULT_KEY, "ESIMCTL_GO_API_KEY": DEFAULT_KEY}
FAST = "rate_limit = 1000\nretries = 0\ntimeout = 2\n"
PLAN = "esim_3GB_30D_PT_V2"  # 4.21 USD on the eSIM Go fake


def ea_account(fake: FakeEsimAccess, name: str = "trip") -> str:
    return f'[accounts.{name}]\nprovider = "esimaccess"\nbase_url = "{fake.url}"\n{FAST}'


def eg_account(fake: FakeEsimGo, name: str = "trip") -> str:
    return (
        f'[accounts.{name}]\nprovider = "esimgo"\nbase_url = "{fake.url}"\n'
        "timeout = 1\nretries = 1\nrate_limit = 1000\n"
    )


@pytest.fixture
def ea_fake() -> Iterator[FakeEsimAccess]:
    f = FakeEsimAccess()
    f.start()
    f.add_esim(iccid=SPAIN, package="CKH002", used=int(1.2 * GB))
    f.add_esim(iccid=JAPAN_NEW, package="JC016", status="GOT_RESOURCE")
    f.add_esim(iccid=JAPAN_UNL, package="JPU01", used=7 * GB, expires_in=timedelta(days=3))
    yield f
    f.stop()


@pytest.fixture
def eg_fake() -> Iterator[FakeEsimGo]:
    f = FakeEsimGo()
    f.start()
    f.token_limit = 1000
    yield f
    f.stop()


@pytest.fixture
def ea_run(cli: Any, configure: Any, ea_fake: FakeEsimAccess) -> Callable[..., Any]:
    configure(ea_account(ea_fake))
    return lambda *args, **kw: cli(*args, env=EA_ENV, **kw)


@pytest.fixture
def eg_run(cli: Any, configure: Any, eg_fake: FakeEsimGo) -> Callable[..., Any]:
    configure(eg_account(eg_fake))
    return lambda *args, **kw: cli(*args, env=EG_ENV, **kw)


def rows(r: Any) -> dict[str, dict[str, Any]]:
    return {e["iccid"]: e for e in r.json["data"]["esims"]}


def ledger_states(run: Callable[..., Any], plan_id: str) -> list[str]:
    h = run("history", "--json")
    return [o["state"] for o in h.json["data"]["orders"] if o["plan_id"] == plan_id]


def posts(fake: FakeEsimGo) -> list[dict[str, Any]]:
    """Every POST /orders body, in order (validate and transaction)."""
    return [q.json() for q in fake.requests if q.method == "POST" and q.path == "/orders"]


def transactions(fake: FakeEsimGo) -> list[dict[str, Any]]:
    return [b for b in posts(fake) if b.get("type") == "transaction"]


def _is_validate(q: Any) -> bool:
    return bool(q.method == "POST" and q.path == "/orders" and q.json().get("type") == "validate")


def ea_ok(obj: Any) -> dict[str, Any]:
    return {"success": True, "errorCode": "0", "errorMsg": None, "obj": obj}


# == 1. a lost purchase answer, then a lookup that cannot be understood ==========================

EA_UNREADABLE = {
    "obj-null": ea_ok(None),
    "no-envelope": {},
    "unknown-error-code": {"success": False, "errorCode": "777777", "errorMsg": "?", "obj": None},
    "obj-a-list": ea_ok([]),
    "esimList-null": ea_ok({"esimList": None}),
}


@pytest.mark.parametrize("kind", [*EA_UNREADABLE, "record-without-packages"])
def test_ea_lost_answer_and_unreadable_lookup_stay_unresolved(
    ea_run: Any, ea_fake: FakeEsimAccess, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    # No lookup lag: a "not found" would at once mark the purchase as never made.
    monkeypatch.setattr(EsimAccessProvider, "order_lookup_lag", timedelta(0))
    tran = ea_fake.esim(SPAIN)["esimTranNo"]
    body = EA_UNREADABLE.get(kind) or ea_ok(
        {"esimList": [{"iccid": SPAIN, "esimTranNo": tran}], "pager": {"total": 1}}
    )
    ea_fake.fault_on("/esim/topup", "drop")
    ea_fake.malformed_lookup_next(100, body, after_topup=True)
    args = ("renew", SPAIN, "--plan", "TOPUP_CKH491", "--yes", "--timeout", "0m")
    first = ea_run(*args)
    assert first.exit_code == 75, first
    assert len(ea_fake.topups) == 1  # bought, but its answer was lost
    second = ea_run(*args)  # past the lookup lag, the lookup still unreadable
    assert second.exit_code == 75, second
    assert "unresolved" in second.stderr
    assert len(ea_fake.topups) == 1
    assert "failed" not in ledger_states(ea_run, "TOPUP_CKH491")
    ea_fake.malformed_lookup_next(0)  # a readable answer decides: it went through
    third = ea_run(*args)
    assert third.exit_code == 0, third
    assert "went through" in third.stdout
    assert len(ea_fake.topups) == 1
    assert "failed" not in ledger_states(ea_run, "TOPUP_CKH491")


EG_UNREADABLE: dict[str, Any] = {
    "empty-object": {},
    "orders-null": {"orders": None},
    "null": None,
    "a-string": "ok",
    "order-without-reference": [{"order": [], "createdDate": "2025-06-20T09:15:42Z"}],
    "order-without-date": {"orders": [{"orderReference": "x", "order": []}]},
}


@pytest.mark.parametrize("kind", list(EG_UNREADABLE))
def test_eg_lost_answer_and_unreadable_lookup_stay_unresolved(
    eg_run: Any, eg_fake: FakeEsimGo, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    monkeypatch.setattr(EsimGoProvider, "order_lookup_lag", timedelta(0))
    iccid = eg_fake.add_esim(bundle="esim_1GB_7D_PT_V2")
    eg_fake.drop_transaction_next()
    eg_fake.malformed_lookup_next(100, EG_UNREADABLE[kind])
    args = ("renew", iccid, "--plan", PLAN, "--yes", "--timeout", "0m")
    first = eg_run(*args)
    assert first.exit_code == 75, first
    assert eg_fake.charged_orders == 1
    second = eg_run(*args)
    assert second.exit_code == 75, second
    assert "unresolved" in second.stderr
    assert eg_fake.charged_orders == 1 and len(transactions(eg_fake)) == 1
    eg_fake.malformed_lookup_next(0)
    third = eg_run(*args)
    assert third.exit_code == 0, third
    assert "went through" in third.stdout
    assert eg_fake.charged_orders == 1 and len(transactions(eg_fake)) == 1
    assert "failed" not in ledger_states(eg_run, PLAN)


def test_ea_find_order_says_none_only_on_a_readable_answer(
    ea_fake: FakeEsimAccess, tmp_path: Path
) -> None:
    async def main() -> None:
        async with _ea_provider(ea_fake, tmp_path) as p:
            now = datetime.now(UTC)
            assert await p.find_order("esimctl-never-sent", iccid=SPAIN, since=now) is None
            ea_fake.malformed_lookup_next(5)
            with pytest.raises(TemporaryFailure, match="unresolved"):
                await p.find_order("esimctl-never-sent", iccid=SPAIN, since=now)

    asyncio.run(main())


def test_eg_find_order_says_none_only_on_a_readable_answer(
    eg_fake: FakeEsimGo, tmp_path: Path
) -> None:
    iccid = eg_fake.add_esim()

    async def main() -> None:
        async with _eg_provider(eg_fake, tmp_path) as p:
            since = datetime.now(UTC) - timedelta(hours=1)
            assert await p.find_order("ref-none", iccid=iccid, since=since) is None
            eg_fake.malformed_lookup_next(1, {})
            with pytest.raises(TemporaryFailure, match="unresolved"):
                await p.find_order("ref-none", iccid=iccid, since=since)

    asyncio.run(main())


# == 2. a list of an unexpected shape is an error, never "no eSIMs" ===========================


@pytest.mark.parametrize(
    "body",
    [ea_ok(None), ea_ok({}), ea_ok([]), ea_ok({"esimList": None}), ea_ok({"esimList": [1]})],
    ids=["obj-null", "obj-empty", "obj-list", "esimList-null", "esimList-of-numbers"],
)
def test_ea_unreadable_list_is_an_error_not_an_empty_account(
    ea_run: Any, ea_fake: FakeEsimAccess, body: Any
) -> None:
    ea_fake.malformed_list_next(10, body)
    r = ea_run("status", "--refresh", "--json")
    assert r.exit_code not in (0, 8), r
    assert r.json["status"] == "error" and r.json["errors"], r
    assert r.json["errors"][0]["account"] == "trip"
    ea_fake.malformed_list_next(0)
    assert ea_run("status", "--refresh", "--json").exit_code == 0


def test_ea_a_readable_empty_list_is_an_empty_account(cli: Any, configure: Any) -> None:
    fake = FakeEsimAccess()
    fake.start()
    try:
        configure(ea_account(fake))
        r = cli("status", "--refresh", "--json", env=EA_ENV)
        assert r.exit_code == 0, r
        assert r.json["data"]["esims"] == []
    finally:
        fake.stop()


@pytest.mark.parametrize(
    "body", [{}, None, {"esims": None}, {"esims": {}}, [1, 2]],
    ids=["empty-object", "null", "esims-null", "esims-object", "list-of-numbers"],
)  # fmt: skip
def test_eg_unreadable_list_is_an_error_not_an_empty_account(
    cli: Any, configure: Any, eg_fake: FakeEsimGo, ea_fake: FakeEsimAccess, body: Any
) -> None:
    """With another account answering, the run is partial (exit 3), never exit 0."""
    eg_fake.add_esim()
    configure(eg_account(eg_fake, "go") + ea_account(ea_fake, "trip"))
    eg_fake.malformed_list_next(10, body)
    r = cli("status", "--refresh", "--json", env={**EA_ENV, **EG_ENV})
    assert r.exit_code == 3, r
    assert r.json["status"] == "partial"
    assert [e["account"] for e in r.json["errors"]] == ["go"]
    assert {e["account"] for e in r.json["data"]["esims"]} == {"trip"}


def test_eg_a_readable_empty_list_is_an_empty_account(eg_run: Any) -> None:
    r = eg_run("status", "--refresh", "--json")
    assert r.exit_code == 0, r
    assert r.json["data"]["esims"] == []


def test_eg_one_unreadable_esim_is_an_error_for_that_esim(eg_run: Any, eg_fake: FakeEsimGo) -> None:
    good = eg_fake.add_esim()
    bad = eg_fake.add_esim()
    eg_fake.fail_when(lambda q: q.path == f"/esims/{bad}/bundles", 200, {})
    r = eg_run("status", "--refresh", "--json")
    assert r.exit_code == 3, r
    assert bad in r.json["errors"][0]["message"]
    assert set(rows(r)) == {good}


# == 3. unknown states stay unknown ============================================================


def test_ea_suspended_is_unknown(ea_run: Any, ea_fake: FakeEsimAccess) -> None:
    ea_fake.override(SPAIN, esimStatus="SUSPENDED")
    r = ea_run("status", "--refresh", "--json")
    assert r.exit_code == 0, r
    assert rows(r)[SPAIN]["state"] == "unknown"


@pytest.mark.parametrize(
    "how", [{"esim_state": "suspended"}, {"bundleState": "SUSPENDED"}, {"bundleState": "paused"}]
)
def test_eg_suspended_or_unknown_state_is_unknown(
    eg_run: Any, eg_fake: FakeEsimGo, how: dict[str, str]
) -> None:
    iccid = eg_fake.add_esim()
    eg_fake.override(iccid, **how)
    r = eg_run("status", "--refresh", "--json")
    assert r.exit_code == 0, r
    assert rows(r)[iccid]["state"] == "unknown"


# == 4. the expected price goes with the purchase ==============================================


def test_ea_sends_the_listed_price_as_amount(ea_run: Any, ea_fake: FakeEsimAccess) -> None:
    r = ea_run("renew", SPAIN, "--plan", "TOPUP_CKH491", "--yes", "--json")
    assert r.exit_code == 0, r
    [sent] = [json.loads(q.body) for q in ea_fake.requests if q.path.endswith("/esim/topup")]
    assert sent["amount"] == "7000"  # 0.70 USD in 1/10,000
    assert r.json["data"]["order"]["price"] == {"amount": "0.70", "currency": "USD"}


@pytest.mark.parametrize("charge", ["2.00", "0.71", "-50", "0"])
def test_ea_price_changed_at_the_provider_is_refused(
    ea_run: Any, ea_fake: FakeEsimAccess, charge: str
) -> None:
    ea_fake.charge_override = charge  # eSIM Access asks this now; the listing still says 0.70
    r = ea_run("renew", SPAIN, "--plan", "TOPUP_CKH491", "--yes")
    assert r.exit_code == 5, r
    assert "price" in r.stderr and "nothing was bought" in r.stderr
    assert ea_fake.topups == [] and ea_fake.balance == 500_000
    # A refusal is definite, not an unknown outcome: the next run buys at once.
    ea_fake.charge_override = None
    again = ea_run("renew", SPAIN, "--plan", "TOPUP_CKH491", "--yes")
    assert again.exit_code == 0, again
    assert len(ea_fake.topups) == 1


def test_ea_day_pass_price_is_read_again_before_buying(
    ea_fake: FakeEsimAccess, tmp_path: Path
) -> None:
    """Day passes go without ``amount`` (per day or in all is not documented): the
    listing is read again just before, and a higher price refuses."""

    async def main() -> None:
        async with _ea_provider(ea_fake, tmp_path) as p:
            esim = await p.get_esim(JAPAN_UNL)
            day = next(x for x in await p.topups(esim) if x.id == "TOPUP_JPD01")
            plan = day.for_days(7)  # a day pass is listed per day (issue 18)
            assert plan.price == Money(Decimal("10.50"), "USD")
            ea_fake.price_override = {"TOPUP_JPD01": "1.60"}  # was 1.50 a day
            with pytest.raises(LimitRefused, match="more than"):
                await p.buy_topup(esim, plan, "esimctl-dear")
            assert ea_fake.topups == []
            ea_fake.price_override = {}
            order = await p.buy_topup(esim, plan, "esimctl-same")
            assert len(ea_fake.topups) == 1
            assert order.price is None  # nothing confirmed the charge: the ledger's listed one

    asyncio.run(main())


def test_eg_validates_then_buys_the_same_order(eg_run: Any, eg_fake: FakeEsimGo) -> None:
    iccid = eg_fake.add_esim()
    r = eg_run("renew", iccid, "--plan", PLAN, "--yes", "--json")
    assert r.exit_code == 0, r
    validate, transaction = posts(eg_fake)
    assert (validate["type"], transaction["type"]) == ("validate", "transaction")
    assert validate["order"] == transaction["order"] and validate["assign"] is True
    assert len(eg_fake.validations) == 1 and eg_fake.charged_orders == 1
    assert r.json["data"]["order"]["price"] == {"amount": "4.21", "currency": "USD"}


@pytest.mark.parametrize("charge", ["12.00", "4.22", "-50", "0"])
def test_eg_validated_total_above_the_listed_price_is_refused(
    eg_run: Any, eg_fake: FakeEsimGo, charge: str
) -> None:
    iccid = eg_fake.add_esim()
    eg_fake.charge_override = charge  # the catalogue still says 4.21
    r = eg_run("renew", iccid, "--plan", PLAN, "--yes")
    assert r.exit_code == 5, r
    assert "nothing was bought" in r.stderr
    assert len(eg_fake.validations) == 1
    assert transactions(eg_fake) == [] and eg_fake.charged_orders == 0


def test_eg_a_lower_validated_total_buys(eg_run: Any, eg_fake: FakeEsimGo) -> None:
    iccid = eg_fake.add_esim()
    eg_fake.charge_override = "3.99"
    r = eg_run("renew", iccid, "--plan", PLAN, "--yes", "--json")
    assert r.exit_code == 0, r
    assert eg_fake.charged_orders == 1  # what counts against limits is the lead's rule


@pytest.mark.parametrize("fault", ["5xx", "unreadable"])
def test_eg_a_failed_price_check_buys_nothing_and_blocks_nothing(
    eg_run: Any, eg_fake: FakeEsimGo, fault: str
) -> None:
    iccid = eg_fake.add_esim()
    if fault == "5xx":
        for _ in range(2):  # the validate is retried once, like a read
            eg_fake.fail_when(_is_validate, 502, {"message": "Bad gateway"})
    else:
        eg_fake.fail_when(_is_validate, 200, {"valid": True})  # no total
    r = eg_run("renew", iccid, "--plan", PLAN, "--yes")
    assert r.exit_code == 75, r
    assert "outcome" not in r.stderr  # nothing was sent that could have bought
    assert transactions(eg_fake) == [] and eg_fake.charged_orders == 0
    # Not an unknown outcome: the next run buys without waiting for a lookup.
    again = eg_run("renew", iccid, "--plan", PLAN, "--yes")
    assert again.exit_code == 0, again
    assert eg_fake.charged_orders == 1


def test_eg_dry_run_sends_no_order_at_all(eg_run: Any, eg_fake: FakeEsimGo) -> None:
    """Decided: ``--dry-run`` sends nothing to ``/orders``, not even ``validate``; it shows
    the listed price, and the real purchase validates before it buys."""
    iccid = eg_fake.add_esim()
    r = eg_run("renew", iccid, "--plan", PLAN, "--dry-run", "--json")
    assert r.exit_code == 0, r
    assert r.json["data"]["order"]["state"] == "dry_run"
    assert posts(eg_fake) == [] and eg_fake.validations == []


# == 5. the charged price as the purchase answer reports it =====================================


@pytest.mark.parametrize(
    ("charge", "want"),
    [
        ("3.50", Money(Decimal("3.50"), "USD")),
        ("-50", Money(Decimal("-50"), "USD")),  # as reported: the limits judge it
        ("NaN", None),
    ],
)
def test_eg_order_price_is_what_the_answer_says_was_charged(
    eg_fake: FakeEsimGo, tmp_path: Path, charge: str, want: Money | None
) -> None:
    iccid = eg_fake.add_esim()
    eg_fake.validate_override = "4.21"  # the price check agrees with the listing...
    eg_fake.charge_override = charge  # ...the charge does not

    async def main() -> None:
        async with _eg_provider(eg_fake, tmp_path) as p:
            esim = await p.get_esim(iccid)
            plan = next(x for x in await p.topups(esim) if x.id == PLAN)
            order = await p.buy_topup(esim, plan, "ref-charge")
            assert order.price == want

    asyncio.run(main())


# == absurd listed prices: the plan is not offered (the lead's validator) ==========================


@pytest.mark.parametrize("price", ["-1.40", "1e-18", "1e308", "0"])
def test_ea_absurd_listed_price_is_not_offered(
    ea_run: Any, ea_fake: FakeEsimAccess, price: str
) -> None:
    ea_fake.price_override = {"TOPUP_CKH491": price}
    p = ea_run("plans", SPAIN, "--json")
    assert p.exit_code in (0, 3), p
    assert "TOPUP_CKH491" not in {x["id"] for x in p.json["data"]["plans"]}
    assert "TOPUP_CKH002" in {x["id"] for x in p.json["data"]["plans"]}
    r = ea_run("renew", SPAIN, "--plan", "TOPUP_CKH491", "--yes")
    assert r.exit_code != 0, r
    assert "Traceback" not in r.stderr
    assert ea_fake.topups == []


@pytest.mark.parametrize("price", ["-1.40", "1e-18", "1e308", "0"])
def test_eg_absurd_listed_price_is_not_offered(
    eg_run: Any, eg_fake: FakeEsimGo, price: str
) -> None:
    iccid = eg_fake.add_esim()
    eg_fake.price_override = {PLAN: price}
    p = eg_run("plans", iccid, "--json")
    assert p.exit_code in (0, 3), p
    ids = {x["id"] for x in p.json["data"]["plans"]}
    assert PLAN not in ids and "esim_1GB_7D_PT_V2" in ids
    r = eg_run("renew", iccid, "--plan", PLAN, "--yes")
    assert r.exit_code != 0, r
    assert "Traceback" not in r.stderr
    assert transactions(eg_fake) == [] and eg_fake.charged_orders == 0


# == absurd figures: an error naming that eSIM, the others still shown (the lead's validator) ==


@pytest.mark.parametrize(
    "fields",
    [{"totalVolume": 1e30}, {"totalVolume": 10**30}, {"orderUsage": -5 * GB}],
    ids=["total-1e30-float", "total-1e30-int", "used-negative"],
)
def test_ea_absurd_figures_are_an_error_for_that_esim(
    ea_run: Any, ea_fake: FakeEsimAccess, fields: dict[str, Any]
) -> None:
    ea_fake.override(SPAIN, **fields)
    r = ea_run("status", "--refresh", "--json")
    assert r.exit_code == 3, r
    assert any(SPAIN in e["message"] for e in r.json["errors"]), r
    shown = rows(r)
    assert {JAPAN_NEW, JAPAN_UNL} <= set(shown)
    assert SPAIN not in shown or shown[SPAIN]["data_total_bytes"] is None


@pytest.mark.parametrize(
    "fields",
    [
        {"totalVolume": "NaN", "orderUsage": "NaN"},
        {"totalVolume": 1.5},
        {"orderUsage": 0.5},
        {"totalDuration": 1e30},
        {"expiredTime": 1e30},
        {"totalVolume": "Infinity"},
    ],
    ids=["nan", "fractional-total", "fractional-used", "duration-1e30", "expiry-1e30", "inf"],
)
def test_ea_unreadable_figures_never_crash_nor_invent(
    ea_run: Any, ea_fake: FakeEsimAccess, fields: dict[str, Any]
) -> None:
    ea_fake.override(SPAIN, **fields)
    r = ea_run("status", "--refresh", "--json")
    assert r.exit_code in (0, 3), r
    assert "Traceback" not in r.stderr
    spain = rows(r).get(SPAIN)
    if spain is not None and ("totalVolume" in fields or "orderUsage" in fields):
        assert spain["data_remaining_bytes"] is None  # unknown, never "all left" or "0 left"
    assert {JAPAN_NEW, JAPAN_UNL} <= set(rows(r))


@pytest.mark.parametrize(
    "fields",
    [
        {"initialQuantity": 1e30, "remainingQuantity": 1e30},
        {"remainingQuantity": -5 * DGB},
        {"remainingQuantity": 10 * DGB},  # more left than the 3 GB bundle holds
    ],
    ids=["1e30", "negative-left", "left-above-total"],
)
def test_eg_absurd_figures_are_an_error_for_that_esim(
    eg_run: Any, eg_fake: FakeEsimGo, fields: dict[str, Any]
) -> None:
    good = eg_fake.add_esim()
    bad = eg_fake.add_esim()
    eg_fake.override(bad, **fields)
    r = eg_run("status", "--refresh", "--json")
    assert r.exit_code == 3, r
    assert any(bad in e["message"] for e in r.json["errors"]), r
    shown = rows(r)
    assert good in shown
    assert bad not in shown or shown[bad]["data_remaining_bytes"] is None


@pytest.mark.parametrize(
    "fields",
    [
        {"initialQuantity": float("nan"), "remainingQuantity": float("nan"), "allowances": []},
        {"remainingQuantity": 0.5, "allowances": []},
        {"endTime": "9999999999999999999"},
        {"assignmentDateTime": 1e300},
    ],
    ids=["nan", "fractional", "end-beyond-calendar", "assigned-1e300"],
)
def test_eg_unreadable_figures_never_crash_nor_invent(
    eg_run: Any, eg_fake: FakeEsimGo, fields: dict[str, Any]
) -> None:
    good = eg_fake.add_esim()
    odd = eg_fake.add_esim()
    eg_fake.override(odd, **fields)
    r = eg_run("status", "--refresh", "--json")
    assert r.exit_code in (0, 3), r
    assert "Traceback" not in r.stderr
    shown = rows(r)
    assert good in shown
    if odd in shown and "remainingQuantity" in fields:
        assert shown[odd]["data_remaining_bytes"] is None


def test_eg_parsers_take_absurd_figures_as_given_or_none() -> None:
    def price(value: Any) -> Money | None:
        raw = {"name": "esim_1GB_7D_PT_V2", "dataAmount": 1000, "price": value}
        p = eg.plan_from(raw, currency="USD", account="t", provider="esimgo", kind="new")
        assert p is not None
        return p.price

    def initial(value: Any) -> int | None:
        [a] = eg.parse_assignments({"assignments": [{"initialQuantity": value}]}, "b")
        return a.initial

    assert price(float("nan")) is None and price("Infinity") is None
    assert price("1e308") == Money(Decimal("1e308"), "USD")
    assert initial(1e30) == 10**30 and initial(-5) == -5 and initial(1.5) is None
    assert eg.parse_time(1e30) is None and eg.parse_time(float("nan")) is None
    assert eg._bytes("1.5", "MB") == 1_500_000


def test_ea_parsers_take_absurd_figures_as_given_or_none() -> None:
    def total(v: Any) -> int | None:  # totalVolume as the eSIM's parser reads it
        e = ea.parse_esim({"iccid": SPAIN, "totalVolume": v}, account="trip")
        assert e is not None
        return e.data_total_bytes

    assert ea.parse_money("NaN") is None and ea.parse_money(float("inf")) is None
    assert total(1e30) == 10**30 and total("-5") == -5
    assert total(1.5) is None and total("1e999999999") is None
    assert ea.parse_time(1e30) is None and ea.parse_time(float("nan")) is None


# -- the providers on their own -------------------------------------------------------------


def _ea_provider(fake: FakeEsimAccess, tmp_path: Path) -> EsimAccessProvider:
    ctx = ProviderContext(
        account=AccountConfig(
            "trip", "esimaccess", fake.url, {"rate_limit": 1000, "retries": 0, "timeout": 2}
        ),
        secrets={"ACCESS_CODE": ACCESS_CODE, "SECRET_KEY": SECRET_KEY},
        clock=lambda: datetime.now(UTC),
        state_dir=tmp_path,
    )
    return EsimAccessProvider(ctx)


def _eg_provider(fake: FakeEsimGo, tmp_path: Path) -> EsimGoProvider:
    ctx = ProviderContext(
        account=AccountConfig("trip", "esimgo", fake.url, {"retries": 0, "rate_limit": 1000}),
        secrets={"API_KEY": DEFAULT_KEY},
        clock=lambda: datetime.now(UTC),
        state_dir=tmp_path,
        timeout=2.0,
    )
    return EsimGoProvider(ctx)
