"""Reading every page of a list, whatever the API's pagination style, without looping forever.

Each pager takes a ``fetch`` callable the provider writes (its endpoint, its parameter
and field names, its check that the answer has the documented shape: an answer that
cannot be read must raise there, never come back as an empty page) and answers the
items of every page, in order. Every pager stops

* after ``max_pages`` pages (a server whose "next" never ends): what was read is returned;
* at an empty page;
* at a page that repeats one already read (a server that ignores the page parameter or
  sends the same cursor again): the repeat adds nothing.

With ``dedupe`` (a function giving each item's identity), items seen on an earlier page
are dropped, and a page that brings nothing new ends the list.

Styles:

* ``numbered_pages``: ``page=1, 2, ...``; ``fetch(page)`` answers ``(items, more)``,
  ``more`` saying whether the API announces another page (Airalo's ``links.next`` /
  ``meta.last_page``; "a full page" where the API gives no totals, as eSIM Go).
* ``counted_pages``: ``fetch(page)`` answers ``(items, total)``; the list ends once
  ``total`` items (or ``total`` pages, ``counts="pages"``) are read; a total of None
  ends it (eSIM Access's ``pager.total``).
* ``cursor_pages``: ``fetch(cursor)`` answers ``(items, next_cursor)``, the first call
  with None; a None or empty cursor ends the list (Celitech's ``afterCursor``).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Literal, TypeVar

T = TypeVar("T")

#: The longest list read by default; providers pass their own where they know better.
MAX_PAGES = 1000


class _Reader:
    """The stopping rules every style shares: repeats, empty pages, ``dedupe``."""

    def __init__(self, dedupe: Callable[[Any], Hashable] | None) -> None:
        self.dedupe = dedupe
        self.pages: set[str] = set()
        self.keys: set[Hashable] = set()
        self.items: list[Any] = []

    def add(self, page: list[Any]) -> bool:
        """Take one page; False when the list ends here (empty, a repeat, nothing new)."""
        if not page:
            return False
        mark = _fingerprint(page)
        if mark in self.pages:
            return False
        self.pages.add(mark)
        if self.dedupe is None:
            self.items.extend(page)
            return True
        fresh = 0
        for item in page:
            key = self.dedupe(item)
            if key not in self.keys:
                self.keys.add(key)
                self.items.append(item)
                fresh += 1
        return fresh > 0


def _fingerprint(page: list[Any]) -> str:
    try:
        return json.dumps(page, sort_keys=True, default=repr)
    except (TypeError, ValueError):  # keys that cannot be sorted, cycles
        return repr(page)


def json_key(item: Any) -> str:
    """An item's identity as its whole content: a ``dedupe`` for records without an id."""
    return _fingerprint([item])


async def numbered_pages(
    fetch: Callable[[int], Awaitable[tuple[list[T], bool]]],
    *,
    first: int = 1,
    max_pages: int = MAX_PAGES,
    dedupe: Callable[[T], Hashable] | None = None,
) -> list[T]:
    """Pages ``first, first + 1, ...`` until ``fetch`` says there is no more (see module)."""
    reader = _Reader(dedupe)
    for page in range(first, first + max_pages):
        items, more = await fetch(page)
        if not reader.add(items) or not more:
            break
    out: list[T] = reader.items
    return out


async def counted_pages(
    fetch: Callable[[int], Awaitable[tuple[list[T], int | None]]],
    *,
    first: int = 1,
    max_pages: int = MAX_PAGES,
    counts: Literal["items", "pages"] = "items",
    dedupe: Callable[[T], Hashable] | None = None,
) -> list[T]:
    """Pages until the ``total`` the latest page announces is reached (see module)."""
    reader = _Reader(dedupe)
    for n, page in enumerate(range(first, first + max_pages), start=1):
        items, total = await fetch(page)
        if not reader.add(items) or total is None:
            break
        if (len(reader.items) if counts == "items" else n) >= total:
            break
    out: list[T] = reader.items
    return out


async def cursor_pages(
    fetch: Callable[[str | None], Awaitable[tuple[list[T], str | None]]],
    *,
    max_pages: int = MAX_PAGES,
    dedupe: Callable[[T], Hashable] | None = None,
) -> list[T]:
    """Pages by cursor until a page gives none, or one already followed (see module)."""
    reader = _Reader(dedupe)
    cursor: str | None = None
    followed: set[str] = set()
    for _ in range(max_pages):
        items, nxt = await fetch(cursor)
        if not reader.add(items) or not nxt or nxt in followed:
            break
        followed.add(nxt)
        cursor = nxt
    out: list[T] = reader.items
    return out
