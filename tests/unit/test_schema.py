"""The run-file models: each round-trips, unions read unknown kinds, files stay valid JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError

from loadtest import summary
from loadtest.run_data import RunData
from loadtest.run_options import RunOptions
from loadtest.schema import (
    SCHEMA_VERSION,
    UNVERSIONED,
    AutoscalingInfo,
    Cost,
    Finished,
    FleetTargetInfo,
    OtherEvent,
    OtherTarget,
    RunConfig,
    RunEvent,
    StackDestroyed,
    StackUp,
    StepStart,
    Summary,
    TargetInfo,
    TimelineSample,
    UrlTargetInfo,
    WorkerLost,
)
from loadtest.slo import Slo, SloError
from twin.fleet.fleet_spec import FleetSpec

FIXTURES = Path(__file__).parents[1] / "fixtures" / "runs"
TARGETS: TypeAdapter[TargetInfo] = TypeAdapter(TargetInfo)
EVENTS: TypeAdapter[RunEvent] = TypeAdapter(RunEvent)


def round_trip(model: BaseModel) -> BaseModel:
    """Write the model as the run files do, read it back with its own class."""
    return type(model).model_validate_json(model.model_dump_json(by_alias=True))


def fleet_info() -> FleetTargetInfo:
    spec = FleetSpec.for_model("Qwen/Qwen2.5-7B-Instruct", "A10G")
    return FleetTargetInfo(
        url="http://127.0.0.1:8000",
        description="the twin",
        model=spec.model,
        gpu=spec.gpu,
        instance_type=spec.instance_type,
        replicas=1,
        gpus_per_replica=1,
        time_scale=0.1,
        autoscaling=AutoscalingInfo.model_validate(spec.describe()),
    )


def test_the_twins_own_description_is_what_the_target_info_reads() -> None:
    # The twin writes describe() (its /fleet/status too); the runner stores it as autoscaling.
    info = fleet_info().autoscaling
    assert info.max_replicas >= 1
    assert {"waiting", "running"} <= set(info.triggers)
    assert info.cold_start_s is not None and info.cold_start_s.image_pull > 0


@pytest.mark.parametrize(
    "target",
    [UrlTargetInfo(url="https://api.example.com", description="api"), fleet_info()],
    ids=["url", "fleet"],
)
def test_target_info_round_trips_by_kind(target: TargetInfo) -> None:
    text = json.dumps(target.model_dump(mode="json"))
    again = TARGETS.validate_json(text)
    assert type(again) is type(target) and again == target


def test_an_endpoint_leaves_out_what_it_does_not_know() -> None:
    # absent, not null: the file reads as before versions (kind, url, description)
    assert UrlTargetInfo(url="u", description="d").model_dump() == {
        "kind": "url",
        "url": "u",
        "description": "d",
    }


def test_an_unknown_target_kind_is_read_for_its_name_and_address_only() -> None:
    data = {"kind": "cloud", "url": "https://x", "description": "EKS", "gpu": "H100"}
    target = TARGETS.validate_python(data)
    assert isinstance(target, OtherTarget)
    assert (target.kind, target.url, target.label) == ("cloud", "https://x", "EKS")
    # its fields may not mean here what they mean there: nothing is priced from them
    assert target.gpu is None


def test_events_round_trip_and_unknown_kinds_keep_their_fields() -> None:
    events: list[RunEvent] = [
        StepStart(t=1.0, index=0, phase="ramp", users=5, planned_s=60.0),
        WorkerLost(t=2.0, worker=1, pid=42, detail="process killed by signal 9"),
        Finished(t=3.0, interrupted=False, stop_reason="the plan finished"),
    ]
    for event in events:
        assert EVENTS.validate_json(EVENTS.dump_json(event)) == event
    line = '{"t": 0.5, "kind": "spot_interruption", "node": "loadgen-1", "pods": 12}'
    other = EVENTS.validate_json(line)
    assert isinstance(other, OtherEvent) and other.kind == "spot_interruption"
    assert json.loads(EVENTS.dump_json(other)) == json.loads(line)


def test_the_load_test_stacks_events_are_known_kinds() -> None:
    events: list[RunEvent] = [
        StackUp(t=-120.0, at=1.7e9, stack="r1", project="qwen-stress-loadtest", up_s=118.2,
                outputs=["masterService", "namespace"]),
        StackDestroyed(t=900.0, stack="r1", lifetime_s=1100.5, destroy_s=140.0, attempts=2,
                       pending_creates_dropped=["urn:x"], usd=0.21, hourly_usd=0.68),
    ]  # fmt: skip
    for event in events:
        assert EVENTS.validate_json(EVENTS.dump_json(event)) == event


def test_a_known_kind_with_wrong_fields_is_refused() -> None:
    with pytest.raises(ValidationError):
        EVENTS.validate_json('{"t": 1, "kind": "step_start", "index": "first"}')


def test_a_timeline_sample_round_trips_and_refuses_what_json_cannot_hold() -> None:
    sample = TimelineSample(
        t=2.0,
        step=0,
        phase="baseline",
        users=10,
        rps=4.5,
        worker_cpu={"0": 35.5},
        ready_replicas=1,
        queue=3.0,
        kv_usage_by_replica={"vllm-0": 0.25},
    )
    assert round_trip(sample) == sample
    for bad in (math.nan, math.inf):
        with pytest.raises(ValidationError):
            TimelineSample(t=1.0, rps=bad)
    with pytest.raises(ValidationError):
        Cost(usd=math.inf, basis="x")


def test_a_config_round_trips_and_an_old_one_reads_as_unversioned() -> None:
    data = json.loads((FIXTURES / "v0-fleet" / "config.json").read_text())
    config = RunConfig.from_file(data)
    assert config.schema_version == UNVERSIONED and config.options is None
    assert isinstance(config.target, FleetTargetInfo)
    assert config.target.autoscaling.max_replicas == 5
    options = RunOptions.from_flags(
        config=Path("Pulumi.dev.yaml"), plan="ramp", baseline_users=2, max_users=4
    )
    current = config.model_copy(update={"schema_version": SCHEMA_VERSION, "options": options})
    again = RunConfig.from_file(json.loads(current.model_dump_json(by_alias=True)))
    assert again == current
    assert again.options is not None and again.options.plan_name == "ramp"


def test_a_summary_round_trips(tmp_path: Path) -> None:
    built = summary.build(RunData.read(FIXTURES / "v0-url"))
    text = built.model_dump_json(by_alias=True)
    assert Summary.model_validate_json(text) == built
    on_disk = json.loads(text)
    assert on_disk["schema_version"] == SCHEMA_VERSION
    # the names older readers know, and what parts, prices and per-unit figures added
    assert set(on_disk["cost"]) == {
        "gpu",
        "instance_type",
        "usd_per_gpu_hour",
        "gpu_hours",
        "usd",
        "time_scale",
        "basis",
        "method",
        "capacity_type",
        "parts",
        "prices",
        "output_tokens",
        "good_requests",
        "usd_per_million_output_tokens",
        "usd_per_good_request",
    }


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"success_rate": 0.99, "ttft_p98_ms": 1.0}, "ttft_p98_ms: not an objective"),
        ({"ttft_p99_ms": "fast"}, "ttft_p99_ms: 'fast' is not a number"),
        ({"ttft_p99_ms": math.nan}, "ttft_p99_ms: nan is not a number"),
    ],
)
def test_objectives_read_back_are_checked(data: dict[str, object], error: str) -> None:
    with pytest.raises(SloError, match=error):
        Slo.from_json(data)
