"""Read a streamed completion chunk by chunk, timestamping each content chunk as it arrives.

Locust's ``FastHttpSession.iter_lines`` reads fixed 1024-byte blocks and blocks until a block
is full, so several SSE events are delivered together: TTFT grows by tens of milliseconds and
inter-token gaps collapse to zero. Here every line is taken from the socket as soon as its
newline arrives (geventhttpclient's ``readline`` returns what is buffered, reading more only
when no full line is there), and the clock is read once per content chunk.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any, Protocol

from loadtest.records import (
    REASON_BAD_RESPONSE,
    REASON_BROKEN_STREAM,
    REASON_EMPTY_STREAM,
    REASON_NOT_A_STREAM,
)

SHOWN_BYTES = 1024
"""How much of an unreadable payload a failure's detail quotes (the record keeps less, after
the API key is redacted: cutting here never cuts what the record shows)."""


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
            self.detail = detail
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


_STRING_UNSAFE = re.compile(rb'["\\\x00-\x1f]')
"""Bytes that end, escape or break a JSON string: text without them is a valid string body
(once it is valid UTF-8)."""


def _keys(chat: bool) -> tuple[bytes, bytes]:
    key = b'"content":"' if chat else b'"text":"'
    return key, key.replace(b'":"', b'": "')


def _template(payload: bytes, keys: tuple[bytes, bytes]) -> tuple[bytes, bytes] | None:
    """A parsed content event cut around its text: ``(bytes before it, bytes from its end)``.

    The key can only match outside a JSON string (inside one its quotes would be escaped), so
    the text starts right after it and ends at the next quote, unless the text holds an escape.
    None when the text is empty or escaped: that event cannot serve as a template.
    """
    for key in keys:
        at = payload.find(key)
        if at >= 0:
            start = at + len(key)
            end = payload.find(b'"', start)
            if end <= start or b"\\" in payload[start:end]:
                return None
            return payload[:start], payload[end:]
    return None


def _same_but_text(payload: bytes, head: bytes, tail: bytes) -> bool:
    """``payload`` is the template with another non-empty, valid JSON string as its text."""
    if len(payload) <= len(head) + len(tail):
        return False
    if not (payload.startswith(head) and payload.endswith(tail)):
        return False
    text = payload[len(head) : len(payload) - len(tail)]
    if _STRING_UNSAFE.search(text) is not None:
        return False
    if text.isascii():
        return True
    try:
        text.decode()
    except UnicodeDecodeError:
        return False
    return True


def read_sse(
    source: LineSource, t0: float, chat: bool, out: StreamOutcome | None = None
) -> StreamOutcome:
    """Consume an OpenAI-style SSE stream (``/v1/chat/completions`` or ``/v1/completions``).

    A content chunk is an event whose first choice carries non-empty text (vLLM's first chat
    event only announces the role and does not count). ``usage`` comes in the last event when
    ``stream_options.include_usage`` is set. A stream that ends without ``[DONE]`` is broken;
    a 200 answer without a single ``data:`` line is no stream at all (a proxy's page).

    Content events are most of the stream and differ only in their text (vLLM's id, model,
    creation time and null fields stay the same), so the last content event that was parsed in
    full serves as a template: an event with the same bytes around another text is counted
    without a JSON parse, once that text is a valid JSON string (no quote, backslash or
    control byte; valid UTF-8). Such an event is valid JSON with the template's structure, so
    the fast path accepts nothing a parser would refuse; every other event (role, usage,
    errors, text with escapes, anything unusual) is parsed in full. ``out`` may be passed in so
    that others can watch the first token arrive while the stream goes on.
    """
    out = out if out is not None else StreamOutcome()
    last = 0.0
    done = False
    data_seen = False
    readline = source.readline
    loads = json.loads
    gaps = out.gaps_ms
    keys = _keys(chat)
    head = tail = b""
    templated = False
    # One call per event: an event ends with a blank line. vLLM ends lines with LF, servers
    # built on sse-starlette with CRLF (both allowed by the SSE spec); waiting for the wrong
    # one would read the whole body as one event. The first line tells which.
    line = first = readline(b"\n")
    separator = b"\r\n\r\n" if line.endswith(b"\r\n") else b"\n\n"
    while line:
        # The first event's blank line, or a comment or ``event:`` line, may precede the data.
        start = line.find(b"data:")
        if start >= 0:
            now = perf_counter()
            data_seen = True
            payload = line[start + 5 :].strip()
            if templated and _same_but_text(payload, head, tail):
                content = True
            elif payload == b"[DONE]":
                done, content = True, False
            else:
                try:
                    event = loads(payload.decode())
                except ValueError:
                    shown = payload[:SHOWN_BYTES]
                    return out.fail(REASON_BROKEN_STREAM, f"not JSON: {shown!r}")
                if not isinstance(event, dict):
                    shown = payload[:SHOWN_BYTES]
                    return out.fail(REASON_BROKEN_STREAM, f"not a JSON object: {shown!r}")
                if "error" in event:
                    detail = f"error event: {json.dumps(event['error'])}"
                    return out.fail(REASON_BAD_RESPONSE, detail)
                usage = event.get("usage")
                if usage:
                    out.prompt_tokens = usage.get("prompt_tokens")
                    out.output_tokens = usage.get("completion_tokens")
                content = bool(_content(event, chat))
                if content and not usage:
                    cut = _template(payload, keys)
                    if cut is not None:
                        (head, tail), templated = cut, True
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
    if not data_seen:
        quoted = f": {first[:SHOWN_BYTES]!r}" if first.strip() else ""
        return out.fail(REASON_NOT_A_STREAM, f"HTTP 200 without an event stream{quoted}")
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
    (``usage: false``). A response that is not streamed is one chunk; one that holds no such
    object at all (a proxy's page, another API's answer) is no stream.
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
            reason = REASON_BROKEN_STREAM if out.chunks else REASON_NOT_A_STREAM
            shown = payload[:SHOWN_BYTES]
            return out.fail(reason, f"not a /generate chunk: {shown!r}")
        if len(text) > seen:
            if out.first_s is None:
                out.first_s = now - t0
            else:
                out.gaps_ms.append(round((now - last) * 1000.0, 3))
            last = now
            out.chunks += 1
            seen = len(text)
    if pending.strip(b"\0\r\n\t "):
        reason = REASON_BROKEN_STREAM if out.chunks else REASON_NOT_A_STREAM
        shown = pending[:SHOWN_BYTES]
        return out.fail(reason, f"the stream ended mid-object: {shown!r}")
    if out.first_s is not None:
        out.last_s = last - t0
    if out.chunks == 0:
        return out.fail(REASON_EMPTY_STREAM, "the stream carried no generated text")
    return out
