"""The provider kit on its own: values, units, OAuth tokens, pagers, bounded concurrency."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from esimctl.config import AccountConfig
from esimctl.errors import AuthRejected, NotFound
from esimctl.models import Money
from esimctl.providers.base import ProviderContext, SecretCache
from esimctl.providers.kit.concurrency import DEFAULT_CONCURRENCY, bounded_map
from esimctl.providers.kit.oauth import FetchedToken, TokenSource, token_key
from esimctl.providers.kit.paging import (
    counted_pages,
    cursor_pages,
    json_key,
    numbered_pages,
)
from esimctl.providers.kit.units import to_bytes, to_money, unit_factor
from esimctl.providers.kit.values import (
    as_dict,
    as_list,
    parse_time,
    records,
    to_bool,
    to_decimal,
    to_int,
    to_str,
)

T0 = datetime(2025, 6, 16, 8, 2, 11, tzinfo=UTC)
MiB = 1024**2


# -- parse_time ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        # ISO 8601 in every dialect the four providers receive
        ("2025-06-16T08:02:11Z", T0),
        ("2025-06-16T08:02:11z", T0),
        ("2025-06-16T08:02:11+00:00", T0),
        ("2025-06-16T08:02:11+0000", T0),  # eSIM Access: no colon
        ("2025-06-16T10:02:11+0200", T0),
        ("2025-06-16T10:02:11+02:00", T0),
        ("2025-06-16T10:02:11+02", T0),
        ("2025-06-16T04:02:11-04:00", T0),
        ("2025-06-16 08:02:11", T0),  # Airalo: space, no zone = UTC
        ("2025-06-16T08:02:11", T0),  # naive = UTC
        ("2025-06-16 08:02:11 UTC", T0),
        ("2025-06-16T08:02:11UTC", T0),
        ("2025-06-16 08:02:11 GMT", T0),
        ("  2025-06-16T08:02:11Z  ", T0),
        ("2025-06-16", datetime(2025, 6, 16, tzinfo=UTC)),  # Celitech: a bare date
        ("2025-06-16T08:02:11.250Z", T0.replace(microsecond=250000)),
        ("2025-03-28T14:47:26.153875019Z", datetime(2025, 3, 28, 14, 47, 26, 153875, tzinfo=UTC)),
        # epoch, seconds below 1e11 and milliseconds at or above it
        (1750060931, T0),
        (1750060931000, T0),
        ("1750060931", T0),
        ("1750060931000", T0),
        (" 1750060931 ", T0),
        (1750060931.0, T0),
        (Decimal("1750060931"), T0),
        ("1.750060931e9", T0),
        ("1_750_060_931", T0),  # as float() reads it
        (1718357657123, datetime(2024, 6, 14, 9, 34, 17, 123000, tzinfo=UTC)),
        (99_999_999_999, datetime.fromtimestamp(99_999_999_999, UTC)),  # just below: seconds
        (100_000_000_000, datetime.fromtimestamp(100_000_000, UTC)),  # at 1e11: ms (1973)
    ],
)
def test_parse_time_reads_every_dialect(raw: Any, want: datetime) -> None:
    got = parse_time(raw)
    assert got == want
    assert got is not None and got.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "",
        "   ",
        "not a time",
        "soon",
        "2025-13-01T00:00:00Z",
        "2025-06-16T25:00:00",
        True,
        False,
        0,
        "0",
        -5,
        "-1750060931",
        float("nan"),
        "NaN",
        float("inf"),
        "1e999",
        1e30,
        10**400,
        {"t": 1},
        [1750060931],
        "0001-01-01T00:30:00+01:00",  # before year 1 in UTC: no time, never an error
        "9999-12-31T23:30:00-01:00",  # after year 9999 in UTC
    ],
)
def test_parse_time_gives_none_for_junk_and_never_raises(raw: Any) -> None:
    assert parse_time(raw) is None


def test_parse_time_takes_extra_formats_after_iso() -> None:
    assert parse_time("16/06/2025 08:02") is None
    assert parse_time("16/06/2025 08:02", formats=["%d/%m/%Y %H:%M"]) == T0.replace(second=0)
    got = parse_time("16.06.2025 10:02:11 +0200", formats=["%Y", "%d.%m.%Y %H:%M:%S %z"])
    assert got == T0 and got.tzinfo is UTC
    assert parse_time("junk", formats=["%Y"]) is None


# -- numbers and containers ----------------------------------------------------------------


def test_to_decimal_keeps_finite_figures_as_given() -> None:
    assert to_decimal("9.50") == Decimal("9.50") and str(to_decimal("9.50")) == "9.50"
    assert to_decimal(4.21) == Decimal("4.21")  # the float's shortest text, not its binary
    assert to_decimal(10) == 10 and to_decimal(" -5 ") == -5
    assert to_decimal(Decimal("1.5")) == Decimal("1.5")
    assert to_decimal("1e308") == Decimal("1e308")
    assert to_decimal("0E+5000") == 0  # zero in any form


@pytest.mark.parametrize(
    "junk",
    [None, True, False, "", "n/a", "NaN", "nan", float("nan"), float("inf"), "-Infinity",
     "1e999999", "1e-99999", {"a": 1}, [1], (1,), object()],
)  # fmt: skip
def test_to_decimal_refuses_junk(junk: Any) -> None:
    assert to_decimal(junk) is None


def test_to_decimal_exponent_limit_is_the_callers() -> None:
    assert to_decimal("1e500") == Decimal("1e500")
    assert to_decimal("1e500", max_exponent=400) is None


def test_to_int() -> None:
    assert to_int("7") == 7 and to_int(7.0) == 7 and to_int("25") == 25 and to_int(" 3 ") == 3
    assert to_int(10**30) == 10**30 and to_int(1e30) == 10**30 and to_int("-5") == -5
    assert to_int("7.5") is None and to_int(1.5) is None  # never rounded into a whole number
    assert to_int(7.9, exact=False) == 7 and to_int("-7.9", exact=False) == -7
    for junk in (None, True, False, "x", float("nan"), "1e999999999", [7]):
        assert to_int(junk) is None, junk


def test_to_bool_str_and_containers() -> None:
    assert to_bool(True) is True and to_bool(" TRUE ") is True and to_bool("false") is False
    assert to_bool(1) is None and to_bool("yes") is None and to_bool(None) is None
    assert to_str("  x ") == "x" and to_str(7) == "7"
    assert to_str("  ") is None and to_str(None) is None and to_str({}) is None
    d = {"a": 1}
    assert as_dict(d) is d and as_dict(None) == {} and as_dict([1]) == {}
    items = [1, {}]
    assert as_list(items) is items and as_list((1, 2)) == [1, 2] and as_list({"a": 1}) == []
    assert records([]) == [] and records([{"a": 1}]) == [{"a": 1}]
    for body in (None, {}, {"data": []}, [1], [{"a": 1}, None], "x"):
        assert records(body) is None, body


# -- units ---------------------------------------------------------------------------------


def test_to_bytes_units_and_bases() -> None:
    assert to_bytes(3072) == 3 * 1024**3  # MB of 1024 by default
    assert to_bytes("512.5") == 512 * MiB + MiB // 2
    assert to_bytes(0.5) == MiB // 2  # half a MB is never 0
    assert to_bytes(1, "GB", base=1000) == 10**9
    assert to_bytes("1.5", "MB", base=1000) == 1_500_000
    assert to_bytes(1, "GiB", base=1000) == 1024**3
    assert to_bytes(5, "bytes") == 5 and to_bytes(-5) == -5 * MiB
    assert to_bytes(1e30) == 10**30 * MiB  # absurd, exact: the validator names it
    for junk in (None, True, "lots", float("nan"), float("inf"), "1e999999", [1]):
        assert to_bytes(junk) is None, junk
    assert to_bytes(1, "parsecs") is None


def test_to_bytes_rounding_and_limit() -> None:
    third = Decimal(1) / 3
    assert to_bytes(third, "B", rounding="half_up") == 0
    assert to_bytes("0.6", "B", rounding="half_up") == 1
    assert to_bytes("0.6", "B", rounding="down") == 0
    assert to_bytes("-1.6", "B", rounding="down") == -1
    assert to_bytes("0.6", "B", rounding="exact") is None
    assert to_bytes("1.5", "KB", base=1000, rounding="exact") == 1500
    assert to_bytes(1e308) is None  # beyond any float: no number
    assert to_bytes(1e308, max_bytes=None) == int(Decimal("1e308") * MiB)


def test_unit_factor() -> None:
    assert unit_factor("MB") == MiB and unit_factor("mb", 1000) == 10**6
    assert unit_factor("TB", 1000) == 10**12 and unit_factor("KiB", 1000) == 1024
    assert unit_factor("G", 1024) == 1024**3 and unit_factor("B") == 1
    assert unit_factor("XB") is None
    with pytest.raises(ValueError):
        unit_factor("MB", 999)


def test_to_money_major_and_minor_units() -> None:
    assert to_money("9.50", "USD") == Money(Decimal("9.50"), "USD")
    assert to_money(140, "USD", scale=100) == Money(Decimal("1.40"), "USD")
    assert to_money(-140, "USD", scale=100) == Money(Decimal("-1.40"), "USD")
    assert to_money(0, "USD", scale=100) == Money(Decimal(0), "USD")
    assert to_money(27300, "USD", scale=10_000) == Money(Decimal("2.73"), "USD")
    assert to_money("1E+310", "USD", scale=100) == Money(Decimal("1E+308"), "USD")
    for junk in ("NaN", None, True, float("inf"), "free"):
        assert to_money(junk, "USD") is None, junk


# -- OAuth ---------------------------------------------------------------------------------


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Fetcher:
    """A token endpoint: counts calls, hands out tok1, tok2, ..."""

    def __init__(self, expires_in: Any = 3600, delay: float = 0.0) -> None:
        self.calls = 0
        self.expires_in = expires_in
        self.delay = delay

    async def __call__(self) -> FetchedToken:
        self.calls += 1
        n = self.calls
        if self.delay:
            await asyncio.sleep(self.delay)
        return FetchedToken(f"tok{n}", self.expires_in, {"auth_style": "post"})


def _ctx(tmp_path: Path, clock: Clock, cache: SecretCache | None = None) -> ProviderContext:
    return ProviderContext(
        account=AccountConfig(name="trip", provider="celitech"),
        secrets={},
        clock=clock,
        state_dir=tmp_path,
        token_cache=cache or SecretCache(),
    )


def _store() -> tuple[SecretCache, dict[str, dict[str, str]]]:
    box: dict[str, dict[str, str]] = {}

    def load() -> dict[str, str] | None:
        return box.get("v")

    def save(v: dict[str, str]) -> None:
        box["v"] = dict(v)

    return SecretCache(load, save), box


def test_token_is_reused_until_the_margin_then_renewed(tmp_path: Path) -> None:
    clock = Clock()
    fetch = Fetcher(expires_in=3600)
    src = TokenSource(_ctx(tmp_path, clock), fetch, key="k", margin=timedelta(minutes=5))

    async def run() -> list[str]:
        got = [await src.token()]
        clock.now = T0 + timedelta(minutes=54, seconds=59)  # 5 min and 1 s before the end
        got.append(await src.token())
        clock.now = T0 + timedelta(minutes=55)  # inside the margin: renewed
        got.append(await src.token())
        return got

    assert asyncio.run(run()) == ["tok1", "tok1", "tok2"]
    assert fetch.calls == 2


def test_token_lifetime_default_and_cap(tmp_path: Path) -> None:
    for expires_in, lifetime in (
        (None, timedelta(hours=1)),
        ("junk", timedelta(hours=1)),
        (0, timedelta(hours=1)),
        (-5, timedelta(hours=1)),
        ("7200", timedelta(hours=2)),
        (31_622_400, timedelta(hours=24)),  # Airalo's example: capped at 24 h
        (1e300, timedelta(hours=24)),  # beyond any calendar: the cap, no error
    ):
        cache, box = _store()
        src = TokenSource(
            _ctx(tmp_path, Clock(), cache),
            Fetcher(expires_in),
            key="k",
            max_lifetime=timedelta(hours=24),
        )
        asyncio.run(src.token())
        assert parse_time(box["v"]["expires_at"]) == T0 + lifetime, expires_in


def test_token_is_cached_between_runs_with_iso_expiry_and_extra(tmp_path: Path) -> None:
    cache, box = _store()
    clock = Clock()
    first = Fetcher()
    asyncio.run(TokenSource(_ctx(tmp_path, clock, cache), first, key="k").token())
    assert box["v"] == {
        "key": "k",
        "access_token": "tok1",
        "expires_at": "2025-06-16T09:02:11+00:00",
        "auth_style": "post",
    }
    # Next run: a new source, the same store, no fetch.
    later = Fetcher()
    src = TokenSource(_ctx(tmp_path, clock, cache), later, key="k")
    assert asyncio.run(src.token()) == "tok1" and later.calls == 0
    assert src.extra == {"auth_style": "post"}
    # Other credentials (another key): never reused.
    other = Fetcher()
    assert asyncio.run(TokenSource(_ctx(tmp_path, clock, cache), other, key="x").token()) == "tok1"
    assert other.calls == 1 and box["v"]["key"] == "x"


def test_token_cache_of_airalo_and_celitech_formats_is_read(tmp_path: Path) -> None:
    clock = Clock()
    airalo = {
        "access_token": "air",
        "expires_at": (T0 + timedelta(hours=2)).isoformat(),
        "key": token_key("https://partners-api.airalo.com", "id"),
    }
    celitech = {
        "key": token_key("id", "https://auth.celitech.net/oauth2/token", length=24),
        "access_token": "celi",
        "expires_at": f"{(T0 + timedelta(hours=2)).timestamp():.0f}",  # epoch seconds
        "auth_style": "basic",
    }
    for record in (airalo, celitech):
        cache, _ = _store()
        cache.set(dict(record))
        fetch = Fetcher()
        src = TokenSource(_ctx(tmp_path, clock, cache), fetch, key=record["key"])
        assert asyncio.run(src.token()) == record["access_token"] and fetch.calls == 0
    assert src.extra == {"auth_style": "basic"}
    assert len(airalo["key"]) == 16 and len(celitech["key"]) == 24


@pytest.mark.parametrize(
    "record",
    [
        {"key": "k", "access_token": "old", "expires_at": "0"},  # Celitech's default
        {"key": "k", "access_token": "old", "expires_at": "soon"},
        {"key": "k", "access_token": "old"},
        {"key": "k", "access_token": "", "expires_at": "2099-01-01T00:00:00+00:00"},
        {"key": "k", "expires_at": "2099-01-01T00:00:00+00:00"},
        {"access_token": "old", "expires_at": "2099-01-01T00:00:00+00:00"},
        {"sign_with": "access_code"},  # eSIM Access's record in the same store
        {"key": "k", "access_token": "old", "expires_at": T0.isoformat()},  # due now
    ],
)
def test_an_unusable_cache_record_is_ignored_and_replaced(
    tmp_path: Path, record: dict[str, str]
) -> None:
    cache, box = _store()
    cache.set(dict(record))
    fetch = Fetcher()
    src = TokenSource(_ctx(tmp_path, Clock(), cache), fetch, key="k")
    assert asyncio.run(src.token()) == "tok1" and fetch.calls == 1
    assert box["v"]["access_token"] == "tok1"


def test_one_fetch_for_concurrent_callers(tmp_path: Path) -> None:
    fetch = Fetcher(delay=0.01)
    src = TokenSource(_ctx(tmp_path, Clock()), fetch, key="k")

    async def run() -> list[str]:
        return list(await asyncio.gather(*(src.token() for _ in range(20))))

    assert asyncio.run(run()) == ["tok1"] * 20
    assert fetch.calls == 1


def test_a_rejected_token_is_renewed_once_for_concurrent_callers(tmp_path: Path) -> None:
    fetch = Fetcher(delay=0.01)
    src = TokenSource(_ctx(tmp_path, Clock()), fetch, key="k")

    async def run() -> list[str]:
        await src.token()
        return list(await asyncio.gather(*(src.token(rejected="tok1") for _ in range(5))))

    assert asyncio.run(run()) == ["tok2"] * 5
    assert fetch.calls == 2


def test_a_rejected_token_is_never_read_back_from_the_cache(tmp_path: Path) -> None:
    cache, _ = _store()
    cache.set({"key": "k", "access_token": "old", "expires_at": "2099-01-01T00:00:00+00:00"})
    fetch = Fetcher()
    src = TokenSource(_ctx(tmp_path, Clock(), cache), fetch, key="k")

    async def run() -> tuple[str, str, str]:
        return await src.token(), await src.token(rejected="old"), await src.token(fresh=True)

    assert asyncio.run(run()) == ("old", "tok1", "tok2")


class Api:
    """A resource server that refuses the first ``refusals`` requests with 401."""

    def __init__(self, refusals: int, error: type[AuthRejected] = AuthRejected) -> None:
        self.refusals = refusals
        self.error = error
        self.seen: list[str] = []

    async def __call__(self, headers: dict[str, str]) -> str:
        self.seen.append(headers["Authorization"])
        if len(self.seen) <= self.refusals:
            raise self.error("token refused")
        return "ok"


def test_with_bearer_sends_the_token(tmp_path: Path) -> None:
    fetch = Fetcher()
    src = TokenSource(_ctx(tmp_path, Clock()), fetch, key="k")
    api = Api(0)
    assert asyncio.run(src.with_bearer(api)) == "ok"
    assert api.seen == ["Bearer tok1"] and fetch.calls == 1


def test_with_bearer_retries_exactly_once_after_a_401(tmp_path: Path) -> None:
    fetch = Fetcher()
    src = TokenSource(_ctx(tmp_path, Clock()), fetch, key="k")
    api = Api(1)
    assert asyncio.run(src.with_bearer(api)) == "ok"
    assert api.seen == ["Bearer tok1", "Bearer tok2"] and fetch.calls == 2

    fetch2 = Fetcher()
    src2 = TokenSource(_ctx(tmp_path, Clock()), fetch2, key="k")
    api2 = Api(5)
    with pytest.raises(AuthRejected, match="token refused"):
        asyncio.run(src2.with_bearer(api2))
    assert api2.seen == ["Bearer tok1", "Bearer tok2"] and fetch2.calls == 2


def test_with_bearer_retries_only_what_retry_if_accepts(tmp_path: Path) -> None:
    class IpRefused(AuthRejected):
        pass

    fetch = Fetcher()
    src = TokenSource(_ctx(tmp_path, Clock()), fetch, key="k")
    api = Api(1, IpRefused)
    with pytest.raises(IpRefused):
        asyncio.run(src.with_bearer(api, retry_if=lambda e: not isinstance(e, IpRefused)))
    assert len(api.seen) == 1 and fetch.calls == 1


def test_with_bearer_never_retries_other_errors_or_a_refused_secret(tmp_path: Path) -> None:
    async def gone(headers: dict[str, str]) -> str:
        raise NotFound("no such eSIM")

    fetch = Fetcher()
    src = TokenSource(_ctx(tmp_path, Clock()), fetch, key="k")
    with pytest.raises(NotFound):
        asyncio.run(src.with_bearer(gone))
    assert fetch.calls == 1

    async def refuse() -> FetchedToken:
        raise AuthRejected("client secret refused")

    api = Api(0)
    bad = TokenSource(_ctx(tmp_path, Clock()), refuse, key="k")
    with pytest.raises(AuthRejected, match="client secret"):
        asyncio.run(bad.with_bearer(api))
    assert api.seen == []


def test_token_source_works_across_event_loops(tmp_path: Path) -> None:
    fetch = Fetcher(delay=0.001)
    src = TokenSource(_ctx(tmp_path, Clock()), fetch, key="k")

    async def many() -> None:
        await asyncio.gather(*(src.token(fresh=True) for _ in range(3)))

    asyncio.run(many())
    asyncio.run(many())  # a lock of the first loop would fail here
    assert fetch.calls == 6


# -- paging --------------------------------------------------------------------------------


def test_numbered_pages_follow_more_until_it_ends() -> None:
    data = {1: ["a", "b"], 2: ["c", "d"], 3: ["e"]}
    asked: list[int] = []

    async def fetch(page: int) -> tuple[list[str], bool]:
        asked.append(page)
        return data.get(page, []), page < 3

    assert asyncio.run(numbered_pages(fetch)) == ["a", "b", "c", "d", "e"]
    assert asked == [1, 2, 3]


def test_numbered_pages_stop_at_empty_repeat_and_limit() -> None:
    asked: list[int] = []

    async def empty_at_2(page: int) -> tuple[list[int], bool]:
        asked.append(page)
        return ([page] if page < 2 else []), True

    assert asyncio.run(numbered_pages(empty_at_2)) == [1] and asked == [1, 2]

    asked.clear()

    async def ignores_page(page: int) -> tuple[list[dict[str, int]], bool]:
        asked.append(page)
        return [{"id": 1}, {"id": 2}], True  # a server that ignores ``page``, forever

    assert asyncio.run(numbered_pages(ignores_page)) == [{"id": 1}, {"id": 2}]
    assert asked == [1, 2]

    asked.clear()

    async def endless(page: int) -> tuple[list[int], bool]:
        asked.append(page)
        return [page], True

    assert asyncio.run(numbered_pages(endless, max_pages=7)) == list(range(1, 8))
    assert asked == list(range(1, 8))
    asked.clear()
    assert asyncio.run(numbered_pages(endless, first=0, max_pages=2)) == [0, 1]


def test_numbered_pages_dedupe_drops_items_seen_and_ends_on_nothing_new() -> None:
    pages = {1: [{"i": 1}, {"i": 2}], 2: [{"i": 2}, {"i": 3}], 3: [{"i": 3}, {"i": 1}]}
    asked: list[int] = []

    async def fetch(page: int) -> tuple[list[dict[str, int]], bool]:
        asked.append(page)
        return pages[page], True

    got = asyncio.run(numbered_pages(fetch, dedupe=json_key))
    assert got == [{"i": 1}, {"i": 2}, {"i": 3}] and asked == [1, 2, 3]


def test_counted_pages_read_until_the_total() -> None:
    rows = list(range(7))
    asked: list[int] = []

    async def fetch(page: int) -> tuple[list[int], int | None]:
        asked.append(page)
        return rows[(page - 1) * 3 : page * 3], len(rows)

    assert asyncio.run(counted_pages(fetch)) == rows and asked == [1, 2, 3]

    asked.clear()

    async def by_pages(page: int) -> tuple[list[int], int | None]:
        asked.append(page)
        return [page * 10, page * 10 + 1], 2  # pageCount 2

    assert asyncio.run(counted_pages(by_pages, counts="pages")) == [10, 11, 20, 21]
    assert asked == [1, 2]


def test_counted_pages_stop_without_total_at_empty_repeat_and_limit() -> None:
    async def no_total(page: int) -> tuple[list[int], int | None]:
        return [page], None

    assert asyncio.run(counted_pages(no_total)) == [1]

    async def short(page: int) -> tuple[list[int], int | None]:
        return ([1, 2] if page == 1 else []), 100  # the total promises more than comes

    assert asyncio.run(counted_pages(short)) == [1, 2]

    async def same(page: int) -> tuple[list[int], int | None]:
        return [1, 2], 100

    assert asyncio.run(counted_pages(same)) == [1, 2]

    async def endless(page: int) -> tuple[list[int], int | None]:
        return [page], 10**9

    assert asyncio.run(counted_pages(endless, max_pages=4)) == [1, 2, 3, 4]


def test_cursor_pages_follow_cursors_and_stop() -> None:
    chain: dict[str | None, tuple[list[str], str | None]] = {
        None: (["a"], "c1"),
        "c1": (["b"], "c2"),
        "c2": (["c"], None),
    }
    asked: list[str | None] = []

    async def fetch(cursor: str | None) -> tuple[list[str], str | None]:
        asked.append(cursor)
        return chain[cursor]

    assert asyncio.run(cursor_pages(fetch)) == ["a", "b", "c"]
    assert asked == [None, "c1", "c2"]

    async def empty_with_cursor(cursor: str | None) -> tuple[list[str], str | None]:
        return ([] if cursor else ["a"]), "more"

    assert asyncio.run(cursor_pages(empty_with_cursor)) == ["a"]

    asked.clear()

    async def loops(cursor: str | None) -> tuple[list[str], str | None]:
        asked.append(cursor)
        n = 0 if cursor is None else int(cursor)
        return [f"x{n}"], str((n + 1) % 3)  # 1, 2, 0, 1, ...: a cycle

    assert asyncio.run(cursor_pages(loops)) == ["x0", "x1", "x2"]  # the repeat adds nothing
    assert asked == [None, "1", "2", "0"]

    async def blank(cursor: str | None) -> tuple[list[str], str | None]:
        return ["a"], ""

    assert asyncio.run(cursor_pages(blank)) == ["a"]

    async def endless(cursor: str | None) -> tuple[list[int], str | None]:
        n = 0 if cursor is None else int(cursor)
        return [n], str(n + 1)

    assert asyncio.run(cursor_pages(endless, max_pages=5)) == [0, 1, 2, 3, 4]


def test_a_fetch_error_is_raised_not_read_as_the_end() -> None:
    async def broken(page: int) -> tuple[list[int], bool]:
        if page == 2:
            raise NotFound("unreadable")
        return [page], True

    with pytest.raises(NotFound):
        asyncio.run(numbered_pages(broken))


# -- bounded_map ---------------------------------------------------------------------------


def test_bounded_map_keeps_order_and_never_exceeds_the_limit() -> None:
    running = 0
    peak = 0

    async def work(n: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.001 * ((n * 7) % 5))  # finish out of order
        running -= 1
        return n * n

    got = asyncio.run(bounded_map(range(50), work, limit=4))
    assert got == [n * n for n in range(50)]
    assert peak == 4

    peak = 0
    assert asyncio.run(bounded_map(range(30), work)) == [n * n for n in range(30)]
    assert peak == DEFAULT_CONCURRENCY == 8


def test_bounded_map_empty_none_results_and_bad_limit() -> None:
    async def none(n: int) -> None:
        return None

    assert asyncio.run(bounded_map([], none)) == []
    assert asyncio.run(bounded_map([1, 2], none)) == [None, None]
    with pytest.raises(ValueError):
        asyncio.run(bounded_map([1], none, limit=0))


def test_bounded_map_raises_the_first_error_and_cancels_the_rest() -> None:
    started: list[int] = []
    cancelled: list[int] = []
    finished: list[int] = []

    async def work(n: int) -> int:
        started.append(n)
        try:
            if n == 2:
                await asyncio.sleep(0.01)
                raise NotFound(f"item {n}")
            if n == 3:
                await asyncio.sleep(0.02)
                raise ValueError("later error")
            await asyncio.sleep(1)
        except asyncio.CancelledError:
            cancelled.append(n)
            raise
        finished.append(n)
        return n

    with pytest.raises(NotFound, match="item 2"):
        asyncio.run(bounded_map(range(20), work, limit=4))
    assert started == [0, 1, 2, 3]  # nothing new starts after the failure
    assert sorted(cancelled) == [0, 1, 3] and finished == []


def test_cancelling_bounded_map_cancels_the_calls_in_flight() -> None:
    cancelled: list[int] = []

    async def work(n: int) -> int:
        try:
            await asyncio.sleep(1)
        except asyncio.CancelledError:
            cancelled.append(n)
            raise
        return n

    async def run() -> None:
        task = asyncio.ensure_future(bounded_map(range(10), work, limit=3))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
    assert sorted(cancelled) == [0, 1, 2]
