"""The vLLM container's command line and environment, from the model settings and the fit.

A pure function, so the flags can be tested without Pulumi and read in one place: everything
``vllm serve`` is told comes from ``ModelConfig`` (what to serve) and ``FitResult`` (what the GPU
decided: dtype, tensor parallel size).
"""

from __future__ import annotations

from dataclasses import dataclass

from domain import topology
from domain.fit import FitResult
from domain.model_config import ModelConfig

API_KEY_ENV = "VLLM_API_KEY"
"""Where vLLM (and the emulator, and the load test's local runs) read the API key: a command
line is public (``ps``), an environment variable is not."""
HF_TOKEN_ENV = "HF_TOKEN"

API_KEY_CHARS = frozenset(chr(c) for c in range(0x21, 0x7F))
"""Visible ASCII: what an ``Authorization: Bearer`` header carries intact. Parsers strip spaces
around a header value, clients refuse control characters (a newline would end the header), and
other characters change on the way."""


def api_key_problem(key: str) -> str | None:
    """What makes ``key`` unsendable in a header, in words that never quote it; None if sendable.

    A key read from a file or pasted with ``echo`` often ends with a newline: every request would
    then fail in the client before it leaves, so the key is refused before a run starts.
    """
    if set(key) <= API_KEY_CHARS:
        return None
    if key.strip() != key:
        return "starts or ends with a space or a line break (as `echo` or a file's last line adds)"
    return "holds a space, a control character or a non-ASCII character"


API_KEY_GUARDED_PREFIXES = ("/v1", "/v2", "/inference", "/cohere")
"""The only path prefixes vLLM's API key guards: everything else answers without it, including
``/invocations`` (SageMaker's entry to the same inference), ``/pooling``, ``/classify``,
``/score``, ``/rerank``, ``/tokenize``, ``/pause`` and ``/abort_requests``. Read in v0.28.0's
source (the PyPI sdist): ``GUARDED_PREFIX`` in ``vllm/entrypoints/serve/utils/server_utils.py``,
checked with ``url_path.startswith`` by ``AuthenticationMiddleware``. Its own security guide
(``docs/usage/security.md``) names ``/v1``, ``/v2`` and ``/inference`` only. So the key alone
protects nothing: the vLLM NetworkPolicy is what keeps everyone else off port 8000."""

HOME_DIR = "/home/vllm"
"""Writable home (an emptyDir): torch, Triton, FlashInfer and vLLM cache compiled kernels here."""
MODEL_CACHE_DIR = "/models"
"""The model cache volume; Hugging Face downloads land under it (``HF_HOME``)."""

PRESTOP_SECONDS = 10
"""Pause before SIGTERM so kube-proxy drops the pod from the Service before vLLM stops accepting."""
DRAIN_SECONDS = 120
"""vLLM's ``--shutdown-timeout``: in-flight requests get this long to finish after SIGTERM
(a 2,000-token answer at 20 tokens/s on a T4 takes 100 s)."""
TERMINATION_GRACE_SECONDS = PRESTOP_SECONDS + DRAIN_SECONDS + 20
"""The kubelet's SIGKILL deadline: preStop + drain + margin for the process to exit."""

STARTUP_BUDGET_SECONDS = 1200
"""How long a container may take to answer ``/health`` the first time: weight download,
load, torch.compile and CUDA graph capture (node boot and image pull come before it)."""


@dataclass(frozen=True)
class VllmLaunch:
    """Arguments after the image's ``vllm serve`` entrypoint, and the non-secret environment."""

    args: list[str]
    env: dict[str, str]


def vllm_launch(model: ModelConfig, fit: FitResult) -> VllmLaunch:
    """What to run: the checkpoint, its served name, context, memory share, dtype and sharding."""
    args = [
        model.name,
        "--served-model-name",
        model.served,
        "--max-model-len",
        str(fit.max_model_len),
        "--gpu-memory-utilization",
        f"{fit.gpu_memory_utilization:g}",
        "--dtype",
        fit.dtype,
        "--port",
        str(topology.VLLM_PORT),
        "--shutdown-timeout",
        str(DRAIN_SECONDS),
    ]
    if fit.tensor_parallel > 1:
        args += ["--tensor-parallel-size", str(fit.tensor_parallel)]
    env = {
        # The root filesystem is read-only: every default cache path must resolve to a volume.
        "HOME": HOME_DIR,
        "USER": "vllm",
        "HF_HOME": f"{MODEL_CACHE_DIR}/huggingface",
        # vLLM's own start-up deadline (600 s by default) must not fire before the probe's.
        "VLLM_ENGINE_READY_TIMEOUT_S": str(STARTUP_BUDGET_SECONDS),
        "DO_NOT_TRACK": "1",
        "VLLM_NO_USAGE_STATS": "1",
    }
    return VllmLaunch(args=args, env=env)
