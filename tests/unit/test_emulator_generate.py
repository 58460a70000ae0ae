"""The legacy ``/generate`` sink writes exactly ``json.dumps({"text": [prompt + output]})``."""

from __future__ import annotations

import json

import pytest

from twin.emulator.api import _LegacySink
from twin.emulator.engine import Sequence
from twin.emulator.filler import Filler, filler

PROMPTS = (
    "Tell me about autoscaling, please.",
    'He said "你好，世界" \\ C:\\path\\to\\file\n第二行\r\n\ttab \x01 \u2028 é 😀 end\\',  # noqa: RUF001 - Chinese punctuation on purpose
)


class _Conn:
    """Records what the sink writes (HttpConnection's methods the sink calls)."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.ended: bytes | None = None
        self.response: tuple[int, bytes] | None = None

    def start_stream(self, status: int = 200, content_type: str = "") -> None:
        pass

    def write_chunk(self, data: bytes) -> None:
        self.chunks.append(data)

    def end_stream(self, data: bytes = b"") -> None:
        self.ended = data

    def respond(self, status: int, body: bytes) -> None:
        self.response = (status, body)


def _previous(prompt: str, fill: Filler, offset: int, tokens: int) -> bytes:
    """How each line was built before: the whole text, dumped again for every token."""
    text = prompt + fill.text(offset, tokens)
    return json.dumps({"text": [text]}, ensure_ascii=False).encode()


def _run(prompt: str, fill: Filler, offset: int, stream: bool, steps: list[int]) -> _Conn:
    conn = _Conn()
    sink = _LegacySink(conn, fill, offset, prompt, stream)  # type: ignore[arg-type]
    seq = Sequence(prompt_tokens=5, max_output_tokens=steps[-1], arrival=0.0, status="running")
    for n in steps:
        seq.output_tokens = n
        if n == steps[-1]:
            seq.status, seq.finish_reason = "finished", "length"
        sink.on_token(seq, 0.0)
    return conn


@pytest.mark.parametrize("prompt", PROMPTS)
@pytest.mark.parametrize("chinese", [False, True])
@pytest.mark.parametrize("offset", [0, 8192 * 7919 - 3])  # the second wraps round the stream
def test_streamed_lines_are_the_whole_text_dumped_each_time(
    prompt: str, chinese: bool, offset: int
) -> None:
    fill = filler(chinese)
    steps = list(range(1, 13))
    conn = _run(prompt, fill, offset, True, steps)
    expected = [_previous(prompt, fill, offset, n) + b"\n" for n in steps]
    assert [*conn.chunks, conn.ended] == expected
    assert conn.response is None
    assert json.loads(expected[-1]) == {"text": [prompt + fill.text(offset, steps[-1])]}


@pytest.mark.parametrize("prompt", PROMPTS)
@pytest.mark.parametrize("chinese", [False, True])
def test_the_whole_answer_and_uneven_deliveries_match_too(prompt: str, chinese: bool) -> None:
    fill = filler(chinese)
    whole = _run(prompt, fill, 8190, False, [1, 2, 3, 9])
    assert whole.response == (200, _previous(prompt, fill, 8190, 9))
    assert whole.chunks == [] and whole.ended is None
    uneven = _run(prompt, fill, 41, True, [1, 4, 5, 11])
    lines = [_previous(prompt, fill, 41, n) + b"\n" for n in (1, 4, 5, 11)]
    assert [*uneven.chunks, uneven.ended] == lines
