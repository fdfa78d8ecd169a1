"""``python -m benchmarks``: measure every target of issue 7 and print one table.

Usage::

    python -m benchmarks                      # everything, a minute or two on 2 cores
    python -m benchmarks --only startup,fanout
    python -m benchmarks --quick              # fewer and smaller runs, for a smoke test
    python -m benchmarks --json out.json      # the rows as JSON too

Exit status: 0 when every figure meets its target, 1 otherwise, 2 when a run broke.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.suites import QUICK, SUITES, BenchmarkError, Figure, as_json
from benchmarks.world import installed_versions


def _versions(installed: dict[str, str | None]) -> str:
    return ", ".join(f"{k} {v or '(not installed)'}" for k, v in installed.items())


def _table(rows: list[Figure]) -> str:
    head = ("figure", "target", "measured", "ratio", "result")
    body = [
        (
            r.name,
            r.target,
            r.measured,
            "" if r.ratio is None else f"{r.ratio:.2f}",
            "" if r.passed is None else ("pass" if r.passed else "FAIL"),
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in (head, *body)) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(head, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in body
    ]
    notes = [f"  {r.name}: {r.note}" for r in rows if r.note]
    return "\n".join([*lines, "", "notes:", *notes])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--only", help=f"comma-separated suites: {', '.join(SUITES)}")
    parser.add_argument("--quick", action="store_true", help="fewer, smaller runs")
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    args = parser.parse_args(argv)
    chosen = args.only.split(",") if args.only else list(SUITES)
    unknown = [s for s in chosen if s not in SUITES]
    if unknown:
        parser.error(f"unknown suite(s): {', '.join(unknown)}")
    started = time.perf_counter()
    installed = installed_versions()
    print(
        f"esimctl benchmarks, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.machine()}\n"
        f"installed: {_versions(installed)}",
        file=sys.stderr,
    )
    rows: list[Figure] = []
    for name in chosen:
        t = time.perf_counter()
        print(f"running {name} ...", file=sys.stderr, flush=True)
        try:
            rows += SUITES[name](**(QUICK[name] if args.quick else {}))
        except BenchmarkError as exc:
            print(f"error: {name}: {exc}", file=sys.stderr)
            return 2
        print(f"  {name}: {time.perf_counter() - t:.1f} s", file=sys.stderr, flush=True)
    print(f"measured with Python {platform.python_version()}; {_versions(installed)}\n")
    print(_table(rows))
    print(f"\ntotal {time.perf_counter() - started:.0f} s", file=sys.stderr)
    if args.json:
        args.json.write_text(as_json(rows, installed) + "\n", encoding="utf-8")
    return 0 if all(r.passed is not False for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
