"""A Locust worker process: runs the LLM users and ships their records to the master.

Started as ``python -m loadtest.worker --master-host H --master-port P --user-class C`` with the
user settings (workload, model, the *name* of the API-key variable) as JSON on its standard
input: a workload of prompts can be megabytes, more than one environment variable or argument
may hold (128 KiB on Linux). Records go to the master in batches every half second over
Locust's custom messages, with this process's CPU use and open requests, so the master can
write ``requests.jsonl`` as the run goes and flag a worker too busy to measure well.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, TextIO, cast

import gevent
from locust.env import Environment
from locust.runners import WorkerRunner

from loadtest.llm_user import ArrivalUser, InFlight, LLMClientUser, LLMUser, UserSettings
from loadtest.records import RecordBatch, RecordDict, RequestRecord
from loadtest.redact import RedactingWriter, Redactor

RECORDS_MESSAGE = "qwen_stress_records"
RATE_MESSAGE = "qwen_stress_rate"
FLUSH_INTERVAL_S = 0.5
USER_CLASSES: dict[str, type[LLMClientUser]] = {"LLMUser": LLMUser, "ArrivalUser": ArrivalUser}


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


def main() -> None:
    """Connect to the master and serve until it says quit."""
    parser = argparse.ArgumentParser(description="qwen-stress Locust worker")
    parser.add_argument("--master-host", default="127.0.0.1")
    parser.add_argument("--master-port", type=int, required=True)
    parser.add_argument("--user-class", choices=sorted(USER_CLASSES), default="LLMUser")
    args = parser.parse_args()
    settings = UserSettings.model_validate_json(sys.stdin.buffer.read())
    redactor = Redactor.from_env(settings.api_key_env)
    if redactor:
        # This process's output is its log file: whatever a library prints (a traceback that
        # quotes a header, say) passes the same redactor as the records.
        sys.stdout = cast(TextIO, RedactingWriter(sys.stdout, redactor))
        sys.stderr = cast(TextIO, RedactingWriter(sys.stderr, redactor))
    user_class = USER_CLASSES[args.user_class]
    shipper = RecordShipper()
    user_class.configure(settings, shipper)
    env = Environment(user_classes=[user_class])
    runner = env.create_worker_runner(args.master_host, args.master_port)
    shipper.runner = runner
    runner.register_message(RATE_MESSAGE, _on_rate)
    # Records of the last half second leave before Locust tells the master this worker stopped.
    env.events.test_stop.add_listener(lambda **_kw: shipper.flush())  # type: ignore[no-untyped-call]
    runner.greenlet.spawn(shipper.run)
    runner.greenlet.join()


if __name__ == "__main__":
    main()
