"""OAuth client credentials: one access token per account, reused until it is nearly due.

``TokenSource`` keeps the token in memory for the run and in the account's
``ctx.token_cache`` (a ``SecretCache``: the credential store, never config or logs)
between runs, and reads every time from the injected ``ctx.clock`` (never
``time.time()``), so tests and benchmarks move time at will. How a token is fetched is
the provider's: it passes ``fetch``, an async callable answering a ``FetchedToken``, and
maps its own token endpoint's errors (a refused client secret is an ``AuthRejected`` that
``fetch`` raises; it is never retried here).

The cache record is ``{"key", "access_token", "expires_at", **extra}``, ``expires_at``
being ISO 8601 in UTC. Records written before the kit keep working: Airalo's (ISO
``expires_at``, a 16-hex ``key``) are the same format, and Celitech's (``expires_at`` in
epoch seconds as text, a 24-hex ``key``, ``auth_style``) are read too, since
``parse_time`` takes epoch numbers; their ``auth_style`` comes back in ``extra``. Either
is reused only when the provider derives the same ``key`` as before (``token_key`` with
the same parts and length). A record that cannot be read (another key, no token, an
expiry that is no time) is ignored cleanly: a new token is fetched and replaces it.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from esimctl.errors import AuthRejected
from esimctl.providers.kit.values import parse_time, to_decimal

if TYPE_CHECKING:
    from esimctl.providers.base import ProviderContext

T = TypeVar("T")

#: Renew this long before the token's end, so a request never carries one that expires
#: on the way.
DEFAULT_MARGIN = timedelta(minutes=1)
#: A token whose answer gives no usable ``expires_in`` is kept this long.
DEFAULT_LIFETIME = timedelta(hours=1)
#: What a token record holds besides the provider's ``extra``.
_OWN_FIELDS = frozenset({"key", "access_token", "expires_at"})


@dataclass(frozen=True)
class FetchedToken:
    """What the provider's ``fetch`` answers: the token, its ``expires_in`` as the token
    endpoint gave it (seconds, a number or numeric text; None, junk or ≤ 0 take the
    source's ``default_lifetime``), and provider fields to keep with it (text only)."""

    access_token: str
    expires_in: Any = None
    extra: Mapping[str, str] = field(default_factory=dict)


def token_key(*parts: str, length: int = 16) -> str:
    """Which credentials and host a cached token belongs to, with no secret in it: the
    first ``length`` hex digits of SHA-256 over ``parts`` joined by newlines. A new client
    id or URL gives a new key, so a token of other credentials is never reused."""
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:length]


class TokenSource:
    """A bearer token for one account: from memory, else from ``ctx.token_cache``, else
    fetched (one fetch at a time: concurrent callers wait for it and share its token).

    A token is used while ``expires_at - margin`` is after ``ctx.clock()``; the lifetime
    is ``expires_in`` capped at ``max_lifetime`` (when given), or ``default_lifetime``.
    """

    def __init__(
        self,
        ctx: ProviderContext,
        fetch: Callable[[], Awaitable[FetchedToken]],
        *,
        key: str,
        margin: timedelta = DEFAULT_MARGIN,
        default_lifetime: timedelta = DEFAULT_LIFETIME,
        max_lifetime: timedelta | None = None,
    ) -> None:
        self.ctx = ctx
        self._fetch = fetch
        self.key = key
        self.margin = margin
        self.default_lifetime = default_lifetime
        self.max_lifetime = max_lifetime
        self._token: str | None = None
        self._expires: datetime | None = None
        #: The provider fields kept with the current token (``FetchedToken.extra``).
        self.extra: dict[str, str] = {}
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None

    def _lock_here(self) -> asyncio.Lock:
        """One lock per event loop: a provider may outlive the loop it was first used in."""
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        return self._lock

    def _fresh(self, expires: datetime | None, now: datetime) -> bool:
        return expires is not None and expires - self.margin > now

    def forget(self) -> None:
        """Drop the token held in memory (the cache is left as it is)."""
        self._token = self._expires = None

    async def token(self, *, rejected: str | None = None, fresh: bool = False) -> str:
        """A token that is not due. ``rejected``: the token a server just refused; it is
        never answered again, and the cache is not read (a caller that comes second gets
        the one the first already fetched). ``fresh``: always fetch a new one (a check of
        the credentials)."""
        async with self._lock_here():
            now = self.ctx.clock()
            if (
                not fresh
                and self._token is not None
                and self._token != rejected
                and self._fresh(self._expires, now)
            ):
                return self._token
            if not fresh and rejected is None and self._from_cache(now):
                assert self._token is not None
                return self._token
            return await self._fetch_new(now)

    def _from_cache(self, now: datetime) -> bool:
        cached = self.ctx.token_cache.get() or {}
        if not isinstance(cached, Mapping):
            return False
        token = cached.get("access_token")
        expires = parse_time(cached.get("expires_at"))
        if cached.get("key") != self.key or not isinstance(token, str) or not token:
            return False
        if not self._fresh(expires, now):
            return False
        self._token, self._expires = token, expires
        self.extra = {
            k: v for k, v in cached.items() if k not in _OWN_FIELDS and isinstance(v, str)
        }
        return True

    def _lifetime(self, expires_in: Any) -> timedelta:
        seconds = to_decimal(expires_in)
        lifetime = self.default_lifetime
        if seconds is not None and seconds > 0:
            try:
                lifetime = timedelta(seconds=float(seconds))
            except OverflowError:  # beyond any calendar: as long as allowed
                lifetime = self.max_lifetime or self.default_lifetime
        if self.max_lifetime is not None:
            lifetime = min(lifetime, self.max_lifetime)
        return lifetime

    async def _fetch_new(self, now: datetime) -> str:
        got = await self._fetch()
        if not isinstance(got.access_token, str) or not got.access_token:
            raise ValueError("a token fetcher answered without an access token")
        try:
            expires = now + self._lifetime(got.expires_in)
        except OverflowError:
            expires = datetime.max.replace(tzinfo=UTC)
        self._token, self._expires = got.access_token, expires
        self.extra = dict(got.extra)
        self.ctx.token_cache.set(
            {
                **self.extra,
                "key": self.key,
                "access_token": got.access_token,
                "expires_at": expires.astimezone(UTC).isoformat(),
            }
        )
        return got.access_token

    async def with_bearer(
        self,
        call: Callable[[dict[str, str]], Awaitable[T]],
        *,
        retry_if: Callable[[AuthRejected], bool] | None = None,
    ) -> T:
        """``call(headers)`` with ``{"Authorization": "Bearer <token>"}``; after an
        ``AuthRejected`` (for which ``retry_if`` holds, if given) one new token and one
        resend; a second rejection is raised as it came.

        A 401 is answered before anything happens, so resending even a purchase cannot
        buy twice; a provider whose API could refuse *after* acting must not use this for
        such a request. Errors of ``fetch`` (a refused client secret) are never retried.
        """
        token = await self.token()
        try:
            return await call({"Authorization": f"Bearer {token}"})
        except AuthRejected as exc:
            if retry_if is not None and not retry_if(exc):
                raise
        token = await self.token(rejected=token)
        return await call({"Authorization": f"Bearer {token}"})
