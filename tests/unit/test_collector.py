"""The master's collector: records written as they arrive, live windows, live step verdicts."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from loadtest.collector import Collector
from loadtest.records import RecordBatch, RequestRecord
from loadtest.run_files import JsonlWriter
from loadtest.slo import Slo


def batch(
    worker: int, records: list[RequestRecord], open: list[tuple[float, Any]] | None = None
) -> RecordBatch:
    return RecordBatch(
        worker=worker,
        pid=100 + worker,
        records=[r.to_json() for r in records],
        cpu=12.5,
        open=open or [],
        arrivals=0,
        dropped=0,
        late=0,
    )


def fast(start: float) -> RequestRecord:
    return RequestRecord(start, True, "t", "chat", ttft_ms=100.0, e2e_ms=500.0, output_tokens=5)


def test_batches_are_appended_as_they_arrive(tmp_path: Path) -> None:
    t0 = time.time()
    writer = JsonlWriter(tmp_path / "requests.jsonl")
    collector = Collector(writer, t0)
    collector.receive(batch(0, [fast(t0 + 1), fast(t0 + 2)]))
    collector.receive(batch(1, [fast(t0 + 3)]))
    lines = (tmp_path / "requests.jsonl").read_text().splitlines()
    assert [json.loads(line)["start"] for line in lines] == [t0 + 1, t0 + 2, t0 + 3]
    assert collector.total == 3
    assert collector.vitals().worker_cpu == {"0": 12.5, "1": 12.5}
    assert collector.worker_of_pid(101) == 1
    collector.forget(1)
    assert collector.vitals().worker_cpu == {"0": 12.5}
    window = collector.window(10.0)
    assert window.rps == 0.3 and window.ttft_p50_ms == 100.0


def test_live_verdict_counts_requests_still_waiting(tmp_path: Path) -> None:
    t0 = time.time() - 30.0
    collector = Collector(JsonlWriter(tmp_path / "requests.jsonl"), t0)
    collector.begin_step(10.0)
    finished = [fast(t0 + 10 + i * 0.1) for i in range(20)]
    collector.receive(batch(0, finished))
    assert collector.step_passes(Slo(), 20.0)
    # five requests sent 15 s ago have not seen a token: a queue the finished ones do not show
    waiting = [(t0 + 15.0, None)] * 5
    collector.receive(batch(0, [], open=waiting))
    assert not collector.step_passes(Slo(), 20.0)
    assert collector.vitals().inflight == 5
    # requests still open from before the step do not count against it
    collector.receive(batch(0, [], open=[(t0 + 1.0, None)] * 5))
    assert collector.step_passes(Slo(), 20.0)
    collector.forget(0)
    assert collector.vitals().inflight == 0
