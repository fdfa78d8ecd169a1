"""The forecast over synthetic histories (esimctl.forecast): each case states when the data
should run out and checks it within a stated tolerance."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from esimctl.forecast import Reading, forecast, forecastable
from esimctl.models import Esim, EsimState

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
MB = 1_000_000
GB = 1000 * MB
H = timedelta(hours=1)


def steady(per_day: int, *, start: int, hours: int, every: int = 1, total: int = 3 * GB):
    """A reading every ``every`` hours over ``hours`` hours, ``per_day`` bytes used a day."""
    out = []
    for h in range(0, hours + 1, every):
        at = NOW - timedelta(hours=hours - h)
        out.append(Reading(at, start - per_day * h // 24, total))
    return out


def close(a: datetime | None, b: datetime, tolerance: timedelta) -> bool:
    return a is not None and abs(a - b) <= tolerance


def test_steady_use_runs_out_when_the_arithmetic_says() -> None:
    readings = steady(500 * MB, start=2 * GB, hours=48)  # 1 GB left now, 500 MB a day
    f = forecast(readings, now=NOW, expires_at=NOW + timedelta(days=5))
    assert f is not None
    assert f.rate_bytes_per_day == pytest.approx(500 * MB, rel=0.01)
    assert close(f.runs_out_at, NOW + timedelta(days=2), timedelta(minutes=30))
    assert f.runs_out_before_expiry is True and f.left_at_expiry_bytes is None
    assert f.daily_budget_bytes == pytest.approx(200 * MB, rel=0.01)  # 1 GB over 5 days
    assert f.basis_hours == pytest.approx(48)


def test_it_outlasts_the_expiry_and_says_by_how_much() -> None:
    readings = steady(100 * MB, start=2 * GB, hours=24)  # 1.9 GB left, 100 MB a day
    f = forecast(readings, now=NOW, expires_at=NOW + timedelta(days=3))
    assert f is not None and f.runs_out_before_expiry is False
    assert f.left_at_expiry_bytes == pytest.approx(1.6 * GB, rel=0.01)


def test_recent_use_weighs_more_than_last_week() -> None:
    # Six slow days (50 MB a day), then a day at 1 GB: the pace now is the fast one.
    slow = steady(50 * MB, start=3 * GB, hours=6 * 24, every=6)
    base = slow[-1].remaining
    fast = [Reading(NOW + timedelta(hours=h), base - GB * h // 24, 3 * GB) for h in (6, 12, 18, 24)]
    later = NOW + timedelta(days=1)
    f = forecast([*slow, *fast], now=later)
    assert f is not None
    assert 500 * MB < f.rate_bytes_per_day < GB  # nearer the fast day than the average
    plain_average = (6 * 50 * MB + GB) / 7
    assert f.rate_bytes_per_day > 2 * plain_average


def test_a_burst_counts_but_does_not_dominate_a_steady_day() -> None:
    readings = steady(240 * MB, start=2 * GB, hours=24)
    # One hour of a 300 MB video call, an hour ago.
    burst = [
        Reading(r.at, r.remaining - (300 * MB if r.at >= NOW - H else 0), r.total) for r in readings
    ]
    f = forecast(burst, now=NOW)
    assert f is not None
    assert 240 * MB < f.rate_bytes_per_day < 240 * MB + 600 * MB


def test_a_gap_of_days_spreads_its_use_over_the_gap() -> None:
    readings = [
        Reading(NOW - timedelta(days=4), 3 * GB, 3 * GB),
        Reading(NOW - timedelta(days=1), 1800 * MB, 3 * GB),  # 1.2 GB over three days
        Reading(NOW, 1400 * MB, 3 * GB),  # 400 MB in the last day
    ]
    f = forecast(readings, now=NOW)
    assert f is not None
    assert 380 * MB < f.rate_bytes_per_day < 420 * MB
    assert close(f.runs_out_at, NOW + timedelta(days=3.5), timedelta(hours=6))


def test_a_top_up_in_the_middle_is_not_negative_use() -> None:
    readings = [
        Reading(NOW - 24 * H, 500 * MB, 3 * GB),
        Reading(NOW - 12 * H, 300 * MB, 3 * GB),
        Reading(NOW - 11 * H, 1280 * MB, 4 * GB),  # +1 GB top-up, 20 MB used meanwhile
        Reading(NOW, 1080 * MB, 4 * GB),
    ]
    f = forecast(readings, now=NOW)
    assert f is not None
    assert 380 * MB < f.rate_bytes_per_day < 440 * MB  # 420 MB over 24 h, weighted
    assert close(f.runs_out_at, NOW + timedelta(days=1080 / 420), timedelta(hours=3))


def test_a_reading_that_went_up_without_an_order_is_no_use() -> None:
    readings = [
        Reading(NOW - 24 * H, 1000 * MB, 3 * GB),
        Reading(NOW - 12 * H, 800 * MB, 3 * GB),
        Reading(NOW - 11 * H, 900 * MB, 3 * GB),  # a corrected reading: up 100 MB
        Reading(NOW, 700 * MB, 3 * GB),
    ]
    f = forecast(readings, now=NOW)
    assert f is not None
    assert f.rate_bytes_per_day > 0
    # 200 + 0 + 200 MB over 24 h; the correction is never counted as negative use.
    assert 360 * MB < f.rate_bytes_per_day < 440 * MB


def test_clock_skew_between_snapshots_is_put_in_order() -> None:
    readings = steady(480 * MB, start=2 * GB, hours=12)
    shuffled = [readings[5], *readings[:5], *readings[6:], readings[3]]  # out of order, a repeat
    f = forecast(shuffled, now=NOW)
    g = forecast(readings, now=NOW)
    assert f is not None and g is not None
    assert f.rate_bytes_per_day == pytest.approx(g.rate_bytes_per_day)


@pytest.mark.parametrize(
    "readings",
    [
        [],
        [Reading(NOW, GB, 3 * GB)],
        [Reading(NOW - timedelta(minutes=40), GB + 10 * MB, 3 * GB), Reading(NOW, GB, 3 * GB)],
        # Older than the window: nothing recent to stand on.
        [Reading(NOW - timedelta(days=9), 2 * GB), Reading(NOW - timedelta(days=8), GB)],
    ],
)
def test_no_forecast_without_enough_history(readings: list[Reading]) -> None:
    assert forecast(readings, now=NOW) is None


def test_no_use_seen_never_runs_out() -> None:
    readings = [Reading(NOW - 6 * H, GB, 3 * GB), Reading(NOW, GB, 3 * GB)]
    f = forecast(readings, now=NOW, expires_at=NOW + timedelta(days=2))
    assert f is not None and f.runs_out_at is None and f.rate_bytes_per_day == 0
    assert f.runs_out_before_expiry is False and f.left_at_expiry_bytes == GB


def test_unlimited_and_not_active_esims_get_no_forecast() -> None:
    base = Esim("a", "demo", "89", EsimState.ACTIVE, data_remaining_bytes=GB, data_total_bytes=GB)
    assert forecastable(base)
    from dataclasses import replace

    assert not forecastable(replace(base, unlimited=True))
    assert not forecastable(replace(base, state=EsimState.NOT_ACTIVE))
    assert not forecastable(replace(base, data_remaining_bytes=None))
