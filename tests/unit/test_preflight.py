"""Pre-flight: each failed check is named with what to do; the real probe's requests.

The checks run against a fake ``ClusterProbe``. ``KubeProbe`` (the Kubernetes client) runs
against a loopback stand-in for the API server that records every request, so its paths,
query strings and credentials are checked without a cluster; the port-forward is replaced
by a socket pair with a tiny vLLM behind it.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest

from domain.autoscaling import AutoscalingSpec
from loadtest.cloud import kube_probe
from loadtest.cloud.kube_probe import KubeProbe
from loadtest.cloud.orchestrator import PreflightError
from loadtest.cloud.preflight import Condition, Platform, ProbeError, Series, check, failures

SERVED = "qwen2.5-7b-instruct"
PLATFORM = Platform(served_name=SERVED, triggers=tuple(AutoscalingSpec().triggers()))
KEY = "sk-platform-key"


@dataclass
class FakeProbe:
    ready: int | None = 1
    scaled: Condition | None = field(default_factory=lambda: Condition("True"))
    series: dict[str, Series] = field(default_factory=dict)
    models: tuple[int, list[str]] = (200, [SERVED])
    down: bool = False
    asked: list[str] = field(default_factory=list)

    def ready_replicas(self, namespace: str, deployment: str) -> int | None:
        if self.down:
            raise ProbeError("the API server did not answer")
        return self.ready

    def scaled_object_ready(self, namespace: str, name: str) -> Condition | None:
        return self.scaled

    def prometheus_query(self, expr: str) -> Series:
        self.asked.append(expr)
        return self.series.get(expr, [({}, 3.0)])

    def list_models(self, namespace: str, deployment: str, api_key: str) -> tuple[int, list[str]]:
        return self.models if api_key == KEY else (401, [])


def test_a_ready_platform_passes() -> None:
    probe = FakeProbe()
    check(probe, PLATFORM, KEY)
    # Each trigger's own query, then the bare sum behind its `or vector(0)`.
    waiting = PLATFORM.triggers[0].query(SERVED, "vllm")
    assert probe.asked[:2] == [waiting, waiting.removesuffix(" or vector(0)")]


@pytest.mark.parametrize(
    ("probe", "expected"),
    [
        (FakeProbe(ready=0), "vLLM has no ready replica (vllm/vllm)"),
        (FakeProbe(ready=None), "no Deployment vllm/vllm: is the platform stack up"),
        (FakeProbe(scaled=None), "no KEDA ScaledObject vllm/vllm"),
        (
            FakeProbe(scaled=Condition("False", "ScaledObjectCheckFailed", "bad trigger")),
            "ScaledObject vllm/vllm is not Ready (False: ScaledObjectCheckFailed bad trigger)",
        ),
        (FakeProbe(models=(200, ["Qwen/Qwen2.5-7B-Instruct-AWQ"])), f"not {SERVED!r}"),
        (FakeProbe(models=(503, [])), "/v1/models answered HTTP 503"),
        (FakeProbe(down=True), "the cluster could not be checked: the API server did not answer"),
    ],
)
def test_each_failure_is_named(probe: FakeProbe, expected: str) -> None:
    with pytest.raises(PreflightError, match="nothing was created") as raised:
        check(probe, PLATFORM, KEY)
    assert expected in str(raised.value)


def test_a_refused_key_is_said_without_echoing_it() -> None:
    found = failures(FakeProbe(), PLATFORM, "sk-wrong-key")
    assert found and "refused the stack's API key" in found[0]
    assert "sk-wrong-key" not in " ".join(found)


def test_a_trigger_with_several_series_is_refused() -> None:
    query = PLATFORM.triggers[1].query(SERVED, "vllm")
    probe = FakeProbe(series={query: [({"pod": "a"}, 1.0), ({"pod": "b"}, 2.0)]})
    (found,) = failures(probe, PLATFORM, KEY)
    assert "KEDA trigger 'running' returns 2 series, not one" in found


def test_a_zero_that_only_means_no_vllm_scraped_is_caught() -> None:
    bare = PLATFORM.triggers[0].query(SERVED, "vllm").removesuffix(" or vector(0)")
    (found,) = failures(FakeProbe(series={bare: []}), PLATFORM, KEY)
    assert "Prometheus has no vllm:num_requests_waiting" in found and "ServiceMonitor" in found


def test_every_failure_is_listed_at_once() -> None:
    found = failures(FakeProbe(ready=0, scaled=None, models=(200, [])), PLATFORM, KEY)
    assert len(found) == 3


# -- the real probe, against a loopback API server ------------------------------------------
class _ApiServer(BaseHTTPRequestHandler):
    requests: ClassVar[list[tuple[str, str, dict[str, str]]]] = []
    missing: ClassVar[set[str]] = set()

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        self.requests.append(
            (parts.path, parts.query, {k.lower(): v for k, v in self.headers.items()})
        )
        body: Any
        if any(name in parts.path for name in self.missing):
            code, body = 404, {"kind": "Status", "code": 404, "reason": "NotFound"}
        elif parts.path == "/apis/apps/v1/namespaces/vllm/deployments/vllm":
            code, body = (
                200,
                {
                    "metadata": {"name": "vllm"},
                    "spec": {
                        "selector": {"matchLabels": {"app.kubernetes.io/name": "vllm"}},
                        "template": {"metadata": {}, "spec": {"containers": []}},
                    },
                    "status": {"readyReplicas": 2, "replicas": 3},
                },
            )
        elif parts.path == "/apis/keda.sh/v1alpha1/namespaces/vllm/scaledobjects/vllm":
            code, body = (
                200,
                {
                    "status": {
                        "conditions": [
                            {"type": "Active", "status": "True"},
                            {"type": "Ready", "status": "False", "reason": "X", "message": "y"},
                        ]
                    }
                },
            )
        elif parts.path.endswith("/proxy/api/v1/query"):
            code, body = (
                200,
                {
                    "status": "success",
                    "data": {
                        "resultType": "vector",
                        "result": [{"metric": {}, "value": [1.0, "4"]}],
                    },
                },
            )
        elif parts.path == "/api/v1/namespaces/vllm/pods":
            code, body = (
                200,
                {
                    "items": [
                        {
                            "metadata": {"name": name},
                            "status": {"conditions": [{"type": "Ready", "status": ready}]},
                        }
                        for name, ready in (("vllm-starting", "False"), ("vllm-ready", "True"))
                    ]
                },
            )
        else:
            code, body = 500, {"unexpected": parts.path}
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def probe() -> Iterator[KubeProbe]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ApiServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _ApiServer.requests, _ApiServer.missing = [], set()
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "c", "cluster": {"server": f"http://127.0.0.1:{server.server_address[1]}"}}
        ],
        "users": [{"name": "u", "user": {"token": "t0ken"}}],
        "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "ctx",
    }
    yield KubeProbe.from_kubeconfig(json.dumps(kubeconfig))
    server.shutdown()
    server.server_close()


def test_the_probe_reads_the_deployment_and_the_scaled_object(probe: KubeProbe) -> None:
    assert probe.ready_replicas("vllm", "vllm") == 2
    assert probe.scaled_object_ready("vllm", "vllm") == Condition("False", "X", "y")
    assert all(
        headers.get("authorization") == "Bearer t0ken" for _, _, headers in _ApiServer.requests
    )


def test_missing_objects_are_none_not_errors(probe: KubeProbe) -> None:
    _ApiServer.missing = {"/deployments/", "/scaledobjects/"}
    assert probe.ready_replicas("vllm", "vllm") is None
    assert probe.scaled_object_ready("vllm", "vllm") is None


def test_prometheus_is_asked_through_the_service_proxy(probe: KubeProbe) -> None:
    expr = 'sum(vllm:num_requests_waiting{namespace="vllm"}) or vector(0)'
    assert probe.prometheus_query(expr) == [({}, 4.0)]
    path, query, _ = _ApiServer.requests[-1]
    assert path == (
        "/api/v1/namespaces/monitoring/services/kube-prometheus-stack-prometheus:9090/proxy/api/v1/query"
    )
    assert parse_qs(query) == {"query": [expr]}


def test_v1_models_goes_through_a_port_forward_to_a_ready_pod_with_the_key(
    probe: KubeProbe, monkeypatch: pytest.MonkeyPatch
) -> None:
    ours, theirs = socket.socketpair()
    seen: dict[str, Any] = {}

    def vllm() -> None:
        request = theirs.recv(65536).decode()
        seen["request"] = request
        body = json.dumps({"data": [{"id": SERVED}]}).encode()
        theirs.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%b" % (len(body), body))
        theirs.close()

    @dataclass
    class Forward:
        def socket(self, port: int) -> socket.socket:
            seen["port"] = port
            return ours

        def close(self) -> None:
            seen["closed"] = True

    def fake_portforward(method: Any, name: str, namespace: str, ports: str) -> Forward:
        seen["target"] = (method.__name__, name, namespace, ports)
        return Forward()

    monkeypatch.setattr(kube_probe, "portforward", fake_portforward)
    server = threading.Thread(target=vllm, daemon=True)
    server.start()
    assert probe.list_models("vllm", "vllm", KEY) == (200, [SERVED])
    server.join(5)
    assert seen["target"] == (
        "connect_get_namespaced_pod_portforward",
        "vllm-ready",
        "vllm",
        "8000",
    )
    assert seen["port"] == 8000 and seen["closed"]
    assert seen["request"].startswith("GET /v1/models HTTP/1.1\r\n")
    assert f"Authorization: Bearer {KEY}" in seen["request"]
    pods = [q for p, q, _ in _ApiServer.requests if p.endswith("/pods")]
    assert parse_qs(pods[0])["labelSelector"] == ["app.kubernetes.io/name=vllm"]
