"""The Celitech provider (API v1; docs/providers/celitech.md): ``provider`` holds the
Provider class (endpoints, auth, throttle, requests, buying), ``answers`` what Celitech's
answers mean (fields, units, states), as pure functions."""

from .provider import CelitechProvider

__all__ = ["CelitechProvider"]
