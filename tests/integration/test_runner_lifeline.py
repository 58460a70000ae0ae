"""A local run's children do not outlive it, and a closed terminal stops it like Ctrl-C.

The runner starts its workers and the twin in sessions of their own (Ctrl-C reaches only the
runner), so only their lifeline (``domain.lifeline``) can stop them when the runner is
SIGKILLed. SIGHUP, what a closed terminal sends, must end the run as SIGINT does: the workers
stop, the report is written, ``finished`` is the last event, exit code 130 (README).
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

import psutil
import pytest

from domain.vllm_args import API_KEY_ENV
from loadtest.cloud import contract
from loadtest.targets import FixedLatencyTarget, free_port
from tests.loadtest_specs import run_payload

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXIT_INTERRUPTED = 130  # README: "still writes the report of what ran, exit code 130"


@pytest.fixture(scope="module")
def server() -> Iterator[FixedLatencyTarget]:
    target = FixedLatencyTarget(50.0, 5.0)
    target.start()
    yield target
    target.stop()


def start(out: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "loadtest.cli", "run", "--out", str(out), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "QWEN_STRESS_TEST_KEY": "sk-lifeline-test-4d1e"},
    )


def lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def wait_for_records(out: Path, process: subprocess.Popen[str], count: int) -> None:
    deadline = time.monotonic() + 90
    while len(lines(out / "requests.jsonl")) < count:
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, "no records arrived"
        time.sleep(0.2)


def test_a_sigkilled_runner_leaves_no_worker_or_twin_behind(tmp_path: Path) -> None:
    out = tmp_path / "killed"
    args = ["--model", "Qwen/Qwen2.5-0.5B-Instruct", "--gpu", "L40S", "--users", "4"]
    args += ["--duration", "120s", "--workers", "2", "--max-tokens", "8"]
    process = start(out, *args)
    try:
        wait_for_records(out, process, 10)
        children = psutil.Process(process.pid).children(recursive=True)
        commands = [" ".join(c.cmdline()) for c in children]
        assert sum("loadtest.worker" in c for c in commands) == 2, commands
        assert any("loadtest.cli fleet" in c for c in commands), commands  # the twin
        process.kill()
        process.wait()
        killed = time.monotonic()
        gone, alive = psutil.wait_procs(children, timeout=15)
        assert alive == [], [" ".join(p.cmdline()) for p in alive]
        # The workers go at once (the kernel's death signal); the twin drains its replicas.
        assert time.monotonic() - killed < 15
        assert len(gone) == len(children)
    finally:
        for leftover in psutil.Process().children(recursive=True):
            if leftover.pid != process.pid and "loadtest" in " ".join(leftover.cmdline()):
                leftover.kill()
        if process.poll() is None:
            process.kill()


def test_sighup_stops_a_local_run_like_ctrl_c(server: FixedLatencyTarget, tmp_path: Path) -> None:
    out = tmp_path / "hup"
    args = ["--url", server.base_url, "--model", "m", "--users", "3", "--duration", "60s"]
    process = start(out, *args, "--workers", "2", "--max-tokens", "8")
    wait_for_records(out, process, 10)
    workers = [
        p
        for p in psutil.Process(process.pid).children()
        if "loadtest.worker" in " ".join(p.cmdline())
    ]
    process.send_signal(signal.SIGHUP)
    _, err = process.communicate(timeout=90)
    assert process.returncode == EXIT_INTERRUPTED, err
    assert "interrupted" in err
    events = lines(out / "events.jsonl")
    assert events[-1]["kind"] == "finished" and events[-1]["interrupted"] is True
    assert "SIGHUP" in events[-1]["stop_reason"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True and summary["duration_s"] < 60
    assert summary["overall"]["requests"] == len(lines(out / "requests.jsonl")) >= 10
    assert "cut short" in (out / "report.md").read_text()
    assert len(workers) == 2
    assert not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers)


POD_PARENT = """
import json, os, subprocess, sys, time
from domain import lifeline
pod = subprocess.Popen(
    [sys.executable, "-m", "loadtest.pod", sys.argv[1]],
    env={**json.loads(sys.argv[2]), **lifeline.child_env()},
    start_new_session=True,  # as the rehearsal starts its pods: Ctrl-C does not reach them
)
print(pod.pid, flush=True)
time.sleep(120)
"""


def test_a_rehearsal_master_pod_whose_parent_is_sigkilled_stops(tmp_path: Path) -> None:
    """A master that failed its pre-flight waits up to 10 minutes for the CLI to collect its
    files: with the CLI gone, nobody will, and it must not wait."""
    (tmp_path / "run.json").write_text(run_payload().model_dump_json())
    api_port = free_port()
    env = {
        "PATH": os.environ["PATH"],
        contract.ENV_RUN_ID: "r1",
        contract.ENV_PAYLOAD: str(tmp_path / "run.json"),
        contract.ENV_VLLM_URL: "http://127.0.0.1:9/v1",  # nothing there: the pre-flight fails
        contract.ENV_MODEL: "Qwen/Qwen2.5-7B-Instruct-AWQ",
        contract.ENV_MASTER_PORT: str(free_port()),
        contract.ENV_WORKERS: "2",
        contract.ENV_API_PORT: str(api_port),
        contract.ENV_BIND_HOST: "127.0.0.1",
        contract.ENV_PROMETHEUS_URL: "http://127.0.0.1:9",
        contract.ENV_RUN_DIR: str(tmp_path / "run"),
        API_KEY_ENV: "sk-lifeline-pod-5e2a",
    }
    parent = subprocess.Popen(
        [sys.executable, "-c", POD_PARENT, "master", json.dumps(env)],
        stdout=subprocess.PIPE,
        text=True,
    )
    master = psutil.Process(int(parent.stdout.readline()))  # type: ignore[union-attr]
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the master answers: its pre-flight is done
            try:
                with socket.create_connection(("127.0.0.1", api_port), timeout=1):
                    break
            except OSError:
                time.sleep(0.2)
        time.sleep(1.0)
        assert master.is_running()
        parent.kill()
        parent.wait()
        killed = time.monotonic()
        master.wait(timeout=15)
        assert time.monotonic() - killed < 15  # not the 600 s it would wait for the CLI
    finally:
        if master.is_running():
            master.kill()
