"""The twin's cluster in virtual time: pods wait for GPUs, nodes boot, scale out, then in.

No event loop and no sleeping: the control plane is stepped with an explicit clock and a
scripted load, so every instant below is exact.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from domain.autoscaling import AutoscalingSpec
from domain.stack_config import ClusterAutoscalerConfig, load_stack_file
from domain.vllm_metrics import RUNNING as RUNNING_METRIC
from tests.pulumi_mocks import ROOT
from twin.fleet.control_plane import ControlPlane
from twin.fleet.fleet_spec import FleetSpec
from twin.fleet.sim_cluster import NodePool, Pod, PodState, SimCluster
from twin.fleet.timings import Timings, timings
from workloads.keda import scaled_object_spec

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


def test_the_twin_and_the_scaled_object_read_the_same_spec() -> None:
    stack = load_stack_file(ROOT / "Pulumi.dev.yaml")
    twin = FleetSpec.from_stack(stack)
    assert twin.autoscaling is stack.autoscaling
    assert twin.pool == NodePool(1, stack.gpu.min_nodes, stack.gpu.max_nodes)

    def outcome(spec: AutoscalingSpec) -> tuple[str, int]:
        rendered = scaled_object_spec(spec, deployment="vllm", namespace="vllm", served_name="q")
        running = next(t for t in rendered["triggers"] if t["name"] == "running")
        scenario = Scenario(spec, twin.pool, lambda _t: 48, timings=twin.timings)
        scenario.run(600)
        return running["metadata"]["threshold"], scenario.control.replicas

    base = stack.autoscaling
    assert outcome(base) == ("24", 2)
    assert outcome(base.model_copy(update={"target_running_per_replica": 12.0})) == ("12", 4)
