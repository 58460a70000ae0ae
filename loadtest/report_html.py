"""``report.html``: one self-contained page (plotly's JavaScript inlined, opens offline).

Latency-over-time charts are computed from the raw records in time buckets (exact
percentiles per bucket); load, throughput and fleet charts come from the timeline.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

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
from loadtest.records import RequestRecord
from loadtest.schema import Autoscaling, Distribution, StepStats, Summary, TimelineSample

_COLUMNS = (
    "step", "phase", "load", "window", "requests", "failures", "success", "RPS", "goodput",
    "tok/s", "TTFT avg", "TTFT p50", "TTFT p99", "ITL p50", "ITL p99", "TPOT p50", "E2E p50",
    "E2E p99", "worker CPU", "SLO",
)  # fmt: skip
_PASS = "rgba(46, 160, 67, 0.08)"
_FAIL = "rgba(218, 54, 51, 0.10)"


def _shade_steps(fig: go.Figure, steps: list[StepStats], rows: int = 1) -> None:
    for step in steps:
        for row in range(1, rows + 1):
            fig.add_vrect(
                x0=step.start_s,
                x1=step.end_s,
                fillcolor=_PASS if step.slo_pass else _FAIL,
                line_width=0,
                layer="below",
                row=row if rows > 1 else None,
                col=1 if rows > 1 else None,
            )


def _layout(fig: go.Figure, title: str, y: str) -> go.Figure:
    fig.update_layout(
        title=title,
        template="plotly_white",
        height=340,
        margin={"l": 60, "r": 30, "t": 50, "b": 40},
        legend={"orientation": "h", "y": -0.2},
    )
    fig.update_xaxes(title_text="seconds since start")
    fig.update_yaxes(title_text=y)
    return fig


_BUCKET_PERCENTILES = (50, 90, 99)


@dataclass
class _Bucket:
    ttft: list[float] = field(default_factory=list)
    e2e: list[float] = field(default_factory=list)
    failures: int = 0


@dataclass(frozen=True)
class _Buckets:
    """Requests by send time in buckets of ``width`` seconds: percentiles and failures each."""

    width: float
    t: list[float]
    percentiles: dict[tuple[str, int], list[float | None]]
    """``(metric, percentile)`` -> one value per bucket (None: no success in it)."""
    failures_per_s: list[float]


def _percentiles(values: list[float]) -> list[float | None]:
    if not values:
        return [None] * len(_BUCKET_PERCENTILES)
    return [float(v) for v in np.percentile(values, _BUCKET_PERCENTILES)]


def _buckets(recs: list[RequestRecord], t0: float, run_s: float) -> _Buckets:
    width = max(2.0, math.ceil(run_s / 80.0))
    by_bucket: dict[int, _Bucket] = {}
    for r in recs:
        b = by_bucket.setdefault(int((r.start - t0) // width), _Bucket())
        if not r.ok:
            b.failures += 1
        if r.ok and r.ttft_ms is not None:
            b.ttft.append(r.ttft_ms)
        if r.ok and r.e2e_ms is not None:
            b.e2e.append(r.e2e_ms)
    keys = sorted(by_bucket)
    percentiles: dict[tuple[str, int], list[float | None]] = {}
    for metric in ("ttft", "e2e"):
        points = [
            _percentiles(by_bucket[k].ttft if metric == "ttft" else by_bucket[k].e2e) for k in keys
        ]
        for i, p in enumerate(_BUCKET_PERCENTILES):
            percentiles[metric, p] = [v[i] for v in points]
    return _Buckets(
        width=width,
        t=[(k + 0.5) * width for k in keys],
        percentiles=percentiles,
        failures_per_s=[by_bucket[k].failures / width for k in keys],
    )


Series = Callable[[TimelineSample], float | None]
"""One figure of the timeline, drawn as a line."""


def _figures(
    summary: Summary, timeline: list[TimelineSample], recs: list[RequestRecord], t0: float
) -> list[go.Figure]:
    steps = summary.steps
    t = [s.t for s in timeline]
    figures = []

    def line(read: Series) -> list[float | None]:
        return [read(s) for s in timeline]

    load = make_subplots(specs=[[{"secondary_y": True}]])
    load.add_trace(go.Scatter(x=t, y=line(lambda s: s.users), name="users"), secondary_y=False)
    if any(s.inflight is not None for s in timeline):
        load.add_trace(
            go.Scatter(x=t, y=line(lambda s: s.inflight), name="in flight", line={"dash": "dot"}),
            secondary_y=False,
        )
    load.add_trace(go.Scatter(x=t, y=line(lambda s: s.rps), name="requests/s"), secondary_y=True)
    _shade_steps(load, steps)
    _layout(load, "Users and requests per second", "users")
    load.update_yaxes(title_text="requests/s", secondary_y=True)
    figures.append(load)

    b = _buckets(recs, t0, summary.duration_s)
    # TTFT is tens to hundreds of ms, E2E seconds: on one axis TTFT would be a flat line.
    lat = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08)
    for row, (metric, dash) in enumerate((("ttft", None), ("e2e", "dot")), start=1):
        for p in (50, 90, 99):
            lat.add_trace(
                go.Scatter(
                    x=b.t,
                    y=b.percentiles[metric, p],
                    name=f"{metric.upper()} p{p}",
                    line={"dash": dash},
                ),
                row=row,
                col=1,
            )
    _shade_steps(lat, steps, rows=2)
    _layout(lat, f"TTFT and E2E percentiles ({b.width:g} s buckets, by send time)", "ms")
    lat.update_layout(height=520)
    lat.update_yaxes(title_text="TTFT ms", row=1, col=1)
    lat.update_yaxes(title_text="E2E ms", row=2, col=1)
    lat.update_xaxes(title_text=None, row=1, col=1)
    figures.append(lat)

    tokens = go.Figure(
        go.Scatter(x=t, y=line(lambda s: s.output_tokens_per_s), name="output tokens/s")
    )
    _shade_steps(tokens, steps)
    figures.append(_layout(tokens, "Output tokens per second", "tokens/s"))

    errors = go.Figure(
        go.Bar(x=b.t, y=b.failures_per_s, name="failed requests/s", marker_color="#da3633")
    )
    _shade_steps(errors, steps)
    _layout(errors, "Failed requests per second (by send time)", "failures/s")
    errors.update_yaxes(rangemode="tozero")  # with no failure at all, 0 sits at the bottom
    figures.append(errors)

    scaled = any(s.desired_replicas is not None for s in timeline)
    if scaled:
        figures.append(_autoscaling(t, timeline, steps, summary.autoscaling))
    # With the autoscaling chart drawn, the replica counts are there already.
    counts: list[tuple[str, Series]] = [
        ("replicas", lambda s: s.replicas),
        ("ready_replicas", lambda s: s.ready_replicas),
        ("nodes", lambda s: s.nodes),
    ]
    shown = counts * (not scaled) + [("queue", lambda s: s.queue), ("running", lambda s: s.running)]
    # --url without --prometheus: one pod's gauges, drawn under their own names.
    shown += [("pod_queue", lambda s: s.pod_queue), ("pod_running", lambda s: s.pod_running)]
    drawn = [(name, line(read)) for name, read in shown]
    fleet_lines = [(name, values) for name, values in drawn if any(v is not None for v in values)]
    if fleet_lines:
        fleet = make_subplots(specs=[[{"secondary_y": True}]])
        for name, values in fleet_lines:
            fleet.add_trace(go.Scatter(x=t, y=values, name=name), secondary_y=False)
        by_replica = sorted({n for s in timeline for n in s.kv_usage_by_replica or {}})
        kv_lines = [
            (f"KV {name}", [(s.kv_usage_by_replica or {}).get(name) for s in timeline])
            for name in by_replica
        ] or [
            ("KV cache usage", line(lambda s: s.kv_usage)),
            ("KV cache usage (one pod)", line(lambda s: s.pod_kv_usage)),
        ]
        kv_lines = [
            (name, values) for name, values in kv_lines if any(v is not None for v in values)
        ]
        if kv_lines:
            for name, values in kv_lines:
                fleet.add_trace(
                    go.Scatter(x=t, y=values, name=name, line={"dash": "dot"}), secondary_y=True
                )
            fleet.update_yaxes(title_text="KV usage (0-1)", secondary_y=True, range=[0, 1])
        _shade_steps(fleet, steps)
        figures.append(_layout(fleet, "Target: queue, running requests and KV cache", "count"))
    return figures


def _autoscaling(
    t: list[float],
    timeline: list[TimelineSample],
    steps: list[StepStats],
    figures: Autoscaling | None,
) -> go.Figure:
    """Desired, ready and pending replicas and nodes as steps, users behind, scale-outs shaded."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    series: list[tuple[Series, str, str | None]] = [
        (lambda s: s.desired_replicas, "desired replicas", "dash"),
        (lambda s: s.ready_replicas, "ready replicas", None),
        (lambda s: s.pending_replicas, "pending replicas", "dot"),
        (lambda s: s.nodes, "GPU nodes", "dashdot"),
    ]
    for read, name, dash in series:
        fig.add_trace(
            go.Scatter(
                x=t,
                y=[read(s) for s in timeline],
                name=name,
                line={"shape": "hv", "dash": dash},
            ),
            secondary_y=False,
        )
    fig.add_trace(
        go.Scatter(
            x=t,
            y=[s.users for s in timeline],
            name="users",
            line={"color": "rgba(120,120,120,0.5)"},
        ),
        secondary_y=True,
    )
    _shade_steps(fig, steps)
    for episode in figures.scale_outs if figures is not None else []:
        fig.add_vrect(
            x0=episode.start_s,
            x1=episode.end_s,
            line={"color": "#8250df", "width": 1, "dash": "dot"},
            layer="below",
        )
    _layout(fig, "Autoscaling: replicas and nodes (scale-outs outlined)", "count")
    fig.update_yaxes(title_text="users", secondary_y=True)
    return fig


def _stat(d: Distribution | None, name: str) -> str:
    return ms(d.stat(name) if d is not None else None)


def _table(steps: list[StepStats]) -> str:
    head = "<tr>" + "".join(f"<th>{h}</th>" for h in _COLUMNS) + "</tr>"
    rows = []
    for s in steps:
        failed = [c.key for c in s.slo_checks if not c.passed]
        verdict = "pass" if s.slo_pass else "fail: " + ", ".join(failed)
        reasons = ", ".join(f"{k} {v}" for k, v in s.failures_by_reason.items())
        cpu = "-" if s.worker_cpu_pct is None else f"{s.worker_cpu_pct:.0f}%"
        cells = [
            s.index,
            s.phase,
            step_load(s),
            f"{s.start_s:.0f}-{s.end_s:.0f} s",
            s.requests,
            f"{s.failures} {reasons}".strip(),
            pct(s.success_rate),
            f"{s.rps:.2f}",
            f"{s.goodput_rps:.2f}",
            f"{s.output_tokens_per_s:.0f}",
            _stat(s.ttft_ms, "mean"),
            _stat(s.ttft_ms, "p50"),
            _stat(s.ttft_ms, "p99"),
            _stat(s.itl_ms, "p50"),
            _stat(s.itl_ms, "p99"),
            _stat(s.tpot_ms, "p50"),
            _stat(s.e2e_ms, "p50"),
            _stat(s.e2e_ms, "p99"),
            cpu,
            verdict,
        ]
        css = "pass" if s.slo_pass else "fail"
        flag = " cpu" if s.cpu_flag else ""
        rows.append(
            f'<tr class="{css}{flag}">'
            + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells)
            + "</tr>"
        )
    return f"<table>{head}{''.join(rows)}</table>"


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1200px;
color:#1f2328}
h1{font-size:1.5rem} .headline{font-size:1.25rem;font-weight:600;margin:1rem 0}
table{border-collapse:collapse;font-size:.8rem;width:100%}
td,th{border:1px solid #d0d7de;padding:3px 6px;text-align:right}
td:nth-child(2),td:nth-child(3),td:last-child{text-align:left}
tr.fail td:last-child{color:#cf222e;font-weight:600}
tr.pass td:last-child{color:#1a7f37} tr.cpu td:nth-last-child(2){background:#fff8c5}
.warn{background:#fff8c5;border-left:4px solid #d4a72c;padding:.5rem 1rem;margin:.5rem 0}
dl{display:grid;grid-template-columns:max-content auto;gap:.25rem 1rem} dt{font-weight:600}
.meta{color:#59636e;font-size:.9rem}
"""


def render(
    summary: Summary,
    timeline: list[TimelineSample],
    recs: list[RequestRecord],
    t0: float,
) -> str:
    """The whole HTML page: the summary, and charts from the timeline and the raw records."""
    figures = _figures(summary, timeline, recs, t0)
    charts = [
        pio.to_html(fig, include_plotlyjs=(i == 0), full_html=False, config={"displaylogo": False})
        for i, fig in enumerate(figures)
    ]
    cost = cost_text(summary)
    verdict = summary.verdict
    esc = html.escape
    workers = "" if summary.workers is None else f"{summary.workers} Locust worker(s); "
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>qwen-stress {esc(summary.run_id)}</title><style>{_CSS}</style></head><body>",
        f"<h1>qwen-stress load test <code>{esc(summary.run_id)}</code></h1>",
        f"<div class='headline'>{esc(headline(summary))}</div>",
        "<p class='meta'>"
        f"Plan <b>{esc(summary.plan)}</b> ({esc(summary.plan_summary)}); "
        f"target {esc(summary.target.label)}; "
        f"{workers}{summary.duration_s:.0f} s of load"
        + (f" at time scale {summary.time_scale:g}" if summary.time_scale != 1 else "")
        + f"; {summary.overall.requests} requests.<br>"
        f"SLOs: {esc(slo_text(summary.slo))}. "
        f"CI verdict: <b>{'pass' if verdict.passed else 'fail'}</b>"
        f" ({esc(verdict.rule)}).</p>",
    ]
    parts.append(f"<p>{esc(cost.headline)}</p>")
    if cost.parts:
        parts.append("<ul>" + "".join(f"<li>{esc(p)}</li>" for p in cost.parts) + "</ul>")
    if cost.basis:
        parts.append(f"<p class='meta'>{esc(cost.basis)}</p>")
    parts += [f"<p>{esc(line)}</p>" for line in autoscaling_lines(summary)]
    parts += [f"<p>{esc(line)}</p>" for line in failure_lines(summary)]
    parts += [f"<div class='warn'>{esc(w)}</div>" for w in warnings(summary)]
    parts += ["<h2>Load steps</h2>", _table(summary.steps), "<h2>Over time</h2>", *charts]
    parts.append("<h2>Metric definitions</h2><dl>")
    parts += [f"<dt>{esc(name)}</dt><dd>{esc(text)}</dd>" for name, text in DEFINITIONS]
    parts.append("</dl></body></html>")
    return "\n".join(parts)
