"""Load-generator cost per streamed token, and its TTFT/ITL error against known latencies.

Against the fixed-latency server (known TTFT and ITL), one Locust process runs N users of
either qwen-stress's ``LLMUser`` or a plain Locust streaming user written the obvious way
(``FastHttpSession.iter_lines`` + ``json.loads``), for N in 16, 64, 128 and 256. Printed per run:
client CPU-ms per 1,000 streamed tokens, the process's CPU use, and TTFT / ITL p50 and p99
next to the server's true values (and the server's own lateness, so it is not blamed on the
client). Goals: cheaper per token than the plain user; p50 error under 2% while the client is
under 70% CPU. The machine's load average is printed with each run: other work on a shared
machine inflates every number.

Each configuration runs in a fresh child process: ``python benchmarks/bench_loadgen.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TTFT_MS = 200.0
ITL_MS = 20.0
MAX_TOKENS = 64
WARMUP_S = 4.0
MEASURE_S = 10.0
USERS = (16, 64, 128, 256)


def _child(kind: str, users: int, url: str) -> dict[str, Any]:
    """Run one configuration in this process and return its measurements."""
    import gevent  # noqa: PLC0415 - the parent process must not be monkey-patched
    import msgpack  # type: ignore[import-untyped]  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415
    from locust import FastHttpUser, task  # noqa: PLC0415
    from locust.env import Environment  # noqa: PLC0415

    from loadtest import workload  # noqa: PLC0415
    from loadtest.llm_user import LLMUser, UserSettings  # noqa: PLC0415
    from loadtest.records import RecordDict, RequestRecord  # noqa: PLC0415

    window = {"on": False}
    ttft: list[float] = []
    itl: list[float] = []
    tokens = [0]

    class ShippingSink:
        """Does what the worker does with a record: JSON-shape it, pack a batch with msgpack."""

        def __init__(self) -> None:
            self.buffer: list[RecordDict] = []

        def add(self, record: RequestRecord) -> None:
            self.buffer.append(record.to_json())
            if len(self.buffer) >= 50:
                msgpack.packb(self.buffer)
                self.buffer = []
            if window["on"] and record.ok:
                ttft.append(record.ttft_ms or 0.0)
                itl.extend(record.itl_ms)
                tokens[0] += record.output_tokens or 0

    body = {
        "model": "bench",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": MAX_TOKENS,
        "stream": True,
        "stream_options": {"include_usage": True},
    }

    class PlainUser(FastHttpUser):
        """The obvious Locust streaming user: iter_lines, json.loads, time each content line."""

        host = url

        @task
        def chat(self) -> None:
            t0 = time.perf_counter()
            first = None
            last = t0
            gaps = []
            count = 0
            for line in self.client.iter_lines("/v1/chat/completions", method="POST", json=body):
                if not line.startswith("data: "):
                    continue
                data = line[6:]
                if data == "[DONE]":
                    break
                chunk = json.loads(data)
                if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                    now = time.perf_counter()
                    if first is None:
                        first = now - t0
                    else:
                        gaps.append((now - last) * 1000.0)
                    last = now
                    count += 1
            if window["on"] and first is not None:
                ttft.append(first * 1000.0)
                itl.extend(gaps)
                tokens[0] += count

    if kind == "qwen-stress":
        mix = workload.parse(
            {"tasks": [{"name": "b", "prompts": ["hi"], "max_tokens": MAX_TOKENS}]}
        )
        LLMUser.configure(UserSettings(workload=mix, model="bench"), ShippingSink())
        user_class: type = LLMUser
    else:
        user_class = PlainUser
    env = Environment(user_classes=[user_class], host=url)
    runner = env.create_local_runner()
    gevent.spawn(runner.start, users, users)
    gevent.sleep(WARMUP_S)
    window["on"] = True
    cpu0, wall0 = time.process_time(), time.monotonic()
    gevent.sleep(MEASURE_S)
    cpu = time.process_time() - cpu0
    wall = time.monotonic() - wall0
    window["on"] = False
    runner.quit()
    t, i = np.array(ttft), np.array(itl)
    return {
        "tokens": tokens[0],
        "cpu_ms_per_1k_tokens": cpu * 1000.0 / max(tokens[0], 1) * 1000.0,
        "cpu_pct": cpu / wall * 100.0,
        "ttft_p50": float(np.percentile(t, 50)) if t.size else None,
        "ttft_p99": float(np.percentile(t, 99)) if t.size else None,
        "itl_p50": float(np.percentile(i, 50)) if i.size else None,
        "itl_p99": float(np.percentile(i, 99)) if i.size else None,
    }


def _run(kind: str, users: int) -> dict[str, Any]:
    from loadtest.targets import FixedLatencyTarget  # noqa: PLC0415

    server = FixedLatencyTarget(TTFT_MS, ITL_MS)
    server.start()
    load_before = os.getloadavg()[0]
    try:
        out = subprocess.run(
            [sys.executable, __file__, "--child", kind, str(users), server.base_url],
            check=True,
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        result["server"] = server.stats()
    finally:
        server.stop()
    result["load"] = (load_before + os.getloadavg()[0]) / 2
    return result


def _err(measured: float | None, true: float, lag: float = 0.0) -> str:
    """Measured vs set value, as a signed percentage.

    With ``lag`` (the server's own median lateness, which the client cannot help) subtracted,
    it is the client's error.
    """
    return "    -" if measured is None else f"{(measured - true - lag) / true * 100:+5.1f}%"


def main() -> None:
    """Run every configuration and print one table."""
    print(
        f"fixed-latency server: TTFT {TTFT_MS:g} ms, ITL {ITL_MS:g} ms, {MAX_TOKENS} tokens/request"
    )
    print(f"{os.cpu_count()} CPUs; warm-up {WARMUP_S:g} s, measured {MEASURE_S:g} s per run\n")
    head = (
        f"{'client':<12}{'users':>6}{'CPU-ms/1k tok':>15}{'CPU%':>6}{'TTFT p50':>10}{'err':>8}"
        f"{'client':>8}{'TTFT p99':>10}{'ITL p50':>9}{'err':>8}{'ITL p99':>9}"
        f"{'srv lag p50/p99':>17}{'load':>6}"
    )
    print(head)
    print(
        "  err: measured p50 vs the server's set value; client: the same after subtracting the\n"
        "  server's own median lateness (its timers fire up to ~1 ms late on a busy machine)\n"
    )
    for users in USERS:
        for kind in ("qwen-stress", "plain"):
            r = _run(kind, users)
            lag = r["server"]["lag_p50_ms"]
            print(
                f"{kind:<12}{users:>6}{r['cpu_ms_per_1k_tokens']:>15.1f}{r['cpu_pct']:>6.0f}"
                f"{r['ttft_p50'] or 0:>10.1f}{_err(r['ttft_p50'], TTFT_MS):>8}"
                f"{_err(r['ttft_p50'], TTFT_MS, lag):>8}"
                f"{r['ttft_p99'] or 0:>10.1f}{r['itl_p50'] or 0:>9.2f}"
                f"{_err(r['itl_p50'], ITL_MS):>8}"
                f"{r['itl_p99'] or 0:>9.2f}{lag:>9.2f}/{r['server']['lag_p99_ms']:<7.2f}"
                f"{r['load']:>6.2f}",
                flush=True,
            )


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        print(json.dumps(_child(sys.argv[2], int(sys.argv[3]), sys.argv[4])))
    else:
        main()
