"""The Celitech provider (API v1; docs/providers/celitech.md): ``provider`` holds the
Provider class (endpoints, auth, throttle, requests, buying), ``answers`` what Celitech's
answers mean (fields, units, states), as pure functions."""

from esimctl.providers.kit.startup import skip_httpx_cli

skip_httpx_cli()  # before httpx is imported: see kit/startup.py

from .provider import CelitechProvider  # noqa: E402

__all__ = ["CelitechProvider"]
