"""``esimctl config``: where config.toml is, whether it is valid, and editing it safely.

``check`` is the validator every command runs when it reads the file (``Config``), plus the
one thing only a full check does: loading each account's provider (a misspelt ``provider``
is otherwise named only when the account is used). ``edit`` opens a copy in the user's
editor and replaces config.toml only with a copy that passes the same check: a broken
config is never written.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from esimctl.config import Config
from esimctl.env import Env
from esimctl.errors import ConfigError, EsimctlError, InvalidInput
from esimctl.output.human import esc

from .common import Result

#: Tried in this order when neither $VISUAL nor $EDITOR is set.
FALLBACK_EDITORS = ("sensible-editor", "editor", "nano", "vi")

#: What ``config edit`` starts from when there is no config.toml yet.
TEMPLATE = """\
# esimctl's configuration: docs/config.md lists every table and key.
# Secrets never go here: 'esimctl account add NAME --provider P' keeps them in the keyring.

# [accounts.trip]
# provider = "airalo"

# [esims."8981100000000000018"]
# label = "Tokyo"

# [attention]
# low_data = "500MB"
# expiring_within = "2d"
"""


def run_path(env: Env) -> Result:
    path = env.paths.config_file
    return Result(
        command="config path",
        data={"path": str(path), "exists": path.exists()},
        lines=[esc(path)],
    )


def check_config(path: Path, text: bytes | None = None) -> Config:
    """``path`` (or ``text`` as if it were ``path``) read as every command reads it, and each
    account's provider loaded; the first problem is a ``ConfigError`` (exit 2)."""
    config = Config.load(path) if text is None else Config.from_text(path, text)
    from esimctl.config_schema import table_name
    from esimctl.providers import registry

    for acc in config.accounts():
        where = table_name("accounts", acc.name)
        try:
            cls = registry.load(acc.provider)
            cls.check_options(acc.options)
        except EsimctlError as exc:
            raise ConfigError(f"{path}: [{where}] {exc.message}") from None
    return config


def run_check(env: Env) -> Result:
    path = env.paths.config_file
    config = check_config(path)
    n = len(config.accounts())
    where = str(path) if path.exists() else f"{path} does not exist yet: the defaults apply"
    return Result(
        command="config check",
        data={"path": str(path), "exists": path.exists(), "accounts": n},
        lines=[f"ok: {esc(where)}" + (f" ({n} account{'s' if n != 1 else ''})" if n else "")],
    )


# -- config edit --------------------------------------------------------------------------------


@dataclass(frozen=True)
class EditOptions:
    #: The editor to run instead of $VISUAL, $EDITOR or a fallback.
    editor: str | None = None


def editor_command(env: Env, given: str | None = None) -> list[str]:
    """The editor: ``given``, else $VISUAL, else $EDITOR (each split like a shell, so that
    ``code --wait`` works), else the first of ``FALLBACK_EDITORS`` on PATH."""
    for value in (given, env.environ.get("VISUAL"), env.environ.get("EDITOR")):
        if value and value.strip():
            try:
                words = shlex.split(value)
            except ValueError as exc:
                raise InvalidInput(f"cannot read the editor command {value!r}: {exc}") from None
            if words:
                return words
    path = env.environ.get("PATH", os.defpath)
    for name in FALLBACK_EDITORS:
        found = shutil.which(name, path=path)
        if found:
            return [found]
    raise InvalidInput(
        "no editor found: set $EDITOR (export EDITOR=nano), or pass --editor",
        hint=f"or edit {env.paths.config_file} by hand and run 'esimctl config check'",
    )


def _run_editor(env: Env, command: list[str], file: Path) -> None:
    try:
        done = subprocess.run([*command, str(file)], env=dict(env.environ), check=False)
    except OSError as exc:
        raise InvalidInput(
            f"cannot run the editor {command[0]!r}: {exc.strerror or exc}; config unchanged"
        ) from None
    if done.returncode != 0:
        raise EsimctlError(f"the editor {command[0]!r} exited {done.returncode}: config unchanged")


def _again(env: Env) -> bool:
    if not env.can_prompt:
        return False
    env.stderr.write("edit it again? [Y/n] ")
    env.stderr.flush()
    answer = env.stdin.readline()
    return bool(answer) and answer.strip().lower() in ("", "y", "yes")


def run_edit(opts: EditOptions, env: Env) -> Result:
    """Edit a copy; write it over config.toml only once it passes ``check_config``."""
    from esimctl.paths import atomic_write, private_dir

    path = env.paths.config_file
    command = editor_command(env, opts.editor)
    before = path.read_bytes() if path.exists() else None
    private_dir(path.parent, what=path.name)
    fd, name = tempfile.mkstemp(prefix="config.edit-", suffix=".toml", dir=path.parent)
    draft = Path(name)
    kept = path.with_name("config.rejected.toml")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(before if before is not None else TEMPLATE.encode("utf-8"))
        start = draft.read_bytes()
        while True:
            _run_editor(env, command, draft)
            text = draft.read_bytes()
            if text == start:
                return Result(
                    command="config edit",
                    data={"path": str(path), "changed": False},
                    lines=[f"no change: {esc(path)}"],
                )
            try:
                check_config(path, text)
            except ConfigError as exc:
                env.stderr.write(f"error: {exc.message}\n")
                env.stderr.flush()
                if _again(env):
                    continue
                os.replace(draft, kept)
                raise ConfigError(
                    f"not saved: {path} is unchanged; your edit is in {kept}",
                    hint="fix it there and copy it over, or run 'esimctl config edit' again",
                ) from None
            now = path.read_bytes() if path.exists() else None
            if now != before:
                os.replace(draft, kept)
                raise EsimctlError(
                    f"not saved: {path} changed while you edited it (another esimctl "
                    f"command?); your edit is in {kept}"
                )
            atomic_write(path, text)
            return Result(
                command="config edit",
                data={"path": str(path), "changed": True},
                lines=[f"[green]✓[/] saved {esc(path)}: ok"],
            )
    finally:
        draft.unlink(missing_ok=True)
