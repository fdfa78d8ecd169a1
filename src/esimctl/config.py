"""``config.toml``: read with tomllib, written atomically with tomli-w, never a secret.

The file keeps whatever tables other parts of esimctl define (labels, attention
thresholds, renewal rules); this module validates the parts it owns and gives typed
views of them.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from esimctl import parsing
from esimctl.errors import ConfigError, InvalidInput, NotFound
from esimctl.paths import atomic_write

#: Keys in an account table that look like secrets; refusing them keeps secrets out of config.
_SECRETISH = ("secret", "password", "token", "api_key", "access_code", "client_secret")


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
        try:
            raw = tomllib.loads(text.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not UTF-8 text") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
        return cls(path, raw)

    def save(self) -> None:
        import tomli_w

        atomic_write(self.path, tomli_w.dumps(self.raw).encode("utf-8"))

    # -- accounts --------------------------------------------------------------------------

    def _validate(self) -> None:
        accounts = self.raw.get("accounts", {})
        if not isinstance(accounts, dict):
            raise ConfigError(f"{self.path}: [accounts] must be a table")
        for name, table in accounts.items():
            where = f"{self.path}: [accounts.{name}]"
            try:
                parsing.account_name(name)
            except InvalidInput as exc:
                raise ConfigError(f"{where}: {exc.message}") from exc
            if not isinstance(table, dict) or not isinstance(table.get("provider"), str):
                raise ConfigError(f'{where}: needs provider = "..."')
            base_url = table.get("base_url")
            if base_url is not None and (
                not isinstance(base_url, str) or not base_url.startswith(("http://", "https://"))
            ):
                raise ConfigError(f"{where}: base_url must start with http:// or https://")
            for key in table:
                if any(s in key.lower() for s in _SECRETISH):
                    raise ConfigError(
                        f"{where}: {key!r} looks like a secret; secrets live in the keyring, "
                        f"run 'esimctl account add {name} --provider {table['provider']}'"
                    )
        self.attention()  # validates [attention]
        esims = self.raw.get("esims", {})
        if not isinstance(esims, dict):
            raise ConfigError(f"{self.path}: [esims] must be a table")

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
        self.raw.setdefault("accounts", {})[acc.name] = table
        self._validate()

    def remove_account(self, name: str) -> None:
        self.account(name)
        del self.raw["accounts"][name]

    # -- per-eSIM settings ----------------------------------------------------------------

    def label_for(self, iccid: str) -> str | None:
        entry = self.raw.get("esims", {}).get(iccid)
        if isinstance(entry, dict) and isinstance(entry.get("label"), str):
            return str(entry["label"])
        return None

    def attention(self) -> AttentionConfig:
        table = self.raw.get("attention", {})
        if not isinstance(table, dict):
            raise ConfigError(f"{self.path}: [attention] must be a table")
        d = AttentionConfig()
        try:
            return AttentionConfig(
                low_data_bytes=parsing.size(str(table["low_data"]))
                if "low_data" in table
                else d.low_data_bytes,
                low_data_percent=float(table.get("low_data_percent", d.low_data_percent)),
                expiring_within=parsing.duration(str(table["expiring_within"]))
                if "expiring_within" in table
                else d.expiring_within,
                pending_overdue=parsing.duration(str(table["pending_overdue"]))
                if "pending_overdue" in table
                else d.pending_overdue,
            )
        except (InvalidInput, ValueError) as exc:
            msg = exc.message if isinstance(exc, InvalidInput) else str(exc)
            raise ConfigError(f"{self.path}: [attention]: {msg}") from exc
