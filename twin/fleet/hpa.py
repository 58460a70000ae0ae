"""The HPA's arithmetic for KEDA's external ``AverageValue`` triggers, as pure functions.

Mirrors kube-controller-manager's ``podautoscaler`` package (``replica_calculator.go`` and
``horizontal.go``, autoscaling/v2 with ``behavior`` set, as KEDA always sets it):

- per trigger, ``GetExternalPerPodMetricReplicas``: keep the current count while
  ``|total / (target x status replicas) - 1| <= tolerance``, else ``ceil(total / target)``;
- the largest proposal over the triggers wins;
- ``stabilizeRecommendationWithBehaviors``: the recommendation is held between the lowest
  recommendation of the scale-up window and the highest of the scale-down window;
- ``convertDesiredReplicasWithBehaviorRate``: scale policies bound the change per period,
  counted from the replicas at the start of the period, ``selectPolicy`` picks among them;
- min/max bounds last; a count outside them is moved inside first.

Times are seconds on the control plane's clock; nothing here reads a clock or sleeps, so the
worked examples of the Kubernetes documentation can be replayed exactly in tests.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from domain.autoscaling import HPA_TOLERANCE, AutoscalingSpec, ScalingPolicy, ScalingRules


def trigger_replicas(
    total: float, target_per_replica: float, status_replicas: int, tolerance: float = HPA_TOLERANCE
) -> int:
    """Replicas one ``AverageValue`` trigger asks for, given the metric summed over the pods.

    ``status_replicas`` is the pods the Deployment has (ready or not), as the HPA reads it from
    the scale subresource; a ratio within ``tolerance`` of 1 keeps that count.
    """
    if status_replicas > 0:
        ratio = total / (target_per_replica * status_replicas)
        if abs(1.0 - ratio) <= tolerance:
            return status_replicas
    return math.ceil(total / target_per_replica)


def metric_proposal(
    spec: AutoscalingSpec, totals: Mapping[str, float], status_replicas: int
) -> int:
    """The largest replica count any trigger proposes (``totals`` keyed by metric name).

    A metric missing from ``totals`` counts as 0, as the ScaledObject's ``or vector(0)`` query
    returns when no vLLM pod has been scraped.
    """
    return max(
        trigger_replicas(totals.get(t.metric, 0.0), t.target_per_replica, status_replicas)
        for t in spec.triggers()
    )


@dataclass(frozen=True)
class Recommendation:
    """One unstabilised recommendation and when it was made."""

    at: float
    replicas: int


@dataclass(frozen=True)
class ScaleEvent:
    """A rescale the HPA made: how many pods it added (or removed) and when."""

    at: float
    change: int


def stabilize(
    history: list[Recommendation],
    desired: int,
    current: int,
    *,
    up_window_s: float,
    down_window_s: float,
    now: float,
) -> int:
    """Hold ``desired`` between the scale-up window's minimum and the scale-down window's maximum.

    ``history`` is the recommendations made before this one; ``desired`` counts as made now.
    """
    up = desired
    down = desired
    for rec in history:
        if rec.at > now - up_window_s:
            up = min(up, rec.replicas)
        if rec.at > now - down_window_s:
            down = max(down, rec.replicas)
    return min(max(current, up), down)


def _changed_within(events: list[ScaleEvent], period_s: float, now: float) -> int:
    return sum(e.change for e in events if e.at > now - period_s)


def _period_starts(
    current: int, ups: list[ScaleEvent], downs: list[ScaleEvent], rules: ScalingRules, now: float
) -> list[tuple[ScalingPolicy, int]]:
    """Each policy with the replica count at the start of its period (changes since undone)."""
    return [
        (
            policy,
            current
            - _changed_within(ups, policy.period_seconds, now)
            + _changed_within(downs, policy.period_seconds, now),
        )
        for policy in rules.policies
    ]


def scale_limit(
    direction: Literal["up", "down"],
    current: int,
    rules: ScalingRules,
    *,
    ups: list[ScaleEvent],
    downs: list[ScaleEvent],
    now: float,
) -> int:
    """The furthest the policies let the count go now (``current`` when disabled).

    Each policy's allowance counts from the replicas at the start of its period; ``Max``
    (the default) takes the policy allowing the largest change, ``Min`` the smallest.
    """
    if rules.select_policy == "Disabled":
        return current
    proposals = []
    for p, start in _period_starts(current, ups, downs, rules, now):
        if direction == "up":
            # A percentage is rounded up, or a small Deployment could never grow by one.
            grown = start * (1 + p.value / 100)
            proposals.append(start + p.value if p.type == "Pods" else math.ceil(grown))
        else:
            # A percentage is truncated towards zero, as Go's int32() conversion does.
            shrunk = start * (1 - p.value / 100)
            proposals.append(start - p.value if p.type == "Pods" else int(shrunk))
    largest_change = max if direction == "up" else min
    smallest_change = min if direction == "up" else max
    return (smallest_change if rules.select_policy == "Min" else largest_change)(proposals)


@dataclass(frozen=True)
class Decision:
    """What one HPA sync decided."""

    desired: int
    """Replicas the Deployment is set to (equal to the current count when nothing changes)."""
    proposal: int
    """The largest trigger proposal before stabilisation, policies and bounds."""
    stabilized: int
    """The proposal after the stabilisation windows."""


@dataclass
class Hpa:
    """One HorizontalPodAutoscaler: the spec plus the history its behaviour needs."""

    spec: AutoscalingSpec
    recommendations: list[Recommendation] = field(default_factory=list)
    ups: list[ScaleEvent] = field(default_factory=list)
    downs: list[ScaleEvent] = field(default_factory=list)

    def sync(
        self, now: float, current: int, status_replicas: int, totals: Mapping[str, float]
    ) -> Decision:
        """One reconcile: the replica count to set, from the trigger totals read at ``now``."""
        spec = self.spec
        if not self.recommendations:
            self.recommendations.append(Recommendation(now, current))
        if current > spec.max_replicas:
            decision = Decision(spec.max_replicas, current, current)
        elif current < spec.min_replicas:
            decision = Decision(spec.min_replicas, current, current)
        else:
            proposal = metric_proposal(spec, totals, status_replicas)
            stabilized = stabilize(
                self.recommendations,
                proposal,
                current,
                up_window_s=spec.scale_up.stabilization_window_seconds,
                down_window_s=spec.scale_down.stabilization_window_seconds,
                now=now,
            )
            self.recommendations.append(Recommendation(now, proposal))
            decision = Decision(self._within_rates(stabilized, current, now), proposal, stabilized)
        if decision.desired > current:
            self.ups.append(ScaleEvent(now, decision.desired - current))
        elif decision.desired < current:
            self.downs.append(ScaleEvent(now, current - decision.desired))
        self._forget(now)
        return decision

    def _within_rates(self, desired: int, current: int, now: float) -> int:
        spec = self.spec
        if desired > current:
            limit = max(
                scale_limit("up", current, spec.scale_up, ups=self.ups, downs=self.downs, now=now),
                current,
            )
            return min(desired, spec.max_replicas, limit)
        if desired < current:
            limit = min(
                scale_limit(
                    "down", current, spec.scale_down, ups=self.ups, downs=self.downs, now=now
                ),
                current,
            )
            return max(desired, spec.min_replicas, limit)
        return desired

    def _forget(self, now: float) -> None:
        """Drop history no window or policy period can reach any more."""
        spec = self.spec
        window = max(
            spec.scale_up.stabilization_window_seconds, spec.scale_down.stabilization_window_seconds
        )
        self.recommendations = [r for r in self.recommendations if r.at > now - window] or [
            self.recommendations[-1]
        ]
        period = max(p.period_seconds for p in spec.scale_up.policies + spec.scale_down.policies)
        self.ups = [e for e in self.ups if e.at > now - period]
        self.downs = [e for e in self.downs if e.at > now - period]
