"""The follower's port-forward to the master pod, against a fake ``CoreV1Api`` (no cluster).

What is checked against the Kubernetes client (37.0.1, ``kubernetes/stream/stream.py`` and
``ws_client.py``, and its ``examples/pod_portforward.py``): ``portforward(method, name,
namespace, ports="N")`` returns a ``PortForward`` whose ``socket(N)`` is the connected stream
and whose ``close()`` ends the websocket; a websocket that cannot be opened (refused, 403) is
raised as ``ApiException(status=0)``. The fake here is called the same way.
"""

from __future__ import annotations

import http.client
import socket
import threading
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import MaxRetryError

from loadtest.cloud import contract, manifests
from loadtest.cloud.follower import Follower
from loadtest.cloud.port_forward import PortForwardConnector
from tests.loadtest_specs import RUN_ID, spec

NAMESPACE = manifests.namespace_name(RUN_ID)


def pod(name: str, phase: str, reason: str | None = None) -> k8s.V1Pod:
    return k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(name=name, namespace=NAMESPACE),
        status=k8s.V1PodStatus(phase=phase, reason=reason),
    )


class FakeCore:
    """The two ``CoreV1Api`` calls the connector makes, answered from a list of pods."""

    def __init__(self, *pods: k8s.V1Pod) -> None:
        self.pods = list(pods)
        self.listed: list[tuple[str, str]] = []
        self.fail: Exception | None = None

    def list_namespaced_pod(
        self, namespace: str, *, label_selector: str, _request_timeout: float
    ) -> k8s.V1PodList:
        self.listed.append((namespace, label_selector))
        if self.fail is not None:
            raise self.fail
        return k8s.V1PodList(items=self.pods)

    def connect_get_namespaced_pod_portforward(self, name: str, namespace: str, **kw: Any) -> Any:
        raise AssertionError("only ever called by kubernetes.stream.portforward")


class FakeForward:
    """``PortForward``: one end of a socket pair stands for the pod's port."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.ours, self.pods_end = socket.socketpair()
        self.closed = False

    def socket(self, port: int) -> socket.socket:
        if port != self.port:
            raise ValueError("Invalid port number")  # what the client raises
        return self.ours

    def close(self) -> None:
        self.closed = True
        self.ours.close()


class Forwarder:
    """The ``portforward`` function: records each call, hands out ``FakeForward``s."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, str, str, str]] = []
        self.forwards: list[FakeForward] = []
        self.fail: Exception | None = None

    def __call__(self, method: Any, name: str, namespace: str, *, ports: str) -> FakeForward:
        self.calls.append((method, name, namespace, ports))
        if self.fail is not None:
            raise self.fail
        self.forwards.append(FakeForward(int(ports)))
        return self.forwards[-1]


def connector(core: FakeCore, forwarder: Forwarder) -> PortForwardConnector:
    return PortForwardConnector(core, RUN_ID, forward=forwarder)  # type: ignore[arg-type]


def test_the_forward_goes_to_the_running_master_pod_of_the_run_on_the_api_port() -> None:
    core = FakeCore(pod("locust-master-old", "Pending"), pod("locust-master-x1", "Running"))
    forwarder = Forwarder()
    sock = connector(core, forwarder).connect()
    ((method, name, namespace, ports),) = forwarder.calls
    assert method == core.connect_get_namespaced_pod_portforward
    assert (name, namespace, ports) == ("locust-master-x1", NAMESPACE, "8080")
    assert int(ports) == contract.MASTER_API_PORT
    assert sock is forwarder.forwards[0].ours
    # The pods are looked up in the run's namespace by the labels the manifests give the master.
    ((listed_ns, selector),) = core.listed
    assert listed_ns == NAMESPACE
    objects = manifests.objects(spec(), lock="")
    (master,) = [o for o in objects if o["kind"] == "Job" and "master" in o["metadata"]["name"]]
    labels = master["spec"]["template"]["metadata"]["labels"]
    wanted = dict(pair.split("=") for pair in selector.split(","))
    assert wanted.items() <= labels.items()
    assert labels[manifests.COMPONENT_LABEL] == "master"


def test_each_connect_opens_a_new_forward_and_closes_the_old_one() -> None:
    core, forwarder = FakeCore(pod("m", "Running")), Forwarder()
    conn = connector(core, forwarder)
    conn.connect()
    conn.connect()
    assert [f.closed for f in forwarder.forwards] == [True, False]
    conn.close()
    conn.close()  # idempotent
    assert forwarder.forwards[1].closed


def test_the_follower_talks_http_through_the_forward() -> None:
    core, forwarder = FakeCore(pod("m", "Running")), Forwarder()
    conn = connector(core, forwarder)
    sock = conn.connect()
    forward = forwarder.forwards[0]

    def master() -> None:
        request = forward.pods_end.recv(65536)
        assert request.startswith(b"GET /status HTTP/1.1\r\n")
        body = b'{"run_id": "r", "state": "running"}'
        forward.pods_end.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body)
        )

    thread = threading.Thread(target=master, daemon=True)
    thread.start()
    http_conn = http.client.HTTPConnection("master", timeout=5)
    http_conn.sock = sock
    http_conn.request("GET", "/status")
    assert http_conn.getresponse().read() == b'{"run_id": "r", "state": "running"}'
    thread.join(5)


@pytest.mark.parametrize(
    ("pods", "message"),
    [
        ((), "no running master pod in loadtest-20260101-120000-capacity yet (pods: none)"),
        ((pod("m", "Pending"),), "(pods: Pending)"),
    ],
)
def test_no_running_master_pod_is_a_connection_that_cannot_be_made_yet(
    pods: tuple[k8s.V1Pod, ...], message: str
) -> None:
    forwarder = Forwarder()
    with pytest.raises(OSError, match=message.replace("(", r"\(").replace(")", r"\)")):
        connector(FakeCore(*pods), forwarder).connect()
    assert forwarder.calls == []


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (
            ApiException(status=403, reason="Forbidden"),
            "listing the master pod in loadtest-20260101-120000-capacity: HTTP 403 Forbidden "
            "(the platform stack's kubeconfig may not do this",
        ),
        (
            MaxRetryError(None, "/api/v1/namespaces", "Connection refused"),  # type: ignore[arg-type]
            "the cluster's API server did not answer",
        ),
    ],
)
def test_the_api_server_refusing_or_silent_is_a_clear_oserror(
    error: Exception, message: str
) -> None:
    core = FakeCore()
    core.fail = error
    with pytest.raises(OSError) as raised:
        connector(core, Forwarder()).connect()
    assert str(raised.value).startswith(message)


def test_a_websocket_that_cannot_be_opened_is_a_clear_oserror() -> None:
    forwarder = Forwarder()
    # What portforward_call raises when the handshake is refused (RBAC without pods/portforward).
    forwarder.fail = ApiException(status=0, reason="Handshake status 403 Forbidden")
    with pytest.raises(OSError, match=r"port-forward to loadtest-.*/m: Handshake status 403"):
        connector(FakeCore(pod("m", "Running")), forwarder).connect()


@pytest.mark.parametrize(
    ("pods", "gone"),
    [
        ((pod("m", "Running"),), None),
        ((pod("m", "Pending"),), None),
        (
            (),
            "no master pod in loadtest-20260101-120000-capacity: it was deleted, or its Job failed",
        ),
        (
            (pod("m", "Failed", reason="DeadlineExceeded"),),
            "master pod loadtest-20260101-120000-capacity/m failed: DeadlineExceeded",
        ),
        ((pod("m", "Succeeded"),), "master pod loadtest-20260101-120000-capacity/m exited"),
    ],
)
def test_master_gone_reads_the_pods_phase(pods: tuple[k8s.V1Pod, ...], gone: str | None) -> None:
    assert connector(FakeCore(*pods), Forwarder()).master_gone() == gone


def test_an_api_server_that_does_not_answer_is_no_verdict_on_the_master() -> None:
    core = FakeCore()
    core.fail = MaxRetryError(None, "/api/v1/namespaces", "timed out")  # type: ignore[arg-type]
    assert connector(core, Forwarder()).master_gone() is None


def test_the_follower_retries_while_the_api_server_is_unreachable(tmp_path: Any) -> None:
    """Before the fix a urllib3 error escaped ``connect`` and ended the run as a crash."""
    from loadtest.cloud.orchestrator import MasterLostError, StopRequest  # noqa: PLC0415
    from loadtest.cloud.run_events import RunEventLog  # noqa: PLC0415

    core = FakeCore()
    core.fail = MaxRetryError(None, "/api/v1/namespaces", "Connection refused")  # type: ignore[arg-type]
    said: list[str] = []
    follower = Follower(
        lambda _outputs: connector(core, Forwarder()),
        tmp_path,
        RunEventLog(tmp_path),
        say=said.append,
        show_live=False,
        startup_s=0.3,
        retry_s=0.05,
    )
    with pytest.raises(MasterLostError, match="has not answered for 0 s"):
        follower({}, StopRequest())
    assert len(core.listed) >= 3
    assert "the cluster's API server did not answer" in said[0]
