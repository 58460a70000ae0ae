"""``qwen-stress report`` on run directories of other versions, and on damaged ones.

The fixtures under ``tests/fixtures/runs`` were written by the code before run files carried a
schema version (see their README). A report says in one line what it cannot read; it never
shows a traceback and never replaces a summary with a poorer one.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from loadtest import run_files
from loadtest.cli import app
from loadtest.schema import SCHEMA_VERSION, OtherEvent, OtherTarget, Summary

FIXTURES = Path(__file__).parents[1] / "fixtures" / "runs"


def copy(tmp_path: Path, name: str) -> Path:
    run = tmp_path / name
    shutil.copytree(FIXTURES / name, run)
    return run


def report(run: Path, *flags: str) -> tuple[int, str]:
    # catch_exceptions=False: a traceback fails the test instead of hiding in the result
    result = CliRunner().invoke(app, ["report", str(run), *flags], catch_exceptions=False)
    return result.exit_code, " ".join(result.output.split())


def summary_of(run: Path) -> Summary:
    return Summary.model_validate_json((run / run_files.SUMMARY).read_text())


def contains(new: object, old: object, where: str = "") -> list[str]:
    """Where ``new`` differs from ``old`` in what ``old`` has (``new`` may add keys)."""
    if isinstance(old, dict):
        if not isinstance(new, dict):
            return [where]
        return [d for k, v in old.items() for d in contains(new.get(k), v, f"{where}.{k}")]
    if isinstance(old, list):
        if not isinstance(new, list) or len(new) != len(old):
            return [where]
        return [
            d
            for i, (n, o) in enumerate(zip(new, old, strict=True))
            for d in contains(n, o, f"{where}[{i}]")
        ]
    return [] if new == old else [f"{where}: {old!r} -> {new!r}"]


def headline_and_table(markdown: str) -> list[str]:
    return [line for line in markdown.splitlines() if line.startswith(("**", "| "))]


@pytest.mark.parametrize("name", ["v0-fleet", "v0-url"])
def test_a_run_directory_of_the_version_before_schemas_reads_in_full(
    tmp_path: Path, name: str
) -> None:
    run = copy(tmp_path, name)
    old_summary = json.loads((run / run_files.SUMMARY).read_text())
    old_md = (run / run_files.REPORT_MD).read_text()
    code, output = report(run)
    assert code == 0, output
    assert "Not read" not in output
    new_summary = json.loads((run / run_files.SUMMARY).read_text())
    # every figure that version computed comes out the same; the new file only adds fields
    # (the cost's total now keeps six decimals, and "no estimate" says what would give one)
    old_cost, new_cost = old_summary.pop("cost"), new_summary.pop("cost")
    assert contains(new_summary, old_summary) == []
    if old_cost["usd"] is None:
        assert new_cost["usd"] is None and new_cost["basis"].startswith("no estimate: ")
        old_cost.pop("basis")
    else:
        assert round(new_cost["usd"], 4) == old_cost["usd"]
    assert contains(new_cost, {**old_cost, "usd": new_cost["usd"]}) == []
    assert new_summary["schema_version"] == SCHEMA_VERSION
    assert new_summary["unread"] == []
    new_md = (run / run_files.REPORT_MD).read_text()
    assert headline_and_table(new_md) == headline_and_table(old_md)
    assert (run / run_files.REPORT_HTML).stat().st_size > 0


def newer(tmp_path: Path) -> Path:
    """``v0-fleet`` as a later version might write it: new keys, a new target and event kind."""
    run = copy(tmp_path, "v0-fleet")
    config = json.loads((run / run_files.CONFIG).read_text())
    config["schema_version"] = 99
    config["capacity_type"] = "spot"
    config["plan"]["options"]["warmup_s"] = 30
    config["target"] = {
        "kind": "cloud",
        "url": "https://vllm.example.com",
        "description": "the EKS stack dev",
        "gpu": "T4",
        "node_groups": [{"name": "gpu", "capacity": "SPOT"}],
    }
    (run / run_files.CONFIG).write_text(json.dumps(config))
    with (run / run_files.EVENTS).open("a") as f:
        f.write('{"t": 14.0, "kind": "node_reclaimed", "node": "loadgen-7", "seconds": 95}\n')
    lines = (run / run_files.TIMELINE).read_text().splitlines()
    with (run / run_files.TIMELINE).open("w") as f:
        f.writelines(json.dumps({**json.loads(x), "spot_interruptions": 0}) + "\n" for x in lines)
    return run


def test_a_newer_schema_is_read_for_what_this_version_knows(tmp_path: Path) -> None:
    run = newer(tmp_path)
    old = json.loads((run / run_files.SUMMARY).read_text())
    code, output = report(run)
    assert code == 0, output
    assert (
        "warning: Not read: config.json was written by a newer qwen-stress (run-file schema 99; "
        f"this one reads up to {SCHEMA_VERSION}): what it added is left out." in output
    )
    assert "Not read: config.json: plan.options could not be read" in output
    assert (
        "Not read: config.json: the target kind 'cloud' is not one this version knows: no cost "
        "or autoscaling figures." in output
    )
    s = summary_of(run)
    assert isinstance(s.target, OtherTarget) and s.target.label == "the EKS stack dev"
    assert s.cost.usd is None and s.autoscaling is None
    # what does not depend on the target is all there
    assert contains(json.loads(s.model_dump_json(by_alias=True))["steps"], old["steps"]) == []
    assert [e.kind for e in s.events if isinstance(e, OtherEvent)] == ["node_reclaimed"]
    assert (
        "Cost: no estimate (the target kind 'cloud' is not one this version knows)."
        in (run / run_files.REPORT_MD).read_text()
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "config.json is missing; is"),
        (b"{not json", "config.json is not valid JSON"),
        (b"\xff\xfe\x00", "config.json is not text (UTF-8)"),
        (b"[1, 2]", "config.json is not a JSON object"),
        (
            b'{"run_id": "x", "plan": {"name": "fixed"}, "slo": {"ttft_p98_ms": 1}}',
            "config.json lacks or cannot read slo, started_at: not the config.json of a "
            "qwen-stress run",
        ),
    ],
    ids=["missing", "not-json", "not-text", "not-object", "lacks-what-reports-need"],
)
def test_a_config_the_report_cannot_do_without_stops_it_in_one_line(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    run = copy(tmp_path, "v0-url")
    (run / run_files.SUMMARY).unlink()
    if content is None:
        (run / run_files.CONFIG).unlink()
    else:
        (run / run_files.CONFIG).write_bytes(content)
    code, output = report(run)
    assert code == 2
    assert message in output
    assert len(output.splitlines()) == 1
    assert not (run / run_files.SUMMARY).exists()


def test_an_unreadable_section_the_report_does_without_is_left_out_and_said(
    tmp_path: Path,
) -> None:
    run = copy(tmp_path, "v0-url")
    config = json.loads((run / run_files.CONFIG).read_text())
    config["workload"] = {"tasks": "not a list"}
    config["time_scale"] = "fast"
    del config["target"]
    (run / run_files.CONFIG).write_text(json.dumps(config))
    code, output = report(run)
    assert code == 0, output
    s = summary_of(run)
    assert s.unread == [
        "config.json: time_scale could not be read (time_scale: input should be a valid number, "
        "unable to parse string as a number): durations and hours are taken as unscaled",
        "config.json: workload could not be read (workload.tasks: input should be a valid list): "
        "not needed for the report",
        "config.json names no target: no cost or autoscaling figures",
    ]
    assert s.overall.requests == 38 and s.cost.usd is None


def test_a_summary_is_never_replaced_by_a_poorer_one(tmp_path: Path) -> None:
    run = copy(tmp_path, "v0-url")
    assert report(run)[0] == 0
    kept = {name: (run / name).read_bytes() for name in (run_files.SUMMARY, run_files.REPORT_MD)}
    (run / run_files.REQUESTS).unlink()
    code, output = report(run)
    assert code == 2
    assert (
        "summary.json kept: it counts 38 requests in 2 steps, the files now give 0 in 2 "
        "(requests.jsonl is missing: no request was measured); restore the missing files, or "
        "pass --force to rebuild from what is left" in output
    )
    assert {name: (run / name).read_bytes() for name in kept} == kept
    # asked for, as the message says: a report of what is left
    code, output = report(run, "--force")
    assert code == 0
    assert "Not read: requests.jsonl is missing: no request was measured." in output
    assert summary_of(run).overall.requests == 0


def test_unreadable_lines_are_counted_not_dropped_silently(tmp_path: Path) -> None:
    run = copy(tmp_path, "v0-fleet")
    requests = (run / run_files.REQUESTS).read_text().splitlines()
    # two records damaged (one cut, one with a wrong type), a torn line at the end
    requests[3] = requests[3][:40]
    requests[7] = requests[7].replace('"ok":true', '"ok":"maybe"', 1)
    (run / run_files.REQUESTS).write_text("\n".join(requests) + '\n{"start": 17')
    with (run / run_files.TIMELINE).open("a") as f:
        f.write('{"t": "late"}\n')
    (run / run_files.SUMMARY).unlink()
    code, output = report(run)
    assert code == 0, output
    s = summary_of(run)
    assert s.unread == [
        "timeline.jsonl: 1 unreadable line skipped",
        "requests.jsonl: 3 unreadable lines skipped",
    ]
    assert s.overall.requests == len(requests) - 2
    assert "Not read: requests.jsonl: 3 unreadable lines skipped." in output


def test_a_run_directory_that_cannot_be_written_is_one_line_and_loses_nothing(
    tmp_path: Path,
) -> None:
    run = copy(tmp_path, "v0-url")
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    # what a read-only directory does to the atomic write, also for root: the temporary
    # file cannot be created
    (run / (run_files.SUMMARY + ".tmp")).mkdir()
    code, output = report(run)
    assert code == 2
    assert f"cannot write {run / run_files.SUMMARY}.tmp: Is a directory" in output
    assert "copy the run directory somewhere writable" in output
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_a_file_given_as_the_run_directory_is_one_line(tmp_path: Path) -> None:
    afile = tmp_path / "summary.json"
    afile.write_text("{}")
    code, output = report(afile)
    assert code == 2
    assert f"{afile} is not a directory: give the run directory `run` wrote" in output
