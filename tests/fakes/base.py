"""A small threaded HTTP server that fake provider APIs build on.

Each fake subclasses ``FakeApi`` and registers routes with ``route(method, pattern)``; a
handler gets a ``Request`` and returns ``Reply``. Switches shared by every fake:

* ``latency``: seconds added before every answer;
* ``fail_next(status, times, body=..., headers=...)``: the next N requests get that answer;
* ``malformed_next(times)`` / ``truncated_next(times)``: a body that is not JSON, or is cut;
* ``hang_next(times, seconds)``: sleep before answering (longer than the client timeout);
* ``commit_then_drop_next(times)``: run the handler (state changes!) then close the
  socket without an answer — a purchase that was committed but whose answer never came;
* ``rate_limit(per_second=..., per_minute=...)``: enforce a limit, answering 429 with
  Retry-After beyond it, and count every 429 sent in ``stats["429"]``;
* ``bad_credentials``: a flag fakes check in their auth step;
* ``echo_auth_next(times, status=400, path=None)``: the next N requests (whose path
  contains ``path``, if given) get an error whose body echoes what they carried: the
  ``Authorization`` header, the bare token, the query string and the body (form fields
  with their secrets) — as careless APIs do. Fakes shape it in ``echo_reply``.

Every request is recorded in ``requests`` (method, path, headers, body) for assertions.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    params: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None


Handler = Callable[[Request], Reply]


@dataclass
class _Echo:
    status: int
    path: str | None


@dataclass
class _Fault:
    kind: str
    status: int = 500
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


class FakeApi:
    """Base of the fakes. ``with FakeX() as fake: fake.url`` is the base URL to configure."""

    def __init__(self) -> None:
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self.requests: list[Request] = []
        self.stats: dict[str, int] = {"requests": 0, "429": 0}
        self.latency = 0.0
        self.bad_credentials = False
        self.lock = threading.RLock()
        self._faults: deque[_Fault] = deque()
        self._echoes: deque[_Echo] = deque()
        self._limits: list[tuple[float, int, deque[float]]] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.register()

    # -- to override ------------------------------------------------------------------------

    def register(self) -> None:
        """Add routes with ``self.route``."""

    def route(self, method: str, pattern: str, handler: Handler) -> None:
        rx = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "$")
        self.routes.append((method.upper(), rx, handler))

    # -- switches ---------------------------------------------------------------------------

    def fail_next(
        self, status: int, times: int = 1, body: Any = None, headers: dict[str, str] | None = None
    ) -> None:
        for _ in range(times):
            self._faults.append(_Fault("status", status, body, headers or {}))

    def echo_auth_next(self, times: int = 1, status: int = 400, path: str | None = None) -> None:
        with self.lock:
            self._echoes.extend(_Echo(status, path) for _ in range(times))

    def echo_reply(self, req: Request, status: int) -> Reply:
        """An error that repeats the request's credentials; every common error key holds it
        (``message``, ``reason`` with a ``code``, ``error``, ``errorMsg``), so each fake's
        client reads it where it reads its provider's error text."""
        auth = req.header("authorization") or ""
        bare = auth.partition(" ")[2] or auth
        query = "&".join(f"{k}={v[0]}" for k, v in req.query.items())
        text = (
            f"invalid request; Authorization: {auth}; token {bare}; "
            f"query {query}; body {req.body.decode('utf-8', 'replace')}"
        )
        body = {"message": text, "reason": text, "code": 0, "error": text, "errorMsg": text}
        return Reply(status, body)

    def malformed_next(self, times: int = 1) -> None:
        self._faults.extend(_Fault("malformed") for _ in range(times))

    def truncated_next(self, times: int = 1) -> None:
        self._faults.extend(_Fault("truncated") for _ in range(times))

    def hang_next(self, times: int = 1, seconds: float = 5.0) -> None:
        self._faults.extend(_Fault("hang", seconds=seconds) for _ in range(times))

    def commit_then_drop_next(self, times: int = 1) -> None:
        self._faults.extend(_Fault("drop") for _ in range(times))

    def rate_limit(
        self, *, per_second: float | None = None, per_minute: float | None = None
    ) -> None:
        self._limits = []
        if per_second:
            self._limits.append((1.0, int(per_second), deque()))
        if per_minute:
            self._limits.append((60.0, int(per_minute), deque()))

    def rate_limited_reply(self, retry_after: float) -> Reply:
        """The provider's own 429 shape; fakes override."""
        return Reply(429, {"message": "Too Many Requests"}, {"Retry-After": f"{retry_after:.0f}"})

    # -- server -----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None, "start the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeApi:
        fake = self

        class _H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                fake._handle(self)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

        class _Server(ThreadingHTTPServer):
            # socketserver's backlog of 5 drops SYNs when a client opens many connections
            # at once (a second's retry each); real servers queue them.
            request_queue_size = 128

        self._server = _Server(("127.0.0.1", 0), _H)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeApi:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _over_limit(self) -> float | None:
        now = time.monotonic()
        with self.lock:
            for window, limit, hits in self._limits:
                while hits and now - hits[0] >= window:
                    hits.popleft()
                if len(hits) >= limit:
                    return max(1.0, window - (now - hits[0]))
            for _, _, hits in self._limits:
                hits.append(now)
        return None

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        parts = urlsplit(h.path)
        req = Request(
            method=h.command,
            path=parts.path,
            query=parse_qs(parts.query),
            headers={k.lower(): v for k, v in h.headers.items()},
            body=body,
        )
        with self.lock:
            self.requests.append(req)
            self.stats["requests"] += 1
            echo = None
            if self._echoes and (self._echoes[0].path or "") in req.path:
                echo = self._echoes.popleft()
            fault = self._faults.popleft() if self._faults and echo is None else None
        if echo is not None:
            return self._send(h, self.echo_reply(req, echo.status))
        if self.latency:
            time.sleep(self.latency)
        if fault is not None and fault.kind == "hang":
            time.sleep(fault.seconds)
        wait = self._over_limit()
        if wait is not None:
            with self.lock:
                self.stats["429"] += 1
            return self._send(h, self.rate_limited_reply(wait))
        if fault is not None and fault.kind == "status":
            return self._send(h, Reply(fault.status, fault.body, fault.headers))
        reply = self._dispatch(req)
        if fault is not None and fault.kind == "drop":
            # The handler ran (the purchase is committed); the answer never arrives.
            h.close_connection = True
            with contextlib.suppress(OSError):
                h.connection.shutdown(socket.SHUT_RDWR)
            return None
        if fault is not None and fault.kind == "malformed":
            reply = Reply(
                200, raw=b"<html>502 Bad Gateway</html>", headers={"Content-Type": "text/html"}
            )
        if fault is not None and fault.kind == "truncated":
            # Announce the full length, send half of it, hang up: a body cut in transit.
            full = json.dumps(reply.body).encode()
            return self._send(h, reply, cut_at=max(1, len(full) // 2))
        return self._send(h, reply)

    def _dispatch(self, req: Request) -> Reply:
        for method, rx, handler in self.routes:
            m = rx.match(req.path)
            if m and method == req.method:
                req.params = m.groupdict()
                with self.lock:
                    return handler(req)
        return self.not_found(req)

    def not_found(self, req: Request) -> Reply:
        return Reply(404, {"message": f"no route {req.method} {req.path}"})

    def _send(self, h: BaseHTTPRequestHandler, reply: Reply, cut_at: int | None = None) -> None:
        raw = (
            reply.raw
            if reply.raw is not None
            else (b"" if reply.body is None else json.dumps(reply.body).encode())
        )
        with contextlib.suppress(OSError):
            # Headers and body leave in two writes: without TCP_NODELAY every answer
            # waits for a delayed ACK (~40 ms), and benchmarks would measure the kernel.
            h.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            h.send_response(reply.status)
            headers = {"Content-Type": "application/json", **reply.headers}
            for k, v in headers.items():
                h.send_header(k, v)
            h.send_header("Content-Length", str(len(raw)))
            h.end_headers()
            if cut_at is None:
                h.wfile.write(raw)
            else:
                h.wfile.write(raw[:cut_at])
                h.wfile.flush()
                h.close_connection = True
                h.connection.shutdown(socket.SHUT_RDWR)
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass
