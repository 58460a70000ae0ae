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
from collections.abc import Callable

from domain.autoscaling import HPA_TOLERANCE
from loadtest.analysis import stats
from loadtest.records import RequestRecord
from loadtest.schema import (
    Autoscaling,
    NodeRange,
    ReplicaRange,
    ScaleOut,
    ScaleUpLag,
    TargetInfo,
    TimelineSample,
)
from loadtest.slo import Slo

Reading = Callable[[TimelineSample], float | None]
"""One figure of a timeline sample."""

TRIGGER_FIELDS: dict[str, Reading] = {"waiting": lambda s: s.queue, "running": lambda s: s.running}
"""Which timeline figure holds each trigger's sum over the replicas."""


def _wants_more(sample: TimelineSample, targets: list[tuple[Reading, float]]) -> bool:
    """A trigger is above its target per serving replica, or the HPA already asked for more."""
    serving = sample.ready_replicas or 0
    if (sample.desired_replicas or 0) > serving:
        return True
    return any(
        (read(sample) or 0.0) / max(serving, 1) > target * (1 + HPA_TOLERANCE)
        for read, target in targets
    )


def scale_outs(
    samples: list[TimelineSample], targets: list[tuple[Reading, float]], max_replicas: int
) -> list[tuple[int, int, str]]:
    """Scale-outs as (first sample index, last sample index, outcome)."""
    out: list[tuple[int, int, str]] = []
    start: int | None = None
    for i, s in enumerate(samples):
        ready = s.ready_replicas or 0
        if start is None:
            if ready < max_replicas and _wants_more(s, targets):
                start = i
            continue
        if ready > (samples[start].ready_replicas or 0):
            out.append((start, i, "served"))
            start = i if ready < max_replicas and _wants_more(s, targets) else None
        elif not _wants_more(s, targets):
            out.append((start, i, "metric fell back"))
            start = None
    if start is not None:
        out.append((start, len(samples) - 1, "run ended"))
    return out


def _violation_s(
    span: list[TimelineSample], records: list[RequestRecord], starts: list[float], slo: Slo
) -> float:
    """Seconds of ``span`` whose requests failed the SLOs (``records`` sorted as ``starts``)."""
    total = 0.0
    for a, b in itertools.pairwise(span):
        lo, hi = bisect.bisect_left(starts, a.t), bisect.bisect_left(starts, b.t)
        if hi > lo and not slo.passes(stats(records[lo:hi], b.t - a.t, slo)):
            total += b.t - a.t
    return total


def _hours(
    samples: list[TimelineSample], counter: Reading, count: Reading, time_scale: float
) -> float:
    """A target's own cumulative counter, else the count integrated over the timeline."""
    kept = [v for s in samples if (v := counter(s)) is not None]
    if len(kept) >= 2:
        return kept[-1] - kept[0]
    points = [(s.t, v) for s in samples if (v := count(s)) is not None]
    area = sum(v * (t2 - t1) for (t1, v), (t2, _) in itertools.pairwise(points))
    return area / 3600.0 / time_scale


def figures(
    timeline: list[TimelineSample],
    records: list[RequestRecord],
    *,
    t0: float,
    slo: Slo,
    target: TargetInfo,
    window: tuple[float, float],
    time_scale: float,
) -> Autoscaling | None:
    """The ``autoscaling`` object of ``summary.json``; None for a target that does not scale."""
    info = target.autoscaling
    samples = [
        s for s in timeline if s.ready_replicas is not None and window[0] <= s.t <= window[1]
    ]
    if info is None or len(samples) < 2:
        return None
    targets = [
        (TRIGGER_FIELDS[name], t.target_per_replica)
        for name, t in info.triggers.items()
        if name in TRIGGER_FIELDS
    ]
    by_start = sorted(records, key=lambda r: r.start)
    starts = [r.start - t0 for r in by_start]
    episodes = []
    for first, last, outcome in scale_outs(samples, targets, info.max_replicas):
        a, b = samples[first], samples[last]
        episodes.append(
            ScaleOut(
                start_s=round(a.t, 3),
                end_s=round(b.t, 3),
                from_replicas=a.ready_replicas or 0,
                to_replicas=b.ready_replicas or 0,
                outcome=outcome,
                lag_s=round((b.t - a.t) / time_scale, 1) if outcome == "served" else None,
                violation_s=round(
                    _violation_s(samples[first : last + 1], by_start, starts, slo) / time_scale, 1
                ),
            )
        )
    lags = [e.lag_s for e in episodes if e.lag_s is not None]
    ready = [s.ready_replicas or 0 for s in samples]
    nodes = [s.nodes or 0 for s in samples]
    return Autoscaling(
        time_scale=time_scale,
        scale_outs=episodes,
        scale_up_lag_s=ScaleUpLag(
            count=len(lags),
            median=round(statistics.median(lags), 1) if lags else None,
            max=max(lags) if lags else None,
        ),
        scale_out_s=round(sum(e.end_s - e.start_s for e in episodes) / time_scale, 1),
        slo_violation_during_scale_out_s=round(sum(e.violation_s for e in episodes), 1),
        replica_hours=round(
            _hours(samples, lambda s: s.replica_hours, lambda s: s.ready_replicas, time_scale), 4
        ),
        gpu_hours=round(_hours(samples, lambda s: s.gpu_hours, lambda s: s.gpus, time_scale), 4),
        replicas=ReplicaRange(
            min=min(ready),
            max=max(ready),
            max_desired=max(s.desired_replicas or 0 for s in samples),
        ),
        nodes=NodeRange(min=min(nodes), max=max(nodes)),
    )
