"""The master's side of the record stream: write every record as it arrives, keep live figures.

Workers send batches (``loadtest.worker``); each batch is appended to ``requests.jsonl`` at
once, so a crash of the runner loses at most the batches in flight. The collector also keeps
what the live line, the timeline and the capacity plan's step verdicts need: a short window
of recent completions, each worker's CPU and open requests, and the records of the step in
progress.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from loadtest import analysis
from loadtest.records import RecordBatch, RequestRecord
from loadtest.run_files import JsonlWriter
from loadtest.schema import ClientWindow, LoadCounters
from loadtest.slo import Slo

_WINDOW_PERCENTILES = (50, 90, 99)


@dataclass
class WorkerVitals:
    """What the last batch from one worker said about it."""

    pid: int
    cpu: float = 0.0
    arrivals: int = 0
    dropped: int = 0
    late: int = 0
    lost: bool = False
    open: list[tuple[float, float | None]] = field(default_factory=list)
    """``(send time, TTFT ms or None)`` of its open requests, as of the last batch."""
    open_at: float = 0.0
    """Wall-clock time of that snapshot."""

    @property
    def inflight(self) -> int:
        """Its requests open as of the last batch."""
        return len(self.open)


@dataclass(frozen=True)
class _Done:
    at: float
    ok: bool
    ttft_ms: float | None
    tokens: int


class Collector:
    """Receives record batches on the master."""

    def __init__(self, writer: JsonlWriter, t0: float) -> None:
        self.writer = writer
        self.t0 = t0
        self.workers: dict[int, WorkerVitals] = {}
        self.total = 0
        self.failed = 0
        self._recent: deque[_Done] = deque()
        self._step_records: list[RequestRecord] = []
        self._step_start_s = 0.0

    def on_message(self, msg: Any, **_kw: Any) -> None:
        """Locust custom-message handler (``environment`` and ``msg`` come as keywords)."""
        self.receive(msg.data)

    def receive(self, data: RecordBatch) -> None:
        """Take one batch: append its records, update the worker's vitals and the windows."""
        batch = data["records"]
        self.writer.write_many(batch)
        now = time.monotonic()
        self.workers[data["worker"]] = WorkerVitals(
            pid=data["pid"],
            cpu=data["cpu"],
            arrivals=data["arrivals"],
            dropped=data["dropped"],
            late=data["late"],
            open=[(float(s), t) for s, t in data["open"]],
            open_at=time.time(),
        )
        for raw in batch:
            record = RequestRecord.from_json(raw)
            self.total += 1
            self.failed += not record.ok
            self._recent.append(_Done(now, record.ok, record.ttft_ms, record.output_tokens or 0))
            if record.start - self.t0 >= self._step_start_s:
                self._step_records.append(record)
        horizon = now - 30.0
        while self._recent and self._recent[0].at < horizon:
            self._recent.popleft()

    def begin_step(self, start_s: float) -> None:
        """Start collecting the records of a new step (sent at or after ``start_s``)."""
        self._step_start_s = start_s
        self._step_records = []

    def step_passes(self, slo: Slo, duration_s: float) -> bool:
        """The live SLO verdict of the step in progress.

        Finished requests count as recorded. Requests still open count too, with their TTFT if
        their first token came, else with the time they have waited so far (a lower bound):
        the requests a saturated server keeps queued are the ones the verdict must not miss.
        """
        pending = []
        for vitals in self.workers.values():
            for start, ttft in vitals.open:
                if start - self.t0 < self._step_start_s:
                    continue
                waited = ttft if ttft is not None else (vitals.open_at - start) * 1000.0
                pending.append(RequestRecord(start, True, "open", "", ttft_ms=waited))
        return slo.passes(analysis.stats(self._step_records + pending, duration_s, slo))

    def window(self, seconds: float) -> ClientWindow:
        """RPS, error rate, output tokens/s and TTFT percentiles over the last ``seconds``."""
        since = time.monotonic() - seconds
        done = [d for d in self._recent if d.at >= since]
        ok = [d for d in done if d.ok]
        ttft = np.array([d.ttft_ms for d in ok if d.ttft_ms is not None], dtype=np.float64)
        p50, p90, p99 = (
            (round(float(v), 1) for v in np.percentile(ttft, _WINDOW_PERCENTILES))
            if ttft.size
            else (None, None, None)
        )
        return ClientWindow(
            rps=round(len(ok) / seconds, 3),
            error_rate=round((len(done) - len(ok)) / len(done), 4) if done else 0.0,
            output_tokens_per_s=round(sum(d.tokens for d in ok) / seconds, 1),
            ttft_p50_ms=p50,
            ttft_p90_ms=p90,
            ttft_p99_ms=p99,
        )

    def forget(self, worker: int) -> None:
        """A worker is gone: its open requests died with it; keep its counters."""
        vitals = self.workers.get(worker)
        if vitals is not None:
            vitals.lost = True
            vitals.open = []

    def worker_of_pid(self, pid: int) -> int | None:
        """The Locust worker index of a worker process, once it has sent a batch."""
        return next((i for i, w in self.workers.items() if w.pid == pid), None)

    def vitals(self) -> LoadCounters:
        """Sum of open requests and open-loop counters, and CPU per live worker."""
        workers = self.workers.values()
        return LoadCounters(
            inflight=sum(w.inflight for w in workers),
            worker_cpu={str(i): w.cpu for i, w in sorted(self.workers.items()) if not w.lost},
            arrivals=sum(w.arrivals for w in workers),
            dropped=sum(w.dropped for w in workers),
            late=sum(w.late for w in workers),
        )
