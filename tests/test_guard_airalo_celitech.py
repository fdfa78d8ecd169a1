"""Money guard (issue 16) for Airalo and Celitech, through the CLI against the fakes.

What esimctl must refuse to believe: an order lookup it cannot read is never "no such
order" (the paid order stays unresolved and is never bought again), a list of an unexpected
shape is never "no eSIMs", an undocumented state is never "active" or "expired", a
fractional MB is never 0, and an absurd figure is an error naming its eSIM, never a number
in the table nor a trigger for a purchase. The last ones depend on ``esimctl.validate``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from esimctl.providers.airalo import AiraloProvider
from esimctl.providers.celitech import CelitechProvider
from esimctl.providers.celitech import provider as celitech_module
from fakes.airalo import CLIENT_ID as A_ID
from fakes.airalo import CLIENT_SECRET as A_SECRET
from fakes.airalo import FakeAiralo
from fakes.celitech import CLIENT_ID as C_ID
from fakes.celitech import CLIENT_SECRET as C_SECRET
from fakes.celitech import FakeCelitech

MiB = 1024 * 1024
GiB = 1024 * MiB
TOPUP = "/v1/purchases/topup"
A_PLAN = "elan-7days-1gb-topup"
C_PLAN = "fr-1gb-30d"

Cli = Callable[..., Any]


def _env(*accounts: str, cid: str, secret: str) -> dict[str, str]:
    out = {}
    for name in accounts:
        out[f"ESIMCTL_{name.upper()}_CLIENT_ID"] = cid
        out[f"ESIMCTL_{name.upper()}_CLIENT_SECRET"] = secret
    return out


A_ENV = _env("trip", "spare", cid=A_ID, secret=A_SECRET)
C_ENV = _env("trip", "spare", cid=C_ID, secret=C_SECRET)


@pytest.fixture
def airalo(configure: Callable[[str], Path]) -> Iterator[FakeAiralo]:
    with FakeAiralo() as f:
        assert isinstance(f, FakeAiralo)
        configure(f'[accounts.trip]\nprovider = "airalo"\nbase_url = "{f.url}"\nretries = 1\n')
        yield f


@pytest.fixture
def celitech(configure: Callable[[str], Path]) -> Iterator[FakeCelitech]:
    with FakeCelitech() as f:
        assert isinstance(f, FakeCelitech)
        configure(
            f'[accounts.trip]\nprovider = "celitech"\nbase_url = "{f.url}"\n'
            "requests_per_second = 500\nretries = 1\n"
        )
        yield f


@pytest.fixture
def no_lag(monkeypatch: pytest.MonkeyPatch) -> None:
    """An order not found is taken as "not made" at once (no lookup lag): a lookup that
    wrongly read "no such order" would then mark the paid order failed and buy again."""
    monkeypatch.setattr(AiraloProvider, "order_lookup_lag", timedelta(0))
    monkeypatch.setattr(CelitechProvider, "order_lookup_lag", timedelta(0))


def _esims(r: Any) -> dict[str, dict[str, Any]]:
    return {e["iccid"]: e for e in r.json["data"]["esims"]}


def _local(cli: Cli, env: dict[str, str]) -> list[dict[str, Any]]:
    """The ledger's own rows (``--local``: the provider's record would show completed)."""
    h = cli("history", "--local", "--json", env=env)
    assert h.exit_code in (0, 3), h
    return [o for o in h.json["data"]["orders"] if o["source"] == "local"]


def _second_account(configure: Callable[[str], Path], provider: str, bad: str, good: str) -> None:
    extra = "requests_per_second = 500\n" if provider == "celitech" else ""
    configure(
        f'[accounts.trip]\nprovider = "{provider}"\nbase_url = "{bad}"\nretries = 1\n{extra}'
        f'[accounts.spare]\nprovider = "{provider}"\nbase_url = "{good}"\nretries = 1\n{extra}'
    )


UNREADABLE_LOOKUPS = [{}, None, [], {"data": None}, {"data": {}}, {"data": [{"x": 1}]}]
UNREADABLE_LOOKUP_IDS = ["empty", "null", "list", "data-null", "data-object", "no-fields"]


# -- a lost purchase answer, then a lookup that cannot be read ------------------------------


@pytest.mark.parametrize("body", UNREADABLE_LOOKUPS, ids=UNREADABLE_LOOKUP_IDS)
def test_airalo_unreadable_lookup_after_a_lost_answer_keeps_the_order_unresolved(
    cli: Cli, airalo: FakeAiralo, no_lag: None, body: Any
) -> None:
    iccid = airalo.add_sim("elan-7days-1gb").iccid
    airalo.arm("POST", "/v2/orders/topups", airalo.commit_then_drop_next)
    airalo.malformed_lookup_next(times=50, body=body)
    args = ("renew", iccid, "--plan", A_PLAN, "--yes", "--json")
    first = cli(*args, env=A_ENV)
    assert first.exit_code == 75, first
    assert len(airalo.topup_orders()) == 1
    # cron runs the same line again: the lookup still cannot be read, nothing more is bought
    again = cli(*args, env=A_ENV)
    assert again.exit_code == 75, again
    assert "cannot read" in again.stderr + again.stdout
    assert len(airalo.topup_orders()) == 1
    assert len(airalo.requests_to("POST", "/v2/orders/topups")) == 1
    mine = [o for o in _local(cli, A_ENV) if o["plan_id"] == A_PLAN]
    assert [o["state"] for o in mine] == ["pending"], mine
    # once the lookup answers properly the order is found, still bought once
    airalo.malformed_lookup_next(times=0)
    settled = cli(*args, env=A_ENV)
    assert settled.exit_code == 0, settled
    assert len(airalo.topup_orders()) == 1
    assert len(airalo.requests_to("POST", "/v2/orders/topups")) == 1


@pytest.mark.parametrize(
    "body",
    [{}, None, [], {"purchases": None}, {"purchases": {}}, {"purchases": [{"x": 1}]}],
    ids=["empty", "null", "list", "purchases-null", "purchases-object", "no-id"],
)
def test_celitech_unreadable_lookup_after_a_lost_answer_keeps_the_order_unresolved(
    cli: Cli, celitech: FakeCelitech, no_lag: None, body: Any
) -> None:
    iccid = celitech.add_esim(gb=1, used_gb=0.9)
    celitech.target_next("POST", TOPUP, "drop")  # committed, the answer never arrives
    celitech.malformed_lookup_next(times=50, body=body)
    args = ("renew", iccid, "--plan", C_PLAN, "--yes", "--json")
    first = cli(*args, env=C_ENV)
    assert first.exit_code == 75, first
    tops = [p for p in celitech.purchases if p["purchaseType"] == "Top-up Purchase"]
    assert len(tops) == 1
    again = cli(*args, env=C_ENV)
    assert again.exit_code == 75, again
    assert "cannot read" in again.stderr + again.stdout
    posts = [r for r in celitech.requests if r.method == "POST" and r.path == TOPUP]
    assert len(posts) == 1
    mine = [o for o in _local(cli, C_ENV) if o["plan_id"] == C_PLAN]
    assert [o["state"] for o in mine] == ["pending"], mine
    celitech.malformed_lookup_next(times=0)
    settled = cli(*args, env=C_ENV)
    assert settled.exit_code == 0, settled
    posts = [r for r in celitech.requests if r.method == "POST" and r.path == TOPUP]
    assert len(posts) == 1


# -- lists of an unexpected shape ------------------------------------------------------------

UNREADABLE_LISTS = [{}, None, {"data": {}}, {"data": None}, {"data": [1, 2]}, {"data": [{}]}]
UNREADABLE_LIST_IDS = ["empty", "null", "data-object", "data-null", "not-objects", "no-iccid"]


@pytest.mark.parametrize("body", UNREADABLE_LISTS, ids=UNREADABLE_LIST_IDS)
def test_airalo_list_of_unexpected_shape_is_an_error_not_no_esims(
    cli: Cli, airalo: FakeAiralo, body: Any
) -> None:
    airalo.add_sim()
    airalo.malformed_list_next(body=body)
    r = cli("status", "--json", env=A_ENV)
    assert r.exit_code == 1, r
    assert r.json["status"] == "error" and r.json["errors"], r
    assert "cannot read" in r.json["errors"][0]["message"]
    airalo.malformed_list_next(body=body)
    table = cli("status", tty=True, env=A_ENV)
    assert table.exit_code == 1, table
    assert "cannot read" in table.stderr


def test_airalo_unreadable_list_on_one_account_leaves_the_other(
    cli: Cli, configure: Callable[[str], Path], airalo: FakeAiralo
) -> None:
    airalo.add_sim()
    with FakeAiralo() as good:
        kept = good.add_sim().iccid
        _second_account(configure, "airalo", airalo.url, good.url)
        airalo.malformed_list_next(body={"data": None})
        r = cli("status", "--json", env=A_ENV)
    assert r.exit_code == 3, r
    assert list(_esims(r)) == [kept]
    assert [e["account"] for e in r.json["errors"]] == ["trip"]


def test_airalo_unreadable_second_page_is_an_error(
    cli: Cli, airalo: FakeAiralo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(AiraloProvider, "PAGE_SIZE", 2)
    airalo.seed(5)
    airalo.malformed_list_next(body={"data": None, "links": {"next": None}}, page=2)
    r = cli("status", "--json", env=A_ENV)
    assert r.exit_code == 1, r
    assert not r.json["data"].get("esims"), r


def test_airalo_an_empty_well_formed_list_is_no_esims(cli: Cli, airalo: FakeAiralo) -> None:
    r = cli("status", "--json", env=A_ENV)
    assert r.exit_code == 0, r
    assert r.json["data"]["esims"] == []


@pytest.mark.parametrize(
    "body",
    [
        {},
        None,
        {"purchases": None},
        {"purchases": None, "afterCursor": None},
        {"purchases": {}},
        {"purchases": [1]},
        {"purchases": [{"package": {}}]},
    ],
    ids=["empty", "null", "null-list", "null-list-cursor", "object", "not-objects", "no-id"],
)
def test_celitech_list_of_unexpected_shape_is_an_error_not_no_esims(
    cli: Cli, celitech: FakeCelitech, body: Any
) -> None:
    celitech.add_esim()
    celitech.malformed_list_next(body=body)
    r = cli("status", "--json", env=C_ENV)
    assert r.exit_code == 1, r
    assert r.json["status"] == "error" and r.json["errors"], r
    assert "cannot read" in r.json["errors"][0]["message"]


def test_celitech_unreadable_list_on_one_account_leaves_the_other(
    cli: Cli, configure: Callable[[str], Path], celitech: FakeCelitech
) -> None:
    celitech.add_esim()
    with FakeCelitech() as good:
        kept = good.add_esim()
        _second_account(configure, "celitech", celitech.url, good.url)
        celitech.malformed_list_next(body={"purchases": None, "afterCursor": None})
        r = cli("status", "--json", env=C_ENV)
    assert r.exit_code == 3, r
    assert list(_esims(r)) == [kept]
    assert [e["account"] for e in r.json["errors"]] == ["trip"]


def test_celitech_unreadable_second_page_is_an_error(
    cli: Cli, celitech: FakeCelitech, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(celitech_module, "PURCHASES_PAGE", 2)
    celitech.seed(5)
    celitech.malformed_list_next(body={"purchases": None}, page=2)
    r = cli("status", "--json", env=C_ENV)
    assert r.exit_code == 1, r
    assert not r.json["data"].get("esims"), r
    empty = cli("status", "--json", env=C_ENV)  # the next run reads every page again
    assert empty.exit_code == 0 and len(_esims(empty)) == 5, empty


def test_celitech_an_empty_well_formed_list_is_no_esims(cli: Cli, celitech: FakeCelitech) -> None:
    r = cli("status", "--json", env=C_ENV)
    assert r.exit_code == 0, r
    assert r.json["data"]["esims"] == []


# -- states the docs do not list ---------------------------------------------------------------


@pytest.mark.parametrize("status", ["SUSPENDED", "FOO", "active_pending"])
def test_airalo_unknown_state_is_shown_unknown(cli: Cli, airalo: FakeAiralo, status: str) -> None:
    odd = airalo.add_sim().iccid
    fine = airalo.add_sim().iccid
    airalo.set_usage(odd, status=status)
    r = cli("status", "--json", env=A_ENV)
    assert r.exit_code == 0, r
    rows = _esims(r)
    assert rows[odd]["state"] == "unknown" and rows[fine]["state"] == "active"


@pytest.mark.parametrize(
    "fields", [{"profile_status": "SUSPENDED"}, {"status": "FOO"}], ids=["profile", "consumption"]
)
def test_celitech_unknown_state_is_shown_unknown(
    cli: Cli, celitech: FakeCelitech, fields: dict[str, str]
) -> None:
    odd = celitech.add_esim(gb=3, used_gb=1)
    fine = celitech.add_esim(gb=3, used_gb=1)
    celitech.set_usage(odd, **fields)
    r = cli("status", "--json", env=C_ENV)
    assert r.exit_code == 0, r
    rows = _esims(r)
    assert rows[odd]["state"] == "unknown" and rows[fine]["state"] == "active"


# -- figures -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("remaining", "expected"),
    [(0.5, MiB // 2), ("512.5", 512 * MiB + MiB // 2), (1023.25, 1023 * MiB + MiB // 4)],
)
def test_airalo_fractional_mb_is_the_right_number_of_bytes(
    cli: Cli, airalo: FakeAiralo, remaining: Any, expected: int
) -> None:
    iccid = airalo.add_sim("elan-7days-1gb").iccid
    airalo.set_usage(iccid, remaining=remaining, total=1024)
    r = cli("status", "--json", env=A_ENV)
    assert r.exit_code == 0, r
    row = _esims(r)[iccid]
    assert row["data_remaining_bytes"] == expected and row["data_total_bytes"] == GiB
    assert row["state"] == "active" and "depleted" not in row["attention"]
    table = cli("status", tty=True, env=A_ENV)
    assert table.exit_code == 0, table
    assert "0 B" not in table.stdout and "depleted" not in table.stdout


def test_airalo_fractional_half_mb_left_does_not_renew(
    cli: Cli, airalo: FakeAiralo, configure: Callable[[str], Path]
) -> None:
    iccid = airalo.add_sim("elan-7days-1gb").iccid
    airalo.set_usage(iccid, remaining=0.5, total=1024)
    configure(
        f'[accounts.trip]\nprovider = "airalo"\nbase_url = "{airalo.url}"\n'
        f'[renewal.esims."{iccid}"]\ndata_below = "100KB"\nplan = "{A_PLAN}"\n'
    )
    r = cli("renew", "--auto", "--yes", "--json", env=A_ENV)
    assert r.exit_code == 0, r
    assert r.json["data"]["orders"] == [] and airalo.topup_orders() == []


ABSURD_AIRALO = [
    {"remaining": 1e30},
    {"remaining": 1e30, "total": 1e30},
    {"remaining": -5},
    {"remaining": -5, "total": -5},
    {"remaining": 4096, "total": 1024},
    {"remaining": 1e300, "total": 1e300},
]
ABSURD_AIRALO_IDS = ["1e30", "1e30-both", "negative", "negative-both", "above-total", "1e300"]


@pytest.mark.parametrize("fields", ABSURD_AIRALO, ids=ABSURD_AIRALO_IDS)
def test_airalo_absurd_figures_are_an_error_naming_the_esim(
    cli: Cli, airalo: FakeAiralo, fields: dict[str, Any]
) -> None:
    bad = airalo.add_sim("elan-7days-1gb").iccid
    fine = airalo.add_sim().iccid
    airalo.set_usage(bad, **fields)
    r = cli("status", "--json", env=A_ENV)
    assert r.exit_code == 3, r
    assert list(_esims(r)) == [fine]
    assert any(bad in e["message"] for e in r.json["errors"]), r
    table = cli("status", tty=True, env=A_ENV)
    assert table.exit_code == 3, table
    assert bad in table.stderr and "unexpected" not in table.stderr


@pytest.mark.parametrize(
    "fields",
    [
        {"remaining": 1e308, "total": 1e308},
        {"remaining": float("inf"), "total": 1024},
        {"remaining": float("nan"), "total": float("nan")},
        {"remaining": "1e999999", "total": 1024},
        {"remaining": "lots", "total": None},
    ],
    ids=["1e308", "inf", "nan", "huge-text", "junk"],
)
def test_airalo_figures_beyond_any_number_are_never_shown_or_crash(
    cli: Cli, airalo: FakeAiralo, fields: dict[str, Any]
) -> None:
    odd = airalo.add_sim("elan-7days-1gb").iccid
    airalo.set_usage(odd, **fields)
    r = cli("status", "--json", env=A_ENV)
    assert r.exit_code in (0, 3) and "unexpected" not in r.stderr, r
    row = _esims(r).get(odd)
    assert row is None or (row["data_remaining_bytes"] is None and row["state"] != "depleted")


@pytest.mark.parametrize("fields", ABSURD_AIRALO[:3], ids=ABSURD_AIRALO_IDS[:3])
def test_airalo_absurd_figures_never_trigger_a_purchase(
    cli: Cli, airalo: FakeAiralo, configure: Callable[[str], Path], fields: dict[str, Any]
) -> None:
    bad = airalo.add_sim("elan-7days-1gb").iccid
    airalo.set_usage(bad, **fields)
    configure(
        f'[accounts.trip]\nprovider = "airalo"\nbase_url = "{airalo.url}"\n'
        f'[renewal.esims."{bad}"]\ndata_below = "500MB"\nplan = "{A_PLAN}"\n'
    )
    r = cli("renew", "--auto", "--yes", "--json", env=A_ENV)
    assert "unexpected" not in r.stderr, r
    assert airalo.topup_orders() == []


ABSURD_CELITECH = [
    {"remaining": 1e30},
    {"remaining": -5},
    {"total": -5, "remaining": -5},
    {"remaining": 8 * GiB},  # a 3 GB package
    {"total": 1e30, "remaining": 1e30},
]
ABSURD_CELITECH_IDS = ["1e30", "negative", "negative-both", "above-total", "1e30-both"]


@pytest.mark.parametrize("fields", ABSURD_CELITECH, ids=ABSURD_CELITECH_IDS)
def test_celitech_absurd_figures_are_an_error_naming_the_esim(
    cli: Cli, celitech: FakeCelitech, fields: dict[str, Any]
) -> None:
    bad = celitech.add_esim(gb=3, used_gb=1)
    fine = celitech.add_esim(gb=3, used_gb=1)
    celitech.set_usage(bad, **fields)
    r = cli("status", "--json", env=C_ENV)
    assert r.exit_code == 3, r
    assert list(_esims(r)) == [fine]
    assert any(bad in e["message"] for e in r.json["errors"]), r


# -- prices: listed and charged ----------------------------------------------------------------


@pytest.mark.parametrize("price", ["-1.40", "0", "1e-18", "1e308", "NaN"])
def test_airalo_insane_listed_prices_are_not_offered_or_bought(
    cli: Cli, airalo: FakeAiralo, price: str
) -> None:
    iccid = airalo.add_sim("elan-7days-1gb").iccid
    airalo.price_override = {A_PLAN: price}
    plans = cli("plans", iccid, "--json", env=A_ENV)
    assert "unexpected" not in plans.stderr, plans
    offered = {p["id"]: p["price"] for p in plans.json["data"]["plans"]}
    assert "elan-30days-3gb-topup" in offered
    # not offered; a price that is no number at all at most shows as unknown, never guessed
    assert A_PLAN not in offered or (price == "NaN" and offered[A_PLAN] is None), offered
    r = cli("renew", iccid, "--plan", A_PLAN, "--yes", "--max-price", "10USD", env=A_ENV)
    assert r.exit_code in (2, 5), r
    assert airalo.topup_orders() == []


@pytest.mark.parametrize("price", ["-1.40", "0", "1e-18", "1e308", "NaN"])
def test_celitech_insane_listed_prices_are_not_offered_or_bought(
    cli: Cli, celitech: FakeCelitech, price: str
) -> None:
    iccid = celitech.add_esim(gb=3, used_gb=1)
    celitech.price_override = {C_PLAN: price}
    plans = cli("plans", iccid, "--json", env=C_ENV)
    assert "unexpected" not in plans.stderr, plans
    offered = {p["id"]: p["price"] for p in plans.json["data"]["plans"]}
    assert "fr-3gb-30d" in offered
    assert C_PLAN not in offered or (price == "NaN" and offered[C_PLAN] is None), offered
    r = cli("renew", iccid, "--plan", C_PLAN, "--yes", "--max-price", "10USD", env=C_ENV)
    assert r.exit_code in (2, 5), r
    assert not [r for r in celitech.requests if r.method == "POST" and r.path == TOPUP]


def test_airalo_order_carries_the_price_the_answer_says_was_charged(
    cli: Cli, airalo: FakeAiralo
) -> None:
    iccid = airalo.add_sim("elan-7days-1gb").iccid
    airalo.charge_override = "4.10"  # listed 3.60: a price rise between listing and buying
    r = cli("renew", iccid, "--plan", A_PLAN, "--yes", "--json", env=A_ENV)
    assert r.exit_code == 0, r
    assert r.json["data"]["order"]["price"] == {"amount": "4.10", "currency": "USD"}
    assert [o["_claimed"] for o in airalo.topup_orders()] == ["4.10"]


@pytest.mark.parametrize("claim", ["-50", "0", "NaN", "1e308"])
def test_airalo_odd_charge_claims_do_not_crash_or_buy_twice(
    cli: Cli, airalo: FakeAiralo, claim: str
) -> None:
    iccid = airalo.add_sim("elan-7days-1gb").iccid
    airalo.balance = Decimal("1e309")  # enough for any claim to be taken
    airalo.charge_override = claim
    r = cli("renew", iccid, "--plan", A_PLAN, "--yes", "--json", env=A_ENV)
    assert "unexpected" not in r.stderr, r
    assert len(airalo.topup_orders()) == 1
    if claim == "NaN":  # an unreadable charge is no price, never the retail 4.50 instead
        assert r.json["data"]["order"]["price"] in (None, {"amount": "3.60", "currency": "USD"})
    again = cli("status", "--json", env=A_ENV)
    assert again.exit_code == 0, again


def test_celitech_order_carries_the_price_the_purchase_list_records(
    cli: Cli, celitech: FakeCelitech
) -> None:
    iccid = celitech.add_esim(gb=3, used_gb=1)
    celitech.charge_override = "6.00"  # listed 5.00
    r = cli("renew", iccid, "--plan", C_PLAN, "--yes", "--json", env=C_ENV)
    assert r.exit_code == 0, r
    assert r.json["data"]["order"]["price"] == {"amount": "6.00", "currency": "USD"}
    assert celitech.balance_cents == 1_000_000 - 600


def test_airalo_charge_above_the_cap_is_reported(cli: Cli, airalo: FakeAiralo) -> None:
    iccid = airalo.add_sim("elan-7days-1gb").iccid
    airalo.charge_override = "12.00"  # listed 3.60, the cap 5 USD
    r = cli("renew", iccid, "--plan", A_PLAN, "--yes", "--max-price", "5USD", env=A_ENV)
    assert r.exit_code == 5, r
    assert "12.00" in r.stderr
    assert len(airalo.topup_orders()) == 1
