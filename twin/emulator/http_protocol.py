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

A client is not trusted with the server's memory or its connections (``HttpLimits``): a request
line, a header section or a body over its bound, or a request that does not arrive whole in time,
is answered 414, 431, 413 or 408 and the connection closes, as real servers do.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Protocol, cast

import httptools

MAX_BODY_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class HttpLimits:
    """What one request may cost the server before it is refused and its connection closed."""

    max_target_bytes: int = 8 * 1024
    """Request target (path and query): nginx's default ``large_client_header_buffers 4 8k``
    refuses a longer request line with 414, as Apache's ``LimitRequestLine 8190`` does."""
    max_head_bytes: int = 16 * 1024
    """Request target plus every header name and value: h11's
    ``DEFAULT_MAX_INCOMPLETE_EVENT_SIZE`` (16 KiB, what uvicorn's h11 server keeps) and Node.js's
    ``--max-http-header-size``; over it, 431 (RFC 6585)."""
    max_headers: int = 100
    """Header fields: Apache's ``LimitRequestFields`` default; more get 431."""
    max_body_bytes: int = MAX_BODY_BYTES
    """Body: a ``content-length`` over it is refused (413) before the body is read."""
    read_timeout_s: float = 60.0
    """From a connection's opening, or a request's first byte, to the end of that request:
    nginx's ``client_header_timeout`` and Node.js's ``headersTimeout`` default (60 s), then 408.
    A silent new connection is closed without an answer; an idle kept-alive one is left open."""
    linger_s: float = 5.0
    """After a refusal, how long what the client still sends is read and dropped before the
    connection closes: nginx's ``lingering_timeout`` default."""


_REFUSAL_TYPES = {
    400: "BadRequestError",
    408: "RequestTimeoutError",
    413: "RequestTooLargeError",
    414: "RequestTooLargeError",
    431: "RequestTooLargeError",
}


class _Refusal(Exception):  # noqa: N818 - raised inside parser callbacks, never seen outside
    """A request this server will not read further: the status and why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _finite(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def json_body(data: object) -> bytes:
    """``data`` as strict JSON (RFC 8259): a NaN or an infinity, which JSON cannot carry, is null.

    ``json.dumps`` writes them as ``NaN`` / ``Infinity`` by default, which strict parsers refuse.
    """
    try:
        return json.dumps(data, allow_nan=False).encode()
    except ValueError:
        return json.dumps(_finite(data), allow_nan=False).encode()


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
    return json_body({"error": error})


def _status_line(status: int) -> bytes:
    return f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n".encode()


class HttpConnection(asyncio.Protocol):
    """One client connection."""

    def __init__(
        self,
        handler: RequestHandler,
        live: set[HttpConnection],
        limits: HttpLimits | None = None,
    ) -> None:
        self._handler = handler
        self._live = live
        self._limits = limits or HttpLimits()
        self._parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.on_close: Callable[[], None] | None = None
        """Called once if the client disconnects while a response is in progress."""
        self._pending: deque[HttpRequest | _Refusal] = deque()
        self._busy = False
        self._keep_alive = True
        self._url = b""
        self._headers: dict[str, str] = {}
        self._head_bytes = 0
        self._header_count = 0
        self._body: list[bytes] = []
        self._body_size = 0
        self._in_message = False
        """Some bytes of a request have arrived and the request is not complete yet."""
        self._in_head = False
        self._began_here = False
        """A request began in the data being fed now (so that data is not all its head)."""
        self._unparsed_head = 0
        """Bytes fed while a head stayed incomplete, after the chunk it began in: httptools keeps
        a header line to itself until it ends, so this is what bounds a never-ending one."""
        self._refused = False
        self._deadline: asyncio.TimerHandle | None = None

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Remember the transport; register with the server; start the clock on the request."""
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self._live.add(self)
        self._arm()

    def data_received(self, data: bytes) -> None:
        """Feed the parser; a request it cannot take gets its 4xx and the connection closes."""
        if self._refused:
            return
        self._began_here = False
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse(400, "protocol upgrades are not supported")
            return
        except httptools.HttpParserCallbackError as exc:
            refusal = exc.__context__
            if not isinstance(refusal, _Refusal):
                raise
            self._refuse(refusal.status, refusal.message)
            return
        except httptools.HttpParserError as exc:
            self._refuse(400, f"malformed HTTP request: {exc}")
            return
        if self._in_head and not self._began_here:
            self._unparsed_head += len(data)
            if self._unparsed_head > self._limits.max_head_bytes:
                self._refuse(431, self._head_message())

    def connection_lost(self, exc: Exception | None) -> None:
        """The client went away: abort whatever it was waiting for."""
        self.closed = True
        self._disarm()
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
        self._head_bytes = self._header_count = 0
        self._body = []
        self._body_size = 0
        self._in_message = self._in_head = self._began_here = True
        self._unparsed_head = 0
        if self._deadline is None:
            self._arm()

    def on_url(self, url: bytes) -> None:
        """Part of the request target, bounded by ``max_target_bytes`` (414)."""
        self._url += url
        self._head_bytes += len(url)
        if len(self._url) > self._limits.max_target_bytes:
            limit = self._limits.max_target_bytes
            raise _Refusal(414, f"request target over {limit} bytes; send a shorter URL")

    def on_header(self, name: bytes, value: bytes) -> None:
        """One header (names lower-cased), bounded in size and number (431)."""
        self._head_bytes += len(name) + len(value)
        self._header_count += 1
        limits = self._limits
        if self._head_bytes > limits.max_head_bytes or self._header_count > limits.max_headers:
            raise _Refusal(431, self._head_message())
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        """The head is whole: refuse at once a body announced over the limit (413)."""
        self._in_head = False
        length = self._headers.get("content-length", "").strip()
        if length.isdigit() and int(length) > self._limits.max_body_bytes:
            raise _Refusal(413, self._body_message())

    def on_body(self, body: bytes) -> None:
        """Part of the body, bounded by ``max_body_bytes`` (chunked bodies announce no length)."""
        self._body_size += len(body)
        if self._body_size > self._limits.max_body_bytes:
            raise _Refusal(413, self._body_message())
        self._body.append(body)

    def on_message_complete(self) -> None:
        """A whole request: answer it, or queue it behind the one in progress."""
        self._in_message = False
        self._disarm()
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

    def _head_message(self) -> str:
        limits = self._limits
        return (
            f"request header fields over {limits.max_head_bytes} bytes or "
            f"{limits.max_headers} fields"
        )

    def _body_message(self) -> str:
        return f"request body over {self._limits.max_body_bytes} bytes"

    # the read deadline
    def _arm(self) -> None:
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_later(self._limits.read_timeout_s, self._timed_out)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _timed_out(self) -> None:
        self._deadline = None
        if self._in_message:
            seconds = f"{self._limits.read_timeout_s:g}"
            self._refuse(408, f"the request did not arrive whole within {seconds} s")
        elif not self._busy and not self._pending:
            self.close()  # a connection that never sent a byte: nothing to answer

    def _dispatch(self, request: HttpRequest | _Refusal) -> None:
        self._busy = True
        if isinstance(request, _Refusal):
            self._keep_alive = False
            kind = _REFUSAL_TYPES[request.status]
            self.respond(request.status, error_body(request.status, request.message, kind))
            return
        self._keep_alive = request.keep_alive
        self._handler.handle(request, self)

    def _refuse(self, status: int, message: str) -> None:
        """Read no more; answer ``status`` after any response in progress, then close."""
        self._refused = True
        self._in_message = False
        self._disarm()
        refusal = _Refusal(status, message)
        if self._busy:
            self._pending.append(refusal)
        else:
            self._dispatch(refusal)

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
        self._disarm()
        if self.transport is not None and not self.closed:
            self.transport.close()

    def _linger(self) -> None:
        """Close after a refusal the way nginx's ``lingering_close`` does.

        The client may still be sending what was refused; closing at once would answer that with
        a reset, which can discard the refusal before the client reads it. So the write side is
        shut (the client sees the end of the answer), what still arrives is dropped unread, and
        the connection closes when the client closes its side or after ``linger_s``.
        """
        transport = self.transport
        if transport is None or self.closed or not transport.can_write_eof():
            self.close()
            return
        transport.write_eof()
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_later(self._limits.linger_s, self.close)

    def _write(self, data: bytes) -> None:
        if not self.closed and self.transport is not None:
            self.transport.write(data)

    def _finished(self) -> None:
        self.on_close = None
        self._busy = False
        if not self._keep_alive:
            if self._refused:
                self._linger()
            else:
                self.close()
            return
        if self._pending and not self.closed:
            self._dispatch(self._pending.popleft())
