"""The cluster's control loops on one clock: Prometheus scrapes, HPA syncs, autoscaler scans.

Each loop runs at its own period, as in the cluster: Prometheus scrapes vLLM's gauges every
``AutoscalingSpec.scrape_interval_seconds`` (the ServiceMonitor's interval, set from KEDA's
``pollingInterval``); the HPA syncs every 15 s and reads the trigger totals through KEDA's metrics
server, i.e. the latest scrape (KEDA's own polling loop only decides 0 <-> 1, which a minimum of
one replica never needs); the Cluster Autoscaler scans every 10 s. ``tick(now)`` runs every loop
that fell due since the last call, at its own instant and in time order, so the outcome does not
depend on how often the caller ticks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from domain.autoscaling import AutoscalingSpec
from twin.fleet.hpa import Decision, Hpa
from twin.fleet.sim_cluster import Changes, SimCluster
from twin.fleet.timings import Timings

MetricReader = Callable[[], Mapping[str, float]]
"""Returns each vLLM gauge summed over the pods that export it (what the trigger queries sum)."""


@dataclass
class _Loop:
    period_s: float
    due: float


class ControlPlane:
    """Scrape, HPA and Cluster Autoscaler loops driving one ``SimCluster``."""

    def __init__(
        self,
        spec: AutoscalingSpec,
        cluster: SimCluster,
        timings: Timings,
        read_metrics: MetricReader,
    ) -> None:
        self.spec = spec
        self.cluster = cluster
        self.hpa = Hpa(spec)
        self.read_metrics = read_metrics
        self.replicas = cluster.live
        """The Deployment's ``spec.replicas``: what the HPA last set."""
        self.totals: dict[str, float] = {}
        """The trigger metrics as of the last scrape."""
        self.decision: Decision | None = None
        now = cluster.now
        self._loops = {
            self._scrape: _Loop(spec.scrape_interval_seconds, now),
            self._sync: _Loop(timings.hpa_sync_s, now + timings.hpa_sync_s),
            self._scan: _Loop(timings.ca_scan_s, now + timings.ca_scan_s),
        }

    def tick(self, now: float) -> Changes:
        """Run every loop due by ``now``, move the cluster to ``now``; return what changed."""
        while True:
            action, loop = min(self._loops.items(), key=lambda item: item[1].due)
            if loop.due > now:
                break
            at = max(loop.due, self.cluster.now)
            self.cluster.advance(at)
            action(at)
            loop.due += loop.period_s
        self.cluster.advance(now)
        return self.cluster.take_changes()

    def _scrape(self, _at: float) -> None:
        self.totals = dict(self.read_metrics())

    def _sync(self, at: float) -> None:
        self.decision = self.hpa.sync(at, self.replicas, self.cluster.live, self.totals)
        if self.decision.desired != self.replicas:
            self.replicas = self.decision.desired
            self.cluster.scale(self.replicas, at)

    def _scan(self, at: float) -> None:
        self.cluster.scan(at)
