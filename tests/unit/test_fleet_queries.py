"""The fleet's PromQL: valid expressions, the KEDA triggers' own queries, one name per field."""

from __future__ import annotations

import promql_parser
import pytest

from domain import topology
from domain.autoscaling import AutoscalingSpec
from domain.fleet_queries import (
    HOUR_FIELDS,
    INSTANT_FIELDS,
    KV_BY_REPLICA,
    FleetQueries,
    ksm_label,
)
from loadtest.schema import TargetMetrics
from workloads import keda
from workloads.vllm_service import NAME as VLLM_DEPLOYMENT

SPEC = AutoscalingSpec()
QUERIES = FleetQueries("qwen2.5-7b-instruct", 4, tuple(SPEC.triggers()))


def _all() -> dict[str, str]:
    return {**QUERIES.instant, **QUERIES.hours(3723.5), KV_BY_REPLICA: QUERIES.kv_by_replica}


def test_every_fleet_field_of_the_timeline_has_exactly_one_expression() -> None:
    assert set(QUERIES.instant) == set(INSTANT_FIELDS)
    fleet = set(TargetMetrics.model_fields) - {"replicas", "kv_usage", "target_cpu"}
    fleet -= {"target_poll_error", "pod_queue", "pod_running", "pod_kv_usage"}
    assert {*INSTANT_FIELDS, *HOUR_FIELDS, KV_BY_REPLICA} == fleet


@pytest.mark.parametrize("field", sorted(_all()))
def test_every_expression_is_promql(field: str) -> None:
    promql_parser.parse(_all()[field])


ZERO_WHEN_NONE = (
    "terminating_replicas",
    "nodes",
    "ready_nodes",
    "queue",
    "running",
    "replica_hours",
)
"""Fields whose series may not exist yet (no GPU node, no vLLM scraped) and then mean 0; the
Deployment's own fields stay absent when kube-state-metrics has none (unknown is not 0)."""


@pytest.mark.parametrize("field", ZERO_WHEN_NONE)
def test_a_field_nothing_reports_yet_reads_zero_not_nothing(field: str) -> None:
    """``or vector(0)`` must be the outermost operator, or it binds to a part only."""
    expr = promql_parser.parse(_all()[field])
    assert isinstance(expr, promql_parser.BinaryExpr)
    assert str(expr.op) == "or"
    assert str(expr.rhs) == "vector(0)"


def test_the_queue_and_batch_fields_are_the_keda_triggers_queries() -> None:
    scaled = keda.scaled_object_spec(
        SPEC, deployment=VLLM_DEPLOYMENT, namespace="vllm", served_name="qwen2.5-7b-instruct"
    )
    triggers = {t["name"]: t["metadata"]["query"] for t in scaled["triggers"]}
    assert QUERIES.instant["queue"] == triggers["waiting"]
    assert QUERIES.instant["running"] == triggers["running"]


def test_they_select_the_vllm_deployment_of_the_platform() -> None:
    assert topology.VLLM_DEPLOYMENT == VLLM_DEPLOYMENT
    assert 'deployment="vllm"' in QUERIES.instant["ready_replicas"]
    assert 'namespace="vllm"' in QUERIES.instant["ready_replicas"]


@pytest.mark.parametrize(
    ("key", "label"),
    [
        ("qwen-stress.io/role", "label_qwen_stress_io_role"),
        ("k8s.amazonaws.com/accelerator", "label_k8s_amazonaws_com_accelerator"),
        ("app.kubernetes.io/instanceName", "label_app_kubernetes_io_instance_name"),
    ],
)
def test_kube_state_metrics_label_names(key: str, label: str) -> None:
    assert ksm_label(key) == label


def test_gpus_count_whole_nodes_of_the_instance_type() -> None:
    """No GPU node yet is 0 GPUs: the ``or vector(0)`` sits inside, before the product."""
    nodes = QUERIES.instant["nodes"]
    assert nodes.endswith(" or vector(0)")
    assert QUERIES.instant["gpus"] == f"({nodes}) * 4"
    assert f"(({nodes}) * 4)[" in QUERIES.hours(60)["gpu_hours"]
    assert " * 4)[" in QUERIES.hours(60)["gpu_hours"]


def test_the_hours_window_is_the_run_age_in_milliseconds() -> None:
    hours = QUERIES.hours(3723.5)
    assert "[3723500ms:15s]" in hours["gpu_hours"]
    assert "[3723500ms:15s]" in hours["replica_hours"]
    assert hours["gpu_hours"].endswith("* 15 / 3600")


@pytest.mark.parametrize("field", sorted(_all()))
def test_match_names_the_field_of_each_expression(field: str) -> None:
    found = QUERIES.match(_all()[field])
    assert found is not None and found[0] == field
    assert found[1] == (3723500 if field in HOUR_FIELDS else None)


@pytest.mark.parametrize(
    "expr",
    [
        "up",
        QUERIES.instant["nodes"] + " ",
        QUERIES.instant["queue"].replace("qwen2.5-7b-instruct", "other-model"),
        QUERIES.hours(60)["gpu_hours"].replace("60000ms", "1m"),
        FleetQueries("qwen2.5-7b-instruct", 8, tuple(SPEC.triggers())).instant["gpus"],
    ],
)
def test_match_refuses_anything_else(expr: str) -> None:
    assert QUERIES.match(expr) is None
