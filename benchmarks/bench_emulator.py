"""Emulator benchmark: calibration fidelity, then streamed tokens/s and emission lag on one core.

1. Fidelity: every calibration row replayed on the engine (deterministic; also a unit test).
2. Load: one emulator process pinned to one core (uvloop) serves streaming chat requests that a
   separate load-generator process (pinned to the other core, raw asyncio, counts content chunks
   without parsing JSON) keeps in flight. Reported: streamed tokens/s received, the emulator's
   emission lag (write time minus modelled time, every token) at p50/p99, and the CPU share of
   both processes, so the reader sees which one limited the run.

The emulator must keep pace with the model, not outrun it, so a capacity scenario needs a modelled
replica faster than the goal. Calibrated, Qwen2.5-0.5B on an L4 with 128 streams is host-bound
(vLLM's per-step and per-sequence costs: about 11 ms a step, some 11,000 tokens/s, as vLLM V1
measures there), so the goal scenario runs the same replica with those host costs set to zero:
its GPU alone, 128 tokens per 5.6 ms step, over 20,000 tokens/s, which measures what one emulator
core can stream. The calibrated replica runs too, to show the emulator keeps its slower pace; the
third scenario (Qwen2.5-7B on an H100, 256 streams, host costs off) writes 256 tokens per 10 ms
step. A step's tokens are one socket write each, so the lag spread grows with the streams per
step; the third scenario shows by how much. Each run prints the modelled pace (the same workload
replayed in virtual time) beside what was received, and the machine's load average.
Usage: ``python benchmarks/bench_emulator.py [seconds]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import multiprocessing as mp
import os
import sys
import time
from dataclasses import replace
from multiprocessing.connection import Connection
from typing import Any

import uvloop

from twin.emulator import calibration
from twin.emulator.engine import Engine, EngineLimits
from twin.emulator.perf_model import Efficiencies, fitted
from twin.emulator.replica_spec import ReplicaSpec, replica_spec
from twin.emulator.server import ReplicaServer
from twin.emulator.simulate import Workload, run_closed_loop
from twin.emulator.tokens import render_chat

SCENARIOS = (
    ("Qwen/Qwen2.5-0.5B-Instruct", "L4", 128, True, False),
    ("Qwen/Qwen2.5-0.5B-Instruct", "L4", 128, False, True),
    ("Qwen/Qwen2.5-7B-Instruct", "H100", 256, False, False),
)
"""(model, GPU, concurrent streams, whether the goals are meant to hold there, whether the
replica charges vLLM's host costs as calibrated)."""
MAX_MODEL_LEN = 4096
PROMPT = "Benchmark the emulator, please."
MAX_TOKENS = 256
WARMUP_S = 3.0
GOAL_TOKENS_PER_S = 20_000
GOAL_LAG_P99_S = 0.002


def pin(cpu: int) -> None:
    """Run this process on one core only (where the OS allows it)."""
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > cpu:
        os.sched_setaffinity(0, {cpu})


def _run_loop(main: Any) -> Any:
    # BENCH_LOOP=asyncio measures the standard loop instead (uvloop was twice as fast here).
    if os.environ.get("BENCH_LOOP") == "asyncio":
        return asyncio.run(main)
    return uvloop.run(main)


def gpu_only() -> Efficiencies:
    """The committed parameters without the host's per-step, per-sequence and request costs."""
    return replace(fitted(), step_overhead_s=0.0, seq_overhead_s=0.0, request_overhead_s=0.0)


def spec_for(model: str, gpu: str, host_costs: bool) -> ReplicaSpec:
    """The replica a scenario serves: calibrated, or its GPU alone."""
    spec = replica_spec(model, gpu, max_model_len=MAX_MODEL_LEN)
    return spec if host_costs else replace(spec, efficiencies=gpu_only())


def modelled_pace(spec: ReplicaSpec, concurrency: int, prompt_tokens: int) -> float:
    """Tokens/s the replica's model gives this load in virtual time.

    That is what the emulator streams if it keeps pace.
    """
    limits = EngineLimits.from_fit(spec.fit)
    engine = Engine(limits, spec.new_engine().cost)
    workload = Workload(concurrency, 4 * concurrency, prompt_tokens, [MAX_TOKENS], True)
    return run_closed_loop(engine, workload).output_tokens_per_s


def emulator_process(conn: Connection, model: str, gpu: str, host_costs: bool) -> None:
    """Serve one replica; on "mark" reset lag and CPU counters, on "stop" report them."""
    pin(0)

    async def main() -> None:
        spec = spec_for(model, gpu, host_costs)
        server = ReplicaServer(model, gpu, spec=spec)
        port = await server.start("127.0.0.1", 0)
        gc.freeze()  # as the CLI does: start-up objects never need collecting
        conn.send(port)
        done = asyncio.Event()
        marks: dict[str, float] = {}

        def on_message() -> None:
            message = conn.recv()
            if message == "mark":
                server.lag.reset()
                marks["cpu"], marks["wall"] = time.process_time(), time.monotonic()
            else:
                lag = server.lag
                conn.send(
                    {
                        "tokens": lag.total,
                        "lag_p50": lag.percentile(50, absolute=True),
                        "lag_p99": lag.percentile(99, absolute=True),
                        "lag_p95": lag.percentile(95, absolute=True),
                        "late": lag.share_beyond(GOAL_LAG_P99_S),
                        "lag_p99_signed": lag.percentile(99),
                        "lag_p1_signed": lag.percentile(1),
                        "cpu": (time.process_time() - marks["cpu"])
                        / (time.monotonic() - marks["wall"]),
                    }
                )
                done.set()

        asyncio.get_running_loop().add_reader(conn.fileno(), on_message)
        await done.wait()
        await server.stop()

    _run_loop(main())


class _Stream(asyncio.Protocol):
    """One keep-alive connection sending streaming chat requests back to back.

    Each read's content chunks are counted without parsing JSON and handed to ``counted``, which
    adds them to ``counter``; a subclass overrides it (and ``send``) to do more.
    """

    PATTERN = b'{"content":"'

    def __init__(self, request: bytes, counter: list[int]) -> None:
        self.request = request
        self.counter = counter
        self.tail = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.send()

    def send(self) -> None:
        """Send the request: on connecting, then each time a response ends."""
        assert self.transport is not None
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        buf = self.tail + data
        self.counted(buf.count(self.PATTERN))
        self.tail = buf[-(len(self.PATTERN) - 1) :]
        if b"data: [DONE]" in buf and self.transport is not None:
            self.tail = b""
            self.send()

    def counted(self, chunks: int) -> None:
        """``chunks`` content chunks arrived in one read (zero or more)."""
        self.counter[0] += chunks


def stream_request(model: str, prompt: str, max_tokens: int) -> bytes:
    """A raw HTTP/1.1 streaming chat request of exactly ``max_tokens`` tokens."""
    body = json.dumps(
        {
            "model": model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": max_tokens,
            "ignore_eos": True,
            "stream": True,
        }
    ).encode()
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: bench\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body)
    )


def load_process(port: int, model: str, concurrency: int, seconds: float, conn: Connection) -> None:
    """Keep ``concurrency`` streams busy; report tokens received in the window and own CPU."""
    pin(1)

    async def main() -> dict[str, float]:
        request = stream_request(model, PROMPT, MAX_TOKENS)
        loop = asyncio.get_running_loop()
        counter = [0]
        for _ in range(concurrency):
            await loop.create_connection(lambda: _Stream(request, counter), "127.0.0.1", port)
        await asyncio.sleep(WARMUP_S)
        conn.send("mark")
        start_tokens, cpu0, wall0 = counter[0], time.process_time(), time.monotonic()
        await asyncio.sleep(seconds)
        wall = time.monotonic() - wall0
        return {
            "tokens_per_s": (counter[0] - start_tokens) / wall,
            "cpu": (time.process_time() - cpu0) / wall,
        }

    conn.send(_run_loop(main()))


def fidelity() -> bool:
    """Print the calibration residual tables; True if every row is within its tolerance."""
    residuals = calibration.all_residuals()
    fit, held_out = calibration.split(residuals)
    for title, res in (("fitted rows", fit), ("held-out rows", held_out)):
        print(f"{title}:\n{calibration.table(res)}")
    ok = calibration.within_tolerance(residuals)
    worst = ", ".join(
        f"{metric} {error:.1%} (goal <= {calibration.GOAL[metric]:.0%})"
        for metric, error in calibration.worst(residuals).items()
    )
    print(f"fidelity over {len(residuals)} published metrics: worst |error| {worst}")
    return ok


def load(
    model: str, gpu: str, concurrency: int, seconds: float, *, goal: bool, host_costs: bool
) -> bool:
    """Run the two-process load test and print its numbers; True if the goals are met."""
    spec = spec_for(model, gpu, host_costs)
    counter = ReplicaServer(model, gpu, spec=spec).counter
    prompt_tokens = counter.count(render_chat([("user", PROMPT)]))
    pace = modelled_pace(spec, concurrency, prompt_tokens)
    ctx = mp.get_context("spawn")
    emu_end, emu_here = ctx.Pipe()
    emulator = ctx.Process(
        target=emulator_process, args=(emu_end, model, gpu, host_costs), daemon=True
    )
    emulator.start()
    port = emu_here.recv()
    load_end, load_here = ctx.Pipe()
    generator = ctx.Process(
        target=load_process, args=(port, model, concurrency, seconds, load_end), daemon=True
    )
    generator.start()
    with contextlib.suppress(EOFError):
        assert load_here.recv() == "mark"
    emu_here.send("mark")
    client: dict[str, float] = load_here.recv()
    emu_here.send("stop")
    server: dict[str, float] = emu_here.recv()
    generator.join(10)
    emulator.join(10)
    with contextlib.suppress(OSError):
        print(f"load average: {os.getloadavg()[0]:.2f} (1 min) on {os.cpu_count()} cores")
    print(
        f"load: {model} on {gpu} ({'calibrated' if host_costs else 'GPU only, no host costs'}), "
        f"{concurrency} streams, {seconds:g} s window: "
        f"{client['tokens_per_s']:,.0f} streamed tokens/s received, modelled pace {pace:,.0f} "
        f"(goal >= {GOAL_TOKENS_PER_S:,}); emission lag |p50| {server['lag_p50'] * 1000:.2f} ms, "
        f"|p99| {server['lag_p99'] * 1000:.2f} ms (goal < {GOAL_LAG_P99_S * 1000:g} ms), "
        f"signed p1..p99 {server['lag_p1_signed'] * 1000:+.2f}.."
        f"{server['lag_p99_signed'] * 1000:+.2f} ms, |p95| {server['lag_p95'] * 1000:.2f} ms, "
        f"{server['late']:.2%} of tokens beyond 2 ms; "
        f"CPU: emulator {server['cpu']:.0%}, load generator {client['cpu']:.0%}"
    )
    met = client["tokens_per_s"] >= GOAL_TOKENS_PER_S and server["lag_p99"] < GOAL_LAG_P99_S
    if goal:
        print(f"goals {'met' if met else 'MISSED'} in this run")
    return bool(met)


def main() -> int:
    """Run both parts; exit 1 only if fidelity fails (timing depends on the machine's load)."""
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
    ok = fidelity()
    for model, gpu, concurrency, goal, host_costs in SCENARIOS:
        load(model, gpu, concurrency, seconds, goal=goal, host_costs=host_costs)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
