"""The world a benchmark runs in: the four fake provider APIs, a private ESIMCTL_HOME with
one account per fake, and a way to run esimctl in a child process and measure it.

The fakes run in this process (threads on 127.0.0.1); esimctl always runs in a child, so
the two never share a GIL and the child's peak RSS and CPU time are its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from fakes.airalo import CLIENT_ID as AIRALO_ID  # noqa: E402
from fakes.airalo import CLIENT_SECRET as AIRALO_SECRET  # noqa: E402
from fakes.airalo import FakeAiralo  # noqa: E402
from fakes.base import FakeApi, Reply, Request  # noqa: E402
from fakes.celitech import CLIENT_ID as CELITECH_ID  # noqa: E402
from fakes.celitech import CLIENT_SECRET as CELITECH_SECRET  # noqa: E402
from fakes.celitech import FakeCelitech  # noqa: E402
from fakes.esimaccess import ACCESS_CODE, SECRET_KEY, FakeEsimAccess  # noqa: E402
from fakes.esimgo import DEFAULT_KEY, FakeEsimGo  # noqa: E402

#: Account name -> provider id; one account per fake.
ACCOUNTS = {"air": "airalo", "acc": "esimaccess", "go": "esimgo", "cel": "celitech"}
OAUTH = ("air", "cel")  # the accounts whose provider hands out access tokens

#: The documented limits the fakes enforce when ``enforce=True`` (and the client honours).
AIRALO_USAGE_PER_COMPANY = (5, 1.0)
AIRALO_USAGE_PER_ICCID = (10, 60.0)
ESIMACCESS_PER_SECOND = 8
ESIMGO_PER_SECOND = 10

#: Account options that lift the client's own pacing (``fast=True``): for runs that measure
#: esimctl's CPU and memory, not the providers' limits. Airalo has no such option; the
#: child driver (benchmarks/child.py) raises its class limits instead.
FAST_OPTIONS = {
    "acc": {"rate_limit": 100_000},
    "go": {"rate_limit": 100_000},
    "cel": {"requests_per_second": 100_000},
}


class WindowLimit:
    """At most ``limit`` hits in any ``window`` seconds (a sliding log), like the base fake."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit, self.window = limit, window
        self.hits: deque[float] = deque()

    def over(self, now: float) -> float | None:
        while self.hits and now - self.hits[0] >= self.window:
            self.hits.popleft()
        if len(self.hits) >= self.limit:
            return self.window - (now - self.hits[0])
        return None

    def hit(self, now: float) -> None:
        self.hits.append(now)


def enforce_airalo_usage(fake: FakeAiralo) -> None:
    """Airalo's documented usage limits: 5 a second per company, 10 a minute per ICCID.

    The fake enforces the token limit (3 a minute) itself; the base ``rate_limit`` switch
    counts every endpoint together, which is stricter than Airalo documents, so the usage
    route is wrapped here instead.
    """
    company = WindowLimit(*AIRALO_USAGE_PER_COMPANY)
    per_iccid: dict[str, WindowLimit] = {}

    def wrap(handler: Callable[[Request], Reply]) -> Callable[[Request], Reply]:
        def limited(req: Request) -> Reply:
            now = time.monotonic()
            iccid = req.params.get("iccid", "")
            mine = per_iccid.setdefault(iccid, WindowLimit(*AIRALO_USAGE_PER_ICCID))
            wait = company.over(now) or mine.over(now)
            if wait is not None:
                fake.stats["429"] += 1
                return fake.rate_limited_reply(max(1.0, wait))
            company.hit(now)
            mine.hit(now)
            return handler(req)

        return limited

    fake.routes = [
        (m, rx, wrap(h) if m == "GET" and rx.pattern.endswith("/usage$") else h)
        for m, rx, h in fake.routes
    ]


@dataclass
class World:
    """Four fakes, seeded, and a home whose config names one account per fake."""

    home: Path
    fakes: dict[str, FakeApi]
    env: dict[str, str]
    fast: bool = False

    def requests(self) -> dict[str, int]:
        return {name: f.stats["requests"] for name, f in self.fakes.items()}

    def rate_limited(self) -> dict[str, int]:
        return {name: f.stats["429"] for name, f in self.fakes.items()}

    def token_requests(self) -> dict[str, int]:
        air = self.fakes["air"]
        cel = self.fakes["cel"]
        assert isinstance(air, FakeAiralo) and isinstance(cel, FakeCelitech)
        return {"air": air.token_requests, "cel": len(cel.token_requests)}

    def stop(self) -> None:
        for f in self.fakes.values():
            f.stop()


def _config(urls: dict[str, str], *, fast: bool) -> str:
    lines = []
    for name, provider in ACCOUNTS.items():
        lines += [f"[accounts.{name}]", f'provider = "{provider}"', f'base_url = "{urls[name]}"']
        # A server without a keyring keeps access tokens in the 0600 file store.
        lines.append('credential_store = "file"')
        for k, v in (FAST_OPTIONS.get(name, {}) if fast else {}).items():
            lines.append(f"{k} = {json.dumps(v)}")
        lines.append("")
    return "\n".join(lines)


@contextlib.contextmanager
def world(
    per_account: int | dict[str, int],
    *,
    latency: float = 0.0,
    enforce: bool = False,
    fast: bool = False,
) -> Iterator[World]:
    """Start the fakes seeded with ``per_account`` eSIMs each and write the config."""
    counts = per_account if isinstance(per_account, dict) else dict.fromkeys(ACCOUNTS, per_account)
    air, acc, go, cel = FakeAiralo(), FakeEsimAccess(), FakeEsimGo(), FakeCelitech()
    fakes: dict[str, FakeApi] = {"air": air, "acc": acc, "go": go, "cel": cel}
    air.seed(counts.get("air", 0))
    acc.seed(counts.get("acc", 0))
    go.seed(counts.get("go", 0))
    cel.seed(counts.get("cel", 0))
    if enforce:
        enforce_airalo_usage(air)
        acc.rate_limit(per_second=ESIMACCESS_PER_SECOND)
        go.enforce_tokens = True
        go.token_limit = ESIMGO_PER_SECOND
    else:
        air.token_limit_per_minute = None
        # The fake reports its window in headers even when it does not enforce it, and the
        # client pauses on "0 remaining": lift the window so only esimctl is measured.
        go.token_limit = 1_000_000_000
    for f in fakes.values():
        f.latency = latency
        f.start()
    tmp = Path(tempfile.mkdtemp(prefix="esimctl-bench-"))
    home = tmp / "home"
    home.mkdir()
    (home / "config.toml").write_text(
        _config({n: f.url for n, f in fakes.items()}, fast=fast), encoding="utf-8"
    )
    env = child_env(home)
    env.update(
        {
            "ESIMCTL_AIR_CLIENT_ID": AIRALO_ID,
            "ESIMCTL_AIR_CLIENT_SECRET": AIRALO_SECRET,
            "ESIMCTL_ACC_ACCESS_CODE": ACCESS_CODE,
            "ESIMCTL_ACC_SECRET_KEY": SECRET_KEY,
            "ESIMCTL_GO_API_KEY": DEFAULT_KEY,
            "ESIMCTL_CEL_CLIENT_ID": CELITECH_ID,
            "ESIMCTL_CEL_CLIENT_SECRET": CELITECH_SECRET,
        }
    )
    if fast:
        env["BENCH_FAST"] = "1"
    w = World(home, fakes, env, fast)
    try:
        yield w
    finally:
        w.stop()
        shutil.rmtree(tmp, ignore_errors=True)


#: The installed distributions whose versions decide the figures: Typer (its start-up, and
#: from 0.29 pydantic's), the HTTP stack and Rich. Recorded with every result.
MEASURED_PACKAGES = ("esimctl", "typer", "pydantic", "httpx", "httpcore", "sniffio", "rich")


def installed_versions() -> dict[str, str | None]:
    """Versions of ``MEASURED_PACKAGES`` installed beside this Python (None: not installed).

    The children run this same Python (or the ``esimctl`` script beside it), so this is
    the install they measure.
    """
    from importlib import metadata

    found: dict[str, str | None] = {}
    for name in MEASURED_PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def child_env(home: Path | None) -> dict[str, str]:
    """The environment of a child: no ESIMCTL_* of the caller, no colour, a fixed width."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ESIMCTL_", "PYTHON_KEYRING")) and k not in ("NO_COLOR", "CI")
    }
    env.update({"COLUMNS": "200", "TZ": "UTC", "PYTHONPATH": str(ROOT)})
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if home is not None:
        env["ESIMCTL_HOME"] = str(home)
    return env


# -- running a child and measuring it -------------------------------------------------------


@dataclass
class Run:
    argv: list[str]
    code: int
    seconds: float
    cpu: float  # user + system seconds of the child
    maxrss_kib: int
    stdout: str
    stderr: str

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)


def esimctl_argv() -> list[str]:
    """The installed ``esimctl`` script beside this Python, else ``python -m esimctl``."""
    script = Path(sys.executable).parent / "esimctl"
    return [str(script)] if script.exists() else [sys.executable, "-m", "esimctl"]


def driver_argv() -> list[str]:
    """esimctl through the benchmark driver (sequential or fast modes)."""
    return [sys.executable, "-m", "benchmarks.child"]


def run(argv: Sequence[str], env: dict[str, str], *, timeout: float = 300.0) -> Run:
    """Run one child to the end; its own rusage comes from ``wait4``."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env, cwd=ROOT
        )
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Run(
            list(argv),
            proc.returncode,
            seconds,
            usage.ru_utime + usage.ru_stime,
            int(usage.ru_maxrss),
            out.read().decode("utf-8", "replace"),
            err.read().decode("utf-8", "replace"),
        )


@dataclass
class Sample:
    runs: list[Run] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(r.seconds for r in self.runs)

    @property
    def median_cpu(self) -> float:
        """Median CPU time (user + system): less moved than wall time by a busy machine."""
        return statistics.median(r.cpu for r in self.runs)


def repeat(argv: Sequence[str], env: dict[str, str], times: int) -> Sample:
    s = Sample()
    for _ in range(times):
        s.runs.append(run(argv, env))
    return s


def interleaved(
    commands: dict[str, Sequence[str]], env: dict[str, str], times: int
) -> dict[str, Sample]:
    """Median timings of several commands, run in turn so a noisy moment hits them all."""
    out = {name: Sample() for name in commands}
    for _ in range(times):
        for name, argv in commands.items():
            out[name].runs.append(run(argv, env))
    return out
