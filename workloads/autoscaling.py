"""The autoscaling spec: one typed object for the KEDA ScaledObject and the local twin.

Both the cluster (KEDA + HPA) and the local autoscaler twin read this object, so a change to a
target or a window changes both; nothing about scaling is configured anywhere else.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

_CONFIG = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)


class ScalingPolicy(BaseModel):
    """One HPA scaling policy: at most ``value`` pods (or percent) per ``period_seconds``."""

    model_config = _CONFIG

    type: Literal["Pods", "Percent"]
    value: int = Field(gt=0)
    period_seconds: int = Field(gt=0, le=1800)


class ScalingRules(BaseModel):
    """HPA ``behavior.scaleUp`` or ``behavior.scaleDown``."""

    model_config = _CONFIG

    stabilization_window_seconds: int = Field(ge=0, le=3600)
    select_policy: Literal["Max", "Min", "Disabled"] = "Max"
    policies: list[ScalingPolicy] = Field(min_length=1)


def _default_scale_up() -> ScalingRules:
    # Scale up at once: a new replica takes minutes to serve (node boot, image pull, weights).
    return ScalingRules(
        stabilization_window_seconds=0,
        policies=[
            ScalingPolicy(type="Pods", value=2, period_seconds=60),
            ScalingPolicy(type="Percent", value=100, period_seconds=60),
        ],
    )


def _default_scale_down() -> ScalingRules:
    # Scale down slowly: a replica given back too early costs another cold start.
    return ScalingRules(
        stabilization_window_seconds=600,
        policies=[ScalingPolicy(type="Pods", value=1, period_seconds=120)],
    )


class AutoscalingSpec(BaseModel):
    """``qwen-stress:autoscaling``: replica bounds, per-replica targets, windows and policies."""

    model_config = _CONFIG

    min_replicas: int = Field(default=1, ge=1)
    max_replicas: int = Field(default=4, ge=1)
    target_waiting_per_replica: float = Field(
        default=4.0, gt=0, description="Average `vllm:num_requests_waiting` per replica."
    )
    target_running_per_replica: float = Field(
        default=24.0, gt=0, description="Average `vllm:num_requests_running` per replica."
    )
    polling_interval_seconds: int = Field(default=15, ge=1, le=600)
    fallback_replicas: int | None = Field(
        default=None, ge=1, description="Replicas to hold when Prometheus is unreachable."
    )
    scale_up: ScalingRules = Field(default_factory=_default_scale_up)
    scale_down: ScalingRules = Field(default_factory=_default_scale_down)

    @model_validator(mode="after")
    def _bounds(self) -> AutoscalingSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"minReplicas {self.min_replicas} is greater than maxReplicas "
                f"{self.max_replicas}; raise maxReplicas or lower minReplicas"
            )
        return self
