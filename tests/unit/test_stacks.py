"""Every example stack runs the real program under mocks, so the examples can never rot."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pytest
from pulumi.runtime import rpc

from domain import topology
from tests.pulumi_mocks import example_stacks, run_program, stack_config
from tests.unit.conftest import example

OUTPUTS = {
    "clusterName",
    "region",
    "kubeconfig",
    "gpuNodeGroupName",
    "gpuAsgName",
    "gpuInstanceType",
    "prometheusUrl",
}
LOADTEST_OUTPUTS = {
    "kubernetesVersion",
    "nodeRoleArn",
    "privateSubnetIds",
    "systemNodeSelector",
    "costTags",
}
"""What the ephemeral load-test stack builds on (tests/unit/test_platform_outputs.py)."""
VLLM_OUTPUTS = {
    "vllmNamespace",
    "vllmServiceHost",
    "vllmServicePort",
    "vllmBaseUrl",
    "servedModelName",
    "modelName",
    "vllmImage",
    "vllmApiKey",
    "gpuType",
    "gpusPerReplica",
    "kvCacheTokens",
    "maxConcurrentSequences",
    "maxNumSeqs",
    "hourlyUsdPerReplica",
}


def test_there_are_example_stacks() -> None:
    assert {"dev", "a10g"} <= set(example_stacks())


@pytest.mark.parametrize("stack", example_stacks())
def test_example_stack_runs_end_to_end(stack: str) -> None:
    program = example(stack)
    config = stack_config(stack)
    assert set(program.outputs) == OUTPUTS | LOADTEST_OUTPUTS | VLLM_OUTPUTS
    assert program.outputs["servedModelName"] == config["qwen-stress:model"]["servedName"]
    assert program.outputs["modelName"] == config["qwen-stress:model"]["name"]
    assert (
        program.outputs["clusterName"] == f"{config['qwen-stress:cluster']['namePrefix']}-{stack}"
    )
    assert program.outputs["region"] == config["aws:region"]
    assert program.outputs["gpuInstanceType"] == config["qwen-stress:gpu"]["instanceType"]
    gpu_group = program.one("aws:eks/nodeGroup:NodeGroup", "gpu")
    assert program.outputs["gpuNodeGroupName"] == f"{gpu_group.name}-20261128"  # mocked name
    assert program.outputs["gpuAsgName"] == f"eks-{gpu_group.name}-20261128-asg"
    assert program.outputs["prometheusUrl"] == topology.PROMETHEUS_URL


def test_kubeconfig_is_a_secret_that_gets_a_token_from_the_aws_cli() -> None:
    program = example("dev")
    assert program.secret_outputs == {"kubeconfig", "vllmApiKey"}
    kubeconfig: dict[str, Any] = json.loads(program.outputs["kubeconfig"])
    (cluster,) = kubeconfig["clusters"]
    assert cluster["cluster"]["server"].startswith("https://qwen-dev-dev.")
    assert cluster["cluster"]["certificate-authority-data"]
    (user,) = kubeconfig["users"]
    exec_ = user["user"]["exec"]
    assert exec_["command"] == "aws"
    assert exec_["args"][:2] == ["eks", "get-token"]
    assert exec_["args"][exec_["args"].index("--cluster-name") + 1] == "qwen-dev-dev"
    assert exec_["args"][exec_["args"].index("--region") + 1] == "us-east-1"
    assert "token" not in json.dumps(user["user"]).replace("get-token", "")
    assert "env" not in exec_  # the shell's own AWS identity


def test_aws_profile_reaches_the_provider_and_the_kubeconfig() -> None:
    """An explicit provider ignores aws:profile unless told, and so would `aws eks get-token`."""
    program = run_program("dev", overrides={"aws:profile": "gpu-lab"})
    assert program.one("pulumi:providers:aws").inputs["profile"] == "gpu-lab"
    exec_ = json.loads(program.outputs["kubeconfig"])["users"][0]["user"]["exec"]
    assert exec_["env"] == [{"name": "AWS_PROFILE", "value": "gpu-lab"}]


def test_the_kubernetes_provider_uses_the_kubeconfig_and_waits_for_admin_access() -> None:
    program = example("dev")
    provider = program.one("pulumi:providers:kubernetes")
    # Secrets reach a provider wrapped with Pulumi's secret signature.
    wrapped = provider.inputs["kubeconfig"]
    assert wrapped[rpc._special_sig_key] == rpc._special_secret_sig
    assert json.loads(wrapped["value"]) == json.loads(program.outputs["kubeconfig"])
    assert "cluster-admin" in program.depends_on(provider)
    for resource in program.resources:
        if resource.type.startswith("kubernetes:"):
            assert "pulumi:providers:kubernetes::platform-k8s" in (resource.provider or "")


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("qwen-stress:gpu", {"instanceType": "g4dn.xlarge", "maxNodes": 0}, "gpu.maxNodes"),
        ("qwen-stress:network", {"azCount": 1}, "network.azCount"),
        (
            "qwen-stress:cluster",
            {"endpointPublicAccessCidrs": ["203.0.113.10/32"], "kubernetesVersion": "1.30"},
            "cluster.kubernetesVersion",
        ),
        ("qwen-stress:budget", {"maxHourlyUsd": 1}, "budget.maxHourlyUsd"),
    ],
)
def test_bad_config_stops_the_program_before_any_resource(
    key: str, value: dict[str, Any], named: str
) -> None:
    with pytest.raises(pulumi.RunError) as caught:
        run_program("dev", overrides={key: value})
    assert f"qwen-stress:{named}" in str(caught.value)
    assert "resources registered before the error: 0" in caught.value.__notes__


def test_custom_resources_wait_for_the_releases_that_install_their_crds() -> None:
    program = example("dev")
    scaled = program.one("kubernetes:keda.sh/v1alpha1:ScaledObject")
    monitor = program.one("kubernetes:monitoring.coreos.com/v1:ServiceMonitor")
    assert "addons-keda" in program.waits_for(scaled)
    assert "addons-kube-prometheus-stack" in program.waits_for(monitor)


def test_every_vllm_object_comes_after_the_gpu_nodes_and_goes_before_them() -> None:
    """Created once a pod can schedule; deleted while nodes, device plugin and KEDA still run."""
    program = example("dev")
    platform = {"nodes-gpu", "addons-nvidia-device-plugin", "addons-keda"}
    platform.add("addons-kube-prometheus-stack")
    vllm = [
        r
        for r in program.resources
        if r.type.startswith("kubernetes:") and r.name.startswith("qwen-")
    ]
    assert len(vllm) >= 8
    for resource in vllm:
        assert platform <= program.waits_for(resource), resource.name


def _cluster_with(cidrs: list[str]) -> dict[str, Any]:
    cluster = dict(stack_config("dev")["qwen-stress:cluster"])
    cluster["endpointPublicAccessCidrs"] = cidrs
    return cluster


@pytest.mark.parametrize("stack", example_stacks())
def test_an_update_with_the_placeholder_endpoint_address_is_refused_before_any_resource(
    stack: str,
) -> None:
    """The examples ship a documentation address; `pulumi up` with it would strand a cluster."""
    with pytest.raises(pulumi.RunError) as caught:
        run_program(stack, preview=False)
    message = str(caught.value)
    assert "qwen-stress:cluster.endpointPublicAccessCidrs" in message
    assert "checkip.amazonaws.com" in message
    assert "resources registered before the error: 0" in caught.value.__notes__


def test_a_preview_with_the_placeholder_address_warns_and_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    warnings: list[str] = []
    monkeypatch.setattr(pulumi.log, "warn", lambda message, *a, **k: warnings.append(message))
    program = run_program("dev", preview=True)
    assert program.of_type("aws:eks/cluster:Cluster")
    assert [w for w in warnings if "203.0.113.10/32" in w]


def test_an_update_from_a_real_address_goes_ahead(monkeypatch: pytest.MonkeyPatch) -> None:
    warnings: list[str] = []
    monkeypatch.setattr(pulumi.log, "warn", lambda message, *a, **k: warnings.append(message))
    program = run_program(
        "dev",
        overrides={"qwen-stress:cluster": _cluster_with(["52.94.76.10/32", "10.20.0.0/16"])},
        preview=False,
    )
    cluster = program.one("aws:eks/cluster:Cluster")
    assert cluster.inputs["vpcConfig"]["publicAccessCidrs"] == ["52.94.76.10/32", "10.20.0.0/16"]
    assert not [w for w in warnings if "endpointPublicAccessCidrs" in w]
