"""A run with ``--prometheus`` against the twin: the cluster's side of a cloud run, end to end.

``qwen-stress fleet`` stands in for the cluster and its Prometheus (it answers the PromQL the
cluster target sends); ``qwen-stress run --url ... --prometheus ... --config ...`` loads it.
While the run goes, this test polls the twin's ``/fleet/status`` ten times a second; a field
that stayed the same in every poll around a timeline sample must read the same in it, and the
scaling figures must come out of the Prometheus timeline as they do for a twin run.
"""

from __future__ import annotations

import bisect
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from loadtest.targets import free_port
from tests.pulumi_mocks import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]

COUNTS = (
    "desired_replicas", "ready_replicas", "pending_replicas", "terminating_replicas", "nodes",
    "ready_nodes", "gpus",
)  # fmt: skip
KEY = "sk-prometheus-path-test"


def _stack(tmp: Path) -> Path:
    """The dev stack, served under its checkpoint's name (the twin's replicas use that name)."""
    data = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())
    data["config"]["qwen-stress:model"].pop("servedName", None)
    path = tmp / "Pulumi.it.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _status(url: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(url + "/fleet/status", timeout=2) as response:
            data: dict[str, Any] = json.loads(response.read())
            return data
    except OSError:
        return None


def test_a_prometheus_run_records_what_the_twin_reports(tmp_path: Path) -> None:
    stack = _stack(tmp_path)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "VLLM_API_KEY": KEY, "QWEN_STRESS_IT_KEY": KEY}
    fleet = subprocess.Popen(
        [sys.executable, "-m", "loadtest.cli", "fleet", "--config", str(stack),
         "--time-scale", "0.005", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    polls: list[tuple[float, dict[str, Any]]] = []
    done = threading.Event()

    def poll() -> None:
        while not done.wait(0.1):
            status = _status(url)
            if status is not None:
                polls.append((time.time(), status))

    try:
        deadline = time.monotonic() + 60
        while _status(url) is None:
            assert fleet.poll() is None, fleet.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "the twin did not start"
            time.sleep(0.2)
        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        out = tmp_path / "run"
        # Cluster time: 20-minute steps of 4 then 40 users (one replica carries 24), a settle and
        # a cool-down; 0.005 makes each step 6 s, and the twin runs at the same scale.
        args = ["--url", url, "--prometheus", url, "--config", str(stack)]
        args += ["--api-key-env", "QWEN_STRESS_IT_KEY", "--plan", "capacity"]
        args += ["--time-scale", "0.005", "--baseline-users", "4", "--step-users", "36"]
        args += ["--max-users", "40", "--soak", "0s", "--step-duration", "20m"]
        args += ["--workers", "1", "--max-tokens", "16", "--out", str(out)]
        run = subprocess.run(
            [sys.executable, "-m", "loadtest.cli", "run", *args],
            env=env, capture_output=True, text=True, timeout=240, check=False,
        )  # fmt: skip
        done.set()
        poller.join(5)
    finally:
        done.set()
        fleet.send_signal(signal.SIGINT)
        try:
            fleet.wait(60)
        except subprocess.TimeoutExpired:
            fleet.kill()
            fleet.wait()
    assert run.returncode == 0, run.stderr[-3000:]
    assert "one pod" not in run.stderr  # not the per-pod note: the fleet comes from Prometheus

    config = json.loads((out / "config.json").read_text())
    assert config["target"]["fleet_metrics"]["source"] == "prometheus"
    t0 = float(config["started_at"])
    timeline = [json.loads(line) for line in (out / "timeline.jsonl").read_text().splitlines()]
    samples = [s for s in timeline if "ready_replicas" in s]
    assert len(samples) >= 10 and not any("target_poll_error" in s for s in timeline)
    assert max(s["ready_replicas"] for s in samples) >= 2  # it scaled out: figures that move

    # A field steady in every status poll around a sample (taken at ``t``, its queries within
    # the next second or so) must read exactly that in the sample.
    times = [at for at, _ in polls]
    compared = 0
    for sample in samples:
        at = t0 + sample["t"]
        around = [st for pt, st in polls[bisect.bisect_left(times, at - 1.0) :] if pt <= at + 2.0]
        for field in COUNTS:
            seen = {st[field] for st in around}
            if len(around) >= 5 and len(seen) == 1:
                assert sample[field] == seen.pop(), (field, sample["t"])
                compared += 1
    assert compared >= len(samples) * len(COUNTS) // 2, (compared, len(samples))

    # GPU- and replica-hours spent during the run, as the twin counted them.
    first, last = samples[0], samples[-1]

    def status_at(field: str, at: float) -> float:
        j = min(max(bisect.bisect_left(times, at), 1), len(polls) - 1)
        (ta, a), (tb, b) = polls[j - 1], polls[j]
        share = (at - ta) / (tb - ta) if tb > ta else 0.0
        return float(a[field]) + (float(b[field]) - float(a[field])) * share

    for field in ("gpu_hours", "replica_hours"):
        spent = last[field] - first[field]
        expected = status_at(field, t0 + last["t"]) - status_at(field, t0 + first["t"])
        assert spent == pytest.approx(expected, rel=0.05, abs=0.02), field

    summary = json.loads((out / "summary.json").read_text())
    scaled = summary["autoscaling"]
    assert scaled is not None and scaled["scale_up_lag_s"]["count"] >= 1
    assert scaled["gpu_hours"] >= scaled["replica_hours"] > 0
    assert summary["cost"]["gpu_hours"] == scaled["gpu_hours"]
    assert summary["overall"]["failures"] == 0
