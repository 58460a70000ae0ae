"""The platform stack as one component: network, EKS, node groups, add-ons, providers.

Workloads take what they need from ``Platform``: the Kubernetes provider to create objects in
the cluster with, and the resources they must come after (and be deleted before): the GPU
nodes, the device plugin that advertises their GPUs, and the Helm releases whose CRDs (KEDA's
ScaledObject, the Prometheus operator's ServiceMonitor) their objects use.
"""

from __future__ import annotations

import re

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from domain import topology
from domain.stack_config import StackConfig
from infra import tagging
from infra.addons import Addons
from infra.cluster import Cluster
from infra.eks_addons import EksAddons
from infra.kubeconfig import kubeconfig
from infra.network import Network
from infra.node_groups import NodeGroups

EKS_NAME_LIMIT = 100


def cluster_name(prefix: str, stack: str) -> str:
    """``<namePrefix>-<stack>``: two stacks of one project never share a cluster name."""
    safe = re.sub(r"[^A-Za-z0-9-]+", "-", stack).strip("-")
    return f"{prefix}-{safe}"[:EKS_NAME_LIMIT]


class Platform(pulumi.ComponentResource):
    """Everything under the workloads, with the providers and releases they build on."""

    aws_provider: aws.Provider
    k8s_provider: k8s.Provider
    cluster_name: str
    region: str
    kubeconfig: pulumi.Output[str]
    gpu_node_group_name: pulumi.Output[str]
    gpu_asg_name: pulumi.Output[str]
    node_role_arn: pulumi.Output[str]
    private_subnet_ids: list[pulumi.Output[str]]
    cost_tags: dict[str, str]
    """The provider's default tags (owner, cost-center, project, stack and the extra ones)."""
    prometheus_url: str
    addons: Addons
    workload_prerequisites: list[pulumi.Resource]
    """What a GPU workload needs running before it is created and until it is deleted."""

    def __init__(
        self,
        name: str,
        cfg: StackConfig,
        project: str,
        stack: str,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("qwen-stress:infra:Platform", name, None, opts)
        self.cluster_name = cluster_name(cfg.cluster.name_prefix, stack)
        self.region = cfg.region
        tags = tagging.default_tags(cfg.tags, project, stack)
        self.cost_tags = tags
        self.aws_provider = aws.Provider(
            f"{name}-aws",
            region=cfg.region,
            # An explicit provider reads no aws:* stack settings; pass the profile on.
            profile=cfg.profile,
            default_tags=aws.ProviderDefaultTagsArgs(tags=tags),
            opts=pulumi.ResourceOptions(parent=self),
        )
        on_aws = pulumi.ResourceOptions(parent=self, providers={"aws": self.aws_provider})

        network = Network(
            "network",
            cfg.network,
            self.cluster_name,
            cfg.region,
            instance_types=[cfg.gpu.instance_type, cfg.cluster.system_instance_type],
            opts=on_aws,
        )
        eks = Cluster(
            "cluster", cfg.cluster, self.cluster_name, network.private_subnet_ids, opts=on_aws
        )
        nodes = NodeGroups(
            "nodes",
            cluster=cfg.cluster,
            gpu=cfg.gpu,
            eks=eks,
            subnet_ids=network.private_subnet_ids,
            tags=tags,
            opts=on_aws,
        )
        eks_addons = EksAddons(
            "eks-addons",
            eks,
            cfg.cluster.kubernetes_version,
            depends_on=[nodes.system],
            opts=on_aws,
        )

        self.kubeconfig = kubeconfig(
            eks.name, eks.endpoint, eks.certificate_authority, cfg.region, cfg.profile
        )
        self.k8s_provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=self.kubeconfig,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[eks.admin_access]),
        )
        self.addons = Addons(
            "addons",
            cfg=cfg,
            eks=eks,
            depends_on=[eks.admin_access, nodes.system, *eks_addons.addons.values()],
            opts=pulumi.ResourceOptions(
                parent=self,
                providers={"aws": self.aws_provider, "kubernetes": self.k8s_provider},
            ),
        )
        self.gpu_node_group_name = nodes.gpu_node_group_name
        self.gpu_asg_name = nodes.gpu_asg_name
        self.node_role_arn = nodes.node_role_arn
        self.private_subnet_ids = network.private_subnet_ids
        self.prometheus_url = topology.PROMETHEUS_URL
        self.workload_prerequisites = [
            nodes.gpu,
            self.addons.device_plugin,
            self.addons.keda,
            self.addons.prometheus,
        ]
        self.register_outputs(
            {
                "clusterName": self.cluster_name,
                "kubeconfig": self.kubeconfig,
                "gpuNodeGroupName": self.gpu_node_group_name,
                "gpuAsgName": self.gpu_asg_name,
            }
        )
