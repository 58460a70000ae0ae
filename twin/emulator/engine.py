"""One replica's continuous-batching scheduler, stepped by a clock it does not own.

It follows vLLM V1's scheduler with its default FCFS policy:

- running sequences go first, each asking for its remaining prefill or one decode token, within
  the per-step token budget (``max_num_batched_tokens``): chunked prefill;
- when a running sequence needs a KV block and none is free, the most recently admitted running
  sequence is preempted (its blocks freed, its tokens to be recomputed), and it goes back to the
  front of the waiting queue;
- waiting sequences are admitted in arrival order while the budget, ``max_num_seqs`` and free KV
  blocks allow, and not in a step that preempted; the head of the queue blocks the rest;
- async scheduling (vLLM's default since late 2025, PR #27614): while a step runs, the next one
  is already planned, so a request that reaches a busy engine joins the step after next;
- a sequence whose known tokens are all computed at the end of a step samples one new token;
- prefix caching (on by default in V1): a sequence whose prompt equals one already computed skips
  the prompt's full blocks, recomputing at least its last token. Cached prompts are forgotten,
  oldest first, when they would not fit in the free KV blocks. Simplification: a hit still
  allocates its own blocks, so KV usage is not lowered by sharing (conservative).

The engine never reads a clock: ``schedule(now)`` plans a step and says how long it takes,
``complete(plan, now)`` applies it. The asyncio driver calls them in real time; the calibration
and the tests call them in virtual time, so timing logic is tested without wall-clock waits.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Literal, Protocol

from domain.fit import KV_BLOCK_TOKENS, FitResult
from twin.emulator.perf_model import StepCostModel

FinishReason = Literal["stop", "length", "abort"]
Status = Literal["waiting", "running", "finished"]


class SequenceSink(Protocol):
    """Receives a sequence's output as the engine produces it (the HTTP layer, in practice)."""

    def on_token(self, seq: Sequence, now: float) -> None:
        """``seq`` gained one output token at modelled time ``now``.

        If it was the last one, ``seq.status`` is already ``finished`` and ``seq.finish_reason``
        says why.
        """


@dataclass(eq=False, slots=True)
class Sequence:
    """One request inside the engine."""

    prompt_tokens: int
    max_output_tokens: int
    arrival: float
    natural_finish: FinishReason = "length"
    """Reason reported when ``max_output_tokens`` is reached: ``stop`` when the emulated model
    emits EOS there, ``length`` when the request's token limit cut it."""
    sink: SequenceSink | None = None
    prefix_key: int | None = None
    """Equal keys mean equal prompts (a hash of the rendered prompt); None opts out of caching."""
    queued_at: float | None = None
    """When the engine got it: ``arrival`` plus the front end's request overhead."""
    computed_tokens: int = 0
    output_tokens: int = 0
    blocks: int = 0
    status: Status = "waiting"
    first_scheduled: float | None = None
    first_token_at: float | None = None
    last_token_at: float | None = None
    finished_at: float | None = None
    finish_reason: FinishReason | None = None
    preemptions: int = 0

    @property
    def total_tokens(self) -> int:
        """Prompt plus output so far: what the KV cache must hold before the next token."""
        return self.prompt_tokens + self.output_tokens


@dataclass(frozen=True)
class EngineLimits:
    """What bounds the scheduler: KV blocks and vLLM's scheduler defaults."""

    kv_blocks: int
    max_num_seqs: int
    max_num_batched_tokens: int
    max_model_len: int
    block_tokens: int = KV_BLOCK_TOKENS
    async_scheduling: bool = True
    """Plan each step while the previous one runs (vLLM V1's default); False for V0."""

    @classmethod
    def from_fit(cls, fit: FitResult) -> EngineLimits:
        """The limits vLLM would start with, from the same fit check the config uses."""
        return cls(
            kv_blocks=fit.kv_blocks,
            max_num_seqs=fit.max_num_seqs,
            max_num_batched_tokens=fit.max_num_batched_tokens,
            max_model_len=fit.max_model_len,
        )


@dataclass(slots=True)
class StepPlan:
    """A scheduled step: which sequences compute how many tokens, and for how long."""

    started: float
    duration: float
    scheduled: list[tuple[Sequence, int]]
    preempted: int

    @property
    def ends(self) -> float:
        """Modelled time at which the step's tokens exist."""
        return self.started + self.duration


@dataclass(slots=True)
class StepResult:
    """What a completed step produced, for delivery and metrics."""

    new_tokens: list[Sequence] = field(default_factory=list)
    finished: list[Sequence] = field(default_factory=list)
    ttfts: list[float] = field(default_factory=list)
    inter_token_latencies: list[float] = field(default_factory=list)
    prompt_tokens: int = 0
    preempted: int = 0


@dataclass(frozen=True)
class EngineStats:
    """The scheduler's state as vLLM's gauges report it."""

    running: int
    waiting: int
    used_blocks: int
    total_blocks: int
    preemptions_total: int

    @property
    def kv_cache_usage(self) -> float:
        """Share of KV blocks in use, 0..1 (``vllm:kv_cache_usage_perc``)."""
        return self.used_blocks / self.total_blocks if self.total_blocks else 0.0


class Engine:
    """The scheduler and KV block accounting of one replica."""

    def __init__(self, limits: EngineLimits, cost: StepCostModel) -> None:
        self.limits = limits
        self.cost = cost
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.used_blocks = 0
        self.preemptions_total = 0
        self._prefix_cache: OrderedDict[int, int] = OrderedDict()
        self._cached_blocks = 0
        self._planned_at = 0.0  # when the step now running started (and the next was planned)

    @property
    def has_work(self) -> bool:
        """Whether a step would schedule anything."""
        return bool(self.waiting or self.running)

    def stats(self) -> EngineStats:
        """Current queue lengths and KV usage."""
        return EngineStats(
            running=len(self.running),
            waiting=len(self.waiting),
            used_blocks=self.used_blocks,
            total_blocks=self.limits.kv_blocks,
            preemptions_total=self.preemptions_total,
        )

    def add(self, seq: Sequence, now: float | None = None) -> None:
        """Queue a new sequence (FCFS) that reached the engine at ``now`` (default: its arrival).

        The front end (API server) delays a request by ``cost.request_overhead_s`` before it
        gets here; it calls ``add`` once that has passed.
        """
        if seq.prompt_tokens + seq.max_output_tokens > self.limits.max_model_len:
            raise ValueError(
                f"prompt {seq.prompt_tokens} + output {seq.max_output_tokens} tokens exceed "
                f"max_model_len {self.limits.max_model_len}"
            )
        seq.status = "waiting"
        seq.queued_at = seq.arrival if now is None else now
        self.waiting.append(seq)

    def abort(self, seq: Sequence, now: float) -> bool:
        """Drop a sequence (client gone) and free its KV blocks; False if already finished.

        A sequence the front end has not handed over yet is only marked finished.
        """
        if seq.status == "finished":
            return False
        if seq.status == "running":
            self.running.remove(seq)
        elif seq in self.waiting:
            self.waiting.remove(seq)
        self._finish(seq, "abort", now)
        return True

    def _blocks_for(self, tokens: int) -> int:
        return -(-tokens // self.limits.block_tokens)

    def _free(self, seq: Sequence) -> None:
        self.used_blocks -= seq.blocks
        seq.blocks = 0

    def _finish(self, seq: Sequence, reason: FinishReason, now: float) -> None:
        self._free(seq)
        seq.status = "finished"
        seq.finish_reason = reason
        seq.finished_at = now

    def _allocate(self, seq: Sequence, new_tokens: int) -> bool:
        need = self._blocks_for(seq.computed_tokens + new_tokens) - seq.blocks
        if need > self.limits.kv_blocks - self.used_blocks:
            return False
        seq.blocks += need
        self.used_blocks += need
        return True

    def _prefix_hit(self, seq: Sequence) -> int:
        if seq.prefix_key is None:
            return 0
        cached = self._prefix_cache.get(seq.prefix_key, 0)
        if cached:
            self._prefix_cache.move_to_end(seq.prefix_key)
        last_full = (seq.prompt_tokens - 1) // self.limits.block_tokens * self.limits.block_tokens
        return min(cached, last_full)

    def _remember_prefix(self, seq: Sequence) -> None:
        if seq.prefix_key is None or seq.prefix_key in self._prefix_cache:
            return
        full = seq.prompt_tokens // self.limits.block_tokens * self.limits.block_tokens
        self._prefix_cache[seq.prefix_key] = full
        self._cached_blocks += full // self.limits.block_tokens
        free = self.limits.kv_blocks - self.used_blocks
        while self._cached_blocks > free and self._prefix_cache:
            _, evicted = self._prefix_cache.popitem(last=False)
            self._cached_blocks -= evicted // self.limits.block_tokens

    def _preempt(self, seq: Sequence) -> None:
        self._free(seq)
        seq.computed_tokens = 0
        seq.status = "waiting"
        seq.preemptions += 1
        self.waiting.appendleft(seq)

    def schedule(self, now: float) -> StepPlan | None:
        """Plan the next step, or None when there is nothing to run.

        An idle engine's step cannot start before its first waiting request reached it, so it
        starts at that time if ``now`` is earlier (a real-time caller a little behind the clock).
        """
        if not self.running and self.waiting and self.waiting[0].queued_at is not None:
            now = max(now, self.waiting[0].queued_at)
        budget = self.limits.max_num_batched_tokens
        scheduled: list[tuple[Sequence, int]] = []
        preempted = 0
        index = 0
        while index < len(self.running) and budget > 0:
            seq = self.running[index]
            want = min(seq.total_tokens - seq.computed_tokens, budget)
            while not self._allocate(seq, want):
                victim = self.running.pop()
                self._preempt(victim)
                preempted += 1
                if victim is seq:
                    break
            else:
                scheduled.append((seq, want))
                budget -= want
                index += 1
        # With async scheduling a busy engine planned this step when the previous one started:
        # only requests it had by then can join.
        cutoff = self._planned_at if self.limits.async_scheduling and self.running else now
        if not preempted:
            while self.waiting and budget > 0 and len(self.running) < self.limits.max_num_seqs:
                seq = self.waiting[0]
                if seq.queued_at is not None and seq.queued_at > cutoff:
                    break
                hit = self._prefix_hit(seq)
                want = min(seq.total_tokens - hit, budget)
                seq.computed_tokens = hit
                if not self._allocate(seq, want):
                    seq.computed_tokens = 0
                    break
                self.waiting.popleft()
                seq.status = "running"
                if seq.first_scheduled is None:
                    seq.first_scheduled = now
                self.running.append(seq)
                scheduled.append((seq, want))
                budget -= want
        self.preemptions_total += preempted
        if not scheduled:
            return None
        tokens = kv_read = pairs = 0
        for seq, n in scheduled:
            tokens += n
            kv_read += seq.computed_tokens + n
            pairs += n * seq.computed_tokens + n * (n + 1) // 2
        duration = self.cost.step_seconds(tokens, kv_read, pairs, len(scheduled))
        self._planned_at = now
        return StepPlan(started=now, duration=duration, scheduled=scheduled, preempted=preempted)

    def complete(self, plan: StepPlan, now: float) -> StepResult:
        """Apply a planned step that ended at ``now``: new tokens, finished sequences."""
        result = StepResult(preempted=plan.preempted)
        for seq, n in plan.scheduled:
            if seq.status != "running":
                continue  # aborted (or preempted) while the step ran
            seq.computed_tokens += n
            if seq.computed_tokens < seq.total_tokens:
                continue  # a prefill chunk: no token yet
            self._remember_prefix(seq)
            if seq.last_token_at is None:
                result.ttfts.append(now - seq.arrival)
                result.prompt_tokens += seq.prompt_tokens
                seq.first_token_at = now
            else:
                result.inter_token_latencies.append(now - seq.last_token_at)
            seq.last_token_at = now
            seq.output_tokens += 1
            result.new_tokens.append(seq)
            if seq.output_tokens >= seq.max_output_tokens:
                self.running.remove(seq)
                self._finish(seq, seq.natural_finish, now)
                result.finished.append(seq)
        return result
