"""When will it run out, at the pace of use: a forecast from the usage snapshots.

Every figure esimctl was given (a provider's fetch, a manual reading) is kept in the
ledger with its *as of* time. From those of the last ``WINDOW`` the forecast finds the
recent rate of use and says when the data runs out at that rate, whether that is before
the package expires, and how much a day can be used to last until it does.

- **Use, not change.** Between two readings, use is what the remaining figure fell by,
  plus what a top-up added (the total grew by it): a top-up is not negative use. A
  figure that went up without a larger total (a manual correction, a provider's late
  update) is no use, never negative.
- **Recent first.** Each interval counts by its length and by how recent it is, halving
  every ``HALF_LIFE``: yesterday's pace matters more than last week's, and a gap of days
  between readings spreads its use over the gap instead of making a spike.
- **Clock skew.** Readings are ordered by their *as of* time; one that goes back in time
  or repeats a moment adds nothing.
- **Honest about its basis.** No forecast from fewer than two readings or less than
  ``MIN_BASIS`` between the first and the last, nor for an unlimited eSIM or one that is
  not in use; ``basis_hours`` says what it stands on.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from esimctl.models import Esim, EsimState

#: How far back readings count.
WINDOW = timedelta(days=7)
#: Weight of an interval halves with every this much age.
HALF_LIFE = timedelta(hours=24)
#: The least span of readings a forecast stands on.
MIN_BASIS = timedelta(hours=1)

DAY = 86_400.0


@dataclass(frozen=True)
class Reading:
    """One figure as it was at ``at``: data left, and the total it was left of."""

    at: datetime
    remaining: int
    total: int | None = None


@dataclass(frozen=True)
class Forecast:
    #: Bytes used a day, recent days weighted most.
    rate_bytes_per_day: float
    #: When the data runs out at that rate; None when no use was seen.
    runs_out_at: datetime | None
    #: True if that is before the package expires; None without an expiry or a run-out.
    runs_out_before_expiry: bool | None
    #: What is left when the package expires, if it outlasts the expiry; else None.
    left_at_expiry_bytes: int | None
    #: Bytes a day that last exactly until the expiry; None without a future expiry.
    daily_budget_bytes: int | None
    #: Hours between the first and the last reading the forecast stands on.
    basis_hours: float

    def to_json(self) -> dict[str, Any]:
        from esimctl.serialize import iso

        return {
            "rate_bytes_per_day": round(self.rate_bytes_per_day),
            "runs_out_at": iso(self.runs_out_at),
            "runs_out_before_expiry": self.runs_out_before_expiry,
            "left_at_expiry_bytes": self.left_at_expiry_bytes,
            "daily_budget_bytes": self.daily_budget_bytes,
            "basis_hours": round(self.basis_hours, 1),
        }


def forecastable(e: Esim) -> bool:
    """An eSIM in use with a figure that can run out (a day pass's daily figure cannot:
    the allowance comes back every day)."""
    return (
        e.state == EsimState.ACTIVE and not e.never_runs_out and e.data_remaining_bytes is not None
    )


def _ordered(readings: Iterable[Reading], since: datetime) -> list[Reading]:
    out: list[Reading] = []
    for r in sorted((r for r in readings if r.at >= since), key=lambda r: r.at):
        if out and r.at <= out[-1].at:
            out[-1] = r  # the same moment told twice: the later word stands
            continue
        out.append(r)
    return out


def forecast(
    readings: Iterable[Reading],
    *,
    now: datetime,
    expires_at: datetime | None = None,
    half_life: timedelta = HALF_LIFE,
) -> Forecast | None:
    """The forecast from ``readings`` (the latest one is what is left now), or None when
    they are too few or too close together to stand on."""
    points = _ordered(readings, now - WINDOW)
    if len(points) < 2 or points[-1].at - points[0].at < MIN_BASIS:
        return None
    used_w = 0.0
    time_w = 0.0
    for prev, cur in itertools.pairwise(points):
        seconds = (cur.at - prev.at).total_seconds()
        added = 0
        if prev.total is not None and cur.total is not None and cur.total > prev.total:
            added = cur.total - prev.total
        used = max(prev.remaining + added - cur.remaining, 0)
        age = max((now - cur.at).total_seconds(), 0.0)
        weight = 0.5 ** (age / half_life.total_seconds())
        used_w += weight * used
        time_w += weight * seconds
    rate = used_w / time_w * DAY if time_w > 0 else 0.0
    last = points[-1]
    runs_out = None
    if rate > 0:
        runs_out = last.at + timedelta(days=last.remaining / rate)
    before = None
    left_at_expiry = None
    if expires_at is not None and runs_out is not None:
        before = runs_out < expires_at
        if not before:
            days_left = max((expires_at - last.at).total_seconds(), 0.0) / DAY
            left_at_expiry = max(int(last.remaining - rate * days_left), 0)
    elif expires_at is not None and rate == 0:
        before = False
        left_at_expiry = last.remaining
    budget = None
    if expires_at is not None and expires_at > now:
        budget = int(last.remaining / ((expires_at - now).total_seconds() / DAY))
    return Forecast(
        rate_bytes_per_day=rate,
        runs_out_at=runs_out,
        runs_out_before_expiry=before,
        left_at_expiry_bytes=left_at_expiry,
        daily_budget_bytes=budget,
        basis_hours=(last.at - points[0].at).total_seconds() / 3600,
    )
