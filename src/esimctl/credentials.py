"""Where secrets live: environment variables first, then the OS keyring or an opt-in file.

The keyring holds one entry per account (service ``esimctl``, username = account name,
password = a JSON object of the provider's fields), and one per notification target (username
``notify:NAME``, ``{"url": ...}``). Every keyring call runs in a worker
thread bounded by a timeout, because a locked or absent D-Bus keyring can hang a cron job.
Secrets never reach output, logs or exceptions: messages name fields, never values.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from esimctl.errors import CredentialsError
from esimctl.paths import atomic_write, private_dir

SERVICE = "esimctl"
KEYRING_TIMEOUT = 5.0
T = TypeVar("T")


def env_var(account: str, field: str) -> str:
    """``ESIMCTL_<ACCOUNT>_<FIELD>``; an entry ``notify:home``'s ``url`` is
    ``ESIMCTL_NOTIFY_HOME_URL``."""
    return "ESIMCTL_" + re.sub(r"[^A-Za-z0-9]", "_", account).upper() + "_" + field.upper()


class KeyringUnavailable(Exception):
    """The keyring is absent, locked, or did not answer in time (the reason is in args)."""


def _bounded(fn: Callable[[], T], timeout: float) -> T:
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # carried back to the caller's thread
            box["error"] = exc

    t = threading.Thread(target=target, name="esimctl-keyring", daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise KeyringUnavailable(f"the keyring did not answer within {timeout:g} s")
    if "error" in box:
        exc = box["error"]
        import keyring.errors

        if isinstance(exc, keyring.errors.KeyringError):
            raise KeyringUnavailable(type(exc).__name__ + (f": {exc}" if str(exc) else ""))
        raise exc
    return box["value"]  # type: ignore[no-any-return]


class KeyringStore:
    """Secrets of each account as one JSON entry in the OS keyring."""

    kind = "keyring"

    def __init__(self, timeout: float = KEYRING_TIMEOUT, *, backend: Any = None) -> None:
        self.timeout = timeout
        #: A keyring backend of its own (tests); None: the OS keyring's, as keyring finds it.
        self.backend = backend

    def _keyring(self) -> Any:
        if self.backend is not None:
            return self.backend
        import keyring

        return keyring.get_keyring()

    def backend_name(self) -> str:
        def name() -> str:
            kr = self._keyring()
            return f"{type(kr).__module__}.{type(kr).__name__}"

        try:
            return _bounded(name, self.timeout)
        except KeyringUnavailable:
            return "unavailable"

    def get(self, account: str) -> dict[str, str] | None:
        def read() -> str | None:
            value = self._keyring().get_password(SERVICE, account)
            return None if value is None else str(value)

        raw = _bounded(read, self.timeout)
        if raw is None:
            return None
        try:
            data = json.loads(raw)
        except ValueError:
            return None
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else None

    def set(self, account: str, secrets: Mapping[str, str]) -> None:
        payload = json.dumps(dict(secrets), sort_keys=True)

        def write() -> None:
            self._keyring().set_password(SERVICE, account, payload)

        _bounded(write, self.timeout)

    def delete(self, account: str) -> bool:
        def remove() -> bool:
            import keyring.errors

            try:
                self._keyring().delete_password(SERVICE, account)
            except keyring.errors.PasswordDeleteError:
                return False
            return True

        return _bounded(remove, self.timeout)

    def where(self, account: str) -> str:
        return f"keyring ({self.backend_name()}, service {SERVICE!r}, user {account!r})"


class FileStore:
    """Opt-in store for machines without a keyring: one 0600 JSON file per account."""

    kind = "file"

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, account: str) -> Path:
        # ':' (of ``notify:NAME``) is not allowed in a Windows file name; '@' is in no
        # account's name, so the two never meet.
        return self.directory / f"{account.replace(':', '@')}.json"

    def get(self, account: str) -> dict[str, str] | None:
        p = self.path(account)
        try:
            st = p.stat()
        except FileNotFoundError:
            return None
        if st.st_mode & 0o077:
            raise CredentialsError(
                f"refusing to read {p}: it is readable by others; run 'chmod 600 {p}'",
                account=account,
            )
        data = json.loads(p.read_text(encoding="utf-8"))
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else None

    def set(self, account: str, secrets: Mapping[str, str]) -> None:
        private_dir(self.directory)
        atomic_write(self.path(account), json.dumps(dict(secrets)).encode(), mode=0o600)

    def delete(self, account: str) -> bool:
        p = self.path(account)
        existed = p.exists()
        p.unlink(missing_ok=True)
        return existed

    def where(self, account: str) -> str:
        return f"file {self.path(account)}"


@dataclass(frozen=True)
class FieldSource:
    field: str
    source: str  # "env ESIMCTL_X_Y", "keyring (...)", "file ...", or "missing"


@dataclass(frozen=True)
class Found:
    """One secret field, as ``Credentials.find`` found it."""

    value: str | None = field(repr=False)
    #: ``env``, ``keyring``, ``file``, ``missing``, or ``unavailable`` (a store that could
    #: not be read, and no other held it).
    source: str
    #: The store's ``where``, why no store could be read, or (env, missing) the variable.
    detail: str


class Credentials:
    """Resolves an account's secret fields from the environment and its store."""

    def __init__(
        self, environ: Mapping[str, str], keyring_store: KeyringStore, file_store: FileStore
    ):
        self.environ = environ
        self.keyring = keyring_store
        self.file = file_store

    def store_for(self, store: str) -> KeyringStore | FileStore:
        return self.file if store == "file" else self.keyring

    def resolve(
        self, account: str, provider: str, fields: Sequence[str], store: str = "keyring"
    ) -> dict[str, str]:
        if not fields:
            return {}
        out = {
            f: self.environ[env_var(account, f)]
            for f in fields
            if self.environ.get(env_var(account, f))
        }
        problem = ""
        if len(out) < len(fields):
            try:
                stored = self.store_for(store).get(account) or {}
            except KeyringUnavailable as exc:
                stored, problem = {}, f" (keyring unavailable: {exc})"
            for f in fields:
                if f not in out and stored.get(f):
                    out[f] = stored[f]
        missing = [f for f in fields if f not in out]
        if missing:
            names = " and ".join(env_var(account, f) for f in missing)
            raise CredentialsError(
                f"no credentials for account {account!r}{problem}: run "
                f"'esimctl account add {account} --provider {provider}' or set {names}",
                account=account,
                provider=provider,
            )
        return out

    def find(self, user: str, name: str, stores: Sequence[str] = ("keyring",)) -> Found:
        """One field of an entry that is not an account's (a notification target's URL):
        its variable ``env_var(user, name)``, else the first of ``stores`` that holds it."""
        var = env_var(user, name)
        if self.environ.get(var):
            return Found(self.environ[var], "env", var)
        problem = None
        for store in stores:
            target = self.store_for(store)
            try:
                value = (target.get(user) or {}).get(name)
            except (KeyringUnavailable, CredentialsError) as exc:
                problem = problem or f"{target.kind}: {exc}"
                continue
            if value:
                return Found(value, target.kind, target.where(user))
        if problem:
            return Found(None, "unavailable", problem)
        return Found(None, "missing", var)

    def sources(
        self, account: str, fields: Sequence[str], store: str = "keyring"
    ) -> list[FieldSource]:
        target = self.store_for(store)
        try:
            stored: dict[str, str] | None = target.get(account) or {}
            where = target.where(account)
        except (KeyringUnavailable, CredentialsError) as exc:
            stored, where = None, f"unavailable ({exc})"
        out = []
        for f in fields:
            name = env_var(account, f)
            if self.environ.get(name):
                out.append(FieldSource(f, f"env {name}"))
            elif (stored and stored.get(f)) or stored is None:
                out.append(FieldSource(f, where))
            else:
                out.append(FieldSource(f, "missing"))
        return out
