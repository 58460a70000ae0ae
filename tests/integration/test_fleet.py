"""A live fleet on 127.0.0.1: load scales it out through real replicas, then in, losing nothing.

The control plane runs 200-250 times faster than real time (a new node's cold start of ten
minutes takes 2.5-3 s); requests are real streams through the router. Assertions are about
order and outcome, never about how long anything took.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from typer.testing import CliRunner

from loadtest.cli import app
from twin.fleet.fleet import Fleet
from twin.fleet.fleet_spec import FleetSpec
from twin.fleet.router import Backend
from twin.fleet.sim_cluster import PodState

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
        # The replicas share the fleet's one fit and prompt counter; engines and registries not.
        replicas = list(fleet.servers.values())
        assert len(replicas) >= 2
        assert len({id(r.spec) for r in replicas}) == len({id(r.counter) for r in replicas}) == 1
        assert len({id(r.driver.engine) for r in replicas}) == len(replicas)
        assert len({id(r.registry) for r in replicas}) == len(replicas)
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
    # A private loop: asyncio.run would unset the thread's current loop for later tests.
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(_scenario())
    finally:
        loop.close()


def _refuse_constant(name: str) -> None:
    raise AssertionError(f"{name} is not JSON")


def test_fleet_command_serves_its_status_and_stops_on_sigterm() -> None:
    command = [sys.executable, "-m", "loadtest.cli", "fleet", "--model", MODEL, "--gpu", "T4"]
    process = subprocess.Popen(
        [*command, "--port", "0", "--time-scale", "0.01"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert "time scale 0.01 (1 s here is 100 s of cluster time)" in first.lower()
        assert "replicas 1..4, nodes 0..4;" in first
        url = re.search(r"Serving (http://\S+) ", process.stdout.readline())
        assert url is not None
        with urllib.request.urlopen(url.group(1) + "/fleet/status", timeout=5) as response:
            # Strict JSON (RFC 8259): no NaN or Infinity, which Python's parser would accept.
            status = json.loads(response.read(), parse_constant=_refuse_constant)
        assert (status["desired_replicas"], status["ready_replicas"], status["nodes"]) == (1, 1, 1)
        assert status["fleet"]["instance_type"] == "g4dn.xlarge"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()


def test_fleet_command_refuses_bad_input() -> None:
    runner = CliRunner()
    both = runner.invoke(app, ["fleet", "--config", "Pulumi.dev.yaml", "--gpu", "T4"])
    assert both.exit_code == 2 and "--config sets the model and GPU" in both.output
    unfit = runner.invoke(app, ["fleet", "--model", "Qwen/Qwen2.5-7B-Instruct", "--gpu", "T4"])
    assert unfit.exit_code == 2
    assert "--model Qwen/Qwen2.5-7B-Instruct --gpu T4: Qwen/Qwen2.5-7B-Instruct needs" in (
        unfit.output
    )
    scale = runner.invoke(app, ["fleet", "--model", MODEL, "--gpu", "T4", "--time-scale", "0"])
    assert scale.exit_code == 2 and "--time-scale 0: must be a number from 0.001" in scale.output


def test_a_local_run_scales_the_twin_out_and_in_and_reports_it(tmp_path: Path) -> None:
    out = tmp_path / "run"
    # In cluster time: 20-minute steps, 4 users then 40 (over the 24 running per replica that
    # one replica may carry), a settle at 40 and a cool-down at 4; 0.005 makes each step 6 s.
    args = ["--model", MODEL, "--gpu", "T4", "--plan", "capacity", "--time-scale", "0.005"]
    args += ["--baseline-users", "4", "--step-users", "36", "--max-users", "40", "--soak", "0s"]
    args += ["--step-duration", "20m", "--workers", "1", "--max-tokens", "16"]
    done = subprocess.run(
        [sys.executable, "-m", "loadtest.cli", "run", "--out", str(out), *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    timeline = [json.loads(line) for line in (out / "timeline.jsonl").read_text().splitlines()]
    ready = [s["ready_replicas"] for s in timeline if "ready_replicas" in s]
    assert ready[0] == 1 and max(ready) >= 2 and ready[-1] < max(ready)
    assert all(isinstance(s["kv_usage_by_replica"], dict) for s in timeline if "nodes" in s)
    summary = json.loads((out / "summary.json").read_text())
    scaled = summary["autoscaling"]
    assert scaled["scale_up_lag_s"]["count"] >= 1 and scaled["nodes"]["max"] >= 2
    assert scaled["gpu_hours"] >= scaled["replica_hours"] > 0
    assert summary["cost"]["gpu_hours"] == scaled["gpu_hours"]
    assert summary["overall"]["failures"] == 0
    assert "Autoscaling (cluster time" in (out / "report.md").read_text()
