"""The cluster's side of a run: replicas, nodes, queue, KV usage and hours, read from Prometheus.

A ``ClusterTarget`` wraps the endpoint the users load (any ``Target``) and fills every timeline
sample with the fleet fields the twin's status gives (``TargetMetrics``: replicas by state,
nodes, GPUs, queue, running, hours, KV usage per replica) by sending the expressions of
``domain.fleet_queries`` to Prometheus's instant-query API. So the autoscaling chart, the
scale-up lag and the SLO violation during scale-out come out of a cloud run exactly as they
come out of a twin run, and the twin answers the same queries (``twin/fleet/prometheus_api.py``),
so this path runs in ``make test``.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from domain.autoscaling import AutoscalingSpec
from domain.catalog import CapacityType
from domain.fleet_queries import HOUR_FIELDS, KV_BY_REPLICA, FleetQueries
from domain.run_cost import PlatformInfo
from domain.stack_config import StackConfig
from loadtest.schema import (
    AutoscalingInfo,
    AutoscalingTrigger,
    ClusterTargetInfo,
    FleetMetricsInfo,
    TargetMetrics,
)
from loadtest.targets import Target, TargetError, http_get

COUNT_FIELDS = frozenset(
    {"desired_replicas", "ready_replicas", "pending_replicas", "terminating_replicas", "nodes",
     "ready_nodes", "gpus"}
)  # fmt: skip
"""Fields that count things (written as integers)."""
QUERY_TIMEOUT_S = 2.0


class PrometheusError(RuntimeError):
    """Prometheus refused a query or did not answer; the message says which and why."""


class PrometheusUnreachableError(PrometheusError):
    """Nothing answered at the Prometheus address."""


def prometheus_base(url: str) -> str:
    """The server's root from ``--prometheus`` (http or https, no credentials, no query)."""
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
        raise TargetError(
            f"--prometheus {url!r}: write Prometheus's address, like http://127.0.0.1:9090 "
            "(http or https, no query string)"
        )
    if parts.username or parts.password:
        raise TargetError(
            "--prometheus: put no credentials in the URL; it is written to config.json"
        )
    path = parts.path.rstrip("/").removesuffix("/api/v1/query").rstrip("/")
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))


class PrometheusClient:
    """Instant queries against one Prometheus (``GET <base>/api/v1/query?query=...&time=...``)."""

    def __init__(self, base_url: str, timeout: float = QUERY_TIMEOUT_S) -> None:
        self.base_url = prometheus_base(base_url)
        self.timeout = timeout

    def query(self, expr: str, at: float) -> list[tuple[dict[str, str], float]]:
        """Every series of an instant vector as ``(labels, value)``; raises ``PrometheusError``."""
        params = urllib.parse.urlencode({"query": expr, "time": f"{at:.3f}"})
        status, body = http_get(f"{self.base_url}/api/v1/query?{params}", timeout=self.timeout)
        if status == 0:
            raise PrometheusUnreachableError(f"Prometheus at {self.base_url} did not answer")
        try:
            reply = json.loads(body)
        except ValueError:
            raise PrometheusError(f"Prometheus answered HTTP {status} without JSON") from None
        if status != 200 or reply.get("status") != "success":
            raise PrometheusError(
                f"Prometheus refused {expr[:80]!r} (HTTP {status}, {reply.get('errorType')}): "
                f"{reply.get('error')}"
            )
        data = reply.get("data") or {}
        if data.get("resultType") != "vector":
            raise PrometheusError(f"{expr[:80]!r} gave a {data.get('resultType')}, not a vector")
        return [
            (dict(item.get("metric") or {}), float(item["value"][1]))
            for item in data.get("result") or []
        ]


def autoscaling_info(spec: AutoscalingSpec) -> AutoscalingInfo:
    """What the scaling figures read from ``config.json``: bounds and per-replica targets."""
    return AutoscalingInfo(
        min_replicas=spec.min_replicas,
        max_replicas=spec.max_replicas,
        triggers={
            t.name: AutoscalingTrigger(metric=t.metric, target_per_replica=t.target_per_replica)
            for t in spec.triggers()
        },
    )


class ClusterFleet(BaseModel):
    """What reading a platform stack's fleet from Prometheus needs to know about the stack.

    The CLI takes it from the stack file and hands it to the master pod in the run's payload.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    served_name: str
    gpus_per_node: int = Field(ge=1)
    autoscaling: AutoscalingSpec
    gpu: str | None = None
    instance_type: str | None = None
    gpus_per_replica: int | None = None
    capacity_type: CapacityType | None = None
    platform: PlatformInfo | None = None
    """The stack's region and NAT gateways: they price the run's share of the platform."""

    @classmethod
    def from_stack(cls, stack: StackConfig, name: str | None = None) -> ClusterFleet:
        """The served model, GPU node group and autoscaling spec of a stack's settings."""
        instance = stack.gpu.instance
        return cls(
            served_name=stack.model.served,
            gpus_per_node=instance.gpu_count,
            autoscaling=stack.autoscaling,
            gpu=instance.gpu.name if instance.gpu is not None else None,
            instance_type=stack.gpu.instance_type,
            gpus_per_replica=stack.model.tensor_parallel,
            capacity_type=stack.gpu.capacity_type,
            platform=PlatformInfo.of_stack(stack, name),
        )


class ClusterTarget(Target):
    """An endpoint (``base``) whose fleet is read from Prometheus instead of one pod's /metrics."""

    def __init__(
        self,
        base: Target,
        prometheus: PrometheusClient,
        queries: FleetQueries,
        *,
        autoscaling: AutoscalingSpec,
        model: str,
        gpu: str | None = None,
        instance_type: str | None = None,
        gpus_per_replica: int | None = None,
        capacity_type: CapacityType | None = None,
        platform: PlatformInfo | None = None,
    ) -> None:
        self.base = base
        self.base_url = base.base_url
        self.description = f"{base.description} (fleet from Prometheus at {prometheus.base_url})"
        self.prometheus = prometheus
        self.queries = queries
        self.autoscaling = autoscaling
        self.model = model
        self.gpu = gpu
        self.instance_type = instance_type
        self.gpus_per_replica = gpus_per_replica
        self.capacity_type = capacity_type
        self.platform = platform
        """The stack's GPU capacity type and platform figures: they price the run."""
        self.started_at: float | None = None
        """Wall clock of ``start``: the hours are integrated from here."""

    @classmethod
    def for_stack(
        cls, base: Target, prometheus_url: str, stack: StackConfig, name: str | None = None
    ) -> ClusterTarget:
        """The fleet a platform stack serves: its model, GPU node group and autoscaling spec.

        ``name``: the stack's (``dev``), recorded with its region and NAT gateways, which price
        the run's share of the platform.
        """
        return cls.for_fleet(base, prometheus_url, ClusterFleet.from_stack(stack, name))

    @classmethod
    def for_fleet(cls, base: Target, prometheus_url: str, fleet: ClusterFleet) -> ClusterTarget:
        """The fleet as the master pod knows it (from the run's payload, not a stack file)."""
        return cls(
            base,
            PrometheusClient(prometheus_url),
            FleetQueries(
                served_name=fleet.served_name,
                gpus_per_node=fleet.gpus_per_node,
                triggers=tuple(fleet.autoscaling.triggers()),
            ),
            autoscaling=fleet.autoscaling,
            model=fleet.served_name,
            gpu=fleet.gpu,
            instance_type=fleet.instance_type,
            gpus_per_replica=fleet.gpus_per_replica,
            capacity_type=fleet.capacity_type,
            platform=fleet.platform,
        )

    def start(self) -> None:
        """Start the endpoint (if it is ours) and the clock of the hours."""
        self.base.start()
        self.started_at = time.time()

    def stop(self) -> None:
        """Stop the endpoint (if it is ours)."""
        self.base.stop()

    def info(self) -> ClusterTargetInfo:
        """The endpoint, the stack's GPU and autoscaling settings, and every query sent."""
        return ClusterTargetInfo(
            url=self.base_url,
            description=self.description,
            model=self.model,
            gpu=self.gpu,
            instance_type=self.instance_type,
            gpus_per_replica=self.gpus_per_replica,
            capacity_type=self.capacity_type,
            platform=self.platform,
            autoscaling=autoscaling_info(self.autoscaling),
            fleet_metrics=FleetMetricsInfo(
                url=self.prometheus.base_url,
                queries={
                    **self.queries.instant,
                    **self.queries.hour_templates,
                    KV_BY_REPLICA: self.queries.kv_by_replica,
                },
            ),
        )

    def poll(self) -> TargetMetrics:
        """One timeline sample's fleet fields; a field Prometheus refused is left out and named.

        Raises ``TargetError`` when Prometheus does not answer at all (the sampler records it and
        the run goes on).
        """
        now = time.time()
        started = self.started_at if self.started_at is not None else now
        window = max(now - started, 0.001)
        expressions = {**self.queries.instant, **self.queries.hours(window)}
        out: dict[str, Any] = {}
        errors: list[str] = []
        for field, expr in expressions.items():
            try:
                series = self.prometheus.query(expr, now)
            except PrometheusUnreachableError as err:
                # Do not wait out a timeout per expression: the sample goes without fleet fields.
                raise TargetError(str(err)) from None
            except PrometheusError as err:
                errors.append(f"{field}: {err}")
                continue
            if series:
                value = sum(v for _, v in series)
                out[field] = (
                    round(value)
                    if field in COUNT_FIELDS
                    else round(value, 6 if field in HOUR_FIELDS else 4)
                )
        try:
            kv = {
                labels.get("pod", f"series-{i}"): round(v, 4)
                for i, (labels, v) in enumerate(
                    self.prometheus.query(self.queries.kv_by_replica, now)
                )
            }
        except PrometheusError as err:
            errors.append(f"kv_usage_by_replica: {err}")
            kv = {}
        return TargetMetrics(
            **out,
            replicas=out.get("ready_replicas"),
            kv_usage=round(sum(kv.values()) / len(kv), 4) if kv else None,
            kv_usage_by_replica=kv,
            target_poll_error="; ".join(errors)[:500] if errors else None,
        )


def reference(stack: StackConfig) -> str:
    """The README's table: each timeline field and the PromQL that fills it, for ``stack``."""
    target = ClusterTarget.for_stack(Target(), "http://127.0.0.1:9090", stack)
    queries = target.info().fleet_metrics.queries
    rows = ["| field | PromQL |", "|---|---|"]
    rows += [f"| `{field}` | `{expr}` |" for field, expr in queries.items()]
    return "\n".join(rows)


if __name__ == "__main__":
    from pathlib import Path

    from domain.stack_config import load_stack_file

    print(reference(load_stack_file(Path("Pulumi.dev.yaml"))))
