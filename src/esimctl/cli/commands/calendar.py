"""``esimctl calendar``: the eSIMs' deadlines as an iCalendar file a phone can subscribe to.

One event per eSIM expiry (for an eSIM not yet installed: its install deadline), and one
per forecast run-out that comes before the expiry, each with an alarm ``[calendar]
alarm_before`` ahead. Times are UTC; the summary says the local time and zone too.

A subscriber keeps an event by its UID, so UIDs are stable: a hash of the account, the
ICCID and the kind of event. The file written last is the memory of what was said: an
event whose content changed since gets the next SEQUENCE and a new LAST-MODIFIED, one that
did not keeps both. The file is replaced atomically: a subscriber reading it while it is
written sees the old calendar or the new one, never half of either.

``icalendar`` (RFC 5545 folding, escaping, durations) is imported only here.
"""

from __future__ import annotations

import errno
import hashlib
import shlex
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from esimctl.env import Env
from esimctl.errors import EsimctlError
from esimctl.models import Esim, EsimState
from esimctl.output import human
from esimctl.output.human import esc
from esimctl.serialize import iso
from esimctl.service import fetch_esims, forecast_of, select_accounts

from .common import Result, finish

if TYPE_CHECKING:
    from icalendar import Calendar, Component

    from esimctl.forecast import Forecast

#: Kinds of event, as in JSON and in the UID.
EXPIRY = "expiry"
INSTALL_BY = "install_by"
RUNS_OUT = "runs_out"

#: How long each event lasts on the calendar (the deadline is its start).
LENGTH = timedelta(minutes=15)
#: What a subscriber is asked to wait between two reads of the file (RFC 7986).
REFRESH = timedelta(hours=1)
#: A previous file larger than this is not read for SEQUENCE (it is not one of ours).
PREVIOUS_MAX_BYTES = 4 * 1024 * 1024
#: Properties that change with each run, not with what the event says.
VOLATILE = ("DTSTAMP", "SEQUENCE", "LAST-MODIFIED", "CREATED")


@dataclass(frozen=True)
class CalendarOptions:
    #: The file to write; None or "-": stdout.
    output: str | None = None
    accounts: tuple[str, ...] = ()


@dataclass
class CalendarResult(Result):
    #: The calendar for stdout (None when it went to a file, or was not made).
    ics: str | None = None


@dataclass(frozen=True)
class Deadline:
    """One event: what is due when, about which eSIM."""

    kind: str
    esim: Esim
    at: datetime
    summary: str
    description: str
    uid: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "uid", uid_for(self.esim.account, self.esim.iccid, self.kind))


def uid_for(account: str, iccid: str, kind: str) -> str:
    """The same for the same eSIM and kind on every run, on any machine."""
    digest = hashlib.sha256(f"{account}\0{iccid}\0{kind}".encode()).hexdigest()
    return f"{digest[:32]}@esimctl"


def run_calendar(opts: CalendarOptions, env: Env) -> CalendarResult:
    alarm_before = env.config.calendar().alarm_before
    accounts = select_accounts(env, opts.accounts)
    # As status does: a provider failing now gives its last figures (an expiry is still
    # an expiry), so its events do not vanish from the subscribers' calendars.
    fetched = fetch_esims(env, accounts, allow_stale=True)
    now = env.now()
    esims = [e for lst in fetched.results.values() for e in lst]
    deadlines = [d for e in esims for d in deadlines_of(e, forecast_of(env, e), now)]
    deadlines.sort(key=lambda d: (d.at, d.uid))
    path = None if opts.output in (None, "-") else Path(str(opts.output)).expanduser()

    result = CalendarResult(
        command="calendar",
        data={"file": None, "events": []},
        errors=list(fetched.errors),
        exit_code=fetched.exit_code,
    )
    if not accounts:
        result.notes.append(
            "no accounts yet: run 'esimctl account add NAME --provider PROVIDER', "
            "or try 'esimctl --demo calendar'"
        )
    previous = _previous_events(path) if path is not None else {}
    cal, events = build(deadlines, now=now, alarm_before=alarm_before, previous=previous)
    result.data["events"] = events
    missing = sorted({err.account for err in fetched.errors if err.account} - set(fetched.results))
    if missing:
        # Their events would be missing: a subscriber would delete them. Keep the last file.
        kept = f"{path} is left as it was" if path is not None else "no calendar is printed"
        result.notes.append(
            f"calendar not written: no figures from {', '.join(missing)}; {kept} "
            "(leave an account out with --account NAME)"
        )
        return result
    text = cal.to_ical().decode("utf-8")
    if path is None:
        result.ics = text
        return result
    write(path, text.encode("utf-8"))
    result.data["file"] = str(path)
    n = len(events)
    result.lines.append(
        f"wrote {n} event{'' if n == 1 else 's'} to {esc(path)} (alarms {_before(alarm_before)})"
    )
    return result


def finish_calendar(env: Env, result: CalendarResult, *, json: bool = False) -> int:
    """``finish``, with the calendar itself on stdout when no file was asked for."""
    if result.ics is not None and not json:
        env.stdout.write(result.ics)
        env.stdout.flush()
    return finish(env, result, json=json)


# -- what is due --------------------------------------------------------------------------------


def deadlines_of(e: Esim, f: Forecast | None, now: datetime) -> list[Deadline]:
    """The events of one eSIM: none once it has expired or without a known expiry."""
    if e.expires_at is None or e.expires_at <= now:
        return []
    if e.state in (EsimState.EXPIRED, EsimState.RECYCLED):
        return []
    name = f"{e.label} eSIM" if e.label else f"eSIM …{e.iccid[-6:]}"
    arg = shlex.quote(e.label or e.iccid)
    figures = _figures(e, now)
    where = f"Account: {e.account} ({e.provider}) · ICCID {e.iccid}"
    expiry = _local_and_utc(e.expires_at, now)
    renew = (
        f"To keep it going, see its top-ups and buy one:\n"
        f"  esimctl plans {arg}\n  esimctl renew {arg} --plan PLAN"
    )
    out = []
    if e.state == EsimState.NOT_ACTIVE:
        out.append(
            Deadline(
                INSTALL_BY,
                e,
                e.expires_at,
                f"{name}: install deadline · {_local(e.expires_at, now)}",
                "\n".join(
                    [
                        figures,
                        f"Not installed yet: install it by {expiry}, or it expires unused.",
                        where,
                        f"Details:\n  esimctl show {arg}",
                    ]
                ),
            )
        )
        return out
    out.append(
        Deadline(
            EXPIRY,
            e,
            e.expires_at,
            f"{name} expires · {_local(e.expires_at, now)}",
            "\n".join([figures, f"Expires {expiry}.", where, renew]),
        )
    )
    if f is not None and f.runs_out_at is not None and f.runs_out_before_expiry:
        at = f.runs_out_at
        if at > now:
            pace = human.size(round(f.rate_bytes_per_day), e.unit_base)
            out.append(
                Deadline(
                    RUNS_OUT,
                    e,
                    at,
                    f"{name} runs out of data (forecast) · {_local(at, now)}",
                    "\n".join(
                        [
                            figures,
                            f"At {pace} a day its data runs out {_local_and_utc(at, now)}, "
                            f"before it expires {_local(e.expires_at, now)}.",
                            where,
                            renew,
                        ]
                    ),
                )
            )
    return out


def _figures(e: Esim, now: datetime) -> str:
    plan = e.plan or "plan unknown"
    daily = human.allowance(e, now, sep=", ")
    if daily is not None:
        data = daily
    elif e.unlimited:
        data = "unlimited data"
    elif e.data_remaining_bytes is None:
        data = "data left unknown"
    else:
        data = (
            f"{human.size(e.data_remaining_bytes, e.unit_base)} left of "
            f"{human.size(e.data_total_bytes, e.unit_base)}"
        )
    as_of = f" (as of {_local(e.as_of, now)})" if e.as_of is not None else ""
    return f"{plan}: {data}{as_of}"


def _local(when: datetime, now: datetime) -> str:
    """``Dec 01 12:13 JST``: this machine's local time and zone (the year when not this one)."""
    local = when.astimezone()
    fmt = "%b %d %H:%M" if local.year == now.astimezone().year else "%Y-%m-%d %H:%M"
    return f"{local.strftime(fmt)} {local.tzname() or ''}".rstrip()


def _local_and_utc(when: datetime, now: datetime) -> str:
    """``Dec 01 12:13 JST (03:13 UTC)``; the local time alone when it is UTC."""
    local = _local(when, now)
    if not when.astimezone().utcoffset():
        return local
    return f"{local} ({when.astimezone(UTC).strftime('%Y-%m-%d %H:%M')} UTC)"


def _before(alarm: timedelta) -> str:
    return "at the time" if not alarm else f"{human.relative(alarm)} before"


# -- the iCalendar file -------------------------------------------------------------------------


@dataclass(frozen=True)
class Previous:
    """What the file written last said of one event."""

    content: bytes
    sequence: int
    last_modified: datetime | None
    created: datetime | None


def build(
    deadlines: list[Deadline],
    *,
    now: datetime,
    alarm_before: timedelta,
    previous: dict[str, Previous],
) -> tuple[Calendar, list[dict[str, Any]]]:
    from icalendar import Alarm, Calendar, Event, vDuration

    from esimctl import __version__

    stamp = _second(now)
    cal = Calendar()
    cal.add("prodid", f"-//esimctl//esimctl {__version__}//EN")
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "PUBLISH")
    cal.add("x-wr-calname", "eSIMs")
    cal.add("refresh-interval", REFRESH, parameters={"VALUE": "DURATION"})
    cal.add("x-published-ttl", vDuration(REFRESH))
    records = []
    for d in deadlines:
        start = _second(d.at)
        ev = Event()
        ev.add("uid", d.uid)
        ev.add("dtstart", start)
        ev.add("dtend", start + LENGTH)
        ev.add("summary", d.summary)
        ev.add("description", d.description)
        ev.add("categories", ["eSIM"])
        ev.add("transp", "TRANSPARENT")
        alarm = Alarm()
        alarm.add("action", "DISPLAY")
        alarm.add("description", d.summary)
        alarm.add("trigger", -alarm_before)
        ev.add_component(alarm)
        content = _content(ev)
        before = previous.get(d.uid)
        if before is not None and before.content == content:
            sequence = before.sequence
            modified = before.last_modified or stamp
        else:
            sequence = before.sequence + 1 if before is not None else 0
            modified = stamp
        created = before.created if before is not None and before.created else stamp
        ev.add("dtstamp", stamp)
        ev.add("created", created)
        ev.add("last-modified", modified)
        ev.add("sequence", sequence)
        cal.add_component(ev)
        records.append(
            {
                "uid": d.uid,
                "kind": d.kind,
                "account": d.esim.account,
                "iccid": d.esim.iccid,
                "label": d.esim.label,
                "start": iso(start),
                "end": iso(start + LENGTH),
                "summary": d.summary,
                "sequence": sequence,
            }
        )
    return cal, records


def _second(dt: datetime) -> datetime:
    return dt.astimezone(UTC).replace(microsecond=0)


def _content(ev: Component) -> bytes:
    """What an event says, without what changes with each run."""
    from icalendar import Event

    copy = Event.from_ical(ev.to_ical())
    assert isinstance(copy, Event)
    for name in VOLATILE:
        copy.pop(name, None)
    return bytes(copy.to_ical())


def _previous_events(path: Path) -> dict[str, Previous]:
    """The events of the file written last, by UID; nothing when there is none to read."""
    try:
        if not path.is_file() or path.stat().st_size > PREVIOUS_MAX_BYTES:
            return {}
        raw = path.read_bytes()
    except OSError:
        return {}
    from icalendar import Calendar

    try:
        cal = Calendar.from_ical(raw)
        out = {}
        for ev in cal.walk("VEVENT"):
            uid = str(ev.get("UID", ""))
            if not uid.endswith("@esimctl"):
                continue
            out[uid] = Previous(
                content=_content(ev),
                sequence=max(int(ev.get("SEQUENCE", 0)), 0),
                last_modified=_when(ev, "LAST-MODIFIED"),
                created=_when(ev, "CREATED"),
            )
        return out
    except (ValueError, TypeError, KeyError):
        return {}  # not a calendar (any more): every event starts again at SEQUENCE 0


def _when(ev: Component, name: str) -> datetime | None:
    if name not in ev:
        return None
    value = ev.decoded(name)
    return value if isinstance(value, datetime) and value.tzinfo is not None else None


def write(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically, keeping its mode (new files: 0600, like all of esimctl's).

    A symbolic link (into a synced folder) stays a link: its target is replaced."""
    from esimctl.paths import atomic_write

    target = path.resolve()
    try:
        if target.is_dir():
            raise IsADirectoryError(errno.EISDIR, "is a directory")
        above = next(p for p in target.parents if p.exists())
        if not above.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, f"{above} is not a directory")
        mode = target.stat().st_mode & 0o777 if target.is_file() else 0o600
        atomic_write(target, data, mode=mode)
    except OSError as exc:
        why = getattr(exc, "why", None) or exc.strerror or type(exc).__name__
        raise EsimctlError(
            f"cannot write the calendar to {path} ({str(why).lower()}): choose another file with -o"
        ) from None
