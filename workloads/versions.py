"""The pinned vLLM release, and what was checked against it.

One place for the image so the Deployment, the run directory's ``config.json`` and the reports
name the same build. Checked upstream for this version (see the README, "vLLM service"):

- ``vllm/vllm-openai:v0.28.0`` (released 2026-08-26): entrypoint ``vllm serve``, runs as root
  unless told otherwise, has a non-root ``vllm`` user; CUDA 13.0 on Ubuntu 24.04, so nodes need
  an NVIDIA driver of the 580 series or newer; kernels built for sm75 to sm120
  (``torch_cuda_arch_list='7.5 8.0 ...'``), so a T4 runs it.
- On a T4 (sm75) the V1 engine picks a Triton attention backend (FlashAttention needs sm80 and
  FlashInfer is limited to sm80 since mid-2026); AWQ runs on sm75 in fp16.
- Flags: ``--served-model-name``, ``--max-model-len``, ``--gpu-memory-utilization``,
  ``--dtype``, ``--tensor-parallel-size``, ``--port``, ``--shutdown-timeout`` (since v0.18:
  on SIGTERM, refuse new requests and let in-flight ones finish for up to that many seconds).
- Environment: ``VLLM_API_KEY`` (the API key), ``VLLM_ENGINE_READY_TIMEOUT_S`` (how long the
  API server waits for the engine at start-up; default 600 s), ``DO_NOT_TRACK``.
- Endpoints ``/health`` and ``/metrics`` stay open when an API key is set; ``/v1/*`` needs it.
- Metrics: ``vllm:num_requests_waiting``, ``vllm:num_requests_running``,
  ``vllm:kv_cache_usage_perc``, each labelled ``model_name`` (and ``engine``).
"""

from __future__ import annotations

VLLM_VERSION = "v0.28.0"
VLLM_IMAGE = f"vllm/vllm-openai:{VLLM_VERSION}"

VLLM_UID = 10001
"""Any non-root UID works once HOME and USER point somewhere writable (the image's own ``vllm``
user is UID 2000; a UID above 10000 cannot collide with a host account)."""
