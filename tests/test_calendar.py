"""``esimctl calendar`` (issue 13): the eSIMs' deadlines as an iCalendar file.

Run against the demo with the clock fixed (``ESIMCTL_TEST_NOW``): its eSIMs are laid out from
that moment, so every expiry is known to the second. The file is read by ``icalendar`` (which
wrote it) and by ``vobject``, a reader with its own parser, so an error both share is unlikely.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import icalendar
import pytest
import vobject

from esimctl.cli.commands.calendar import deadlines_of, uid_for
from esimctl.models import Esim, EsimState
from launcher import ESIMCTL

NOW = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
AT = {"ESIMCTL_TEST_NOW": "2026-11-27T10:00:00Z"}
LATER = {"ESIMCTL_TEST_NOW": "2026-11-27T13:00:00Z"}

TOKYO = "8981100000000000018"
EUROPE = "8944500000000000026"
USA = "8901200000000000034"
BANGKOK = "8966000000000000042"
SEOUL = "8982000000000000059"  # expired three days before NOW
TBILISI = "8999500000000000067"  # a day pass with days left (issue 18)
#: The demo's events at NOW: five, and Tbilisi's expiry since the demo carries a day pass.
N_EVENTS = 6

#: The demo's deadlines, as laid out from NOW (providers/demo.py).
EXPIRES = {
    TOKYO: NOW + timedelta(days=1, hours=20),
    EUROPE: NOW + timedelta(days=6, hours=3),
    USA: NOW + timedelta(days=180),
    BANGKOK: NOW + timedelta(days=18, hours=5),
    TBILISI: NOW + timedelta(days=8, hours=3),
}


@pytest.fixture
def profile(home: Path) -> Path:
    """The demo profile's directory; its config.toml is the one ``--demo`` reads."""
    p = home / "cache" / "demo-profile"
    p.mkdir(parents=True, exist_ok=True)
    return p


def write_calendar(cli: Any, out: Path, *more: str, env: dict[str, str] | None = None) -> Any:
    r = cli("--demo", "calendar", "-o", str(out), *more, env=env or AT)
    assert r.exit_code == 0, r
    return r


def events(path_or_text: Path | str) -> dict[str, icalendar.Event]:
    raw = path_or_text.read_bytes() if isinstance(path_or_text, Path) else path_or_text.encode()
    cal = icalendar.Calendar.from_ical(raw)
    return {str(ev["UID"]): ev for ev in cal.walk("VEVENT")}


def by_kind(evs: dict[str, icalendar.Event]) -> dict[tuple[str, str], icalendar.Event]:
    """Events by (ICCID, kind), found by their documented UIDs."""
    out = {}
    for iccid in (TOKYO, EUROPE, USA, BANGKOK, SEOUL, TBILISI):
        for kind in ("expiry", "install_by", "runs_out"):
            uid = uid_for("demo", iccid, kind)
            if uid in evs:
                out[(iccid, kind)] = evs[uid]
    return out


# -- what is in it --------------------------------------------------------------------------


def test_one_event_per_deadline_expired_left_out(cli: Any, tmp_path: Path) -> None:
    out = tmp_path / "esims.ics"
    r = write_calendar(cli, out)
    assert r.stdout.strip() == f"wrote {N_EVENTS} events to {out} (alarms 1 d before)"
    found = by_kind(events(out))
    assert sorted(found) == sorted(
        [
            (TOKYO, "expiry"),
            (TOKYO, "runs_out"),  # 307 MB at 450 MB a day: before its expiry
            (EUROPE, "expiry"),
            (USA, "install_by"),  # not installed yet
            (BANGKOK, "expiry"),  # outlasts its expiry: no run-out event
            (TBILISI, "expiry"),  # a day pass: no run-out event, ever
        ]
    )
    assert len(events(out)) == N_EVENTS  # and nothing else (Seoul expired three days ago)
    for (iccid, kind), ev in found.items():
        if kind != "runs_out":
            assert ev.decoded("DTSTART") == EXPIRES[iccid]
    runs_out = found[(TOKYO, "runs_out")].decoded("DTSTART")
    assert NOW < runs_out < EXPIRES[TOKYO]


def test_summaries_and_descriptions_say_what_and_what_to_do(cli: Any, tmp_path: Path) -> None:
    out = tmp_path / "esims.ics"
    write_calendar(cli, out)
    found = by_kind(events(out))
    tokyo = found[(TOKYO, "expiry")]
    assert str(tokyo["SUMMARY"]) == "Tokyo eSIM expires · Nov 29 06:00 UTC"
    text = str(tokyo["DESCRIPTION"])
    assert "Japan 3 GB · 7 days: 307 MB left of 3 GB" in text
    assert "Account: demo (demo) · ICCID 8981100000000000018" in text
    assert "\n  esimctl plans Tokyo\n  esimctl renew Tokyo --plan PLAN" in text
    runs_out = found[(TOKYO, "runs_out")]
    assert str(runs_out["SUMMARY"]).startswith("Tokyo eSIM runs out of data (forecast) · Nov 2")
    assert "At 450 MB a day its data runs out" in str(runs_out["DESCRIPTION"])
    assert "before it expires Nov 29 06:00 UTC" in str(runs_out["DESCRIPTION"])
    usa = found[(USA, "install_by")]
    assert str(usa["SUMMARY"]) == "USA eSIM: install deadline · 2027-05-26 10:00 UTC"
    assert "Not installed yet: install it by 2027-05-26 10:00 UTC" in str(usa["DESCRIPTION"])
    assert "5 GB left of 5 GB" in str(usa["DESCRIPTION"])
    assert str(usa["DESCRIPTION"]).endswith("\n  esimctl show USA")
    europe = found[(EUROPE, "expiry")]
    assert "unlimited data" in str(europe["DESCRIPTION"])


def test_a_label_with_a_space_is_quoted_in_the_commands(
    cli: Any, tmp_path: Path, profile: Path
) -> None:
    (profile / "config.toml").write_text(f'[esims."{TOKYO}"]\nlabel = "Tokyo trip"\n')
    out = tmp_path / "esims.ics"
    write_calendar(cli, out)
    tokyo = by_kind(events(out))[(TOKYO, "expiry")]
    assert str(tokyo["SUMMARY"]).startswith("Tokyo trip eSIM expires · ")
    assert "  esimctl renew 'Tokyo trip' --plan PLAN" in str(tokyo["DESCRIPTION"])


def test_unknown_expiry_and_expired_state_make_no_event() -> None:
    def esim(**kw: Any) -> Esim:
        base: dict[str, Any] = {
            "account": "a",
            "provider": "p",
            "iccid": TOKYO,
            "state": EsimState.ACTIVE,
            "label": "X",
        }
        return Esim(**{**base, **kw})

    assert deadlines_of(esim(expires_at=None), None, NOW) == []
    assert deadlines_of(esim(expires_at=NOW - timedelta(seconds=1)), None, NOW) == []
    later = NOW + timedelta(days=1)
    assert deadlines_of(esim(expires_at=later, state=EsimState.EXPIRED), None, NOW) == []
    assert [d.kind for d in deadlines_of(esim(expires_at=later), None, NOW)] == ["expiry"]


# -- a second reader, UTC, and alarms -------------------------------------------------------


def test_a_second_independent_reader_sees_the_same_events(cli: Any, tmp_path: Path) -> None:
    out = tmp_path / "esims.ics"
    write_calendar(cli, out)
    ours = events(out)
    cal = vobject.readOne(out.read_text(encoding="utf-8"))
    theirs = {ev.uid.value: ev for ev in cal.vevent_list}
    assert set(theirs) == set(ours)
    for uid, ev in theirs.items():
        assert ev.summary.value == str(ours[uid]["SUMMARY"])
        assert ev.description.value == str(ours[uid]["DESCRIPTION"])
        assert ev.dtstart.value == ours[uid].decoded("DTSTART")
        assert ev.dtstart.value.utcoffset() == timedelta(0)
        assert ev.dtend.value - ev.dtstart.value == timedelta(minutes=15)
        assert ev.dtstamp.value == NOW
        assert ev.valarm.trigger.value == -timedelta(days=1)
        assert ev.valarm.action.value == "DISPLAY"
    # One event per UID, each UID different (per eSIM and per kind).
    assert len(theirs) == len(cal.vevent_list) == N_EVENTS


def test_times_are_utc_in_the_file(cli: Any, tmp_path: Path) -> None:
    out = tmp_path / "esims.ics"
    write_calendar(cli, out)
    text = out.read_bytes().decode("utf-8")  # as it is: CRLF line ends
    assert "TZID" not in text and "VTIMEZONE" not in text
    stamps = re.findall(r"^(DTSTART|DTEND|DTSTAMP|LAST-MODIFIED|CREATED):(.*)\r$", text, re.M)
    assert len(stamps) == 5 * N_EVENTS
    assert all(re.fullmatch(r"\d{8}T\d{6}Z", value) for _, value in stamps), stamps
    assert text.startswith("BEGIN:VCALENDAR\r\n") and text.endswith("END:VCALENDAR\r\n")


@pytest.mark.parametrize(
    ("setting", "before"),
    [(None, timedelta(days=1)), ('"2h"', timedelta(hours=2)), ('"0s"', timedelta(0))],
)
def test_each_event_has_an_alarm_the_configured_time_before(
    cli: Any, tmp_path: Path, profile: Path, setting: str | None, before: timedelta
) -> None:
    if setting is not None:
        (profile / "config.toml").write_text(f"[calendar]\nalarm_before = {setting}\n")
    out = tmp_path / "esims.ics"
    r = write_calendar(cli, out)
    assert ("alarms at the time" in r.stdout) == (before == timedelta(0))
    for ev in events(out).values():
        (alarm,) = ev.walk("VALARM")
        assert alarm.decoded("TRIGGER") == -before
        assert str(alarm["ACTION"]) == "DISPLAY"
        assert str(alarm["DESCRIPTION"]) == str(ev["SUMMARY"])
    for ev in vobject.readOne(out.read_text(encoding="utf-8")).vevent_list:
        assert ev.valarm.trigger.value == -before


def test_a_bad_alarm_setting_is_a_config_error(cli: Any, tmp_path: Path, profile: Path) -> None:
    (profile / "config.toml").write_text('[calendar]\nalarm_before = "90d"\n')
    r = cli("--demo", "calendar", "-o", str(tmp_path / "x.ics"), env=AT)
    assert r.exit_code == 2, r
    assert "alarm_before" in r.stderr
    assert not (tmp_path / "x.ics").exists()


@pytest.mark.parametrize(
    ("zone", "summary", "utc_too"),
    [
        ("Asia/Tokyo", "Tokyo eSIM expires · Nov 29 15:00 JST", True),
        ("America/New_York", "Tokyo eSIM expires · Nov 29 01:00 EST", True),
        ("UTC", "Tokyo eSIM expires · Nov 29 06:00 UTC", False),
    ],
)
def test_the_summary_says_the_local_time_and_zone(
    tmp_path: Path, zone: str, summary: str, utc_too: bool
) -> None:
    """The machine's zone (TZ) is read once a process starts: a child esimctl per zone."""
    p = subprocess.run(
        [*ESIMCTL, "--demo", "calendar"],
        capture_output=True,
        text=True,
        env={**os.environ, **AT, "TZ": zone},
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    tokyo = by_kind(events(p.stdout))[(TOKYO, "expiry")]
    assert str(tokyo["SUMMARY"]) == summary
    assert tokyo.decoded("DTSTART") == EXPIRES[TOKYO]  # the same instant in every zone
    assert ("(2026-11-29 06:00 UTC)" in str(tokyo["DESCRIPTION"])) == utc_too


# -- stable across runs -----------------------------------------------------------------------


def test_uids_are_stable_and_sequence_counts_changes(cli: Any, tmp_path: Path) -> None:
    out = tmp_path / "esims.ics"
    write_calendar(cli, out)
    first = events(out)
    write_calendar(cli, out)  # the same figures: nothing changed
    again = events(out)
    assert set(again) == set(first)
    for uid, ev in again.items():
        assert ev.to_ical() == first[uid].to_ical()
        assert int(ev["SEQUENCE"]) == 0
    write_calendar(cli, out, env=LATER)  # three hours on: less data left, new figures
    later = events(out)
    assert set(later) == set(first)
    for ev in later.values():
        assert int(ev["SEQUENCE"]) == 1
        assert ev.decoded("LAST-MODIFIED") == datetime(2026, 11, 27, 13, 0, tzinfo=UTC)
        assert ev.decoded("CREATED") == NOW
        assert ev.decoded("DTSTAMP") == datetime(2026, 11, 27, 13, 0, tzinfo=UTC)
    tokyo = by_kind(later)[(TOKYO, "expiry")]
    assert tokyo.decoded("DTSTART") == EXPIRES[TOKYO]  # the same event, updated
    assert "307 MB left" not in str(tokyo["DESCRIPTION"])


def test_uids_do_not_depend_on_the_profile(cli: Any, tmp_path: Path) -> None:
    a, b = tmp_path / "a.ics", tmp_path / "b.ics"
    write_calendar(cli, a)
    write_calendar(cli, b, env={**AT, "ESIMCTL_HOME": str(tmp_path / "another-home")})
    assert set(events(a)) == set(events(b))
    assert uid_for("demo", TOKYO, "expiry") != uid_for("demo", TOKYO, "runs_out")
    assert uid_for("demo", TOKYO, "expiry") != uid_for("other", TOKYO, "expiry")


# -- where it goes -----------------------------------------------------------------------------


def test_without_a_file_the_calendar_goes_to_stdout(
    cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    r = cli("--demo", "calendar", env=AT)
    assert r.exit_code == 0, r
    assert r.stdout.startswith("BEGIN:VCALENDAR\r\n")
    assert len(events(r.stdout)) == N_EVENTS
    assert list(cwd.iterdir()) == []
    dash = cli("--demo", "calendar", "-o", "-", env=AT)
    assert dash.stdout == r.stdout


def test_json_gives_the_events_as_data(cli: Any, tmp_path: Path) -> None:
    r = cli("--demo", "calendar", "--json", env=AT)
    assert r.exit_code == 0, r
    doc = json.loads(r.stdout)  # nothing but the envelope on stdout
    assert doc["command"] == "calendar" and doc["status"] == "success"
    data = doc["data"]
    assert data["file"] is None
    tokyo = next(e for e in data["events"] if e["kind"] == "expiry" and e["iccid"] == TOKYO)
    assert tokyo == {
        "uid": uid_for("demo", TOKYO, "expiry"),
        "kind": "expiry",
        "account": "demo",
        "iccid": TOKYO,
        "label": "Tokyo",
        "start": "2026-11-29T06:00:00Z",
        "end": "2026-11-29T06:15:00Z",
        "summary": "Tokyo eSIM expires · Nov 29 06:00 UTC",
        "sequence": 0,
    }
    starts = [e["start"] for e in data["events"]]
    assert starts == sorted(starts) and len(starts) == N_EVENTS
    out = tmp_path / "esims.ics"
    written = cli("--demo", "calendar", "-o", str(out), "--json", env=AT).json["data"]
    assert written["file"] == str(out)
    assert {e["uid"] for e in written["events"]} == set(events(out))


def test_account_selects_and_an_unknown_one_is_refused(cli: Any) -> None:
    assert (
        len(cli("--demo", "calendar", "--account", "demo", "--json", env=AT).json["data"]["events"])
        == N_EVENTS
    )
    r = cli("--demo", "calendar", "--account", "nope", env=AT)
    assert r.exit_code == 2, r
    assert r.stdout == ""


def test_the_file_is_replaced_never_rewritten_in_place(cli: Any, tmp_path: Path) -> None:
    out = tmp_path / "synced" / "esims.ics"  # a directory made for it
    write_calendar(cli, out)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600  # private, like all esimctl writes
    before = out.read_bytes()
    inode = out.stat().st_ino
    out.chmod(0o644)  # made readable for a web server: kept so
    with out.open("rb") as reader:  # a subscriber reading the old file meanwhile
        write_calendar(cli, out, env=LATER)
        assert reader.read() == before  # still the whole old calendar: not truncated
    assert out.stat().st_ino != inode
    assert out.read_bytes() != before
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    assert [p.name for p in out.parent.iterdir()] == ["esims.ics"]  # no temp file left


def test_a_symlink_stays_a_link_to_the_new_calendar(cli: Any, tmp_path: Path) -> None:
    synced = tmp_path / "sync"
    synced.mkdir()
    (synced / "esims.ics").write_text("old")
    link = tmp_path / "esims.ics"
    link.symlink_to(synced / "esims.ics")
    write_calendar(cli, link)
    assert link.is_symlink()
    assert len(events(synced / "esims.ics")) == N_EVENTS


@pytest.mark.parametrize("where", ["parent-is-a-file", "a-directory"])
def test_an_unwritable_file_is_one_line_and_exit_1(cli: Any, tmp_path: Path, where: str) -> None:
    (tmp_path / "plain").write_text("keep me")
    target = tmp_path / "plain" / "esims.ics" if where == "parent-is-a-file" else tmp_path
    r = cli("--demo", "calendar", "-o", str(target), env=AT)
    assert r.exit_code == 1, r
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(f"error: cannot write the calendar to {target} (")
    assert "Traceback" not in r.stderr and r.stdout == ""
    assert (tmp_path / "plain").read_text() == "keep me"


def test_an_account_without_figures_leaves_the_last_calendar(
    cli: Any, tmp_path: Path, configure: Any
) -> None:
    """A provider down with nothing cached: its events would vanish from every subscriber's
    calendar, so the file written last stays as it was."""
    configure(
        """
        [accounts.trip]
        provider = "esimgo"
        base_url = "http://127.0.0.1:9"
        retries = 0
        timeout = 2
        """
    )
    out = tmp_path / "esims.ics"
    out.write_bytes(b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n")
    r = cli("calendar", "-o", str(out), env={**AT, "ESIMCTL_TRIP_API_KEY": "k"})
    assert r.exit_code not in (0, 1, 2), r
    assert "error: trip" in r.stderr
    assert f"calendar not written: no figures from trip; {out} is left as it was" in r.stderr
    assert out.read_bytes() == b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n"


def test_no_accounts_is_an_empty_calendar_with_a_hint(cli: Any) -> None:
    r = cli("calendar", env=AT)
    assert r.exit_code == 0, r
    assert events(r.stdout) == {}
    assert "no accounts yet" in r.stderr


# -- start-up: icalendar only for this command -------------------------------------------------

PROBE = textwrap.dedent(
    """
    import json, sys
    from esimctl.cli.app import run
    code = run(sys.argv[1:])
    sys.stdout.flush()
    loaded = sorted({m.split(".")[0] for m in sys.modules} & {"icalendar", "httpx", "keyring"})
    sys.stderr.write("\\nPROBE " + json.dumps({"code": code, "loaded": loaded}) + "\\n")
    """
)


def probe(*args: str) -> dict[str, Any]:
    p = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **AT},
        timeout=60,
    )
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("PROBE "), p.stderr
    report: dict[str, Any] = json.loads(last[len("PROBE ") :])
    return report


@pytest.mark.parametrize(
    ("args", "loaded"),
    [
        (("--demo", "status"), []),
        (("--help",), []),
        (("calendar", "--help"), []),
        (("--demo", "calendar"), ["icalendar"]),
    ],
)
def test_icalendar_is_imported_by_the_calendar_alone(
    args: tuple[str, ...], loaded: list[str]
) -> None:
    assert probe(*args) == {"code": 0, "loaded": loaded}
