"""esimctl's own ``main``, run by the benchmarks with two optional changes.

* ``BENCH_SEQUENTIAL=1``: one HTTP request at a time across every account (the baseline
  the fan-out is compared with); throttles still apply, as they would to any client.
* ``BENCH_FAST=1``: Airalo's documented limits raised on the class (which its module
  allows for local fakes), for runs that measure esimctl's CPU and memory, not pacing.
  The other providers take the same from account options (see ``world.FAST_OPTIONS``).

Nothing else differs from ``esimctl``: same modules, same code paths.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any


def _one_request_at_a_time() -> None:
    from esimctl.providers.kit.http import ApiClient

    original = ApiClient.request
    gate: list[asyncio.Lock] = []

    async def request(self: ApiClient, *args: Any, **kwargs: Any) -> Any:
        if not gate:
            gate.append(asyncio.Lock())
        async with gate[0]:
            return await original(self, *args, **kwargs)

    ApiClient.request = request  # type: ignore[method-assign]


def _lift_airalo_limits() -> None:
    from esimctl.providers.airalo import AiraloProvider

    many = (1_000_000.0, 1.0)
    for name in (
        "TOKEN_LIMIT",
        "USAGE_PER_ICCID",
        "USAGE_PER_COMPANY",
        "HISTORY_PER_ICCID",
        "TOPUPS_PER_ICCID",
        "PACKAGES_LIMIT",
        "GENERAL_LIMIT",
    ):
        if hasattr(AiraloProvider, name):
            setattr(AiraloProvider, name, many)


def main() -> None:
    if os.environ.get("BENCH_SEQUENTIAL") == "1":
        _one_request_at_a_time()
    if os.environ.get("BENCH_FAST") == "1":
        _lift_airalo_limits()
    from esimctl.cli.app import main as esimctl_main

    esimctl_main()


if __name__ == "__main__":
    main()
