"""Fixtures every test gets: a private ESIMCTL_HOME, an in-memory keyring, a clean
environment, and ``cli`` to run esimctl in-process with captured streams."""

from __future__ import annotations

import contextlib
import io
import json
import os
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keyring
import pytest
from keyring.backend import KeyringBackend
from keyring.errors import PasswordDeleteError


class MemoryKeyring(KeyringBackend):
    """In-memory keyring for unit tests; the real Secret Service is tested separately."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.store: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.store.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.store[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if (service, username) not in self.store:
            raise PasswordDeleteError("not found")
        del self.store[(service, username)]


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)

    def __repr__(self) -> str:  # shown by pytest when an assertion fails
        return (
            f"CliResult(exit_code={self.exit_code}, stdout={self.stdout!r}, stderr={self.stderr!r})"
        )


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MemoryKeyring]:
    for name in list(os.environ):
        if name.startswith("ESIMCTL_TEST_"):
            continue  # switches of the test harness itself (scripts/test.sh)
        if name.startswith(("ESIMCTL_", "CLICOLOR", "PYTHON_KEYRING")) or name in (
            "NO_COLOR",
            "FORCE_COLOR",
            "CI",
        ):
            monkeypatch.delenv(name, raising=False)
    home = tmp_path / "esimctl-home"
    monkeypatch.setenv("ESIMCTL_HOME", str(home))
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("TZ", "UTC")
    kr = MemoryKeyring()
    previous = keyring.get_keyring()
    keyring.set_keyring(kr)
    yield kr
    keyring.set_keyring(previous)


@pytest.fixture
def memory_keyring(_isolated: MemoryKeyring) -> MemoryKeyring:
    return _isolated


@pytest.fixture
def home() -> Path:
    return Path(os.environ["ESIMCTL_HOME"])


@pytest.fixture
def configure(home: Path) -> Callable[[str], Path]:
    """Write ``config.toml`` in the test's ESIMCTL_HOME from TOML text."""

    def write(text: str) -> Path:
        home.mkdir(parents=True, exist_ok=True)
        path = home / "config.toml"
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


@pytest.fixture
def cli() -> Callable[..., CliResult]:
    """Run esimctl in-process: ``cli("status", "--json", input="...", tty=True, env={...})``.

    ``tty=True`` makes stdin, stdout and stderr look like a terminal (Rich table, prompts).
    ``env`` adds environment variables for this call only.
    """
    from esimctl.cli.app import run
    from esimctl.env import Env
    from launcher import seams

    def invoke(
        *args: str, input: str = "", tty: bool = False, env: dict[str, str] | None = None
    ) -> CliResult:
        environ = dict(os.environ)
        environ.update(env or {})
        out, err = io.StringIO(), io.StringIO()
        e = Env(
            **seams(environ),
            environ=environ,
            stdin=io.StringIO(input),
            stdout=out,
            stderr=err,
            stdin_tty=tty,
            stdout_tty=tty,
            stderr_tty=tty,
        )
        old = dict(os.environ)
        os.environ.update(env or {})
        try:
            # Click writes help and usage to sys.stdout/sys.stderr: capture those too.
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = run(list(args), e)
        finally:
            os.environ.clear()
            os.environ.update(old)
        return CliResult(code, out.getvalue(), err.getvalue())

    return invoke
