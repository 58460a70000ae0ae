"""How long one engine step takes on a GPU: a roofline with fitted efficiencies, plus the host.

A vLLM step runs one forward pass over every scheduled token (decode tokens and prefill chunks).
Its GPU time is bounded by whichever is slower:

    memory time  = weight bytes / (bandwidth x weight efficiency)
                 + KV bytes read / (bandwidth x memory efficiency)
    compute time = (2 x params x tokens + attention FLOPs) / (peak FP16 FLOPs x compute efficiency)
    GPU time     = softmax_p(memory time, compute time)
    softmax_p(m, c) = (m^p + c^p)^(1/p)

``p`` is fitted: the pure roofline is p = infinity (max), and sum is p = 1. Measured decode on an
RTX A6000 gets slower with every sequence added from batch 1 to 256, which max() cannot show (it
stays flat until compute overtakes memory, 30% fast at batch 128): memory and tensor-core phases
of small-batch GEMMs overlap only partly. The fitted p keeps max()'s limits (pure decode and pure
prefill are unchanged) and bends the corner where both terms are comparable.

The host adds to every step what vLLM V1's engine-core process does between forward passes
(``EngineCore.step``: ``Scheduler.schedule``, the model runner's input preparation and graph
launch, sampling, ``Scheduler.update_from_output``), which the GPU waits for:

    step time = GPU time + step overhead + sequences in the step x sequence overhead

The step overhead is the fixed part (a); the sequence overhead (b) is the work each scheduled
request adds (its scheduler bookkeeping, input-batch row, sampling parameters, its
``EngineCoreOutput`` and the IPC to the API server). A request also waits a fixed time before the
engine core sees it (c, ``request_overhead_s``): the API-server process parses the HTTP request,
renders and tokenizes the prompt, and hands it over over ZMQ, then detokenizes and streams the
first token. That runs in its own process, in parallel with the engine's steps, so it is latency
(on every TTFT) and not step time; the front end (``simulate``, the driver) applies it. For a 7B
model on a T4 these costs hide behind the GPU time; for 0.5B-3B models, and for any model at high
concurrency, they decide the speed.

AWQ checkpoints stream 4-bit weights through dequantising kernels, which reach a smaller share
of the bandwidth than plain BF16 GEMMs, hence their own weight efficiency. The attention term
(4 x layers x heads x head_dim x sum of tokens x context) is small for chat prompts but is what
makes a 30k-token prefill slower than its parameter count alone says. vLLM 0.6 (V0, the oldest
calibration rows) launched kernels layer by layer, so its fixed cost is per layer instead.

Every parameter is bounded (see ``Efficiencies``): the efficiencies by 1, so single-stream decode
can never beat the bandwidth bound ``bandwidth / weight bytes``; the host costs by what
published profiles of vLLM's step loop allow.
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
per-layer host overhead shows in the oldest calibration rows and nowhere else."""

CALIBRATION_FILE = "emulator_calibration.json"

BOUNDS: dict[str, tuple[float, float]] = {
    "memory": (0.05, 1.0),
    "compute": (0.05, 1.0),
    "awq_memory": (0.05, 1.0),
    "overlap_exponent": (1.0, 20.0),
    "step_overhead_s": (0.0, 0.005),
    "seq_overhead_s": (0.0, 0.0002),
    "request_overhead_s": (0.0, 0.1),
    "v0_overhead_s_per_layer": (0.0, 0.005),
    "v0_seq_overhead_s": (0.0, 0.0002),
}
"""Physical range of each parameter; the fit searches within it and ``Efficiencies`` refuses
anything outside. Efficiencies are shares of a datasheet peak (at most 1). The step overhead is at
most 5 ms: V0's whole host gap per decode step measured 4-13 ms (vLLM RFC #6854), which V1's
separate engine-core process set out to shrink. The sequence overhead is at most 0.2 ms: twice
V0's output processing per sequence (3.4 ms for a batch of 32, vLLM RFC #6913). The request
overhead is at most 100 ms, ten times the tokenization and IPC of a few-thousand-token prompt."""
_SHARES = ("memory", "compute", "awq_memory")


@dataclass(frozen=True)
class Efficiencies:
    """The fitted parameters of the step-time model (shares of peak, and host costs)."""

    memory: float
    """Share of HBM bandwidth reached streaming BF16 weights and KV cache."""
    compute: float
    """Share of dense FP16 tensor peak reached by large (prefill) steps."""
    awq_memory: float
    """Share of HBM bandwidth reached streaming AWQ weights through dequantising kernels."""
    overlap_exponent: float
    """``p`` of the soft maximum of memory and compute time (1 = sum, large = max)."""
    step_overhead_s: float
    """(a) Fixed host time per V1 engine step: scheduling, input preparation, launching the
    forward pass (a CUDA graph for decode) and fetching the sampled tokens."""
    seq_overhead_s: float
    """(b) Host time each scheduled sequence adds to a V1 step: its scheduler and input-batch
    bookkeeping, sampling, output object and IPC to the API server."""
    request_overhead_s: float
    """(c) Latency before the engine sees a request and after its first token: the API server's
    HTTP parsing, prompt rendering and tokenization, IPC, first detokenization and SSE write."""
    v0_overhead_s_per_layer: float
    """Fixed per-step cost per layer of vLLM 0.6 (V0), used only to replay its rows."""
    v0_seq_overhead_s: float
    """(b) for V0, whose output processing per sequence V1 was built to shrink; its rows only."""

    def __post_init__(self) -> None:
        for name, (low, high) in BOUNDS.items():
            value = getattr(self, name)
            if not low <= value <= high or (name in _SHARES and value == 0):
                raise ValueError(f"{name}={value} is outside its physical range [{low}, {high}]")

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
        if generation == "v1":
            self._step_s, self._seq_s = eff.step_overhead_s, eff.seq_overhead_s
        else:
            self._step_s = model.layers * eff.v0_overhead_s_per_layer
            self._seq_s = eff.v0_seq_overhead_s
        self._p = eff.overlap_exponent
        self.request_overhead_s = eff.request_overhead_s
        """Front-end latency of each request (c): applied by whoever submits to the engine."""

    def step_seconds(
        self, tokens: int, kv_tokens_read: int, attention_pairs: int, sequences: int
    ) -> float:
        """Duration of a step that computes ``tokens`` new tokens for ``sequences`` sequences.

        ``kv_tokens_read`` is the KV cache the step reads (the context of every scheduled
        sequence); ``attention_pairs`` is the sum over new tokens of the context each attends to.
        """
        memory = self._weight_s + kv_tokens_read * self._kv_s_per_token
        compute = (
            tokens * self._linear_s_per_token
            + attention_pairs * self._attention_s_per_token_context
        )
        p = self._p
        gpu = math.pow(math.pow(memory, p) + math.pow(compute, p), 1 / p)
        return gpu + self._step_s + sequences * self._seq_s
