"""``esimctl buy`` and ``esimctl install`` on eSIM Go (issue 15), through the CLI against the
stateful fake: one ``POST /orders`` transaction with ``assign: true`` and no ICCIDs makes a
new eSIM, priced first by a ``validate`` order; no idempotency key, so a lost answer is
found again by bundle and time (never bought twice), a SIGKILL at any step leaves exactly
one eSIM, and the activation code is shown only where asked."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from esimctl.config import AccountConfig
from esimctl.errors import OutcomeUnknown
from esimctl.providers.base import ProviderContext
from esimctl.providers.esimgo import EsimGoProvider
from esimctl.providers.esimgo.answers import activation_from, install_records, smdp_host
from fakes.esimgo import DEFAULT_KEY, FakeEsimGo
from launcher import ESIMCTL
from test_buy import decode, qr_lines

PLAN = "esim_3GB_30D_PT_V2"
BUY = ("buy", "--country", "PT", "--plan", PLAN)
ENV = {"ESIMCTL_TRIP_API_KEY": DEFAULT_KEY}
LPA = re.compile(r"LPA:1\$[^\s$]+\$[A-Z0-9-]+")


@pytest.fixture
def fake() -> Iterator[FakeEsimGo]:
    with FakeEsimGo() as f:
        yield f


@pytest.fixture
def trip(fake: FakeEsimGo, configure: Any) -> FakeEsimGo:
    """Account ``trip`` on the fake, as tests/test_provider_esimgo.py configures it."""
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


def lpa_of(fake: FakeEsimGo, iccid: str) -> str:
    matching, smdp = fake.install_of(iccid)
    return f"LPA:1${smdp}${matching}"


def transactions(fake: FakeEsimGo) -> list[dict[str, Any]]:
    return [
        q.json()
        for q in fake.requests
        if q.method == "POST" and q.path == "/orders" and q.json().get("type") == "transaction"
    ]


def status(cli: Any) -> dict[str, dict[str, Any]]:
    r = run(cli, "status", "--refresh", "--json")
    assert r.exit_code == 0, r
    return {e["iccid"]: e for e in r.json["data"]["esims"]}


def local_orders(cli: Any) -> list[dict[str, Any]]:
    r = run(cli, "history", "--local", "--json")
    assert r.exit_code == 0, r
    return list(r.json["data"]["orders"])


# -- buying ----------------------------------------------------------------------------------


def test_buy_tracks_the_new_esim_and_install_shows_its_code(cli: Any, trip: FakeEsimGo) -> None:
    r = run(cli, *BUY, "--label", "Lisbon", "--yes", "--json")
    assert r.exit_code == 0, r
    # One order at eSIM Go: a new eSIM (assign, no ICCIDs), priced first without charge.
    [sent] = transactions(trip)
    assert sent["assign"] is True and sent["order"] == [
        {"type": "bundle", "item": PLAN, "quantity": 1}
    ]
    assert len(trip.orders) == 1 and len(trip.validations) == 1
    assert trip.balance == Decimal("95.79")
    [iccid] = trip.new_esims
    data = r.json["data"]
    assert data["esim"] == {"iccid": iccid, "label": "Lisbon"}
    assert data["order"]["kind"] == "new"
    assert data["order"]["id"] == trip.orders[0]["orderReference"]
    assert data["order"]["price"] == {"amount": "4.21", "currency": "USD"}
    assert not LPA.search(r.stdout + r.stderr) and "activation" not in data  # a pipe: no code
    # Tracked from the first minute: not installed yet, under its label, never with its code.
    e = status(cli)[iccid]
    assert e["label"] == "Lisbon" and e["state"] == "not_active"
    assert not LPA.search(json.dumps(e))
    assert [(o["kind"], o["iccid"]) for o in local_orders(cli)] == [("new", iccid)]
    # install: the code from the eSIM's details, with the iPhone link eSIM Go gives.
    doc = run(cli, "install", "Lisbon", "--json").json["data"]["activation"]
    assert doc["lpa"] == lpa_of(trip, iccid) and doc["smdp_address"] == "rsp.esim-go.example"
    assert doc["matching_id"] == trip.install_of(iccid)[0]
    assert doc["apple_url"].startswith("https://esimsetup.apple.com/")
    shown = run(cli, "install", "Lisbon", tty=True, env={"NO_COLOR": "1", "COLUMNS": "80"})
    assert shown.exit_code == 0, shown
    assert decode(qr_lines(shown.stdout), light_as_ink=True) == lpa_of(trip, iccid)
    assert "iPhone" in shown.stdout


def test_buy_on_a_terminal_shows_a_code_a_camera_reads(cli: Any, trip: FakeEsimGo) -> None:
    r = run(cli, *BUY, "--yes", tty=True, env={"NO_COLOR": "1", "COLUMNS": "80"})
    assert r.exit_code == 0, r
    [iccid] = trip.new_esims
    assert lpa_of(trip, iccid) in r.stdout
    assert decode(qr_lines(r.stdout), light_as_ink=True) == lpa_of(trip, iccid)
    assert "SM-DP+ address   rsp.esim-go.example" in r.stdout


def test_dry_run_asks_the_price_and_buys_nothing(cli: Any, trip: FakeEsimGo) -> None:
    r = run(cli, *BUY, "--dry-run")
    assert r.exit_code == 0, r
    assert "nothing bought" in r.stdout and "eSIM Go checked the order" in r.stdout
    trip.charge_override = "4.50"  # the price moved since the catalogue was read
    r = run(cli, *BUY, "--dry-run", "--json")
    assert r.exit_code == 0, r
    assert r.json["data"]["order"]["state"] == "dry_run"
    assert "would charge 4.50 USD" in run(cli, *BUY, "--dry-run").stdout
    assert trip.orders == [] and transactions(trip) == [] and len(trip.validations) == 3


def test_price_rise_since_the_listing_is_refused(cli: Any, trip: FakeEsimGo) -> None:
    trip.charge_override = "5.00"  # what validate and the transaction would now ask
    r = run(cli, *BUY, "--yes")
    assert r.exit_code == 5, r
    assert "now asks 5.00 USD" in r.stderr and "nothing was bought" in r.stderr
    assert trip.orders == [] and transactions(trip) == [] and trip.new_esims == []


def test_insufficient_balance_is_one_line_and_nothing_bought(
    cli: Any, trip: FakeEsimGo, home: Path
) -> None:
    trip.balance = Decimal("2.00")
    r = run(cli, *BUY, "--label", "Porto", "--yes")
    assert r.exit_code == 1, r
    assert len(r.stderr.strip().splitlines()) == 1 and "balance" in r.stderr, r
    assert "Traceback" not in r.stderr
    assert trip.orders == [] and trip.new_esims == [] and trip.balance == Decimal("2.00")
    assert all(o["state"] == "failed" for o in local_orders(cli))
    assert "Porto" not in (home / "config.toml").read_text()
    # nothing bought, so nothing stands in the way of buying once the balance is topped up
    trip.balance = Decimal("50")
    assert run(cli, *BUY, "--yes").exit_code == 0
    assert len(trip.new_esims) == 1


def test_lost_answer_is_found_and_labelled_not_bought_again(cli: Any, trip: FakeEsimGo) -> None:
    trip.add_esim(bundle=PLAN)  # an eSIM of the same bundle already there: not ours
    trip.drop_transaction_next()  # eSIM Go makes the order, the answer never arrives
    r = run(cli, *BUY, "--label", "Faro", "--yes", "--json")
    assert r.exit_code == 0, r
    [iccid] = trip.new_esims
    assert len(trip.orders) == 1 and len(transactions(trip)) == 1
    assert r.json["data"]["esim"]["iccid"] == iccid
    assert r.json["data"]["order"]["id"] == trip.orders[0]["orderReference"]
    assert status(cli)[iccid]["label"] == "Faro"
    assert run(cli, "install", "Faro", "--json").json["data"]["activation"]["lpa"] == lpa_of(
        trip, iccid
    )


def test_lost_answer_and_lookup_down_then_the_rerun_finds_it(cli: Any, trip: FakeEsimGo) -> None:
    trip.drop_transaction_next()
    for _ in range(2):  # the lookup right after fails too (one retry configured)
        trip.fail_when(lambda q: q.method == "GET" and q.path == "/orders", 500)
    r = run(cli, *BUY, "--label", "Sagres", "--yes")
    assert r.exit_code == 75, r
    assert len(trip.orders) == 1 and "checked before anything is bought again" in r.stderr
    # The same command again: reconciled with eSIM Go, reported, not bought again.
    again = run(cli, *BUY, "--label", "Sagres", "--yes")
    assert again.exit_code == 0, again
    assert "not bought again" in again.stdout
    assert len(trip.orders) == 1 and len(transactions(trip)) == 1
    [iccid] = trip.new_esims
    assert status(cli)[iccid]["label"] == "Sagres"


@pytest.mark.parametrize(
    ("shape", "smdp"), [("object", "bare"), ("object", "url"), ("list", "url"), ("list", "bare")]
)
def test_answer_without_the_esim_reads_the_install_details(
    cli: Any, trip: FakeEsimGo, shape: str, smdp: str
) -> None:
    """A purchase answer that names no eSIM (as a real client reports): the eSIM and its
    code come from ``GET /esims/assignments?reference=ORDER``, in either documented shape,
    with the SM-DP+ address bare or as a URL."""
    trip.transaction_esims = False
    trip.assignments_shape, trip.smdp_style = shape, smdp
    r = run(cli, *BUY, "--yes", "--reveal", "--json")
    assert r.exit_code == 0, r
    [iccid] = trip.new_esims
    asked = [q for q in trip.requests if q.path == "/esims/assignments"]
    assert [q.arg("reference") for q in asked] == [trip.orders[0]["orderReference"]]
    assert "application/json" in (asked[0].header("accept") or "")
    activation = r.json["data"]["activation"]
    assert activation["iccid"] == iccid and activation["lpa"] == lpa_of(trip, iccid)


def test_answer_without_the_esim_and_details_down_learns_it_from_the_orders(
    cli: Any, trip: FakeEsimGo
) -> None:
    trip.transaction_esims = False
    for _ in range(2):
        trip.fail_when(lambda q: q.path == "/esims/assignments", 503, {"message": "Processing"})
    r = run(cli, *BUY, "--label", "Evora", "--yes", "--json")
    assert r.exit_code == 0, r
    [iccid] = trip.new_esims
    assert r.json["data"]["esim"]["iccid"] == iccid
    assert len(trip.orders) == 1
    assert status(cli)[iccid]["label"] == "Evora"


def test_install_of_an_esim_bought_elsewhere(cli: Any, trip: FakeEsimGo) -> None:
    iccid = trip.add_esim(customer_ref="old-trip")
    r = run(cli, "install", iccid[-6:], "--json")
    assert r.exit_code == 0, r
    assert r.json["data"]["activation"]["lpa"] == lpa_of(trip, iccid)


# -- killed at each step ---------------------------------------------------------------------


@pytest.mark.parametrize("step", ["before_request", "after_answer", "after_record"])
def test_killed_at_each_step_buys_exactly_one_esim(trip: FakeEsimGo, home: Path, step: str) -> None:
    def esimctl(*args: str, kill: str | None = None, now: datetime | None = None) -> Any:
        env = {
            "ESIMCTL_HOME": str(home),
            "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
            "PATH": "/usr/bin:/bin",
            "TZ": "UTC",
            **ENV,
        }
        if kill:
            env["ESIMCTL_TEST_KILL_AT"] = kill
        if now:
            env["ESIMCTL_TEST_NOW"] = now.isoformat()
        return subprocess.run(
            [*ESIMCTL, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )

    killed = esimctl(*BUY, "--label", "Tavira", "--yes", kill=step)
    assert killed.returncode == -signal.SIGKILL, killed
    again = esimctl(*BUY, "--label", "Tavira", "--yes")
    if step == "before_request":
        # Nothing was sent, but eSIM Go has no reference to prove it: the intent counts
        # until its lookup lag (5 minutes) has passed with no such order, then it is void.
        assert again.returncode == 75, again
        assert trip.orders == []
        again = esimctl(*BUY, "--label", "Tavira", "--yes",
                        now=datetime.now(UTC) + timedelta(minutes=6))  # fmt: skip
        assert again.returncode == 0, again
    else:
        assert again.returncode == 0, again
        assert "not bought again" in again.stdout
    assert len(trip.orders) == 1 and len(transactions(trip)) == 1
    [iccid] = trip.new_esims
    listed = esimctl("status", "--json")
    assert listed.returncode == 0, listed
    [e] = [e for e in json.loads(listed.stdout)["data"]["esims"] if e["iccid"] == iccid]
    assert e["label"] == "Tavira" and e["state"] == "not_active"


# -- the lookup without a reference ----------------------------------------------------------


def _provider(fake: FakeEsimGo, tmp_path: Path) -> EsimGoProvider:
    fake.token_limit = 1000
    ctx = ProviderContext(
        account=AccountConfig("trip", "esimgo", fake.url, {"retries": 0, "rate_limit": 1000}),
        secrets={"API_KEY": DEFAULT_KEY},
        clock=lambda: datetime.now(UTC),
        state_dir=tmp_path,
        timeout=2.0,
    )
    return EsimGoProvider(ctx)


def test_find_esim_order_takes_only_a_new_esim_of_its_bundle(
    fake: FakeEsimGo, tmp_path: Path
) -> None:
    """No client reference: bundle, time, what others claimed, and that the eSIM is new
    (a top-up of the same bundle bought elsewhere is not ours) decide."""
    old = fake.add_esim(bundle="esim_1GB_7D_PT_V2", started=timedelta(days=3))

    async def go() -> None:
        async with _provider(fake, tmp_path) as p:
            plans = {x.id: x for x in await p.catalogue("PT")}
            plan = plans[PLAN]
            start = datetime.now(UTC)
            since = start - timedelta(hours=1)
            p.ctx.journal.record("ref-a", kind="new", plan_id=PLAN, sent_at=start.isoformat())
            # a top-up of the same bundle on an older eSIM, made in the portal meanwhile
            [e] = await p.list_esims()
            assert e.iccid == old
            await p.buy_topup(e, plans[PLAN], "ref-portal")
            p.ctx.journal.record("ref-portal", order="")  # not esimctl's: unclaimed
            assert await p.find_esim_order("ref-a", since=since) is None
            # our purchase, its answer lost: found, with its eSIM and how to install it
            fake.drop_transaction_next()
            with pytest.raises(OutcomeUnknown):
                await p.buy_esim(plan, "ref-b")
            found = await p.find_esim_order("ref-b", since=since)
            assert found is not None and found.iccid == fake.new_esims[0]
            assert found.order.id == fake.orders[-1]["orderReference"]
            assert found.order.reference == "ref-b" and found.order.plan_id == PLAN
            assert found.activation is not None
            assert found.activation.lpa == lpa_of(fake, fake.new_esims[0])
            assert "LPA" not in repr(found)  # never in a log line or a traceback
            # claimed now: another purchase of the same bundle does not take it
            p.ctx.journal.record("ref-c", kind="new", plan_id=PLAN, sent_at=start.isoformat())
            assert await p.find_esim_order("ref-c", since=since) is None
            # another bundle is not ours either
            p.ctx.journal.record("ref-d", kind="new", plan_id="esim_5GB_30D_PT_V2",
                                 sent_at=start.isoformat())  # fmt: skip
            assert await p.find_esim_order("ref-d", since=since) is None

    asyncio.run(go())


def test_an_unreadable_lookup_leaves_the_purchase_unresolved(
    fake: FakeEsimGo, tmp_path: Path
) -> None:
    from esimctl.errors import TemporaryFailure

    async def go() -> None:
        async with _provider(fake, tmp_path) as p:
            plan = {x.id: x for x in await p.catalogue("PT")}[PLAN]
            fake.drop_transaction_next()
            with pytest.raises(OutcomeUnknown):
                await p.buy_esim(plan, "ref-x")
            fake.malformed_lookup_next(body={"orders": None})
            with pytest.raises(TemporaryFailure) as info:
                await p.find_esim_order("ref-x", since=datetime.now(UTC) - timedelta(hours=1))
            assert "unresolved" in info.value.message
            found = await p.find_esim_order("ref-x", since=datetime.now(UTC) - timedelta(hours=1))
            assert found is not None and found.iccid == fake.new_esims[0]

    asyncio.run(go())


# -- the install details as the documentation gives them --------------------------------------


def test_install_details_in_every_documented_shape() -> None:
    one = {"iccid": "8944123456789012345", "matchingId": "A1B2-C3D4-E5F6-G7H8",
           "smdpAddress": "http://smdp.example.com", "profileStatus": "Released"}  # fmt: skip
    listed = [{"iccid": "8944123456789012345", "matchingId": "A1B2-C3D4-E5F6-G7H8",
               "rspUrl": "smdp.example.com", "bundle": PLAN, "reference": "r"}]  # fmt: skip
    for body in (one, listed, {"esims": listed}, {"assignments": [one]}):
        [rec] = install_records(body) or []
        a = activation_from(rec)
        assert a is not None and a.lpa == "LPA:1$smdp.example.com$A1B2-C3D4-E5F6-G7H8"
    for body in ({}, None, {"esims": None}, ["x"], "ICCID,Matching ID"):
        assert install_records(body) is None


def test_smdp_address_and_matching_id_that_make_no_code() -> None:
    assert smdp_host("https://rsp.esim-go.example/") == "rsp.esim-go.example"
    assert smdp_host("rsp.esim-go.example") == "rsp.esim-go.example"
    for bad in ("", "http://", "rsp.example/path", "a$b", None, 42):
        assert smdp_host(bad) is None
    base = {"iccid": "1", "smdpAddress": "rsp.esim-go.example"}
    for matching in ("", "JQ$1", "JQ 1", None):
        assert activation_from({**base, "matchingId": matching}) is None
    apple = activation_from({**base, "matchingId": "JQ-1", "appleInstallUrl": "http://x"})
    assert apple is not None and apple.apple_url is None  # only an https link is offered
