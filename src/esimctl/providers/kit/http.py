"""HTTP plumbing shared by the API providers: throttling, retries, error shapes.

* ``Throttle`` is an async sliding-window limiter; a provider creates one per documented
  limit (per account, per ICCID, ...) and passes it to each request, which waits until
  all of its throttles have room at the same moment (``acquire_all``).
* ``ApiClient.request`` retries *reads* on 429 (honouring ``Retry-After``), 5xx,
  timeouts and malformed bodies, with exponential backoff and jitter. What retrying cannot
  fix — a name that does not resolve (no network), a refused connection, a TLS failure,
  401/403 — is reported at once, with its cause in plain words (``connect_failure``).
  A purchase is sent with ``idempotent=False``: it is never retried, and a timeout after
  the request may have left becomes ``OutcomeUnknown``, so the caller reconciles before
  buying again.
* Secrets never appear in exceptions: messages name the endpoint path, not headers, and
  every error raised through ``ApiClient`` passes its ``Scrubber``, which knows the
  account's secrets and every credential the client has sent (``Authorization``, API-key
  headers, secret form fields), and masks ``Bearer …`` and ``token=…`` shapes besides.
  Providers' own ``_scrub`` delegate to it: one place.
* Plain ``http://`` is refused before any connection unless the server is on this
  machine (127.0.0.0/8, ::1, localhost) or the account opted in (``insecure_http = true``,
  warned about on stderr each run): credentials never cross a network unencrypted.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import re
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus

import httpx

from esimctl import __version__
from esimctl.config import (
    insecure_http_for,
    plain_http_host,
    refuse_plain_http,
    url_problem,
)
from esimctl.errors import (
    AuthRejected,
    ConfigError,
    EsimctlError,
    NotFound,
    NotSent,
    OutcomeUnknown,
    ProviderError,
    RateLimited,
    TemporaryFailure,
)

#: The longest Retry-After we sleep through inside one run; longer ones exit 75.
MAX_RETRY_WAIT = 30.0
#: Extra seconds per rate-limit window (at most a tenth of it): the server counts a
#: request when it arrives, a little after we count it, and a few ms can tip a window.
WINDOW_MARGIN = 0.05


class Throttle:
    """At most ``rate`` requests in any ``per`` seconds, and ``burst`` back to back.

    A sliding window, not a token bucket: a bucket that starts full lets through twice
    its rate in the first second, which a server counting requests in a window (fixed or
    sliding, as Laravel and API gateways do) answers with 429. Each caller reserves the
    earliest moment at which every throttle it needs has room, then sleeps until then:
    callers are served in order, with no lock and no herd of waiters woken together.
    A small margin per window absorbs the jitter between sending and the server's clock.
    """

    def __init__(self, rate: float, per: float = 1.0, burst: int | None = None) -> None:
        self.interval = per / rate
        #: Requests allowed in any window of ``window`` seconds.
        self.limit = max(1, int(rate))
        self.window = self.limit * self.interval
        self.burst = max(1, min(int(burst), self.limit)) if burst is not None else self.limit
        self.margin = min(WINDOW_MARGIN, 0.1 * self.window)
        self._sent: deque[float] = deque(maxlen=self.limit)
        self._paused_until = 0.0

    def earliest(self, now: float) -> float:
        """The first moment from ``now`` at which one more request fits."""
        t = max(now, self._paused_until)
        sent = self._sent
        if sent:
            t = max(t, sent[-1])
            if len(sent) >= self.limit:
                t = max(t, sent[-self.limit] + self.window + self.margin)
            if self.burst < self.limit and len(sent) >= self.burst:
                span = self.burst * self.interval
                t = max(t, sent[-self.burst] + span + min(WINDOW_MARGIN, 0.1 * span))
        return t

    def reserve(self, at: float) -> None:
        self._sent.append(at)

    async def acquire(self) -> None:
        await acquire_all((self,))

    def pause(self, seconds: float) -> None:
        """After a 429: nobody sends for ``seconds``; waiters already scheduled wait too."""
        self._paused_until = max(self._paused_until, time.monotonic() + max(0.0, seconds))


async def acquire_all(throttles: Iterable[Throttle | None]) -> None:
    """Wait for a moment at which every throttle has room, and take it in all of them.

    Taking the slots together matters: a request that holds one throttle while it waits
    for another would be counted as sent before it really is.
    """
    chosen = [t for t in throttles if t is not None]
    if not chosen:
        return
    while True:
        now = time.monotonic()
        at = max(t.earliest(now) for t in chosen)
        for t in chosen:
            t.reserve(at)
        if at > now:
            await asyncio.sleep(at - now)
        # A 429 may have paused a throttle while we slept: the slot is spent, take another.
        if all(t._paused_until <= time.monotonic() for t in chosen):
            return


class KeyedThrottle:
    """One ``Throttle`` per key (e.g. per ICCID), created on demand."""

    def __init__(self, rate: float, per: float = 1.0, burst: int | None = None) -> None:
        self.args = (rate, per, burst)
        self.buckets: dict[str, Throttle] = {}

    def __getitem__(self, key: str) -> Throttle:
        if key not in self.buckets:
            self.buckets[key] = Throttle(*self.args)
        return self.buckets[key]


def retry_after(resp: httpx.Response) -> float | None:
    raw = resp.headers.get("Retry-After")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(raw).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


ErrorMapper = Callable[[httpx.Response, Any], EsimctlError | None]

MASK = "***"
#: The shortest beginning of a secret masked at the end of a cut-off text.
_MIN_FRAGMENT = 8
#: Headers whose value is a credential.
_SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "x-api-key", "api-key", "rt-accesscode"}
)
#: Form, query or JSON field names whose value is a credential.
_SECRET_FIELD = re.compile(r"(?i)token|secret|password|api_?key|access_?code|client_?id")
_VALUE = r"[^\s\"'&,;}\]]"
#: ``Authorization: Bearer x``, ``"X-API-Key": "x"``, ``rt-accesscode=x`` ... where x looks
#: like a credential (a scheme before it, a digit in it, or 16 characters), not like prose.
_HEADER_SHAPE = re.compile(
    r"(?i)\b((?:proxy-)?authorization|x-api-key|api-key|rt-accesscode)"
    r"([\"']?\s*[:=]\s*[\"']?)"
    rf"(?:((?:bearer|basic|token)\s+){_VALUE}+|{_VALUE}*\d{_VALUE}*|{_VALUE}{{16,}})"
)
#: ``client_secret=x``, ``"access_token": "x"``: a secret-looking name given a value.
_FIELD_SHAPE = re.compile(
    r"(?i)\b(\w*(?:token|secret|password|api_?key|access_?code|client_?id)\w*)"
    rf"(\s*=\s*|[\"']\s*:\s*[\"']?){_VALUE}+"
)
#: A bare ``Bearer <token>`` in prose.
_BEARER_SHAPE = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{12,}")


class Scrubber:
    """Masks every known secret value, and anything shaped like a credential, in a text.

    Values are masked in the forms a server may echo them: as sent, URL-encoded and
    JSON-escaped. Values shorter than 4 characters are not masked (they would mask
    ordinary words); no real credential is that short.
    """

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._values: set[str] = set()
        self.add(*values)

    def add(self, *values: str | None) -> None:
        for value in values:
            if not value or len(value) < 4:
                continue
            for form in (value, quote(value, safe=""), quote_plus(value), json.dumps(value)[1:-1]):
                if len(form) >= 4:
                    self._values.add(form)

    def learn_header(self, name: str, value: str) -> None:
        """A header about to be sent: its value is a credential if the name says so."""
        if name.lower() not in _SECRET_HEADERS and not _SECRET_FIELD.search(name):
            return
        self.add(value)
        scheme, _, cred = value.partition(" ")
        if cred and scheme.lower() in ("bearer", "basic", "token"):
            self.add(cred.strip())
            if scheme.lower() == "basic":
                try:
                    pair = base64.b64decode(cred.strip(), validate=True).decode("utf-8")
                except ValueError:
                    return
                self.add(*pair.split(":", 1))

    def learn_fields(self, fields: Any) -> None:
        """Form, query or JSON fields about to be sent: secret-looking names' values."""
        if isinstance(fields, Mapping):
            for k, v in fields.items():
                if isinstance(v, str) and _SECRET_FIELD.search(str(k)):
                    self.add(v)
                elif isinstance(v, Mapping):
                    self.learn_fields(v)

    def __call__(self, text: str) -> str:
        for value in sorted(self._values, key=len, reverse=True):
            if value in text:
                text = text.replace(value, MASK)
        for value in self._values:
            # A value cut short where a provider (or a mapper) truncated its message.
            for k in range(len(value) - 1, _MIN_FRAGMENT - 1, -1):
                if text.endswith(value[:k]):
                    text = text[:-k] + MASK
                    break
        text = _HEADER_SHAPE.sub(lambda m: f"{m[1]}{m[2]}{m[3] or ''}{MASK}", text)
        text = _FIELD_SHAPE.sub(lambda m: f"{m[1]}{m[2]}{MASK}", text)
        return _BEARER_SHAPE.sub(lambda m: f"{m[1]}{MASK}", text)

    def error(self, exc: EsimctlError) -> EsimctlError:
        """``exc`` with its message and hint scrubbed (in place)."""
        exc.message = self(exc.message)
        exc.args = (exc.message, *exc.args[1:])
        if exc.hint:
            exc.hint = self(exc.hint)
        return exc


def check_url(
    url: str,
    *,
    account: str,
    provider: str,
    insecure_http: bool | None = None,
    warned: set[str] | None = None,
) -> None:
    """Refuse an address esimctl must not send credentials to, before any connection.

    ``insecure_http``: whether the account opted in to plain http:// beyond this machine;
    None looks it up in the account's config table. An opted-in address is warned about on
    stderr (once per address in ``warned``).
    """
    problem = url_problem(url)
    if problem is not None:
        raise ConfigError(
            f"the {provider} address {url!r} of account {account!r} {problem}",
            account=account,
            provider=provider,
        )
    host = plain_http_host(url)
    if host is None:
        return
    if insecure_http is None:
        insecure_http = insecure_http_for(account)
    if not insecure_http:
        raise refuse_plain_http(account, url)
    if warned is None or url not in warned:
        if warned is not None:
            warned.add(url)
        sys.stderr.write(
            f"warning: account {account!r} sends its credentials and tokens UNENCRYPTED over "
            f"plain http:// to {host} (insecure_http = true in its config); anyone on the "
            "network can read them: use https://\n"
        )
        sys.stderr.flush()


class ApiClient:
    """One ``httpx.AsyncClient`` per account (keep-alive), with the provider's policies."""

    def __init__(
        self,
        *,
        base_url: str,
        provider: str,
        account: str,
        timeout: float = 20.0,
        headers: dict[str, str] | None = None,
        throttle: Throttle | None = None,
        error_mapper: ErrorMapper | None = None,
        retries: int = 4,
        backoff: float = 0.5,
        extra: dict[str, Any] | None = None,
        secrets: Iterable[str] = (),
        insecure_http: bool | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """``secrets``: the account's secret values, masked in every error raised here.
        ``insecure_http``: the account's opt-in to plain http:// (see ``check_url``); None
        takes it from ``extra["insecure_http"]`` or else from the account's config table.
        ``transport``: what requests go through instead of the network (``ctx.transport``,
        set by tests through ``Env.hooks``); None for the network."""
        self.provider = provider
        self.account = account
        if insecure_http is None and extra is not None and "insecure_http" in extra:
            insecure_http = extra["insecure_http"] is True
        warned: set[str] = (
            extra.setdefault("insecure_http_warned", set()) if extra is not None else set()
        )
        check_url(
            base_url, account=account, provider=provider, insecure_http=insecure_http, warned=warned
        )
        self.scrub = Scrubber(secrets)
        for name, value in (headers or {}).items():
            self.scrub.learn_header(name, value)
        self.throttle = throttle
        self.error_mapper = error_mapper
        self.retries = retries
        self.backoff = backoff
        self.stats: dict[str, int] = (
            (extra or {}).setdefault("http_stats", {}) if extra is not None else {}
        )
        self.client = httpx.AsyncClient(
            base_url=base_url,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            headers={
                "User-Agent": f"esimctl/{__version__}",
                "Accept": "application/json",
                **(headers or {}),
            },
            limits=httpx.Limits(max_connections=10, max_keepalive_connections=10),
            follow_redirects=False,
            transport=transport,
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    def _count(self, key: str) -> None:
        self.stats[key] = self.stats.get(key, 0) + 1

    def _err(self, exc: EsimctlError) -> EsimctlError:
        return self.scrub.error(exc.for_account(self.account, self.provider))

    def _learn(self, kwargs: Mapping[str, Any]) -> None:
        """Remember every credential a request carries, before it is sent."""
        headers = kwargs.get("headers")
        if isinstance(headers, Mapping):
            for name, value in headers.items():
                if isinstance(name, str) and isinstance(value, str):
                    self.scrub.learn_header(name, value)
        for key in ("data", "params", "json"):
            self.scrub.learn_fields(kwargs.get(key))

    def _map_status(self, resp: httpx.Response, body: Any) -> EsimctlError | None:
        if self.error_mapper is not None:
            mapped = self.error_mapper(resp, body)
            if mapped is not None:
                return mapped
        path = resp.request.url.path
        if resp.status_code in (401, 403):
            return AuthRejected(
                f"{self.provider} rejected the credentials of account {self.account!r} "
                f"(HTTP {resp.status_code}); run 'esimctl account add {self.account} "
                f"--provider {self.provider} --replace' to store new ones"
            )
        if resp.status_code == 404:
            return NotFound(f"{self.provider}: not found ({path})")
        if resp.status_code == 429:
            return RateLimited(
                f"{self.provider} rate limit reached; retry later", retry_after=retry_after(resp)
            )
        if resp.status_code >= 500:
            return TemporaryFailure(f"{self.provider} is unavailable (HTTP {resp.status_code})")
        if resp.status_code >= 400:
            return ProviderError(
                f"{self.provider} refused the request to {path} (HTTP {resp.status_code})"
            )
        return None

    @staticmethod
    def parse_body(resp: httpx.Response) -> Any:
        if not resp.content:
            return None
        try:
            return json.loads(resp.content)
        except ValueError:
            return _MALFORMED

    async def request(
        self,
        method: str,
        path: str,
        *,
        idempotent: bool = True,
        throttles: tuple[Throttle, ...] = (),
        **kwargs: Any,
    ) -> Any:
        """Send a request and return its parsed JSON body (or None when empty)."""
        attempts = self.retries + 1 if idempotent else 1
        last: EsimctlError | None = None
        self._learn(kwargs)
        for attempt in range(attempts):
            await acquire_all((self.throttle, *throttles))
            self._count("requests")
            try:
                resp = await self.client.request(method, path, **kwargs)
            except httpx.ConnectError as exc:
                # Nothing reached the provider: a purchase was not made.
                last, final = connect_failure(exc, self.provider, self.client.base_url)
                if final or not idempotent:
                    raise self._err(last) from None
            except httpx.TransportError as exc:
                # A timeout, a dropped or broken connection, a write cut short: the request
                # may have reached the provider (a connection never made is above).
                if not idempotent:
                    raise self._err(
                        OutcomeUnknown(
                            f"no answer from {self.provider} to the purchase request "
                            f"({type(exc).__name__}); its outcome will be checked before "
                            "anything is bought again"
                        )
                    ) from None
                last = TemporaryFailure(f"{self.provider} did not answer: {timeout_words(exc)}")
            else:
                body = self.parse_body(resp)
                if body is _MALFORMED:
                    if resp.status_code >= 400:
                        body = None
                    elif not idempotent:
                        raise self._err(
                            OutcomeUnknown(
                                f"{self.provider} sent an unreadable answer to the purchase"
                            )
                        )
                    else:
                        last = TemporaryFailure(f"{self.provider} sent a malformed answer")
                        await self._sleep(attempt, None)
                        continue
                err = self._map_status(resp, body)
                if err is None:
                    return body
                if isinstance(err, RateLimited):
                    self._count("429")
                    wait = err.retry_after
                    if self.throttle is not None:
                        self.throttle.pause(wait if wait is not None else 1.0)
                if not idempotent:
                    if isinstance(err, TemporaryFailure) and not isinstance(err, RateLimited):
                        # A 5xx (or a "try later") to a purchase may still have been
                        # committed: never "failed", always looked up before buying again.
                        raise self._err(
                            OutcomeUnknown(
                                f"{self.provider} answered the purchase with HTTP "
                                f"{resp.status_code}; its outcome will be checked before "
                                "anything is bought again"
                            )
                        )
                    raise self._err(err)  # a 429 or a refusal: nothing was bought
                if isinstance(err, RateLimited):
                    if err.retry_after is not None and err.retry_after > MAX_RETRY_WAIT:
                        raise self._err(err)
                elif not isinstance(err, TemporaryFailure):
                    raise self._err(err)
                last = err
                if attempt + 1 < attempts:
                    await self._sleep(attempt, getattr(err, "retry_after", None))
                continue
            if attempt + 1 < attempts:
                await self._sleep(attempt, None)
        assert last is not None
        raise self._err(last)

    async def _sleep(self, attempt: int, hinted: float | None) -> None:
        delay = hinted if hinted is not None else self.backoff * (2**attempt)
        await asyncio.sleep(min(MAX_RETRY_WAIT, delay) + random.uniform(0, 0.1))


def _cause_chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and seen not in out and len(out) < 10:
        out.append(seen)
        seen = seen.__cause__ or seen.__context__
    return out


def connect_failure(
    exc: httpx.ConnectError, provider: str, base_url: httpx.URL
) -> tuple[NotSent, bool]:
    """The cause of a failed connection in plain words, and whether retrying cannot help
    within this run (no network, refused, TLS): then it is reported at once."""
    import socket
    import ssl

    host = base_url.host or "?"
    port = base_url.port or (443 if base_url.scheme == "https" else 80)
    for cause in _cause_chain(exc):
        if isinstance(cause, socket.gaierror):
            return (
                NotSent(f"no network: cannot resolve {host} ({provider})"),
                True,
            )
        if isinstance(cause, ConnectionRefusedError):
            return NotSent(f"connection refused by {host}:{port} ({provider})"), True
        if isinstance(cause, ssl.SSLError):
            why = getattr(cause, "reason", None) or type(cause).__name__
            return NotSent(f"TLS failed with {host} ({provider}): {why}"), True
        if isinstance(cause, OSError) and cause.errno is not None:
            what = cause.strerror or str(cause)
            return NotSent(f"cannot reach {host}:{port} ({provider}): {what}"), False
    text = str(exc) or type(exc).__name__
    if "Name or service not known" in text or "nodename nor servname" in text:
        return NotSent(f"no network: cannot resolve {host} ({provider})"), True
    if "Connection refused" in text:
        return NotSent(f"connection refused by {host}:{port} ({provider})"), True
    return NotSent(f"cannot reach {host}:{port} ({provider}): {text}"), False


def timeout_words(exc: Exception) -> str:
    """``timed out after 10 s`` where httpx says which timeout it was."""
    request = getattr(exc, "_request", None)
    limit = None
    if request is not None:
        timeouts = request.extensions.get("timeout", {})
        kinds: dict[type[Exception], str] = {
            httpx.ConnectTimeout: "connect",
            httpx.ReadTimeout: "read",
            httpx.WriteTimeout: "write",
            httpx.PoolTimeout: "pool",
        }
        kind = kinds.get(type(exc))
        limit = timeouts.get(kind) if kind else None
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out after {limit:g} s" if limit else "timed out"
    return f"the connection broke ({type(exc).__name__})"


def shape_of(body: Any) -> str:
    """What an unexpected answer looked like, in a few words for an error message."""
    if body is None:
        return "null"
    if isinstance(body, Mapping):
        keys = ", ".join(sorted(str(k) for k in body)[:5])
        return f"an object with {keys}" if keys else "an empty object"
    if isinstance(body, list):
        return f"a list of {len(body)}"
    return f"a {type(body).__name__}"


class _Malformed:
    pass


_MALFORMED = _Malformed()
