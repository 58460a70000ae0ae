"""How long one engine step takes on a GPU: a roofline with fitted efficiencies.

A vLLM step runs one forward pass over every scheduled token (decode tokens and prefill chunks).
It is bounded by whichever is slower:

    memory time  = weight bytes / (bandwidth x weight efficiency)
                 + KV bytes read / (bandwidth x memory efficiency)
    compute time = (2 x params x tokens + attention FLOPs) / (peak FP16 FLOPs x compute efficiency)
    step time    = softmax_p(memory time, compute time) + layers x per-layer overhead
    softmax_p(m, c) = (m^p + c^p)^(1/p)

``p`` is fitted: the pure roofline is p = infinity (max), and sum is p = 1. Measured decode on an
RTX A6000 gets slower with every sequence added from batch 1 to 256, which max() cannot show (it
stays flat until compute overtakes memory, 30% fast at batch 128): memory and tensor-core phases
of small-batch GEMMs overlap only partly. The fitted p keeps max()'s limits (pure decode and pure
prefill are unchanged) and bends the corner where both terms are comparable.

AWQ checkpoints stream 4-bit weights through dequantising kernels, which reach a smaller share
of the bandwidth than plain BF16 GEMMs, hence their own weight efficiency. The attention term
(4 x layers x heads x head_dim x sum of tokens x context) is small for chat prompts but is what
makes a 30k-token prefill slower than its parameter count alone says. The overhead is per layer
because its source, kernel launches and host work per step, grows with the number of layers.

The efficiencies are hardware shares fitted once to published measurements (see
``twin.emulator.calibration``); they are bounded by 1, so single-stream decode can never beat
the bandwidth bound ``bandwidth / weight bytes``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from functools import cache
from importlib import resources
from typing import Literal

from domain.catalog import GpuSpec, ModelSpec
from domain.fit import kv_bytes_per_token_per_gpu

EngineGeneration = Literal["v1", "v0"]
"""``v1``: the vLLM the emulator stands in for (V1 engine, CUDA graphs). ``v0``: vLLM 0.6, whose
higher per-step host overhead shows in the oldest calibration rows and nowhere else."""

CALIBRATION_FILE = "emulator_calibration.json"


@dataclass(frozen=True)
class Efficiencies:
    """The fitted parameters of the step-time model."""

    memory: float
    """Share of HBM bandwidth reached streaming BF16 weights and KV cache."""
    compute: float
    """Share of dense FP16 tensor peak reached by large (prefill) steps."""
    awq_memory: float
    """Share of HBM bandwidth reached streaming AWQ weights through dequantising kernels."""
    overhead_s_per_layer: float
    """Fixed per-step cost per layer of the current vLLM (V1)."""
    v0_overhead_s_per_layer: float
    """The same for vLLM 0.6, used only to replay the calibration rows measured with it."""
    overlap_exponent: float
    """``p`` of the soft maximum of memory and compute time (1 = sum, large = max)."""

    def __post_init__(self) -> None:
        for name in ("memory", "compute", "awq_memory"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise ValueError(f"efficiency {name}={value} must be in (0, 1]")
        if self.overhead_s_per_layer < 0 or self.v0_overhead_s_per_layer < 0:
            raise ValueError("per-layer overheads must not be negative")
        if self.overlap_exponent < 1:
            raise ValueError(f"overlap_exponent={self.overlap_exponent} must be at least 1")

    def as_dict(self) -> dict[str, float]:
        """Plain numbers, for the calibration file."""
        return asdict(self)


@cache
def fitted() -> Efficiencies:
    """The parameters committed in ``twin/data/emulator_calibration.json``."""
    text = resources.files("twin").joinpath("data", CALIBRATION_FILE).read_text("utf-8")
    return Efficiencies(**json.loads(text)["parameters"])


class StepCostModel:
    """Step durations for one model on one GPU type, sharded over ``tensor_parallel`` GPUs.

    Tensor parallelism divides weights, KV heads and FLOPs over the GPUs; its all-reduce cost is
    not modelled (see the README's limits).
    """

    def __init__(
        self,
        model: ModelSpec,
        gpu: GpuSpec,
        *,
        tensor_parallel: int = 1,
        efficiencies: Efficiencies | None = None,
        generation: EngineGeneration = "v1",
    ) -> None:
        eff = efficiencies or fitted()
        tp = tensor_parallel
        weight_eff = eff.awq_memory if model.quantization == "awq" else eff.memory
        self._weight_s = model.weight_bytes / tp / (gpu.hbm_bytes_per_s * weight_eff)
        kv_bytes = kv_bytes_per_token_per_gpu(model, tp)
        self._kv_s_per_token = kv_bytes / (gpu.hbm_bytes_per_s * eff.memory)
        flops_per_s = gpu.fp16_dense_flops * eff.compute
        self._linear_s_per_token = 2 * model.params_b * 1e9 / tp / flops_per_s
        attention_width = model.layers * model.q_heads * model.head_dim / tp
        self._attention_s_per_token_context = 4 * attention_width / flops_per_s
        per_layer = eff.overhead_s_per_layer if generation == "v1" else eff.v0_overhead_s_per_layer
        self._overhead_s = model.layers * per_layer
        self._p = eff.overlap_exponent

    def step_seconds(self, tokens: int, kv_tokens_read: int, attention_pairs: int) -> float:
        """Duration of a step that computes ``tokens`` new tokens.

        ``kv_tokens_read`` is the KV cache the step reads (the context of every scheduled
        sequence); ``attention_pairs`` is the sum over new tokens of the context each attends to.
        """
        memory = self._weight_s + kv_tokens_read * self._kv_s_per_token
        compute = (
            tokens * self._linear_s_per_token
            + attention_pairs * self._attention_s_per_token_context
        )
        p = self._p
        return math.pow(math.pow(memory, p) + math.pow(compute, p), 1 / p) + self._overhead_s
