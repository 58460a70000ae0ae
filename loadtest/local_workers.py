"""Locust worker processes on this machine, for a local run's ``PlanRun``.

Each worker is ``python -m loadtest.worker``, its user settings on standard input, in a
session of its own (Ctrl-C in the terminal
reaches only the runner, which stops them in order) and holds a lifeline to the runner
(``domain.lifeline``): if the runner dies without stopping them (SIGKILL, OOM), they stop too
instead of loading the target with nobody listening.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import gevent

from domain import lifeline
from loadtest.llm_user import UserSettings
from loadtest.plan_run import ExitedWorker

STOP_WAIT_S = 5.0


class LocalWorkers:
    """``count`` worker processes, their logs under ``log_dir``."""

    def __init__(self, count: int, settings: UserSettings, log_dir: Path) -> None:
        self.count = count
        self.settings = settings
        self.log_dir: Path | None = log_dir
        self.processes: list[subprocess.Popen[bytes]] = []
        self._logs: list[IO[bytes]] = []
        self._reported: set[int] = set()

    def start(self, master_host: str, master_port: int, user_class: str) -> None:
        """Start the processes; they connect to the master at ``master_host:master_port``."""
        env = {**os.environ, **lifeline.child_env()}
        assert self.log_dir is not None
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for i in range(self.count):
            log = (self.log_dir / f"worker-{i}.log").open("wb")
            self._logs.append(log)
            command = [sys.executable, "-m", "loadtest.worker", "--master-host", master_host]
            command += ["--master-port", str(master_port), "--user-class", user_class]
            self.processes.append(
                subprocess.Popen(
                    command,
                    env=env,
                    stdin=subprocess.PIPE,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        # On standard input, not in the environment: a workload can be megabytes. Written once
        # every worker is starting, so a large one is read by all of them in parallel.
        payload = self.settings.model_dump_json().encode()
        for process in self.processes:
            assert process.stdin is not None
            try:
                process.stdin.write(payload)
                process.stdin.close()
            except BrokenPipeError:
                pass  # it died at start: the plan run reports its exit code and log

    def exited(self) -> list[ExitedWorker]:
        """Processes that ended since the last call."""
        out = []
        for process in self.processes:
            code = process.poll()
            if code is not None and process.pid not in self._reported:
                self._reported.add(process.pid)
                out.append(ExitedWorker(process.pid, code))
        return out

    def any_alive(self) -> bool:
        """Whether a worker process still runs."""
        return any(p.poll() is None for p in self.processes)

    def stop(self) -> None:
        """SIGTERM what still runs, SIGKILL what is left after ``STOP_WAIT_S``; close the logs."""
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + STOP_WAIT_S
        for process in self.processes:
            while process.poll() is None and time.monotonic() < deadline:
                gevent.sleep(0.05)
            if process.poll() is None:
                process.kill()
                process.wait()
        for log in self._logs:
            log.close()

    def kill(self) -> None:
        """SIGKILL every worker now."""
        for process in self.processes:
            if process.poll() is None:
                process.kill()
