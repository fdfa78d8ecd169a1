"""Many requests at once, never more than a provider's servers are asked to bear.

Throttles (``kit.http``) bound how many requests start per second; ``bounded_map`` bounds
how many are in flight at all, so a list of 300 eSIMs is 8 connections working through a
queue, not 300 tasks waiting on a throttle and holding sockets.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TypeVar, cast

T = TypeVar("T")
R = TypeVar("R")

#: Requests one provider has in flight at once, in every provider.
DEFAULT_CONCURRENCY = 8


async def bounded_map(
    items: Iterable[T],
    fn: Callable[[T], Awaitable[R]],
    *,
    limit: int = DEFAULT_CONCURRENCY,
) -> list[R]:
    """``[await fn(x) for x in items]``, at most ``limit`` calls in flight, results in the
    order of ``items`` (None results kept: filter them yourself).

    Like ``asyncio.gather``: the first exception raised is raised here; calls not yet
    started are never started, and those in flight are cancelled (and waited for) first.
    Cancelling ``bounded_map`` cancels every call in flight.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    todo = list(items)
    results: list[R | None] = [None] * len(todo)
    if not todo:
        return []
    indices = iter(range(len(todo)))  # shared: each index is taken by one worker
    errors: list[BaseException] = []

    async def worker() -> None:
        for i in indices:
            if errors:
                return  # another call failed: start no more
            try:
                results[i] = await fn(todo[i])
            except BaseException as exc:
                errors.append(exc)
                raise

    workers = [asyncio.ensure_future(worker()) for _ in range(min(limit, len(todo)))]
    try:
        _, pending = await asyncio.wait(workers, return_when=asyncio.FIRST_EXCEPTION)
    except BaseException:  # cancelled from outside
        await _cancel(workers)
        raise
    if errors:
        await _cancel(list(pending))
        raise errors[0]
    return cast(list[R], results)  # every slot was filled


async def _cancel(tasks: Sequence[asyncio.Future[None]]) -> None:
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
