"""A home esimctl cannot write: reads answer from the cache, writes are refused in one line.

Real ``python -m esimctl`` processes run against an ESIMCTL_HOME that is truly read-only for
them, in two ways (root ignores permission bits, so chmod alone proves nothing):

* ``chmod``: every directory and file loses its write bits; as root the child also loses
  CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH and CAP_FOWNER (``prctl(PR_CAPBSET_DROP)`` before
  ``exec``), so the bits bind it like any user. Needs nothing but Linux: never skipped.
* ``mount``: the home is bind-mounted read-only in a user and mount namespace of the child
  (``unshare -rm``): EROFS, a read-only file system. Skipped where namespaces are not
  allowed (a container's seccomp profile), as long as ``chmod`` works.

Each runner is checked first: a file the child tries to create in the home must fail.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from launcher import ESIMCTL

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
NOW = T0.isoformat()
ICCID = "8981100022223333444"
DEMO_RULES = """
[renewal.esims.Tokyo]
data_below = "500MB"
plan = "jp-1gb-3d"
"""

PR_CAPBSET_DROP = 24
#: CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER: what lets root ignore permission bits.
DAC_CAPS = (1, 2, 3)

MOUNT_RO = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" "$0" && exec "$@"'


def _drop_dac_caps() -> None:  # pragma: no cover - runs in the child, before exec
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in DAC_CAPS:
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def _set_writable(root: Path, writable: bool) -> None:
    """Give back the owner's write bit, or take away every write bit, under ``root``."""
    for p in [root, *root.rglob("*")]:
        if not p.is_symlink():
            mode = stat.S_IMODE(p.lstat().st_mode)
            os.chmod(p, mode | stat.S_IWUSR if writable else mode & ~0o222)


@dataclass
class Home:
    """An ESIMCTL_HOME, and esimctl run in it: writable, or read-only by ``how``."""

    path: Path
    how: str  # "chmod" or "mount"
    read_only: bool = False
    base: Path = field(init=False)

    def __post_init__(self) -> None:
        self.base = self.path.parent

    @property
    def why(self) -> str:
        return "read-only file system" if self.how == "mount" else "permission denied"

    def environ(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ESIMCTL_", "XDG_"))}
        env.update(
            {
                "ESIMCTL_HOME": str(self.path),
                "ESIMCTL_TEST_NOW": NOW,
                "HOME": str(self.base / "user-home"),  # never the real one
                "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
                "NO_COLOR": "1",
                "TZ": "UTC",
            }
        )
        return env

    def exec(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        preexec: Callable[[], None] | None = None
        if self.read_only and self.how == "mount":
            argv = ["unshare", "-rm", "sh", "-c", MOUNT_RO, str(self.path), *argv]
        elif self.read_only and os.geteuid() == 0:
            preexec = _drop_dac_caps
        return subprocess.run(
            argv,
            env=self.environ(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            preexec_fn=preexec,
            cwd=self.base,
        )

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.exec([*ESIMCTL, *args])

    def ok(self, *args: str) -> subprocess.CompletedProcess[str]:
        r = self.run(*args)
        assert r.returncode == 0, r
        return r

    def make_read_only(self) -> None:
        if self.how == "chmod":
            _set_writable(self.path, False)
        self.read_only = True
        probe = self.exec(
            [sys.executable, "-c", "import sys; open(sys.argv[1], 'w')", str(self.path / "probe")]
        )
        assert probe.returncode != 0, "the home is still writable: the test would prove nothing"
        assert not (self.path / "probe").exists()

    def make_writable(self) -> None:
        if self.how == "chmod":
            _set_writable(self.path, True)
        self.read_only = False

    def files(self) -> dict[str, str]:
        """Every file under the home and a digest of its bytes."""
        return {
            str(p.relative_to(self.path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(self.path.rglob("*"))
            if p.is_file()
        }

    @property
    def ledger(self) -> Path:
        return self.path / "data" / "ledger.sqlite3"

    @property
    def demo(self) -> Path:
        return self.path / "cache" / "demo-profile"


def _mount_works(base: Path) -> bool:
    probe = base / "mount-probe"
    probe.mkdir()
    try:
        r = subprocess.run(
            ["unshare", "-rm", "sh", "-c", MOUNT_RO, str(probe), "touch", str(probe / "x")],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return r.returncode != 0 and "read-only" in r.stderr.lower() and not (probe / "x").exists()


@pytest.fixture(scope="module", params=["chmod", "mount"])
def how(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "mount" and not _mount_works(tmp_path_factory.mktemp("probe")):
        pytest.skip("no read-only bind mount here (unshare -rm refused); chmod covers it")
    return str(request.param)


def _new_home(base: Path, how: str) -> Iterator[Home]:
    home = Home(base / "esimctl-home", how)
    home.path.mkdir()
    (base / "user-home").mkdir()
    yield home
    home.make_writable()


def _populate(home: Home) -> None:
    """A manual account with an eSIM, a reading, a plan and an order; the demo's eSIMs and
    catalogue; each cached by a status or plans run."""
    at = (T0 - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    home.ok("account", "add", "jp", "--provider", "manual")
    home.ok(
        "esim", "add", "jp", "--iccid", ICCID, "--label", "Tokyo", "-c", "JP", "--data", "3GB",
        "--days", "7", "--price", "58CNY", "--order", "A-1000", "--activated", at,
    )  # fmt: skip
    earlier = (T0 - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    home.ok("esim", "reading", "Tokyo", "1.5GB", "--at", earlier)
    home.ok(
        "esim", "plan", "add", "jp", "jp-3gb", "--data", "3GB", "--days", "7", "--price", "5CNY"
    )
    home.ok("--demo", "status")
    home.demo.joinpath("config.toml").write_text(DEMO_RULES, encoding="utf-8")
    for args in READS:
        home.ok(*args)  # the cache as a read-only home finds it


#: Commands that only read, with --json: their answer in a read-only home is the same.
READS: list[tuple[str, ...]] = [
    ("status", "--json"),
    ("history", "--local", "--json"),
    ("history", "--json"),
    ("account", "list", "--json"),
    ("plans", "Tokyo", "--json"),
    ("--demo", "status", "--json"),
    ("--demo", "plans", "Tokyo", "--json"),
    ("--demo", "history", "--local", "--json"),
]


@dataclass
class Populated:
    home: Home
    #: ``data`` of each of READS, run last while the home was writable.
    answers: dict[tuple[str, ...], object]
    files: dict[str, str]


@pytest.fixture(scope="module")
def populated(how: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Populated]:
    for home in _new_home(tmp_path_factory.mktemp(f"ro-{how}"), how):
        _populate(home)
        answers = {args: json.loads(home.ok(*args).stdout)["data"] for args in READS}
        home.make_read_only()
        yield Populated(home, answers, home.files())


@pytest.fixture
def fresh(how: str, tmp_path: Path) -> Iterator[Home]:
    yield from _new_home(tmp_path, how)


# -- reading ------------------------------------------------------------------------------------


@pytest.mark.parametrize("args", READS, ids=lambda a: "-".join(x.strip("-") for x in a))
def test_reads_answer_from_the_cache(populated: Populated, args: tuple[str, ...]) -> None:
    home = populated.home
    r = home.run(*args)
    assert r.returncode == 0, r
    assert "error" not in r.stderr and "unexpected" not in r.stderr, r.stderr
    out = json.loads(r.stdout)
    assert out["status"] == "success" and not out["errors"]
    assert out["data"] == populated.answers[args]
    assert home.files() == populated.files  # not a byte written, no -wal or -shm made


def test_status_shows_the_manual_figures_and_says_they_are_not_kept(
    populated: Populated,
) -> None:
    home = populated.home
    r = home.run("status", "--json")
    assert r.returncode == 0, r
    [e] = [e for e in json.loads(r.stdout)["data"]["esims"] if e["iccid"] == ICCID]
    assert e["data_remaining_bytes"] == 3 * 1024**3 // 2
    # A manual eSIM's figures are worked out anew each run: the cache row is not rewritten.
    note = f"note: {home.path / 'data'} cannot be written ({home.why})"
    assert note in r.stderr, r.stderr
    quiet = home.run("-q", "status")
    assert quiet.returncode == 0 and quiet.stderr == "", quiet
    assert home.files() == populated.files


# -- writing ------------------------------------------------------------------------------------

#: Commands that must write, and the directory the error names (relative to the home).
WRITES: list[tuple[tuple[str, ...], str, str]] = [
    (("esim", "reading", "Tokyo", "1GB", "--at", NOW), "data", "its ledger"),
    (
        ("esim", "add", "jp", "--iccid", "8981100022223333451", "--data", "1GB", "--days", "3"),
        "data",
        "its ledger",
    ),
    (("account", "add", "trip", "--provider", "manual"), ".", "config.toml"),
    (("renew", "Tokyo", "--plan", "jp-3gb", "--yes", "--no-browser"), "data", "its ledger"),
    # A purchase checks its journal can be written before it asks the provider anything.
    (("--demo", "renew", "Tokyo", "--plan", "jp-1gb-3d", "--yes"), "cache/demo-profile/data", ""),
    (("--demo", "renew", "--auto", "--yes"), "cache/demo-profile/data", "its ledger"),
]


@pytest.mark.parametrize(
    ("args", "where", "what"),
    WRITES,
    ids=["reading", "esim-add", "account-add", "renew-manual", "renew-demo", "renew-auto"],
)
def test_writes_fail_in_one_line_naming_the_directory(
    populated: Populated, args: tuple[str, ...], where: str, what: str
) -> None:
    home = populated.home
    r = home.run(*args)
    assert r.returncode == 1, r
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, r.stderr
    dir_ = home.path / where
    assert errors[0].startswith(f"error: cannot write {dir_} ({home.why}): esimctl needs"), r
    assert f"needs to write {what}" in errors[0]
    assert errors[0].endswith("make it writable or set ESIMCTL_HOME"), r
    assert "unexpected" not in r.stderr and "Traceback" not in r.stderr
    # Nothing recorded, nothing bought: the demo seller's own state is unchanged too.
    assert home.files() == populated.files


def test_a_refused_write_under_json_has_its_code(populated: Populated) -> None:
    home = populated.home
    r = home.run("esim", "reading", "Tokyo", "1GB", "--at", NOW, "--json")
    assert r.returncode == 1, r
    out = json.loads(r.stdout)
    assert out["exit_code"] == 1 and out["data"] is None
    [err] = out["errors"]
    assert err["code"] == "home_not_writable"
    assert str(home.path / "data") in err["message"]


# -- the ledger's files -------------------------------------------------------------------------


def test_a_home_with_no_ledger_reads_as_empty(fresh: Home) -> None:
    fresh.ok("account", "add", "jp", "--provider", "manual")  # config, no ledger yet
    assert not fresh.ledger.exists()
    fresh.make_read_only()
    before = fresh.files()
    r = fresh.run("history", "--local", "--json")
    assert r.returncode == 0, r
    assert json.loads(r.stdout)["data"]["orders"] == []
    r = fresh.run("esim", "add", "jp", "--iccid", ICCID, "--data", "1GB", "--days", "3")
    assert r.returncode == 1, r
    assert r.stderr.startswith(f"error: cannot write {fresh.path} ({fresh.why})"), r
    assert fresh.files() == before and not fresh.ledger.exists()


def _crash_with_an_order_in_the_wal(home: Home) -> None:
    """What a killed esimctl leaves: a committed order only in ledger.sqlite3-wal."""
    script = (
        "import os, sqlite3, sys\n"
        "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "db.execute('PRAGMA wal_autocheckpoint=0')\n"
        'db.execute("INSERT INTO orders (id, account, provider, created_at, updated_at, state)'
        " VALUES ('Lwal', 'jp', 'manual', '2026-11-20T08:00:00Z', '2026-11-20T08:00:00Z',"
        " 'pending')\")\n"
        "os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", script, str(home.ledger)], check=True, timeout=60)
    assert home.ledger.with_name("ledger.sqlite3-wal").stat().st_size > 0
    with sqlite3.connect(f"{home.ledger.as_uri()}?immutable=1", uri=True) as db:
        assert db.execute("SELECT count(*) FROM orders WHERE id = 'Lwal'").fetchone() == (0,)


def test_changes_still_in_the_wal_are_read_through_its_shm(fresh: Home) -> None:
    _populate_manual(fresh)
    _crash_with_an_order_in_the_wal(fresh)
    fresh.make_read_only()
    before = fresh.files()
    r = fresh.run("history", "--local", "--json")
    assert r.returncode == 0, r
    ids = [o["id"] for o in json.loads(r.stdout)["data"]["orders"]]
    assert "Lwal" in ids  # mode=ro reads the -wal; immutable=1 would have missed it
    assert fresh.files() == before


def test_changes_in_a_wal_without_its_shm_are_not_hidden(fresh: Home) -> None:
    _populate_manual(fresh)
    _crash_with_an_order_in_the_wal(fresh)
    fresh.ledger.with_name("ledger.sqlite3-shm").unlink()
    fresh.make_read_only()
    before = fresh.files()
    r = fresh.run("history", "--local")
    assert r.returncode == 1, r
    assert r.stderr.startswith(f"error: cannot write {fresh.path / 'data'} ({fresh.why})"), r
    assert "ledger.sqlite3-wal" in r.stderr and "unexpected" not in r.stderr
    assert fresh.files() == before
    fresh.make_writable()  # once writable, the order is there
    r = fresh.ok("history", "--local", "--json")
    assert "Lwal" in [o["id"] for o in json.loads(r.stdout)["data"]["orders"]]


def _populate_manual(home: Home) -> None:
    home.ok("account", "add", "jp", "--provider", "manual")
    home.ok("esim", "add", "jp", "--iccid", ICCID, "--data", "3GB", "--days", "7")
