"""The run's environment and output mode, set by ``app.run`` and the command callbacks."""

from __future__ import annotations

from dataclasses import dataclass

from esimctl.env import Env


@dataclass
class Invocation:
    env: Env
    command: str | None = None
    json: bool = False
    #: Set once the command wrote its result: an exit code after that is its own.
    finished: bool = False


_current: Invocation | None = None


def start(env: Env) -> Invocation:
    global _current
    _current = Invocation(env)
    return _current


def current() -> Invocation:
    assert _current is not None, "esimctl.cli.app.run sets the invocation"
    return _current


def begin(command: str, *, json: bool = False, wide: bool = False) -> Env:
    """Called first by every command: remembers how errors must be reported (and the
    command's own ``--wide``, the same as the global one)."""
    inv = current()
    inv.command = command
    inv.json = json
    inv.env.wide = inv.env.wide or wide
    return inv.env
