"""``qwen-stress cost actuals``: Cost Explorer (moto on 127.0.0.1, or Stubbers) against a run.

Run directories are the fixtures in ``tests/fixtures/runs`` (written by ``qwen-stress run``: a
``--url`` run and a local twin run) and the synthetic cloud run of ``tests/cloud_run.py``, with
their reports built by ``qwen-stress report``. The cloud run's estimate has a part per billed
resource; the reconciliation sets each against the service that bills it.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber
from typer.testing import CliRunner

from costs import actuals, aws, reconcile, runs
from domain.hourly_cost import COMPUTE_SERVICE, EC2_OTHER_SERVICE, EKS_SERVICE
from loadtest import summary
from loadtest.cli import app
from loadtest.targets import free_port
from tests import cloud_run
from tests.aws_fakes import FAKE_CREDENTIALS, MotoCostExplorer, cost_result, moto_server, stubbed

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "runs"
runner = CliRunner()
ESTIMATE: dict[str, Any] = {
    "gpu": "T4",
    "instance_type": "g4dn.xlarge",
    "usd_per_gpu_hour": 0.526,
    "gpu_hours": 2.5,
    "usd": 1.315,
    "time_scale": 1.0,
    "basis": "on-demand price; GPU time only (control plane, NAT and system nodes excluded)",
}
"""A cost as summaries had it before parts: GPU time alone, estimated as EC2 compute."""
RUN_SPEND = {COMPUTE_SERVICE: 0.19, EC2_OTHER_SERVICE: 0.01}
"""Tagged with the run's id: the load-test stack (its nodes, their volumes)."""
STACK_SPEND = {COMPUTE_SERVICE: 12.6, EKS_SERVICE: 2.4, EC2_OTHER_SERVICE: 1.1}
"""Tagged with the dev stack's tags, whole days: the GPU and system nodes, control plane, NAT."""
UNTAGGED = {EC2_OTHER_SERVICE: 0.07}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The fixture runs, the synthetic cloud run and a run whose cost predates parts, built once.

    (Each report takes plotly a second.)
    """
    out = {}
    for name in ("url-run", "twin-dev"):
        target = tmp_path_factory.mktemp("runs") / name
        shutil.copytree(FIXTURES / name, target)
        summary.write(target)
        out[name] = target
    out["cloud-run"] = cloud_run.write(tmp_path_factory.mktemp("runs") / "cloud-run")
    summary.write(out["cloud-run"])
    out["old-estimate"] = tmp_path_factory.mktemp("runs") / "old-estimate"
    shutil.copytree(out["url-run"], out["old-estimate"])
    data = json.loads((out["old-estimate"] / "summary.json").read_text())
    data["cost"] = ESTIMATE
    (out["old-estimate"] / "summary.json").write_text(json.dumps(data, indent=2))
    return out


def _run(built: dict[str, Path], tmp_path: Path, name: str, ago: timedelta) -> Path:
    """A copy of a built run that started ``ago`` before now."""
    target = tmp_path / name
    shutil.copytree(built[name], target)
    config = json.loads((target / "config.json").read_text())
    config["started_at"] = time.time() - ago.total_seconds()
    (target / "config.json").write_text(json.dumps(config, indent=2))
    return target


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoCostExplorer]:
    with moto_server() as server:
        yield server


@pytest.fixture
def ce(moto: MotoCostExplorer, monkeypatch: pytest.MonkeyPatch) -> MotoCostExplorer:
    moto.reset()
    for name, value in moto.env().items():
        monkeypatch.setenv(name, value)
    return moto


def _snapshot(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}


def _fails(args: list[str], run_dir: Path) -> str:
    """Run a command that must fail: exit 2, one line, and the run directory untouched."""
    before = _snapshot(run_dir)
    done = runner.invoke(app, args)
    assert done.exit_code == 2, done.output
    assert "Traceback" not in done.output
    (line,) = done.output.strip().splitlines()
    assert _snapshot(run_dir) == before
    return line


def _queue_all(ce: MotoCostExplorer, estimated: bool = False) -> None:
    ce.queue(
        cost_result(RUN_SPEND, estimated=estimated),
        cost_result(STACK_SPEND, estimated=estimated),
        cost_result(UNTAGGED, estimated=estimated),
    )


def test_each_part_is_reconciled_against_its_own_service_in_both_reports(
    ce: MotoCostExplorer, built: dict[str, Path], tmp_path: Path
) -> None:
    run_dir = _run(built, tmp_path, "cloud-run", timedelta(days=40))
    parts = {
        p["kind"]: p for p in json.loads((run_dir / "summary.json").read_text())["cost"]["parts"]
    }
    _queue_all(ce)
    done = runner.invoke(app, ["cost", "actuals", str(run_dir)])  # the run names its stack
    assert done.exit_code == 0, done.output
    data = json.loads((run_dir / "cost-actuals.json").read_text())
    assert data["status"] == "final" and data["ask_again_after"] is None
    assert data["stack_tags"]["filter"] == "stack=dev, project=qwen-stress"
    assert data["billed_usd"] == pytest.approx(sum(RUN_SPEND.values()) + sum(STACK_SPEND.values()))
    assert data["untagged_usd"] == pytest.approx(0.07)
    rows = {r["service"]: r for r in data["reconciliation"]}
    # nodes under EC2 compute, the control plane under EKS, NAT hours under "EC2 - Other"
    expected = {
        COMPUTE_SERVICE: ["gpu_nodes", "loadgen_nodes"],
        EKS_SERVICE: ["control_plane"],
        EC2_OTHER_SERVICE: ["nat_gateways"],
    }
    assert {s: [p["kind"] for p in r["parts"]] for s, r in rows.items()} == expected
    for service, kinds in expected.items():
        row = rows[service]
        estimated = sum(parts[k]["usd"] for k in kinds)
        assert row["estimated_usd"] == pytest.approx(estimated)
        assert (row["billed_run_usd"], row["billed_stack_usd"]) == (
            RUN_SPEND.get(service, 0.0),
            STACK_SPEND[service],
        )
        billed = RUN_SPEND.get(service, 0.0) + STACK_SPEND[service]
        assert row["difference_usd"] == pytest.approx(billed - estimated)
    assert sum(data["estimate"]["by_service"].values()) == pytest.approx(data["estimate"]["usd"])
    md = (run_dir / "report.md").read_text()
    assert md.count(reconcile.BEGIN) == 1
    gpu, loadgen = parts["gpu_nodes"]["usd"], parts["loadgen_nodes"]["usd"]
    assert (
        f"| Amazon Elastic Compute Cloud - Compute | GPU nodes {reconcile.usd(gpu)}, "
        f"Load-generator nodes {reconcile.usd(loadgen)} | {reconcile.usd(gpu + loadgen)} | "
        f"$0.1900 | $12.6000 | {reconcile.usd(12.79 - gpu - loadgen)} |" in md
    )
    assert f"| EKS control plane {reconcile.usd(parts['control_plane']['usd'])} |" in md
    assert "Prices: us-east-1 prices of 2026-11-28 (bundled)." in md
    assert md.index(reconcile.BEGIN) < md.index("<details><summary>Metric definitions")
    page = (run_dir / "report.html").read_text()
    assert page.count(reconcile.BEGIN) == 1
    assert page.index("Billed cost (AWS Cost Explorer)") < page.index("<h2>Metric definitions</h2>")
    assert "Status: **final**" in done.output


def test_an_estimate_written_before_parts_is_set_against_ec2_compute(
    ce: MotoCostExplorer, built: dict[str, Path], tmp_path: Path
) -> None:
    run_dir = _run(built, tmp_path, "old-estimate", timedelta(days=40))
    _queue_all(ce)
    done = runner.invoke(app, ["cost", "actuals", str(run_dir), "--stack", "dev", "--json"])
    assert done.exit_code == 0, done.output
    rows = {r["service"]: r for r in json.loads(done.output)["reconciliation"]}
    compute = rows[COMPUTE_SERVICE]
    assert (compute["estimated_usd"], compute["billed_run_usd"]) == (1.315, 0.19)
    assert [p["kind"] for p in compute["parts"]] == ["gpu_nodes"]
    assert compute["difference_usd"] == pytest.approx(0.19 + 12.6 - 1.315)
    assert rows[EKS_SERVICE]["estimated_usd"] is None and rows[EKS_SERVICE]["parts"] == []


def test_a_cost_actuals_file_of_the_version_before_parts_still_renders() -> None:
    old: dict[str, Any] = {
        "status": "final",
        "status_text": "final figures",
        "ask_again_after": None,
        "window": {"start": "2026-11-30", "end_exclusive": "2026-12-01"},
        "run_tag": {"filter": "run-id=x", "by_service": {COMPUTE_SERVICE: 0.41}},
        "stack_tags": None,
        "untagged": {"by_service": {}},
        "metric": "UnblendedCost",
        "queried_at": "2026-12-30T07:18:53+00:00",
        "estimate": {"usd": 1.315, "basis": "on-demand price", "by_service": {}},
        "billed_usd": 0.41,
        "untagged_usd": 0.0,
        "reconciliation": [
            {
                "service": COMPUTE_SERVICE,
                "estimated_usd": 1.315,
                "billed_run_usd": 0.41,
                "billed_stack_usd": None,
                "billed_usd": 0.41,
                "difference_usd": 0.41 - 1.315,
            }
        ],
        "notes": [],
    }
    md = reconcile.markdown(old)
    assert f"| {COMPUTE_SERVICE} | — | $1.3150 | $0.4100 | -$0.9050 |" in md
    assert "Estimate basis: on-demand price." in md


def test_asking_again_replaces_the_section_and_a_rebuilt_report_keeps_it(
    ce: MotoCostExplorer, built: dict[str, Path], tmp_path: Path
) -> None:
    run_dir = _run(built, tmp_path, "url-run", timedelta(days=40))
    _queue_all(ce, estimated=True)
    assert runner.invoke(app, ["cost", "actuals", str(run_dir), "--stack", "dev"]).exit_code == 0
    ce.reset()
    _queue_all(ce)
    assert runner.invoke(app, ["cost", "actuals", str(run_dir), "--stack", "dev"]).exit_code == 0
    md = (run_dir / "report.md").read_text()
    assert md.count(reconcile.BEGIN) == md.count(reconcile.END) == 1
    assert "Status: **final**" in md and "estimated (" not in md
    assert runner.invoke(app, ["report", str(run_dir)]).exit_code == 0  # rewrites both reports
    for name in ("report.md", "report.html"):
        assert (run_dir / name).read_text().count(reconcile.BEGIN) == 1


def test_estimated_figures_say_so_and_when_to_ask_again(
    ce: MotoCostExplorer, built: dict[str, Path], tmp_path: Path
) -> None:
    run_dir = _run(built, tmp_path, "url-run", timedelta(days=3))
    _queue_all(ce, estimated=True)
    done = runner.invoke(app, ["cost", "actuals", str(run_dir), "--stack", "dev", "--json"])
    data = json.loads(done.output)
    assert data["status"] == "estimated"
    ask = datetime.fromisoformat(data["ask_again_after"])
    assert timedelta(hours=23) < ask - datetime.now(UTC) <= timedelta(hours=24)


def test_a_run_within_a_day_is_incomplete_until_a_day_after_it_ended(
    ce: MotoCostExplorer, built: dict[str, Path], tmp_path: Path
) -> None:
    run_dir = _run(built, tmp_path, "url-run", timedelta(hours=2))
    _queue_all(ce)
    data = json.loads(
        runner.invoke(app, ["cost", "actuals", str(run_dir), "--stack", "dev", "--json"]).output
    )
    assert data["status"] == "incomplete"
    run = runs.read_run(run_dir)
    expected = (run.ended_at + actuals.LAG).isoformat(timespec="minutes")
    assert data["ask_again_after"] == expected


def test_a_url_run_without_a_stack_says_how_to_include_it(
    ce: MotoCostExplorer, built: dict[str, Path], tmp_path: Path
) -> None:
    run_dir = _run(built, tmp_path, "url-run", timedelta(days=40))
    ce.queue(cost_result(RUN_SPEND, estimated=False), cost_result(UNTAGGED, estimated=False))
    data = json.loads(runner.invoke(app, ["cost", "actuals", str(run_dir), "--json"]).output)
    assert data["stack_tags"] is None
    assert data["billed_usd"] == pytest.approx(sum(RUN_SPEND.values()))
    assert any("--stack NAME" in n for n in data["notes"])


def test_a_local_twin_run_was_never_billed(built: dict[str, Path], tmp_path: Path) -> None:
    run_dir = _run(built, tmp_path, "twin-dev", timedelta(days=40))
    assert "local twin: AWS billed nothing" in _fails(["cost", "actuals", str(run_dir)], run_dir)


def test_a_directory_without_a_summary_is_refused(built: dict[str, Path], tmp_path: Path) -> None:
    run_dir = _run(built, tmp_path, "url-run", timedelta(days=40))
    (run_dir / "summary.json").unlink()
    line = _fails(["cost", "actuals", str(run_dir)], run_dir)
    assert "summary.json is missing" in line and "qwen-stress report" in line


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> Stubber:
    client, stubber = stubbed("ce")
    monkeypatch.setattr(aws, "client", lambda service, region=None: client)
    stubber.activate()
    return stubber


def _empty(**_: Any) -> dict[str, Any]:
    return {"ResultsByTime": [], "DimensionValueAttributes": []}


@pytest.mark.parametrize(
    ("answer", "state"),
    [
        (
            {
                "CostAllocationTags": [
                    {"TagKey": "run-id", "Type": "UserDefined", "Status": "Inactive"}
                ]
            },
            "inactive",
        ),
        ({"CostAllocationTags": []}, "not known to AWS billing yet"),
    ],
)
def test_an_inactive_tag_says_to_activate_it(
    stub: Stubber, built: dict[str, Path], tmp_path: Path, answer: dict[str, Any], state: str
) -> None:
    run_dir = _run(built, tmp_path, "url-run", timedelta(days=40))
    stub.add_response("get_cost_and_usage", _empty())
    stub.add_response("list_cost_allocation_tags", answer, {"TagKeys": ["run-id"]})
    line = _fails(["cost", "actuals", str(run_dir)], run_dir)
    assert f"'run-id' is {state}" in line and "qwen-stress cost activate-tags" in line


def test_missing_permission_names_it(stub: Stubber, built: dict[str, Path], tmp_path: Path) -> None:
    run_dir = _run(built, tmp_path, "url-run", timedelta(days=40))
    stub.add_client_error(
        "get_cost_and_usage", service_error_code="AccessDeniedException", http_status_code=400
    )
    line = _fails(["cost", "actuals", str(run_dir)], run_dir)
    assert "denied ce:GetCostAndUsage" in line


def test_no_network_is_one_line(
    built: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = _run(built, tmp_path, "url-run", timedelta(days=40))
    for name, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    line = _fails(["cost", "actuals", str(run_dir)], run_dir)
    assert "cannot reach AWS" in line


def test_no_credentials_is_one_line(built: dict[str, Path], tmp_path: Path) -> None:
    run_dir = _run(built, tmp_path, "url-run", timedelta(days=40))
    line = _fails(["cost", "actuals", str(run_dir)], run_dir)
    assert "no AWS credentials found" in line


def test_queries_filter_on_the_tags_page_through_and_report_untagged_apart(stub: Stubber) -> None:
    run = runs.read_run(FIXTURES / "url-run")
    period = {"Start": "2026-11-30", "End": "2026-12-01"}
    common = {
        "TimePeriod": period,
        "Granularity": "DAILY",
        "Metrics": ["UnblendedCost"],
        "GroupBy": [{"Type": "DIMENSION", "Key": "SERVICE"}],
    }
    run_tag = {"Tags": {"Key": "run-id", "Values": ["url-run"], "MatchOptions": ["EQUALS"]}}
    first = cost_result({COMPUTE_SERVICE: 0.25}, estimated=False, day="2026-11-30")
    stub.add_response(
        "get_cost_and_usage", {**first, "NextPageToken": "p2"}, {**common, "Filter": run_tag}
    )
    stub.add_response(
        "get_cost_and_usage",
        cost_result({COMPUTE_SERVICE: 0.5}, estimated=True, day="2026-11-30"),
        {**common, "Filter": run_tag, "NextPageToken": "p2"},
    )
    stack = {
        "And": [
            {"Tags": {"Key": "stack", "Values": ["dev"], "MatchOptions": ["EQUALS"]}},
            {"Tags": {"Key": "project", "Values": ["qwen-stress"], "MatchOptions": ["EQUALS"]}},
        ]
    }
    stub.add_response("get_cost_and_usage", _empty(), {**common, "Filter": stack})
    untagged = {
        "And": [
            {"Tags": {"Key": "project", "MatchOptions": ["ABSENT"]}},
            {
                "Dimensions": {
                    "Key": "SERVICE",
                    "Values": sorted([COMPUTE_SERVICE, EC2_OTHER_SERVICE, EKS_SERVICE]),
                }
            },
        ]
    }
    stub.add_response("get_cost_and_usage", _empty(), {**common, "Filter": untagged})
    now = run.ended_at + timedelta(days=5)
    data = actuals.collect(aws.client("ce"), run, now, stack="dev")
    stub.assert_no_pending_responses()
    assert data["run_tag"]["by_service"] == {COMPUTE_SERVICE: 0.75}
    assert data["status"] == "estimated"  # the second page was estimated
