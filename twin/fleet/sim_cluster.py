"""The GPU node pool, the vLLM pods on it, and the controllers that move them, in control time.

What each part does, as in the cluster:

- the Deployment (ReplicaSet) controller creates pods when scaled up and, when scaled down,
  deletes them in ``ActivePodsWithRanks`` order: unscheduled first, then not ready, then those
  sharing a node with more of their kind, then the most recently ready, then the newest;
- the scheduler binds each pending pod to a Ready node with enough free GPUs, the least
  allocated one first (kube-scheduler's default ``NodeResourcesFit`` scoring);
- a bound pod waits for the image (the first pod on a node pulls it; later ones find it there),
  then downloads and loads the weights and starts the engine (``timings``);
- the Cluster Autoscaler, every scan, adds nodes for the pods no node can take (counting the
  nodes still booting), up to ``max_nodes``, and removes nodes that stayed empty for the
  unneeded time, never within the delay after a scale-up and never below ``min_nodes``.

A Ready pod being deleted is handed to the runtime to drain (it keeps its GPUs until
``release``); a pod that never served is removed at once. Nothing here reads a clock: every
method takes the control-plane time, which never goes backwards, and transitions happen at their
own instants however coarse the calls, so a test can step it in virtual time.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from enum import StrEnum

from twin.fleet.timings import Timings


class PodState(StrEnum):
    """Where a vLLM pod is in its life."""

    PENDING = "pending"
    """Created, waiting for a node with a free GPU."""
    STARTING = "starting"
    """Bound to a node: image pull, weights, engine start-up."""
    READY = "ready"
    """Serving; the Service routes to it."""
    TERMINATING = "terminating"
    """Deleted: out of the Service, finishing its in-flight requests, still holding its GPUs."""


@dataclass(eq=False)
class Node:
    """One GPU instance of the managed node group."""

    name: str
    ready_at: float
    slots: int
    """Replicas it can hold (GPUs per node // GPUs per replica)."""
    image_at: float | None = None
    """When the vLLM image is (or will be) on the node; None until a pod needs it."""
    pods: list[Pod] = field(default_factory=list)
    freed_at: float = -math.inf
    """When a slot last became free (a pod released or deleted)."""
    empty_since: float | None = None
    """The first autoscaler scan that found it empty (None while it holds pods)."""


@dataclass(eq=False)
class Pod:
    """One vLLM replica."""

    name: str
    created_at: float
    state: PodState = PodState.PENDING
    node: Node | None = None
    ready_at: float | None = None
    """When it serves (or will serve, while STARTING)."""


@dataclass(frozen=True)
class Segment:
    """From ``start`` (control time) on, this many GPUs billed and replicas ready."""

    start: float
    gpu_seconds: float
    replica_seconds: float
    """The counters at ``start``."""
    gpus: int
    ready: int


@dataclass
class Changes:
    """What the runtime must do after the cluster moved: start serving, or drain and release."""

    started: list[Pod] = field(default_factory=list)
    stopping: list[Pod] = field(default_factory=list)


@dataclass(frozen=True)
class NodePool:
    """The GPU managed node group: instance shape and the autoscaler's bounds."""

    gpus_per_node: int
    min_nodes: int
    max_nodes: int


class SimCluster:
    """Nodes and pods of one vLLM Deployment; starts with ``replicas`` serving on warm nodes."""

    def __init__(
        self, pool: NodePool, gpus_per_replica: int, timings: Timings, replicas: int, now: float
    ) -> None:
        self.pool = pool
        self.timings = timings
        self.slots_per_node = pool.gpus_per_node // gpus_per_replica
        if self.slots_per_node < 1:
            raise ValueError(
                f"a replica needs {gpus_per_replica} GPUs but a node has {pool.gpus_per_node}"
            )
        self.now = now
        self.nodes: list[Node] = []
        self.pods: list[Pod] = []
        self.gpu_seconds = 0.0
        """GPU time billed so far: every node, booting or not, times its GPUs."""
        self.replica_seconds = 0.0
        """Serving time so far, summed over Ready pods."""
        self.segments: list[Segment] = []
        """Each change of the GPU or ready-replica count: the counters at any past time."""
        self._segment_starts: list[float] = []
        self._last_scale_up = -math.inf
        self._changes = Changes()
        self._pod_count = 0
        self._node_count = 0
        warm = max(pool.min_nodes, math.ceil(replicas / self.slots_per_node))
        for _ in range(warm):
            self._launch(ready_at=now).image_at = now
        for _ in range(replicas):
            pod, node = self._create(now), self._least_allocated()
            assert node is not None, "the warm nodes have a slot for every initial replica"
            self._bind(pod, node, now)
            self._serve(pod, now)

    # -- what the controllers see ---------------------------------------------------------
    def count(self, state: PodState) -> int:
        """Pods in ``state``."""
        return sum(p.state is state for p in self.pods)

    @property
    def live(self) -> int:
        """Pods not being deleted: the Deployment's ``status.replicas``."""
        return sum(p.state is not PodState.TERMINATING for p in self.pods)

    @property
    def ready_nodes(self) -> int:
        """Nodes that finished booting."""
        return sum(n.ready_at <= self.now for n in self.nodes)

    def take_changes(self) -> Changes:
        """What happened since the last call, for the runtime to act on."""
        changes, self._changes = self._changes, Changes()
        return changes

    # -- time -------------------------------------------------------------------------------
    def advance(self, now: float) -> None:
        """Bring every transition up to ``now``: nodes boot, pods bind, start and serve."""
        now = max(now, self.now)
        while True:
            self._schedule()
            upcoming = [n.ready_at for n in self.nodes if self.now < n.ready_at <= now]
            upcoming += [
                p.ready_at
                for p in self.pods
                if p.state is PodState.STARTING and p.ready_at is not None and p.ready_at <= now
            ]
            if not upcoming:
                break
            at = max(min(upcoming), self.now)
            self._account(at)
            for pod in self.pods:
                ready_at = pod.ready_at
                if pod.state is PodState.STARTING and ready_at is not None and ready_at <= at:
                    self._serve(pod, ready_at)
        self._account(now)

    def _account(self, now: float) -> None:
        gpus, ready = len(self.nodes) * self.pool.gpus_per_node, self.count(PodState.READY)
        last = self.segments[-1] if self.segments else None
        if last is None or (last.gpus, last.ready) != (gpus, ready):
            self.segments.append(
                Segment(self.now, self.gpu_seconds, self.replica_seconds, gpus, ready)
            )
            self._segment_starts.append(self.now)
        elapsed = now - self.now
        if elapsed > 0:
            self.gpu_seconds += elapsed * len(self.nodes) * self.pool.gpus_per_node
            self.replica_seconds += elapsed * self.count(PodState.READY)
            self.now = now

    def seconds_at(self, when: float) -> tuple[float, float]:
        """GPU-seconds and replica-seconds accumulated by control time ``when`` (up to now)."""
        i = bisect.bisect_right(self._segment_starts, when) - 1
        if i < 0:
            return 0.0, 0.0
        segment = self.segments[i]
        elapsed = max(min(when, self.now) - segment.start, 0.0)
        return (
            segment.gpu_seconds + segment.gpus * elapsed,
            segment.replica_seconds + segment.ready * elapsed,
        )

    # -- the Deployment controller ----------------------------------------------------------
    def scale(self, replicas: int, now: float) -> None:
        """Set the Deployment's replica count: create pods, or delete the lowest-ranked ones."""
        self.advance(now)
        live = [p for p in self.pods if p.state is not PodState.TERMINATING]
        for _ in range(replicas - len(live)):
            self._create(self.now)
        for pod in sorted(live, key=self._deletion_rank)[: max(len(live) - replicas, 0)]:
            if pod.state is PodState.READY:
                pod.state = PodState.TERMINATING
                self._changes.stopping.append(pod)
            else:
                self._remove(pod)
        self._schedule()

    def release(self, pod: Pod, now: float) -> None:
        """A terminating pod finished draining: it leaves its node."""
        self.advance(now)
        self._remove(pod)
        self._schedule()

    def _deletion_rank(self, pod: Pod) -> tuple[int, int, int, float, float]:
        """Sort key: the pod to delete first sorts first (ReplicaSet's ``ActivePodsWithRanks``)."""
        sharing = len(pod.node.pods) if pod.node is not None else 0
        ready = pod.state is PodState.READY
        ready_at = pod.ready_at if ready and pod.ready_at is not None else 0.0
        return (pod.node is not None, ready, -sharing, -ready_at, -pod.created_at)

    def _create(self, now: float) -> Pod:
        pod = Pod(f"vllm-{self._pod_count}", created_at=now)
        self._pod_count += 1
        self.pods.append(pod)
        return pod

    def _remove(self, pod: Pod) -> None:
        self.pods.remove(pod)
        if pod.node is not None:
            pod.node.pods.remove(pod)
            pod.node.freed_at = self.now
        pod.node = None

    # -- the scheduler and the kubelet ------------------------------------------------------
    def _least_allocated(self) -> Node | None:
        open_nodes = [n for n in self.nodes if n.ready_at <= self.now and len(n.pods) < n.slots]
        return max(open_nodes, key=lambda n: n.slots - len(n.pods), default=None)

    def _schedule(self) -> None:
        for pod in [p for p in self.pods if p.state is PodState.PENDING]:
            node = self._least_allocated()
            if node is None:
                return
            self._bind(pod, node, max(pod.created_at, node.ready_at, node.freed_at))

    def _bind(self, pod: Pod, node: Node, at: float) -> None:
        pod.node = node
        node.pods.append(pod)
        node.empty_since = None
        if node.image_at is None:
            node.image_at = at + self.timings.image_pull_s
        pod.state = PodState.STARTING
        pod.ready_at = max(node.image_at, at) + self.timings.pod_start_s

    def _serve(self, pod: Pod, at: float) -> None:
        pod.state = PodState.READY
        pod.ready_at = at
        self._changes.started.append(pod)

    # -- the Cluster Autoscaler ---------------------------------------------------------------
    def scan(self, now: float) -> None:
        """One autoscaler loop: scale up for unschedulable pods, else remove empty nodes."""
        self.advance(now)
        pending = self.count(PodState.PENDING)
        booting = sum(n.slots - len(n.pods) for n in self.nodes if n.ready_at > self.now)
        room = self.pool.max_nodes - len(self.nodes)
        if pending > booting and room > 0:
            for _ in range(min(math.ceil((pending - booting) / self.slots_per_node), room)):
                self._launch(ready_at=self.now + self.timings.node_boot_s)
            self._last_scale_up = self.now
            return
        for node in self.nodes:
            if node.pods or node.ready_at > self.now:
                node.empty_since = None
            elif node.empty_since is None:
                node.empty_since = self.now
        if self.now - self._last_scale_up < self.timings.ca_delay_after_add_s:
            return
        unneeded = [
            n
            for n in self.nodes
            if n.empty_since is not None and self.now - n.empty_since >= self.timings.ca_unneeded_s
        ]
        unneeded.sort(key=lambda n: n.empty_since or 0.0)
        for node in unneeded[: max(len(self.nodes) - self.pool.min_nodes, 0)]:
            self.nodes.remove(node)

    def _launch(self, ready_at: float) -> Node:
        node = Node(f"gpu-{self._node_count}", ready_at, self.slots_per_node)
        self._node_count += 1
        self.nodes.append(node)
        return node
