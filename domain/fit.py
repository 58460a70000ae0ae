"""Whether a model runs on a GPU, and how many sequences it holds there.

The same arithmetic vLLM does at start-up, done at config time so a bad combination fails in
``pulumi preview`` instead of as a crash-looping pod twenty minutes (and dollars) later:

    KV room per GPU = CUDA total x gpuMemoryUtilization - weights / TP - runtime overhead
    KV tokens       = floor(room / (block x KV bytes per token per GPU)) x block
    concurrency     = KV tokens / maxModelLen          (vLLM's "Maximum concurrency" line)

vLLM refuses to start when the KV cache cannot hold one sequence of ``max_model_len`` tokens, so
that is the fit criterion. The overhead is an estimate of what vLLM's profiling run sees besides
the weights (see the constants); it errs towards reporting less KV room than vLLM will find.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from domain import catalog
from domain.catalog import GB, GIB, GpuSpec, InstanceSpec, ModelSpec
from domain.prices import PriceTable
from domain.prices import current as current_prices

KV_BLOCK_TOKENS = 16
"""vLLM's default ``--block-size`` on CUDA."""

QWEN25_VOCAB = 152_064
"""Largest Qwen2.5 vocabulary (7B and up); bounds the sampler's logits buffer."""

CUDA_CONTEXT_BYTES = 1 * GIB
"""CUDA context, NCCL and cuBLAS workspaces and CUDA graph pools: memory vLLM's profiler counts
as non-KV besides weights and activations. About 1 GiB on the GPUs in the catalog (an estimate,
not a measurement here)."""

ACTIVATION_BYTES_PER_TOKEN_PER_HIDDEN = 36
"""Peak activation bytes per batched token per hidden unit during vLLM's profiling forward pass
(fp16 residual, attention and the gate/up MLP output, which is ~5.3x hidden for Qwen2.5, live at
once: about 18 values of 2 bytes)."""

MIN_MAX_MODEL_LEN = 256

Dtype = Literal["bfloat16", "half"]


class FitError(ValueError):
    """The combination cannot start; the message says why and what would.

    ``setting`` is the stack setting (under ``qwen-stress:``) the message is about, so a stack
    error names the key the user must change rather than always the model.
    """

    def __init__(self, message: str, setting: str) -> None:
        super().__init__(message)
        self.setting = setting


@dataclass(frozen=True)
class FitResult:
    """What vLLM would report at start-up for one replica."""

    model: ModelSpec
    instance: InstanceSpec
    gpu: GpuSpec
    tensor_parallel: int
    max_model_len: int
    gpu_memory_utilization: float
    dtype: Dtype
    max_num_seqs: int
    max_num_batched_tokens: int
    kv_bytes_per_gpu: int
    kv_bytes_per_token: int
    """Across all GPUs of the replica: what one token costs the whole replica."""
    kv_cache_tokens: int
    """Tokens the whole replica's KV cache holds (vLLM's "GPU KV cache size")."""

    @property
    def kv_blocks(self) -> int:
        """Blocks of ``KV_BLOCK_TOKENS`` tokens (vLLM's ``num_gpu_blocks``)."""
        return self.kv_cache_tokens // KV_BLOCK_TOKENS

    @property
    def max_concurrency(self) -> float:
        """Sequences of ``max_model_len`` tokens that fit at once (vLLM's start-up log line)."""
        return self.kv_cache_tokens / self.max_model_len

    @property
    def max_concurrent_sequences(self) -> int:
        """Sequences the scheduler can run at once at full context: KV- or max_num_seqs-bound."""
        return min(self.max_num_seqs, int(self.max_concurrency))

    @property
    def gpus_per_replica(self) -> int:
        """GPUs one vLLM replica occupies (its ``nvidia.com/gpu`` limit)."""
        return self.tensor_parallel

    def hourly_usd_per_replica(
        self, capacity: catalog.CapacityType = "on-demand", prices: PriceTable | None = None
    ) -> float:
        """The share of the node price one replica occupies (its GPUs / the instance's).

        Priced from ``prices``, else the table in use for us-east-1 (``domain.prices``).
        """
        share = self.tensor_parallel / self.instance.gpu_count
        table = prices or current_prices()
        return table.node_hour_usd(self.instance.instance_type, capacity) * share


def dtype_for(model: ModelSpec, gpu: GpuSpec) -> Dtype:
    """``half`` where bf16 is unsupported (T4, sm75) or the checkpoint is AWQ.

    vLLM's AWQ config lists float16 as its only activation dtype, and the Qwen AWQ checkpoints
    are stored in float16, so ``half`` is right for them on every GPU, not only on a T4.
    """
    if model.quantization == "awq" or not gpu.bf16:
        return "half"
    return "bfloat16"


def scheduler_defaults(gpu: GpuSpec) -> tuple[int, int]:
    """VLLM's API-server defaults ``(max_num_seqs, max_num_batched_tokens)`` for a GPU.

    ``EngineArgs.get_batch_defaults``: GPUs with at least 70 GiB that are not A100s get
    1024 sequences and 8192 tokens per step; every other GPU 256 and 2048.
    """
    if gpu.memory_bytes >= 70 * GIB and not gpu.name.startswith("A100"):
        return 1024, 8192
    return 256, 2048


def overhead_bytes(model: ModelSpec, gpu: GpuSpec) -> int:
    """Memory per GPU that is neither weights nor KV cache (see the constants above)."""
    max_num_seqs, max_num_batched_tokens = scheduler_defaults(gpu)
    activations = max_num_batched_tokens * model.hidden * ACTIVATION_BYTES_PER_TOKEN_PER_HIDDEN
    logits = max_num_seqs * QWEN25_VOCAB * 4
    return CUDA_CONTEXT_BYTES + activations + logits


def tensor_parallel_ok(model: ModelSpec, tp: int) -> bool:
    """Whether vLLM can shard this model over ``tp`` GPUs.

    Query heads must split evenly; KV heads must split evenly too, or (with more ranks than KV
    heads) be replicated a whole number of times, which is how vLLM's QKV layer shards them.
    """
    if tp < 1 or model.q_heads % tp:
        return False
    return model.kv_heads % tp == 0 or tp % model.kv_heads == 0


def valid_tensor_parallel(model: ModelSpec) -> list[int]:
    """TP sizes vLLM accepts for this model, up to the 8 GPUs of the largest instance."""
    return [tp for tp in range(1, 9) if tensor_parallel_ok(model, tp)]


def kv_bytes_per_token_per_gpu(model: ModelSpec, tp: int) -> int:
    """KV bytes one token holds on each GPU of a ``tp``-way sharded replica (16-bit cache)."""
    # KV heads are sharded across TP ranks; with more ranks than KV heads, vLLM replicates them.
    kv_heads_per_gpu = max(1, model.kv_heads // tp)
    return 2 * model.layers * kv_heads_per_gpu * model.head_dim * 2


def _kv_room(model: ModelSpec, gpu: GpuSpec, util: float, tp: int) -> int:
    usable = int(gpu.memory_bytes * util)
    return usable - model.weight_bytes // tp - overhead_bytes(model, gpu)


def kv_cache_tokens(model: ModelSpec, gpu: GpuSpec, util: float, tp: int) -> int:
    """Tokens one replica's KV cache holds, in whole blocks; 0 when the weights leave no room.

    The arithmetic behind the fit check and the emulator's calibration replays (which also
    run GPUs outside the EC2 catalog).
    """
    room = _kv_room(model, gpu, util, tp)
    blocks = room // (KV_BLOCK_TOKENS * kv_bytes_per_token_per_gpu(model, tp))
    return max(0, blocks) * KV_BLOCK_TOKENS


def _fits(model: ModelSpec, inst: InstanceSpec, max_len: int, util: float, tp: int) -> bool:
    if inst.gpu is None or tp > inst.gpu_count or not tensor_parallel_ok(model, tp):
        return False
    return kv_cache_tokens(model, inst.gpu, util, tp) >= max_len


def _cheapest_fit(model: ModelSpec, max_len: int, util: float) -> tuple[InstanceSpec, int] | None:
    for inst in catalog.gpu_instances():
        for tp in valid_tensor_parallel(model):
            if _fits(model, inst, max_len, util, tp):
                return inst, tp
    return None


def _suggestions(model: ModelSpec, inst: InstanceSpec, max_len: int, util: float) -> list[str]:
    """What would fit instead, cheapest change first: quantise, bigger GPU, or shard it."""
    out: list[str] = []
    awq = catalog.models().get(model.family + catalog.AWQ_SUFFIX)
    if awq is not None and awq != model and _fits(awq, inst, max_len, util, 1):
        out.append(awq.name)
    single = [
        i.instance_type
        for i in catalog.gpu_instances()
        if i.gpu_count == 1 and i.gpu != inst.gpu and _fits(model, i, max_len, util, 1)
    ]
    if single:
        out.append(f"a {single[0]}" + (f" or {single[1]}" if len(single) > 1 else "") + " instance")
    for i in catalog.gpu_instances():
        if i.gpu != inst.gpu:
            continue
        tps = [
            t for t in valid_tensor_parallel(model) if t > 1 and _fits(model, i, max_len, util, t)
        ]
        if tps:
            out.append(f"tensorParallel {tps[0]} on {i.instance_type}")
            break
    if not out:
        for candidate in (awq, model):
            found = _cheapest_fit(candidate, max_len, util) if candidate else None
            if candidate and found:
                name = "" if candidate == model else f"{candidate.name} with "
                out.append(f"{name}tensorParallel {found[1]} on {found[0].instance_type}")
    return out


def _article(word: str) -> str:
    return ("an " if word[:1].upper() in "AEFHILMNORSX" else "a ") + word


def _join(options: list[str]) -> str:
    if len(options) <= 1:
        return "".join(options)
    return ", ".join(options[:-1]) + ", or " + options[-1]


def check_fit(
    model_name: str,
    instance_type: str,
    *,
    max_model_len: int,
    gpu_memory_utilization: float = 0.9,
    tensor_parallel: int = 1,
) -> FitResult:
    """Return what one replica holds, or raise ``FitError`` saying why not and what would fit."""
    model = catalog.model(model_name)
    inst = catalog.instance(instance_type)
    if inst.gpu is None:
        gpu_types = ", ".join(i.instance_type for i in catalog.gpu_instances()[:4])
        raise FitError(
            f"{instance_type} has no GPU; choose a GPU instance such as {gpu_types}",
            "gpu.instanceType",
        )
    gpu = inst.gpu
    if not 0.1 <= gpu_memory_utilization <= 0.99:
        raise FitError(
            f"gpuMemoryUtilization {gpu_memory_utilization} is outside 0.1..0.99; "
            "vLLM's default is 0.9",
            "model.gpuMemoryUtilization",
        )
    if tensor_parallel < 1 or tensor_parallel > inst.gpu_count:
        raise FitError(
            f"tensorParallel {tensor_parallel} needs {tensor_parallel} GPUs on one node; "
            f"{instance_type} has {inst.gpu_count}",
            "model.tensorParallel",
        )
    if not tensor_parallel_ok(model, tensor_parallel):
        valid = ", ".join(str(t) for t in valid_tensor_parallel(model))
        raise FitError(
            f"tensorParallel {tensor_parallel} does not split {model.name}'s "
            f"{model.q_heads} attention heads and {model.kv_heads} KV heads evenly; "
            f"use one of {valid}",
            "model.tensorParallel",
        )
    if not MIN_MAX_MODEL_LEN <= max_model_len <= model.max_position:
        raise FitError(
            f"maxModelLen {max_model_len} is outside {MIN_MAX_MODEL_LEN}..{model.max_position}, "
            f"the context {model.name} supports without rope scaling",
            "model.maxModelLen",
        )

    room = _kv_room(model, gpu, gpu_memory_utilization, tensor_parallel)
    kv_tokens = kv_cache_tokens(model, gpu, gpu_memory_utilization, tensor_parallel)
    if kv_tokens < max_model_len:
        weights_gb = model.weight_bytes / GB
        leaves_gib = (gpu.memory_bytes * gpu_memory_utilization - overhead_bytes(model, gpu)) / GIB
        if room <= 0:
            setting = "model.name"
            why = (
                f"{model.name} needs {weights_gb:.1f} GB of weights"
                + (
                    f" ({weights_gb / tensor_parallel:.1f} GB per GPU)"
                    if tensor_parallel > 1
                    else ""
                )
                + f"; {_article(gpu.name)} leaves about {leaves_gib:.0f} GiB at "
                f"{gpu_memory_utilization} utilisation"
            )
        else:
            setting = "model.maxModelLen"
            why = (
                f"{model.name} on {instance_type} (tensorParallel {tensor_parallel}) has KV cache "
                f"room for {kv_tokens} tokens, fewer than maxModelLen {max_model_len}; "
                f"lower maxModelLen to {kv_tokens} or less"
            )
        options = _suggestions(model, inst, max_model_len, gpu_memory_utilization)
        raise FitError(why + (f". Use {_join(options)}" if options else ""), setting)

    max_num_seqs, max_num_batched_tokens = scheduler_defaults(gpu)
    return FitResult(
        model=model,
        instance=inst,
        gpu=gpu,
        tensor_parallel=tensor_parallel,
        max_model_len=max_model_len,
        gpu_memory_utilization=gpu_memory_utilization,
        dtype=dtype_for(model, gpu),
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=max_num_batched_tokens,
        kv_bytes_per_gpu=room,
        kv_bytes_per_token=kv_bytes_per_token_per_gpu(model, tensor_parallel) * tensor_parallel,
        kv_cache_tokens=kv_tokens,
    )
