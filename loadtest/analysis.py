"""From raw records to per-step and overall stats, SLO verdicts and the capacity figure.

Percentiles are exact, computed from every record (numpy's default linear interpolation, as
vLLM's benchmark computes them), never from Locust's bucketed histograms. A request belongs to
the step during which it was sent. Rates divide by the step's length.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from loadtest.records import RequestRecord
from loadtest.schema import (
    Analysis,
    Capacity,
    CpuFigures,
    Distribution,
    OverallStats,
    SloCheck,
    Stats,
    StepStats,
    TimelineSample,
    Verdict,
)
from loadtest.slo import Slo

PERCENTILES = (50, 90, 95, 99)
CPU_FLAG_PCT = 85.0
"""A worker busier than this (mean over a step) may have inflated that step's latencies."""

_NOT_A_LEVEL = ("settle", "cooldown", "recovery")
"""Phases that follow a change of load and measure the transition, not a load level."""

# Plans that search for a limit expect some ramp steps to fail; their CI verdict rests on the
# phases that must hold (the baseline and the soak at the capacity found).
_VERDICT_PHASES = {"capacity": ("baseline", "soak")}


@dataclass(frozen=True)
class StepSpan:
    """A step as it ran: its load and its window in seconds from the run start."""

    index: int
    phase: str
    start_s: float
    end_s: float
    users: int | None = None
    rate: float | None = None
    users_reached: int | None = None
    """Users running when the step ended (None: not recorded, or open loop)."""

    @property
    def load_reached(self) -> bool:
        """False when fewer users ran than the step planned (unknown counts as reached)."""
        if self.users is None or self.users_reached is None:
            return True
        return self.users_reached >= self.users

    @property
    def duration_s(self) -> float:
        """Length of the window (at least a millisecond, so rates stay finite)."""
        return max(self.end_s - self.start_s, 1e-3)


def distribution(values: npt.ArrayLike) -> Distribution | None:
    """avg/p50/p90/p95/p99 of some values (ms), or None when there are none."""
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        return None
    p50, p90, p95, p99 = (round(float(v), 3) for v in np.percentile(array, PERCENTILES))
    return Distribution(avg=round(float(array.mean()), 3), p50=p50, p90=p90, p95=p95, p99=p99)


def stats(records: list[RequestRecord], duration_s: float, slo: Slo) -> Stats:
    """The stats of ``summary.json`` for one window of records."""
    ok = [r for r in records if r.ok]
    reasons = Counter(r.reason or "unknown" for r in records if not r.ok)
    limits = slo.request_limits_ms()
    good = sum(1 for r in ok if _meets(r, limits))
    tokens = sum(r.output_tokens or 0 for r in ok)
    itl = np.fromiter((g for r in ok for g in r.itl_ms), dtype=np.float64)
    return Stats(
        requests=len(records),
        failures=len(records) - len(ok),
        failures_by_reason=dict(sorted(reasons.items())),
        success_rate=round(len(ok) / len(records), 6) if records else None,
        rps=round(len(ok) / duration_s, 4),
        attempted_rps=round(len(records) / duration_s, 4),
        output_tokens_per_s=round(tokens / duration_s, 3),
        goodput_rps=round(good / duration_s, 4),
        ttft_ms=distribution([r.ttft_ms for r in ok if r.ttft_ms is not None]),
        itl_ms=distribution(itl),
        tpot_ms=distribution([t for r in ok if (t := r.tpot_ms) is not None]),
        e2e_ms=distribution([r.e2e_ms for r in ok if r.e2e_ms is not None]),
        prompt_tokens_avg=_mean([r.prompt_tokens for r in ok if r.prompt_tokens is not None]),
        output_tokens_avg=_mean([r.output_tokens for r in ok if r.output_tokens is not None]),
        usage_missing=sum(1 for r in ok if not r.usage),
        output_tokens=tokens,
        good_requests=good,
        late_ms=distribution([r.late_ms for r in records if r.late_ms is not None]),
    )


def failure_examples(records: list[RequestRecord]) -> dict[str, str]:
    """The first failure's detail per reason: what the server said, which counts alone do not."""
    out: dict[str, str] = {}
    for r in records:
        if not r.ok and r.reason and r.reason not in out:
            out[r.reason] = r.detail or ""
    return dict(sorted(out.items()))


def _mean(values: list[int]) -> float | None:
    return round(sum(values) / len(values), 2) if values else None


def _meets(record: RequestRecord, limits: dict[str, float]) -> bool:
    values = {"ttft": record.ttft_ms, "tpot": record.tpot_ms, "e2e": record.e2e_ms}
    for metric, limit in limits.items():
        value = values[metric]
        if value is not None and value > limit:
            return False
    return True


def assign(
    records: list[RequestRecord], spans: list[StepSpan], t0: float
) -> list[list[RequestRecord]]:
    """Group records by the step during which each was sent: the last one started by then.

    A step's load is offered until the next step's is applied, so a request sent between a
    step's end and the next one's start (the moment the runner takes to judge one step and
    start the next) is the earlier step's, and one sent after the last step ended (before the
    stop reached the workers) the last step's. Event times are rounded to the millisecond, so
    one sent within that of the first step's start is the first step's: no record is dropped.
    """
    groups: list[list[RequestRecord]] = [[] for _ in spans]
    if not spans:
        return groups
    starts = np.array([s.start_s for s in spans])
    offsets = np.fromiter((r.start - t0 for r in records), np.float64, len(records))
    indices = np.maximum(np.searchsorted(starts, offsets, side="right") - 1, 0)
    for record, i in zip(records, indices.tolist(), strict=True):
        groups[i].append(record)
    return groups


def cpu_by_step(timeline: list[TimelineSample], spans: list[StepSpan]) -> list[float | None]:
    """Per step, the busiest worker's mean CPU (% of one core) over the step's samples."""
    out: list[float | None] = []
    for span in spans:
        per_worker: dict[str, list[float]] = {}
        for sample in timeline:
            if span.start_s <= sample.t <= span.end_s:
                for worker, pct in sample.worker_cpu.items():
                    per_worker.setdefault(worker, []).append(pct)
        means = [sum(v) / len(v) for v in per_worker.values() if v]
        out.append(round(max(means), 1) if means else None)
    return out


def capacity(steps: list[StepStats]) -> Capacity:
    """The highest passing step: most users (closed loop) or most requests/s (open loop).

    A step whose users never all ran cannot be the capacity: it showed the SLOs holding under
    less load than its label says. ``limit_found`` says whether a heavier step failed (judged
    by the users it reached): when none did, the figure is only a lower bound (the plan stopped
    before the service did), and reports must say so.
    """
    levels = [s for s in steps if s.phase not in _NOT_A_LEVEL]
    passing = [s for s in levels if s.slo_pass and s.load_reached]
    if not passing:
        return Capacity(
            max_users_within_slo=None,
            max_rps_within_slo=None,
            step=None,
            limit_found=any(not s.slo_pass for s in levels),
        )

    def load(step: StepStats) -> tuple[int, float]:
        users = step.users or 0
        if step.users_reached is not None:
            users = min(users, step.users_reached)
        return users, step.rate or 0.0

    best = max(passing, key=lambda s: (*load(s), s.rps))
    return Capacity(
        max_users_within_slo=best.users,
        max_rps_within_slo=best.rps,
        step=best.index,
        limit_found=any(not s.slo_pass and load(s) > load(best) for s in levels),
    )


def verdict(plan: str, steps: list[StepStats]) -> Verdict:
    """The CI verdict behind ``--fail-on-slo``: which steps had to pass, and did they."""
    phases = _VERDICT_PHASES.get(plan)
    judged = [s for s in steps if phases is None or s.phase in phases]
    failed = [s.index for s in judged if not s.slo_pass]
    rule = (
        f"every {' and '.join(phases)} step meets the SLOs"
        if phases
        else "every step meets the SLOs"
    )
    return Verdict(passed=bool(judged) and not failed, rule=rule, failed_steps=failed)


def analyze(  # noqa: PLR0917 - the run's parts, each read from its own file
    records: list[RequestRecord],
    spans: list[StepSpan],
    t0: float,
    slo: Slo,
    plan: str,
    timeline: list[TimelineSample],
) -> Analysis:
    """Overall stats, per-step stats with SLO verdicts, capacity and the CI verdict."""
    groups = assign(records, spans, t0)
    cpus = cpu_by_step(timeline, spans)
    steps: list[StepStats] = []
    for span, group, cpu in zip(spans, groups, cpus, strict=True):
        step = stats(group, span.duration_s, slo)
        checks = slo.evaluate(step)
        steps.append(
            StepStats(
                **dict(step),
                index=span.index,
                phase=span.phase,
                users=span.users,
                users_reached=span.users_reached,
                load_reached=span.load_reached,
                rate=span.rate,
                start_s=round(span.start_s, 3),
                end_s=round(span.end_s, 3),
                slo_pass=all(c.passed for c in checks),
                slo_checks=[
                    SloCheck(key=c.key, limit=c.limit, value=c.value, passed=c.passed)
                    for c in checks
                ],
                worker_cpu_pct=cpu,
                cpu_flag=cpu is not None and cpu > CPU_FLAG_PCT,
            )
        )
    in_steps = [r for g in groups for r in g]
    total = sum(s.duration_s for s in spans) if spans else 1e-3
    overall = stats(in_steps, total, slo)
    return Analysis(
        plan=plan,
        overall=OverallStats(
            **dict(overall),
            slo_pass=slo.passes(overall),
            failure_examples=failure_examples(in_steps),
        ),
        steps=steps,
        capacity=capacity(steps),
        verdict=verdict(plan, steps),
        cpu=CpuFigures(
            threshold_pct=CPU_FLAG_PCT,
            max_worker_pct=max((c for c in cpus if c is not None), default=None),
            flagged_steps=[s.index for s in steps if s.cpu_flag],
        ),
    )
