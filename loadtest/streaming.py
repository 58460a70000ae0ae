"""Read a streamed completion chunk by chunk, timestamping each content chunk as it arrives.

Locust's ``FastHttpSession.iter_lines`` reads fixed 1024-byte blocks and blocks until a block
is full, so several SSE events are delivered together: TTFT grows by tens of milliseconds and
inter-token gaps collapse to zero. Here every line is taken from the socket as soon as its
newline arrives (geventhttpclient's ``readline`` returns what is buffered, reading more only
when no full line is there), and the clock is read once per content chunk.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any, Protocol

from loadtest.records import REASON_BAD_RESPONSE, REASON_BROKEN_STREAM, REASON_EMPTY_STREAM


class LineSource(Protocol):
    """What the parser needs from a response: geventhttpclient's ``HTTPSocketResponse``."""

    def readline(self, sep: bytes = b"\r\n") -> bytes:
        """The next line including its separator; empty once the body is complete."""
        ...


@dataclass(slots=True)
class StreamOutcome:
    """What a stream delivered, in seconds from the request start (``perf_counter`` based)."""

    first_s: float | None = None
    last_s: float | None = None
    gaps_ms: list[float] = field(default_factory=list)
    chunks: int = 0
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    failure: str | None = None
    detail: str | None = None

    def fail(self, reason: str, detail: str) -> StreamOutcome:
        """Mark the stream failed (the first failure wins) and return it."""
        if self.failure is None:
            self.failure = reason
            self.detail = detail[:300]
        return self


def _content(event: dict[str, Any], chat: bool) -> str | None:
    choices = event.get("choices")
    if not choices:
        return None
    choice = choices[0]
    if chat:
        delta = choice.get("delta")
        if not delta:
            return None
        text: str | None = delta.get("content") or delta.get("reasoning_content")
        return text
    text = choice.get("text")
    return text


def _fast_patterns(chat: bool) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
    key = b'"content":' if chat else b'"text":'
    spaced = key + b" "
    return (key + b'"', spaced + b'"'), (key + b'""', spaced + b'""', b'"usage":{', b'"usage": {')


def read_sse(
    source: LineSource, t0: float, chat: bool, out: StreamOutcome | None = None
) -> StreamOutcome:
    """Consume an OpenAI-style SSE stream (``/v1/chat/completions`` or ``/v1/completions``).

    A content chunk is an event whose first choice carries non-empty text (vLLM's first chat
    event only announces the role and does not count). ``usage`` comes in the last event when
    ``stream_options.include_usage`` is set. A stream that ends without ``[DONE]`` is broken.

    Content events are most of the stream, so they are recognised from their bytes (a
    non-empty ``"content":"`` or ``"text":"`` and no usage) without a JSON parse; every
    other event (role, usage, errors, anything unusual) is parsed in full. ``out`` may be
    passed in so that others can watch the first token arrive while the stream goes on.
    """
    out = out if out is not None else StreamOutcome()
    last = 0.0
    done = False
    readline = source.readline
    loads = json.loads
    gaps = out.gaps_ms
    (has_a, has_b), (empty_a, empty_b, usage_a, usage_b) = _fast_patterns(chat)
    # One call per event: an event ends with a blank line. vLLM ends lines with LF, servers
    # built on sse-starlette with CRLF (both allowed by the SSE spec); waiting for the wrong
    # one would read the whole body as one event. The first line tells which.
    line = readline(b"\n")
    separator = b"\r\n\r\n" if line.endswith(b"\r\n") else b"\n\n"
    while line:
        # The first event's blank line, or a comment or ``event:`` line, may precede the data.
        start = line.find(b"data:")
        if start >= 0:
            now = perf_counter()
            payload = line[start + 5 :].strip()
            if (
                (has_a in payload or has_b in payload)
                and empty_a not in payload
                and empty_b not in payload
                and usage_a not in payload
                and usage_b not in payload
            ):
                content = True
            elif payload == b"[DONE]":
                done, content = True, False
            else:
                try:
                    event = loads(payload.decode())
                except ValueError:
                    return out.fail(REASON_BROKEN_STREAM, f"not JSON: {payload[:120]!r}")
                if not isinstance(event, dict):
                    return out.fail(REASON_BROKEN_STREAM, f"not a JSON object: {payload[:120]!r}")
                if "error" in event:
                    detail = f"error event: {json.dumps(event['error'])}"
                    return out.fail(REASON_BAD_RESPONSE, detail)
                usage = event.get("usage")
                if usage:
                    out.prompt_tokens = usage.get("prompt_tokens")
                    out.output_tokens = usage.get("completion_tokens")
                content = bool(_content(event, chat))
            if content:
                if out.first_s is None:
                    out.first_s = now - t0
                else:
                    gaps.append(round((now - last) * 1000.0, 3))
                last = now
                out.chunks += 1
        line = readline(separator)
    if out.first_s is not None:
        out.last_s = last - t0
    if not done:
        return out.fail(REASON_BROKEN_STREAM, "the stream ended without data: [DONE]")
    if out.chunks == 0:
        return out.fail(REASON_EMPTY_STREAM, "the stream carried no content")
    return out


def read_generate(source: LineSource, t0: float, out: StreamOutcome | None = None) -> StreamOutcome:
    """Consume vLLM's legacy ``/generate`` stream: ``{"text": [prompt + output so far]}`` objects.

    Servers separate them with a newline (vLLM today) or a NUL byte (older vLLM), so the
    reader takes pieces ending in ``}`` and parses once a whole object has arrived (a ``}``
    inside the text just means reading on). That API reports no token counts; each growing
    chunk counts as one token (the server emits one per engine step) and the record says so
    (``usage: false``). A response that is not streamed is one chunk.
    """
    out = out if out is not None else StreamOutcome()
    last = 0.0
    seen = -1
    pending = b""
    while True:
        piece = source.readline(b"}")
        if not piece:
            break
        now = perf_counter()
        pending += piece
        payload = pending.strip(b"\0\r\n\t ")
        try:
            event = json.loads(payload)
        except ValueError:
            continue
        pending = b""
        try:
            text = event["text"][0]
        except (KeyError, IndexError, TypeError):
            return out.fail(REASON_BROKEN_STREAM, f"not a /generate chunk: {payload[:120]!r}")
        if len(text) > seen:
            if out.first_s is None:
                out.first_s = now - t0
            else:
                out.gaps_ms.append(round((now - last) * 1000.0, 3))
            last = now
            out.chunks += 1
            seen = len(text)
    if pending.strip(b"\0\r\n\t "):
        return out.fail(REASON_BROKEN_STREAM, f"the stream ended mid-object: {pending[:120]!r}")
    if out.first_s is not None:
        out.last_s = last - t0
    if out.chunks == 0:
        return out.fail(REASON_EMPTY_STREAM, "the stream carried no generated text")
    return out
