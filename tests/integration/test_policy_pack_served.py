"""The policy pack served exactly as ``pulumi preview --policy-pack policies`` starts it.

The engine (``pkg/resource/plugin/analyzer_plugin.go``, ``NewPolicyAnalyzer``) runs the Python
shim ``pulumi-analyzer-policy-python <engine address> .`` with the pack's directory as working
directory; the shim runs ``python -u -m pulumi.policy <engine address> .``. The stack's config
travels in ``PULUMI_CONFIG`` (JSON; structured values as JSON text) beside ``PULUMI_PROJECT``,
``PULUMI_STACK``, ``PULUMI_DRY_RUN`` and ``PULUMI_ORGANIZATION``. The pack prints the port of its
Analyzer gRPC service on 127.0.0.1 on stdout; the engine then calls ``Handshake`` (a Python pack
answers UNIMPLEMENTED, which the engine accepts), ``ConfigureStack``, ``GetAnalyzerInfo``,
``Configure`` (only with a ``--policy-pack-config``), ``Analyze`` per resource and
``AnalyzeStack``. pulumi.policy never dials the engine address (its log calls fall back to
stderr), so no Engine service is needed; the address given is one nothing listens on.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

from domain import topology
from policies import pack
from tests.policy_harness import (
    LEVELS,
    POLICY_DIR,
    EngineResource,
    analyze_request,
    analyze_stack_request,
    configure_request,
    engine_config,
    read_config,
)
from tests.pulumi_mocks import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DEADLINE_S = 60
"""Bound of every wait: the pack's start (imports) and each call."""
STACK = "dev"
TAGS = {"owner": "platform-team", "cost-center": "llm", "project": "qwen-stress", "stack": STACK}
STACK_CONFIG = engine_config({"aws:region": "us-east-1", "qwen-stress:budget": {"maxHourlyUsd": 4}})


def _served_port(proc: subprocess.Popen[bytes], stderr: Path) -> int:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], DEADLINE_S)
    line = proc.stdout.readline().decode() if ready else ""
    assert line.strip().isdigit(), (
        f"the pack printed {line!r}, not its port; stderr:\n{stderr.read_text()}"
    )
    return int(line)


@pytest.fixture(scope="module")
def analyzer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[analyzer_pb2_grpc.AnalyzerStub]:
    stderr = tmp_path_factory.mktemp("pack") / "stderr.txt"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PULUMI_CONFIG": json.dumps(STACK_CONFIG),
        "PULUMI_PROJECT": "qwen-stress",
        "PULUMI_STACK": STACK,
        "PULUMI_DRY_RUN": "true",
        "PULUMI_ORGANIZATION": "acme",
    }
    with stderr.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-u", "-m", "pulumi.policy", "127.0.0.1:9", "."],
            cwd=POLICY_DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
        )
    try:
        port = _served_port(proc, stderr)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=DEADLINE_S)
            yield analyzer_pb2_grpc.AnalyzerStub(channel)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _diagnostics(response: analyzer_pb2.AnalyzeResponse) -> list[tuple[str, str, str]]:
    return [(d.policyName, LEVELS[d.enforcementLevel], d.message) for d in response.diagnostics]


def _provider() -> EngineResource:
    return EngineResource(
        "pulumi:providers:aws",
        "platform-aws",
        {"region": "us-east-1", "defaultTags": json.dumps({"tags": TAGS})},
        stack=STACK,
    )


def gpu_group(max_size: float, instance_type: str = "g4dn.xlarge") -> EngineResource:
    props: dict[str, Any] = {
        "clusterName": "qwen-dev-dev",
        "amiType": "AL2023_x86_64_NVIDIA",
        "instanceTypes": [instance_type],
        "capacityType": "ON_DEMAND",
        "scalingConfig": {"minSize": 1, "maxSize": max_size, "desiredSize": 1},
        "labels": {topology.ROLE_LABEL: topology.GPU_ROLE},
        "taints": [{"key": topology.GPU_TAINT_KEY, "value": "true", "effect": "NO_SCHEDULE"}],
        "launchTemplate": {"id": "lt-0123", "version": "1"},
    }
    return EngineResource(
        "aws:eks/nodeGroup:NodeGroup", "nodes-gpu", props, stack=STACK, provider=_provider()
    )


def test_the_engine_s_opening_calls(analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    try:
        analyzer.Handshake(
            analyzer_pb2.AnalyzerHandshakeRequest(engine_address="127.0.0.1:9"),
            timeout=DEADLINE_S,
        )
    except grpc.RpcError as err:
        assert err.code() == grpc.StatusCode.UNIMPLEMENTED  # what the engine falls back on
    analyzer.ConfigureStack(
        analyzer_pb2.AnalyzerStackConfigureRequest(
            stack=STACK, project="qwen-stress", organization="acme", dry_run=True
        ),
        timeout=DEADLINE_S,
    )
    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty(), timeout=DEADLINE_S)
    assert info.name == pack.NAME and info.supportsConfig
    served = {p.name: LEVELS[p.enforcementLevel] for p in info.policies}
    expected = {p.name: (p.enforcement_level or pack.DEFAULT_LEVEL).value for p in pack.POLICIES}
    assert served == expected
    budget = next(p for p in info.policies if p.name == "gpu-budget")
    assert budget.configSchema.properties["maxHourlyUsd"]["default"] == 25


def test_analyze_reads_the_stack_budget_from_the_engine_s_config(
    analyzer: analyzer_pb2_grpc.AnalyzerStub,
) -> None:
    within = analyzer.Analyze(analyze_request(gpu_group(5)), timeout=DEADLINE_S)
    assert _diagnostics(within) == []
    over = _diagnostics(analyzer.Analyze(analyze_request(gpu_group(10)), timeout=DEADLINE_S))
    assert [(name, level) for name, level, _ in over] == [("gpu-budget", "mandatory")]
    assert "$5.26/h, above $4.00/h (the stack's qwen-stress:budget.maxHourlyUsd)" in over[0][2]


def test_analyze_stack_relates_resources(analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    deployment = EngineResource(
        "kubernetes:apps/v1:Deployment",
        "qwen-deployment",
        {
            "metadata": {"name": "vllm", "namespace": "vllm"},
            "spec": {"template": {"spec": {"containers": []}}},
        },
        stack=STACK,
    )
    response = analyzer.AnalyzeStack(analyze_stack_request([deployment]), timeout=DEADLINE_S)
    (diagnostic,) = response.diagnostics
    assert diagnostic.policyName == "k8s-namespace-network-policy"
    assert diagnostic.urn == deployment.urn


def test_configure_applies_a_policy_pack_config_file(
    analyzer: analyzer_pb2_grpc.AnalyzerStub,
) -> None:
    # One g5.12xlarge ($5.67/h) is over the stack's $4 budget, and allowed by the pack's
    # default list; the preview config allows single-GPU types only.
    multi_gpu = analyze_request(gpu_group(1, "g5.12xlarge"))
    before = {d.policyName for d in analyzer.Analyze(multi_gpu, timeout=DEADLINE_S).diagnostics}
    assert before == {"gpu-budget"}
    analyzer.Configure(configure_request(read_config("preview")), timeout=DEADLINE_S)
    try:
        after = analyzer.Analyze(multi_gpu, timeout=DEADLINE_S).diagnostics
        assert {d.policyName for d in after} == {"gpu-budget", "gpu-instance-type"}
    finally:  # back to the pack's defaults for whatever runs next on this server
        analyzer.Configure(configure_request({}), timeout=DEADLINE_S)
