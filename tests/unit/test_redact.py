"""The API key never survives into text the tool keeps: whole, re-encoded, split or cut."""

from __future__ import annotations

import io
import json
import urllib.parse

import pytest

from domain.vllm_args import api_key_problem
from loadtest.redact import MASK, RedactingWriter, Redactor

KEY = "qsk-7Hq2/vX9mLp4Rt8Wz"


@pytest.mark.parametrize(
    "echoed",
    [
        f"Authorization: Bearer {KEY}",
        json.dumps({"headers": {"authorization": f"Bearer {KEY}"}}),
        json.dumps({"k": KEY}).replace("/", "\\/"),
        f"GET /?key={urllib.parse.quote(KEY)}",
        f"ValueError: invalid header value {(KEY + chr(10))!r}",
    ],
    ids=["raw", "json", "json-escaped-slash", "percent-encoded", "repr-with-newline"],
)
def test_the_key_is_masked_as_servers_send_it_back(echoed: str) -> None:
    redact = Redactor([KEY + "\n"])
    out = redact(echoed)
    assert MASK in out
    assert KEY not in out and "qsk-7Hq2" not in out


def test_a_cut_never_keeps_the_start_of_the_key() -> None:
    redact = Redactor([KEY])
    for at in range(len(KEY) + 2):
        text = "x" * (300 - at) + KEY + " tail"
        clipped = redact.clip(text, 300)
        assert len(clipped) <= 300
        assert "qsk" not in clipped, at


def test_text_without_the_key_is_cut_as_it_is() -> None:
    assert Redactor([KEY]).clip("y" * 400, 300) == "y" * 300
    assert Redactor([]).clip("q" * 10, 5) == "qqqqq"
    assert not Redactor([""])


def test_a_log_line_written_in_pieces_is_redacted_whole() -> None:
    sink = io.StringIO()
    writer = RedactingWriter(sink, Redactor([KEY]))
    for piece in ("Bearer ", KEY[:6], KEY[6:], "\nnext line ", KEY[:3]):
        writer.write(piece)
    assert sink.getvalue() == f"Bearer {MASK}\n"
    writer.write(KEY[3:])
    writer.flush()
    assert KEY not in sink.getvalue() and sink.getvalue().endswith(f"next line {MASK}")


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("sk-abc\n", "starts or ends with a space or a line break"),
        ("sk-abc\r", "starts or ends with a space or a line break"),
        (" sk-abc", "starts or ends with a space or a line break"),
        ("sk ab", "holds a space, a control character or a non-ASCII character"),
        ("sk-é", "holds a space, a control character or a non-ASCII character"),
        ("sk-\x00", "holds a space, a control character or a non-ASCII character"),
        ("sk-abc_~+/=.", None),
    ],
)
def test_keys_a_header_cannot_carry_are_named_never_quoted(key: str, problem: str | None) -> None:
    said = api_key_problem(key)
    if problem is None:
        assert said is None
    else:
        assert said is not None and problem in said and key.strip() not in said
