"""``esimctl buy`` and ``esimctl install`` on the demo (issue 15): a new eSIM bought with the
safety of a top-up — consent, limits, the duplicate window, journalled first and bought
exactly once after a SIGKILL at any step — then shown ready to install: a QR code that a
real decoder reads back to the exact LPA string, the parts for entry by hand, and nothing
of the code where it was not asked for."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from esimctl.output import qr
from launcher import ESIMCTL

PLAN = "jp-new-5gb-15d"
BUY = ("--demo", "buy", "--country", "JP", "--plan", PLAN)
LPA = re.compile(r"LPA:1\$[^\s$]+\$[0-9A-F]+")


def state_file(home: Path) -> Path:
    return home / "cache" / "demo-profile" / "state" / "accounts" / "demo" / "demo-state.json"


def sold(home: Path) -> list[dict[str, Any]]:
    state = json.loads(state_file(home).read_text(encoding="utf-8"))
    return [o for o in state["orders"] if o.get("kind") == "new"]


def test_buy_in_a_pipe_shows_no_code_and_tracks_the_new_esim(cli: Any, home: Path) -> None:
    r = cli(*BUY, "--label", "Osaka", "--yes", "--json")
    assert r.exit_code == 0, r
    data = r.json["data"]
    assert data["order"]["kind"] == "new" and data["order"]["plan_id"] == PLAN
    assert data["order"]["price"] == {"amount": "12.00", "currency": "USD"}
    iccid = data["esim"]["iccid"]
    assert iccid and data["esim"]["label"] == "Osaka"
    assert "activation" not in data and not LPA.search(r.stdout + r.stderr)
    (order,) = sold(home)
    assert order["reference"].startswith("esimctl-")
    # Tracked from the first minute: in status as not active, by its label, in history.
    status = cli("--demo", "status", "--json").json["data"]["esims"]
    osaka = next(e for e in status if e["label"] == "Osaka")
    assert osaka["iccid"] == iccid and osaka["state"] == "not_active"
    assert not LPA.search(json.dumps(status))  # the code is never in status
    history = cli("--demo", "history", "--local", "--json").json["data"]["orders"]
    assert [(o["kind"], o["iccid"]) for o in history] == [("new", iccid)]
    assert "Osaka" in (home / "cache" / "demo-profile" / "config.toml").read_text()


def test_buy_on_a_terminal_shows_a_qr_code_a_camera_reads(cli: Any) -> None:
    r = cli(*BUY, "--yes", tty=True, env={"NO_COLOR": "1", "COLUMNS": "80"})
    assert r.exit_code == 0, r
    lpa = LPA.search(r.stdout)
    assert lpa is not None
    code = qr_lines(r.stdout)
    assert 15 <= len(code) <= 25 and max(len(ln) for ln in code) <= 45  # fits 80 columns
    assert decode(code, light_as_ink=True) == lpa.group(0)
    assert "SM-DP+ address   smdp.demo.invalid" in r.stdout
    assert "install it any time: esimctl install" in r.stdout


def test_install_shows_it_again_in_colour_and_writes_images(cli: Any, tmp_path: Path) -> None:
    iccid = cli(*BUY, "--label", "Kyoto", "--yes", "--json").json["data"]["esim"]["iccid"]
    r = cli(
        "--demo", "install", "Kyoto", "--png", str(tmp_path / "k.png"),
        "--svg", str(tmp_path / "k.svg"), tty=True, env={"FORCE_COLOR": "1", "COLUMNS": "80"},
    )  # fmt: skip
    assert r.exit_code == 0, r
    plain = re.sub(r"\x1b\[[0-9;]*m", "", r.stdout)
    lpa = LPA.search(plain)
    assert lpa is not None
    code = qr_lines(plain)
    assert decode(code, light_as_ink=False) == lpa.group(0)  # dark modules drawn, on white
    assert "install by" in plain and "iPhone" in plain
    png = tmp_path / "k.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_mode & 0o077 == 0
    assert (tmp_path / "k.svg").read_text(encoding="utf-8").lstrip().startswith("<?xml")
    doc = cli("--demo", "install", iccid[-6:], "--json").json["data"]["activation"]
    assert doc["lpa"] == lpa.group(0) and doc["smdp_address"] == "smdp.demo.invalid"
    assert doc["matching_id"] == lpa.group(0).split("$")[2] and doc["install_by"]


def test_install_without_a_code_says_where_to_find_it(cli: Any) -> None:
    r = cli("--demo", "install", "Tokyo")
    assert r.exit_code == 2, r
    assert "does not give the activation code" in r.stderr and "Traceback" not in r.stderr


def test_dry_run_limits_and_the_duplicate_window(cli: Any, home: Path) -> None:
    r = cli(*BUY, "--dry-run", "--json")
    assert r.exit_code == 0, r
    assert r.json["data"]["order"]["state"] == "dry_run"
    assert "nothing bought" in cli(*BUY, "--dry-run").stdout
    assert not state_file(home).exists() or sold(home) == []
    r = cli(*BUY, "--yes", "--max-price", "10USD")
    assert r.exit_code == 5 and "above --max-price" in r.stderr
    assert cli(*BUY, "--yes").exit_code == 0
    again = cli(*BUY, "--yes")
    assert again.exit_code == 5 and "--again" in again.stderr  # a repeated command
    assert cli(*BUY, "--yes", "--again").exit_code == 0
    assert len(sold(home)) == 2
    # The monthly budget counts new eSIMs like top-ups.
    profile = home / "cache" / "demo-profile"
    (profile / "config.toml").write_text('[renewal]\nmonthly_budget = "30 USD"\n', encoding="utf-8")
    r = cli(*BUY, "--yes", "--again")
    assert r.exit_code == 5 and "monthly_budget" in r.stderr


def test_consent_is_needed(cli: Any, home: Path) -> None:
    r = cli(*BUY)
    assert r.exit_code == 2 and "--yes" in r.stderr
    r = cli(*BUY, tty=True, input="n\n", env={"NO_COLOR": "1"})
    assert r.exit_code == 1
    assert not state_file(home).exists() or sold(home) == []


def test_a_label_that_is_taken_is_refused_before_buying(cli: Any, home: Path) -> None:
    cli("--demo", "status")
    r = cli(*BUY, "--label", "Tokyo", "--yes")
    assert r.exit_code == 2 and "taken" in r.stderr
    assert sold(home) == []


@pytest.mark.parametrize("step", ["before_request", "after_answer", "after_record"])
def test_killed_at_each_step_buys_exactly_one_esim(tmp_path: Path, step: str) -> None:
    home = tmp_path / "home"

    def run(*extra: str, kill: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {
            "ESIMCTL_HOME": str(home),
            "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
            "PATH": "/usr/bin:/bin",
        }
        if kill:
            env["ESIMCTL_TEST_KILL_AT"] = kill
        return subprocess.run(
            [*ESIMCTL, *BUY, "--yes", *extra],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )

    killed = run(kill=step)
    assert killed.returncode == -signal.SIGKILL, killed
    again = run()
    assert again.returncode == 0, again
    # The order of the killed run is found and reported (after_answer, after_record), or the
    # intent it left is found not made (before_request) and this run buys: one eSIM in all.
    assert len(sold(home)) == 1
    if step != "before_request":
        assert "not bought again" in again.stdout


def qr_lines(text: str) -> list[str]:
    """The lines of the printed QR code: block characters only, some ink in each."""
    return [ln for ln in text.splitlines() if set(ln) <= set("█▀▄ ") and set(ln) & set("█▀▄")]


def decode(lines: list[str], *, light_as_ink: bool) -> str:
    """Read the printed code back: half blocks to modules, modules to pixels, and a real
    QR decoder (zxing-cpp) on the pixels."""
    import zxingcpp

    top = {"█": True, "▀": True, "▄": False, " ": False}
    bottom = {"█": True, "▀": False, "▄": True, " ": False}
    width = max(len(ln) for ln in lines)
    rows: list[list[bool]] = []
    for ln in lines:
        ln = ln.ljust(width)
        for half in (top, bottom):
            inked = [half[ch] for ch in ln]
            rows.append([not v for v in inked] if light_as_ink else inked)  # True: dark
    quiet = 4
    size = width + 2 * quiet
    rows = [[False] * size] * quiet + [[False] * quiet + r + [False] * quiet for r in rows]
    rows += [[False] * size] * quiet
    scale = 4
    pixels = bytearray()
    for r in rows:
        line = bytes(0 if dark else 255 for dark in r for _ in range(scale))
        pixels += line * scale
    data = bytes(pixels)  # kept alive: the view does not hold a reference to it
    image = zxingcpp.ImageView(data, size * scale, len(rows) * scale, zxingcpp.ImageFormat.Lum)
    found = [b.text for b in zxingcpp.read_barcodes(image)]
    assert len(found) == 1, found
    return found[0]


def test_the_printed_matrix_is_the_code_itself() -> None:
    lpa = "LPA:1$lpa.airalo.com$Q7MRK29XHF3TD8AA"
    printed = qr.lines(lpa, color=False)
    assert decode(printed, light_as_ink=True) == lpa


def test_an_order_left_by_a_killed_run_answers_its_retry_not_a_later_purchase(
    tmp_path: Path,
) -> None:
    """After a SIGKILL once the order was recorded, the retry gets that order (not a
    second one); a purchase of the same top-up hours later is a new intent and buys."""
    from datetime import UTC, datetime, timedelta

    home = tmp_path / "home"
    t0 = datetime.now(UTC).replace(microsecond=0)

    def run(*args: str, at: timedelta, kill: str | None = None) -> Any:
        env = {
            "ESIMCTL_HOME": str(home),
            "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
            "PATH": "/usr/bin:/bin",
            "ESIMCTL_TEST_NOW": (t0 + at).isoformat(),
        }
        if kill:
            env["ESIMCTL_TEST_KILL_AT"] = kill
        return subprocess.run(
            [*ESIMCTL, *args], env=env, capture_output=True, text=True, timeout=120,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip

    renew = ("--demo", "renew", "Tokyo", "--plan", "jp-1gb-3d", "--yes", "--timeout", "0m")
    killed = run(*renew, at=timedelta(0), kill="after_record")
    assert killed.returncode == -signal.SIGKILL, killed
    retry = run(*renew, at=timedelta(minutes=1))
    assert retry.returncode == 0 and "not bought again" in retry.stdout, retry
    later = run(*renew, at=timedelta(hours=2))
    assert later.returncode == 0 and "not bought again" not in later.stdout, later
    state = json.loads(state_file(home).read_text(encoding="utf-8"))
    assert len([o for o in state["orders"] if o.get("reference")]) == 2
