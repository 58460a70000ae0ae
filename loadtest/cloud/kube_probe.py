"""``ClusterProbe`` with the Kubernetes Python client, from the platform stack's kubeconfig.

Checked against the installed client (kubernetes 37.0.2, the OpenAPI-generator v7 client):

- ``config.new_client_from_config_dict(config_dict)`` gives an ``ApiClient`` for that cluster
  alone (the EKS kubeconfig's ``exec`` entry runs ``aws eks get-token``, as kubectl would);
- ``AppsV1Api.read_namespaced_deployment(name, namespace)``: ``status.ready_replicas`` (None
  when none is ready) and ``spec.selector.match_labels``; ``CustomObjectsApi
  .get_namespaced_custom_object("keda.sh", "v1alpha1", namespace, "scaledobjects", name)``:
  a dict whose ``status.conditions`` carry ``type``, ``status``, ``reason``, ``message``;
  a missing object raises ``ApiException`` with ``status`` 404;
- Prometheus through the API server's service proxy
  (``/api/v1/namespaces/monitoring/services/<svc>:9090/proxy/api/v1/query``), built with
  ``ApiClient.param_serialize`` and sent with ``call_api`` so the query parameters reach
  Prometheus; Prometheus needs no credentials;
- vLLM's ``/v1/models`` through a port-forward (``kubernetes.stream.portforward`` on
  ``CoreV1Api.connect_get_namespaced_pod_portforward``; ``PortForward.socket(port)`` is a
  connected socket). Not through the service proxy: the API server authenticates the request
  with its ``Authorization`` header and then deletes it (``k8s.io/apiserver``
  ``filters/authentication.go``: "authorization header is not required anymore"), so the
  vLLM key cannot ride on it; and the vLLM NetworkPolicy admits only load-test namespaces and
  monitoring, not the control plane. A port-forward enters the pod's network namespace.
"""

from __future__ import annotations

import http.client
import json
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.stream import portforward

from domain import topology
from loadtest.cloud.preflight import Condition, ProbeError, Series

TIMEOUT_S = 15.0


def parse_vector(body: bytes) -> Series:
    """``(labels, value)`` of a Prometheus instant-query answer; ``ProbeError`` if it is not one."""
    try:
        reply = json.loads(body)
        if reply.get("status") != "success":
            raise ProbeError(f"Prometheus refused the query: {reply.get('error')}")
        data = reply["data"]
        if data["resultType"] != "vector":
            raise ProbeError(f"Prometheus gave a {data['resultType']}, not a vector")
        return [(dict(r.get("metric") or {}), float(r["value"][1])) for r in data["result"]]
    except (ValueError, KeyError, TypeError) as err:
        raise ProbeError(f"Prometheus's answer is not an instant vector: {err}") from None


class KubeProbe:
    """The platform cluster, read with the user's AWS identity (nothing is written)."""

    def __init__(self, api: k8s.ApiClient) -> None:
        self.api = api

    @classmethod
    def from_kubeconfig(cls, kubeconfig: str | dict[str, Any]) -> KubeProbe:
        """From the ``kubeconfig`` stack output (JSON text or already parsed)."""
        config = json.loads(kubeconfig) if isinstance(kubeconfig, str) else kubeconfig
        client = k8s_config.new_client_from_config_dict(config_dict=config)  # type: ignore[no-untyped-call]
        return cls(client)

    def ready_replicas(self, namespace: str, deployment: str) -> int | None:
        """``status.readyReplicas`` of the Deployment (0 when unset); None if it is missing."""
        try:
            found = k8s.AppsV1Api(self.api).read_namespaced_deployment(
                deployment, namespace, _request_timeout=TIMEOUT_S
            )
        except ApiException as err:
            if err.status == 404:
                return None
            raise ProbeError(f"reading Deployment {namespace}/{deployment}: {err.reason}") from None
        return int((found.status.ready_replicas if found.status else None) or 0)

    def scaled_object_ready(self, namespace: str, name: str) -> Condition | None:
        """The ScaledObject's ``Ready`` condition (``Unknown`` until KEDA set one)."""
        try:
            found = k8s.CustomObjectsApi(self.api).get_namespaced_custom_object(
                "keda.sh", "v1alpha1", namespace, "scaledobjects", name, _request_timeout=TIMEOUT_S
            )
        except ApiException as err:
            if err.status == 404:
                return None
            raise ProbeError(f"reading ScaledObject {namespace}/{name}: {err.reason}") from None
        body: dict[str, Any] = found if isinstance(found, dict) else {}
        for cond in (body.get("status") or {}).get("conditions") or []:
            if cond.get("type") == "Ready":
                return Condition(
                    str(cond.get("status")),
                    str(cond.get("reason") or ""),
                    str(cond.get("message") or ""),
                )
        return Condition("Unknown", "NoCondition", "KEDA has not reported on it yet")

    def prometheus_query(self, expr: str) -> Series:
        """An instant query through the API server's service proxy to Prometheus."""
        path = (
            f"/api/v1/namespaces/{topology.MONITORING_NAMESPACE}/services/"
            f"{topology.PROMETHEUS_SERVICE}:{topology.PROMETHEUS_PORT}/proxy/api/v1/query"
        )
        request = self.api.param_serialize(
            method="GET",
            resource_path=path,
            query_params=[("query", expr)],
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        try:
            response = self.api.call_api(*request, _request_timeout=TIMEOUT_S)
            body = response.read()  # type: ignore[no-untyped-call]  # the client's own reader
        except ApiException as err:
            raise ProbeError(f"Prometheus through the API server: {err.reason}") from None
        if response.status != 200:
            # Prometheus's own errors are JSON; the API server's (no such service) are not.
            if response.status in (400, 422):
                return parse_vector(body)
            raise ProbeError(f"Prometheus through the API server answered HTTP {response.status}")
        return parse_vector(body)

    def list_models(self, namespace: str, deployment: str, api_key: str) -> tuple[int, list[str]]:
        """``GET /v1/models`` with the key, on a ready pod of the Deployment, by port-forward."""
        pod = self._ready_pod(namespace, deployment)
        if pod is None:
            return 0, []
        core = k8s.CoreV1Api(self.api)
        try:
            forward = portforward(
                core.connect_get_namespaced_pod_portforward,
                pod,
                namespace,
                ports=str(topology.VLLM_PORT),
            )
        except ApiException as err:
            raise ProbeError(f"port-forward to {namespace}/{pod}: {err.reason}") from None
        try:
            connection = http.client.HTTPConnection(
                "127.0.0.1", topology.VLLM_PORT, timeout=TIMEOUT_S
            )
            connection.sock = forward.socket(topology.VLLM_PORT)
            connection.request("GET", "/v1/models", headers={"Authorization": f"Bearer {api_key}"})
            response = connection.getresponse()
            body = response.read()
        except OSError as err:
            raise ProbeError(f"/v1/models on {namespace}/{pod}: {err}") from None
        finally:
            forward.close()
        if response.status != 200:
            return response.status, []
        try:
            return 200, [str(m["id"]) for m in json.loads(body)["data"]]
        except (ValueError, KeyError, TypeError):
            return 200, []

    def _ready_pod(self, namespace: str, deployment: str) -> str | None:
        """A pod of the Deployment whose ``Ready`` condition is ``True``."""
        try:
            found = k8s.AppsV1Api(self.api).read_namespaced_deployment(
                deployment, namespace, _request_timeout=TIMEOUT_S
            )
            labels = found.spec.selector.match_labels or {}
            pods = k8s.CoreV1Api(self.api).list_namespaced_pod(
                namespace,
                label_selector=",".join(f"{k}={v}" for k, v in sorted(labels.items())),
                _request_timeout=TIMEOUT_S,
            )
        except ApiException as err:
            raise ProbeError(
                f"listing the pods of {namespace}/{deployment}: {err.reason}"
            ) from None
        for pod in pods.items:
            conditions = (pod.status.conditions if pod.status else None) or []
            if pod.metadata and any(c.type == "Ready" and c.status == "True" for c in conditions):
                return str(pod.metadata.name)
        return None
