"""What the load-test pods and the code that renders them agree on: roles, ports, paths, env.

The manifests (``loadtest.cloud.manifests``) write these names into the containers; the in-pod
entrypoint (``python -m loadtest.pod``) reads them back; the rehearsal maps the paths onto local
directories. One module, so a rename cannot leave a pod reading a variable nobody sets. Pure
constants: the pod imports this without Pulumi.
"""

from __future__ import annotations

from typing import Literal

Role = Literal["master", "worker"]
ROLES: tuple[Role, ...] = ("master", "worker")

ENTRYPOINT = ("python", "-m", "loadtest.pod")
"""Every container's command, followed by the role (``master`` or ``worker``) or ``check``."""

UID = 10001
"""Non-root user of every load-test container (above 10000: no clash with a host account)."""

LOCUST_PORT = 5557
"""Locust's master-worker port (ZeroMQ); workers connect to it through the master Service."""
MASTER_API_PORT = 8080
"""The master's own HTTP API (status, records since an offset, stop), reached by the CLI
through a Kubernetes port-forward; nothing in the cluster is allowed to call it."""
MASTER_SERVICE = "locust-master"
"""Name of the master's ClusterIP Service, so workers find it at a fixed DNS name."""

PAYLOAD_DIR = "/etc/qwen-stress/run"
PAYLOAD_FILE = "run.json"
"""The run's plan, workload and options (opaque JSON, mounted from a ConfigMap)."""
RUN_DIR = "/var/lib/qwen-stress/run"
"""The master writes the run directory here (an emptyDir); the CLI copies it home as it goes."""
TMP_DIR = "/tmp"
"""Scratch and ``HOME`` (an emptyDir: the root filesystem is read-only)."""
BOOTSTRAP_DIR = "/opt/qwen-stress/bootstrap"
"""No-registry delivery: the project's wheel and the hashed requirements, from a ConfigMap."""
SITE_DIR = "/opt/qwen-stress/site"
"""No-registry delivery: where the init container installs the code (on ``PYTHONPATH``)."""

PROJECT_REQUIREMENTS = "project.txt"
"""In ``BOOTSTRAP_DIR``: the wheel's file name with its sha256, for ``pip --require-hashes``."""
LOCK_REQUIREMENTS = "pod-requirements.txt"
"""In ``BOOTSTRAP_DIR``: the committed lock of every third-party package the pods import."""

ENV_RUN_ID = "QWEN_STRESS_RUN_ID"
ENV_PAYLOAD = "QWEN_STRESS_PAYLOAD"
"""Path of the run's JSON payload."""
ENV_VLLM_URL = "QWEN_STRESS_VLLM_URL"
"""vLLM's OpenAI base URL inside the cluster (``http://vllm.vllm.svc.cluster.local:8000/v1``)."""
ENV_MODEL = "QWEN_STRESS_MODEL"
"""The served model name to request."""
ENV_MASTER_HOST = "QWEN_STRESS_MASTER_HOST"
ENV_MASTER_PORT = "QWEN_STRESS_MASTER_PORT"
ENV_WORKERS = "QWEN_STRESS_WORKERS"
"""Master only: how many worker processes to wait for."""
ENV_API_PORT = "QWEN_STRESS_API_PORT"
ENV_PROMETHEUS_URL = "QWEN_STRESS_PROMETHEUS_URL"
ENV_RUN_DIR = "QWEN_STRESS_RUN_DIR"
ENV_BIND_HOST = "QWEN_STRESS_BIND_HOST"
"""Master only, optional: the address its Locust and API ports listen on (default: every
interface of the pod, which the NetworkPolicy guards). The rehearsal sets ``127.0.0.1``."""
ENV_JOB_INDEX = "JOB_COMPLETION_INDEX"
"""Set by Kubernetes in each pod of an Indexed Job (the worker's number); the rehearsal sets it."""

WORKER_WAIT_S = 300.0
"""How long the master waits for every worker to connect: on fresh nodes a worker pod pulls its
image or installs the wheel (up to 3 minutes) before it starts."""
