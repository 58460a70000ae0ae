"""The KEDA ScaledObject may only ask for as many GPU replicas as the GPU node group can hold.

Replicas beyond ``maxNodes x GPUs per node / GPUs per replica`` stay Pending for good: the HPA
counts them as wanted, the Cluster Autoscaler cannot place them, and a load test reads a
"scaled" service that never served. A stack rule, because the bound lives on three resources:
the ScaledObject, the Deployment it scales (GPUs per replica) and the GPU node groups.
"""

from __future__ import annotations

from collections.abc import Iterator

from domain import catalog, topology
from policies.node_groups import instance_types, is_gpu_group, max_nodes
from policies.resources import (
    POD_SPEC_PATHS,
    Resource,
    containers,
    dig,
    k8s_name,
    namespace_of,
    number,
)
from policies.rule import Config, stack_policy

SCALED_OBJECT = "kubernetes:keda.sh/v1alpha1:ScaledObject"
KEDA_DEFAULT_MAX_REPLICAS = 100
"""``maxReplicaCount`` when a ScaledObject sets none (KEDA's documented default)."""


def gpus_per_replica(workload: Resource) -> float:
    """The GPUs one pod of a workload takes (the sum over its containers' limits)."""
    total = 0.0
    for container in containers(workload):
        limit = dig(container, "resources", "limits", topology.GPU_RESOURCE)
        request = dig(container, "resources", "requests", topology.GPU_RESOURCE)
        total += number(limit if limit is not None else request) or 0.0
    return total


def gpus_per_node(node_group: Resource) -> int:
    """GPUs on the smallest instance type a node group may launch (0 for unknown types)."""
    counts = [
        spec.gpu_count if (spec := catalog.instances().get(t)) is not None else 0
        for t in instance_types(node_group)
    ]
    return min(counts)


def gpu_capacity(resources: list[Resource]) -> tuple[float, list[str]]:
    """GPUs the stack's GPU node groups hold at their maximum size, and how that adds up."""
    total, parts = 0.0, []
    for group in (r for r in resources if is_gpu_group(r)):
        nodes, per_node = max_nodes(group) or 0.0, gpus_per_node(group)
        total += nodes * per_node
        parts.append(f"{group.name} maxSize {nodes:g} x {per_node} GPU(s)")
    return total, parts


def _target(scaled: Resource, resources: list[Resource]) -> Resource | None:
    name = dig(scaled.props, "spec", "scaleTargetRef", "name")
    kind = str(dig(scaled.props, "spec", "scaleTargetRef", "kind") or "Deployment")
    for resource in resources:
        if (
            resource.type in POD_SPEC_PATHS
            and resource.type.endswith(f":{kind}")
            and k8s_name(resource) == name
            and namespace_of(resource) == namespace_of(scaled)
        ):
            return resource
    return None


def _check(resources: list[Resource], _config: Config) -> Iterator[tuple[Resource | None, str]]:
    for scaled in (r for r in resources if r.type == SCALED_OBJECT):
        target = _target(scaled, resources)
        per_replica = gpus_per_replica(target) if target is not None else 0.0
        if per_replica == 0:
            continue  # scales something without GPUs, or something outside this stack
        replicas = number(dig(scaled.props, "spec", "maxReplicaCount"))
        replicas = KEDA_DEFAULT_MAX_REPLICAS if replicas is None else replicas
        capacity, parts = gpu_capacity(resources)
        needed = replicas * per_replica
        if needed > capacity:
            held = "; ".join(parts) or "no GPU node group in this stack"
            yield (
                scaled,
                f"{scaled.name}: maxReplicaCount {replicas:g} x {per_replica:g} GPU(s) per "
                f"replica = {needed:g} GPUs, but the GPU nodes hold {capacity:g} ({held}); "
                "lower qwen-stress:autoscaling.maxReplicas or raise qwen-stress:gpu.maxNodes",
            )


KEDA_MAX_REPLICAS_FIT = stack_policy(
    "keda-max-replicas-fit",
    "A ScaledObject's maxReplicaCount x GPUs per replica fits the GPU node groups at their "
    "maximum size.",
    _check,
)

POLICIES = (KEDA_MAX_REPLICAS_FIT,)
