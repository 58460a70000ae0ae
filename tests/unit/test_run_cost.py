"""The cost of a run in ``summary.json`` and the reports: each basis, priced by hand.

Cloud runs are the synthetic run of ``tests/cloud_run.py``; twin and ``--url`` runs are the
fixture runs of ``tests/fixtures/runs`` with the setting under test changed. Prices are the
bundled table's (``tests/conftest.py`` keeps every test on it) unless a test pins its own.
"""

from __future__ import annotations

import json
import math
import shutil
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from costs import runs
from domain import prices
from domain.hourly_cost import COMPUTE_SERVICE, EC2_OTHER_SERVICE, EKS_SERVICE
from domain.prices import InstancePrice, PriceTable
from domain.run_cost import LoadGenInfo, PlatformInfo, money, node_rate
from domain.stack_config import load_stack_file
from loadtest import cost, run_cli, run_files, summary
from loadtest.cluster_target import ClusterTarget
from loadtest.run_options import OptionsError, RunOptions
from loadtest.schema import (
    AutoscalingInfo,
    ClusterTargetInfo,
    FleetMetricsInfo,
    PlanInfo,
    RunConfig,
    RunEvent,
    StackDestroyed,
    StackDestroyFailed,
    StackUp,
    Stats,
    Summary,
    TimelineSample,
)
from loadtest.slo import parse as parse_slo
from loadtest.targets import Target
from tests import cloud_run
from tests.pulumi_mocks import ROOT

FIXTURES = ROOT / "tests" / "fixtures" / "runs"
BUNDLED = prices.bundled()
HOUR = 3600.0


def _copy(tmp_path: Path, name: str) -> Path:
    run = tmp_path / name
    shutil.copytree(FIXTURES / name, run)
    (run / run_files.SUMMARY).unlink()
    return run


def _edit(path: Path, change: Any) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Summary]:
    run = cloud_run.write(tmp_path_factory.mktemp("cloud") / "cloud-run")
    return run, summary.write(run)


# -- cloud runs ------------------------------------------------------------------------------


def test_a_cloud_run_prices_each_part_by_its_own_lifetime_and_capacity_type(
    cloud: tuple[Path, Summary],
) -> None:
    _, s = cloud
    c = s.cost
    lifetime_h = cloud_run.LIFETIME_S / HOUR
    expected = {
        "gpu_nodes": cloud_run.GPU_HOURS * 0.526,  # g4dn.xlarge on demand, one T4
        "loadgen_nodes": 2 * lifetime_h * 0.1737,  # c7i.2xlarge spot: worst recent, no mean
        "control_plane": lifetime_h * 0.10,
        "nat_gateways": 1 * lifetime_h * 0.045,  # the dev stack has one
    }
    assert {p.kind: p.usd for p in c.parts} == pytest.approx(expected, abs=1e-6)
    assert {p.kind: p.service for p in c.parts} == {
        "gpu_nodes": COMPUTE_SERVICE,
        "loadgen_nodes": COMPUTE_SERVICE,
        "control_plane": EKS_SERVICE,
        "nat_gateways": EC2_OTHER_SERVICE,
    }
    total = sum(expected.values())
    assert c.usd == pytest.approx(total, abs=1e-6)
    assert (c.method, c.capacity_type, c.gpu_hours) == ("cloud", "on-demand", cloud_run.GPU_HOURS)
    assert (c.output_tokens, c.good_requests) == (cloud_run.OUTPUT_TOKENS, cloud_run.GOOD_REQUESTS)
    assert c.usd_per_million_output_tokens == pytest.approx(total / 120_000 * 1e6, rel=1e-3)
    assert c.usd_per_good_request == pytest.approx(total / 1080, rel=1e-3)
    assert "from the load-test stack's creation to the end of its destroy (0.53 h)" in c.basis
    assert "c7i.2xlarge spot at its worst recent price: the table has no mean" in c.basis


def test_a_cloud_runs_summary_names_its_price_table_and_its_reports_say_it(
    cloud: tuple[Path, Summary],
) -> None:
    run, s = cloud
    on_disk = json.loads((run / run_files.SUMMARY).read_text())["cost"]
    assert on_disk["prices"] == {
        "region": "us-east-1",
        "as_of": "2026-11-28",
        "source": BUNDLED.source,
        "path": None,
    }
    md = (run / run_files.REPORT_MD).read_text()
    headline = f"Estimated cost: {money(s.cost.usd or 0)}: "
    assert headline in md and "per million output tokens" in md
    assert "- Load-generator nodes: 1.067 node-hours x $0.174 (2 x c7i.2xlarge, spot" in md
    assert "- NAT gateways: 0.5333 gateway-hours x $0.045 (1 NAT gateway, hourly charge)" in md
    assert "Prices: us-east-1 prices of 2026-11-28 (bundled)." in md
    page = (run / run_files.REPORT_HTML).read_text()
    assert "<li>EKS control plane: 0.5333 cluster-hours x $0.10" in page


def test_cost_tracking_reads_the_parts_and_the_stack_of_a_cloud_run(
    cloud: tuple[Path, Summary],
) -> None:
    run = runs.read_run(cloud[0])
    assert (run.stack, run.target) == ("dev", "dev")
    assert [p.kind for p in run.estimate_parts] == [
        "gpu_nodes", "loadgen_nodes", "control_plane", "nat_gateways",
    ]  # fmt: skip
    assert sum(run.estimate_by_service.values()) == pytest.approx(run.estimated_usd)
    assert run.good_requests == cloud_run.GOOD_REQUESTS


def _cloud_files(cloud: tuple[Path, Summary], events: list[RunEvent]) -> cost.RunFiles:
    config = RunConfig.model_validate_json((cloud[0] / run_files.CONFIG).read_text())
    return cost.RunFiles(config, events, [], (0.0, cloud_run.LOAD_S), cloud[1].overall, 0.5)


def test_without_the_destroy_the_stack_counts_from_its_creation_to_the_loads_end_at_least(
    cloud: tuple[Path, Summary],
) -> None:
    up = StackUp(t=-60, at=cloud_run.T0 - 60, stack="s", project="p", up_s=360)
    c = cost.estimate(_cloud_files(cloud, [up]))
    (loadgen,) = [p for p in c.parts if p.kind == "loadgen_nodes"]
    hours = (360 + 60 + cloud_run.LOAD_S) / HOUR
    assert loadgen.quantity == pytest.approx(2 * hours, abs=1e-6)
    assert "its destroy is not in events.jsonl: at least this" in loadgen.span
    failed = StackDestroyFailed(
        t=0, at=cloud_run.T0 + 5000, stack="s", attempts=4, error="x", command="c",
        lifetime_s=7200,
    )  # fmt: skip
    c = cost.estimate(_cloud_files(cloud, [up, failed]))
    (control,) = [p for p in c.parts if p.kind == "control_plane"]
    assert control.quantity == pytest.approx(2.0)
    assert "it may still exist: at least this" in c.basis


def test_load_generators_on_the_system_nodes_cost_nothing_of_their_own(
    cloud: tuple[Path, Summary],
) -> None:
    files = _cloud_files(cloud, [])
    config = files.config.model_copy(update={"loadgen": LoadGenInfo(nodes=0, workers=2)})
    c = cost.estimate(cost.RunFiles(config, [], [], files.window, files.overall, 0.5))
    assert [p.kind for p in c.parts] == ["gpu_nodes", "control_plane", "nat_gateways"]
    assert "load generators on the system nodes (not counted)" in c.basis


def _platform_run(
    load_s: float, gpu_nodes: int, loadgen_nodes: int, lifetime_s: float
) -> cost.RunFiles:
    """A cloud run in memory: ``gpu_nodes`` for ``load_s``, the stack alive ``lifetime_s``."""
    target = ClusterTargetInfo(
        url="http://127.0.0.1:1",
        model="m",
        gpu="T4",
        instance_type="g4dn.xlarge",
        capacity_type="spot",
        platform=PlatformInfo(stack="dev", nat_gateways=2),
        fleet_metrics=FleetMetricsInfo(url="http://127.0.0.1:2", queries={}),
    )
    config = RunConfig(
        run_id="r",
        started_at=cloud_run.T0,
        plan=PlanInfo(name="fixed"),
        target=target,
        slo=parse_slo(None),
        loadgen=LoadGenInfo(nodes=loadgen_nodes, instance_type="c7i.2xlarge"),
    )
    destroyed = StackDestroyed(
        t=load_s, at=cloud_run.T0 + load_s, stack="s", lifetime_s=lifetime_s, destroy_s=60,
        attempts=1,
    )  # fmt: skip
    overall = Stats(requests=1, failures=0, rps=1.0, output_tokens=100, good_requests=1)
    gpu_hours = gpu_nodes * load_s / HOUR
    return cost.RunFiles(config, [destroyed], [], (0.0, load_s), overall, gpu_hours)


@settings(max_examples=60, deadline=None)
@given(
    load_s=st.floats(min_value=1, max_value=86400),
    more_s=st.floats(min_value=1, max_value=86400),
    gpu_nodes=st.integers(min_value=0, max_value=20),
    loadgen_nodes=st.integers(min_value=0, max_value=50),
    extra_nodes=st.integers(min_value=1, max_value=10),
)
def test_cost_rises_with_duration_and_node_count(
    load_s: float, more_s: float, gpu_nodes: int, loadgen_nodes: int, extra_nodes: int
) -> None:
    def usd(load: float, gpus: int, loadgen: int) -> float:
        c = cost.estimate(_platform_run(load, gpus, loadgen, load + 600))
        assert c.usd is not None
        assert math.isclose(c.usd, sum(p.usd for p in c.parts), abs_tol=1e-5)
        return c.usd

    base = usd(load_s, gpu_nodes, loadgen_nodes)
    assert usd(load_s + more_s, gpu_nodes, loadgen_nodes) > base
    assert usd(load_s, gpu_nodes + extra_nodes, loadgen_nodes) > base
    assert usd(load_s, gpu_nodes, loadgen_nodes + extra_nodes) > base


# -- the local twin --------------------------------------------------------------------------


def _twin(tmp_path: Path, capacity: str | None) -> Summary:
    run = _copy(tmp_path, "twin-dev")

    def spot(config: dict[str, Any]) -> None:
        if capacity is not None:
            config["target"]["capacity_type"] = capacity

    _edit(run / run_files.CONFIG, spot)
    return summary.write(run)


def test_a_twin_run_is_priced_at_its_stacks_capacity_type(tmp_path: Path) -> None:
    on_demand = _twin(tmp_path / "a", "on-demand").cost
    spot = _twin(tmp_path / "b", "spot").cost
    assert on_demand.gpu_hours == spot.gpu_hours == 0.0011
    assert on_demand.usd_per_gpu_hour == 0.526
    assert spot.usd_per_gpu_hour == 0.216  # the bundled table's worst recent spot price
    assert spot.usd == pytest.approx(0.0011 * 0.216, abs=1e-6)
    assert spot.basis.startswith("spot at its worst recent price: the table has no mean; GPU ")
    assert on_demand.basis.startswith("on-demand price; GPU nodes from launch to removal")
    # the unscaled plan: the 0.5 time scale ran half of it, so the counts are doubled
    assert on_demand.time_scale == 0.5
    assert on_demand.output_tokens == 2 * 152 and on_demand.good_requests == 2 * 38
    assert on_demand.usd_per_good_request == pytest.approx((on_demand.usd or 0) / 76, rel=1e-3)
    # a run directory written before capacity types was on demand
    assert _twin(tmp_path / "c", None).cost == on_demand


def test_a_refreshed_tables_spot_mean_and_date_reach_the_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = BUNDLED.model_copy(
        update={
            "as_of": date(2027, 1, 15),
            "source": "AWS Pricing API and spot price history",
            "instances": {
                **BUNDLED.instances,
                "g4dn.xlarge": InstancePrice(
                    on_demand_usd_per_h=0.526, spot_mean_usd_per_h=0.19, spot_max_usd_per_h=0.24
                ),
            },
        }
    )
    pinned = tmp_path / "prices.json"
    table.write(pinned)
    monkeypatch.setenv(prices.PRICES_ENV, str(pinned))
    c = _twin(tmp_path, "spot").cost
    assert c.usd_per_gpu_hour == 0.19
    assert c.basis.startswith("spot at its recent mean price; GPU nodes")
    assert c.prices is not None and (c.prices.as_of, c.prices.path) == ("2027-01-15", str(pinned))
    on_disk = json.loads((tmp_path / "twin-dev" / run_files.SUMMARY).read_text())
    assert on_disk["cost"]["prices"]["as_of"] == "2027-01-15"
    md = (tmp_path / "twin-dev" / run_files.REPORT_MD).read_text()
    assert f"Prices: us-east-1 prices of 2027-01-15 ({pinned})." in md


@pytest.mark.parametrize(
    ("price", "capacity", "words"),
    [
        (InstancePrice(on_demand_usd_per_h=1.0), "on-demand", "on-demand"),
        (
            InstancePrice(on_demand_usd_per_h=1.0, spot_mean_usd_per_h=0.3, spot_max_usd_per_h=0.5),
            "spot",
            "spot at its recent mean price",
        ),
        (
            InstancePrice(on_demand_usd_per_h=1.0, spot_max_usd_per_h=0.5),
            "spot",
            "spot at its worst recent price: the table has no mean",
        ),
        (
            InstancePrice(on_demand_usd_per_h=1.0),
            "spot",
            "spot at the on-demand price: the table has no spot history",
        ),
    ],
)
def test_a_node_rate_says_which_price_it_took(
    price: InstancePrice, capacity: Any, words: str
) -> None:
    table = PriceTable.model_validate(
        {**BUNDLED.model_dump(), "instances": {"x.large": price.model_dump()}}
    )
    rate = node_rate(table, "x.large", capacity)
    assert (rate.usd_per_hour, rate.words) == (price.hourly_usd(capacity, "mean"), words)


def test_a_twin_of_a_stack_file_records_its_capacity_type_and_platform(tmp_path: Path) -> None:
    text = (
        (ROOT / "Pulumi.dev.yaml")
        .read_text()
        .replace("capacityType: on-demand", "capacityType: spot")
    )
    stack_file = tmp_path / "Pulumi.spotty.yaml"
    stack_file.write_text(text)
    target = run_cli.local_target(
        None, None, stack_file, tmp_path, api_key="k", time_scale=0.1
    ).info()
    assert target.capacity_type == "spot"
    assert target.platform == PlatformInfo(stack="spotty", region="us-east-1", nat_gateways=1)


def test_a_cluster_target_records_its_stacks_platform() -> None:
    stack = load_stack_file(ROOT / "Pulumi.a10g.yaml")
    info = ClusterTarget.for_stack(Target(), "http://127.0.0.1:9090", stack, "a10g").info()
    assert info.capacity_type == stack.gpu.capacity_type
    assert info.platform == PlatformInfo(
        stack="a10g", region=stack.region, nat_gateways=stack.network.nat_gateway_count
    )


# -- --url runs ------------------------------------------------------------------------------


def _url(tmp_path: Path, hourly: float | None, replicas: list[int] | None = None) -> Path:
    run = _copy(tmp_path, "url-run")

    def options(config: dict[str, Any]) -> None:
        config["options"] = RunOptions.from_flags(
            url="http://127.0.0.1:18431/v1", plan="fixed", users=2, duration="3s",
            hourly_usd=hourly,
        ).model_dump(mode="json")  # fmt: skip

    _edit(run / run_files.CONFIG, options)
    if replicas is not None:
        lines = (run / run_files.TIMELINE).read_text().splitlines()
        with (run / run_files.TIMELINE).open("w") as f:
            for line, count in zip(lines, replicas, strict=True):
                f.write(json.dumps({**json.loads(line), "replicas": count}) + "\n")
    return run


WINDOW_S = 7.519 - 3.486
"""The url-run fixture's one step (events.jsonl)."""


def test_hourly_usd_prices_the_whole_endpoint_over_the_loads_wall_time(tmp_path: Path) -> None:
    s = summary.write(_url(tmp_path, 2.5))
    c = s.cost
    (part,) = c.parts
    assert (part.kind, part.unit, part.service) == ("endpoint", "hour", None)
    assert part.quantity == pytest.approx(WINDOW_S / HOUR, abs=1e-6)
    assert c.usd == pytest.approx(2.5 * WINDOW_S / HOUR, abs=1e-6)
    assert c.method == "hourly" and "the price is taken as the whole endpoint's" in c.basis
    assert c.usd_per_good_request == pytest.approx(c.usd / 113, rel=1e-3)  # type: ignore[operator]
    # no AWS service is known for it: the reconciliation sets nothing against it
    run = runs.read_run(tmp_path / "url-run")
    assert run.estimated_usd == c.usd and run.estimate_by_service == {}


def test_hourly_usd_is_per_replica_when_the_target_reports_replicas(tmp_path: Path) -> None:
    # samples at 5.487 (1 replica, back to the step's start), 7.488 (2) and 9.096 (3, past it)
    s = summary.write(_url(tmp_path, 2.5, replicas=[1, 2, 3]))
    (part,) = s.cost.parts
    replica_s = 1 * (7.488 - 3.486) + 2 * (7.519 - 7.488)
    assert part.unit == "replica-hour"
    assert part.quantity == pytest.approx(replica_s / HOUR, abs=1e-6)
    assert s.cost.usd == pytest.approx(2.5 * replica_s / HOUR, abs=1e-6)


def test_a_url_run_without_a_price_says_no_estimate_plainly(tmp_path: Path) -> None:
    s = summary.write(_url(tmp_path, None, replicas=[1, 2, 3]))
    assert s.cost.usd is None and s.cost.parts == [] and s.cost.method == "none"
    assert s.cost.good_requests == 113  # counted all the same
    md = (tmp_path / "url-run" / run_files.REPORT_MD).read_text()
    assert (
        "Cost: no estimate (the endpoint does not say which GPU serves it; pass --hourly-usd" in md
    )
    assert "Estimated cost" not in md and "$0" not in md


def test_no_request_within_the_slos_has_no_cost_per_good_request(tmp_path: Path) -> None:
    run = _url(tmp_path, 2.5)
    _edit(run / run_files.CONFIG, lambda c: c["slo"].update(ttft_p99_ms=1.0, ttft_mean_ms=1.0))
    s = summary.write(run)
    assert s.cost.good_requests == 0 and s.cost.usd_per_good_request is None
    assert s.cost.usd_per_million_output_tokens is not None
    assert "no request met the SLOs" in (run / run_files.REPORT_MD).read_text()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            {"hourly_usd": 2.0},
            "--hourly-usd prices an endpoint someone else runs: use it with --url",
        ),
        ({"url": "http://h", "hourly_usd": 0}, "--hourly-usd 0: input should be greater than 0"),
        ({"url": "http://h", "hourly_usd": math.nan}, "--hourly-usd nan: input should be"),
    ],
)
def test_hourly_usd_is_checked_before_anything_runs(flags: dict[str, Any], message: str) -> None:
    with pytest.raises(OptionsError) as err:
        RunOptions.from_flags(**flags)
    assert str(err.value).startswith(message)


def test_a_run_of_an_unknown_region_says_which_table_priced_it(cloud: tuple[Path, Summary]) -> None:
    files = _cloud_files(cloud, [])
    target = files.config.target.model_copy(
        update={"platform": PlatformInfo(stack="west", region="us-west-2", nat_gateways=2)}
    )
    config = files.config.model_copy(update={"target": target})
    c = cost.estimate(cost.RunFiles(config, [], [], files.window, files.overall, 0.5))
    assert c.prices is not None and c.prices.region == "us-east-1"
    assert "run `qwen-stress prices refresh --region us-west-2`" in c.basis
    assert [p.quantity for p in c.parts if p.kind == "nat_gateways"] == [
        pytest.approx(2 * (cloud_run.LOAD_S / HOUR + 0.0), abs=1e-6)
    ]


def test_autoscaling_info_is_not_needed_for_a_constant_fleet(cloud: tuple[Path, Summary]) -> None:
    files = _cloud_files(cloud, [])
    target = files.config.target.model_copy(
        update={"replicas": 2, "autoscaling": AutoscalingInfo(max_replicas=2, triggers={})}
    )
    config = files.config.model_copy(update={"target": target, "loadgen": None})
    timeline = [TimelineSample(t=0.0), TimelineSample(t=10.0)]
    c = cost.estimate(cost.RunFiles(config, [], timeline, (0.0, 3600.0), files.overall, None))
    (gpu,) = [p for p in c.parts if p.kind == "gpu_nodes"]
    assert gpu.quantity == pytest.approx(2.0) and c.method == "platform"
    assert "GPU time of 2 replica(s) over the load" in c.basis


@pytest.mark.parametrize(
    ("usd", "text"),
    [
        (1234.567, "$1,234.57"),
        (1.0, "$1.00"),
        (0.5, "$0.50"),
        (0.0123456, "$0.0123"),
        (0.0006, "$0.0006"),
        (7.618e-06, "$0.00000762"),
        (0.0, "$0.00"),
    ],
)
def test_small_costs_are_shown_to_three_figures_never_as_zero(usd: float, text: str) -> None:
    assert money(usd) == text


def test_a_negative_replica_count_gives_no_estimate_not_a_crash(tmp_path: Path) -> None:
    s = summary.write(_url(tmp_path, 2.5, replicas=[-1, -1, -1]))
    assert s.cost.usd is None
    assert s.cost.basis.startswith("no estimate: the run's files give a quantity of -")


def test_a_gpu_hours_counter_that_went_down_falls_back_to_the_replicas(
    cloud: tuple[Path, Summary],
) -> None:
    files = _cloud_files(cloud, [])
    timeline = [TimelineSample(t=0.0, replicas=2), TimelineSample(t=1800.0, replicas=2)]
    reset = cost.RunFiles(files.config, [], timeline, (0.0, 3600.0), files.overall, -0.2)
    (gpu,) = [p for p in cost.estimate(reset).parts if p.kind == "gpu_nodes"]
    assert gpu.quantity == pytest.approx(2.0)
    assert gpu.span == "GPU time of the replicas the target reported over the load"


def test_a_time_scale_that_is_not_positive_is_left_out_and_said(tmp_path: Path) -> None:
    run = _copy(tmp_path, "twin-dev")
    _edit(run / run_files.CONFIG, lambda c: c.update(time_scale=0))
    s = summary.write(run)
    assert s.unread[0].startswith("config.json: time_scale could not be read")
    assert s.cost.time_scale == 1.0 and s.cost.usd is not None


def test_an_absurd_hourly_price_is_refused() -> None:
    with pytest.raises(OptionsError, match=r"^--hourly-usd 2000000.0: input should be less than"):
        RunOptions.from_flags(url="http://h", hourly_usd=2e6)


def test_a_rehearsal_is_priced_for_the_plan_it_stands_for(cloud: tuple[Path, Summary]) -> None:
    """The stack lived seconds here; its nodes and the platform count over the unscaled load."""
    files = _cloud_files(cloud, [])
    options = RunOptions(rehearse=True, config=ROOT / "Pulumi.dev.yaml", time_scale=0.1)
    config = files.config.model_copy(update={"options": options, "time_scale": 0.1})
    destroyed = StackDestroyed(
        t=0, at=cloud_run.T0, stack="s", lifetime_s=90.0, destroy_s=1, attempts=1
    )
    c = cost.estimate(cost.RunFiles(config, [destroyed], [], files.window, files.overall, 0.5))
    unscaled_h = cloud_run.LOAD_S / HOUR / 0.1
    quantities = {p.kind: p.quantity for p in c.parts}
    assert quantities["gpu_nodes"] == 0.5  # the twin's own hours, already of the plan
    assert quantities["loadgen_nodes"] == pytest.approx(2 * unscaled_h, abs=1e-6)
    assert quantities["control_plane"] == pytest.approx(unscaled_h, abs=1e-6)
    assert "over the load of the plan the rehearsal stands for (200.0 min)" in c.basis
    assert c.output_tokens == pytest.approx(cloud_run.OUTPUT_TOKENS / 0.1)
