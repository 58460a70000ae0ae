"""``qwen-stress cost report``: runs written by today's ``qwen-stress run``, in md, csv and html."""

from __future__ import annotations

import csv
import io
import json
import shutil
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from costs import report, runs
from domain.hourly_cost import COMPUTE_SERVICE
from domain.run_cost import money
from loadtest.cli import app

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "runs"
runner = CliRunner()


def _copy(tmp_path: Path, name: str, run_id: str, started: datetime | None = None) -> Path:
    """A fixture run under another id (and start), as a second run of the same kind."""
    target = tmp_path / run_id
    shutil.copytree(FIXTURES / name, target)
    for file in ("config.json", "summary.json"):
        data = json.loads((target / file).read_text())
        data["run_id"] = run_id
        if started and file == "config.json":
            data["started_at"] = started.timestamp()
        (target / file).write_text(json.dumps(data))
    return target


@pytest.fixture
def three(tmp_path: Path) -> list[Path]:
    """Two twin runs of the dev stack a month apart and a --url run with a billed figure."""
    october = _copy(tmp_path, "twin-dev", "twin-oct", datetime(2026, 10, 15, 9, tzinfo=UTC))
    url = _copy(tmp_path, "url-run", "url-billed")
    runs.write_actuals(url, {"billed_usd": 0.5, "status": "estimated"})
    return [FIXTURES / "twin-dev", url, october]


def test_a_run_reads_the_way_its_files_say() -> None:
    twin = runs.read_run(FIXTURES / "twin-dev")
    summary = json.loads((FIXTURES / "twin-dev" / "summary.json").read_text())
    assert (twin.target, twin.stack, twin.target_kind) == ("dev (local twin)", "dev", "fleet")
    assert twin.estimated_usd == summary["cost"]["usd"]
    # a 0.5 time scale stands for twice the plan: twice the tokens and good requests counted
    assert twin.output_tokens == 2 * summary["overall"]["output_tokens"]
    assert twin.good_requests == 2 * summary["overall"]["good_requests"]
    assert [p.kind for p in twin.estimate_parts] == ["gpu_nodes"]
    assert twin.prices == "us-east-1 prices of 2026-11-28 (bundled)"
    url = runs.read_run(FIXTURES / "url-run")
    assert (url.target, url.stack, url.estimated_usd) == ("http://127.0.0.1:18431", None, None)
    assert url.estimate_parts == () and url.estimate_by_service == {}


def test_a_summary_written_before_costs_had_parts_reads_as_gpu_time_on_ec2() -> None:
    old = runs.read_run(FIXTURES / "v0-fleet")
    summary = json.loads((FIXTURES / "v0-fleet" / "summary.json").read_text())
    assert "parts" not in summary["cost"] and old.estimated_usd == summary["cost"]["usd"]
    (part,) = old.estimate_parts
    assert (part.kind, part.quantity, part.usd_per_unit) == ("gpu_nodes", 0.0016, 0.526)
    assert old.estimate_by_service == {COMPUTE_SERVICE: summary["cost"]["usd"]}
    # tokens from the rate over the load, as before; good requests were not counted then
    tokens = summary["overall"]["output_tokens_per_s"] * summary["duration_s"]
    assert old.output_tokens == pytest.approx(tokens) and old.good_requests is None


def test_a_cost_that_cannot_be_read_is_one_line_naming_it(tmp_path: Path) -> None:
    run = _copy(tmp_path, "twin-dev", "broken")
    data = json.loads((run / "summary.json").read_text())
    data["cost"]["parts"][0]["usd"] = "a lot"
    (run / "summary.json").write_text(json.dumps(data))
    with pytest.raises(
        runs.RunReadError, match=r"summary.json's cost\.parts\.0\.usd cannot be read"
    ):
        runs.read_run(run)


def test_markdown_rows_sorted_by_date_with_totals_per_stack_and_month(three: list[Path]) -> None:
    text = report.markdown(report.rows(three))
    lines = text.splitlines()
    run_rows = [line for line in lines if line.startswith(("| twin", "| url"))]
    assert [r.split(" | ")[0] for r in run_rows] == ["| twin-oct", "| twin-dev", "| url-billed"]
    twin = runs.read_run(FIXTURES / "twin-dev")
    per_million = twin.estimated_usd / twin.output_tokens * 1e6  # type: ignore[operator]
    per_good = twin.estimated_usd / twin.good_requests  # type: ignore[operator]
    assert (
        f"| ≥ 4 users (11.93 req/s) | 0.0011 | $0.0006 | — | ${per_million:,.4f} | "
        f"{money(per_good)} |" in text
    )
    assert "| $0.5000 (estimated) |" in text  # billed, not yet final
    assert "| dev (local twin) | 2 | 0.0022 | $0.0012 | — |" in text
    assert "| 2026-10 | 1 | 0.0011 | $0.0006 | — |" in text
    assert "| 2026-11 | 2 | 0.0011 | $0.0006 | $0.5000 |" in text


def test_csv_has_one_row_per_run_and_per_total_with_plain_numbers(three: list[Path]) -> None:
    done = runner.invoke(app, ["cost", "report", *map(str, three), "--format", "csv"])
    assert done.exit_code == 0, done.output
    table = list(csv.DictReader(io.StringIO(done.output)))
    assert [r["row"] for r in table] == ["run"] * 3 + ["stack"] * 2 + ["month"] * 2
    by_key = {(r["row"], r["key"]): r for r in table}
    twin = runs.read_run(three[0])
    assert float(by_key[("stack", "dev (local twin)")]["estimated_usd"]) == pytest.approx(
        2 * twin.estimated_usd  # type: ignore[operator]
    )
    assert float(by_key[("run", "twin-dev")]["usd_per_good_request"]) == pytest.approx(
        twin.estimated_usd / twin.good_requests,  # type: ignore[operator]
        rel=1e-8,
    )
    assert by_key[("run", "url-billed")]["billed_usd"] == "0.5"
    assert by_key[("run", "url-billed")]["estimated_usd"] == ""
    month = by_key[("month", "2026-11")]
    url = runs.read_run(three[1])
    expected = (0.5 + twin.estimated_usd) / (url.output_tokens + twin.output_tokens) * 1e6  # type: ignore[operator]
    assert float(month["usd_per_million_output_tokens"]) == pytest.approx(expected, rel=1e-5)


def test_html_is_self_contained_with_the_chart(three: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "costs.html"
    done = runner.invoke(
        app, ["cost", "report", *map(str, three), "--format", "html", "--out", str(out)]
    )
    assert done.exit_code == 0, done.output
    page = out.read_text()
    assert "Cost against capacity over time" in page
    scripts = _Scripts()
    scripts.feed(page)
    assert scripts.sources == [] and scripts.count >= 2  # plotly inlined: opens offline
    assert page.count("<table>") == 3 and "url-billed" in page


class _Scripts(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self.count += 1
            self.sources += [v or "" for k, v in attrs if k == "src"]


def test_errors_are_one_line(tmp_path: Path) -> None:
    for args, words in (
        (["cost", "report", str(FIXTURES / "twin-dev"), "--format", "xml"], "use md, csv or html"),
        (["cost", "report", str(tmp_path / "nope")], "is not a directory"),
        (["cost", "report", str(tmp_path)], "summary.json is missing"),
    ):
        done = runner.invoke(app, args)
        assert done.exit_code == 2, done.output
        (line,) = done.output.strip().splitlines()
        assert words in line


def test_a_run_named_twice_is_counted_once(three: list[Path]) -> None:
    twice = [*map(str, three), str(three[0]) + "/", str(three[1])]
    done = runner.invoke(app, ["cost", "report", *twice, "--format", "csv"])
    assert done.exit_code == 0, done.output
    rows = [r["row"] for r in csv.DictReader(io.StringIO(done.output))]
    assert rows.count("run") == 3


@pytest.mark.parametrize("out", ["/dev/full", "{tmp}", "{tmp}/missing/r.md", "/etc/passwd/r.md"])
def test_an_out_that_cannot_be_written_is_one_line(
    three: list[Path], tmp_path: Path, out: str
) -> None:
    target = out.replace("{tmp}", str(tmp_path))
    done = runner.invoke(app, ["cost", "report", *map(str, three), "--out", target])
    assert done.exit_code == 2, done.output
    assert "Traceback" not in done.output
    (line,) = done.output.splitlines()
    assert line.startswith(f"error: --out {target}: cannot write there (")
