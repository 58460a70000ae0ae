"""The twin's ``/api/v1/query``: the cluster target's expressions answered from the twin's status.

Every answer has Prometheus's shape and the value the status endpoint gives for that field;
anything else gets Prometheus's error object.
"""

from __future__ import annotations

import itertools
import json
from typing import Any
from urllib.parse import urlencode

import pytest

from domain.autoscaling import AutoscalingSpec
from domain.fleet_queries import FleetQueries
from domain.stack_config import ClusterAutoscalerConfig
from domain.vllm_metrics import RUNNING as RUNNING_METRIC
from twin.fleet.control_plane import ControlPlane
from twin.fleet.prometheus_api import answer
from twin.fleet.sim_cluster import NodePool, SimCluster
from twin.fleet.timings import timings

QUERIES = FleetQueries("Qwen/Qwen2.5-7B-Instruct-AWQ", 1, tuple(AutoscalingSpec().triggers()))
STATUS: dict[str, Any] = {
    "desired_replicas": 3,
    "ready_replicas": 2,
    "pending_replicas": 1,
    "terminating_replicas": 0,
    "nodes": 3,
    "ready_nodes": 2,
    "gpus": 3,
    "queue": 7.0,
    "running": 41.0,
    "gpu_hours": 1.5,
    "replica_hours": 1.0,
    "replicas": {
        "vllm-0": {"state": "ready", "kv_usage": 0.42},
        "vllm-1": {"state": "ready", "kv_usage": 0.1},
        "vllm-2": {"state": "starting"},
    },
}


def _ask(expr: str | None, **params: str) -> tuple[int, dict[str, Any]]:
    query = {**({"query": expr} if expr is not None else {}), **params}
    code, body = answer(
        urlencode(query),
        queries=QUERIES,
        status=STATUS,
        # 1.5 GPU-hours and 1 replica-hour now (t = 5400), accrued at 1 GPU and 2/3 replica.
        seconds_at=lambda t: (max(t, 0.0), max(t, 0.0) * 2 / 3),
        cluster_now=5400.0,
        time_scale=0.5,
    )
    return code, json.loads(body)


def _value(reply: dict[str, Any]) -> float:
    (sample,) = reply["data"]["result"]
    return float(sample["value"][1])


@pytest.mark.parametrize("field", sorted(QUERIES.instant))
def test_each_instant_field_is_the_status_value_as_a_one_series_vector(field: str) -> None:
    code, reply = _ask(QUERIES.instant[field], time="1767225600.5")
    assert code == 200 and reply["status"] == "success"
    assert reply["data"]["resultType"] == "vector"
    (sample,) = reply["data"]["result"]
    assert sample["metric"] == {}
    assert sample["value"][0] == 1767225600.5
    assert isinstance(sample["value"][1], str)  # Prometheus writes sample values as strings
    assert float(sample["value"][1]) == STATUS[field]


def test_counts_are_written_as_prometheus_writes_them() -> None:
    _, reply = _ask(QUERIES.instant["ready_replicas"])
    assert reply["data"]["result"][0]["value"][1] == "2"


def test_kv_usage_is_one_series_per_serving_replica() -> None:
    code, reply = _ask(QUERIES.kv_by_replica)
    assert code == 200
    by_pod = {s["metric"]["pod"]: float(s["value"][1]) for s in reply["data"]["result"]}
    assert by_pod == {"vllm-0": 0.42, "vllm-1": 0.1}


def test_hours_are_what_the_window_of_wall_time_spent_in_cluster_time() -> None:
    # 1800 wall seconds at time scale 0.5 are 3600 cluster seconds: 1 GPU-hour, 2/3 replica-hour.
    hours = QUERIES.hours(1800)
    assert _value(_ask(hours["gpu_hours"])[1]) == pytest.approx(1.0)
    assert _value(_ask(hours["replica_hours"])[1]) == pytest.approx(2 / 3, abs=1e-6)
    # A window reaching back before the fleet started counts only what the fleet spent.
    assert _value(_ask(QUERIES.hours(10_000)["gpu_hours"])[1]) == pytest.approx(1.5)


@pytest.mark.parametrize(
    ("expr", "params", "code", "kind"),
    [
        ("up", {}, 422, "execution"),
        ('sum(vllm:num_requests_waiting{namespace="vllm"})', {}, 422, "execution"),
        (None, {}, 400, "bad_data"),
        ("", {}, 400, "bad_data"),
        (QUERIES.instant["nodes"], {"time": "yesterday"}, 400, "bad_data"),
        (QUERIES.instant["nodes"], {"time": "nan"}, 400, "bad_data"),
    ],
)
def test_anything_else_gets_prometheus_error_object(
    expr: str | None, params: dict[str, str], code: int, kind: str
) -> None:
    got, reply = _ask(expr, **params)
    assert got == code
    assert reply["status"] == "error" and reply["errorType"] == kind and reply["error"]


def test_rfc3339_time_is_accepted() -> None:
    code, reply = _ask(QUERIES.instant["nodes"], time="2026-01-01T00:00:00Z")
    assert code == 200 and reply["data"]["result"][0]["value"][0] == 1767225600.0


def test_the_cluster_reads_its_counters_back_at_any_past_time() -> None:
    spec = AutoscalingSpec(min_replicas=1, max_replicas=4, target_running_per_replica=24)
    model = "Qwen/Qwen2.5-7B-Instruct-AWQ"
    t = timings(model, ClusterAutoscalerConfig())
    cluster = SimCluster(NodePool(1, 0, 4), 1, t, 1, now=0.0)
    load = {"running": 5.0}
    control = ControlPlane(spec, cluster, t, lambda: {RUNNING_METRIC: load["running"]})
    seen: list[tuple[float, float, float]] = []
    for step in range(1, 500):
        now = step * 5.0
        load["running"] = 100.0 if 60 <= now < 1500 else 5.0
        for pod in control.tick(now).stopping:
            cluster.release(pod, now)
        seen.append((now, cluster.gpu_seconds, cluster.replica_seconds))
    assert len(cluster.segments) > 4  # the counts changed, out and in
    for now, gpu_s, replica_s in seen:
        assert cluster.seconds_at(now) == pytest.approx((gpu_s, replica_s))
    for (a, ga, ra), (b, gb, rb) in itertools.pairwise(seen):
        mid = cluster.seconds_at((a + b) / 2)
        assert ga <= mid[0] <= gb and ra <= mid[1] <= rb
    assert cluster.seconds_at(-1.0) == (0.0, 0.0)
