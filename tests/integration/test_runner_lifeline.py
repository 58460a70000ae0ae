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
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from loadtest.targets import FixedLatencyTarget

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
