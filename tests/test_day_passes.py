"""Day passes and fair-usage plans shown as what they are, never "depleted" (issue 18).

The shape of a plan in the model (a total, a daily allowance and what follows it, or
unlimited with a fair-usage note) as each provider maps it, then through the CLI against
the fakes: a day pass of each eSIM Access ``dataType`` used beyond its daily volume, an
Airalo fair-usage unlimited plan, a Celitech ``-1`` purchase; renewal rules on each; day
passes bought for N days at N × the price against ``--max-price`` and the budgets.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from esimctl import rules
from esimctl.config import AttentionConfig, Config
from esimctl.errors import ConfigError, LimitRefused
from esimctl.models import (
    AfterAllowance,
    DailyAllowance,
    Esim,
    EsimState,
    Money,
    Plan,
    truthful_state,
)
from esimctl.providers.airalo import answers as airalo
from esimctl.providers.esimaccess import answers as ea
from esimctl.providers.kit.allowance import daily_in, fair_usage_terms, speed_in
from esimctl.serialize import esim_from_cache, esim_json, esim_to_cache, plan_from_cache, plan_json
from esimctl.service import attention_for
from fakes.airalo import CLIENT_ID as AL_ID
from fakes.airalo import CLIENT_SECRET as AL_SECRET
from fakes.airalo import FakeAiralo
from fakes.celitech import CLIENT_ID as CT_ID
from fakes.celitech import CLIENT_SECRET as CT_SECRET
from fakes.celitech import FakeCelitech
from fakes.esimaccess import ACCESS_CODE, GB, SECRET_KEY, FakeEsimAccess

NOW = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)
GE_FUP = "8943108170009000001"  # dataType 2: 1 GB a day, then 1 Mbps
GE_CUT = "8943108170009000002"  # dataType 3: 1 GB a day, then nothing until the next day
GE_UNL = "8943108170009000003"  # dataType 4: unlimited every day
SPAIN = "8943108170009000004"  # a plain 3 GB plan, for contrast
EA_CREDS = {"ESIMCTL_TRIP_ACCESS_CODE": ACCESS_CODE, "ESIMCTL_TRIP_SECRET_KEY": SECRET_KEY}


# -- the mapping -------------------------------------------------------------------------------


def _ea_row(data_type: int, **more: Any) -> dict[str, Any]:
    activated = NOW - timedelta(days=3, hours=4)
    return {
        "esimTranNo": "26061000000001",
        "iccid": GE_FUP,
        "esimStatus": "IN_USE",
        "smdpStatus": "ENABLED",
        "dataType": data_type,
        "activateTime": activated.strftime("%Y-%m-%dT%H:%M:%S+0000"),
        "expiredTime": (activated + timedelta(days=8)).strftime("%Y-%m-%dT%H:%M:%S+0000"),
        "totalVolume": GB,  # the day's volume, as /esim/query shows a day pass
        "totalDuration": 8,
        "orderUsage": 3 * GB,  # three days of use: beyond one day's volume
        "fupPolicy": "",
        "supportTopUpType": 3,
        "packageList": [
            {
                "packageName": "Georgia 1GB/Day FUP1Mbps",
                "packageCode": "GED01",
                "volume": GB,
                "locationCode": "GE",
                "createTime": "2026-06-01T10:00:00+0000",
            }
        ],
        **more,
    }


def test_esimaccess_reduced_speed_day_pass_is_unlimited_with_its_daily_figure():
    e = ea.parse_esim(_ea_row(2), account="trip", fetched_at=NOW)
    assert e is not None
    assert e.state == EsimState.ACTIVE and e.unlimited and e.shape == "daily"
    # the per-day volume is never the package total; the usage over days is no "left"
    assert e.data_total_bytes is None and e.data_remaining_bytes is None
    assert e.daily == DailyAllowance(
        GB, AfterAllowance.REDUCED_SPEED, "1 Mbps", e.daily.resets_at if e.daily else None
    )
    assert e.packages[0].data_total_bytes is None


def test_esimaccess_cut_off_day_pass_shows_the_days_allowance_and_its_reset():
    e = ea.parse_esim(_ea_row(3), account="trip", fetched_at=NOW)
    assert e is not None and e.state == EsimState.ACTIVE
    assert not e.unlimited and e.data_total_bytes is None and e.data_remaining_bytes is None
    assert e.daily is not None and e.daily.after == AfterAllowance.CUT_OFF and e.daily.bytes == GB
    # the days of a pass run from its activation: the next reset is within a day
    assert e.daily.resets_at is not None and NOW < e.daily.resets_at <= NOW + timedelta(days=1)
    assert e.daily.resets_at == NOW - timedelta(days=3, hours=4) + timedelta(days=4)


def test_esimaccess_daily_unlimited_keeps_its_fair_usage_note():
    e = ea.parse_esim(_ea_row(4, fupPolicy="384 Kbps"), account="trip", fetched_at=NOW)
    assert e is not None and e.unlimited and e.daily is None and e.fair_usage == "384 Kbps"
    assert e.state == EsimState.ACTIVE and e.data_remaining_bytes is None


@pytest.mark.parametrize("data_type", [2, 3, 4])
def test_used_up_on_a_day_pass_is_the_days_figure_not_the_pass(data_type: int):
    e = ea.parse_esim(_ea_row(data_type, esimStatus="USED_UP"), account="trip", fetched_at=NOW)
    assert e is not None and e.state == EsimState.ACTIVE  # days are left
    later = NOW + timedelta(days=6)  # past its end
    gone = ea.parse_esim(_ea_row(data_type, esimStatus="USED_UP"), account="trip", fetched_at=later)
    assert gone is not None and gone.state == EsimState.EXPIRED


def test_a_plain_plan_still_runs_out():
    row = _ea_row(1, totalVolume=3 * GB, orderUsage=3 * GB)
    e = ea.parse_esim(row, account="trip", fetched_at=NOW)
    assert e is not None and e.state == EsimState.DEPLETED and e.daily is None
    assert (e.data_total_bytes, e.data_remaining_bytes) == (3 * GB, 0)


def test_esimaccess_day_pass_plans_are_priced_per_day():
    row = {
        "packageCode": "GEC01",
        "name": "Georgia 1GB/Day",
        "price": 9000,
        "currencyCode": "USD",
        "volume": GB,
        "duration": 1,
        "durationUnit": "DAY",
        "location": "GE",
        "dataType": 3,
        "supportTopUpType": 3,
        "fupPolicy": "",
    }
    (p,) = ea.parse_plans(row, account="trip", kind="topup")
    assert p.per_day and p.days is None and p.validity_days == 1
    assert p.data_bytes is None and not p.unlimited  # a day's volume is no package's
    assert p.daily == DailyAllowance(GB, AfterAllowance.CUT_OFF)
    five = p.for_days(5)
    assert (five.id, five.days, five.validity_days) == ("GEC01:5d", 5, 5)
    assert five.price == Money(Decimal("4.5"), "USD") and five.name.endswith("· 5 days")
    with pytest.raises(ValueError):
        five.for_days(2)  # already bought for 5 days
    with pytest.raises(ValueError):
        p.for_days(366)


@pytest.mark.parametrize(
    ("text", "speed"),
    [
        ("FUP1Mbps", "1 Mbps"),
        ("384 Kbps", "384 Kbps"),
        ("Georgia 1GB/Day FUP1Mbps", "1 Mbps"),
        ("speed reduced to 0.5 mbps", "0.5 Mbps"),
        ("1GB/Day", None),
        ("", None),
        (None, None),
    ],
)
def test_speeds_in_sellers_words(text: Any, speed: str | None):
    assert speed_in(text) == speed


def test_daily_amounts_and_fair_usage_terms():
    assert daily_in("Speed reduced to 1 Mbps after 2 GB per day") == 2 * GB
    assert daily_in("500MB/day") == 500 * 1024**2 and daily_in("3 GB in total") is None
    assert fair_usage_terms("Speed reduced to 1 Mbps after 2 GB per day") == DailyAllowance(
        2 * GB, AfterAllowance.REDUCED_SPEED, "1 Mbps"
    )
    assert fair_usage_terms("Data blocked after 3GB daily") == DailyAllowance(
        3 * GB, AfterAllowance.CUT_OFF
    )
    assert fair_usage_terms("Fair usage applies") is None


def test_airalo_fair_usage_plans():
    pkg = {
        "id": "elan-unlimited-10days",
        "type": "sim",
        "price": 24.0,
        "net_price": 12.0,
        "amount": 0,
        "day": 10,
        "is_unlimited": True,
        "title": "Unlimited - 10 days",
        "data": "Unlimited",
        "is_fair_usage_policy": True,
        "fair_usage_policy": "Speed reduced to 1 Mbps after 2 GB per day",
    }
    p = airalo.plan_from(pkg, account="trip")
    assert p.unlimited and p.data_bytes is None and not p.per_day
    assert p.fair_usage == "Speed reduced to 1 Mbps after 2 GB per day"
    assert p.daily == DailyAllowance(2 * GB, AfterAllowance.REDUCED_SPEED, "1 Mbps")
    unsaid = airalo.plan_from({**pkg, "fair_usage_policy": None}, account="trip")
    assert unsaid.fair_usage == airalo.FAIR_USAGE_UNSAID and unsaid.daily is None
    plain = airalo.plan_from({**pkg, "is_fair_usage_policy": False}, account="trip")
    assert plain.fair_usage is None and plain.daily is None


def test_airalo_finished_on_an_unlimited_plan_with_days_left_is_not_depleted():
    sim = {"id": 1, "iccid": "8944465400000000001", "simable": {"package": "Unlimited"}}
    usage = {
        "remaining": 0,
        "total": 0,
        "expired_at": (NOW + timedelta(days=4)).strftime("%Y-%m-%d %H:%M:%S"),
        "is_unlimited": True,
        "status": "FINISHED",
    }
    e = airalo.esim_from(sim, usage, account="trip", now=NOW)
    assert e.state == EsimState.ACTIVE and e.unlimited
    limited = {**usage, "is_unlimited": False, "total": 1024}
    assert airalo.esim_from(sim, limited, account="trip", now=NOW).state == EsimState.DEPLETED


def _day_esim(**kw: Any) -> Esim:
    base: dict[str, Any] = {
        "account": "trip",
        "provider": "esimaccess",
        "iccid": GE_CUT,
        "state": EsimState.ACTIVE,
        "expires_at": NOW + timedelta(days=5),
        "daily": DailyAllowance(GB, AfterAllowance.CUT_OFF, None, NOW + timedelta(hours=3)),
    }
    return Esim(**{**base, **kw})


def test_truthful_state():
    assert truthful_state(_day_esim(state=EsimState.DEPLETED), NOW).state == EsimState.ACTIVE
    past = _day_esim(state=EsimState.DEPLETED, expires_at=NOW - timedelta(hours=1))
    assert truthful_state(past, NOW).state == EsimState.EXPIRED
    plain = _day_esim(state=EsimState.DEPLETED, daily=None, data_total_bytes=GB)
    assert truthful_state(plain, NOW).state == EsimState.DEPLETED


def test_attention_never_on_a_day_figure_but_expiry_still_counts():
    cfg = AttentionConfig()
    assert attention_for(_day_esim(), cfg, NOW) == []
    # even a provider's "depleted" on a pass with days left is no attention
    assert attention_for(_day_esim(state=EsimState.DEPLETED), cfg, NOW) == []
    soon = _day_esim(expires_at=NOW + timedelta(hours=20))
    assert attention_for(soon, cfg, NOW) == ["expiring_soon"]


def test_json_and_the_cache_carry_the_shape():
    e = _day_esim()
    doc = esim_json(e, [])
    assert doc["daily_allowance_bytes"] == GB and doc["after_allowance"] == "cut_off"
    assert doc["reduced_speed"] is None and doc["fair_usage"] is None
    assert doc["allowance_resets_at"] == "2026-06-10T15:00:00Z"
    assert doc["data_total_bytes"] is None and doc["unlimited"] is False
    assert esim_from_cache(json.loads(json.dumps(esim_to_cache(e)))) == e
    plan = Plan(
        id="GED01",
        account="trip",
        provider="esimaccess",
        name="Georgia 1GB/Day FUP1Mbps",
        kind="topup",
        data_bytes=None,
        unlimited=True,
        validity_days=1,
        price=Money(Decimal("1.2"), "USD"),
        per_day=True,
        daily=DailyAllowance(GB, AfterAllowance.REDUCED_SPEED, "1 Mbps"),
        fair_usage="1Mbps",
    )
    pj = plan_json(plan)
    assert pj["per_day"] is True and pj["days"] is None and pj["reduced_speed"] == "1 Mbps"
    assert plan_from_cache({**pj, "unit_base": 1024}) == plan


# -- rules ------------------------------------------------------------------------------------


def _rules(tmp_path: Any, text: str) -> rules.RenewalRules:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return rules.load(Config.load(path))


def test_a_data_rule_never_fires_on_a_day_pass(tmp_path: Any):
    r = _rules(tmp_path, '[renewal]\ndata_below = ["500MB", "10%"]\nplan = "GED01"\ndays = 3\n')
    assert r.default.days == 3 and r.default.describe_buy() == "plan GED01 for 3 days"
    for data_type in (2, 3, 4):
        e = ea.parse_esim(_ea_row(data_type), account="trip", fetched_at=NOW)
        assert e is not None and r.default.fired(e, NOW) is None
    plain = ea.parse_esim(_ea_row(1, orderUsage=int(0.9 * GB)), account="trip", fetched_at=NOW)
    assert plain is not None and r.default.fired(plain, NOW) is not None


@pytest.mark.parametrize(
    ("table", "said"),
    [
        ('data_below = "1GB"\nmin_days = 3\ndays = 3\n', "days goes with plan"),
        ('data_below = "1GB"\nplan = "GED01"\ndays = 0\n', "days"),
        ('data_below = "1GB"\nplan = "GED01"\ndays = 366\n', "1 to 365"),
    ],
)
def test_days_in_a_rule_is_checked(tmp_path: Any, table: str, said: str):
    with pytest.raises(ConfigError, match=said):
        _rules(tmp_path, "[renewal.esims.Tbilisi]\n" + table)


def test_an_esim_table_naming_a_plan_drops_the_inherited_days(tmp_path: Any):
    r = _rules(
        tmp_path,
        '[renewal]\nexpires_within = "1d"\nplan = "GED01"\ndays = 3\n'
        '[renewal.esims.Tokyo]\nplan = "jp-1gb-3d"\n',
    )
    assert r.esims[0].plan == "jp-1gb-3d" and r.esims[0].days is None


def test_a_day_pass_without_days_is_never_bought():
    from esimctl.purchasing.limits import Limits, check_limits

    class Book:
        def clock(self) -> datetime:
            return NOW

        def spent_amount(self, *a: Any, **k: Any) -> Decimal:
            return Decimal(0)

        def spent(self, *a: Any, **k: Any) -> list[Any]:
            return []

    plan = Plan("GED01", "trip", "esimaccess", "Georgia", "topup", None, True, 1, None)
    plan = Plan(**{**plan.__dict__, "price": Money(Decimal("1.20"), "USD"), "per_day": True})
    with pytest.raises(LimitRefused, match="priced per day"):
        check_limits(Book(), Limits(), _day_esim(), plan)  # type: ignore[arg-type]
    cap = Limits(caps=((Money(Decimal("3.50"), "USD"), "--max-price"),))
    check_limits(Book(), cap, _day_esim(), plan.for_days(2))  # type: ignore[arg-type]
    with pytest.raises(LimitRefused, match=r"3\.60 USD, above --max-price"):
        check_limits(Book(), cap, _day_esim(), plan.for_days(3))  # type: ignore[arg-type]


# -- eSIM Access through the CLI ----------------------------------------------------------------


@pytest.fixture
def fake() -> Iterator[FakeEsimAccess]:
    f = FakeEsimAccess()
    f.start()
    left = timedelta(days=5, hours=2)
    for iccid, pkg in ((GE_FUP, "GED01"), (GE_CUT, "GEC01"), (GE_UNL, "GEU01")):
        f.add_esim(iccid=iccid, package=pkg, days=8, expires_in=left)
        f.use_data(iccid, 3 * GB)  # three days of a gigabyte: beyond the day's volume
    f.add_esim(iccid=SPAIN, package="CKH002", used=int(2.9 * GB))
    yield f
    f.stop()


@pytest.fixture
def ea_cli(cli: Callable[..., Any], configure: Callable[[str], Any], fake: FakeEsimAccess):
    def setup(extra: str = "") -> None:
        configure(
            f'[accounts.trip]\nprovider = "esimaccess"\nbase_url = "{fake.url}"\n'
            "rate_limit = 1000\nretries = 0\ntimeout = 2\n" + extra
        )

    setup()

    def run(*args: str, **kw: Any) -> Any:
        return cli(*args, env={**EA_CREDS, **kw.pop("env", {})}, **kw)

    run.setup = setup  # type: ignore[attr-defined]
    return run


def _by_iccid(r: Any) -> dict[str, dict[str, Any]]:
    assert r.exit_code in (0, 8), r
    return {e["iccid"]: e for e in r.json["data"]["esims"]}


def test_status_tells_the_truth_about_each_day_pass(ea_cli: Any):
    rows = _by_iccid(ea_cli("status", "--json"))
    for iccid in (GE_FUP, GE_CUT, GE_UNL):
        e = rows[iccid]
        assert e["state"] == "active" and "depleted" not in e["attention"], e
        assert e["data_total_bytes"] is None and e["data_remaining_bytes"] is None
        assert e["forecast"] is None
    fup, cut, unl = rows[GE_FUP], rows[GE_CUT], rows[GE_UNL]
    assert fup["unlimited"] is True and fup["daily_allowance_bytes"] == GB
    assert (fup["after_allowance"], fup["reduced_speed"]) == ("reduced_speed", "1 Mbps")
    assert cut["unlimited"] is False and cut["daily_allowance_bytes"] == GB
    assert cut["after_allowance"] == "cut_off" and cut["allowance_resets_at"] is not None
    assert unl["unlimited"] is True and unl["daily_allowance_bytes"] is None
    assert unl["after_allowance"] is None and unl["fair_usage"] == "384 Kbps"
    # the plain plan is still figures, with the new keys null
    spain = rows[SPAIN]
    assert spain["data_total_bytes"] == 3 * GB and spain["daily_allowance_bytes"] is None


def test_a_used_up_answer_on_a_day_pass_is_not_depleted(ea_cli: Any, fake: FakeEsimAccess):
    fake.override(GE_CUT, esimStatus="USED_UP")
    e = _by_iccid(ea_cli("status", "--json", "--refresh"))[GE_CUT]
    assert e["state"] == "active" and e["attention"] == []
    assert ea_cli("status", "--check", GE_CUT).exit_code == 0


@pytest.mark.parametrize("columns", ["80", "120", "200"])
def test_the_table_reads_like_the_phone(ea_cli: Any, columns: str):
    r = ea_cli("status", tty=True, env={"NO_COLOR": "1", "COLUMNS": columns})
    assert r.exit_code == 0, r
    lines = r.stdout.splitlines()
    assert all(len(ln) <= int(columns) for ln in lines)
    flat = " ".join(r.stdout.split())
    # the day's allowance and what follows it, at any width (never a package total)
    assert "1 GB/day → 1 Mbps" in flat and "1 GB/day → off till " in flat
    assert "unlimited" in flat and "in 5 d" in flat
    if columns == "200":  # whole, with the days left
        assert "1 GB/day → 1 Mbps · 5 d left" in flat
    assert "depleted" not in flat and "no data left" not in flat and "0 B" not in flat


def test_status_tsv_gives_the_days_figure(ea_cli: Any):
    r = ea_cli("status")
    rows = {row[2]: row for row in (ln.split("\t") for ln in r.stdout.splitlines())}
    assert rows[GE_FUP][4] == f"{GB}/day" and rows[GE_UNL][4] == "unlimited"
    assert rows[GE_CUT][7] == "active"


def test_plans_show_day_passes_per_day(ea_cli: Any):
    r = ea_cli("plans", GE_CUT, "--json")
    assert r.exit_code == 0, r
    plans = {p["id"]: p for p in r.json["data"]["plans"]}
    assert set(plans) == {"TOPUP_GED01", "TOPUP_GEC01", "TOPUP_GE3_30"}
    fup = plans["TOPUP_GED01"]
    assert fup["per_day"] is True and fup["price"] == {"amount": "1.20", "currency": "USD"}
    assert fup["unlimited"] is True and fup["daily_allowance_bytes"] == GB
    assert fup["after_allowance"] == "reduced_speed" and fup["reduced_speed"] == "1 Mbps"
    assert plans["TOPUP_GEC01"]["after_allowance"] == "cut_off"
    assert plans["TOPUP_GE3_30"]["per_day"] is False
    table = ea_cli("plans", GE_CUT, tty=True, env={"NO_COLOR": "1"})
    line = next(ln for ln in table.stdout.splitlines() if ln.startswith("TOPUP_GED01"))
    assert "1.20 USD/day" in line and "1 GB/day → 1 Mbps" in line
    assert "--days N" in table.stderr
    # --min-days: a day pass is bought for as many days as wanted
    long = ea_cli("plans", GE_CUT, "--min-days", "30", "--json").json["data"]["plans"]
    assert {p["id"] for p in long} == {"TOPUP_GED01", "TOPUP_GEC01", "TOPUP_GE3_30"}


def test_buying_n_days_counts_n_times_the_price(ea_cli: Any, fake: FakeEsimAccess):
    buy = ("renew", GE_CUT, "--plan", "TOPUP_GED01", "--days", "3", "--yes")
    r = ea_cli(*buy, "--max-price", "3.59USD")
    assert r.exit_code == 5, r
    assert "3.60 USD" in r.stderr and fake.topups == []
    r = ea_cli(*buy, "--max-price", "3.60USD", "--json")
    assert r.exit_code == 0, r
    order = r.json["data"]["order"]
    assert order["plan_id"] == "TOPUP_GED01:3d" and order["price"]["amount"] == "3.60"
    (topup,) = fake.topups
    assert topup["packageCode"] == "TOPUP_GED01" and topup["periodNum"] == 3
    assert fake.balance == 500_000 - 3 * 12000
    history = ea_cli("history", "--local", "--json").json["data"]["orders"]
    assert [o["price"]["amount"] for o in history] == ["3.60"]


def test_a_day_pass_needs_its_days(ea_cli: Any, fake: FakeEsimAccess):
    r = ea_cli("renew", GE_CUT, "--plan", "TOPUP_GEC01", "--yes")
    assert r.exit_code == 2, r
    assert "--days N" in r.stderr and fake.topups == []
    plain = ea_cli("renew", GE_CUT, "--plan", "TOPUP_GE3_30", "--days", "3", "--yes")
    assert plain.exit_code == 2 and "no day pass" in plain.stderr and fake.topups == []
    # the old spelling still names a length
    r = ea_cli("renew", GE_CUT, "--plan", "TOPUP_GEC01:2d", "--yes", "--json")
    assert r.exit_code == 0, r
    assert fake.topups[-1]["periodNum"] == 2
    assert r.json["data"]["order"]["price"]["amount"] == "1.80"


def test_on_a_terminal_the_days_are_asked(ea_cli: Any, fake: FakeEsimAccess):
    r = ea_cli("renew", GE_CUT, "--plan", "TOPUP_GEC01", tty=True, input="0\n4\ny\n")
    assert r.exit_code == 0, r
    assert "Days to buy" in r.stderr and "a whole number from 1 to 365" in r.stderr
    assert "3.60 USD" in r.stderr and "(4 days at 0.90 USD a day)" in r.stderr
    (topup,) = fake.topups
    assert topup["periodNum"] == 4


def test_the_monthly_budget_counts_every_day_bought(ea_cli: Any, fake: FakeEsimAccess):
    ea_cli.setup('[renewal]\nmonthly_budget = "5 USD"\n')
    ok = ea_cli("renew", GE_CUT, "--plan", "TOPUP_GED01", "--days", "3", "--yes")
    assert ok.exit_code == 0, ok
    over = ea_cli("renew", GE_CUT, "--plan", "TOPUP_GED01", "--days", "2", "--yes", "--again")
    assert over.exit_code == 5, over
    assert "monthly_budget" in over.stderr and "3.60 USD spent" in over.stderr
    assert len(fake.topups) == 1


def _decisions(r: Any) -> dict[str, dict[str, Any]]:
    return {d["iccid"]: d for d in r.json["data"]["decisions"]}


def test_data_rules_never_fire_on_a_day_pass(ea_cli: Any, fake: FakeEsimAccess):
    ea_cli.setup(
        '[renewal]\ndata_below = ["500MB", "10%"]\nruns_out_within = "2d"\nplan = "TOPUP_CKH491"\n'
    )
    r = ea_cli("renew", "--auto", "--dry-run", "--json")
    assert r.exit_code == 0, r
    d = _decisions(r)
    for iccid in (GE_FUP, GE_CUT, GE_UNL):
        assert d[iccid]["action"] == "none" and d[iccid]["trigger"] is None, d[iccid]
    assert d[SPAIN]["action"] == "would_buy" and d[SPAIN]["trigger"] == "data_below"
    assert fake.topups == []


def test_a_rule_names_a_day_pass_and_its_days(ea_cli: Any, fake: FakeEsimAccess):
    ea_cli.setup(
        f'[renewal.esims."{GE_FUP}"]\nexpires_within = "6d"\nplan = "TOPUP_GED01"\ndays = 3\n'
        'max_price = "4 USD"\n'
    )
    r = ea_cli("renew", "--auto", "--yes", "--json", "--timeout", "0m")
    assert r.exit_code == 0, r
    d = _decisions(r)[GE_FUP]
    assert d["action"] == "bought" and d["trigger"] == "expires_within"
    assert d["plan"]["id"] == "TOPUP_GED01:3d" and d["plan"]["price"]["amount"] == "3.60"
    (topup,) = fake.topups
    assert topup["periodNum"] == 3


def test_a_rule_naming_a_day_pass_without_days_buys_nothing(ea_cli: Any, fake: FakeEsimAccess):
    ea_cli.setup(f'[renewal.esims."{GE_FUP}"]\nexpires_within = "6d"\nplan = "TOPUP_GED01"\n')
    r = ea_cli("renew", "--auto", "--yes", "--json", "--timeout", "0m")
    assert r.exit_code == 2, r
    d = _decisions(r)[GE_FUP]
    assert d["action"] == "failed" and "add days = N" in d["reason"]
    assert fake.topups == []


def test_days_bought_count_against_a_rules_max_price(ea_cli: Any, fake: FakeEsimAccess):
    ea_cli.setup(
        f'[renewal.esims."{GE_FUP}"]\nexpires_within = "6d"\nplan = "TOPUP_GED01"\ndays = 5\n'
        'max_price = "5 USD"\n'
    )
    r = ea_cli("renew", "--auto", "--yes", "--json", "--timeout", "0m")
    assert r.exit_code == 5, r
    d = _decisions(r)[GE_FUP]
    assert d["action"] == "refused" and "6.00 USD" in d["reason"] and fake.topups == []


# -- Airalo: a fair-usage unlimited plan --------------------------------------------------------


@pytest.fixture
def al() -> Iterator[FakeAiralo]:
    with FakeAiralo() as f:
        yield f  # type: ignore[misc]


def test_airalo_fair_usage_unlimited_through_the_cli(
    cli: Callable[..., Any], configure: Callable[[str], Any], al: FakeAiralo
):
    configure(
        f'[accounts.trip]\nprovider = "airalo"\nbase_url = "{al.url}"\nretries = 1\n'
        '[renewal]\ndata_below = ["500MB", "10%"]\nplan = "elan-7days-1gb-topup"\n'
    )
    env = {"ESIMCTL_TRIP_CLIENT_ID": AL_ID, "ESIMCTL_TRIP_CLIENT_SECRET": AL_SECRET}
    finished = al.add_sim("elan-unlimited-10days", status="FINISHED").iccid
    running = al.add_sim("elan-unlimited-10days").iccid
    rows = _by_iccid(cli("status", "--json", env=env))
    for iccid in (finished, running):
        e = rows[iccid]
        assert e["state"] == "active" and e["unlimited"] is True, e
        assert e["attention"] == [] and e["data_remaining_bytes"] is None
    auto = cli("renew", "--auto", "--dry-run", "--json", env=env)
    assert auto.exit_code == 0, auto
    assert {d["action"] for d in auto.json["data"]["decisions"]} == {"none"}
    plans = cli("plans", "--country", "FR", "--json", env=env).json["data"]["plans"]
    unl = next(p for p in plans if p["id"] == "elan-unlimited-10days")
    assert unl["fair_usage"] == "Speed reduced to 1 Mbps after 2 GB per day"
    assert unl["daily_allowance_bytes"] == 2 * GB and unl["reduced_speed"] == "1 Mbps"
    assert unl["unlimited"] is True and unl["per_day"] is False
    table = cli("plans", "--country", "FR", tty=True, env={**env, "NO_COLOR": "1"})
    assert "2 GB/day → 1 Mbps" in table.stdout


# -- Celitech: -1 is unlimited ----------------------------------------------------------------


@pytest.fixture
def ct() -> Iterator[FakeCelitech]:
    with FakeCelitech() as f:
        yield f  # type: ignore[misc]


def test_celitech_unlimited_purchase_through_the_cli(
    cli: Callable[..., Any], configure: Callable[[str], Any], ct: FakeCelitech
):
    configure(
        f'[accounts.trip]\nprovider = "celitech"\nbase_url = "{ct.url}"\n'
        "requests_per_second = 500\n"
        '[renewal]\ndata_below = "1GB"\nplan = "eu-1gb-30d"\n'
    )
    env = {"ESIMCTL_TRIP_CLIENT_ID": CT_ID, "ESIMCTL_TRIP_CLIENT_SECRET": CT_SECRET}
    iccid = ct.add_esim(destination="EUR", gb=1, used_gb=1, days=30)
    before = _by_iccid(cli("status", "--json", env=env))[iccid]
    assert before["state"] == "depleted"  # a limited plan does run out
    r = cli("renew", iccid, "--plan", "eu-unl-30d", "--yes", "--json", env=env)
    assert r.exit_code == 0, r
    assert r.json["data"]["order"]["price"]["amount"] == "39.00"
    sent = ct.topup_requests[-1]
    assert sent["dataLimitInGB"] == -1 and sent["duration"] == 30
    after = _by_iccid(cli("status", "--json", env=env))[iccid]
    assert after["state"] == "active" and after["unlimited"] is True
    assert after["data_remaining_bytes"] is None and after["data_total_bytes"] is None
    assert after["attention"] == [] and after["fair_usage"] is None
    auto = cli("renew", "--auto", "--dry-run", "--json", env=env)
    assert auto.exit_code == 0, auto
    (d,) = auto.json["data"]["decisions"]
    assert d["action"] == "none" and d["trigger"] is None


# -- the demo ---------------------------------------------------------------------------------


def test_the_demo_carries_a_day_pass(cli: Callable[..., Any]):
    r = cli("--demo", "status", "--json")
    by_label = {e["label"]: e for e in r.json["data"]["esims"]}
    assert {"Tokyo", "Europe", "USA", "Bangkok", "Seoul"} < set(by_label)
    t = by_label["Tbilisi"]
    assert t["state"] == "active" and t["unlimited"] is True and t["attention"] == []
    assert t["daily_allowance_bytes"] == GB and t["reduced_speed"] == "1 Mbps"
    assert t["data_total_bytes"] is None and t["forecast"] is None
    for columns in ("80", "120", "200"):
        table = cli("--demo", "status", tty=True, env={"NO_COLOR": "1", "COLUMNS": columns})
        flat = " ".join(table.stdout.split())
        assert "1 GB/day → 1 Mbps" in flat and "depleted" not in flat, table
    assert "1 GB/day → 1 Mbps · 8 d left" in flat  # at 200 columns, whole


def test_the_demo_sells_its_day_pass_by_the_day(cli: Callable[..., Any]):
    plans = cli("--demo", "plans", "Tbilisi", "--json").json["data"]["plans"]
    assert {p["id"] for p in plans} == {"ge-day-1gb", "ge-day-3gb"}
    assert all(p["per_day"] for p in plans)
    r = cli("--demo", "renew", "Tbilisi", "--plan", "ge-day-1gb", "--days", "3", "--yes", "--json")
    assert r.exit_code == 0, r
    assert r.json["data"]["order"]["price"] == {"amount": "3.60", "currency": "USD"}
    t = next(
        e
        for e in cli("--demo", "status", "--json").json["data"]["esims"]
        if e["label"] == "Tbilisi"
    )
    assert t["state"] == "active" and t["daily_allowance_bytes"] == GB
