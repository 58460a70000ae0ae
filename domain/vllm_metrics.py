"""vLLM's Prometheus metric names and labels (V1 engine), in one place.

The KEDA triggers query them, the emulator exports them, the load-test targets read them; a
rename upstream (``vllm:gpu_cache_usage_perc`` became ``vllm:kv_cache_usage_perc`` in late 2025)
is one edit here. Counters are named without ``_total``: prometheus-client adds it on export,
as vLLM's do.
"""

from __future__ import annotations

MODEL_LABEL = "model_name"
ENGINE_LABEL = "engine"

RUNNING = "vllm:num_requests_running"
WAITING = "vllm:num_requests_waiting"
KV_CACHE_USAGE = "vllm:kv_cache_usage_perc"
KV_CACHE_USAGE_LEGACY = "vllm:gpu_cache_usage_perc"
"""The KV gauge's name before late 2025; older servers export only this one."""
KV_CACHE_USAGE_NAMES = (KV_CACHE_USAGE, KV_CACHE_USAGE_LEGACY)

PROMPT_TOKENS = "vllm:prompt_tokens"
GENERATION_TOKENS = "vllm:generation_tokens"
PREEMPTIONS = "vllm:num_preemptions"
REQUEST_SUCCESS = "vllm:request_success"

TIME_TO_FIRST_TOKEN = "vllm:time_to_first_token_seconds"
INTER_TOKEN_LATENCY = "vllm:inter_token_latency_seconds"
"""Called ``vllm:time_per_output_token_seconds`` before vLLM 0.11."""
E2E_REQUEST_LATENCY = "vllm:e2e_request_latency_seconds"
REQUEST_QUEUE_TIME = "vllm:request_queue_time_seconds"
