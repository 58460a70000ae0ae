"""What a fleet is: the model and GPU one replica serves, the node group, the autoscaling spec.

Built from a stack file (``Pulumi.<stack>.yaml``: its model, GPU instance type, node bounds,
Cluster Autoscaler and autoscaling settings) or from a model and a GPU type alone (the
cheapest instance carrying that GPU, and every other setting at the stack defaults), so a
rehearsal and the cluster read the same objects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from domain.autoscaling import AutoscalingSpec
from domain.stack_config import (
    NAMESPACE,
    ClusterAutoscalerConfig,
    ConfigError,
    GpuConfig,
    StackConfig,
)
from twin.emulator.replica_spec import replica_spec
from twin.fleet.sim_cluster import NodePool
from twin.fleet.timings import Timings, timings


@dataclass(frozen=True)
class FleetSpec:
    """Everything the twin needs; nothing about scaling comes from anywhere else."""

    model: str
    gpu: str
    instance_type: str
    max_model_len: int
    gpu_memory_utilization: float
    tensor_parallel: int
    autoscaling: AutoscalingSpec
    pool: NodePool
    timings: Timings
    served_name: str = ""
    """What clients send as ``model`` and what the metrics' ``model_name`` says (vLLM's
    ``--served-model-name``); empty: the checkpoint's name."""

    @property
    def served(self) -> str:
        """The name the replicas serve the model under."""
        return self.served_name or self.model

    @classmethod
    def from_stack(cls, stack: StackConfig) -> FleetSpec:
        """The stack's model, GPU node group, Cluster Autoscaler and autoscaling settings.

        Raises ``ConfigError`` for a node group without GPUs: ``parse`` refuses one, but a
        ``StackConfig`` built or changed without validation reaches here as well.
        """
        gpu = stack.gpu.instance.gpu
        if gpu is None:
            raise ConfigError(
                f"{NAMESPACE}:gpu.instanceType: {stack.gpu.instance_type} has no GPU and the "
                "twin emulates GPU nodes; use a GPU instance type such as g4dn.xlarge"
            )
        return cls(
            model=stack.model.name,
            gpu=gpu.name,
            instance_type=stack.gpu.instance_type,
            max_model_len=stack.model.max_model_len,
            gpu_memory_utilization=stack.model.gpu_memory_utilization,
            tensor_parallel=stack.model.tensor_parallel,
            autoscaling=stack.autoscaling,
            pool=NodePool(
                gpus_per_node=stack.gpu.instance.gpu_count,
                min_nodes=stack.gpu.min_nodes,
                max_nodes=stack.gpu.max_nodes,
            ),
            timings=timings(stack.model.name, stack.cluster_autoscaler),
            served_name=stack.model.served,
        )

    @classmethod
    def for_model(
        cls,
        model: str,
        gpu: str,
        *,
        max_model_len: int | None = None,
        gpu_memory_utilization: float = 0.9,
        tensor_parallel: int = 1,
    ) -> FleetSpec:
        """``model`` on the cheapest ``gpu`` instance; stack defaults for everything else.

        The node group may grow to what ``maxReplicas`` needs. Raises ``CatalogError`` or
        ``FitError`` (with the catalog's message) for a combination vLLM would refuse.
        """
        fit = replica_spec(
            model,
            gpu,
            max_model_len=max_model_len,
            gpu_memory_utilization=gpu_memory_utilization,
            tensor_parallel=tensor_parallel,
        ).fit
        autoscaling = AutoscalingSpec()
        per_node = fit.instance.gpu_count
        return cls(
            model=fit.model.name,
            gpu=fit.gpu.name,
            instance_type=fit.instance.instance_type,
            max_model_len=fit.max_model_len,
            gpu_memory_utilization=gpu_memory_utilization,
            tensor_parallel=tensor_parallel,
            autoscaling=autoscaling,
            pool=NodePool(
                gpus_per_node=per_node,
                min_nodes=GpuConfig().min_nodes,
                max_nodes=math.ceil(autoscaling.max_replicas * tensor_parallel / per_node),
            ),
            timings=timings(fit.model.name, ClusterAutoscalerConfig()),
        )

    def describe(self) -> dict[str, object]:
        """What ``config.json`` and the status endpoint record about the fleet."""
        spec = self.autoscaling
        return {
            "model": self.model,
            "served_name": self.served,
            "gpu": self.gpu,
            "instance_type": self.instance_type,
            "gpus_per_node": self.pool.gpus_per_node,
            "gpus_per_replica": self.tensor_parallel,
            "min_nodes": self.pool.min_nodes,
            "max_nodes": self.pool.max_nodes,
            "min_replicas": spec.min_replicas,
            "max_replicas": spec.max_replicas,
            "triggers": {
                t.name: {"metric": t.metric, "target_per_replica": t.target_per_replica}
                for t in spec.triggers()
            },
            "cold_start_s": {
                "node_boot": self.timings.node_boot_s,
                "image_pull": self.timings.image_pull_s,
                "pod_start": round(self.timings.pod_start_s, 1),
            },
        }
