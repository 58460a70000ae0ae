"""The router's choice of replica and the request it sends upstream."""

from __future__ import annotations

from twin.emulator.http_protocol import HttpRequest
from twin.fleet.router import Backend, Router, encode_request


def _router(*names: str) -> Router:
    router = Router()
    for i, name in enumerate(names):
        router.add(Backend(name, "127.0.0.1", 9000 + i))
    return router


def _picks(router: Router, n: int) -> list[str]:
    return [b.name for b in (router.pick() for _ in range(n)) if b is not None]


def test_least_outstanding_requests_wins_and_ties_take_turns() -> None:
    router = _router("a", "b", "c")
    for backend, busy in zip(router.backends, (3, 1, 1), strict=True):
        backend.outstanding = busy
    assert _picks(router, 4) == ["b", "c", "b", "c"]  # until b and c have 3 in flight, as a has
    assert sorted(_picks(router, 3)) == ["a", "b", "c"]
    router.backends[0].outstanding -= 2  # two of a's requests finished
    assert _picks(router, 2) == ["a", "a"]


def test_a_replica_out_of_the_router_is_never_picked() -> None:
    router = _router("ready-1", "draining", "ready-2")
    router.backends[0].outstanding = 5
    removed = router.remove("draining")  # the least busy replica is the one leaving
    assert removed is not None and not removed.active
    assert set(_picks(router, 20)) == {"ready-1", "ready-2"}
    router.remove("ready-1")
    router.remove("ready-2")
    assert router.pick() is None


def test_the_upstream_request_keeps_method_path_headers_and_body() -> None:
    body = b'{"model": "m", "stream": true}'
    request = HttpRequest(
        method="POST",
        path="/v1/chat/completions",
        headers={
            "host": "svc",
            "authorization": "Bearer k",
            "connection": "close",
            "transfer-encoding": "chunked",
            "content-length": "999",
        },
        body=body,
        keep_alive=False,
    )
    head, sent = encode_request(request).split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /v1/chat/completions HTTP/1.1"
    assert set(lines[1:]) == {
        "host: svc",
        "authorization: Bearer k",
        f"content-length: {len(body)}",
    }
    assert sent == body


def test_the_upstream_request_keeps_the_query_string() -> None:
    request = HttpRequest(
        method="GET", path="/v1/models", headers={}, body=b"", keep_alive=True, query="a=1&b=%20"
    )
    assert encode_request(request).startswith(b"GET /v1/models?a=1&b=%20 HTTP/1.1\r\n")
