"""The ephemeral load-test stack as a Pulumi program: nodes of its own, then the Locust pods.

``program(spec)`` returns the inline program the orchestrator hands to the Automation API
(project ``qwen-stress-loadtest``, one stack per run). ``LoadTestStack`` puts under itself: an
AWS provider whose default tags are the platform's cost tags plus ``run-id``; for
``nodes=new`` a launch template and a fixed-size EKS managed node group (labelled and tainted
for load generation); a Kubernetes provider from the platform's kubeconfig; and the objects of
``loadtest.cloud.manifests``. Every Kubernetes object waits for the nodes (through the
namespace), so the Jobs' deadlines start when a pod can schedule, and goes before them on
destroy, so pods stop on live nodes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from domain import topology, versions
from infra import node_groups, tagging
from loadtest.cloud import contract, delivery, manifests
from loadtest.cloud.manifests import Body
from loadtest.cloud.spec import CodeImage, LoadTestSpec

ROOT_DISK_GIB = 30
"""The AL2023 image, the Python image (about 150 MB) and the emptyDirs' few GiB at most."""
RUN_ID_NODE_LABEL = "qwen-stress.io/run-id"
NODE_GROUP_PREFIX = "qwen-stress-loadgen-"


def node_group_name(run_id: str) -> str:
    """A name that says what the group is in the EKS console and the bill (at most 63 chars)."""
    return f"{NODE_GROUP_PREFIX}{run_id}"


def aws_tags(spec: LoadTestSpec) -> dict[str, str]:
    """The platform's cost tags, with this project and the run as stack, plus ``run-id``."""
    tags = tagging.default_tags(spec.platform.tags, topology.LOADTEST_PROJECT, spec.run_id)
    return {**tags, topology.RUN_ID_TAG: spec.run_id}


class LoadTestStack(pulumi.ComponentResource):
    """Load-generator nodes (unless ``existing``) and the run's Locust master and workers."""

    node_group: aws.eks.NodeGroup | None
    namespace: str

    def __init__(
        self,
        name: str,
        spec: LoadTestSpec,
        lock: str,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("qwen-stress:loadtest:LoadTestStack", name, None, opts)
        self.spec = spec
        self.sizing = spec.sizing()
        child = pulumi.ResourceOptions(parent=self)
        k8s_provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=pulumi.Output.secret(spec.platform.kubeconfig.get_secret_value()),
            opts=child,
        )

        self.node_group = None
        if spec.loadgen.nodes == "new":
            tags = aws_tags(spec)
            aws_provider = aws.Provider(
                f"{name}-aws",
                region=spec.platform.region,
                profile=spec.platform.aws_profile,
                default_tags=aws.ProviderDefaultTagsArgs(tags=tags),
                opts=child,
            )
            self.node_group = self._node_group(name, tags, aws_provider)
        in_cluster = pulumi.ResourceOptions(parent=self, provider=k8s_provider)
        self.namespace = manifests.namespace_name(spec.run_id)
        ns = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata=manifests.namespace(spec)["metadata"],
            opts=pulumi.ResourceOptions.merge(
                in_cluster,
                pulumi.ResourceOptions(
                    depends_on=[self.node_group] if self.node_group is not None else []
                ),
            ),
        )
        in_ns = pulumi.ResourceOptions.merge(in_cluster, pulumi.ResourceOptions(depends_on=[ns]))
        for body in manifests.objects(spec, lock)[1:]:
            self._register(name, body, in_ns)
        self.register_outputs(self.exports())

    def _node_group(
        self, name: str, tags: dict[str, str], provider: aws.Provider
    ) -> aws.eks.NodeGroup:
        on_aws = pulumi.ResourceOptions(parent=self, provider=provider)
        template = node_groups.launch_template(
            f"{name}-nodes", ROOT_DISK_GIB, tags, self, provider=provider
        )
        spec, count = self.spec, self.sizing.nodes
        return aws.eks.NodeGroup(
            f"{name}-nodes",
            cluster_name=spec.platform.cluster_name,
            node_group_name=node_group_name(spec.run_id),
            node_role_arn=spec.platform.node_role_arn,
            subnet_ids=list(spec.platform.private_subnet_ids),
            ami_type=versions.SYSTEM_AMI_TYPE,
            instance_types=[spec.loadgen.instance_type],
            capacity_type="SPOT" if spec.loadgen.capacity_type == "spot" else "ON_DEMAND",
            version=spec.platform.kubernetes_version,
            # Fixed size: no autoscaler watches this group, and the run needs every node at once.
            scaling_config=aws.eks.NodeGroupScalingConfigArgs(
                min_size=count, max_size=count, desired_size=count
            ),
            launch_template=aws.eks.NodeGroupLaunchTemplateArgs(
                id=template.id, version=template.latest_version.apply(str)
            ),
            labels={
                topology.ROLE_LABEL: topology.LOADGEN_ROLE,
                RUN_ID_NODE_LABEL: spec.run_id,
            },
            taints=[
                aws.eks.NodeGroupTaintArgs(
                    key=topology.LOADGEN_TAINT_KEY,
                    value=topology.LOADGEN_TAINT_VALUE,
                    effect=node_groups.EKS_TAINT_EFFECT[topology.LOADGEN_TAINT_EFFECT],
                )
            ],
            opts=on_aws,
        )

    def _register(self, name: str, body: Body, opts: pulumi.ResourceOptions) -> None:
        kind, meta = body["kind"], body["metadata"]
        logical = f"{name}-{kind.lower()}-{meta['name']}"
        if kind == "Secret":
            k8s.core.v1.Secret(
                logical,
                metadata=meta,
                type=body["type"],
                string_data={
                    manifests.API_KEY_SECRET_KEY: pulumi.Output.secret(
                        self.spec.platform.api_key.get_secret_value()
                    )
                },
                opts=opts,
            )
        elif kind == "ConfigMap":
            k8s.core.v1.ConfigMap(
                logical,
                metadata=meta,
                data=body.get("data"),
                binary_data=body.get("binaryData"),
                immutable=body["immutable"],
                opts=opts,
            )
        elif kind == "ServiceAccount":
            k8s.core.v1.ServiceAccount(
                logical,
                metadata=meta,
                automount_service_account_token=body["automountServiceAccountToken"],
                opts=opts,
            )
        elif kind == "NetworkPolicy":
            k8s.networking.v1.NetworkPolicy(logical, metadata=meta, spec=body["spec"], opts=opts)
        elif kind == "Service":
            k8s.core.v1.Service(logical, metadata=meta, spec=body["spec"], opts=opts)
        elif kind == "Job":
            k8s.batch.v1.Job(logical, metadata=meta, spec=body["spec"], opts=opts)
        else:  # a new kind in manifests.objects must be registered here on purpose
            raise TypeError(f"no resource type for {kind}")

    def exports(self) -> dict[str, Any]:
        """Stack outputs the orchestrator and the follower read (camelCase, as exported)."""
        sized = self.sizing
        code = self.spec.code
        return {
            "runId": self.spec.run_id,
            "namespace": self.namespace,
            "masterService": contract.MASTER_SERVICE,
            "locustPort": contract.LOCUST_PORT,
            "masterApiPort": contract.MASTER_API_PORT,
            "workers": sized.workers,
            "nodes": sized.nodes,
            "nodeGroupName": (
                self.node_group.node_group_name if self.node_group is not None else None
            ),
            "instanceType": sized.instance.instance_type if sized.instance else None,
            "capacityType": self.spec.loadgen.capacity_type if sized.instance else None,
            "hourlyUsd": round(sized.hourly_usd, 4),
            "code": code.image if isinstance(code, CodeImage) else code.filename,
            "deadlineSeconds": self.spec.deadline_seconds,
            "expiresAt": manifests.namespace(self.spec)["metadata"]["annotations"][
                topology.EXPIRES_ANNOTATION
            ],
        }


def program(spec: LoadTestSpec, lock: str | None = None) -> Callable[[], None]:
    """The inline Pulumi program of one run's stack (``lock`` defaults to the committed one)."""
    pod_lock = delivery.pod_lock() if lock is None else lock

    def run() -> None:
        stack = LoadTestStack("loadtest", spec, pod_lock)
        for key, value in stack.exports().items():
            pulumi.export(key, value)

    return run
