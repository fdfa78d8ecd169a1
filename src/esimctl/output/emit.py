"""Writing results: SPEC's JSON envelope, JSON Lines, and tables (for a person, or TSV).

JSON bytes are the same whether or not stdout is a terminal and never carry ANSI codes.
Tables are for a person on a terminal (fitted to its width, stacked when it is narrow) and
tab-separated rows, without header or colour, in a pipe; ``--table``, ``--tsv``, ``--wide``
and ``--color always`` choose (``Env.human_output``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

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


# -- tables ------------------------------------------------------------------------------------
#
# On a terminal a table is fitted to its width, and no value is ever split: a figure
# (``307 MB / 3 GB``), a date, an id or a state stays on one line. When the columns do not
# fit, they give way in the order the table states (``Table.give_way``): a column is
# dropped, or its cells take their short form (the figures without the bar, the relative
# date without the absolute one), or free text (a plan name) is shortened with an ellipsis at
# a word boundary, or moved to a line of its own under its row (attention). Below ``NARROW``
# columns, or when even that does not fit, each row becomes a block of its own (the stacked
# layout, like gh's narrow views): its title first, its figures on their own lines.
# ``--wide`` forces the full table whatever the width.

#: Spaces between two columns.
GAP = 2
#: Below this many columns, tables are stacked.
NARROW = 70
#: Where free text may end a line: never inside a figure (``3 GB``), a time (``Dec 01 12:35``).
_SEPARATORS = frozenset("·/|-—–+×,;")
_BINDS_NEXT = frozenset({"/", "!", "~", "×", "@", "#"})
_ROLES = ("title", "badge", "line", "field", "flow", "hide")
_ACTIONS = ("drop", "short", "flex", "line")


class Cell(NamedTuple):
    """One cell: Rich markup for a person, plain text for a pipe, and the forms it takes when
    space runs out (``short``) or in a stacked block (``stacked``, e.g. ``3.00 USD/GB``)."""

    rich: str
    plain: str
    short: str | None = None
    stacked: str | None = None


@dataclass
class Column:
    header: str
    justify: str = "left"
    style: str | None = None
    #: True: a value (a figure, a date, an id, a state), never cut nor wrapped. False: free
    #: text (a plan name, attention words), shortened at a word boundary with an ellipsis
    #: (down to ``min_width``) or moved to a line of its own.
    no_wrap: bool = True
    min_width: int | None = None
    #: Hidden on a terminal when every row has the same value (e.g. a single account).
    hide_if_uniform: bool = False
    #: When every row (of two or more) has the same value: this footnote (``{}`` is the
    #: value) instead of the column.
    uniform_note: str | None = None
    #: Dropped when the terminal is too narrow, before the steps of ``Table.give_way``:
    #: the highest number first; 0 never.
    optional: int = 0
    #: Its part in the stacked layout: ``title`` (first line), ``badge`` (on the title line
    #: when it fits), ``line`` (a line of its own), ``field`` (``key  value``), ``flow``
    #: (values joined with `` · `` on as few lines as fit) or ``hide``.
    stack: str = "field"
    #: How the value is named out of the grid (a stacked field, a line of its own):
    #: the header in lower case by default; "" for no name.
    key: str | None = None
    #: Free text: where it may be cut or wrapped (``", "`` between attention reasons); by
    #: default between words, never inside a figure.
    breaks: str | None = None
    #: A footnote while the column shows its short form (a legend of its symbols).
    short_note: str | None = None
    #: How a value reads alone in a stacked block (``{}/GB``), unless its cell says.
    stacked: str | None = None

    def __post_init__(self) -> None:
        assert self.stack in _ROLES, self.stack

    @property
    def name(self) -> str:
        return self.header.lower() if self.key is None else self.key


#: One step of giving way: (header, action), or several taken together.
Step = tuple[str, str] | tuple[tuple[str, str], ...]


@dataclass
class Table:
    """Rows as cells (Rich markup, plain text, and their short and stacked forms)."""

    columns: list[Column]
    rows: list[list[Cell]] = field(default_factory=list)
    footer: list[str] = field(default_factory=list)
    #: The stated priority: what gives way first when the terminal is too narrow, each step
    #: ``(header, action)`` with action ``drop``, ``short`` (the cells' short form), ``flex``
    #: (free text shortened with an ellipsis, down to its ``min_width``; free text without
    #: such a step is shortened whenever it must be) or ``line`` (free text on a line of its
    #: own under its row).
    give_way: list[Step] = field(default_factory=list)
    #: The order of the stacked block, by header (default: the columns' order).
    stack_order: list[str] | None = None
    #: The order of the TSV fields, by header (default: the columns' order).
    tsv_order: list[str] | None = None

    def add(self, *cells: Cell | tuple[str, str] | str) -> None:
        self.rows.append([_cell(c) for c in cells])

    def index(self, header: str) -> int:
        return next(i for i, c in enumerate(self.columns) if c.header == header)


def _cell(c: Cell | tuple[str, str] | str) -> Cell:
    if isinstance(c, Cell):
        return c
    if isinstance(c, tuple):
        return Cell(*c)
    return Cell(esc(c), c)


def write_table(env: Env, table: Table, *, empty: str = "nothing to show") -> None:
    if not env.human_output:
        order = (
            [table.index(h) for h in table.tsv_order]
            if table.tsv_order
            else range(len(table.columns))
        )
        for row in table.rows:
            env.stdout.write("\t".join(row[i].plain.replace("\t", " ") for i in order) + "\n")
        env.stdout.flush()
        return
    if not table.rows:
        if empty:
            env.err.print(empty)
        return
    lines, notes = render(table, env.output_width, wide=env.wide)
    for line in lines:
        # Never wrapped nor cropped by Rich: the lines are fitted already (or --wide).
        env.out.print(line, soft_wrap=True)
    for note in [*notes, *table.footer]:
        env.out.print(note)


def render(table: Table, width: int, *, wide: bool = False) -> tuple[list[Any], list[str]]:
    """The lines of ``table`` at ``width`` columns (Rich ``Text``), and its footnotes."""
    r = _Render(table)
    if not wide and width >= NARROW:
        grid = r.fit(width)
        if grid is not None:
            return r.grid(grid, width), r.notes(grid)
    if wide:
        grid = {i: _Place() for i in r.shown}
        return r.grid(grid, width, wide=True), r.notes(grid)
    notes = r.notes({})
    return r.stacked(width), ([""] if notes or table.footer else []) + notes


@dataclass
class _Place:
    form: str = "full"  # or "short"
    where: str = "grid"  # or "line" (a line of its own under the row)
    flex: bool = False


class _Render:
    def __init__(self, table: Table) -> None:
        self.t = table
        self.cols = table.columns
        self._texts: dict[tuple[int, int, str], Any] = {}
        self._natural: dict[tuple[int, str], int] = {}
        n = len(table.rows)
        self.uniform = {
            i
            for i, c in enumerate(self.cols)
            if (c.hide_if_uniform or (c.uniform_note and n > 1))
            and len({row[i].plain for row in table.rows}) <= 1
        }
        self.shown = [i for i in range(len(self.cols)) if i not in self.uniform]

    # -- cells ----------------------------------------------------------------------------

    def text(self, row: int, i: int, form: str = "full") -> Any:
        key = (row, i, form)
        if key not in self._texts:
            from rich.text import Text

            cell = self.t.rows[row][i]
            markup = {"short": cell.short, "stacked": cell.stacked}.get(form) or cell.rich
            template = self.cols[i].stacked
            if form == "stacked" and cell.stacked is None and template:
                markup = template.format(cell.rich)
            self._texts[key] = Text.from_markup(markup, style=self.cols[i].style or "")
        return self._texts[key].copy()

    def natural(self, i: int, form: str) -> int:
        if (i, form) not in self._natural:
            cells = [int(self.text(r, i, form).cell_len) for r in range(len(self.t.rows))]
            self._natural[i, form] = max([len(self.cols[i].header), *cells])
        return self._natural[i, form]

    def least(self, i: int, p: _Place) -> int:
        natural = self.natural(i, p.form)
        if not p.flex:
            return natural
        c = self.cols[i]
        return min(natural, max(len(c.header), c.min_width or 10))

    def needed(self, grid: dict[int, _Place]) -> int:
        cols = [i for i, p in grid.items() if p.where == "grid"]
        return sum(self.least(i, grid[i]) for i in cols) + GAP * (len(cols) - 1)

    # -- fitting --------------------------------------------------------------------------

    def steps(self) -> list[list[tuple[int, str]]]:
        out: list[list[tuple[int, str]]] = []
        for level in sorted({c.optional for c in self.cols if c.optional}, reverse=True):
            out.append([(i, "drop") for i, c in enumerate(self.cols) if c.optional == level])
        for step in self.t.give_way:
            parts = [step] if isinstance(step[0], str) else step
            taken = []
            for header, action in parts:
                assert action in _ACTIONS, action
                taken.append((self.t.index(header), action))
            out.append(taken)
        return out

    def fit(self, width: int) -> dict[int, _Place] | None:
        """Where each shown column goes at ``width``, giving way step by step; None when
        even the last step does not fit (the stacked layout then)."""
        # Free text is shortened whenever it must be, unless a step says when (or moves it
        # to a line of its own instead).
        flexed_later = {
            self.t.index(h)
            for step in self.t.give_way
            for h, a in ([step] if isinstance(step[0], str) else step)
            if a in ("flex", "line")
        }
        grid = {
            i: _Place(flex=not self.cols[i].no_wrap and i not in flexed_later) for i in self.shown
        }
        for step in [[], *self.steps()]:
            for i, action in step:
                if i not in grid:
                    continue
                if action == "drop":
                    del grid[i]
                elif action == "short":
                    grid[i].form = "short"
                elif action == "flex":
                    grid[i].flex = True
                else:
                    grid[i].where = "line"
            if self.needed(grid) <= width:
                return grid
        return None

    def notes(self, grid: dict[int, _Place]) -> list[str]:
        notes = []
        for i in sorted(self.uniform):
            c = self.cols[i]
            if c.uniform_note and self.t.rows:
                notes.append(c.uniform_note.format(self.t.rows[0][i].rich))
        for i, p in grid.items():
            note = self.cols[i].short_note
            if p.form == "short" and note:
                notes.append(note)
        return notes

    # -- the grid -------------------------------------------------------------------------

    def grid(self, grid: dict[int, _Place], width: int, *, wide: bool = False) -> list[Any]:
        from rich.text import Text

        cols = [i for i in self.shown if i in grid and grid[i].where == "grid"]
        widths = {i: self.least(i, grid[i]) for i in cols}
        spare = width - self.needed(grid)
        for i in cols:
            if grid[i].flex and spare > 0:
                more = min(spare, self.natural(i, grid[i].form) - widths[i])
                widths[i] += more
                spare -= more
        total = sum(widths.values()) + GAP * (len(cols) - 1)
        header = Text(style="dim bold")
        for n, i in enumerate(cols):
            c = self.cols[i]
            header.append(_pad(Text(c.header), widths[i], c.justify, last=n == len(cols) - 1))
            if n < len(cols) - 1:
                header.append(" " * GAP)
        lines = [header, Text("─" * total)]
        indent = widths[cols[0]] + GAP if len(cols) > 1 else 2
        below = [i for i in self.shown if i in grid and grid[i].where == "line"]
        for r in range(len(self.t.rows)):
            line = Text()
            for n, i in enumerate(cols):
                c = self.cols[i]
                cell = self.text(r, i, grid[i].form)
                if cell.cell_len > widths[i]:
                    cell = _shorten(cell, widths[i], c.breaks)
                line.append(_pad(cell, widths[i], c.justify, last=n == len(cols) - 1))
                if n < len(cols) - 1:
                    line.append(" " * GAP)
            line.rstrip()
            lines.append(line)
            for i in below:
                cell = self.text(r, i)
                if _blank(cell):
                    continue
                name = self.cols[i].name
                if name:
                    cell = Text(f"{name}: ").append_text(cell)
                room = max(width, indent + 20) if not wide else indent + cell.cell_len
                lines.extend(_wrap(cell, room, indent, indent + 2, self.cols[i].breaks))
        return lines

    # -- the stacked layout ---------------------------------------------------------------

    def stacked(self, width: int) -> list[Any]:
        from rich.text import Text

        order = (
            [self.t.index(h) for h in self.t.stack_order]
            if self.t.stack_order
            else list(range(len(self.cols)))
        )
        order = [i for i in order if i in self.shown and self.cols[i].stack != "hide"]
        titles = [i for i in order if self.cols[i].stack == "title"] or order[:1]
        fields = [i for i in order if self.cols[i].stack == "field" and i not in titles]
        key_width = max([len(self.cols[i].name) for i in fields] or [0])
        lines: list[Any] = []
        for r in range(len(self.t.rows)):
            if r:
                lines.append(Text())
            lines.extend(self._block(r, order, titles, key_width, width))
        return lines

    def _block(
        self, r: int, order: list[int], titles: list[int], key_width: int, width: int
    ) -> list[Any]:
        """One row as a block: its title (and badges), then its lines, fields and flow."""
        from rich.text import Text

        head = Text(" " * GAP).join(self.text(r, i) for i in titles if not _blank(self.text(r, i)))
        flow: list[Any] = []
        out: list[Any] = [head]

        def flush() -> None:
            if flow:
                out.extend(_wrap(Text(" · ").join(flow), width, 2, 2, " · "))
                flow.clear()

        for i in order:
            c = self.cols[i]
            cell = self.text(r, i)
            if i in titles or _blank(cell):
                continue
            if c.stack == "badge" and head.cell_len + GAP + cell.cell_len <= width:
                head.append(" " * GAP).append_text(cell)
            elif c.stack in ("badge", "flow"):
                flow.append(self.text(r, i, "stacked"))
            elif c.stack == "line":
                flush()
                if c.name:
                    cell = Text(f"{c.name}: ").append_text(cell)
                out.extend(_wrap(cell, width, 2, 4, c.breaks))
            else:
                flush()
                out.extend(self._field(r, i, key_width, width))
        flush()
        return out

    def _field(self, r: int, i: int, key_width: int, width: int) -> list[Any]:
        from rich.text import Text

        c = self.cols[i]
        key = Text("  " + c.name.ljust(key_width) + " " * GAP, style="dim")
        for form in ("full", "short"):
            cell = self.text(r, i, form)
            if key.cell_len + cell.cell_len <= width:
                return [key.append_text(cell)]
        if not c.no_wrap:  # free text: wrapped beside its key
            lines = _wrap(self.text(r, i), width, key.cell_len, key.cell_len, c.breaks)
            lines[0] = key.append_text(lines[0][key.cell_len :])
            return lines
        # Too long for the line: the key alone, the value under it (whole, never split),
        # indented less when that is what keeps it on the screen (a long URL).
        cell = self.text(r, i)
        if cell.cell_len > width - 4:
            cell = self.text(r, i, "short")
        key.rstrip()
        return [key, Text(" " * min(4, max(width - cell.cell_len, 0))).append_text(cell)]


def _blank(cell: Any) -> bool:
    return cell.plain.strip() in ("", "—")


def _pad(text: Any, width: int, justify: str, *, last: bool) -> Any:
    gap = width - text.cell_len
    if gap <= 0:
        return text
    if justify == "right":
        return type(text)(" " * gap).append_text(text)
    if last:
        return text  # no trailing spaces
    return text.append(" " * gap)


def _break_points(plain: str, breaks: str | None) -> list[tuple[int, int, bool]]:
    """Where a line of free text may end: (end of this line, start of the next, preferred).
    Between words, never inside a figure (``3 GB``, ``1 d 19 h``, ``Dec 01 12:35``, ``307
    MB / 3 GB``); with ``breaks``, after that separator by preference (between words only
    where a part is longer than a line)."""
    points = []
    if breaks:
        sep = breaks.rstrip()
        points = [
            (m.start() + len(sep), m.end(), True) for m in re.finditer(re.escape(breaks), plain)
        ]
    for m in re.finditer(r" +", plain):
        prev = plain[: m.start()].rsplit(" ", 1)[-1]
        nxt = plain[m.end() :].split(" ", 1)[0]
        if not prev or not nxt or _binds(prev, nxt):
            continue
        if breaks and prev.endswith(breaks.rstrip()):
            continue  # the preferred point already
        points.append((m.start(), m.end(), not breaks))
    return sorted(points)


def _binds(prev: str, nxt: str) -> bool:
    """Are two words one value (a space a line must not end at)?"""
    if prev[0].isdigit() or prev in _BINDS_NEXT:
        return True  # 3 GB, 01 12:35, 1 d, / 3
    if nxt in _SEPARATORS or nxt[0] in ")]":
        return True  # no line starts with · or /
    return nxt[0].isdigit() and prev.isalpha() and len(prev) <= 3  # in 1 d, Dec 01


def _shorten(text: Any, width: int, breaks: str | None = None) -> Any:
    """Free text cut at a word boundary to fit ``width``, with an ellipsis."""
    from rich.cells import cell_len

    plain = text.plain
    best = 0
    points = _break_points(plain, breaks)
    for preferred in (True, False):
        for end, _, pref in points:
            kept = plain[:end].rstrip(" ·/|-—–+×,;:")
            if pref == preferred and cell_len(kept) + 1 <= width:
                best = max(best, len(kept))
        if best:
            break
    if not best:  # the first word alone is too long: cut it
        best = max(width - 1, 0)
        while best and cell_len(plain[:best]) > width - 1:
            best -= 1
    out = text[:best]
    out.append("…")
    return out


def _wrap(text: Any, width: int, first: int, rest: int, breaks: str | None) -> list[Any]:
    """Free text on lines of ``width`` columns, indented by ``first`` then ``rest``; broken
    only where ``_break_points`` allow (a word longer than a line stays whole)."""
    from rich.cells import cell_len
    from rich.text import Text

    plain = text.plain
    lines = []
    start, indent = 0, first
    points = _break_points(plain, breaks)
    while start < len(plain):
        room = width - indent
        end = len(plain)
        if cell_len(plain[start:]) > room:
            fits = [
                (e, s, p) for e, s, p in points if e > start and cell_len(plain[start:e]) <= room
            ]
            best = [(e, s) for e, s, p in fits if p] or [(e, s) for e, s, _ in fits]
            later = [(e, s) for e, s, _ in points if e > start]
            chosen = best[-1] if best else (later[0] if later else None)
            if chosen is not None:
                end, nxt = chosen
                lines.append(Text(" " * indent).append_text(text[start:end]))
                start, indent = nxt, rest
                continue
        lines.append(Text(" " * indent).append_text(text[start:end]))
        break
    return lines
