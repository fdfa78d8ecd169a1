"""Where events go: an Apprise URL, or a ``command`` that gets the event as JSON on stdin.

A target is ``[notify.targets.NAME]`` in config (``events``, ``command``). An Apprise URL
carries its service's token, so it is a secret and never in config: it is read like an
account's secrets (``credentials.Credentials.find``) from ``ESIMCTL_NOTIFY_<NAME>_URL``, else
the 0600 file store, else the keyring entry ``notify:NAME`` (``{"url": ...}``), and it never
reaches output, logs or a reason given for a failure.

Delivery is bounded by ``[notify] timeout``: Apprise runs in a worker thread that is left
behind if it does not answer in time, a command is killed. A failure is a one-line reason,
never an exception: a target that hangs or refuses must not fail or delay a renewal.
Apprise is imported only here, when a URL is checked or a message sent to one.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from esimctl.credentials import Found, env_var

if TYPE_CHECKING:
    from esimctl.env import Env

#: The field of a target's keyring (or file) entry.
URL_FIELD = "url"
#: Where a URL is looked for after its variable: the file store first (cheap, and chosen on
#: purpose with ``--store file``: a machine without a keyring never waits for one).
URL_STORES = ("file", "keyring")
UNKNOWN_URL = "not an Apprise URL it knows"


def secret_user(name: str) -> str:
    """The keyring user (and file-store entry) of target ``name``: ``notify:NAME``."""
    return f"notify:{name}"


def url_env_var(name: str) -> str:
    """``ESIMCTL_NOTIFY_<NAME>_URL``: the name upper-cased, anything but a letter or digit
    turned into ``_``."""
    return env_var(secret_user(name), URL_FIELD)


@dataclass(frozen=True)
class Target:
    name: str
    #: The events it gets; None: every event.
    events: tuple[str, ...] | None
    #: A program and its arguments; None: an Apprise target.
    command: tuple[str, ...] | None
    #: The Apprise URL: a secret (never in repr); None for a command, or if stored nowhere.
    url: str | None = field(default=None, repr=False)
    #: Where the URL was found: ``env``, ``file``, ``keyring``, ``missing`` or
    #: ``unavailable``; None for a command target.
    url_from: str | None = None
    #: The variable's name, the store, or why no store could be read.
    url_detail: str = ""

    @property
    def kind(self) -> str:
        return "command" if self.command else "apprise"

    def wants(self, kind: str) -> bool:
        return self.events is None or kind in self.events


def load_targets(env: Env) -> list[Target]:
    """Every ``[notify.targets.NAME]`` of config, with its URL where it has one."""
    out = []
    stores: Sequence[str] = URL_STORES
    down = None
    for t in env.config.notify().targets:
        if t.command:
            out.append(Target(t.name, t.events, t.command))
            continue
        found = env.credentials.find(secret_user(t.name), URL_FIELD, stores)
        if found.source == "unavailable" and "keyring" in stores:
            # One wait for an absent keyring per run, not one per target.
            stores, down = ("file",), found.detail
        elif found.source == "missing" and down is not None:
            found = Found(None, "unavailable", down)
        out.append(Target(t.name, t.events, None, found.value, found.source, found.detail))
    return out


def deliver(
    target: Target, event_json: dict[str, Any], title: str, body: str, *, timeout: float
) -> str | None:
    """Send one event to ``target``: None once delivered, else a one-line reason (which
    never holds the URL nor a piece of it)."""
    if target.command:
        return _run(target.command, event_json, timeout)
    if target.url is None:
        if target.url_from == "unavailable":
            return f"its URL could not be read ({one_line(target.url_detail)})"
        return f"no URL stored: esimctl notify add {target.name} URL"
    url = target.url
    box: dict[str, str | None] = {}

    def send() -> None:
        try:
            box["reason"] = _notify(url, title, body)
        except Exception as exc:  # a plugin's bug: a reason, never a traceback
            box["reason"] = f"failed: {type(exc).__name__}: {exc}"

    worker = threading.Thread(target=send, name="esimctl-notify", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        return f"did not answer within {timeout:g} s"
    reason = box.get("reason", "failed")
    return None if reason is None else scrub(reason, url)


def apprise_knows(url: str) -> bool:
    """Whether Apprise has a service for ``url`` and accepts its form; sends nothing."""
    import apprise

    with _Captured():
        return apprise.Apprise.instantiate(url) is not None


def scheme_of(url: str) -> str | None:
    """``tgram`` of ``tgram://...``: the only part of a URL ever named in a message."""
    m = re.match(r"([A-Za-z][A-Za-z0-9+.-]{0,19})://", url.strip())
    return m.group(1).lower() if m else None


def scrub(text: str, url: str) -> str:
    """``text`` on one line, without the URL or any piece of it (host, user, password, path
    segments, query values: a token may be any of them) but its scheme."""
    scheme = scheme_of(url)
    secrets = {url, unquote(url)}
    for form in (url, unquote(url)):
        rest = form.split("://", 1)[-1]
        secrets.update(p for p in re.split(r"[/:@?&=#,;\s]+", rest) if len(p) >= 4)
    secrets.discard(scheme or "")
    for s in sorted(secrets, key=len, reverse=True):
        if s:
            text = text.replace(s, "***")
    text = one_line(text)
    return text if len(text) <= 200 else text[:199] + "…"


def one_line(text: str) -> str:
    return " ".join(text.split())


# -- Apprise ------------------------------------------------------------------------------------


#: The capture of the delivery under way in this context (Apprise sends from threads of its
#: own, which run in a copy of the caller's context).
_capture: contextvars.ContextVar[_Captured | None] = contextvars.ContextVar(
    "esimctl_notify_capture", default=None
)


class _Captured(logging.Handler):
    """While in use: Apprise's log records of this delivery, kept (their last warning makes
    a reason) and never printed. Outside: Apprise logs nowhere (no stderr, no root logger)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []
        self._token: contextvars.Token[_Captured | None] | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if _capture.get() is self:  # not a record of a delivery left behind
            try:
                self.messages.append(record.getMessage())
            except Exception:
                return

    def __enter__(self) -> _Captured:
        self._token = _capture.set(self)
        logger = logging.getLogger("apprise")
        logger.propagate = False
        if logger.level == logging.NOTSET or logger.level < logging.WARNING:
            logger.setLevel(logging.WARNING)
        if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
            logger.addHandler(logging.NullHandler())  # no "last resort" print to stderr
        logger.addHandler(self)
        return self

    def __exit__(self, *_: object) -> None:
        logging.getLogger("apprise").removeHandler(self)
        if self._token is not None:
            _capture.reset(self._token)


def _notify(url: str, title: str, body: str) -> str | None:
    import apprise

    with _Captured() as log:
        # One service of exactly this URL (Apprise.add would split a string at commas).
        service = apprise.Apprise.instantiate(url)
        if service is None:
            return UNKNOWN_URL
        sender = apprise.Apprise()
        sender.add(service)
        if sender.notify(body=body, title=title):
            return None
    last = log.messages[-1] if log.messages else ""
    return "not delivered" + (f": {last}" if last else "")


# -- commands -----------------------------------------------------------------------------------


def _hook_environ() -> dict[str, str]:
    """The hook's environment: esimctl's, without its own variables (``ESIMCTL_*`` may
    carry account secrets and notification URLs: a hook gets the event, not the keys)."""
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("ESIMCTL_")}


def _run(command: Sequence[str], event_json: dict[str, Any], timeout: float) -> str | None:
    program = command[0]
    try:
        done = subprocess.run(
            list(command),
            input=json.dumps(event_json, default=str),
            text=True,
            timeout=timeout,
            capture_output=True,  # its output is its own: never shown, it may hold secrets
            check=False,
            env=_hook_environ(),
        )
    except subprocess.TimeoutExpired:
        return f"{program!r} did not answer within {timeout:g} s"
    except FileNotFoundError:
        return f"cannot run {program!r}: no such program"
    except PermissionError:
        return f"cannot run {program!r}: not executable"
    except OSError as exc:
        return f"cannot run {program!r}: {exc.strerror or type(exc).__name__}"
    if done.returncode < 0:
        return f"{program!r} was killed by signal {-done.returncode}"
    if done.returncode:
        return f"{program!r} exited {done.returncode}"
    return None
