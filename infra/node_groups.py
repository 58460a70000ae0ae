"""Managed node groups: a small on-demand system group and the GPU group the autoscaler sizes.

The GPU group can sit at zero nodes. For the Cluster Autoscaler to grow it from zero it must
know, from the Auto Scaling group alone, what a node would look like: its labels, its taint and
how many GPUs it has. EKS does not copy node-group labels and taints to the ASG, so this module
tags the ASG itself with the ``node-template`` hints (Cluster Autoscaler AWS README,
"Auto-Discovery Setup").
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import pulumi
import pulumi_aws as aws

from domain import catalog, topology, versions
from domain.stack_config import ClusterConfig, GpuConfig
from infra import iam, tagging
from infra.cluster import Cluster

SYSTEM_DISK_GIB = 50
ROOT_DEVICE = "/dev/xvda"
"""Root device of the EKS-optimized AL2023 AMIs."""
EKS_TAINT_EFFECT = {"NoSchedule": "NO_SCHEDULE", "NoExecute": "NO_EXECUTE"}
NODE_TEMPLATE = "k8s.io/cluster-autoscaler/node-template"


def gpu_node_labels(gpu: GpuConfig) -> dict[str, str]:
    """Labels every GPU node starts with (kubelet sets them before the device plugin runs)."""
    spec = gpu.instance.gpu
    if spec is None:  # the config refuses such instance types; this keeps mypy honest
        raise ValueError(f"{gpu.instance_type} has no GPU")
    return {
        topology.ROLE_LABEL: topology.GPU_ROLE,
        topology.ACCELERATOR_LABEL: catalog.accelerator_label(spec),
    }


def scale_from_zero_tags(gpu: GpuConfig) -> dict[str, str]:
    """ASG tags that let the Cluster Autoscaler build a GPU node from zero.

    The discovery tags (``k8s.io/cluster-autoscaler/enabled`` and ``.../<cluster>: owned``,
    which the autoscaler's IAM condition also checks) are not among them: EKS puts those on
    every managed node group's Auto Scaling group itself (EKS user guide, "Managed node
    groups"), and a Tag resource for the same key would delete EKS's tag whenever Pulumi
    replaced or removed it.
    """
    tags = {
        f"{NODE_TEMPLATE}/taint/{topology.GPU_TAINT_KEY}": (
            f"{topology.GPU_TAINT_VALUE}:{topology.GPU_TAINT_EFFECT}"
        ),
        f"{NODE_TEMPLATE}/resources/{topology.GPU_RESOURCE}": str(gpu.instance.gpu_count),
    }
    for label, value in gpu_node_labels(gpu).items():
        tags[f"{NODE_TEMPLATE}/label/{label}"] = value
    return tags


def launch_template(
    name: str,
    disk_gib: int,
    tags: dict[str, str],
    parent: pulumi.Resource,
    provider: aws.Provider | None = None,
) -> aws.ec2.LaunchTemplate:
    """A managed node group's launch template: encrypted gp3 root, IMDSv2 only, tags on launch.

    The load-test stack's node group uses it too, so every node this project starts is alike;
    ``provider`` is for a parent that does not carry the AWS provider itself.
    """
    return aws.ec2.LaunchTemplate(
        name,
        description="EKS managed node group: gp3 root volume, IMDSv2 only",
        block_device_mappings=[
            aws.ec2.LaunchTemplateBlockDeviceMappingArgs(
                device_name=ROOT_DEVICE,
                ebs=aws.ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                    volume_size=disk_gib,
                    volume_type="gp3",
                    encrypted="true",
                    delete_on_termination="true",
                ),
            )
        ],
        # Hop limit 1 keeps pods from reaching the node's credentials through IMDS; workloads
        # get their own through EKS Pod Identity.
        metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(
            http_endpoint="enabled",
            http_tokens="required",
            http_put_response_hop_limit=1,
        ),
        tag_specifications=tagging.launched_tag_specifications(tags),
        update_default_version=True,
        opts=pulumi.ResourceOptions(parent=parent, provider=provider),
    )


def _asg_name(resources: Sequence[aws.eks.outputs.NodeGroupResource]) -> str:
    groups = resources[0].autoscaling_groups if resources else None
    if not groups or not groups[0].name:
        raise ValueError("EKS reported no Auto Scaling group for the GPU node group")
    return groups[0].name


class NodeGroups(pulumi.ComponentResource):
    """The system node group and the GPU node group with its scale-from-zero ASG tags."""

    system: aws.eks.NodeGroup
    gpu: aws.eks.NodeGroup
    gpu_node_group_name: pulumi.Output[str]
    gpu_asg_name: pulumi.Output[str]
    node_role_arn: pulumi.Output[str]
    """The nodes' IAM role; the load-test stack's node group joins the cluster with it too."""

    def __init__(
        self,
        name: str,
        *,
        cluster: ClusterConfig,
        gpu: GpuConfig,
        eks: Cluster,
        subnet_ids: list[pulumi.Output[str]],
        tags: dict[str, str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("qwen-stress:infra:NodeGroups", name, None, opts)
        role = iam.service_role(f"{name}-node", "ec2.amazonaws.com", iam.NODE_POLICIES, self)
        self.node_role_arn = role.role.arn
        # The autoscaler owns the desired size once the group exists.
        scaled = pulumi.ResourceOptions(
            parent=self, depends_on=role.grants, ignore_changes=["scalingConfig.desiredSize"]
        )

        def group(
            kind: str,
            *,
            ami_type: str,
            instance_type: str,
            capacity_type: str,
            bounds: tuple[int, int],
            disk_gib: int,
            labels: dict[str, str],
            taints: list[aws.eks.NodeGroupTaintArgs] | None = None,
        ) -> aws.eks.NodeGroup:
            template = launch_template(f"{name}-{kind}", disk_gib, tags, self)
            return aws.eks.NodeGroup(
                f"{name}-{kind}",
                cluster_name=eks.name,
                node_role_arn=role.role.arn,
                subnet_ids=subnet_ids,
                ami_type=ami_type,
                instance_types=[instance_type],
                capacity_type=capacity_type,
                scaling_config=aws.eks.NodeGroupScalingConfigArgs(
                    min_size=bounds[0], max_size=bounds[1], desired_size=bounds[0]
                ),
                launch_template=aws.eks.NodeGroupLaunchTemplateArgs(
                    id=template.id, version=template.latest_version.apply(str)
                ),
                labels=labels,
                taints=taints,
                update_config=aws.eks.NodeGroupUpdateConfigArgs(max_unavailable=1),
                opts=scaled,
            )

        self.system = group(
            "system",
            ami_type=versions.SYSTEM_AMI_TYPE,
            instance_type=cluster.system_instance_type,
            capacity_type="ON_DEMAND",
            bounds=(cluster.system_min_nodes, cluster.system_max_nodes),
            disk_gib=SYSTEM_DISK_GIB,
            labels={topology.ROLE_LABEL: topology.SYSTEM_ROLE},
        )
        self.gpu = group(
            "gpu",
            ami_type=versions.GPU_AMI_TYPE,
            instance_type=gpu.instance_type,
            capacity_type="SPOT" if gpu.capacity_type == "spot" else "ON_DEMAND",
            bounds=(gpu.min_nodes, gpu.max_nodes),
            disk_gib=gpu.disk_gib,
            labels=gpu_node_labels(gpu),
            taints=[
                aws.eks.NodeGroupTaintArgs(
                    key=topology.GPU_TAINT_KEY,
                    value=topology.GPU_TAINT_VALUE,
                    effect=EKS_TAINT_EFFECT[topology.GPU_TAINT_EFFECT],
                )
            ],
        )
        self.gpu_node_group_name = self.gpu.node_group_name
        self.gpu_asg_name = self.gpu.resources.apply(_asg_name)
        for key, value in scale_from_zero_tags(gpu).items():
            aws.autoscaling.Tag(
                f"{name}-gpu-{re.sub(r'[^a-z0-9]+', '-', key.lower()).strip('-')}",
                autoscaling_group_name=self.gpu_asg_name,
                tag=aws.autoscaling.TagTagArgs(key=key, value=value, propagate_at_launch=False),
                opts=pulumi.ResourceOptions(parent=self),
            )
        self.register_outputs(
            {"gpuNodeGroupName": self.gpu_node_group_name, "gpuAsgName": self.gpu_asg_name}
        )
