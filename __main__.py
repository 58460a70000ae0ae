"""The platform stack: EKS, an autoscaled GPU node group, cluster add-ons and the vLLM service.

Configuration is read and validated once, before any resource is registered: a wrong setting
ends ``pulumi preview`` with a message naming the key, not a half-built cluster.
"""

from __future__ import annotations

import pulumi

from domain import topology
from domain.stack_config import ConfigError
from infra.config import load
from infra.platform import Platform
from workloads.vllm_service import VllmService

try:
    config = load()
except ConfigError as err:
    # RunError ends the program with the message alone; a stack trace would bury the key to fix.
    raise pulumi.RunError(str(err)) from None

placeholders = config.cluster.placeholder_cidrs()
if placeholders:
    unreachable = (
        f"qwen-stress:cluster.endpointPublicAccessCidrs holds {', '.join(placeholders)}, a "
        "documentation address (RFC 5737) that nobody deploys from: the cluster would be built "
        "and its API unreachable from here. Set the address you deploy from: pulumi config set "
        "--path 'qwen-stress:cluster.endpointPublicAccessCidrs[0]' "
        '"$(curl -s https://checkip.amazonaws.com)/32"'
    )
    # A preview (and a CI preview stack) of an example stack is fine; an update is refused
    # before anything is created.
    if not pulumi.runtime.is_dry_run():
        raise pulumi.RunError(unreachable)
    pulumi.log.warn(unreachable)

platform = Platform("platform", config, pulumi.get_project(), pulumi.get_stack())

pulumi.export("clusterName", platform.cluster_name)
pulumi.export("region", platform.region)
pulumi.export("kubeconfig", platform.kubeconfig)
pulumi.export("gpuNodeGroupName", platform.gpu_node_group_name)
pulumi.export("gpuAsgName", platform.gpu_asg_name)
pulumi.export("gpuInstanceType", config.gpu.instance_type)
pulumi.export("prometheusUrl", platform.prometheus_url)
# What the ephemeral load-test stack builds on (loadtest/cloud/spec.py PLATFORM_OUTPUTS).
pulumi.export("kubernetesVersion", config.cluster.kubernetes_version)
pulumi.export("nodeRoleArn", platform.node_role_arn)
pulumi.export("privateSubnetIds", platform.private_subnet_ids)
pulumi.export("systemNodeSelector", {topology.ROLE_LABEL: topology.SYSTEM_ROLE})
pulumi.export("costTags", platform.cost_tags)

vllm = VllmService.from_config(
    "qwen",
    config,
    depends_on=platform.workload_prerequisites,
    opts=pulumi.ResourceOptions(provider=platform.k8s_provider),
)
for key, value in vllm.exports().items():
    pulumi.export(key, value)
