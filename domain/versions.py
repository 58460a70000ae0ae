"""Every version the platform installs, pinned in one place and checked against upstream.

Charts, the Cluster Autoscaler image, EKS add-ons and AMIs for the platform; the vLLM image for
the workload (which the run directory's ``config.json`` and the reports name too).

A chart or image that floats changes the cluster under a test that is meant to be repeated, so
each Helm chart is pinned to an exact version, and the Cluster Autoscaler image to the patch
release of the Kubernetes minor it was built for (its scheduler simulation must match the
control plane's). Where each number was checked is written next to it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Chart:
    """One Helm chart: where it lives and the exact version installed."""

    repo: str
    chart: str
    version: str


@dataclass(frozen=True)
class KubernetesPins:
    """What must change together with the EKS Kubernetes minor version."""

    cluster_autoscaler_tag: str
    """Image tag of registry.k8s.io/autoscaling/cluster-autoscaler for this minor."""


KUBERNETES: dict[str, KubernetesPins] = {
    # 1.35 reached EKS on 2026-01-28 and has standard support until 2027-03-27 (EKS version
    # calendar); 1.34's ends 2026-12-02, after which the control plane costs $0.60/h, not $0.10.
    # CA 1.35.2: kubernetes/autoscaler release cluster-autoscaler-1.35.2, 2026-07-23.
    "1.35": KubernetesPins(
        cluster_autoscaler_tag="v1.35.2",
    ),
}
"""Kubernetes minors this project's pins were checked against; the config refuses others."""

DEFAULT_KUBERNETES_VERSION = "1.35"

CLUSTER_AUTOSCALER = Chart(
    # kubernetes/autoscaler cluster-autoscaler/charts/cluster-autoscaler/Chart.yaml at commit
    # 0d4abcf: version 9.59.1, appVersion 1.35.0 (the version seen there; 9.59.0 never was).
    # The image tag is set per Kubernetes minor below.
    repo="https://kubernetes.github.io/autoscaler",
    chart="cluster-autoscaler",
    version="9.59.1",
)
NVIDIA_DEVICE_PLUGIN = Chart(
    # The EKS AL2023 NVIDIA AMI ships the driver and container toolkit, not the device plugin
    # (EKS user guide, "Install Kubernetes device plugin for GPUs").
    repo="https://nvidia.github.io/k8s-device-plugin",
    chart="nvidia-device-plugin",
    # Chart and image versions move together; nvcr.io/nvidia/k8s-device-plugin:v0.20.1 is the
    # image NVIDIA's GPU Operator v26.7.1 ships.
    version="0.20.1",
)
KUBE_PROMETHEUS_STACK = Chart(
    repo="https://prometheus-community.github.io/helm-charts",
    chart="kube-prometheus-stack",
    version="91.9.0",
)
KEDA = Chart(
    # KEDA 2.20 is tested on Kubernetes 1.33-1.35 (keda.sh/docs/2.20/operate/cluster).
    repo="https://kedacore.github.io/charts",
    chart="keda",
    # `helm pull kedacore/keda --version 2.20.2` in public install notes; images 2.20.2.
    version="2.20.2",
)

CHARTS = (CLUSTER_AUTOSCALER, NVIDIA_DEVICE_PLUGIN, KUBE_PROMETHEUS_STACK, KEDA)

EKS_ADDONS = ("vpc-cni", "kube-proxy", "eks-pod-identity-agent", "coredns", "aws-ebs-csi-driver")
"""EKS add-on names (EKS user guide, "Amazon EKS add-ons").

Their versions are the default EKS pairs with the pinned Kubernetes minor
(``aws.eks.get_addon_version`` without ``most_recent``): AWS publishes add-on builds per minor,
so pinning the minor pins the add-ons, and ``pulumi preview`` shows the exact build.
"""

GPU_AMI_TYPE = "AL2023_x86_64_NVIDIA"
"""EKS-optimized AL2023 NVIDIA AMI; covers g4dn, g5, g6, g6e, p4d, p5 (EKS user guide)."""
SYSTEM_AMI_TYPE = "AL2023_x86_64_STANDARD"

# ------------------------------------------------------------------------------------------------
# The pinned vLLM release, and what was checked against it.
#
# One place for the image so the Deployment, the run directory's ``config.json`` and the reports
# name the same build. Checked upstream for this version (see the README, "vLLM service"):
#
# - ``vllm/vllm-openai:v0.28.0`` (released 2026-08-26): entrypoint ``vllm serve``, runs as root
#   unless told otherwise, has a non-root ``vllm`` user; CUDA 13.0 on Ubuntu 24.04, so nodes need
#   an NVIDIA driver of the 580 series or newer; kernels built for sm75 to sm120
#   (``torch_cuda_arch_list='7.5 8.0 ...'``), so a T4 runs it.
# - On a T4 (sm75) the V1 engine picks a Triton attention backend (FlashAttention needs sm80 and
#   FlashInfer is limited to sm80 since mid-2026); AWQ runs on sm75 in fp16.
# - Flags: ``--served-model-name``, ``--max-model-len``, ``--gpu-memory-utilization``,
#   ``--dtype``, ``--tensor-parallel-size``, ``--port``, ``--shutdown-timeout`` (since v0.18:
#   on SIGTERM, refuse new requests and let in-flight ones finish for up to that many seconds).
# - Environment: ``VLLM_API_KEY`` (the API key), ``VLLM_ENGINE_READY_TIMEOUT_S`` (how long the
#   API server waits for the engine at start-up; default 600 s), ``DO_NOT_TRACK``.
# - Endpoints ``/health`` and ``/metrics`` stay open when an API key is set; ``/v1/*`` needs it.
# - Metrics: ``vllm:num_requests_waiting``, ``vllm:num_requests_running``,
#   ``vllm:kv_cache_usage_perc``, each labelled ``model_name`` (and ``engine``).

VLLM_VERSION = "v0.28.0"
VLLM_IMAGE = f"vllm/vllm-openai:{VLLM_VERSION}"

VLLM_UID = 10001
"""Any non-root UID works once HOME and USER point somewhere writable (the image's own ``vllm``
user is UID 2000; a UID above 10000 cannot collide with a host account)."""

# ------------------------------------------------------------------------------------------------
# The load-test pods (the ephemeral stack's Locust master and workers).

POD_PYTHON_IMAGE = "docker.io/library/python:3.11.14-slim-trixie"
"""Base of the released load-test image (``Dockerfile``) and, for a checkout without a released
image, the image whose init container installs the project's wheel. Tag checked in
docker-library/official-images ``library/python`` (3.11.14-slim-trixie, amd64 among its
architectures); no digest: it could not be verified offline, and Docker re-pushes the tag only
for Debian security updates of the same Python. CPython 3.11 on x86_64 glibc, the platform the
hashed pod lock was resolved for."""

LOADTEST_IMAGE_REPOSITORY = "ghcr.io/qwen-stress/qwen-stress"
"""Where ``.github/workflows/release-image.yml`` publishes the load-test image, tagged with the
project version; a fork publishing under its own owner changes this one line."""
