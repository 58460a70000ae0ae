"""A live fleet on 127.0.0.1: load scales it out through real replicas, then in, losing nothing.

The control plane runs 250 times faster than real time (a new node's cold start of ten minutes
takes 2.5 s); requests are real streams through the router. Assertions are about order and
outcome, never about how long anything took.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
import pytest

from workloads.fleet import Fleet, FleetSpec
from workloads.fleet.cluster import PodState
from workloads.fleet.router import Backend

pytestmark = pytest.mark.integration

MODEL = "Qwen/Qwen2.5-7B-Instruct-AWQ"
TIME_SCALE = 0.004


@dataclass
class Load:
    """Closed-loop streaming users; every request's outcome is kept."""

    url: str
    users: int
    max_tokens: int
    results: list[tuple[int, int, bool]] = field(default_factory=list)
    """(status, completion tokens in usage, saw [DONE]) per request."""
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def _request(self, session: aiohttp.ClientSession) -> tuple[int, int, bool]:
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": "Tell me about autoscaling."}],
            "max_tokens": self.max_tokens,
            "ignore_eos": True,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        tokens, done = 0, False
        async with session.post(self.url + "/v1/chat/completions", json=body) as response:
            async for line in response.content:
                if line.startswith(b"data: [DONE]"):
                    done = True
                elif line.startswith(b"data: "):
                    usage = json.loads(line[6:]).get("usage")
                    tokens = usage["completion_tokens"] if usage else tokens
            return response.status, tokens, done

    async def _user(self, session: aiohttp.ClientSession) -> None:
        while not self.stop.is_set():
            self.results.append(await self._request(session))

    async def run(self) -> None:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            await asyncio.gather(*(self._user(session) for _ in range(self.users)))


async def _until(condition: Callable[[], bool], what: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def _scenario() -> None:
    spec = FleetSpec.for_model(MODEL, "T4", max_model_len=2048)
    fleet = Fleet(spec, time_scale=TIME_SCALE)
    picked_not_ready: list[str] = []
    in_flight_at_removal: dict[str, int] = {}
    pick, remove = fleet.router.pick, fleet.router.remove

    def checked_pick() -> Backend | None:
        backend = pick()
        states = {p.name: p.state for p in fleet.cluster.pods}
        if backend is not None and states.get(backend.name) is not PodState.READY:
            picked_not_ready.append(backend.name)
        return backend

    def recorded_remove(name: str) -> Backend | None:
        backend = remove(name)
        if backend is not None:
            in_flight_at_removal[name] = backend.outstanding
        return backend

    fleet.router.pick = checked_pick  # type: ignore[method-assign]
    fleet.router.remove = recorded_remove  # type: ignore[method-assign]
    port = await fleet.start()
    url = f"http://127.0.0.1:{port}"
    try:
        # 50 users: 50 running requests over one replica, where the target is 24 per replica.
        busy = Load(url, users=50, max_tokens=24)
        busy_task = asyncio.create_task(busy.run())
        await _until(lambda: fleet.status()["pending_replicas"] > 0, "pods for the new replicas")
        status = fleet.status()
        assert status["desired_replicas"] > 1 and status["ready_replicas"] == 1
        await _until(lambda: fleet.status()["nodes"] > 1, "the autoscaler to add a node")
        await _until(lambda: fleet.status()["ready_replicas"] >= 2, "a new replica serving")
        await _until(
            lambda: sum(b.served for b in fleet.router.backends if b.name != "vllm-0") >= 5,
            "requests on the new replicas",
        )
        scaled_out = fleet.status()
        # 6 users: below the target even for one replica, so the fleet scales in under load.
        quiet = Load(url, users=6, max_tokens=60)
        quiet_task = asyncio.create_task(quiet.run())
        busy.stop.set()
        await busy_task
        await _until(lambda: fleet.status()["desired_replicas"] == 1, "the HPA to scale in")
        await _until(
            lambda: (
                fleet.status()["ready_replicas"] == 1
                and fleet.status()["terminating_replicas"] == 0
            ),
            "the drained replicas to go",
        )
        await _until(lambda: fleet.status()["nodes"] == 1, "the empty nodes to go")
        quiet.stop.set()
        await quiet_task
    finally:
        await fleet.stop(drain_timeout=30)

    assert scaled_out["ready_replicas"] >= 2 and scaled_out["gpus"] >= 2
    assert picked_not_ready == []
    assert in_flight_at_removal and max(in_flight_at_removal.values()) > 0
    for load in (busy, quiet):
        assert load.results
        assert set(load.results) == {(200, load.max_tokens, True)}


def test_fleet_scales_out_under_load_and_in_without_losing_a_request() -> None:
    asyncio.run(_scenario())
