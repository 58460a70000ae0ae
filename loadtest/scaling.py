"""Autoscaling figures from the timeline: scale-up lag, SLO violation, replica- and GPU-hours.

How fast the fleet grew, what users felt meanwhile, and the hours behind the cost line. Only
timeline fields a target fills are read (``ready_replicas``, ``desired_replicas``, ``nodes``,
``queue``, ``running``, ``gpus``, ``gpu_hours``, ``replica_hours``), with the triggers'
per-replica targets from the target's ``autoscaling`` info: the local twin fills them; a runner
reading the cluster's Prometheus can fill the same.

- A scale-out starts at the first sample where a trigger's sum per serving replica exceeds its
  target by more than the HPA's tolerance, or the HPA already wants more replicas than serve
  (a burst between two samples crossed the target), while fewer than ``maxReplicas`` serve; or,
  while that lasts, when the previous scale-out's replica arrived. It ends at the first sample
  with more ready replicas than at its start (the scale-up lag), or unresolved when neither
  holds any more (the metric fell back and the HPA let go) or the run ends. Samples come every
  2 s of the run, which bounds the precision.
- SLO violation during a scale-out: the sample intervals inside it whose requests (by send
  time) fail the SLOs; intervals in which no request was sent count neither way.
- Durations and hours are in cluster time (run seconds divided by the time scale): what the
  same run would take in the cloud.
"""

from __future__ import annotations

import bisect
import itertools
import statistics
from dataclasses import asdict, dataclass
from typing import Any

from domain.autoscaling import HPA_TOLERANCE
from loadtest.analysis import stats
from loadtest.records import RequestRecord
from loadtest.slo import Slo

TRIGGER_FIELDS = {"waiting": "queue", "running": "running"}
"""Which timeline field holds each trigger's sum over the replicas."""


@dataclass(frozen=True)
class ScaleOut:
    """One scale-out: the metric above target until a new replica served (or not)."""

    start_s: float
    end_s: float
    from_replicas: int
    to_replicas: int
    outcome: str
    """``served``, ``metric fell back`` or ``run ended``."""
    lag_s: float | None
    """Cluster seconds from the crossing to the new replica serving (served only)."""
    violation_s: float
    """Cluster seconds inside the scale-out whose requests failed the SLOs."""


def _wants_more(sample: dict[str, Any], targets: dict[str, float]) -> bool:
    """A trigger is above its target per serving replica, or the HPA already asked for more."""
    serving = sample.get("ready_replicas") or 0
    if (sample.get("desired_replicas") or 0) > serving:
        return True
    return any(
        (sample.get(field) or 0.0) / max(serving, 1) > target * (1 + HPA_TOLERANCE)
        for field, target in targets.items()
    )


def scale_outs(
    samples: list[dict[str, Any]], targets: dict[str, float], max_replicas: int
) -> list[tuple[int, int, str]]:
    """Scale-outs as (first sample index, last sample index, outcome)."""
    out: list[tuple[int, int, str]] = []
    start: int | None = None
    for i, s in enumerate(samples):
        ready = s.get("ready_replicas") or 0
        if start is None:
            if ready < max_replicas and _wants_more(s, targets):
                start = i
            continue
        if ready > (samples[start].get("ready_replicas") or 0):
            out.append((start, i, "served"))
            start = i if ready < max_replicas and _wants_more(s, targets) else None
        elif not _wants_more(s, targets):
            out.append((start, i, "metric fell back"))
            start = None
    if start is not None:
        out.append((start, len(samples) - 1, "run ended"))
    return out


def _violation_s(
    span: list[dict[str, Any]], records: list[RequestRecord], starts: list[float], slo: Slo
) -> float:
    """Seconds of ``span`` whose requests failed the SLOs (``records`` sorted as ``starts``)."""
    total = 0.0
    for a, b in itertools.pairwise(span):
        lo, hi = bisect.bisect_left(starts, a["t"]), bisect.bisect_left(starts, b["t"])
        if hi > lo and not slo.passes(stats(records[lo:hi], b["t"] - a["t"], slo)):
            total += b["t"] - a["t"]
    return total


def _hours(samples: list[dict[str, Any]], counter: str, count: str, time_scale: float) -> float:
    """A target's own cumulative counter, else the count integrated over the timeline."""
    kept = [float(s[counter]) for s in samples if s.get(counter) is not None]
    if len(kept) >= 2:
        return kept[-1] - kept[0]
    points = [(float(s["t"]), float(s[count])) for s in samples if s.get(count) is not None]
    area = sum(v * (t2 - t1) for (t1, v), (t2, _) in itertools.pairwise(points))
    return area / 3600.0 / time_scale


def figures(
    timeline: list[dict[str, Any]],
    records: list[RequestRecord],
    *,
    t0: float,
    slo: Slo,
    target: dict[str, Any],
    window: tuple[float, float],
    time_scale: float,
) -> dict[str, Any] | None:
    """The ``autoscaling`` object of ``summary.json``; None for a target that does not scale."""
    info = target.get("autoscaling")
    samples = [
        s
        for s in timeline
        if s.get("ready_replicas") is not None and window[0] <= s["t"] <= window[1]
    ]
    if not info or len(samples) < 2:
        return None
    targets = {
        TRIGGER_FIELDS[name]: float(t["target_per_replica"])
        for name, t in info["triggers"].items()
        if name in TRIGGER_FIELDS
    }
    by_start = sorted(records, key=lambda r: r.start)
    starts = [r.start - t0 for r in by_start]
    episodes = []
    for first, last, outcome in scale_outs(samples, targets, int(info["max_replicas"])):
        a, b = samples[first], samples[last]
        episodes.append(
            ScaleOut(
                start_s=round(a["t"], 3),
                end_s=round(b["t"], 3),
                from_replicas=int(a["ready_replicas"]),
                to_replicas=int(b["ready_replicas"]),
                outcome=outcome,
                lag_s=round((b["t"] - a["t"]) / time_scale, 1) if outcome == "served" else None,
                violation_s=round(
                    _violation_s(samples[first : last + 1], by_start, starts, slo) / time_scale, 1
                ),
            )
        )
    lags = [e.lag_s for e in episodes if e.lag_s is not None]
    return {
        "time_scale": time_scale,
        "scale_outs": [asdict(e) for e in episodes],
        "scale_up_lag_s": {
            "count": len(lags),
            "median": round(statistics.median(lags), 1) if lags else None,
            "max": max(lags) if lags else None,
        },
        "scale_out_s": round(sum(e.end_s - e.start_s for e in episodes) / time_scale, 1),
        "slo_violation_during_scale_out_s": round(sum(e.violation_s for e in episodes), 1),
        "replica_hours": round(_hours(samples, "replica_hours", "ready_replicas", time_scale), 4),
        "gpu_hours": round(_hours(samples, "gpu_hours", "gpus", time_scale), 4),
        "replicas": {
            "min": min(s["ready_replicas"] for s in samples),
            "max": max(s["ready_replicas"] for s in samples),
            "max_desired": max(s.get("desired_replicas") or 0 for s in samples),
        },
        "nodes": {
            "min": min(s.get("nodes") or 0 for s in samples),
            "max": max(s.get("nodes") or 0 for s in samples),
        },
    }
