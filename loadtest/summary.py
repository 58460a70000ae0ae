"""Build ``summary.json`` (and the reports) from a run directory's files alone.

``qwen-stress report RUN_DIR`` and the end of ``qwen-stress run`` both come here, so a report
rebuilt later is the same report.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from costs import reconcile, runs
from loadtest import analysis, cost, records, report_html, report_md, run_files, scaling
from loadtest.slo import Slo


def spans(events: list[dict[str, Any]], fallback_end_s: float) -> list[analysis.StepSpan]:
    """Steps as they ran, from ``events.jsonl``; a step never closed ends at ``fallback_end_s``."""
    starts = [e for e in events if e.get("kind") == "step_start"]
    ends = {e["index"]: e["t"] for e in events if e.get("kind") == "step_end"}
    out = []
    for e in starts:
        end = ends.get(e["index"], fallback_end_s)
        out.append(
            analysis.StepSpan(
                index=e["index"],
                phase=e["phase"],
                start_s=e["t"],
                end_s=max(end, e["t"]),
                users=e.get("users"),
                rate=e.get("rate"),
            )
        )
    return out


_CONFIG_KEYS = ("run_id", "started_at", "plan", "slo", "target")
"""What the analysis reads from ``config.json``."""


@dataclass(frozen=True)
class RunData:
    """A run directory's files, read once: a long run's ``requests.jsonl`` is hundreds of MB."""

    config: dict[str, Any]
    events: list[dict[str, Any]]
    timeline: list[dict[str, Any]]
    records: list[records.RequestRecord]

    @classmethod
    def read(cls, run_dir: Path) -> RunData:
        """Read every file the analysis and the reports use."""
        path = run_dir / run_files.CONFIG
        config = run_files.read_json(path)
        missing = [k for k in _CONFIG_KEYS if k not in config] if isinstance(config, dict) else []
        if not isinstance(config, dict) or missing:
            raise run_files.RunDirError(
                f"{path} lacks {', '.join(missing) or 'its keys'}: not the config.json of a "
                "qwen-stress run"
            )
        return cls(
            config=config,
            events=list(run_files.read_jsonl(run_dir / run_files.EVENTS)),
            timeline=[s for s in run_files.read_jsonl(run_dir / run_files.TIMELINE) if "t" in s],
            records=list(records.read(run_dir / run_files.REQUESTS)),
        )


def build(data: RunData) -> dict[str, Any]:
    """Compute the summary from the run's files."""
    config, events, timeline, recs = data.config, data.events, data.timeline, data.records
    t0 = float(config["started_at"])
    last_seen = max(
        [e["t"] for e in events if "t" in e]
        + [s["t"] for s in timeline]
        + [r.start - t0 + (r.e2e_ms or 0.0) / 1000.0 for r in recs],
        default=0.0,
    )
    steps = spans(events, last_seen)
    slo = Slo.from_json(config["slo"])
    plan = config["plan"]["name"]
    result = analysis.analyze(recs, steps, t0, slo, plan, timeline)
    run_s = sum(s.duration_s for s in steps)
    window = (steps[0].start_s, steps[-1].end_s) if steps else (0.0, 0.0)
    time_scale = float(config.get("time_scale", 1.0))
    autoscaling = scaling.figures(
        timeline,
        recs,
        t0=t0,
        slo=slo,
        target=config["target"],
        window=window,
        time_scale=time_scale,
    )
    node_gpu_hours = autoscaling["gpu_hours"] if autoscaling else None
    finished = next((e for e in events if e.get("kind") == "finished"), {})
    return {
        "run_id": config["run_id"],
        "plan": plan,
        "plan_summary": config["plan"].get("summary", ""),
        "target": config["target"],
        "slo": slo.to_json(),
        **result,
        "cost": cost.estimate(config["target"], timeline, window, time_scale, node_gpu_hours),
        "autoscaling": autoscaling,
        "target_cpu_max": max(
            (float(s["target_cpu"]) for s in timeline if s.get("target_cpu") is not None),
            default=None,
        ),
        "duration_s": round(run_s, 3),
        "time_scale": time_scale,
        "workers": config.get("workers"),
        "interrupted": bool(finished.get("interrupted")) or not finished,
        "stop_reason": finished.get("stop_reason", "the run did not finish (no 'finished' event)"),
        "events": [
            e for e in events if e.get("kind") not in ("step_start", "step_end", "finished")
        ],
        "open_loop": _open_loop(timeline),
    }


def _open_loop(timeline: list[dict[str, Any]]) -> dict[str, int] | None:
    last = next((s for s in reversed(timeline) if "arrivals" in s), None)
    if last is None:
        return None
    return {k: int(last.get(k) or 0) for k in ("arrivals", "late", "dropped")}


def write(run_dir: Path) -> dict[str, Any]:
    """Compute the summary and write ``summary.json``, ``report.html`` and ``report.md``."""
    data = RunData.read(run_dir)
    summary = build(data)
    run_files.write_json(run_dir / run_files.SUMMARY, summary)
    (run_dir / run_files.REPORT_MD).write_text(report_md.render(summary), encoding="utf-8")
    html = report_html.render(
        summary, data.timeline, data.records, float(data.config["started_at"])
    )
    (run_dir / run_files.REPORT_HTML).write_text(html, encoding="utf-8")
    # A rebuilt report keeps the billed cost that `qwen-stress cost actuals` added to it.
    actuals = runs.read_actuals(run_dir)
    if actuals is not None:
        reconcile.add_to_reports(run_dir, actuals)
    return summary
