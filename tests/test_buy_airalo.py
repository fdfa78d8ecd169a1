"""``esimctl buy`` and ``esimctl install`` on Airalo (issue 15): one ``POST /v2/orders`` for a
new eSIM, our reference in its ``description``, the eSIM and its activation code in the
synchronous answer; a lost answer found again by reference, a SIGKILL at any step bought
exactly once, too little credit and a price rise handled as the top-ups handle them. Parsers
are fed Airalo's documented order examples; everything else runs through the CLI against the
stateful fake in ``fakes/airalo.py``."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from esimctl.models import Money
from esimctl.providers.airalo import answers as A
from fakes.airalo import CLIENT_ID, CLIENT_SECRET, FakeAiralo
from launcher import ESIMCTL
from test_buy import decode, qr_lines

CREDS = {"ESIMCTL_TRIP_CLIENT_ID": CLIENT_ID, "ESIMCTL_TRIP_CLIENT_SECRET": CLIENT_SECRET}
PLAN = "moshi-moshi-7days-1gb"  # Japan, net 2.00 USD (retail 4.50)
BUY = ("buy", "--country", "JP", "--plan", PLAN)
LPA = re.compile(r"LPA:1\$[^\s$]+\$[0-9A-Z-]+")
NOW = datetime(2025, 4, 15, 14, 5, tzinfo=UTC)


# -- documented examples (``POST /v2/orders``, Submit order; trimmed) ---------------------------

MANUAL = (
    "<p><br></p><p><b>eSIM name:</b> Uki Mobile<br></p><p><br></p><p><b>Coverage: </b>United "
    "Kingdom</p><p><br></p><p><b>To manually activate the eSIM on your eSIM capable device:</b>"
    "</p><p><br></p><ol><li>Settings > Cellular/Mobile > Add Cellular/Mobile Plan.</li><li>"
    "Manually enter the SM-DP+ Address and activation code.</li><li>Confirm eSIM plan details."
    "</li><li>Label the eSIM.</li></ol><p><br></p><p><b>To access Data:</b></p><p><br></p><ol>"
    "<li>Enable data roaming.</li></ol><p><br></p>"
)
QRCODE = (
    "<p><br></p><p><b>eSIM name:</b> Uki Mobile<br></p><p><br></p><p><b>Coverage: </b>United "
    "Kingdom<br></p><p><br></p><p><b>To activate the eSIM by scanning the QR code on your eSIM "
    "capable device you need to print or display this QR code on other device:</b></p><p><br>"
    "</p><ol><li>Settings > Cellular/Mobile > Add Cellular/Mobile Plan.</li><li>Scan QR code."
    "</li><li>Confirm eSIM plan details.</li><li>Label the eSIM.</li></ol><p><br></p><p><b>To "
    "access Data:</b></p><p><br></p><ol><li>Enable data roaming.</li></ol><p><br></p>"
)
UKI = {  # "Success": net pricing with net_price, Apple's link for this very code
    "id": 583747,
    "code": "20250415-583747",
    "currency": "USD",
    "package_id": "uki-mobile-15days-2gb",
    "quantity": 1,
    "type": "sim",
    "description": "esimctl-0123456789abcdef0123",
    "esim_type": "Prepaid",
    "validity": 15,
    "package": "Uki Mobile-2 GB - 15 Days",
    "data": "2 GB",
    "price": 7.5,
    "pricing_model": "net_pricing",
    "created_at": "2025-04-15 14:02:38",
    "manual_installation": MANUAL,
    "qrcode_installation": QRCODE,
    "net_price": 1.6,
    "sims": [
        {
            "id": 709006,
            "created_at": "2025-04-15 14:02:38",
            "iccid": "8944465400003573253",
            "lpa": "RSP-3088.IDEMIA.IO",
            "matching_id": "YVTGM-5LZC6-PIC56-KFEZJ",
            "qrcode": "LPA:1$RSP-3088.IDEMIA.IO$YVTGM-5LZC6-PIC56-KFEZJ",
            "direct_apple_installation_url": "https://esimsetup.apple.com/esim_qrcode_provisioning"
            "?carddata=LPA:1$RSP-3088.IDEMIA.IO$YVTGM-5LZC6-PIC56-KFEZJ",
        }
    ],
}
KALLUR = {  # "Submit Order (200)": Sandbox; no net_price; quantity "1"; a mismatched link
    "package_id": "kallur-digital-7days-1gb",
    "quantity": "1",
    "type": "sim",
    "description": "Example description to identify the order",
    "validity": 7,
    "package": "Kallur Digital-1 GB - 7 Days",
    "price": 9.5,
    "pricing_model": "net_pricing",
    "created_at": "2023-02-27 14:09:55",
    "id": 9666,
    "code": "20230227-009666",
    "currency": "USD",
    "manual_installation": "<p><b>eSIM name: </b>Kallur Digital</p><p><b>Coverage:</b> Faroe "
    "Islands</p><p>1. Settings> Cellular/Mobile> Add Cellular/Mobile Plan.</p>",
    "qrcode_installation": "<p><b>eSIM name:</b> Kallur Digital</p><p><b>Coverage: </b>Faroe "
    "Islands</p><p>2. Scan QR code</p>",
    "sims": [
        {
            "id": 11047,
            "iccid": "891000000000009125",
            "lpa": "lpa.airalo.com",
            "matching_id": "TEST",
            "qrcode": "LPA:1$lpa.airalo.com$TEST",
            "direct_apple_installation_url": "https://esimsetup.apple.com/esim_qrcode_provisioning"
            "?carddata=LPA:1$wbg.prod.ondemandconnectivity.com$Y7MRQ886FCDJD4RH",
        }
    ],
}
DISCOUNT = {  # "(Discount pricing) Submit Order"
    **KALLUR,
    "id": 9667,
    "code": "20230227-009667",
    "pricing_model": "discount_pricing",
    "discount_percentage": 10,
    "discount_amount": 0.95,
    "unit_paid_price": 8.55,
    "total_amount_paid": 8.55,
}


def test_the_documented_order_answer_gives_the_esim_its_code_and_the_charge() -> None:
    new = A.new_esim_from(UKI, account="trip", now=NOW, reference="esimctl-0123456789abcdef0123")
    assert new.iccid == "8944465400003573253"
    assert new.order.id == "20250415-583747" and new.order.iccid == new.iccid
    assert new.order.price == Money(Decimal("1.6"), "USD")  # net_price, not the retail 7.5
    assert new.order.reference == "esimctl-0123456789abcdef0123"
    a = new.activation
    assert a is not None and a.lpa == "LPA:1$RSP-3088.IDEMIA.IO$YVTGM-5LZC6-PIC56-KFEZJ"
    assert a.smdp == "RSP-3088.IDEMIA.IO" and a.matching_id == "YVTGM-5LZC6-PIC56-KFEZJ"
    assert a.apple_url is not None and a.apple_url.endswith(a.lpa)
    assert a.notes is not None and "<" not in a.notes
    lines = a.notes.splitlines()
    assert lines[:3] == [
        "eSIM name: Uki Mobile",
        "Coverage: United Kingdom",
        "To activate the eSIM by scanning the QR code on your eSIM capable device you need "
        "to print or display this QR code on other device:",
    ]
    assert "2. Scan QR code." in lines and "1. Enable data roaming." in lines
    assert "2. Manually enter the SM-DP+ Address and activation code." in lines
    assert lines.count("eSIM name: Uki Mobile") == 1  # the manual notes' repeated head
    assert "activation code" not in repr(a) and a.lpa not in repr(new)


def test_where_the_documented_examples_disagree() -> None:
    new = A.new_esim_from(KALLUR, account="trip", now=NOW)
    a = new.activation
    assert a is not None and a.lpa == "LPA:1$lpa.airalo.com$TEST"
    # The Sandbox example's Apple link installs another profile: left out, never shown.
    assert a.apple_url is None
    # No net_price under net pricing: what was charged is not said (never the retail 9.50).
    assert new.order.price is None
    assert A.new_esim_from(DISCOUNT, account="trip", now=NOW).order.price == Money(
        Decimal("8.55"), "USD"
    )
    # No qrcode: the code is built from "lpa" (the SM-DP+ address) and "matching_id".
    sim = {"iccid": "891", "lpa": "lpa.airalo.com", "matching_id": "ABC-123"}
    built = A.activation_from(sim, None)
    assert built is not None and built.lpa == "LPA:1$lpa.airalo.com$ABC-123"
    assert built.notes is None
    # Nothing readable: no activation, and nothing invented.
    assert A.activation_from({"iccid": "891", "qrcode": "TEST"}, None) is None
    assert A.activation_from({"iccid": "891", "qrcode": "LPA:1$host$"}, None) is None
    # An order without sims yet: the order, no eSIM.
    pending = A.new_esim_from({**UKI, "sims": []}, account="trip", now=NOW)
    assert pending.iccid is None and pending.activation is None


def test_notes_are_plain_text_on_one_screen() -> None:
    assert A.html_lines("<p>a&nbsp;&amp; b</p><p><br></p><ul><li>x</li></ul>\x1b[2J") == [
        "a & b",
        "- x",
        "[2J",
    ]
    assert A.install_notes({}) is None
    long = A.install_notes({"manual_installation": "<p>" + "x" * 5000 + "</p>"})
    assert long is not None and len(long) == A.MAX_NOTES


# -- the CLI against the fake -----------------------------------------------------------------


@pytest.fixture
def fake() -> Iterator[FakeAiralo]:
    with FakeAiralo() as f:
        assert isinstance(f, FakeAiralo)
        yield f


Cli = Callable[..., Any]


def config_text(fake: FakeAiralo, **options: Any) -> str:
    opts = {"retries": 1, **options}
    lines = "".join(f"{k} = {json.dumps(v)}\n" for k, v in opts.items())
    return f'[accounts.trip]\nprovider = "airalo"\nbase_url = "{fake.url}"\n{lines}'


@pytest.fixture
def setup(configure: Callable[[str], Path], fake: FakeAiralo) -> Callable[..., None]:
    def write(**options: Any) -> None:
        configure(config_text(fake, **options))

    write()
    return write


@pytest.fixture
def run(cli: Cli) -> Cli:
    def invoke(*args: str, env: dict[str, str] | None = None, **kw: Any) -> Any:
        r = cli(*args, env={**CREDS, **(env or {})}, **kw)
        assert CLIENT_SECRET not in r.stdout + r.stderr
        assert "Traceback" not in r.stderr, r
        return r

    return invoke


def codes(fake: FakeAiralo) -> set[str]:
    """The activation codes of the eSIMs the fake sold (and their matching ids)."""
    out = set()
    for o in fake.sim_orders():
        for iccid in o["_sims"]:
            out |= {fake.sims[iccid].qrcode, fake.sims[iccid].matching_id}
    return out


def test_buy_sends_one_order_and_tracks_the_new_esim(
    fake: FakeAiralo, setup: Any, run: Cli, home: Path
) -> None:
    r = run(*BUY, "--label", "Tokyo", "--yes", "--json")
    assert r.exit_code == 0, r
    data = r.json["data"]
    assert data["order"]["kind"] == "new" and data["order"]["plan_id"] == PLAN
    assert data["order"]["price"] == {"amount": "2.00", "currency": "USD"}  # net price
    iccid = data["esim"]["iccid"]
    assert iccid and data["esim"]["label"] == "Tokyo"
    # One order at Airalo, sent as documented, our reference in its description.
    (order,) = fake.sim_orders()
    assert order["_sims"] == [iccid] and data["order"]["id"] == order["code"]
    (post,) = fake.requests_to("POST", "/v2/orders")
    assert "multipart/form-data" in (post.header("content-type") or "")
    sent = fake.fields(post)
    assert {k: sent[k] for k in ("package_id", "quantity", "type")} == {
        "package_id": PLAN,
        "quantity": "1",
        "type": "sim",
    }
    assert re.fullmatch(r"esimctl-[0-9a-f]{20}", sent["description"])
    assert fake.balance == Decimal("248.00")
    # The code is not shown in a pipe, nor kept anywhere esimctl writes.
    assert "activation" not in data
    secret = codes(fake)
    assert not any(c in r.stdout + r.stderr for c in secret)
    # Tracked from the first minute: not active, by its label, as a new eSIM in history.
    status = run("status", "--json")
    assert status.exit_code == 0, status
    row = next(e for e in status.json["data"]["esims"] if e["iccid"] == iccid)
    assert row["label"] == "Tokyo" and row["state"] == "not_active"
    assert not any(c in status.stdout for c in secret)
    history = run("history", "--local", "--json").json["data"]["orders"]
    assert [(o["kind"], o["iccid"], o["state"]) for o in history] == [("new", iccid, "completed")]
    assert 'label = "Tokyo"' in (home / "config.toml").read_text(encoding="utf-8")
    for f in home.rglob("*"):
        if f.is_file():
            raw = f.read_bytes()
            assert not any(c.encode() in raw for c in secret), f


def test_buy_on_a_terminal_and_install_show_the_code_a_camera_reads(
    fake: FakeAiralo, setup: Any, run: Cli
) -> None:
    term = {"NO_COLOR": "1", "COLUMNS": "80"}
    r = run(*BUY, "--label", "Kyoto", "--yes", tty=True, env=term)
    assert r.exit_code == 0, r
    (order,) = fake.sim_orders()
    sim = fake.sims[order["_sims"][0]]
    assert decode(qr_lines(r.stdout), light_as_ink=True) == sim.qrcode
    assert "SM-DP+ address   rsp-3088.idemia.io" in r.stdout
    assert f"activation code  {sim.matching_id}" in r.stdout
    # Asked again of Airalo (GET /v2/sims/{iccid}) by `install`.
    r = run("install", "Kyoto", tty=True, env=term)
    assert r.exit_code == 0, r
    assert fake.requests_to("GET", f"/v2/sims/{sim.iccid}")
    assert decode(qr_lines(r.stdout), light_as_ink=True) == sim.qrcode
    assert f"LPA string       {sim.qrcode}" in r.stdout and "iPhone" in r.stdout
    assert "seller's notes: eSIM name: Moshi Moshi" in r.stdout
    assert "Enable data roaming." in r.stdout and "<p>" not in r.stdout
    doc = run("install", "Kyoto", "--json").json["data"]["activation"]
    assert doc["lpa"] == sim.qrcode and doc["smdp_address"] == "rsp-3088.idemia.io"
    assert doc["matching_id"] == sim.matching_id and doc["apple_url"].endswith(sim.qrcode)
    assert "Coverage: Japan" in doc["notes"]


def test_a_link_for_another_profile_and_a_charge_not_said(
    fake: FakeAiralo, setup: Any, run: Cli
) -> None:
    fake.apple_url_mismatch = True  # as the documented Sandbox examples
    fake.order_net_price = False  # as the first documented example
    r = run(*BUY, "--yes", "--reveal", "--json")
    assert r.exit_code == 0, r
    data = r.json["data"]
    assert data["order"]["price"] == {"amount": "2.00", "currency": "USD"}  # the listed price
    assert data["order"]["charged_price"] is None
    (order,) = fake.sim_orders()
    sim = fake.sims[order["_sims"][0]]
    assert data["activation"]["lpa"] == sim.qrcode and data["activation"]["apple_url"] is None
    doc = run("install", sim.iccid, "--json").json["data"]["activation"]
    assert doc["lpa"] == sim.qrcode and doc["apple_url"] is None


def test_discount_pricing_counts_what_was_paid(fake: FakeAiralo, setup: Any, run: Cli) -> None:
    fake.pricing_model = "discount_pricing"  # retail 4.50 less 20 %: 3.60
    r = run(*BUY, "--yes", "--json")
    assert r.exit_code == 0, r
    assert r.json["data"]["order"]["price"] == {"amount": "3.60", "currency": "USD"}
    assert r.json["data"]["order"]["charged_price"] == {"amount": "3.6", "currency": "USD"}


def test_a_lost_answer_is_found_by_reference_not_bought_again(
    fake: FakeAiralo, setup: Any, run: Cli, home: Path
) -> None:
    fake.arm("POST", "/v2/orders", fake.commit_then_drop_next)
    r = run(*BUY, "--label", "Nara", "--yes", "--json")
    assert r.exit_code == 0, r
    (order,) = fake.sim_orders()
    assert r.json["data"]["esim"]["iccid"] == order["_sims"][0]
    assert len(fake.requests_to("POST", "/v2/orders")) == 1
    lookup = fake.requests_to("GET", "/v2/orders")[0]
    assert lookup.arg("filter[description]") == order["description"]
    assert 'label = "Nara"' in (home / "config.toml").read_text(encoding="utf-8")
    status = run("status", "--json").json["data"]["esims"]
    assert [e["label"] for e in status if e["iccid"] == order["_sims"][0]] == ["Nara"]


def test_a_lost_answer_and_a_lookup_down_is_settled_by_the_rerun(
    fake: FakeAiralo, setup: Any, run: Cli, home: Path
) -> None:
    setup(retries=0, timeout=0.5)
    fake.arm("POST", "/v2/orders", fake.commit_then_drop_next)
    fake.arm("GET", "/v2/orders", lambda: fake.fail_next(503))
    args = (*BUY, "--label", "Sapporo", "--yes")
    r = run(*args)
    assert r.exit_code == 75, r
    assert len(fake.sim_orders()) == 1
    # The same command again: the order is looked up first, found, and not bought again.
    again = run(*args)
    assert again.exit_code == 0, again
    assert "not bought again" in again.stdout
    assert len(fake.sim_orders()) == 1 and len(fake.requests_to("POST", "/v2/orders")) == 1
    assert 'label = "Sapporo"' in (home / "config.toml").read_text(encoding="utf-8")


@pytest.mark.parametrize("step", ["before_request", "after_answer", "after_record"])
def test_killed_at_each_step_buys_exactly_one_esim(
    fake: FakeAiralo, tmp_path: Path, step: str
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text(config_text(fake), encoding="utf-8")

    def run(*extra: str, **env: str) -> subprocess.CompletedProcess[str]:
        environ = {
            "ESIMCTL_HOME": str(home),
            "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
            "PATH": "/usr/bin:/bin",
            "TZ": "UTC",
            **CREDS,
            **env,
        }
        return subprocess.run(
            [*ESIMCTL, *BUY, "--label", "Kobe", "--yes", *extra],
            env=environ,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )

    killed = run(ESIMCTL_TEST_KILL_AT=step)
    assert killed.returncode == -signal.SIGKILL, killed
    if step == "before_request":
        assert fake.sim_orders() == []
        # Airalo may list an order up to 11 minutes late: until then, nothing is bought.
        early = run()
        assert early.returncode == 75, early
        assert "unknown outcome" in early.stderr and fake.sim_orders() == []
    later = (datetime.now(UTC) + timedelta(minutes=12)).isoformat()
    again = run(ESIMCTL_TEST_NOW=later)
    assert again.returncode == 0, again
    (order,) = fake.sim_orders()  # exactly one eSIM, whichever step the kill hit
    assert len(fake.requests_to("POST", "/v2/orders")) == 1
    if step != "before_request":
        assert "not bought again" in again.stdout
    assert 'label = "Kobe"' in (home / "config.toml").read_text(encoding="utf-8")
    assert not any(c in killed.stdout + killed.stderr + again.stdout for c in codes(fake))
    del order


def test_too_little_credit_is_one_clear_line_and_nothing_bought(
    fake: FakeAiralo, setup: Any, run: Cli
) -> None:
    fake.balance = Decimal("1.00")
    r = run(*BUY, "--label", "Osaka", "--yes")
    assert r.exit_code == 1, r
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error")]
    assert len(errors) == 1, r.stderr
    assert "not enough Airalo credit for a new eSIM" in errors[0] and "1.00 USD" in errors[0]
    assert fake.sim_orders() == [] and fake.balance == Decimal("1.00")
    h = run("history", "--local", "--json").json["data"]["orders"]
    assert all(o["state"] == "failed" for o in h), h
    assert run(*BUY, "--yes", "--json").json["errors"][0]["code"] == "insufficient_balance"
    status = run("status", "--json").json["data"]["esims"]
    assert status == [] and fake.sim_orders() == []


def test_a_price_rise_between_listing_and_buying(fake: FakeAiralo, setup: Any, run: Cli) -> None:
    # Airalo has no price check before the order: it charges the new price at once. As for a
    # top-up, the charge is recorded as said, and one beyond a limit is reported (exit 5).
    fake.charge_override = "3.00"  # listed 2.00
    r = run(*BUY, "--yes", "--max-price", "2.50USD")
    assert r.exit_code == 5, r
    assert "3.00" in r.stderr and "charged beyond your limit" in r.stderr
    assert len(fake.sim_orders()) == 1
    r = run(*BUY, "--yes", "--again", "--json")
    assert r.exit_code == 0, r
    assert r.json["data"]["order"]["price"] == {"amount": "3.00", "currency": "USD"}
    assert len(fake.sim_orders()) == 2


def test_plans_airalo_refuses_buy_nothing(fake: FakeAiralo, setup: Any, run: Cli) -> None:
    # The catalogue's sim packages are new eSIMs; a top-up package is not one.
    plans = run("plans", "--country", "JP", "--json").json["data"]["plans"]
    assert plans and all(p["kind"] == "new" for p in plans)
    r = run("buy", "--country", "JP", "--plan", "moshi-moshi-7days-1gb-topup", "--yes")
    assert r.exit_code == 2, r
    # Listed, then refused at purchase ("The selected package is invalid."): exit 2.
    invalid = {"package_id": "The selected package is invalid."}
    fake.arm(
        "POST",
        "/v2/orders",
        lambda: fake.fail_next(
            422, body={"data": invalid, "meta": {"message": "the parameter is invalid"}}
        ),
    )
    r = run(*BUY, "--yes")
    assert r.exit_code == 2, r
    assert "does not sell this plan as a new eSIM" in r.stderr
    # Out of stock: refused, nothing bought.
    stock = {"quantity": "SIM quantity is not available. Available quantity: 0."}
    fake.arm(
        "POST",
        "/v2/orders",
        lambda: fake.fail_next(
            422, body={"data": stock, "meta": {"message": "the parameter is invalid"}}
        ),
    )
    r = run(*BUY, "--yes")
    assert r.exit_code == 1, r
    assert "no eSIM of this plan in stock" in r.stderr
    assert fake.sim_orders() == []


def test_a_5xx_to_the_order_is_looked_up_not_repeated(
    fake: FakeAiralo, setup: Any, run: Cli
) -> None:
    fake.arm("POST", "/v2/orders", lambda: fake.fail_next(502))
    r = run(*BUY, "--yes", "--json")
    # Not made (the fake answered 502 before the handler): looked up at once, not found yet,
    # so it stays unresolved; nothing is sent again.
    assert r.exit_code == 75, r
    assert fake.sim_orders() == [] and len(fake.requests_to("POST", "/v2/orders")) == 1
    assert fake.requests_to("GET", "/v2/orders")
