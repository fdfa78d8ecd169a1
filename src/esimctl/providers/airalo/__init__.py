"""Airalo Partner API v2 (``docs/providers/airalo.md``): ``answers`` reads what Airalo
sends into esimctl's model (fields, units, states, error bodies); ``provider`` holds
``AiraloProvider``: endpoints, the token, rate limits, pages, buying and order lookup."""

from .provider import AiraloProvider

__all__ = ["AiraloProvider"]
