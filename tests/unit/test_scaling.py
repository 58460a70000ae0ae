"""Autoscaling figures from a timeline: scale-outs and their lag, SLO violation, hours, reports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from domain.vllm_metrics import RUNNING, WAITING
from loadtest import run_files, scaling, summary
from loadtest.records import RequestRecord
from loadtest.schema import (
    AutoscalingInfo,
    AutoscalingTrigger,
    FleetTargetInfo,
    TimelineSample,
    UrlTargetInfo,
)
from loadtest.slo import Slo

T0 = 1_700_000_000.0
SCALE = 0.05
TARGET = FleetTargetInfo(
    url="http://127.0.0.1:1",
    model="Qwen/Qwen2.5-7B-Instruct-AWQ",
    gpu="T4",
    instance_type="g4dn.xlarge",
    replicas=1,
    gpus_per_replica=1,
    time_scale=SCALE,
    autoscaling=AutoscalingInfo(
        max_replicas=3,
        triggers={
            "waiting": AutoscalingTrigger(metric=WAITING, target_per_replica=4),
            "running": AutoscalingTrigger(metric=RUNNING, target_per_replica=24),
        },
    ),
)


def sample(t: float, ready: int, running: float, queue: float = 0.0, **kw: Any) -> TimelineSample:
    return TimelineSample(t=t, ready_replicas=ready, running=running, queue=queue, **kw)


def rec(at: float, ttft_ms: float) -> RequestRecord:
    return RequestRecord(T0 + at, True, "t", "chat", ttft_ms=ttft_ms, e2e_ms=ttft_ms + 100)


def figures(timeline: list[TimelineSample], records: list[RequestRecord]) -> dict[str, Any]:
    out = scaling.figures(
        timeline,
        records,
        t0=T0,
        slo=Slo(),
        target=TARGET,
        window=(0.0, 1000.0),
        time_scale=SCALE,
    )
    assert out is not None
    data: dict[str, Any] = out.model_dump()
    return data


def test_a_scale_out_lasts_from_the_crossing_to_a_new_replica_serving() -> None:
    timeline = [sample(0, 1, 10), sample(2, 1, 40), sample(4, 1, 40), sample(6, 2, 40)]
    # 40 running on 2 replicas is 20 each, under 24: the metric is back under its target.
    timeline += [sample(8, 2, 40), sample(10, 2, 90), sample(12, 3, 90), sample(14, 3, 150)]
    out = figures(timeline, [])
    assert [(e["start_s"], e["end_s"], e["outcome"]) for e in out["scale_outs"]] == [
        (2, 6, "served"),
        (10, 12, "served"),
    ]
    # at maxReplicas no new replica can come: 150 running on 3 opens no scale-out
    assert out["scale_up_lag_s"] == {"count": 2, "median": 60.0, "max": 80.0}
    assert out["scale_out_s"] == 120.0
    assert out["replicas"] == {"min": 1, "max": 3, "max_desired": 0}


def test_a_burst_between_samples_shows_in_the_hpa_asking_for_more() -> None:
    # 30 running on 2 replicas is under the target; a queue burst the samples missed was not.
    timeline = [sample(0, 2, 30, desired_replicas=2), sample(2, 2, 30, desired_replicas=3)]
    timeline += [sample(4, 2, 30, desired_replicas=3), sample(6, 3, 30, desired_replicas=3)]
    out = figures(timeline, [])
    assert [(e["start_s"], e["end_s"], e["outcome"]) for e in out["scale_outs"]] == [
        (2, 6, "served")
    ]


def test_the_queue_trigger_and_unresolved_scale_outs() -> None:
    # 10 waiting on one replica is above 4 x 1.1; the queue drains before a replica arrives.
    timeline = [sample(0, 1, 5, queue=10), sample(2, 1, 5, queue=10), sample(4, 1, 5, queue=1)]
    timeline += [sample(6, 1, 30), sample(8, 1, 30)]
    out = figures(timeline, [])
    assert [e["outcome"] for e in out["scale_outs"]] == ["metric fell back", "run ended"]
    assert out["scale_up_lag_s"]["count"] == 0
    assert all(e["lag_s"] is None for e in out["scale_outs"])


def test_slo_violation_counts_the_intervals_whose_requests_failed() -> None:
    timeline = [sample(t, 1, 40) for t in (0, 2, 4, 6)] + [sample(8, 2, 40)]
    records = [rec(0.5, 3000.0), rec(1.5, 200.0), rec(4.5, 200.0), rec(7.0, 2500.0)]
    # 0-2 s: p99 of 3000 and 200 ms fails; 2-4 s: no request sent; 4-6 s passes; 6-8 s fails
    assert figures(timeline, records)["slo_violation_during_scale_out_s"] == pytest.approx(80.0)


def test_hours_come_from_the_targets_counters_else_from_the_timeline() -> None:
    counted = [sample(0, 1, 0, gpu_hours=1.0, replica_hours=0.5, gpus=9)]
    counted += [sample(36, 1, 0, gpu_hours=3.5, replica_hours=2.0, gpus=9)]
    out = figures(counted, [])
    assert (out["gpu_hours"], out["replica_hours"]) == (2.5, 1.5)
    integrated = [sample(0, 1, 0, gpus=2), sample(18, 3, 0, gpus=4), sample(36, 3, 0, gpus=4)]
    out = figures(integrated, [])
    # 18 s x 2 GPUs + 18 s x 4 GPUs = 108 GPU-seconds of the run, 20 times that in cluster time
    assert out["gpu_hours"] == pytest.approx(108 / SCALE / 3600, abs=1e-4)
    assert out["replica_hours"] == pytest.approx((18 * 1 + 18 * 3) / SCALE / 3600, abs=1e-4)


def test_a_target_that_does_not_scale_has_no_figures() -> None:
    timeline = [TimelineSample(t=0.0, replicas=1), TimelineSample(t=2.0, replicas=1)]
    plain = UrlTargetInfo(url="http://127.0.0.1:1")
    kwargs: dict[str, Any] = {"t0": T0, "slo": Slo(), "window": (0.0, 9.0), "time_scale": 1.0}
    assert scaling.figures(timeline, [], target=plain, **kwargs) is None


def test_reports_show_the_autoscaling_figures_and_chart(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    config = {
        "run_id": "run",
        "started_at": T0,
        "plan": {"name": "ramp", "summary": "ramp"},
        "time_scale": SCALE,
        "target": TARGET.model_dump(mode="json"),
        "slo": Slo().to_json(),
        "workers": 1,
    }
    (run / run_files.CONFIG).write_text(json.dumps(config))
    events = [
        {"t": 0.0, "kind": "step_start", "index": 0, "phase": "ramp", "users": 40},
        {"t": 8.0, "kind": "step_end", "index": 0},
        {"t": 8.0, "kind": "finished", "interrupted": False, "stop_reason": "done"},
    ]
    timeline = [
        sample(t, 1 + (t >= 6), 40, desired_replicas=2, pending_replicas=int(t < 6), nodes=2)
        .model_copy(update={"gpu_hours": 0.1 * i, "replica_hours": 0.05 * i, "users": 40})
        .model_dump(exclude_none=True)
        for i, t in enumerate((0, 2, 4, 6, 8))
    ]
    for name, rows in (
        (run_files.EVENTS, events),
        (run_files.TIMELINE, timeline),
        (run_files.REQUESTS, [rec(1.0, 300.0).to_json()]),
    ):
        (run / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    s = summary.write(run)
    assert s.autoscaling is not None and s.autoscaling.scale_up_lag_s.median == 120.0
    assert s.cost.gpu_hours == pytest.approx(0.4)
    md = (run / run_files.REPORT_MD).read_text()
    assert "scale-up lag median 2.0 min" in md and "0.40 GPU-hours billed" in md
    assert "Autoscaling: replicas and nodes" in (run / run_files.REPORT_HTML).read_text()
