"""The eSIM Access provider (open API v1; ``docs/providers/esimaccess.md``).

``answers.py`` reads its answers into esimctl's model (fields, units, states, error codes);
``provider.py`` holds the requests: endpoints, signing, throttle, paging, buying and lookups.
"""

from esimctl.providers.kit.startup import skip_httpx_cli

skip_httpx_cli()  # before httpx is imported: see kit/startup.py

from .provider import EsimAccessProvider  # noqa: E402

__all__ = ["EsimAccessProvider"]
