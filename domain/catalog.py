"""The model/GPU catalog: published facts about GPUs, EC2 instances and Qwen2.5 models.

Every number comes from the CSV files in ``domain/data`` (copied from the project's
calibration set, each row with its source). The fit check, vLLM's arguments, the emulator's
performance model and every cost figure read this one catalog, so they can never disagree.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, replace
from functools import cache
from importlib import resources
from typing import Literal

CapacityType = Literal["on-demand", "spot"]

GIB = 1024**3
MIB = 1024**2
GB = 1000**3

AWQ_SUFFIX = "-AWQ"


class CatalogError(ValueError):
    """An unknown model, GPU or instance type; the message lists what the catalog knows."""


@dataclass(frozen=True)
class GpuSpec:
    """One GPU model as EC2 sells it."""

    name: str
    memory_bytes: int
    """Memory CUDA reports as the device total: what vLLM's utilisation fraction applies to.

    Below the EC2 figure where the driver reserves memory (a T4 with ECC shows 14.74 of 16 GiB).
    """
    ec2_memory_bytes: int
    """Memory as EC2 lists it (``GpuInfo.MemoryInfo.SizeInMiB``), for display next to prices."""
    hbm_bytes_per_s: float
    fp16_dense_flops: float
    compute_capability: float
    bf16: bool
    source: str

    @property
    def memory_gib(self) -> float:
        """Memory in GiB, for messages."""
        return self.memory_bytes / GIB


@dataclass(frozen=True)
class InstanceSpec:
    """One EC2 instance type with the us-east-1 prices of the bundled data.

    Costs are priced through ``domain.prices`` (a dated table that may be newer than these);
    the fields here seed its bundled table and order instances by price.
    """

    instance_type: str
    gpu_count: int
    gpu: GpuSpec | None
    vcpu: int
    memory_gib: float
    on_demand_usd_per_h: float
    spot_usd_per_h_low: float | None
    spot_usd_per_h_high: float | None
    source: str


@dataclass(frozen=True)
class ModelSpec:
    """One Qwen2.5 checkpoint: shape, weight size and context limit."""

    name: str
    params_b: float
    layers: int
    q_heads: int
    kv_heads: int
    head_dim: int
    hidden: int
    weight_bytes: int
    quantization: Literal["awq"] | None
    max_position: int
    source: str

    @property
    def family(self) -> str:
        """The unquantised checkpoint this one derives from (itself when not quantised)."""
        return self.name.removesuffix(AWQ_SUFFIX)

    def kv_bytes_per_token(self, bytes_per_element: int = 2) -> int:
        """KV cache bytes one token holds across all layers: 2 (K and V) x L x H_kv x d x b."""
        return 2 * self.layers * self.kv_heads * self.head_dim * bytes_per_element


def data_rows(filename: str, package: str = "domain") -> list[dict[str, str]]:
    """Rows of one CSV file in ``<package>/data`` (the catalog's, or the twin's calibration)."""
    text = resources.files(package).joinpath("data", filename).read_text(encoding="utf-8")
    return list(csv.DictReader(text.splitlines()))


def _opt_float(value: str) -> float | None:
    return float(value) if value.strip() else None


def gpu_from_row(row: dict[str, str], cuda_memory_column: str = "cuda_total_mib") -> GpuSpec:
    """One GPU from a data row; ``cuda_memory_column`` holds the MiB that CUDA can use."""
    return GpuSpec(
        name=row["gpu"],
        memory_bytes=int(row[cuda_memory_column]) * MIB,
        ec2_memory_bytes=int(row["ec2_memory_mib"]) * MIB,
        hbm_bytes_per_s=float(row["hbm_gb_per_s"]) * GB,
        fp16_dense_flops=float(row["fp16_dense_tflops"]) * 1e12,
        compute_capability=float(row["compute_capability"]),
        bf16=row["bf16"].strip().lower() == "yes",
        source=row["source"],
    )


@cache
def gpus() -> dict[str, GpuSpec]:
    """GPU models by name (``T4``, ``A10G``, ``L4``, ...)."""
    return {r["gpu"]: gpu_from_row(r) for r in data_rows("gpus.csv")}


@cache
def instances() -> dict[str, InstanceSpec]:
    """EC2 instance types (GPU and CPU) by name, with us-east-1 prices."""
    known = gpus()
    out: dict[str, InstanceSpec] = {}
    for r in data_rows("instances-us-east-1.csv"):
        gpu_name = r["gpu"].strip()
        out[r["instance_type"]] = InstanceSpec(
            instance_type=r["instance_type"],
            gpu_count=int(r["gpus"]),
            gpu=known[gpu_name] if gpu_name else None,
            vcpu=int(r["vcpu"]),
            memory_gib=float(r["memory_gib"]),
            on_demand_usd_per_h=float(r["on_demand_usd_per_h"]),
            spot_usd_per_h_low=_opt_float(r["spot_usd_per_h_low"]),
            spot_usd_per_h_high=_opt_float(r["spot_usd_per_h_high"]),
            source=r["source"],
        )
    return out


@cache
def models() -> dict[str, ModelSpec]:
    """Qwen2.5 Instruct checkpoints and their AWQ variants, by Hugging Face id.

    The AWQ rows derive from the BF16 rows: same shape, weights as the GPU memory the Qwen team
    measured with the AWQ checkpoint loaded (their speed benchmark, input length 1), which
    includes the unquantised embeddings and LM head.
    """
    out: dict[str, ModelSpec] = {}
    for r in data_rows("models.csv"):
        base = ModelSpec(
            name=r["model"],
            params_b=float(r["params_b"]),
            layers=int(r["layers"]),
            q_heads=int(r["q_heads"]),
            kv_heads=int(r["kv_heads"]),
            head_dim=int(r["head_dim"]),
            hidden=int(r["hidden"]),
            weight_bytes=round(float(r["bf16_weights_gb"]) * GB),
            quantization=None,
            max_position=int(r["max_position"]),
            source=r["source"],
        )
        awq = replace(
            base,
            name=base.name + AWQ_SUFFIX,
            weight_bytes=round(float(r["awq_gpu_memory_gb_hf"]) * GB),
            quantization="awq",
            source=base.source + " (AWQ memory column)",
        )
        out[base.name] = base
        out[awq.name] = awq
    return out


@cache
def other_prices() -> dict[str, float]:
    """Non-instance prices (EKS control plane, NAT gateway, transfer) in USD per unit."""
    return {r["item"]: float(r["usd"]) for r in data_rows("other-prices-us-east-1.csv")}


@cache
def timings() -> dict[str, float]:
    """Typical durations in seconds (cold-start phases, autoscaler and HPA defaults)."""
    return {r["phase"]: float(r["typical_s"]) for r in data_rows("timings.csv")}


def _unknown(kind: str, value: str, known: list[str]) -> CatalogError:
    return CatalogError(f"unknown {kind} {value!r}; the catalog knows: {', '.join(known)}")


def gpu(name: str) -> GpuSpec:
    """Look up a GPU by name, case-insensitively (``a10g`` finds ``A10G``)."""
    by_upper = {k.upper(): v for k, v in gpus().items()}
    try:
        return by_upper[name.upper()]
    except KeyError:
        raise _unknown("GPU", name, sorted(gpus())) from None


def instance(instance_type: str) -> InstanceSpec:
    """Look up an EC2 instance type."""
    try:
        return instances()[instance_type]
    except KeyError:
        raise _unknown("instance type", instance_type, sorted(instances())) from None


def model(name: str) -> ModelSpec:
    """Look up a model by its Hugging Face id."""
    try:
        return models()[name]
    except KeyError:
        raise _unknown("model", name, sorted(models())) from None


def gpu_instances() -> list[InstanceSpec]:
    """Every instance type with at least one GPU, cheapest first."""
    return sorted(
        (i for i in instances().values() if i.gpu is not None),
        key=lambda i: i.on_demand_usd_per_h,
    )


def accelerator_label(gpu_spec: GpuSpec) -> str:
    """The ``k8s.amazonaws.com/accelerator`` value the Cluster Autoscaler expects for a GPU.

    The autoscaler only needs the label to exist to wait for the device plugin; these values
    follow the names GKE and EKS examples use so dashboards can group by them.
    """
    return {
        "T4": "nvidia-tesla-t4",
        "A10G": "nvidia-a10g",
        "L4": "nvidia-l4",
        "L40S": "nvidia-l40s",
        "A100-40": "nvidia-tesla-a100",
        "A100-80": "nvidia-a100-80gb",
        "H100": "nvidia-h100-80gb",
        "H200": "nvidia-h200-141gb",
    }.get(gpu_spec.name, "nvidia-" + gpu_spec.name.lower())
