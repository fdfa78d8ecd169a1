"""eSIM Go API v2.5 (``esimgo``), as ``docs/providers/esimgo.md`` describes it.

``answers.py`` reads eSIM Go's answers (fields, units, states); ``provider.py`` makes the
requests (endpoints, key, rate limit, purchase and its lookup, error statuses).
"""

from .provider import EsimGoProvider

__all__ = ["EsimGoProvider"]
