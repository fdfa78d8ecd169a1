"""Finds provider classes: built-ins and plugins alike, through the entry-point group.

Built-ins are declared under ``esimctl.providers`` in our own pyproject, so a third-party
package that declares the same group is loaded exactly the same way. If the package
metadata is missing (running from a source tree), the built-ins are still found.

Two rules keep a plugin from standing in for something it is not (docs/providers/plugins.md):

* a plugin may not take the id of a built-in (``airalo``): loading that id is refused
  (``ConfigError``) unless ``ESIMCTL_ALLOW_PLUGIN_OVERRIDE`` names it, since the plugin
  would be handed the built-in account's secrets. Other ids load as usual meanwhile;
* a class declaring a provider API version (``api_version``) above
  ``base.PROVIDER_API_VERSION`` is refused; one declaring none is taken as version 1.

Nothing here imports a provider module until ``load`` is asked for it: ``status`` answered
from the cache never does.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from functools import cache

from esimctl.errors import ConfigError, InvalidInput
from esimctl.providers.base import PROVIDER_API_VERSION, Capability, Provider

GROUP = "esimctl.providers"
BUILTINS = {
    "demo": "esimctl.providers.demo:DemoProvider",
    "manual": "esimctl.providers.manual:ManualProvider",
    "airalo": "esimctl.providers.airalo:AiraloProvider",
    "esimaccess": "esimctl.providers.esimaccess:EsimAccessProvider",
    "esimgo": "esimctl.providers.esimgo:EsimGoProvider",
    "celitech": "esimctl.providers.celitech:CelitechProvider",
}
#: Comma-separated ids of built-in providers a plugin may replace: ``airalo,esimgo``.
OVERRIDE_VAR = "ESIMCTL_ALLOW_PLUGIN_OVERRIDE"


@dataclass(frozen=True)
class Plugin:
    """One entry point of the group that is not esimctl's own declaration of a built-in."""

    id: str
    target: str  # "module:Class"
    package: str  # the distribution declaring it

    def __str__(self) -> str:
        return f"plugin {self.target} from package {self.package}"


@cache
def _plugins() -> tuple[Plugin, ...]:
    from importlib.metadata import entry_points

    found: list[Plugin] = []
    for ep in entry_points(group=GROUP):
        if BUILTINS.get(ep.name) == ep.value:
            continue  # esimctl's own entry point (or another naming the very same class)
        dist = getattr(ep, "dist", None)
        package = dist.name if dist is not None else "(unknown)"
        plugin = Plugin(ep.name, ep.value, package)
        if plugin not in found:
            found.append(plugin)
    return tuple(found)


def clear_cache() -> None:
    """Forget the entry points found (tests, and anything that installs a plugin at run time)."""
    _plugins.cache_clear()


def allowed_overrides() -> frozenset[str]:
    """The built-in ids ``ESIMCTL_ALLOW_PLUGIN_OVERRIDE`` lets a plugin take."""
    raw = os.environ.get(OVERRIDE_VAR, "")
    return frozenset(part.strip() for part in raw.split(",") if part.strip())


def provider_ids() -> list[str]:
    """Every id a provider can be loaded by (a built-in's id once, whoever claims it too)."""
    return sorted(set(BUILTINS) | {p.id for p in _plugins()})


def _target(provider_id: str) -> tuple[str, Plugin | None]:
    """Where ``provider_id``'s class lives, and the plugin declaring it (None: a built-in)."""
    claims = [p for p in _plugins() if p.id == provider_id]
    if len({p.target for p in claims}) > 1:
        named = " and ".join(str(p) for p in claims)
        raise ConfigError(
            f"{named} register the same provider id {provider_id!r}; esimctl loads neither: "
            "uninstall all but one"
        )
    builtin = BUILTINS.get(provider_id)
    if builtin is None:
        if not claims:
            raise InvalidInput(
                f"unknown provider {provider_id!r} (providers: {', '.join(provider_ids())})"
            )
        return claims[0].target, claims[0]
    if not claims:
        return builtin, None
    plugin = claims[0]
    if provider_id in allowed_overrides():
        return plugin.target, plugin
    raise ConfigError(
        f"{plugin} registers the id {provider_id!r} of a built-in provider; esimctl does not "
        f"load it, nor the built-in in its place: uninstall {plugin.package}, or set "
        f"{OVERRIDE_VAR}={provider_id} to use the plugin instead of the built-in"
    )


def load(provider_id: str) -> type[Provider]:
    """The provider class of ``provider_id``. ``InvalidInput`` for an unknown id,
    ``ConfigError`` (exit 2) for one that is there but must not or cannot be used."""
    target, plugin = _target(provider_id)
    what = str(plugin) if plugin is not None else f"built-in provider {target}"
    module_name, _, attr = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except Exception as exc:  # a broken plugin is a config problem, never a traceback
        raise ConfigError(
            f"provider {provider_id!r} cannot be loaded ({what}): {type(exc).__name__}: {exc}"
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, Provider)):
        raise ConfigError(f"provider {provider_id!r} ({what}) is not an esimctl Provider subclass")
    version = getattr(cls, "api_version", 1)
    if not (isinstance(version, int) and not isinstance(version, bool)) or not (
        1 <= version <= PROVIDER_API_VERSION
    ):
        raise ConfigError(
            f"provider {provider_id!r} ({what}) is written for provider API version "
            f"{version!r}; this esimctl supports version {PROVIDER_API_VERSION}: upgrade "
            "esimctl, or install a release of the plugin for this version"
        )
    if getattr(cls, "id", None) != provider_id:
        raise ConfigError(
            f"provider {provider_id!r} ({what}) is registered as {provider_id!r} but its class "
            f"says id = {getattr(cls, 'id', None)!r}; the two must be the same"
        )
    if not isinstance(getattr(cls, "display_name", None), str):
        raise ConfigError(f"provider {provider_id!r} ({what}) sets no display_name")
    caps: frozenset[Capability] = getattr(cls, "capabilities", frozenset())
    buys = Capability.BUY_TOPUP in caps or Capability.BUY_ESIM in caps
    if buys and Capability.FIND_ORDER not in caps:
        # Without a lookup by reference, one lost answer would block the eSIM for good.
        raise ConfigError(
            f"provider {provider_id!r} ({what}) can buy but cannot look an order up by its "
            "reference (find_order): esimctl buys only where it can check"
        )
    return cls
