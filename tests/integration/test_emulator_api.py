"""A live emulator on 127.0.0.1 answered by the official ``openai`` client and raw HTTP."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from domain.versions import VLLM_VERSION
from twin.emulator.metrics import INTER_TOKEN_BUCKETS, REQUEST_LATENCY_BUCKETS, TTFT_BUCKETS
from twin.emulator.server import ReplicaServer

pytestmark = pytest.mark.integration

MODEL = "Qwen/Qwen2.5-0.5B-Instruct"
KEY = "test-key"


class Live:
    """A replica served from a background thread's event loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = ReplicaServer(MODEL, "A10G", max_model_len=2048, api_key=KEY)
        self.port = self.call(self.server.start)

    def call(self, fn: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        return asyncio.run_coroutine_threadsafe(fn(), self.loop).result(timeout=30)

    def client(self, key: str = KEY) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.server.url}/v1", api_key=key, max_retries=0)

    def raw(
        self, method: str, path: str, body: bytes | None = None, key: str | None = KEY
    ) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        return resp.status, data

    def wait_until(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + 10
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.01)

    def close(self) -> None:
        self.call(self.server.stop)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    server = Live()
    yield server
    server.close()


@pytest.fixture
def own_live() -> Iterator[Live]:
    """A replica for one test that leaves it unusable (draining), so no other test sees that."""
    server = Live()
    yield server
    server.close()


def test_chat_completion(live: Live) -> None:
    resp = live.client().chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Say something."}],
        max_tokens=12,
        extra_body={"ignore_eos": True},
    )
    choice = resp.choices[0]
    assert choice.finish_reason == "length"
    assert choice.message.role == "assistant"
    assert choice.message.content
    assert resp.usage is not None
    assert resp.usage.completion_tokens == 12
    assert resp.usage.prompt_tokens > 5
    assert resp.model == MODEL


def test_chat_stream_with_usage(live: Live) -> None:
    stream = live.client().chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Stream please."}],
        max_completion_tokens=9,
        stream=True,
        stream_options={"include_usage": True},
        temperature=0.7,
        top_p=0.9,
        frequency_penalty=0.1,
        stop=["\n\n"],
    )
    chunks = list(stream)
    content = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len(content) == 9
    assert finishes[-1] == "length"
    usage = chunks[-1].usage
    assert usage is not None
    assert chunks[-1].choices == []
    assert usage.completion_tokens == 9


def test_chinese_prompt_gets_chinese_filler(live: Live) -> None:
    resp = live.client().chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "请用中文介绍一下你自己。"}],
        max_tokens=20,
    )
    text = resp.choices[0].message.content or ""
    assert sum("\u4e00" <= ch <= "\u9fff" for ch in text) > len(text) / 2


def test_completions_stream_and_not(live: Live) -> None:
    client = live.client()
    whole = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=7)
    assert whole.usage is not None
    assert whole.usage.completion_tokens == 7
    assert whole.choices[0].text
    pieces = [
        c.choices[0].text
        for c in client.completions.create(
            model=MODEL, prompt="Once upon a time", max_tokens=5, stream=True
        )
        if c.choices
    ]
    assert len(pieces) == 5


def test_natural_end_without_ignore_eos(live: Live) -> None:
    resp = live.client().completions.create(model=MODEL, prompt="Go on", max_tokens=1500)
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None
    assert 128 <= resp.usage.completion_tokens < 1024


def test_models_version_health(live: Live) -> None:
    models = live.client().models.list()
    assert [m.id for m in models.data] == [MODEL]
    status, body = live.raw("GET", "/version", key=None)
    assert status == 200
    assert json.loads(body) == {"version": VLLM_VERSION.removeprefix("v")}
    assert live.raw("GET", "/health", key=None)[0] == 200


def test_legacy_generate(live: Live) -> None:
    body = json.dumps({"prompt": "Hello", "max_tokens": 4, "temperature": 0}).encode()
    status, data = live.raw("POST", "/generate", body)
    assert status == 200
    text = json.loads(data)["text"]
    assert len(text) == 1
    assert text[0].startswith("Hello")


def test_metrics_parse_with_vllm_names_and_buckets(live: Live) -> None:
    live.client().completions.create(
        model=MODEL, prompt="count me", max_tokens=3, extra_body={"ignore_eos": True}
    )
    status, body = live.raw("GET", "/metrics", key=None)
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    for name in (
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
    ):
        assert families[name].type == "gauge"
        assert families[name].samples[0].labels == {"model_name": MODEL, "engine": "0"}
    for name in ("vllm:prompt_tokens", "vllm:generation_tokens", "vllm:num_preemptions"):
        assert families[name].type == "counter"
    generated = families["vllm:generation_tokens"].samples[0].value
    assert generated >= 3
    success = {
        s.labels["finished_reason"]: s.value
        for s in families["vllm:request_success"].samples
        if s.name.endswith("_total")
    }
    assert set(success) == {"stop", "length", "abort"}
    assert success["length"] >= 1
    edges = {
        "vllm:time_to_first_token_seconds": TTFT_BUCKETS,
        "vllm:inter_token_latency_seconds": INTER_TOKEN_BUCKETS,
        "vllm:e2e_request_latency_seconds": REQUEST_LATENCY_BUCKETS,
        "vllm:request_queue_time_seconds": REQUEST_LATENCY_BUCKETS,
    }
    for name, buckets in edges.items():
        les = [float(s.labels["le"]) for s in families[name].samples if s.name.endswith("_bucket")]
        assert les == [*buckets, float("inf")], name
    assert TTFT_BUCKETS[:3] == (0.001, 0.005, 0.01)
    assert REQUEST_LATENCY_BUCKETS[-1] == 7680.0


def _chat(**fields: object) -> bytes:
    return json.dumps({"messages": [{"role": "user", "content": "x"}], **fields}).encode()


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (b"{not json", 400, "malformed JSON"),
        (b"[1, 2]", 400, "must be an object"),
        (json.dumps({"messages": "hi"}).encode(), 400, "messages"),
        (_chat(max_tokens="many"), 400, "max_tokens"),
        (_chat(max_tokens=5000), 400, "maximum context length is 2048"),
        (_chat(model="gpt-4"), 404, "The model `gpt-4` does not exist."),
        (_chat(n=2), 400, "n > 1"),
        (_chat(temperature=-1), 400, "temperature"),
        (_chat().replace(b'"x"', b'"\\ud800x"'), 400, "unpaired UTF-16 surrogate"),
        (_chat().replace(b'"x"', b'"\xed\xa0\x80"'), 400, "malformed JSON"),
    ],
)  # fmt: skip
def test_bad_requests_get_openai_error_objects(
    live: Live, body: bytes, status: int, needle: str
) -> None:
    got, data = live.raw("POST", "/v1/chat/completions", body)
    assert got == status
    error = json.loads(data)["error"]
    assert needle in error["message"]
    assert error["code"] == status
    assert error["type"] in {"BadRequestError", "NotFoundError"}


def test_a_lone_surrogate_on_generate_is_refused_and_the_replica_keeps_serving(live: Live) -> None:
    """/generate echoes the prompt: unencodable text once stopped the replica's engine."""
    body = b'{"prompt": "\\ud800 hi", "max_tokens": 4, "stream": true}'
    status, data = live.raw("POST", "/generate", body)
    assert status == 400
    assert "unpaired UTF-16 surrogate" in json.loads(data)["error"]["message"]
    # A surrogate pair (an emoji) is valid text and served as usual.
    pair = b'{"prompt": "\\ud83d\\ude00 hi", "max_tokens": 4}'
    status, data = live.raw("POST", "/generate", pair)
    assert status == 200
    assert json.loads(data)["text"][0].startswith("\U0001f600 hi")


def test_openai_client_raises_typed_errors(live: Live) -> None:
    client = live.client()
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="nope", prompt="x", max_tokens=1)
    with pytest.raises(openai.BadRequestError, match="maximum context length"):
        client.completions.create(model=MODEL, prompt="word " * 3000, max_tokens=10)


def test_api_key_is_required_on_v1(live: Live) -> None:
    with pytest.raises(openai.AuthenticationError):
        live.client(key="wrong").models.list()
    status, data = live.raw("GET", "/v1/models", key=None)
    assert status == 401
    assert json.loads(data)["error"]["code"] == "invalid_api_key"
    body = json.dumps({"prompt": "x"}).encode()
    assert live.raw("POST", "/generate", body, key=None)[0] == 401
    assert live.raw("GET", "/metrics", key=None)[0] == 200


def test_malformed_http_gets_400_and_close(live: Live) -> None:
    with socket.create_connection(("127.0.0.1", live.port), timeout=5) as sock:
        sock.sendall(b"GARBAGE / HTTP/9\r\n\r\n")
        reply = sock.recv(4096)
    assert reply.startswith(b"HTTP/1.1 400")


def test_client_disconnect_aborts_and_frees_kv(live: Live) -> None:
    body = json.dumps(
        {"prompt": "long " * 200, "max_tokens": 1500, "stream": True, "ignore_eos": True}
    ).encode()
    request = (
        b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + KEY.encode()
        + b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
        + body
    )
    sock = socket.create_connection(("127.0.0.1", live.port), timeout=5)
    sock.sendall(request)
    received = b""
    while b"data: " not in received:
        chunk = sock.recv(65536)
        assert chunk, "connection closed before the first token"
        received += chunk
    live.wait_until(lambda: live.server.stats().used_blocks > 0, "KV blocks in use")
    sock.close()
    live.wait_until(lambda: live.server.stats().running == 0, "the sequence to be aborted")
    assert live.server.stats().used_blocks == 0
    _, metrics = live.raw("GET", "/metrics", key=None)
    assert 'vllm:request_success_total{engine="0",finished_reason="abort"' in metrics.decode()


def test_drain_finishes_in_flight_and_refuses_new(own_live: Live) -> None:
    live = own_live
    results: list[int] = []
    live.wait_until(lambda: not live.server.stats().running, "earlier requests to end")

    def long_request() -> None:
        resp = live.client().completions.create(
            model=MODEL, prompt="x", max_tokens=300, extra_body={"ignore_eos": True}
        )
        results.append(resp.usage.completion_tokens if resp.usage else -1)

    worker = threading.Thread(target=long_request)
    worker.start()
    live.wait_until(lambda: live.server.stats().running == 1, "the request to run")
    drained = asyncio.run_coroutine_threadsafe(live.server.drain(30), live.loop)
    live.wait_until(lambda: live.server.draining, "draining")
    assert live.raw("GET", "/health", key=None)[0] == 503
    status, data = live.raw("POST", "/v1/completions", json.dumps({"prompt": "x"}).encode())
    assert status == 503
    assert "draining" in json.loads(data)["error"]["message"]
    assert drained.result(timeout=30) is True
    worker.join(10)
    assert results == [300]


def test_two_replicas_in_one_loop_keep_separate_ports_and_metrics() -> None:
    async def scenario() -> tuple[float, float, int, int]:
        first = ReplicaServer(MODEL, "A10G", max_model_len=2048)
        second = ReplicaServer(MODEL, "L4", max_model_len=2048)
        ports = (await first.start(), await second.start())
        try:
            client = openai.AsyncOpenAI(base_url=f"{first.url}/v1", api_key="none")
            await client.completions.create(
                model=MODEL, prompt="only the first", max_tokens=5, extra_body={"ignore_eos": True}
            )
            await client.close()
            counts = []
            for replica in (first, second):
                families = text_string_to_metric_families(replica.metrics.exposition().decode())
                tokens = {f.name: f for f in families}["vllm:generation_tokens"]
                counts.append(tokens.samples[0].value)
            return counts[0], counts[1], *ports
        finally:
            await first.stop()
            await second.stop()

    # A private loop: asyncio.run would unset the thread's current loop for later tests.
    loop = asyncio.new_event_loop()
    try:
        generated_first, generated_second, port_a, port_b = loop.run_until_complete(scenario())
    finally:
        loop.close()
    assert port_a != port_b
    assert generated_first == 5
    assert generated_second == 0
