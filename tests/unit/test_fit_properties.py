"""The fit check against vLLM's start-up arithmetic, over every model x GPU instance pair."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain import catalog
from domain.fit import (
    KV_BLOCK_TOKENS,
    FitError,
    check_fit,
    overhead_bytes,
    scheduler_defaults,
    tensor_parallel_ok,
    valid_tensor_parallel,
)

MODELS = sorted(catalog.models())
GPU_INSTANCES = [i.instance_type for i in catalog.gpu_instances()]


def _needed_bytes(model: catalog.ModelSpec, gpu: catalog.GpuSpec, tp: int, max_len: int) -> int:
    """Weights, overhead and KV for one full-length sequence, on one GPU of the replica."""
    kv_heads_per_gpu = model.kv_heads // tp if model.kv_heads >= tp else 1
    per_token = 2 * model.layers * kv_heads_per_gpu * model.head_dim * 2
    blocks = math.ceil(max_len / KV_BLOCK_TOKENS)
    return (
        model.weight_bytes // tp + overhead_bytes(model, gpu) + blocks * KV_BLOCK_TOKENS * per_token
    )


@settings(max_examples=400, deadline=None)
@given(
    model_name=st.sampled_from(MODELS),
    instance_type=st.sampled_from(GPU_INSTANCES),
    max_len=st.integers(min_value=256, max_value=32768),
    util=st.floats(min_value=0.5, max_value=0.95),
    tp=st.integers(min_value=1, max_value=8),
)
def test_fits_iff_weights_overhead_and_one_sequence_fit(
    model_name: str, instance_type: str, max_len: int, util: float, tp: int
) -> None:
    model = catalog.model(model_name)
    inst = catalog.instance(instance_type)
    assert inst.gpu is not None
    shardable = tp <= inst.gpu_count and model.q_heads % tp == 0
    shardable = shardable and (model.kv_heads % tp == 0 or tp % model.kv_heads == 0)
    fits = shardable and _needed_bytes(model, inst.gpu, tp, max_len) <= int(
        inst.gpu.memory_bytes * util
    )
    try:
        fit = check_fit(
            model_name,
            instance_type,
            max_model_len=max_len,
            gpu_memory_utilization=util,
            tensor_parallel=tp,
        )
    except FitError as err:
        assert not fits, f"refused a combination that fits: {err}"
        assert str(err)  # every refusal says why
        return
    assert fits, "accepted a combination that cannot hold one full-length sequence"
    assert fit.kv_cache_tokens >= max_len
    assert fit.kv_cache_tokens % KV_BLOCK_TOKENS == 0
    # The whole cache fits the room left on each GPU after weights and overhead.
    assert fit.kv_cache_tokens * (fit.kv_bytes_per_token // tp) <= fit.kv_bytes_per_gpu
    assert fit.gpus_per_replica == tp
    assert fit.max_concurrent_sequences <= fit.max_num_seqs
    assert fit.max_concurrent_sequences >= 1


@pytest.mark.parametrize("model_name", MODELS)
def test_kv_bytes_per_token_formula(model_name: str) -> None:
    model = catalog.model(model_name)
    expected = 2 * model.layers * model.kv_heads * model.head_dim * 2  # K and V, fp16/bf16
    assert model.kv_bytes_per_token() == expected
    # A replica's per-token cost is the model's, whatever the sharding (8 KV heads over 8 GPUs).
    fit = check_fit(model_name, "p5en.48xlarge", max_model_len=4096, tensor_parallel=2)
    assert fit.kv_bytes_per_token == expected


def test_qwen7b_kv_bytes_match_the_published_shape() -> None:
    # 28 layers x 4 KV heads x 128 dims x 2 (K, V) x 2 bytes = 56 KiB per token.
    assert catalog.model("Qwen/Qwen2.5-7B-Instruct").kv_bytes_per_token() == 57_344


@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("instance_type", GPU_INSTANCES)
def test_dtype_half_on_t4_and_for_awq(model_name: str, instance_type: str) -> None:
    try:
        fit = check_fit(model_name, instance_type, max_model_len=2048)
    except FitError:
        return
    want_half = fit.gpu.name == "T4" or model_name.endswith("-AWQ")
    assert fit.dtype == ("half" if want_half else "bfloat16")
    assert fit.gpu.bf16 or fit.dtype == "half"


@pytest.mark.parametrize("model_name", MODELS)
def test_valid_tensor_parallel_splits_query_and_kv_heads(model_name: str) -> None:
    model = catalog.model(model_name)
    for tp in range(1, 9):
        ok = tp in valid_tensor_parallel(model)
        assert ok == tensor_parallel_ok(model, tp)
        if ok:
            assert model.q_heads % tp == 0
            assert model.kv_heads % tp == 0 or tp % model.kv_heads == 0


def test_tensor_parallel_beyond_the_instance_names_its_gpus() -> None:
    with pytest.raises(FitError, match=r"g5\.xlarge has 1"):
        check_fit("Qwen/Qwen2.5-7B-Instruct", "g5.xlarge", max_model_len=4096, tensor_parallel=2)


def test_tensor_parallel_that_does_not_split_heads_lists_valid_sizes() -> None:
    # 0.5B: 14 query heads, 2 KV heads; 7 splits the queries but not the KV heads.
    with pytest.raises(FitError, match=r"use one of 1, 2$"):
        check_fit(
            "Qwen/Qwen2.5-0.5B-Instruct", "g5.48xlarge", max_model_len=4096, tensor_parallel=7
        )


def test_bf16_7b_on_t4_names_what_would_fit() -> None:
    with pytest.raises(FitError) as caught:
        check_fit("Qwen/Qwen2.5-7B-Instruct", "g4dn.xlarge", max_model_len=8192)
    msg = str(caught.value)
    assert msg.startswith("Qwen/Qwen2.5-7B-Instruct needs 15.2 GB of weights; a T4 leaves about")
    assert "Qwen/Qwen2.5-7B-Instruct-AWQ" in msg
    assert "g6.xlarge or g5.xlarge instance" in msg
    assert "tensorParallel 2 on g4dn.12xlarge" in msg


def test_context_too_long_for_the_cache_says_how_far_to_lower_it() -> None:
    with pytest.raises(FitError, match="lower maxModelLen to") as caught:
        check_fit(
            "Qwen/Qwen2.5-14B-Instruct-AWQ",
            "g4dn.xlarge",
            max_model_len=32768,
            gpu_memory_utilization=0.9,
        )
    assert "fewer than maxModelLen 32768" in str(caught.value)


def test_t4_memory_is_what_cuda_reports_not_the_ec2_figure() -> None:
    t4 = catalog.gpu("T4")
    assert t4.ec2_memory_bytes == 16 * catalog.GIB
    assert t4.memory_bytes < t4.ec2_memory_bytes  # ECC reserves about 1.3 GiB


def test_scheduler_defaults_follow_vllm_api_server() -> None:
    assert scheduler_defaults(catalog.gpu("T4")) == (256, 2048)
    assert scheduler_defaults(catalog.gpu("A100-80")) == (256, 2048)
    assert scheduler_defaults(catalog.gpu("H100")) == (1024, 8192)
