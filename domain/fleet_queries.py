"""The PromQL that reads the vLLM fleet's state from Prometheus: one expression per timeline field.

A cloud run's cluster target sends these to kube-prometheus-stack; the local twin answers exactly
these and refuses any other, so the same path runs in ``make test``. Every metric and label was
checked against upstream sources:

- kube-state-metrics ``docs/metrics/workload/deployment-metrics.md``:
  ``kube_deployment_spec_replicas`` (what the HPA last set; its ``status.desiredReplicas``
  goes to the scale subresource every sync, and this needs no KEDA HPA name),
  ``kube_deployment_status_replicas`` (non-terminating pods) and
  ``kube_deployment_status_replicas_ready``, labels ``namespace`` and ``deployment``;
- ``docs/metrics/workload/pod-metrics.md``: ``kube_pod_deletion_timestamp`` (pods being deleted;
  exported by default, not opt-in), labels ``namespace`` and ``pod``;
- ``docs/metrics/cluster/node-metrics.md``: ``kube_node_labels`` (``label_<KEY>`` only for keys
  in ``--metric-labels-allowlist``; ``infra/addons.py`` allows the role label on nodes) and
  ``kube_node_status_condition`` (one series per status, value 1 on the current one), label
  ``node``. KSM names a label ``label_`` + the key with every ``[^a-zA-Z0-9_]`` as ``_``,
  snake-cased (``internal/store/utils.go``): ``qwen-stress.io/role`` is
  ``label_qwen_stress_io_role``;
- vLLM's gauges from ``domain.vllm_metrics``; the queue and batch fields are the KEDA triggers'
  own queries (``Trigger.query``), so the report shows what the autoscaler saw.

kube-prometheus-stack scrapes kube-state-metrics with ``honorLabels: true``
(``charts/kube-prometheus-stack/values.yaml``), so ``namespace`` is the object's namespace,
not ``monitoring``.

The hours are integrals over a subquery at the scrape interval (``sum_over_time(X[W:15s]) * 15``):
GPU nodes from their registration to their removal, ready replicas likewise, over the last ``W``
seconds, i.e. since the run began when ``W`` is the run's age. (``kube_node_created`` gives a
node's birth to the second, but its removal is only seen at the scrape interval, so the integral
is as precise and one expression.) A node counts from when its kubelet registers, about a minute
after EC2 starts billing it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

from domain import topology, vllm_metrics
from domain.autoscaling import Trigger

TRIGGER_FIELDS = {"waiting": "queue", "running": "running"}
"""The timeline field that holds each KEDA trigger's sum over the replicas."""
INSTANT_FIELDS = (
    "desired_replicas", "ready_replicas", "pending_replicas", "terminating_replicas", "nodes",
    "ready_nodes", "gpus", "queue", "running",
)  # fmt: skip
"""Fields read at one instant: a count or a sum, one series each."""
HOUR_FIELDS = ("gpu_hours", "replica_hours")
"""Fields integrated over the last ``W`` seconds."""
KV_BY_REPLICA = "kv_usage_by_replica"
"""The one field answered with a series per replica (label ``pod``)."""
_WINDOW = "{window_ms}"


def ksm_label(key: str) -> str:
    """The Prometheus label kube-state-metrics gives a Kubernetes label key (``label_...``)."""
    sanitized = re.sub(r"[^a-zA-Z0-9_]", "_", key)
    return "label_" + re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", sanitized).lower()


NODE_ROLE_LABEL = ksm_label(topology.ROLE_LABEL)
"""``label_qwen_stress_io_role``: on ``kube_node_labels`` once the allowlist names the key."""


@dataclass(frozen=True)
class FleetQueries:
    """The expressions for one vLLM Deployment serving ``served_name``.

    ``gpus_per_node`` comes from the GPU instance type: a node counts with all its GPUs from the
    moment it registers, as the twin counts a booting node (the device plugin advertises them
    only later, so ``kube_node_status_capacity`` would undercount what is billed).
    """

    served_name: str
    gpus_per_node: int
    triggers: Sequence[Trigger]
    namespace: str = topology.VLLM_NAMESPACE
    deployment: str = topology.VLLM_DEPLOYMENT
    step_s: int = topology.PROMETHEUS_SCRAPE_INTERVAL_S

    @property
    def _deployment(self) -> str:
        return f'namespace="{self.namespace}",deployment="{self.deployment}"'

    @property
    def _gpu_nodes(self) -> str:
        return f'kube_node_labels{{{NODE_ROLE_LABEL}="{topology.GPU_ROLE}"}}'

    @cached_property
    def instant(self) -> dict[str, str]:
        """Field -> expression giving exactly one series (``or vector(0)`` where none means 0)."""
        d, nodes = self._deployment, self._gpu_nodes
        ready = f"sum(kube_deployment_status_replicas_ready{{{d}}})"
        by_trigger = {
            TRIGGER_FIELDS[t.name]: t.query(self.served_name, self.namespace) for t in self.triggers
        }
        return {
            "desired_replicas": f"sum(kube_deployment_spec_replicas{{{d}}})",
            "ready_replicas": ready,
            "pending_replicas": f"sum(kube_deployment_status_replicas{{{d}}}) - {ready}",
            "terminating_replicas": (
                f'count(kube_pod_deletion_timestamp{{namespace="{self.namespace}",'
                f'pod=~"{self.deployment}-.+"}}) or vector(0)'
            ),
            "nodes": f"count({nodes}) or vector(0)",
            "ready_nodes": (
                'count(kube_node_status_condition{condition="Ready",status="true"} == 1 '
                f"and on(node) {nodes}) or vector(0)"
            ),
            "gpus": f"(count({nodes}) or vector(0)) * {self.gpus_per_node}",
            "queue": by_trigger["queue"],
            "running": by_trigger["running"],
        }

    def hours(self, window_s: float) -> dict[str, str]:
        """Field -> expression integrating GPUs or ready replicas over the last ``window_s``.

        The window is written in milliseconds: a run's age, to the millisecond, so the hours
        start where the run did.
        """
        return {
            field: expr.replace(_WINDOW, str(round(window_s * 1000)))
            for field, expr in self.hour_templates.items()
        }

    @cached_property
    def hour_templates(self) -> dict[str, str]:
        """The hour expressions with ``{window_ms}`` where the window goes."""
        span = f"[{_WINDOW}ms:{self.step_s}s]"
        per_hour = f"* {self.step_s} / 3600"
        return {
            "gpu_hours": (
                f"sum_over_time(((count({self._gpu_nodes}) or vector(0)) * {self.gpus_per_node})"
                f"{span}) {per_hour}"
            ),
            "replica_hours": (
                f"sum_over_time(sum(kube_deployment_status_replicas_ready{{{self._deployment}}})"
                f"{span}) {per_hour} or vector(0)"
            ),
        }

    @cached_property
    def kv_by_replica(self) -> str:
        """KV-cache usage (0-1) per vLLM pod, the older metric name where the new one is absent."""
        selector = (
            f'{{namespace="{self.namespace}",{vllm_metrics.MODEL_LABEL}="{self.served_name}"}}'
        )
        either = " or ".join(f"{name}{selector}" for name in vllm_metrics.KV_CACHE_USAGE_NAMES)
        return f"max by (pod) ({either})"

    @cached_property
    def bare_triggers(self) -> dict[str, str]:
        """The trigger queries without ``or vector(0)`` (the pre-flight's, ``cloud.preflight``).

        Without it a gauge Prometheus never scraped reads as 0; the pre-flight tells them apart.
        """
        return {
            field: self.instant[field].removesuffix(" or vector(0)")
            for field in TRIGGER_FIELDS.values()
        }

    def match(self, expr: str) -> tuple[str, int | None] | None:
        """The field an expression reads and its window in ms (hours); None if it is not ours."""
        for field, known in self.instant.items():
            if expr == known:
                return field, None
        for field, bare in self.bare_triggers.items():
            if expr == bare:
                return field, None
        if expr == self.kv_by_replica:
            return KV_BY_REPLICA, None
        for field, pattern in self._hour_patterns.items():
            found = pattern.fullmatch(expr)
            if found:
                return field, int(found.group(1))
        return None

    @cached_property
    def _hour_patterns(self) -> dict[str, re.Pattern[str]]:
        return {
            field: re.compile(re.escape(template).replace(re.escape(_WINDOW), r"(\d+)"))
            for field, template in self.hour_templates.items()
        }
