"""The autoscaling spec: its checks, and the KEDA ScaledObject rendered from it."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from domain import topology
from domain.autoscaling import FALLBACK_AFTER_FAILURES, HPA_TOLERANCE, AutoscalingSpec
from domain.stack_config import ConfigError, parse
from tests.pulumi_mocks import stack_config
from workloads.keda import scaled_object_spec


def _render(spec: AutoscalingSpec) -> dict[str, Any]:
    return scaled_object_spec(spec, deployment="vllm", namespace="vllm", served_name="qwen7b")


def test_triggers_each_return_one_series_for_the_served_model() -> None:
    rendered = _render(AutoscalingSpec(targetWaitingPerReplica=3, targetRunningPerReplica=20))
    by_name = {t["name"]: t for t in rendered["triggers"]}
    assert set(by_name) == {"waiting", "running"}
    waiting = by_name["waiting"]["metadata"]
    assert waiting["query"] == (
        'sum(vllm:num_requests_waiting{namespace="vllm",model_name="qwen7b"}) or vector(0)'
    )
    assert waiting["threshold"] == "3"
    assert waiting["serverAddress"] == topology.PROMETHEUS_URL
    running = by_name["running"]["metadata"]
    assert running["query"].startswith("sum(vllm:num_requests_running{")
    assert running["threshold"] == "20"
    for trigger in rendered["triggers"]:
        assert trigger["type"] == "prometheus"
        assert trigger["metricType"] == "AverageValue"


def test_bounds_polling_fallback_and_target() -> None:
    rendered = _render(
        AutoscalingSpec(minReplicas=2, maxReplicas=6, pollingIntervalSeconds=10, fallbackReplicas=3)
    )
    assert rendered["minReplicaCount"] == 2
    assert rendered["maxReplicaCount"] == 6
    assert rendered["pollingInterval"] == 10
    assert rendered["fallback"] == {"failureThreshold": 2, "replicas": 3}
    assert rendered["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "vllm",
    }


def _keda_falls_back(consecutive_failures: int, failure_threshold: int) -> bool:
    """kedacore/keda v2.20.2 pkg/fallback/fallback.go: ``NumberOfFailures > FailureThreshold``."""
    return consecutive_failures > failure_threshold


def test_fallback_starts_at_the_documented_failure() -> None:
    threshold = _render(AutoscalingSpec())["fallback"]["failureThreshold"]
    first = next(n for n in range(1, 100) if _keda_falls_back(n, threshold))
    assert first == FALLBACK_AFTER_FAILURES == 3
    field = AutoscalingSpec.model_fields["fallback_replicas"]
    assert f"once {first} consecutive Prometheus queries" in (field.description or "")


def test_fallback_defaults_to_min_replicas() -> None:
    assert _render(AutoscalingSpec(minReplicas=2, maxReplicas=4))["fallback"]["replicas"] == 2


def test_default_behaviour_scales_up_at_once_and_down_slowly() -> None:
    behavior = _render(AutoscalingSpec())["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    up, down = behavior["scaleUp"], behavior["scaleDown"]
    assert up["stabilizationWindowSeconds"] == 0
    assert down["stabilizationWindowSeconds"] >= 300
    assert max(p["value"] for p in up["policies"] if p["type"] == "Pods") >= 2
    assert down["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": 120}]


def test_changing_a_window_in_the_spec_changes_the_render() -> None:
    spec = AutoscalingSpec.model_validate(
        {
            "scaleDown": {
                "stabilizationWindowSeconds": 900,
                "selectPolicy": "Min",
                "policies": [{"type": "Percent", "value": 50, "periodSeconds": 300}],
            }
        }
    )
    down = _render(spec)["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
    assert down == {
        "stabilizationWindowSeconds": 900,
        "selectPolicy": "Min",
        "policies": [{"type": "Percent", "value": 50, "periodSeconds": 300}],
    }


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"minReplicas": 3, "maxReplicas": 2}, "minReplicas 3 is greater than maxReplicas 2"),
        ({"targetWaitingPerReplica": 0}, "greater than 0"),
        ({"targetRunningPerReplica": -1}, "greater than 0"),
        ({"minReplicas": 1, "maxReplicas": 4, "fallbackReplicas": 5}, "fallbackReplicas 5"),
        ({"pollingIntervalSeconds": 0}, "greater than or equal to 1"),
    ],
)
def test_bad_specs_are_refused(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        AutoscalingSpec.model_validate(values)


def _config_error(autoscaling: dict[str, Any]) -> str:
    values = stack_config("dev")
    values["qwen-stress:autoscaling"] = autoscaling
    with pytest.raises(ConfigError) as caught:
        parse(values)
    return str(caught.value)


def test_running_target_above_what_the_scheduler_runs_is_refused_at_config_time() -> None:
    msg = _config_error({"minReplicas": 1, "maxReplicas": 2, "targetRunningPerReplica": 240})
    assert "qwen-stress:autoscaling.targetRunningPerReplica 240 can never trigger" in msg
    assert "at most 256 sequences" in msg


def test_running_target_just_below_the_tolerance_limit_is_accepted() -> None:
    values = stack_config("dev")
    target = 256 / (1 + HPA_TOLERANCE) - 1
    values["qwen-stress:autoscaling"] = {"maxReplicas": 2, "targetRunningPerReplica": target}
    assert parse(values).autoscaling.target_running_per_replica == target


def test_min_above_max_names_the_key() -> None:
    msg = _config_error({"minReplicas": 3, "maxReplicas": 2})
    assert "qwen-stress:autoscaling: minReplicas 3 is greater than maxReplicas 2" in msg
