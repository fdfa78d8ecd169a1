from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from esimctl import parsing
from esimctl.errors import InvalidInput
from esimctl.models import Money
from esimctl.output import human


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("500MB", 500 * 1024**2),
        ("1.5GB", int(1.5 * 1024**3)),
        ("3 gb", 3 * 1024**3),
        ("2GiB", 2 * 1024**3),
        ("100B", 100),
        ("10KB", 10 * 1024),
    ],
)
def test_size_binary(text: str, expected: int) -> None:
    assert parsing.size(text) == expected


def test_size_decimal_base_for_esimgo() -> None:
    assert parsing.size("1GB", base=1000) == 1_000_000_000
    assert parsing.size("1GiB", base=1000) == 1024**3


@pytest.mark.parametrize("bad", ["", "GB", "1.2.3GB", "-1GB", "5 parsecs", "1e3MB", "3", "500"])
def test_size_rejects(bad: str) -> None:
    with pytest.raises(InvalidInput, match="invalid size"):
        parsing.size(bad)


@pytest.mark.parametrize(
    ("text", "amount", "cur"),
    [
        ("15USD", "15", "USD"),
        ("15 usd", "15", "USD"),
        ("USD 4.50", "4.50", "USD"),
        ("58cny", "58", "CNY"),
    ],
)
def test_money(text: str, amount: str, cur: str) -> None:
    assert parsing.money(text) == Money(Decimal(amount), cur)


@pytest.mark.parametrize("bad", ["15", "USD", "15 US", "15.123456USD", "fifteen USD", "15 DOLLARS"])
def test_money_rejects(bad: str) -> None:
    with pytest.raises(InvalidInput, match="invalid price"):
        parsing.money(bad)


def test_money_json_keeps_minor_units_of_the_currency() -> None:
    assert Money(Decimal("4.5"), "USD").to_json() == {"amount": "4.50", "currency": "USD"}
    assert Money(Decimal("1480"), "JPY").to_json() == {"amount": "1480", "currency": "JPY"}
    # Shown in minor units, half up: never lower than it is.
    assert Money(Decimal("0.125"), "USD").to_json()["amount"] == "0.13"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2d", timedelta(days=2)),
        ("36h", timedelta(hours=36)),
        ("90m", timedelta(minutes=90)),
        ("1w", timedelta(weeks=1)),
    ],
)
def test_duration(text: str, expected: timedelta) -> None:
    assert parsing.duration(text) == expected


@pytest.mark.parametrize("bad", ["2", "d", "2 days", "-1d", "2y"])
def test_duration_rejects(bad: str) -> None:
    with pytest.raises(InvalidInput, match="invalid duration"):
        parsing.duration(bad)


@pytest.mark.parametrize(
    "good", ["89811000000000000018", "8981100000000000018", "8981 1000 0000 0000 018"]
)
def test_iccid(good: str) -> None:
    assert parsing.iccid(good).isdigit()


@pytest.mark.parametrize("bad", ["1234", "89811000000000000018X", "8981-1000", "8" * 23])
def test_iccid_rejects(bad: str) -> None:
    with pytest.raises(InvalidInput, match="invalid ICCID"):
        parsing.iccid(bad)


def test_when_accepts_dates_times_and_ages() -> None:
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    assert parsing.when("7d", now=now) == now - timedelta(days=7)
    assert parsing.when("2026-11-01T08:00:00Z") == datetime(2026, 11, 1, 8, tzinfo=UTC)
    assert parsing.when("2026-11-01").date().isoformat() in ("2026-11-01", "2026-10-31")
    with pytest.raises(InvalidInput, match="invalid date"):
        parsing.when("yesterday")


@pytest.mark.parametrize("bad", ["", "has space", "semi;colon", "x" * 65, "ünï"])
def test_account_name_rejects(bad: str) -> None:
    with pytest.raises(InvalidInput):
        parsing.account_name(bad)


def test_sizes_read_like_the_providers_app() -> None:
    assert human.size(3 * 1024**3, 1024) == "3 GB"
    assert human.size(3_000_000_000, 1000) == "3 GB"
    assert human.size(int(1.2 * 1024**3), 1024) == "1.2 GB"
    assert human.size(307 * 1024**2, 1024) == "307 MB"


def test_relative_times() -> None:
    assert human.relative(timedelta(days=2, hours=4, minutes=3)) == "2 d 4 h"
    assert human.relative(timedelta(hours=5, minutes=10)) == "5 h 10 m"
    assert human.relative(timedelta(days=12, hours=3)) == "12 d"
    now = datetime(2026, 11, 28, tzinfo=UTC)
    assert human.until(now + timedelta(days=2, hours=4), now) == "in 2 d 4 h"
    assert human.until(now - timedelta(days=3), now) == "3 d ago"
