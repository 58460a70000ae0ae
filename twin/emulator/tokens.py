"""Prompt token counts: Qwen2.5's tokenizer file when this machine has one, else a heuristic.

Usage counts must be exact for generated text (the emulator emits one token per filler piece),
but prompts are whatever the client sends. With the ``tokenizers`` package and a
``tokenizer.json`` (``--tokenizer PATH``, ``QWEN_STRESS_TOKENIZER``, or the Hugging Face cache of
the served model) prompts are counted exactly as vLLM would. Otherwise a heuristic shaped on how
Qwen2.5's byte-level BPE splits text:

- each digit is one token (Qwen2's pre-tokenizer splits numbers into digits);
- a run of Latin letters is one token per 7 letters, rounded up (common English words are single
  tokens, long words two or three);
- a run of CJK ideographs is one token per 1.4 characters (frequent two-character words are single
  tokens in Qwen's vocabulary, rarer characters one each);
- chat-template markers (``<|im_start|>``, ``<|im_end|>``) and each punctuation or symbol are one
  token; a space before a word belongs to the word; a run of newlines is one token.

The heuristic is an approximation, not checked against the tokenizer here: prompt counts (and so
``usage.prompt_tokens``, admission against ``max_model_len`` and prefill cost) may be off by some
percent on unusual text.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from domain.catalog import AWQ_SUFFIX

TOKENIZER_ENV = "QWEN_STRESS_TOKENIZER"
QWEN_DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
"""What Qwen2.5's chat template inserts when the conversation has no system message."""

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_PIECES = re.compile(
    rf"<\|[a-z_]+\|>|[{_CJK}]+|\d|[A-Za-z]+|\n+| {{2,}}| |[^\S\n]|[^\s{_CJK}A-Za-z\d]",
)
_CJK_CHAR = re.compile(f"[{_CJK}]")


class TokenCounter(Protocol):
    """Counts the tokens of a text as the served model's tokenizer would."""

    name: str

    def count(self, text: str) -> int:
        """Tokens in ``text``, chat-template markers included."""
        ...


class HeuristicCounter:
    """The documented approximation above."""

    name = "heuristic"

    def count(self, text: str) -> int:
        """Approximate Qwen2.5 token count of ``text``."""
        total = 0
        for piece in _PIECES.findall(text):
            first = piece[0]
            if first in " \t":
                total += len(piece) > 1
            elif first.isascii() and first.isalpha():
                total += math.ceil(len(piece) / 7)
            elif _CJK_CHAR.match(first):
                total += max(1, round(len(piece) / 1.4))
            else:
                total += 1
        return total


class TokenizerError(ValueError):
    """A tokenizer file that was asked for cannot be used; the message says which and why."""


class TokenizerFileCounter:
    """Exact counts from a Hugging Face ``tokenizer.json`` (needs the ``tokenizers`` package)."""

    def __init__(self, path: Path) -> None:
        from tokenizers import Tokenizer  # noqa: PLC0415 - optional dependency

        try:
            self._tokenizer = Tokenizer.from_file(str(path))
        except Exception as err:  # the tokenizers package raises a bare Exception on bad files
            raise TokenizerError(f"{path} is not a tokenizer.json ({err})") from None
        self.name = f"tokenizer file {path}"

    def count(self, text: str) -> int:
        """Exact token count of ``text``; special tokens in it count as one each."""
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)


def _cached_tokenizer_files(model: str) -> Iterable[Path]:
    hub = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub"
    for name in (model, model.removesuffix(AWQ_SUFFIX)):
        yield from sorted(hub.glob(f"models--{name.replace('/', '--')}/snapshots/*/tokenizer.json"))


def _asked_for(path: Path, source: str) -> TokenCounter:
    """The counter of a file the user named: it must be usable, or the user is told why."""
    if not path.is_file():
        why = "no such file" if not path.exists() else "not a regular file"
        raise TokenizerError(f"{source} {path}: {why}; name a tokenizer.json or leave it unset")
    try:
        return TokenizerFileCounter(path)
    except ImportError:
        raise TokenizerError(
            f"{source} {path}: counting with a tokenizer file needs the tokenizers package "
            "(pip install '.[tokenizer]')"
        ) from None
    except TokenizerError as err:
        raise TokenizerError(f"{source} {err}") from None


def token_counter(model: str, tokenizer_file: Path | None = None) -> TokenCounter:
    """The best counter available here for ``model``: a tokenizer file, else the heuristic.

    A file named by ``tokenizer_file`` (``--tokenizer``) or ``QWEN_STRESS_TOKENIZER`` must work:
    serving with the heuristic instead of what was asked would skew every prompt count without
    a word, so ``TokenizerError`` says what is wrong. The Hugging Face cache is only looked in.
    """
    if tokenizer_file is not None:
        return _asked_for(tokenizer_file, "--tokenizer")
    env = os.environ.get(TOKENIZER_ENV)
    if env:
        return _asked_for(Path(env), TOKENIZER_ENV)
    for path in _cached_tokenizer_files(model):
        try:
            return TokenizerFileCounter(path)
        except ImportError:
            break
        except TokenizerError:
            continue
    return HeuristicCounter()


def render_chat(messages: list[tuple[str, str]]) -> str:
    """Qwen2.5's chat template (ChatML) with the generation prompt, as vLLM renders it."""
    parts: list[str] = []
    if not messages or messages[0][0] != "system":
        parts.append(f"<|im_start|>system\n{QWEN_DEFAULT_SYSTEM}<|im_end|>\n")
    parts.extend(f"<|im_start|>{role}\n{content}<|im_end|>\n" for role, content in messages)
    parts.append("<|im_start|>assistant\n")
    return "".join(parts)


def cjk_share(text: str) -> float:
    """Share of CJK ideographs among the non-space characters of ``text``."""
    visible = sum(1 for c in text if not c.isspace())
    return len(_CJK_CHAR.findall(text)) / visible if visible else 0.0
