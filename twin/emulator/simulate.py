"""Closed-loop load on an engine in virtual time: how the calibration replays a benchmark.

A benchmark client with ``concurrency`` workers sends ``requests`` requests; each worker sends its
next request the moment its previous one finishes, all workers starting together. That is what
the published measurements did (a thread pool, ``vllm bench serve --max-concurrency``, or one
burst of requests), so replaying it on the engine gives numbers comparable with theirs. A request
reaches the engine ``request_overhead_s`` after it was sent (the API server's share of TTFT), and
joins the first step that starts after that, as vLLM's engine core picks new requests up between
steps.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Sequence as Seq
from dataclasses import dataclass

from twin.emulator.engine import Engine, Sequence


@dataclass(frozen=True)
class Workload:
    """What the benchmark client sent."""

    concurrency: int
    requests: int
    prompt_tokens: int
    output_tokens: Seq[int]
    """Output length of request i is ``output_tokens[i % len(output_tokens)]``."""
    shared_prompt: bool = False
    """Every request sends the same prompt (prefix-cache hits after the first)."""


@dataclass(frozen=True)
class WorkloadResult:
    """What the client measured, with vLLM's benchmark definitions."""

    output_tokens_per_s: float
    ttft_s: list[float]
    tpot_s: list[float]
    """Per request: (E2E - TTFT) / (output tokens - 1), for requests with two or more tokens."""
    itl_s: list[float]
    """Every gap between consecutive tokens of a request, pooled over requests."""

    def ttft_percentile(self, p: float) -> float:
        """Percentile ``p`` (0..100) of TTFT, interpolated as ``statistics.quantiles`` does."""
        return _percentile(self.ttft_s, p)

    def tpot_median(self) -> float:
        """Median TPOT."""
        return statistics.median(self.tpot_s)

    def itl_median(self) -> float:
        """Median of the pooled inter-token latencies."""
        return statistics.median(self.itl_s)


def _percentile(values: list[float], p: float) -> float:
    if len(values) == 1:
        return values[0]
    if p == 50:
        return statistics.median(values)
    return statistics.quantiles(values, n=100, method="inclusive")[round(p) - 1]


def run_closed_loop(engine: Engine, workload: Workload) -> WorkloadResult:
    """Replay ``workload`` on ``engine`` in virtual time, starting at t = 0."""
    now = 0.0
    sent = 0
    delay = engine.cost.request_overhead_s
    in_front_end: deque[tuple[float, Sequence]] = deque()  # (reaches the engine, sequence)
    done: list[Sequence] = []
    itls: list[float] = []

    def send() -> None:
        nonlocal sent
        out = workload.output_tokens[sent % len(workload.output_tokens)]
        key = 0 if workload.shared_prompt else None
        seq = Sequence(
            prompt_tokens=workload.prompt_tokens,
            max_output_tokens=out,
            arrival=now,
            prefix_key=key,
        )
        in_front_end.append((now + delay, seq))
        sent += 1

    for _ in range(min(workload.concurrency, workload.requests)):
        send()
    while engine.has_work or in_front_end:
        while in_front_end and in_front_end[0][0] <= now:
            ready, seq = in_front_end.popleft()
            engine.add(seq, ready)
        if not engine.has_work:
            now = in_front_end[0][0]
            continue
        plan = engine.schedule(now)
        if plan is None:
            raise RuntimeError("engine has work but scheduled nothing: a request cannot fit")
        now = plan.ends
        result = engine.complete(plan, now)
        itls.extend(result.inter_token_latencies)
        for seq in result.finished:
            done.append(seq)
            if sent < workload.requests:
                send()
    ttfts = [s.first_token_at - s.arrival for s in done if s.first_token_at is not None]
    tpots = [
        (s.finished_at - s.first_token_at) / (s.output_tokens - 1)
        for s in done
        if s.output_tokens > 1 and s.first_token_at is not None and s.finished_at is not None
    ]
    generated = sum(s.output_tokens for s in done)
    return WorkloadResult(
        output_tokens_per_s=generated / now, ttft_s=ttfts, tpot_s=tpots, itl_s=itls
    )
