"""Writing results: SPEC's JSON envelope, JSON Lines, and tables (Rich or TSV).

JSON bytes are the same whether or not stdout is a terminal and never carry ANSI codes.
Tables are Rich on a terminal and tab-separated rows, without header or colour, in a pipe.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from esimctl.env import Env
from esimctl.errors import EsimctlError, ExitCode
from esimctl.output.human import esc
from esimctl.serialize import iso

SCHEMA_VERSION = 1


def envelope_status(exit_code: int, errors: Sequence[EsimctlError]) -> str:
    if exit_code == ExitCode.PARTIAL:
        return "partial"
    if errors and exit_code not in (ExitCode.OK, ExitCode.ATTENTION):
        return "error"
    return "success"


def write_json(
    env: Env,
    command: str,
    data: Any,
    errors: Sequence[EsimctlError],
    exit_code: int,
    status: str | None = None,
) -> None:
    doc = {
        "schema_version": SCHEMA_VERSION,
        "command": command,
        "generated_at": iso(env.now()),
        "status": status or envelope_status(exit_code, errors),
        "exit_code": int(exit_code),
        "data": data,
        "errors": [e.to_json() for e in errors],
    }
    env.stdout.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    env.stdout.flush()


def write_jsonl(env: Env, records: Sequence[dict[str, Any]]) -> None:
    for r in records:
        env.stdout.write(
            json.dumps({"schema_version": SCHEMA_VERSION, **r}, ensure_ascii=False) + "\n"
        )
    env.stdout.flush()


@dataclass
class Column:
    header: str
    justify: str = "left"
    style: str | None = None
    no_wrap: bool = True
    min_width: int | None = None
    #: Hidden on a terminal when every row has the same value (e.g. a single account).
    hide_if_uniform: bool = False
    #: One line while the table fits, wrapped (down to ``min_width``) when it does not.
    squeeze: bool = False
    #: Dropped when the terminal is too narrow for every column: the highest number first;
    #: 0 never (such columns keep their full width: no cut prices or ICCIDs).
    optional: int = 0


@dataclass
class Table:
    """Rows as (rich markup text, plain text) pairs: the same data in both renderings."""

    columns: list[Column]
    rows: list[list[tuple[str, str]]] = field(default_factory=list)
    footer: list[str] = field(default_factory=list)

    def add(self, *cells: tuple[str, str] | str) -> None:
        self.rows.append([c if isinstance(c, tuple) else (esc(c), c) for c in cells])


def write_table(env: Env, table: Table, *, empty: str = "nothing to show") -> None:
    if env.stdout_tty:
        if not table.rows:
            if empty:
                env.err.print(empty)
            return
        keep = [
            i
            for i, c in enumerate(table.columns)
            if not (c.hide_if_uniform and len({row[i][1] for row in table.rows}) <= 1)
        ]
        squeezed = False
        for level in sorted({c.optional for c in table.columns if c.optional}, reverse=True):
            if _needed_width(table, keep) <= env.out.width:
                break
            keep = [i for i in keep if table.columns[i].optional != level]
        if _needed_width(table, keep) > env.out.width:
            squeezed = True
        rt = _rich_table(table, keep, squeezed=squeezed)
        env.out.print(rt)
        for line in table.footer:
            env.out.print(line)
    else:
        for row in table.rows:
            env.stdout.write("\t".join(cell[1].replace("\t", " ") for cell in row) + "\n")
        env.stdout.flush()


def _rich_table(table: Table, keep: list[int], *, squeezed: bool = False) -> Any:
    from rich import box
    from rich.table import Table as RichTable

    rt = RichTable(
        box=box.SIMPLE_HEAD,
        show_edge=False,
        header_style="dim bold",
        pad_edge=False,
        padding=(0, 1),
        collapse_padding=True,
    )
    for i in keep:
        c = table.columns[i]
        no_wrap = c.no_wrap and not (c.squeeze and squeezed)
        # A no-wrap column keeps its full width (Rich squeezes the wrapping ones instead):
        # a price or an ICCID cut with an ellipsis is worse than a plan name on two lines.
        full = _width(table, i) if no_wrap else c.min_width
        rt.add_column(
            c.header,
            justify=c.justify,  # type: ignore[arg-type]
            style=c.style,
            no_wrap=no_wrap,
            min_width=full,
            overflow="ellipsis" if no_wrap else "fold",
        )
    for row in table.rows:
        rt.add_row(*(row[i][0] for i in keep))
    return rt


def _needed_width(table: Table, keep: list[int]) -> int:
    """Width the columns need without cutting a no-wrap cell (wrapping ones at their minimum)."""
    total = 2 * (len(keep) - 1)
    for i in keep:
        c = table.columns[i]
        total += _width(table, i) if c.no_wrap else max(c.min_width or 8, len(c.header))
    return total


def _width(table: Table, i: int) -> int:
    from rich.text import Text

    cells = [Text.from_markup(row[i][0]).cell_len for row in table.rows]
    return max([len(table.columns[i].header), *cells])
