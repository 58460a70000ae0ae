"""What one emulated replica is: the catalog's fit check for a model on a GPU type.

The emulator is told a GPU type, the fit check an instance type; any instance with that GPU and
enough of them for the tensor-parallel size gives the same per-GPU arithmetic, so the cheapest one
is used. A combination vLLM would refuse is refused here with the fit check's own message.
"""

from __future__ import annotations

from dataclasses import dataclass

from domain import catalog
from domain.catalog import GpuSpec, ModelSpec
from domain.fit import FitError, FitResult, check_fit
from twin.emulator.engine import Engine, EngineLimits
from twin.emulator.perf_model import Efficiencies, StepCostModel


@dataclass(frozen=True)
class ReplicaSpec:
    """A model on a GPU type with vLLM's settings, as the fit check accepted it."""

    fit: FitResult
    efficiencies: Efficiencies | None = None
    """Step-model parameters; None means the committed calibration (what every user gets)."""

    @property
    def model(self) -> ModelSpec:
        """The served checkpoint."""
        return self.fit.model

    @property
    def gpu(self) -> GpuSpec:
        """The GPU type each shard runs on."""
        return self.fit.gpu

    def new_engine(self) -> Engine:
        """A fresh engine with this replica's KV blocks, scheduler defaults and step costs."""
        cost = StepCostModel(
            self.model,
            self.gpu,
            tensor_parallel=self.fit.tensor_parallel,
            efficiencies=self.efficiencies,
        )
        return Engine(EngineLimits.from_fit(self.fit), cost)


def replica_spec(
    model: str,
    gpu: str,
    *,
    max_model_len: int | None = None,
    gpu_memory_utilization: float = 0.9,
    tensor_parallel: int = 1,
) -> ReplicaSpec:
    """Check the combination as vLLM would at start-up; raise CatalogError or FitError if not.

    ``max_model_len`` defaults to the model's context length, as vLLM's does.
    """
    model_spec = catalog.model(model)
    gpu_spec = catalog.gpu(gpu)
    hosts = [i for i in catalog.gpu_instances() if i.gpu == gpu_spec]
    wide_enough = [i for i in hosts if i.gpu_count >= tensor_parallel]
    if not wide_enough:
        most = max(i.gpu_count for i in hosts)
        raise FitError(
            f"tensorParallel {tensor_parallel} needs {tensor_parallel} {gpu_spec.name} GPUs on "
            f"one node; the largest {gpu_spec.name} instance has {most}",
            "model.tensorParallel",
        )
    fit = check_fit(
        model_spec.name,
        wide_enough[0].instance_type,
        # Only an absent value means the default: 0 is refused by the fit check, not replaced.
        max_model_len=model_spec.max_position if max_model_len is None else max_model_len,
        gpu_memory_utilization=gpu_memory_utilization,
        tensor_parallel=tensor_parallel,
    )
    return ReplicaSpec(fit)
