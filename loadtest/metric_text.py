"""Words shared by the reports: metric definitions, SLO names, number formats."""

from __future__ import annotations

from dataclasses import dataclass

from domain.run_cost import money
from loadtest.plans import load_label
from loadtest.schema import Analysis, OverallStats, StepStats, Summary, WorkerLost
from loadtest.slo import Slo

DEFINITIONS: list[tuple[str, str]] = [
    (
        "TTFT",
        "time to first token: from sending the request to the first chunk that carries content",
    ),
    (
        "ITL",
        "inter-token latency: every gap between consecutive content chunks, pooled over requests",
    ),
    ("TPOT", "time per output token: (E2E - TTFT) / (output tokens - 1), per request"),
    ("E2E", "end-to-end latency: from sending the request to the last content chunk"),
    (
        "Output tokens",
        "from the server's `usage` (stream_options.include_usage); chunks counted if absent",
    ),
    ("RPS", "successful requests per second of the step (requests sent during the step)"),
    (
        "Goodput",
        "successful requests per second whose TTFT, TPOT and E2E each meet the loosest limit "
        "set for that metric",
    ),
    ("Percentiles", "exact, from every request record (linear interpolation, as vLLM's benchmark)"),
]


TARGET_CPU_FLAG = 0.85
"""A local target (one process, one core) busier than this may emit tokens late."""


def ms(value: float | None) -> str:
    """A latency for a table: ``123 ms`` or ``1.23 s``; a dash when unknown."""
    if value is None:
        return "-"
    return f"{value:.0f} ms" if value < 1000 else f"{value / 1000:.2f} s"


def pct(value: float | None) -> str:
    """A ratio as a percentage with two decimals."""
    return "-" if value is None else f"{value * 100:.2f}%"


def slo_text(slo: Slo) -> str:
    """The objectives in one line: ``success >= 99.00%, ttft mean < 1000 ms, ...``."""
    rate = slo.success_rate
    parts = [f"success >= {pct(rate)}" if rate > 0 else "any success rate (success_rate=off)"]
    for key, limit in slo.limits_ms.items():
        metric, stat, _ = key.split("_")
        parts.append(f"{metric.upper()} {stat} < {ms(limit)}")
    return ", ".join(parts)


_HEAVIER_LOAD = {"fixed": "--users", "soak": "--users", "poisson": "--rate"}
"""The flag that offers more load, per plan (else ``--max-users``)."""


def _no_success(overall: OverallStats) -> str | None:
    """The headline of a run in which no request succeeded: that measured the setup, not load."""
    if overall.requests > overall.failures:
        return None
    if not overall.requests:
        return "No request finished: nothing was measured."
    reasons = ", ".join(f"{k} {v}" for k, v in overall.failures_by_reason.items())
    example = next(iter(overall.failure_examples.values()), None)
    seen = f"; first: {example[:160]}" if example else ""
    return (
        f"No request succeeded ({reasons}{seen}): check the target and the request "
        "(URL, key, model) before reading capacity from this run."
    )


def step_load(step: StepStats) -> str:
    """A step's load as planned, or what was reached of it: ``300 of 500 users``."""
    if not step.load_reached and step.users_reached is not None:
        return f"{step.users_reached} of {step.users} users"
    return load_label(step.users, step.rate)


_TIME_TO_START = (
    "give the users time to start: a longer --duration or --step-duration, a higher "
    "--spawn-rate, or more --workers"
)


def _short(step: StepStats) -> str:
    return f"step {step.index} ({step.phase}) reached only {step_load(step)} before it ended"


def headline(summary: Analysis | Summary) -> str:
    """The capacity sentence at the top of every report."""
    failed = _no_success(summary.overall)
    if failed:
        return failed
    cap = summary.capacity
    if cap.step is None or cap.max_rps_within_slo is None:
        short = [s for s in summary.steps if s.slo_pass and not s.load_reached]
        if short:
            return (
                f"No step that met the SLOs reached its planned load ({_short(short[0])}): "
                f"capacity was not measured; {_TIME_TO_START}."
            )
        return "No load step met the SLOs: capacity is below the lowest load tried."
    at_least = "" if cap.limit_found else "at least "
    flag = _HEAVIER_LOAD.get(summary.plan, "--max-users")
    bound = ""
    if at_least and isinstance(summary, Summary) and summary.interrupted:
        # Stopped early: no heavier step ran, so none could fail; nothing says more load fits.
        bound = " The run was cut short before any heavier step: the limit was not looked for."
    elif at_least:
        bound = f" No heavier step failed: raise {flag} to find the limit."
    if cap.max_users_within_slo is not None:
        return (
            f"Capacity: {at_least}{cap.max_users_within_slo} concurrent users "
            f"({cap.max_rps_within_slo:.2f} req/s) within the SLOs.{bound}"
        )
    return f"Capacity: {at_least}{cap.max_rps_within_slo:.2f} req/s within the SLOs.{bound}"


@dataclass(frozen=True)
class CostText:
    """The cost as the reports say it: a headline, one line per part, and its basis."""

    headline: str
    parts: list[str]
    basis: str | None


def cost_text(summary: Summary) -> CostText:
    """What the run cost and per what, or "no estimate" and why: never a $0 that is not one."""
    c = summary.cost
    if c.usd is None:
        why = c.basis.removeprefix("no estimate: ")
        return CostText(f"Cost: no estimate ({why}).", [], None)
    scaled = (
        ""
        if c.time_scale == 1
        else f" for the unscaled plan (this run ran at time scale {c.time_scale:g})"
    )
    per = []
    if c.usd_per_million_output_tokens is not None:
        per.append(f"{money(c.usd_per_million_output_tokens)} per million output tokens")
    if c.usd_per_good_request is not None:
        per.append(f"{money(c.usd_per_good_request)} per request within the SLOs")
    elif c.good_requests == 0:
        per.append("no request met the SLOs")
    headline = f"Estimated cost: {money(c.usd)}{scaled}" + (f": {', '.join(per)}" if per else "")
    parts = [
        f"{p.label}: {p.quantity:.4g} {p.unit}s x {money(p.usd_per_unit)} ({p.detail}"
        + (f", {p.price}" if p.price else "")
        + f") = {money(p.usd)}"
        for p in c.priced_parts()
    ]
    prices = f" Prices: {c.prices.label()}." if c.prices else ""
    return CostText(headline + ".", parts, f"Cost basis: {c.basis}.{prices}")


def failure_lines(summary: Summary) -> list[str]:
    """Failures by reason, then what the first failure of each reason said."""
    overall = summary.overall
    if not overall.failures_by_reason:
        return []
    counts = ", ".join(f"{k} {v}" for k, v in overall.failures_by_reason.items())
    return [f"Failures: {counts}"] + [
        f"First {reason}: {' '.join(detail.split())[:200]}"
        for reason, detail in overall.failure_examples.items()
    ]


def _cluster_s(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def autoscaling_lines(summary: Summary) -> list[str]:
    """How the fleet scaled, in cluster time; nothing for a target that does not scale."""
    a = summary.autoscaling
    if a is None:
        return []
    scale = "" if a.time_scale == 1 else f" (cluster time: this run ran at {a.time_scale:g})"
    lag = a.scale_up_lag_s
    served = f"{lag.count} of {len(a.scale_outs)} scale-outs reached a new serving replica"
    timing = (
        f", scale-up lag median {_cluster_s(lag.median)}, max {_cluster_s(lag.max)} "
        "(metric above its target to a new replica serving)"
        if lag.count
        else ""
    )
    return [
        f"Autoscaling{scale}: replicas {a.replicas.min}-{a.replicas.max} "
        f"(desired up to {a.replicas.max_desired}), GPU nodes "
        f"{a.nodes.min}-{a.nodes.max}; {served}{timing}.",
        f"SLOs were violated {_cluster_s(a.slo_violation_during_scale_out_s)} of the "
        f"{_cluster_s(a.scale_out_s)} spent scaling out; {a.replica_hours:.2f} "
        f"replica-hours served, {a.gpu_hours:.2f} GPU-hours billed.",
    ]


def warnings(summary: Summary) -> list[str]:
    """What may make the numbers wrong: unread files, busy or lost workers, interruptions, drops."""
    out = [f"Not read: {line}." for line in summary.unread]
    out += [
        f"{_short(step).capitalize()}: its figures are for less load than planned and it "
        f"cannot be the capacity; {_TIME_TO_START}."
        for step in summary.steps
        if not step.load_reached
    ]
    cpu = summary.cpu
    if cpu.flagged_steps:
        out.append(
            f"Load-generator CPU above {cpu.threshold_pct:.0f}% in steps "
            f"{', '.join(map(str, cpu.flagged_steps))} (max {cpu.max_worker_pct or 0:.0f}%): "
            "TTFT there may be inflated by the client; add workers."
        )
    busy = summary.target_cpu_max
    if busy is not None and busy > TARGET_CPU_FLAG:
        out.append(
            f"The local target used up to {busy:.0%} of a core: its token timing (and so TTFT "
            "and ITL) may be late; lower the load or use a slower model or GPU."
        )
    out += [
        f"Worker {e.worker} was lost at {e.t:.1f} s ({e.detail}); the run went on."
        for e in summary.events
        if isinstance(e, WorkerLost)
    ]
    if summary.interrupted:
        out.append(f"The run was cut short: {summary.stop_reason}. The report covers what ran.")
    ol = summary.open_loop
    if ol is not None and (ol.dropped or ol.late):
        out.append(
            f"Open loop: {ol.dropped} of {ol.arrivals} arrivals dropped at the in-flight cap "
            f"and {ol.late} sent late; the offered rate was lower than planned."
        )
    return out
