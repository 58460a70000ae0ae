"""``report.md``: the short report, sized for a CI comment."""

from __future__ import annotations

from loadtest.metric_text import (
    DEFINITIONS,
    autoscaling_lines,
    cost_text,
    failure_lines,
    headline,
    ms,
    pct,
    slo_text,
    step_load,
    warnings,
)
from loadtest.schema import Distribution, StepStats, Summary


def _stat(d: Distribution | None, name: str) -> str:
    return ms(d.stat(name) if d is not None else None)


def _row(step: StepStats) -> str:
    verdict = "pass" if step.slo_pass else "**fail**"
    return (
        f"| {step.index} | {step.phase} | {step_load(step)} | "
        f"{step.requests} | {pct(step.success_rate)} | {step.rps:.2f} | "
        f"{step.output_tokens_per_s:.0f} | {_stat(step.ttft_ms, 'mean')} | "
        f"{_stat(step.ttft_ms, 'p99')} | {_stat(step.itl_ms, 'p50')} | "
        f"{_stat(step.e2e_ms, 'p99')} | {verdict} |"
    )


def render(summary: Summary) -> str:
    """The Markdown report."""
    lines = [
        f"## qwen-stress run `{summary.run_id}`",
        "",
        f"**{headline(summary)}**",
        "",
        f"Plan `{summary.plan}` against {summary.target.label}, "
        f"{summary.duration_s:.0f} s of load, {summary.overall.requests} requests. "
        f"CI verdict: **{'pass' if summary.verdict.passed else 'fail'}** "
        f"({summary.verdict.rule}).",
        "",
        f"SLOs: {slo_text(summary.slo)}.",
        "",
        "| step | phase | load | requests | success | RPS | tok/s | TTFT avg | TTFT p99 "
        "| ITL p50 | E2E p99 | SLO |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        *(_row(s) for s in summary.steps),
        "",
    ]
    for line in failure_lines(summary):
        lines += [line, ""]
    cost = cost_text(summary)
    lines += [cost.headline, ""]
    if cost.parts:
        lines += [*(f"- {part}" for part in cost.parts), ""]
    if cost.basis:
        lines += [cost.basis, ""]
    for line in autoscaling_lines(summary):
        lines += [line, ""]
    lines += [f"> {w}" for w in warnings(summary)]
    lines += ["", "<details><summary>Metric definitions</summary>", ""]
    lines += [f"- **{name}**: {text}" for name, text in DEFINITIONS]
    lines += ["", "</details>", ""]
    return "\n".join(lines)
