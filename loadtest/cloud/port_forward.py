"""The follower's way to the master pod in the cluster: a port-forward with the Kubernetes client.

No kubectl: ``kubernetes.stream.portforward`` on
``CoreV1Api.connect_get_namespaced_pod_portforward`` opens a websocket through the API server to
the pod's port, and ``PortForward.socket(port)`` is a connected socket; a websocket that cannot be
opened comes back as ``ApiException(status=0)`` (checked against kubernetes 37.0.1,
``stream/stream.py`` and ``stream/ws_client.py``, and upstream's ``examples/pod_portforward.py``;
the pre-flight's ``kube_probe`` uses the same call for vLLM). The API server not answering at all
is urllib3's error, not an ``ApiException``: it too is a connection that cannot be made now. It
enters the pod's network namespace through the kubelet, so the master's NetworkPolicy, which admits
only the workers, does not stand in the way. Each ``connect`` opens a new forward (a dropped
websocket cannot be resumed); the pod is found by its labels.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.stream import portforward
from urllib3.exceptions import HTTPError

from loadtest.cloud import contract, manifests

TIMEOUT_S = 15.0


def _why(err: ApiException) -> str:
    """An API server's refusal in a few words, with what to check for the usual ones."""
    reason = f"HTTP {err.status} {err.reason}" if err.status else str(err.reason)
    if err.status in (401, 403):
        reason += " (the platform stack's kubeconfig may not do this: check its access entry)"
    return reason


class PortForwardConnector:
    """The master's API port (``contract.MASTER_API_PORT``) in a run's namespace.

    ``core`` is the ``CoreV1Api`` of the platform's cluster and ``forward`` the client's
    ``portforward`` (both replaced by fakes in the tests: there is no cluster there).
    """

    def __init__(
        self,
        core: k8s.CoreV1Api,
        run_id: str,
        port: int = contract.MASTER_API_PORT,
        *,
        forward: Callable[..., Any] = portforward,
    ) -> None:
        self.core = core
        self.forward = forward
        self.namespace = manifests.namespace_name(run_id)
        self.selector = ",".join(
            f"{k}={v}"
            for k, v in sorted(
                {manifests.RUN_ID_LABEL: run_id, manifests.COMPONENT_LABEL: "master"}.items()
            )
        )
        self.port = port
        self._forward: Any = None

    @classmethod
    def from_kubeconfig(cls, kubeconfig: str, run_id: str) -> PortForwardConnector:
        """From the platform stack's ``kubeconfig`` output (JSON text)."""
        api = k8s_config.new_client_from_config_dict(config_dict=json.loads(kubeconfig))  # type: ignore[no-untyped-call]
        return cls(k8s.CoreV1Api(api), run_id)

    def _pods(self) -> list[Any]:
        try:
            found = self.core.list_namespaced_pod(
                self.namespace, label_selector=self.selector, _request_timeout=TIMEOUT_S
            )
        except ApiException as err:
            raise OSError(f"listing the master pod in {self.namespace}: {_why(err)}") from None
        except HTTPError as err:  # the API server did not answer: the network, not the master
            raise OSError(f"the cluster's API server did not answer: {err}") from None
        return list(found.items)

    def connect(self) -> socket.socket:
        """A new forward to the running master pod (``OSError`` while it is not running)."""
        self.close()
        pods = self._pods()
        running = [p for p in pods if p.status is not None and p.status.phase == "Running"]
        if not running:
            phases = ", ".join(str(p.status.phase if p.status else "?") for p in pods) or "none"
            raise OSError(f"no running master pod in {self.namespace} yet (pods: {phases})")
        name = str(running[0].metadata.name)
        try:
            self._forward = self.forward(
                self.core.connect_get_namespaced_pod_portforward,
                name,
                self.namespace,
                ports=str(self.port),
            )
        except ApiException as err:
            raise OSError(f"port-forward to {self.namespace}/{name}: {_why(err)}") from None
        sock: socket.socket = self._forward.socket(self.port)
        return sock

    def master_gone(self) -> str | None:
        """Why the master pod will never answer again, or None while it may."""
        try:
            pods = self._pods()
        except OSError:
            return None  # the API server may be what is down: not a verdict on the master
        if not pods:
            return f"no master pod in {self.namespace}: it was deleted, or its Job failed"
        for pod in pods:
            status = pod.status
            if status is None or status.phase not in ("Failed", "Succeeded"):
                return None
        pod = pods[0]
        reason = " ".join(x for x in (pod.status.reason, pod.status.message) if x)
        ended = "failed" if pod.status.phase == "Failed" else "exited"
        return f"master pod {self.namespace}/{pod.metadata.name} {ended}" + (
            f": {reason}" if reason else ""
        )

    def close(self) -> None:
        """Close the current forward, if any."""
        if self._forward is not None:
            forward, self._forward = self._forward, None
            forward.close()
