"""The autoscaling spec: one typed object for the KEDA ScaledObject and the local twin.

Both the cluster (KEDA + HPA) and the local autoscaler twin read this object, so a change to a
target or a window changes both; nothing about scaling is configured anywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from domain import vllm_metrics
from domain.validation import check_order

_CONFIG = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)

HPA_TOLERANCE = 0.1
"""The HPA ignores a metric/target ratio within 10% of 1 (kube-controller-manager default)."""

FALLBACK_AFTER_FAILURES = 3
"""Consecutive failed Prometheus queries of a trigger after which KEDA serves ``fallbackReplicas``.

KEDA counts failures per trigger (its polling loop and the HPA's metric reads both count, and a
success resets the count) and falls back once the count is *greater than* the ScaledObject's
``fallback.failureThreshold`` (kedacore/keda v2.20.2 ``pkg/fallback/fallback.go``,
``GetMetricsWithFallback``: ``*healthStatus.NumberOfFailures > FailureThreshold``), so the
threshold rendered is one less (``FALLBACK_FAILURE_THRESHOLD``)."""
FALLBACK_FAILURE_THRESHOLD = FALLBACK_AFTER_FAILURES - 1
"""``fallback.failureThreshold`` of the ScaledObject."""


@dataclass(frozen=True)
class Trigger:
    """One scaling signal: a vLLM gauge summed over every replica, and its per-replica target.

    HPA (``AverageValue``) wants ``ceil(sum / target)`` replicas; the KEDA ScaledObject and the
    local twin both derive their triggers from here.
    """

    name: str
    metric: str
    target_per_replica: float

    def query(self, served_name: str, namespace: str) -> str:
        """PromQL returning exactly one series; no vLLM pod scraped yet means 0, not an error."""
        selector = f'namespace="{namespace}",{vllm_metrics.MODEL_LABEL}="{served_name}"'
        return f"sum({self.metric}{{{selector}}}) or vector(0)"


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
        default=None,
        ge=1,
        description=f"Replicas KEDA asks for once {FALLBACK_AFTER_FAILURES} consecutive Prometheus "
        "queries of a trigger have failed; defaults to minReplicas.",
    )
    scale_up: ScalingRules = Field(default_factory=_default_scale_up)
    scale_down: ScalingRules = Field(default_factory=_default_scale_down)

    @model_validator(mode="after")
    def _bounds(self) -> AutoscalingSpec:
        check_order(
            ("minReplicas", self.min_replicas),
            ("maxReplicas", self.max_replicas),
            fix="raise maxReplicas or lower minReplicas",
        )
        fallback = self.fallback_replicas
        if fallback is not None and not self.min_replicas <= fallback <= self.max_replicas:
            raise ValueError(
                f"fallbackReplicas {fallback} is outside minReplicas..maxReplicas "
                f"({self.min_replicas}..{self.max_replicas}); the HPA would clamp it anyway"
            )
        return self

    @property
    def scrape_interval_seconds(self) -> int:
        """How often Prometheus scrapes vLLM: as often as KEDA polls, within 5..15 s.

        The HPA reads the triggers every 15 s (its sync period) through KEDA's metrics server,
        which queries Prometheus afresh; the samples it sees are at most this old.
        """
        return max(5, min(15, self.polling_interval_seconds))

    @property
    def fallback(self) -> int:
        """Replicas KEDA asks for while Prometheus cannot be read (cheap by default)."""
        return self.fallback_replicas or self.min_replicas

    def triggers(self) -> list[Trigger]:
        """Queue depth (requests vLLM could not schedule) and batch occupancy, in that order."""
        return [
            Trigger("waiting", vllm_metrics.WAITING, self.target_waiting_per_replica),
            Trigger("running", vllm_metrics.RUNNING, self.target_running_per_replica),
        ]

    def scheduler_errors(self, max_num_seqs: int) -> list[str]:
        """Targets a replica can never reach, given how many sequences vLLM schedules at once.

        ``vllm:num_requests_running`` never exceeds ``max_num_seqs``; the HPA scales only when the
        average exceeds the target by more than its tolerance, so a higher target is dead.
        """
        reachable = max_num_seqs / (1 + HPA_TOLERANCE)
        if self.target_running_per_replica < reachable:
            return []
        return [
            f"targetRunningPerReplica {self.target_running_per_replica:g} can never trigger: a "
            f"replica runs at most {max_num_seqs} sequences (vLLM's max_num_seqs) and the HPA "
            f"scales only above the target plus {HPA_TOLERANCE:.0%}; use less than "
            f"{int(reachable)}"
        ]
