"""eSIM Go API v2.5 (``esimgo``), as ``docs/providers/esimgo.md`` describes it.

``answers.py`` reads eSIM Go's answers (fields, units, states); ``provider.py`` makes the
requests (endpoints, key, rate limit, purchase and its lookup, error statuses).
"""

from esimctl.providers.kit.startup import skip_httpx_cli

skip_httpx_cli()  # before httpx is imported: see kit/startup.py

from .provider import EsimGoProvider  # noqa: E402

__all__ = ["EsimGoProvider"]
