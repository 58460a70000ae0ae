"""Real runs: an in-process Locust master, worker processes and a real server on 127.0.0.1.

The target here is the fixed-latency server (known TTFT and ITL), started once per module.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]
import pytest

from loadtest.schema import SCHEMA_VERSION, RunConfig
from loadtest.targets import FixedLatencyTarget, free_port

pytestmark = pytest.mark.integration

TTFT_MS = 50.0
ITL_MS = 5.0


@pytest.fixture(scope="module")
def server() -> Iterator[FixedLatencyTarget]:
    target = FixedLatencyTarget(TTFT_MS, ITL_MS)
    target.start()
    yield target
    target.stop()


def command(out: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "loadtest.cli", "run", "--out", str(out), *args]


def run(
    out: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(out, *args),
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        check=False,
    )


def lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def summary(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / "summary.json").read_text())
    return data


def test_distributed_run_against_the_local_twin(tmp_path: Path) -> None:
    out = tmp_path / "ramp"
    args = ["--model", "Qwen/Qwen2.5-0.5B-Instruct", "--gpu", "L40S", "--plan", "ramp"]
    args += ["--baseline-users", "3", "--step-users", "3", "--max-users", "6"]
    args += ["--step-duration", "3s", "--time-scale", "1", "--workers", "2", "--max-tokens", "12"]
    args += ["--api-key-env", "QWEN_STRESS_TEST_KEY"]
    done = run(out, *args, env={"QWEN_STRESS_TEST_KEY": "sk-never-written-7f3a"})
    assert done.returncode == 0, done.stderr
    s = summary(out)
    records = lines(out / "requests.jsonl")
    assert s["overall"]["requests"] == len(records) == sum(st["requests"] for st in s["steps"])
    assert {r["worker"] for r in records} == {0, 1}
    assert all(r["ok"] and r["output_tokens"] == 12 and r["usage"] for r in records)
    assert [(st["phase"], st["users"]) for st in s["steps"]] == [("baseline", 3), ("ramp", 6)]
    config = json.loads((out / "config.json").read_text())
    t0 = config["started_at"]
    first, last = s["steps"]
    assert len([r for r in records if r["start"] - t0 < first["end_s"]]) == first["requests"] > 0
    assert len([r for r in records if r["start"] - t0 >= last["start_s"]]) == last["requests"] > 0
    starts = [e for e in lines(out / "events.jsonl") if e["kind"] == "step_start"]
    assert [round(e["t"], 3) for e in starts] == [st["start_s"] for st in s["steps"]]
    itl = [gap for r in records for gap in r["itl_ms"]]
    assert len(itl) == 11 * len(records)
    assert s["overall"]["itl_ms"]["p50"] > 0
    # the twin's own view lands in the timeline, and its GPU nodes price the run
    timeline = lines(out / "timeline.jsonl")
    assert any(t.get("replicas") == 1 and "kv_usage" in t for t in timeline)
    assert any(t.get("desired_replicas") == 1 and t.get("nodes") == 1 for t in timeline)
    assert config["target"]["kind"] == "fleet" and s["cost"]["gpu"] == "L40S"
    # config.json is what the typed reader reads, with the flags as given
    stored = RunConfig.from_file(config)
    assert stored.schema_version == SCHEMA_VERSION and stored.options is not None
    assert (stored.options.plan, stored.options.workers, stored.options.step_duration) == (
        "ramp",
        2,
        3.0,
    )
    assert stored.options.api_key_env == "QWEN_STRESS_TEST_KEY"
    for name in ("report.html", "report.md"):
        assert (out / name).stat().st_size > 0
    for path in out.rglob("*"):
        if path.is_file():
            assert b"sk-never-written-7f3a" not in path.read_bytes(), path
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", int(config["target"]["url"].rsplit(":", 1)[1])), 1)


def test_target_down_counts_failures_and_still_reports(tmp_path: Path) -> None:
    out = tmp_path / "down"
    url = f"http://127.0.0.1:{free_port()}"
    done = run(
        out, "--url", url, "--model", "m", "--users", "2", "--duration", "2s", "--fail-on-slo"
    )
    assert done.returncode == 1, done.stderr
    s = summary(out)
    assert s["overall"]["requests"] == len(lines(out / "requests.jsonl")) > 0
    assert s["overall"]["failures_by_reason"] == {"connection": s["overall"]["requests"]}
    assert s["verdict"]["pass"] is False
    assert (out / "report.html").exists()
    assert "connection" in (out / "report.md").read_text()


def _wait_for_records(out: Path, count: int) -> None:
    deadline = time.monotonic() + 60
    while len(lines(out / "requests.jsonl")) < count:
        assert time.monotonic() < deadline, "no records arrived"
        time.sleep(0.2)


def _workers(pid: int) -> list[psutil.Process]:
    children = psutil.Process(pid).children()
    return [p for p in children if "loadtest.worker" in " ".join(p.cmdline())]


def test_killed_worker_is_reported_and_the_run_goes_on(
    server: FixedLatencyTarget, tmp_path: Path
) -> None:
    out = tmp_path / "kill"
    args = ["--url", server.base_url, "--model", "m", "--users", "4", "--duration", "10s"]
    process = subprocess.Popen(
        command(out, *args, "--workers", "2", "--max-tokens", "8"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _wait_for_records(out, 20)
    workers = _workers(process.pid)
    assert len(workers) == 2
    victim = workers[0]
    victim.kill()
    killed_at = time.time()
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    s = summary(out)
    lost = [e for e in s["events"] if e["kind"] == "worker_lost"]
    assert len(lost) == 1 and lost[0]["pid"] == victim.pid
    records = lines(out / "requests.jsonl")
    survivor = {r["worker"] for r in records} - {lost[0]["worker"]}
    assert any(r["start"] > killed_at + 1 and r["worker"] in survivor for r in records)
    assert s["overall"]["requests"] == len(records)
    assert "was lost" in (out / "report.md").read_text()


def test_interrupted_run_is_still_reported(server: FixedLatencyTarget, tmp_path: Path) -> None:
    out = tmp_path / "int"
    args = ["--url", server.base_url, "--model", "m", "--users", "3", "--duration", "60s"]
    process = subprocess.Popen(
        command(out, *args, "--workers", "1"), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    _wait_for_records(out, 10)
    workers = _workers(process.pid)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    s = summary(out)
    assert s["interrupted"] is True
    assert s["overall"]["requests"] == len(lines(out / "requests.jsonl")) >= 10
    assert s["duration_s"] < 60
    assert "cut short" in (out / "report.md").read_text()
    assert workers and not any(w.is_running() and w.status() != "zombie" for w in workers)


def test_open_loop_counts_arrivals_and_drops(server: FixedLatencyTarget, tmp_path: Path) -> None:
    out = tmp_path / "poisson"
    args = ["--url", server.base_url, "--model", "m", "--plan", "poisson", "--rate", "30"]
    args += ["--step-duration", "3s", "--workers", "1", "--max-tokens", "8", "--max-inflight", "1"]
    done = run(out, *args, "--hourly-usd", "3.6")
    assert done.returncode == 0, done.stderr
    s = summary(out)
    records = lines(out / "requests.jsonl")
    assert s["steps"][0]["rate"] == 30 and s["steps"][0]["users"] is None
    # the endpoint's own price, $3.60 an hour: a tenth of a cent per second of the step
    step = s["steps"][0]
    assert s["cost"]["method"] == "hourly"
    assert s["cost"]["usd"] == pytest.approx((step["end_s"] - step["start_s"]) / 1000, abs=2e-6)
    assert all(r["late_ms"] is not None for r in records)
    arrivals = s["open_loop"]
    # 30 arrivals/s against ~90 ms requests with one request allowed in flight: some must drop
    assert arrivals["dropped"] > 0
    assert arrivals["arrivals"] == len(records) + arrivals["dropped"]
    assert "dropped" in (out / "report.md").read_text()
