"""Notification targets through the CLI: a real Apprise target against a local HTTP server (no
network), a command target, and the URL — a secret — in the keyring, never in config or output.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

TOKEN = "tok-5ecret-Q7x9Zr"


@dataclass
class Hook:
    """A local HTTP server: POSTs to /ok answer 200, to /refuse 500, to /hang nothing until
    the test ends."""

    port: int
    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str = "ok") -> str:
        # Apprise's JSON plugin: json://user:password@host:port/path (POSTs to http://).
        return f"json://esim:{TOKEN}@127.0.0.1:{self.port}/{path}"


@pytest.fixture
def hook() -> Iterator[Hook]:
    state: dict[str, Hook] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            size = int(self.headers.get("Content-Length") or 0)
            state["hook"].received.append((self.path, json.loads(self.rfile.read(size))))
            if self.path == "/hang":
                state["hook"].release.wait(30)
            self.send_response(500 if self.path == "/refuse" else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state["hook"] = Hook(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state["hook"]
    state["hook"].release.set()
    server.shutdown()
    server.server_close()


@pytest.fixture
def run(cli: Callable[..., Any]) -> Iterator[Callable[..., Any]]:
    """``cli``, and at the end: the token appeared in no command's stdout or stderr."""
    seen: list[Any] = []

    def invoke(*args: str, **kw: Any) -> Any:
        r = cli(*args, **kw)
        seen.append(r)
        return r

    yield invoke
    for r in seen:
        assert TOKEN not in r.stdout + r.stderr, r
        assert "json://" not in r.stdout + r.stderr, r


def add(run: Callable[..., Any], name: str, url: str, *extra: str) -> Any:
    r = run("notify", "add", name, "--url-stdin", *extra, input=url + "\n")
    assert r.exit_code == 0, r
    return r


def stored(memory_keyring: Any, name: str) -> Any:
    raw = memory_keyring.store.get(("esimctl", f"notify:{name}"))
    return None if raw is None else json.loads(raw)


# -- add and list ---------------------------------------------------------------------------


def test_add_keeps_the_url_in_the_keyring_not_in_config(run, hook, home, memory_keyring):
    r = add(run, "home", hook.url(), "--events", "low_data,topup_bought")
    assert "notify target 'home' saved" in r.stdout
    assert stored(memory_keyring, "home") == {"url": hook.url()}
    text = (home / "config.toml").read_text()
    assert "[notify.targets.home]" in text and '"low_data"' in text
    assert TOKEN not in text and "json://" not in text and "127.0.0.1" not in text
    assert hook.received == []  # checked, not sent


def test_add_asks_for_the_url_on_a_terminal(run, hook, memory_keyring):
    r = run("notify", "add", "home", tty=True, input=hook.url() + "\n")
    assert r.exit_code == 0, r
    assert stored(memory_keyring, "home") == {"url": hook.url()}


def test_add_takes_the_url_as_an_argument_too(run, hook, memory_keyring):
    r = run("notify", "add", "home", hook.url())
    assert r.exit_code == 0, r
    assert stored(memory_keyring, "home") == {"url": hook.url()}


def test_add_refuses_a_url_apprise_does_not_know(run, home, memory_keyring):
    r = run("notify", "add", "x", "--url-stdin", input=f"nosuch://{TOKEN}@host/path\n")
    assert r.exit_code == 2, r
    assert "not an Apprise URL it knows" in r.stderr and "nosuch://" in r.stderr
    assert TOKEN not in r.stderr
    assert memory_keyring.store == {}
    assert not (home / "config.toml").exists()


def test_add_without_a_terminal_needs_url_stdin(run, home):
    r = run("notify", "add", "home")
    assert r.exit_code == 2 and "--url-stdin" in r.stderr
    assert not (home / "config.toml").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bad name", "--command", "x"], "invalid target name"),
        (["x", "--command", "x", "--events", "low_dta"], "did you mean low_data"),
        (["x", "--command", "'unclosed"], "invalid --command"),
        (["x", "--command", "x", "--store", "file"], "--store is for a URL"),
    ],
)
def test_add_bad_input_exits_2_and_writes_nothing(run, home, args, message):
    r = run("notify", "add", *args)
    assert r.exit_code == 2, r
    assert message in r.stderr
    assert not (home / "config.toml").exists()


def test_list_says_where_each_url_is_never_the_url(run, hook, configure, memory_keyring):
    configure('[notify.targets.lost]\nevents = ["low_data"]\n')
    add(run, "home", hook.url())
    add(run, "srv", hook.url(), "--store", "file")
    r = run("notify", "list")
    assert r.exit_code == 0, r
    rows = {ln.split("\t")[0]: ln.split("\t")[1:] for ln in r.stdout.splitlines()}
    assert rows["home"][:2] == ["apprise", "keyring"]
    assert rows["srv"][:2] == ["apprise", "file"]
    assert rows["lost"][1].startswith("missing") and rows["lost"][2] == "low_data"
    data = run("notify", "list", "--json").json["data"]["targets"]
    assert {t["name"]: t["url_from"] for t in data} == {
        "lost": "missing",
        "home": "keyring",
        "srv": "file",
    }
    assert {t["env_var"] for t in data} == {
        "ESIMCTL_NOTIFY_LOST_URL",
        "ESIMCTL_NOTIFY_HOME_URL",
        "ESIMCTL_NOTIFY_SRV_URL",
    }
    assert stored(memory_keyring, "srv") is None


def test_adding_again_replaces_the_url_and_keeps_the_events(run, hook, home, memory_keyring):
    add(run, "home", hook.url("refuse"), "--events", "low_data")
    add(run, "home", hook.url())
    assert stored(memory_keyring, "home") == {"url": hook.url()}
    [target] = run("notify", "list", "--json").json["data"]["targets"]
    assert target["events"] == ["low_data"]
    r = run("notify", "add", "home", "--command", "true")
    assert r.exit_code == 2 and "notify remove home" in r.stderr
    assert "command" not in (home / "config.toml").read_text()


# -- test: delivery -------------------------------------------------------------------------


def test_test_delivers_through_apprise(run, hook):
    add(run, "home", hook.url())
    r = run("notify", "test")
    assert r.exit_code == 0, r
    assert "home: delivered" in r.stdout
    [(path, payload)] = hook.received
    assert path == "/ok"
    assert payload["title"] == "esimctl: test notification"
    assert "notify target 'home'" in payload["message"]


def test_a_refusing_target_exits_1_with_one_line(run, hook):
    add(run, "bad", hook.url("refuse"))
    add(run, "good", hook.url())
    r = run("notify", "test", "--json")
    assert r.exit_code == 1, r
    results = {x["target"]: x for x in r.json["data"]["results"]}
    assert results["good"]["delivered"] is True
    assert results["bad"]["delivered"] is False
    assert "error=500" in results["bad"]["reason"]
    human = run("notify", "test", "bad")
    assert human.exit_code == 1
    [line] = human.stderr.splitlines()
    assert line.startswith("error: bad: not delivered")


def test_a_hanging_target_costs_at_most_the_timeout(run, hook, configure):
    configure('[notify]\ntimeout = "1s"\n')
    add(run, "slow", hook.url("hang"))
    r = run("notify", "test", "slow")
    assert r.exit_code == 1, r
    assert r.stderr.strip() == "error: slow: did not answer within 1 s"


def test_a_target_without_a_url_says_how_to_add_one(run, configure):
    configure("[notify.targets.lost]\n")
    r = run("notify", "test")
    assert r.exit_code == 1, r
    assert "lost: no URL stored: esimctl notify add lost URL" in r.stderr


def test_the_environment_variable_wins_over_the_keyring(run, hook):
    add(run, "my-phone", hook.url("refuse"))
    env = {"ESIMCTL_NOTIFY_MY_PHONE_URL": hook.url()}
    listed = run("notify", "list", "--json", env=env).json["data"]["targets"]
    assert [t["url_from"] for t in listed] == ["env"]
    r = run("notify", "test", "my-phone", env=env)
    assert r.exit_code == 0, r
    assert [path for path, _ in hook.received] == ["/ok"]


def test_a_command_target_gets_the_event_as_json(run, tmp_path, home):
    out = tmp_path / "event.json"
    script = tmp_path / "hook.py"
    script.write_text(
        "import pathlib, sys\npathlib.Path(sys.argv[1]).write_text(sys.stdin.read())\n"
    )
    command = shlex.join([sys.executable, str(script), str(out)])
    r = run("notify", "add", "hook", "--command", command, "--events", "topup_bought")
    assert r.exit_code == 0, r
    assert "command = [" in (home / "config.toml").read_text()
    r = run("notify", "test", "hook")
    assert r.exit_code == 0, r
    event = json.loads(out.read_text())
    assert event["event"] == "test" and event["title"] == "esimctl: test notification"
    assert set(event) >= {"key", "message", "action", "at", "iccid", "figures"}


def test_a_failing_command_gives_its_exit_code_not_its_output(run, tmp_path):
    script = tmp_path / "fails.py"
    script.write_text(f"import sys\nprint({TOKEN!r})\nsys.exit(3)\n")
    run("notify", "add", "hook", "--command", shlex.join([sys.executable, str(script)]))
    r = run("notify", "test")
    assert r.exit_code == 1, r
    assert "exited 3" in r.stderr
    missing = run("notify", "add", "gone", "--command", "/nonexistent/esimctl-hook")
    assert missing.exit_code == 0, missing
    r = run("notify", "test", "gone")
    assert r.exit_code == 1 and "no such program" in r.stderr


# -- remove ---------------------------------------------------------------------------------


def test_remove_cleans_config_and_keyring(run, hook, home, memory_keyring):
    add(run, "home", hook.url())
    refused = run("notify", "remove", "home")
    assert refused.exit_code == 2 and "--yes" in refused.stderr
    r = run("notify", "remove", "home", "--yes")
    assert r.exit_code == 0, r
    assert stored(memory_keyring, "home") is None
    assert "notify" not in (home / "config.toml").read_text()
    assert run("notify", "list", "--json").json["data"]["targets"] == []
    gone = run("notify", "remove", "home", "--yes")
    assert gone.exit_code == 2 and "unknown notify target 'home'" in gone.stderr


# -- what never shows the URL, what stays lazy ----------------------------------------------


def test_a_target_repr_never_shows_its_url(hook):
    from esimctl.notify.targets import Target

    assert TOKEN not in repr(Target("home", None, None, hook.url()))


def test_notify_help_imports_neither_apprise_nor_keyring():
    code = (
        "import sys\nfrom esimctl.cli.app import run\nrun(['notify', 'list', '--help'])\n"
        "print(sorted({'apprise', 'keyring'} & set(sys.modules)))"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.stdout.strip().splitlines()[-1] == "[]", p


def test_the_url_file_store_entry_is_private(run, hook, home):
    add(run, "srv", hook.url(), "--store", "file")
    [entry] = (home / "data" / "credentials").iterdir()
    assert entry.stat().st_mode & 0o077 == 0
    assert json.loads(entry.read_text()) == {"url": hook.url()}
