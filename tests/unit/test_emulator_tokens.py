"""Prompt token counting and the filler text."""

from __future__ import annotations

from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

from twin.emulator.filler import filler
from twin.emulator.tokens import (
    HeuristicCounter,
    TokenizerFileCounter,
    cjk_share,
    render_chat,
    token_counter,
)

COUNT = HeuristicCounter().count


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("hello world", 2),
        ("internationalization", 3),  # 20 letters: one token per 7, rounded up
        ("2025", 4),  # Qwen splits numbers into digits
        ("a, b.", 4),
        ("<|im_start|>user\nhi<|im_end|>\n", 6),
        ("你好世界", 3),  # 4 ideographs / 1.4
        ("line\n\n\nnext", 3),
        ("", 0),
    ],
)
def test_heuristic_counts(text: str, tokens: int) -> None:
    assert COUNT(text) == tokens


def test_chat_template_adds_the_default_system_prompt_only_when_missing() -> None:
    bare = render_chat([("user", "hi")])
    assert bare.startswith("<|im_start|>system\nYou are Qwen")
    assert bare.endswith("<|im_start|>assistant\n")
    with_system = render_chat([("system", "Be brief."), ("user", "hi")])
    assert with_system.count("<|im_start|>system") == 1
    assert "You are Qwen" not in with_system


def test_tokenizer_file_is_used_when_present(tmp_path: Path) -> None:
    vocab = {"[UNK]": 0, "hello": 1, "world": 2}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    counter = token_counter("Qwen/Qwen2.5-7B-Instruct", path)
    assert isinstance(counter, TokenizerFileCounter)
    assert counter.count("hello world hello") == 3


def test_heuristic_when_no_tokenizer_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.delenv("QWEN_STRESS_TOKENIZER", raising=False)
    assert token_counter("Qwen/Qwen2.5-7B-Instruct").name == "heuristic"


def test_hugging_face_cache_is_searched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    snapshot = tmp_path / "hub" / "models--Qwen--Qwen2.5-7B-Instruct" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    Tokenizer(models.WordLevel(vocab={"[UNK]": 0}, unk_token="[UNK]")).save(
        str(snapshot / "tokenizer.json")
    )
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    counter = token_counter("Qwen/Qwen2.5-7B-Instruct-AWQ")  # AWQ shares the family's tokenizer
    assert str(snapshot) in counter.name


def test_filler_is_chinese_or_english_and_wraps() -> None:
    english, chinese = filler(False), filler(True)
    assert cjk_share(chinese.text(0, 200)) > 0.8
    assert cjk_share(english.text(0, 200)) == 0
    n = len(english.pieces)
    assert english.text(n - 1, 2) == english.pieces[-1] + english.pieces[0]
    assert all(b'"' not in e and b"\\" not in e for e in english.escaped)
