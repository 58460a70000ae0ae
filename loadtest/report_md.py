"""``report.md``: the short report, sized for a CI comment."""

from __future__ import annotations

from typing import Any

from loadtest.metric_text import (
    DEFINITIONS,
    autoscaling_lines,
    cost_line,
    failure_lines,
    headline,
    load_label,
    ms,
    pct,
    slo_text,
    warnings,
)


def _row(step: dict[str, Any]) -> str:
    ttft = step["ttft_ms"] or {}
    itl = step["itl_ms"] or {}
    e2e = step["e2e_ms"] or {}
    verdict = "pass" if step["slo_pass"] else "**fail**"
    return (
        f"| {step['index']} | {step['phase']} | {load_label(step)} | {step['requests']} | "
        f"{pct(step['success_rate'])} | {step['rps']:.2f} | {step['output_tokens_per_s']:.0f} | "
        f"{ms(ttft.get('avg'))} | {ms(ttft.get('p99'))} | {ms(itl.get('p50'))} | "
        f"{ms(e2e.get('p99'))} | {verdict} |"
    )


def render(summary: dict[str, Any]) -> str:
    """The Markdown report."""
    target = summary["target"]
    lines = [
        f"## qwen-stress run `{summary['run_id']}`",
        "",
        f"**{headline(summary)}**",
        "",
        f"Plan `{summary['plan']}` against {target.get('description', target.get('url'))}, "
        f"{summary['duration_s']:.0f} s of load, {summary['overall']['requests']} requests. "
        f"CI verdict: **{'pass' if summary['verdict']['pass'] else 'fail'}** "
        f"({summary['verdict']['rule']}).",
        "",
        f"SLOs: {slo_text(summary['slo'])}.",
        "",
        "| step | phase | load | requests | success | RPS | tok/s | TTFT avg | TTFT p99 "
        "| ITL p50 | E2E p99 | SLO |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        *(_row(s) for s in summary["steps"]),
        "",
    ]
    for line in failure_lines(summary):
        lines += [line, ""]
    cost = cost_line(summary)
    if cost:
        lines += [cost, ""]
    for line in autoscaling_lines(summary):
        lines += [line, ""]
    lines += [f"> {w}" for w in warnings(summary)]
    lines += ["", "<details><summary>Metric definitions</summary>", ""]
    lines += [f"- **{name}**: {text}" for name, text in DEFINITIONS]
    lines += ["", "</details>", ""]
    return "\n".join(lines)
