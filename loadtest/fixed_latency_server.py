"""An OpenAI-style streaming server with fixed, known latencies: the yardstick for the client.

Every streamed answer sends its first content chunk ``ttft_ms`` after the request arrived and
each following chunk ``itl_ms`` later, on an absolute schedule (a late chunk does not delay the
next one). Whatever the client measures beyond those numbers is the client's error, which is
what ``benchmarks/bench_loadgen.py`` reports; ``GET /stats`` says how late the server itself
was, so its own lag is not blamed on the client. Tests use the ``model`` field to ask for
failures: ``fail-503``, ``broken`` (connection cut mid-stream), ``empty`` (no content),
``no-usage`` (no ``usage`` event). ``GET /v1/models`` lists the names given with ``--model``,
so a pre-flight that asks for the served model passes; with a key in ``KEY_ENV`` every
``/v1`` route wants it as ``Authorization: Bearer`` (401 otherwise), as vLLM's ``--api-key``.

It is a raw asyncio protocol, not a web framework, so that it stays far from saturating one
core at the chunk rates the benchmark needs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
from dataclasses import dataclass, field
from typing import Any

_CHUNK_WORD = " lorem"
KEY_ENV = "QWEN_STRESS_FIXED_SERVER_KEY"
"""The key the server wants, if any (in the environment: never on its command line)."""


@dataclass
class Latencies:
    """The server's fixed latencies and what it measured about itself."""

    ttft_ms: float
    itl_ms: float
    models: list[str] = field(default_factory=list)
    api_key: str | None = None
    lag_ms: list[float] = field(default_factory=list)
    chunks: int = 0
    requests: int = 0

    def stats(self) -> dict[str, Any]:
        """How late the server's own chunks went out (p50/p99/max of lateness, in ms)."""
        lags = sorted(self.lag_ms)

        def pct(q: float) -> float:
            return lags[min(int(q * len(lags)), len(lags) - 1)] if lags else 0.0

        return {
            "requests": self.requests,
            "chunks": self.chunks,
            "lag_p50_ms": pct(0.5),
            "lag_p99_ms": pct(0.99),
            "lag_max_ms": lags[-1] if lags else 0.0,
        }


def _event(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


def _chunked(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def _head(status: str, content_type: str, extra: str = "") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\n{extra}"
        "transfer-encoding: chunked\r\n\r\n"
    ).encode()


class _Stream:
    """One streamed answer on its schedule."""

    def __init__(self, proto: _Protocol, body: dict[str, Any], path: str, arrived: float) -> None:
        self.proto = proto
        self.chat = path.endswith("chat/completions")
        self.model = str(body.get("model", "fixed"))
        self.tokens = int(body.get("max_tokens") or 16)
        self.arrived = arrived
        self.sent = 0
        self.content = self._content_event()

    def _content_event(self) -> bytes:
        choice: dict[str, Any] = {"index": 0, "finish_reason": None}
        if self.chat:
            choice["delta"] = {"content": _CHUNK_WORD}
            kind = "chat.completion.chunk"
        else:
            choice["text"] = _CHUNK_WORD
            kind = "text_completion"
        event = {"id": "cmpl-fixed", "object": kind, "created": 0, "model": self.model}
        return _chunked(_event({**event, "choices": [choice]}))

    def start(self) -> None:
        proto = self.proto
        proto.write(_head("200 OK", "text/event-stream"))
        if self.chat:
            role = {"index": 0, "delta": {"role": "assistant", "content": ""}}
            proto.write(_chunked(_event({"id": "cmpl-fixed", "choices": [role]})))
        if self.model == "empty":
            self.finish()
            return
        self._schedule()

    def _due(self) -> float:
        lat = self.proto.latencies
        return self.arrived + (lat.ttft_ms + self.sent * lat.itl_ms) / 1000.0

    def _schedule(self) -> None:
        self.proto.loop.call_at(self._due(), self._tick)

    def _tick(self) -> None:
        proto = self.proto
        if proto.closed:
            return
        lat = proto.latencies
        lat.lag_ms.append((proto.loop.time() - self._due()) * 1000.0)
        lat.chunks += 1
        proto.write(self.content)
        self.sent += 1
        if self.model == "broken" and self.sent >= 2:
            proto.transport.close()
            return
        if self.sent < self.tokens:
            self._schedule()
        else:
            self.finish()

    def finish(self) -> None:
        proto = self.proto
        if self.model != "no-usage":
            usage = {
                "prompt_tokens": 10,
                "completion_tokens": self.sent,
                "total_tokens": 10 + self.sent,
            }
            proto.write(_chunked(_event({"id": "cmpl-fixed", "choices": [], "usage": usage})))
        proto.write(_chunked(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        proto.busy = False
        proto.next_request()


class _Protocol(asyncio.Protocol):
    def __init__(self, latencies: Latencies) -> None:
        self.latencies = latencies
        self.loop = asyncio.get_running_loop()
        self.buffer = b""
        self.busy = False
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True

    def write(self, data: bytes) -> None:
        if not self.closed:
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self.next_request()

    def next_request(self) -> None:
        if self.busy or self.closed:
            return
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buffer[:end].decode("latin-1").split("\r\n")
        method, path, _ = head[0].split(" ", 2)
        length = 0
        authorization = ""
        for line in head[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
            elif name.strip().lower() == "authorization":
                authorization = value.strip()
        if len(self.buffer) < end + 4 + length:
            return
        body = self.buffer[end + 4 : end + 4 + length]
        self.buffer = self.buffer[end + 4 + length :]
        key = self.latencies.api_key
        if key and path.startswith("/v1/") and authorization != f"Bearer {key}":
            self._reply("401 Unauthorized", {"error": {"message": "Unauthorized"}})
            return
        self.handle(method, path, body)

    def _reply(self, status: str, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.write(_head(status, "application/json") + _chunked(data) + b"0\r\n\r\n")
        self.next_request()

    def handle(self, method: str, path: str, raw: bytes) -> None:
        if method == "GET" and path == "/health":
            self._reply("200 OK", {})
            return
        if method == "GET" and path == "/stats":
            self._reply("200 OK", self.latencies.stats())
            return
        if method == "GET" and path == "/v1/models":
            models = [{"id": m, "object": "model"} for m in self.latencies.models]
            self._reply("200 OK", {"object": "list", "data": models})
            return
        if method != "POST" or not path.endswith("completions"):
            self._reply("404 Not Found", {"error": {"message": f"no route {method} {path}"}})
            return
        arrived = self.loop.time()
        self.latencies.requests += 1
        try:
            body = json.loads(raw)
        except ValueError:
            self._reply("400 Bad Request", {"error": {"message": "body is not JSON"}})
            return
        if body.get("model") == "fail-503":
            self._reply("503 Service Unavailable", {"error": {"message": "overloaded (test)"}})
            return
        self.busy = True
        _Stream(self, body, path, arrived).start()


async def serve(host: str, port: int, latencies: Latencies) -> None:
    """Serve until cancelled (or SIGTERM/SIGINT when run as a program)."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Protocol(latencies), host, port, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    """``python -m loadtest.fixed_latency_server --ttft-ms 200 --itl-ms 20 --port 8000``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--ttft-ms", type=float, default=200.0)
    parser.add_argument("--itl-ms", type=float, default=20.0)
    parser.add_argument("--model", action="append", default=[], help="a name /v1/models lists")
    args = parser.parse_args()
    latencies = Latencies(args.ttft_ms, args.itl_ms, args.model, os.environ.get(KEY_ENV) or None)

    async def run() -> None:
        task = asyncio.ensure_future(serve(args.host, args.port, latencies))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(run())


if __name__ == "__main__":
    main()
