"""``esimctl buy`` and ``install`` on eSIM Access (issue 15), through the CLI against the
stateful fake (``tests/fakes/esimaccess.py``): ``/esim/order`` with our reference as its
``transactionId`` and the agreed price, a profile allocated asynchronously and read from
``/esim/query`` by ``orderNo``, a lost answer found by ``transactionId``, a SIGKILL at each
step of the purchase, a balance too low, a price that moved, and the wait for allocation."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from esimctl.config import AccountConfig
from esimctl.errors import InvalidInput, OutcomeUnknown, TemporaryFailure
from esimctl.models import Money, Plan
from esimctl.providers.base import ProviderContext
from esimctl.providers.esimaccess import EsimAccessProvider
from fakes.esimaccess import ACCESS_CODE, GB, SECRET_KEY, FakeEsimAccess
from launcher import ESIMCTL
from test_buy import LPA, decode, qr_lines

SPAIN = "8943108170001234567"
PLAN = "JC017"  # Japan 3GB 15Days, 21000 = 2.10 USD
BUY = ("buy", "--country", "JP", "--plan", PLAN)
CREDS = {"ESIMCTL_TRIP_ACCESS_CODE": ACCESS_CODE, "ESIMCTL_TRIP_SECRET_KEY": SECRET_KEY}
BALANCE = 500_000


def config_for(fake: FakeEsimAccess) -> str:
    return (
        f'[accounts.trip]\nprovider = "esimaccess"\nbase_url = "{fake.url}"\n'
        "rate_limit = 1000\nretries = 0\ntimeout = 2\n"
    )


@pytest.fixture
def fake() -> Iterator[FakeEsimAccess]:
    f = FakeEsimAccess(balance=BALANCE)
    f.start()
    f.add_esim(iccid=SPAIN, package="CKH002", used=int(1.2 * GB))
    yield f
    f.stop()


@pytest.fixture
def ea(cli: Any, configure: Any, fake: FakeEsimAccess) -> Callable[..., Any]:
    configure(config_for(fake))

    def run(*args: str, **kw: Any) -> Any:
        return cli(*args, env={**CREDS, **kw.pop("env", {})}, **kw)

    return run


def bought(fake: FakeEsimAccess) -> list[dict[str, Any]]:
    """The eSIMs eSIM Access allocated for esimctl's orders."""
    txs = set(fake.orders)
    return [e for e in fake.esims.values() if e["transactionId"] in txs]


def order_requests(fake: FakeEsimAccess) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in fake.requests if r.path.endswith("/esim/order")]


def status(ea: Callable[..., Any]) -> dict[str, dict[str, Any]]:
    r = ea("status", "--json")
    assert r.exit_code == 0, r
    return {e["iccid"]: e for e in r.json["data"]["esims"]}


def test_buy_orders_once_tracks_the_esim_and_install_shows_its_code(
    ea: Any, fake: FakeEsimAccess, home: Path
) -> None:
    r = ea(*BUY, "--label", "Osaka", "--yes", "--json")
    assert r.exit_code == 0, r
    (sent,) = order_requests(fake)
    assert sent["transactionId"].startswith("esimctl-")
    assert sent["packageInfoList"] == [{"packageCode": PLAN, "count": 1, "price": 21000}]
    assert sent["amount"] == 21000  # the price shown, checked by eSIM Access
    (order,) = fake.orders.values()
    (esim,) = bought(fake)
    assert fake.balance == BALANCE - 21000
    data = r.json["data"]
    assert data["order"]["id"] == order["orderNo"] and data["order"]["kind"] == "new"
    assert data["order"]["price"] == {"amount": "2.10", "currency": "USD"}
    assert data["esim"] == {"iccid": esim["iccid"], "label": "Osaka"}
    assert "activation" not in data and not LPA.search(r.stdout + r.stderr)
    # Tracked at once: in status, not installed yet, by its label; never with its code.
    esims = status(ea)
    assert esims[esim["iccid"]]["label"] == "Osaka"
    assert esims[esim["iccid"]]["state"] == "not_active"
    assert esim["ac"] not in json.dumps(esims)
    history = ea("history", "--local", "--json").json["data"]["orders"]
    assert [(o["kind"], o["iccid"], o["state"]) for o in history] == [
        ("new", esim["iccid"], "completed")
    ]
    assert "Osaka" in (home / "config.toml").read_text(encoding="utf-8")
    # install: eSIM Access's `ac`, in parts, and as a QR code a camera reads back.
    doc = ea("install", "Osaka", "--json").json["data"]["activation"]
    assert doc["lpa"] == esim["ac"] and doc["smdp_address"] == "rsp-eu.redteamobile.com"
    assert doc["matching_id"] == esim["ac"].split("$")[2] and doc["install_by"]
    shown = ea("install", "Osaka", tty=True, env={"NO_COLOR": "1", "COLUMNS": "80"})
    assert shown.exit_code == 0, shown
    assert decode(qr_lines(shown.stdout), light_as_ink=True) == esim["ac"]
    assert "p.qrsim.net" not in shown.stdout  # eSIM Access's QR image is not used
    assert len(fake.orders) == 1


def test_buy_on_a_terminal_shows_the_code_eSIM_Access_gave(ea: Any, fake: FakeEsimAccess) -> None:
    r = ea(*BUY, "--yes", tty=True, env={"NO_COLOR": "1", "COLUMNS": "80"})
    assert r.exit_code == 0, r
    (esim,) = bought(fake)
    assert decode(qr_lines(r.stdout), light_as_ink=True) == esim["ac"]
    assert f"eSIM {esim['iccid']}" in r.stdout


def test_a_lost_answer_is_found_by_its_transaction_id(ea: Any, fake: FakeEsimAccess) -> None:
    fake.fault_on("/esim/order", "drop")  # the order is made, its answer never arrives
    r = ea(*BUY, "--label", "Nara", "--yes", "--json")
    assert r.exit_code == 0, r  # looked up at once: eSIM Access shows it
    (esim,) = bought(fake)
    assert r.json["data"]["esim"]["iccid"] == esim["iccid"]
    assert len(order_requests(fake)) == 1 and len(fake.orders) == 1
    nara = [e for e in status(ea).values() if e["label"] == "Nara"]
    assert [e["iccid"] for e in nara] == [esim["iccid"]]


def test_a_lost_answer_while_allocating_is_reconciled_by_the_next_run(
    ea: Any, fake: FakeEsimAccess
) -> None:
    fake.hold_allocation = True
    fake.fault_on("/esim/order", "drop")
    first = ea(*BUY, "--label", "Nara", "--yes")
    assert first.exit_code == 75, first  # made or not: not shown yet, nothing assumed
    assert "Traceback" not in first.stderr
    fake.allocate_now()
    again = ea(*BUY, "--label", "Nara", "--yes")
    assert again.exit_code == 0, again
    assert "not bought again" in again.stdout
    assert len(order_requests(fake)) == 1 and len(bought(fake)) == 1
    (esim,) = bought(fake)
    assert status(ea)[esim["iccid"]]["label"] == "Nara"


def test_a_lost_order_judged_not_made_is_sent_again_with_the_same_transaction_id(
    ea: Any, fake: FakeEsimAccess, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No lookup lag: the next run decides at once that the first order was not made.
    monkeypatch.setattr(EsimAccessProvider, "order_lookup_lag", timedelta(0))
    fake.hold_allocation = True  # ... because eSIM Access does not show it yet
    fake.fault_on("/esim/order", "drop")
    assert ea(*BUY, "--yes").exit_code == 75
    again = ea(*BUY, "--yes", "--timeout", "1s", "--json")
    assert again.exit_code == 0, again
    first, second = order_requests(fake)
    assert first["transactionId"] == second["transactionId"]  # the same request to eSIM Access
    assert len(fake.orders) == 1 and fake.balance == BALANCE - 21000
    (order,) = fake.orders.values()
    assert again.json["data"]["order"]["id"] == order["orderNo"]
    fake.allocate_now()
    (esim,) = bought(fake)
    assert status(ea)[esim["iccid"]]["state"] == "not_active"


@pytest.mark.parametrize("step", ["before_request", "after_answer", "after_record"])
def test_killed_at_each_step_buys_exactly_one_esim(
    tmp_path: Path, fake: FakeEsimAccess, step: str
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text(config_for(fake), encoding="utf-8")

    def run(*, kill: str | None = None, now: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {
            "ESIMCTL_HOME": str(home),
            "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
            "PATH": "/usr/bin:/bin",
            **CREDS,
        }
        if kill:
            env["ESIMCTL_TEST_KILL_AT"] = kill
        if now:
            env["ESIMCTL_TEST_NOW"] = now
        return subprocess.run(
            [*ESIMCTL, *BUY, "--label", "Kobe", "--yes"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )

    killed = run(kill=step)
    assert killed.returncode == -signal.SIGKILL, killed
    again = run()  # the fake kept running across both processes
    if step == "before_request":
        # Nothing was sent, but a lookup cannot tell "not yet" from "not made" until the
        # provider's lookup lag (2 min) has passed: nothing is bought meanwhile.
        assert again.returncode == 75, again
        assert fake.orders == {}
        again = run(now=(datetime.now(UTC) + timedelta(minutes=3)).isoformat())
    assert again.returncode == 0, again
    assert len(order_requests(fake)) == 1 and len(fake.orders) == 1
    assert len(bought(fake)) == 1
    if step != "before_request":
        assert "not bought again" in again.stdout
    (esim,) = bought(fake)
    assert esim["iccid"] in again.stdout
    assert "Kobe" in (home / "config.toml").read_text(encoding="utf-8")


def test_a_balance_too_low_is_one_line_and_nothing_bought(
    ea: Any, fake: FakeEsimAccess, home: Path
) -> None:
    fake.balance = 1000
    r = ea(*BUY, "--label", "Osaka", "--yes")
    assert r.exit_code == 1, r
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "balance too low" in lines[0], r.stderr
    assert fake.orders == {} and bought(fake) == []
    history = ea("history", "--local", "--json").json["data"]["orders"]
    assert [o["state"] for o in history] == ["failed"]
    assert "Osaka" not in (home / "config.toml").read_text(encoding="utf-8")
    assert set(status(ea)) == {SPAIN}


def test_a_price_that_moved_is_refused(ea: Any, fake: FakeEsimAccess) -> None:
    listed = ea("plans", "--country", "JP", "--json")  # listed (and cached) at 2.10 USD
    assert listed.exit_code == 0, listed
    fake.price_override[PLAN] = "2.50"
    dry = ea(*BUY, "--dry-run")
    assert dry.exit_code == 0, dry
    assert "eSIM Access would charge 2.50 USD" in dry.stdout and "nothing bought" in dry.stdout
    r = ea(*BUY, "--yes")
    assert r.exit_code == 5, r
    assert "price of JC017 changed" in r.stderr and "nothing was bought" in r.stderr
    assert fake.orders == {} and fake.balance == BALANCE
    fake.price_override.clear()
    fake.charge_override = "2.50"  # a price unseen in the listing: the total is refused too
    r = ea(*BUY, "--yes")
    assert r.exit_code == 5, r
    assert fake.orders == {} and fake.balance == BALANCE


def test_a_slow_allocation_leaves_the_order_pending_until_a_later_status(
    ea: Any, fake: FakeEsimAccess, home: Path
) -> None:
    fake.hold_allocation = True
    r = ea(*BUY, "--label", "Kyoto", "--yes", "--timeout", "1s", "--json")
    assert r.exit_code == 0, r
    data = r.json["data"]
    assert data["esim"] == {"iccid": None, "label": "Kyoto"}
    (order,) = fake.orders.values()
    assert data["order"]["id"] == order["orderNo"] and data["order"]["state"] == "pending"
    polled = [r for r in fake.requests if order["orderNo"].encode() in r.body]
    assert polled  # waited for eSIM Access (200010: still allocating)
    human = ea(*BUY, "--label", "Kobe", "--yes", "--again", "--timeout", "1s")
    assert human.exit_code == 0, human
    assert "allocating" in human.stdout
    # Not allocated yet: not listed, no label written; status asks again next time.
    assert set(status(ea)) == {SPAIN}
    assert "Kyoto" not in (home / "config.toml").read_text(encoding="utf-8")
    fake.allocate_now()
    esims = status(ea)  # within the list's 2 h cache: asked all the same
    labelled = {e["label"]: e for e in esims.values() if e["iccid"] != SPAIN}
    assert set(labelled) == {"Kyoto", "Kobe"}
    assert all(e["state"] == "not_active" for e in labelled.values())
    config = (home / "config.toml").read_text(encoding="utf-8")
    assert "Kyoto" in config and "Kobe" in config
    history = ea("history", "--local", "--json").json["data"]["orders"]
    assert sorted(o["iccid"] for o in history) == sorted(e["iccid"] for e in bought(fake))
    doc = ea("install", "Kyoto", "--json").json["data"]["activation"]
    assert doc["lpa"] == next(e["ac"] for e in bought(fake) if e["iccid"] == doc["iccid"])


def test_a_day_pass_is_not_bought_without_its_days(ea: Any, fake: FakeEsimAccess) -> None:
    r = ea("buy", "--country", "JP", "--plan", "JPD01", "--yes")
    assert r.exit_code == 5, r  # the limits refuse it first; buy_esim would too (exit 2)
    assert "day pass" in r.stderr and order_requests(fake) == []


# -- the provider on its own: what a lookup may and may not conclude ---------------------------


def _provider(fake: FakeEsimAccess, tmp_path: Path, **opts: Any) -> EsimAccessProvider:
    options = {"rate_limit": 1000, "retries": 0, "timeout": 2, **opts}
    ctx = ProviderContext(
        account=AccountConfig("trip", "esimaccess", fake.url, options),
        secrets={"ACCESS_CODE": ACCESS_CODE, "SECRET_KEY": SECRET_KEY},
        clock=lambda: datetime.now(UTC),
        state_dir=tmp_path,
    )
    return EsimAccessProvider(ctx)


async def _plan(p: EsimAccessProvider, code: str = PLAN) -> Plan:
    return next(x for x in await p.catalogue("JP") if x.id == code)


def test_an_order_being_allocated_is_asked_once_and_an_unreadable_lookup_decides_nothing(
    fake: FakeEsimAccess, tmp_path: Path
) -> None:
    fake.hold_allocation = True

    async def main() -> None:
        async with _provider(fake, tmp_path, retries=4) as p:
            new = await p.buy_esim(await _plan(p), "esimctl-0001")
            assert new.iccid is None and new.order.id == fake.orders["esimctl-0001"]["orderNo"]
            since = datetime.now(UTC) - timedelta(hours=1)
            before = len(fake.requests)
            found = await p.find_esim_order("esimctl-0001", since=since)
            assert found is not None and found.iccid is None  # 200010: still allocating
            assert len(fake.requests) == before + 1  # a 200010 is an answer, not retried
            fake.malformed_lookup_next()  # obj: null to the query by orderNo
            with pytest.raises(TemporaryFailure, match="stays unresolved"):
                await p.find_esim_order("esimctl-0001", since=since)
            # Never sent: a well-formed answer without its transactionId is "none".
            assert await p.find_esim_order("esimctl-never-sent", since=since) is None
            fake.allocate_now()
            found = await p.find_esim_order("esimctl-0001", since=since)
            assert found is not None and found.iccid == bought(fake)[0]["iccid"]
            assert found.activation is not None and found.activation.lpa == bought(fake)[0]["ac"]
            assert found.order.price == Money(Decimal("2.10"), "USD")
            assert "LPA" not in repr(found)  # the code stays out of reprs and logs

    asyncio.run(main())


def test_a_duplicate_transaction_id_refused_with_310402_is_the_order_already_made(
    fake: FakeEsimAccess, tmp_path: Path
) -> None:
    fake.duplicate_mode = "error"  # the agent notes' reading
    fake.fault_on("/esim/order", "drop")

    async def main() -> None:
        async with _provider(fake, tmp_path) as p:
            plan = await _plan(p)
            with pytest.raises(OutcomeUnknown):
                await p.buy_esim(plan, "esimctl-0001")
            new = await p.buy_esim(plan, "esimctl-0002")  # the same transactionId again
            (esim,) = bought(fake)
            assert new.iccid == esim["iccid"] and new.order.reference == "esimctl-0002"

    asyncio.run(main())
    assert len(fake.orders) == 1 and len(order_requests(fake)) == 2


def test_a_day_pass_is_ordered_for_its_days_without_amount(
    fake: FakeEsimAccess, tmp_path: Path
) -> None:
    async def main() -> None:
        async with _provider(fake, tmp_path) as p:
            plan = await _plan(p, "JPD01")
            with pytest.raises(InvalidInput, match="day pass"):
                await p.buy_esim(plan, "esimctl-0001")
            assert await p.validate_esim(plan.for_days(3)) == Money(Decimal("4.50"), "USD")
            new = await p.buy_esim(plan.for_days(3), "esimctl-0002")
            assert new.order.price is None  # nothing in the answer confirms the charge

    asyncio.run(main())
    (sent,) = order_requests(fake)
    assert sent["packageInfoList"] == [{"packageCode": "JPD01", "count": 1, "periodNum": 3}]
    assert "amount" not in sent and fake.balance == BALANCE - 3 * 15000
