"""How long each step of a scale-out takes, from the catalog's measured timings.

A new replica on a new node waits for the node to boot, the vLLM image to be pulled onto it,
the weights to be downloaded into the pod's emptyDir cache and loaded, and the engine to
initialise (torch.compile, CUDA graph capture, memory profiling). The published measurements
(``domain/data/timings.csv``) are for an 8B checkpoint; download and load scale with the
checkpoint's bytes, the rest is taken as is. None of these phases is bound by the GPU's speed
(network, disk and CPU-side compilation dominate), so the GPU type does not change them.
"""

from __future__ import annotations

from dataclasses import dataclass

from domain import catalog
from domain.durations import parse_duration
from domain.stack_config import ClusterAutoscalerConfig

REFERENCE_WEIGHT_BYTES = 16_060_000_000
"""Llama-3.1-8B in BF16 (8.03 B parameters x 2 bytes): the checkpoint behind the ``_8b`` rows of
``timings.csv`` (Tensorfuse's cold-start measurements)."""


@dataclass(frozen=True)
class Timings:
    """Delays and periods of the control plane, in unscaled seconds."""

    node_boot_s: float
    """EC2 GPU instance launch until the node is Ready with its GPUs advertised."""
    image_pull_s: float
    """The vLLM image onto a node that does not have it yet (once per node)."""
    weights_download_s: float
    """The checkpoint from Hugging Face into the pod's cache (every pod: an emptyDir)."""
    weights_load_s: float
    """The checkpoint from local disk into GPU memory."""
    engine_init_s: float
    """The rest of vLLM's start-up: compilation, CUDA graphs, profiling, KV cache allocation."""
    hpa_sync_s: float
    """The HPA controller's sync period (``--horizontal-pod-autoscaler-sync-period``)."""
    ca_scan_s: float
    """The Cluster Autoscaler's ``--scan-interval``."""
    ca_unneeded_s: float
    """How long a node must stay empty before the Cluster Autoscaler removes it."""
    ca_delay_after_add_s: float
    """No scale-down for this long after a scale-up."""

    @property
    def pod_start_s(self) -> float:
        """From a pod's container starting (image present) until it answers ``/health``."""
        return self.weights_download_s + self.weights_load_s + self.engine_init_s


def timings(model: str, autoscaler: ClusterAutoscalerConfig) -> Timings:
    """The twin's delays for ``model``, with the stack's Cluster Autoscaler settings."""
    table = catalog.timings()
    share = catalog.model(model).weight_bytes / REFERENCE_WEIGHT_BYTES
    download = table["model_download_hf_8b"]
    load = table["model_load_local_disk_8b"]
    return Timings(
        node_boot_s=table["ec2_gpu_node_launch_to_ready"],
        image_pull_s=table["vllm_image_pull_uncached"],
        weights_download_s=download * share,
        weights_load_s=load * share,
        # The whole measured cold start, less the two phases that depend on the checkpoint size.
        engine_init_s=table["vllm_cold_start_no_cache_8b"] - download - load,
        hpa_sync_s=table["hpa_sync_period"],
        ca_scan_s=table["cluster_autoscaler_scan_interval"],
        ca_unneeded_s=parse_duration(autoscaler.scale_down_unneeded_time),
        ca_delay_after_add_s=parse_duration(autoscaler.scale_down_delay_after_add),
    )
