"""Build ``summary.json`` (and the reports) from a run directory's files alone.

``qwen-stress report RUN_DIR`` and the end of ``qwen-stress run`` both come here, so a report
rebuilt later is the same report. A rebuild never replaces a summary with a poorer one: when
files went missing since, the summary there is kept and the error says why.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ValidationError

from costs import reconcile, runs
from loadtest import analysis, cost, report_html, report_md, run_files, scaling
from loadtest.run_data import RunData
from loadtest.schema import (
    Finished,
    OpenLoop,
    RunEvent,
    StepEnd,
    StepStart,
    Summary,
    TimelineSample,
)


def spans(events: list[RunEvent], fallback_end_s: float) -> list[analysis.StepSpan]:
    """Steps as they ran, from ``events.jsonl``; a step never closed ends at ``fallback_end_s``."""
    ends = {e.index: e for e in events if isinstance(e, StepEnd)}
    return [
        analysis.StepSpan(
            index=e.index,
            phase=e.phase,
            start_s=e.t,
            end_s=max(end.t if end else fallback_end_s, e.t),
            users=e.users,
            rate=e.rate,
            users_reached=end.users_reached if end else None,
        )
        for e in events
        if isinstance(e, StepStart)
        for end in [ends.get(e.index)]
    ]


def build(data: RunData) -> Summary:
    """Compute the summary from the run's files."""
    config, events, timeline, recs = data.config, data.events, data.timeline, data.records
    t0 = config.started_at
    last_seen = max(
        [e.t for e in events]
        + [s.t for s in timeline]
        + [r.start - t0 + (r.e2e_ms or 0.0) / 1000.0 for r in recs],
        default=0.0,
    )
    steps = spans(events, last_seen)
    result = analysis.analyze(recs, steps, t0, config.slo, config.plan.name, timeline)
    window = (steps[0].start_s, steps[-1].end_s) if steps else (0.0, 0.0)
    autoscaling = scaling.figures(
        timeline,
        recs,
        t0=t0,
        slo=config.slo,
        target=config.target,
        window=window,
        time_scale=config.time_scale,
    )
    node_gpu_hours = autoscaling.gpu_hours if autoscaling else None
    finished = next((e for e in events if isinstance(e, Finished)), None)
    return Summary(
        run_id=config.run_id,
        plan=config.plan.name,
        plan_summary=config.plan.summary,
        target=config.target,
        slo=config.slo,
        overall=result.overall,
        steps=result.steps,
        capacity=result.capacity,
        verdict=result.verdict,
        cpu=result.cpu,
        cost=cost.estimate(
            cost.RunFiles(config, events, timeline, window, result.overall, node_gpu_hours)
        ),
        autoscaling=autoscaling,
        target_cpu_max=max(
            (s.target_cpu for s in timeline if s.target_cpu is not None), default=None
        ),
        duration_s=round(sum(s.duration_s for s in steps), 3),
        time_scale=config.time_scale,
        workers=config.workers,
        interrupted=finished is None or finished.interrupted,
        stop_reason=(
            finished.stop_reason if finished else "the run did not finish (no 'finished' event)"
        ),
        events=[e for e in events if not isinstance(e, StepStart | StepEnd | Finished)],
        open_loop=_open_loop(timeline),
        unread=data.unread,
    )


def _open_loop(timeline: list[TimelineSample]) -> OpenLoop | None:
    last = next((s for s in reversed(timeline) if s.arrivals is not None), None)
    if last is None:
        return None
    return OpenLoop(arrivals=last.arrivals or 0, late=last.late or 0, dropped=last.dropped or 0)


class _Kept(BaseModel):
    """What is compared of a summary already there (any schema version has these)."""

    class _Overall(BaseModel):
        requests: int

    overall: _Overall
    steps: list[object]


def _keep_better(path: Path, new: Summary, unread: list[str]) -> None:
    """Refuse to replace a summary that counts more than the files now give."""
    try:
        old = _Kept.model_validate_json(path.read_bytes())
    except (OSError, ValidationError):
        return  # none, or not readable: nothing better to keep
    if (old.overall.requests, len(old.steps)) <= (new.overall.requests, len(new.steps)):
        return
    why = f" ({'; '.join(unread)})" if unread else ""
    raise run_files.RunDirError(
        f"{path} kept: it counts {old.overall.requests} requests in {len(old.steps)} steps, "
        f"the files now give {new.overall.requests} in {len(new.steps)}{why}; restore the "
        f"missing files, or pass --force to rebuild from what is left"
    )


def write(run_dir: Path, *, force: bool = False) -> Summary:
    """Compute the summary and write ``summary.json``, ``report.html`` and ``report.md``.

    ``force``: replace a summary that counts more than the files now give.
    """
    if not run_dir.is_dir():
        what = "does not exist" if not run_dir.exists() else "is not a directory"
        raise run_files.RunDirError(f"{run_dir} {what}: give the run directory `run` wrote")
    data = RunData.read(run_dir)
    summary = build(data)
    if not force:
        _keep_better(run_dir / run_files.SUMMARY, summary, data.unread)
    try:
        run_files.write_json(run_dir / run_files.SUMMARY, summary)
        (run_dir / run_files.REPORT_MD).write_text(report_md.render(summary), encoding="utf-8")
        html = report_html.render(summary, data.timeline, data.records, data.config.started_at)
        (run_dir / run_files.REPORT_HTML).write_text(html, encoding="utf-8")
        # A rebuilt report keeps the billed cost that `qwen-stress cost actuals` added to it.
        actuals = runs.read_actuals(run_dir)
        if actuals is not None:
            reconcile.add_to_reports(run_dir, actuals)
    except OSError as err:
        where = err.filename or run_dir
        raise run_files.RunDirError(
            f"cannot write {where}: {err.strerror or err}; copy the run directory somewhere "
            "writable and report there"
        ) from None
    return summary
