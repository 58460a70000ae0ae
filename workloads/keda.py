"""Render the KEDA ScaledObject that scales the vLLM Deployment from the autoscaling spec.

Every number comes from ``AutoscalingSpec``; the local twin reads the same spec, so the two cannot
drift. Each trigger is a Prometheus query returning exactly one series with an ``AverageValue``
target: the HPA then wants ``ceil(sum over replicas / target)`` replicas.
"""

from __future__ import annotations

from typing import Any

from domain import topology
from domain.autoscaling import FALLBACK_FAILURE_THRESHOLD, AutoscalingSpec, ScalingRules

API_VERSION = "keda.sh/v1alpha1"


def _rules(rules: ScalingRules) -> dict[str, Any]:
    return {
        "stabilizationWindowSeconds": rules.stabilization_window_seconds,
        "selectPolicy": rules.select_policy,
        "policies": [
            {"type": p.type, "value": p.value, "periodSeconds": p.period_seconds}
            for p in rules.policies
        ],
    }


def scaled_object_spec(
    spec: AutoscalingSpec, *, deployment: str, namespace: str, served_name: str
) -> dict[str, Any]:
    """The ScaledObject's ``spec``: target, bounds, polling, fallback, HPA behaviour, triggers."""
    return {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment},
        "pollingInterval": spec.polling_interval_seconds,
        "minReplicaCount": spec.min_replicas,
        "maxReplicaCount": spec.max_replicas,
        # KEDA falls back once failures exceed the threshold: FALLBACK_AFTER_FAILURES failures.
        "fallback": {
            "failureThreshold": FALLBACK_FAILURE_THRESHOLD,
            "replicas": spec.fallback,
        },
        "advanced": {
            "horizontalPodAutoscalerConfig": {
                "behavior": {
                    "scaleUp": _rules(spec.scale_up),
                    "scaleDown": _rules(spec.scale_down),
                }
            }
        },
        "triggers": [
            {
                "type": "prometheus",
                "name": trigger.name,
                "metricType": "AverageValue",
                "metadata": {
                    "serverAddress": topology.PROMETHEUS_URL,
                    "query": trigger.query(served_name, namespace),
                    "threshold": f"{trigger.target_per_replica:g}",
                },
            }
            for trigger in spec.triggers()
        ],
    }
