"""The OpenAI-style error objects the emulator, its HTTP layer and the fleet router write."""

from __future__ import annotations

import asyncio

from twin.emulator.api import ApiError
from twin.emulator.http_protocol import HttpConnection, HttpRequest
from twin.fleet.router import _error


class _Transport:
    def __init__(self) -> None:
        self.written = b""

    def write(self, data: bytes) -> None:
        self.written += data

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass

    def close(self) -> None:
        pass


class _Handler:
    def handle(self, request: HttpRequest, conn: HttpConnection) -> None:
        raise AssertionError("a malformed request reaches no handler")


def test_api_errors_carry_type_param_and_status_code() -> None:
    assert ApiError(400, 'bad "n" \\ é', "n").body() == (
        b'{"error": {"message": "bad \\"n\\" \\\\ \\u00e9", "type": "BadRequestError", '
        b'"param": "n", "code": 400}}'
    )
    assert ApiError(404, "no route GET /x").body() == (
        b'{"error": {"message": "no route GET /x", "type": "NotFoundError", "param": null, '
        b'"code": 404}}'
    )
    assert ApiError(405, "m").body() == (
        b'{"error": {"message": "m", "type": "MethodNotAllowedError", "param": null, "code": 405}}'
    )
    assert ApiError(503, "m").body() == (
        b'{"error": {"message": "m", "type": "ServiceUnavailableError", "param": null, '
        b'"code": 503}}'
    )
    assert ApiError(500, "m").body() == (
        b'{"error": {"message": "m", "type": "InternalServerError", "param": null, "code": 500}}'
    )


def test_a_malformed_request_gets_a_bad_request_error_and_the_connection_closes() -> None:
    async def feed() -> bytes:
        conn = HttpConnection(_Handler(), set())
        transport = _Transport()
        conn.connection_made(transport)  # type: ignore[arg-type]
        conn.data_received(b"NOT HTTP AT ALL\r\n\r\n")
        return transport.written

    loop = asyncio.new_event_loop()  # not asyncio.run: it unsets the loop Pulumi's mocks use
    try:
        written = loop.run_until_complete(feed())
    finally:
        loop.close()
    head, body = written.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n") and b"connection: close" in head
    assert body.startswith(b'{"error": {"message": "malformed HTTP request: ')
    assert body.endswith(b'", "type": "BadRequestError", "param": null, "code": 400}}')


def test_router_errors_have_no_param() -> None:
    assert _error(503, "no replica is ready yet; retry shortly") == (
        b'{"error": {"message": "no replica is ready yet; retry shortly", '
        b'"type": "ServiceUnavailableError", "code": 503}}'
    )
    assert _error(502, "replica vllm-1 did not answer: é") == (
        b'{"error": {"message": "replica vllm-1 did not answer: \\u00e9", '
        b'"type": "BadGatewayError", "code": 502}}'
    )
    assert _error(500, "m") == b'{"error": {"message": "m", "type": "Error", "code": 500}}'
