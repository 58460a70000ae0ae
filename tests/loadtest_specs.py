"""Load-test specs as the orchestrator would build them from a deployed platform stack."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from domain.stack_config import TagsConfig, load_stack_file
from loadtest import workload
from loadtest.cloud import delivery
from loadtest.cloud.spec import CodeImage, CodeWheel, LoadGenOptions, LoadTestSpec, PlatformOutputs
from loadtest.cluster_target import ClusterFleet
from loadtest.payload import RunPayload
from loadtest.run_options import RunOptions

API_KEY = "sk-" + "q" * 45
KUBECONFIG = '{"apiVersion": "v1", "kind": "Config", "clusters": [{"name": "kc-marker"}]}'
RUN_ID = "20260101-120000-capacity"
IMAGE = "ghcr.io/qwen-stress/qwen-stress:0.1.0@sha256:" + "ab" * 32
LOCK = "locust==2.47.0 \\\n    --hash=sha256:" + "cd" * 32 + "\n"
WHEEL = CodeWheel(filename="qwen_stress-0.1.0-py3-none-any.whl", content=b"PK\x03\x04 wheel bytes")


def platform(**overrides: Any) -> PlatformOutputs:
    values: dict[str, Any] = {
        "stack": "dev",
        "cluster_name": "qwen-stress-dev",
        "region": "us-east-1",
        "kubeconfig": KUBECONFIG,
        "kubernetes_version": "1.35",
        "node_role_arn": "arn:aws:iam::123456789012:role/nodes-node-0a1b2c3",
        "private_subnet_ids": ("subnet-0aaa", "subnet-0bbb"),
        "system_node_selector": {"qwen-stress.io/role": "system"},
        "vllm_base_url": "http://vllm.vllm.svc.cluster.local:8000/v1",
        "vllm_namespace": "vllm",
        "vllm_port": 8000,
        "served_model_name": "Qwen/Qwen2.5-7B-Instruct-AWQ",
        "api_key": API_KEY,
        "prometheus_url": "http://kube-prometheus-stack-prometheus.monitoring.svc:9090",
        "tags": TagsConfig(owner="ml-platform", cost_center="cc-1234", extra={"team": "infer"}),
    }
    return PlatformOutputs(**(values | overrides))


def spec(
    *, peak_users: int = 400, code: CodeImage | CodeWheel | None = None, **overrides: Any
) -> LoadTestSpec:
    loadgen = overrides.pop("loadgen", LoadGenOptions())
    values: dict[str, Any] = {
        "run_id": RUN_ID,
        "platform": platform(),
        "loadgen": loadgen,
        "peak_users": peak_users,
        "plan_seconds": 3600.0,
        "code": code or CodeImage(image=IMAGE),
        "payload": '{"plan": "capacity", "maxUsers": 400}',
        "expires_at": datetime(2026, 1, 1, 14, 15, tzinfo=UTC),
    }
    return LoadTestSpec(**(values | overrides))


def run_payload() -> RunPayload:
    """A capacity plan's payload for the dev stack, as the CLI writes it for the pods."""
    stack = load_stack_file(delivery.source_root() / "Pulumi.dev.yaml")
    return RunPayload(
        options=RunOptions(
            stack="dev", plan="capacity", baseline_users=10, max_users=50, step_users=20
        ),
        workload=workload.load(None).with_max_tokens(16),
        cluster=ClusterFleet.from_stack(stack),
        command=["qwen-stress", "run", "--stack", "dev"],
    )
