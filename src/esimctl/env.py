"""The injectable environment: streams, TTY flags, colour, clock, paths and lazy services.

Commands receive an ``Env`` and build nothing global themselves; tests construct one with
``Env.for_tests``. Consoles, config, ledger and credentials are built on first use, so a
command that needs none of them imports none of their modules.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, TextIO

from esimctl.paths import Paths

if TYPE_CHECKING:
    from rich.console import Console

    from esimctl.config import Config
    from esimctl.credentials import Credentials
    from esimctl.ledger import Ledger, LedgerReadOnly
    from esimctl.purchasing.book import OrderBook
    from esimctl.service import Session

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def env_flag(environ: Mapping[str, str], name: str) -> bool:
    """Explicit truthy set: ``ESIMCTL_DEMO=0`` means off (the GH_FORCE_TTY=0 trap)."""
    return environ.get(name, "").strip().lower() in _TRUE


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Hooks:
    """Seams for tests, set only by the test launcher (``tests/launcher.py``) or a test's
    own ``Env``: esimctl itself reads no test variable from the environment."""

    #: Die with SIGKILL at this step of a purchase (``purchasing.pipeline.checkpoint``).
    kill_at: str | None = None
    #: Seconds to wait for a ledger another process holds locked (default 10).
    ledger_busy_timeout: float | None = None
    #: Seconds to wait for the OS keyring (default ``credentials.KEYRING_TIMEOUT``).
    keyring_timeout: float | None = None
    #: A keyring backend to use instead of the OS keyring's.
    keyring: Any = None
    #: An ``httpx.AsyncBaseTransport`` every provider sends through, instead of the network.
    transport: Any = None


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Env:
    def __init__(
        self,
        *,
        environ: Mapping[str, str] | None = None,
        stdin: TextIO | None = None,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
        stdin_tty: bool | None = None,
        stdout_tty: bool | None = None,
        stderr_tty: bool | None = None,
        clock: Callable[[], datetime] | None = None,
        demo: bool = False,
        quiet: bool = False,
        debug: bool = False,
        color: str = "auto",
        hooks: Hooks | None = None,
    ) -> None:
        self.environ: Mapping[str, str] = os.environ if environ is None else environ
        self.stdin = stdin or sys.stdin
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self.stdin_tty = _isatty(self.stdin) if stdin_tty is None else stdin_tty
        self.stdout_tty = _isatty(self.stdout) if stdout_tty is None else stdout_tty
        self.stderr_tty = _isatty(self.stderr) if stderr_tty is None else stderr_tty
        self.clock = clock or _now
        self.hooks = hooks or Hooks()
        self.demo = demo or env_flag(self.environ, "ESIMCTL_DEMO")
        self.quiet = quiet
        self.debug = debug
        self.color = color
        #: Tables: ``auto`` (for a person on a terminal, TSV in a pipe), ``table`` or ``tsv``.
        self.output = "auto"
        #: ``--wide``: the full table, never stacked nor fitted to the width.
        self.wide = False

    # -- paths and profile -------------------------------------------------------------------

    @cached_property
    def user_paths(self) -> Paths:
        return Paths.from_environ(dict(self.environ))

    @cached_property
    def paths(self) -> Paths:
        """The active profile: the demo's own throwaway one under --demo."""
        if self.demo:
            return Paths.under(self.user_paths.demo_home)
        return self.user_paths

    # -- terminal policy ---------------------------------------------------------------------

    @property
    def can_prompt(self) -> bool:
        return (
            self.stdin_tty
            and self.stdout_tty
            and not env_flag(self.environ, "ESIMCTL_PROMPT_DISABLED")
        )

    @property
    def use_color(self) -> bool:
        if self.color in ("always", "never"):
            return self.color == "always"
        if self.environ.get("NO_COLOR") or self.environ.get("CLICOLOR") == "0":
            return False
        for force in ("CLICOLOR_FORCE", "FORCE_COLOR"):
            if self.environ.get(force, "0") not in ("", "0"):
                return True
        return self.stdout_tty and self.environ.get("TERM", "") != "dumb"

    @property
    def color_forced(self) -> bool:
        """Colour asked for whatever the streams are: ``--color always``, ``FORCE_COLOR``."""
        if self.color != "auto":
            return self.color == "always"
        return self.use_color and any(
            self.environ.get(v, "0") not in ("", "0") for v in ("CLICOLOR_FORCE", "FORCE_COLOR")
        )

    @property
    def human_output(self) -> bool:
        """Tables for a person (fitted to the width, in colour where allowed) rather than
        TSV: on a terminal, or when asked for (``--table``, ``--wide``, ``--color always``:
        for ``less -R`` and ``watch``); ``--tsv`` asks for TSV even on a terminal."""
        if self.output == "tsv":
            return False
        if self.output == "table" or self.wide or self.color == "always":
            return True
        return self.stdout_tty

    @property
    def output_width(self) -> int:
        """The width tables are fitted to: the terminal's (``COLUMNS`` first, as Rich reads
        it); in a pipe ``COLUMNS`` (``watch`` sets it), else the terminal of stderr or stdin
        (``esimctl --table status | less -R``), else 80."""
        if self.stdout_tty:
            return self.out.width
        columns = self.environ.get("COLUMNS", "").strip()
        if columns.isdigit() and int(columns) > 0:
            return int(columns)
        for stream in (self.stderr, self.stdin):
            try:
                return os.get_terminal_size(stream.fileno()).columns
            except (AttributeError, OSError, ValueError):
                continue
        return 80

    @property
    def show_progress(self) -> bool:
        return self.stderr_tty and not self.quiet and not env_flag(self.environ, "CI")

    def _console(self, file: TextIO, tty: bool) -> Console:
        from rich.console import Console

        width = None
        if not tty:
            width = 200
        # Not a terminal: colour only when asked for (--color always, FORCE_COLOR), e.g. for
        # less -R; never because stdout happens to be one (`esimctl status 2>log`).
        colour = self.use_color if tty else self.use_color and self.color_forced
        return Console(
            file=file,
            force_terminal=colour,
            no_color=not colour,
            color_system="auto" if colour else None,
            highlight=False,
            soft_wrap=False,
            width=width,
            emoji=False,
        )

    @cached_property
    def out(self) -> Console:
        return self._console(self.stdout, self.stdout_tty)

    @cached_property
    def err(self) -> Console:
        return self._console(self.stderr, self.stderr_tty)

    # -- services ----------------------------------------------------------------------------

    @cached_property
    def config(self) -> Config:
        from esimctl.config import Config

        if self.demo:
            from esimctl.providers.demo import demo_config

            return demo_config(self.paths.config_file)
        return Config.load(self.paths.config_file)

    @cached_property
    def ledger(self) -> Ledger:
        """The ledger; read-only in a home esimctl cannot write (``Ledger.read_only``)."""
        from esimctl.ledger import BUSY_TIMEOUT, Ledger

        busy = self.hooks.ledger_busy_timeout
        ledger = Ledger(
            self.paths.ledger_file,
            clock=self.clock,
            busy_timeout=BUSY_TIMEOUT if busy is None else busy,
            on_skip=self._not_kept,
        )
        if self.demo and not ledger.read_only and not ledger.has_snapshots():
            from esimctl.providers.demo import seed_history

            seed_history(ledger, self.clock())
        return ledger

    @cached_property
    def session(self) -> Session:
        """The run's event loop and open providers; closed by ``close``."""
        from esimctl.service import Session

        return Session(self)

    def close(self) -> None:
        """End of the run: close the providers and the loop, if any were started."""
        session = self.__dict__.pop("session", None)
        if session is not None:
            session.close()

    @cached_property
    def orders(self) -> OrderBook:
        """The order book: the orders of the ledger, by what they mean."""
        from esimctl.purchasing.book import OrderBook

        return OrderBook(self.ledger, self.clock)

    def _not_kept(self, why: LedgerReadOnly) -> None:
        """Once a run, when the read-only ledger could not keep what was just fetched."""
        if self.quiet:
            return
        self.stderr.write(
            f"note: {why.where} cannot be written ({why.why}): figures fetched now are "
            "shown but not kept; the ledger is unchanged\n"
        )
        self.stderr.flush()

    @cached_property
    def credentials(self) -> Credentials:
        from esimctl.credentials import KEYRING_TIMEOUT, Credentials, FileStore, KeyringStore

        timeout = self.hooks.keyring_timeout
        keyring = KeyringStore(
            KEYRING_TIMEOUT if timeout is None else timeout, backend=self.hooks.keyring
        )
        return Credentials(self.environ, keyring, FileStore(self.paths.data_dir / "credentials"))

    def now(self) -> datetime:
        return self.clock()

    @classmethod
    def for_tests(cls, **kw: object) -> Env:
        import io

        defaults: dict[str, object] = {
            "environ": {},
            "stdin": io.StringIO(),
            "stdout": io.StringIO(),
            "stderr": io.StringIO(),
            "stdin_tty": False,
            "stdout_tty": False,
            "stderr_tty": False,
        }
        defaults.update(kw)
        return cls(**defaults)  # type: ignore[arg-type]
