"""How much of a request the emulator's HTTP layer reads before it refuses it: exact bounds.

The live-socket behaviour (status, close, timeouts) is probed in
``tests/integration/test_hostile_inputs.py``; here the connection is fed directly, so the bytes it
takes in before refusing can be counted.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from twin.emulator.http_protocol import HttpConnection, HttpLimits, HttpRequest, json_body

LIMITS = HttpLimits()


class _Transport:
    def __init__(self) -> None:
        self.written = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


class _Echo:
    def handle(self, request: HttpRequest, conn: HttpConnection) -> None:
        conn.respond(200, json.dumps({"path_bytes": len(request.path)}).encode())


def _in_loop(scenario: Callable[[HttpConnection, _Transport], None]) -> _Transport:
    async def run() -> _Transport:
        conn = HttpConnection(_Echo(), set(), LIMITS)
        transport = _Transport()
        conn.connection_made(transport)  # type: ignore[arg-type]
        scenario(conn, transport)
        conn.connection_lost(None)
        return transport

    loop = asyncio.new_event_loop()  # not asyncio.run: it unsets the loop Pulumi's mocks use
    try:
        return loop.run_until_complete(run())
    finally:
        loop.close()


def _status(transport: _Transport) -> int:
    return int(transport.written.split(b" ", 2)[1])


def test_an_endless_header_line_is_refused_within_one_chunk_of_the_head_limit() -> None:
    chunk = b"a" * 65536
    fed = 0

    def scenario(conn: HttpConnection, transport: _Transport) -> None:
        nonlocal fed
        conn.data_received(b"GET / HTTP/1.1\r\nX: ")
        while not transport.written and fed < 50 * 1024 * 1024:
            conn.data_received(chunk)
            fed += len(chunk)

    transport = _in_loop(scenario)
    assert _status(transport) == 431
    # httptools keeps an unfinished header line to itself: what it holds is bounded by the
    # limit plus the last chunk, not by what the client sends (today's 50 MB lines).
    assert fed <= LIMITS.max_head_bytes + len(chunk)


def test_target_and_header_bounds_are_exact() -> None:
    def request(target_bytes: int, header_value_bytes: int = 1, headers: int = 1) -> int:
        target = b"/" + b"a" * (target_bytes - 1)
        lines = b"".join(b"x-%d: %b\r\n" % (i, b"v" * header_value_bytes) for i in range(headers))
        head = b"GET %b HTTP/1.1\r\n%b\r\n" % (target, lines)
        return _status(_in_loop(lambda conn, _: conn.data_received(head)))

    assert request(LIMITS.max_target_bytes) == 200
    assert request(LIMITS.max_target_bytes + 1) == 414
    name_bytes = len(b"x-0")
    fits = LIMITS.max_head_bytes - 1 - name_bytes  # the target "/" counts too
    assert request(1, header_value_bytes=fits) == 200
    assert request(1, header_value_bytes=fits + 1) == 431
    assert request(1, headers=LIMITS.max_headers) == 200
    assert request(1, headers=LIMITS.max_headers + 1) == 431


def test_an_announced_body_over_the_limit_is_refused_before_it_is_sent() -> None:
    head = b"POST /v1/completions HTTP/1.1\r\ncontent-length: %d\r\n\r\n"

    def scenario(conn: HttpConnection, _: _Transport) -> None:
        conn.data_received(head % (LIMITS.max_body_bytes + 1))

    transport = _in_loop(scenario)
    assert _status(transport) == 413 and b"connection: close" in transport.written


def test_a_refusal_waits_for_the_response_in_progress() -> None:
    """A pipelined request refused mid-answer gets its 4xx after the answer, not inside it."""

    class _Slow:
        def __init__(self) -> None:
            self.conn: HttpConnection | None = None

        def handle(self, request: HttpRequest, conn: HttpConnection) -> None:
            self.conn = conn
            conn.start_stream()

    async def run() -> bytes:
        handler = _Slow()
        conn = HttpConnection(handler, set(), LIMITS)
        transport = _Transport()
        conn.connection_made(transport)  # type: ignore[arg-type]
        conn.data_received(b"GET /stream HTTP/1.1\r\n\r\nGET /" + b"a" * 9000)
        conn.write_chunk(b"data")
        conn.end_stream()
        conn.connection_lost(None)
        return transport.written

    loop = asyncio.new_event_loop()
    try:
        written = loop.run_until_complete(run())
    finally:
        loop.close()
    stream, refusal = written.split(b"0\r\n\r\n", 1)
    assert stream.startswith(b"HTTP/1.1 200 OK") and b"414" not in stream
    assert refusal.startswith(b"HTTP/1.1 414 ")


def test_json_the_twin_writes_is_strict() -> None:
    body = json_body({"a": float("inf"), "b": [float("nan"), 1.5], "c": {"d": -float("inf")}})

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    assert json.loads(body, parse_constant=refuse) == {
        "a": None,
        "b": [None, 1.5],
        "c": {"d": None},
    }
