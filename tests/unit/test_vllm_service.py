"""The vLLM service under Pulumi mocks: the objects a reviewer checks, schema and checkov."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pytest
from pydantic import SecretStr

from domain import catalog, topology
from domain.catalog import InstanceSpec
from domain.stack_config import StackConfig, load_stack_file, parse
from domain.versions import VLLM_IMAGE
from domain.vllm_args import DRAIN_SECONDS, PRESTOP_SECONDS
from tests.k8s_manifests import (
    checkov_binary,
    is_core,
    manifests,
    schema_errors,
    write_manifests,
)
from tests.pulumi_mocks import ROOT, Program, example_stacks, run_function, stack_config
from workloads.vllm_service import CHECKOV_SKIPS, VllmService, host_requests

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
SCALED_OBJECT = "kubernetes:keda.sh/v1alpha1:ScaledObject"


def _render(cfg: StackConfig, **kwargs: Any) -> Program:
    def body() -> None:
        provider = k8s.Provider("k8s", kubeconfig="{}")
        service = VllmService.from_config(
            "qwen", cfg, opts=pulumi.ResourceOptions(provider=provider)
        )
        for key, value in service.exports().items():
            pulumi.export(key, value)

    return run_function(body, **kwargs)


def _stack(name: str, **overrides: Any) -> StackConfig:
    values = stack_config(name)
    values.update({f"qwen-stress:{k}": v for k, v in overrides.items()})
    return parse(values)


@pytest.fixture(scope="module")
def dev() -> Program:
    return _render(load_stack_file(ROOT / "Pulumi.dev.yaml"))


@pytest.fixture(scope="module")
def sharded() -> Program:
    """Qwen2.5-7B in fp16 over two T4s of a g4dn.12xlarge, with a Hugging Face token."""
    cfg = _stack(
        "dev",
        gpu={"instanceType": "g4dn.12xlarge", "minNodes": 0, "maxNodes": 2},
        model={"name": "Qwen/Qwen2.5-7B-Instruct", "tensorParallel": 2},
        autoscaling={"minReplicas": 1, "maxReplicas": 4},
        budget={"maxHourlyUsd": 10},
    )
    return _render(cfg.model_copy(update={"hf_token": SecretStr("hf_secret")}))


def _pod(program: Program) -> dict[str, Any]:
    spec: dict[str, Any] = program.one(DEPLOYMENT).inputs["spec"]["template"]["spec"]
    return spec


def _container(program: Program) -> dict[str, Any]:
    containers = _pod(program)["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def test_deployment_runs_the_pinned_image_with_the_fit_arguments(dev: Program) -> None:
    container = _container(dev)
    assert container["image"] == VLLM_IMAGE
    args = container["args"]
    assert args[0] == "Qwen/Qwen2.5-7B-Instruct-AWQ"
    assert args[args.index("--dtype") + 1] == "half"
    assert args[args.index("--served-model-name") + 1] == "qwen2.5-7b-instruct"
    assert "--tensor-parallel-size" not in args
    assert container["ports"][0]["containerPort"] == topology.VLLM_PORT


def test_deployment_lands_on_gpu_nodes_with_one_gpu(dev: Program) -> None:
    pod = _pod(dev)
    assert pod["nodeSelector"] == {topology.ROLE_LABEL: topology.GPU_ROLE}
    assert {
        "key": topology.GPU_TAINT_KEY,
        "operator": "Equal",
        "value": topology.GPU_TAINT_VALUE,
        "effect": topology.GPU_TAINT_EFFECT,
    } in pod["tolerations"]
    resources = _container(dev)["resources"]
    assert resources["limits"][topology.GPU_RESOURCE] == "1"
    assert resources["requests"][topology.GPU_RESOURCE] == "1"
    assert resources["limits"]["memory"] == resources["requests"]["memory"]
    assert "cpu" not in resources["limits"]  # see CHECKOV_SKIPS["CKV_K8S_11"]


def _allocatable(instance: InstanceSpec) -> tuple[float, float]:
    """CPUs and GiB the kubelet of an EKS AL2023 node offers pods, less the DaemonSets' requests.

    kube-reserved as the EKS AMI computes it (amazon-eks-ami nodeadm, getCPUMillicoresToReserve:
    6% of the first core, 1% of the second, 0.5% of the next two, 0.25% of the rest;
    getMemoryMebibytesToReserve: 255 MiB + 11 MiB per pod, with max pods taken high: 110 below
    30 vCPUs, 737 above, the largest ENI-based figure), the 100 MiB eviction threshold, 5% of
    the EC2 memory figure that the OS never shows the kubelet, and 0.3 CPU / 0.5 GiB of
    DaemonSets.
    """
    cores = instance.vcpu
    reserved_cpu = 0.06 + 0.01 * (cores >= 2) + 0.005 * min(max(cores - 2, 0), 2)
    reserved_cpu += 0.0025 * max(cores - 4, 0)
    max_pods = 110 if cores < 30 else 737
    reserved_gib = (255 + 11 * max_pods + 100) / 1024
    return cores - reserved_cpu - 0.3, instance.memory_gib * 0.95 - reserved_gib - 0.5


@pytest.mark.parametrize(
    "instance", catalog.gpu_instances(), ids=lambda i: str(getattr(i, "instance_type", i))
)
def test_replicas_fit_the_node_beside_the_kubelet_and_daemonsets(instance: InstanceSpec) -> None:
    """A pod whose CPU or memory request the node cannot hold stays Pending beside a free GPU."""
    cpu, memory = _allocatable(instance)
    for gpus in (g for g in (1, 2, 4, 8) if g <= instance.gpu_count):
        replicas = instance.gpu_count // gpus
        cpu_each, memory_each = host_requests(instance, gpus)
        assert replicas * cpu_each <= cpu, (gpus, cpu_each, cpu)
        assert replicas * memory_each <= memory, (gpus, memory_each, memory)


def test_dev_replica_requests_most_of_a_t4_node(dev: Program) -> None:
    requests = _container(dev)["resources"]["requests"]
    assert (requests["cpu"], requests["memory"]) == ("3", "11Gi")  # g4dn.xlarge: 4 vCPU, 16 GiB


def test_tensor_parallel_takes_that_many_gpus_and_more_shared_memory(sharded: Program) -> None:
    container = _container(sharded)
    assert container["resources"]["limits"][topology.GPU_RESOURCE] == "2"
    args = container["args"]
    assert args[args.index("--tensor-parallel-size") + 1] == "2"
    shm = next(v for v in _pod(sharded)["volumes"] if v["name"] == "shm")
    assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "4Gi"}


def test_probes_allow_a_long_cold_start_then_watch_health(dev: Program) -> None:
    container = _container(dev)
    startup = container["startupProbe"]
    assert startup["httpGet"]["path"] == "/health"
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 15 * 60
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/health"
    assert (
        container["livenessProbe"]["failureThreshold"] * container["livenessProbe"]["periodSeconds"]
        < startup["failureThreshold"] * startup["periodSeconds"]
    )


def test_a_cold_start_is_not_a_failed_rollout(dev: Program) -> None:
    """Kubernetes (progress deadline) and Pulumi (await timeout) both wait out a cold start."""
    deployment = dev.one(DEPLOYMENT).inputs
    startup = _container(dev)["startupProbe"]
    startup_budget = startup["periodSeconds"] * startup["failureThreshold"]
    deadline = deployment["spec"]["progressDeadlineSeconds"]
    assert deadline >= startup_budget + 10 * 60  # plus a node from zero and the image pull
    assert int(deployment["metadata"]["annotations"]["pulumi.com/timeoutSeconds"]) == deadline
    assert "replicas" not in deployment["spec"]  # KEDA's


def test_scale_in_drains_in_flight_requests(dev: Program) -> None:
    container = _container(dev)
    assert container["lifecycle"]["preStop"] == {"sleep": {"seconds": PRESTOP_SECONDS}}
    args = container["args"]
    assert int(args[args.index("--shutdown-timeout") + 1]) == DRAIN_SECONDS
    assert _pod(dev)["terminationGracePeriodSeconds"] > PRESTOP_SECONDS + DRAIN_SECONDS
    strategy = dev.one(DEPLOYMENT).inputs["spec"]["strategy"]["rollingUpdate"]
    assert strategy == {"maxSurge": 1, "maxUnavailable": 0}


def test_security_context_is_tight(dev: Program) -> None:
    pod = _pod(dev)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] >= 10000
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False
    ctx = _container(dev)["securityContext"]
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    mounts = {m["mountPath"] for m in _container(dev)["volumeMounts"]}
    assert {"/dev/shm", "/tmp", "/home/vllm", "/models"} <= mounts
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["shm"]["emptyDir"]["medium"] == "Memory"


def test_api_key_comes_from_the_secret(dev: Program) -> None:
    env = {e["name"]: e for e in _container(dev)["env"]}
    ref = env["VLLM_API_KEY"]["valueFrom"]["secretKeyRef"]
    secret = dev.one("kubernetes:core/v1:Secret")
    assert ref["name"] == secret.inputs["metadata"]["name"]
    assert "HF_TOKEN" not in env
    assert dev.one("random:index/randomPassword:RandomPassword").inputs["length"] >= 32
    assert "vllmApiKey" in dev.secret_outputs
    assert dev.outputs["vllmApiKey"] == "m" * 48


def test_configured_api_key_replaces_the_generated_one() -> None:
    cfg = load_stack_file(ROOT / "Pulumi.dev.yaml").model_copy(
        update={"api_key": SecretStr("sk-chosen")}
    )
    program = _render(cfg)
    assert not program.of_type("random:index/randomPassword:RandomPassword")
    assert program.outputs["vllmApiKey"] == "sk-chosen"
    assert "vllmApiKey" in program.secret_outputs


def test_hf_token_is_mounted_from_the_secret(sharded: Program) -> None:
    env = {e["name"]: e for e in _container(sharded)["env"]}
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"]["key"] == "hf-token"


def test_service_is_cluster_internal_on_the_vllm_port(dev: Program) -> None:
    spec = dev.one("kubernetes:core/v1:Service").inputs["spec"]
    assert spec["type"] == "ClusterIP"
    assert spec["ports"][0]["port"] == topology.VLLM_PORT
    assert spec["selector"] == dev.one(DEPLOYMENT).inputs["spec"]["selector"]["matchLabels"]


def test_scaled_object_targets_the_deployment_on_vllm_queue_metrics(dev: Program) -> None:
    spec = dev.one(SCALED_OBJECT).inputs["spec"]
    assert spec["scaleTargetRef"]["name"] == dev.one(DEPLOYMENT).inputs["metadata"]["name"]
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (1, 5)
    queries = [t["metadata"]["query"] for t in spec["triggers"]]
    assert all('model_name="qwen2.5-7b-instruct"' in q for q in queries)
    assert all(q.endswith(" or vector(0)") and q.startswith("sum(") for q in queries)


def test_service_monitor_scrapes_metrics_for_the_prometheus_release(dev: Program) -> None:
    monitor = dev.one("kubernetes:monitoring.coreos.com/v1:ServiceMonitor").inputs
    assert monitor["metadata"]["labels"]["release"] == topology.PROMETHEUS_RELEASE
    endpoint = monitor["spec"]["endpoints"][0]
    assert (endpoint["port"], endpoint["path"]) == ("http", "/metrics")
    service_labels = dev.one("kubernetes:core/v1:Service").inputs["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service_labels.items()


def test_disruption_budget_lets_one_replica_go_at_a_time(dev: Program) -> None:
    spec = dev.one("kubernetes:policy/v1:PodDisruptionBudget").inputs["spec"]
    assert spec["maxUnavailable"] == 1


def test_namespace_is_labelled_and_enforces_restricted_pods(dev: Program) -> None:
    labels = dev.one("kubernetes:core/v1:Namespace").inputs["metadata"]["labels"]
    assert labels[topology.ROLE_LABEL] == topology.GPU_ROLE
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_outputs_carry_what_the_runner_and_reports_read(dev: Program) -> None:
    out = dev.outputs
    assert out["vllmServiceHost"] == "vllm.vllm.svc.cluster.local"
    assert out["vllmServicePort"] == topology.VLLM_PORT
    assert out["servedModelName"] == "qwen2.5-7b-instruct"
    assert out["gpuType"] == "T4"
    assert out["kvCacheTokens"] >= 8192
    assert 1 <= out["maxConcurrentSequences"] <= out["maxNumSeqs"]
    assert out["hourlyUsdPerReplica"] == pytest.approx(0.526)


def test_every_object_is_created_with_the_given_provider(dev: Program) -> None:
    for resource in dev.resources:
        if resource.type.startswith("kubernetes:"):
            assert resource.provider is not None and "k8s" in resource.provider


@pytest.mark.parametrize("variant", ["dev", "sharded"])
def test_core_objects_validate_against_the_kubernetes_schema(
    variant: str, request: pytest.FixtureRequest
) -> None:
    program: Program = request.getfixturevalue(variant)
    core = [m for m in manifests(program) if is_core(m)]
    assert {m["kind"] for m in core} >= {
        "Namespace",
        "Secret",
        "ServiceAccount",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "NetworkPolicy",
    }
    version = load_stack_file(ROOT / "Pulumi.dev.yaml").cluster.kubernetes_version
    assert [e for m in core for e in schema_errors(m, version)] == []


@pytest.fixture(scope="module")
def checkov_report(
    dev: Program, sharded: Program, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """One checkov run over the dev, a10g and sharded renders (checkov takes seconds to start)."""
    root = tmp_path_factory.mktemp("checkov")
    programs = {"dev": dev, "sharded": sharded}
    for stack in example_stacks():
        if stack != "dev":
            programs[stack] = _render(load_stack_file(ROOT / f"Pulumi.{stack}.yaml"))
    for name, program in programs.items():
        write_manifests(manifests(program), root / name)
    done = subprocess.run(
        [checkov_binary(), "-d", str(root), "--framework", "kubernetes", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    report = json.loads(done.stdout)
    result: dict[str, Any] = report[0] if isinstance(report, list) else report
    return result


def test_checkov_finds_nothing_that_is_not_skipped_with_a_reason(
    checkov_report: dict[str, Any],
) -> None:
    results = checkov_report["results"]
    failed = [(c["check_id"], c["resource"]) for c in results["failed_checks"]]
    assert failed == []
    assert checkov_report["summary"]["parsing_errors"] == 0
    skipped = {c["check_id"] for c in results["skipped_checks"]}
    # Every skip is used (no stale excuses) and carries its reason into the report.
    assert skipped == set(CHECKOV_SKIPS)
    for check in results["skipped_checks"]:
        assert check["check_result"]["suppress_comment"] == CHECKOV_SKIPS[check["check_id"]]
    assert checkov_report["summary"]["passed"] > 50
