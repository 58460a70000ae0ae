"""Words shared by the reports: metric definitions, SLO names, number formats."""

from __future__ import annotations

from typing import Any

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


def slo_text(slo: dict[str, float]) -> str:
    """The objectives in one line: ``success >= 99.00%, ttft mean < 1000 ms, ...``."""
    parts = [f"success >= {pct(slo['success_rate'])}"]
    for key, limit in slo.items():
        if key != "success_rate":
            metric, stat, _ = key.split("_")
            parts.append(f"{metric.upper()} {stat} < {ms(limit)}")
    return ", ".join(parts)


def load_label(step: dict[str, Any]) -> str:
    """How a step's offered load reads: ``150 users`` or ``4 req/s``."""
    if step.get("rate") is not None:
        return f"{step['rate']:g} req/s"
    return f"{step.get('users')} users"


_HEAVIER_LOAD = {"fixed": "--users", "soak": "--users", "poisson": "--rate"}
"""The flag that offers more load, per plan (else ``--max-users``)."""


def _no_success(overall: dict[str, Any]) -> str | None:
    """The headline of a run in which no request succeeded: that measured the setup, not load."""
    if overall["requests"] > overall["failures"]:
        return None
    if not overall["requests"]:
        return "No request finished: nothing was measured."
    reasons = ", ".join(f"{k} {v}" for k, v in overall["failures_by_reason"].items())
    example = next(iter((overall.get("failure_examples") or {}).values()), None)
    seen = f"; first: {example[:160]}" if example else ""
    return (
        f"No request succeeded ({reasons}{seen}): check the target and the request "
        "(URL, key, model) before reading capacity from this run."
    )


def headline(summary: dict[str, Any]) -> str:
    """The capacity sentence at the top of every report."""
    failed = _no_success(summary["overall"])
    if failed:
        return failed
    cap = summary["capacity"]
    if cap["step"] is None:
        return "No load step met the SLOs: capacity is below the lowest load tried."
    # Older summaries lack the flag; they were written when only a failure ended a ramp.
    at_least = "" if cap.get("limit_found", True) else "at least "
    flag = _HEAVIER_LOAD.get(summary.get("plan", ""), "--max-users")
    bound = "" if at_least == "" else f" No heavier step failed: raise {flag} to find the limit."
    if cap["max_users_within_slo"] is not None:
        return (
            f"Capacity: {at_least}{cap['max_users_within_slo']} concurrent users "
            f"({cap['max_rps_within_slo']:.2f} req/s) within the SLOs.{bound}"
        )
    return f"Capacity: {at_least}{cap['max_rps_within_slo']:.2f} req/s within the SLOs.{bound}"


def cost_line(summary: dict[str, Any]) -> str | None:
    """The estimated cost sentence, or None when the GPU is unknown."""
    c = summary.get("cost")
    if not c or c.get("usd") is None:
        return None
    scaled = (
        ""
        if c["time_scale"] == 1
        else f" (the unscaled plan; this run ran at time scale {c['time_scale']:g})"
    )
    return (
        f"Estimated GPU cost: {c['gpu_hours']:.3f} GPU-hours x ${c['usd_per_gpu_hour']:.3f} "
        f"({c['gpu']}, {c['instance_type']}) = ${c['usd']:.2f}{scaled}."
    )


def failure_lines(summary: dict[str, Any]) -> list[str]:
    """Failures by reason, then what the first failure of each reason said."""
    overall = summary["overall"]
    if not overall["failures_by_reason"]:
        return []
    counts = ", ".join(f"{k} {v}" for k, v in overall["failures_by_reason"].items())
    examples = overall.get("failure_examples") or {}
    return [f"Failures: {counts}"] + [
        f"First {reason}: {' '.join(detail.split())[:200]}" for reason, detail in examples.items()
    ]


def _cluster_s(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def autoscaling_lines(summary: dict[str, Any]) -> list[str]:
    """How the fleet scaled, in cluster time; nothing for a target that does not scale."""
    a = summary.get("autoscaling")
    if not a:
        return []
    scale = "" if a["time_scale"] == 1 else f" (cluster time: this run ran at {a['time_scale']:g})"
    lag = a["scale_up_lag_s"]
    outs = a["scale_outs"]
    served = f"{lag['count']} of {len(outs)} scale-outs reached a new serving replica"
    timing = (
        f", scale-up lag median {_cluster_s(lag['median'])}, max {_cluster_s(lag['max'])} "
        "(metric above its target to a new replica serving)"
        if lag["count"]
        else ""
    )
    return [
        f"Autoscaling{scale}: replicas {a['replicas']['min']}-{a['replicas']['max']} "
        f"(desired up to {a['replicas']['max_desired']}), GPU nodes "
        f"{a['nodes']['min']}-{a['nodes']['max']}; {served}{timing}.",
        f"SLOs were violated {_cluster_s(a['slo_violation_during_scale_out_s'])} of the "
        f"{_cluster_s(a['scale_out_s'])} spent scaling out; {a['replica_hours']:.2f} "
        f"replica-hours served, {a['gpu_hours']:.2f} GPU-hours billed.",
    ]


def warnings(summary: dict[str, Any]) -> list[str]:
    """What may make the numbers wrong: busy workers, lost workers, interruptions, drops."""
    out = []
    cpu = summary["cpu"]
    if cpu["flagged_steps"]:
        out.append(
            f"Load-generator CPU above {cpu['threshold_pct']:.0f}% in steps "
            f"{', '.join(map(str, cpu['flagged_steps']))} (max {cpu['max_worker_pct']:.0f}%): "
            "TTFT there may be inflated by the client; add workers."
        )
    busy = summary.get("target_cpu_max")
    if busy is not None and busy > TARGET_CPU_FLAG:
        out.append(
            f"The local target used up to {busy:.0%} of a core: its token timing (and so TTFT "
            "and ITL) may be late; lower the load or use a slower model or GPU."
        )
    for e in summary["events"]:
        if e.get("kind") == "worker_lost":
            out.append(
                f"Worker {e.get('worker')} was lost at {e['t']:.1f} s ({e.get('detail', '')}); "
                "the run went on."
            )
        elif e.get("kind") == "target_error":
            out.append(f"Target: {e.get('detail')}")
    if summary["interrupted"]:
        out.append(f"The run was cut short: {summary['stop_reason']}. The report covers what ran.")
    ol = summary.get("open_loop")
    if ol and (ol["dropped"] or ol["late"]):
        out.append(
            f"Open loop: {ol['dropped']} of {ol['arrivals']} arrivals dropped at the in-flight cap "
            f"and {ol['late']} sent late; the offered rate was lower than planned."
        )
    return out
