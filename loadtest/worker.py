"""A Locust worker process: runs the LLM users and ships their records to the master.

Started as ``python -m loadtest.worker --master-host H --master-port P --user-class C`` with the
user settings (workload, model, the *name* of the API-key variable) as JSON on its standard
input: a workload of prompts can be megabytes, more than one environment variable or argument
may hold (128 KiB on Linux). Records go to the master in batches every half second over
Locust's custom messages, with this process's CPU use and open requests, so the master can
write ``requests.jsonl`` as the run goes and flag a worker too busy to measure well.

A worker stops on its own when nobody is left to report to: started by a local runner, when
that process is gone (``domain.lifeline``); in the load-test stack, when the master has sent
no heartbeat for ``MASTER_GONE_S`` (it exits with ``EXIT_MASTER_GONE``, so its Job ends).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, TextIO, cast

import gevent
from locust import runners
from locust.env import Environment
from locust.runners import WorkerRunner

from domain import lifeline
from loadtest.llm_user import ArrivalUser, InFlight, LLMClientUser, LLMUser, UserSettings
from loadtest.records import RecordBatch, RecordDict, RequestRecord
from loadtest.redact import RedactingWriter, Redactor

RECORDS_MESSAGE = "qwen_stress_records"
RATE_MESSAGE = "qwen_stress_rate"
FLUSH_INTERVAL_S = 0.5
USER_CLASSES: dict[str, type[LLMClientUser]] = {"LLMUser": LLMUser, "ArrivalUser": ArrivalUser}
MASTER_GONE_S = 30
"""No heartbeat from the master for this long and the worker quits (Locust's default is 60 s of
load on a target nobody measures any more). The master sends one every second."""
EXIT_MASTER_GONE = 3
LEAVE_AFTER_STOP_S = 1.0
"""After the run's stop, time for the worker's last messages to reach the master."""


class RecordShipper:
    """Buffers records and sends them to the master with the worker's vital signs."""

    def __init__(self) -> None:
        self.buffer: list[RecordDict] = []
        self.runner: WorkerRunner | None = None
        self._cpu_at = time.process_time()
        self._wall_at = time.monotonic()

    def add(self, record: RequestRecord) -> None:
        """Queue one record for the next batch."""
        self.buffer.append(record.to_json())

    def _cpu_pct(self) -> float:
        cpu, wall = time.process_time(), time.monotonic()
        pct = (cpu - self._cpu_at) / max(wall - self._wall_at, 1e-6) * 100.0
        self._cpu_at, self._wall_at = cpu, wall
        return round(pct, 1)

    def flush(self) -> None:
        """Send what is buffered (possibly nothing: the message doubles as telemetry)."""
        runner = self.runner
        if runner is None:
            return
        batch, self.buffer = self.buffer, []
        index = runner.worker_index
        for record in batch:
            record["worker"] = index
        message = RecordBatch(
            worker=index,
            pid=os.getpid(),
            records=batch,
            cpu=self._cpu_pct(),
            open=InFlight.snapshot(),
            arrivals=ArrivalUser.arrivals,
            dropped=ArrivalUser.dropped,
            late=ArrivalUser.late,
        )
        runner.send_message(RECORDS_MESSAGE, dict(message))

    def run(self) -> None:
        """Flush forever (a greenlet of the worker runner, killed with it)."""
        while True:
            gevent.sleep(FLUSH_INTERVAL_S)
            self.flush()


def _on_rate(environment: Environment, msg: Any, **_kw: Any) -> None:
    ArrivalUser.rate_per_user = float(msg.data["rate_per_user"])
    ArrivalUser.max_inflight = int(msg.data["max_inflight"])


def redact_output(api_key_env: str | None) -> None:
    """Pass this process's output (its log) through the key's redactor, from now on.

    Whatever a library prints (a traceback that quotes a header, say) then passes the same
    redactor as the records. Call it before logging is configured: a handler keeps the stream
    it was given.
    """
    redactor = Redactor.from_env(api_key_env)
    if redactor:
        sys.stdout = cast(TextIO, RedactingWriter(sys.stdout, redactor))
        sys.stderr = cast(TextIO, RedactingWriter(sys.stderr, redactor))


def run_worker(
    settings: UserSettings, master_host: str, master_port: int, user_class_name: str
) -> int:
    """Serve the master until it says quit (0) or goes silent (``EXIT_MASTER_GONE``)."""
    runners.MASTER_HEARTBEAT_TIMEOUT = MASTER_GONE_S
    user_class = USER_CLASSES[user_class_name]
    shipper = RecordShipper()
    user_class.configure(settings, shipper)
    env = Environment(user_classes=[user_class])
    runner = env.create_worker_runner(master_host, master_port)
    shipper.runner = runner
    runner.register_message(RATE_MESSAGE, _on_rate)

    def stopped(**_kw: Any) -> None:
        # Records of the last half second leave before Locust tells the master this worker
        # stopped. The master stops the users only when the run ends, so the worker then leaves:
        # Locust's own worker would sit out ``stop_timeout`` (30 s) before it even reads a quit.
        shipper.flush()
        gevent.spawn_later(LEAVE_AFTER_STOP_S, runner.quit)

    env.events.test_stop.add_listener(stopped)  # type: ignore[no-untyped-call]
    runner.greenlet.spawn(shipper.run)
    runner.greenlet.join()
    last = runner.last_heartbeat_timestamp
    if last is not None and last < time.time() - MASTER_GONE_S:
        print(f"the master sent no heartbeat for {MASTER_GONE_S} s: stopping", flush=True)
        return EXIT_MASTER_GONE
    return 0


def main() -> None:
    """Connect to the master and serve until it says quit (a local run's worker)."""
    lifeline.hold()
    parser = argparse.ArgumentParser(description="qwen-stress Locust worker")
    parser.add_argument("--master-host", default="127.0.0.1")
    parser.add_argument("--master-port", type=int, required=True)
    parser.add_argument("--user-class", choices=sorted(USER_CLASSES), default="LLMUser")
    args = parser.parse_args()
    settings = UserSettings.model_validate_json(sys.stdin.buffer.read())
    redact_output(settings.api_key_env)
    raise SystemExit(run_worker(settings, args.master_host, args.master_port, args.user_class))


if __name__ == "__main__":
    main()
