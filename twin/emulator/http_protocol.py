"""HTTP/1.1 over a raw asyncio protocol, parsed by httptools (uvicorn's parser).

Chosen by measurement (see the README's emulator section): a streamed token must reach the socket
within a couple of milliseconds of its modelled time while one core serves 20,000 tokens a second.
Writing each token from the engine step straight to the transport costs a few microseconds; going
through a framework's per-request coroutine (wake a task, ``await response.write``) costs several
times that, and a step's tokens are written one after another, so the per-token cost sets the
lag of the last one.

The connection handles one request at a time (pipelined requests wait their turn), keeps the
connection alive unless the client asked otherwise, frames streams with chunked transfer encoding,
and tells the current request's owner when the client goes away.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Protocol, cast

import httptools

MAX_BODY_BYTES = 32 * 1024 * 1024


@dataclass(slots=True)
class HttpRequest:
    """One parsed request."""

    method: str
    path: str
    headers: dict[str, str]
    """Lower-case names."""
    body: bytes
    keep_alive: bool
    query: str = ""
    """The request target's query string, without ``?`` (empty when there is none)."""


class RequestHandler(Protocol):
    """Answers requests; must end each with ``respond`` or ``start_stream`` ... ``end_stream``."""

    def handle(self, request: HttpRequest, conn: HttpConnection) -> None:
        """Answer ``request`` on ``conn`` now or later."""


def error_body(
    status: int, message: str, kind: str, param: str | None = None, *, with_param: bool = True
) -> bytes:
    """An OpenAI-style error object as JSON: ``{"error": {"message", "type", "param", "code"}}``.

    ``code`` is the HTTP status; ``with_param=False`` leaves ``param`` out (the fleet router's
    own errors have none).
    """
    error: dict[str, object] = {"message": message, "type": kind}
    if with_param:
        error["param"] = param
    error["code"] = status
    return json.dumps({"error": error}).encode()


def _status_line(status: int) -> bytes:
    return f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n".encode()


class HttpConnection(asyncio.Protocol):
    """One client connection."""

    def __init__(self, handler: RequestHandler, live: set[HttpConnection]) -> None:
        self._handler = handler
        self._live = live
        self._parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.on_close: Callable[[], None] | None = None
        """Called once if the client disconnects while a response is in progress."""
        self._pending: deque[HttpRequest] = deque()
        self._busy = False
        self._keep_alive = True
        self._url = b""
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._body_size = 0

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Remember the transport; register with the server."""
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self._live.add(self)

    def data_received(self, data: bytes) -> None:
        """Feed the parser; a malformed request gets a 400 and the connection closes."""
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, "protocol upgrades are not supported")
        except httptools.HttpParserError as exc:
            self._fail(400, f"malformed HTTP request: {exc}")

    def connection_lost(self, exc: Exception | None) -> None:
        """The client went away: abort whatever it was waiting for."""
        self.closed = True
        self._live.discard(self)
        self._pending.clear()
        callback, self.on_close = self.on_close, None
        if callback is not None:
            callback()

    # httptools callbacks
    def on_message_begin(self) -> None:
        """A new request starts."""
        self._url = b""
        self._headers = {}
        self._body = []
        self._body_size = 0

    def on_url(self, url: bytes) -> None:
        """Part of the request target."""
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        """One header (names lower-cased)."""
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        """Part of the body, bounded by ``MAX_BODY_BYTES``."""
        self._body_size += len(body)
        if self._body_size <= MAX_BODY_BYTES:
            self._body.append(body)

    def on_message_complete(self) -> None:
        """A whole request: answer it, or queue it behind the one in progress."""
        if self._body_size > MAX_BODY_BYTES:
            self._fail(413, f"request body over {MAX_BODY_BYTES} bytes")
            return
        url = httptools.parse_url(self._url)
        request = HttpRequest(
            method=self._parser.get_method().decode(),
            path=url.path.decode("latin-1"),
            headers=self._headers,
            body=b"".join(self._body),
            keep_alive=self._parser.should_keep_alive(),
            query=(url.query or b"").decode("latin-1"),
        )
        if self._busy:
            self._pending.append(request)
        else:
            self._dispatch(request)

    def _dispatch(self, request: HttpRequest) -> None:
        self._busy = True
        self._keep_alive = request.keep_alive
        self._handler.handle(request, self)

    def _fail(self, status: int, message: str) -> None:
        self._keep_alive = False
        self.respond(status, error_body(status, message, "BadRequestError"))

    def _head(self, status: int, content_type: str, extra: Iterable[tuple[str, str]]) -> bytes:
        lines = [_status_line(status), f"content-type: {content_type}\r\n".encode()]
        lines.extend(f"{k}: {v}\r\n".encode() for k, v in extra)
        if not self._keep_alive:
            lines.append(b"connection: close\r\n")
        return b"".join(lines)

    # responses
    def respond(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        """Send a whole response and move on to the next request."""
        head = self._head(status, content_type, headers)
        self._write(head + b"content-length: %d\r\n\r\n" % len(body) + body)
        self._finished()

    def start_stream(self, status: int = 200, content_type: str = "text/event-stream") -> None:
        """Send the head of a chunked response."""
        head = self._head(status, content_type, ())
        self._write(head + b"transfer-encoding: chunked\r\n\r\n")

    def write_chunk(self, data: bytes) -> None:
        """One chunk of a streamed body."""
        self._write(b"%x\r\n%b\r\n" % (len(data), data))

    def write_chunk_parts(self, head: bytes, middle: bytes, tail: bytes) -> None:
        """One chunk made of three parts, framed and written in a single call."""
        size = len(head) + len(middle) + len(tail)
        if not self.closed and self.transport is not None:
            self.transport.write(b"%x\r\n%b%b%b\r\n" % (size, head, middle, tail))

    def end_stream(self, last: bytes = b"") -> None:
        """Send ``last`` (if any) and the terminating chunk, then move on."""
        tail = b"%x\r\n%b\r\n0\r\n\r\n" % (len(last), last) if last else b"0\r\n\r\n"
        self._write(tail)
        self._finished()

    def relay(self, data: bytes) -> None:
        """Bytes of a response framed elsewhere: a proxy passing an upstream response through."""
        self._write(data)

    def relayed(self) -> None:
        """The relayed response is complete: move on to the next request."""
        self._finished()

    def close(self) -> None:
        """Close the connection (server shutdown)."""
        if self.transport is not None and not self.closed:
            self.transport.close()

    def _write(self, data: bytes) -> None:
        if not self.closed and self.transport is not None:
            self.transport.write(data)

    def _finished(self) -> None:
        self.on_close = None
        self._busy = False
        if not self._keep_alive:
            self.close()
            return
        if self._pending and not self.closed:
            self._dispatch(self._pending.popleft())
