"""The twin's HPA arithmetic against the worked examples of the Kubernetes HPA documentation.

Examples from kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale (algorithm
details, scaling policies, stabilisation window, default behaviour, limit scale-down rate,
disable scale-down), replayed through ``Hpa.sync`` every 15 s as the controller would.
"""

from __future__ import annotations

import itertools
from typing import Any

from domain.autoscaling import AutoscalingSpec, ScalingRules
from domain.vllm_metrics import RUNNING as RUNNING_METRIC
from domain.vllm_metrics import WAITING as WAITING_METRIC
from twin.fleet.hpa import Hpa, metric_proposal, trigger_replicas

SYNC_S = 15.0


def _rules(window: int, *policies: tuple[str, int, int], select: str = "Max") -> ScalingRules:
    return ScalingRules.model_validate(
        {
            "stabilizationWindowSeconds": window,
            "selectPolicy": select,
            "policies": [{"type": t, "value": v, "periodSeconds": p} for t, v, p in policies],
        }
    )


# The documentation's default behaviour (what an HPA without `behavior` does).
DEFAULT_UP = _rules(0, ("Percent", 100, 15), ("Pods", 4, 15))
DEFAULT_DOWN = _rules(300, ("Percent", 100, 15))


def _spec(**kw: Any) -> AutoscalingSpec:
    values: dict[str, Any] = {
        "min_replicas": 1,
        "max_replicas": 100,
        "target_running_per_replica": 10,
        "scale_up": DEFAULT_UP,
        "scale_down": DEFAULT_DOWN,
    }
    return AutoscalingSpec(**(values | kw))


def _replay(hpa: Hpa, current: int, wanted: list[int], start: float = 0.0) -> list[int]:
    """Sync every 15 s with a metric asking for ``wanted[i]`` replicas; the counts set."""
    counts = []
    for i, replicas in enumerate(wanted):
        totals = {RUNNING_METRIC: replicas * hpa.spec.target_running_per_replica}
        current = hpa.sync(start + i * SYNC_S, current, current, totals).desired
        counts.append(current)
    return counts


def test_the_ratio_of_metric_to_target_scales_the_replica_count() -> None:
    # "current 200m, desired 100m: doubled; current 50m: halved" (4 pods, per-pod average).
    assert trigger_replicas(total=4 * 200, target_per_replica=100, status_replicas=4) == 8
    assert trigger_replicas(total=4 * 50, target_per_replica=100, status_replicas=4) == 2


def test_a_ratio_within_the_ten_percent_tolerance_changes_nothing() -> None:
    for ratio, expected in ((1.05, 10), (0.95, 10), (1.15, 12), (0.85, 9)):
        total = ratio * 10 * 100
        assert trigger_replicas(total, target_per_replica=100, status_replicas=10) == expected


def test_the_largest_proposal_over_the_triggers_wins_and_missing_metrics_count_as_zero() -> None:
    spec = AutoscalingSpec(target_waiting_per_replica=4, target_running_per_replica=24)
    totals = {WAITING_METRIC: 40.0, RUNNING_METRIC: 48.0}
    assert metric_proposal(spec, totals, status_replicas=2) == 10
    assert metric_proposal(spec, {RUNNING_METRIC: 48.0}, status_replicas=1) == 2
    assert metric_proposal(spec, {}, status_replicas=3) == 0


def test_default_behaviour_adds_four_pods_or_doubles_every_15_seconds() -> None:
    # "4 pods or a 100% of the currently running replicas will be added every 15 seconds".
    assert _replay(Hpa(_spec()), 1, [30, 30, 30, 30]) == [5, 10, 20, 30]


def test_scale_down_policies_the_documented_80_to_10_example() -> None:
    # Pods 4/60 s and Percent 10/60 s, the larger change wins: 80 -> 72, then 72 -> 64 ("7.2
    # is rounded up to 8"), one change per 60 s period, and 4 at a time once at 40 or fewer.
    spec = _spec(scale_down=_rules(0, ("Pods", 4, 60), ("Percent", 10, 60)))
    counts = _replay(Hpa(spec), 80, [10] * 60)
    assert counts[:5] == [72, 72, 72, 72, 64]
    path = [80] + [c for prev, c in itertools.pairwise([80, *counts]) if c != prev]
    removed = {a: a - b for a, b in itertools.pairwise(path)}
    assert removed[80] == removed[72] == 8
    assert all(n == 4 for at, n in removed.items() if 14 <= at <= 40)  # then 12 -> 10, the goal
    assert path[-1] == 10


def test_select_policy_min_limits_scale_down_to_the_smaller_change() -> None:
    # "no more than 5 Pods are removed per minute" next to 10% per minute, selectPolicy Min.
    spec = _spec(scale_down=_rules(0, ("Percent", 10, 60), ("Pods", 5, 60), select="Min"))
    assert _replay(Hpa(spec), 80, [10]) == [75]
    assert _replay(Hpa(spec), 30, [10]) == [27]


def test_disabled_select_policy_never_scales_down() -> None:
    spec = _spec(scale_down=_rules(0, ("Percent", 100, 15), select="Disabled"))
    assert _replay(Hpa(spec), 6, [1] * 10) == [6] * 10


def test_scale_down_stabilisation_keeps_the_highest_recommendation_of_the_window() -> None:
    # "all desired states from the past 5 minutes will be considered" (the highest is used).
    counts = _replay(Hpa(_spec()), 5, [5] + [2] * 25)
    assert counts[19] == 5  # t = 285 s: the recommendation of 5 made at t = 0 still counts
    assert counts[20] == 2  # t = 300 s: it has left the window


def test_scale_up_stabilisation_keeps_the_lowest_recommendation_of_the_window() -> None:
    spec = _spec(scale_up=_rules(60, ("Pods", 10, 15)))
    counts = _replay(Hpa(spec), 1, [4] * 6)
    assert counts[:4] == [1, 1, 1, 1]  # the count of 1 seen at t = 0 is the lowest in 60 s
    assert counts[4] == 4


def test_min_and_max_bound_the_result() -> None:
    spec = _spec(min_replicas=2, max_replicas=4)
    assert _replay(Hpa(spec), 3, [50]) == [4]
    assert _replay(Hpa(spec), 1, [1]) == [2]
    assert _replay(Hpa(spec), 6, [6]) == [4]
    fast_down = _spec(min_replicas=2, max_replicas=4, scale_down=_rules(0, ("Percent", 100, 15)))
    assert _replay(Hpa(fast_down), 3, [0]) == [2]
