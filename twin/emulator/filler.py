"""Readable filler text, one token per piece, English or Chinese.

The emulator cannot generate meaning, but a load test's report shows responses, and a stream of
real words (with sentence breaks) looks like a model's output and exercises clients' UTF-8 and
JSON handling like one. Each piece is a word that Qwen2.5's vocabulary holds as a single token
(a leading space plus a common English word, or a common Chinese character or word), so the
completion token count is simply the number of pieces emitted.

Pieces come from a fixed, seeded stream built once; a response reads it from an offset, so
responses differ and producing a token costs an index, not a random draw. Each piece's JSON-escaped
UTF-8 bytes are precomputed for the streaming path.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from functools import cache

_ENGLISH = (  # noqa: SIM905 - a paragraph of words reads better than a list literal
    "the system of a model that can serve many users at once while the queue grows and the "
    "cache fills with tokens from each request we measure how long it takes before the first "
    "word arrives and how steady the stream stays under load this answer is only filler text "
    "written by an emulator so it has no meaning but it reads like plain prose with short and "
    "long sentences about time cost speed memory data work team plan test result number value "
    "point step level peak rate limit scale node pod service client server batch prompt reply "
    "simple clear good new next last first small large fast slow high low more less each every "
    "other same different useful important possible likely often also then still just only very"
).split()
_CHINESE = (  # noqa: SIM905
    "我们 系统 模型 服务 用户 请求 时间 数据 测试 结果 性能 能够 可以 需要 已经 正在 进行 "
    "处理 生成 文本 内容 问题 方法 方面 情况 过程 工作 团队 计划 目标 速度 成本 内存 队列 "
    "缓存 吞吐 延迟 稳定 简单 清楚 重要 不同 相同 每个 一些 这个 那个 因为 所以 但是 如果 "
    "并且 而且 然后 同时 之后 之前 其中 以及 通过 对于 关于 根据 作为 主要 一般 非常 比较 "
    "更加 的 了 在 是 和 有 也 就 都 而 及 与 或 会 能 要 把 被 让 给 从 到"
).split()


@dataclass(frozen=True)
class Filler:
    """A cyclic stream of text pieces and their JSON-escaped bytes."""

    pieces: tuple[str, ...]
    escaped: tuple[bytes, ...]

    def text(self, start: int, count: int) -> str:
        """``count`` pieces from offset ``start``, wrapping around."""
        n = len(self.pieces)
        return "".join(self.pieces[(start + i) % n] for i in range(count))


def _english(rng: random.Random, size: int) -> list[str]:
    out: list[str] = []
    while len(out) < size:
        words = rng.choices(_ENGLISH, k=rng.randint(6, 16))
        out.append(words[0].capitalize() if not out else " " + words[0].capitalize())
        out.extend(" " + w for w in words[1:])
        out.append(rng.choice(".........,;"))
    return out[:size]


def _chinese(rng: random.Random, size: int) -> list[str]:
    out: list[str] = []
    while len(out) < size:
        out.extend(rng.choices(_CHINESE, k=rng.randint(6, 16)))
        out.append(rng.choice("。。。，，；"))  # noqa: RUF001 - Chinese punctuation on purpose
    return out[:size]


@cache
def filler(chinese: bool) -> Filler:
    """The English or the Chinese filler stream (8192 pieces, fixed seed)."""
    rng = random.Random(20250101)
    pieces = (_chinese if chinese else _english)(rng, 8192)
    escaped = tuple(json.dumps(p, ensure_ascii=False)[1:-1].encode() for p in pieces)
    return Filler(tuple(pieces), escaped)
