"""Each wrong setting fails before any resource, naming the key, the value and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from domain.durations import parse_duration
from domain.stack_config import ClusterConfig, ConfigError, load_stack_file, parse
from tests.pulumi_mocks import ROOT, example_stacks, stack_config


def _with(**sections: Any) -> dict[str, Any]:
    values = stack_config("dev")
    for key, value in sections.items():
        values[f"qwen-stress:{key}"] = value
    return values


def _error(values: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        parse(values)
    return str(caught.value)


@pytest.mark.parametrize("stack", example_stacks())
def test_example_stacks_parse(stack: str) -> None:
    cfg = load_stack_file(ROOT / f"Pulumi.{stack}.yaml")
    assert cfg.fit.kv_cache_tokens >= cfg.model.max_model_len
    assert cfg.min_hourly_usd() < cfg.max_hourly_usd()


def test_min_nodes_above_max() -> None:
    msg = _error(_with(gpu={"instanceType": "g4dn.xlarge", "minNodes": 4, "maxNodes": 2}))
    assert "qwen-stress:gpu" in msg
    assert "minNodes 4 is greater than maxNodes 2" in msg


def test_zero_max_nodes() -> None:
    msg = _error(_with(gpu={"instanceType": "g4dn.xlarge", "minNodes": 0, "maxNodes": 0}))
    assert "qwen-stress:gpu.maxNodes" in msg


def test_instance_without_gpu() -> None:
    msg = _error(_with(gpu={"instanceType": "c6i.large"}))
    assert "qwen-stress:gpu.instanceType" in msg
    assert "c6i.large has no GPU" in msg
    assert "g4dn.xlarge" in msg  # says what to use instead


def test_instance_unknown_to_catalog() -> None:
    msg = _error(_with(gpu={"instanceType": "g9.mega"}))
    assert "unknown instance type 'g9.mega'" in msg
    assert "g5.xlarge" in msg


def test_too_few_azs() -> None:
    msg = _error(_with(network={"azCount": 1}))
    assert "qwen-stress:network.azCount" in msg
    assert "at least 2" in msg


@pytest.mark.parametrize(
    "cidr", ["10.0.0.0/33", "10.0.0.1/16", "banana", "10.0.0.0/8", "10.0.0.0/24"]
)
def test_bad_vpc_cidr(cidr: str) -> None:
    msg = _error(_with(network={"cidr": cidr}))
    assert "qwen-stress:network.cidr" in msg
    assert cidr in msg


def _cluster(**changes: Any) -> dict[str, Any]:
    return dict(stack_config("dev")["qwen-stress:cluster"], **changes)


def test_bad_endpoint_cidr() -> None:
    msg = _error(_with(cluster=_cluster(endpointPublicAccessCidrs=["300.1.1.1/32"])))
    assert "qwen-stress:cluster.endpointPublicAccessCidrs" in msg
    assert "300.1.1.1/32" in msg


def test_endpoint_open_to_the_internet_is_refused() -> None:
    msg = _error(_with(cluster=_cluster(endpointPublicAccessCidrs=["0.0.0.0/0"])))
    assert "qwen-stress:cluster.endpointPublicAccessCidrs" in msg
    assert "0.0.0.0/0 opens the Kubernetes API to the whole internet" in msg


def test_kubernetes_version_without_pins_is_refused() -> None:
    msg = _error(_with(cluster=_cluster(kubernetesVersion="1.30")))
    assert "qwen-stress:cluster.kubernetesVersion" in msg
    assert "'1.30'" in msg
    assert 'use "1.35"' in msg


def test_reserved_tag_key_is_refused() -> None:
    tags = dict(stack_config("dev")["qwen-stress:tags"], extra={"aws:team": "x"})
    msg = _error(_with(tags=tags))
    assert "qwen-stress:tags.extra" in msg
    assert "'aws:team'" in msg


def test_bad_name_prefix_is_refused() -> None:
    msg = _error(_with(cluster=_cluster(namePrefix="Qwen_Dev")))
    assert "qwen-stress:cluster.namePrefix" in msg


def test_disk_too_small_for_the_vllm_image() -> None:
    msg = _error(_with(gpu={"instanceType": "g4dn.xlarge", "maxNodes": 5, "diskGiB": 50}))
    assert "qwen-stress:gpu.diskGiB" in msg
    assert "50 GiB" in msg


def test_autoscaler_durations_are_bounded() -> None:
    msg = _error(_with(clusterAutoscaler={"scaleDownUnneededTime": "10s"}))
    assert "qwen-stress:clusterAutoscaler.scaleDownUnneededTime" in msg
    assert "use 1m to 1h" in msg


def test_budget_guard_refuses_expensive_maximum() -> None:
    msg = _error(_with(budget={"maxHourlyUsd": 1.5}))
    assert "qwen-stress:budget.maxHourlyUsd" in msg
    assert "$3.46/h" in msg  # 0.10 EKS + 0.045 NAT + 2 x 0.34 system + 5 x 0.526 T4


def test_budget_guard_uses_spot_price_when_spot() -> None:
    gpu = {"instanceType": "g4dn.xlarge", "capacityType": "spot", "minNodes": 1, "maxNodes": 5}
    cfg = parse(_with(gpu=gpu, budget={"maxHourlyUsd": 2.0}))
    assert cfg.max_hourly_usd() == pytest.approx(0.10 + 0.045 + 2 * 0.34 + 5 * 0.216)


def test_unknown_keys_are_rejected_everywhere() -> None:
    values = _with(gpu={"instanceType": "g4dn.xlarge", "maxNode": 3})
    values["qwen-stress:gpuu"] = {}
    msg = _error(values)
    assert "qwen-stress:gpu.maxNode: is not a setting" in msg
    assert "qwen-stress:gpuu: is not a setting" in msg


def test_every_error_is_reported_at_once() -> None:
    msg = _error(_with(gpu={"instanceType": "c6i.large"}, network={"azCount": 9}))
    assert "gpu.instanceType" in msg
    assert "network.azCount" in msg


def test_required_keys_say_where_to_set_them() -> None:
    values = stack_config("dev")
    del values["qwen-stress:tags"]
    assert "qwen-stress:tags: is required" in _error(values)


def test_model_that_does_not_fit_names_alternatives() -> None:
    msg = _error(_with(model={"name": "Qwen/Qwen2.5-7B-Instruct"}))
    assert "qwen-stress:model.name" in msg
    assert "Qwen/Qwen2.5-7B-Instruct-AWQ" in msg


def test_replicas_need_gpus() -> None:
    msg = _error(_with(autoscaling={"minReplicas": 1, "maxReplicas": 6}))
    assert "qwen-stress:autoscaling.maxReplicas" in msg
    assert "raise gpu.maxNodes to 6" in msg


def test_structured_values_arrive_as_json_text_from_pulumi() -> None:
    values = stack_config("dev")
    values["qwen-stress:gpu"] = '{"instanceType": "g5.xlarge", "minNodes": 0, "maxNodes": 5}'
    values["qwen-stress:model"] = '{"name": "Qwen/Qwen2.5-7B-Instruct"}'
    values["qwen-stress:budget"] = '{"maxHourlyUsd": 10}'
    assert parse(values).gpu.instance_type == "g5.xlarge"


def test_secure_values_in_stack_files_are_skipped(tmp_path: Path) -> None:
    text = (ROOT / "Pulumi.dev.yaml").read_text()
    text += "  qwen-stress:apiKey:\n    secure: AAABAEncrypted==\n"
    path = tmp_path / "Pulumi.x.yaml"
    path.write_text(text)
    assert load_stack_file(path).api_key is None


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("5m", 300), ("1h30m", 5400)])
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text, bare_unit=None) == seconds


@pytest.mark.parametrize("text", ["", "5", "5 m", "m5"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text, bare_unit=None)


@pytest.mark.parametrize(
    ("cidrs", "placeholders"),
    [
        (["203.0.113.10/32"], ["203.0.113.10/32"]),
        (["192.0.2.0/24", "52.94.76.10/32"], ["192.0.2.0/24"]),
        (["198.51.100.7/32"], ["198.51.100.7/32"]),
        (["52.94.76.10/32", "203.0.0.0/16"], []),  # real blocks, one merely containing TEST-NET-3
    ],
)
def test_documentation_addresses_are_recognised_as_placeholders(
    cidrs: list[str], placeholders: list[str]
) -> None:
    cluster = ClusterConfig.model_validate({"endpointPublicAccessCidrs": cidrs})
    assert cluster.placeholder_cidrs() == placeholders


@pytest.mark.parametrize(
    ("model", "key", "words"),
    [
        ({"maxModelLen": 100}, "model.maxModelLen", "maxModelLen 100 is outside 256..32768"),
        (
            {"maxModelLen": 32768, "gpuMemoryUtilization": 0.5},
            "model.maxModelLen",
            "lower maxModelLen to",
        ),
        (
            {"gpuMemoryUtilization": 1.5},
            "model.gpuMemoryUtilization",
            "gpuMemoryUtilization 1.5 is outside 0.1..0.99",
        ),
        ({"tensorParallel": 2}, "model.tensorParallel", "g4dn.xlarge has 1"),
        ({"name": "Qwen/Qwen2.5-7B-Instruct"}, "model.name", "needs 15.2 GB of weights"),
    ],
)
def test_a_fit_error_names_the_setting_to_change(
    model: dict[str, Any], key: str, words: str
) -> None:
    msg = _error(_with(model={"name": "Qwen/Qwen2.5-7B-Instruct-AWQ", **model}))
    assert f"qwen-stress:{key}: " in msg
    (line,) = [line for line in msg.splitlines() if words in line]
    assert line.strip().startswith(f"qwen-stress:{key}: ")
    if key != "model.name":
        assert "qwen-stress:model.name" not in msg


def test_a_fit_error_does_not_hide_the_other_cross_checks() -> None:
    msg = _error(
        _with(
            model={"name": "Qwen/Qwen2.5-7B-Instruct-AWQ", "maxModelLen": 100},
            autoscaling={"maxReplicas": 6, "targetRunningPerReplica": 250},
            budget={"maxHourlyUsd": 1.5},
        )
    )
    assert "qwen-stress:model.maxModelLen" in msg
    assert "qwen-stress:autoscaling.targetRunningPerReplica 250 can never trigger" in msg
    assert "qwen-stress:autoscaling.maxReplicas: 6 replicas" in msg
    assert "qwen-stress:budget.maxHourlyUsd" in msg


@pytest.mark.parametrize("empty", ["", "  ", None])
def test_an_empty_value_is_called_empty_not_bad_json(empty: str | None) -> None:
    values = _with(gpu=empty, budget="")
    msg = _error(values)
    assert "not valid JSON" not in msg
    assert "qwen-stress:gpu is set but empty" in msg
    assert "pulumi config rm qwen-stress:gpu" in msg
    assert "qwen-stress:budget is set but empty" in msg  # every empty key at once


def test_malformed_json_is_still_reported_as_json() -> None:
    msg = _error(_with(gpu='{"instanceType": '))
    assert "qwen-stress:gpu is not valid JSON" in msg
