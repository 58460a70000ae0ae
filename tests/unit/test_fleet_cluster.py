"""The twin's cluster in virtual time: pods wait for GPUs, nodes boot, scale out, then in.

No event loop and no sleeping: the control plane is stepped with an explicit clock and a
scripted load, so every instant below is exact.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from domain import catalog
from domain.autoscaling import AutoscalingSpec, ScalingRules
from domain.durations import parse_duration
from domain.stack_config import ClusterAutoscalerConfig, ConfigError, GpuConfig, load_stack_file
from domain.vllm_metrics import RUNNING as RUNNING_METRIC
from tests.pulumi_mocks import ROOT, Program, run_program, stack_config
from tests.unit.conftest import example
from twin.fleet.cli import fleet_spec
from twin.fleet.control_plane import ControlPlane
from twin.fleet.fleet import Fleet
from twin.fleet.fleet_spec import FleetSpec
from twin.fleet.sim_cluster import NodePool, Pod, PodState, SimCluster
from twin.fleet.timings import Timings, timings

RELEASE = "kubernetes:helm.sh/v3:Release"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"

MODEL = "Qwen/Qwen2.5-7B-Instruct-AWQ"
TIMINGS = timings(MODEL, ClusterAutoscalerConfig())


class Scenario:
    """A control plane over a cluster, a scripted number of running requests, a virtual clock."""

    def __init__(
        self,
        spec: AutoscalingSpec,
        pool: NodePool,
        load: Any,
        timings: Timings = TIMINGS,
        gpus_per_replica: int = 1,
    ) -> None:
        self.now = 0.0
        self.load = load
        self.cluster = SimCluster(pool, gpus_per_replica, timings, spec.min_replicas, now=0.0)
        self.control = ControlPlane(spec, self.cluster, timings, self._metrics)
        self.control.tick(0.0)
        self.served: dict[str, float] = {}
        self.history: list[dict[str, float]] = []

    def _metrics(self) -> dict[str, float]:
        return {RUNNING_METRIC: float(self.load(self.now))}

    def run(self, until: float, step: float = 5.0) -> None:
        while self.now < until:
            self.now += step
            changes = self.control.tick(self.now)
            for pod in changes.started:
                self.served[pod.name] = pod.ready_at or self.now
            for pod in changes.stopping:  # replicas drain at once in this test
                self.cluster.release(pod, self.now)
            self.history.append(
                {
                    "t": self.now,
                    "desired": self.control.replicas,
                    "ready": self.cluster.count(PodState.READY),
                    "nodes": len(self.cluster.nodes),
                }
            )

    def first(self, key: str, value: float, after: float = 0.0) -> float:
        return next(h["t"] for h in self.history if h[key] == value and h["t"] > after)


def test_load_scales_replicas_and_nodes_out_then_in() -> None:
    spec = AutoscalingSpec(min_replicas=1, max_replicas=4, target_running_per_replica=24)
    s = Scenario(spec, NodePool(1, 0, 4), lambda t: 100 if 60 <= t < 1500 else 5)
    s.run(4000)
    t = TIMINGS
    assert max(h["desired"] for h in s.history) == 4
    # The first sync after the load arrives (t = 60) asks for 3 (+2 pods per 60 s), then 4.
    assert s.first("desired", 3) == 60 and s.first("desired", 4) == 120
    # New pods cannot run before a node boots, the image is pulled and vLLM starts.
    cold = t.node_boot_s + t.image_pull_s + t.pod_start_s
    assert s.served["vllm-1"] == pytest.approx(60 + cold)
    assert s.first("ready", 4) >= 120 + cold
    assert s.first("nodes", 4) <= 130
    # Down one replica per 120 s once the 600 s window has forgotten the last high proposal.
    first_down = s.first("desired", 3, after=1500)
    assert 1500 + 600 - 15 <= first_down <= 1500 + 600 + 15
    assert s.first("desired", 1, after=1500) - first_down == pytest.approx(240, abs=5)
    # Empty nodes go after the unneeded time, down to the pool's minimum of one warm node.
    assert s.first("nodes", 1, after=1500) >= s.first("desired", 1, after=1500) + t.ca_unneeded_s
    assert s.history[-1] == {"t": 4000, "desired": 1, "ready": 1, "nodes": 1}
    # Billed GPU time covers booting nodes; serving time only ready replicas.
    assert s.cluster.gpu_seconds > s.cluster.replica_seconds > 4000


def _pods(cluster: SimCluster, state: PodState) -> list[Pod]:
    return [p for p in cluster.pods if p.state is state]


def test_a_pending_pod_waits_for_a_gpu_and_a_node_pulls_the_image_once() -> None:
    cluster = SimCluster(NodePool(gpus_per_node=4, min_nodes=1, max_nodes=2), 1, TIMINGS, 2, 0.0)
    cluster.scale(4, 100.0)
    warm = _pods(cluster, PodState.STARTING)
    assert [p.ready_at for p in warm] == [100 + TIMINGS.pod_start_s] * 2  # image already there
    cluster.scale(7, 200.0)
    assert len(_pods(cluster, PodState.PENDING)) == 3
    cluster.scan(205.0)
    assert len(cluster.nodes) == 2 and cluster.ready_nodes == 1
    cluster.scan(215.0)  # the booting node's four slots already cover the three pending pods
    assert len(cluster.nodes) == 2
    cluster.advance(205 + TIMINGS.node_boot_s)
    started = _pods(cluster, PodState.STARTING)
    new = [p for p in started if p.node is cluster.nodes[1]]
    image = 205 + TIMINGS.node_boot_s + TIMINGS.image_pull_s
    assert [p.ready_at for p in new] == [image + TIMINGS.pod_start_s] * 3


def test_nodes_stay_within_the_pool_bounds() -> None:
    cluster = SimCluster(NodePool(gpus_per_node=1, min_nodes=2, max_nodes=3), 1, TIMINGS, 1, 0.0)
    assert len(cluster.nodes) == 2
    cluster.scale(5, 0.0)
    cluster.scan(10.0)
    assert len(cluster.nodes) == 3
    cluster.advance(10_000.0)
    assert cluster.count(PodState.READY) == 3 and cluster.count(PodState.PENDING) == 2
    cluster.scale(1, 10_000.0)
    for pod in _pods(cluster, PodState.TERMINATING):
        cluster.release(pod, 10_000.0)
    for at in range(10_010, 20_000, 10):
        cluster.scan(float(at))
    assert len(cluster.nodes) == 2


def test_no_node_goes_within_the_delay_after_a_scale_up() -> None:
    slow = replace(TIMINGS, ca_unneeded_s=60.0, ca_delay_after_add_s=900.0)
    cluster = SimCluster(NodePool(gpus_per_node=1, min_nodes=0, max_nodes=3), 1, slow, 1, 0.0)
    cluster.scale(2, 0.0)
    cluster.scan(10.0)  # scale-up at t = 10
    cluster.scale(1, 20.0)  # the new pod goes before it ever ran; its node will sit empty
    for at in range(20, 900, 10):
        cluster.scan(float(at))
    assert len(cluster.nodes) == 2
    cluster.scan(910.0)
    assert len(cluster.nodes) == 1


def test_scale_in_deletes_pending_then_starting_then_the_newest_ready_pod() -> None:
    cluster = SimCluster(NodePool(gpus_per_node=1, min_nodes=0, max_nodes=4), 1, TIMINGS, 2, 0.0)
    cluster.scale(3, 10.0)
    cluster.scan(10.0)
    cluster.advance(10 + TIMINGS.node_boot_s + TIMINGS.image_pull_s + TIMINGS.pod_start_s)
    cluster.scale(5, 1000.0)  # no free GPU: vllm-3 and vllm-4 pending, room for one more node
    cluster.scan(1000.0)
    cluster.advance(1000 + TIMINGS.node_boot_s)  # vllm-3 starting, vllm-4 still pending
    assert {p.name: p.state for p in cluster.pods} == {
        "vllm-0": PodState.READY,
        "vllm-1": PodState.READY,
        "vllm-2": PodState.READY,
        "vllm-3": PodState.STARTING,
        "vllm-4": PodState.PENDING,
    }
    cluster.scale(4, 1100.0)
    assert "vllm-4" not in {p.name for p in cluster.pods}
    cluster.scale(3, 1100.0)
    assert "vllm-3" not in {p.name for p in cluster.pods}
    cluster.scale(2, 1100.0)
    assert [p.name for p in _pods(cluster, PodState.TERMINATING)] == ["vllm-2"]
    assert cluster.take_changes().stopping[-1].name == "vllm-2"


def _metric(query: str) -> str:
    """The vLLM gauge a trigger's PromQL sums (``sum(vllm:x{...}) or vector(0)``)."""
    match = re.fullmatch(r"sum\((vllm:\w+)\{[^}]*\}\) or vector\(0\)", query)
    assert match, query
    return match[1]


def _registered(program: Program) -> dict[str, Any]:
    """What the platform program registers for scaling: ScaledObject, node group, autoscaler."""
    scaled = program.one("kubernetes:keda.sh/v1alpha1:ScaledObject").inputs["spec"]
    behavior = scaled["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    monitor = program.one("kubernetes:monitoring.coreos.com/v1:ServiceMonitor").inputs
    group = program.one("aws:eks/nodeGroup:NodeGroup", "gpu").inputs
    autoscaler = program.one(RELEASE, "cluster-autoscaler").inputs["values"]["extraArgs"]
    container = program.one(DEPLOYMENT).inputs["spec"]["template"]["spec"]["containers"][0]
    return {
        "replicas": (scaled["minReplicaCount"], scaled["maxReplicaCount"]),
        "triggers": {
            t["name"]: (
                _metric(t["metadata"]["query"]),
                t["metricType"],
                float(t["metadata"]["threshold"]),
            )
            for t in scaled["triggers"]
        },
        "scale_up": behavior["scaleUp"],
        "scale_down": behavior["scaleDown"],
        "scrape_s": parse_duration(monitor["spec"]["endpoints"][0]["interval"]),
        "gpus_per_replica": int(container["resources"]["limits"]["nvidia.com/gpu"]),
        "gpus_per_node": catalog.instance(group["instanceTypes"][0]).gpu_count,
        "nodes": (group["scalingConfig"]["minSize"], group["scalingConfig"]["maxSize"]),
        "scale_down_unneeded_s": parse_duration(autoscaler["scale-down-unneeded-time"]),
        "scale_down_delay_after_add_s": parse_duration(autoscaler["scale-down-delay-after-add"]),
    }


def _rules(rules: ScalingRules) -> dict[str, Any]:
    return {
        "stabilizationWindowSeconds": rules.stabilization_window_seconds,
        "selectPolicy": rules.select_policy,
        "policies": [
            {"type": p.type, "value": p.value, "periodSeconds": p.period_seconds}
            for p in rules.policies
        ],
    }


def _running(fleet: Fleet) -> dict[str, Any]:
    """The same facts, read from what the twin's control loops and cluster were built with."""
    spec = fleet.control.hpa.spec
    pool = fleet.cluster.pool
    return {
        "replicas": (spec.min_replicas, spec.max_replicas),
        "triggers": {
            t.name: (t.metric, "AverageValue", t.target_per_replica) for t in spec.triggers()
        },
        "scale_up": _rules(spec.scale_up),
        "scale_down": _rules(spec.scale_down),
        "scrape_s": spec.scrape_interval_seconds,
        "gpus_per_replica": pool.gpus_per_node // fleet.cluster.slots_per_node,
        "gpus_per_node": pool.gpus_per_node,
        "nodes": (pool.min_nodes, pool.max_nodes),
        "scale_down_unneeded_s": fleet.cluster.timings.ca_unneeded_s,
        "scale_down_delay_after_add_s": fleet.cluster.timings.ca_delay_after_add_s,
    }


def _stack_file(tmp_path: Path, autoscaling: dict[str, Any]) -> Path:
    document = {"config": {**stack_config("dev"), "qwen-stress:autoscaling": autoscaling}}
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "autoscaling",
    [
        None,  # the dev stack as shipped
        {
            "minReplicas": 2,
            "maxReplicas": 5,
            "targetRunningPerReplica": 12,
            "targetWaitingPerReplica": 2.5,
            "pollingIntervalSeconds": 7,
            "scaleDown": {
                "stabilizationWindowSeconds": 300,
                "selectPolicy": "Min",
                "policies": [
                    {"type": "Percent", "value": 50, "periodSeconds": 60},
                    {"type": "Pods", "value": 2, "periodSeconds": 60},
                ],
            },
        },
    ],
)
def test_the_twin_runs_the_scaled_object_the_program_registers(
    tmp_path: Path, autoscaling: dict[str, Any] | None
) -> None:
    """Same stack settings: what the cluster would scale by is what the twin scales by."""
    if autoscaling is None:
        config, program = ROOT / "Pulumi.dev.yaml", example("dev")
    else:
        config = _stack_file(tmp_path, autoscaling)
        program = run_program("dev", overrides={"qwen-stress:autoscaling": autoscaling})
    # The fleet `qwen-stress run --config` starts, built but not serving.
    fleet = Fleet(fleet_spec(None, None, config))
    assert _running(fleet) == _registered(program)


def test_a_lower_running_target_gives_more_replicas_in_the_twin(tmp_path: Path) -> None:
    def replicas(target: float) -> int:
        spec = fleet_spec(None, None, _stack_file(tmp_path, {"targetRunningPerReplica": target}))
        scenario = Scenario(spec.autoscaling, spec.pool, lambda _t: 48, timings=spec.timings)
        scenario.run(600)
        return scenario.control.replicas

    assert (replicas(24), replicas(12)) == (2, 4)


def test_a_stack_without_gpus_is_refused_by_an_error_not_an_assert() -> None:
    """The check is an error, not an ``assert`` that ``python -O`` would remove."""
    stack = load_stack_file(ROOT / "Pulumi.dev.yaml")
    # Validation refuses a GPU-less instance type; a config built around it must not slip by.
    cpu_only = stack.model_copy(
        update={"gpu": GpuConfig.model_construct(instance_type="c6i.large", min_nodes=0)}
    )
    with pytest.raises(ConfigError, match=r"qwen-stress:gpu\.instanceType: c6i\.large has no GPU"):
        FleetSpec.from_stack(cpu_only)
