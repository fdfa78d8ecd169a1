"""``config.toml``: read with tomllib, written atomically with tomli-w, never a secret.

Every table is checked when the file is read, and again before it is written, by one
mechanism: the schemas of ``config_schema`` (``[renewal]``'s are in ``rules``). This module
gives typed views of the tables.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from esimctl import config_schema, parsing
from esimctl.errors import ConfigError, InvalidInput, NotFound
from esimctl.models import Money
from esimctl.paths import atomic_write

#: Keys in an account table that look like secrets; refusing them keeps secrets out of config.
_SECRETISH = ("secret", "password", "token", "api_key", "access_code", "client_secret")
#: Account keys that are addresses esimctl sends credentials to.
URL_KEYS = ("base_url", "auth_url")
#: The per-account opt-in to plain http:// beyond this machine (warned about on every run).
INSECURE_HTTP = "insecure_http"
_TRUE = ("true", "yes", "on", "1")
_ICCID = re.compile(r"[0-9]{18,22}")


def url_problem(url: Any) -> str | None:
    """What is wrong with an API address (scheme, host, port), or None if nothing."""
    if not isinstance(url, str) or not url.strip():
        return "must be an address like https://api.example.com"
    if any(c.isspace() or ord(c) < 32 for c in url):
        return "must not contain spaces"
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        return f"is not a valid address ({exc})"
    if parts.scheme not in ("http", "https"):
        return "must start with https:// (or http:// for a server on this machine)"
    if not parts.hostname:
        return "has no host name"
    if parts.username is not None or parts.password is not None:
        return "must not carry a user name or password (secrets live in the keyring)"
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0 or (parts.netloc.endswith(":") and port is None):
        return "has an invalid port: use a number from 1 to 65535"
    return None


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost: a server on this machine."""
    h = host.strip("[]").rstrip(".").lower()
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def plain_http_host(url: str) -> str | None:
    """The host of an ``http://`` address that leaves this machine; None otherwise."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    host = parts.hostname or ""
    if parts.scheme == "http" and not is_loopback(host):
        return host
    return None


def insecure_http_allowed(options: Mapping[str, Any]) -> bool:
    """Has the account opted in to plain http:// (``insecure_http = true``)?"""
    value = options.get(INSECURE_HTTP, False)
    return value is True or (isinstance(value, str) and value.strip().lower() in _TRUE)


def refuse_plain_http(name: str, url: str, key: str = "base_url") -> ConfigError:
    host = plain_http_host(url)
    return ConfigError(
        f"refusing {key} {url!r} of account {name!r}: its credentials and tokens would cross "
        f"the network to {host} unencrypted; use https:// (plain http:// is only for a server "
        f"on this machine), or set {INSECURE_HTTP} = true in [accounts.{name}] to allow it",
        account=name,
    )


def insecure_http_for(account: str) -> bool:
    """Whether ``account`` of the config in use (``ESIMCTL_HOME`` or the user's) opts in to
    plain http://: for ``ApiClient``, which is told only the account's name."""
    from esimctl.paths import Paths

    try:
        acc = Config.load(Paths.from_environ().config_file).account(account)
    except InvalidInput:
        return False
    return insecure_http_allowed(acc.options)


@dataclass(frozen=True)
class AccountConfig:
    name: str
    provider: str
    base_url: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AttentionConfig:
    low_data_bytes: int = 500 * 1024 * 1024
    low_data_percent: float = 10.0
    expiring_within: timedelta = timedelta(days=2)
    pending_overdue: timedelta = timedelta(minutes=30)
    #: ``runs_out_soon``: the forecast says the data runs out within this, before expiry.
    runs_out_within: timedelta = timedelta(days=1)


#: How long one command waits for the providers altogether before it answers with what it
#: has (``[network] deadline``, ``--deadline``).
DEFAULT_DEADLINE = timedelta(seconds=30)


@dataclass(frozen=True)
class NetworkConfig:
    deadline: timedelta = DEFAULT_DEADLINE


@dataclass(frozen=True)
class TargetConfig:
    """``[notify.targets.NAME]``: an Apprise URL (in the keyring) or a ``command``."""

    name: str
    #: The events sent to it; None: every event.
    events: tuple[str, ...] | None = None
    command: tuple[str, ...] | None = None


@dataclass(frozen=True)
class NotifyConfig:
    targets: tuple[TargetConfig, ...] = ()
    #: A condition still true is sent again after this.
    renotify: timedelta = timedelta(hours=12)
    #: ``account_failing``: an account failing this long is news.
    account_failing_after: timedelta = timedelta(hours=2)
    #: The longest one target may take; a slower one is reported and retried next run.
    timeout: timedelta = timedelta(seconds=10)


@dataclass(frozen=True)
class CalendarConfig:
    #: The alarm of each event, this long before it (0: at the time).
    alarm_before: timedelta = timedelta(days=1)


_TARGET_NAME = re.compile(r"[A-Za-z0-9_-]{1,40}")


def notify_target_name(value: str) -> str:
    """A ``[notify.targets.NAME]`` name, as given on the command line."""
    if not _TARGET_NAME.fullmatch(value):
        raise InvalidInput(
            f"invalid target name {value!r}: use letters, digits, '-' and '_' (at most 40)"
        )
    return value


class Config:
    def __init__(self, path: Path, raw: dict[str, Any] | None = None) -> None:
        self.path = path
        self.raw: dict[str, Any] = raw if raw is not None else {}
        self._validate()

    @classmethod
    def load(cls, path: Path) -> Config:
        try:
            text = path.read_bytes()
        except FileNotFoundError:
            return cls(path, {})
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
        return cls.from_text(path, text)

    @classmethod
    def from_text(cls, path: Path, text: bytes) -> Config:
        """The config in ``text``, checked as if read from ``path`` (``config edit``)."""
        try:
            raw = tomllib.loads(text.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not UTF-8 text") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
        except RecursionError:
            # tomllib recurses once per level of nested arrays or inline tables.
            raise ConfigError(f"{path}: invalid TOML: arrays or tables nested too deeply") from None
        return cls(path, raw)

    def save(self) -> None:
        import tomli_w

        try:
            text = tomli_w.dumps(self.raw)
        except RecursionError:
            raise ConfigError(f"{self.path}: values nested too deeply to write back") from None
        atomic_write(self.path, text.encode("utf-8"))

    # -- accounts --------------------------------------------------------------------------

    def _validate(self) -> None:
        """Every table, by its schema (``config_schema``): the first problem is a one-line
        ``ConfigError`` naming this file, the table and the key (exit 2)."""
        for name, value in self.raw.items():
            if name not in config_schema.TABLES:
                raise config_schema.unknown_table(self.path, name, value)
        self._validate_accounts()
        self._validate_esims()
        self.attention()  # validates [attention]
        self.network()  # validates [network]
        self.notify()  # validates [notify] and [notify.targets.NAME]
        self.calendar()  # validates [calendar]
        self.rates()  # validates [rates]
        from esimctl import rules

        rules.load(self)  # validates [renewal] and [renewal.esims.NAME]

    def _validate_accounts(self) -> None:
        accounts = self.raw.get("accounts", {})
        if not isinstance(accounts, dict):
            raise ConfigError(f"{self.path}: [accounts] must be a table")
        for name, table in accounts.items():
            where = config_schema.table_name("accounts", name)
            try:
                parsing.account_name(name)
            except InvalidInput as exc:
                raise ConfigError(f"{self.path}: [{where}] {exc.message}") from exc
            provider = table.get("provider") if isinstance(table, dict) else None
            if not isinstance(provider, str) or not provider.strip():
                builtin = ", ".join(config_schema.PROVIDER_OPTIONS)
                raise ConfigError(
                    f'{self.path}: [{where}] needs provider = "..." ({builtin} or a plugin\'s id)'
                )
            for key in table:
                if any(s in key.lower() for s in _SECRETISH):
                    raise ConfigError(
                        f"{self.path}: [{where}] {config_schema.toml_key(key)}: looks like a "
                        "secret; secrets live in the keyring, run "
                        f"'esimctl account add {name} --provider {provider}'"
                    )
            schema, open_ = config_schema.account_schema(provider)
            config_schema.check(table, schema, path=self.path, where=where, open_=open_)

    def _validate_esims(self) -> None:
        esims = self.raw.get("esims", {})
        if not isinstance(esims, dict):
            raise ConfigError(f"{self.path}: [esims] must be a table")
        for iccid, entry in esims.items():
            where = config_schema.table_name("esims", iccid)
            if not _ICCID.fullmatch(iccid):
                raise ConfigError(
                    f"{self.path}: [{where}] {iccid!r} is not an ICCID (18 to 22 digits): name "
                    'the table by the eSIM\'s full ICCID and give its name in label = "..."'
                )
            config_schema.check(entry, config_schema.ESIM, path=self.path, where=where)

    def accounts(self) -> list[AccountConfig]:
        out = []
        for name, table in sorted(self.raw.get("accounts", {}).items()):
            opts = {k: v for k, v in table.items() if k not in ("provider", "base_url")}
            out.append(AccountConfig(name, table["provider"], table.get("base_url"), opts))
        return out

    def account(self, name: str) -> AccountConfig:
        for acc in self.accounts():
            if acc.name == name:
                return acc
        known = ", ".join(a.name for a in self.accounts()) or "none yet"
        raise NotFound(f"unknown account {name!r} (accounts: {known})")

    def set_account(self, acc: AccountConfig) -> None:
        table: dict[str, Any] = {"provider": acc.provider}
        if acc.base_url:
            table["base_url"] = acc.base_url
        table.update(acc.options)
        if not insecure_http_allowed(acc.options):
            for key in URL_KEYS:
                url = table.get(key)
                if isinstance(url, str) and url_problem(url) is None and plain_http_host(url):
                    raise refuse_plain_http(acc.name, url, key)
        raw = {**self.raw, "accounts": {**self.raw.get("accounts", {}), acc.name: table}}
        Config(self.path, raw)  # validates the whole file before this one changes
        self.raw = raw

    def remove_account(self, name: str) -> None:
        self.account(name)
        del self.raw["accounts"][name]

    # -- per-eSIM settings ----------------------------------------------------------------

    def label_for(self, iccid: str) -> str | None:
        entry = self.raw.get("esims", {}).get(iccid)
        if isinstance(entry, dict) and isinstance(entry.get("label"), str):
            return str(entry["label"])
        return None

    def network(self) -> NetworkConfig:
        values = config_schema.check(
            self.raw.get("network", {}), config_schema.NETWORK, path=self.path, where="network"
        )
        return NetworkConfig(values.get("deadline", DEFAULT_DEADLINE))

    def attention(self) -> AttentionConfig:
        values = config_schema.check(
            self.raw.get("attention", {}),
            config_schema.ATTENTION,
            path=self.path,
            where="attention",
        )
        d = AttentionConfig()
        return AttentionConfig(
            low_data_bytes=values.get("low_data", d.low_data_bytes),
            low_data_percent=values.get("low_data_percent", d.low_data_percent),
            expiring_within=values.get("expiring_within", d.expiring_within),
            pending_overdue=values.get("pending_overdue", d.pending_overdue),
            runs_out_within=values.get("runs_out_within", d.runs_out_within),
        )

    def notify(self) -> NotifyConfig:
        raw = self.raw.get("notify", {})
        values = config_schema.check(
            raw, config_schema.NOTIFY, path=self.path, where="notify", others=("targets",)
        )
        tables = raw.get("targets", {})
        if not isinstance(tables, dict):
            raise ConfigError(f"{self.path}: [notify.targets] must hold one table per target")
        targets = []
        for name, table in tables.items():
            where = config_schema.table_name("notify", "targets", name)
            if not _TARGET_NAME.fullmatch(name):
                raise ConfigError(
                    f"{self.path}: [{where}] a target name is letters, digits, '-' and '_'"
                )
            t = config_schema.check(table, config_schema.NOTIFY_TARGET, path=self.path, where=where)
            targets.append(TargetConfig(name, t.get("events"), t.get("command")))
        d = NotifyConfig()
        return NotifyConfig(
            targets=tuple(targets),
            renotify=values.get("renotify", d.renotify),
            account_failing_after=values.get("account_failing_after", d.account_failing_after),
            timeout=values.get("timeout", d.timeout),
        )

    def set_notify_target(self, name: str, table: dict[str, Any]) -> None:
        """Write ``[notify.targets.NAME]`` (``events``, ``command``): validated first."""
        notify = dict(self.raw.get("notify", {}))
        notify["targets"] = {**notify.get("targets", {}), name: table}
        raw = {**self.raw, "notify": notify}
        Config(self.path, raw)  # validates the whole file before this one changes
        self.raw = raw

    def remove_notify_target(self, name: str) -> None:
        notify = self.raw.get("notify", {})
        notify.get("targets", {}).pop(name, None)
        if "targets" in notify and not notify["targets"]:
            del notify["targets"]
        if "notify" in self.raw and not notify:
            del self.raw["notify"]

    def calendar(self) -> CalendarConfig:
        values = config_schema.check(
            self.raw.get("calendar", {}), config_schema.CALENDAR, path=self.path, where="calendar"
        )
        return CalendarConfig(alarm_before=values.get("alarm_before", CalendarConfig.alarm_before))

    def rates(self) -> dict[str, Money]:
        """``[rates]``: currency code -> what one unit is worth in the common currency."""
        raw = self.raw.get("rates", {})
        if not isinstance(raw, dict):
            raise ConfigError(f'{self.path}: [rates] must be a table, like EUR = "1.08 USD"')
        for code in raw:
            try:
                parsing.currency(code)
            except InvalidInput:
                raise ConfigError(
                    f"{self.path}: [rates] {config_schema.toml_key(code)}: not a currency code; "
                    'name each rate by a 3-letter code, like EUR = "1.08 USD"'
                ) from None
        schema = {code: config_schema.RATE for code in raw}
        values = config_schema.check(raw, schema, path=self.path, where="rates")
        common = sorted({rate.currency for rate in values.values()})
        if len(common) > 1:
            raise ConfigError(
                f"{self.path}: [rates] every rate must be in one common currency "
                f"(found {', '.join(common)})"
            )
        return {parsing.currency(code): rate for code, rate in values.items()}
