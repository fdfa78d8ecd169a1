"""Airalo Partner API v2 (``docs/providers/airalo.md``): ``answers`` reads what Airalo
sends into esimctl's model (fields, units, states, error bodies); ``provider`` holds
``AiraloProvider``: endpoints, the token, rate limits, pages, buying and order lookup."""

from esimctl.providers.kit.startup import skip_httpx_cli

skip_httpx_cli()  # before httpx is imported: see kit/startup.py

from .provider import AiraloProvider  # noqa: E402

__all__ = ["AiraloProvider"]
