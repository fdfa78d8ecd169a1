"""Finds provider classes: built-ins and plugins alike, through the entry-point group.

Built-ins are declared under ``esimctl.providers`` in our own pyproject, so a third-party
package that declares the same group is loaded exactly the same way. If the package
metadata is missing (running from a source tree), the built-ins are still found.
"""

from __future__ import annotations

import importlib
from functools import cache

from esimctl.errors import ConfigError, InvalidInput
from esimctl.providers.base import Provider

GROUP = "esimctl.providers"
BUILTINS = {
    "demo": "esimctl.providers.demo:DemoProvider",
    "manual": "esimctl.providers.manual:ManualProvider",
    "airalo": "esimctl.providers.airalo:AiraloProvider",
    "esimaccess": "esimctl.providers.esimaccess:EsimAccessProvider",
    "esimgo": "esimctl.providers.esimgo:EsimGoProvider",
    "celitech": "esimctl.providers.celitech:CelitechProvider",
}


@cache
def _entry_points() -> dict[str, str]:
    from importlib.metadata import entry_points

    found = dict(BUILTINS)
    for ep in entry_points(group=GROUP):
        found[ep.name] = ep.value
    return found


def provider_ids() -> list[str]:
    return sorted(_entry_points())


def load(provider_id: str) -> type[Provider]:
    target = _entry_points().get(provider_id)
    if target is None:
        raise InvalidInput(
            f"unknown provider {provider_id!r} (providers: {', '.join(provider_ids())})"
        )
    module_name, _, attr = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            f"provider {provider_id!r} cannot be loaded from {target}: {exc}"
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, Provider)):
        raise ConfigError(f"provider {provider_id!r} ({target}) is not an esimctl Provider")
    return cls
