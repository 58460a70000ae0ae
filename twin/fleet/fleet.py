"""The emulated fleet at run time: replicas, the router and the control plane in one event loop.

The control plane runs on a scaled clock (``time_scale`` 0.05: one real second is 20 control
seconds), so node boots, image pulls, stabilisation windows and scan periods pass that much
faster; requests are served in real time. Every ``TICK_S`` it moves; a pod that became ready gets
an emulated replica on its own port (with its own ``/metrics``) and joins the router; a pod being
deleted leaves the router at once, drains its in-flight requests and only then frees its GPU.
The drain deadline is vLLM's own (``--shutdown-timeout``) in real seconds: requests are not
compressed, so neither is the time they are given to finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from domain.durations import TIME_SCALES
from domain.fleet_queries import FleetQueries
from domain.topology import FLEET_STATUS_PATH
from domain.validation import check_range
from domain.vllm_args import DRAIN_SECONDS
from domain.vllm_metrics import RUNNING as RUNNING_METRIC
from domain.vllm_metrics import WAITING as WAITING_METRIC
from twin.emulator.engine import EngineStats
from twin.emulator.http_protocol import HttpRequest, json_body
from twin.emulator.replica_spec import ReplicaSpec, replica_spec
from twin.emulator.server import ReplicaServer
from twin.emulator.tokens import TokenCounter, token_counter
from twin.fleet import prometheus_api
from twin.fleet.control_plane import ControlPlane
from twin.fleet.fleet_spec import FleetSpec
from twin.fleet.router import Backend, Router
from twin.fleet.sim_cluster import Changes, Pod, PodState, SimCluster

TICK_S = 0.05


def _totals(stats: list[EngineStats]) -> dict[str, float]:
    """The queue and batch gauges the control plane scrapes, summed over ``stats``."""
    return {
        WAITING_METRIC: float(sum(s.waiting for s in stats)),
        RUNNING_METRIC: float(sum(s.running for s in stats)),
    }


TIME_SCALE_FIX = "1 runs the control plane in real time, 0.05 twenty times faster"


class ScaledClock:
    """Control-plane seconds since ``start``: real seconds divided by the time scale."""

    def __init__(self, time_scale: float) -> None:
        check_range("time scale", time_scale, *TIME_SCALES, fix=TIME_SCALE_FIX)
        self.time_scale = time_scale
        self._t0 = time.monotonic()

    def start(self) -> None:
        """Make now zero."""
        self._t0 = time.monotonic()

    def now(self) -> float:
        """Control-plane seconds elapsed."""
        return (time.monotonic() - self._t0) / self.time_scale


class Fleet:
    """An autoscaled vLLM Deployment behind one Service port, emulated on loopback."""

    def __init__(
        self,
        spec: FleetSpec,
        *,
        time_scale: float = 1.0,
        host: str = "127.0.0.1",
        api_key: str | None = None,
    ) -> None:
        self.spec = spec
        self.clock = ScaledClock(time_scale)
        self.host = host
        self.api_key = api_key
        self.servers: dict[str, ReplicaServer] = {}
        self.cluster = SimCluster(
            spec.pool, spec.tensor_parallel, spec.timings, spec.autoscaling.min_replicas, now=0.0
        )
        self.control = ControlPlane(spec.autoscaling, self.cluster, spec.timings, self.read_metrics)
        self.router = Router(
            {FLEET_STATUS_PATH: self._status_route, prometheus_api.QUERY_PATH: self._query_route}
        )
        self.queries = FleetQueries(
            served_name=spec.served,
            gpus_per_node=spec.pool.gpus_per_node,
            triggers=tuple(spec.autoscaling.triggers()),
        )
        """The PromQL a cloud run sends about this fleet: ``/api/v1/query`` answers these."""
        self._serving: dict[str, asyncio.Task[None]] = {}
        self._leaving: set[str] = set()
        self._retiring: set[asyncio.Task[None]] = set()
        self._loop: asyncio.Task[None] | None = None
        self._cpu_mark = (time.process_time(), time.monotonic())
        # What every replica shares, its fit (immutable) and prompt counter (stateless), built
        # once here: a scale-out reruns neither the fit check nor a tokenizer file read on the
        # event loop, and a tokenizer named in QWEN_STRESS_TOKENIZER that cannot be used is
        # refused (TokenizerError) before anything serves.
        replica = replica_spec(
            spec.model,
            spec.gpu,
            max_model_len=spec.max_model_len,
            gpu_memory_utilization=spec.gpu_memory_utilization,
            tensor_parallel=spec.tensor_parallel,
        )
        self._replica: tuple[ReplicaSpec, TokenCounter] = (
            replica,
            token_counter(replica.model.name),
        )

    # -- life cycle -----------------------------------------------------------------------
    async def start(self, port: int = 0) -> int:
        """Start the initial replicas, then the router and the control loop; return the port."""
        self.clock.start()
        self._apply(self.control.tick(0.0))
        await asyncio.gather(*self._serving.values())
        port = await self.router.start(self.host, port)
        self._loop = asyncio.get_running_loop().create_task(self._run(), name="fleet-control")
        return port

    async def stop(self, drain_timeout: float = DRAIN_SECONDS) -> None:
        """Stop scaling and listening, let in-flight requests finish, stop every replica."""
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
        self.router.stop_listening()
        await asyncio.gather(*self._serving.values(), return_exceptions=True)
        servers = list(self.servers.values())
        await asyncio.gather(*(s.drain(drain_timeout) for s in servers))
        await self.router.stop()
        await asyncio.gather(*(s.stop() for s in servers))
        for task in list(self._retiring):
            task.cancel()
        self.servers.clear()

    async def _run(self) -> None:
        while True:
            self._apply(self.control.tick(self.clock.now()))
            await asyncio.sleep(TICK_S)

    # -- pods to replicas ---------------------------------------------------------------------
    def _apply(self, changes: Changes) -> None:
        loop = asyncio.get_running_loop()
        for pod in changes.started:
            self._serving[pod.name] = loop.create_task(self._serve(pod))
        for pod in changes.stopping:
            # Out of the Service now: not one more request reaches a pod being deleted.
            self._leaving.add(pod.name)
            self.router.remove(pod.name)
            task = loop.create_task(self._retire(pod))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    async def _serve(self, pod: Pod) -> None:
        replica, counter = self._replica
        server = ReplicaServer(
            self.spec.model,
            self.spec.gpu,
            api_key=self.api_key,
            spec=replica,
            counter=counter,
            served_name=self.spec.served,
        )
        port = await server.start(self.host, 0)
        self.servers[pod.name] = server
        if pod.name not in self._leaving:
            self.router.add(Backend(pod.name, self.host, port))

    async def _retire(self, pod: Pod) -> None:
        serving = self._serving.pop(pod.name, None)
        if serving is not None:
            await serving
        server = self.servers.get(pod.name)
        if server is not None:
            await server.drain(DRAIN_SECONDS)
            await server.stop()
            del self.servers[pod.name]
        self._leaving.discard(pod.name)
        self.cluster.release(pod, self.clock.now())

    # -- what the control plane and the runner read -------------------------------------------
    def read_metrics(self) -> dict[str, float]:
        """The queue and batch gauges summed over every replica still exporting them."""
        return _totals([server.stats() for server in self.servers.values()])

    def status(self) -> dict[str, Any]:
        """The snapshot and the share of a core this process used since the last status."""
        return {**self.snapshot(), "cpu": self._cpu_share()}

    def snapshot(self) -> dict[str, Any]:
        """Replicas by state, nodes, queue, KV usage per replica, GPU and replica hours."""
        cluster, control = self.cluster, self.control
        replicas: dict[str, dict[str, Any]] = {}
        outstanding = {b.name: b.outstanding for b in self.router.backends}
        by_replica = {name: server.stats() for name, server in self.servers.items()}
        for pod in cluster.pods:
            entry: dict[str, Any] = {
                "state": pod.state.value,
                "node": pod.node.name if pod.node is not None else None,
            }
            stats = by_replica.get(pod.name)
            if stats is not None:
                entry |= {
                    "running": stats.running,
                    "waiting": stats.waiting,
                    "kv_usage": round(stats.kv_cache_usage, 4),
                    "outstanding": outstanding.get(pod.name, 0),
                }
            replicas[pod.name] = entry
        totals = _totals(list(by_replica.values()))
        unscheduled = cluster.count(PodState.PENDING)
        decision = control.decision
        return {
            "time_scale": self.clock.time_scale,
            "cluster_s": round(cluster.now, 3),
            "desired_replicas": control.replicas,
            "ready_replicas": cluster.count(PodState.READY),
            "pending_replicas": unscheduled + cluster.count(PodState.STARTING),
            "unscheduled_replicas": unscheduled,
            "terminating_replicas": cluster.count(PodState.TERMINATING),
            "nodes": len(cluster.nodes),
            "ready_nodes": cluster.ready_nodes,
            "gpus": len(cluster.nodes) * cluster.pool.gpus_per_node,
            "queue": totals[WAITING_METRIC],
            "running": totals[RUNNING_METRIC],
            "replicas": replicas,
            "gpu_hours": round(cluster.gpu_seconds / 3600, 6),
            "replica_hours": round(cluster.replica_seconds / 3600, 6),
            "hpa": {
                "scraped": control.totals,
                "proposal": decision.proposal if decision else None,
                "stabilized": decision.stabilized if decision else None,
            },
            "fleet": self.spec.describe(),
        }

    def _cpu_share(self) -> float:
        """Share of one core this process used since the last status: near 1, timings suffer."""
        cpu, wall = time.process_time(), time.monotonic()
        last_cpu, last_wall = self._cpu_mark
        self._cpu_mark = (cpu, wall)
        return round((cpu - last_cpu) / max(wall - last_wall, 1e-6), 3)

    def _status_route(self, _request: HttpRequest) -> tuple[int, bytes]:
        return 200, json_body(self.status())

    def _query_route(self, request: HttpRequest) -> tuple[int, bytes]:
        """Prometheus's instant query, for the expressions a cloud run sends (GET or form POST)."""
        form = request.body.decode("latin-1") if request.method == "POST" else ""
        return prometheus_api.answer(
            "&".join(p for p in (request.query, form) if p),
            queries=self.queries,
            status=self.snapshot(),
            seconds_at=self.cluster.seconds_at,
            cluster_now=self.cluster.now,
            time_scale=self.clock.time_scale,
        )
