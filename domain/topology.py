"""Names, labels and taints the platform and the workloads agree on.

The node groups set these, the vLLM Deployment selects on them, the NetworkPolicy and KEDA
refer to them; one module so a rename cannot leave half the cluster behind.
"""

from __future__ import annotations

ROLE_LABEL = "qwen-stress.io/role"
"""Node label (and namespace label) that says what a node or namespace is for."""
GPU_ROLE = "gpu"
SYSTEM_ROLE = "system"
LOADTEST_ROLE = "loadtest"
"""Value of ``ROLE_LABEL`` on every load-test namespace; the vLLM NetworkPolicy admits them."""
LOADGEN_ROLE = "loadgen"
"""Value of ``ROLE_LABEL`` on the load-test stack's own nodes (Locust master and workers)."""
LOADGEN_TAINT_KEY = "qwen-stress.io/loadgen"
LOADGEN_TAINT_VALUE = "true"
LOADGEN_TAINT_EFFECT = "NoSchedule"
"""Keeps everything but Locust off the load-generator nodes."""

LOADTEST_PROJECT = "qwen-stress-loadtest"
"""Pulumi project of the ephemeral load-test stacks (one stack per run, named after the run)."""
EXPIRES_ANNOTATION = "qwen-stress.io/expires-at"
"""On a load-test namespace: when (ISO 8601, UTC) it may be reaped whatever its stack says."""

COST_TAGS = ("owner", "cost-center", "project", "stack")
"""Tags every AWS resource of every stack carries (provider default tags, launch templates)."""
RUN_ID_TAG = "run-id"
"""The extra cost tag of a load-test stack's resources: the run they were made for."""

ACCELERATOR_LABEL = "k8s.amazonaws.com/accelerator"
"""The label the Cluster Autoscaler on AWS reads to know a node's GPU will appear later."""

GPU_RESOURCE = "nvidia.com/gpu"
GPU_TAINT_KEY = "nvidia.com/gpu"
GPU_TAINT_VALUE = "true"
GPU_TAINT_EFFECT = "NoSchedule"

MONITORING_NAMESPACE = "monitoring"
PROMETHEUS_RELEASE = "kube-prometheus-stack"
PROMETHEUS_SERVICE = f"{PROMETHEUS_RELEASE}-prometheus"
"""The chart's Prometheus object and its Service share this name (kube-prometheus-stack 88.5.3
templates: the release name, then ``-prometheus``)."""
PROMETHEUS_PORT = 9090
PROMETHEUS_URL = f"http://{PROMETHEUS_SERVICE}.{MONITORING_NAMESPACE}.svc:{PROMETHEUS_PORT}"
"""In-cluster Prometheus; KEDA's triggers and the load-test runner query it."""
PROMETHEUS_SCRAPE_INTERVAL_S = 15
"""kube-prometheus-stack's global scrape interval (kube-state-metrics is scraped this often)."""
PROMETHEUS_POD_LABELS = {
    "app.kubernetes.io/name": "prometheus",
    "operator.prometheus.io/name": PROMETHEUS_SERVICE,
}
"""Labels the Prometheus operator (v0.93, ``makeSelectorLabels``) puts on the Prometheus server's
pods, and on no other pod of the chart: the one pod of ``monitoring`` that scrapes vLLM."""

KEDA_NAMESPACE = "keda"
VLLM_NAMESPACE = "vllm"
VLLM_DEPLOYMENT = "vllm"
"""Name of the vLLM Deployment (and its Service, ServiceMonitor and ScaledObject)."""
VLLM_PORT = 8000

FLEET_STATUS_PATH = "/fleet/status"
"""Where the local autoscaling twin reports replicas, nodes and queue (the load test polls it)."""
