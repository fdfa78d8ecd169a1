"""The eSIM Access provider (open API v1; ``docs/providers/esimaccess.md``).

``answers.py`` reads its answers into esimctl's model (fields, units, states, error codes);
``provider.py`` holds the requests: endpoints, signing, throttle, paging, buying and lookups.
"""

from .provider import EsimAccessProvider

__all__ = ["EsimAccessProvider"]
