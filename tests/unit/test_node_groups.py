"""Node groups: GPU group settings, launch templates and the tags that allow scale from zero."""

from __future__ import annotations

from typing import Any

import pytest

from domain import topology, versions
from domain.stack_config import StackConfig
from tests.pulumi_mocks import Program, Resource, run_program, stack_config
from tests.unit.conftest import example

NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
ASG_TAG = "aws:autoscaling/tag:Tag"


def _template_of(program: Program, group: Resource) -> dict[str, Any]:
    lt_id = group.inputs["launchTemplate"]["id"]
    return next(r.inputs for r in program.of_type(LAUNCH_TEMPLATE) if f"{r.name}-id" == lt_id)


def test_gpu_group_follows_config(dev: Program, dev_config: StackConfig) -> None:
    gpu = dev.one(NODE_GROUP, "gpu").inputs
    assert gpu["amiType"] == "AL2023_x86_64_NVIDIA"
    assert gpu["instanceTypes"] == [dev_config.gpu.instance_type]
    assert gpu["capacityType"] == "ON_DEMAND"
    assert gpu["scalingConfig"] == {"minSize": 1, "maxSize": 5, "desiredSize": 1}
    assert gpu["labels"] == {
        topology.ROLE_LABEL: topology.GPU_ROLE,
        topology.ACCELERATOR_LABEL: "nvidia-tesla-t4",
    }
    assert gpu["taints"] == [{"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}]


def test_a10g_nodes_say_which_gpu_they_carry(a10g: Program) -> None:
    labels = a10g.one(NODE_GROUP, "gpu").inputs["labels"]
    assert labels[topology.ACCELERATOR_LABEL] == "nvidia-a10g"


def test_spot_capacity_reaches_the_node_group() -> None:
    gpu = dict(stack_config("dev")["qwen-stress:gpu"], capacityType="spot")
    program = run_program("dev", overrides={"qwen-stress:gpu": gpu})
    assert program.one(NODE_GROUP, "gpu").inputs["capacityType"] == "SPOT"


def test_autoscaler_owns_desired_size_after_creation(dev: Program) -> None:
    for group in dev.of_type(NODE_GROUP):
        options = dev.options[(group.type, group.name)]
        assert options.ignore_changes == ["scalingConfig.desiredSize"]
        assert any("AmazonEKSWorkerNodePolicy" in d for d in dev.depends_on(group))


def test_gpu_launch_template_disk_and_metadata(dev: Program, dev_config: StackConfig) -> None:
    template = _template_of(dev, dev.one(NODE_GROUP, "gpu"))
    (root,) = template["blockDeviceMappings"]
    assert root["deviceName"] == "/dev/xvda"
    assert root["ebs"]["volumeType"] == "gp3"
    assert root["ebs"]["volumeSize"] == dev_config.gpu.disk_gib >= 100
    assert root["ebs"]["encrypted"] == "true"
    assert template["metadataOptions"] == {
        "httpEndpoint": "enabled",
        "httpTokens": "required",
        "httpPutResponseHopLimit": 1,
    }


def test_system_group_is_small_on_demand_and_labelled(dev: Program) -> None:
    system = dev.one(NODE_GROUP, "system").inputs
    assert system["amiType"] == versions.SYSTEM_AMI_TYPE
    assert system["capacityType"] == "ON_DEMAND"
    assert system["instanceTypes"] == ["c6i.2xlarge"]
    assert system["labels"] == {topology.ROLE_LABEL: topology.SYSTEM_ROLE}
    assert "taints" not in system
    assert system["scalingConfig"] == {"minSize": 1, "maxSize": 2, "desiredSize": 1}
    assert _template_of(dev, dev.one(NODE_GROUP, "system"))["metadataOptions"]["httpTokens"] == (
        "required"
    )


@pytest.mark.parametrize(
    ("stack", "accelerator"), [("dev", "nvidia-tesla-t4"), ("a10g", "nvidia-a10g")]
)
def test_gpu_asg_is_tagged_for_scale_from_zero(stack: str, accelerator: str) -> None:
    program = example(stack)
    asg = program.outputs["gpuAsgName"]
    tags = program.of_type(ASG_TAG)
    assert {t.inputs["autoscalingGroupName"] for t in tags} == {asg}
    assert all(t.inputs["tag"]["propagateAtLaunch"] is False for t in tags)
    template = "k8s.io/cluster-autoscaler/node-template"
    # Only the node template: EKS sets the discovery tags (enabled, <cluster>=owned) itself, and a
    # Tag resource on the same key would delete EKS's tag when it is replaced or removed.
    assert {t.inputs["tag"]["key"]: t.inputs["tag"]["value"] for t in tags} == {
        f"{template}/label/{topology.ROLE_LABEL}": topology.GPU_ROLE,
        f"{template}/label/{topology.ACCELERATOR_LABEL}": accelerator,
        f"{template}/taint/nvidia.com/gpu": "true:NoSchedule",
        f"{template}/resources/nvidia.com/gpu": "1",
    }


def test_scale_from_zero_tags_match_what_the_nodes_get(dev: Program) -> None:
    """The autoscaler's picture of an unborn node must equal the node EKS will start."""
    group = dev.one(NODE_GROUP, "gpu").inputs
    tags = {t.inputs["tag"]["key"]: t.inputs["tag"]["value"] for t in dev.of_type(ASG_TAG)}
    prefix = "k8s.io/cluster-autoscaler/node-template"
    for label, value in group["labels"].items():
        assert tags[f"{prefix}/label/{label}"] == value
    for taint in group["taints"]:
        effect = {"NO_SCHEDULE": "NoSchedule"}[taint["effect"]]
        assert tags[f"{prefix}/taint/{taint['key']}"] == f"{taint['value']}:{effect}"
