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

# Every chart version below is one its repository's index.yaml lists: the entries read are copied,
# with where and when, into domain/data/chart_index.yaml, and a test fails on a pin missing there.
CLUSTER_AUTOSCALER = Chart(
    # The index (kubernetes/autoscaler gh-pages index.yaml, generated 2026-07-26), the tags
    # cluster-autoscaler-chart-* and Chart.yaml on master all end at 9.59.0 (appVersion 1.35.0);
    # no 9.59.1 was ever released (a Chart.yaml bump to it exists only in an unmerged pull
    # request). 9.59.0's values.yaml and deployment template take every key addons.py sets.
    # The image tag is set per Kubernetes minor below.
    repo="https://kubernetes.github.io/autoscaler",
    chart="cluster-autoscaler",
    version="9.59.0",
)
NVIDIA_DEVICE_PLUGIN = Chart(
    # The EKS AL2023 NVIDIA AMI ships the driver and container toolkit, not the device plugin
    # (EKS user guide, "Install Kubernetes device plugin for GPUs").
    repo="https://nvidia.github.io/k8s-device-plugin",
    chart="nvidia-device-plugin",
    # The newest chart the index lists (NVIDIA/k8s-device-plugin gh-pages, generated
    # 2026-08-20): tag v0.20.0; there is no 0.20.1 chart or tag. Chart and image move together.
    version="0.20.0",
)
KUBE_PROMETHEUS_STACK = Chart(
    # Tag kube-prometheus-stack-88.5.3 (operator v0.93.1), whose values.yaml takes every key
    # addons.py sets; the index copy read lists it (newest there: 88.6.0). 91.9.0, pinned
    # before, is in no index copy that could be read here, so it stays unverified.
    repo="https://prometheus-community.github.io/helm-charts",
    chart="kube-prometheus-stack",
    version="88.5.3",
)
KEDA = Chart(
    # KEDA 2.20 is tested on Kubernetes 1.33-1.35 (keda.sh/docs/2.20/operate/cluster).
    repo="https://kedacore.github.io/charts",
    chart="keda",
    # kedacore/charts docs/index.yaml (generated 2026-07-31); the packaged keda-2.20.2.tgz
    # hashes to the index's digest and takes crds.install and a top-level nodeSelector.
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
# - The API key guards only the path prefixes ``/v1``, ``/v2``, ``/inference`` and ``/cohere``
#   (``vllm_args.API_KEY_GUARDED_PREFIXES``, where it was read); ``/invocations``, ``/pooling``,
#   ``/score``, ``/tokenize``, ``/pause``, ``/health``, ``/metrics`` and the rest stay open, so
#   the NetworkPolicy is what keeps strangers off them.
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
