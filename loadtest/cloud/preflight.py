"""Checks before any load, against the platform stack's cluster: nothing is created if one fails.

- vLLM has a ready replica (the run would otherwise measure a cold start, or nothing);
- the KEDA ScaledObject is Ready (otherwise nothing scales and the report's figures are moot);
- each KEDA trigger query returns exactly one series in Prometheus, and vLLM's own gauge is
  there behind it: the queries end in ``or vector(0)``, so a Prometheus that scrapes no vLLM
  (a ServiceMonitor not picked up, a model name that differs) gives a steady 0 and the HPA
  never scales; the bare ``sum(...)`` tells the two apart;
- ``/v1/models`` lists the served model when asked with the stack's API key.

Every failure is reported, each on its own line with what to do, in one ``PreflightError``.
``ClusterProbe`` is how the cluster is read (``kube_probe.py`` with the Kubernetes client; a fake
in the tests).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from domain import topology
from domain.autoscaling import Trigger
from loadtest.cloud.orchestrator import PreflightError

Series = list[tuple[dict[str, str], float]]


class ProbeError(RuntimeError):
    """The cluster could not be asked (API server, Prometheus or vLLM unreachable)."""


@dataclass(frozen=True)
class Condition:
    """One status condition of an object (``Ready``: ``True``/``False``/``Unknown``)."""

    status: str
    reason: str = ""
    message: str = ""


class ClusterProbe(Protocol):
    """Read-only access to what the pre-flight checks look at."""

    def ready_replicas(self, namespace: str, deployment: str) -> int | None:
        """Ready replicas of a Deployment; None if there is no such Deployment."""

    def scaled_object_ready(self, namespace: str, name: str) -> Condition | None:
        """The ``Ready`` condition of a KEDA ScaledObject; None if there is no such object."""

    def prometheus_query(self, expr: str) -> Series:
        """An instant query against the cluster's Prometheus."""

    def list_models(self, namespace: str, deployment: str, api_key: str) -> tuple[int, list[str]]:
        """HTTP status and model ids of ``GET /v1/models`` on a ready vLLM pod, with the key."""


@dataclass(frozen=True)
class Platform:
    """What the checks need to know about the platform stack (from its outputs)."""

    served_name: str
    triggers: Sequence[Trigger]
    namespace: str = topology.VLLM_NAMESPACE
    deployment: str = topology.VLLM_DEPLOYMENT


def _bare(trigger: Trigger, platform: Platform) -> str:
    """The trigger's query without the ``or vector(0)`` that hides a missing series."""
    return trigger.query(platform.served_name, platform.namespace).removesuffix(" or vector(0)")


def failures(probe: ClusterProbe, platform: Platform, api_key: str) -> list[str]:
    """Every check that fails, as one line each (empty: ready for load)."""
    ns, name = platform.namespace, platform.deployment
    out: list[str] = []
    try:
        ready = probe.ready_replicas(ns, name)
        if ready is None:
            out.append(f"no Deployment {ns}/{name}: is the platform stack up (`pulumi up`)?")
        elif ready < 1:
            out.append(
                f"vLLM has no ready replica ({ns}/{name}): wait until one serves (a GPU node "
                f"from zero takes about ten minutes; `kubectl -n {ns} get pods` shows progress)"
            )
        condition = probe.scaled_object_ready(ns, name)
        if condition is None:
            out.append(f"no KEDA ScaledObject {ns}/{name}: nothing would scale vLLM")
        elif condition.status != "True":
            out.append(
                f"the KEDA ScaledObject {ns}/{name} is not Ready ({condition.status}: "
                f"{condition.reason} {condition.message}".rstrip()
                + f"); `kubectl -n {ns} describe scaledobject {name}` says why"
            )
        for trigger in platform.triggers:
            query = trigger.query(platform.served_name, ns)
            series = probe.prometheus_query(query)
            if len(series) != 1:
                out.append(
                    f"KEDA trigger {trigger.name!r} returns {len(series)} series, not one: {query}"
                )
            elif not probe.prometheus_query(_bare(trigger, platform)):
                out.append(
                    f"Prometheus has no {trigger.metric} for model {platform.served_name!r} in "
                    f"namespace {ns}: KEDA reads 0 and never scales. Check that the vLLM "
                    f"ServiceMonitor is scraped and that vLLM serves that name"
                )
        status, models = probe.list_models(ns, name, api_key)
        if status in (401, 403):
            out.append(
                f"vLLM refused the stack's API key on /v1/models (HTTP {status}): the "
                f"{topology.VLLM_NAMESPACE} Secret and the stack output vllmApiKey differ"
            )
        elif status != 200:
            out.append(f"/v1/models answered HTTP {status}: vLLM is not serving requests")
        elif platform.served_name not in models:
            out.append(
                f"vLLM serves {', '.join(models) or 'no model'}, not {platform.served_name!r}"
            )
    except ProbeError as err:
        out.append(f"the cluster could not be checked: {err}")
    return out


def check(probe: ClusterProbe, platform: Platform, api_key: str) -> None:
    """Raise ``PreflightError`` naming every failed check."""
    found = failures(probe, platform, api_key)
    if found:
        raise PreflightError(
            "not starting the load test; nothing was created:\n"
            + "\n".join(f"  - {line}" for line in found)
        )
