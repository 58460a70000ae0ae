"""vLLM's command line follows the model settings and what the GPU decided."""

from __future__ import annotations

from domain.fit import check_fit
from domain.model_config import ModelConfig
from domain.vllm_args import DRAIN_SECONDS, STARTUP_BUDGET_SECONDS, vllm_launch


def _flag(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


def test_awq_on_t4_serves_in_half_on_one_gpu() -> None:
    model = ModelConfig(
        name="Qwen/Qwen2.5-7B-Instruct-AWQ", served_name="qwen7b", max_model_len=8192
    )
    fit = check_fit(model.name, "g4dn.xlarge", max_model_len=8192)
    launch = vllm_launch(model, fit)
    assert (
        launch.args[0] == "Qwen/Qwen2.5-7B-Instruct-AWQ"
    )  # the image's entrypoint is `vllm serve`
    assert _flag(launch.args, "--served-model-name") == "qwen7b"
    assert _flag(launch.args, "--max-model-len") == "8192"
    assert _flag(launch.args, "--gpu-memory-utilization") == "0.9"
    assert _flag(launch.args, "--dtype") == "half"
    assert _flag(launch.args, "--port") == "8000"
    assert _flag(launch.args, "--shutdown-timeout") == str(DRAIN_SECONDS)
    assert "--tensor-parallel-size" not in launch.args


def test_bf16_on_a10g_and_served_name_defaults_to_the_checkpoint() -> None:
    model = ModelConfig(name="Qwen/Qwen2.5-7B-Instruct", gpu_memory_utilization=0.85)
    fit = check_fit(model.name, "g5.xlarge", max_model_len=4096, gpu_memory_utilization=0.85)
    args = vllm_launch(model, fit).args
    assert _flag(args, "--dtype") == "bfloat16"
    assert _flag(args, "--served-model-name") == "Qwen/Qwen2.5-7B-Instruct"
    assert _flag(args, "--gpu-memory-utilization") == "0.85"
    assert _flag(args, "--max-model-len") == "4096"


def test_tensor_parallel_flag_only_when_sharded() -> None:
    model = ModelConfig(name="Qwen/Qwen2.5-7B-Instruct", tensor_parallel=2)
    fit = check_fit(model.name, "g4dn.12xlarge", max_model_len=8192, tensor_parallel=2)
    args = vllm_launch(model, fit).args
    assert _flag(args, "--tensor-parallel-size") == "2"
    assert _flag(args, "--dtype") == "half"  # T4: no bf16


def test_environment_points_every_cache_at_a_volume_and_waits_as_long_as_the_probe() -> None:
    model = ModelConfig()
    env = vllm_launch(model, check_fit(model.name, "g4dn.xlarge", max_model_len=8192)).env
    assert env["HF_HOME"].startswith("/models/")
    assert env["HOME"] == "/home/vllm"
    assert env["VLLM_ENGINE_READY_TIMEOUT_S"] == str(STARTUP_BUDGET_SECONDS)
    assert "VLLM_API_KEY" not in env  # the key comes from the Secret, never a plain value
