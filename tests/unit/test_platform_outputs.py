"""The platform stack exports what the load-test stack builds on, in the shape it reads."""

from __future__ import annotations

import pytest

from domain import topology
from loadtest.cloud.spec import PLATFORM_OUTPUTS, PlatformOutputs
from tests.pulumi_mocks import ACCOUNT_ID, stack_config
from tests.unit.conftest import example


@pytest.mark.parametrize("stack", ["dev", "a10g"])
def test_the_load_test_stack_can_be_built_from_the_platform_outputs(stack: str) -> None:
    program = example(stack)
    assert set(PLATFORM_OUTPUTS) <= set(program.outputs)
    platform = PlatformOutputs.from_stack_outputs(stack, program.outputs)
    config = stack_config(stack)
    assert platform.kubernetes_version == config["qwen-stress:cluster"]["kubernetesVersion"]
    role = program.one("aws:iam/role:Role", "nodes-node")
    assert platform.node_role_arn == f"arn:aws:iam::{ACCOUNT_ID}:role/{role.name}-0a1b2c3"
    subnets = [r for r in program.of_type("aws:ec2/subnet:Subnet") if "private" in r.name]
    assert platform.private_subnet_ids == tuple(f"{r.name}-id" for r in subnets)
    assert len(subnets) == config["qwen-stress:network"]["azCount"]
    assert platform.system_node_selector == {topology.ROLE_LABEL: topology.SYSTEM_ROLE}
    tags = config["qwen-stress:tags"]
    assert (platform.tags.owner, platform.tags.cost_center) == (tags["owner"], tags["costCenter"])
    assert program.outputs["costTags"]["stack"] == stack
    # Secrets stay secrets on the way out.
    assert {"kubeconfig", "vllmApiKey"} <= program.secret_outputs
