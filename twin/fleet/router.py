"""The Service: one port that spreads requests over the ready replicas, streams passed through.

Every request goes to the ready replica with the fewest requests in flight (ties: the one that
has had the fewest), over a kept-alive upstream connection. The replica's response bytes are
written to the client as they arrive, unparsed and unchanged; a C parser (httptools) only
watches them to learn where the response ends, so the connection can take the next request.
That is one socket read and one write per chunk on the hot path of every token, no coroutine
wake-up and no copy. A replica is added only once it serves and removed before it drains, so a
starting or draining replica never gets a request. ``/health`` (200 while a replica is ready)
and the ``local`` routes are answered here; everything else, ``/metrics`` included, goes to a
replica as a Service would send it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import cast

import httptools

from twin.emulator.http_protocol import HttpConnection, HttpLimits, HttpRequest, error_body

_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "transfer-encoding", "upgrade"}
)
"""Headers about one connection, not the request (RFC 9110 7.6.1); the upstream one is ours."""

LocalRoute = Callable[[HttpRequest], tuple[int, bytes]]
"""Answers a request on the router itself: ``(status, JSON body)``."""


def _error(status: int, message: str) -> bytes:
    kind = {502: "BadGatewayError", 503: "ServiceUnavailableError"}.get(status, "Error")
    return error_body(status, message, kind, with_param=False)


def encode_request(request: HttpRequest) -> bytes:
    """The request as sent upstream: same method, target, headers and body, framed by length."""
    target = f"{request.path}?{request.query}" if request.query else request.path
    lines = [f"{request.method} {target} HTTP/1.1\r\n"]
    lines.extend(
        f"{name}: {value}\r\n"
        for name, value in request.headers.items()
        if name not in _HOP_BY_HOP and name != "content-length"
    )
    lines.append(f"content-length: {len(request.body)}\r\n\r\n")
    return "".join(lines).encode("latin-1") + request.body


class Backend:
    """One ready replica: its address, requests in flight, idle kept-alive connections."""

    def __init__(self, name: str, host: str, port: int) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.outstanding = 0
        self.served = 0
        """Requests routed here so far."""
        self.idle: list[Upstream] = []
        self.active = True

    def done(self, upstream: Upstream, reusable: bool) -> None:
        """A response ended (or its connection did): count it, keep the connection if possible."""
        self.outstanding -= 1
        if reusable and self.active and not upstream.closed:
            self.idle.append(upstream)

    def close(self) -> None:
        """Stop taking requests: idle connections close, busy ones finish their response."""
        self.active = False
        for upstream in self.idle:
            upstream.close()
        self.idle.clear()


class Upstream(asyncio.Protocol):
    """One connection to a replica, carrying one request at a time."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.transport: asyncio.Transport | None = None
        self.client: HttpConnection | None = None
        self.busy = False
        self.closed = False
        self._parser = httptools.HttpResponseParser(self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Remember the transport."""
        self.transport = cast(asyncio.Transport, transport)

    def send(self, request: bytes, client: HttpConnection) -> None:
        """Forward one request; its response goes to ``client``."""
        self.busy = True
        self.client = client
        client.on_close = self.close
        assert self.transport is not None
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        """Pass the bytes on first, then let the parser see whether the response ended."""
        if self.client is not None:
            self.client.relay(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self.close()

    def on_message_complete(self) -> None:
        """Parser callback: the response ended; the client may send its next request."""
        client, self.client = self.client, None
        self.busy = False
        self.backend.done(self, self._parser.should_keep_alive())
        if client is not None:
            client.on_close = None
            client.relayed()

    def connection_lost(self, exc: Exception | None) -> None:
        """The replica closed: a response cut short ends the client's connection too."""
        self.closed = True
        if self in self.backend.idle:
            self.backend.idle.remove(self)
        if self.busy:
            self.busy = False
            self.backend.done(self, reusable=False)
        client, self.client = self.client, None
        if client is not None:
            client.on_close = None
            client.close()

    def close(self) -> None:
        """Close the connection (the client went away, or the replica is leaving)."""
        self.client = None
        if self.transport is not None and not self.closed:
            self.transport.close()


class Router:
    """Least outstanding requests over the ready replicas, on one listening port."""

    def __init__(
        self, local: dict[str, LocalRoute] | None = None, limits: HttpLimits | None = None
    ) -> None:
        self.backends: list[Backend] = []
        self.local = local or {}
        self.limits = limits or HttpLimits()
        """What a client may send before it is refused (sizes, read timeout), as on a replica."""
        self._connections: set[HttpConnection] = set()
        self._server: asyncio.Server | None = None

    def add(self, backend: Backend) -> None:
        """A replica is ready: route to it."""
        self.backends.append(backend)

    def remove(self, name: str) -> Backend | None:
        """Stop routing to a replica (before it drains); its requests in flight carry on."""
        for backend in self.backends:
            if backend.name == name:
                self.backends.remove(backend)
                backend.close()
                return backend
        return None

    def pick(self) -> Backend | None:
        """Send a request to the ready replica with the fewest in flight (ties: fewest so far)."""
        if not self.backends:
            return None
        best = min(self.backends, key=lambda b: (b.outstanding, b.served))
        best.outstanding += 1
        best.served += 1
        return best

    def handle(self, request: HttpRequest, conn: HttpConnection) -> None:
        """Answer a local route, or forward the request to the chosen replica."""
        route = self.local.get(request.path)
        if route is not None:
            status, body = route(request)
            conn.respond(status, body)
            return
        if request.path == "/health":
            conn.respond(200 if self.backends else 503, b"")
            return
        backend = self.pick()
        if backend is None:
            conn.respond(503, _error(503, "no replica is ready yet; retry shortly"))
            return
        data = encode_request(request)
        if backend.idle:
            backend.idle.pop().send(data, conn)
        else:
            asyncio.get_running_loop().create_task(self._connect(backend, data, conn))

    async def _connect(self, backend: Backend, data: bytes, conn: HttpConnection) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, upstream = await loop.create_connection(
                lambda: Upstream(backend), backend.host, backend.port
            )
        except OSError as err:
            backend.outstanding -= 1
            conn.respond(502, _error(502, f"replica {backend.name} did not answer: {err}"))
            return
        if conn.closed:
            # Not pooled: the replica closes a connection that sends nothing within its read
            # timeout, and a pooled one could be picked just as it closes.
            backend.done(upstream, reusable=False)
            upstream.close()
            return
        upstream.send(data, conn)

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (0 picks a free port); return the port."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: HttpConnection(self, self._connections, self.limits),
            host,
            port,
            reuse_address=True,
        )
        return cast(int, self._server.sockets[0].getsockname()[1])

    def stop_listening(self) -> None:
        """Accept no new connections; open ones carry on."""
        if self._server is not None:
            self._server.close()

    async def stop(self) -> None:
        """Close the listener, client connections and every upstream connection."""
        self.stop_listening()
        for conn in list(self._connections):
            conn.close()
        for backend in list(self.backends):
            self.remove(backend.name)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 1)
            self._server = None
