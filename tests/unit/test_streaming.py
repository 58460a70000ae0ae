"""The stream reader: what counts as a content chunk, how it is timed, how failures are named."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from loadtest import streaming
from loadtest.records import REASON_BAD_RESPONSE, REASON_BROKEN_STREAM, REASON_EMPTY_STREAM


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
