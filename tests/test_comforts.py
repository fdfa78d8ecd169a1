"""The comforts people expect of a CLI (issue 14, items 6 and 9 to 12), through the CLI:
shell completion through Typer's entry point with each shell's variables, choosing a top-up
on a terminal, ``config path|check|edit`` and ``esim plan list``, the README's cron line in
cron's own environment, help in the user's words, install deadlines, and prices compared
across currencies only with rates."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import typer

from fakes.esimgo import DEFAULT_KEY, FakeEsimGo

ROOT = Path(__file__).resolve().parent.parent
ICCID = "8981100022223333444"

# -- shell completion -----------------------------------------------------------------------


def complete(cli: Any, line: str, shell: str = "bash") -> list[str]:
    """What a Tab after ``line`` offers, asked the way each shell's script asks."""
    env = {"_ESIMCTL_COMPLETE": f"complete_{shell}"}
    if shell == "bash":
        env["COMP_WORDS"] = line
        env["COMP_CWORD"] = str(len(line.split(" ")) - 1)
    else:
        env["_TYPER_COMPLETE_ARGS"] = line
        if shell == "fish":
            env["_TYPER_COMPLETE_FISH_ACTION"] = "get-args"
    r = cli(env=env)
    assert r.exit_code == 0, r
    assert r.stderr == "", r
    return [w for w in r.stdout.splitlines() if w]


@pytest.fixture
def demo(cli: Any) -> Any:
    """The demo profile, its eSIMs seen once by ``status`` (as a user would have)."""
    assert cli("--demo", "status", "--json").exit_code == 0
    return cli


def test_completes_commands_and_options(cli):
    words = complete(cli, "esimctl ")
    assert {"status", "plans", "renew", "history", "config", "completion", "esim"} <= set(words)
    assert complete(cli, "esimctl st") == ["status"]
    assert complete(cli, "esimctl config ") == ["path", "check", "edit"]
    assert {"list", "add", "remove"} <= set(complete(cli, "esimctl esim plan "))
    options = complete(cli, "esimctl renew --")
    assert {"--plan", "--yes", "--dry-run", "--max-price", "--account"} <= set(options)
    assert complete(cli, "esimctl plans --sort price") == ["price", "price-per-gb"]
    assert complete(cli, "esimctl --color ") == ["auto", "always", "never"]
    assert complete(cli, "esimctl completion ") == ["bash", "zsh", "fish"]
    assert "manual" in complete(cli, "esimctl account add x --provider ")


def test_completes_account_names_from_config(cli, configure):
    configure(
        """
        [accounts.trip]
        provider = "esimgo"
        [accounts.work]
        provider = "airalo"
        [accounts.jp-card]
        provider = "manual"
        """
    )
    assert complete(cli, "esimctl status --account ") == ["jp-card", "trip", "work"]
    assert complete(cli, "esimctl status -a t") == ["trip"]
    assert complete(cli, "esimctl account test w") == ["work"]
    assert complete(cli, "esimctl esim plan list ") == ["jp-card"]
    assert complete(cli, "esimctl esim add ") == ["jp-card"]


def test_completes_esim_labels_and_iccid_suffixes(demo, home):
    words = complete(demo, "esimctl --demo show ")
    assert {"Tokyo", "Europe", "USA", "0018"} <= set(words)
    assert "Tokyo" in complete(demo, "esimctl --demo plans T")
    assert complete(demo, "esimctl --demo renew Tok") == ["Tokyo"]
    suffixes = complete(demo, "esimctl --demo history 00")
    assert suffixes and all(re.fullmatch(r"00\d{2,}", w) for w in suffixes)
    # Typing the ICCID from its start: the full ICCIDs.
    full = complete(demo, "esimctl --demo show 898110")
    assert "8981100000000000018" in full and all(w.startswith("898110") for w in full)
    # status takes several: one already named is not offered again.
    again = complete(demo, "esimctl --demo status Tokyo ")
    assert "Tokyo" not in again and "Europe" in again
    # Nothing known without the demo's profile: no ledger is created to answer.
    assert complete(demo, "esimctl show ") == []
    assert not (home / "data" / "ledger.sqlite3").exists()


def test_labels_from_config_are_offered(cli, configure, home):
    configure(
        f"""
        [accounts.jp-card]
        provider = "manual"
        [esims."{ICCID}"]
        label = "Kyoto"
        """
    )
    add = ["esim", "add", "jp-card", "--iccid", ICCID, "--data", "3GB", "--days", "7"]
    assert cli(*add).exit_code == 0
    assert complete(cli, "esimctl esim reading ") == ["Kyoto", "3444"]


def test_completes_plan_ids_for_renew(demo):
    # None known for Tokyo before anything listed its top-ups...
    before = complete(demo, "esimctl --demo renew Tokyo --plan ")
    assert demo("--demo", "plans", "Tokyo").exit_code == 0
    ids = complete(demo, "esimctl --demo renew Tokyo --plan ")
    assert {"jp-1gb-3d", "jp-3gb-7d", "jp-10gb-30d"} <= set(ids)
    assert set(before) < set(ids)
    assert complete(demo, "esimctl --demo renew Tokyo -p jp-3") == ["jp-3gb-7d"]
    # ...and only that eSIM's: Bangkok's top-ups are not offered for Tokyo.
    assert not any(i.startswith("th-") for i in ids)


def test_completes_seller_plans_and_plans_bought_before(cli):
    assert cli("account", "add", "jp-card", "--provider", "manual").exit_code == 0
    add = ["esim", "add", "jp-card", "--iccid", ICCID, "--label", "Tokyo", "--data", "3GB"]
    assert cli(*add, "--days", "7").exit_code == 0
    plan = ["esim", "plan", "add", "jp-card", "jp-3gb-7d", "--data", "3GB", "--days", "7"]
    assert cli(*plan, "--price", "58CNY").exit_code == 0
    assert complete(cli, "esimctl renew Tokyo --plan ") == ["jp-3gb-7d"]
    assert complete(cli, "esimctl esim plan remove jp-card ") == ["jp-3gb-7d"]


def test_zsh_and_fish_get_their_formats(demo):
    zsh = "\n".join(complete(demo, "esimctl --demo show Tok", shell="zsh"))
    assert zsh.startswith("_arguments '*: :((") and '"Tokyo":' in zsh
    fish = complete(demo, "esimctl --demo show Tok", shell="fish")
    assert fish and fish[0].startswith("Tokyo\t")
    assert complete(demo, "esimctl --demo ", shell="fish")
    assert "status" in "\n".join(complete(demo, "esimctl --demo st", shell="zsh"))


def test_completion_never_asks_the_provider(cli, configure):
    with FakeEsimGo() as fake:
        iccid = fake.add_esim()
        configure(
            f"""
            [accounts.trip]
            provider = "esimgo"
            base_url = "{fake.url}"
            retries = 0
            timeout = 2
            [esims."{iccid}"]
            label = "Lisbon"
            """
        )
        env = {"ESIMCTL_TRIP_API_KEY": DEFAULT_KEY}
        assert cli("status", "--refresh", env=env).exit_code == 0
        asked = len(fake.requests)
        assert complete(cli, "esimctl show L") == ["Lisbon"]
        assert iccid[-4:] in complete(cli, "esimctl history ")
        assert complete(cli, "esimctl renew Lisbon --plan ") == []
        assert len(fake.requests) == asked


# A fresh interpreter answering a completion request: which heavy modules did it import?
PROBE = """
import json, sys
from esimctl.cli.app import run
code = run([])
heavy = ("httpx", "httpcore", "keyring", "pydantic", "apprise", "icalendar")
loaded = sorted({m.split(".")[0] for m in sys.modules} & set(heavy))
sys.stdout.flush()
sys.stderr.write("\\nPROBE " + json.dumps({"code": code, "loaded": loaded}) + "\\n")
"""


@pytest.mark.parametrize(
    "line", ["esimctl --demo renew Tokyo --plan ", "esimctl --demo show ", "esimctl "]
)
def test_completion_starts_without_the_network_stack(demo, line):
    assert demo("--demo", "plans", "Tokyo").exit_code == 0
    env = {
        **os.environ,
        "_ESIMCTL_COMPLETE": "complete_bash",
        "COMP_WORDS": line,
        "COMP_CWORD": str(len(line.split(" ")) - 1),
    }
    p = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=60
    )
    report = json.loads(p.stderr.strip().splitlines()[-1].removeprefix("PROBE "))
    assert report == {"code": 0, "loaded": []}, p.stderr
    assert p.stdout.strip()


def test_completion_scripts(cli):
    bash = cli("completion", "bash")
    assert bash.exit_code == 0
    assert "_ESIMCTL_COMPLETE=complete_bash" in bash.stdout
    assert "complete -o default -F _esimctl_completion esimctl" in bash.stdout
    zsh = cli("completion", "zsh").stdout
    assert zsh.startswith("#compdef esimctl") and "_ESIMCTL_COMPLETE=complete_zsh" in zsh
    fish = cli("completion", "fish").stdout
    assert "complete --command esimctl" in fish and "complete_fish" in fish
    bad = cli("completion", "tcsh")
    assert bad.exit_code == 2 and "use bash, zsh or fish" in bad.stderr


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_script_completes_in_bash(demo, tmp_path):
    """The script as bash runs it: esimctl from PATH, COMPREPLY filled."""
    script = tmp_path / "esimctl.bash"
    script.write_text(demo("completion", "bash").stdout)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    launcher = bindir / "esimctl"
    launcher.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m esimctl "$@"\n')
    launcher.chmod(0o755)
    run = textwrap.dedent(
        f"""
        source {shlex.quote(str(script))}
        COMP_WORDS=(esimctl --demo show "")
        COMP_CWORD=3
        _esimctl_completion esimctl
        printf '%s\\n' "${{COMPREPLY[@]}}"
        """
    )
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
    p = subprocess.run(["bash", "-c", run], capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "Tokyo" in p.stdout.split("\n")


# -- renew ESIM on a terminal without --plan ---------------------------------------------------


def menu_ids(stderr: str) -> list[str]:
    """The plan ids of the list renew offers, in its order."""
    return re.findall(r"^\s+\d+\s+(\S+)\s", stderr, flags=re.M)


def test_renew_on_a_terminal_offers_the_topups_sorted_as_plans(demo):
    r = demo("--demo", "renew", "Tokyo", "--dry-run", tty=True, input="\n")
    assert r.exit_code == 1, r
    assert "top-ups for Tokyo" in r.stderr and "which one?" in r.stderr
    assert "nothing bought: no plan chosen" in r.stderr
    shown = menu_ids(r.stderr)
    listed = demo("--demo", "plans", "Tokyo", "--sort", "price-per-gb", "--json").json
    assert shown == [p["id"] for p in listed["data"]["plans"]]
    # cheapest per GB first, in the eSIM's currency (USD) first
    usd = [p for p in listed["data"]["plans"] if p["price"]["currency"] == "USD"]
    assert shown[0] == "jp-50gb-90d" and shown[: len(usd)] == [p["id"] for p in usd]


def test_renew_buys_the_chosen_topup_with_the_consent_prompt(demo):
    offered = menu_ids(demo("--demo", "renew", "Tokyo", tty=True, input="\n").stderr)
    number = offered.index("jp-3gb-7d") + 1
    r = demo("--demo", "renew", "Tokyo", tty=True, input=f"{number}\ny\n")
    assert r.exit_code == 0, r
    assert "Buy Japan 3 GB · 7 days for 9.00 USD on Tokyo" in r.stderr
    assert "bought Japan 3 GB · 7 days" in r.stdout
    # by its id too; a wrong answer is asked again; no at the consent prompt buys nothing
    r = demo("--demo", "renew", "Tokyo", "--again", tty=True, input="nope\njp-1gb-3d\nn\n")
    assert r.exit_code == 1, r
    assert "no plan 'nope' here" in r.stderr
    assert "Buy Japan 1 GB · 3 days for 4.50 USD on Tokyo" in r.stderr
    orders = demo("--demo", "history", "--local", "--json").json["data"]["orders"]
    assert [o["plan_id"] for o in orders if o["iccid"].endswith("0018")][:1] == ["jp-3gb-7d"]


def test_renew_in_a_pipe_still_requires_the_plan(demo):
    r = demo("--demo", "renew", "Tokyo", "--yes")
    assert r.exit_code == 2
    assert "name the plan: esimctl renew Tokyo --plan PLAN" in r.stderr
    assert "which one?" not in r.stderr


# -- config path, check, edit; esim plan list ------------------------------------------------


def test_config_path(cli, home):
    r = cli("config", "path")
    assert (r.exit_code, r.stdout) == (0, f"{home / 'config.toml'}\n")
    assert cli("config", "path", "--json").json["data"] == {
        "path": str(home / "config.toml"),
        "exists": False,
    }


def test_config_check(cli, configure, home):
    r = cli("config", "check")
    assert r.exit_code == 0 and r.stdout.startswith("ok: ") and r.stdout.count("\n") == 1
    configure('[accounts.trip]\nprovider = "esimgo"\n')
    r = cli("config", "check")
    assert (r.exit_code, r.stdout) == (0, f"ok: {home / 'config.toml'} (1 account)\n")
    configure("[attention]\nlow_data_percent = -5\n")
    r = cli("config", "check")
    assert r.exit_code == 2 and r.stdout == ""
    assert "[attention] low_data_percent: expected a number from 0 to 100" in r.stderr
    configure('[accounts.trip]\nprovider = "airlo"\n')
    r = cli("config", "check", "--json")
    assert r.exit_code == 2
    assert "[accounts.trip] unknown provider 'airlo'" in r.json["errors"][0]["message"]


FAKE_EDITOR = """
import os, pathlib, sys
target = pathlib.Path(sys.argv[-1])
edits = pathlib.Path(os.environ["FAKE_EDITS"])
count = edits / "count"
n = int(count.read_text()) + 1 if count.exists() else 1
count.write_text(str(n))
(edits / "seen").write_text(target.read_text())
version = edits / f"{n}.toml"
if version.exists():
    target.write_text(version.read_text())
sys.exit(int(os.environ.get("FAKE_EDITOR_EXIT", "0")))
"""


@pytest.fixture
def editor(tmp_path: Path) -> Any:
    """A fake editor: its Nth run writes edits/N.toml into the file (if there is one)."""
    edits = tmp_path / "edits"
    edits.mkdir()
    script = tmp_path / "fake_editor.py"
    script.write_text(FAKE_EDITOR)

    def make(*versions: str, exit: int = 0) -> dict[str, str]:
        for n, text in enumerate(versions, 1):
            (edits / f"{n}.toml").write_text(textwrap.dedent(text))
        return {
            "EDITOR": f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}",
            "FAKE_EDITS": str(edits),
            "FAKE_EDITOR_EXIT": str(exit),
        }

    make.edits = edits  # type: ignore[attr-defined]
    return make


OLD = '[accounts.trip]\nprovider = "esimgo"\n'
GOOD = '[accounts.trip]\nprovider = "esimgo"\n\n[attention]\nlow_data = "1GB"\n'
BAD = '[accounts.trip]\nprovider = "esimgo"\n\n[attention]\nlow_dat = "1GB"\n'


def test_config_edit_saves_a_valid_edit(cli, configure, editor, home):
    configure(OLD)
    r = cli("config", "edit", env=editor(GOOD))
    assert r.exit_code == 0, r
    assert "saved" in r.stdout and "ok" in r.stdout
    path = home / "config.toml"
    assert path.read_text() == GOOD
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert (editor.edits / "seen").read_text() == OLD
    assert [p.name for p in home.iterdir() if p.name.startswith("config")] == ["config.toml"]


def test_config_edit_never_leaves_a_broken_config(cli, configure, editor, home):
    path = configure(OLD)
    r = cli("config", "edit", env=editor(BAD))
    assert r.exit_code == 2, r
    assert "unknown key 'low_dat' (did you mean low_data?)" in r.stderr
    assert path.read_text() == OLD
    assert (home / "config.rejected.toml").read_text() == BAD
    # on a terminal, declining to edit again keeps the old file too
    (editor.edits / "count").unlink()
    r = cli("config", "edit", env=editor(BAD), tty=True, input="n\n")
    assert r.exit_code == 2 and "edit it again?" in r.stderr
    assert path.read_text() == OLD


def test_config_edit_offers_to_edit_again(cli, configure, editor, home):
    path = configure(OLD)
    r = cli("config", "edit", env=editor(BAD, GOOD), tty=True, input="\n")
    assert r.exit_code == 0, r
    assert "edit it again? [Y/n]" in r.stderr
    assert path.read_text() == GOOD
    # the second run of the editor saw the first edit, not the old file
    assert (editor.edits / "seen").read_text() == BAD


def test_config_edit_unchanged_and_failed_editor(cli, configure, editor, home):
    path = configure(OLD)
    r = cli("config", "edit", env=editor())
    assert (r.exit_code, r.stdout.strip()) == (0, f"no change: {path}")
    r = cli("config", "edit", env=editor(GOOD, exit=3))
    assert r.exit_code == 1 and "exited 3" in r.stderr
    assert path.read_text() == OLD


def test_config_edit_creates_the_file_and_prefers_visual(cli, editor, home, tmp_path):
    env = editor(GOOD)
    env["VISUAL"], env["EDITOR"] = env["EDITOR"], "false"
    r = cli("config", "edit", env=env)
    assert r.exit_code == 0, r
    assert (home / "config.toml").read_text() == GOOD
    assert "esimctl account add" in (editor.edits / "seen").read_text()  # the template


def test_config_edit_falls_back_to_an_editor_on_path(cli, editor, home, tmp_path):
    env = editor(GOOD)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    nano = bindir / "nano"
    nano.write_text(f'#!/bin/sh\nexec {env.pop("EDITOR")} "$@"\n')
    nano.chmod(0o755)
    r = cli("config", "edit", env={**env, "PATH": str(bindir), "EDITOR": "", "VISUAL": ""})
    assert r.exit_code == 0, r
    assert (home / "config.toml").read_text() == GOOD
    r = cli("config", "edit", env={"PATH": str(tmp_path / "none"), "EDITOR": "", "VISUAL": ""})
    assert r.exit_code == 2 and "no editor found: set $EDITOR" in r.stderr


def test_esim_plan_list(cli):
    r = cli("esim", "plan", "list")
    assert r.exit_code == 0 and r.stdout == ""
    assert cli("account", "add", "jp-card", "--provider", "manual").exit_code == 0
    for plan_id, data, price in (("jp-3gb-7d", "3GB", "58CNY"), ("jp-1gb-3d", "1GB", "25CNY")):
        add = ["esim", "plan", "add", "jp-card", plan_id, "--data", data, "--days", "7"]
        assert cli(*add, "--price", price).exit_code == 0
    rows = cli("esim", "plan", "list").stdout.splitlines()
    assert [row.split("\t")[1] for row in rows] == ["jp-1gb-3d", "jp-3gb-7d"]
    doc = cli("esim", "plan", "list", "jp-card", "--json").json
    assert [p["id"] for p in doc["data"]["plans"]] == ["jp-1gb-3d", "jp-3gb-7d"]
    assert doc["data"]["plans"][1]["price"] == {"amount": "58.00", "currency": "CNY"}
    table = cli("esim", "plan", "list", tty=True).stdout
    assert "jp-3gb-7d" in table and "58.00 CNY" in table
    assert cli("esim", "plan", "list", "nobody").exit_code == 2


# -- the README's cron line, in cron's environment ---------------------------------------------


def _readme_block(lang: str) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## From cron") : text.index("## Shell completion")]
    (block,) = re.findall(rf"```{lang}\n(.*?)```", section, flags=re.S)
    return block


README_ESIMCTL = "/home/me/esimctl/.venv/bin/esimctl"


@pytest.fixture
def cron_home(tmp_path: Path) -> Any:
    """A user's home as cron sees it: config in ~/.config, secrets in the env file."""
    esimctl = Path(sys.executable).parent / "esimctl"
    if not esimctl.exists():
        pytest.skip("esimctl is not installed in this environment")
    with FakeEsimGo() as fake:
        iccid = fake.add_esim()
        user = tmp_path / "user"
        conf = user / ".config" / "esimctl"
        conf.mkdir(parents=True)
        (conf / "config.toml").write_text(
            f'[accounts.trip]\nprovider = "esimgo"\nbase_url = "{fake.url}"\n'
            f'retries = 0\ntimeout = 2\n[esims."{iccid}"]\nlabel = "Lisbon"\n'
            '[renewal.esims.Lisbon]\ndata_below = "100MB"\nplan = "esim_1GB_7D_PT_V2"\n'
        )
        # The README's env file, with this account's secret.
        env_file = conf / "cron.env"
        env_file.write_text(
            f"ESIMCTL_TRIP_API_KEY={DEFAULT_KEY}\n"
            "PYTHON_KEYRING_BACKEND=keyring.backends.null.Keyring\n"
        )
        env_file.chmod(0o600)
        cron_env = {"HOME": str(user), "LOGNAME": "me", "PATH": "/usr/bin:/bin", "SHELL": "/bin/sh"}
        yield fake, str(esimctl), cron_env


def test_readme_cron_line_runs_in_crons_environment(cron_home):
    fake, esimctl, cron_env = cron_home
    (line,) = [x for x in _readme_block("cron").splitlines() if x.strip()]
    schedule, command = line.split()[:5], line.split(None, 5)[5]
    assert schedule == ["*/15", "*", "*", "*", "*"]
    assert "SECRET" not in command and "API_KEY" not in command  # no secret in the crontab
    assert command.count(README_ESIMCTL) == 1  # the full path, not PATH's
    p = subprocess.run(
        ["/bin/sh", "-c", command.replace(README_ESIMCTL, shlex.quote(esimctl))],
        capture_output=True,
        text=True,
        env=cron_env,
        timeout=120,
    )
    # -q: nothing to do, nothing said; the eSIM list was fetched with the env file's key.
    assert (p.returncode, p.stdout, p.stderr) == (0, "", "")
    assert any(r.path.startswith("/esims") for r in fake.requests)


def test_readme_systemd_timer_runs_the_same_command(cron_home):
    _, esimctl, cron_env = cron_home
    ini = _readme_block("ini")
    service = dict(
        line.split("=", 1) for line in ini.splitlines() if "=" in line and not line.startswith("#")
    )
    assert service["OnCalendar"] == "*:0/15" and service["Type"] == "oneshot"
    cron_command = _readme_block("cron").split(None, 5)[5]
    assert service["ExecStart"] in cron_command  # the same command as the cron line
    env_file = service["EnvironmentFile"].replace("%h", cron_env["HOME"])
    assert env_file in cron_command.replace("$HOME", cron_env["HOME"]).replace('"', "")
    # As systemd runs it: the env file's variables, no shell, no login environment.
    loaded = dict(
        line.split("=", 1) for line in Path(env_file).read_text().splitlines() if "=" in line
    )
    argv = shlex.split(service["ExecStart"].replace(README_ESIMCTL, esimctl))
    p = subprocess.run(
        argv, capture_output=True, text=True, env={**cron_env, **loaded}, timeout=120
    )
    assert (p.returncode, p.stdout, p.stderr) == (0, "", "")


# -- help, install deadlines, prices across currencies ------------------------------------------


def _command_paths() -> list[list[str]]:
    out: list[list[str]] = [[]]

    def walk(cmd: Any, path: list[str]) -> None:
        for name, sub in (getattr(cmd, "commands", None) or {}).items():
            out.append([*path, name])
            walk(sub, [*path, name])

    from esimctl.cli.app import app

    walk(typer.main.get_command(app), [])
    return out


@pytest.mark.parametrize("path", _command_paths(), ids=lambda p: " ".join(p) or "esimctl")
def test_help_speaks_the_users_language(cli, path):
    r = cli(*path, "--help")
    assert r.exit_code == 0, r
    assert "SPEC" not in r.stdout


def test_status_shows_the_install_deadline(demo):
    r = demo("--demo", "status", "USA", tty=True)
    assert r.exit_code == 0, r
    usa = demo("--demo", "status", "USA", "--json").json["data"]["esims"][0]
    assert usa["state"] == "not_active"
    from datetime import datetime

    deadline = datetime.fromisoformat(usa["expires_at"].replace("Z", "+00:00")).astimezone()
    assert f"install by {deadline:%Y-%m-%d}" in r.stdout
    assert "install in" not in r.stdout


@pytest.fixture
def seller(cli: Any) -> Any:
    """A manual seller's eSIM (bought in USD) and three plans, in CNY and USD."""
    assert cli("account", "add", "jp-card", "--provider", "manual").exit_code == 0
    add = ["esim", "add", "jp-card", "--iccid", ICCID, "--label", "Tokyo", "--data", "3GB"]
    assert cli(*add, "--days", "7").exit_code == 0
    for plan_id, price in (("a", "50CNY"), ("b", "5USD"), ("c", "30CNY")):
        plan = ["esim", "plan", "add", "jp-card", plan_id, "--data", "1GB", "--days", "7"]
        assert cli(*plan, "--price", price).exit_code == 0
    return cli


def _ids(cli: Any, *args: str) -> list[str]:
    r = cli("plans", "Tokyo", "--json", *args)
    assert r.exit_code == 0, r
    return [p["id"] for p in r.json["data"]["plans"]]


def test_prices_are_grouped_by_currency_without_rates(seller):
    # no order yet: the currency most plans are in first
    assert _ids(seller) == ["c", "a", "b"]
    assert _ids(seller, "--sort", "price-per-gb") == ["c", "a", "b"]
    r = seller("plans", "Tokyo")
    assert "sorted within each currency" in r.stderr and "[rates]" in r.stderr
    # after a purchase in USD, the eSIM's currency comes first
    bought = ["renew", "Tokyo", "--plan", "b", "--order", "A-1", "--no-browser", "--yes"]
    assert seller(*bought).exit_code == 0
    assert _ids(seller) == ["b", "c", "a"]


def test_prices_sort_by_value_with_rates(seller, home):
    config = home / "config.toml"
    config.write_text(config.read_text() + '\n[rates]\nCNY = "0.14 USD"\n')
    assert seller("config", "check").exit_code == 0
    assert _ids(seller) == ["c", "b", "a"]  # 4.20, 5.00, 7.00 USD
    assert "sorted within each currency" not in seller("plans", "Tokyo").stderr
    config.write_text(config.read_text() + 'EUR = "1.1 GBP"\n')
    r = seller("config", "check")
    assert r.exit_code == 2 and "every rate must be in one common currency" in r.stderr
