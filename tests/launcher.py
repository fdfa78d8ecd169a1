"""The test launcher: ``esimctl`` as the tests run it, with the test seams of ``Env`` set.

esimctl itself reads no test variable. A test that runs esimctl in a subprocess runs
``python tests/launcher.py ARGS`` (``ESIMCTL`` below) instead of ``python -m esimctl``, and
sets these variables for it; the in-process ``cli`` fixture of conftest reads them too:

- ``ESIMCTL_TEST_NOW``: the clock stands at this ISO 8601 time (``pending for over 30
  minutes`` is tested without waiting);
- ``ESIMCTL_TEST_KILL_AT``: SIGKILL at this step of a purchase (``before_request``,
  ``after_answer``, ``after_record``; purchasing/pipeline.py);
- ``ESIMCTL_TEST_LEDGER_BUSY_TIMEOUT``: seconds to wait for a locked ledger (not 10);
- ``ESIMCTL_TEST_KEYRING_TIMEOUT``: seconds to wait for the keyring (not 5).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from esimctl.env import Hooks

#: How a test runs esimctl in a subprocess.
ESIMCTL = [sys.executable, str(Path(__file__).resolve())]


def _seconds(environ: Mapping[str, str], name: str) -> float | None:
    raw = environ.get(name, "").strip()
    if not raw:
        return None
    value = float(raw)
    if not 0 <= value <= 600:
        raise ValueError(f"{name}={raw!r}: not a number of seconds")
    return value


def clock_from(environ: Mapping[str, str]) -> Callable[[], datetime] | None:
    raw = environ.get("ESIMCTL_TEST_NOW", "").strip()
    if not raw:
        return None
    fixed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    at = (fixed if fixed.tzinfo else fixed.replace(tzinfo=UTC)).astimezone(UTC)
    return lambda: at


def seams(environ: Mapping[str, str]) -> dict[str, Any]:
    """``Env`` keyword arguments for the test variables set in ``environ``."""
    hooks = Hooks(
        kill_at=environ.get("ESIMCTL_TEST_KILL_AT") or None,
        ledger_busy_timeout=_seconds(environ, "ESIMCTL_TEST_LEDGER_BUSY_TIMEOUT"),
        keyring_timeout=_seconds(environ, "ESIMCTL_TEST_KEYRING_TIMEOUT"),
    )
    return {"clock": clock_from(environ), "hooks": hooks}


if __name__ == "__main__":
    import os

    from esimctl.cli.app import main
    from esimctl.env import Env

    main(Env(**seams(os.environ)))
