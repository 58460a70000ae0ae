"""What a run loads: a target with a base URL, a start and a stop, and (maybe) its own metrics.

The runner only talks to this small interface, so the same runner drives an endpoint you
bring (``--url``), the autoscaling twin started on loopback, or a test server. A target
that can report replicas, queue depth or KV usage returns them from ``poll()`` and they land in
the timeline next to the client's view.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import IO, Any

from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel, ValidationError

from domain import lifeline, vllm_metrics
from domain.catalog import CapacityType
from domain.run_cost import PlatformInfo
from domain.topology import FLEET_STATUS_PATH
from domain.vllm_args import API_KEY_ENV
from loadtest.schema import (
    AutoscalingInfo,
    FleetTargetInfo,
    TargetBase,
    TargetMetrics,
    UrlTargetInfo,
)

_POLLED = (vllm_metrics.WAITING, vllm_metrics.RUNNING, *vllm_metrics.KV_CACHE_USAGE_NAMES)


class TargetError(RuntimeError):
    """The target could not be started or reached; the message says why and what to do."""


class Target:
    """Base of every target: subclasses override what differs."""

    base_url: str = ""
    description: str = ""

    def start(self) -> None:
        """Make the target ready to serve (no-op for endpoints that already run)."""

    def stop(self) -> None:
        """Release what ``start`` made (no-op for endpoints that already run)."""

    def info(self) -> TargetBase:
        """What ``config.json`` records about the target (never secrets)."""
        return UrlTargetInfo(url=self.base_url, description=self.description)

    def poll(self) -> TargetMetrics:
        """Target-side metrics for the timeline (replicas, queue, running, kv_usage, nodes)."""
        return TargetMetrics()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def http_get(
    url: str, timeout: float = 2.0, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """GET a URL; ``(status, body)``, or ``(0, b"")`` when nothing answered."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as err:
        return int(err.code), err.read() or b""
    except (OSError, ValueError):
        return 0, b""


class PrometheusPoller:
    """Reads vLLM's gauges from a ``/metrics`` endpoint; gives up quietly if there is none.

    Only ``MAX_MISSES`` failures in a row stop it: an endpoint without metrics fails every
    time, while a real one that hiccups now and then over a long run keeps being read.
    """

    MAX_MISSES = 3

    def __init__(self, url: str) -> None:
        self.url = url
        self._misses = 0

    def poll(self) -> TargetMetrics:
        """Summed running and waiting requests and mean KV usage over every served model."""
        if self._misses >= self.MAX_MISSES:
            return TargetMetrics()
        status, body = http_get(self.url, timeout=1.0)
        if status != 200:
            self._misses += 1
            return TargetMetrics()
        sums: dict[str, list[float]] = {}
        try:
            for family in text_string_to_metric_families(body.decode("utf-8", "replace")):
                if family.name in (
                    vllm_metrics.WAITING,
                    vllm_metrics.RUNNING,
                    *vllm_metrics.KV_CACHE_USAGE_NAMES,
                ):
                    sums.setdefault(family.name, []).extend(s.value for s in family.samples)
        except ValueError:
            self._misses += 1
            return TargetMetrics()
        self._misses = 0
        waiting, running = sums.get(vllm_metrics.WAITING), sums.get(vllm_metrics.RUNNING)
        kv = next((sums[k] for k in vllm_metrics.KV_CACHE_USAGE_NAMES if sums.get(k)), None)
        return TargetMetrics(
            queue=sum(waiting) if waiting is not None else None,
            running=sum(running) if running is not None else None,
            kv_usage=round(sum(kv) / len(kv), 4) if kv else None,
        )


_ENDPOINT_PATHS = ("/chat/completions", "/completions", "/generate", "/models")
"""Paths below the base URL: a URL ending in one names an endpoint, not the API."""


def api_base(url: str) -> str:
    """The endpoint's root from what a user types, with or without ``/v1``.

    OpenAI clients are given the base URL with ``/v1``; the request paths here carry it
    themselves (``/v1/chat/completions``, ``/generate``, ``/metrics``), so it is dropped. A
    URL that names an endpoint itself, or a port no socket has, is refused with the fix.
    """
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
        raise TargetError(
            f"--url {url!r}: write the endpoint's address, like https://api.example.com/v1 "
            "or http://127.0.0.1:8000 (http or https, no query string)"
        )
    if parts.username or parts.password:
        # The URL is written to config.json and printed; a key belongs in --api-key-env.
        raise TargetError(
            f"--url: put no credentials in the URL ({parts.hostname}); pass the key in an "
            "environment variable named by --api-key-env"
        )
    try:
        port = parts.port
    except ValueError:  # not a number, or above 65535
        port = -1
    if port is not None and not 1 <= port <= 65535:
        given = parts.netloc.rpartition(":")[2]
        raise TargetError(f"--url {url!r}: port {given} is not a port; ports run from 1 to 65535")
    path = parts.path.rstrip("/")
    named = next((p for p in _ENDPOINT_PATHS if path.endswith(p)), None)
    if named is not None:
        base = urllib.parse.urlunsplit(
            (parts.scheme, parts.netloc, path.removesuffix(named), "", "")
        )
        raise TargetError(
            f"--url {url!r} names the {named.lstrip('/')} endpoint itself; pass the base URL, "
            f"{base} (the workload's endpoint, or --endpoint, picks the path)"
        )
    path = path.removesuffix("/v1")
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))


POD_METRICS_NOTE = (
    "pod_queue, pod_running and pod_kv_usage come from /metrics of whichever pod answered, not "
    "the fleet; pass --prometheus (with --config) for replicas, nodes and fleet totals"
)


class UrlTarget(Target):
    """An OpenAI-compatible endpoint someone else runs (``--url``)."""

    def __init__(self, url: str) -> None:
        self.base_url = api_base(url)
        self.description = self.base_url
        self._metrics = PrometheusPoller(self.base_url + "/metrics")

    def info(self) -> TargetBase:
        """The URL, and what its metrics are: one pod's, not the fleet's."""
        return UrlTargetInfo(
            url=self.base_url, description=self.description, metrics=POD_METRICS_NOTE
        )

    def poll(self) -> TargetMetrics:
        """One pod's queue, batch and KV usage from ``/metrics`` on the API port (vLLM's).

        Behind a Service that is whichever pod answered, not the fleet: the fields say
        ``pod_`` so no chart or figure takes them for fleet totals (``--prometheus`` reads those).
        """
        scraped = self._metrics.poll()
        return TargetMetrics(
            pod_queue=scraped.queue, pod_running=scraped.running, pod_kv_usage=scraped.kv_usage
        )


MODELS_TIMEOUT_S = 5.0
"""How long the pre-flight waits for ``/v1/models`` (vLLM answers it in milliseconds)."""
MODELS_MAX_BYTES = 4 * 1024 * 1024


def list_models(base_url: str, api_key: str | None) -> tuple[int, list[str]]:
    """HTTP status and model ids of ``GET /v1/models`` (status 0: nothing answered).

    ``TargetError`` when the address answers but is no HTTP server (a TLS port asked in plain
    HTTP, another protocol), or accepts the connection and says nothing: a run against it
    would only measure that, for minutes, and end with "nothing was measured".
    """
    url = base_url.rstrip("/") + "/v1/models"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=MODELS_TIMEOUT_S
        ) as response:
            status, body = int(response.status), bytes(response.read(MODELS_MAX_BYTES))
    except urllib.error.HTTPError as err:
        return int(err.code), []
    except http.client.HTTPException as err:
        raise TargetError(
            f"{url} answered, but not in HTTP ({type(err).__name__}): check the address and "
            "the scheme (a TLS port needs https://)"
        ) from None
    except TimeoutError:
        raise TargetError(
            f"{url} took the connection but sent no answer within {MODELS_TIMEOUT_S:g} s: "
            "check that the address is the API's port and that the server is not stuck"
        ) from None
    except (OSError, ValueError):
        return 0, []
    if status != 200:
        return status, []
    try:
        return status, [str(m["id"]) for m in json.loads(body)["data"]]
    except (ValueError, KeyError, TypeError):
        return status, []


class ProcessTarget(Target):
    """A server this run starts as a child process on loopback and stops afterwards."""

    ready_timeout_s = 60.0

    def __init__(
        self,
        command: list[str],
        port: int,
        log_path: Path | None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.command = command
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self.env = env
        """Variables added to this process's environment for the child (secrets: not argv)."""
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        """Start the process and wait until ``/health`` answers 200."""
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            self.command,
            # The lifeline stops the server if this process dies without stopping it.
            env={**os.environ, **(self.env or {}), **lifeline.child_env()},
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise TargetError(f"{self.description} exited at start: {self._log_tail()}")
            if http_get(self.base_url + "/health", timeout=1.0)[0] == 200:
                return
            time.sleep(0.2)
        self.stop()
        raise TargetError(
            f"{self.description} did not answer /health within {self.ready_timeout_s:.0f} s"
        )

    def _log_tail(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        if self._log is not None:
            self._log.flush()
        lines = self.log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        return " | ".join(lines[-5:]) or "(empty log)"

    def stop(self) -> None:
        """SIGINT (the server drains), then SIGKILL if it takes more than 10 s."""
        process = self.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


class FleetTarget(ProcessTarget):
    """The autoscaling twin (``qwen-stress fleet``): emulated vLLM replicas behind one port.

    They scale as KEDA, the HPA and the Cluster Autoscaler would scale them in the stack.
    """

    def __init__(
        self,
        fleet: AutoscalingInfo,
        source: list[str],
        time_scale: float,
        log_path: Path | None,
        api_key: str,
        *,
        capacity_type: CapacityType = "on-demand",
        platform: PlatformInfo | None = None,
    ) -> None:
        port = free_port()
        command = [
            sys.executable, "-m", "loadtest.cli", "fleet", *source,
            "--time-scale", f"{time_scale:g}", "--host", "127.0.0.1", "--port", str(port),
        ]  # fmt: skip
        # Through the environment: a command line is readable by every local user (ps).
        super().__init__(command, port, log_path, env={API_KEY_ENV: api_key})
        if not (fleet.model and fleet.gpu and fleet.instance_type):
            raise TargetError("the twin's description lacks its model, GPU or instance type")
        self.fleet = fleet
        self.capacity_type: CapacityType = capacity_type
        self.platform = platform
        self.model = fleet.served_name or fleet.model
        """The name requests carry: the stack's served name, as vLLM serves it."""
        self.time_scale = time_scale
        served = f" as {self.model}" if self.model != fleet.model else ""
        self.description = (
            f"the autoscaling twin ({fleet.model}{served} on {fleet.gpu}, {fleet.instance_type}, "
            f"{fleet.min_replicas}-{fleet.max_replicas} replicas) at {self.base_url}"
        )

    def info(self) -> FleetTargetInfo:
        """The fleet's model, GPU, instance and autoscaling settings (they price the run)."""
        fleet = self.fleet
        return FleetTargetInfo(
            url=self.base_url,
            description=self.description,
            model=fleet.model,
            gpu=fleet.gpu or "",
            instance_type=fleet.instance_type or "",
            replicas=fleet.min_replicas or 1,
            gpus_per_replica=fleet.gpus_per_replica or 1,
            capacity_type=self.capacity_type,
            platform=self.platform,
            time_scale=self.time_scale,
            autoscaling=fleet,
        )

    def poll(self) -> TargetMetrics:
        """Replicas, nodes, queue, running requests and KV usage from ``/fleet/status``."""
        code, body = http_get(self.base_url + FLEET_STATUS_PATH, timeout=1.0)
        if code != 200:
            return TargetMetrics()
        try:
            status = _FleetStatus.model_validate_json(body)
        except ValidationError as err:
            return TargetMetrics(target_poll_error=f"/fleet/status: {err.errors()[0]['msg']}")
        kv = {n: r.kv_usage for n, r in status.replicas.items() if r.kv_usage is not None}
        return TargetMetrics(
            replicas=status.ready_replicas,
            desired_replicas=status.desired_replicas,
            ready_replicas=status.ready_replicas,
            pending_replicas=status.pending_replicas,
            terminating_replicas=status.terminating_replicas,
            nodes=status.nodes,
            ready_nodes=status.ready_nodes,
            gpus=status.gpus,
            queue=status.queue,
            running=status.running,
            gpu_hours=status.gpu_hours,
            replica_hours=status.replica_hours,
            kv_usage=round(sum(kv.values()) / len(kv), 4) if kv else None,
            kv_usage_by_replica=kv,
            target_cpu=status.cpu,
        )


class _ReplicaStatus(BaseModel):
    kv_usage: float | None = None


class _FleetStatus(BaseModel):
    """What the timeline reads of the twin's ``/fleet/status`` (it says more)."""

    desired_replicas: int
    ready_replicas: int
    pending_replicas: int
    terminating_replicas: int
    nodes: int
    ready_nodes: int
    gpus: int
    queue: float
    running: float
    gpu_hours: float
    replica_hours: float
    cpu: float
    replicas: dict[str, _ReplicaStatus]


class FixedLatencyTarget(ProcessTarget):
    """The fixed-latency server (tests and benchmarks): known TTFT and ITL, no model."""

    def __init__(
        self,
        ttft_ms: float,
        itl_ms: float,
        log_path: Path | None = None,
        *,
        models: tuple[str, ...] = (),
        api_key: str | None = None,
    ) -> None:
        port = free_port()
        command = [
            sys.executable, "-m", "loadtest.fixed_latency_server",
            "--port", str(port), "--ttft-ms", str(ttft_ms), "--itl-ms", str(itl_ms),
        ]  # fmt: skip
        for name in models:
            command += ["--model", name]
        env = {"QWEN_STRESS_FIXED_SERVER_KEY": api_key} if api_key else None
        super().__init__(command, port, log_path, env)
        self.description = f"the fixed-latency server (TTFT {ttft_ms:g} ms, ITL {itl_ms:g} ms)"

    def stats(self) -> dict[str, Any]:
        """The server's own lateness figures (``GET /stats``)."""
        status, body = http_get(self.base_url + "/stats")
        result: dict[str, Any] = json.loads(body) if status == 200 else {}
        return result
