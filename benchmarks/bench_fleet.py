"""Fleet benchmark: what the router adds to TTFT and inter-token latency.

One server process (pinned to one core, uvloop) runs what the fleet runs in its event loop: an
emulated replica and the router in front of it. A load-generator process (pinned to the other
core, raw asyncio) keeps streams busy, alternately straight at the replica and through the
router, timestamping every read and counting content chunks in it. Reported per path: TTFT and
inter-token gap percentiles as the client saw them, the share of chunks that arrived glued to
the previous one (a proxy that batches writes shows up here), streamed tokens/s, and the server's
CPU share. The routed minus direct difference is the router's cost on the hot path.

Scenarios: Qwen2.5-7B on an A10G with 64 streams (what ``make demo`` asks of one replica), and
Qwen2.5-0.5B on an L4 with 128 streams (over 10,000 tokens/s: the router doubles the socket work
per token, so this is where it would show). Usage: ``python benchmarks/bench_fleet.py [seconds]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import multiprocessing as mp
import os
import sys
import time
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
from bench_emulator import _run_loop, _Stream, pin, stream_request

from twin.emulator.server import ReplicaServer
from twin.fleet.router import Backend, Router

SCENARIOS = (
    ("Qwen/Qwen2.5-7B-Instruct", "A10G", 64),
    ("Qwen/Qwen2.5-0.5B-Instruct", "L4", 128),
)
MAX_TOKENS = 128
WARMUP_S = 2.0
ROUNDS = 2
"""Each path is measured this many times, alternating, so drift on a shared machine hits both."""


def server_process(conn: Connection, model: str, gpu: str) -> None:
    """Serve a replica and a router in front of it; report CPU share between marks."""
    pin(0)

    async def main() -> None:
        replica = ReplicaServer(model, gpu, max_model_len=4096)
        port = await replica.start("127.0.0.1", 0)
        router = Router()
        router.add(Backend("replica", "127.0.0.1", port))
        routed = await router.start("127.0.0.1", 0)
        gc.freeze()
        conn.send((port, routed))
        done = asyncio.Event()
        marks: dict[str, float] = {}

        def on_message() -> None:
            message = conn.recv()
            if message == "mark":
                marks["cpu"], marks["wall"] = time.process_time(), time.monotonic()
            elif message == "read":
                cpu = time.process_time() - marks["cpu"]
                conn.send(cpu / (time.monotonic() - marks["wall"]))
            else:
                done.set()

        asyncio.get_running_loop().add_reader(conn.fileno(), on_message)
        await done.wait()
        await router.stop()
        await replica.stop()

    _run_loop(main())


class _TimedStream(_Stream):
    """``_Stream`` counting only while ``sink["on"]``, and timing every read with content chunks."""

    def __init__(self, request: bytes, counter: list[int], sink: dict[str, Any]) -> None:
        super().__init__(request, counter)
        self.sink = sink
        self.sent = 0.0
        self.last: float | None = None
        self.now = 0.0

    def send(self) -> None:
        self.sent, self.last = time.perf_counter(), None
        super().send()

    def data_received(self, data: bytes) -> None:
        self.now = time.perf_counter()  # the read's time, before any work on it
        super().data_received(data)

    def counted(self, chunks: int) -> None:
        if not chunks:
            return
        sink = self.sink
        if sink["on"]:
            if self.last is None:
                sink["ttft"].append(self.now - self.sent)
            else:
                sink["itl"].append(self.now - self.last)
            sink["itl"].extend([0.0] * (chunks - 1))
            super().counted(chunks)
        self.last = self.now


def load_process(
    ports: dict[str, int], model: str, streams: int, seconds: float, conn: Connection
) -> None:
    """Alternate direct and routed windows; send each window's timings back."""
    pin(1)

    async def window(port: int) -> dict[str, Any]:
        request = stream_request(model, "Benchmark the router, please.", MAX_TOKENS)
        counter = [0]
        sink: dict[str, Any] = {"on": False, "ttft": [], "itl": []}
        loop = asyncio.get_running_loop()
        transports = []
        for _ in range(streams):
            transport, _ = await loop.create_connection(
                lambda: _TimedStream(request, counter, sink), "127.0.0.1", port
            )
            transports.append(transport)
        await asyncio.sleep(WARMUP_S)
        conn.send("mark")
        sink["on"] = True
        cpu0, wall0 = time.process_time(), time.monotonic()
        await asyncio.sleep(seconds)
        sink["on"] = False
        wall = time.monotonic() - wall0
        conn.send("read")
        server_cpu = conn.recv()
        for transport in transports:
            transport.close()
        await asyncio.sleep(0.5)  # aborted sequences leave the engine before the next window
        sink.update(
            tokens=counter[0],
            tokens_per_s=counter[0] / wall,
            client_cpu=(time.process_time() - cpu0) / wall,
            server_cpu=server_cpu,
        )
        return sink

    async def main() -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {"direct": [], "routed": []}
        for _ in range(ROUNDS):
            for path in ("direct", "routed"):
                out[path].append(await window(ports[path]))
        return out

    conn.send(("result", _run_loop(main())))


def _summary(windows: list[dict[str, Any]]) -> dict[str, float]:
    ttft = np.array([t for w in windows for t in w["ttft"]]) * 1000
    itl = np.array([t for w in windows for t in w["itl"]]) * 1000
    return {
        "ttft_p50": float(np.percentile(ttft, 50)),
        "ttft_p99": float(np.percentile(ttft, 99)),
        "itl_p50": float(np.percentile(itl, 50)),
        "itl_p99": float(np.percentile(itl, 99)),
        "glued": float(np.mean(itl == 0.0)),
        "tokens_per_s": float(np.mean([w["tokens_per_s"] for w in windows])),
        "server_cpu": float(np.mean([w["server_cpu"] for w in windows])),
        "client_cpu": float(np.mean([w["client_cpu"] for w in windows])),
        "requests": float(ttft.size),
    }


def run(model: str, gpu: str, streams: int, seconds: float) -> None:
    """One scenario: both paths, printed side by side with the difference."""
    ctx = mp.get_context("spawn")
    server_end, server_here = ctx.Pipe()
    server = ctx.Process(target=server_process, args=(server_end, model, gpu), daemon=True)
    server.start()
    direct, routed = server_here.recv()
    load_end, load_here = ctx.Pipe()
    ports = {"direct": direct, "routed": routed}
    load = ctx.Process(
        target=load_process, args=(ports, model, streams, seconds, load_end), daemon=True
    )
    load.start()
    result: dict[str, list[dict[str, Any]]] = {}
    while not result:
        message = load_here.recv()
        if message == "mark":
            server_here.send("mark")
        elif message == "read":
            server_here.send("read")
            load_here.send(server_here.recv())
        else:
            result = message[1]
    server_here.send("stop")
    load.join(10)
    server.join(10)
    with contextlib.suppress(OSError):
        print(f"load average: {os.getloadavg()[0]:.2f} (1 min) on {os.cpu_count()} cores")
    d, r = _summary(result["direct"]), _summary(result["routed"])
    print(f"{model} on {gpu}, {streams} streams, {ROUNDS} x {seconds:g} s per path:")
    for name, s in (("direct", d), ("routed", r)):
        print(
            f"  {name:6}: TTFT p50 {s['ttft_p50']:7.1f} ms, p99 {s['ttft_p99']:7.1f} ms; "
            f"ITL p50 {s['itl_p50']:6.2f} ms, p99 {s['itl_p99']:6.2f} ms; "
            f"{s['glued']:.1%} chunks glued; {s['tokens_per_s']:,.0f} tokens/s; "
            f"server CPU {s['server_cpu']:.0%}, client CPU {s['client_cpu']:.0%}; "
            f"{s['requests']:.0f} requests"
        )
    print(
        f"  router adds: TTFT p50 {r['ttft_p50'] - d['ttft_p50']:+.1f} ms, "
        f"p99 {r['ttft_p99'] - d['ttft_p99']:+.1f} ms; "
        f"ITL p50 {r['itl_p50'] - d['itl_p50']:+.2f} ms, "
        f"p99 {r['itl_p99'] - d['itl_p99']:+.2f} ms; "
        f"server CPU {r['server_cpu'] - d['server_cpu']:+.0%}"
    )


def main() -> int:
    """Run every scenario; the numbers are for reading (timing depends on the machine's load)."""
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 6.0
    for model, gpu, streams in SCENARIOS:
        run(model, gpu, streams, seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
