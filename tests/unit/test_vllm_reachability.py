"""Who can reach vLLM's port, judged by the NetworkPolicy the program renders.

vLLM's API key guards only ``/v1``, ``/v2``, ``/inference`` and ``/cohere``: ``/invocations`` runs
the same inference without it, ``/pause`` and ``/abort_requests`` stop the service. So the
NetworkPolicy is the guard of those routes, and these tests evaluate it as Kubernetes does
(NetworkPolicy semantics: a pod selected by an Ingress policy takes traffic only from a peer some
rule admits; within one ``from`` entry the namespace and pod selectors must both match).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from domain import topology
from domain.vllm_args import API_KEY_GUARDED_PREFIXES
from tests.pulumi_mocks import Program
from tests.unit.conftest import example

POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"


@dataclass(frozen=True)
class Pod:
    """A would-be client somewhere in the cluster."""

    namespace: str
    labels: Mapping[str, str] = field(default_factory=dict)
    namespace_labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def all_namespace_labels(self) -> dict[str, str]:
        # The API server sets this label to the namespace's name; nobody can set it otherwise.
        return {**self.namespace_labels, "kubernetes.io/metadata.name": self.namespace}


def _selects(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A LabelSelector: matchLabels and matchExpressions, all of them; ``{}`` selects all."""
    if selector is None:
        return True
    unknown = set(selector) - {"matchLabels", "matchExpressions"}
    assert not unknown, f"selector fields this evaluator does not know: {unknown}"
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def _port_allowed(rule: Mapping[str, Any], port: int) -> bool:
    ports = rule.get("ports")
    if not ports:
        return True
    for p in ports:
        assert p.get("protocol", "TCP") == "TCP"
        number = p.get("port")
        assert not isinstance(number, str), "a named port: give the number the Service uses"
        if number is None or number <= port <= p.get("endPort", number):
            return True
    return False


def _peer_admits(peer: Mapping[str, Any], policy_namespace: str, pod: Pod) -> bool:
    assert "ipBlock" not in peer, "an ipBlock admits by address, whatever the pod: none expected"
    namespaces, pods = peer.get("namespaceSelector"), peer.get("podSelector")
    if namespaces is None:  # a bare podSelector means pods of the policy's own namespace
        in_scope = pod.namespace == policy_namespace
    else:
        in_scope = _selects(namespaces, pod.all_namespace_labels)
    return in_scope and _selects(pods, pod.labels)


def reaches(program: Program, pod: Pod, port: int = topology.VLLM_PORT) -> bool:
    """Whether ``pod`` may open a TCP connection to a vLLM pod on ``port``."""
    deployment = program.one("kubernetes:apps/v1:Deployment").inputs
    target_ns = deployment["metadata"]["namespace"]
    target_labels = deployment["spec"]["template"]["metadata"]["labels"]
    isolating = [
        p.inputs
        for p in program.of_type(POLICY)
        if p.inputs["metadata"]["namespace"] == target_ns
        and _selects(p.inputs["spec"]["podSelector"], target_labels)
        and "Ingress" in p.inputs["spec"].get("policyTypes", ["Ingress"])
    ]
    if not isolating:
        return True
    return any(
        _port_allowed(rule, port)
        and any(_peer_admits(peer, target_ns, pod) for peer in rule.get("from") or [{}])
        for policy in isolating
        for rule in policy["spec"].get("ingress") or []
    )


LOADTEST_NS = {topology.ROLE_LABEL: topology.LOADTEST_ROLE}
PROMETHEUS_POD = {
    **topology.PROMETHEUS_POD_LABELS,
    "app.kubernetes.io/instance": topology.PROMETHEUS_SERVICE,
    "app.kubernetes.io/managed-by": "prometheus-operator",
    "prometheus": topology.PROMETHEUS_SERVICE,
}

ALLOWED = {
    "a load-test worker": Pod("qwen-stress-run-1", {"app": "locust"}, LOADTEST_NS),
    "the Prometheus server": Pod(topology.MONITORING_NAMESPACE, PROMETHEUS_POD),
    "another vLLM pod": Pod(topology.VLLM_NAMESPACE, {"app.kubernetes.io/name": "vllm"}),
}
DENIED = {
    "kube-state-metrics": Pod(
        topology.MONITORING_NAMESPACE, {"app.kubernetes.io/name": "kube-state-metrics"}
    ),
    "the Prometheus operator": Pod(
        topology.MONITORING_NAMESPACE,
        {"app": "kube-prometheus-stack-operator", "app.kubernetes.io/name": "prometheus-operator"},
    ),
    "a pod in monitoring that copies only one Prometheus label": Pod(
        topology.MONITORING_NAMESPACE, {"app.kubernetes.io/name": "prometheus"}
    ),
    "a Prometheus-labelled pod elsewhere": Pod("default", PROMETHEUS_POD),
    "the KEDA operator": Pod(topology.KEDA_NAMESPACE, {"app": "keda-operator"}),
    "the Cluster Autoscaler": Pod("kube-system", {"app.kubernetes.io/name": "cluster-autoscaler"}),
    "CoreDNS": Pod("kube-system", {"k8s-app": "kube-dns"}),
    "any pod in default": Pod("default", {"app": "web"}),
    "a pod labelled loadtest in an unlabelled namespace": Pod("default", LOADTEST_NS),
    "a namespace named like a load test but not labelled": Pod("loadtest", {"app": "locust"}),
}


@pytest.mark.parametrize("who", ALLOWED)
def test_these_reach_the_vllm_port(who: str) -> None:
    assert reaches(example("dev"), ALLOWED[who])


@pytest.mark.parametrize("who", DENIED)
def test_nothing_else_reaches_the_vllm_port(who: str) -> None:
    assert not reaches(example("dev"), DENIED[who])


def test_even_admitted_pods_reach_only_the_api_port() -> None:
    for pod in ALLOWED.values():
        assert not reaches(example("dev"), pod, port=topology.VLLM_PORT + 1)


def test_one_policy_isolates_vllm_and_only_a_cluster_ip_service_fronts_it(dev: Program) -> None:
    (policy,) = dev.of_type(POLICY)
    assert policy.inputs["spec"]["policyTypes"] == ["Ingress"]
    service = dev.one("kubernetes:core/v1:Service").inputs["spec"]
    assert service.get("type", "ClusterIP") == "ClusterIP", "no node port or load balancer"
    ingress = "kubernetes:networking.k8s.io/v1:Ingress"
    assert not [r.name for r in dev.resources if r.type.startswith(ingress)]


def test_the_api_key_guard_is_what_vllm_guards() -> None:
    """The prefixes read in vLLM v0.28.0's AuthenticationMiddleware; /invocations is not one."""
    assert API_KEY_GUARDED_PREFIXES == ("/v1", "/v2", "/inference", "/cohere")
    assert not "/invocations".startswith(API_KEY_GUARDED_PREFIXES)
    assert "/inference/v1/generate".startswith(API_KEY_GUARDED_PREFIXES)
