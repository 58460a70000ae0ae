"""The cluster target: a timeline sample's fleet fields read from a Prometheus on loopback.

The Prometheus here is the twin's query handler behind a plain HTTP server, answering from a
fixed status; the sample must carry exactly that status's figures.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest
from pydantic import TypeAdapter

from domain.fleet_queries import HOUR_FIELDS, INSTANT_FIELDS, KV_BY_REPLICA
from domain.stack_config import load_stack_file
from loadtest.cluster_target import ClusterTarget, PrometheusClient, prometheus_base
from loadtest.schema import ClusterTargetInfo, TargetInfo, TargetMetrics, UrlTargetInfo
from loadtest.targets import Target, TargetError, UrlTarget, free_port
from tests.pulumi_mocks import ROOT
from tests.unit.test_prometheus_api import STATUS
from twin.fleet.prometheus_api import answer

STACK = load_stack_file(ROOT / "Pulumi.a10g.yaml")


class _Prometheus(BaseHTTPRequestHandler):
    refuse: str | None = None
    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        assert path == "/api/v1/query"
        target: ClusterTarget = self.server.target  # type: ignore[attr-defined]
        self.seen.append(query)
        code, body = answer(
            query,
            queries=target.queries,
            status=STATUS,
            seconds_at=lambda t: (max(t, 0.0), max(t, 0.0) / 2),
            cluster_now=5400.0,
            time_scale=1.0,
        )
        if self.refuse and self.refuse in query:
            code, body = (
                422,
                json.dumps({"status": "error", "errorType": "execution", "error": "nope"}).encode(),
            )
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def target() -> Iterator[ClusterTarget]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Prometheus)
    port = server.server_address[1]
    cluster = ClusterTarget.for_stack(
        UrlTarget("http://127.0.0.1:9/v1"), f"http://127.0.0.1:{port}", STACK
    )
    server.target = cluster  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Prometheus.refuse, _Prometheus.seen = None, []
    yield cluster
    server.shutdown()
    server.server_close()


def test_a_sample_carries_the_fleet_figures_prometheus_gives(target: ClusterTarget) -> None:
    target.started_at = time.time() - 1800
    sample = target.poll().model_dump()
    for field in INSTANT_FIELDS:
        assert sample[field] == STATUS[field], field
    assert sample["replicas"] == STATUS["ready_replicas"]
    assert sample["kv_usage_by_replica"] == {"vllm-0": 0.42, "vllm-1": 0.1}
    assert sample["kv_usage"] == pytest.approx(0.26)
    # The run is 1800 s old: the hours it spent, not the fleet's since it started.
    assert sample["gpu_hours"] == pytest.approx(0.5, abs=1e-3)
    assert sample["replica_hours"] == pytest.approx(0.25, abs=1e-3)
    assert sample["target_poll_error"] is None
    assert all(isinstance(sample[f], int) for f in ("desired_replicas", "nodes", "gpus"))


def test_the_queries_go_for_the_stacks_model_and_gpu_count(target: ClusterTarget) -> None:
    target.poll()
    sent = "\n".join(_Prometheus.seen)
    assert "model_name%3D%22" in sent  # the served name is in every vLLM query
    assert target.queries.served_name == STACK.model.served
    assert target.queries.gpus_per_node == STACK.gpu.instance.gpu_count


def test_a_refused_expression_leaves_its_field_out_and_says_which(target: ClusterTarget) -> None:
    _Prometheus.refuse = "kube_node_status_condition"
    sample = target.poll()
    assert sample.ready_nodes is None and sample.nodes == STATUS["nodes"]
    assert sample.target_poll_error is not None
    assert "ready_nodes" in sample.target_poll_error and "nope" in sample.target_poll_error


def test_nothing_answering_fails_the_sample_at_once() -> None:
    cluster = ClusterTarget.for_stack(Target(), f"http://127.0.0.1:{free_port()}", STACK)
    started = time.monotonic()
    with pytest.raises(TargetError, match="did not answer"):
        cluster.poll()
    assert time.monotonic() - started < 5  # one attempt, not one timeout per expression


def test_info_names_the_source_every_query_and_the_stacks_autoscaling(
    target: ClusterTarget,
) -> None:
    info = json.loads(target.info().model_dump_json())  # as config.json records it
    assert info["kind"] == "cluster"
    metrics = info["fleet_metrics"]
    assert metrics["source"] == "prometheus"
    assert set(metrics["queries"]) == {*INSTANT_FIELDS, *HOUR_FIELDS, KV_BY_REPLICA}
    assert "{window_ms}" in metrics["queries"]["gpu_hours"]
    assert info["autoscaling"]["max_replicas"] == STACK.autoscaling.max_replicas
    assert info["autoscaling"]["triggers"]["running"]["target_per_replica"] == (
        STACK.autoscaling.target_running_per_replica
    )
    assert (info["gpu"], info["instance_type"]) == ("A10G", STACK.gpu.instance_type)
    # config.json reads it back as what it is (the report prices and scales from it).
    read = TypeAdapter(TargetInfo).validate_json(target.info().model_dump_json())
    assert isinstance(read, ClusterTargetInfo) and read == target.info()


@pytest.mark.parametrize(
    ("url", "base"),
    [
        ("http://127.0.0.1:9090", "http://127.0.0.1:9090"),
        ("http://127.0.0.1:9090/", "http://127.0.0.1:9090"),
        ("https://prom.example/prometheus/api/v1/query", "https://prom.example/prometheus"),
    ],
)
def test_prometheus_address_forms(url: str, base: str) -> None:
    assert prometheus_base(url) == base


@pytest.mark.parametrize(
    "url", ["prometheus:9090", "ftp://x", "http://u:p@host:9090", "http://h/?q=1"]
)
def test_bad_prometheus_addresses_are_refused(url: str) -> None:
    with pytest.raises(TargetError, match="--prometheus"):
        PrometheusClient(url)


def test_url_target_says_its_metrics_are_one_pods() -> None:
    """Behind a Service, /metrics is whichever pod answered: never recorded as fleet totals."""
    target = UrlTarget("http://127.0.0.1:9")
    scraped = TargetMetrics(queue=3.0, running=9.0, kv_usage=0.5)
    target._metrics.poll = lambda: scraped  # type: ignore[method-assign]
    sample = target.poll().model_dump(exclude_none=True)
    assert sample == {"pod_queue": 3.0, "pod_running": 9.0, "pod_kv_usage": 0.5}
    info = target.info()
    assert isinstance(info, UrlTargetInfo) and "not the fleet" in (info.metrics or "")
