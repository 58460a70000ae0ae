"""summary.json, report.html and report.md built from a run directory's files alone."""

from __future__ import annotations

import json
import re
from pathlib import Path

from typer.testing import CliRunner

from loadtest import run_files, summary
from loadtest.cli import app
from loadtest.metric_text import headline
from loadtest.records import RequestRecord
from loadtest.schema import AutoscalingInfo, FleetTargetInfo, Summary, WorkerLost

T0 = 1_700_000_000.0
STATS_KEYS = {"requests", "failures", "success_rate", "rps", "output_tokens_per_s", "goodput_rps"}
TARGET = FleetTargetInfo(
    url="http://127.0.0.1:1",
    description="the autoscaling twin",
    model="Qwen/Qwen2.5-7B-Instruct",
    gpu="A10G",
    instance_type="g5.xlarge",
    replicas=1,
    gpus_per_replica=1,
    time_scale=0.1,
    autoscaling=AutoscalingInfo(max_replicas=1, triggers={}),
)


def write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data), encoding="utf-8")


def rec(at: float, ttft: float, e2e: float, ok: bool = True) -> RequestRecord:
    return RequestRecord(
        T0 + at,
        ok,
        "t",
        "chat",
        reason=None if ok else "http_503",
        detail=None if ok else 'HTTP 503: {"error": "busy"}',
        ttft_ms=ttft,
        e2e_ms=e2e,
        itl_ms=[50.0] * 9,
        output_tokens=10,
        usage=True,
    )


def make_run(tmp_path: Path, interrupted: bool = False) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    config = {
        "run_id": "run",
        "started_at": T0,
        "plan": {"name": "capacity", "summary": "baseline -> ramp"},
        "time_scale": 0.1,
        "target": TARGET.model_dump(mode="json"),
        "slo": {"success_rate": 0.99, "ttft_mean_ms": 1000.0, "ttft_p99_ms": 2000.0},
        "workers": 2,
    }
    write_json(run / run_files.CONFIG, config)
    events = [
        {"t": 1.0, "kind": "step_start", "index": 0, "phase": "baseline", "users": 50},
        {"t": 11.0, "kind": "step_end", "index": 0},
        {"t": 11.0, "kind": "step_start", "index": 1, "phase": "ramp", "users": 100},
        {"t": 15.0, "kind": "worker_lost", "worker": 1, "detail": "process killed by signal 9"},
    ]
    if not interrupted:
        events += [
            {"t": 21.0, "kind": "step_end", "index": 1},
            {
                "t": 22.0,
                "kind": "finished",
                "interrupted": False,
                "stop_reason": "the plan finished",
            },
        ]
    with (run / run_files.EVENTS).open("w") as f:
        f.writelines(json.dumps(e) + "\n" for e in events)
    records = [rec(1 + i * 0.2, 200.0, 900.0) for i in range(50)]
    records += [rec(11 + i * 0.2, 2500.0, 4000.0, ok=i % 10 != 0) for i in range(50)]
    with (run / run_files.REQUESTS).open("w") as f:
        f.writelines(json.dumps(r.to_json()) + "\n" for r in records)
        f.write('{"start": 17000')  # a torn last line, as a killed runner leaves it
    with (run / run_files.TIMELINE).open("w") as f:
        for t in range(2, 22, 2):
            sample = {"t": float(t), "users": 50, "rps": 5.0, "replicas": 1}
            f.write(json.dumps({**sample, "worker_cpu": {"0": 30.0}}) + "\n")
    return run


def test_summary_shape_and_numbers(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    s = summary.write(run)
    text = (run / run_files.SUMMARY).read_text()
    assert Summary.model_validate_json(text) == s
    # the on-disk names the README's "Run directory" table and older readers rely on
    on_disk = json.loads(text)
    assert {"run_id", "plan", "target", "slo", "overall", "steps", "capacity", "cost"} <= set(
        on_disk
    )
    assert set(on_disk["overall"]) >= STATS_KEYS
    for step in on_disk["steps"]:
        assert STATS_KEYS | {"index", "users", "start_s", "end_s", "slo_pass"} <= set(step)
        assert set(step["ttft_ms"]) == {"avg", "p50", "p90", "p95", "p99"}
        assert {"key", "limit", "value", "pass"} == set(step["slo_checks"][0])
    assert set(on_disk["verdict"]) == {"pass", "rule", "failed_steps"}
    assert on_disk["schema_version"] == 1
    assert [st.requests for st in s.steps] == [50, 50]
    assert s.overall.requests == 100
    assert [st.slo_pass for st in s.steps] == [True, False]
    assert s.steps[1].failures_by_reason == {"http_503": 5}
    assert on_disk["capacity"] == {
        "max_users_within_slo": 50,
        "max_rps_within_slo": 5.0,
        "step": 0,
        "limit_found": True,
    }
    assert s.interrupted is False
    assert isinstance(s.events[0], WorkerLost) and s.events[0].worker == 1
    # 20 s of one A10G at time scale 0.1 is 200 s of the real plan, priced per GPU-hour
    assert s.cost.gpu_hours == round(200 / 3600, 4)
    assert s.cost.usd is not None and s.cost.usd > 0
    # the torn last line of requests.jsonl is counted and said, not dropped silently
    assert s.unread == ["requests.jsonl: 1 unreadable line skipped"]


def test_reports_are_self_contained_and_say_what_happened(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    summary.write(run)
    page = (run / run_files.REPORT_HTML).read_text()
    assert not re.search(r"<script[^>]+src=", page), "report.html must not load scripts"
    assert "Plotly.newPlot" in page
    assert "Capacity: 50 concurrent users" in page
    assert "Worker 1 was lost" in page
    assert "Estimated cost: $0.0" in page and "GPU nodes: 0.05556 GPU-hours x $1.01" in page
    assert "Prices: us-east-1 prices of 2026-11-28 (bundled)." in page
    assert "time to first token" in page
    md = (run / run_files.REPORT_MD).read_text()
    assert "| 1 | ramp | 100 users | 50 | 90.00% |" in md
    assert "**fail**" in md and "Failures: http_503 5" in md
    assert 'First http_503: HTTP 503: {"error": "busy"}' in md
    assert "First http_503: HTTP 503: {&quot;error&quot;: &quot;busy&quot;}" in page


def test_interrupted_run_still_reports(tmp_path: Path) -> None:
    run = make_run(tmp_path, interrupted=True)
    s = summary.write(run)
    assert s.interrupted is True
    assert s.steps[1].end_s >= 20.0
    assert "cut short" in (run / run_files.REPORT_MD).read_text()


def test_report_command(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    result = CliRunner().invoke(app, ["report", str(run)])
    assert result.exit_code == 0, result.output
    assert "Capacity: 50 concurrent users" in result.output
    assert (run / run_files.REPORT_HTML).exists()
    missing = CliRunner().invoke(app, ["report", str(tmp_path / "nope")])
    assert missing.exit_code == 2
    assert "nope does not exist: give the run directory" in missing.output
    (run / run_files.CONFIG).write_text('{"run_id": "x", "plan": {}}')
    foreign = CliRunner().invoke(app, ["report", str(run)])
    assert foreign.exit_code == 2
    assert "config.json lacks or cannot read plan.name, slo, started_at: not the config.json" in (
        " ".join(foreign.output.split())
    )


def test_an_endpoint_of_unknown_gpu_has_a_cost_object_without_a_price(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    config = json.loads((run / run_files.CONFIG).read_text())
    config["target"] = {"kind": "url", "url": "https://api.example.com"}
    write_json(run / run_files.CONFIG, config)
    s = summary.write(run)
    assert s.cost.usd is None and s.cost.gpu is None and s.cost.parts == []
    assert s.cost.basis == (
        "no estimate: the endpoint does not say which GPU serves it; pass --hourly-usd with its "
        "price per hour, or --prometheus with --config to read its GPU nodes"
    )
    md = (run / run_files.REPORT_MD).read_text()
    assert "Cost: no estimate (the endpoint does not say which GPU serves it;" in md
    assert "$0" not in md


def test_a_step_short_of_its_users_says_so_in_every_report(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    events = (
        (run / run_files.EVENTS)
        .read_text()
        .replace(
            '"kind": "step_end", "index": 1}',
            '"kind": "step_end", "index": 1, "users_reached": 80}',
        )
    )
    (run / run_files.EVENTS).write_text(events)
    s = summary.write(run)
    assert [(st.users, st.users_reached, st.load_reached) for st in s.steps] == [
        (50, None, True),
        (100, 80, False),
    ]
    md = (run / run_files.REPORT_MD).read_text()
    assert "| 1 | ramp | 80 of 100 users |" in md
    assert "Step 1 (ramp) reached only 80 of 100 users before it ended" in md
    assert "80 of 100 users" in (run / run_files.REPORT_HTML).read_text()


def test_a_lower_bound_of_an_interrupted_run_does_not_invite_more_load(tmp_path: Path) -> None:
    s = summary.write(make_run(tmp_path))
    open_ended = s.model_copy(
        update={"capacity": s.capacity.model_copy(update={"limit_found": False})}
    )
    assert headline(open_ended).endswith(
        "No heavier step failed: raise --max-users to find the limit."
    )
    cut = open_ended.model_copy(update={"interrupted": True})
    assert "No heavier step failed" not in headline(cut)
    assert headline(cut).endswith(
        "cut short before any heavier step: the limit was not looked for."
    )
