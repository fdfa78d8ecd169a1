"""`esimctl status` against the demo: table on a terminal, TSV in a pipe, SPEC's JSON."""

import json
import re

from esimctl.output.emit import SCHEMA_VERSION

ESIM_KEYS = {
    "account",
    "provider",
    "iccid",
    "label",
    "state",
    "plan",
    "data_total_bytes",
    "data_remaining_bytes",
    "data_used_bytes",
    "unlimited",
    "expires_at",
    "as_of",
    "attention",
}


def test_status_json_follows_the_contract(cli):
    r = cli("--demo", "status", "--json")
    assert r.exit_code == 0, r
    doc = r.json
    assert doc["schema_version"] == SCHEMA_VERSION
    assert doc["command"] == "status" and doc["status"] == "success" and doc["exit_code"] == 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", doc["generated_at"])
    assert doc["errors"] == []
    esims = doc["data"]["esims"]
    assert len(esims) >= 4
    for e in esims:
        assert set(e) >= ESIM_KEYS
        assert e["state"] in {"not_active", "active", "depleted", "expired", "recycled", "unknown"}
    by_label = {e["label"]: e for e in esims}
    tokyo = by_label["Tokyo"]
    assert tokyo["data_total_bytes"] == 3 * 1024**3
    assert tokyo["data_used_bytes"] == tokyo["data_total_bytes"] - tokyo["data_remaining_bytes"]
    assert {"low_data", "expiring_soon"} <= set(tokyo["attention"])
    europe = by_label["Europe"]
    assert europe["unlimited"] is True
    assert europe["data_remaining_bytes"] is None and europe["data_total_bytes"] is None
    assert by_label["USA"]["state"] == "not_active"
    assert "\x1b" not in r.stdout


def test_json_bytes_are_the_same_on_a_terminal(cli):
    a = cli("--demo", "status", "--json").json
    b = cli("--demo", "status", "--json", tty=True)
    assert "\x1b" not in b.stdout
    doc = json.loads(b.stdout)
    a.pop("generated_at"), doc.pop("generated_at")
    for e in a["data"]["esims"] + doc["data"]["esims"]:
        e.pop("as_of")
        e.pop("forecast")  # it moves with the clock, like as_of
    assert a == doc


def test_status_table_on_a_terminal(cli):
    r = cli("--demo", "status", tty=True, env={"NO_COLOR": "1"})
    assert r.exit_code == 0, r
    assert "\x1b[3" not in r.stdout  # NO_COLOR: no colour codes
    assert "LABEL" in r.stdout and "EXPIRES" in r.stdout and "AS OF" in r.stdout
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("Tokyo"))
    assert "307 MB / 3 GB" in line
    assert re.search(r"in 1 d 1\d h", line)
    assert "✓ active" in line
    assert "low data" in line and "expiring soon" in line
    assert "∞ unlimited" in r.stdout
    assert "not active" in r.stdout and "✗ expired" in r.stdout


def test_status_tsv_when_piped(cli):
    r = cli("--demo", "status")
    assert r.exit_code == 0
    rows = [ln.split("\t") for ln in r.stdout.splitlines()]
    assert all(len(row) == 10 for row in rows)
    tokyo = next(row for row in rows if row[0] == "Tokyo")
    assert tokyo[2] == "8981100000000000018"
    assert tokyo[4] == f"{int(0.3 * 1024**3)}/{3 * 1024**3}"
    assert tokyo[6].endswith("Z")  # RUNS OUT: when, at the demo's pace (450 MB a day)
    assert tokyo[7] == "active"
    assert tokyo[9] == "low_data,expiring_soon,runs_out_soon"
    assert "LABEL" not in r.stdout


def test_status_names_an_esim_by_label_suffix_or_iccid(cli):
    for name in ("Tokyo", "tokyo", "0018", "8981100000000000018"):
        r = cli("--demo", "status", name, "--json")
        assert r.exit_code == 0, r
        assert [e["label"] for e in r.json["data"]["esims"]] == ["Tokyo"]


def test_unknown_esim_lists_the_valid_ones(cli):
    r = cli("--demo", "status", "Narnia")
    assert r.exit_code == 2
    assert r.stderr.count("\n") <= 2
    assert "no eSIM named 'Narnia'" in r.stderr and "Tokyo" in r.stderr


def test_short_suffix_is_refused(cli):
    r = cli("--demo", "status", "018")
    assert r.exit_code == 2 and "at least 4 digits" in r.stderr


def test_check_exits_8_when_something_needs_attention(cli):
    assert cli("--demo", "status", "--check").exit_code == 8
    assert cli("--demo", "status", "Europe", "--check").exit_code == 0


def test_check_in_json_keeps_success_envelope(cli):
    r = cli("--demo", "status", "--check", "--json")
    assert r.exit_code == 8
    assert r.json["exit_code"] == 8 and r.json["status"] == "success"


def test_status_without_accounts_is_empty_not_an_error(cli):
    r = cli("status", "--json")
    assert r.exit_code == 0
    assert r.json["data"] == {"esims": []}
    r = cli("status")
    assert r.exit_code == 0 and "esimctl account add" in r.stderr


def test_demo_never_touches_the_real_profile(cli, home):
    cli("--demo", "renew", "Tokyo", "--plan", "jp-1gb-3d", "--yes", "--timeout", "0m")
    assert not (home / "config.toml").exists()
    assert not (home / "data" / "ledger.sqlite3").exists()
    assert cli("history", "--json").json["data"]["orders"] == []


def test_esimctl_demo_variable_is_the_same_as_the_flag(cli):
    assert cli("status", "--json", env={"ESIMCTL_DEMO": "1"}).json["data"]["esims"]
    assert cli("status", "--json", env={"ESIMCTL_DEMO": "0"}).json["data"]["esims"] == []


def test_a_narrow_terminal_gives_way_by_priority_instead_of_cutting_words(cli):
    r = cli("--demo", "status", tty=True, env={"NO_COLOR": "1", "COLUMNS": "80"})
    assert r.exit_code == 0, r
    lines = r.stdout.splitlines()
    assert all(len(ln) <= 80 for ln in lines)
    header = lines[0].split()
    # What matters stays at 80: the plan (shortened), the figures, the expiry, the forecast.
    assert header == ["LABEL", "PLAN", "DATA", "LEFT", "EXPIRES", "RUNS", "OUT"]
    tokyo = next(ln for ln in lines if "Tokyo" in ln)
    assert tokyo.startswith("✓ Tokyo") and "307 MB / 3 GB" in tokyo and "Japan 3 GB" in tokyo
    # The attention, on a line of its own under its eSIM, whole.
    below = lines[lines.index(tokyo) + 1]
    assert below.strip() == "! low data, expiring soon, runs out soon"
    # The state as a mark before the label, with a legend under the table.
    assert "○ USA" in r.stdout and "✗ Seoul" in r.stdout
    assert "✓ active · ○ not active · ✗ expired" in lines[-1]
    wide = cli("--demo", "status", tty=True, env={"NO_COLOR": "1", "COLUMNS": "200"})
    assert "PLAN" in wide.stdout.splitlines()[0] and "AS OF" in wide.stdout
    assert "✓ active" in wide.stdout and "expiring soon" in wide.stdout
