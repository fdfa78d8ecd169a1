"""Readable at any width (issue 17): every command that prints a table, rendered at 40, 60,
80, 100 and 120 columns, splits no figure, date or id across lines, keeps what matters at 80
columns, and is stacked (one block per row) below 70."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from typing import Any

import pytest

from esimctl.output import human
from esimctl.output.emit import NARROW, Cell, Column, Table, render

WIDTHS = (40, 60, 80, 100, 120)
NOW = "2026-11-29T16:00:00Z"
UNITS = r"(?:B|KB|MB|GB|TB|d|h|m|USD|EUR|JPY|CNY|GBP)\b"
MONTHS = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"

Cli = Callable[..., Any]


def show(cli: Cli, width: int, *args: str) -> list[str]:
    r = cli(*args, tty=True, env={"COLUMNS": str(width), "NO_COLOR": "1", "ESIMCTL_TEST_NOW": NOW})
    assert r.exit_code == 0, r
    assert "\x1b[" not in r.stdout
    return r.stdout.splitlines()


def demo(cli: Cli) -> Cli:
    """The demo profile with an order of ours in the history too."""
    env = {"ESIMCTL_TEST_NOW": NOW}
    r = cli("--demo", "renew", "Tokyo", "--plan", "jp-1gb-3d", "--yes", "--timeout", "0m", env=env)
    assert r.exit_code == 0, r
    return cli


def assert_unsplit(lines: list[str], width: int, *values: str) -> None:
    """No line is wider than the terminal, no figure or date is broken across two lines, and
    each of ``values`` is whole on one line."""
    for line in lines:
        assert len(line) <= width, f"{len(line)} > {width}: {line!r}"
    for a, b in itertools.pairwise(lines):
        end, start = a.rstrip(), b.lstrip()
        assert not (re.search(r"\d$", end) and re.match(UNITS, start)), (a, b)  # 307 MB | GB
        assert not re.search(rf"\b{MONTHS}$", end) or not re.match(r"\d", start), (a, b)
        assert not end.endswith(" /"), (a, b)  # 307 MB / | 3 GB
        assert not re.search(r"\b(?:in|install)$", end), (a, b)  # in | 1 d 19 h
    text = "\n".join(lines)
    for v in values:
        assert any(v in line for line in lines), f"{v!r} is not whole on one line:\n{text}"


def grid_header(lines: list[str]) -> list[str]:
    """The column names of a table (its first line), or [] for the stacked layout."""
    assert set(lines[1].strip()) == {"─"}, lines[:2]
    return re.split(r"\s{2,}", lines[0].strip())


def esims(cli: Cli) -> list[dict[str, Any]]:
    r = cli("--demo", "status", "--json", env={"ESIMCTL_TEST_NOW": NOW})
    return list(r.json["data"]["esims"])


def figures(e: dict[str, Any]) -> str | None:
    """``307 MB / 3 GB``: the figure of an eSIM with a package total (the demo's are binary)."""
    if e["unlimited"] or e["data_total_bytes"] is None:
        return None
    return f"{human.size(e['data_remaining_bytes'])} / {human.size(e['data_total_bytes'])}"


# -- status -------------------------------------------------------------------------------


@pytest.mark.parametrize("width", WIDTHS)
def test_status_splits_no_figure_and_keeps_what_matters(cli: Cli, width: int) -> None:
    listed = esims(cli)
    lines = show(cli, width, "--demo", "status")
    values = [e["label"] for e in listed]
    values += [f for e in listed if (f := figures(e))]
    values += ["low data", "expiring soon", "runs out soon", "install by 2027-05-28"]
    assert_unsplit(lines, width, *values)
    if width < NARROW:
        # Stacked: a block per eSIM, its label first, its plan whole on a line of its own.
        titles = [ln.split()[0] for ln in lines if ln and not ln.startswith(" ")]
        assert titles == [e["label"] for e in listed]
        assert all(any(ln.strip() == e["plan"] for ln in lines) for e in listed)
        assert any(ln.startswith("  data left  ") for ln in lines)
        assert any(ln.startswith("  runs out   ") for ln in lines)
        return
    header = grid_header(lines)
    assert header[:5] == ["LABEL", "PLAN", "DATA LEFT", "EXPIRES", "RUNS OUT"]
    for e in listed:  # one line per eSIM, with its plan (shortened at 80, never cut mid-word)
        row = next(ln for ln in lines if re.match(rf"^(?:[✓○✗!?] )?{e['label']}\b", ln))
        shown = re.split(r"\s{2,}", row.strip())[1].rstrip("…")
        assert e["plan"].startswith(shown) and shown
    tokyo = next(i for i, ln in enumerate(lines) if "Tokyo" in ln)
    assert lines[tokyo + 1].strip() == "! low data, expiring soon, runs out soon"
    if width >= 100:
        assert "STATE" in header and "✓ active" in "\n".join(lines)
        assert "Japan 3 GB · 7 days" in lines[tokyo]  # the whole plan name
    else:  # the state as a mark before the label, explained under the table
        assert lines[tokyo].startswith("✓ Tokyo")
        assert lines[-1] == "✓ active · ○ not active · ✗ expired"


def test_status_keeps_the_bar_and_the_dates_where_there_is_room(cli: Cli) -> None:
    lines = show(cli, 160, "--demo", "status")
    tokyo = next(ln for ln in lines if ln.startswith("Tokyo"))
    assert "█░░░░░░░ 307 MB / 3 GB" in tokyo and "in 1 d 20 h Dec 01 12:00" in tokyo


# -- plans --------------------------------------------------------------------------------


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("where", [("Tokyo",), ("--country", "JP")])
def test_plans_one_line_per_plan_with_its_price_per_gb(
    cli: Cli, width: int, where: tuple[str, ...]
) -> None:
    env = {"ESIMCTL_TEST_NOW": NOW}
    listed = cli("--demo", "plans", *where, "--json", env=env).json["data"]["plans"]
    lines = show(cli, width, "--demo", "plans", *where)
    ids = [p["id"] for p in listed]
    prices = [f"{p['price']['amount']} {p['price']['currency']}" for p in listed]
    assert_unsplit(lines, width, *ids, *prices)
    if width < NARROW:
        titles = [ln.split()[0] for ln in lines if ln and not ln.startswith(" ")]
        assert titles[: len(ids)] == ids
        assert any(re.search(r"\d\.\d\d USD/GB", ln) for ln in lines)
        return
    header = grid_header(lines)
    assert {"ID", "NAME", "DATA", "DAYS", "PRICE", "PER GB"} <= set(header)
    rows = [ln for ln in lines if ln.split()[:1] and ln.split()[0] in ids]
    assert len(rows) == len(ids)  # one line each
    for p, row in zip(listed, rows, strict=True):
        assert row.startswith(p["id"] + " ") and f"{p['price']['amount']} " in row
    if where == ("Tokyo",):  # every top-up adds to the current package: said once
        assert "adds to current" not in "\n".join(rows)
        assert lines[-1] == "all of these: adds to current"


# -- history ------------------------------------------------------------------------------


@pytest.mark.parametrize("width", WIDTHS)
def test_history_keeps_the_order_id_and_the_label(cli: Cli, width: int) -> None:
    demo(cli)
    orders = cli("--demo", "history", "--json").json["data"]["orders"]
    assert {o["label"] for o in orders} == {"Tokyo", "Bangkok"}
    lines = show(cli, width, "--demo", "history")
    ids = [o["id"] for o in orders]
    assert_unsplit(lines, width, *ids, "Tokyo", "Bangkok", "4.50 USD", "359.00 CNY")
    if width < NARROW:
        titles = [ln for ln in lines if ln and not ln.startswith((" ", "total"))]
        assert [t.split()[0] for t in titles] == [o["label"] for o in orders]
        for o in orders:
            assert any(f"order {o['id']}" in ln for ln in lines)
        return
    header = grid_header(lines)
    assert {"DATE", "LABEL", "PLAN", "PRICE", "STATE", "ORDER"} <= set(header)
    for o in orders:
        row = next(ln for ln in lines if o["id"] in ln)
        assert o["label"] in row
    if width >= 100:
        assert "ICCID" in header and "…000018" in "\n".join(lines)


def test_history_since_with_no_match_says_so(cli: Cli) -> None:
    demo(cli)
    r = cli("--demo", "history", "--since", "1m", tty=True, env={"NO_COLOR": "1"})
    assert r.exit_code == 0 and r.stdout == ""
    assert "no orders since " in r.stderr and "no orders yet" not in r.stderr
    r = cli("history", tty=True)
    assert "no orders yet" in r.stderr


# -- account list, notify list ------------------------------------------------------------

ACCOUNTS = """
[accounts.trip]
provider = "airalo"
base_url = "https://sandbox-partners-api.airalo.com"

[accounts.jp-card]
provider = "manual"

[notify.targets.phone]
events = ["low_data", "runs_out_soon", "topup_bought", "expiring_soon", "topup_overdue"]

[notify.targets.hook]
command = ["/usr/local/bin/esim-hook", "--verbose"]
"""


@pytest.mark.parametrize("width", WIDTHS)
def test_account_and_notify_lists(cli: Cli, configure: Callable[[str], Any], width: int) -> None:
    configure(ACCOUNTS)
    lines = show(cli, width, "account", "list")
    # A URL is never cut: on a line of its own it may still be longer than 40 columns.
    fitted = [ln for ln in lines if len(ln) <= width or not ln.strip().startswith("https://")]
    assert_unsplit(fitted, width, "jp-card", "trip")
    assert any("https://sandbox-partners-api.airalo.com" in ln for ln in lines)
    if width >= NARROW:
        assert grid_header(lines)[:2] == ["NAME", "PROVIDER"]
    else:
        titles = [ln.split() for ln in lines if ln and not ln[0].isspace()]
        assert sorted(titles) == [["jp-card", "manual"], ["trip", "airalo"]]
    lines = show(cli, width, "notify", "list")
    assert_unsplit(lines, width, "/usr/local/bin/esim-hook", "low_data,", "runs_out_soon,")
    events = " ".join(ln.strip() for ln in lines if "_" in ln)
    assert "low_data, runs_out_soon, topup_bought, expiring_soon, topup_overdue" in events


@pytest.mark.parametrize("width", WIDTHS)
def test_seller_plan_list(cli: Cli, configure: Callable[[str], Any], width: int) -> None:
    configure(ACCOUNTS)
    for plan in (
        ["jp-3gb-7d", "--data", "3GB", "--days", "7", "--price", "58CNY"],
        ["jp-1gb", "--data", "1GB", "--days", "3", "--price", "20CNY"],
    ):
        name = ["--name", "Japan 3 GB · 7 days (China Unicom, 5G where there is coverage)"]
        r = cli("esim", "plan", "add", "jp-card", *plan, *name)
        assert r.exit_code == 0, r
    lines = show(cli, width, "esim", "plan", "list")
    assert_unsplit(lines, width, "jp-3gb-7d", "58.00 CNY", "20.00 CNY", "3 GB")
    if width >= NARROW:
        assert grid_header(lines) == ["ID", "NAME", "DATA", "DAYS", "PRICE"]
        assert any(ln.startswith("jp-1gb ") and "20.00 CNY" in ln for ln in lines)
    else:
        assert [ln.split()[0] for ln in lines if ln and not ln[0].isspace()] == [
            "jp-1gb",
            "jp-3gb-7d",
        ]


# -- choosing the layout -----------------------------------------------------------------


def test_wide_forces_the_full_table_on_a_narrow_terminal(cli: Cli) -> None:
    for args in (("--demo", "status", "--wide"), ("--demo", "--wide", "status")):
        lines = show(cli, 40, *args)
        header = grid_header(lines)
        assert header == [
            "LABEL", "ICCID", "PLAN", "DATA LEFT", "EXPIRES", "RUNS OUT", "STATE", "AS OF",
            "ATTENTION",
        ]  # fmt: skip
        assert any("Japan 3 GB · 7 days" in ln and "307 MB / 3 GB" in ln for ln in lines)


def test_table_tsv_and_color_always_choose_the_output(cli: Cli) -> None:
    env = {"COLUMNS": "60", "ESIMCTL_TEST_NOW": NOW}
    piped = cli("--demo", "status", env=env).stdout
    assert "\t" in piped and "DATA LEFT" not in piped
    # In a pipe, for less -R and watch: the table, fitted to COLUMNS, in colour if asked.
    table = cli("--demo", "--table", "status", env=env).stdout
    assert "\t" not in table and table.startswith("Tokyo  ✓ active\n") and "\x1b[" not in table
    coloured = cli("--demo", "--color", "always", "plans", "Tokyo", env=env).stdout
    assert "\x1b[" in coloured and "\t" not in coloured
    assert "USD/GB" in re.sub(r"\x1b\[[0-9;]*m", "", coloured)
    # On a terminal, TSV when asked for.
    tsv = cli("--demo", "--tsv", "status", tty=True, env=env).stdout
    assert tsv == piped
    both = cli("--demo", "--table", "--tsv", "status", env=env)
    assert both.exit_code == 2 and "choose one" in both.stderr
    # JSON is JSON whatever the table options.
    assert cli("--demo", "--table", "status", "--json", env=env).json["data"]["esims"]


# -- the renderer itself --------------------------------------------------------------------


def test_free_text_is_shortened_at_a_word_boundary_never_inside_a_figure() -> None:
    t = Table(
        [
            Column("ID"),
            Column("NAME", no_wrap=False, min_width=12),
            Column("PRICE"),
            Column("FILL"),
        ],
        give_way=[("NAME", "flex")],
    )
    t.add("a-1", "Japan 3 GB · 7 days", "9.00 USD", "x" * 45)
    t.add("b-2", "Europe Unlimited · 10 days", Cell("12.00 USD", "12.00 USD"), "x" * 45)
    whole = ("Japan 3 GB · 7 days", "Europe Unlimited · 10 days")
    cut = ("Japan", "Japan 3 GB", "Europe", "Europe Unlimited")
    seen = set()
    for width in range(75, 95):
        lines, _ = render(t, width)
        body = [ln.plain for ln in lines[2:]]
        assert all(len(ln) <= width for ln in body)
        for ln in body:
            name = re.split(r"\s{2,}", ln)[1]
            assert name in whole or (name.endswith("…") and name[:-1] in cut), name
            seen.add(name)
    assert {"Japan 3 GB…", "Europe Unlimited…", *whole} <= seen
    assert render(t, 74)[0][0].plain == "a-1"  # too narrow for the table: stacked


def test_columns_give_way_in_the_stated_order() -> None:
    t = Table(
        [Column("A"), Column("B"), Column("C"), Column("D")],
        give_way=[("C", "drop"), ("B", "short")],
    )
    t.add("a" * 30, Cell("b" * 30, "b", short="b" * 5), "c" * 20, "d" * 10)
    heads = {w: render(t, w)[0][0].plain.split() for w in (100, 90, 72)}
    assert heads == {100: ["A", "B", "C", "D"], 90: ["A", "B", "D"], 72: ["A", "B", "D"]}
    assert "b" * 30 in render(t, 90)[0][2].plain and "b" * 6 not in render(t, 72)[0][2].plain
    stacked, _ = render(t, 50)
    assert stacked[0].plain == "a" * 30 and stacked[1].plain.startswith("  b  ")
