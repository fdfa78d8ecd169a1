"""Start-up of a command that loads a provider.

httpx imports its own command-line tool (``httpx._main``) whenever click, rich and
pygments are installed — Apprise brings click — which costs about 75 ms of every command
that talks to a provider, for a tool esimctl never runs. ``skip_httpx_cli`` puts a
placeholder without ``main`` in its place, and httpx falls back to the stub it uses when
click is absent (docs/performance.md). Each API provider package calls it before it
imports its provider module (and so httpx).
"""

from __future__ import annotations

import sys
import types


def skip_httpx_cli() -> None:
    sys.modules.setdefault("httpx._main", types.ModuleType("httpx._main"))
