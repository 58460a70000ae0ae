"""Runs an engine in real time on the asyncio loop: steps, token delivery, emission lag.

Steps follow each other in modelled time: a step starts when the previous one ends, not when the
loop got round to it, so a late wake-up does not slow the modelled GPU down. Only when the loop
falls more than ``CATCH_UP_LIMIT_S`` behind (an overloaded process) does modelled time jump to
now, which shows up as lost throughput and as emission lag.

A step's tokens share one modelled time but are written one after another (a socket write each),
so the burst takes time: hundreds of streams take a millisecond or two. The driver therefore
starts a burst early by half the previous burst's duration, so emissions straddle their modelled
time instead of all landing late, and rotates the order streams are written in, so no stream is
always last. Timers fire on millisecond ticks (asyncio's epoll and uvloop's libuv round to 1 ms),
so the driver also aims half a tick early. Spinning through the last tick instead was measured:
it costs a fifth of a core and, on a shared machine, makes the scheduler preempt the process
more, so the tail got worse, not better. Every token's emission lag (write time minus modelled
time) is counted in a 0.1 ms histogram (``lag``), read by the benchmark and available to the twin.

A submitted sequence reaches the engine ``request_overhead_s`` after its arrival (a timer): that
is the API server's share of TTFT in vLLM, spent in its own process while the engine steps on.
Until then it counts as neither running nor waiting, as in vLLM's gauges.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from twin.emulator.engine import Engine, EngineStats, Sequence, StepResult
from twin.emulator.metrics import ReplicaMetrics

_log = logging.getLogger(__name__)

TIMER_TICK_S = 0.001
CATCH_UP_LIMIT_S = 0.05
_LAG_RESOLUTION_S = 0.0001
_LAG_RANGE_S = 0.1  # lags beyond +-100 ms are counted in the edge bins


class LagHistogram:
    """Emission lag (actual minus modelled time) of every delivered token."""

    def __init__(self) -> None:
        self._half = round(_LAG_RANGE_S / _LAG_RESOLUTION_S)
        self.counts: list[int]
        self.total: int
        self.reset()

    def reset(self) -> None:
        """Forget what was counted (a benchmark's warm-up, say)."""
        self.counts = [0] * (2 * self._half + 1)
        self.total = 0

    def add(self, lag_s: float, n: int = 1) -> None:
        """Count ``n`` tokens emitted ``lag_s`` after their modelled time."""
        i = round(lag_s / _LAG_RESOLUTION_S)
        self.counts[min(max(i, -self._half), self._half) + self._half] += n
        self.total += n

    def share_beyond(self, lag_s: float) -> float:
        """Share of tokens whose |lag| exceeded ``lag_s``."""
        if not self.total:
            return 0.0
        edge = round(lag_s / _LAG_RESOLUTION_S)
        beyond = sum(c for i, c in enumerate(self.counts) if abs(i - self._half) > edge)
        return beyond / self.total

    def percentile(self, p: float, *, absolute: bool = False) -> float:
        """Lag (seconds) below which ``p`` percent of tokens were emitted."""
        if not self.total:
            return 0.0
        if absolute:
            folded = [0] * (self._half + 1)
            for i, c in enumerate(self.counts):
                folded[abs(i - self._half)] += c
            bins = [(i * _LAG_RESOLUTION_S, c) for i, c in enumerate(folded)]
        else:
            bins = [((i - self._half) * _LAG_RESOLUTION_S, c) for i, c in enumerate(self.counts)]
        target = self.total * p / 100
        seen = 0
        for value, count in bins:
            seen += count
            if seen >= target:
                return value
        return bins[-1][0]


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        _log.error("the emulator's engine loop stopped", exc_info=task.exception())


class EngineDriver:
    """Steps one engine in real time and delivers its tokens to the sequences' sinks."""

    def __init__(self, engine: Engine, metrics: ReplicaMetrics) -> None:
        self.engine = engine
        self.metrics = metrics
        self.lag = LagHistogram()
        self._burst_s = 0.0
        self._rotation = 0
        self._stamps: list[float] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._in_front_end: dict[Sequence, asyncio.TimerHandle] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start stepping on the running loop."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="emulator-engine")
        self._task.add_done_callback(_report_crash)

    async def stop(self) -> None:
        """Stop stepping; sequences still in the engine stay where they are."""
        for handle in self._in_front_end.values():
            handle.cancel()
        self._in_front_end.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    @staticmethod
    def now() -> float:
        """The clock modelled times are expressed in: ``time.monotonic``.

        Not ``loop.time()``: uvloop caches it per loop iteration at millisecond resolution.
        """
        return time.monotonic()

    def submit(self, seq: Sequence) -> None:
        """Queue a sequence: it reaches the engine after the request overhead (a timer)."""
        self._idle.clear()
        delay = seq.arrival + self.engine.cost.request_overhead_s - self.now()
        loop = asyncio.get_running_loop()
        self._in_front_end[seq] = loop.call_later(max(0.0, delay), self._hand_over, seq)

    def _hand_over(self, seq: Sequence) -> None:
        del self._in_front_end[seq]
        self.engine.add(seq, self.now())
        self._wake.set()
        self.metrics.record_state(self.engine.stats())

    def abort(self, seq: Sequence) -> None:
        """Drop a sequence whose client went away, freeing its KV blocks."""
        handle = self._in_front_end.pop(seq, None)
        if handle is not None:
            handle.cancel()
            self._wake.set()  # the loop re-checks whether anything is left
        if self.engine.abort(seq, self.now()):
            self.metrics.record_finished(seq)
            self.metrics.record_state(self.engine.stats())

    def stats(self) -> EngineStats:
        """The engine's queue lengths and KV usage, read in-process."""
        return self.engine.stats()

    async def wait_idle(self) -> None:
        """Return once no sequence is waiting or running."""
        await self._idle.wait()

    async def _sleep_until(self, when: float) -> None:
        delay = when - self._burst_s / 2 - TIMER_TICK_S / 2 - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    async def _run(self) -> None:
        engine = self.engine
        started = self.now()
        while True:
            # `while`: a sequence submitted and aborted before this task wakes leaves no work.
            while not engine.has_work:
                if not self._in_front_end:
                    self._idle.set()
                self.metrics.record_state(engine.stats())
                self._wake.clear()
                await self._wake.wait()
                started = self.now()
            plan = engine.schedule(started)
            if plan is None:
                raise RuntimeError("the engine has work but scheduled nothing")
            # Apply the step now and release its tokens at its end: the bookkeeping then stays
            # out of the burst of writes that should land on the modelled time.
            result = engine.complete(plan, plan.ends)
            await self._sleep_until(plan.ends)
            self._deliver(plan.ends, result)
            now = self.now()
            started = plan.ends if now - plan.ends < CATCH_UP_LIMIT_S else now

    def _deliver(self, ends: float, result: StepResult) -> None:
        tokens = result.new_tokens
        if tokens:
            self._rotation = (self._rotation + 1) % len(tokens)
            tokens = tokens[self._rotation :] + tokens[: self._rotation]
        stamps = self._stamps
        stamps.clear()
        clock = time.monotonic
        first = clock()
        for seq in tokens:
            if seq.sink is not None and seq.finish_reason != "abort":
                seq.sink.on_token(seq, ends)
            stamps.append(clock())
        if stamps:
            self._burst_s = 0.8 * self._burst_s + 0.2 * (stamps[-1] - first)
        add = self.lag.add
        for stamp in stamps:
            add(stamp - ends)
        self.metrics.record_step(result)
        self.metrics.record_state(self.engine.stats())
