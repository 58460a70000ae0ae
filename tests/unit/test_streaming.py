"""The stream reader: what counts as a content chunk, how it is timed, how failures are named."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loadtest import streaming
from loadtest.records import (
    REASON_BAD_RESPONSE,
    REASON_BROKEN_STREAM,
    REASON_EMPTY_STREAM,
    REASON_NOT_A_STREAM,
)


class FakeStream:
    """Serves prepared lines; the clock advances 10 ms per line read."""

    def __init__(self, lines: list[bytes], clock: list[float]) -> None:
        self.lines: Iterator[bytes] = iter(lines)
        self.clock = clock

    def readline(self, sep: bytes = b"\r\n") -> bytes:
        self.clock[0] += 0.010
        return next(self.lines, b"")


def sse(*events: Any, done: bool = True, compact: bool = True) -> list[bytes]:
    seps = (",", ":") if compact else (", ", ": ")
    lines = [b"data: " + json.dumps(e, separators=seps).encode() + b"\n\n" for e in events]
    return [*lines, b"data: [DONE]\n\n"] if done else lines


def chunk(text: str | None, chat: bool = True) -> dict[str, Any]:
    choice = {"index": 0, "delta": {"content": text}} if chat else {"index": 0, "text": text}
    return {"id": "x", "choices": [choice]}


USAGE = {"id": "x", "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3}}
ROLE = {"id": "x", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [100.0]
    monkeypatch.setattr(streaming, "perf_counter", lambda: now[0])
    return now


def read(lines: list[bytes], clock: list[float], chat: bool = True) -> streaming.StreamOutcome:
    return streaming.read_sse(FakeStream(lines, clock), 100.0, chat=chat)


@pytest.mark.parametrize("compact", [True, False])
def test_chat_stream_timed_per_content_chunk(clock: list[float], compact: bool) -> None:
    lines = sse(ROLE, chunk("a"), chunk("b"), chunk("c"), USAGE, compact=compact)
    out = read(lines, clock)
    assert out.failure is None
    # the role chunk is read at 10 ms but is not content; "a" arrives at 20 ms
    assert out.first_s == pytest.approx(0.020)
    assert out.gaps_ms == pytest.approx([10.0, 10.0])
    assert out.last_s == pytest.approx(0.040)
    assert (out.chunks, out.prompt_tokens, out.output_tokens) == (3, 7, 3)


def test_completions_use_text(clock: list[float]) -> None:
    out = read(sse(chunk("a", chat=False), chunk("b", chat=False), USAGE), clock, chat=False)
    assert out.chunks == 2
    assert out.failure is None


def test_empty_and_null_content_do_not_count(clock: list[float]) -> None:
    out = read(sse(chunk(""), chunk(None), chunk("x"), USAGE), clock)
    assert out.chunks == 1
    assert out.first_s == pytest.approx(0.030)


def test_usage_in_a_content_chunk_is_read(clock: list[float]) -> None:
    both = {**chunk("x"), "usage": {"prompt_tokens": 5, "completion_tokens": 1}}
    out = read(sse(both), clock)
    assert (out.chunks, out.output_tokens) == (1, 1)


def test_missing_done_is_a_broken_stream(clock: list[float]) -> None:
    out = read(sse(chunk("a"), done=False), clock)
    assert out.failure == REASON_BROKEN_STREAM


def test_error_event(clock: list[float]) -> None:
    out = read(sse(chunk("a"), {"error": {"message": "boom", "code": 500}}), clock)
    assert out.failure == REASON_BAD_RESPONSE
    assert out.detail is not None and "boom" in out.detail


def test_no_content_is_an_empty_stream(clock: list[float]) -> None:
    out = read(sse(ROLE, USAGE), clock)
    assert out.failure == REASON_EMPTY_STREAM


def test_garbage_is_a_broken_stream(clock: list[float]) -> None:
    out = read([b"data: {not json\n\n"], clock)
    assert out.failure == REASON_BROKEN_STREAM


class PieceStream(FakeStream):
    """Serves a byte stream in pieces up to each separator, as geventhttpclient's readline."""

    def __init__(self, data: bytes, clock: list[float]) -> None:
        self.data = data
        self.clock = clock

    def readline(self, sep: bytes = b"\r\n") -> bytes:
        self.clock[0] += 0.010
        end = self.data.find(sep)
        end = len(self.data) if end < 0 else end + len(sep)
        piece, self.data = self.data[:end], self.data[end:]
        return piece


@pytest.mark.parametrize("sep", [b"\n", b"\0"])
def test_legacy_generate_counts_growing_chunks(clock: list[float], sep: bytes) -> None:
    texts = ("P a", "P a {b}", "P a {b}", "P a {b} c")
    data = b"".join(json.dumps({"text": [t]}).encode() + sep for t in texts)
    out = streaming.read_generate(PieceStream(data, clock), 100.0)
    assert out.failure is None
    assert out.chunks == 3
    assert out.first_s == pytest.approx(0.010)
    # a text holding "}" arrives in two pieces: objects complete at 10, 30, 50 and 70 ms
    assert out.gaps_ms == pytest.approx([20.0, 40.0])
    assert out.output_tokens is None


def test_legacy_generate_cut_mid_object(clock: list[float]) -> None:
    out = streaming.read_generate(PieceStream(b'{"text": ["P a"]}\n{"text": ["P a', clock), 100.0)
    assert out.failure == REASON_BROKEN_STREAM


@pytest.mark.parametrize("eol", [b"\n", b"\r\n"])
def test_sse_framed_with_lf_or_crlf(clock: list[float], eol: bytes) -> None:
    # vLLM ends lines with LF; sse-starlette (behind many OpenAI-compatible servers) with CRLF
    # and sends keep-alive comments. Read up to the wrong blank line, the body is one event.
    events = [ROLE, chunk("a"), chunk("b"), USAGE]
    body = [b": ping - 2025-01-01 00:00:00" + eol + eol]
    body += [b"data: " + json.dumps(e).encode() + eol + eol for e in events]
    data = b"".join([*body, b"data: [DONE]" + eol + eol])
    out = streaming.read_sse(PieceStream(data, clock), 100.0, chat=True)
    assert out.failure is None
    # reads: the comment's line (10 ms), its blank line with the role event (20 ms), "a" at
    # 30 ms, "b" at 40 ms
    assert out.first_s == pytest.approx(0.030)
    assert out.gaps_ms == pytest.approx([10.0])
    assert (out.chunks, out.prompt_tokens, out.output_tokens) == (2, 7, 3)


CUT = b'data: {"choices":[{"delta":{"content":"a"'
"""A content event cut mid-JSON: what the issue's probe sent, followed by a whole event."""


@pytest.mark.parametrize("after_a_whole_one", [False, True])
def test_an_event_cut_mid_json_is_a_broken_stream(
    clock: list[float], after_a_whole_one: bool
) -> None:
    whole = b'{"choices":[{"delta":{"content":"b"}}]}'
    lines = [b"data: " + whole + b"\n\n"] if after_a_whole_one else []
    lines += [CUT + b"data: " + whole + b"\n\n", b"data: [DONE]\n\n"]
    out = read(lines, clock)
    assert out.failure == REASON_BROKEN_STREAM
    assert out.detail is not None and out.detail.startswith("not JSON")


SLOT_PIECES = [
    b"a", b" ", b'"', b"\\", b"\\n", b'\\"', b"\\u00e9", b"\\u12", b"\xc3\xa9", b"\xe9",
    b"\x01", b"}", b'"}}]}', b'"}}]}data: {"choices":[{"delta":{"content":"', b"data:",
]  # fmt: skip
"""What may sit where a content event's text goes: plain text, escapes (whole or cut), UTF-8
(valid or not), control bytes, and the bytes that end the text or the event early."""


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(SLOT_PIECES), max_size=5).map(b"".join) | st.binary(max_size=8))
def test_the_fast_path_accepts_nothing_a_json_parser_refuses(text: bytes) -> None:
    # The first event is parsed and becomes the template; the second has the same bytes
    # around another text, which is all the fast path looks at.
    head, tail = b'{"id":"x","choices":[{"index":0,"delta":{"content":"', b'"}}]}'
    payload = head + text + tail
    lines = [b"data: " + head + b"a" + tail + b"\n\n", b"data: " + payload + b"\n\n"]
    out = streaming.read_sse(FakeStream([*lines, b"data: [DONE]\n\n"], [0.0]), 0.0, chat=True)
    try:
        event = json.loads(payload)
    except ValueError:
        assert out.failure == REASON_BROKEN_STREAM
        return
    assert out.failure is None
    assert out.chunks == 1 + bool(event["choices"][0]["delta"]["content"])


def test_content_events_are_counted_without_a_parse_each(
    clock: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed: list[str] = []
    loads = json.loads

    def counting(text: str) -> Any:
        parsed.append(text)
        return loads(text)

    monkeypatch.setattr(json, "loads", counting)  # the module the reader binds at each call
    words = ["a", "b c", "你好", "d"] * 5
    # as vLLM writes them: compact, UTF-8 rather than \u escapes
    events = [ROLE, *(chunk(w) for w in words), USAGE]
    lines = [
        b"data: " + json.dumps(e, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"
        for e in events
    ]
    out = read([*lines, b"data: [DONE]\n\n"], clock)
    assert out.failure is None and out.chunks == len(words)
    # the role event, the first content event (the template) and the usage event
    assert len(parsed) == 3


def test_a_200_answer_without_events_is_no_stream(clock: list[float]) -> None:
    out = read([b'{"choices": [{"message": {"content": "hi"}}]}\n'], clock)
    assert out.failure == REASON_NOT_A_STREAM
    assert out.detail is not None and "message" in out.detail
    assert read([], clock).failure == REASON_NOT_A_STREAM


@pytest.mark.parametrize(
    "body", [b"<html><body>Sign in to the proxy</body></html>", b'{"error": {"message": "no"}}']
)
def test_a_generate_answer_without_text_objects_is_no_stream(
    clock: list[float], body: bytes
) -> None:
    out = streaming.read_generate(PieceStream(body, clock), 100.0)
    assert out.failure == REASON_NOT_A_STREAM
