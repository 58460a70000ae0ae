"""The load-test spec and its sizing refuse what cannot be deployed, before any resource exists."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from loadtest.cloud import sizing
from loadtest.cloud.spec import (
    PLATFORM_OUTPUTS,
    CodeImage,
    CodeWheel,
    LoadGenOptions,
    LoadTestSpec,
    PlatformOutputs,
    SpecError,
    describe,
)
from loadtest.run_options import CLOUD_USERS_PER_WORKER, MAX_WORKERS
from tests.loadtest_specs import API_KEY, KUBECONFIG, platform, spec


@pytest.mark.parametrize(
    ("peak", "nodes", "workers"),
    [(1, 1, 6), (128, 1, 6), (768, 1, 6), (769, 2, 13), (1664, 2, 13), (1665, 3, 20)],
)
def test_nodes_hold_one_worker_per_spare_vcpu_and_at_most_128_streams_each(
    peak: int, nodes: int, workers: int
) -> None:
    sized = sizing.size(peak)
    assert (sized.nodes, sized.workers) == (nodes, workers)
    assert sized.users_per_worker <= 128
    # 8 vCPUs, one kept for the node, one slot for the master.
    assert sized.workers == sized.nodes * 7 - 1


def test_a_fixed_worker_count_must_carry_the_peak() -> None:
    assert sizing.size(400, workers=4) == sizing.Sizing(
        1, 4, 400, 128, sizing.loadgen_instance("c7i.2xlarge"), "spot"
    )
    with pytest.raises(sizing.SizingError, match="use at least 4 workers"):
        sizing.size(400, workers=3)
    assert sizing.size(400, workers=7).nodes == 2  # 7 workers + master > 7 slots
    assert sizing.size(400, users_per_worker=64).workers == 13


def test_bigger_instances_mean_fewer_nodes_and_spot_is_priced_at_its_worst() -> None:
    sized = sizing.size(2000, instance_type="c7i.4xlarge")
    assert (sized.nodes, sized.workers) == (2, 29)
    assert sized.hourly_usd == pytest.approx(2 * 0.3384)
    assert sizing.size(2000, instance_type="c7i.4xlarge", capacity_type="on-demand").hourly_usd == (
        pytest.approx(2 * 0.714)
    )


@pytest.mark.parametrize(
    ("instance", "message"),
    [
        ("g5.xlarge", "GPU instance"),
        ("c6i.large", None),
        ("m9z.huge", "unknown instance type"),
    ],
)
def test_load_generators_never_use_gpu_or_unknown_instances(
    instance: str, message: str | None
) -> None:
    if message is None:
        assert sizing.size(10, instance_type=instance).nodes == 2  # one slot per node
        return
    with pytest.raises(ValueError, match=message):
        sizing.size(10, instance_type=instance)


def test_a_typo_in_the_peak_cannot_start_a_fleet() -> None:
    with pytest.raises(sizing.SizingError, match="more than the 50"):
        sizing.size(500_000)


def test_existing_nodes_take_small_runs_only() -> None:
    assert sizing.size(256, nodes="existing") == sizing.Sizing(0, 2, 256, 128, None, "spot")
    assert sizing.size(10, nodes="existing").workers == 1
    with pytest.raises(sizing.SizingError, match="--loadgen-nodes new"):
        sizing.size(257, nodes="existing")


def test_spec_refuses_node_options_with_existing_nodes() -> None:
    with pytest.raises(ValidationError, match="instance_type only applies to new"):
        LoadGenOptions(nodes="existing", instance_type="c7i.4xlarge")
    assert LoadGenOptions(nodes="existing").instance_type == sizing.DEFAULT_INSTANCE_TYPE


def test_spec_refuses_a_peak_the_options_cannot_carry_with_the_fix() -> None:
    with pytest.raises(ValidationError) as err:
        spec(peak_users=1000, loadgen=LoadGenOptions(nodes="existing"))
    assert "use new load-generator nodes" in describe(err.value)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"run_id": "Run_1"}, "run_id: String should match pattern"),
        ({"run_id": "x" * 41}, "run_id"),
        ({"payload": "[1, 2]"}, "payload: must be a JSON object"),
        ({"payload": "{nope"}, "payload: is not JSON"),
        ({"payload": '{"key": "' + API_KEY + '"}'}, "payload holds the API key"),
        ({"expires_at": datetime(2026, 1, 1, 14)}, "expires_at"),
        ({"plan_seconds": 0}, "plan_seconds"),
    ],
)
def test_spec_refuses_bad_values_naming_the_field(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as err:
        spec(**overrides)
    text = describe(err.value)
    assert message in text
    assert API_KEY not in text


def test_images_must_be_pinned_and_wheels_small() -> None:
    assert CodeImage(image="ghcr.io/o/qwen-stress:0.1.0").image.endswith(":0.1.0")
    for floating in ("ghcr.io/o/qwen-stress", "ghcr.io/o/qwen-stress:latest", "not an image"):
        with pytest.raises(ValidationError):
            CodeImage(image=floating)
    with pytest.raises(ValidationError, match="use the released image"):
        CodeWheel(filename="qwen_stress-0.1.0-py3-none-any.whl", content=b"x" * 800_000)
    with pytest.raises(ValidationError, match="not this project's"):
        CodeWheel(filename="evil-1.0-py3-none-any.whl", content=b"x")


def test_secrets_stay_out_of_repr_dumps_and_error_messages() -> None:
    s = spec()
    for text in (repr(s), str(s), s.model_dump_json()):
        assert API_KEY not in text
        assert "kc-marker" not in text
    with pytest.raises(ValidationError) as err:
        platform(api_key=12345, kubeconfig=["not", "a", "string"])
    text = describe(err.value)
    assert "api_key" in text and "12345" not in text and "not" not in text.split("kubeconfig")[1]


def test_deadline_and_expiry_follow_the_plan_length() -> None:
    s = spec(plan_seconds=600.5)
    assert s.deadline_seconds == 601 + 900
    now = datetime(2026, 1, 1, 12, tzinfo=UTC)
    assert (LoadTestSpec.expiry(now, 600.5) - now).total_seconds() == 601 + 900 + 1800


def _outputs() -> dict[str, Any]:
    return {
        "clusterName": "qwen-stress-dev",
        "region": "us-east-1",
        "kubeconfig": KUBECONFIG,
        "kubernetesVersion": "1.35",
        "nodeRoleArn": "arn:aws:iam::123456789012:role/nodes-node-0a1b2c3",
        "privateSubnetIds": ["subnet-0aaa", "subnet-0bbb"],
        "systemNodeSelector": {"qwen-stress.io/role": "system"},
        "costTags": {
            "owner": "ml-platform",
            "cost-center": "cc-1234",
            "project": "qwen-stress",
            "stack": "dev",
            "team": "infer",
        },
        "vllmBaseUrl": "http://vllm.vllm.svc.cluster.local:8000/v1",
        "vllmNamespace": "vllm",
        "vllmServicePort": 8000,
        "servedModelName": "Qwen/Qwen2.5-7B-Instruct-AWQ",
        "vllmApiKey": API_KEY,
        "prometheusUrl": "http://kube-prometheus-stack-prometheus.monitoring.svc:9090",
        "gpuInstanceType": "g4dn.xlarge",
    }


def test_platform_outputs_are_read_from_the_stack_outputs() -> None:
    read = PlatformOutputs.from_stack_outputs("dev", _outputs(), aws_profile="ml")
    assert read == platform(aws_profile="ml")
    assert set(PLATFORM_OUTPUTS) <= set(_outputs())


def test_an_older_platform_stack_is_named_with_what_it_lacks() -> None:
    outputs = _outputs()
    del outputs["nodeRoleArn"], outputs["costTags"]
    with pytest.raises(SpecError, match=r"no output nodeRoleArn, costTags; run `pulumi up`"):
        PlatformOutputs.from_stack_outputs("dev", outputs)
    outputs = _outputs() | {"vllmApiKey": 7, "nodeRoleArn": "not-an-arn"}
    with pytest.raises(SpecError) as err:
        PlatformOutputs.from_stack_outputs("dev", outputs)
    assert "node_role_arn" in str(err.value) and "api_key" in str(err.value)
    assert "7)" not in str(err.value)


def test_a_sized_run_never_has_more_workers_than_a_run_may() -> None:
    """Every slot of the nodes runs a worker, up to ``MAX_WORKERS`` (a rehearsal runs them here)."""
    biggest = sizing.size(MAX_WORKERS * CLOUD_USERS_PER_WORKER)
    assert biggest.workers == MAX_WORKERS
    assert biggest.workers * biggest.users_per_worker >= biggest.peak_users
