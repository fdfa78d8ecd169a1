"""One validator for every table of ``config.toml``: a small declarative schema.

A table's schema maps each key to a ``Key``: a parser (the raw TOML value in, the value
esimctl uses out) and a description of the values it accepts. ``check`` reads one table
against its schema. Every problem is a one-line ``ConfigError`` (exit 2) of one shape::

    FILE: [TABLE] KEY: expected VALID, got VALUE
    FILE: [TABLE] KEY: invalid size 'lots': use a number and a unit, like 500MB or 1.5GB
    FILE: [TABLE] unknown key 'KEY' (did you mean KEY?); keys: KEY, KEY, ...
    FILE: [TABLE] PROBLEM OF THE TABLE AS A WHOLE

A parser says a value is of the wrong type or out of range by raising ``Mismatch`` (the
message is then built from the key's description), or gives its own message by raising
``InvalidInput`` (the ``parsing`` module's messages name the value and an example).

The schemas of ``[accounts.NAME]``, ``[esims."ICCID"]``, ``[attention]`` and ``[network]``
are here; ``[renewal]``'s are in ``rules`` (its parsers build rule objects) and use the same
``Key`` and ``check``. ``docs/config.md`` lists what each key accepts.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, time, timedelta
from pathlib import Path
from typing import Any

from esimctl import parsing
from esimctl.errors import ConfigError, InvalidInput


class Mismatch(Exception):
    """A value that is not what its key accepts: ``expected VALID, got VALUE``."""


@dataclass(frozen=True)
class Key:
    #: What the key accepts, as a person reads it: ``a size in quotes, like "500MB"``.
    valid: str
    #: The raw TOML value in, the value esimctl uses out; raises ``Mismatch`` or
    #: ``InvalidInput``.
    parse: Callable[[Any], Any]


Schema = Mapping[str, Key]

_BARE = re.compile(r"[A-Za-z0-9_-]+")


# -- how names and values are shown ---------------------------------------------------------


def toml_key(name: str) -> str:
    """A key or table name as it is written in TOML: bare, or quoted (on one line). Digits
    are quoted too: an ICCID reads as a name, not a number."""
    bare = _BARE.fullmatch(name) and not name.isdigit()
    return name if bare else json.dumps(name, ensure_ascii=False)


def table_name(*parts: str) -> str:
    """``accounts.trip``, ``esims."8981..."``: the dotted name of a table."""
    return ".".join(toml_key(p) for p in parts)


def shown(value: Any, *, limit: int = 60) -> str:
    """A value as it would be written in config.toml, on one line and not too long."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, int | float):
        text = repr(value)
    elif isinstance(value, date | time):
        text = value.isoformat()
    elif isinstance(value, list):
        text = "[" + ", ".join(shown(v, limit=limit) for v in value) + "]"
    elif isinstance(value, dict):
        return "a table"
    else:  # pragma: no cover - tomllib gives nothing else
        text = json.dumps(str(value), ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The choice nearest to ``word`` (difflib, any case), if one is near enough."""
    lowered = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[close[0]] if close else None


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean low_data?)`` for a near miss, else empty."""
    near = closest(word, choices)
    return f" (did you mean {near}?)" if near else ""


# -- the mechanism ------------------------------------------------------------------------------


def unknown_key(path: Path, where: str, key: str, known: Iterable[str]) -> ConfigError:
    keys = list(known)
    return ConfigError(
        f"{path}: [{where}] unknown key {key!r}{did_you_mean(key, keys)}; "
        f"keys: {', '.join(keys) or 'none'}"
    )


def value_of(path: Path, where: str, key: str, spec: Key, value: Any) -> Any:
    """``spec.parse(value)``, or the one-line error naming the file, table and key."""
    try:
        return spec.parse(value)
    except InvalidInput as exc:
        raise ConfigError(f"{path}: [{where}] {toml_key(key)}: {exc.message}") from None
    except (Mismatch, TypeError, ValueError, ArithmeticError):
        raise ConfigError(
            f"{path}: [{where}] {toml_key(key)}: expected {spec.valid}, got {shown(value)}"
        ) from None


def check(
    table: Any,
    schema: Schema,
    *,
    path: Path,
    where: str,
    others: Iterable[str] = (),
    open_: bool = False,
) -> dict[str, Any]:
    """Every key of one table, parsed; ``ConfigError`` on the first bad one.

    ``others``: keys the caller reads itself (a sub-table); they are passed over.
    ``open_``: keys outside the schema are kept as they are (a plugin's own options).
    """
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [{where}] must be a table")
    skip = set(others)
    out: dict[str, Any] = {}
    for key, value in table.items():
        if key in skip:
            continue
        spec = schema.get(key)
        if spec is None:
            if open_:
                out[key] = value
                continue
            raise unknown_key(path, where, key, [*schema, *others])
        out[key] = value_of(path, where, key, spec, value)
    return out


# -- parsers ------------------------------------------------------------------------------------


def _string(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Mismatch
    return value.strip()


def text(valid: str = "some text in quotes") -> Key:
    """A non-empty string, stripped."""
    return Key(valid, _string)


def choice(*values: str, noun: str = "value") -> Key:
    """One of ``values`` (any case). A string outside them says which it is nearest to."""
    listed = ", ".join(json.dumps(v) for v in values[:-1]) + f" or {json.dumps(values[-1])}"

    def parse(value: Any) -> str:
        v = _string(value).lower()
        if v not in values:
            raise InvalidInput(
                f"invalid {noun} {value.strip()!r}: use {listed}{did_you_mean(v, values)}"
            )
        return v

    return Key(listed, parse)


def number(valid: str, lo: float, hi: float, *, above: bool = False, whole: bool = False) -> Key:
    """A number from ``lo`` (or above it) to ``hi``, in TOML or as text (``--set k=v``)."""

    def parse(value: Any) -> float | int:
        if isinstance(value, bool):
            raise Mismatch
        if isinstance(value, str):
            v = value.strip()
            value = float(v) if not whole or not re.fullmatch(r"[+-]?\d+", v) else int(v)
        if not isinstance(value, int | float) or not math.isfinite(value):
            raise Mismatch
        if whole and value != int(value):
            raise Mismatch
        if value > hi or value < lo or (above and value == lo):
            raise Mismatch
        return int(value) if whole else float(value)

    return Key(valid, parse)


_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise Mismatch


#: true or false (also "yes"/"no" and the like, as ``--set k=v`` stores them).
FLAG = Key("true or false", _flag)


def _size(value: Any) -> int:
    if value == 0 and not isinstance(value, bool):
        return 0
    if not isinstance(value, str):
        raise Mismatch
    return parsing.size(value)


#: A size in the eSIM's units, like ``"500MB"``.
SIZE = Key('a size in quotes, like "500MB"', _size)


def duration(
    lo: timedelta | None = None, hi: timedelta | None = None, *, span: str = "", like: str = "2d"
) -> Key:
    """A duration like ``"2d"``, optionally from ``lo`` to ``hi`` (``span`` says so)."""
    valid = f'a duration{span} in quotes, like "{like}"'

    def parse(value: Any) -> timedelta:
        if not isinstance(value, str):
            raise Mismatch
        d = parsing.duration(value)
        if (lo is not None and d < lo) or (hi is not None and d > hi):
            raise Mismatch
        return d

    return Key(valid, parse)


_SHARE = number("a number from 0 to 100", 0, 100)


def _percent(value: Any) -> float:
    """``10``, ``12.5`` or the text ``"10"``/``"10%"``: a share from 0 to 100."""
    if isinstance(value, str) and value.strip().endswith("%"):
        value = value.strip()[:-1]
    return float(_SHARE.parse(value))


def _url(value: Any) -> str:
    from esimctl.config import url_problem

    problem = url_problem(value)
    if problem is not None:
        if not isinstance(value, str):
            raise Mismatch
        raise InvalidInput(f"{value!r} {problem}")
    return str(value)


#: An API address (``base_url``, ``auth_url``).
URL = Key('an address in quotes, like "https://api.example.com"', _url)


def _page(value: Any) -> str:
    v = _string(value)
    if not v.startswith(("https://", "http://")):
        raise InvalidInput(f"invalid renewal page {v!r}: give the address, starting with https://")
    return v


def _unit_base(value: Any) -> int:
    if isinstance(value, bool) or str(value).strip() not in ("1000", "1024"):
        raise Mismatch
    return int(str(value).strip())


def _currency(value: Any) -> str:
    return parsing.currency(_string(value))


def _label(value: Any) -> str:
    label = _string(value)
    if label.isdigit():
        raise InvalidInput(f"invalid label {label!r}: digits read as an ICCID; add a letter")
    return label


# -- the tables ---------------------------------------------------------------------------------

#: Keys every account may have, whatever its provider.
ACCOUNT = {
    "provider": text('a provider id in quotes, like "airalo"'),
    "base_url": URL,
    "insecure_http": FLAG,
    "credential_store": choice("keyring", "file", noun="credential store"),
}

_TIMEOUT = number("a number of seconds above 0 and at most 600", 0, 600, above=True)
_RETRIES = number("a whole number from 0 to 10", 0, 10, whole=True)
_RATE = number("requests per second, above 0 and at most 100000", 0, 100_000, above=True)

#: Each built-in provider's own account options. A plugin's options are its own to check
#: (``Provider.check_options``): its account table takes any other key.
PROVIDER_OPTIONS: dict[str, Schema] = {
    "demo": {},
    "manual": {
        "seller": text("the seller's name in quotes"),
        "renew_url": Key('the renewal page in quotes, like "https://shop.example/renew"', _page),
        "support": text('whom to contact, in quotes, like "help@shop.example"'),
        "stacking": choice("extend", "restart", noun="stacking"),
        "unit_base": Key("1024 or 1000", _unit_base),
    },
    "airalo": {"timeout": _TIMEOUT, "retries": _RETRIES},
    "esimaccess": {
        "timeout": _TIMEOUT,
        "retries": _RETRIES,
        "rate_limit": _RATE,
        "usage_times": FLAG,
    },
    "esimgo": {"timeout": _TIMEOUT, "retries": _RETRIES, "rate_limit": _RATE},
    "celitech": {
        "timeout": _TIMEOUT,
        "retries": _RETRIES,
        "requests_per_second": _RATE,
        "currency": Key('a currency code in quotes, like "USD"', _currency),
        "auth_style": choice("post", "basic", noun="auth_style"),
        "auth_url": URL,
    },
}


def provider_options(provider: str, options: Mapping[str, Any], *, account: str) -> dict[str, Any]:
    """A built-in provider's own options of an account, parsed by its schema above (the
    one validator: config load, ``account add`` and the provider all use it); a plugin's
    options as they are. Keys of the account table that are not the provider's (``base_url``,
    ``credential_store``) are left out. ``ConfigError`` (exit 2) for a bad value."""
    schema = PROVIDER_OPTIONS.get(provider)
    if schema is None:
        return dict(options)
    own = {k: v for k, v in options.items() if k in schema}
    return check(own, schema, path=Path("config.toml"), where=table_name("accounts", account))


def account_schema(provider: str) -> tuple[Schema, bool]:
    """The keys of an account of ``provider``, and whether other keys are allowed."""
    own = PROVIDER_OPTIONS.get(provider)
    if own is None:  # a plugin
        return {**ACCOUNT, "auth_url": URL}, True
    return {**ACCOUNT, **own}, False


#: ``[esims."ICCID"]``: what the user says about one eSIM.
ESIM = {"label": Key('a name in quotes with a letter in it, like "Tokyo"', _label)}

#: ``[attention]``: what ``status`` flags.
ATTENTION = {
    "low_data": SIZE,
    "low_data_percent": Key("a number from 0 to 100, like 10", _percent),
    "expiring_within": duration(like="2d"),
    "pending_overdue": duration(like="30m"),
    "runs_out_within": duration(like="1d"),
}

#: ``[network] deadline``: how long one command waits for the providers altogether.
DEADLINE_RANGE = (timedelta(seconds=1), timedelta(hours=1))
NETWORK = {"deadline": duration(*DEADLINE_RANGE, span=" from 1s to 1h", like="30s")}

#: What ``notify`` sends (docs/notifications.md): the events a target may choose.
EVENTS = (
    "low_data",
    "runs_out_soon",
    "expiring_soon",
    "topup_bought",
    "topup_applied",
    "topup_overdue",
    "limit_refused",
    "account_failing",
    "credentials_rejected",
)


def _events(value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, list) else None
    if not items or not all(isinstance(v, str) and v.strip() for v in items):
        raise Mismatch
    out = []
    for v in items:
        name = v.strip().lower()
        if name not in EVENTS:
            raise InvalidInput(
                f"unknown event {v.strip()!r}{did_you_mean(name, EVENTS)}; events: "
                + ", ".join(EVENTS)
            )
        out.append(name)
    return tuple(out)


def _command(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise Mismatch
    if not all(isinstance(v, str) and v for v in value) or not value[0].strip():
        raise Mismatch
    return tuple(value)


#: ``[notify]``: when to send again, and how long a target may take.
NOTIFY = {
    "renotify": duration(
        timedelta(minutes=1), timedelta(days=30), span=" from 1m to 30d", like="12h"
    ),
    "account_failing_after": duration(like="2h"),
    "timeout": duration(
        timedelta(seconds=1), timedelta(minutes=2), span=" from 1s to 2m", like="10s"
    ),
}
#: ``[notify.targets.NAME]``: which events go to a target; ``command`` for a program target
#: (an Apprise URL is a secret: it lives in the keyring, ``esimctl notify add NAME URL``).
NOTIFY_TARGET = {
    "events": Key('a list of event names in quotes, like ["low_data", "topup_bought"]', _events),
    "command": Key(
        'a program and its arguments as a list of text, like ["/usr/local/bin/hook", "-v"]',
        _command,
    ),
}
#: ``[calendar]``: the alarm of each event of ``esimctl calendar``.
CALENDAR = {
    "alarm_before": duration(timedelta(0), timedelta(days=30), span=" up to 30d", like="1d")
}


def _rate(value: Any) -> Any:
    rate = parsing.money(_string(value))
    if rate.amount <= 0:
        raise Mismatch
    return rate


#: ``[rates]``: what one unit of a currency is worth in one common currency (``EUR = "1.08
#: USD"``), so that ``plans`` compares prices across currencies (it never guesses a rate).
RATE = Key('what one unit is worth in the common currency, in quotes, like "1.08 USD"', _rate)

#: The tables of config.toml, as the error for an unknown one lists them.
TABLES = {
    "accounts": "[accounts.NAME]",
    "esims": '[esims."ICCID"]',
    "attention": "[attention]",
    "network": "[network]",
    "renewal": "[renewal]",
    "notify": "[notify]",
    "calendar": "[calendar]",
    "rates": "[rates]",
}


def unknown_table(path: Path, name: str, value: Any) -> ConfigError:
    match = closest(name, TABLES)
    near = f" (did you mean {TABLES[match]}?)" if match else ""
    listed = ", ".join(TABLES.values())
    if isinstance(value, dict):
        return ConfigError(f"{path}: [{toml_key(name)}] unknown table{near}; tables: {listed}")
    return ConfigError(f"{path}: {toml_key(name)}: a key outside any table{near}; tables: {listed}")
