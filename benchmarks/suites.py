"""The measurements of issue 7, one function per target; each returns table rows.

Every figure comes from child processes (``world.run``) against the fakes of
``tests/fakes`` on 127.0.0.1. Nothing here is asserted by the test suite: tests never time.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks.world import (
    AIRALO_USAGE_PER_COMPANY,
    ESIMACCESS_PER_SECOND,
    ESIMGO_PER_SECOND,
    OAUTH,
    Run,
    child_env,
    driver_argv,
    esimctl_argv,
    interleaved,
    run,
    world,
)


@dataclass
class Figure:
    name: str
    target: str
    measured: str
    ratio: float | None
    passed: bool | None  # None: informational, no target
    note: str = ""


class BenchmarkError(RuntimeError):
    """A run did not do what the benchmark needs (wrong exit code, missing eSIMs)."""


def _check(r: Run, *, esims: int | None = None) -> Run:
    if r.code != 0:
        raise BenchmarkError(f"{' '.join(r.argv[-4:])} exited {r.code}: {r.stderr.strip()[-400:]}")
    if esims is not None:
        got = len(r.json["data"]["esims"]) if r.stdout.lstrip().startswith("{") else None
        if got is None:
            got = len([line for line in r.stdout.splitlines() if line.strip()])
        if got != esims:
            raise BenchmarkError(f"{' '.join(r.argv[-4:])} showed {got} eSIMs, not {esims}")
    return r


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


#: Seconds between runs against rate-limited fakes: limits are kept within one run, and a
#: provider's window (1 s here) still counts the previous run's last requests.
WINDOW_REST = 1.1

STATUS_REFRESH = ["status", "--json", "--refresh"]


# -- 1. start-up ----------------------------------------------------------------------------


#: Never imported by a command that needs no network: the HTTP stack and the keyring, pydantic
#: (Typer 0.29+ imports it to check options: docs/performance.md), and the libraries of
#: notifications, calendars and QR codes (imported by those commands alone).
FORBIDDEN = ("httpx", "keyring", "pydantic", "apprise", "icalendar", "segno")


def imported_modules(argv_tail: Sequence[str], env: dict[str, str]) -> set[str]:
    """Top-level modules a child imports, from ``python -X importtime``."""
    r = run([sys.executable, "-X", "importtime", "-m", "esimctl", *argv_tail], env)
    if r.code != 0:
        raise BenchmarkError(f"esimctl {' '.join(argv_tail)} exited {r.code}: {r.stderr[-300:]}")
    names = set()
    for line in r.stderr.splitlines():
        if line.startswith("import time:") and "cumulative" not in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


def startup(runs: int = 21) -> list[Figure]:
    esimctl = esimctl_argv()
    demo = [*esimctl, "--demo", "status"]
    with world(10) as w:
        _check(run(esimctl + STATUS_REFRESH, w.env), esims=40)
        w.stop()  # from here on nothing answers: status must come from the cache
        # The README's first command, the first time: makes the demo profile and its past.
        first_demo = _check(run(demo, w.env))
        demo_esims = len([line for line in first_demo.stdout.splitlines() if line.strip()])
        samples = interleaved(
            {
                "typer": [sys.executable, "-c", "import typer"],
                "version": [*esimctl, "--version"],
                "help": [*esimctl, "--help"],
                "status": [*esimctl, "status"],
                "demo": demo,
            },
            w.env,
            runs,
        )
        for r in samples["status"].runs:
            _check(r, esims=40)
        for r in samples["demo"].runs:
            _check(r, esims=demo_esims)
        offenders = {}
        for tail in (["--version"], ["--help"], ["status"], ["status", "--json"]):
            found = imported_modules(tail, w.env) & set(FORBIDDEN)
            if found:
                offenders[" ".join(tail)] = sorted(found)
        found = imported_modules(["--demo", "status"], child_env(w.home)) & set(FORBIDDEN)
        if found:
            offenders["--demo status"] = sorted(found)
    base = samples["typer"].median
    rows = [
        Figure(
            "start-up: python -c 'import typer'",
            "(the yardstick)",
            _ms(base),
            None,
            None,
            f"median of {runs}; CPU {_ms(samples['typer'].median_cpu)}",
        )
    ]
    for key, label, limit in (
        ("version", "start-up: esimctl --version", 1.3),
        ("help", "start-up: esimctl --help", 1.3),
        ("status", "start-up: esimctl status (fresh cache, 40 eSIMs)", 2.0),
        ("demo", "start-up: esimctl --demo status (run again)", 2.0),
    ):
        ratio = samples[key].median / base
        cpu = samples[key].median_cpu
        rows.append(
            Figure(
                label,
                f"<= {limit}x typer",
                _ms(samples[key].median),
                ratio,
                ratio <= limit,
                f"median of {runs}; CPU {_ms(cpu)}, "
                f"{cpu / samples['typer'].median_cpu:.2f}x typer's",
            )
        )
    rows.append(
        Figure(
            "start-up: esimctl --demo status, the first time",
            "(informational)",
            _ms(first_demo.seconds),
            first_demo.seconds / base,
            None,
            "one run: makes the demo profile (its state and three days of readings)",
        )
    )
    rows.append(
        Figure(
            "start-up: " + ", ".join(FORBIDDEN) + " imported without network",
            "none",
            "; ".join(f"{k}: {', '.join(v)}" for k, v in offenders.items()) or "none",
            None,
            not offenders,
            "--version, --help, status and status --json from the cache, --demo status",
        )
    )
    return rows


# -- 2. fan-out -----------------------------------------------------------------------------


def fanout_lower_bound(per_account: int, latency: float) -> tuple[float, str]:
    """The fastest any client could answer ``status`` over the four accounts at once.

    Per account: the requests that must follow one another (each a round trip of at least
    ``latency``) and the documented limit on the requests that fan out; tokens are cached
    (a warm-up run fetched them), as they are between two runs of a real user.

    * Airalo: list, then one usage call per eSIM at 5 a second (a sliding window): the
      last batch starts (ceil(n/5) - 1) s after the first.
    * eSIM Go: list, then one call per eSIM; all n + 1 count against 10 a second.
    * eSIM Access: query, then usage in batches of 10 (well under 8 a second).
    * Celitech: purchases, then profile and consumption per eSIM (no documented limit).
    """
    n = per_account
    usage_n, usage_window = AIRALO_USAGE_PER_COMPANY
    airalo = latency + (math.ceil(n / usage_n) - 1) * usage_window + latency
    esimgo = max(2 * latency, (math.ceil((n + 1) / ESIMGO_PER_SECOND) - 1) * 1.0 + latency)
    batches = math.ceil(n / 10)
    esimaccess = latency + max(latency, (math.ceil((1 + batches) / ESIMACCESS_PER_SECOND) - 1))
    celitech = 2 * latency
    bounds = {"airalo": airalo, "esimgo": esimgo, "esimaccess": esimaccess, "celitech": celitech}
    worst = max(bounds, key=lambda k: bounds[k])
    return bounds[worst], worst


#: How far above the lower bound the fan-out may be (and so how far below the ceiling the
#: speed-up over one request at a time).
FANOUT_SLACK = 1.5


def fanout(per_account: int = 10, latency: float = 0.1, runs: int = 3) -> list[Figure]:
    esims = 4 * per_account
    with world(per_account, latency=latency, enforce=True) as w:
        _check(run(esimctl_argv() + STATUS_REFRESH, w.env), esims=esims)  # tokens, warm-up
        concurrent = []
        for _ in range(runs):
            time.sleep(WINDOW_REST)
            concurrent.append(_check(run(esimctl_argv() + STATUS_REFRESH, w.env), esims=esims))
        sequential = []
        seq_env = dict(w.env, BENCH_SEQUENTIAL="1")
        for _ in range(max(1, runs - 1)):
            time.sleep(WINDOW_REST)
            sequential.append(_check(run(driver_argv() + STATUS_REFRESH, seq_env), esims=esims))
        limited = sum(w.rate_limited().values())
    fast = statistics.median(r.seconds for r in concurrent)
    slow = statistics.median(r.seconds for r in sequential)
    bound, by = fanout_lower_bound(per_account, latency)
    ratio = fast / bound
    speedup = slow / fast
    # No client can answer faster than the lower bound, so none can be more than this much
    # faster than one request at a time: the documented limits (Airalo's 5 usage calls a
    # second, eSIM Go's 10) set it, not esimctl. Within 1.5x of the bound is within 1.5x of it.
    ceiling = slow / bound
    floor = ceiling / FANOUT_SLACK
    return [
        Figure(
            f"fan-out: status --refresh, {esims} eSIMs in 4 accounts, {latency * 1000:.0f} ms",
            f"<= {FANOUT_SLACK}x lower bound",
            f"{fast:.2f} s (bound {bound:.2f} s, {by})",
            ratio,
            ratio <= FANOUT_SLACK,
            f"median of {runs}; wall time of the whole command, start-up included; "
            f"{limited} answers 429",
        ),
        Figure(
            "fan-out: speed-up over one request at a time",
            f">= ceiling / {FANOUT_SLACK} = {floor:.1f}x (ceiling {ceiling:.1f}x)",
            f"{speedup:.1f}x ({slow:.2f} s one at a time)",
            speedup / ceiling,
            speedup >= floor,
            f"ceiling {ceiling:.1f}x = one-at-a-time time / lower bound (no client can beat it); "
            "ratio: the share of the ceiling reached",
        ),
    ]


# -- 3. rate limits -------------------------------------------------------------------------


def rate_limits(per_account: int = 100, latency: float = 0.1) -> list[Figure]:
    with world(per_account, latency=latency, enforce=True) as w:
        r = _check(run(esimctl_argv() + STATUS_REFRESH, w.env), esims=4 * per_account)
        limited = w.rate_limited()
        sent = w.requests()
    labels = {
        "air": "Airalo (usage 5/s per company, 10/min per ICCID; token 3/min)",
        "acc": "eSIM Access (8/s per account)",
        "go": "eSIM Go (10/s, fixed one-second window)",
        "cel": "Celitech (no documented limit)",
    }
    return [
        Figure(
            f"rate limits: {per_account} eSIMs, {labels[name]}",
            "0 answers 429",
            f"{limited[name]} of {sent[name]} requests",
            None,
            limited[name] == 0,
            f"one status --refresh over all four: {r.seconds:.1f} s" if name == "air" else "",
        )
        for name in ("air", "acc", "go", "cel")
    ]


# -- 4. memory ------------------------------------------------------------------------------


def memory(total: int = 1000) -> list[Figure]:
    per = total // 4
    with world(per, fast=True) as w:
        fetched = _check(run(driver_argv() + STATUS_REFRESH, w.env), esims=4 * per)
        cached = _check(run([*esimctl_argv(), "status", "--json"], w.env), esims=4 * per)
    rows = []
    for label, r in (("fetching", fetched), ("from the cache", cached)):
        mib = r.maxrss_kib / 1024
        rows.append(
            Figure(
                f"memory: peak RSS of status --json, {4 * per} eSIMs, {label}",
                "<= 64 MiB",
                f"{mib:.1f} MiB",
                mib / 64,
                mib <= 64,
                f"{r.seconds:.1f} s, providers' pacing lifted (zero latency)"
                if r is fetched
                else f"{r.seconds:.2f} s",
            )
        )
    return rows


# -- 5. linear cost, one token per account ---------------------------------------------------


def _exponent(costs: dict[int, float], small: int, large: int) -> float:
    """Growth exponent of the cost above the fixed part: 1.0 is linear, 2.0 quadratic."""
    base = costs[0]
    a, b = costs[small] - base, costs[large] - base
    if a <= 0 or b <= 0:
        return float("nan")
    return math.log(b / a) / math.log(large / small)


def scaling(sizes: tuple[int, int] = (50, 200), runs: int = 3) -> list[Figure]:
    small, large = sizes
    cpu: dict[int, float] = {}
    wall: dict[int, float] = {}
    requests: dict[int, float] = {}
    tokens_per_account = 0
    for per in (0, small, large):
        with world(per, fast=True) as w:
            samples = []
            for _ in range(runs):
                before = sum(w.requests().values())
                r = _check(run(driver_argv() + STATUS_REFRESH, w.env), esims=4 * per)
                samples.append((r, sum(w.requests().values()) - before))
            tokens_per_account = max(tokens_per_account, *w.token_requests().values())
        cpu[4 * per] = statistics.median(r.cpu for r, _ in samples)
        wall[4 * per] = statistics.median(r.seconds for r, _ in samples)
        requests[4 * per] = statistics.median(n for _, n in samples)
    s, lg = 4 * small, 4 * large
    rows = []
    for label, costs, unit in (
        ("CPU time", cpu, "s"),
        ("wall time", wall, "s"),
        ("requests", requests, ""),
    ):
        k = _exponent(costs, s, lg)
        shown = ", ".join(
            f"{n}: {costs[n]:.2f}{unit}" if unit else f"{n}: {costs[n]:.0f}" for n in (0, s, lg)
        )
        rows.append(
            Figure(
                f"linear cost: {label} of status --refresh",
                "growth exponent <= 1.15",
                f"{k:.2f} ({shown})",
                k,
                k <= 1.15 if not math.isnan(k) else None,
                f"exponent of the cost above the 0-eSIM run, {s} -> {lg} eSIMs; median of {runs}",
            )
        )
    rows.append(
        Figure(
            "tokens: access tokens per OAuth account over repeated runs",
            "1 per token lifetime",
            f"{tokens_per_account} over {runs} runs",
            None,
            tokens_per_account <= 1,
            f"accounts {', '.join(OAUTH)}; the token is cached in the credential store",
        )
    )
    return rows


# -- 6. a bad network (issue 10) -------------------------------------------------------------

#: The deadline the "never answers" run configures ([network] deadline); the claim is that a
#: silent host costs at most the deadline, whatever it is set to.
SILENT_DEADLINE = 5.0


def _rewrite_urls(home: Any, url_of: Callable[[str], str], extra: str = "") -> None:
    """Point every account of the benchmark home at another address."""
    import re

    path = home / "config.toml"
    text = path.read_text(encoding="utf-8")
    text = re.sub(
        r'\[accounts\.(\w+)\]\nprovider = "(\w+)"\nbase_url = "[^"]*"',
        lambda m: f'[accounts.{m[1]}]\nprovider = "{m[2]}"\nbase_url = "{url_of(m[1])}"',
        text,
    )
    path.write_text(text + extra, encoding="utf-8")


def bad_network(runs: int = 5) -> list[Figure]:
    """``status --refresh`` over the four accounts, each with cached figures, when no host
    resolves (no network), when every port refuses, and when every host accepts and never
    answers: the command answers with the cached rows, marked stale, within its targets."""
    import socket

    esimctl = esimctl_argv()
    rows: list[Figure] = []
    with world(10) as w:
        _check(run(esimctl + STATUS_REFRESH, w.env), esims=40)
        w.stop()
        cases: list[tuple[str, str, float, Callable[[str], str], str]] = []
        cases.append(
            (
                "no network (no host resolves)",
                "≤ 3 s",
                3.0,
                lambda name: f"https://{name}.esimctl-bench.invalid",
                "",
            )
        )
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))
        refused_port = closed.getsockname()[1]
        closed.close()
        cases.append(
            (
                "every connection refused",
                "≤ 1 s",
                1.0,
                lambda name: f"http://127.0.0.1:{refused_port}",
                "",
            )
        )
        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        silent_port = silent.getsockname()[1]
        cases.append(
            (
                f"every host silent (deadline {SILENT_DEADLINE:g} s)",
                f"≤ {SILENT_DEADLINE:g} s + 1 s",
                SILENT_DEADLINE + 1.0,
                lambda name: f"http://127.0.0.1:{silent_port}",
                f'\n[network]\ndeadline = "{SILENT_DEADLINE:g}s"\n',
            )
        )
        try:
            for label, target, limit, url_of, extra in cases:
                original = (w.home / "config.toml").read_text(encoding="utf-8")
                _rewrite_urls(w.home, url_of, extra)
                times = []
                for _ in range(runs if limit < 5 else 1):
                    r = run(esimctl + STATUS_REFRESH, w.env)
                    if r.code != 75 or len(r.json["data"]["esims"]) != 40:
                        raise BenchmarkError(f"{label}: exit {r.code}, {r.stderr.strip()[-300:]}")
                    times.append(r.seconds)
                (w.home / "config.toml").write_text(original, encoding="utf-8")
                med = statistics.median(times)
                rows.append(
                    Figure(
                        f"bad network: status over 4 accounts, {label}",
                        target,
                        f"{med:.2f} s",
                        med / limit,
                        med <= limit,
                        f"median of {len(times)}; exit 75 with the 40 cached rows marked stale",
                    )
                )
        finally:
            silent.close()
    return rows


SUITES: dict[str, Callable[..., list[Figure]]] = {
    "startup": startup,
    "fanout": fanout,
    "ratelimits": rate_limits,
    "memory": memory,
    "scaling": scaling,
    "badnetwork": bad_network,
}

QUICK: dict[str, dict[str, object]] = {
    "startup": {"runs": 7},
    "fanout": {"runs": 1},
    "ratelimits": {"per_account": 30},
    "memory": {"total": 400},
    "scaling": {"sizes": (25, 100), "runs": 2},
    "badnetwork": {"runs": 2},
}


def as_json(rows: Sequence[Figure], installed: dict[str, str | None]) -> str:
    """The rows, each with the versions installed when it was measured."""
    return json.dumps([{**r.__dict__, "installed": installed} for r in rows], indent=2)
